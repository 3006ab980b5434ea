//! PodTopologySpread: keep matching pods evenly spread across topology domains.
//!
//! For each constraint, count the pods matching its selector (in the pod's namespace) per
//! domain (value of `topologyKey`) over the nodes that the pod could use (node affinity honoured,
//! taints ignored, by default). Placing the pod on a node adds one to that node's domain; the
//! **skew** is then that count minus the smallest domain count. `DoNotSchedule` constraints
//! reject nodes where the skew would exceed `maxSkew` (filter); `ScheduleAnyway` constraints
//! prefer nodes whose domains hold fewer matching pods (score).
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/topology-spread-constraints/>

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::cache::NodeInfo;
use crate::plugins::{node_affinity, taint_toleration, MAX_NODE_SCORE};
use crate::pod_info::PodInfo;
use crate::selector::label_selector_matches;
use crate::status::Status;

/// Plugin name.
pub const NAME: &str = "PodTopologySpread";
/// Reason when the skew would be too large.
pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
/// Reason when the node lacks a constraint's topology key.
pub const MISSING_LABEL_REASON: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// One constraint with its per-domain counts.
#[derive(Debug)]
struct Constraint {
    topology_key: String,
    max_skew: i64,
    selector: Option<LabelSelector>,
    /// Does the incoming pod itself match the selector (then it adds one to its domain)?
    self_match: i64,
    counts: HashMap<String, i64>,
    /// The smallest domain count (0 when fewer than `minDomains` domains exist).
    min: i64,
}

/// Constraints of one kind (hard or soft) with their counts, computed once per cycle.
#[derive(Debug)]
pub struct State {
    constraints: Vec<Constraint>,
}

fn constraints<'p>(pod: &'p PodInfo, when: &str) -> Vec<&'p TopologySpreadConstraint> {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or(&[])
        .iter()
        .filter(|c| c.when_unsatisfiable == when)
        .collect()
}

/// The constraint's selector with `matchLabelKeys` folded in from the pod's own labels.
fn effective_selector(c: &TopologySpreadConstraint, pod: &PodInfo) -> Option<LabelSelector> {
    let mut selector = c.label_selector.clone()?;
    for key in c.match_label_keys.iter().flatten() {
        if let Some(value) = pod.labels().get(key) {
            selector
                .match_labels
                .get_or_insert_with(BTreeMap::new)
                .insert(key.clone(), value.clone());
        }
    }
    Some(selector)
}

/// Builds the state for the pod's `DoNotSchedule` (`hard`) or `ScheduleAnyway` constraints,
/// or `None` when it has none (the common case).
pub fn pre_filter<'a>(
    pod: &PodInfo,
    nodes: impl Iterator<Item = &'a NodeInfo>,
    hard: bool,
) -> Option<State> {
    let declared = constraints(pod, if hard { "DoNotSchedule" } else { "ScheduleAnyway" });
    if declared.is_empty() {
        return None;
    }
    let mut list: Vec<Constraint> = declared
        .iter()
        .map(|c| {
            let selector = effective_selector(c, pod);
            Constraint {
                topology_key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew.max(1)),
                self_match: i64::from(
                    selector.as_ref().is_some_and(|s| label_selector_matches(s, pod.labels())),
                ),
                selector,
                counts: HashMap::new(),
                min: 0,
            }
        })
        .collect();
    for node in nodes {
        if !eligible(pod, &declared, node) {
            continue;
        }
        for constraint in &mut list {
            let Some(value) = node.labels.get(&constraint.topology_key) else {
                continue;
            };
            let matching = node
                .pods
                .iter()
                .filter(|p| p.namespace == pod.namespace && p.key != pod.key)
                .filter(|p| p.pod.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    constraint
                        .selector
                        .as_ref()
                        .is_some_and(|s| label_selector_matches(s, p.labels()))
                })
                .count() as i64;
            *constraint.counts.entry(value.clone()).or_default() += matching;
        }
    }
    for (constraint, declared) in list.iter_mut().zip(&declared) {
        let min_domains = i64::from(declared.min_domains.unwrap_or(1));
        constraint.min = if (constraint.counts.len() as i64) < min_domains {
            0
        } else {
            constraint.counts.values().copied().min().unwrap_or(0)
        };
    }
    Some(State { constraints: list })
}

/// Does this node's domain count? It must carry every constraint's key and, per the policies
/// (defaults: affinity `Honor`, taints `Ignore`), pass the pod's node affinity and taints.
fn eligible(pod: &PodInfo, declared: &[&TopologySpreadConstraint], node: &NodeInfo) -> bool {
    let has_keys = declared.iter().all(|c| node.labels.contains_key(&c.topology_key));
    let policy = |p: &Option<String>, default: &str| p.as_deref().unwrap_or(default) == "Honor";
    let honor_affinity = declared.first().is_some_and(|c| policy(&c.node_affinity_policy, "Honor"));
    let honor_taints = declared.first().is_some_and(|c| policy(&c.node_taints_policy, "Ignore"));
    has_keys
        && (!honor_affinity || node_affinity::required_matches(pod, &node.labels, &node.name))
        && (!honor_taints || taint_toleration::filter(pod, node).is_success())
}

/// Filter (hard constraints).
pub fn filter(node: &NodeInfo, state: Option<&State>) -> Status {
    let Some(state) = state else {
        return Status::success(NAME);
    };
    for c in &state.constraints {
        let Some(value) = node.labels.get(&c.topology_key) else {
            return Status::unresolvable(NAME, MISSING_LABEL_REASON);
        };
        let count = c.counts.get(value).copied().unwrap_or(0);
        if count + c.self_match - c.min > c.max_skew {
            return Status::unschedulable(NAME, REASON);
        }
    }
    Status::success(NAME)
}

/// Raw score (soft constraints): matching pods in the node's domains, each constraint weighted
/// by `ln(domains + 2)` as upstream, in thousandths; `-1` for a node missing a key.
pub fn score(node: &NodeInfo, state: &State) -> i64 {
    let mut total = 0.0;
    for c in &state.constraints {
        let Some(value) = node.labels.get(&c.topology_key) else {
            return -1;
        };
        let weight = ((c.counts.len() + 2) as f64).ln();
        let count = c.counts.get(value).copied().unwrap_or(0);
        total += (count + c.max_skew - 1) as f64 * weight;
    }
    (total * 1000.0).round() as i64
}

/// Normalization: fewer matching pods is better; nodes missing a key get 0.
pub fn normalize(scores: &mut [i64]) {
    let valid = scores.iter().copied().filter(|s| *s >= 0);
    let (min, max) = valid.fold((i64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
    for s in scores.iter_mut() {
        *s = if *s < 0 {
            0
        } else if max == 0 {
            MAX_NODE_SCORE
        } else {
            MAX_NODE_SCORE * (max + min - *s) / max
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::testing::{pod, NodeBuilder, PodBuilder};
    use std::sync::Arc;

    fn constraint(when: &str, max_skew: i32) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            }),
            max_skew,
            topology_key: "zone".into(),
            when_unsatisfiable: when.into(),
            ..Default::default()
        }
    }

    /// Zones a (n1, n2) and b (n3), n4 without a zone; `web` pods per node as given.
    fn cluster(per_node: [usize; 4]) -> Cache {
        let mut cache = Cache::new();
        for (i, zone) in [Some("a"), Some("a"), Some("b"), None].iter().enumerate() {
            let mut b = NodeBuilder::new(&format!("n{}", i + 1)).cpu("8").memory("8Gi");
            if let Some(z) = zone {
                b = b.label("zone", z);
            }
            cache.add_node(&b.build()).ok();
            for j in 0..per_node[i] {
                let p = pod(&format!("w{i}-{j}")).label("app", "web").info();
                cache.assume_pod(Arc::new(p), &format!("n{}", i + 1)).ok();
            }
        }
        cache
    }

    fn web(c: TopologySpreadConstraint) -> PodBuilder {
        pod("new").label("app", "web").spread(c)
    }

    fn reasons(cache: &Cache, p: &PodInfo) -> Vec<Vec<String>> {
        let state = pre_filter(p, cache.nodes().iter(), true);
        cache.nodes().iter().map(|n| filter(n, state.as_ref()).reasons).collect()
    }

    #[test]
    fn hard_constraint_table() {
        let none: Vec<String> = vec![];
        let skew = vec![REASON.to_string()];
        let missing = vec![MISSING_LABEL_REASON.to_string()];
        let cases = [
            // zone a has 1, zone b 0: a would become 2 vs 0 (skew 2 > 1)
            ([1, 0, 0, 0], 1, [&skew, &skew, &none, &missing]),
            ([1, 0, 0, 0], 2, [&none, &none, &none, &missing]),
            ([1, 1, 1, 0], 1, [&skew, &skew, &none, &missing]),
            ([1, 0, 1, 0], 1, [&none, &none, &none, &missing]),
            // pods on the unlabeled node do not count
            ([0, 0, 0, 5], 1, [&none, &none, &none, &missing]),
        ];
        for (per_node, max_skew, want) in cases {
            let cache = cluster(per_node);
            let got = reasons(&cache, &web(constraint("DoNotSchedule", max_skew)).info());
            let want: Vec<Vec<String>> = want.iter().map(|r| r.to_vec()).collect();
            assert_eq!(got, want, "{per_node:?} maxSkew {max_skew}");
        }
    }

    #[test]
    fn non_matching_pod_does_not_add_to_its_domain() {
        let cache = cluster([1, 0, 0, 0]);
        let other = pod("new").label("app", "other").spread(constraint("DoNotSchedule", 1));
        let got = reasons(&cache, &other.info());
        assert!(got[..3].iter().all(|r| r.is_empty()), "{got:?}");
    }

    #[test]
    fn soft_constraint_prefers_emptier_domain() {
        let cache = cluster([2, 0, 0, 0]);
        let p = web(constraint("ScheduleAnyway", 1)).info();
        assert!(pre_filter(&p, cache.nodes().iter(), true).is_none());
        let state = pre_filter(&p, cache.nodes().iter(), false);
        let Some(state) = state else {
            panic!("soft state expected");
        };
        let mut scores: Vec<i64> = cache.nodes().iter().map(|n| score(n, &state)).collect();
        normalize(&mut scores);
        assert!(scores[2] > scores[0], "{scores:?}");
        assert_eq!(scores[0], scores[1]);
        assert_eq!(scores[3], 0);
    }
}
