//! Preemption (upstream's `DefaultPreemption` post-filter, simplified): when a pod fits
//! nowhere, find the node where evicting the fewest, lowest-priority pods makes room.
//!
//! Per node: pretend every pod of lower priority is gone; if the preemptor still does not fit,
//! the node cannot help. Otherwise give pods back their place one by one, highest priority
//! first, keeping each that still leaves room: what is left are the victims. Among the
//! candidates, the fewest victims win, then the lowest highest-victim priority, then the name.
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/pod-priority-preemption/>
//!
//! PodDisruptionBudgets count as upstream counts them: each victim a budget selects uses one
//! of its `disruptionsAllowed`; a victim beyond that is a violation, and the candidate with the
//! fewest violations wins before the victim count is compared (so budgets are respected where
//! possible, not at any price). Not yet: victims' effect on other nodes' affinity state (the
//! cluster-wide pre-filter state is reused).

use crate::cache::{Cache, NodeInfo};
use crate::pod_info::PodInfo;
use crate::schedule::{pre_filter, run_filters};
use std::sync::Arc;

/// What preemption needs to know of one PodDisruptionBudget.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Its namespace (budgets select pods of their own namespace).
    pub namespace: String,
    /// Its selector.
    pub selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    /// `status.disruptionsAllowed`.
    pub allowed: i32,
}

/// How many of `victims` a budget would not allow.
pub fn violations(victims: &[Arc<PodInfo>], budgets: &[Budget]) -> usize {
    let mut left: Vec<i32> = budgets.iter().map(|b| b.allowed).collect();
    let mut count = 0;
    for v in victims {
        let mut violated = false;
        for (b, allowance) in budgets.iter().zip(left.iter_mut()) {
            if b.namespace == v.namespace
                && crate::selector::label_selector_matches(&b.selector, v.labels())
            {
                *allowance -= 1;
                violated |= *allowance < 0;
            }
        }
        count += usize::from(violated);
    }
    count
}

/// Where to preempt, and whom.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node the preemptor is nominated to.
    pub node: String,
    /// Pods to evict, lowest priority first.
    pub victims: Vec<Arc<PodInfo>>,
}

fn may_preempt(pod: &PodInfo) -> bool {
    pod.pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) != Some("Never")
}

/// The victims on one node, if evicting lower-priority pods there makes the pod fit.
pub fn victims_on(pod: &PodInfo, node: &NodeInfo, cache: &Cache) -> Option<Vec<Arc<PodInfo>>> {
    let terminating = |p: &PodInfo| p.pod.metadata.deletion_timestamp.is_some();
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority && !terminating(p))
        .cloned()
        .collect();
    if lower.is_empty() {
        return None;
    }
    let state = pre_filter(pod, cache);
    let mut trial = node.clone();
    // Pods already on their way out (earlier victims) count as gone: never victims twice.
    for p in node.pods.iter().filter(|p| terminating(p)).chain(lower.iter()) {
        trial.remove(&p.key);
    }
    if !run_filters(pod, &trial, &state).is_success() {
        return None;
    }
    // Reprieve the most important pods first.
    lower.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.key.cmp(&b.key)));
    let mut victims = Vec::new();
    for p in lower {
        trial.add(p.clone());
        if !run_filters(pod, &trial, &state).is_success() {
            trial.remove(&p.key);
            victims.push(p);
        }
    }
    victims.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.key.cmp(&b.key)));
    Some(victims)
}

/// The best node to preempt on, if any.
pub fn find_candidate(pod: &PodInfo, cache: &Cache, budgets: &[Budget]) -> Option<Candidate> {
    if !may_preempt(pod) {
        return None;
    }
    cache
        .nodes()
        .iter()
        .filter_map(|n| victims_on(pod, n, cache).map(|v| (n.name.clone(), v)))
        .filter(|(_, v)| !v.is_empty())
        .min_by(|(an, av), (bn, bv)| {
            let top = |v: &[Arc<PodInfo>]| v.iter().map(|p| p.priority).max().unwrap_or(i32::MIN);
            violations(av, budgets)
                .cmp(&violations(bv, budgets))
                .then_with(|| av.len().cmp(&bv.len()))
                .then_with(|| top(av).cmp(&top(bv)))
                .then_with(|| an.cmp(bn))
        })
        .map(|(node, victims)| Candidate { node, victims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pod, NodeBuilder};

    fn cache_with(nodes: &[(&str, &str)], pods: &[(&str, &str, &str, i32)]) -> Cache {
        let mut c = Cache::new();
        for (name, cpu) in nodes {
            c.add_node(&NodeBuilder::new(name).cpu(cpu).memory("8Gi").pods("110").build())
                .expect("node");
        }
        for (name, node, cpu, prio) in pods {
            let p = pod(name).cpu(cpu).node(node).priority(*prio).build();
            c.add_pod(p).expect("pod");
        }
        c
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        let cache = cache_with(
            &[("a", "2"), ("b", "2")],
            &[("a1", "a", "1", 0), ("a2", "a", "1", 0), ("b1", "b", "1", 10), ("b2", "b", "1", 0)],
        );
        let high = pod("high").cpu("1").priority(100).info();
        let c = find_candidate(&high, &cache, &[]).expect("candidate");
        let names: Vec<&str> = c.victims.iter().map(|v| v.key.as_str()).collect();
        // One victim is enough on either node; node a's victim has the lower top priority.
        assert_eq!(c.node, "a");
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn no_candidate_without_lower_priority_pods_or_with_policy_never() {
        let cache = cache_with(&[("a", "1")], &[("a1", "a", "1", 100)]);
        assert!(find_candidate(&pod("p").cpu("1").priority(100).info(), &cache, &[]).is_none());
        let cache = cache_with(&[("a", "1")], &[("a1", "a", "1", 0)]);
        let mut never = pod("p").cpu("1").priority(100).build();
        if let Some(s) = never.spec.as_mut() {
            s.preemption_policy = Some("Never".into());
        }
        let info = PodInfo::new(Arc::new(never)).expect("info");
        assert!(find_candidate(&info, &cache, &[]).is_none());
        assert!(find_candidate(&pod("p").cpu("1").priority(100).info(), &cache, &[]).is_some());
    }

    #[test]
    fn budgets_steer_preemption_to_the_node_that_violates_none() {
        let mut c = Cache::new();
        for name in ["a", "b"] {
            c.add_node(&NodeBuilder::new(name).cpu("1").memory("8Gi").pods("110").build())
                .expect("node");
        }
        c.add_pod(pod("guarded").cpu("1").node("a").priority(0).label("app", "db").build())
            .expect("pod");
        c.add_pod(pod("free").cpu("1").node("b").priority(5).build()).expect("pod");
        let budget = Budget {
            namespace: "default".into(),
            selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some([("app".to_string(), "db".to_string())].into()),
                ..Default::default()
            },
            allowed: 0,
        };
        let high = pod("high").cpu("1").priority(100).info();
        // Without the budget node a wins (its victim has the lower priority); with it, node b.
        assert_eq!(find_candidate(&high, &c, &[]).expect("candidate").node, "a");
        assert_eq!(find_candidate(&high, &c, &[budget]).expect("candidate").node, "b");
    }

    #[test]
    fn a_pod_too_big_for_any_node_preempts_nobody() {
        let cache = cache_with(&[("a", "2")], &[("a1", "a", "1", 0)]);
        assert!(find_candidate(&pod("p").cpu("4").priority(100).info(), &cache, &[]).is_none());
    }
}
