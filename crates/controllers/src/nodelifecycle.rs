//! The node lifecycle controller: a node whose heartbeat (its Lease in `kube-node-lease`) is
//! older than the grace period becomes `Ready=Unknown` and is tainted
//! `node.kubernetes.io/unreachable` (NoSchedule + NoExecute); pods on it are evicted (deleted)
//! once their toleration of that taint runs out, and their controllers replace them elsewhere.
//! When the Lease is renewed again the condition and the taints go.
//!
//! <https://kubernetes.io/docs/concepts/architecture/nodes/#node-controller>,
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/#taint-based-evictions>
//!
//! Each reconcile of a Node reads its Lease and the pods bound to it from watch-fed caches,
//! asks [`plan`] for the node update and the pods' eviction deadlines, writes (with the
//! resourceVersion it read) and requeues itself for the moment the heartbeat would turn stale
//! or the next eviction is due.

pub mod plan;

use crate::pod_index::SharedPods;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, instrument, warn};

/// Periodic resync: a missed event heals within this time.
const RESYNC: Duration = Duration::from_secs(300);
/// The namespace node agents keep their heartbeat Leases in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Timings of the node lifecycle controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLifecycleConfig {
    /// How long a node may go without renewing its Lease before it is marked `Unknown` and
    /// tainted unreachable (upstream `--node-monitor-grace-period`, 40 s).
    pub grace: Duration,
    /// How long pods without an explicit toleration stay on an unreachable or not-ready node
    /// (upstream `--default-unreachable-toleration-seconds`, 300 s).
    pub eviction_timeout: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            grace: Duration::from_secs(40),
            eviction_timeout: Duration::from_secs(300),
        }
    }
}

/// What the node lifecycle reconciler needs besides the Node.
pub struct Context {
    /// The API client all writes go through.
    pub client: Client,
    /// Node Leases (`kube-node-lease`), from a watch.
    pub leases: Store<Lease>,
    /// Every pod in the cluster, from a watch.
    pub pods: Store<Pod>,
    /// Timings.
    pub config: NodeLifecycleConfig,
}

/// Errors of the node lifecycle controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("node {node}: {action} failed")]
    Api {
        /// The node's name.
        node: String,
        /// What we were doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The Node has no name (the API server never sends such a Node).
    #[error("node without name")]
    MissingMeta,
    /// A cache stopped before it was filled.
    #[error("lease or pod cache closed")]
    CacheClosed,
}

/// Run the node lifecycle controller until `shutdown` completes.
pub async fn run(
    client: Client,
    shared: SharedPods,
    config: NodeLifecycleConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (leases, lease_writer) = reflector::store::<Lease>();
    let lease_events = reflector::reflector(
        lease_writer,
        crate::lean_watcher(Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE)),
    )
    .default_backoff()
    .touched_objects();
    let ctx =
        Arc::new(Context { client: client.clone(), leases, pods: shared.store.clone(), config });
    crate::lean_controller(Api::<Node>::all(client))
        .watches_stream(lease_events, |lease| {
            lease.metadata.name.as_ref().map(|n| ObjectRef::<Node>::new(n))
        })
        .watches_shared_stream(shared.subscribe(), |pod| {
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .filter(|n| !n.is_empty())
                .map(|n| ObjectRef::<Node>::new(n))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| crate::log_outcome(res, "node lifecycle reconcile"))
        .await;
}

fn error_policy(_node: Arc<Node>, err: &Error, _ctx: Arc<Context>) -> Action {
    match err {
        Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => {
            debug!(error = %err, "conflict, retrying")
        }
        _ => warn!(error = %err, "reconcile failed"),
    }
    Action::requeue(Duration::from_secs(1))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Reconcile one Node: mark it unknown/unreachable or clear that, and evict its pods when due.
#[instrument(skip_all, fields(node = %node.metadata.name.as_deref().unwrap_or("")))]
pub async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = node.metadata.name.clone().ok_or(Error::MissingMeta)?;
    let api_err = |action: &'static str| {
        let node = name.clone();
        move |source| Error::Api { node, action, source }
    };
    crate::cache_ready(&ctx.leases).await.map_err(|_| Error::CacheClosed)?;
    crate::cache_ready(&ctx.pods).await.map_err(|_| Error::CacheClosed)?;
    if node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let now_secs = now.as_second();
    let lease = ctx.leases.get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
    let health =
        plan::health(plan::heartbeat(&node, lease.as_deref()), now_secs, secs(ctx.config.grace));
    let stale = health == plan::Health::Stale;
    let update = plan::plan_node(&node, stale, Time(now));
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut rv = node.metadata.resource_version.clone();
    if let Some(taints) = &update.taints {
        let taints = if taints.is_empty() { Value::Null } else { json!(taints) };
        let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"taints": taints}});
        let written = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_err("update taints"))?;
        rv = written.metadata.resource_version;
    }
    if let Some(conditions) = &update.conditions {
        let patch =
            json!({"metadata": {"resourceVersion": rv}, "status": {"conditions": conditions}});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_err("update status"))?;
    }
    if update != plan::NodeUpdate::default() {
        info!(stale, "node health changed");
    }

    // Evictions.
    let taints = update
        .taints
        .clone()
        .or_else(|| node.spec.as_ref().and_then(|s| s.taints.clone()))
        .unwrap_or_default();
    let mut next_eviction: Option<i64> = None;
    if taints.iter().any(|t| t.effect == "NoExecute") {
        let default_secs = secs(ctx.config.eviction_timeout);
        for pod in ctx.pods.state() {
            let on_node =
                pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str());
            if !on_node || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(at) = plan::eviction_at(&pod, &taints, now_secs, default_secs) else {
                continue;
            };
            if at > now_secs {
                next_eviction = Some(next_eviction.map_or(at, |n| n.min(at)));
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            match Api::<Pod>::namespaced(ctx.client.clone(), &ns)
                .delete(&pod_name, &DeleteParams::default())
                .await
            {
                Ok(_) => info!(pod = %format!("{ns}/{pod_name}"), "evicted pod from tainted node"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_err("evict pod")(e)),
            }
        }
    }
    let mut wait = RESYNC;
    if let plan::Health::Fresh { recheck_in } = health {
        wait = wait.min(Duration::from_secs(recheck_in.unsigned_abs()));
    }
    if let Some(at) = next_eviction {
        wait = wait.min(Duration::from_secs((at - now_secs).max(1).unsigned_abs()));
    }
    Ok(Action::requeue(wait))
}
