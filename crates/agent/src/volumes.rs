//! Pod volumes on the node: what a pod's volumes are on this host, kept up to date, and how
//! each container mounts them.
//!
//! ```text
//!  ConfigMap / Secret ──watch (one per object)──▶ PodVolumes::on_event ─┐
//!  Pod (worker's updates) ───────────────────────────────────────────────┤
//!                                                                        ▼
//!   PodVolumes::sync ──▶ <root>/pods/<uid>/volumes/<plugin>/<name>/  (atomic writer)
//!                    └─▶ hostPath, PVC's PV path (used in place)
//!   PodVolumes::mounts(container) ──▶ runtime::Mount list ──▶ process (shim) | docker
//! ```
//!
//! One [`PodVolumes`] belongs to each pod worker. `emptyDir`s are directories under the pod's
//! directory (kubelet's layout, `kubernetes.io~empty-dir`), a tmpfs mounted there for
//! `medium: Memory` (sized by `sizeLimit`, else node allocatable memory, as kubelet does);
//! `configMap`, `secret`, `downwardAPI` and `projected` volumes are written by the
//! [`atomic`] writer and rewritten whenever the watch of an object they read delivers a change
//! or the pod changes (downward API), so mounted files follow updates within one watch event
//! and never show half of one version; `hostPath` (after its `type` check) and
//! `persistentVolumeClaim` (the bound PV's `hostPath.path` or `local.path`) are used in place.
//!
//! A volume that cannot be set up holds the pod in `ContainerCreating` with kubelet's
//! `FailedMount` message ([`VolumeError`]); an object whose watch has not answered yet holds it
//! silently. [`remove`] unmounts and deletes everything of a pod once it is gone.

pub mod atomic;
pub mod paths;
pub mod payload;

use crate::runtime::{Mount, PodRef};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EmptyDirVolumeSource, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource, Pod, Secret, Volume,
};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use payload::{Known, ObjectData, ObjectKind, PayloadError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A volume that cannot be set up, shown as kubelet shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
pub struct VolumeError {
    /// The volume's name in the pod.
    pub volume: String,
    /// What went wrong (`configmap "y" not found`).
    pub message: String,
}

/// A change of an object that volumes read, from its watch.
#[derive(Debug)]
pub struct ObjectEvent {
    kind: ObjectKind,
    name: String,
    known: Known,
}

/// A volume ready on the node.
#[derive(Debug, Clone)]
struct Ready {
    path: PathBuf,
    /// Mounted read-only whatever the mount says (content volumes, read-only claims).
    read_only: bool,
}

/// The volumes of one pod on this node.
pub struct PodVolumes {
    client: kube::Client,
    namespace: String,
    dir: PathBuf,
    ready: HashMap<String, Ready>,
    objects: HashMap<(ObjectKind, String), Known>,
    watches: HashMap<(ObjectKind, String), JoinHandle<()>>,
    events: (mpsc::UnboundedSender<ObjectEvent>, mpsc::UnboundedReceiver<ObjectEvent>),
}

/// The directory of a pod's volumes and other node state: `<root>/pods/<uid>`.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

impl PodVolumes {
    /// The volumes of `pod`, kept under the agent's `root`.
    pub fn new(client: kube::Client, root: &Path, pod: &PodRef) -> PodVolumes {
        PodVolumes {
            client,
            namespace: pod.namespace.clone(),
            dir: pod_dir(root, &pod.uid).join("volumes"),
            ready: HashMap::new(),
            objects: HashMap::new(),
            watches: HashMap::new(),
            events: mpsc::unbounded_channel(),
        }
    }

    /// The next change of a watched object (never ends while `self` lives).
    pub async fn next_event(&mut self) -> Option<ObjectEvent> {
        self.events.1.recv().await
    }

    /// Take a change in; the next [`PodVolumes::sync`] writes it.
    pub fn on_event(&mut self, event: ObjectEvent) {
        self.objects.insert((event.kind, event.name), event.known);
    }

    /// Take every change that already arrived.
    pub fn drain_events(&mut self) {
        while let Ok(e) = self.events.1.try_recv() {
            self.on_event(e);
        }
    }

    /// Set up the pod's volumes that are not yet, and rewrite the content of those that follow
    /// objects or the pod. `Ok(true)`: every volume is ready; `Ok(false)`: some wait for their
    /// object's watch. A failed volume does not stop the others from being refreshed.
    pub async fn sync(
        &mut self,
        pod: &Pod,
        node_ip: &str,
        allocatable: (i64, i64),
    ) -> Result<bool, VolumeError> {
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
        let mut complete = true;
        let mut first_error = None;
        for v in &volumes {
            match self.sync_one(v, pod, node_ip, allocatable).await {
                Ok(true) => {}
                Ok(false) => complete = false,
                Err(message) => {
                    complete = false;
                    first_error.get_or_insert(VolumeError { volume: v.name.clone(), message });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(complete),
        }
    }

    async fn sync_one(
        &mut self,
        v: &Volume,
        pod: &Pod,
        node_ip: &str,
        allocatable: (i64, i64),
    ) -> Result<bool, String> {
        let content = v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some();
        if content {
            for (kind, name) in
                payload::references(v.config_map.as_ref(), v.secret.as_ref(), v.projected.as_ref())
            {
                self.watch(kind, &name);
            }
            let objects = &self.objects;
            let lookup = |kind: ObjectKind, name: &str| {
                objects.get(&(kind, name.to_string())).cloned().unwrap_or(Known::Unknown)
            };
            let ctx = payload::Context { pod, node_ip, allocatable, lookup: &lookup };
            let (plugin, made) = if let Some(src) = &v.config_map {
                ("kubernetes.io~configmap", payload::config_map(&ctx, src))
            } else if let Some(src) = &v.secret {
                ("kubernetes.io~secret", payload::secret(&ctx, src))
            } else if let Some(src) = &v.downward_api {
                let items = src.items.as_deref().unwrap_or_default();
                ("kubernetes.io~downward-api", payload::downward_api(&ctx, items, src.default_mode))
            } else if let Some(src) = &v.projected {
                ("kubernetes.io~projected", payload::projected(&ctx, src))
            } else {
                return Ok(true);
            };
            let files = match made {
                Ok(files) => files,
                Err(PayloadError::Pending) => return Ok(false),
                Err(PayloadError::Failed(message)) => return Err(message),
            };
            let dir = self.dir.join(plugin).join(&v.name);
            atomic::write(&dir, &files)
                .map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
            self.ready.insert(v.name.clone(), Ready { path: dir, read_only: true });
            return Ok(true);
        }
        if self.ready.contains_key(&v.name) {
            return Ok(true);
        }
        let ready = if let Some(src) = &v.empty_dir {
            self.empty_dir(&v.name, src, allocatable.1)?
        } else if let Some(src) = &v.host_path {
            let path = PathBuf::from(&src.path);
            paths::check_host_path(&path, src.type_.as_deref().unwrap_or(""))?;
            Ready { path, read_only: false }
        } else if let Some(src) = &v.persistent_volume_claim {
            self.claim(src).await?
        } else {
            return Err("the volume's type is not supported by kumo (supported: emptyDir, \
                        configMap, secret, downwardAPI, projected, hostPath, \
                        persistentVolumeClaim)"
                .into());
        };
        self.ready.insert(v.name.clone(), ready);
        Ok(true)
    }

    fn empty_dir(
        &self,
        name: &str,
        src: &EmptyDirVolumeSource,
        memory: i64,
    ) -> Result<Ready, String> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir.join("kubernetes.io~empty-dir").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        match src.medium.as_deref().unwrap_or("") {
            "" => {}
            "Memory" => {
                if !is_mount_point(&dir) {
                    let size = match &src.size_limit {
                        Some(q) => kumo_api::quantity::parse_value(&q.0)
                            .map_err(|e| format!("sizeLimit {:?}: {e}", q.0))?,
                        None => memory,
                    };
                    mount_tmpfs(&dir, size.max(4096))?;
                }
            }
            other => return Err(format!("emptyDir medium {other:?} is not supported")),
        }
        // Anyone in the pod may write, as kubelet makes it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Ready { path: dir, read_only: false })
    }

    /// A claim's volume: the bound PV's node-local path (part B's provisioner made it).
    async fn claim(&self, src: &PersistentVolumeClaimVolumeSource) -> Result<Ready, String> {
        let name = &src.claim_name;
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let claim = claims
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolumeclaim {name:?} not found"))?;
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        let volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
        if phase != Some("Bound") || volume.is_empty() {
            return Err(format!("persistentvolumeclaim {name:?} is not bound"));
        }
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let pv = pvs
            .get_opt(&volume)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolume {volume:?} not found"))?;
        let spec = pv.spec.unwrap_or_default();
        let path =
            spec.host_path.map(|h| h.path).or(spec.local.map(|l| l.path)).ok_or_else(|| {
                format!(
                    "persistentvolume {volume:?} has neither hostPath nor local: kumo mounts \
                     node-local volumes only"
                )
            })?;
        let path = PathBuf::from(path);
        if !path.exists() {
            return Err(format!(
                "persistentvolume {volume:?}: path {} does not exist on this node",
                path.display()
            ));
        }
        Ok(Ready { path, read_only: src.read_only.unwrap_or(false) })
    }

    /// Start the watch of one object unless it runs.
    fn watch(&mut self, kind: ObjectKind, name: &str) {
        let key = (kind, name.to_string());
        if self.watches.contains_key(&key) {
            return;
        }
        let tx = self.events.0.clone();
        let (client, ns, name) = (self.client.clone(), self.namespace.clone(), name.to_string());
        let task = match kind {
            ObjectKind::ConfigMap => tokio::spawn(watch_object(
                Api::<ConfigMap>::namespaced(client, &ns),
                kind,
                name,
                tx,
                |cm| {
                    let mut data: ObjectData = cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    data.extend(
                        cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)),
                    );
                    data
                },
            )),
            ObjectKind::Secret => tokio::spawn(watch_object(
                Api::<Secret>::namespaced(client, &ns),
                kind,
                name,
                tx,
                |s| {
                    let mut data: ObjectData =
                        s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                    data.extend(
                        s.string_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes())),
                    );
                    data
                },
            )),
        };
        self.watches.insert(key, task);
    }

    /// The mounts of one container; `env` is its final environment (for `subPathExpr`).
    pub fn mounts(&self, c: &Container, env: &[(String, String)]) -> Result<Vec<Mount>, String> {
        let vars: HashMap<String, String> = env.iter().cloned().collect();
        let mut out = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let ready = self
                .ready
                .get(&m.name)
                .ok_or_else(|| format!("volume {:?} is not ready", m.name))?;
            let sub = match (m.sub_path.as_deref(), m.sub_path_expr.as_deref()) {
                (Some(s), _) if !s.is_empty() => s.to_string(),
                (_, Some(e)) if !e.is_empty() => crate::env::expand(e, &vars),
                _ => String::new(),
            };
            let host_path = if sub.is_empty() {
                ready.path.clone()
            } else {
                paths::resolve_sub_path(&ready.path, &sub).map_err(|e| {
                    format!("failed to prepare subPath for volumeMount {:?}: {e}", m.name)
                })?
            };
            out.push(Mount {
                host_path,
                container_path: m.mount_path.clone(),
                read_only: ready.read_only || m.read_only.unwrap_or(false),
            });
        }
        out.sort_by_key(|m| Path::new(&m.container_path).components().count());
        Ok(out)
    }
}

impl Drop for PodVolumes {
    fn drop(&mut self) {
        for (_, task) in self.watches.drain() {
            task.abort();
        }
    }
}

/// Watch one object by name and report what it holds (or that it does not exist).
async fn watch_object<K>(
    api: Api<K>,
    kind: ObjectKind,
    name: String,
    tx: mpsc::UnboundedSender<ObjectEvent>,
    data: fn(K) -> ObjectData,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    let mut seen = false;
    while let Some(event) = stream.next().await {
        let known = match event {
            Ok(watcher::Event::Init) => {
                seen = false;
                continue;
            }
            Ok(watcher::Event::InitApply(obj)) | Ok(watcher::Event::Apply(obj)) => {
                seen = true;
                Known::Present(data(obj))
            }
            Ok(watcher::Event::InitDone) if seen => continue,
            Ok(watcher::Event::InitDone) | Ok(watcher::Event::Delete(_)) => Known::Missing,
            Err(e) => {
                tracing::debug!("watch of {} {name}: {e}", kind.word());
                continue;
            }
        };
        if tx.send(ObjectEvent { kind, name: name.clone(), known }).is_err() {
            return;
        }
    }
}

/// Mount points at or below `dir`, deepest first, from this process's mount table.
fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Octal escapes of `/proc/self/mountinfo` (`\040` for a space).
fn unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let n = b[i + 1..i + 4].iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0'));
            out.push(n as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_mount_point(dir: &Path) -> bool {
    mount_points_under(dir).iter().any(|p| p == dir)
}

fn mount_tmpfs(dir: &Path, size: i64) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    if !nix::unistd::geteuid().is_root() {
        return Err("an emptyDir with medium Memory is a tmpfs, which only an agent running as \
                    root can mount"
            .into());
    }
    let options = format!("size={size},mode=777");
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| format!("cannot mount a tmpfs on {}: {e}", dir.display()))
}

/// Remove everything the node holds for the pod `uid`: unmount the tmpfs of memory-backed
/// emptyDirs, then delete its directory. hostPath and claim volumes are never touched (they
/// live elsewhere and belong to others).
pub fn remove(root: &Path, uid: &str) {
    let dir = pod_dir(root, uid);
    if !dir.exists() {
        return;
    }
    for point in mount_points_under(&dir) {
        if let Err(e) = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!("cannot unmount {}: {e}", point.display());
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!("cannot remove {}: {e}", dir.display());
    }
}

/// Pod UIDs that have a directory under `<root>/pods` (log directories, `<ns>_<name>_<uid>`,
/// are not these).
pub fn pods_on_disk(root: &Path) -> HashSet<String> {
    let Ok(entries) = std::fs::read_dir(root.join("pods")) else { return HashSet::new() };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains('_'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\"), "/end\\");
    }
}
