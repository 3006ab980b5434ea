//! NodeResourcesFit: the pod's requests must fit in what the node has left (filter), and the
//! scoring strategy decides where among the fitting nodes it goes: **LeastAllocated** prefers
//! empty nodes (spread), **MostAllocated** prefers full ones (binpack).
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/resource-bin-packing/>

use serde::{Deserialize, Serialize};

use crate::cache::NodeInfo;
use crate::plugins::MAX_NODE_SCORE;
use crate::pod_info::PodInfo;
use crate::status::Status;

/// Plugin name.
pub const NAME: &str = "NodeResourcesFit";

/// How fitting nodes are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ScoringStrategy {
    /// Prefer nodes with the most free capacity: spreads load.
    #[default]
    LeastAllocated,
    /// Prefer nodes with the least free capacity: packs pods onto few nodes.
    MostAllocated,
}

/// Relative weight of each resource in the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceWeights {
    /// Weight of cpu.
    pub cpu: i64,
    /// Weight of memory.
    pub memory: i64,
}

impl Default for ResourceWeights {
    fn default() -> Self {
        Self { cpu: 1, memory: 1 }
    }
}

/// Filter: checks the pod count, then cpu, then memory, reporting every shortfall.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    let want = &pod.requests.requested;
    let free_cpu = node.allocatable.milli_cpu - node.requested.milli_cpu;
    let free_memory = node.allocatable.memory - node.requested.memory;
    let too_many = node.requested.pods + 1 > node.allocatable.pods;
    let no_cpu = want.milli_cpu > 0 && want.milli_cpu > free_cpu;
    let no_memory = want.memory > 0 && want.memory > free_memory;
    if !(too_many || no_cpu || no_memory) {
        return Status::success(NAME);
    }
    let mut status = Status::unschedulable(NAME, "");
    status.reasons.clear();
    for (failed, reason) in [
        (too_many, "Too many pods"),
        (no_cpu, "Insufficient cpu"),
        (no_memory, "Insufficient memory"),
    ] {
        if failed {
            status.reasons.push(reason.to_string());
        }
    }
    status
}

/// Score 0..=100 after placing the pod, averaged over cpu and memory by `weights`.
/// Uses the non-zero requests so request-less pods still count.
pub fn score(
    pod: &PodInfo,
    node: &NodeInfo,
    strategy: ScoringStrategy,
    weights: ResourceWeights,
) -> i64 {
    let per_resource = |requested: i64, allocatable: i64| match strategy {
        ScoringStrategy::LeastAllocated => least_allocated(requested, allocatable),
        ScoringStrategy::MostAllocated => most_allocated(requested, allocatable),
    };
    let want = &pod.requests.non_zero;
    let mut total = 0;
    let mut weight_sum = 0;
    for (requested, allocatable, weight) in [
        (
            node.non_zero_requested.milli_cpu + want.milli_cpu,
            node.allocatable.milli_cpu,
            weights.cpu,
        ),
        (node.non_zero_requested.memory + want.memory, node.allocatable.memory, weights.memory),
    ] {
        if allocatable == 0 || weight == 0 {
            continue;
        }
        total += per_resource(requested, allocatable) * weight;
        weight_sum += weight;
    }
    if weight_sum == 0 {
        0
    } else {
        total / weight_sum
    }
}

/// `(allocatable - requested) / allocatable`, as upstream's `leastRequestedScore`.
fn least_allocated(requested: i64, allocatable: i64) -> i64 {
    if requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

/// `requested / allocatable`, capped, as upstream's `mostRequestedScore`.
fn most_allocated(requested: i64, allocatable: i64) -> i64 {
    requested.min(allocatable) * MAX_NODE_SCORE / allocatable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::testing::{node, pod, NodeBuilder};
    use std::sync::Arc;

    fn node_with(cpu: &str, memory: &str, pods: &str, used: &[(&str, &str)]) -> NodeInfo {
        let mut cache = Cache::new();
        cache.add_node(&NodeBuilder::new("n").cpu(cpu).memory(memory).pods(pods).build()).ok();
        for (i, (c, m)) in used.iter().enumerate() {
            let p = pod(&format!("u{i}")).cpu(c).memory(m).info();
            cache.assume_pod(Arc::new(p), "n").ok();
        }
        cache.node("n").cloned().unwrap_or_default()
    }

    #[test]
    fn filter_table() {
        let half = node_with("2", "4Gi", "3", &[("1", "2Gi")]);
        let cases: [(PodInfo, &[&str]); 6] = [
            (pod("p").cpu("1").memory("2Gi").info(), &[]),
            (pod("p").cpu("1001m").info(), &["Insufficient cpu"]),
            (pod("p").memory("3Gi").info(), &["Insufficient memory"]),
            (pod("p").cpu("2").memory("3Gi").info(), &["Insufficient cpu", "Insufficient memory"]),
            (pod("p").info(), &[]),
            (pod("p").cpu("0").info(), &[]),
        ];
        for (p, reasons) in cases {
            let status = filter(&p, &half);
            assert_eq!(status.reasons, reasons.to_vec(), "{:?}", p.requests);
            assert_eq!(status.is_success(), reasons.is_empty());
        }
        let full = node_with("8", "8Gi", "2", &[("1", "1Gi"), ("1", "1Gi")]);
        let status = filter(&pod("p").info(), &full);
        assert_eq!(status.reasons, vec!["Too many pods"]);
        assert_eq!(status.plugin, NAME);
    }

    #[test]
    fn least_allocated_prefers_empty_and_most_allocated_prefers_full() {
        let empty = NodeInfo::from_node(&node("e", "4", "8Gi")).unwrap_or_default();
        let busy = node_with("4", "8Gi", "110", &[("3", "6Gi")]);
        let p = pod("p").cpu("1").memory("2Gi").info();
        let w = ResourceWeights::default();
        let least = |n: &NodeInfo| score(&p, n, ScoringStrategy::LeastAllocated, w);
        let most = |n: &NodeInfo| score(&p, n, ScoringStrategy::MostAllocated, w);
        assert_eq!(least(&empty), 75);
        assert_eq!(least(&busy), 0);
        assert_eq!(most(&empty), 25);
        assert_eq!(most(&busy), 100);
    }

    #[test]
    fn request_less_pods_use_defaults_when_scoring() {
        let n = NodeInfo::from_node(&node("e", "1", "2000Mi")).unwrap_or_default();
        // 100m of 1000m and 200Mi of 2000Mi: 10% used
        let s =
            score(&pod("p").info(), &n, ScoringStrategy::MostAllocated, ResourceWeights::default());
        assert_eq!(s, 10);
    }
}
