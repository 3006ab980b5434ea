//! The Job decision: which pods to adopt, release, create and delete, the status to report,
//! and whether the Job's time to live is over. Pure: `now` is an argument.

use crate::claim::{self, Claim};
use crate::pods;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeSet;

/// Annotation and label carrying an Indexed Job pod's completion index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// Upstream's default `backoffLimit`.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// First pod-recreation delay after a failure (doubles per failure, capped at [`MAX_BACKOFF`]).
pub const BASE_BACKOFF: i64 = 10;
/// Cap of the pod-recreation delay.
pub const MAX_BACKOFF: i64 = 360;
/// At most this many pod creates per reconcile (upstream `MaxPodCreateDeletePerSync`).
pub const MAX_CREATE: usize = 500;

/// What one reconcile of a Job should do.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Orphans that match the selector: take them.
    pub adopt: Vec<&'a Pod>,
    /// Owned pods that stopped matching: let them go.
    pub release: Vec<&'a Pod>,
    /// Pods to create: the completion index of each (`None` for NonIndexed).
    pub create: Vec<Option<i32>>,
    /// Active pods to delete (suspend, failure, success, lowered parallelism).
    pub delete: Vec<&'a Pod>,
    /// The status to write.
    pub status: JobStatus,
    /// The Job is finished and its `ttlSecondsAfterFinished` has passed: delete it.
    pub delete_job: bool,
    /// Reconcile again after this many seconds (deadline, backoff, TTL).
    pub requeue_after: Option<i64>,
}

fn cond_true(status: &JobStatus, type_: &str) -> bool {
    status.conditions.iter().flatten().any(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job has its terminal condition (`Complete` or `Failed`).
pub fn is_finished(job: &Job) -> bool {
    job.status.as_ref().is_some_and(|s| cond_true(s, "Complete") || cond_true(s, "Failed"))
}

/// When the Job finished: completionTime, else the terminal condition's transition time.
pub fn finished_at(job: &Job) -> Option<i64> {
    let s = job.status.as_ref()?;
    if let Some(t) = &s.completion_time {
        return Some(t.0.as_second());
    }
    s.conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map_or(0, |t| t.0.as_second()))
}

/// Set condition `type_` to `status` (transition time changes only when the status does).
fn set_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        let same = c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message);
        if same {
            // Unchanged: keep the times, so an idle reconcile writes nothing.
            return;
        }
        if c.status != status {
            c.last_transition_time = Some(Time(now));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
        return;
    }
    conds.push(JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

/// The completion index of a pod (annotation, else label), if valid.
pub fn pod_index(pod: &Pod) -> Option<i32> {
    let from = |m: &Option<std::collections::BTreeMap<String, String>>| {
        m.as_ref().and_then(|m| m.get(INDEX_KEY)).and_then(|v| v.parse::<i32>().ok())
    };
    from(&pod.metadata.annotations).or_else(|| from(&pod.metadata.labels)).filter(|i| *i >= 0)
}

/// Parse `completedIndexes` ("1,3-5,7").
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<i32>().ok()),
        }
    }
    out
}

/// Format indexes as `completedIndexes` does: sorted, consecutive runs as `a-b`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    parts.join(",")
}

/// When a failed pod finished: its latest container `finishedAt`, else none.
fn failed_at(pod: &Pod) -> Option<i64> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0.as_second())
        .max()
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Decide for `job` given every pod in its namespace at `now`. `satisfied` is false while
/// earlier creates/deletes are not yet in the cache: then no pods are created.
pub fn plan<'a>(job: &Job, pods_in_ns: &[&'a Pod], satisfied: bool, now: Timestamp) -> Plan<'a> {
    let mut out = Plan::default();
    let Some(spec) = job.spec.as_ref() else { return out };
    let old = job.status.clone().unwrap_or_default();
    out.status = old.clone();
    let now_s = now.as_second();
    if is_finished(job) {
        if let (Some(ttl), Some(at)) = (spec.ttl_seconds_after_finished, finished_at(job)) {
            let expires = at + i64::from(ttl);
            if now_s >= expires {
                out.delete_job = true;
            } else {
                out.requeue_after = Some(expires - now_s);
            }
        }
        return out;
    }
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let deleting = job.metadata.deletion_timestamp.is_some();
    let selector = spec.selector.clone().unwrap_or_default();
    let mut owned: Vec<&Pod> = Vec::new();
    for &pod in pods_in_ns {
        match claim::decide(uid, &selector, deleting, &pod.metadata) {
            Claim::Keep => owned.push(pod),
            Claim::Adopt => {
                out.adopt.push(pod);
                owned.push(pod);
            }
            Claim::Release => out.release.push(pod),
            Claim::Ignore => {}
        }
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    let suspended = spec.suspend == Some(true);

    let active: Vec<&Pod> = owned.iter().copied().filter(|p| pods::is_active(p)).collect();
    let terminating = owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter(|p| !matches!(phase(p), Some("Succeeded" | "Failed")))
        .count();
    let succeeded_pods: Vec<&Pod> =
        owned.iter().copied().filter(|p| phase(p) == Some("Succeeded")).collect();
    let failed_pods: Vec<&Pod> =
        owned.iter().copied().filter(|p| phase(p) == Some("Failed")).collect();

    // Counts never go down: a finished pod deleted by someone still counted once.
    let mut completed: BTreeSet<i32> = BTreeSet::new();
    let succeeded = if indexed {
        let c = completions.unwrap_or(0);
        completed = parse_indexes(old.completed_indexes.as_deref().unwrap_or(""));
        completed.extend(succeeded_pods.iter().filter_map(|p| pod_index(p)));
        completed.retain(|i| *i < c);
        count(completed.len())
    } else {
        old.succeeded.unwrap_or(0).max(count(succeeded_pods.len()))
    };
    let failed = old.failed.unwrap_or(0).max(count(failed_pods.len()));
    let mut conds = old.conditions.clone().unwrap_or_default();
    let mut start_time = old.start_time.clone();
    let mut completion_time = old.completion_time.clone();

    let was_suspended = cond_true(&old, "Suspended");
    if !suspended && (start_time.is_none() || was_suspended) {
        // Resuming restarts the clock of activeDeadlineSeconds (upstream does the same).
        start_time = Some(Time(now));
    }
    let deadline_passed = !suspended
        && spec.active_deadline_seconds.zip(start_time.as_ref()).is_some_and(|(d, t)| {
            let at = t.0.as_second() + d;
            if now_s < at {
                out.requeue_after = Some(at - now_s);
            }
            now_s >= at
        });
    let failure = if failed > backoff_limit {
        Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    } else if deadline_passed {
        Some(("DeadlineExceeded", "Job was active longer than specified deadline"))
    } else {
        None
    };
    let success = match completions {
        Some(c) => succeeded >= c,
        // Work queue: done once any pod succeeded and none is still running.
        None => succeeded > 0 && active.is_empty(),
    };
    let mut deleted = 0usize;
    if let Some((reason, message)) = failure {
        // Upstream adds FailureTarget first and Failed once the pods are gone; with no node agent
        // here, terminating pods may never finish, so both are set at once.
        set_condition(&mut conds, "FailureTarget", "True", reason, message, now);
        set_condition(&mut conds, "Failed", "True", reason, message, now);
        out.delete = active.clone();
        out.requeue_after = None;
    } else if success {
        let (reason, message) = ("CompletionsReached", "Reached expected number of succeeded pods");
        set_condition(&mut conds, "SuccessCriteriaMet", "True", reason, message, now);
        set_condition(&mut conds, "Complete", "True", reason, message, now);
        completion_time = Some(Time(now));
        out.delete = active.clone();
        out.requeue_after = None;
    } else if suspended {
        out.delete = active.clone();
        set_condition(&mut conds, "Suspended", "True", "JobSuspended", "Job suspended", now);
    } else {
        if was_suspended {
            set_condition(&mut conds, "Suspended", "False", "JobResumed", "Job resumed", now);
        }
        let replace_only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
        let occupied = active.len() + if replace_only_failed { terminating } else { 0 };
        let par = usize::try_from(parallelism).unwrap_or(0);
        // Backoff: after the n-th failure wait 10s * 2^(n-1) (capped) before a new pod.
        let last_failure = failed_pods.iter().filter_map(|p| failed_at(p)).max();
        let backoff_until = last_failure.map(|at| {
            let n = u32::try_from(failed_pods.len().saturating_sub(1)).unwrap_or(31).min(16);
            at + (BASE_BACKOFF << n).min(MAX_BACKOFF)
        });
        let in_backoff = backoff_until.is_some_and(|until| now_s < until);
        if let Some(until) = backoff_until.filter(|_| in_backoff) {
            let wait = until - now_s;
            out.requeue_after = Some(out.requeue_after.map_or(wait, |w| w.min(wait)));
        }
        if indexed {
            let c = completions.unwrap_or(0);
            let busy: BTreeSet<i32> = owned
                .iter()
                .filter(|p| {
                    pods::is_active(p)
                        || (replace_only_failed && p.metadata.deletion_timestamp.is_some())
                })
                .filter_map(|p| pod_index(p))
                .collect();
            if satisfied && !in_backoff {
                let room = par.saturating_sub(occupied).min(MAX_CREATE);
                out.create = (0..c)
                    .filter(|i| !completed.contains(i) && !busy.contains(i))
                    .take(room)
                    .map(Some)
                    .collect();
            }
            // Active pods of an index already completed, or beyond completions, are extra.
            out.delete = active
                .iter()
                .copied()
                .filter(|p| pod_index(p).is_none_or(|i| i >= c || completed.contains(&i)))
                .collect();
        } else {
            let want = match completions {
                Some(c) => par.min(usize::try_from(c - succeeded).unwrap_or(0)),
                None if succeeded > 0 => 0,
                None => par,
            };
            if occupied < want {
                if satisfied && !in_backoff {
                    out.create = vec![None; (want - occupied).min(MAX_CREATE)];
                }
            } else if active.len() > want && satisfied {
                let mut victims = active.clone();
                victims.sort_by(|a, b| pods::deletion_order(a, b));
                victims.truncate(active.len() - want);
                out.delete = victims;
            }
        }
    }
    deleted += out.delete.len();
    let remaining_active = active.len() - out.delete.len().min(active.len());
    let ready = active
        .iter()
        .filter(|p| pods::is_ready(p) && !out.delete.iter().any(|d| std::ptr::eq(*d, **p)))
        .count();
    out.status = JobStatus {
        active: nonzero(count(remaining_active)),
        ready: Some(count(ready)),
        succeeded: nonzero(succeeded),
        failed: nonzero(failed),
        terminating: Some(count(terminating + deleted)),
        start_time,
        completion_time,
        completed_indexes: if indexed && !completed.is_empty() {
            Some(format_indexes(&completed))
        } else {
            None
        },
        conditions: (!conds.is_empty()).then_some(conds),
        uncounted_terminated_pods: Some(UncountedTerminatedPods::default()),
        failed_indexes: old.failed_indexes,
    };
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
