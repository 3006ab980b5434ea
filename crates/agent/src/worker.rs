//! Pod workers: one task per pod bound to the node, holding all of Kubernetes' pod policy.
//!
//! A worker takes its pod from the sandbox (host ports) through its init containers, in order,
//! to its containers; restarts them by `restartPolicy` with kubelet's back-off (10 s doubling
//! to 5 min: the first restart is immediate, later ones wait, shown as `CrashLoopBackOff`);
//! runs probes and hooks; stops everything gracefully when the pod is deleted (preStop,
//! SIGTERM, the grace period, SIGKILL) and then removes the pod from the API; and reports
//! status (phase, conditions, container states) and Events as kubelet does.
//!
//! Workers are level-triggered: after every change (a new pod spec, a container exit, a probe
//! result, a timer) [`Worker::sync`] looks at the whole pod again. A worker that starts after
//! an agent restart is given the containers the runtime still has and adopts them, so nothing
//! runs twice.

use crate::env;
use crate::events::{Recorder, Subject};
use crate::probe::{self, Kind, Report};
use crate::runtime::*;
use crate::volumes::PodVolumes;
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kumo_api::quantity;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Where the agent records the host port of every declared container port.
pub use kumo_api::hostports::ANNOTATION as HOST_PORTS_ANNOTATION;

/// What all workers of a node share.
pub struct Shared {
    /// The API client.
    pub client: kube::Client,
    /// The runtime.
    pub runtime: Arc<dyn Runtime>,
    /// The node's name.
    pub node_name: String,
    /// The node's IP (also every pod's IP in host network mode).
    pub node_ip: String,
    /// Where logs go: `<root>/pods/<ns>_<pod>_<uid>/<container>/<attempt>.log`.
    pub root: PathBuf,
    /// Event writer.
    pub recorder: Recorder,
    /// First restart delay after the immediate one (kubelet: 10 s).
    pub backoff_initial: Duration,
    /// Longest restart delay (kubelet: 300 s).
    pub backoff_max: Duration,
    /// Node allocatable CPU (millicores) and memory (bytes).
    pub allocatable: (i64, i64),
    /// Host ports handed out to pods of this node.
    pub ports: Mutex<HashSet<u16>>,
    /// The probes' HTTP client.
    pub http: reqwest::Client,
    /// What the agent's endpoint needs to know of every pod, by (namespace, name).
    pub views: Mutex<HashMap<(String, String), PodView>>,
}

/// A pod as the agent's endpoint sees it.
#[derive(Debug, Clone, Default)]
pub struct PodView {
    /// The pod.
    pub pod: Option<PodRef>,
    /// By container name.
    pub containers: HashMap<String, ContainerView>,
}

/// A container as the agent's endpoint sees it.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    /// The latest run.
    pub current: Option<ContainerId>,
    /// The run before it.
    pub previous: Option<ContainerId>,
    /// Whether the latest run is running.
    pub running: bool,
    /// Why it is not running yet.
    pub waiting: Option<String>,
}

impl crate::server::NodeView for Shared {
    fn node_name(&self) -> String {
        self.node_name.clone()
    }

    fn find_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<ContainerId, String> {
        let views = self.views.lock().map_err(|_| "agent state unavailable".to_string())?;
        let view = views
            .get(&(namespace.to_string(), pod.to_string()))
            .ok_or_else(|| format!("pod \"{pod}\" is not running on node {}", self.node_name))?;
        let c = view.containers.get(container).ok_or_else(|| {
            format!("container \"{container}\" in pod \"{pod}\" is not available")
        })?;
        if previous {
            return c.previous.clone().ok_or_else(|| {
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
            });
        }
        c.current.clone().ok_or_else(|| {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: {}",
                c.waiting.as_deref().unwrap_or("ContainerCreating")
            )
        })
    }

    fn pods(&self) -> Vec<(PodRef, Vec<(String, ContainerId)>)> {
        let Ok(views) = self.views.lock() else { return Vec::new() };
        views
            .values()
            .filter_map(|v| {
                let pod = v.pod.clone()?;
                let running = v
                    .containers
                    .iter()
                    .filter(|(_, c)| c.running)
                    .filter_map(|(n, c)| Some((n.clone(), c.current.clone()?)))
                    .collect::<Vec<_>>();
                // Like metrics-server: a pod with nothing running has no usage to show.
                (!running.is_empty()).then_some((pod, running))
            })
            .collect()
    }

    fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }
}

/// One run of a container.
#[derive(Debug, Clone)]
struct Run {
    /// `None` when it never started (a start error).
    id: Option<ContainerId>,
    attempt: u32,
    started_at: DateTime<Utc>,
    exit: Option<Exit>,
}

/// kubelet's per-container back-off.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    delay: Duration,
    updated: Instant,
}

/// The state of one container of the pod.
#[derive(Default)]
struct Slot {
    current: Option<Run>,
    previous: Option<Run>,
    /// Why it is not running: (reason, message).
    waiting: Option<(String, String)>,
    backoff: Option<Backoff>,
    /// Not before this instant (back-off, or a retry of a config error).
    not_before: Option<Instant>,
    /// Whether `BackOff` was reported for the current wait.
    backoff_reported: bool,
    started: bool,
    /// Started at least once (a sidecar that did no longer holds back later init containers).
    initialized: bool,
    ready: bool,
    image_id: String,
    probes: Vec<JoinHandle<()>>,
}

impl Slot {
    fn running(&self) -> bool {
        self.current.as_ref().is_some_and(|r| r.id.is_some() && r.exit.is_none())
    }
    fn exit(&self) -> Option<&Exit> {
        self.current.as_ref().and_then(|r| r.exit.as_ref())
    }
    fn succeeded(&self) -> bool {
        self.exit().is_some_and(|e| e.exit_code == 0)
    }
    fn next_attempt(&self) -> u32 {
        self.current.as_ref().map_or(0, |r| if r.id.is_some() { r.attempt + 1 } else { r.attempt })
    }
    fn restart_count(&self) -> u32 {
        self.current.as_ref().map_or(0, |r| r.attempt)
    }
    fn stop_probes(&mut self) {
        for p in self.probes.drain(..) {
            p.abort();
        }
    }
}

/// What happened to a container, from its waiter task.
struct Exited {
    name: String,
    attempt: u32,
    exit: Exit,
}

/// Whether the worker goes on.
enum Next {
    /// Sync again at this instant (or on the next event).
    At(Option<Instant>),
    /// The pod is gone and cleaned up.
    Done,
}

/// The worker of one pod.
pub struct Worker {
    shared: Arc<Shared>,
    pod: Pod,
    /// Removed from the API (force delete): stop now.
    gone: bool,
    pref: PodRef,
    sandbox: Option<SandboxId>,
    ports: Vec<(String, PortMapping)>,
    slots: HashMap<String, Slot>,
    start_time: String,
    transitions: HashMap<String, (String, String)>,
    last_status: Option<Value>,
    failed_init: bool,
    exits: (mpsc::UnboundedSender<Exited>, mpsc::UnboundedReceiver<Exited>),
    probes: (mpsc::UnboundedSender<Report>, mpsc::UnboundedReceiver<Report>),
    terminated: bool,
    /// The pod's volumes on this node.
    volumes: PodVolumes,
    /// The last `FailedMount` reported, and when (repeats are reported every 30 s).
    mount_error: Option<(String, Instant)>,
}

fn now_string() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A `metav1.Time` as its RFC 3339 text.
fn k8s_time<T: serde::Serialize>(t: &T) -> Option<String> {
    serde_json::to_value(t).ok()?.as_str().map(String::from)
}

fn time_string(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Worker {
    /// A worker for `pod`, adopting `existing` containers of it that the runtime still has.
    pub fn new(shared: Arc<Shared>, pod: Pod, existing: Vec<ContainerInfo>) -> Worker {
        let meta = &pod.metadata;
        let pref = PodRef {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        };
        let status = pod.status.as_ref();
        let start_time = status
            .and_then(|s| s.start_time.as_ref())
            .and_then(k8s_time)
            .unwrap_or_else(now_string);
        let transitions = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| {
                let t = c.last_transition_time.as_ref().and_then(k8s_time);
                (c.type_.clone(), (c.status.clone(), t.unwrap_or_else(now_string)))
            })
            .collect();
        let volumes = PodVolumes::new(shared.client.clone(), &shared.root, &pref);
        let mut w = Worker {
            volumes,
            mount_error: None,
            shared,
            pod,
            gone: false,
            pref,
            sandbox: None,
            ports: Vec::new(),
            slots: HashMap::new(),
            start_time,
            transitions,
            last_status: None,
            failed_init: false,
            exits: mpsc::unbounded_channel(),
            probes: mpsc::unbounded_channel(),
            terminated: false,
        };
        w.adopt(existing);
        w
    }

    /// The pod's init containers and containers (copies: the pod may change under a sync).
    fn spec_containers(&self) -> (Vec<Container>, Vec<Container>) {
        let spec = self.pod.spec.as_ref();
        let init = spec.and_then(|s| s.init_containers.clone()).unwrap_or_default();
        (init, spec.map(|s| s.containers.clone()).unwrap_or_default())
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn subject(&self, container: &str) -> Subject {
        Subject {
            namespace: self.pref.namespace.clone(),
            name: self.pref.name.clone(),
            uid: self.pref.uid.clone(),
            field_path: if container.is_empty() {
                String::new()
            } else if self.is_init(container) {
                format!("spec.initContainers{{{container}}}")
            } else {
                format!("spec.containers{{{container}}}")
            },
        }
    }

    fn is_init(&self, name: &str) -> bool {
        self.spec_containers().0.iter().any(|c| c.name == name)
    }

    /// Take over the runs an earlier agent started: the newest attempt of each container is
    /// current, the one before it previous, older ones are removed.
    fn adopt(&mut self, mut existing: Vec<ContainerInfo>) {
        existing.sort_by_key(|c| std::cmp::Reverse(c.attempt));
        let mut stale = Vec::new();
        for c in existing {
            let slot = self.slots.entry(c.name.clone()).or_default();
            let run = Run {
                id: Some(c.id.clone()),
                attempt: c.attempt,
                started_at: match &c.state {
                    ContainerState::Running { started_at } => *started_at,
                    ContainerState::Exited(e) => e.started_at,
                    ContainerState::Unknown => Utc::now(),
                },
                exit: match c.state {
                    ContainerState::Exited(e) => Some(e),
                    ContainerState::Running { .. } => None,
                    ContainerState::Unknown => continue,
                },
            };
            if slot.current.is_none() {
                slot.current = Some(run);
            } else if slot.previous.is_none() {
                slot.previous = Some(run);
            } else {
                stale.push(c.id);
            }
        }
        let runtime = self.shared.runtime.clone();
        tokio::spawn(async move {
            for id in stale {
                let _ = runtime.remove_container(&id).await;
            }
        });
        // Ports recorded on the pod are the ones the adopted processes listen on.
        if let Some(ports) = self.recorded_ports() {
            if let Ok(mut used) = self.shared.ports.lock() {
                used.extend(ports.iter().map(|(_, p)| p.host_port));
            }
            self.ports = ports;
        }
        let running: Vec<(String, u32, ContainerId)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.running())
            .filter_map(|(n, s)| {
                let r = s.current.as_ref()?;
                Some((n.clone(), r.attempt, r.id.clone()?))
            })
            .collect();
        for (name, attempt, id) in running {
            self.watch_exit(&name, attempt, &id);
            self.start_probes(&name, attempt, &id, true);
        }
    }

    fn recorded_ports(&self) -> Option<Vec<(String, PortMapping)>> {
        let text = self.pod.metadata.annotations.as_ref()?.get(HOST_PORTS_ANNOTATION)?;
        let recorded = kumo_api::hostports::parse(text);
        if recorded.is_empty() {
            return None;
        }
        let (init, main) = self.spec_containers();
        let mut out = Vec::new();
        for c in init.iter().chain(&main) {
            for p in c.ports.iter().flatten() {
                let host = *recorded.get(&kumo_api::hostports::key(&c.name, p.container_port))?;
                out.push((c.name.clone(), mapping(p, host)));
            }
        }
        Some(out)
    }

    /// Drive the pod until it is gone. `updates` carries the latest pod (`None`: deleted).
    pub async fn run(mut self, mut updates: watch::Receiver<Option<Pod>>) {
        loop {
            let next = self.sync().await;
            let at = match next {
                Next::Done => break,
                Next::At(at) => at,
            };
            // A status write that failed (the API briefly away) is retried within a second.
            let at = if self.publish().await {
                at
            } else {
                let retry = Instant::now() + Duration::from_secs(1);
                Some(at.map_or(retry, |a| a.min(retry)))
            };
            let sleep = async {
                match at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = updates.changed() => {
                    match changed {
                        Ok(()) => match updates.borrow_and_update().clone() {
                            Some(pod) => self.pod = pod,
                            None => self.gone = true,
                        },
                        // The agent is stopping: leave the containers running.
                        Err(_) => {
                            self.stop_all_probes();
                            return;
                        }
                    }
                }
                Some(exited) = self.exits.1.recv() => self.on_exit(exited),
                Some(report) = self.probes.1.recv() => self.on_probe(report),
                Some(event) = self.volumes.next_event() => self.volumes.on_event(event),
                _ = sleep => {}
            }
            self.volumes.drain_events();
            // Take everything else that is already there before syncing again.
            while let Ok(e) = self.exits.1.try_recv() {
                self.on_exit(e);
            }
            while let Ok(r) = self.probes.1.try_recv() {
                self.on_probe(r);
            }
        }
        self.forget_view();
    }

    fn stop_all_probes(&mut self) {
        for slot in self.slots.values_mut() {
            slot.stop_probes();
        }
    }

    fn on_exit(&mut self, e: Exited) {
        let Some(slot) = self.slots.get_mut(&e.name) else { return };
        let Some(run) = slot.current.as_mut() else { return };
        if run.attempt != e.attempt || run.exit.is_some() {
            return;
        }
        run.exit = Some(e.exit);
        slot.started = false;
        slot.ready = false;
        slot.stop_probes();
    }

    fn on_probe(&mut self, report: Report) {
        match report {
            Report::Failed { container, attempt, kind, message } => {
                if self.current_attempt(&container) == Some(attempt) {
                    let msg = format!("{} probe failed: {message}", kind.title());
                    self.shared.recorder.warning(&self.subject(&container), "Unhealthy", msg);
                }
            }
            Report::Result { container, attempt, kind, ok } => {
                if self.current_attempt(&container) != Some(attempt) {
                    return;
                }
                match (kind, ok) {
                    (Kind::Startup, true) => {
                        let no_readiness = self.readiness_probe(&container).is_none();
                        if let Some(slot) = self.slots.get_mut(&container) {
                            slot.started = true;
                            slot.initialized = true;
                            slot.ready = no_readiness;
                        }
                        let id =
                            self.slots.get(&container).and_then(|s| s.current.as_ref()?.id.clone());
                        if let Some(id) = id {
                            self.start_probes(&container, attempt, &id, false);
                        }
                    }
                    (Kind::Readiness, ok) => {
                        if let Some(slot) = self.slots.get_mut(&container) {
                            slot.ready = ok && slot.started;
                        }
                    }
                    (Kind::Startup | Kind::Liveness, false) => {
                        self.kill_for_probe(&container, kind)
                    }
                    (Kind::Liveness, true) => {}
                }
            }
        }
    }

    fn current_attempt(&self, name: &str) -> Option<u32> {
        let slot = self.slots.get(name)?;
        slot.running().then(|| slot.current.as_ref().map(|r| r.attempt)).flatten()
    }

    fn container_spec(&self, name: &str) -> Option<Container> {
        let (init, main) = self.spec_containers();
        init.into_iter().chain(main).find(|c| c.name == name)
    }

    fn readiness_probe(&self, name: &str) -> Option<k8s_openapi::api::core::v1::Probe> {
        self.container_spec(name)?.readiness_probe
    }

    fn grace_period(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    fn stop_sidecars(&mut self) {
        let grace = self.grace_period();
        let (init, _) = self.spec_containers();
        for c in init.iter().filter(|c| is_sidecar(c)) {
            let Some(slot) = self.slots.get_mut(&c.name) else { continue };
            slot.stop_probes();
            let running = slot.running();
            if let Some(id) = slot.current.as_ref().filter(|_| running).and_then(|r| r.id.clone()) {
                let runtime = self.shared.runtime.clone();
                tokio::spawn(async move {
                    let _ = runtime.stop_container(&id, grace).await;
                });
            }
        }
    }

    fn kill_for_probe(&mut self, name: &str, kind: Kind) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        slot.stop_probes();
        let Some(id) = slot.current.as_ref().and_then(|r| r.id.clone()) else { return };
        let what = if kind == Kind::Startup { "startup" } else { "liveness" };
        let msg = format!("Container {name} failed {what} probe, will be restarted");
        self.shared.recorder.normal(&self.subject(name), "Killing", msg);
        let grace = self.grace_period();
        let runtime = self.shared.runtime.clone();
        // The exit comes back through the waiter like any other.
        tokio::spawn(async move {
            let _ = runtime.stop_container(&id, grace).await;
        });
    }

    fn watch_exit(&self, name: &str, attempt: u32, id: &ContainerId) {
        let runtime = self.shared.runtime.clone();
        let tx = self.exits.0.clone();
        let (name, id) = (name.to_string(), id.clone());
        tokio::spawn(async move {
            let exit = match runtime.wait(&id).await {
                Ok(exit) => exit,
                Err(e) => Exit {
                    exit_code: 137,
                    signal: None,
                    reason: "Error".into(),
                    message: Some(format!("the runtime lost the container: {e}")),
                    started_at: Utc::now(),
                    finished_at: Utc::now(),
                },
            };
            let _ = tx.send(Exited { name, attempt, exit });
        });
    }

    /// Start the probes of a running container: the startup probe alone until it succeeds
    /// (`after_startup` false), then liveness and readiness.
    fn start_probes(&mut self, name: &str, attempt: u32, id: &ContainerId, fresh: bool) {
        let Some(spec) = self.container_spec(name) else { return };
        let target = probe::Target {
            container: name.to_string(),
            attempt,
            id: id.clone(),
            host: self.shared.node_ip.clone(),
            ports: self.ports.iter().filter(|(c, _)| c == name).map(|(_, p)| p.clone()).collect(),
            runtime: self.shared.runtime.clone(),
            http: self.shared.http.clone(),
        };
        let mut handles = Vec::new();
        let spawn = |kind: Kind, p: k8s_openapi::api::core::v1::Probe| {
            tokio::spawn(probe::run(kind, p, target.clone(), self.probes.0.clone()))
        };
        let startup_pending = fresh && spec.startup_probe.is_some();
        if startup_pending {
            if let Some(p) = spec.startup_probe.clone() {
                handles.push(spawn(Kind::Startup, p));
            }
        } else {
            if let Some(p) = spec.liveness_probe.clone() {
                handles.push(spawn(Kind::Liveness, p));
            }
            if let Some(p) = spec.readiness_probe.clone() {
                handles.push(spawn(Kind::Readiness, p));
            }
        }
        if let Some(slot) = self.slots.get_mut(name) {
            if fresh {
                slot.started = !startup_pending;
                slot.initialized |= slot.started;
                slot.ready = slot.started && spec.readiness_probe.is_none();
            }
            slot.probes.extend(handles);
        }
    }

    /// Look at the whole pod and do the next thing.
    async fn sync(&mut self) -> Next {
        if self.gone || self.pod.metadata.deletion_timestamp.is_some() {
            self.terminate().await;
            return Next::Done;
        }
        if self.terminated {
            return Next::At(None);
        }
        if self.sandbox.is_none() {
            if let Err(e) = self.make_sandbox().await {
                tracing::warn!("pod {}/{}: sandbox: {e}", self.pref.namespace, self.pref.name);
                self.shared.recorder.warning(
                    &self.subject(""),
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                return Next::At(Some(Instant::now() + Duration::from_secs(2)));
            }
        }
        if let Some(wait) = self.sync_volumes().await {
            return Next::At(wait);
        }
        let (init, main) = self.spec_containers();
        let policy = self.restart_policy();
        // Init containers, one at a time, in order. A sidecar (an init container with
        // `restartPolicy: Always`) lets the next one start once it has started, and keeps
        // running beside the containers.
        let mut wake: Option<Instant> = None;
        for c in &init {
            let slot = self.slots.entry(c.name.clone()).or_default();
            if is_sidecar(c) {
                if slot.running() && slot.initialized {
                    continue;
                }
                if !slot.running() {
                    if let Some(at) = self.start_if_due(c).await {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                }
                let slot = self.slots.entry(c.name.clone()).or_default();
                if slot.initialized {
                    continue;
                }
                return Next::At(wake);
            }
            if slot.succeeded() {
                continue;
            }
            if slot.running() {
                return Next::At(None);
            }
            let failed = slot.current.is_some()
                || slot.waiting.as_ref().is_some_and(|w| w.0 == "RunContainerError");
            if failed && policy == "Never" && slot.exit().is_some() {
                self.failed_init = true;
                self.terminated = true;
                return Next::At(None);
            }
            return Next::At(self.start_if_due(c).await);
        }
        for c in &main {
            let slot = self.slots.entry(c.name.clone()).or_default();
            if slot.running() {
                continue;
            }
            let restart = match slot.exit() {
                None => true,
                Some(e) => policy == "Always" || (policy == "OnFailure" && e.exit_code != 0),
            };
            if !restart {
                continue;
            }
            if let Some(at) = self.start_if_due(c).await {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        if matches!(self.phase(), "Succeeded" | "Failed") {
            self.terminated = true;
            // The containers are done: their sidecars stop too.
            self.stop_sidecars();
        }
        Next::At(wake)
    }

    /// Set up and refresh the pod's volumes. Returns `Some(when to look again)` when containers
    /// must not start yet: a volume is not ready and nothing of the pod has run (a pod already
    /// running keeps its volumes as they were, as kubelet does).
    async fn sync_volumes(&mut self) -> Option<Option<Instant>> {
        let shared = self.shared.clone();
        let result = self.volumes.sync(&self.pod, &shared.node_ip, shared.allocatable).await;
        let started = self.slots.values().any(|s| s.current.is_some());
        match result {
            Ok(true) => {
                self.mount_error = None;
                None
            }
            // Waiting for an object's watch: its first event wakes the worker.
            Ok(false) if !started => Some(Some(Instant::now() + Duration::from_secs(5))),
            Ok(false) => None,
            Err(e) => {
                let message = e.to_string();
                let repeat = self
                    .mount_error
                    .as_ref()
                    .is_some_and(|(m, at)| *m == message && at.elapsed() < Duration::from_secs(30));
                if !repeat {
                    tracing::info!("pod {}/{}: {message}", self.pref.namespace, self.pref.name);
                    self.shared.recorder.warning(&self.subject(""), "FailedMount", message.clone());
                    self.mount_error = Some((message, Instant::now()));
                }
                (!started).then(|| Some(Instant::now() + Duration::from_secs(2)))
            }
        }
    }

    /// Start the container unless it must wait; returns when to look again.
    async fn start_if_due(&mut self, c: &Container) -> Option<Instant> {
        let now = Instant::now();
        let initial = self.shared.backoff_initial;
        let max = self.shared.backoff_max;
        let pod_desc = format!("{}_{}({})", self.pref.name, self.pref.namespace, self.pref.uid);
        let subject = self.subject(&c.name);
        let slot = self.slots.entry(c.name.clone()).or_default();
        if let Some(at) = slot.not_before {
            if now < at {
                return Some(at);
            }
        }
        // kubelet's back-off: a container that ended is restarted at once the first time;
        // after that it waits 10 s, 20 s, … up to 5 min; ten quiet minutes reset it.
        if let Some(exit) = slot.exit() {
            let finished =
                Instant::now() - (Utc::now() - exit.finished_at).to_std().unwrap_or_default();
            match slot.backoff {
                Some(b) if finished.saturating_duration_since(b.updated) <= 2 * max => {
                    let due = finished + b.delay;
                    if now < due {
                        if slot.waiting.as_ref().is_none_or(|w| w.0 != "RunContainerError") {
                            slot.waiting = Some((
                                "CrashLoopBackOff".into(),
                                format!(
                                    "back-off {} restarting failed container={} pod={pod_desc}",
                                    fmt_duration(b.delay),
                                    c.name
                                ),
                            ));
                        }
                        if !slot.backoff_reported {
                            slot.backoff_reported = true;
                            let msg = format!(
                                "Back-off restarting failed container {} in pod {pod_desc}",
                                c.name
                            );
                            self.shared.recorder.warning(&subject, "BackOff", msg);
                        }
                        return Some(due);
                    }
                    slot.backoff = Some(Backoff { delay: (b.delay * 2).min(max), updated: now });
                }
                _ => slot.backoff = Some(Backoff { delay: initial, updated: now }),
            }
        }
        slot.backoff_reported = false;
        self.start(c).await
    }

    async fn make_sandbox(&mut self) -> Result<(), String> {
        if self.ports.is_empty() {
            let ports = self.allocate_ports()?;
            if !ports.is_empty() {
                let recorded: BTreeMap<String, u16> = ports
                    .iter()
                    .map(|(c, p)| {
                        (kumo_api::hostports::key(c, i32::from(p.container_port)), p.host_port)
                    })
                    .collect();
                let text = serde_json::to_string(&recorded).map_err(|e| e.to_string())?;
                let patch = json!({"metadata": {"annotations": {HOST_PORTS_ANNOTATION: text}}});
                let api: Api<Pod> =
                    Api::namespaced(self.shared.client.clone(), &self.pref.namespace);
                api.patch(&self.pref.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| format!("cannot record host ports: {e}"))?;
            }
            self.ports = ports;
        }
        let hostname = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.pref.name.clone());
        let config = SandboxConfig {
            pod: self.pref.clone(),
            hostname,
            ports: self.ports.iter().map(|(_, p)| p.clone()).collect(),
        };
        let id = self.shared.runtime.create_sandbox(&config).await.map_err(|e| e.to_string())?;
        self.sandbox = Some(id);
        Ok(())
    }

    /// A free host port for every declared container port (`hostPort` when the manifest asks
    /// for one).
    fn allocate_ports(&self) -> Result<Vec<(String, PortMapping)>, String> {
        let (init, main) = self.spec_containers();
        let mut used = self.shared.ports.lock().map_err(|_| "port table poisoned".to_string())?;
        let mut out = Vec::new();
        for c in init.iter().chain(&main) {
            for p in c.ports.iter().flatten() {
                let host = match p.host_port.filter(|h| *h > 0) {
                    Some(h) => u16::try_from(h).map_err(|_| format!("invalid hostPort {h}"))?,
                    None => free_port(&used, p.protocol.as_deref() == Some("UDP"))?,
                };
                used.insert(host);
                out.push((c.name.clone(), mapping(p, host)));
            }
        }
        Ok(out)
    }

    fn release_ports(&mut self) {
        if let Ok(mut used) = self.shared.ports.lock() {
            for (_, p) in &self.ports {
                used.remove(&p.host_port);
            }
        }
        self.ports.clear();
    }

    /// Fetch what the container's environment reads.
    async fn sources(&self, c: &Container) -> Result<env::Sources, String> {
        let (cms, secrets) = env::references(c);
        let client = &self.shared.client;
        let ns = &self.pref.namespace;
        let mut sources = env::Sources::default();
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        for name in cms {
            let cm = cm_api.get_opt(&name).await.map_err(|e| e.to_string())?;
            let data = cm.map(|cm| {
                let mut data = cm.data.unwrap_or_default();
                for (k, v) in cm.binary_data.unwrap_or_default() {
                    data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                }
                data
            });
            sources.config_maps.insert(name, data);
        }
        let secret_api: Api<Secret> = Api::namespaced(client.clone(), ns);
        for name in secrets {
            let s = secret_api.get_opt(&name).await.map_err(|e| e.to_string())?;
            let data = s.map(|s| {
                let mut data: BTreeMap<String, String> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, ByteString(v))| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                data.extend(s.string_data.unwrap_or_default());
                data
            });
            sources.secrets.insert(name, data);
        }
        let links = self.pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        let svc_api: Api<Service> = Api::namespaced(client.clone(), ns);
        if links {
            sources.services =
                svc_api.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
        }
        if ns != "default" || !links {
            let default: Api<Service> = Api::namespaced(client.clone(), "default");
            if let Some(k) = default.get_opt("kubernetes").await.map_err(|e| e.to_string())? {
                sources.services.push(k);
            }
        }
        Ok(sources)
    }

    /// Start one container now; returns when to look again if it could not start.
    async fn start(&mut self, c: &Container) -> Option<Instant> {
        let name = c.name.clone();
        let subject = self.subject(&name);
        let recorder = self.shared.recorder.clone();
        let image = c.image.clone().unwrap_or_default();
        let retry = Some(Instant::now() + Duration::from_secs(2));
        // The image.
        let image_id = match self.shared.runtime.ensure_image(&image).await {
            Ok(id) => {
                recorder.normal(
                    &subject,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                id
            }
            Err(RuntimeError::ImageNotFound(msg)) => {
                let slot = self.slots.entry(name.clone()).or_default();
                let first = slot
                    .waiting
                    .as_ref()
                    .is_none_or(|w| w.0 != "ErrImagePull" && w.0 != "ImagePullBackOff");
                let delay = slot.backoff.map_or(self.shared.backoff_initial, |b| {
                    (b.delay * 2).min(self.shared.backoff_max)
                });
                if first {
                    recorder.warning(
                        &subject,
                        "Failed",
                        format!("Failed to pull image \"{image}\": {msg}"),
                    );
                    slot.waiting = Some(("ErrImagePull".into(), msg));
                    slot.backoff = Some(Backoff {
                        delay: self.shared.backoff_initial,
                        updated: Instant::now(),
                    });
                    slot.not_before = Some(Instant::now() + Duration::from_millis(500));
                } else {
                    recorder.normal(
                        &subject,
                        "BackOff",
                        format!("Back-off pulling image \"{image}\""),
                    );
                    slot.waiting = Some((
                        "ImagePullBackOff".into(),
                        format!("Back-off pulling image \"{image}\": {msg}"),
                    ));
                    slot.backoff = Some(Backoff { delay, updated: Instant::now() });
                    slot.not_before = Some(Instant::now() + delay);
                }
                return slot.not_before;
            }
            Err(e) => {
                let slot = self.slots.entry(name.clone()).or_default();
                slot.waiting = Some(("ErrImagePull".into(), e.to_string()));
                slot.not_before = retry;
                return retry;
            }
        };
        // The environment.
        let sources = match self.sources(c).await {
            Ok(s) => s,
            Err(e) => {
                let slot = self.slots.entry(name.clone()).or_default();
                slot.waiting = Some(("ContainerCreating".into(), e));
                slot.not_before = retry;
                return retry;
            }
        };
        let ports: Vec<PortMapping> =
            self.ports.iter().filter(|(n, _)| *n == name).map(|(_, p)| p.clone()).collect();
        let inputs = env::Inputs {
            pod: &self.pod,
            container: c,
            node_ip: &self.shared.node_ip,
            ports: &ports,
            allocatable: self.shared.allocatable,
            default_path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        };
        let env = match env::build(&inputs, &sources) {
            Ok(env) => env,
            Err(e) => {
                recorder.warning(&subject, "Failed", format!("Error: {e}"));
                let slot = self.slots.entry(name.clone()).or_default();
                slot.waiting = Some(("CreateContainerConfigError".into(), e.0));
                slot.not_before = retry;
                return retry;
            }
        };
        let mounts = match self.volumes.mounts(c, &env) {
            Ok(m) => m,
            Err(e) => {
                recorder.warning(&subject, "Failed", format!("Error: {e}"));
                let slot = self.slots.entry(name.clone()).or_default();
                slot.waiting = Some(("CreateContainerConfigError".into(), e));
                slot.not_before = retry;
                return retry;
            }
        };
        let slot = self.slots.entry(name.clone()).or_default();
        let attempt = slot.next_attempt();
        let config = ContainerConfig {
            pod: self.pref.clone(),
            name: name.clone(),
            attempt,
            image: image.clone(),
            command: env::expand_all(c.command.as_deref().unwrap_or_default(), &env),
            args: env::expand_all(c.args.as_deref().unwrap_or_default(), &env),
            env,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            limits: limits(c),
            log_path: self
                .pref
                .log_dir(&self.shared.root)
                .join(&name)
                .join(format!("{attempt}.log")),
            ports,
            mounts,
        };
        let Some(sandbox) = self.sandbox.clone() else { return retry };
        let pod_subject = self.subject("");
        let started = self.shared.runtime.start_container(&sandbox, &config).await;
        let slot = self.slots.entry(name.clone()).or_default();
        slot.not_before = None;
        slot.image_id = image_id;
        let id = match started {
            Ok(id) => id,
            Err(RuntimeError::Mount(message)) => {
                // The host refused the container's mounts: it has not run, the pod waits.
                let message = format!("MountVolume.SetUp failed: {message}");
                recorder.warning(&pod_subject, "FailedMount", message.clone());
                slot.waiting = Some(("ContainerCreating".into(), message));
                slot.not_before = Some(Instant::now() + Duration::from_secs(10));
                return slot.not_before;
            }
            Err(e) => {
                let message = e.to_string();
                recorder.warning(&subject, "Failed", format!("Error: {message}"));
                let now = Utc::now();
                let run = Run {
                    id: None,
                    attempt,
                    started_at: now,
                    exit: Some(Exit {
                        exit_code: 128,
                        signal: None,
                        reason: "StartError".into(),
                        message: Some(message.clone()),
                        started_at: now,
                        finished_at: now,
                    }),
                };
                if slot.current.as_ref().is_some_and(|r| r.id.is_some()) {
                    slot.previous = slot.current.take();
                }
                slot.current = Some(run);
                slot.waiting = Some(("RunContainerError".into(), message));
                return Some(Instant::now());
            }
        };
        recorder.normal(&subject, "Created", format!("Created container: {name}"));
        recorder.normal(&subject, "Started", format!("Started container {name}"));
        // Keep the run before this one (for `logs --previous`); remove the one before that.
        let old = if slot.current.as_ref().is_some_and(|r| r.id.is_some()) {
            let old = slot.previous.take();
            slot.previous = slot.current.take();
            old
        } else {
            None
        };
        if let Some(old_id) = old.and_then(|r| r.id) {
            let runtime = self.shared.runtime.clone();
            tokio::spawn(async move {
                let _ = runtime.remove_container(&old_id).await;
            });
        }
        slot.current =
            Some(Run { id: Some(id.clone()), attempt, started_at: Utc::now(), exit: None });
        slot.waiting = None;
        self.watch_exit(&name, attempt, &id);
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            if let Err(e) = self.run_hook(&name, &id, &hook, Duration::from_secs(30)).await {
                let msg = format!("PostStartHook failed: {e}");
                recorder.warning(&subject, "FailedPostStartHook", msg);
                let _ = self.shared.runtime.stop_container(&id, self.grace_period()).await;
                return None;
            }
        }
        self.start_probes(&name, attempt, &id, true);
        None
    }

    /// Run a lifecycle hook (exec, or httpGet against the pod).
    async fn run_hook(
        &self,
        name: &str,
        id: &ContainerId,
        hook: &k8s_openapi::api::core::v1::LifecycleHandler,
        timeout: Duration,
    ) -> Result<(), String> {
        if let Some(sleep) = &hook.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
            return Ok(());
        }
        let probe = k8s_openapi::api::core::v1::Probe {
            exec: hook.exec.clone(),
            http_get: hook.http_get.clone(),
            tcp_socket: hook.tcp_socket.clone(),
            ..Default::default()
        };
        let target = probe::Target {
            container: name.to_string(),
            attempt: 0,
            id: id.clone(),
            host: self.shared.node_ip.clone(),
            ports: self.ports.iter().filter(|(c, _)| c == name).map(|(_, p)| p.clone()).collect(),
            runtime: self.shared.runtime.clone(),
            http: self.shared.http.clone(),
        };
        probe::attempt(&probe, &target, timeout).await
    }

    /// Graceful termination: preStop hooks and SIGTERM within the grace period, then SIGKILL;
    /// then the pod leaves the API and the runtime forgets it.
    async fn terminate(&mut self) {
        self.stop_all_probes();
        // A pod removed from the API without grace (force delete) still gets a moment.
        let grace = if self.gone { Duration::from_secs(2) } else { self.grace_period() };
        let deadline = Instant::now() + grace;
        let running: Vec<(String, ContainerId)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.running())
            .filter_map(|(n, s)| Some((n.clone(), s.current.as_ref()?.id.clone()?)))
            .collect();
        let mut stops = Vec::new();
        for (name, id) in running {
            let hook =
                self.container_spec(&name).and_then(|c| c.lifecycle).and_then(|l| l.pre_stop);
            self.shared.recorder.normal(
                &self.subject(&name),
                "Killing",
                format!("Stopping container {name}"),
            );
            let runtime = self.shared.runtime.clone();
            let hook_run = match hook {
                Some(h) if !self.gone => {
                    let this = self.hook_runner(&name, &id);
                    Some(async move { this.run(&h, deadline).await })
                }
                _ => None,
            };
            stops.push(async move {
                if let Some(h) = hook_run {
                    h.await;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = runtime.stop_container(&id, left).await;
            });
        }
        futures::future::join_all(stops).await;
        // Record the final states for the status.
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            let Some(id) = self.slots.get(&name).and_then(|s| s.current.as_ref()?.id.clone())
            else {
                continue;
            };
            if let Ok(ContainerState::Exited(exit)) = self.shared.runtime.container_state(&id).await
            {
                if let Some(run) = self.slots.get_mut(&name).and_then(|s| s.current.as_mut()) {
                    run.exit.get_or_insert(exit);
                }
            }
            if let Some(slot) = self.slots.get_mut(&name) {
                slot.ready = false;
                slot.started = false;
            }
        }
        // Clean the node before the pod leaves the API: once `kubectl delete` returns, nothing
        // of the pod (processes, state, logs) is left behind.
        if let Err(e) = self.shared.runtime.remove_sandbox(&self.pref).await {
            tracing::warn!(
                "pod {}/{}: cannot remove sandbox: {e}",
                self.pref.namespace,
                self.pref.name
            );
        }
        crate::volumes::remove(&self.shared.root, &self.pref.uid);
        if !self.gone {
            self.terminated = true;
            self.publish().await;
            let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.pref.namespace);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.pref.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = api.delete(&self.pref.name, &dp).await {
                if !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409) {
                    tracing::warn!(
                        "pod {}/{}: cannot finish deletion: {e}",
                        self.pref.namespace,
                        self.pref.name
                    );
                }
            }
        }
        self.release_ports();
    }

    fn hook_runner(&self, name: &str, id: &ContainerId) -> HookRunner {
        HookRunner {
            target: probe::Target {
                container: name.to_string(),
                attempt: 0,
                id: id.clone(),
                host: self.shared.node_ip.clone(),
                ports: self
                    .ports
                    .iter()
                    .filter(|(c, _)| c == name)
                    .map(|(_, p)| p.clone())
                    .collect(),
                runtime: self.shared.runtime.clone(),
                http: self.shared.http.clone(),
            },
            recorder: self.shared.recorder.clone(),
            subject: self.subject(name),
        }
    }

    fn forget_view(&self) {
        if let Ok(mut views) = self.shared.views.lock() {
            let key = (self.pref.namespace.clone(), self.pref.name.clone());
            if views.get(&key).and_then(|v| v.pod.as_ref()).is_some_and(|p| p.uid == self.pref.uid)
            {
                views.remove(&key);
            }
        }
    }

    fn update_view(&self) {
        let containers = self
            .slots
            .iter()
            .map(|(n, s)| {
                let view = ContainerView {
                    current: s.current.as_ref().and_then(|r| r.id.clone()),
                    previous: s.previous.as_ref().and_then(|r| r.id.clone()),
                    running: s.running(),
                    waiting: s.waiting.as_ref().map(|w| w.0.clone()),
                };
                (n.clone(), view)
            })
            .collect();
        if let Ok(mut views) = self.shared.views.lock() {
            views.insert(
                (self.pref.namespace.clone(), self.pref.name.clone()),
                PodView { pod: Some(self.pref.clone()), containers },
            );
        }
    }

    /// The pod's phase, by kubelet's rules.
    fn phase(&self) -> &'static str {
        let (init, main) = self.spec_containers();
        if self.failed_init {
            return "Failed";
        }
        let init_done =
            init.iter().all(|c| self.slots.get(&c.name).is_some_and(|s| init_done(c, s)));
        if !init_done {
            return "Pending";
        }
        let policy = self.restart_policy();
        let (mut running, mut waiting_first, mut restarting, mut ok, mut failed) = (0, 0, 0, 0, 0);
        for c in &main {
            let Some(slot) = self.slots.get(&c.name) else {
                waiting_first += 1;
                continue;
            };
            if slot.running() {
                running += 1;
                continue;
            }
            match slot.exit() {
                None => waiting_first += 1,
                Some(e) => {
                    let restarts =
                        policy == "Always" || (policy == "OnFailure" && e.exit_code != 0);
                    if restarts {
                        // A start error before any run still counts as not started.
                        if slot.current.as_ref().is_some_and(|r| r.id.is_none())
                            && slot.previous.is_none()
                        {
                            waiting_first += 1;
                        } else {
                            restarting += 1;
                        }
                    } else if e.exit_code == 0 {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
        }
        if waiting_first > 0 {
            "Pending"
        } else if running > 0 || restarting > 0 {
            "Running"
        } else if failed > 0 {
            "Failed"
        } else if ok > 0 {
            "Succeeded"
        } else {
            "Pending"
        }
    }

    fn container_status(&self, c: &Container, init: bool, pending_init: bool) -> Value {
        let slot = self.slots.get(&c.name);
        let terminated = |r: &Run, e: &Exit| {
            let mut t = json!({
                "exitCode": e.exit_code,
                "reason": e.reason,
                "startedAt": time_string(&e.started_at),
                "finishedAt": time_string(&e.finished_at),
            });
            if let Some(id) = &r.id {
                t["containerID"] = json!(format!("{}://{}", self.shared.runtime.name(), id.0));
            }
            if let Some(m) = &e.message {
                t["message"] = json!(m);
            }
            if let Some(s) = e.signal {
                t["signal"] = json!(s);
            }
            json!({"terminated": t})
        };
        let policy = self.restart_policy();
        let mut state = json!({"waiting": {"reason": if pending_init { "PodInitializing" } else { "ContainerCreating" }}});
        let mut last = json!({});
        let mut ready = false;
        let mut started = false;
        let mut container_id = None;
        if let Some(slot) = slot {
            if let Some(prev) = slot.previous.as_ref() {
                if let Some(e) = &prev.exit {
                    last = terminated(prev, e);
                }
            }
            if let Some(run) = &slot.current {
                container_id =
                    run.id.as_ref().map(|id| format!("{}://{}", self.shared.runtime.name(), id.0));
                match &run.exit {
                    None if run.id.is_some() => {
                        state = json!({"running": {"startedAt": time_string(&run.started_at)}});
                        ready = slot.ready;
                        started = slot.started;
                    }
                    None => {}
                    Some(e) => {
                        let restarts = !self.terminated
                            && if init && is_sidecar(c) {
                                true
                            } else if init {
                                policy != "Never" && e.exit_code != 0
                            } else {
                                policy == "Always" || (policy == "OnFailure" && e.exit_code != 0)
                            };
                        if restarts {
                            if run.id.is_some() {
                                last = terminated(run, e);
                            }
                            let (reason, message) = slot
                                .waiting
                                .clone()
                                .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
                            state = json!({"waiting": {"reason": reason}});
                            if !message.is_empty() {
                                state["waiting"]["message"] = json!(message);
                            }
                        } else {
                            state = terminated(run, e);
                            ready = init && e.exit_code == 0;
                        }
                    }
                }
            } else if let Some((reason, message)) = &slot.waiting {
                state = json!({"waiting": {"reason": reason, "message": message}});
            }
        }
        let mut status = json!({
            "name": c.name,
            "image": c.image.clone().unwrap_or_default(),
            "imageID": slot.map(|s| s.image_id.clone()).unwrap_or_default(),
            "ready": ready,
            "started": started,
            "restartCount": slot.map_or(0, |s| s.restart_count()),
            "state": state,
            "lastState": last,
        });
        if let Some(id) = container_id {
            status["containerID"] = json!(id);
        }
        status
    }

    fn condition(
        &mut self,
        kind: &str,
        ok: bool,
        reason: Option<&str>,
        message: Option<String>,
    ) -> Value {
        let status = if ok { "True" } else { "False" };
        let entry = self
            .transitions
            .entry(kind.to_string())
            .or_insert_with(|| (String::new(), now_string()));
        if entry.0 != status {
            *entry = (status.to_string(), now_string());
        }
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": entry.1});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        c
    }

    fn status(&mut self) -> Value {
        let (init, main) = self.spec_containers();
        let phase = self.phase();
        let terminal = phase == "Succeeded" || phase == "Failed";
        let init_incomplete: Vec<String> = init
            .iter()
            .filter(|c| !self.slots.get(&c.name).is_some_and(|s| init_done(c, s)))
            .map(|c| c.name.clone())
            .collect();
        let pending_init = !init_incomplete.is_empty();
        let init_statuses: Vec<Value> =
            init.iter().map(|c| self.container_status(c, true, false)).collect();
        let statuses: Vec<Value> =
            main.iter().map(|c| self.container_status(c, false, pending_init)).collect();
        let unready: Vec<String> = main
            .iter()
            .filter(|c| !self.slots.get(&c.name).is_some_and(|s| s.running() && s.ready))
            .map(|c| c.name.clone())
            .collect();
        let all_ready = unready.is_empty() && !terminal;
        let (reason, message) = if terminal {
            (Some("PodCompleted"), None)
        } else if all_ready {
            (None, None)
        } else {
            (
                Some("ContainersNotReady"),
                Some(format!("containers with unready status: [{}]", unready.join(" "))),
            )
        };
        let mut conditions = vec![
            self.condition(
                "PodReadyToStartContainers",
                self.sandbox.is_some() && !self.terminated || terminal,
                None,
                None,
            ),
            if pending_init {
                let msg =
                    format!("containers with incomplete status: [{}]", init_incomplete.join(" "));
                self.condition("Initialized", false, Some("ContainersNotInitialized"), Some(msg))
            } else {
                self.condition("Initialized", true, None, None)
            },
            self.condition("Ready", all_ready, reason, message.clone()),
            self.condition("ContainersReady", all_ready, reason, message),
        ];
        // Keep conditions that others own (PodScheduled, DisruptionTarget, readiness gates).
        let mine = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"];
        for c in self.pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default() {
            if !mine.contains(&c.type_.as_str()) {
                if let Ok(v) = serde_json::to_value(&c) {
                    conditions.push(v);
                }
            }
        }
        let ip = self.shared.node_ip.clone();
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": ip,
            "hostIPs": [{"ip": ip}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": self.start_time,
            "containerStatuses": statuses,
        });
        if !init.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        status
    }

    /// Write the status if it changed; false when the write failed.
    async fn publish(&mut self) -> bool {
        self.update_view();
        let status = self.status();
        if self.last_status.as_ref() == Some(&status) {
            return true;
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.pref.namespace);
        let patch = json!({"status": status});
        match api
            .patch_status(&self.pref.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(kube::Error::Api(e)) if e.code == 404 => self.last_status = Some(status),
            Err(e) => {
                tracing::warn!("pod {}/{}: status: {e}", self.pref.namespace, self.pref.name);
                return false;
            }
        }
        true
    }
}

/// Runs a preStop hook within the grace period, reporting a failure as kubelet does.
struct HookRunner {
    target: probe::Target,
    recorder: Recorder,
    subject: Subject,
}

impl HookRunner {
    async fn run(self, hook: &k8s_openapi::api::core::v1::LifecycleHandler, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let result = if let Some(sleep) = &hook.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(left)).await;
            Ok(())
        } else {
            let probe = k8s_openapi::api::core::v1::Probe {
                exec: hook.exec.clone(),
                http_get: hook.http_get.clone(),
                tcp_socket: hook.tcp_socket.clone(),
                ..Default::default()
            };
            match tokio::time::timeout(left, probe::attempt(&probe, &self.target, left)).await {
                Ok(r) => r,
                Err(_) => Err("the hook did not finish within the grace period".into()),
            }
        };
        if let Err(e) = result {
            self.recorder.warning(
                &self.subject,
                "FailedPreStopHook",
                format!("PreStopHook failed: {e}"),
            );
        }
    }
}

/// An init container with `restartPolicy: Always`: a native sidecar.
fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Whether an init container no longer holds back the pod: it succeeded, or it is a sidecar
/// that has started.
fn init_done(c: &Container, slot: &Slot) -> bool {
    if is_sidecar(c) {
        slot.initialized
    } else {
        slot.succeeded()
    }
}

fn mapping(p: &k8s_openapi::api::core::v1::ContainerPort, host: u16) -> PortMapping {
    PortMapping {
        name: p.name.clone(),
        container_port: u16::try_from(p.container_port).unwrap_or(0),
        host_port: host,
        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
    }
}

/// A port the kernel says is free now and that no pod of this node holds.
fn free_port(used: &HashSet<u16>, udp: bool) -> Result<u16, String> {
    for _ in 0..64 {
        let port = if udp {
            std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.local_addr()).map(|a| a.port())
        } else {
            std::net::TcpListener::bind("0.0.0.0:0").and_then(|s| s.local_addr()).map(|a| a.port())
        }
        .map_err(|e| format!("no free host port: {e}"))?;
        if !used.contains(&port) {
            return Ok(port);
        }
    }
    Err("no free host port".into())
}

fn limits(c: &Container) -> Limits {
    let get = |map: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               key: &str| { map.and_then(|m| m.get(key)).map(|q| q.0.clone()) };
    let res = c.resources.as_ref();
    let lim = res.and_then(|r| r.limits.as_ref());
    let req = res.and_then(|r| r.requests.as_ref());
    Limits {
        memory_bytes: get(lim, "memory")
            .and_then(|q| quantity::parse_value(&q).ok())
            .map(|v| v.max(0) as u64),
        cpu_millis: get(lim, "cpu")
            .and_then(|q| quantity::parse_milli(&q).ok())
            .map(|v| v.max(0) as u64),
        cpu_request_millis: get(req, "cpu")
            .and_then(|q| quantity::parse_milli(&q).ok())
            .map(|v| v.max(0) as u64),
    }
}

/// `10s`, `1m20s`, `5m0s`, as Go prints durations.
fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(fmt_duration(Duration::from_secs(80)), "1m20s");
    }

    #[test]
    fn limits_come_from_quantities() {
        let c: Container = serde_json::from_value(json!({
            "name": "c",
            "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": "0.25"}}
        }))
        .unwrap();
        let l = limits(&c);
        assert_eq!(l.memory_bytes, Some(64 << 20));
        assert_eq!(l.cpu_millis, Some(500));
        assert_eq!(l.cpu_request_millis, Some(250));
    }
}
