//! The API-facing loop: watch nodes and pods, schedule pending pods, bind, report failures.
//!
//! ```text
//! watch nodes ──▶ Cache::add_node/remove_node ──┐ (cluster changed: parked pods retry)
//! watch pods  ──▶ bound: Cache::add_pod         ├─▶ SchedulingQueue ─▶ schedule_one ─▶ assume
//!                 pending + our schedulerName: ─┘                                       │
//!                 SchedulingQueue::add                     bind task (pods/binding) ◀───┘
//!                                                          failed: forget + back-off
//! FitError ─▶ PodScheduled=False (status patch) + FailedScheduling Event, pod parked
//! ```
//! Binding runs in spawned tasks so an API round trip never stalls the next decision; the
//! assumption in the cache keeps those decisions from over-committing meanwhile.
//! Everything goes through the API (`kube::Client`), as any Kubernetes scheduler.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Container, Event, EventSource, Node, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, Pod, PodStatus,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::mpsc;

use crate::cache::Cache;
use crate::plugins::volume_binding::{self, BindStep};
use crate::pod_info::{pod_key, PodInfo};
use crate::profile::{Profile, DEFAULT_SCHEDULER_NAME};
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::schedule::{schedule_one, FitError, Scheduler};

/// How often the loop wakes without events (back-off expiry, parked pods' 5-minute limit).
const TICK: Duration = Duration::from_millis(500);
/// Bindings (and their Events) in flight at most. Decisions are much faster than API round
/// trips: unbounded, a burst of 100,000 pending pods became 100,000 concurrent requests, each
/// wanting its own connection and TLS handshake. Queued bindings stay assumed in the cache.
const BINDINGS_IN_FLIGHT: usize = 128;
/// Bindings spawned and not yet answered, at most; scheduling pauses beyond. Without a bound a
/// burst of pending pods became as many waiting tasks, each holding its pod and request.
const MAX_BINDING: usize = 8 * BINDINGS_IN_FLIGHT;
/// How long one scheduling round may run before the loop reads its watches again.
const ROUND: Duration = Duration::from_millis(20);
/// Events handled in a row at most while pods wait to be scheduled.
const EVENTS_PER_ROUND: usize = 1_000;

/// Which profile serves `pod`, if any of ours.
pub fn profile_for<'p>(profiles: &'p [Profile], pod: &Pod) -> Option<&'p Profile> {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER_NAME);
    profiles.iter().find(|p| p.scheduler_name == name)
}

/// Is `pod` waiting for a node (no `nodeName`, not finished, not being deleted)?
pub fn is_pending(pod: &Pod) -> bool {
    let unbound =
        pod.spec.as_ref().is_some_and(|s| s.node_name.as_deref().unwrap_or("").is_empty());
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    unbound
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// What the scheduler keeps of a pod. Its cache holds every bound pod in the cluster and its
/// queue every pending one, so what no plugin reads is dropped: `managedFields`, annotations
/// and owner references; the status bar the phase; of each container all but its name,
/// resources, host ports and restart policy (a sidecar's); the volumes other than claims
/// (the only ones volume binding looks at); the fields only the node agent reads. At 15,000
/// pods the scheduler held over a quarter of the control plane's heap (heaptrack, ADR 0018).
fn slim(mut pod: Pod) -> Pod {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus { phase: status.phase, ..PodStatus::default() });
    }
    if let Some(spec) = pod.spec.as_mut() {
        let slim_container = |c: &mut Container| {
            *c = Container {
                name: std::mem::take(&mut c.name),
                resources: c.resources.take(),
                ports: c.ports.take().map(|ports| {
                    ports.into_iter().filter(|p| p.host_port.is_some_and(|h| h > 0)).collect()
                }),
                restart_policy: c.restart_policy.take(),
                ..Container::default()
            };
        };
        spec.containers.iter_mut().for_each(slim_container);
        spec.init_containers.iter_mut().flatten().for_each(slim_container);
        spec.ephemeral_containers = None;
        // A Volume holds every kind of source in place, so even its empty slot is large, and
        // nearly every pod has its service-account token volume: keep no room for the dropped.
        spec.volumes = spec.volumes.take().and_then(|mut volumes| {
            volumes.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
            volumes.shrink_to_fit();
            Some(volumes).filter(|v| !v.is_empty())
        });
        spec.containers.shrink_to_fit();
        if let Some(tolerations) = spec.tolerations.as_mut() {
            tolerations.shrink_to_fit();
        }
        spec.dns_config = None;
        spec.image_pull_secrets = None;
        spec.readiness_gates = None;
        spec.security_context = None;
        spec.host_aliases = None;
    }
    pod
}

/// The result of a spawned binding.
struct BindOutcome {
    queued: QueuedPod,
    result: Result<(), String>,
}

/// How long a pod's binding waits for its delayed claims to be bound (upstream waits up to
/// ten minutes; a local directory takes well under a second).
const VOLUME_BIND_TIMEOUT: Duration = Duration::from_secs(120);

struct Loop {
    client: kube::Client,
    profiles: Vec<Profile>,
    cache: Cache,
    queue: SchedulingQueue,
    scheduler: Scheduler<StdRng>,
    bound: mpsc::UnboundedSender<BindOutcome>,
    /// Permits for bindings in flight.
    binding_slots: Arc<tokio::sync::Semaphore>,
    /// Bindings spawned whose outcome has not come back (in flight or waiting for a slot).
    binding: usize,
    /// While a watch re-lists: the keys it has listed so far.
    relisted_pods: Option<HashSet<String>>,
    relisted_nodes: Option<HashSet<String>>,
    /// PodDisruptionBudgets, for preemption.
    budgets: kube::runtime::reflector::Store<PodDisruptionBudget>,
}

/// Runs the scheduler until `shutdown` completes.
pub async fn run(client: kube::Client, profiles: Vec<Profile>, shutdown: impl Future<Output = ()>) {
    let profiles = if profiles.is_empty() { vec![Profile::default()] } else { profiles };
    let nodes =
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff();
    let pods =
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff();
    let (budgets, writer) = kube::runtime::reflector::store::<PodDisruptionBudget>();
    let budget_events = kube::runtime::reflector::reflector(
        writer,
        watcher(Api::<PodDisruptionBudget>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff();
    let claims =
        watcher(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .map(|e| e.map(|e| map_event(e, StorageKind::Claim)));
    let volumes = watcher(Api::<PersistentVolume>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map(|e| e.map(|e| map_event(e, StorageKind::Volume)));
    let classes = watcher(Api::<StorageClass>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map(|e| e.map(|e| map_event(e, StorageKind::Class)));
    let storage = futures::stream::select_all([claims.boxed(), volumes.boxed(), classes.boxed()]);
    let (mut state, mut outcomes) = Loop::new(client, profiles, budgets);
    tokio::pin!(nodes, pods, budget_events, storage, shutdown);
    let mut tick = tokio::time::interval(TICK);
    // Events first, then scheduling in bounded rounds: a round that runs until the queue is
    // empty (100,000 pending pods at 5,000 nodes) leaves the watches unread for seconds, and
    // an unread watch's buffer in the server overflows (docs/adr/0017).
    let mut events_since_round = 0usize;
    let mut work = false;
    loop {
        let round = tokio::select! {
            biased;
            _ = &mut shutdown => return,
            _ = std::future::ready(()), if work && events_since_round >= EVENTS_PER_ROUND => true,
            Some(event) = nodes.next() => {
                match event {
                    Ok(event) => state.on_node(event),
                    Err(e) => tracing::warn!(error = %e, "node watch"),
                }
                false
            }
            Some(event) = pods.next() => {
                match event {
                    Ok(event) => state.on_pod(event),
                    Err(e) => tracing::warn!(error = %e, "pod watch"),
                }
                false
            }
            Some(event) = storage.next() => {
                match event {
                    Ok(event) => state.on_storage(event),
                    Err(e) => tracing::warn!(error = %e, "storage watch"),
                }
                false
            }
            Some(outcome) = outcomes.recv() => {
                state.on_bound(outcome);
                false
            }
            Some(_) = budget_events.next() => false,
            // Nothing else is ready: schedule.
            _ = std::future::ready(()), if work => true,
            _ = tick.tick() => true,
        };
        if round {
            events_since_round = 0;
            work = state.schedule_ready(Instant::now() + ROUND);
        } else {
            // Any event may have made a pod schedulable (or freed a binding slot).
            events_since_round += 1;
            work = true;
        }
    }
}

/// Which storage watch an object came from.
#[derive(Clone, Copy)]
enum StorageKind {
    Claim,
    Volume,
    Class,
}

/// One object of the storage watches, as JSON (what the VolumeBinding plugin matches on).
type StorageObject = (StorageKind, serde_json::Value);

fn map_event<K: serde::Serialize>(
    e: watcher::Event<K>,
    kind: StorageKind,
) -> watcher::Event<StorageObject> {
    let json = |o: K| (kind, serde_json::to_value(o).unwrap_or_default());
    match e {
        watcher::Event::Apply(o) => watcher::Event::Apply(json(o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(json(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(json(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

impl Loop {
    fn new(
        client: kube::Client,
        profiles: Vec<Profile>,
        budgets: kube::runtime::reflector::Store<PodDisruptionBudget>,
    ) -> (Loop, mpsc::UnboundedReceiver<BindOutcome>) {
        let (bound, outcomes) = mpsc::unbounded_channel();
        let state = Loop {
            client,
            profiles,
            cache: Cache::new(),
            queue: SchedulingQueue::new(),
            scheduler: Scheduler::new(StdRng::from_os_rng()),
            bound,
            binding_slots: Arc::new(tokio::sync::Semaphore::new(BINDINGS_IN_FLIGHT)),
            binding: 0,
            relisted_pods: None,
            relisted_nodes: None,
            budgets,
        };
        (state, outcomes)
    }

    fn on_storage(&mut self, event: watcher::Event<StorageObject>) {
        let volumes = self.cache.volumes_mut();
        match event {
            watcher::Event::Apply((kind, json)) | watcher::Event::InitApply((kind, json)) => {
                match kind {
                    StorageKind::Claim => volumes.set_claim(json),
                    StorageKind::Volume => volumes.set_volume(json),
                    StorageKind::Class => volumes.set_class(json),
                }
            }
            watcher::Event::Delete((kind, json)) => match kind {
                StorageKind::Claim => volumes.remove_claim(&json),
                StorageKind::Volume => volumes.remove_volume(&json),
                StorageKind::Class => volumes.remove_class(&json),
            },
            watcher::Event::Init | watcher::Event::InitDone => return,
        }
        self.queue.on_cluster_change(Instant::now());
    }

    fn on_node(&mut self, event: watcher::Event<Node>) {
        match event {
            watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
                if let Some(listed) = &mut self.relisted_nodes {
                    listed.insert(node.metadata.name.clone().unwrap_or_default());
                }
                if let Err(e) = self.cache.add_node(&node) {
                    tracing::warn!(node = ?node.metadata.name, error = %e, "node ignored");
                }
            }
            watcher::Event::Delete(node) => {
                self.cache.remove_node(node.metadata.name.as_deref().unwrap_or(""));
            }
            watcher::Event::Init => {
                self.relisted_nodes = Some(HashSet::new());
                return;
            }
            watcher::Event::InitDone => {
                // A node deleted while the watch was down has no Delete event: it is the one
                // the list left out.
                let Some(listed) = self.relisted_nodes.take() else { return };
                let gone: Vec<String> = (self.cache.nodes().iter())
                    .filter(|n| !listed.contains(&n.name))
                    .map(|n| n.name.clone())
                    .collect();
                if gone.is_empty() {
                    return;
                }
                tracing::info!(nodes = gone.len(), "nodes gone while the node watch re-listed");
                for name in gone {
                    self.cache.remove_node(&name);
                }
            }
        }
        self.queue.on_cluster_change(Instant::now());
    }

    fn on_pod(&mut self, event: watcher::Event<Pod>) {
        let now = Instant::now();
        if let watcher::Event::InitApply(pod) = &event {
            if let Some(listed) = &mut self.relisted_pods {
                listed.insert(pod_key(pod));
            }
        }
        match event {
            watcher::Event::Init => self.relisted_pods = Some(HashSet::new()),
            watcher::Event::InitDone => self.forget_unlisted_pods(now),
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                let pod = slim(pod);
                let key = pod_key(&pod);
                if !is_pending(&pod) {
                    self.queue.delete(&key);
                    if let Err(e) = self.cache.add_pod(pod) {
                        tracing::warn!(pod = %key, error = %e, "pod ignored");
                    }
                    return;
                }
                // Assumed by us and binding in flight: the watch has not caught up yet.
                if self.cache.pod_node(&key).is_some_and(|(_, assumed)| assumed) {
                    return;
                }
                if profile_for(&self.profiles, &pod).is_none() {
                    return;
                }
                match PodInfo::new(Arc::new(pod)) {
                    Ok(info) => self.queue.add(Arc::new(info), now),
                    Err(e) => tracing::warn!(pod = %key, error = %e, "pod not schedulable"),
                }
            }
            watcher::Event::Delete(pod) => {
                let key = pod_key(&pod);
                self.queue.delete(&key);
                self.cache.remove_pod(&key);
                self.queue.on_cluster_change(now);
            }
        }
    }

    /// After the pod watch re-listed (it fell behind, or its history was gone): the pods
    /// deleted in the gap have no Delete event and would stay queued, or hold their node's
    /// resources in the cache, for good. They are the ones the list left out. Assumed pods are
    /// left to their binding's outcome.
    fn forget_unlisted_pods(&mut self, now: Instant) {
        let Some(listed) = self.relisted_pods.take() else { return };
        let gone: Vec<String> = (self.cache.bound_pod_keys().chain(self.queue.keys()))
            .filter(|key| !listed.contains(*key))
            .map(str::to_string)
            .collect();
        if gone.is_empty() {
            return;
        }
        tracing::info!(pods = gone.len(), "pods gone while the pod watch re-listed");
        for key in &gone {
            self.queue.delete(key);
            self.cache.remove_pod(key);
        }
        self.queue.on_cluster_change(now);
    }

    fn on_bound(&mut self, outcome: BindOutcome) {
        self.binding = self.binding.saturating_sub(1);
        if let Err(e) = outcome.result {
            let key = outcome.queued.info.key.clone();
            tracing::warn!(pod = %key, error = %e, "binding failed");
            self.cache.forget_pod(&key);
            self.queue.requeue_backoff(outcome.queued, Instant::now());
        }
    }

    /// Schedules the pods that are ready now, until `until` or until [`MAX_BINDING`] bindings
    /// are outstanding; true if time ran out with pods possibly left (at the binding limit it
    /// is a binding's outcome that calls for the next round).
    fn schedule_ready(&mut self, until: Instant) -> bool {
        let now = Instant::now();
        loop {
            if self.binding >= MAX_BINDING {
                return false;
            }
            if Instant::now() >= until {
                return true;
            }
            let Some(queued) = self.queue.pop(now) else { return false };
            let Some(profile) = profile_for(&self.profiles, &queued.info.pod) else {
                continue;
            };
            let _span = tracing::debug_span!("schedule", pod = %queued.info.key).entered();
            match schedule_one(&queued.info, &self.cache, profile, &mut self.scheduler) {
                Ok(node) => {
                    if self.cache.assume_pod(queued.info.clone(), &node).is_ok() {
                        let steps = match self.cache.node(&node) {
                            Some(n) => {
                                volume_binding::bind_steps(&queued.info, self.cache.volumes(), n)
                            }
                            None => Vec::new(),
                        };
                        self.cache.volumes_mut().assume(&steps, &node);
                        self.spawn_bind(queued, node, steps);
                        self.binding += 1;
                    }
                }
                Err(mut fit) => {
                    tracing::debug!(reason = %fit, "unschedulable");
                    let budgets = self.budgets();
                    match crate::preemption::find_candidate(&queued.info, &self.cache, &budgets) {
                        Some(candidate) => self.spawn_preempt(&queued, candidate),
                        None if queued.info.priority > 0 => {
                            let n = fit.num_all_nodes;
                            fit.post_filter_msg = Some(format!(
                                "preemption: 0/{n} nodes are available: {n} No preemption victims found for incoming pod"
                            ));
                        }
                        None => {}
                    }
                    self.spawn_report(&queued, fit, &profile.scheduler_name.clone());
                    self.queue.requeue_unschedulable(queued, now);
                }
            }
        }
    }

    fn spawn_bind(&self, queued: QueuedPod, node: String, steps: Vec<BindStep>) {
        let pod = queued.info.pod.clone();
        let namespace = queued.info.namespace.clone();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let sender = self.bound.clone();
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.clone()),
                ..Default::default()
            },
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &queued.info.namespace);
        let component = queued.info.pod.spec.as_ref().and_then(|s| s.scheduler_name.clone());
        let client = self.client.clone();
        let slots = self.binding_slots.clone();
        tokio::spawn(async move {
            // Volumes first (upstream's PreBind): the pod is bound only once its claims are.
            let mut result = bind_volumes(&client, &steps, &node).await;
            if result.is_ok() {
                // Only the binding itself takes a slot: a claim's wait must not hold one.
                let _slot = slots.acquire_owned().await;
                result = api
                    .create_subresource::<_, serde_json::Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
            }
            let ok = result.is_ok();
            let namespace = queued.info.namespace.clone();
            let _ = sender.send(BindOutcome { queued, result });
            if ok {
                let message = format!("Successfully assigned {namespace}/{name} to {node}");
                let component = component.unwrap_or_else(|| "default-scheduler".into());
                let now = Time(k8s_openapi::jiff::Timestamp::now());
                let event = pod_event(&pod, &namespace, &component, "Scheduled", &message, now);
                let _ = events.create(&PostParams::default(), &event).await;
            }
        });
    }

    fn budgets(&self) -> Vec<crate::preemption::Budget> {
        self.budgets
            .state()
            .iter()
            .filter_map(|b| {
                Some(crate::preemption::Budget {
                    namespace: b.metadata.namespace.clone()?,
                    selector: b.spec.as_ref()?.selector.clone()?,
                    allowed: b.status.as_ref().map(|s| s.disruptions_allowed).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Preemption: nominate the node in the preemptor's status, then evict the victims (with
    /// their grace periods); the preemptor is retried when the cluster changes.
    fn spawn_preempt(&self, queued: &QueuedPod, candidate: crate::preemption::Candidate) {
        let namespace = queued.info.namespace.clone();
        let name = queued.info.pod.metadata.name.clone().unwrap_or_default();
        let client = self.client.clone();
        tracing::info!(pod = %queued.info.key, node = %candidate.node, victims = candidate.victims.len(), "preempting");
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let patch = serde_json::json!({"status": {"nominatedNodeName": candidate.node}});
            if let Err(e) =
                pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await
            {
                tracing::debug!(pod = %name, error = %e, "nominating failed");
            }
            for victim in candidate.victims {
                let vns = victim.namespace.clone();
                let vname = victim.pod.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), &vns);
                if let Err(e) = api.delete(&vname, &Default::default()).await {
                    tracing::debug!(pod = %vname, error = %e, "preemption delete failed");
                }
            }
        });
    }

    /// `PodScheduled=False` on the pod and a `FailedScheduling` event, as upstream reports.
    fn spawn_report(&self, queued: &QueuedPod, fit: FitError, component: &str) {
        let pod = queued.info.pod.clone();
        let namespace = queued.info.namespace.clone();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let client = self.client.clone();
        let component = component.to_string();
        let message = fit.to_string();
        tokio::spawn(async move {
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let patch = serde_json::json!({"status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastProbeTime": null, "lastTransitionTime": now,
            }]}});
            if let Err(e) =
                pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await
            {
                tracing::debug!(pod = %name, error = %e, "status patch failed");
            }
            let event = pod_event(&pod, &namespace, &component, "FailedScheduling", &message, now);
            let events: Api<Event> = Api::namespaced(client, &namespace);
            if let Err(e) = events.create(&PostParams::default(), &event).await {
                tracing::debug!(pod = %name, error = %e, "event create failed");
            }
        });
    }
}

/// Writes a pod's volume decisions (pre-bound volumes, the selected node of claims to
/// provision) and waits until every such claim is Bound. On failure or timeout the
/// selected-node annotations are taken back, so the next attempt may choose another node.
async fn bind_volumes(client: &kube::Client, steps: &[BindStep], node: &str) -> Result<(), String> {
    if steps.is_empty() {
        return Ok(());
    }
    let result = write_and_wait(client, steps, node).await;
    if result.is_err() {
        for step in steps {
            if let BindStep::SelectNode { claim_namespace, claim_name } = step {
                let api: Api<PersistentVolumeClaim> =
                    Api::namespaced(client.clone(), claim_namespace);
                let patch = serde_json::json!({"metadata": {"annotations": {
                    kumo_api::storage::SELECTED_NODE_ANNOTATION: null}}});
                let _ = api.patch(claim_name, &PatchParams::default(), &Patch::Merge(&patch)).await;
            }
        }
    }
    result
}

async fn write_and_wait(
    client: &kube::Client,
    steps: &[BindStep],
    node: &str,
) -> Result<(), String> {
    for step in steps {
        match step {
            BindStep::PreBind { volume, claim_namespace, claim_name, claim_uid } => {
                let api: Api<PersistentVolume> = Api::all(client.clone());
                let pv = api.get(volume).await.map_err(|e| e.to_string())?;
                let taken = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some_and(|r| {
                    r.uid.as_deref().is_some_and(|u| !u.is_empty() && u != claim_uid)
                });
                if taken {
                    return Err(format!("volume {volume} was taken by another claim"));
                }
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": pv.metadata.resource_version},
                    "spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                        "namespace": claim_namespace, "name": claim_name, "uid": claim_uid}}});
                api.patch(volume, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            BindStep::SelectNode { claim_namespace, claim_name } => {
                let api: Api<PersistentVolumeClaim> =
                    Api::namespaced(client.clone(), claim_namespace);
                let patch = serde_json::json!({"metadata": {"annotations": {
                    kumo_api::storage::SELECTED_NODE_ANNOTATION: node}}});
                api.patch(claim_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let deadline = Instant::now() + VOLUME_BIND_TIMEOUT;
    for (namespace, name) in volume_binding::claims_to_wait_for(steps) {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
        loop {
            let claim = api.get(&name).await.map_err(|e| e.to_string())?;
            let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            if bound {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out waiting for persistentvolumeclaim {namespace}/{name} to be bound"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// The scheduler's event about `pod`: `Scheduled` (Normal) or `FailedScheduling` (Warning).
pub fn pod_event(
    pod: &Pod,
    namespace: &str,
    component: &str,
    reason: &str,
    message: &str,
    now: Time,
) -> Event {
    let name = pod.metadata.name.clone().unwrap_or_default();
    // Named as client-go's recorder names events: `<object>.<timestamp in hex nanoseconds>`.
    let stamp = now.0.as_nanosecond();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{stamp:x}")),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: Some(namespace.to_string()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(if reason == "Scheduled" { "Normal" } else { "Warning" }.into()),
        source: Some(EventSource { component: Some(component.to_string()), host: None }),
        reporting_component: Some(component.to_string()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        ..Default::default()
    }
}

/// Pods waiting per profile name (for metrics and debugging).
pub fn pending_by_profile<'a>(
    pods: impl Iterator<Item = &'a Pod>,
    profiles: &[Profile],
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for pod in pods.filter(|p| is_pending(p)) {
        if let Some(profile) = profile_for(profiles, pod) {
            *counts.entry(profile.scheduler_name.clone()).or_default() += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pod;

    #[test]
    fn a_slim_pod_keeps_what_scheduling_reads() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "db"},
                "annotations": {"a": "b"}, "ownerReferences": [{"apiVersion": "apps/v1",
                "kind": "ReplicaSet", "name": "rs", "uid": "u0"}],
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {
                "priority": 7, "schedulerName": "default-scheduler",
                "nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "k", "operator": "Exists"}],
                "containers": [{"name": "main", "image": "db:1", "command": ["run"],
                    "env": [{"name": "A", "value": "1"}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                    "ports": [{"containerPort": 80}, {"containerPort": 5432, "hostPort": 5432}]}],
                "initContainers": [{"name": "proxy", "image": "proxy:1", "restartPolicy": "Always",
                    "resources": {"requests": {"cpu": "100m"}}}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "cfg", "configMap": {"name": "cfg"}}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}
        }))
        .unwrap();
        let full = PodInfo::new(Arc::new(pod.clone())).unwrap();
        let slim_pod = slim(pod);
        let lean = PodInfo::new(Arc::new(slim_pod.clone())).unwrap();
        assert_eq!(lean.requests, full.requests);
        assert_eq!(lean.host_ports, full.host_ports);
        assert_eq!(lean.priority, 7);
        let spec = slim_pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers[0].image, None);
        assert_eq!(spec.containers[0].env, None);
        assert_eq!(spec.containers[0].ports.as_ref().map(Vec::len), Some(1));
        let init = spec.init_containers.as_ref().unwrap();
        assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
        let volumes: Vec<_> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, ["data"]);
        assert!(spec.node_selector.is_some() && spec.tolerations.is_some());
        assert_eq!(slim_pod.metadata.labels.as_ref().map(|l| l.len()), Some(1));
        assert_eq!(slim_pod.metadata.uid.as_deref(), Some("u1"));
        assert!(
            slim_pod.metadata.annotations.is_none() && slim_pod.metadata.managed_fields.is_none()
        );
        let status = slim_pod.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert!(status.conditions.is_none());
    }

    #[test]
    fn scheduler_name_selects_the_profile() {
        let profiles = vec![Profile::default(), Profile::binpack("binpack")];
        let default = pod("a").build();
        let binpack = pod("b").scheduler_name("binpack").build();
        let other = pod("c").scheduler_name("someone-else").build();
        assert_eq!(
            profile_for(&profiles, &default).map(|p| p.scheduler_name.as_str()),
            Some("default-scheduler")
        );
        assert_eq!(
            profile_for(&profiles, &binpack).map(|p| p.scheduler_name.as_str()),
            Some("binpack")
        );
        assert!(profile_for(&profiles, &other).is_none());
        let counts = pending_by_profile([&default, &binpack, &other].into_iter(), &profiles);
        assert_eq!(counts.get("binpack"), Some(&1));
    }

    /// A loop whose client answers nothing (these tests never reach the API).
    fn idle_loop() -> Loop {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, _>(std::io::Error::other("no API in tests"))
        });
        let client = kube::Client::new(service, "default");
        let (budgets, _writer) = kube::runtime::reflector::store::<PodDisruptionBudget>();
        Loop::new(client, vec![Profile::default()], budgets).0
    }

    fn relist<T>(items: Vec<T>, mut on: impl FnMut(watcher::Event<T>)) {
        on(watcher::Event::Init);
        for item in items {
            on(watcher::Event::InitApply(item));
        }
        on(watcher::Event::InitDone);
    }

    #[tokio::test]
    async fn a_relist_forgets_what_was_deleted_while_the_watch_was_down() {
        let mut state = idle_loop();
        let nodes =
            || vec![crate::testing::node("n1", "4", "8Gi"), crate::testing::node("n2", "4", "8Gi")];
        relist(nodes(), |e| state.on_node(e));
        let bound = || pod("bound").cpu("1").node("n1").build();
        let pending = || pod("pending").cpu("1").build();
        let stays = || pod("stays").cpu("1").node("n2").build();
        relist(vec![bound(), pending(), stays()], |e| state.on_pod(e));
        assert_eq!(state.cache.pod_count(), 2);
        assert_eq!(state.queue.len(), 1);

        // The watch fell behind; meanwhile "bound" and "pending" were deleted and n1 went away.
        relist(vec![stays()], |e| state.on_pod(e));
        relist(vec![crate::testing::node("n2", "4", "8Gi")], |e| state.on_node(e));
        assert_eq!(state.cache.pod_node("default/bound"), None, "its cpu is given back");
        assert_eq!(state.cache.pod_node("default/stays"), Some(("n2", false)));
        assert!(state.queue.is_empty(), "nothing left to schedule");
        let names: Vec<&str> = state.cache.nodes().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["n2"]);
    }

    #[test]
    fn only_unbound_live_pods_are_pending() {
        assert!(is_pending(&pod("a").build()));
        assert!(!is_pending(&pod("a").node("n1").build()));
        assert!(!is_pending(&pod("a").phase("Succeeded").build()));
    }

    #[test]
    fn failed_scheduling_event_names_the_pod() {
        let p = pod("web").build();
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let e = pod_event(&p, "default", "default-scheduler", "FailedScheduling", "0/1 nodes", now);
        assert_eq!(e.reason.as_deref(), Some("FailedScheduling"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.involved_object.name.as_deref(), Some("web"));
        assert_eq!(e.source.and_then(|s| s.component).as_deref(), Some("default-scheduler"));
    }
}
