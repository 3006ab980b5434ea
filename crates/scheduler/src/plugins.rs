//! Filter and score plugins, one file each, each a pure function of (pod, node, precomputed state).
//!
//! Filters answer "may the pod run here?" with a [`crate::Status`]; scores answer "how good is
//! it here?" with 0..=100 (higher is better), normalized across the feasible nodes where the
//! raw value is not already on that scale. Their order and weights are chosen in
//! the scheduling profile (the next step of issue 4), not here.

pub mod balanced_allocation;
pub mod inter_pod_affinity;
pub mod inter_pod_affinity_score;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// Scales `scores` so the highest becomes [`MAX_NODE_SCORE`] (or, `reverse`, so the highest
/// becomes 0 and 0 becomes 100): upstream's `DefaultNormalizeScore`.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for score in scores.iter_mut() {
        *score = MAX_NODE_SCORE * *score / max;
        if reverse {
            *score = MAX_NODE_SCORE - *score;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_scales_to_max_and_reverses() {
        let mut s = [1, 2, 4];
        default_normalize(&mut s, false);
        assert_eq!(s, [25, 50, 100]);
        let mut s = [0, 2, 4];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 50, 0]);
        let mut s = [0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 100]);
    }
}
