//! The CronJob controller: start Jobs on a cron schedule.
//!
//! <https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/>
//!
//! Each reconcile reads the CronJob and the Jobs of its namespace from watch-fed caches, asks
//! [`plan::plan`] what to do — start `<cronjob>-<minutes since epoch>` for the most recent
//! missed schedule time (within `startingDeadlineSeconds`), honouring `concurrencyPolicy`
//! and `suspend`, trim finished Jobs to the history limits — applies it, writes
//! `status.active/lastScheduleTime/lastSuccessfulTime`, and requeues at the next schedule time.
//!
//! Without `timeZone` schedules are read in UTC (upstream: the controller manager's local
//! zone). Zones come from the system's `/usr/share/zoneinfo` (or `$ZONEINFO`). No events are
//! recorded; warnings go to the log.

pub mod plan;
pub mod schedule;

use crate::claim;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, instrument, warn};

/// Periodic resync when no schedule time is ahead.
const RESYNC: Duration = Duration::from_secs(300);

/// What the CronJob reconciler needs besides the object.
pub struct Context {
    /// The API client all writes go through.
    pub client: Client,
    /// Every Job in the cluster, from a watch.
    pub jobs: Store<Job>,
}

/// Errors of the CronJob controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("cronjob {key}: {action} failed")]
    Api {
        /// `namespace/name` of the CronJob.
        key: String,
        /// What we were doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The object lacks a namespace or name (the API server never sends such a CronJob).
    #[error("cronjob without namespace or name")]
    MissingMeta,
    /// The Job cache stopped before it was filled.
    #[error("job cache closed")]
    CacheClosed,
}

fn key_of(meta: &ObjectMeta) -> Result<(String, String), Error> {
    match (meta.namespace.as_ref(), meta.name.as_ref()) {
        (Some(ns), Some(name)) => Ok((ns.clone(), name.clone())),
        _ => Err(Error::MissingMeta),
    }
}

/// The time zone named by `timeZone` (None: UTC); None if it names no known zone.
pub fn time_zone(name: Option<&str>) -> Option<TimeZone> {
    let Some(name) = name else { return Some(TimeZone::UTC) };
    if matches!(name, "UTC" | "Etc/UTC" | "Etc/Universal" | "Universal" | "Zulu") {
        return Some(TimeZone::UTC);
    }
    if name.is_empty() || name.starts_with('/') || name.split('/').any(|p| p == ".." || p == ".") {
        return None;
    }
    let dir = std::env::var_os("ZONEINFO")
        .map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
    let data = std::fs::read(dir.join(name)).ok()?;
    TimeZone::tzif(name, &data).ok()
}

/// Which CronJobs a Job event concerns: its controller, if that is a CronJob.
fn owners_of(job: &Job) -> Vec<ObjectRef<CronJob>> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    match claim::controller_of(&job.metadata) {
        Some(owner) if owner.kind == "CronJob" => vec![ObjectRef::new(&owner.name).within(&ns)],
        _ => Vec::new(),
    }
}

/// Run the CronJob controller until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let (jobs, writer) = reflector::store::<Job>();
    let job_events =
        reflector::reflector(writer, crate::lean_watcher(Api::<Job>::all(client.clone())))
            .default_backoff()
            .touched_objects();
    let controller = crate::lean_controller(Api::<CronJob>::all(client.clone()));
    let ctx = Arc::new(Context { client, jobs });
    controller
        .watches_stream(job_events, |job| owners_of(&job))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| crate::log_outcome(res, "cronjob reconcile"))
        .await;
}

fn error_policy(_cj: Arc<CronJob>, err: &Error, _ctx: Arc<Context>) -> Action {
    match err {
        Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => {
            debug!(error = %err, "conflict, retrying")
        }
        _ => warn!(error = %err, "reconcile failed"),
    }
    Action::requeue(Duration::from_secs(1))
}

fn background() -> DeleteParams {
    DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() }
}

/// Reconcile one CronJob: track its Jobs, start one when due, trim history, report.
#[instrument(skip_all, fields(object.ref = %format!("{}/{}", cj.metadata.namespace.as_deref().unwrap_or(""), cj.metadata.name.as_deref().unwrap_or(""))))]
pub async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (ns, name) = key_of(&cj.metadata)?;
    let key = format!("{ns}/{name}");
    crate::cache_ready(&ctx.jobs).await.map_err(|_| Error::CacheClosed)?;
    let api_err = |action: &'static str| {
        let key = key.clone();
        move |source| Error::Api { key, action, source }
    };
    let all: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let in_ns: Vec<&Job> = all.iter().map(|j| j.as_ref()).collect();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);

    // An active Job missing from the cache may be new (cache lag) or gone: ask the server.
    let mut gone = BTreeSet::new();
    let active = cj.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
    for r in &active {
        let uid = r.uid.clone().unwrap_or_default();
        if in_ns.iter().any(|j| j.metadata.uid.as_deref() == Some(uid.as_str())) {
            continue;
        }
        match jobs.get_opt(r.name.as_deref().unwrap_or_default()).await {
            Ok(Some(j)) if j.metadata.uid.as_deref() == Some(uid.as_str()) => {}
            Ok(_) => {
                gone.insert(uid);
            }
            Err(e) => return Err(api_err("get active job")(e)),
        }
    }
    let spec_tz = cj.spec.as_ref().and_then(|s| s.time_zone.clone());
    let tz = time_zone(spec_tz.as_deref());
    let mut plan = plan::plan(&cj, &in_ns, &gone, tz.as_ref(), Timestamp::now());
    if let Some(w) = &plan.warning {
        warn!(warning = %w, "cronjob");
    }
    for r in &plan.replace {
        let job_name = r.name.clone().unwrap_or_default();
        match jobs.delete(&job_name, &background()).await {
            Ok(_) => info!(job = %job_name, "deleted active job (concurrencyPolicy Replace)"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err("delete active job")(e)),
        }
    }
    if let Some(job) = &plan.create {
        match jobs.create(&PostParams::default(), job).await {
            Ok(created) => {
                info!(job = ?created.metadata.name, "created job");
                plan.status.active.get_or_insert_with(Vec::new).push(plan::job_ref(&created));
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Created before (our status write was lost): track it if it is ours.
                let job_name = job.metadata.name.clone().unwrap_or_default();
                let existing = jobs.get_opt(&job_name).await.map_err(api_err("get job"))?;
                let uid = cj.metadata.uid.as_deref().unwrap_or_default();
                if let Some(j) = existing.filter(|j| {
                    claim::controller_of(&j.metadata).is_some_and(|r| r.uid == uid)
                        && !crate::job::plan::is_finished(j)
                }) {
                    let active = plan.status.active.get_or_insert_with(Vec::new);
                    if !active.iter().any(|r| r.uid == j.metadata.uid) {
                        active.push(plan::job_ref(&j));
                    }
                }
            }
            Err(e) => return Err(api_err("create job")(e)),
        }
    }
    for job_name in &plan.cleanup {
        match jobs.delete(job_name, &background()).await {
            Ok(_) => info!(job = %job_name, "deleted finished job (history limit)"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err("delete finished job")(e)),
        }
    }
    if cj.status.as_ref().unwrap_or(&Default::default()) != &plan.status {
        let s = &plan.status;
        let patch = json!({
            "metadata": {"resourceVersion": cj.metadata.resource_version},
            "status": {
                "active": s.active.as_ref().map_or(Value::Null, |a| json!(a)),
                "lastScheduleTime": s.last_schedule_time,
                "lastSuccessfulTime": s.last_successful_time,
            }
        });
        Api::<CronJob>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_err("update status"))?;
    }
    Ok(match plan.requeue_after {
        Some(secs) => Action::requeue(Duration::from_secs(secs.unsigned_abs().max(1))),
        None => Action::requeue(RESYNC),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_resolve_or_are_refused() {
        assert_eq!(time_zone(None), Some(TimeZone::UTC));
        assert_eq!(time_zone(Some("Etc/UTC")), Some(TimeZone::UTC));
        assert!(time_zone(Some("../etc/passwd")).is_none());
        assert!(time_zone(Some("Not/AZone")).is_none());
        if std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin").is_file() {
            let tz = time_zone(Some("Europe/Berlin"));
            let t: Timestamp = "2025-07-01T07:00:00Z".parse().unwrap_or(Timestamp::UNIX_EPOCH);
            let s = plan::rfc3339(t, tz.as_ref().unwrap_or(&TimeZone::UTC));
            assert_eq!(s, "2025-07-01T09:00:00+02:00");
        }
    }
}
