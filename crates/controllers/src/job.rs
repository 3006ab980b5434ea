//! The Job controller: run pods of `spec.template` to completion.
//!
//! <https://kubernetes.io/docs/concepts/workloads/controllers/job/>
//!
//! Each reconcile reads the Job and the pods of its namespace from watch-fed caches, asks
//! [`plan::plan`] what to do (adopt, release, create up to `parallelism` pods until
//! `completions` succeeded, delete on suspend/failure/success), applies that, and writes the
//! status the plan computed (active, ready, succeeded, failed, terminating, startTime,
//! completionTime, completedIndexes, conditions SuccessCriteriaMet/Complete,
//! FailureTarget/Failed, Suspended). A finished Job with `ttlSecondsAfterFinished` is deleted
//! (background propagation) once that time has passed.
//!
//! Differences from upstream: pods carry no `batch.kubernetes.io/job-tracking` finalizer;
//! succeeded/failed counts come from the pods present and never go down (completed indexes
//! from the status survive their pods). The terminal condition is set together with its
//! SuccessCriteriaMet/FailureTarget, without waiting for deleted pods to finish (there is no
//! node agent to finish them). `podFailurePolicy`, `successPolicy`, `backoffLimitPerIndex` and
//! `managedBy` are not implemented.

pub mod plan;

use crate::claim;
use crate::expectations::Expectations;
use crate::pod_index::PodIndex;
use crate::pod_index::SharedPods;
use crate::pods;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, instrument, warn};

/// Periodic resync: a missed event heals within this time.
const RESYNC: Duration = Duration::from_secs(300);

/// What the Job reconciler needs besides the object.
pub struct Context {
    /// The API client all writes go through.
    pub client: Client,
    /// Every pod in the cluster, from a watch.
    pub pods: Store<Pod>,
    /// Creates/deletes not yet seen in `pods`.
    pub expectations: Expectations,
    /// `pods` by controller, so a reconcile reads its own pods, not every pod.
    pub index: PodIndex,
}

/// Errors of the Job controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("job {key}: {action} failed")]
    Api {
        /// `namespace/name` of the Job.
        key: String,
        /// What we were doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The object lacks a namespace or name (the API server never sends such a Job).
    #[error("job without namespace or name")]
    MissingMeta,
    /// The pod cache stopped before it was filled.
    #[error("pod cache closed")]
    CacheClosed,
}

fn key_of(meta: &ObjectMeta) -> Result<(String, String), Error> {
    match (meta.namespace.as_ref(), meta.name.as_ref()) {
        (Some(ns), Some(name)) => Ok((ns.clone(), name.clone())),
        _ => Err(Error::MissingMeta),
    }
}

/// The pod a Job creates: its template, a controller ownerReference, `generateName: <job>-`;
/// for an Indexed Job `<job>-<index>-`, the completion index as annotation and label, hostname
/// `<job>-<index>` and `JOB_COMPLETION_INDEX` in every container's environment.
pub fn pod_from_template(job: &Job, index: Option<i32>) -> Pod {
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let mut labels = meta.labels;
    let mut annotations = meta.annotations;
    let mut spec = template.spec;
    let generate_name = match index {
        Some(i) => {
            let v = i.to_string();
            labels.get_or_insert_with(Default::default).insert(plan::INDEX_KEY.into(), v.clone());
            annotations.get_or_insert_with(Default::default).insert(plan::INDEX_KEY.into(), v);
            if let Some(s) = spec.as_mut() {
                s.hostname = Some(format!("{name}-{i}"));
                let env = EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: format!("metadata.annotations['{}']", plan::INDEX_KEY),
                        }),
                        ..Default::default()
                    }),
                };
                let inits = s.init_containers.iter_mut().flatten();
                for c in s.containers.iter_mut().chain(inits) {
                    let vars = c.env.get_or_insert_with(Vec::new);
                    if !vars.iter().any(|e| e.name == env.name) {
                        vars.push(env.clone());
                    }
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels,
            annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![claim::owner_reference("batch/v1", "Job", &name, &uid)]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// A merge patch that replaces the whole Job status: fields absent from `status` (a count
/// dropping to 0 is omitted, as upstream's `omitempty`) are nulled so the old value goes.
fn status_patch(meta: &ObjectMeta, status: &k8s_openapi::api::batch::v1::JobStatus) -> Value {
    let mut patch = crate::status_patch(meta, status);
    if let Some(map) = patch.get_mut("status").and_then(Value::as_object_mut) {
        for key in [
            "active",
            "succeeded",
            "failed",
            "ready",
            "terminating",
            "startTime",
            "completionTime",
            "completedIndexes",
            "failedIndexes",
        ] {
            map.entry(key).or_insert(Value::Null);
        }
    }
    patch
}

/// Which Jobs a pod event concerns: its controller, if that is a Job.
fn owners_of(pod: &Pod) -> Vec<ObjectRef<Job>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    match claim::controller_of(&pod.metadata) {
        Some(owner) if owner.kind == "Job" => vec![ObjectRef::new(&owner.name).within(&ns)],
        _ => Vec::new(),
    }
}

/// Run the Job controller until `shutdown` completes.
pub async fn run(
    client: Client,
    shared: SharedPods,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = crate::lean_controller(Api::<Job>::all(client.clone()));
    let ctx = Arc::new(Context {
        client,
        pods: shared.store.clone(),
        expectations: Expectations::default(),
        index: shared.index.clone(),
    });
    controller
        .watches_shared_stream(shared.subscribe(), |pod| owners_of(&pod))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| crate::log_outcome(res, "job reconcile"))
        .await;
}

fn error_policy(_job: Arc<Job>, err: &Error, _ctx: Arc<Context>) -> Action {
    match err {
        Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => {
            debug!(error = %err, "conflict, retrying")
        }
        _ => warn!(error = %err, "reconcile failed"),
    }
    Action::requeue(Duration::from_secs(1))
}

/// Reconcile one Job: claim, create/delete pods, report, expire.
#[instrument(skip_all, fields(object.ref = %format!("{}/{}", job.metadata.namespace.as_deref().unwrap_or(""), job.metadata.name.as_deref().unwrap_or(""))))]
pub async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (ns, name) = key_of(&job.metadata)?;
    let key = format!("{ns}/{name}");
    crate::cache_ready(&ctx.pods).await.map_err(|_| Error::CacheClosed)?;
    if job.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    // Its own pods and the namespace's orphans: the only pods the plan looks at.
    let all: Vec<Arc<Pod>> =
        ctx.index.candidates(&ctx.pods, &ns, job.metadata.uid.as_deref().unwrap_or(""));
    let in_ns: Vec<&Pod> = all.iter().map(|p| p.as_ref()).collect();
    let satisfied = ctx.expectations.satisfied(
        &key,
        |n| in_ns.iter().any(|p| p.metadata.name.as_deref() == Some(n)),
        |u| in_ns.iter().any(|p| p.metadata.uid.as_deref() == Some(u) && pods::is_active(p)),
    );
    let plan = plan::plan(&job, &in_ns, satisfied, Timestamp::now());
    let api_err = |action: &'static str| {
        let key = key.clone();
        move |source| Error::Api { key, action, source }
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    if plan.delete_job {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: job
                .metadata
                .uid
                .clone()
                .map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
            ..Default::default()
        };
        match jobs.delete(&name, &dp).await {
            Ok(_) => info!("deleted finished job (ttlSecondsAfterFinished)"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err("delete expired job")(e)),
        }
        ctx.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let owner = claim::owner_reference("batch/v1", "Job", &name, &uid);
    for pod in &plan.adopt {
        let patch = claim::adopt_patch(&pod.metadata, owner.clone());
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        api.patch(&pod_name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_err("adopt pod"))?;
        info!(pod = %pod_name, "adopted pod");
    }
    for pod in &plan.release {
        let patch = claim::release_patch(&pod.metadata, &uid);
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        match api.patch(&pod_name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => info!(pod = %pod_name, "released pod"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_err("release pod")(e)),
        }
    }
    let mut failed_write = false;
    if !plan.create.is_empty() {
        let params = PostParams::default();
        let mut created = Vec::new();
        let mut left = plan.create.as_slice();
        for batch in crate::replicaset::plan::slow_start_batches(plan.create.len()) {
            let (now, rest) = left.split_at(batch.min(left.len()));
            left = rest;
            let templates: Vec<Pod> = now.iter().map(|i| pod_from_template(&job, *i)).collect();
            let results =
                futures::future::join_all(templates.iter().map(|t| api.create(&params, t))).await;
            for r in results {
                match r {
                    Ok(p) => created.extend(p.metadata.name),
                    Err(e) => {
                        warn!(error = %e, "creating pod");
                        failed_write = true;
                    }
                }
            }
            if failed_write {
                break;
            }
        }
        info!(count = created.len(), "created pods");
        ctx.expectations.expect(&key, created, Vec::new());
    }
    if !plan.delete.is_empty() {
        let mut deleted = Vec::new();
        for pod in &plan.delete {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            match api.delete(&pod_name, &DeleteParams::default()).await {
                Ok(_) => deleted.extend(pod.metadata.uid.clone()),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    warn!(error = %e, pod = %pod_name, "deleting pod");
                    failed_write = true;
                }
            }
        }
        info!(count = deleted.len(), "deleted pods");
        ctx.expectations.expect(&key, Vec::new(), deleted);
    }
    if job.status.as_ref() != Some(&plan.status) {
        let patch = status_patch(&job.metadata, &plan.status);
        jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_err("update status"))?;
    }
    Ok(match (failed_write, satisfied, plan.requeue_after) {
        (true, _, _) => Action::requeue(Duration::from_secs(5)),
        (_, false, _) => Action::requeue(Duration::from_secs(2)),
        (_, _, Some(secs)) => Action::requeue(Duration::from_secs(secs.unsigned_abs().max(1))),
        _ => Action::requeue(RESYNC),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use std::collections::BTreeMap;

    fn job() -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([(
                            "batch.kubernetes.io/job-name".into(),
                            "pi".into(),
                        )])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container { name: "c".into(), ..Default::default() }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn non_indexed_pods_come_from_the_template_owned_by_the_job() {
        let pod = pod_from_template(&job(), None);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("batch.kubernetes.io/job-name").map(String::as_str), Some("pi"));
        let owner = claim::controller_of(&pod.metadata).cloned().unwrap_or_default();
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str(), owner.uid.as_str()),
            ("batch/v1", "Job", "u1")
        );
        assert!(pod.spec.and_then(|s| s.containers[0].env.clone()).is_none());
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let pod = pod_from_template(&job(), Some(2));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(plan::pod_index(&pod), Some(2));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(plan::INDEX_KEY).map(String::as_str), Some("2"));
        let spec = pod.spec.unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
    }
}
