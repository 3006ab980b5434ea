//! The ReplicaSet controller: keep `spec.replicas` active pods that match the selector.
//!
//! <https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/>
//!
//! Each reconcile reads the ReplicaSet and the pods of its namespace from watch-fed caches,
//! asks [`plan::plan`] what to do (adopt, release, create, delete), applies that through the API,
//! then writes the status [`status::compute`] derives from the owned pods. [`Expectations`]
//! hold back the replica decision until the cache shows our own previous writes.

pub mod plan;
pub mod status;

use crate::claim;
use crate::expectations::Expectations;
use crate::pod_index::PodIndex;
use crate::pod_index::SharedPods;
use crate::pods;
use crate::selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, instrument, warn};

/// Periodic resync: a missed event heals within this time.
const RESYNC: Duration = Duration::from_secs(300);

/// What the ReplicaSet reconciler needs besides the object.
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

/// Errors of the ReplicaSet controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("replicaset {key}: {action} failed")]
    Api {
        /// `namespace/name` of the ReplicaSet.
        key: String,
        /// What we were doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The object lacks a namespace or name (the API server never sends such a ReplicaSet).
    #[error("replicaset without namespace or name")]
    MissingMeta,
    /// The pod cache stopped before it was filled.
    #[error("pod cache closed")]
    CacheClosed,
}

/// `namespace/name` of an object.
pub(crate) fn key_of(meta: &ObjectMeta) -> Result<(String, String), Error> {
    match (meta.namespace.as_ref(), meta.name.as_ref()) {
        (Some(ns), Some(name)) => Ok((ns.clone(), name.clone())),
        _ => Err(Error::MissingMeta),
    }
}

/// The kind that owns the pods. A ReplicationController is run by this same code, seen as a
/// ReplicaSet (as upstream's `replication` controller wraps the ReplicaSet one); only the
/// ownerReferences and the status write name the real kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerKind {
    /// `apps/v1` or `v1`.
    pub api_version: &'static str,
    /// `ReplicaSet` or `ReplicationController`.
    pub kind: &'static str,
}

/// Pods owned by ReplicaSets.
pub const REPLICA_SET: OwnerKind = OwnerKind { api_version: "apps/v1", kind: "ReplicaSet" };

/// The pod a ReplicaSet creates: its template, `generateName: <rs>-`, and a controller
/// ownerReference that blocks the owner's foreground deletion.
pub fn pod_from_template(rs: &ReplicaSet, owner: OwnerKind) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![claim::owner_reference(
                owner.api_version,
                owner.kind,
                &name,
                &uid,
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Which ReplicaSets a pod event concerns: its controller if it has one, else every
/// ReplicaSet in its namespace whose selector matches it (a candidate for adoption).
fn owners_of(pod: &Pod, sets: &Store<ReplicaSet>) -> Vec<ObjectRef<ReplicaSet>> {
    owner_names(
        pod,
        REPLICA_SET.kind,
        sets.state().iter().map(|rs| (&rs.metadata, &rs.spec)),
        |s| s.as_ref().map(|s| s.selector.clone()),
    )
    .into_iter()
    .map(|(ns, name)| ObjectRef::new(&name).within(&ns))
    .collect()
}

/// `(namespace, name)` of the owners of `kind` a pod event concerns: its controller if it has
/// one of this kind, else every owner in its namespace whose selector matches it.
pub(crate) fn owner_names<'a, S: 'a>(
    pod: &Pod,
    kind: &str,
    owners: impl Iterator<Item = (&'a ObjectMeta, &'a S)>,
    selector_of: impl Fn(&S) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Vec<(String, String)> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = claim::controller_of(&pod.metadata) {
        if owner.kind == kind {
            return vec![(ns, owner.name.clone())];
        }
        return Vec::new();
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    owners
        .filter(|(meta, _)| meta.namespace.as_deref() == Some(ns.as_str()))
        .filter(|(_, spec)| {
            selector_of(spec)
                .is_some_and(|s| !selector::is_empty(&s) && selector::matches(&s, &labels))
        })
        .filter_map(|(meta, _)| meta.name.clone().map(|n| (ns.clone(), n)))
        .collect()
}

/// Run the ReplicaSet controller until `shutdown` completes.
pub async fn run(
    client: Client,
    shared: SharedPods,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = crate::lean_controller(Api::<ReplicaSet>::all(client.clone()));
    let sets = controller.store();
    let ctx = Arc::new(Context {
        client,
        pods: shared.store.clone(),
        expectations: Expectations::default(),
        index: shared.index.clone(),
    });
    controller
        .watches_shared_stream(shared.subscribe(), move |pod| owners_of(&pod, &sets))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| crate::log_outcome(res, "replicaset reconcile"))
        .await;
}

fn error_policy(_rs: Arc<ReplicaSet>, err: &Error, _ctx: Arc<Context>) -> Action {
    match err {
        Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => {
            debug!(error = %err, "conflict, retrying")
        }
        _ => warn!(error = %err, "reconcile failed"),
    }
    Action::requeue(Duration::from_secs(1))
}

/// Reconcile one ReplicaSet: claim, scale, report.
#[instrument(skip_all, fields(object.ref = %format!("{}/{}", rs.metadata.namespace.as_deref().unwrap_or(""), rs.metadata.name.as_deref().unwrap_or(""))))]
pub async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (ns, name) = key_of(&rs.metadata)?;
    let Some((status, action)) = sync(&rs, REPLICA_SET, &ctx).await? else {
        return Ok(Action::await_change());
    };
    if rs.status.as_ref() != Some(&status) {
        let patch = crate::status_patch(&rs.metadata, &status);
        Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|source| Error::Api {
                key: format!("{ns}/{name}"),
                action: "update status",
                source,
            })?;
    }
    Ok(action)
}

/// The work shared by ReplicaSets and ReplicationControllers: claim pods, create or delete
/// the difference, and compute the status to report (the caller writes it to its own kind)
/// with when to look again. `None`: the owner is being deleted and there is nothing to do.
pub async fn sync(
    rs: &ReplicaSet,
    owner_kind: OwnerKind,
    ctx: &Context,
) -> Result<Option<(ReplicaSetStatus, Action)>, Error> {
    let (ns, name) = key_of(&rs.metadata)?;
    // The expectations are keyed per kind: an RC and an RS may share a name.
    let key = format!("{}/{ns}/{name}", owner_kind.kind);
    crate::cache_ready(&ctx.pods).await.map_err(|_| Error::CacheClosed)?;
    if rs.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the pods; nothing to keep any more.
        ctx.expectations.forget(&key);
        return Ok(None);
    }
    // Its own pods and the namespace's orphans: the only pods the plan looks at.
    let all: Vec<Arc<Pod>> =
        ctx.index.candidates(&ctx.pods, &ns, rs.metadata.uid.as_deref().unwrap_or(""));
    let in_ns: Vec<&Pod> = all.iter().map(|p| p.as_ref()).collect();
    let satisfied = ctx.expectations.satisfied(
        &key,
        |n| in_ns.iter().any(|p| p.metadata.name.as_deref() == Some(n)),
        |u| in_ns.iter().any(|p| p.metadata.uid.as_deref() == Some(u) && pods::is_active(p)),
    );
    let plan = plan::plan(rs, &in_ns, satisfied);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let api_err = |action: &'static str| {
        let key = format!("{ns}/{name}");
        move |source| Error::Api { key, action, source }
    };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let owner = claim::owner_reference(owner_kind.api_version, owner_kind.kind, &name, &uid);
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
    let mut failure = None;
    if plan.create > 0 {
        let template = pod_from_template(rs, owner_kind);
        let params = PostParams::default();
        let mut created = Vec::new();
        'batches: for batch in plan::slow_start_batches(plan.create) {
            let results =
                futures::future::join_all((0..batch).map(|_| api.create(&params, &template))).await;
            for r in results {
                match r {
                    Ok(p) => created.extend(p.metadata.name),
                    Err(e) => failure = Some(("FailedCreate".to_string(), e.to_string())),
                }
            }
            if failure.is_some() {
                break 'batches;
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
                Err(e) => failure = Some(("FailedDelete".to_string(), e.to_string())),
            }
        }
        info!(count = deleted.len(), "deleted pods");
        ctx.expectations.expect(&key, Vec::new(), deleted);
    }
    let now = Timestamp::now();
    let status = status::compute(rs, &plan.owned, failure.as_ref(), Time(now));
    let wait = status::next_available_in(rs, &plan.owned, now.as_second());
    let action = match (failure.is_some(), satisfied, wait) {
        (true, _, _) => Action::requeue(Duration::from_secs(5)),
        (_, false, _) => Action::requeue(Duration::from_secs(2)),
        (_, _, Some(secs)) => Action::requeue(Duration::from_secs(secs.unsigned_abs().max(1))),
        _ => Action::requeue(RESYNC),
    };
    Ok(Some((status, action)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use std::collections::BTreeMap;

    #[test]
    fn pods_come_from_the_template_with_a_blocking_controller_reference() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("shop".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec { hostname: Some("h".into()), ..Default::default() }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let pod = pod_from_template(&rs, REPLICA_SET);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(pod.metadata.labels, Some(BTreeMap::from([("app".into(), "web".into())])));
        let owner = claim::controller_of(&pod.metadata).cloned().unwrap_or_default();
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("ReplicaSet", "u1"));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(pod.spec.and_then(|s| s.hostname).as_deref(), Some("h"));
    }
}
