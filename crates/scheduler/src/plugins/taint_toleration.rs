//! TaintToleration: `NoSchedule`/`NoExecute` taints a pod does not tolerate keep it off a node
//! (filter); untolerated `PreferNoSchedule` taints make a node less attractive (score).
//! <https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/>

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::cache::NodeInfo;
use crate::pod_info::PodInfo;
use crate::status::Status;

/// Plugin name.
pub const NAME: &str = "TaintToleration";

/// Upstream's `Toleration.ToleratesTaint`: an empty effect matches every effect, an empty key
/// with `Exists` matches every taint, `Equal` (or no operator) compares values.
pub fn toleration_tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
}

/// Does any of the pod's tolerations tolerate `taint`?
pub fn tolerates(pod: &PodInfo, taint: &Taint) -> bool {
    tolerations(pod).iter().any(|t| toleration_tolerates(t, taint))
}

/// Filter: the first untolerated `NoSchedule`/`NoExecute` taint fails the node.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    let untolerated = node.taints.iter().find(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerates(pod, taint)
    });
    match untolerated {
        None => Status::success(NAME),
        Some(taint) => Status::unresolvable(
            NAME,
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            ),
        ),
    }
}

/// Raw score: the number of `PreferNoSchedule` taints not tolerated by a toleration whose
/// effect is empty or `PreferNoSchedule` (normalize with `reverse`: fewer is better).
pub fn score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    if node.taints.is_empty() {
        return 0;
    }
    let prefer: Vec<&Toleration> = tolerations(pod)
        .iter()
        .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
        .collect();
    node.taints
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule")
        .filter(|taint| !prefer.iter().any(|t| toleration_tolerates(t, taint)))
        .count() as i64
}

/// Normalization: reversed default normalization.
pub fn normalize(scores: &mut [i64]) {
    crate::plugins::default_normalize(scores, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pod, toleration, NodeBuilder};

    fn tainted(key: &str, value: &str, effect: &str) -> NodeInfo {
        NodeInfo::from_node(&NodeBuilder::new("n").taint(key, value, effect).build())
            .unwrap_or_default()
    }

    #[test]
    fn filter_table() {
        let cp = "node-role.kubernetes.io/control-plane";
        let cases = [
            (tainted(cp, "", "NoSchedule"), vec![], false),
            (tainted(cp, "", "NoSchedule"), vec![toleration(cp, "Exists", "", "")], true),
            (tainted(cp, "", "NoSchedule"), vec![toleration("", "Exists", "", "")], true),
            (tainted(cp, "", "NoSchedule"), vec![toleration(cp, "Exists", "", "NoExecute")], false),
            (tainted("gpu", "yes", "NoExecute"), vec![toleration("gpu", "Equal", "yes", "")], true),
            (tainted("gpu", "yes", "NoExecute"), vec![toleration("gpu", "", "yes", "")], true),
            (tainted("gpu", "yes", "NoExecute"), vec![toleration("gpu", "Equal", "no", "")], false),
            (
                tainted("gpu", "yes", "NoExecute"),
                vec![toleration("gpu", "Bogus", "yes", "")],
                false,
            ),
            (tainted("soft", "x", "PreferNoSchedule"), vec![], true),
        ];
        for (node, tolerations, ok) in cases {
            let mut builder = pod("p");
            for t in tolerations {
                builder = builder.toleration(t);
            }
            let status = filter(&builder.info(), &node);
            assert_eq!(status.is_success(), ok, "{:?}", node.taints);
        }
    }

    #[test]
    fn filter_reason_is_upstreams() {
        let status = filter(
            &pod("p").info(),
            &tainted("node-role.kubernetes.io/control-plane", "", "NoSchedule"),
        );
        assert_eq!(
            status.reasons,
            vec!["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]
        );
        let status = filter(&pod("p").info(), &tainted("gpu", "yes", "NoExecute"));
        assert_eq!(status.reasons, vec!["node(s) had untolerated taint {gpu: yes}"]);
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let soft = tainted("soft", "x", "PreferNoSchedule");
        let plain = NodeInfo::default();
        let mut scores = [score(&pod("p").info(), &soft), score(&pod("p").info(), &plain)];
        normalize(&mut scores);
        assert_eq!(scores, [0, 100]);
        let tolerant = pod("t").toleration(toleration("soft", "Exists", "", "")).info();
        assert_eq!(score(&tolerant, &soft), 0);
    }
}
