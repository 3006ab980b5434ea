//! The scheduler's view of the cluster: one `NodeInfo` per node with incremental accounting.
//!
//! Pods enter the cache two ways. **Bound** pods come from the API (`add_pod`), **assumed**
//! pods come from the scheduler itself (`assume_pod`): the moment a node is chosen, its
//! resources count as used, before the binding is written. That is what lets the scheduler
//! place the next pod immediately without over-committing the node. When the watch later
//! reports the pod bound, `add_pod` confirms the assumption; if the binding fails,
//! `forget_pod` gives the resources back.
//!
//! A pod whose node is not (yet) in the cache is remembered and counted when the node arrives,
//! because node and pod watch events may come in either order.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::pod_info::{pod_key, HostPort, PodInfo};
use crate::resources::{node_allocatable, ResourceError, Resources};
use crate::selector::Labels;

/// What the scheduler knows about one node.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `status.allocatable` (cpu, memory, pods).
    pub allocatable: Resources,
    /// Sum of the declared requests of the pods on the node (bound and assumed).
    pub requested: Resources,
    /// Sum of the requests with scoring defaults (see [`crate::resources::PodRequests`]).
    pub non_zero_requested: Resources,
    /// Pods on the node, bound and assumed.
    pub pods: Vec<Arc<PodInfo>>,
    /// Host ports claimed by those pods.
    pub used_ports: Vec<HostPort>,
}

impl NodeInfo {
    /// A node's info from the API object, with no pods.
    pub fn from_node(node: &Node) -> Result<Self, ResourceError> {
        let mut info = NodeInfo::default();
        info.set_node(node)?;
        Ok(info)
    }

    fn set_node(&mut self, node: &Node) -> Result<(), ResourceError> {
        let spec = node.spec.as_ref();
        self.allocatable = node_allocatable(node)?;
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        Ok(())
    }

    pub(crate) fn add(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests.requested);
        self.non_zero_requested.add(&pod.requests.non_zero);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let at = self.pods.iter().position(|p| p.key == key)?;
        let pod = self.pods.swap_remove(at);
        self.requested.sub(&pod.requests.requested);
        self.non_zero_requested.sub(&pod.requests.non_zero);
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        Some(pod)
    }
}

/// A cache operation that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The node named in an assume is not in the cache.
    #[error("node {0:?} is not in the scheduler cache")]
    NodeNotFound(String),
    /// The pod is already in the cache (bound or assumed).
    #[error("pod {0:?} is already in the scheduler cache")]
    PodExists(String),
    /// A quantity in the object could not be parsed.
    #[error(transparent)]
    Resource(#[from] ResourceError),
}

#[derive(Debug, Clone)]
struct PodState {
    node: String,
    assumed: bool,
}

/// All nodes and the pods on them.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, PodState>,
    /// Pods whose node is not in the cache yet, by node name.
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    /// How many cached pods have required anti-affinity terms (lets the common case skip the
    /// symmetric anti-affinity check).
    pods_with_required_anti_affinity: usize,
    /// Bumped on every change.
    generation: u64,
    /// Claims, volumes and storage classes, for the VolumeBinding plugin.
    volumes: crate::plugins::volume_binding::Volumes,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// All nodes, in a stable order (insertion order, with swap-removal).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The claims, volumes and classes the VolumeBinding plugin matches.
    pub fn volumes(&self) -> &crate::plugins::volume_binding::Volumes {
        &self.volumes
    }

    /// The claims, volumes and classes, to update from watches or assume a decision.
    pub fn volumes_mut(&mut self) -> &mut crate::plugins::volume_binding::Volumes {
        &mut self.volumes
    }

    /// One node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Number of pods tracked (bound, assumed, and orphaned).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The node a pod is bound or assumed to, and whether it is only assumed.
    pub fn pod_node(&self, key: &str) -> Option<(&str, bool)> {
        self.pods.get(key).map(|s| (s.node.as_str(), s.assumed))
    }

    /// The pods bound by the API (not only assumed), by key.
    pub fn bound_pod_keys(&self) -> impl Iterator<Item = &str> {
        self.pods.iter().filter(|(_, s)| !s.assumed).map(|(key, _)| key.as_str())
    }

    /// Whether any cached pod declares required anti-affinity.
    pub fn has_pods_with_required_anti_affinity(&self) -> bool {
        self.pods_with_required_anti_affinity > 0
    }

    /// Bumped on every change; a queue uses it to know when unschedulable pods may now fit.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Adds a node or updates its labels, taints and allocatable, keeping its pods.
    pub fn add_node(&mut self, node: &Node) -> Result<(), CacheError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.generation += 1;
        if let Some(&i) = self.index.get(&name) {
            self.nodes[i].set_node(node)?;
            return Ok(());
        }
        let mut info = NodeInfo::from_node(node)?;
        for pod in self.orphans.remove(&name).into_iter().flatten() {
            info.add(pod);
        }
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        Ok(())
    }

    /// Removes a node; its pods are kept aside until they are removed or the node returns.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.generation += 1;
        let info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        if !info.pods.is_empty() {
            self.orphans.insert(info.name, info.pods);
        }
    }

    /// Records a pod bound by the API (`spec.nodeName` set). Confirms an assumed pod, moves a
    /// pod whose node changed, and drops pods that finished (`Succeeded`/`Failed`), since they
    /// no longer hold resources. Pods without a node are ignored.
    pub fn add_pod(&mut self, pod: Pod) -> Result<(), CacheError> {
        let key = pod_key(&pod);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            self.remove_pod(&key);
            return Ok(());
        }
        let info = PodInfo::new(Arc::new(pod))?;
        let Some(node) = info.node_name().map(str::to_string) else {
            return Ok(());
        };
        if let Some(state) = self.pods.get_mut(&key) {
            if state.assumed && state.node == node {
                state.assumed = false;
                return Ok(());
            }
        }
        self.remove_pod(&key);
        self.insert(Arc::new(info), node, false);
        Ok(())
    }

    /// Counts `pod` on `node` before its binding is confirmed.
    pub fn assume_pod(&mut self, pod: Arc<PodInfo>, node: &str) -> Result<(), CacheError> {
        if self.pods.contains_key(&pod.key) {
            return Err(CacheError::PodExists(pod.key.clone()));
        }
        if !self.index.contains_key(node) {
            return Err(CacheError::NodeNotFound(node.to_string()));
        }
        self.insert(pod, node.to_string(), true);
        Ok(())
    }

    /// Undoes an assumption whose binding failed. Bound pods are left alone.
    pub fn forget_pod(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|s| s.assumed) {
            self.remove_pod(key);
        }
    }

    /// Removes a pod (deleted, or finished), giving its resources back.
    pub fn remove_pod(&mut self, key: &str) {
        let Some(state) = self.pods.remove(key) else {
            return;
        };
        self.generation += 1;
        let removed = match self.index.get(&state.node) {
            Some(&i) => self.nodes[i].remove(key),
            None => self.orphans.get_mut(&state.node).and_then(|pods| {
                let at = pods.iter().position(|p| p.key == key)?;
                Some(pods.swap_remove(at))
            }),
        };
        if removed.is_some_and(|p| !p.required_anti_affinity_terms().is_empty()) {
            self.pods_with_required_anti_affinity -= 1;
        }
    }

    fn insert(&mut self, pod: Arc<PodInfo>, node: String, assumed: bool) {
        self.generation += 1;
        if !pod.required_anti_affinity_terms().is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.insert(pod.key.clone(), PodState { node: node.clone(), assumed });
        match self.index.get(&node) {
            Some(&i) => self.nodes[i].add(pod),
            None => self.orphans.entry(node).or_default().push(pod),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::{node, pod};

    #[test]
    fn assume_counts_and_forget_gives_back() {
        let mut cache = Cache::new();
        cache.add_node(&node("n1", "4", "8Gi")).ok();
        let p = Arc::new(pod("p1").cpu("1").memory("1Gi").info());
        assert_eq!(cache.assume_pod(p.clone(), "n1"), Ok(()));
        let n = cache.node("n1").map(|n| n.requested);
        assert_eq!(n, Some(Resources { milli_cpu: 1000, memory: 1 << 30, pods: 1 }));
        assert_eq!(cache.pod_node("default/p1"), Some(("n1", true)));
        assert!(matches!(cache.assume_pod(p, "n1"), Err(CacheError::PodExists(_))));
        cache.forget_pod("default/p1");
        assert_eq!(cache.node("n1").map(|n| n.requested), Some(Resources::default()));
    }

    #[test]
    fn bound_event_confirms_assumed_pod_without_double_counting() {
        let mut cache = Cache::new();
        cache.add_node(&node("n1", "4", "8Gi")).ok();
        let builder = pod("p1").cpu("1");
        cache.assume_pod(Arc::new(builder.clone().info()), "n1").ok();
        cache.add_pod(builder.node("n1").build()).ok();
        assert_eq!(cache.pod_node("default/p1"), Some(("n1", false)));
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(1000));
        // forget does not undo a confirmed binding
        cache.forget_pod("default/p1");
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(1000));
    }

    #[test]
    fn pod_before_node_is_counted_when_node_arrives() {
        let mut cache = Cache::new();
        cache.add_pod(pod("p1").cpu("2").node("n1").build()).ok();
        cache.add_node(&node("n1", "4", "8Gi")).ok();
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(2000));
        cache.remove_node("n1");
        cache.remove_pod("default/p1");
        cache.add_node(&node("n1", "4", "8Gi")).ok();
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(0));
    }

    #[test]
    fn finished_pods_release_resources_and_ports() {
        let mut cache = Cache::new();
        cache.add_node(&node("n1", "4", "8Gi")).ok();
        let running = pod("p1").cpu("1").host_port(80).node("n1");
        cache.add_pod(running.clone().build()).ok();
        assert_eq!(cache.node("n1").map(|n| n.used_ports.len()), Some(1));
        cache.add_pod(running.phase("Succeeded").build()).ok();
        assert_eq!(cache.node("n1").map(|n| n.used_ports.len()), Some(0));
        assert_eq!(cache.node("n1").map(|n| n.requested.pods), Some(0));
    }

    #[test]
    fn remove_node_keeps_index_consistent() {
        let mut cache = Cache::new();
        for n in ["a", "b", "c"] {
            cache.add_node(&node(n, "1", "1Gi")).ok();
        }
        cache.remove_node("a");
        assert_eq!(cache.node("c").map(|n| n.name.as_str()), Some("c"));
        assert_eq!(cache.node("b").map(|n| n.name.as_str()), Some("b"));
        assert!(cache.node("a").is_none());
        assert_eq!(cache.nodes().len(), 2);
    }
}
