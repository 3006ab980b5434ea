//! The CronJob decision: which Job to start now (if any), which active Jobs to replace, which
//! finished Jobs to clean up, the status to report and when to look again. Pure: the clock
//! and the time zone are arguments.

use super::schedule::{self, Schedule};
use crate::claim;
use crate::job::plan::is_finished;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeSet;

/// Annotation on a Job with the time it was scheduled for (RFC 3339, in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream's default `successfulJobsHistoryLimit`.
pub const DEFAULT_SUCCESSFUL_HISTORY: i32 = 3;
/// Upstream's default `failedJobsHistoryLimit`.
pub const DEFAULT_FAILED_HISTORY: i32 = 1;
/// Give up looking for missed schedule times after this many (`TooManyMissedTimes`).
const MAX_MISSED: usize = 100_000;

/// What one reconcile of a CronJob should do.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status to write (without the Job about to be created; add it once created).
    pub status: CronJobStatus,
    /// A Job to create for the current schedule time.
    pub create: Option<Job>,
    /// Active Jobs to delete first (`concurrencyPolicy: Replace`).
    pub replace: Vec<ObjectReference>,
    /// Finished Jobs beyond the history limits, oldest first.
    pub cleanup: Vec<String>,
    /// Reconcile again after this many seconds (the next schedule time).
    pub requeue_after: Option<i64>,
    /// Something the user should know (bad schedule or zone, missed deadline).
    pub warning: Option<String>,
}

fn finished_as(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The reference `status.active` holds for a Job.
pub fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// The name of the Job for `scheduled`: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// RFC 3339 in `tz` as Go prints it (`Z` for UTC).
pub fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    let s = z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    match s.strip_suffix("+00:00") {
        Some(base) => format!("{base}Z"),
        None => s,
    }
}

/// The Job a CronJob starts for `scheduled`: its jobTemplate, the scheduled-timestamp
/// annotation and a controller ownerReference.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let name = cj.metadata.name.clone().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![claim::owner_reference(
                "batch/v1", "CronJob", &name, &uid,
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Decide for `cj` given the Jobs of its namespace. `gone` holds uids of `status.active`
/// entries confirmed deleted; `tz` is None when `timeZone` names no known zone.
pub fn plan(
    cj: &CronJob,
    jobs: &[&Job],
    gone: &BTreeSet<String>,
    tz: Option<&TimeZone>,
    now: Timestamp,
) -> Plan {
    let mut out = Plan::default();
    let Some(spec) = cj.spec.as_ref() else { return out };
    let uid = cj.metadata.uid.as_deref().unwrap_or_default();
    let owned: Vec<&Job> = jobs
        .iter()
        .copied()
        .filter(|j| claim::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
        .collect();
    let old = cj.status.clone().unwrap_or_default();
    let mut status = old.clone();

    // Active list: drop finished and deleted Jobs; note the latest success.
    let finished: BTreeSet<&str> =
        owned.iter().filter(|j| is_finished(j)).filter_map(|j| j.metadata.uid.as_deref()).collect();
    let mut active: Vec<ObjectReference> = old.active.clone().unwrap_or_default();
    active.retain(|r| {
        let u = r.uid.as_deref().unwrap_or_default();
        !finished.contains(u) && !gone.contains(u)
    });
    for j in owned.iter().filter(|j| finished_as(j, "Complete")) {
        let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
        if let Some(done) = done {
            if status.last_successful_time.as_ref().is_none_or(|t| t.0 < done.0) {
                status.last_successful_time = Some(done);
            }
        }
    }

    // History: keep the newest N successful and M failed Jobs.
    let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    for (type_, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(DEFAULT_SUCCESSFUL_HISTORY)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(DEFAULT_FAILED_HISTORY)),
    ] {
        let mut done: Vec<&Job> = owned.iter().copied().filter(|j| finished_as(j, type_)).collect();
        done.sort_by(|a, b| {
            start(a).cmp(&start(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        let extra = done.len().saturating_sub(keep);
        out.cleanup.extend(done.iter().take(extra).filter_map(|j| j.metadata.name.clone()));
    }

    let finish = |mut out: Plan, status: CronJobStatus, active: Vec<ObjectReference>| {
        out.status = CronJobStatus { active: (!active.is_empty()).then_some(active), ..status };
        out
    };
    if cj.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
        return finish(out, status, active);
    }
    let Some(tz) = tz else {
        out.warning = Some(format!("invalid timeZone {:?}", spec.time_zone));
        return finish(out, status, active);
    };
    let sched: Schedule = match schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            out.warning = Some(format!("unparseable schedule {:?}: {e}", spec.schedule));
            return finish(out, status, active);
        }
    };
    let next = sched.next_after(now, tz);
    out.requeue_after = next.map(|t| (t.as_second() - now.as_second()).max(1));

    // The most recent schedule time in (earliest, now].
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let mut earliest = old.last_schedule_time.as_ref().map_or(created, |t| t.0);
    if let Some(sds) = spec.starting_deadline_seconds {
        let window = Timestamp::from_second(now.as_second() - sds).unwrap_or(earliest);
        earliest = earliest.max(window);
    }
    let mut recent = None;
    let mut t = earliest;
    for _ in 0..MAX_MISSED {
        match sched.next_after(t, tz) {
            Some(n) if n <= now => {
                recent = Some(n);
                t = n;
            }
            _ => break,
        }
    }
    let Some(scheduled) = recent else { return finish(out, status, active) };
    if let Some(sds) = spec.starting_deadline_seconds {
        if scheduled.as_second() + sds < now.as_second() {
            out.warning = Some(format!("missed starting deadline for {scheduled}"));
            return finish(out, status, active);
        }
    }
    let name = job_name(cj.metadata.name.as_deref().unwrap_or_default(), scheduled);
    let already = active.iter().any(|r| r.name.as_deref() == Some(name.as_str()))
        || old.last_schedule_time.as_ref().is_some_and(|t| t.0 == scheduled)
        || owned.iter().any(|j| j.metadata.name.as_deref() == Some(name.as_str()));
    if already {
        return finish(out, status, active);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => return finish(out, status, active),
        Some("Replace") => out.replace = std::mem::take(&mut active),
        _ => {}
    }
    out.create = Some(job_from_template(cj, scheduled, tz));
    status.last_schedule_time = Some(Time(scheduled));
    finish(out, status, active)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
