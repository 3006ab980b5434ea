//! # kumo-controllers: desired state becomes running state, and stays so
//!
//! The workload controllers of kumo. Each one is an ordinary API client: it lists and watches
//! the kinds it cares about through the `kube` crate, and writes through the API server, as
//! Kubernetes' `kube-controller-manager` does. No controller reads another's memory.
//!
//! ```text
//!  Deployment ──watch──▶ deployment::reconcile ──create/scale──▶ ReplicaSet
//!  ReplicaSet ──watch──▶ replicaset::reconcile ──create/delete──▶ Pod
//!  Pod status ──watch──▶ replicaset::reconcile ──status──▶ ReplicaSet status
//!  RS status  ──watch──▶ deployment::reconcile ──status──▶ Deployment status
//! ```
//!
//! Every controller is a module with a pure decision function (`plan`) that unit tests call
//! without a server, and a thin `reconcile(obj, ctx)` run by [`kube::runtime::Controller`]
//! that reads caches, applies the plan and reports status. Reconcilers are level-triggered:
//! they look at the whole desired and actual state each time, so a missed event heals on the
//! next trigger or resync.
//!
//! - [`replicaset`]: pods for a ReplicaSet (claim, create, delete, status, expectations).
//! - [`replicationcontroller`]: the same for ReplicationControllers (equality selectors).
//! - [`resourcequota`]: ResourceQuota `status.hard`/`status.used`.
//! - [`deployment`]: ReplicaSets for a Deployment (pod-template-hash, revisions, RollingUpdate,
//!   Recreate, paused, history cleanup, Available/Progressing conditions).
//! - [`statefulset`]: ordered pods with stable names and per-ordinal claims.
//! - [`daemonset`]: one pod on every eligible node.
//! - [`job`], [`cronjob`]: run-to-completion pods, and Jobs on a schedule.
//! - [`endpoints`]: Endpoints and EndpointSlices of Services with selectors.
//! - [`nodelifecycle`]: nodes whose Lease goes stale become Unknown and tainted; their pods
//!   are evicted after their toleration.
//! - [`disruption`]: PodDisruptionBudget status.
//! - [`persistentvolume`]: binds PersistentVolumeClaims to PersistentVolumes, their phases,
//!   expansion, and the pvc-/pv-protection finalizers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube::Error> {
//! let client = kube::Client::try_default().await?;
//! kumo_controllers::run(client, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod claim;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod expectations;
pub mod job;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod pod_index;
pub mod pods;
pub mod replicaset;
pub mod replicationcontroller;
pub mod resourcequota;
pub mod selector;
pub mod statefulset;

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::{json, Value};
use std::future::Future;

/// A watch of every pod for a reflector, without `managedFields` (see [`lean_watcher`]) and
/// without what [`lean_pod`] drops.
pub(crate) fn pod_watcher(
    client: &kube::Client,
) -> impl futures::Stream<
    Item = Result<
        kube::runtime::watcher::Event<k8s_openapi::api::core::v1::Pod>,
        kube::runtime::watcher::Error,
    >,
> + Send
       + 'static {
    use kube::runtime::WatchStreamExt;
    lean_watcher(kube::Api::all(client.clone())).modify(lean_pod)
}

/// Drops from a cached pod what no controller reads: of each container all but its name,
/// image, ports (endpoints resolve named target ports), resources (quota) and restart policy
/// (sidecars); the volumes other than claims (the volume controller's only interest). Status,
/// labels, annotations and owner references stay whole. The shared pod cache holds every pod
/// in the cluster, and never writes one back, so nothing dropped here reaches the store. At
/// 30,000 pods that cache was a quarter of the heap (jemalloc profile, ADR 0019), though most
/// of it is the size of the generated types themselves, which dropping fields does not change.
pub(crate) fn lean_pod(pod: &mut k8s_openapi::api::core::v1::Pod) {
    use k8s_openapi::api::core::v1::Container;
    let Some(spec) = pod.spec.as_mut() else { return };
    let lean_container = |c: &mut Container| {
        *c = Container {
            name: std::mem::take(&mut c.name),
            image: c.image.take(),
            ports: c.ports.take(),
            resources: c.resources.take(),
            restart_policy: c.restart_policy.take(),
            ..Container::default()
        };
    };
    spec.containers.iter_mut().for_each(lean_container);
    spec.containers.shrink_to_fit();
    spec.init_containers.iter_mut().flatten().for_each(lean_container);
    spec.volumes = spec.volumes.take().and_then(|mut volumes| {
        volumes.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
        volumes.shrink_to_fit();
        Some(volumes).filter(|v| !v.is_empty())
    });
}

/// A watch for a reflector, without `managedFields`: no controller reads them, and each cache
/// would otherwise hold every manager's field set of every object (upstream's informers strip
/// them with a transform for the same reason). At 9,000 pods the Job, ReplicaSet and Node
/// caches held about 75 MB of them.
pub(crate) fn lean_watcher<K>(
    api: kube::Api<K>,
) -> impl futures::Stream<
    Item = Result<kube::runtime::watcher::Event<K>, kube::runtime::watcher::Error>,
> + Send
       + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use kube::runtime::WatchStreamExt;
    kube::runtime::watcher(api, Default::default())
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
}

/// `Controller::new(api, Default::default())` whose cache of `K` is lean (see
/// [`lean_watcher`]).
pub(crate) fn lean_controller<K>(api: kube::Api<K>) -> kube::runtime::Controller<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use kube::runtime::WatchStreamExt;
    let (reader, writer) = kube::runtime::reflector::store();
    let objects =
        kube::runtime::reflector(writer, lean_watcher(api).default_backoff()).applied_objects();
    kube::runtime::Controller::for_stream(objects, reader)
}

/// Wait until a reflector's store holds its first full list. kube-runtime 5's
/// `Store::wait_until_ready` keeps a single waker (a oneshot receiver behind a mutex), so of
/// several reconciles waiting at once only the last one is woken and the others sleep until
/// polled again, which nothing does: a Service created at start-up then never got Endpoints.
/// Asking again every 50 ms means no waiter depends on that wake-up.
pub async fn cache_ready<K>(
    store: &kube::runtime::reflector::Store<K>,
) -> Result<(), kube::runtime::reflector::store::WriterDropped>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    loop {
        let wait = store.wait_until_ready();
        if let Ok(ready) = tokio::time::timeout(std::time::Duration::from_millis(50), wait).await {
            return ready;
        }
    }
}

/// Settings of the controllers that have any (the rest follow the objects they manage).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Node lifecycle timings.
    pub node_lifecycle: nodelifecycle::NodeLifecycleConfig,
}

/// Run every controller with default settings until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()> + Send + 'static) {
    run_with(client, Config::default(), shutdown).await
}

/// Run every controller until `shutdown` completes.
pub async fn run_with(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.shared();
    let pods = pod_index::SharedPods::default();
    // `join!` polls in order: every controller subscribes to the shared pods on its first poll,
    // before the watch that feeds them (last) starts.
    tokio::join!(
        replicaset::run(client.clone(), pods.clone(), shutdown.clone()),
        replicationcontroller::run(client.clone(), pods.clone(), shutdown.clone()),
        resourcequota::run(client.clone(), pods.clone(), shutdown.clone()),
        endpoints::run(client.clone(), pods.clone(), shutdown.clone()),
        nodelifecycle::run(client.clone(), pods.clone(), config.node_lifecycle, shutdown.clone()),
        statefulset::run(client.clone(), pods.clone(), shutdown.clone()),
        daemonset::run(client.clone(), pods.clone(), shutdown.clone()),
        disruption::run(client.clone(), pods.clone(), shutdown.clone()),
        job::run(client.clone(), pods.clone(), shutdown.clone()),
        cronjob::run(client.clone(), shutdown.clone()),
        persistentvolume::run(client.clone(), pods.clone(), shutdown.clone()),
        deployment::run(client.clone(), shutdown.clone()),
        pods.run(client, shutdown),
    );
}

/// The end of every controller's run loop: a failed reconcile is logged (the error policy has
/// already scheduled the retry); a successful one needs nothing.
pub(crate) async fn log_outcome<T, E: std::fmt::Display>(result: Result<T, E>, what: &'static str) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "{what}");
    }
}

/// A JSON merge patch for the status subresource that replaces `status` with `status`, fields
/// absent in it cleared (null), and the object's resourceVersion as a precondition so a status
/// computed from a stale cache is refused (409) rather than written.
pub(crate) fn status_patch(meta: &ObjectMeta, status: &impl Serialize) -> Value {
    let mut status = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut status {
        // Merge patch keeps what it is not told about; a removed condition list must be nulled.
        map.entry("conditions").or_insert(Value::Null);
    }
    json!({"metadata": {"resourceVersion": meta.resource_version}, "status": status})
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn a_lean_pod_keeps_what_controllers_read() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {"app": "a"},
                         "annotations": {"controller.kubernetes.io/pod-deletion-cost": "5"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "rs", "uid": "u", "controller": true}]},
            "spec": {
                "hostname": "web-0", "subdomain": "web",
                "containers": [{"name": "c", "image": "i", "command": ["run"],
                                "env": [{"name": "A", "value": "1"}],
                                "ports": [{"name": "http", "containerPort": 80}],
                                "resources": {"requests": {"cpu": "1"}},
                                "readinessProbe": {"exec": {"command": ["true"]}},
                                "volumeMounts": [{"name": "token", "mountPath": "/t"}]}],
                "initContainers": [{"name": "side", "image": "s", "restartPolicy": "Always",
                                    "args": ["x"]}],
                "volumes": [{"name": "token", "projected": {"sources": []}},
                            {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "containerStatuses": [{"name": "c", "image": "i", "imageID": "",
                                              "ready": true, "restartCount": 2,
                                              "state": {"terminated": {"exitCode": 3}}}]}
        }))
        .expect("pod");
        let before = pod.clone();
        lean_pod(&mut pod);
        assert_eq!(pod.metadata, before.metadata);
        assert_eq!(pod.status, before.status);
        let (spec, was) = (pod.spec.as_ref().expect("spec"), before.spec.as_ref().expect("spec"));
        assert_eq!((&spec.hostname, &spec.subdomain), (&was.hostname, &was.subdomain));
        let c = &spec.containers[0];
        assert_eq!((c.name.as_str(), c.image.as_deref()), ("c", Some("i")));
        assert_eq!(c.ports, was.containers[0].ports);
        assert_eq!(c.resources, was.containers[0].resources);
        assert!(c.command.is_none() && c.env.is_none() && c.readiness_probe.is_none());
        assert!(c.volume_mounts.is_none());
        let side = &spec.init_containers.as_ref().expect("init")[0];
        assert_eq!(side.restart_policy.as_deref(), Some("Always"));
        assert!(side.args.is_none());
        let volumes: Vec<_> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, ["data"]);
    }
}
