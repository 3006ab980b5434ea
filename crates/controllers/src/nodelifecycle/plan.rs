//! Node lifecycle decisions: is the node's heartbeat stale, what its Ready condition and taints
//! should become, and when each of its pods must be evicted. Pure; `now` is always a parameter.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Taint of a node whose agent stopped reporting.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint of a node that reports itself not ready.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Reason of the Ready=Unknown condition we set.
pub const REASON: &str = "NodeStatusUnknown";
/// Message of the Ready=Unknown condition we set (upstream's wording).
pub const MESSAGE: &str = "Kubelet stopped posting node status.";

fn secs(t: &Timestamp) -> i64 {
    t.as_second()
}

/// The node's last heartbeat (seconds since the epoch): its Lease's `renewTime` (else
/// `acquireTime`) when it has a Lease, else its Ready condition's `lastHeartbeatTime`, else its
/// creation time.
pub fn heartbeat(node: &Node, lease: Option<&Lease>) -> Option<i64> {
    if let Some(spec) = lease.and_then(|l| l.spec.as_ref()) {
        if let Some(t) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
            return Some(secs(&t.0));
        }
    }
    let ready = ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref());
    ready.or(node.metadata.creation_timestamp.as_ref()).map(|t| secs(&t.0))
}

/// Whether a heartbeat is recent enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Heard from within the grace period; look again in this many seconds (≥ 1).
    Fresh {
        /// Seconds until it would turn stale without a new heartbeat.
        recheck_in: i64,
    },
    /// Not heard from for longer than the grace period (or never).
    Stale,
}

/// Staleness of a heartbeat at `now` with grace period `grace` (seconds).
pub fn health(heartbeat: Option<i64>, now: i64, grace: i64) -> Health {
    match heartbeat {
        Some(hb) if now - hb <= grace => {
            Health::Fresh { recheck_in: (hb + grace - now).max(0) + 1 }
        }
        _ => Health::Stale,
    }
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// What to write to a node; `None` fields are left as they are.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NodeUpdate {
    /// The new `status.conditions`.
    pub conditions: Option<Vec<NodeCondition>>,
    /// The new `spec.taints`.
    pub taints: Option<Vec<Taint>>,
}

fn is_unreachable(t: &Taint) -> bool {
    t.key == UNREACHABLE && matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
}

/// The node update for a heartbeat that is `stale` or not, at `now` (upstream
/// `tryUpdateNodeHealth` + `doNoExecuteTaintingPass`, reduced to the unreachable case).
///
/// Stale: Ready becomes `Unknown` (reason [`REASON`], lastHeartbeatTime kept) and the node gets
/// the [`UNREACHABLE`] taint with NoSchedule and NoExecute (timeAdded `now`). Fresh again: the
/// Unknown condition we set is removed (the node agent posts its own) and so are the taints.
pub fn plan_node(node: &Node, stale: bool, now: Time) -> NodeUpdate {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let mut out = NodeUpdate::default();
    let ready = conditions.iter().find(|c| c.type_ == "Ready");
    if stale {
        if ready.is_none_or(|c| c.status != "Unknown") {
            let mut next: Vec<NodeCondition> =
                conditions.iter().filter(|c| c.type_ != "Ready").cloned().collect();
            next.push(NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                reason: Some(REASON.into()),
                message: Some(MESSAGE.into()),
                last_heartbeat_time: ready.and_then(|c| c.last_heartbeat_time.clone()),
                last_transition_time: Some(now.clone()),
            });
            out.conditions = Some(next);
        }
        let mut next = taints.clone();
        for effect in ["NoSchedule", "NoExecute"] {
            if !taints.iter().any(|t| t.key == UNREACHABLE && t.effect == effect) {
                next.push(Taint {
                    key: UNREACHABLE.into(),
                    effect: effect.into(),
                    time_added: Some(now.clone()),
                    value: None,
                });
            }
        }
        if next.len() != taints.len() {
            out.taints = Some(next);
        }
    } else {
        if ready.is_some_and(|c| c.status == "Unknown" && c.reason.as_deref() == Some(REASON)) {
            out.conditions =
                Some(conditions.iter().filter(|c| c.type_ != "Ready").cloned().collect());
        }
        if taints.iter().any(is_unreachable) {
            out.taints = Some(taints.iter().filter(|t| !is_unreachable(t)).cloned().collect());
        }
    }
    out
}

/// Whether `tol` tolerates `taint` (upstream `Toleration.ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect_ok = tol.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = tol.key.as_deref().unwrap_or_default();
    let key_ok = key.is_empty() || key == taint.key;
    let value_ok = match tol.operator.as_deref().unwrap_or("Equal") {
        // An empty key with Exists tolerates every taint.
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && tol.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    };
    effect_ok && key_ok && value_ok
}

/// When (seconds since the epoch) a pod on a node with `taints` must be evicted, or None if
/// never (upstream `NoExecuteTaintManager.processPodOnNode` + the `DefaultTolerationSeconds`
/// admission plugin).
///
/// Only NoExecute taints count. A pod with no toleration for the unreachable or not-ready taint
/// tolerates it for `default_secs` (what the admission plugin would have added); any other
/// untolerated NoExecute taint evicts at once (`now`). Tolerated taints evict at their
/// `timeAdded` (else `now`) plus the shortest matching `tolerationSeconds` (forever when no
/// matching toleration has seconds); the earliest of these wins.
pub fn eviction_at(pod: &Pod, taints: &[Taint], now: i64, default_secs: i64) -> Option<i64> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .filter_map(|t| {
            let added = t.time_added.as_ref().map_or(now, |x| secs(&x.0));
            let matching: Vec<&Toleration> =
                tolerations.iter().filter(|tol| tolerates(tol, t)).collect();
            if matching.is_empty() {
                return Some(if t.key == UNREACHABLE || t.key == NOT_READY {
                    added + default_secs
                } else {
                    now
                });
            }
            // The shortest bounded toleration; only unbounded ones → tolerated forever.
            matching.iter().filter_map(|tol| tol.toleration_seconds).min().map(|s| added + s.max(0))
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::test_support::PodBuilder;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn node(ready: Option<(&str, Option<&str>, i64)>, taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                creation_timestamp: Some(Time(ts(10))),
                ..Default::default()
            },
            spec: Some(NodeSpec { taints: Some(taints), ..Default::default() }),
            status: Some(NodeStatus {
                conditions: ready.map(|(status, reason, hb)| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        reason: reason.map(Into::into),
                        last_heartbeat_time: Some(Time(ts(hb))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn lease(renew: Option<i64>, acquire: Option<i64>) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                renew_time: renew.map(|s| MicroTime(ts(s))),
                acquire_time: acquire.map(|s| MicroTime(ts(s))),
                ..Default::default()
            }),
        }
    }

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: added.map(|s| Time(ts(s))),
            value: None,
        }
    }

    fn tol(key: &str, op: &str, effect: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: Some(op.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn heartbeat_comes_from_the_lease_then_the_ready_condition_then_creation() {
        let with_ready = node(Some(("True", None, 50)), vec![]);
        let bare = node(None, vec![]);
        let cases = [
            (&with_ready, Some(lease(Some(100), Some(20))), Some(100)),
            (&with_ready, Some(lease(None, Some(20))), Some(20)),
            (&with_ready, Some(lease(None, None)), Some(50)),
            (&with_ready, None, Some(50)),
            (&bare, None, Some(10)),
        ];
        for (n, l, want) in cases {
            assert_eq!(heartbeat(n, l.as_ref()), want);
        }
    }

    #[test]
    fn staleness_against_the_grace_period() {
        let cases = [
            (Some(100), 100, Health::Fresh { recheck_in: 41 }),
            (Some(100), 140, Health::Fresh { recheck_in: 1 }),
            (Some(100), 141, Health::Stale),
            (Some(100), 700, Health::Stale),
            (None, 0, Health::Stale),
        ];
        for (hb, now, want) in cases {
            assert_eq!(health(hb, now, 40), want, "hb {hb:?} now {now}");
        }
    }

    #[test]
    fn a_stale_node_becomes_unknown_and_unreachable_once() {
        let n =
            node(Some(("True", Some("KubeletReady"), 50)), vec![taint("x", "NoSchedule", None)]);
        let up = plan_node(&n, true, Time(ts(500)));
        let conds = up.conditions.clone().unwrap_or_default();
        assert_eq!(conds.len(), 1);
        assert_eq!(
            (conds[0].status.as_str(), conds[0].reason.as_deref(), conds[0].message.as_deref()),
            ("Unknown", Some(REASON), Some(MESSAGE))
        );
        assert_eq!(conds[0].last_heartbeat_time, Some(Time(ts(50))));
        let taints = up.taints.clone().unwrap_or_default();
        let keys: Vec<_> = taints.iter().map(|t| (t.key.as_str(), t.effect.as_str())).collect();
        assert_eq!(
            keys,
            [("x", "NoSchedule"), (UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
        );
        assert_eq!(taints[2].time_added, Some(Time(ts(500))));

        // Applied: nothing more to do while it stays stale.
        let mut done = n.clone();
        done.status.get_or_insert_with(Default::default).conditions = up.conditions;
        done.spec.get_or_insert_with(Default::default).taints = up.taints;
        assert_eq!(plan_node(&done, true, Time(ts(600))), NodeUpdate::default());

        // Fresh again: our condition and the taints go, other taints stay.
        let back = plan_node(&done, false, Time(ts(700)));
        assert_eq!(back.conditions, Some(vec![]));
        let keys: Vec<_> = back.taints.unwrap_or_default().into_iter().map(|t| t.key).collect();
        assert_eq!(keys, ["x"]);
    }

    #[test]
    fn a_fresh_node_is_left_alone() {
        let n = node(Some(("True", None, 50)), vec![]);
        assert_eq!(plan_node(&n, false, Time(ts(60))), NodeUpdate::default());
        // Someone else's Unknown (another reason) is not ours to clear.
        let other = node(Some(("Unknown", Some("Other"), 50)), vec![]);
        assert_eq!(plan_node(&other, false, Time(ts(60))), NodeUpdate::default());
    }

    #[test]
    fn tolerations_match_taints() {
        let t = taint(UNREACHABLE, "NoExecute", None);
        let cases = [
            (tol(UNREACHABLE, "Exists", "NoExecute", None), true),
            (tol(UNREACHABLE, "Exists", "", None), true),
            (tol("", "Exists", "", None), true),
            (tol(UNREACHABLE, "Exists", "NoSchedule", None), false),
            (tol("other", "Exists", "", None), false),
            (tol(UNREACHABLE, "Equal", "", None), true),
            (tol("", "Equal", "", None), false),
        ];
        for (tol, want) in cases {
            assert_eq!(tolerates(&tol, &t), want, "{tol:?}");
        }
    }

    #[test]
    fn eviction_deadlines_with_an_injected_clock() {
        let pod = |tols: Vec<Toleration>| {
            let mut p = PodBuilder::new("p").node("n1").build();
            p.spec = Some(PodSpec { tolerations: Some(tols), ..p.spec.unwrap_or_default() });
            p
        };
        let unreachable = vec![
            taint(UNREACHABLE, "NoSchedule", Some(1000)),
            taint(UNREACHABLE, "NoExecute", Some(1000)),
        ];
        let now = 1100;
        let cases = [
            // No toleration: the default 300 s from when the taint was added.
            (pod(vec![]), unreachable.clone(), Some(1300)),
            (
                pod(vec![tol(UNREACHABLE, "Exists", "NoExecute", Some(60))]),
                unreachable.clone(),
                Some(1060),
            ),
            (pod(vec![tol(UNREACHABLE, "Exists", "NoExecute", None)]), unreachable.clone(), None),
            (pod(vec![tol("", "Exists", "", None)]), unreachable.clone(), None),
            (
                pod(vec![tol("", "Exists", "", None), tol(UNREACHABLE, "Exists", "", Some(30))]),
                unreachable.clone(),
                Some(1030),
            ),
            // Only NoSchedule: nothing to evict.
            (pod(vec![]), vec![taint(UNREACHABLE, "NoSchedule", Some(1000))], None),
            // Some other NoExecute taint not tolerated: at once.
            (pod(vec![]), vec![taint("dedicated", "NoExecute", Some(1000))], Some(now)),
            // Missing timeAdded counts from now.
            (pod(vec![]), vec![taint(UNREACHABLE, "NoExecute", None)], Some(now + 300)),
            // Earliest of several.
            (
                pod(vec![tol("dedicated", "Exists", "", Some(10))]),
                vec![
                    taint(UNREACHABLE, "NoExecute", Some(1000)),
                    taint("dedicated", "NoExecute", Some(1050)),
                ],
                Some(1060),
            ),
        ];
        for (p, taints, want) in cases {
            assert_eq!(eviction_at(&p, &taints, now, 300), want, "{taints:?}");
        }
    }
}
