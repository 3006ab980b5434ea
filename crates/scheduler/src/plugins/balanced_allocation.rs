//! NodeResourcesBalancedAllocation: prefer nodes where cpu and memory would be used in equal
//! proportion after placing the pod, so neither resource is stranded.
//! Score = `(1 - standard deviation of the used fractions) * 100`.

use crate::cache::NodeInfo;
use crate::plugins::MAX_NODE_SCORE;
use crate::pod_info::PodInfo;

/// Plugin name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// Score 0..=100.
pub fn score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let want = &pod.requests.requested;
    let fraction = |requested: i64, allocatable: i64| -> Option<f64> {
        (allocatable > 0).then(|| (requested as f64 / allocatable as f64).min(1.0))
    };
    let fractions = [
        fraction(node.requested.milli_cpu + want.milli_cpu, node.allocatable.milli_cpu),
        fraction(node.requested.memory + want.memory, node.allocatable.memory),
    ];
    let std = match fractions {
        // For two values the standard deviation is half their distance.
        [Some(a), Some(b)] => (a - b).abs() / 2.0,
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};

    #[test]
    fn balanced_use_scores_higher() {
        let n = NodeInfo::from_node(&node("n", "4", "4Gi")).unwrap_or_default();
        let balanced = pod("b").cpu("2").memory("2Gi").info();
        let lopsided = pod("l").cpu("4").memory("0").info();
        assert_eq!(score(&balanced, &n), 100);
        assert_eq!(score(&lopsided, &n), 50);
    }
}
