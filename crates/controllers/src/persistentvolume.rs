//! The PersistentVolume controller: binds claims to volumes and keeps both phases true, and
//! the two protection controllers that release `kubernetes.io/pvc-protection` and
//! `kubernetes.io/pv-protection` once nothing uses a claim or volume.
//!
//! <https://kubernetes.io/docs/concepts/storage/persistent-volumes/>
//!
//! ```text
//!  PVC, PV, Pod, StorageClass ──watch──▶ caches ──any change / 5 s──▶ sync
//!  sync: per claim plan::plan_claim ─▶ bind (PV claimRef, PVC volumeName, both statuses),
//!        WaitForFirstConsumer / ExternalProvisioning / FailedBinding events, Lost
//!        per volume plan::plan_volume ─▶ Available / Bound / Released / Failed
//!        deleting claims and volumes ─▶ drop the protection finalizer when unused
//! ```
//! Dynamic provisioning is not done here: a claim whose class names a provisioner gets the
//! `volume.kubernetes.io/storage-provisioner` annotation, and the provisioner (kumo's
//! local-path one runs in each node agent) creates a volume pre-bound to it, which this
//! controller then binds. Delayed (`WaitForFirstConsumer`) claims are matched by the
//! scheduler, which names the node in `volume.kubernetes.io/selected-node`.
//! Expansion: a bound claim asking more than its volume has, in a class with
//! `allowVolumeExpansion`, gets the volume's capacity raised and the new size in
//! `status.capacity` (a directory has no size to grow, so that is where the flow ends).

pub mod events;
pub mod plan;

use crate::pod_index::SharedPods;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use kumo_api::storage;
use plan::{ClaimAction, VolumeAction};
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;
use tracing::{info, warn};

/// How often everything is looked at again without a change.
const RESYNC: Duration = Duration::from_secs(5);

/// The longest a burst of changes delays a sync.
const MAX_BURST: Duration = Duration::from_millis(500);

/// Who writes the events (upstream's component name).
pub const COMPONENT: &str = "persistentvolume-controller";

struct Caches {
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    pods: Store<Pod>,
    classes: Store<StorageClass>,
}

fn to_values<K: serde::Serialize>(items: Vec<std::sync::Arc<K>>) -> Vec<Value> {
    items.iter().filter_map(|i| serde_json::to_value(&**i).ok()).collect()
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Run the controller until `shutdown` completes.
pub async fn run(
    client: Client,
    shared: SharedPods,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (claims, w1) = reflector::store();
    let (volumes, w2) = reflector::store();
    let (classes, w4) = reflector::store();
    let cfg = watcher::Config::default;
    let c1 =
        reflector::reflector(w1, watcher(Api::<PersistentVolumeClaim>::all(client.clone()), cfg()))
            .default_backoff()
            .map(|_| ());
    let c2 = reflector::reflector(w2, watcher(Api::<PersistentVolume>::all(client.clone()), cfg()))
        .default_backoff()
        .map(|_| ());
    let (pods, c3) = (shared.store.clone(), shared.subscribe().map(|_| ()));
    let c4 = reflector::reflector(w4, watcher(Api::<StorageClass>::all(client.clone()), cfg()))
        .default_backoff()
        .map(|_| ());
    let mut changes = futures::stream::select_all([c1.boxed(), c2.boxed(), c3.boxed(), c4.boxed()]);
    let caches = Caches { claims, volumes, pods, classes };
    let recorder = events::Recorder::new(client.clone());
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            Some(()) = changes.next() => {
                // Take the rest of a burst before syncing once; but a steady stream of pod
                // changes (hundreds a second in a busy cluster) is one endless burst, so the
                // burst ends after MAX_BURST whatever comes.
                let end = tokio::time::Instant::now() + MAX_BURST;
                while tokio::time::Instant::now() < end {
                    match tokio::time::timeout(Duration::from_millis(20), changes.next()).await {
                        Ok(Some(())) => {}
                        _ => break,
                    }
                }
            }
            _ = tick.tick() => {}
        }
        sync(&client, &caches, &recorder).await;
    }
}

async fn sync(client: &Client, caches: &Caches, recorder: &events::Recorder) {
    let (claims, volumes) = (caches.claims.state(), caches.volumes.state());
    if claims.is_empty() && volumes.is_empty() {
        return; // Most changes are pods of clusters without storage: nothing to look at.
    }
    let (claims, volumes) = (to_values(claims), to_values(volumes));
    // Only pods with claims matter here; the rest are not worth converting.
    let pods: Vec<Value> = caches
        .pods
        .state()
        .iter()
        .filter(|p| {
            p.spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
        })
        .filter_map(|p| serde_json::to_value(&**p).ok())
        .collect();
    let classes = to_values(caches.classes.state());
    for claim in &claims {
        let class = classes.iter().find(|c| s(c, "/metadata/name") == storage::class_of(claim));
        let ns = s(claim, "/metadata/namespace");
        let name = s(claim, "/metadata/name");
        let users: Vec<&Value> = pods
            .iter()
            .filter(|p| s(p, "/metadata/namespace") == ns && plan::pod_uses_claim(p, name))
            .collect();
        let unscheduled: Vec<String> = users
            .iter()
            .filter(|p| s(p, "/spec/nodeName").is_empty())
            .map(|p| s(p, "/metadata/name").to_string())
            .collect();
        let action = plan::plan_claim(claim, &volumes, class, &unscheduled);
        if let Err(e) = apply_claim(client, recorder, claim, &volumes, class, action).await {
            warn!(claim = %format!("{ns}/{name}"), error = %e, "claim sync failed");
        }
        if is_deleting(claim)
            && has_finalizer(claim, storage::PVC_PROTECTION_FINALIZER)
            && users.is_empty()
        {
            if let Err(e) = release_claim(client, claim).await {
                warn!(claim = %format!("{ns}/{name}"), error = %e, "pvc-protection failed");
            }
        }
    }
    for pv in &volumes {
        let claim = claims.iter().find(|c| {
            s(c, "/metadata/namespace") == s(pv, "/spec/claimRef/namespace")
                && s(c, "/metadata/name") == s(pv, "/spec/claimRef/name")
        });
        if let Err(e) = apply_volume(client, pv, claim).await {
            warn!(volume = s(pv, "/metadata/name"), error = %e, "volume sync failed");
        }
        if is_deleting(pv)
            && has_finalizer(pv, storage::PV_PROTECTION_FINALIZER)
            && s(pv, "/status/phase") != "Bound"
        {
            let api: Api<PersistentVolume> = Api::all(client.clone());
            if let Err(e) = drop_finalizer(&api, pv, storage::PV_PROTECTION_FINALIZER).await {
                warn!(volume = s(pv, "/metadata/name"), error = %e, "pv-protection failed");
            }
        }
    }
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(f)))
}

/// Remove one finalizer, with the object's resourceVersion as a precondition.
async fn drop_finalizer<K>(api: &Api<K>, obj: &Value, f: &str) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let rest: Vec<&Value> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter(|x| x.as_str() != Some(f)).collect())
        .unwrap_or_default();
    let patch = json!({"metadata": {"finalizers": rest,
        "resourceVersion": obj.pointer("/metadata/resourceVersion")}});
    match api.patch(s(obj, "/metadata/name"), &PatchParams::default(), &Patch::Merge(&patch)).await
    {
        Ok(_) => Ok(()),
        // Gone, or changed meanwhile (the next sync looks again).
        Err(kube::Error::Api(st)) if st.code == 404 || st.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// pvc-protection: the pod cache may lag a new pod, so ask the API before letting go.
async fn release_claim(client: &Client, claim: &Value) -> Result<(), kube::Error> {
    let ns = s(claim, "/metadata/namespace");
    let name = s(claim, "/metadata/name");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let live = pods.list(&ListParams::default()).await?;
    let in_use = live
        .items
        .iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .any(|p| plan::pod_uses_claim(&p, name));
    if in_use {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    drop_finalizer(&api, claim, storage::PVC_PROTECTION_FINALIZER).await
}

async fn apply_claim(
    client: &Client,
    recorder: &events::Recorder,
    claim: &Value,
    volumes: &[Value],
    class: Option<&Value>,
    action: ClaimAction,
) -> Result<(), kube::Error> {
    let ns = s(claim, "/metadata/namespace");
    let name = s(claim, "/metadata/name");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let find = |v: &str| volumes.iter().find(|pv| s(pv, "/metadata/name") == v);
    match action {
        ClaimAction::None => Ok(()),
        ClaimAction::Bind { volume } => {
            let Some(pv) = find(&volume) else { return Ok(()) };
            bind(client, claim, pv).await
        }
        ClaimAction::Bound { volume } => {
            let Some(pv) = find(&volume) else { return Ok(()) };
            expand(client, claim, pv, class).await?;
            claim_status(&claims, claim, "Bound", Some(pv)).await
        }
        ClaimAction::WaitForFirstConsumer { pods } => {
            let (reason, message) = match pods.as_slice() {
                [] => (
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding".to_string(),
                ),
                names => (
                    "WaitForPodScheduled",
                    format!("waiting for pod {} to be scheduled", names.join(",")),
                ),
            };
            recorder.claim(claim, false, reason, &message);
            claim_status(&claims, claim, "Pending", None).await
        }
        ClaimAction::Provision { provisioner } => {
            let annotated = s(
                claim,
                &format!(
                    "/metadata/annotations/{}",
                    storage::STORAGE_PROVISIONER_ANNOTATION.replace('/', "~1")
                ),
            );
            if annotated != provisioner {
                let patch = json!({"metadata": {"annotations": {
                    storage::STORAGE_PROVISIONER_ANNOTATION: provisioner,
                    storage::BETA_STORAGE_PROVISIONER_ANNOTATION: provisioner}}});
                claims.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            let message = format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.");
            recorder.claim(claim, false, "ExternalProvisioning", &message);
            claim_status(&claims, claim, "Pending", None).await
        }
        ClaimAction::Pending { reason, message, warning } => {
            recorder.claim(claim, warning, reason, &message);
            claim_status(&claims, claim, "Pending", None).await
        }
        ClaimAction::Lost { message } => {
            if s(claim, "/status/phase") != "Lost" {
                recorder.claim(claim, true, "ClaimLost", &message);
            }
            claim_status(&claims, claim, "Lost", None).await
        }
    }
}

/// Bind: the volume's claimRef first (so no other claim takes it), then the claim's
/// volumeName, then both statuses — the order upstream's `bind` uses.
async fn bind(client: &Client, claim: &Value, pv: &Value) -> Result<(), kube::Error> {
    let ns = s(claim, "/metadata/namespace");
    let name = s(claim, "/metadata/name");
    let pv_name = s(pv, "/metadata/name");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let uid = s(claim, "/metadata/uid");
    if s(pv, "/spec/claimRef/uid") != uid {
        let by_us = pv.pointer("/spec/claimRef").is_none_or(|r| !r.is_object());
        let mut patch = json!({"metadata": {"resourceVersion": pv.pointer("/metadata/resourceVersion")},
            "spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": ns, "name": name, "uid": uid,
                "resourceVersion": claim.pointer("/metadata/resourceVersion")}}});
        if by_us {
            patch["metadata"]["annotations"] =
                json!({storage::BOUND_BY_CONTROLLER_ANNOTATION: "yes"});
        }
        volumes.patch(pv_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    volume_phase(&volumes, pv_name, "Bound", "").await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut annotations = json!({storage::BIND_COMPLETED_ANNOTATION: "yes"});
    if s(claim, "/spec/volumeName").is_empty() {
        annotations[storage::BOUND_BY_CONTROLLER_ANNOTATION] = json!("yes");
    }
    let patch = json!({"metadata": {"annotations": annotations,
        "resourceVersion": claim.pointer("/metadata/resourceVersion")},
        "spec": {"volumeName": pv_name}});
    let updated = claims.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let updated = serde_json::to_value(&updated).unwrap_or_default();
    claim_status(&claims, &updated, "Bound", Some(pv)).await?;
    info!(claim = %format!("{ns}/{name}"), volume = pv_name, "bound");
    Ok(())
}

async fn volume_phase(
    api: &Api<PersistentVolume>,
    name: &str,
    phase: &str,
    message: &str,
) -> Result<(), kube::Error> {
    let message = if message.is_empty() { Value::Null } else { json!(message) };
    let patch = json!({"status": {"phase": phase, "message": message}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

/// Keep a claim's status: phase, and, when bound, the volume's access modes and capacity.
async fn claim_status(
    api: &Api<PersistentVolumeClaim>,
    claim: &Value,
    phase: &str,
    pv: Option<&Value>,
) -> Result<(), kube::Error> {
    let mut status = json!({"phase": phase, "accessModes": null, "capacity": null});
    if let Some(pv) = pv {
        status["accessModes"] = pv.pointer("/spec/accessModes").cloned().unwrap_or(Value::Null);
        status["capacity"] = pv.pointer("/spec/capacity").cloned().unwrap_or(Value::Null);
    }
    let current = claim.get("status").cloned().unwrap_or(json!({}));
    let same = ["phase", "accessModes", "capacity"]
        .iter()
        .all(|k| current.get(*k).unwrap_or(&Value::Null) == &status[*k]);
    if same {
        return Ok(());
    }
    let patch = json!({"status": status});
    api.patch_status(s(claim, "/metadata/name"), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// A bound claim asking for more than its volume has: grow the volume when the class allows
/// expansion (admission refuses the request otherwise).
async fn expand(
    client: &Client,
    claim: &Value,
    pv: &Value,
    class: Option<&Value>,
) -> Result<(), kube::Error> {
    let requested = storage::requested_bytes(claim);
    let capacity = storage::bytes(pv.pointer("/spec/capacity/storage"));
    let allowed =
        class.and_then(|c| c.get("allowVolumeExpansion")).and_then(Value::as_bool) == Some(true);
    if !allowed || requested.zip(capacity).is_none_or(|(r, c)| r <= c) {
        return Ok(());
    }
    let size = claim.pointer("/spec/resources/requests/storage").cloned().unwrap_or(Value::Null);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let patch = json!({"spec": {"capacity": {"storage": size}}});
    volumes.patch(s(pv, "/metadata/name"), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    info!(volume = s(pv, "/metadata/name"), size = %size, "expanded");
    Ok(())
}

async fn apply_volume(
    client: &Client,
    pv: &Value,
    claim: Option<&Value>,
) -> Result<(), kube::Error> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let name = s(pv, "/metadata/name");
    match plan::plan_volume(pv, claim) {
        VolumeAction::None => Ok(()),
        VolumeAction::Phase { phase, message } => {
            if matches!(phase, "Released" | "Failed") && claim_exists(client, pv).await? {
                return Ok(()); // The claim cache lags the API: not released after all.
            }
            volume_phase(&api, name, phase, &message).await
        }
        VolumeAction::Unbind => {
            let patch = json!({"metadata": {"resourceVersion": pv.pointer("/metadata/resourceVersion")},
                "spec": {"claimRef": null}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            volume_phase(&api, name, "Available", "").await
        }
    }
}

async fn claim_exists(client: &Client, pv: &Value) -> Result<bool, kube::Error> {
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(client.clone(), s(pv, "/spec/claimRef/namespace"));
    let found = api.get_opt(s(pv, "/spec/claimRef/name")).await?;
    Ok(found.is_some_and(|c| c.metadata.uid.as_deref() == Some(s(pv, "/spec/claimRef/uid"))))
}
