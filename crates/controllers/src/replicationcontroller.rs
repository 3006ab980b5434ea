//! The ReplicationController controller: the ReplicaSet controller run over
//! ReplicationControllers, as upstream's `replication` package wraps the ReplicaSet one.
//!
//! <https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/>
//!
//! An RC differs from a ReplicaSet only in its selector (an equality-based map, which the API
//! server defaults from the template's labels) and in the kind its pods' ownerReferences name.
//! [`as_replica_set`] converts the RC, [`crate::replicaset::sync`] claims, creates and deletes
//! pods, and [`rc_status`] converts the computed status back for the RC's status subresource.

use crate::pod_index::SharedPods;
use crate::replicaset::{self, key_of, Context, Error, OwnerKind};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Pod, ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::Client;
use std::future::Future;
use std::sync::Arc;
use tracing::{debug, instrument, warn};

/// Pods owned by ReplicationControllers.
pub const REPLICATION_CONTROLLER: OwnerKind =
    OwnerKind { api_version: "v1", kind: "ReplicationController" };

fn selector_of(rc: &ReplicationController) -> Option<LabelSelector> {
    let labels = rc.spec.as_ref().and_then(|s| s.selector.clone())?;
    Some(LabelSelector { match_labels: Some(labels), match_expressions: None })
}

/// The RC seen as a ReplicaSet: same metadata, template and counts; the selector map becomes
/// `matchLabels`.
pub fn as_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: selector_of(rc).unwrap_or_default(),
            template: spec.template,
        }),
        status: rc.status.as_ref().map(|s| ReplicaSetStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions.as_ref().map(|cs| {
                cs.iter()
                    .map(|c| k8s_openapi::api::apps::v1::ReplicaSetCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: c.last_transition_time.clone(),
                    })
                    .collect()
            }),
            terminating_replicas: None,
        }),
    }
}

/// A ReplicaSet status as the RC's.
pub fn rc_status(s: &ReplicaSetStatus) -> ReplicationControllerStatus {
    ReplicationControllerStatus {
        replicas: s.replicas,
        fully_labeled_replicas: s.fully_labeled_replicas,
        ready_replicas: s.ready_replicas,
        available_replicas: s.available_replicas,
        observed_generation: s.observed_generation,
        conditions: s.conditions.as_ref().map(|cs| {
            cs.iter()
                .map(|c| ReplicationControllerCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect()
        }),
    }
}

fn owners_of(
    pod: &Pod,
    rcs: &Store<ReplicationController>,
) -> Vec<ObjectRef<ReplicationController>> {
    let state = rcs.state();
    replicaset::owner_names(
        pod,
        REPLICATION_CONTROLLER.kind,
        state.iter().map(|rc| (&rc.metadata, rc.as_ref())),
        selector_of,
    )
    .into_iter()
    .map(|(ns, name)| ObjectRef::new(&name).within(&ns))
    .collect()
}

/// Run the ReplicationController controller until `shutdown` completes.
pub async fn run(
    client: Client,
    shared: SharedPods,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::new(
        Api::<ReplicationController>::all(client.clone()),
        watcher::Config::default(),
    );
    let rcs = controller.store();
    let ctx = Arc::new(Context {
        client,
        pods: shared.store.clone(),
        expectations: Default::default(),
        index: shared.index.clone(),
    });
    controller
        .watches_shared_stream(shared.subscribe(), move |pod| owners_of(&pod, &rcs))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| crate::log_outcome(res, "replicationcontroller reconcile"))
        .await;
}

fn error_policy(_rc: Arc<ReplicationController>, err: &Error, _ctx: Arc<Context>) -> Action {
    match err {
        Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => {
            debug!(error = %err, "conflict, retrying")
        }
        _ => warn!(error = %err, "reconcile failed"),
    }
    Action::requeue(std::time::Duration::from_secs(1))
}

/// Reconcile one ReplicationController: claim, scale, report.
#[instrument(skip_all, fields(object.ref = %format!("{}/{}", rc.metadata.namespace.as_deref().unwrap_or(""), rc.metadata.name.as_deref().unwrap_or(""))))]
pub async fn reconcile(rc: Arc<ReplicationController>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (ns, name) = key_of(&rc.metadata)?;
    let rs = as_replica_set(&rc);
    let Some((status, action)) = replicaset::sync(&rs, REPLICATION_CONTROLLER, &ctx).await? else {
        return Ok(Action::await_change());
    };
    let status = rc_status(&status);
    if rc.status.as_ref() != Some(&status) {
        let patch = crate::status_patch(&rc.metadata, &status);
        Api::<ReplicationController>::namespaced(ctx.client.clone(), &ns)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim;
    use crate::pods::test_support::PodBuilder;
    use crate::replicaset::{plan, pod_from_template, status};
    use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationControllerSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;
    use std::collections::BTreeMap;

    fn rc(replicas: i32) -> ReplicationController {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        ReplicationController {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("rc-uid".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec {
                replicas: Some(replicas),
                selector: Some(labels.clone()),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            [("app", "web"), ("tier", "fe")]
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .collect(),
                        ),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                min_ready_seconds: None,
            }),
            status: None,
        }
    }

    #[test]
    fn the_selector_map_becomes_match_labels_and_pods_name_the_rc() {
        let rs = as_replica_set(&rc(2));
        let sel = rs.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        assert_eq!(sel.match_labels, Some(BTreeMap::from([("app".into(), "web".into())])));
        let pod = pod_from_template(&rs, REPLICATION_CONTROLLER);
        let owner = claim::controller_of(&pod.metadata).cloned().unwrap_or_default();
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str(), owner.uid.as_str()),
            ("v1", "ReplicationController", "rc-uid")
        );
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
    }

    #[test]
    fn an_rc_without_a_selector_adopts_nothing() {
        let mut c = rc(1);
        if let Some(s) = c.spec.as_mut() {
            s.selector = None;
        }
        let orphan = PodBuilder::new("orphan").label("app", "web").build();
        let p = plan::plan(&as_replica_set(&c), &[&orphan], true);
        assert!(p.adopt.is_empty());
    }

    #[test]
    fn plan_and_status_over_an_rc() {
        let mine = PodBuilder::new("a").label("app", "web").owner("rc-uid").ready_at(10).build();
        let orphan = PodBuilder::new("b").label("app", "web").label("tier", "fe").build();
        let rs = as_replica_set(&rc(3));
        let p = plan::plan(&rs, &[&mine, &orphan], true);
        assert_eq!(p.adopt.len(), 1);
        assert_eq!(p.create, 1);
        let now = Time(Timestamp::from_second(100).unwrap_or(Timestamp::UNIX_EPOCH));
        let s = rc_status(&status::compute(&rs, &p.owned, None, now));
        assert_eq!(s.replicas, 2);
        assert_eq!(s.fully_labeled_replicas, Some(1), "only b carries every template label");
        assert_eq!(s.ready_replicas, Some(1));
        assert_eq!(s.available_replicas, Some(1));
        assert_eq!(s.observed_generation, Some(3));
        // A status read back converts to the same thing (the reconciler compares them).
        let mut again = rc(3);
        again.status = Some(s.clone());
        assert_eq!(as_replica_set(&again).status.map(|st| rc_status(&st)), Some(s));
    }
}
