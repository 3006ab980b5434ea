//! The StatefulSet controller: pods with stable names (`<set>-<ordinal>`), created in order and
//! removed in reverse, each with its own PersistentVolumeClaims from `volumeClaimTemplates`.
//!
//! <https://kubernetes.io/docs/concepts/workloads/controllers/statefulset/>
//!
//! Each reconcile lists the set's pods, asks [`plan`] for the next steps (OrderedReady: one at
//! a time, waiting for Ready; Parallel: all at once), applies them and writes the status. A
//! rolling update replaces pods from the highest ordinal down to `partition`, one at a time,
//! once every pod is Ready; the template's hash is the pods' `controller-revision-hash`.
//! Claims outlive their pods; `persistentVolumeClaimRetentionPolicy` decides, through owner
//! references ([`retention`]), whether the garbage collector removes them with the set or on
//! scale-down.
//! Not yet: ControllerRevision objects (so `kubectl rollout history` shows none), `minReadySeconds`,
//! `OnDelete` updates.

pub mod retention;

use crate::claim;
use crate::pod_index::SharedPods;
use crate::pods;
use crate::selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Errors of the StatefulSet controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("statefulset {key}: {action} failed")]
    Api {
        /// `namespace/name`.
        key: String,
        /// What we were doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

/// What the plan knows of one existing pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Ready condition true.
    pub ready: bool,
    /// Being deleted.
    pub deleting: bool,
    /// Its `controller-revision-hash`.
    pub revision: String,
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the pod of this ordinal (with the update revision).
    Create(i32),
    /// Delete the pod of this ordinal (scale down, or replace on update).
    Delete(i32),
}

/// The next steps for a set of `replicas` pods at `revision`, given the existing members.
pub fn plan(
    replicas: i32,
    parallel: bool,
    partition: i32,
    revision: &str,
    members: &BTreeMap<i32, Member>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if !parallel && members.values().any(|m| m.deleting) {
        return steps; // OrderedReady: one change at a time.
    }
    for ordinal in 0..replicas {
        match members.get(&ordinal) {
            None => {
                steps.push(Step::Create(ordinal));
                if !parallel {
                    return steps;
                }
            }
            Some(m) if !parallel && (!m.ready || m.deleting) => return steps,
            Some(_) => {}
        }
    }
    let extra: Vec<i32> = members.keys().rev().copied().filter(|o| *o >= replicas).collect();
    for ordinal in extra {
        if members.get(&ordinal).is_some_and(|m| !m.deleting) {
            steps.push(Step::Delete(ordinal));
            if !parallel {
                return steps;
            }
        }
    }
    if !steps.is_empty() {
        return steps;
    }
    // Rolling update, highest ordinal first, only when the whole set is Ready.
    if members.values().all(|m| m.ready && !m.deleting) {
        let stale = members
            .iter()
            .rev()
            .find(|(o, m)| **o >= partition && **o < replicas && m.revision != revision);
        if let Some((ordinal, _)) = stale {
            steps.push(Step::Delete(*ordinal));
        }
    }
    steps
}

/// The update revision: the pod template's hash, as the Deployment controller computes it.
pub fn template_hash(set: &StatefulSet) -> String {
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    crate::deployment::hash::pod_template_hash(&template, None)
}

fn ordinal_of(set_name: &str, pod: &Pod) -> Option<i32> {
    pod.metadata.name.as_deref()?.strip_prefix(set_name)?.strip_prefix('-')?.parse().ok()
}

/// The pod of `ordinal`, as the set's template describes it.
pub fn pod_for(set: &StatefulSet, ordinal: i32, revision: &str) -> Result<Pod, serde_json::Error> {
    let name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let pod_name = format!("{name}-{ordinal}");
    let mut pod = serde_json::to_value(&spec.template)?;
    let labels = &mut pod["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
    labels["apps.kubernetes.io/pod-index"] = json!(ordinal.to_string());
    labels["controller-revision-hash"] = json!(format!("{name}-{revision}"));
    pod["metadata"]["name"] = json!(pod_name);
    let uid = set.metadata.uid.clone().unwrap_or_default();
    pod["metadata"]["ownerReferences"] =
        json!([claim::owner_reference("apps/v1", "StatefulSet", &name, &uid)]);
    pod["spec"]["hostname"] = json!(pod_name);
    if let Some(svc) = spec.service_name.filter(|s| !s.is_empty()) {
        pod["spec"]["subdomain"] = json!(svc);
    }
    for claim in spec.volume_claim_templates.iter().flatten() {
        let tmpl = claim.metadata.name.clone().unwrap_or_default();
        let volume = json!({"name": tmpl, "persistentVolumeClaim": {"claimName": format!("{tmpl}-{pod_name}")}});
        match pod["spec"]["volumes"].as_array_mut() {
            Some(v) => v.push(volume),
            None => pod["spec"]["volumes"] = json!([volume]),
        }
    }
    serde_json::from_value(pod)
}

/// Run the StatefulSet controller until `shutdown` completes.
pub async fn run(
    client: Client,
    shared: SharedPods,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    Controller::new(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
        .owns_shared_stream(shared.subscribe())
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |_, err, _| {
                warn!(error = %err, "statefulset reconcile failed");
                Action::requeue(Duration::from_secs(1))
            },
            Arc::new(client),
        )
        .for_each(|res| crate::log_outcome(res, "statefulset reconcile"))
        .await;
}

/// Reconcile one StatefulSet.
pub async fn reconcile(set: Arc<StatefulSet>, client: Arc<Client>) -> Result<Action, Error> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let key = format!("{ns}/{name}");
    let err = |action: &'static str| {
        let key = key.clone();
        move |source| Error::Api { key, action, source }
    };
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = set.spec.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced((*client).clone(), &ns);
    let query = selector::to_query(&spec.selector);
    let listed =
        pods_api.list(&ListParams::default().labels(&query)).await.map_err(err("list pods"))?;
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let owned: Vec<&Pod> = listed
        .items
        .iter()
        .filter(|p| claim::controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let revision = template_hash(&set);
    let members: BTreeMap<i32, Member> = owned
        .iter()
        .filter_map(|p| {
            let o = ordinal_of(&name, p)?;
            let rev = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("controller-revision-hash"))
                .cloned()
                .unwrap_or_default();
            Some((
                o,
                Member {
                    ready: pods::is_ready(p),
                    deleting: p.metadata.deletion_timestamp.is_some(),
                    revision: rev.strip_prefix(&format!("{name}-")).unwrap_or(&rev).to_string(),
                },
            ))
        })
        .collect();
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1);
    let by_ordinal: BTreeMap<i32, &Pod> =
        owned.iter().filter_map(|p| Some((ordinal_of(&name, p)?, *p))).collect();
    retention::update_claim_owners(&client, &set, &by_ordinal, replicas)
        .await
        .map_err(err("claim owners"))?;
    for step in plan(replicas, parallel, partition, &revision, &members) {
        match step {
            Step::Create(ordinal) => {
                ensure_claims(&client, &set, &ns, ordinal).await.map_err(err("create claim"))?;
                let pod = pod_for(&set, ordinal, &revision).map_err(|e| Error::Api {
                    key: key.clone(),
                    action: "build pod",
                    source: kube::Error::SerdeError(e),
                })?;
                match pods_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => info!(set = %key, ordinal, "created pod"),
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(err("create pod")(e)),
                }
            }
            Step::Delete(ordinal) => {
                match pods_api.delete(&format!("{name}-{ordinal}"), &DeleteParams::default()).await
                {
                    Ok(_) => info!(set = %key, ordinal, "deleted pod"),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(err("delete pod")(e)),
                }
            }
        }
    }
    let count = |f: &dyn Fn(&Member) -> bool| members.values().filter(|m| f(m)).count() as i32;
    let updated = count(&|m| m.revision == revision);
    let status = json!({"status": {
        "observedGeneration": set.metadata.generation,
        "replicas": members.len() as i32,
        "readyReplicas": count(&|m| m.ready),
        "availableReplicas": count(&|m| m.ready),
        "currentReplicas": if updated as usize == members.len() { updated } else { members.len() as i32 - updated },
        "updatedReplicas": updated,
        "currentRevision": format!("{name}-{}", if updated as usize == members.len() { revision.clone() } else { members.values().find(|m| m.revision != revision).map(|m| m.revision.clone()).unwrap_or_default() }),
        "updateRevision": format!("{name}-{revision}"),
        "collisionCount": 0,
    }});
    let sets: Api<StatefulSet> = Api::namespaced((*client).clone(), &ns);
    if serde_json::to_value(&set.status).ok().as_ref() != Some(&status["status"]) {
        sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(err("status"))?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn ensure_claims(
    client: &Client,
    set: &StatefulSet,
    ns: &str,
    ordinal: i32,
) -> Result<(), kube::Error> {
    let name = set.metadata.name.clone().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let spec = set.spec.clone().unwrap_or_default();
    for tmpl in spec.volume_claim_templates.iter().flatten() {
        let mut claim: Value = serde_json::to_value(tmpl).map_err(kube::Error::SerdeError)?;
        let claim_name =
            format!("{}-{name}-{ordinal}", tmpl.metadata.name.clone().unwrap_or_default());
        claim["apiVersion"] = json!("v1");
        claim["kind"] = json!("PersistentVolumeClaim");
        claim["metadata"]["name"] = json!(claim_name);
        claim["metadata"]["namespace"] = json!(ns);
        if let Some(labels) = spec.selector.match_labels.as_ref() {
            for (k, v) in labels {
                claim["metadata"]["labels"][k] = json!(v);
            }
        }
        if let Some(m) = claim.as_object_mut() {
            m.remove("status");
        }
        let pvc: PersistentVolumeClaim =
            serde_json::from_value(claim).map_err(kube::Error::SerdeError)?;
        // A claim of that name survives its pod (and the set's scale-downs): reuse it.
        match api.create(&PostParams::default(), &pvc).await {
            Ok(_) => info!(claim = %claim_name, "created claim"),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ready: bool, rev: &str) -> Member {
        Member { ready, deleting: false, revision: rev.into() }
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_after_the_previous_is_ready() {
        let mut members = BTreeMap::new();
        assert_eq!(plan(3, false, 0, "r1", &members), vec![Step::Create(0)]);
        members.insert(0, m(false, "r1"));
        assert_eq!(plan(3, false, 0, "r1", &members), vec![]);
        members.insert(0, m(true, "r1"));
        assert_eq!(plan(3, false, 0, "r1", &members), vec![Step::Create(1)]);
    }

    #[test]
    fn parallel_creates_all_and_scale_down_goes_from_the_top() {
        let members = BTreeMap::new();
        assert_eq!(
            plan(3, true, 0, "r1", &members),
            vec![Step::Create(0), Step::Create(1), Step::Create(2)]
        );
        let members: BTreeMap<i32, Member> = (0..4).map(|o| (o, m(true, "r1"))).collect();
        assert_eq!(plan(2, false, 0, "r1", &members), vec![Step::Delete(3)]);
    }

    #[test]
    fn rolling_update_goes_down_to_the_partition() {
        let mut members: BTreeMap<i32, Member> = (0..3).map(|o| (o, m(true, "old"))).collect();
        assert_eq!(plan(3, false, 1, "new", &members), vec![Step::Delete(2)]);
        members.insert(2, m(true, "new"));
        assert_eq!(plan(3, false, 1, "new", &members), vec![Step::Delete(1)]);
        members.insert(1, m(true, "new"));
        assert_eq!(plan(3, false, 1, "new", &members), vec![], "ordinal 0 is below the partition");
        members.insert(1, m(false, "new"));
        assert_eq!(plan(3, false, 0, "new", &members), vec![], "waits for Ready");
    }
}
