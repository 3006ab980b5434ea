use super::*;
use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn deployment(replicas: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

fn rs(name: &str, spec: i32, actual: i32, available: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(ReplicaSetSpec { replicas: Some(spec), ..Default::default() }),
        status: Some(ReplicaSetStatus {
            replicas: actual,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..Default::default()
        }),
    }
}

fn reason_of(s: &DeploymentStatus, t: &str) -> Option<String> {
    s.conditions.iter().flatten().find(|c| c.type_ == t).and_then(|c| c.reason.clone())
}

#[test]
fn a_complete_rollout_reports_new_replica_set_available() {
    let new = rs("web-1", 3, 3, 3);
    let (s, wait) =
        compute(&deployment(3), &[&new], Some(&new), &NewRs::Found("web-1".into()), 0, at(10));
    assert_eq!(
        (s.replicas, s.updated_replicas, s.available_replicas, s.unavailable_replicas),
        (Some(3), Some(3), Some(3), Some(0))
    );
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(reason_of(&s, "Available").as_deref(), Some(reason::MIN_AVAILABLE));
    assert_eq!(reason_of(&s, "Progressing").as_deref(), Some(reason::NEW_RS_AVAILABLE));
    assert_eq!(wait, None);
}

#[test]
fn a_rollout_in_progress_then_stuck_times_out() {
    let old = rs("web-1", 2, 2, 2);
    let new = rs("web-2", 2, 2, 0);
    let mut d = deployment(3);
    let (s, _) = compute(&d, &[&old, &new], Some(&new), &NewRs::Created("web-2".into()), 1, at(10));
    assert_eq!(reason_of(&s, "Available").as_deref(), Some(reason::MIN_AVAILABLE));
    assert_eq!(reason_of(&s, "Progressing").as_deref(), Some(reason::RS_UPDATED));
    d.status = Some(s);
    // Nothing changes for a while: a requeue is due at the deadline...
    let (s, wait) =
        compute(&d, &[&old, &new], Some(&new), &NewRs::Found("web-2".into()), 1, at(20));
    assert_eq!(wait, Some(591));
    d.status = Some(s);
    // ...and after it the rollout has timed out.
    let (s, _) = compute(&d, &[&old, &new], Some(&new), &NewRs::Found("web-2".into()), 1, at(700));
    assert_eq!(reason_of(&s, "Progressing").as_deref(), Some(reason::TIMED_OUT));
}

#[test]
fn too_few_available_pods_make_it_unavailable_and_pause_is_reported() {
    let new = rs("web-1", 3, 3, 1);
    let mut d = deployment(3);
    if let Some(s) = d.spec.as_mut() {
        s.paused = Some(true);
    }
    let (s, _) = compute(&d, &[&new], Some(&new), &NewRs::Found("web-1".into()), 1, at(10));
    assert_eq!(reason_of(&s, "Available").as_deref(), Some(reason::MIN_UNAVAILABLE));
    assert_eq!(reason_of(&s, "Progressing").as_deref(), Some(reason::PAUSED));
}
