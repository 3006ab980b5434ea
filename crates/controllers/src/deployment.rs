//! The Deployment controller: ReplicaSets for a Deployment, rolled out by its strategy.
//!
//! <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/>
//!
//! Each reconcile claims the ReplicaSets that match the selector, finds the one whose template
//! equals the Deployment's (the *new* one; the rest are *old*), asks [`rollout::plan`] how big
//! each should be, creates the new one if the plan says so (`<name>-<pod-template-hash>`),
//! scales, cleans up history beyond `revisionHistoryLimit`, and writes [`status::compute`].

pub mod hash;
pub mod rollout;
pub mod status;

mod apply;

use crate::claim::{self, Claim};
use crate::replicaset::{key_of, Error};
use crate::selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::WatchStreamExt;
use kube::Client;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, instrument, warn};

/// `deployment.kubernetes.io/revision`.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// `deployment.kubernetes.io/revision-history`.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `deployment.kubernetes.io/desired-replicas`.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `deployment.kubernetes.io/max-replicas`.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

const RESYNC: Duration = Duration::from_secs(300);

/// What the Deployment reconciler needs besides the object.
pub struct Context {
    /// The API client all writes go through.
    pub client: Client,
    /// Every ReplicaSet, from a watch.
    pub sets: Store<ReplicaSet>,
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// A ReplicaSet's revision (0 when unset).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The rollout math's view of a ReplicaSet.
pub fn view(rs: &ReplicaSet) -> rollout::Rs {
    let st = rs.status.clone().unwrap_or_default();
    rollout::Rs {
        name: rs.metadata.name.clone().unwrap_or_default(),
        replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        actual: st.replicas,
        available: st.available_replicas.unwrap_or(0),
        created: rs.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second()),
        desired_annotation: annotation_i32(rs, DESIRED_REPLICAS),
        max_annotation: annotation_i32(rs, MAX_REPLICAS),
    }
}

/// The Deployment's wishes in the rollout math's terms.
pub fn desired(d: &Deployment) -> rollout::Desired {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let strategy = spec.strategy.unwrap_or_default();
    let strategy = if strategy.type_.as_deref() == Some("Recreate") {
        rollout::Strategy::Recreate
    } else {
        let ru = strategy.rolling_update.unwrap_or_default();
        let quarter =
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("25%".into());
        rollout::resolve_fenceposts(
            Some(ru.max_surge.as_ref().unwrap_or(&quarter)),
            Some(ru.max_unavailable.as_ref().unwrap_or(&quarter)),
            replicas,
        )
    };
    rollout::Desired {
        replicas,
        strategy,
        paused: spec.paused.unwrap_or(false),
        status_replicas: d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
    }
}

/// Which Deployments a ReplicaSet event concerns: its controller, or for an orphan every
/// Deployment in its namespace whose selector matches it.
fn owners_of(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = claim::controller_of(&rs.metadata) {
        if owner.kind == "Deployment" {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return Vec::new();
    }
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|d| {
            d.spec.as_ref().is_some_and(|s| {
                !selector::is_empty(&s.selector) && selector::matches(&s.selector, &labels)
            })
        })
        .filter_map(|d| d.metadata.name.as_ref().map(|n| ObjectRef::new(n).within(&ns)))
        .collect()
}

/// Run the Deployment controller until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let (sets, writer) = reflector::store::<ReplicaSet>();
    let rs_api = Api::<ReplicaSet>::all(client.clone());
    let rs_events = reflector::reflector(writer, crate::lean_watcher(rs_api))
        .default_backoff()
        .touched_objects();
    let controller = crate::lean_controller(Api::<Deployment>::all(client.clone()));
    let deployments = controller.store();
    let ctx = Arc::new(Context { client, sets });
    controller
        .watches_stream(rs_events, move |rs| owners_of(&rs, &deployments))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| crate::log_outcome(res, "deployment reconcile"))
        .await;
}

fn error_policy(_d: Arc<Deployment>, err: &Error, _ctx: Arc<Context>) -> Action {
    match err {
        Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => {
            debug!(error = %err, "conflict, retrying")
        }
        _ => warn!(error = %err, "reconcile failed"),
    }
    Action::requeue(Duration::from_secs(1))
}

/// Reconcile one Deployment: claim, plan, create/scale, clean up, report.
#[instrument(skip_all, fields(object.ref = %format!("{}/{}", d.metadata.namespace.as_deref().unwrap_or(""), d.metadata.name.as_deref().unwrap_or(""))))]
pub async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (ns, _name) = key_of(&d.metadata)?;
    crate::cache_ready(&ctx.sets).await.map_err(|_| Error::CacheClosed)?;
    let Some(spec) = d.spec.as_ref() else { return Ok(Action::await_change()) };
    if d.metadata.deletion_timestamp.is_some() || selector::is_empty(&spec.selector) {
        // Being deleted: the garbage collector takes the ReplicaSets. An empty selector would
        // select everything; the API server refuses it, so this is only defence.
        return Ok(Action::await_change());
    }
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let mut owned: Vec<ReplicaSet> = Vec::new();
    let mut adopt = Vec::new();
    let mut release = Vec::new();
    for rs in ctx.sets.state() {
        if rs.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        match claim::decide(&uid, &spec.selector, false, &rs.metadata) {
            Claim::Keep => owned.push((*rs).clone()),
            Claim::Adopt => {
                adopt.push((*rs).clone());
                owned.push((*rs).clone());
            }
            Claim::Release => release.push((*rs).clone()),
            Claim::Ignore => {}
        }
    }
    let applier = apply::Applier::new(&ctx.client, &d)?;
    applier.claims(&adopt, &release).await?;
    owned.sort_by(|a, b| {
        let t =
            |r: &ReplicaSet| r.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second());
        t(a).cmp(&t(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let template = spec.template.clone();
    let new_idx = owned.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| hash::equal_ignore_hash(t, &template))
    });
    applier.sync(owned, new_idx).await
}
