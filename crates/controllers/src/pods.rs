//! Pod facts the workload controllers share: active, ready, available, and which pod to
//! delete first.
//!
//! Until a node agent reports real status, a pod is Ready exactly when its `Ready` condition is
//! `True` (tests patch pod status to simulate an agent).

use k8s_openapi::api::core::v1::Pod;
use std::cmp::Ordering;

/// Not finished and not being deleted (upstream `controller.IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The time (seconds since the epoch) the pod became Ready, if it is Ready.
pub fn ready_since(pod: &Pod) -> Option<i64> {
    let cond = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    if cond.status != "True" {
        return None;
    }
    // A Ready condition without a transition time counts as ready "forever" (it cannot be
    // newer than now), which is what upstream's zero time does too.
    Some(cond.last_transition_time.as_ref().map_or(0, |t| t.0.as_second()))
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (upstream `podutil.IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i64, now: i64) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + min_ready_seconds <= now,
    }
}

/// Seconds until a ready-but-not-yet-available pod becomes available, if any such pod.
pub fn next_available_in(pod: &Pod, min_ready_seconds: i64, now: i64) -> Option<i64> {
    let since = ready_since(pod)?;
    let at = since + min_ready_seconds;
    (min_ready_seconds > 0 && at > now).then_some(at - now)
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        // Unknown and anything unexpected sits between pending and running.
        _ => 1,
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
}

fn created(pod: &Pod) -> i64 {
    pod.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second())
}

/// Deletion preference (upstream `controller.ActivePods.Less`): `Less` means "delete first".
/// Unscheduled < scheduled, Pending < Unknown < Running, not ready < ready, ready for less
/// time < longer, more restarts < fewer, newer < older.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled =
        |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty());
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            // Both ready: the one ready more recently goes first.
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A small pod builder for the controllers' unit tests.
    use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    /// Builds test pods.
    pub struct PodBuilder(Pod);

    impl PodBuilder {
        pub fn new(name: &str) -> Self {
            PodBuilder(Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("default".into()),
                    uid: Some(format!("uid-{name}")),
                    creation_timestamp: Some(at(1000)),
                    ..Default::default()
                },
                spec: Some(PodSpec::default()),
                status: Some(PodStatus { phase: Some("Pending".into()), ..Default::default() }),
            })
        }
        pub fn node(mut self, node: &str) -> Self {
            if let Some(s) = self.0.spec.as_mut() {
                s.node_name = Some(node.into());
            }
            self
        }
        pub fn phase(mut self, phase: &str) -> Self {
            if let Some(s) = self.0.status.as_mut() {
                s.phase = Some(phase.into());
            }
            self
        }
        pub fn ready_at(mut self, secs: i64) -> Self {
            if let Some(s) = self.0.status.as_mut() {
                s.phase = Some("Running".into());
                s.conditions = Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(at(secs)),
                    ..Default::default()
                }]);
            }
            self
        }
        pub fn restarts(mut self, n: i32) -> Self {
            if let Some(s) = self.0.status.as_mut() {
                s.container_statuses =
                    Some(vec![ContainerStatus { restart_count: n, ..Default::default() }]);
            }
            self
        }
        pub fn created(mut self, secs: i64) -> Self {
            self.0.metadata.creation_timestamp = Some(at(secs));
            self
        }
        pub fn label(mut self, k: &str, v: &str) -> Self {
            self.0.metadata.labels.get_or_insert_with(Default::default).insert(k.into(), v.into());
            self
        }
        pub fn owner(mut self, uid: &str) -> Self {
            self.0.metadata.owner_references =
                Some(vec![crate::claim::owner_reference("apps/v1", "ReplicaSet", "rs", uid)]);
            self
        }
        pub fn deleting(mut self) -> Self {
            self.0.metadata.deletion_timestamp = Some(at(2000));
            self
        }
        pub fn build(self) -> Pod {
            self.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::PodBuilder;
    use super::*;

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = PodBuilder::new("a").ready_at(100).build();
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, 100));
        assert!(!is_available(&p, 10, 105));
        assert!(is_available(&p, 10, 110));
        assert_eq!(next_available_in(&p, 10, 105), Some(5));
        assert!(!is_available(&PodBuilder::new("b").build(), 0, 100));
    }

    #[test]
    fn finished_or_deleting_pods_are_not_active() {
        assert!(is_active(&PodBuilder::new("a").build()));
        assert!(!is_active(&PodBuilder::new("a").phase("Succeeded").build()));
        assert!(!is_active(&PodBuilder::new("a").phase("Failed").build()));
        assert!(!is_active(&PodBuilder::new("a").deleting().build()));
    }

    #[test]
    fn deletion_prefers_the_least_valuable_pod() {
        let mut pods = [
            PodBuilder::new("ready-old").node("n").ready_at(10).build(),
            PodBuilder::new("unscheduled").build(),
            PodBuilder::new("running-notready").node("n").phase("Running").build(),
            PodBuilder::new("pending").node("n").build(),
            PodBuilder::new("unknown").node("n").phase("Unknown").build(),
            PodBuilder::new("ready-new").node("n").ready_at(50).build(),
            PodBuilder::new("ready-old-restarts").node("n").ready_at(10).restarts(3).build(),
            PodBuilder::new("ready-old-newer").node("n").ready_at(10).created(5000).build(),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<_> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "unknown",
                "running-notready",
                "ready-new",
                "ready-old-restarts",
                "ready-old-newer",
                "ready-old"
            ]
        );
    }
}
