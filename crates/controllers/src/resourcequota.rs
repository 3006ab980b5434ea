//! The resource quota controller: keeps each ResourceQuota's `status.hard` (its `spec.hard`)
//! and `status.used` (what the objects of its namespace consume) current, as upstream's
//! `resourcequota` controller does. Admission (in the API server) charges creates as they
//! happen; this controller gives usage back when objects go away and corrects any drift.
//!
//! <https://kubernetes.io/docs/concepts/policy/resource-quotas/>
//!
//! A quota is recomputed when its limits change (not its `status.used`: that is admission's
//! charges), when an object of a kind it commonly counts is deleted in its namespace (services,
//! configmaps, secrets, claims, replication controllers; pods on any change), and every
//! [`RESYNC`], as upstream's controller replenishes on deletions and resyncs. The write carries
//! the quota's resourceVersion, so a charge made while it computed fails the write with a
//! conflict and the quota is recomputed.
//!
//! Not on creates: admission charges the quota and then stores the object, and a recompute
//! that lists in between counts the object as absent and, with the quota's current
//! resourceVersion, writes the charge away; concurrent creates then overran a quota (an e2e
//! test saw 6 and 7 configmaps admitted under a limit of 5). A resync can still meet that
//! window, as upstream's can.

use crate::pod_index::SharedPods;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, ReplicationController, ResourceQuota, Secret, Service,
};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, PredicateConfig, WatchStreamExt};
use kube::Client;
use kumo_api::quota;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, instrument, warn};

/// Periodic recompute, for kinds no watch here covers.
pub const RESYNC: Duration = Duration::from_secs(30);

/// Errors of the quota controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("resourcequota {key}: {action} failed")]
    Api {
        /// `namespace/name` of the quota.
        key: String,
        /// What we were doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

fn quotas_in(quotas: &Store<ResourceQuota>, ns: Option<&String>) -> Vec<ObjectRef<ResourceQuota>> {
    quotas
        .state()
        .iter()
        .filter(|q| q.metadata.namespace.as_ref() == ns)
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// Run the quota controller until `shutdown` completes.
pub async fn run(
    client: Client,
    shared: SharedPods,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (reader, writer) = reflector::store();
    let quotas = reflector::reflector(
        writer,
        watcher(Api::<ResourceQuota>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(limits, PredicateConfig::default());
    let controller = Controller::for_stream(quotas, reader);
    let store = controller.store();
    let (s1, s2, s3, s4, s5, s6) =
        (store.clone(), store.clone(), store.clone(), store.clone(), store.clone(), store);
    controller
        .watches_shared_stream(shared.subscribe(), move |o| {
            quotas_in(&s1, o.metadata.namespace.as_ref())
        })
        .watches_stream(deleted(Api::<Service>::all(client.clone())), move |o| {
            quotas_in(&s2, o.metadata.namespace.as_ref())
        })
        .watches_stream(deleted(Api::<ConfigMap>::all(client.clone())), move |o| {
            quotas_in(&s3, o.metadata.namespace.as_ref())
        })
        .watches_stream(deleted(Api::<Secret>::all(client.clone())), move |o| {
            quotas_in(&s4, o.metadata.namespace.as_ref())
        })
        .watches_stream(deleted(Api::<PersistentVolumeClaim>::all(client.clone())), move |o| {
            quotas_in(&s5, o.metadata.namespace.as_ref())
        })
        .watches_stream(deleted(Api::<ReplicationController>::all(client.clone())), move |o| {
            quotas_in(&s6, o.metadata.namespace.as_ref())
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|res| crate::log_outcome(res, "resourcequota reconcile"))
        .await;
}

/// What of a quota calls for a recompute: its limits and scopes, and a status that does not
/// show them yet (a new quota). Not `status.used`, which admission's charges change.
fn limits(q: &ResourceQuota) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&q.spec).unwrap_or_default().hash(&mut h);
    let hard = q.status.as_ref().map(|s| &s.hard);
    serde_json::to_string(&hard).unwrap_or_default().hash(&mut h);
    Some(h.finish())
}

/// The objects of `api` as they are deleted (what gives quota back).
fn deleted<K>(
    api: Api<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, watcher::Config::default()).default_backoff().filter_map(|e| async move {
        match e {
            Ok(watcher::Event::Delete(o)) => Some(Ok(o)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    })
}

fn error_policy(_q: Arc<ResourceQuota>, err: &Error, _client: Arc<Client>) -> Action {
    match err {
        Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => {
            debug!(error = %err, "conflict, recomputing")
        }
        _ => warn!(error = %err, "reconcile failed"),
    }
    Action::requeue(Duration::from_secs(1))
}

/// The API resource a quota name counts, for listing it.
async fn api_resource(client: &Client, group: &str, plural: &str) -> Option<ApiResource> {
    if group.is_empty() {
        return Some(ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: String::new(),
            plural: plural.into(),
        });
    }
    let g = kube::discovery::group(client, group).await.ok()?;
    g.recommended_resources().into_iter().map(|(r, _)| r).find(|r| r.plural == plural)
}

/// Usage of everything `q` limits, from the objects of its namespace.
pub async fn compute_used(
    client: &Client,
    ns: &str,
    q: &Value,
) -> Result<quota::Usage, kube::Error> {
    let hard = quota::hard(q);
    let mut used: quota::Usage = hard.keys().map(|k| (k.clone(), 0)).collect();
    let mut seen = std::collections::BTreeSet::new();
    for name in hard.keys() {
        let (group, plural) = quota::kind_of(name);
        if !seen.insert((group.clone(), plural.clone())) {
            continue;
        }
        let Some(ar) = api_resource(client, &group, &plural).await else { continue };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        for obj in api.list(&ListParams::default()).await?.items {
            let value = serde_json::to_value(&obj).unwrap_or(Value::Null);
            if !quota::applies(q, &group, &plural, &value) {
                continue;
            }
            for (k, v) in quota::usage(&group, &plural, &value) {
                if let Some(u) = used.get_mut(&k) {
                    *u += v;
                }
            }
        }
    }
    Ok(used)
}

/// Recompute one quota's status.
#[instrument(skip_all, fields(object.ref = %format!("{}/{}", rq.metadata.namespace.as_deref().unwrap_or(""), rq.metadata.name.as_deref().unwrap_or(""))))]
pub async fn reconcile(rq: Arc<ResourceQuota>, client: Arc<Client>) -> Result<Action, Error> {
    let ns = rq.metadata.namespace.clone().unwrap_or_default();
    let name = rq.metadata.name.clone().unwrap_or_default();
    let err = |action: &'static str| {
        let key = format!("{ns}/{name}");
        move |source| Error::Api { key, action, source }
    };
    if rq.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let q = serde_json::to_value(rq.as_ref()).unwrap_or(Value::Null);
    let used = compute_used(&client, &ns, &q).await.map_err(err("list objects"))?;
    let status = desired_status(&q, &used);
    if q.get("status") != Some(&status) {
        let patch = json!({"metadata": {"resourceVersion": rq.metadata.resource_version}, "status": status});
        Api::<ResourceQuota>::namespaced((*client).clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(err("update status"))?;
    }
    Ok(Action::requeue(RESYNC))
}

/// The status a quota should show: `hard` as specified, `used` for each limited resource.
pub fn desired_status(q: &Value, used: &quota::Usage) -> Value {
    let hard = quota::hard(q);
    let spec_hard = q["spec"]["hard"].as_object().cloned().unwrap_or_default();
    json!({"hard": spec_hard, "used": quota::to_list(&hard, used)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_every_limited_resource_with_zero_for_unused_ones() {
        let q =
            json!({"spec": {"hard": {"pods": "2", "requests.cpu": "1", "requests.memory": "1Gi"}}});
        let used =
            quota::Usage::from([("pods".to_string(), 1000), ("requests.cpu".to_string(), 500)]);
        assert_eq!(
            desired_status(&q, &used),
            json!({"hard": {"pods": "2", "requests.cpu": "1", "requests.memory": "1Gi"},
                   "used": {"pods": "1", "requests.cpu": "500m", "requests.memory": "0"}})
        );
    }
}
