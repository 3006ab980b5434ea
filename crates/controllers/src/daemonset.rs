//! The DaemonSet controller: one pod on every eligible node.
//!
//! <https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/>
//!
//! A node is eligible when the template's `nodeSelector` matches its labels and the template
//! tolerates its NoSchedule/NoExecute taints. Each pod is pinned to its node with required node
//! affinity on `metadata.name` (as upstream does) and placed by the scheduler. A rolling update
//! replaces pods whose `controller-revision-hash` is stale, `maxUnavailable` (default 1) at a
//! time, once they are Ready. Not yet: required node affinity of the template itself,
//! `maxSurge`, ControllerRevision objects, `minReadySeconds`.

use crate::claim;
use crate::pod_index::SharedPods;
use crate::pods;
use crate::selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Errors of the DaemonSet controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("daemonset {key}: {action} failed")]
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

/// Whether `toleration` tolerates `taint` (upstream's `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key_matches = toleration.key.as_deref().is_none_or(|k| k.is_empty() || k == taint.key);
    match toleration.operator.as_deref() {
        Some("Exists") => key_matches,
        _ => {
            key_matches
                && toleration.key.is_some()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// Whether the set's pods belong on `node`.
pub fn eligible(set: &DaemonSet, node: &Node) -> bool {
    let spec = set.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let tolerations = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let taints_ok = taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)));
    selector_ok && taints_ok
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the pod for this node.
    Create(String),
    /// Delete this pod.
    Delete(String),
}

/// What the plan knows of one pod: its node, name, revision and readiness.
#[derive(Debug, Clone)]
pub struct Member {
    /// The node it is pinned to.
    pub node: String,
    /// The pod's name.
    pub name: String,
    /// Its revision.
    pub revision: String,
    /// Ready.
    pub ready: bool,
    /// Being deleted.
    pub deleting: bool,
}

/// The steps that bring `members` to one up-to-date pod on each of `nodes`.
pub fn plan(
    nodes: &[String],
    members: &[Member],
    revision: &str,
    max_unavailable: usize,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut by_node: BTreeMap<&str, Vec<&Member>> = BTreeMap::new();
    for m in members.iter().filter(|m| !m.deleting) {
        by_node.entry(m.node.as_str()).or_default().push(m);
    }
    for node in nodes {
        let here = by_node.get(node.as_str()).cloned().unwrap_or_default();
        match here.len() {
            0 if !members.iter().any(|m| m.node == *node) => steps.push(Step::Create(node.clone())),
            0 => {} // the old pod is still terminating
            _ => steps.extend(here[1..].iter().map(|m| Step::Delete(m.name.clone()))),
        }
    }
    for (node, here) in &by_node {
        if !nodes.iter().any(|n| n == node) {
            steps.extend(here.iter().map(|m| Step::Delete(m.name.clone())));
        }
    }
    // Rolling update: stale pods go while the number of unavailable ones allows.
    let unavailable = members.iter().filter(|m| !m.ready || m.deleting).count();
    let budget = max_unavailable.saturating_sub(unavailable);
    let stale =
        members.iter().filter(|m| !m.deleting && m.revision != revision && nodes.contains(&m.node));
    // Not-ready stale pods first: replacing them costs no availability.
    let mut stale: Vec<&Member> = stale.collect();
    stale.sort_by_key(|m| m.ready);
    let mut left = budget;
    for m in stale {
        if !m.ready {
            steps.push(Step::Delete(m.name.clone()));
        } else if left > 0 {
            left -= 1;
            steps.push(Step::Delete(m.name.clone()));
        }
    }
    steps
}

/// Run the DaemonSet controller until `shutdown` completes.
pub async fn run(
    client: Client,
    shared: SharedPods,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let controller =
        Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    controller
        .owns_shared_stream(shared.subscribe())
        // Any node change may change where the sets' pods belong.
        .watches(Api::<Node>::all(client.clone()), watcher::Config::default(), move |_node| {
            sets.state().iter().map(|s| ObjectRef::from_obj(s.as_ref())).collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |_, err, _| {
                warn!(error = %err, "daemonset reconcile failed");
                Action::requeue(Duration::from_secs(1))
            },
            Arc::new(client),
        )
        .for_each(|res| crate::log_outcome(res, "daemonset reconcile"))
        .await;
}

/// The update revision: the pod template's hash, as the Deployment controller computes it.
fn template_hash(set: &DaemonSet) -> String {
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    crate::deployment::hash::pod_template_hash(&template, None)
}

fn pod_node(pod: &Pod) -> Option<String> {
    let terms = pod.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()?;
    let required = terms.required_during_scheduling_ignored_during_execution.as_ref()?;
    required.node_selector_terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(
        |f| {
            (f.key == "metadata.name")
                .then(|| f.values.as_ref().and_then(|v| v.first().cloned()))
                .flatten()
        },
    )
}

/// Reconcile one DaemonSet.
pub async fn reconcile(set: Arc<DaemonSet>, client: Arc<Client>) -> Result<Action, Error> {
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
    let nodes_api: Api<Node> = Api::all((*client).clone());
    let nodes: Vec<String> = nodes_api
        .list(&ListParams::default())
        .await
        .map_err(err("list nodes"))?
        .items
        .iter()
        .filter(|n| eligible(&set, n))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let pods_api: Api<Pod> = Api::namespaced((*client).clone(), &ns);
    let listed = pods_api
        .list(&ListParams::default().labels(&selector::to_query(&spec.selector)))
        .await
        .map_err(err("list pods"))?;
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let members: Vec<Member> = listed
        .items
        .iter()
        .filter(|p| claim::controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
        .filter_map(|p| {
            let rev = p
                .metadata
                .labels
                .as_ref()?
                .get("controller-revision-hash")
                .cloned()
                .unwrap_or_default();
            Some(Member {
                node: pod_node(p)?,
                name: p.metadata.name.clone()?,
                revision: rev.strip_prefix(&format!("{name}-")).unwrap_or(&rev).to_string(),
                ready: pods::is_ready(p),
                deleting: p.metadata.deletion_timestamp.is_some(),
            })
        })
        .collect();
    let revision = template_hash(&set);
    let max_unavailable = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref())
        .map(|v| match v {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => {
                (*i).max(0) as usize
            }
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => {
                let pct: usize = s.trim_end_matches('%').parse().unwrap_or(0);
                (pct * nodes.len()).div_ceil(100).max(1)
            }
        })
        .unwrap_or(1);
    for step in plan(&nodes, &members, &revision, max_unavailable) {
        match step {
            Step::Create(node) => {
                let mut pod = serde_json::to_value(&spec.template).unwrap_or_default();
                pod["metadata"]["generateName"] = json!(format!("{name}-"));
                pod["metadata"]["ownerReferences"] =
                    json!([claim::owner_reference("apps/v1", "DaemonSet", &name, &uid)]);
                if !pod["metadata"]["labels"].is_object() {
                    pod["metadata"]["labels"] = json!({});
                }
                pod["metadata"]["labels"]["controller-revision-hash"] =
                    json!(format!("{name}-{revision}"));
                pod["spec"]["affinity"]["nodeAffinity"]
                    ["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
                    "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
                });
                let pod: Pod = serde_json::from_value(pod)
                    .map_err(|e| err("build pod")(kube::Error::SerdeError(e)))?;
                pods_api.create(&PostParams::default(), &pod).await.map_err(err("create pod"))?;
                info!(set = %key, node = %node, "created pod");
            }
            Step::Delete(pod) => match pods_api.delete(&pod, &DeleteParams::default()).await {
                Ok(_) => info!(set = %key, pod = %pod, "deleted pod"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(err("delete pod")(e)),
            },
        }
    }
    let live: Vec<&Member> = members.iter().filter(|m| !m.deleting).collect();
    let on_eligible = live.iter().filter(|m| nodes.contains(&m.node)).count() as i32;
    let ready = live.iter().filter(|m| m.ready).count() as i32;
    let status = json!({"status": {
        "observedGeneration": set.metadata.generation,
        "desiredNumberScheduled": nodes.len() as i32,
        "currentNumberScheduled": on_eligible,
        "numberMisscheduled": live.len() as i32 - on_eligible,
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": (nodes.len() as i32 - ready).max(0),
        "updatedNumberScheduled": live.iter().filter(|m| m.revision == revision).count() as i32,
    }});
    let sets: Api<DaemonSet> = Api::namespaced((*client).clone(), &ns);
    if serde_json::to_value(&set.status).ok().as_ref() != Some(&status["status"]) {
        sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(err("status"))?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(node: &str, name: &str, rev: &str, ready: bool) -> Member {
        Member {
            node: node.into(),
            name: name.into(),
            revision: rev.into(),
            ready,
            deleting: false,
        }
    }

    #[test]
    fn one_pod_per_eligible_node() {
        let nodes = vec!["a".to_string(), "b".to_string()];
        let members =
            vec![m("a", "p1", "r", true), m("a", "p2", "r", true), m("c", "p3", "r", true)];
        let steps = plan(&nodes, &members, "r", 1);
        assert!(steps.contains(&Step::Create("b".into())));
        assert!(steps.contains(&Step::Delete("p2".into())));
        assert!(steps.contains(&Step::Delete("p3".into())));
        assert_eq!(steps.len(), 3);
    }

    #[test]
    fn rolling_update_respects_max_unavailable() {
        let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let members =
            vec![m("a", "p1", "old", true), m("b", "p2", "old", true), m("c", "p3", "old", true)];
        assert_eq!(plan(&nodes, &members, "new", 1).len(), 1);
        let mut one_down = members.clone();
        one_down[0] = m("a", "p1", "new", false);
        assert!(plan(&nodes, &one_down, "new", 1).is_empty(), "one unavailable already");
    }

    #[test]
    fn taints_need_tolerations() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let exact = Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("db".into()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        };
        let exists = Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        let other = Toleration {
            key: Some("x".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&exact, &taint));
        assert!(tolerates(&exists, &taint));
        assert!(!tolerates(&other, &taint));
    }
}
