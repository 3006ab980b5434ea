use super::*;
use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobStatus};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn cronjob(schedule: &str) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("hello".into()),
            namespace: Some("default".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(Time(ts("2025-01-01T00:00:00Z"))),
            ..Default::default()
        },
        spec: Some(CronJobSpec { schedule: schedule.into(), ..Default::default() }),
        status: None,
    }
}

fn with(mut cj: CronJob, f: impl FnOnce(&mut CronJobSpec)) -> CronJob {
    if let Some(s) = cj.spec.as_mut() {
        f(s);
    }
    cj
}

fn owned_job(name: &str, finished: Option<(&str, &str)>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            owner_references: Some(vec![claim::owner_reference(
                "batch/v1", "CronJob", "hello", "cj-uid",
            )]),
            ..Default::default()
        },
        spec: None,
        status: finished.map(|(type_, at)| JobStatus {
            start_time: Some(Time(ts(at))),
            completion_time: (type_ == "Complete").then(|| Time(ts(at))),
            conditions: Some(vec![JobCondition {
                type_: type_.into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn run(cj: &CronJob, jobs: &[&Job], now: &str) -> Plan {
    plan(cj, jobs, &BTreeSet::new(), Some(&TimeZone::UTC), ts(now))
}

#[test]
fn starts_a_job_for_the_most_recent_schedule_time() {
    let p = run(&cronjob("*/5 * * * *"), &[], "2025-01-01T00:12:30Z");
    let job = p.create.unwrap_or_default();
    // 00:10 = 29_076_490 minutes since the epoch.
    assert_eq!(job.metadata.name.as_deref(), Some("hello-28928170"));
    let ann = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(ann.get(SCHEDULED_TIMESTAMP).map(String::as_str), Some("2025-01-01T00:10:00Z"));
    let owner = claim::controller_of(&job.metadata).cloned().unwrap_or_default();
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("CronJob", "cj-uid"));
    assert_eq!(p.status.last_schedule_time.map(|t| t.0), Some(ts("2025-01-01T00:10:00Z")));
    assert_eq!(p.requeue_after, Some(150));
}

#[test]
fn table_when_nothing_starts() {
    let running = owned_job("hello-28928170", None);
    let mut active_cj = cronjob("*/5 * * * *");
    active_cj.status = Some(CronJobStatus {
        active: Some(vec![job_ref(&running)]),
        last_schedule_time: Some(Time(ts("2025-01-01T00:05:00Z"))),
        ..Default::default()
    });
    let forbid = with(active_cj.clone(), |s| s.concurrency_policy = Some("Forbid".into()));
    let cases: [(&str, CronJob, &str); 5] = [
        ("before the first time", cronjob("*/5 * * * *"), "2025-01-01T00:04:59Z"),
        (
            "suspended",
            with(cronjob("* * * * *"), |s| s.suspend = Some(true)),
            "2025-01-01T01:00:00Z",
        ),
        ("bad schedule", cronjob("61 * * * *"), "2025-01-01T01:00:00Z"),
        (
            "past the starting deadline",
            with(cronjob("0 * * * *"), |s| s.starting_deadline_seconds = Some(10)),
            "2025-01-01T01:00:30Z",
        ),
        ("forbid while running", forbid, "2025-01-01T00:12:00Z"),
    ];
    for (what, cj, now) in cases {
        let p = run(&cj, &[&running], now);
        assert!(p.create.is_none(), "{what}");
    }
    // Already started for this time (job exists): nothing new.
    assert!(run(&active_cj, &[&running], "2025-01-01T00:10:30Z").create.is_none());
}

#[test]
fn allow_and_replace_start_alongside_or_instead() {
    let running = owned_job("hello-28928165", None);
    let mut cj = cronjob("*/5 * * * *");
    cj.status = Some(CronJobStatus {
        active: Some(vec![job_ref(&running)]),
        last_schedule_time: Some(Time(ts("2025-01-01T00:05:00Z"))),
        ..Default::default()
    });
    let p = run(&cj, &[&running], "2025-01-01T00:10:00Z");
    assert!(p.create.is_some());
    assert!(p.replace.is_empty());
    assert_eq!(p.status.active.map(|a| a.len()), Some(1));
    let replace = with(cj, |s| s.concurrency_policy = Some("Replace".into()));
    let p = run(&replace, &[&running], "2025-01-01T00:10:00Z");
    assert!(p.create.is_some());
    assert_eq!(p.replace.len(), 1);
    assert_eq!(p.status.active, None);
}

#[test]
fn finished_jobs_leave_the_active_list_and_history_is_trimmed() {
    let jobs: Vec<Job> = [
        ("a", "Complete", "2025-01-01T00:01:00Z"),
        ("b", "Complete", "2025-01-01T00:02:00Z"),
        ("c", "Complete", "2025-01-01T00:03:00Z"),
        ("d", "Complete", "2025-01-01T00:04:00Z"),
        ("e", "Failed", "2025-01-01T00:05:00Z"),
        ("f", "Failed", "2025-01-01T00:06:00Z"),
    ]
    .iter()
    .map(|(n, t, at)| owned_job(n, Some((t, at))))
    .collect();
    let refs: Vec<&Job> = jobs.iter().collect();
    let mut cj = cronjob("@daily");
    cj.status = Some(CronJobStatus {
        active: Some(vec![job_ref(&jobs[3])]),
        last_schedule_time: Some(Time(ts("2025-01-01T00:00:00Z"))),
        ..Default::default()
    });
    let p = run(&cj, &refs, "2025-01-01T00:10:00Z");
    assert_eq!(p.cleanup, ["a", "e"]);
    assert_eq!(p.status.active, None);
    assert_eq!(p.status.last_successful_time.map(|t| t.0), Some(ts("2025-01-01T00:04:00Z")));
    // Deleted jobs leave the active list too.
    let gone_job = owned_job("g", None);
    cj.status =
        Some(CronJobStatus { active: Some(vec![job_ref(&gone_job)]), ..Default::default() });
    let gone = BTreeSet::from(["uid-g".to_string()]);
    let p = plan(&cj, &[], &gone, Some(&TimeZone::UTC), ts("2025-01-01T00:10:00Z"));
    assert_eq!(p.status.active, None);
}

#[test]
fn time_zone_and_missing_zone() {
    let tz = TimeZone::fixed(k8s_openapi::jiff::tz::offset(2));
    let cj = cronjob("0 9 * * *");
    let p = plan(&cj, &[], &BTreeSet::new(), Some(&tz), ts("2025-01-01T07:00:10Z"));
    let job = p.create.unwrap_or_default();
    let ann = job.metadata.annotations.unwrap_or_default();
    assert_eq!(ann.get(SCHEDULED_TIMESTAMP).map(String::as_str), Some("2025-01-01T09:00:00+02:00"));
    let p = plan(&cj, &[], &BTreeSet::new(), None, ts("2025-01-01T07:00:10Z"));
    assert!(p.create.is_none() && p.warning.is_some());
}

#[test]
fn starting_deadline_bounds_the_missed_window() {
    // Created long ago, never ran: with a deadline only the recent window counts.
    let cj = with(cronjob("0 * * * *"), |s| s.starting_deadline_seconds = Some(120));
    let p = run(&cj, &[], "2025-03-01T05:01:00Z");
    let name = p.create.and_then(|j| j.metadata.name).unwrap_or_default();
    assert_eq!(name, job_name("hello", ts("2025-03-01T05:00:00Z")));
}
