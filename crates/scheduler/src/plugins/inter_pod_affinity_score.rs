//! InterPodAffinity (preferred part): the incoming pod's `preferredDuringScheduling` pod
//! affinity terms add their weight to every node that shares the term's topology value with a
//! pod the term selects; anti-affinity terms subtract it. Scores are then scaled to 0..=100
//! between the lowest and the highest node, as upstream's `NormalizeScore` does.
//! Not yet: existing pods' own preferred terms toward the incoming pod (upstream counts both).

use std::collections::HashMap;

use crate::cache::NodeInfo;
use crate::plugins::inter_pod_affinity::term_matches;
use crate::plugins::MAX_NODE_SCORE;
use crate::pod_info::PodInfo;

/// Weight per (topology key, value): what a node in that domain gains or loses.
pub type Domains = HashMap<(String, String), i64>;

/// The weighted domains of the pod's preferred terms, or `None` when it has none.
pub fn pre_score<'a>(pod: &PodInfo, nodes: impl Iterator<Item = &'a NodeInfo>) -> Option<Domains> {
    let affinity = pod.affinity()?;
    let mut terms = Vec::new();
    if let Some(a) = affinity.pod_affinity.as_ref() {
        for t in a.preferred_during_scheduling_ignored_during_execution.iter().flatten() {
            terms.push((i64::from(t.weight), &t.pod_affinity_term));
        }
    }
    if let Some(a) = affinity.pod_anti_affinity.as_ref() {
        for t in a.preferred_during_scheduling_ignored_during_execution.iter().flatten() {
            terms.push((-i64::from(t.weight), &t.pod_affinity_term));
        }
    }
    if terms.is_empty() {
        return None;
    }
    let mut domains = Domains::new();
    for node in nodes {
        for existing in &node.pods {
            for (weight, term) in &terms {
                if !term_matches(term, &pod.namespace, existing) {
                    continue;
                }
                if let Some(value) = node.labels.get(&term.topology_key) {
                    *domains.entry((term.topology_key.clone(), value.clone())).or_default() +=
                        weight;
                }
            }
        }
    }
    Some(domains)
}

/// A node's raw score: the sum of the weights of the domains it is in.
pub fn score(node: &NodeInfo, domains: &Domains) -> i64 {
    domains
        .iter()
        .filter(|((key, value), _)| node.labels.get(key) == Some(value))
        .map(|(_, w)| *w)
        .sum()
}

/// Scale raw scores (which may be negative) to 0..=100.
pub fn normalize(scores: &mut [i64]) {
    let (min, max) =
        scores.iter().fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
    for s in scores.iter_mut() {
        *s = if max > min { MAX_NODE_SCORE * (*s - min) / (max - min) } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::testing::{pod, NodeBuilder};
    use k8s_openapi::api::core::v1::{
        Affinity, PodAffinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn term(weight: i32, app: &str) -> WeightedPodAffinityTerm {
        WeightedPodAffinityTerm {
            weight,
            pod_affinity_term: PodAffinityTerm {
                topology_key: "zone".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), app.to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }

    #[test]
    fn affinity_pulls_and_anti_affinity_pushes_by_zone() {
        let mut cache = Cache::new();
        for (name, zone) in [("a", "z1"), ("b", "z1"), ("c", "z2")] {
            cache
                .add_node(
                    &NodeBuilder::new(name)
                        .cpu("4")
                        .memory("8Gi")
                        .pods("110")
                        .label("zone", zone)
                        .build(),
                )
                .expect("node");
        }
        cache.add_pod(pod("cache-0").label("app", "cache").node("a").build()).expect("pod");
        cache.add_pod(pod("web-0").label("app", "web").node("c").build()).expect("pod");
        let affinity = Affinity {
            pod_affinity: Some(PodAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![term(10, "cache")]),
                ..Default::default()
            }),
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![term(5, "web")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = pod("web-1").label("app", "web").affinity(affinity).info();
        let domains = pre_score(&p, cache.nodes().iter()).expect("terms");
        let mut scores: Vec<i64> =
            ["a", "b", "c"].iter().map(|n| score(cache.node(n).expect("node"), &domains)).collect();
        assert_eq!(scores, vec![10, 10, -5]);
        normalize(&mut scores);
        assert_eq!(scores, vec![100, 100, 0]);
        assert!(pre_score(&pod("plain").info(), cache.nodes().iter()).is_none());
    }
}
