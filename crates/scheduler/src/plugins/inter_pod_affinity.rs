//! InterPodAffinity (required part): pod affinity and anti-affinity by `topologyKey`.
//!
//! Three rules, checked per candidate node against counts computed once per cycle
//! (`pre_filter`), as upstream does:
//! 1. affinity: for every required affinity term, some pod matching *all* terms runs in the
//!    node's topology domain (or no such pod exists anywhere and the pod matches its own terms:
//!    the first pod of a group may go anywhere);
//! 2. anti-affinity: no pod matching a required anti-affinity term runs in the node's domain;
//! 3. symmetry: no existing pod whose required anti-affinity matches this pod runs in the
//!    node's domain for that term's key.
//!
//! `namespaceSelector` needs namespace labels, which this pure core does not have: an empty
//! selector matches all namespaces, a non-empty one matches none (only `namespaces` count).
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#inter-pod-affinity-and-anti-affinity>

use std::collections::HashMap;

use k8s_openapi::api::core::v1::PodAffinityTerm;

use crate::cache::NodeInfo;
use crate::pod_info::PodInfo;
use crate::selector::label_selector_matches;
use crate::status::Status;

/// Plugin name.
pub const NAME: &str = "InterPodAffinity";
/// Reason when affinity is not satisfied.
pub const AFFINITY_REASON: &str = "node(s) didn't match pod affinity rules";
/// Reason when the pod's anti-affinity is violated.
pub const ANTI_AFFINITY_REASON: &str = "node(s) didn't match pod anti-affinity rules";
/// Reason when an existing pod's anti-affinity is violated.
pub const EXISTING_ANTI_AFFINITY_REASON: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Counts of matching pods per topology key and value.
type TopologyCounts = HashMap<String, HashMap<String, i64>>;

/// What `pre_filter` computed for one pod.
#[derive(Debug, Default)]
pub struct PreFilterState {
    affinity: TopologyCounts,
    anti_affinity: TopologyCounts,
    existing_anti_affinity: TopologyCounts,
}

fn bump(counts: &mut TopologyCounts, key: &str, value: &str) {
    *counts.entry(key.to_string()).or_default().entry(value.to_string()).or_default() += 1;
}

fn count(counts: &TopologyCounts, key: &str, value: &str) -> i64 {
    counts.get(key).and_then(|values| values.get(value)).copied().unwrap_or(0)
}

/// Does `term`, declared by a pod in namespace `owner_namespace`, select `target`?
pub fn term_matches(term: &PodAffinityTerm, owner_namespace: &str, target: &PodInfo) -> bool {
    let namespaces = term.namespaces.as_deref().unwrap_or(&[]);
    let namespace_ok = match term.namespace_selector.as_ref() {
        Some(selector) => {
            let everything = selector.match_labels.as_ref().is_none_or(|l| l.is_empty())
                && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty());
            everything || namespaces.contains(&target.namespace)
        }
        None if namespaces.is_empty() => target.namespace == owner_namespace,
        None => namespaces.contains(&target.namespace),
    };
    namespace_ok
        && term.label_selector.as_ref().is_some_and(|s| label_selector_matches(s, target.labels()))
}

/// Computes the counts, or `None` when there is nothing to check (the common case).
pub fn pre_filter<'a>(
    pod: &PodInfo,
    nodes: impl Iterator<Item = &'a NodeInfo>,
    cluster_has_anti_affinity: bool,
) -> Option<PreFilterState> {
    let affinity_terms = pod.required_affinity_terms();
    let anti_terms = pod.required_anti_affinity_terms();
    if affinity_terms.is_empty() && anti_terms.is_empty() && !cluster_has_anti_affinity {
        return None;
    }
    let mut state = PreFilterState::default();
    for node in nodes {
        for existing in &node.pods {
            if existing.key == pod.key {
                continue;
            }
            if !affinity_terms.is_empty()
                && affinity_terms.iter().all(|t| term_matches(t, &pod.namespace, existing))
            {
                for term in affinity_terms {
                    if let Some(value) = node.labels.get(&term.topology_key) {
                        bump(&mut state.affinity, &term.topology_key, value);
                    }
                }
            }
            for term in anti_terms {
                if term_matches(term, &pod.namespace, existing) {
                    if let Some(value) = node.labels.get(&term.topology_key) {
                        bump(&mut state.anti_affinity, &term.topology_key, value);
                    }
                }
            }
            for term in existing.required_anti_affinity_terms() {
                if term_matches(term, &existing.namespace, pod) {
                    if let Some(value) = node.labels.get(&term.topology_key) {
                        bump(&mut state.existing_anti_affinity, &term.topology_key, value);
                    }
                }
            }
        }
    }
    Some(state)
}

/// Filter.
pub fn filter(pod: &PodInfo, node: &NodeInfo, state: Option<&PreFilterState>) -> Status {
    let Some(state) = state else {
        return Status::success(NAME);
    };
    if !satisfies_affinity(pod, node, state) {
        return Status::unresolvable(NAME, AFFINITY_REASON);
    }
    let anti_violated = pod.required_anti_affinity_terms().iter().any(|term| {
        node.labels
            .get(&term.topology_key)
            .is_some_and(|value| count(&state.anti_affinity, &term.topology_key, value) > 0)
    });
    if anti_violated {
        return Status::unschedulable(NAME, ANTI_AFFINITY_REASON);
    }
    let existing_violated = state.existing_anti_affinity.iter().any(|(key, values)| {
        node.labels.get(key).is_some_and(|value| values.get(value).is_some_and(|c| *c > 0))
    });
    if existing_violated {
        return Status::unschedulable(NAME, EXISTING_ANTI_AFFINITY_REASON);
    }
    Status::success(NAME)
}

fn satisfies_affinity(pod: &PodInfo, node: &NodeInfo, state: &PreFilterState) -> bool {
    let terms = pod.required_affinity_terms();
    let mut pods_exist = true;
    for term in terms {
        match node.labels.get(&term.topology_key) {
            None => return false,
            Some(value) => {
                if count(&state.affinity, &term.topology_key, value) <= 0 {
                    pods_exist = false;
                }
            }
        }
    }
    // The first pod of a group that selects itself may start anywhere.
    pods_exist
        || (state.affinity.is_empty() && terms.iter().all(|t| term_matches(t, &pod.namespace, pod)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::testing::{pod, NodeBuilder, PodBuilder};
    use k8s_openapi::api::core::v1::{Affinity, PodAffinity, PodAntiAffinity};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn term(app: &str, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
                ..Default::default()
            }),
            topology_key: key.into(),
            ..Default::default()
        }
    }

    fn affine(b: PodBuilder, t: PodAffinityTerm) -> PodBuilder {
        b.affinity(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![t]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn anti(b: PodBuilder, t: PodAffinityTerm) -> PodBuilder {
        b.affinity(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![t]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// Zone a: n1 (runs `db`), n2; zone b: n3.
    fn cluster(existing: PodBuilder) -> Cache {
        let mut cache = Cache::new();
        for (name, zone) in [("n1", "a"), ("n2", "a"), ("n3", "b")] {
            cache
                .add_node(
                    &NodeBuilder::new(name).cpu("4").memory("4Gi").label("zone", zone).build(),
                )
                .ok();
        }
        cache.assume_pod(Arc::new(existing.info()), "n1").ok();
        cache
    }

    fn verdicts(p: &PodInfo, cache: &Cache) -> Vec<(String, Vec<String>)> {
        let state =
            pre_filter(p, cache.nodes().iter(), cache.has_pods_with_required_anti_affinity());
        let mut out: Vec<_> = cache
            .nodes()
            .iter()
            .map(|n| (n.name.clone(), filter(p, n, state.as_ref()).reasons))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn affinity_follows_the_zone_of_matching_pods() {
        let cache = cluster(pod("db").label("app", "db"));
        let p = affine(pod("web"), term("db", "zone")).info();
        let v = verdicts(&p, &cache);
        assert_eq!(v[0].1, Vec::<String>::new());
        assert_eq!(v[1].1, Vec::<String>::new());
        assert_eq!(v[2].1, vec![AFFINITY_REASON]);
    }

    #[test]
    fn first_pod_of_a_self_affine_group_goes_anywhere() {
        let cache = cluster(pod("other").label("app", "x"));
        let p = affine(pod("web").label("app", "web"), term("web", "zone")).info();
        assert!(verdicts(&p, &cache).iter().all(|(_, r)| r.is_empty()));
        let not_self = affine(pod("web"), term("web", "zone")).info();
        assert!(verdicts(&not_self, &cache).iter().all(|(_, r)| !r.is_empty()));
    }

    #[test]
    fn anti_affinity_avoids_the_zone_and_other_namespaces_do_not_count() {
        let cache = cluster(pod("db").label("app", "db"));
        let p = anti(pod("web"), term("db", "zone")).info();
        let v = verdicts(&p, &cache);
        assert_eq!(v[0].1, vec![ANTI_AFFINITY_REASON]);
        assert_eq!(v[1].1, vec![ANTI_AFFINITY_REASON]);
        assert!(v[2].1.is_empty());
        let elsewhere = anti(pod("web").namespace("other"), term("db", "zone")).info();
        assert!(verdicts(&elsewhere, &cache).iter().all(|(_, r)| r.is_empty()));
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let cache =
            cluster(anti(pod("db").label("app", "db"), term("web", "kubernetes.io/hostname")));
        let p = pod("web").label("app", "web").info();
        let v = verdicts(&p, &cache);
        assert_eq!(v[0].1, vec![EXISTING_ANTI_AFFINITY_REASON]);
        assert!(v[1].1.is_empty() && v[2].1.is_empty());
    }

    #[test]
    fn nothing_to_check_skips_pre_filter() {
        let cache = cluster(pod("db").label("app", "db"));
        assert!(pre_filter(&pod("p").info(), cache.nodes().iter(), false).is_none());
    }
}
