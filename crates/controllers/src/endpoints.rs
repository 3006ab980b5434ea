//! The Endpoints and EndpointSlice controller: a Service with a selector gets an `Endpoints`
//! object of the same name and `discovery.k8s.io/v1` EndpointSlices listing the addresses of its
//! pods, ready ones apart from not-ready ones.
//!
//! <https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/>
//!
//! Each reconcile reads the Service and the pods of its namespace (watch-fed cache), asks
//! [`compute`] what the Endpoints subsets and slices should be, and writes only what differs
//! (replace with the resourceVersion it read, so a stale decision gets 409 and is retried).
//! Slices are named `<svc>-<hash of their port set>`, so a reconcile from a lagging cache
//! finds the slice it would create already there instead of making a second one. Both kinds
//! carry a controller ownerReference to the Service, so the garbage collector removes them with
//! it (upstream's Endpoints have none and its controller deletes them instead).
//!
//! Services without a selector (their Endpoints are the user's) and `default/kubernetes` (the
//! API server's) are left alone; slices we made for a Service that lost its selector are
//! deleted.

pub mod compute;

use crate::pod_index::SharedPods;
use crate::selector::Labels;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::Client;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, info, instrument, warn};

/// Periodic resync: a missed event heals within this time.
const RESYNC: Duration = Duration::from_secs(300);

/// Pods each Service's endpoints listed at its last reconcile (`namespace/name` → pod names), so
/// a pod that stops matching still triggers the Service it was published in.
type Published = Arc<Mutex<HashMap<String, BTreeSet<String>>>>;

/// What the endpoints reconciler needs besides the Service.
pub struct Context {
    /// The API client all writes go through.
    pub client: Client,
    /// Every pod in the cluster, from a watch.
    pub pods: Store<Pod>,
    published: Published,
}

/// Errors of the endpoints controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("service {key}: {action} failed")]
    Api {
        /// `namespace/name` of the Service.
        key: String,
        /// What we were doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The Service lacks a namespace or name (the API server never sends such a Service).
    #[error("service without namespace or name")]
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

/// Services a pod event concerns: those in its namespace whose selector matches it now, and
/// those that listed it last time (it may have stopped matching or gone).
fn services_of(
    pod: &Pod,
    services: &Store<Service>,
    published: &Published,
) -> Vec<ObjectRef<Service>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let labels: Labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut out: BTreeSet<String> = services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|s| compute::is_managed(s))
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|sp| sp.selector.as_ref())
                .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
        })
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    if let Ok(map) = published.lock() {
        let prefix = format!("{ns}/");
        for (key, names) in map.iter() {
            if let Some(svc) = key.strip_prefix(&prefix) {
                if names.contains(&name) {
                    out.insert(svc.to_string());
                }
            }
        }
    }
    out.into_iter().map(|n| ObjectRef::new(&n).within(&ns)).collect()
}

/// Run the endpoints controller until `shutdown` completes.
pub async fn run(
    client: Client,
    shared: SharedPods,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let controller =
        Controller::new(Api::<Service>::all(client.clone()), watcher::Config::default());
    let services = controller.store();
    let published: Published = Arc::default();
    let ctx = Arc::new(Context {
        client: client.clone(),
        pods: shared.store.clone(),
        published: published.clone(),
    });
    controller
        .owns(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Endpoints>::all(client), watcher::Config::default())
        .watches_shared_stream(shared.subscribe(), move |pod| {
            services_of(&pod, &services, &published)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| crate::log_outcome(res, "endpoints reconcile"))
        .await;
}

fn error_policy(_svc: Arc<Service>, err: &Error, _ctx: Arc<Context>) -> Action {
    match err {
        Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => {
            debug!(error = %err, "conflict, retrying")
        }
        _ => warn!(error = %err, "reconcile failed"),
    }
    Action::requeue(Duration::from_secs(1))
}

/// Reconcile one Service: write its Endpoints and EndpointSlices if they differ.
#[instrument(skip_all, fields(object.ref = %format!("{}/{}", svc.metadata.namespace.as_deref().unwrap_or(""), svc.metadata.name.as_deref().unwrap_or(""))))]
pub async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (ns, name) = key_of(&svc.metadata)?;
    let key = format!("{ns}/{name}");
    let api_err = |action: &'static str| {
        let key = key.clone();
        move |source| Error::Api { key, action, source }
    };
    crate::cache_ready(&ctx.pods).await.map_err(|_| Error::CacheClosed)?;
    if svc.metadata.deletion_timestamp.is_some() {
        forget(&ctx.published, &key);
        return Ok(Action::await_change());
    }
    let slice_api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let ours = ListParams::default().labels(&format!(
        "{}={name},{}={}",
        compute::SERVICE_NAME_LABEL,
        compute::MANAGED_BY_LABEL,
        compute::MANAGED_BY
    ));
    let existing = slice_api.list(&ours).await.map_err(api_err("list endpointslices"))?.items;
    if !compute::is_managed(&svc) {
        forget(&ctx.published, &key);
        for s in &existing {
            delete_slice(&slice_api, s).await.map_err(api_err("delete endpointslice"))?;
        }
        return Ok(Action::await_change());
    }
    let all: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let in_ns: Vec<&Pod> = all.iter().map(|p| p.as_ref()).collect();
    let eps = compute::endpoints_for(&svc, &in_ns);
    let publish_not_ready =
        svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);

    // Endpoints.
    let want = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: svc.metadata.labels.clone(),
            owner_references: Some(vec![compute::owner_ref(&svc)]),
            ..Default::default()
        },
        subsets: compute::subsets(&eps, publish_not_ready),
    };
    let ep_api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    match ep_api.get_opt(&name).await.map_err(api_err("get endpoints"))? {
        None => {
            ep_api
                .create(&PostParams::default(), &want)
                .await
                .map_err(api_err("create endpoints"))?;
            info!("created endpoints");
        }
        Some(have) => {
            let same = have.subsets.clone().unwrap_or_default()
                == want.subsets.clone().unwrap_or_default()
                && have.metadata.labels.clone().unwrap_or_default()
                    == want.metadata.labels.clone().unwrap_or_default();
            if !same {
                let mut next = have.clone();
                next.subsets = want.subsets.clone();
                next.metadata.labels = want.metadata.labels.clone();
                if next.metadata.owner_references.as_ref().is_none_or(|o| o.is_empty()) {
                    next.metadata.owner_references = want.metadata.owner_references.clone();
                }
                ep_api
                    .replace(&name, &PostParams::default(), &next)
                    .await
                    .map_err(api_err("update endpoints"))?;
                debug!("updated endpoints");
            }
        }
    }

    // EndpointSlices.
    let wanted = compute::slices(&svc, &eps);
    for w in &wanted {
        let w_name = w.metadata.name.clone().unwrap_or_default();
        match existing.iter().find(|s| s.metadata.name == w.metadata.name) {
            None => {
                slice_api
                    .create(&PostParams::default(), w)
                    .await
                    .map_err(api_err("create endpointslice"))?;
                info!(slice = %w_name, "created endpointslice");
            }
            Some(have) if !compute::slice_unchanged(have, w) => {
                let mut next = w.clone();
                next.metadata.resource_version = have.metadata.resource_version.clone();
                slice_api
                    .replace(&w_name, &PostParams::default(), &next)
                    .await
                    .map_err(api_err("update endpointslice"))?;
                debug!(slice = %w_name, "updated endpointslice");
            }
            Some(_) => {}
        }
    }
    for s in existing.iter().filter(|s| !wanted.iter().any(|w| w.metadata.name == s.metadata.name))
    {
        delete_slice(&slice_api, s).await.map_err(api_err("delete endpointslice"))?;
    }

    if let Ok(mut map) = ctx.published.lock() {
        map.insert(key, eps.iter().filter_map(|e| e.target_ref.name.clone()).collect());
    }
    Ok(Action::requeue(RESYNC))
}

fn forget(published: &Published, key: &str) {
    if let Ok(mut map) = published.lock() {
        map.remove(key);
    }
}

async fn delete_slice(api: &Api<EndpointSlice>, s: &EndpointSlice) -> Result<(), kube::Error> {
    let name = s.metadata.name.clone().unwrap_or_default();
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            info!(slice = %name, "deleted endpointslice");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
