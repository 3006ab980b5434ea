//! # kumo-agent: the node agent
//!
//! kumo's kubelet. An ordinary API client (the `kube` crate) that registers its Node, renews
//! the node's Lease, watches the pods bound to it and drives each one through a pod worker:
//! sandbox and ports, init containers in order, containers, probes, restarts with back-off,
//! graceful termination, status as kubectl shows it for a real cluster, and Events.
//!
//! ```text
//!  Pod (spec.nodeName = me) ──watch──▶ worker per pod ──▶ Runtime (process | docker)
//!                                        │   ▲ exits, probe results
//!                                        ▼   │
//!                               pod status, Events ──▶ API server
//!  API server ──pods/log, metrics──▶ server (this agent's HTTP endpoint) ──▶ Runtime
//! ```
//!
//! - [`node`]: Node registration, status, Lease.
//! - [`worker`]: one task per pod; all of Kubernetes' pod policy lives there.
//! - [`probe`]: startup, liveness and readiness probes.
//! - [`env`]: environment of a container (`env`, `envFrom`, downward API, `$(VAR)`).
//! - [`volumes`]: the pod's volumes on the node (emptyDir, configMap, secret, downwardAPI,
//!   projected, hostPath, persistentVolumeClaim), kept current by watches.
//! - [`runtime`]: the [`runtime::Runtime`] trait and its two implementations.
//! - [`shim`]: the small process that holds one container of the process runtime.
//! - [`logs`], [`server`], [`stats`]: logs and usage, served to the API server.

pub mod cgroup;
pub mod env;
pub mod events;
pub mod logs;
pub mod node;
pub mod probe;
pub mod provisioner;
pub mod runtime;
pub mod server;
pub mod shim;
pub mod stats;
pub mod volumes;
pub mod worker;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use runtime::{ContainerInfo, Runtime};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How an agent runs.
#[derive(Clone)]
pub struct Config {
    /// The node's name.
    pub node_name: String,
    /// The node's IP: its InternalIP address and, in host network mode, every pod's IP.
    pub node_ip: String,
    /// Where the agent keeps logs and runtime state.
    pub root: PathBuf,
    /// The runtime that runs containers.
    pub runtime: Arc<dyn Runtime>,
    /// Where the agent's endpoint listens (port 0 picks one; Node status publishes it).
    pub listen: SocketAddr,
    /// The bearer token the endpoint accepts.
    pub token: String,
    /// Extra Node labels.
    pub labels: Vec<(String, String)>,
    /// `pods` capacity.
    pub max_pods: u32,
    /// Restart back-off: first delay after the immediate restart, and the cap.
    pub backoff: (Duration, Duration),
}

/// Register the node and run its pods until `shutdown` completes. Workloads keep running
/// when the agent stops; the next agent adopts them.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let port = listener.local_addr()?.port();
    let runtime_version = format!(
        "{}://{}",
        config.runtime.name(),
        config.runtime.version().await.unwrap_or_default()
    );
    let info = node::NodeInfo {
        name: config.node_name.clone(),
        ip: config.node_ip.clone(),
        port,
        runtime_version,
        labels: config.labels.clone(),
        max_pods: config.max_pods,
        data_dir: config.root.clone(),
    };
    std::fs::create_dir_all(&config.root)?;
    // The API may still be coming up (a separate agent starts in any order).
    let mut delay = Duration::from_millis(200);
    loop {
        match node::register(&client, &info).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!("node {}: cannot register yet: {e}", info.name);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let heartbeat = tokio::spawn(node::heartbeat(client.clone(), info.clone(), stop_rx.clone()));
    let (cpus, mem) = node::host_capacity();
    let shared = Arc::new(worker::Shared {
        client: client.clone(),
        runtime: config.runtime.clone(),
        node_name: config.node_name.clone(),
        node_ip: config.node_ip.clone(),
        root: config.root.clone(),
        recorder: events::Recorder::new(client.clone(), config.node_name.clone()),
        backoff_initial: config.backoff.0,
        backoff_max: config.backoff.1,
        allocatable: (i64::from(cpus) * 1000, mem as i64),
        ports: Mutex::new(Default::default()),
        http: probe::http_client(),
        views: Mutex::new(HashMap::new()),
    });
    let view: Arc<dyn server::NodeView> = shared.clone();
    let server = {
        let mut rx = stop_rx.clone();
        tokio::spawn(server::serve(listener, config.token.clone(), view, async move {
            let _ = rx.wait_for(|s| *s).await;
        }))
    };
    tokio::spawn(provisioner::run(
        client.clone(),
        config.node_name.clone(),
        config.root.clone(),
        stop_rx.clone(),
    ));
    let pods = tokio::spawn(run_pods(shared, stop_rx));
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = pods.await;
    let _ = heartbeat.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

/// Watch the pods bound to this node and keep one worker per pod.
async fn run_pods(shared: Arc<worker::Shared>, mut stop: watch::Receiver<bool>) {
    use futures::StreamExt;
    let mut adoptable: HashMap<String, Vec<ContainerInfo>> = HashMap::new();
    match shared.runtime.list_containers().await {
        Ok(list) => {
            for c in list {
                adoptable.entry(c.pod.uid.clone()).or_default().push(c);
            }
        }
        Err(e) => tracing::warn!("cannot list the runtime's containers: {e}"),
    }
    let api: kube::Api<Pod> = kube::Api::all(shared.client.clone());
    let selector = format!("spec.nodeName={}", shared.node_name);
    let stream = watcher(api, watcher::Config::default().fields(&selector));
    let mut stream = std::pin::pin!(stream);
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut listed: Option<std::collections::HashSet<String>> = None;
    let mut tasks = Vec::new();
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
                continue;
            }
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(event) = event else { break };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("pod watch: {e}");
                continue;
            }
        };
        let mut apply = |pod: Pod, workers: &mut HashMap<String, watch::Sender<Option<Pod>>>| {
            let Some(uid) = pod.metadata.uid.clone() else { return };
            if let Some(tx) = workers.get(&uid) {
                let _ = tx.send(Some(pod));
                return;
            }
            let existing = adoptable.remove(&uid).unwrap_or_default();
            let (tx, rx) = watch::channel(Some(pod.clone()));
            let w = worker::Worker::new(shared.clone(), pod, existing);
            let done = done_tx.clone();
            let key = uid.clone();
            tasks.push(tokio::spawn(async move {
                w.run(rx).await;
                let _ = done.send(key);
            }));
            workers.insert(uid, tx);
        };
        match event {
            watcher::Event::Init => listed = Some(Default::default()),
            watcher::Event::InitApply(pod) => {
                if let (Some(l), Some(uid)) = (listed.as_mut(), pod.metadata.uid.as_ref()) {
                    l.insert(uid.clone());
                }
                apply(pod, &mut workers);
            }
            watcher::Event::InitDone => {
                // Containers of pods that no longer exist: stop and remove them.
                let known = listed.take().unwrap_or_default();
                let gone: Vec<String> =
                    adoptable.keys().filter(|u| !known.contains(*u)).cloned().collect();
                for uid in gone {
                    if let Some(list) = adoptable.remove(&uid) {
                        if let Some(first) = list.first() {
                            let pod = first.pod.clone();
                            tracing::info!(
                                "removing containers of deleted pod {}/{}",
                                pod.namespace,
                                pod.name
                            );
                            let _ = shared.runtime.remove_sandbox(&pod).await;
                        }
                    }
                }
                // Volumes of pods that no longer exist (those that never ran a container too).
                for uid in volumes::pods_on_disk(&shared.root) {
                    if !known.contains(&uid) && !workers.contains_key(&uid) {
                        volumes::remove(&shared.root, &uid);
                    }
                }
                // Workers of pods deleted while the watch was down.
                workers.retain(|uid, tx| {
                    if known.contains(uid) {
                        true
                    } else {
                        let _ = tx.send(None);
                        false
                    }
                });
            }
            watcher::Event::Apply(pod) => apply(pod, &mut workers),
            watcher::Event::Delete(pod) => {
                if let Some(tx) = pod.metadata.uid.as_ref().and_then(|u| workers.remove(u)) {
                    let _ = tx.send(None);
                }
            }
        }
    }
    // Stopping: the workers end (containers keep running).
    drop(workers);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
}
