//! NodeAffinity: `nodeSelector` and required node affinity must match the node's labels
//! (filter); matching preferred terms add their weights (score).
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#node-affinity>

use k8s_openapi::api::core::v1::{NodeSelectorTerm, PreferredSchedulingTerm};

use crate::cache::NodeInfo;
use crate::pod_info::PodInfo;
use crate::selector::{node_selector_term_matches, node_selector_terms_match, Labels};
use crate::status::Status;

/// Plugin name.
pub const NAME: &str = "NodeAffinity";
/// Upstream's reason.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// Does a node with `labels`/`name` satisfy the pod's nodeSelector and required affinity?
/// (Also used by PodTopologySpread to decide which nodes' domains count.)
pub fn required_matches(pod: &PodInfo, labels: &Labels, name: &str) -> bool {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return true;
    };
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    selector_ok
        && required_terms(pod).is_none_or(|terms| node_selector_terms_match(terms, labels, name))
}

fn required_terms(pod: &PodInfo) -> Option<&[NodeSelectorTerm]> {
    pod.affinity()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|s| s.node_selector_terms.as_slice())
}

/// The pod's preferred node-affinity terms.
pub fn preferred_terms(pod: &PodInfo) -> &[PreferredSchedulingTerm] {
    pod.affinity()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or(&[])
}

/// Filter.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    if required_matches(pod, &node.labels, &node.name) {
        Status::success(NAME)
    } else {
        Status::unresolvable(NAME, REASON)
    }
}

/// Raw score: the sum of the weights of the preferred terms the node matches.
pub fn score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    preferred_terms(pod)
        .iter()
        .filter(|t| t.weight != 0)
        .filter(|t| node_selector_term_matches(&t.preference, &node.labels, &node.name))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// Normalization: default (highest sum becomes 100).
pub fn normalize(scores: &mut [i64]) {
    crate::plugins::default_normalize(scores, false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pod, NodeBuilder};
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    };

    fn term(key: &str, op: &str, values: &[&str]) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_fields: None,
        }
    }

    fn with_affinity(
        required: Vec<NodeSelectorTerm>,
        preferred: Vec<(i32, NodeSelectorTerm)>,
    ) -> PodInfo {
        pod("p")
            .affinity(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: required,
                    })
                    .filter(|s| !s.node_selector_terms.is_empty()),
                    preferred_during_scheduling_ignored_during_execution: Some(
                        preferred
                            .into_iter()
                            .map(|(weight, preference)| PreferredSchedulingTerm {
                                weight,
                                preference,
                            })
                            .collect(),
                    ),
                }),
                ..Default::default()
            })
            .info()
    }

    fn node() -> NodeInfo {
        NodeInfo::from_node(&NodeBuilder::new("n1").label("zone", "a").label("cores", "8").build())
            .unwrap_or_default()
    }

    #[test]
    fn filter_table() {
        let n = node();
        let cases = [
            (pod("p").info(), true),
            (pod("p").node_selector("zone", "a").info(), true),
            (pod("p").node_selector("zone", "b").info(), false),
            (pod("p").node_selector("gpu", "yes").info(), false),
            (with_affinity(vec![term("zone", "In", &["a", "b"])], vec![]), true),
            (with_affinity(vec![term("zone", "NotIn", &["a"])], vec![]), false),
            (with_affinity(vec![term("zone", "Exists", &[])], vec![]), true),
            (with_affinity(vec![term("gpu", "DoesNotExist", &[])], vec![]), true),
            (with_affinity(vec![term("cores", "Gt", &["4"])], vec![]), true),
            (with_affinity(vec![term("cores", "Lt", &["4"])], vec![]), false),
            // terms are ORed
            (
                with_affinity(
                    vec![term("zone", "In", &["b"]), term("cores", "Gt", &["2"])],
                    vec![],
                ),
                true,
            ),
        ];
        for (i, (p, ok)) in cases.into_iter().enumerate() {
            let status = filter(&p, &n);
            assert_eq!(status.is_success(), ok, "case {i}");
            if !ok {
                assert_eq!(status.reasons, vec![REASON]);
            }
        }
    }

    #[test]
    fn preferred_terms_sum_weights() {
        let p = with_affinity(
            vec![],
            vec![
                (5, term("zone", "In", &["a"])),
                (3, term("zone", "In", &["b"])),
                (2, term("cores", "Exists", &[])),
            ],
        );
        assert_eq!(score(&p, &node()), 7);
        let mut scores = [7, 0, 14];
        normalize(&mut scores);
        assert_eq!(scores, [50, 0, 100]);
    }
}
