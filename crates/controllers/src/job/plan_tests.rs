use super::*;
use crate::pods::test_support::PodBuilder;
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn job(completions: Option<i32>, parallelism: i32) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("default".into()),
            uid: Some("job-uid".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("job".into(), "pi".into())])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn with(mut j: Job, f: impl FnOnce(&mut JobSpec)) -> Job {
    if let Some(s) = j.spec.as_mut() {
        f(s);
    }
    j
}

fn pod(name: &str, phase: &str) -> Pod {
    PodBuilder::new(name).label("job", "pi").owner("job-uid").phase(phase).build()
}

fn indexed_pod(name: &str, index: i32, phase: &str) -> Pod {
    let mut p = pod(name, phase);
    p.metadata.annotations = Some(BTreeMap::from([(INDEX_KEY.into(), index.to_string())]));
    p
}

fn cond<'s>(s: &'s JobStatus, t: &str) -> Option<&'s JobCondition> {
    s.conditions.iter().flatten().find(|c| c.type_ == t)
}

#[test]
fn table_non_indexed_create_counts() {
    // (completions, parallelism, active, succeeded, want creates)
    let cases = [
        (Some(3), 2, 0, 0, 2),
        (Some(3), 2, 2, 0, 0),
        (Some(3), 2, 1, 1, 1),
        (Some(3), 2, 0, 2, 1),
        (Some(1), 5, 0, 0, 1),
        (None, 2, 0, 0, 2),
        (None, 2, 1, 1, 0),
        (Some(3), 0, 0, 0, 0),
    ];
    for (completions, par, active, succeeded, want) in cases {
        let mut all = Vec::new();
        for i in 0..active {
            all.push(pod(&format!("a{i}"), "Running"));
        }
        for i in 0..succeeded {
            all.push(pod(&format!("s{i}"), "Succeeded"));
        }
        let refs: Vec<&Pod> = all.iter().collect();
        let p = plan(&job(completions, par), &refs, true, ts(100));
        assert_eq!(
            p.create.len(),
            want,
            "completions {completions:?} par {par} active {active} succeeded {succeeded}"
        );
        assert!(p.create.iter().all(Option::is_none));
    }
}

#[test]
fn unmet_expectations_create_nothing() {
    assert!(plan(&job(Some(3), 2), &[], false, ts(100)).create.is_empty());
}

#[test]
fn completion_sets_success_criteria_then_complete_and_stops_extras() {
    let (a, b, c, d) =
        (pod("a", "Succeeded"), pod("b", "Succeeded"), pod("c", "Succeeded"), pod("d", "Running"));
    let p = plan(&job(Some(3), 2), &[&a, &b, &c, &d], true, ts(100));
    let s = &p.status;
    assert_eq!(s.succeeded, Some(3));
    assert_eq!(cond(s, "SuccessCriteriaMet").map(|c| c.status.as_str()), Some("True"));
    let complete = cond(s, "Complete").cloned().unwrap_or_default();
    assert_eq!(
        (complete.status.as_str(), complete.reason.as_deref()),
        ("True", Some("CompletionsReached"))
    );
    let order: Vec<&str> = s.conditions.iter().flatten().map(|c| c.type_.as_str()).collect();
    assert_eq!(order, ["SuccessCriteriaMet", "Complete"]);
    assert_eq!(s.completion_time.as_ref().map(|t| t.0.as_second()), Some(100));
    assert_eq!(p.delete.len(), 1);
    assert_eq!((s.active, s.terminating), (None, Some(1)));
    assert!(p.create.is_empty());
}

#[test]
fn exceeding_the_backoff_limit_fails_the_job_and_deletes_active_pods() {
    let j = with(job(Some(3), 2), |s| s.backoff_limit = Some(1));
    let (a, b, c) = (pod("a", "Failed"), pod("b", "Failed"), pod("c", "Running"));
    let p = plan(&j, &[&a, &b, &c], true, ts(100));
    let failed = cond(&p.status, "Failed").cloned().unwrap_or_default();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        cond(&p.status, "FailureTarget").and_then(|c| c.reason.as_deref()),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(p.status.failed, Some(2));
    assert_eq!(p.delete.len(), 1);
    assert!(p.create.is_empty());
    assert!(p.status.completion_time.is_none());
    // At the limit the job goes on.
    let p = plan(&j, &[&a], true, ts(100));
    assert!(cond(&p.status, "Failed").is_none());
    assert_eq!(p.create.len(), 2);
}

#[test]
fn backoff_delays_replacements() {
    let j = with(job(Some(1), 1), |s| s.backoff_limit = Some(6));
    let mut f = pod("f", "Failed");
    if let Some(st) = f.status.as_mut() {
        st.container_statuses = Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
            state: Some(k8s_openapi::api::core::v1::ContainerState {
                terminated: Some(k8s_openapi::api::core::v1::ContainerStateTerminated {
                    exit_code: 1,
                    finished_at: Some(Time(ts(100))),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
    }
    let p = plan(&j, &[&f], true, ts(105));
    assert!(p.create.is_empty());
    assert_eq!(p.requeue_after, Some(5));
    assert_eq!(plan(&j, &[&f], true, ts(110)).create.len(), 1);
}

#[test]
fn active_deadline_fails_the_job() {
    let mut j = with(job(Some(1), 1), |s| s.active_deadline_seconds = Some(30));
    j.status = Some(JobStatus { start_time: Some(Time(ts(100))), ..Default::default() });
    let a = pod("a", "Running");
    let p = plan(&j, &[&a], true, ts(110));
    assert_eq!(p.requeue_after, Some(20));
    assert!(cond(&p.status, "Failed").is_none());
    let p = plan(&j, &[&a], true, ts(130));
    assert_eq!(
        cond(&p.status, "Failed").and_then(|c| c.reason.as_deref()),
        Some("DeadlineExceeded")
    );
    assert_eq!(p.delete.len(), 1);
}

#[test]
fn indexed_jobs_create_the_missing_indexes() {
    let j = with(job(Some(5), 3), |s| s.completion_mode = Some("Indexed".into()));
    let (a, b) = (indexed_pod("a", 0, "Succeeded"), indexed_pod("b", 2, "Running"));
    let p = plan(&j, &[&a, &b], true, ts(100));
    assert_eq!(p.create, [Some(1), Some(3)]);
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0"));
    assert_eq!(p.status.succeeded, Some(1));
    // Completed indexes from the status survive their pods.
    let mut j2 = j.clone();
    j2.status = Some(JobStatus { completed_indexes: Some("0-1,3".into()), ..Default::default() });
    let p = plan(&j2, &[&b], true, ts(100));
    assert_eq!(p.create, [Some(4)]);
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0-1,3"));
}

#[test]
fn indexes_round_trip() {
    let set = parse_indexes("0-2,4,6-7");
    assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 1, 2, 4, 6, 7]);
    assert_eq!(format_indexes(&set), "0-2,4,6-7");
    assert_eq!(format_indexes(&BTreeSet::new()), "");
}

#[test]
fn suspend_deletes_active_pods_and_resume_restarts_the_clock() {
    let j = with(job(Some(2), 2), |s| s.suspend = Some(true));
    let a = pod("a", "Running");
    let p = plan(&j, &[&a], true, ts(100));
    assert_eq!(p.delete.len(), 1);
    assert!(p.create.is_empty());
    assert_eq!(
        cond(&p.status, "Suspended").and_then(|c| c.reason.as_deref()),
        Some("JobSuspended")
    );
    let mut resumed = job(Some(2), 2);
    resumed.status = Some(p.status.clone());
    let p = plan(&resumed, &[], true, ts(200));
    assert_eq!(p.create.len(), 2);
    let s = cond(&p.status, "Suspended").cloned().unwrap_or_default();
    assert_eq!((s.status.as_str(), s.reason.as_deref()), ("False", Some("JobResumed")));
    assert_eq!(p.status.start_time.map(|t| t.0.as_second()), Some(200));
}

#[test]
fn ttl_after_finished_deletes_the_job_when_expired() {
    let mut j = with(job(Some(1), 1), |s| s.ttl_seconds_after_finished = Some(60));
    let a = pod("a", "Succeeded");
    let done = plan(&j, &[&a], true, ts(100));
    j.status = Some(done.status);
    let p = plan(&j, &[], true, ts(130));
    assert_eq!((p.delete_job, p.requeue_after), (false, Some(30)));
    assert!(plan(&j, &[], true, ts(160)).delete_job);
}

#[test]
fn orphans_are_adopted_and_others_ignored() {
    let orphan = PodBuilder::new("o").label("job", "pi").build();
    let other = PodBuilder::new("x").label("job", "pi").owner("other").build();
    let p = plan(&job(Some(2), 2), &[&orphan, &other], true, ts(100));
    assert_eq!(p.adopt.len(), 1);
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.status.active, Some(1));
}
