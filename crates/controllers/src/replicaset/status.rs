//! ReplicaSet status from the pods it owns. Pure.

use crate::pods;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The condition type upstream sets when pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// A failed create or delete in this reconcile: (`FailedCreate`|`FailedDelete`, message).
pub type Failure = (String, String);

/// Compute the status (upstream `calculateStatus`): counts over the active pods owned after
/// claiming, and the ReplicaFailure condition set on a failure, removed once none happened.
pub fn compute(
    rs: &ReplicaSet,
    owned: &[&Pod],
    failure: Option<&Failure>,
    now: Time,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = i64::from(spec.and_then(|s| s.min_ready_seconds).unwrap_or(0));
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let now_secs = now.0.as_second();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(owned.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p: &Pod| {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    });
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old.conditions.clone().unwrap_or_default();
    match failure {
        Some((reason, message)) => {
            let existing = conditions.iter().find(|c| c.type_ == REPLICA_FAILURE);
            if existing.is_none_or(|c| c.reason.as_deref() != Some(reason)) {
                conditions.retain(|c| c.type_ != REPLICA_FAILURE);
                conditions.push(ReplicaSetCondition {
                    type_: REPLICA_FAILURE.into(),
                    status: "True".into(),
                    reason: Some(reason.clone()),
                    message: Some(message.clone()),
                    last_transition_time: Some(now),
                });
            }
        }
        None => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
    }
    ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(count(&pods::is_ready)),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now_secs))),
        observed_generation: rs.metadata.generation.or(old.observed_generation),
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old.terminating_replicas,
    }
}

/// Seconds until the next owned pod becomes available (for a timed requeue with
/// minReadySeconds), if any is waiting.
pub fn next_available_in(rs: &ReplicaSet, owned: &[&Pod], now_secs: i64) -> Option<i64> {
    let min_ready = i64::from(rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0));
    owned.iter().filter_map(|p| pods::next_available_in(p, min_ready, now_secs)).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::test_support::PodBuilder;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;
    use std::collections::BTreeMap;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    fn rs(min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta { generation: Some(4), ..Default::default() },
            spec: Some(ReplicaSetSpec {
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([
                            ("app".into(), "web".into()),
                            ("tier".into(), "fe".into()),
                        ])),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn counts_ready_available_and_fully_labeled() {
        let a = PodBuilder::new("a").label("app", "web").label("tier", "fe").ready_at(100).build();
        let b = PodBuilder::new("b").label("app", "web").ready_at(195).build();
        let c = PodBuilder::new("c").label("app", "web").label("tier", "fe").build();
        let s = compute(&rs(10), &[&a, &b, &c], None, at(200));
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(2));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1));
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(next_available_in(&rs(10), &[&a, &b, &c], 200), Some(5));
    }

    #[test]
    fn replica_failure_is_set_then_cleared() {
        let mut r = rs(0);
        let failure = ("FailedCreate".to_string(), "pods \"x\" is forbidden".to_string());
        let s = compute(&r, &[], Some(&failure), at(1));
        let conds = s.conditions.clone().unwrap_or_default();
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].reason.as_deref(), Some("FailedCreate"));
        r.status = Some(s);
        assert!(compute(&r, &[], None, at(2)).conditions.is_none());
    }
}
