//! The node-local half of kumo's built-in local-path provisioner (`kumo.dev/local-path`, the
//! provisioner of the default `local-path` StorageClass), as k3s's local-path-provisioner and
//! upstream's external provisioners work:
//!
//! ```text
//!  PVC with volume.kubernetes.io/selected-node = this node and
//!      volume.kubernetes.io/storage-provisioner = kumo.dev/local-path
//!      ──▶ mkdir <data-dir>/storage/pvc-<uid>_<ns>_<name> ──▶ create PV pvc-<uid>
//!          (hostPath = that directory, nodeAffinity kubernetes.io/hostname = this node,
//!           claimRef = the claim; the binder then binds the two)
//!  PV made here, Released, reclaim policy Delete ──▶ rm -r the directory ──▶ delete the PV
//! ```
//! The directory is made on the node that will run the pod (the scheduler picked it and named
//! it in the claim), so this runs in every node agent and acts only on its own node's claims
//! and volumes. A failed step leaves nothing half made (the directory goes when the volume
//! cannot be created) and says why in a `ProvisioningFailed` event on the claim; the attempt
//! is repeated on the next sync. A directory has no size kumo can enforce: the volume's
//! capacity is what the claim asked for.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kumo_api::storage;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often claims and volumes are looked at again without a change.
const RESYNC: Duration = Duration::from_secs(5);
/// The shortest time between two attempts for the same claim after a failure.
const RETRY: Duration = Duration::from_secs(5);
/// Which node's agent made a volume (the directory lives there).
pub const NODE_ANNOTATION: &str = "kumo.dev/local-path-node";

/// Why provisioning or deleting a volume failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The volume's directory could not be made (a full disk, permissions).
    #[error("cannot create directory {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The PersistentVolume could not be created.
    #[error("cannot create persistentvolume {name}: {message}")]
    Create {
        /// The volume's name.
        name: String,
        /// The API's answer.
        message: String,
    },
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn annotation<'a>(v: &'a Value, key: &str) -> &'a str {
    v.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Where this node keeps local-path volumes.
pub fn storage_root(data_dir: &Path) -> PathBuf {
    data_dir.join("storage")
}

/// The directory of a claim's volume (k3s's layout: `pvc-<uid>_<namespace>_<name>`).
pub fn volume_dir(root: &Path, claim: &Value) -> PathBuf {
    root.join(format!(
        "pvc-{}_{}_{}",
        s(claim, "/metadata/uid"),
        s(claim, "/metadata/namespace"),
        s(claim, "/metadata/name")
    ))
}

/// Whether this node's provisioner is asked to make a volume for `claim`.
pub fn wants_volume(claim: &Value, node: &str) -> bool {
    s(claim, "/spec/volumeName").is_empty()
        && claim.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null)
        && annotation(claim, storage::SELECTED_NODE_ANNOTATION) == node
        && annotation(claim, storage::STORAGE_PROVISIONER_ANNOTATION)
            == storage::LOCAL_PATH_PROVISIONER
}

/// The PersistentVolume for `claim` of `class`, in directory `dir` on `node`.
pub fn volume_for(claim: &Value, class: &Value, dir: &Path, node: &str) -> Value {
    let modes = claim.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"]));
    let mode = match s(claim, "/spec/volumeMode") {
        "" => "Filesystem",
        m => m,
    };
    let reclaim = match s(class, "/reclaimPolicy") {
        "" => "Delete",
        p => p,
    };
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pvc-{}", s(claim, "/metadata/uid")),
            "annotations": {storage::PROVISIONED_BY_ANNOTATION: storage::LOCAL_PATH_PROVISIONER,
                NODE_ANNOTATION: node}},
        "spec": {
            "capacity": {"storage": claim.pointer("/spec/resources/requests/storage")},
            "accessModes": modes,
            "volumeMode": mode,
            "persistentVolumeReclaimPolicy": reclaim,
            "storageClassName": s(class, "/metadata/name"),
            "hostPath": {"path": dir.to_string_lossy(), "type": "DirectoryOrCreate"},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": s(claim, "/metadata/namespace"), "name": s(claim, "/metadata/name"),
                "uid": s(claim, "/metadata/uid"),
                "resourceVersion": s(claim, "/metadata/resourceVersion")},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": storage::HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}},
        },
    })
}

/// Make the directory, then the volume through `create`; when `create` fails the directory
/// is removed again, so a failure leaves nothing behind. Returns the volume's name.
pub async fn provision<F, Fut>(
    root: &Path,
    claim: &Value,
    class: &Value,
    node: &str,
    create: F,
) -> Result<String, Error>
where
    F: FnOnce(Value) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let dir = volume_dir(root, claim);
    let made = !dir.exists();
    let directory = |source| Error::Directory { path: dir.display().to_string(), source };
    std::fs::create_dir_all(&dir).map_err(directory)?;
    // Any user of any container may write there, as k3s's local-path volumes allow.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(directory)?;
    }
    let pv = volume_for(claim, class, &dir, node);
    let name = s(&pv, "/metadata/name").to_string();
    if let Err(message) = create(pv).await {
        if made {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(Error::Create { name, message });
    }
    Ok(name)
}

/// Whether this node must reclaim `pv`: made here, Released, policy Delete, not deleting yet.
pub fn must_delete(pv: &Value, node: &str) -> bool {
    annotation(pv, storage::PROVISIONED_BY_ANNOTATION) == storage::LOCAL_PATH_PROVISIONER
        && annotation(pv, NODE_ANNOTATION) == node
        && s(pv, "/status/phase") == "Released"
        && s(pv, "/spec/persistentVolumeReclaimPolicy") == "Delete"
        && pv.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null)
}

/// Remove a volume's directory, only if it lies inside `root` (a volume names any path; only
/// what this provisioner made is ever removed).
pub fn remove_dir(root: &Path, pv: &Value) -> std::io::Result<()> {
    let path = Path::new(s(pv, "/spec/hostPath/path"));
    let inside = path.parent() == Some(root)
        && path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pvc-"));
    if !inside || !path.exists() {
        return Ok(());
    }
    std::fs::remove_dir_all(path)
}

struct Provisioner {
    client: kube::Client,
    node: String,
    root: PathBuf,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    failed: HashMap<String, Instant>,
}

/// Run this node's provisioner until `stop` turns true.
pub async fn run(
    client: kube::Client,
    node: String,
    data_dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let (claims, w1) = reflector::store();
    let (volumes, w2) = reflector::store();
    let c1 = reflector::reflector(
        w1,
        watcher(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ());
    let c2 = reflector::reflector(
        w2,
        watcher(Api::<PersistentVolume>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ());
    let mut changes = futures::stream::select(c1.boxed(), c2.boxed());
    let root = storage_root(&data_dir);
    let mut p = Provisioner { client, node, root, claims, volumes, failed: HashMap::new() };
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            Some(()) = changes.next() => {}
            _ = tick.tick() => {}
        }
        p.sync().await;
    }
}

impl Provisioner {
    async fn sync(&mut self) {
        let volumes: Vec<Value> =
            self.volumes.state().iter().filter_map(|v| serde_json::to_value(&**v).ok()).collect();
        for claim in self.claims.state() {
            let Ok(claim) = serde_json::to_value(&*claim) else { continue };
            if !wants_volume(&claim, &self.node) {
                continue;
            }
            let uid = s(&claim, "/metadata/uid").to_string();
            let name = format!("pvc-{uid}");
            if volumes.iter().any(|v| s(v, "/metadata/name") == name) {
                continue;
            }
            if self.failed.get(&uid).is_some_and(|t| t.elapsed() < RETRY) {
                continue;
            }
            match self.provision_one(&claim).await {
                Ok(()) => {
                    self.failed.remove(&uid);
                }
                Err(message) => {
                    self.failed.insert(uid, Instant::now());
                    self.event(&claim, true, "ProvisioningFailed", &message).await;
                }
            }
        }
        for pv in volumes.iter().filter(|v| must_delete(v, &self.node)) {
            let name = s(pv, "/metadata/name");
            if let Err(e) = remove_dir(&self.root, pv) {
                tracing::warn!(volume = name, error = %e, "cannot remove the volume's directory");
                continue;
            }
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(volume = name, "deleted local-path volume"),
                Err(e) => tracing::warn!(volume = name, error = %e, "cannot delete volume"),
            }
        }
    }

    async fn provision_one(&self, claim: &Value) -> Result<(), String> {
        let class_name = storage::class_of(claim);
        let classes: Api<StorageClass> = Api::all(self.client.clone());
        let class = match classes.get_opt(class_name).await {
            Ok(Some(c)) => serde_json::to_value(c).unwrap_or_default(),
            Ok(None) => {
                return Err(format!("storageclass.storage.k8s.io \"{class_name}\" not found"))
            }
            Err(e) => return Err(e.to_string()),
        };
        let key = format!("{}/{}", s(claim, "/metadata/namespace"), s(claim, "/metadata/name"));
        self.event(
            claim,
            false,
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim \"{key}\""),
        )
        .await;
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let create = |pv: Value| async move {
            let pv: PersistentVolume = serde_json::from_value(pv).map_err(|e| e.to_string())?;
            match api.create(&PostParams::default(), &pv).await {
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        };
        match provision(&self.root, claim, &class, &self.node, create).await {
            Ok(name) => {
                tracing::info!(claim = %key, volume = %name, "provisioned local-path volume");
                self.event(
                    claim,
                    false,
                    "ProvisioningSucceeded",
                    &format!("Successfully provisioned volume {name}"),
                )
                .await;
                Ok(())
            }
            Err(e) => {
                Err(format!("failed to provision volume with StorageClass \"{class_name}\": {e}"))
            }
        }
    }

    async fn event(&self, claim: &Value, warning: bool, reason: &str, message: &str) {
        let ns = s(claim, "/metadata/namespace");
        let name = s(claim, "/metadata/name");
        let now = chrono::Utc::now();
        let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let component = format!("{}_{}", storage::LOCAL_PATH_PROVISIONER, self.node);
        let event = json!({
            "metadata": {"name": format!("{name}.{:x}", now.timestamp_nanos_opt().unwrap_or_default()), "namespace": ns},
            "involvedObject": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
                "name": name, "uid": s(claim, "/metadata/uid"),
                "resourceVersion": s(claim, "/metadata/resourceVersion")},
            "reason": reason, "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": component}, "reportingComponent": storage::LOCAL_PATH_PROVISIONER,
            "reportingInstance": self.node, "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
        });
        let Ok(event) = serde_json::from_value::<Event>(event) else { return };
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, "provisioner event not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> Value {
        json!({"metadata": {"name": "data", "namespace": "default", "uid": "u1",
            "annotations": {storage::SELECTED_NODE_ANNOTATION: "n1",
                storage::STORAGE_PROVISIONER_ANNOTATION: storage::LOCAL_PATH_PROVISIONER}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "local-path"}})
    }

    fn class() -> Value {
        json!({"metadata": {"name": "local-path"}, "provisioner": storage::LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Retain"})
    }

    #[test]
    fn only_claims_selected_for_this_node_and_provisioner_are_served() {
        assert!(wants_volume(&claim(), "n1"));
        assert!(!wants_volume(&claim(), "n2"));
        let mut other = claim();
        other["metadata"]["annotations"][storage::STORAGE_PROVISIONER_ANNOTATION] =
            json!("x.dev/y");
        assert!(!wants_volume(&other, "n1"));
        let mut bound = claim();
        bound["spec"]["volumeName"] = json!("pv");
        assert!(!wants_volume(&bound, "n1"));
    }

    #[tokio::test]
    async fn a_volume_gets_its_directory_node_affinity_and_claim() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = storage_root(tmp.path());
        let made = std::sync::Mutex::new(None);
        let name = provision(&root, &claim(), &class(), "n1", |pv| {
            *made.lock().expect("lock") = Some(pv);
            async { Ok(()) }
        })
        .await
        .expect("provisioned");
        assert_eq!(name, "pvc-u1");
        let pv = made.lock().expect("lock").clone().expect("created");
        let dir = volume_dir(&root, &claim());
        assert!(dir.is_dir());
        assert_eq!(s(&pv, "/spec/hostPath/path"), dir.to_string_lossy());
        assert_eq!(s(&pv, "/spec/persistentVolumeReclaimPolicy"), "Retain");
        assert_eq!(s(&pv, "/spec/claimRef/uid"), "u1");
        assert_eq!(s(&pv, "/spec/capacity/storage"), "1Gi");
        assert!(storage::volume_fits_node(
            &pv,
            "n1",
            json!({storage::HOSTNAME_LABEL: "n1"}).as_object()
        ));
        assert!(!storage::volume_fits_node(
            &pv,
            "n2",
            json!({storage::HOSTNAME_LABEL: "n2"}).as_object()
        ));
        // Released with policy Delete: this node removes the directory.
        let mut released = pv.clone();
        released["status"] = json!({"phase": "Released"});
        released["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
        assert!(must_delete(&released, "n1") && !must_delete(&released, "n2"));
        remove_dir(&root, &released).expect("removed");
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn a_failed_create_leaves_no_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = storage_root(tmp.path());
        let err =
            provision(&root, &claim(), &class(), "n1", |_| async { Err("quota".to_string()) })
                .await
                .expect_err("fails");
        assert!(err.to_string().contains("quota"), "{err}");
        assert!(!volume_dir(&root, &claim()).exists());
    }

    #[tokio::test]
    async fn an_unwritable_disk_fails_before_any_volume_is_created() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // A file where the storage directory should be: mkdir fails as on a full or broken disk.
        let root = tmp.path().join("storage");
        std::fs::write(&root, b"not a directory").expect("write");
        let called = std::sync::atomic::AtomicBool::new(false);
        let err = provision(&root, &claim(), &class(), "n1", |_| {
            called.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok(()) }
        })
        .await
        .expect_err("fails");
        assert!(matches!(err, Error::Directory { .. }), "{err}");
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst), "no volume without a directory");
    }

    #[test]
    fn only_directories_under_the_root_are_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("keep");
        std::fs::create_dir_all(&outside).expect("mkdir");
        let pv = json!({"spec": {"hostPath": {"path": outside.to_string_lossy()}}});
        remove_dir(&storage_root(tmp.path()), &pv).expect("no error");
        assert!(outside.exists());
    }
}
