//! The storage admission plugins upstream enables by default:
//! - `DefaultStorageClass`: a claim created without `storageClassName` gets the default class
//!   (the newest one when several are marked default);
//! - `StorageObjectInUseProtection`: new claims get the `kubernetes.io/pvc-protection`
//!   finalizer and new volumes `kubernetes.io/pv-protection`, which the protection controllers
//!   remove once nothing uses them;
//! - `PersistentVolumeClaimResize`: a claim may grow only when bound and when its class allows
//!   expansion (403 Forbidden otherwise, upstream's words).
//!
//! <https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/>

use crate::error::{ApiError, ApiResult, Details};
use crate::object;
use crate::registry::Registry;
use kumo_api::resources::Resource;
use kumo_api::storage;
use kumo_store::RangeRequest;
use serde_json::{json, Value};

fn is(r: &Resource, plural: &str) -> bool {
    r.group.is_empty() && r.plural == plural
}

/// Before a claim or volume is validated and stored.
pub async fn before_create(reg: &Registry, r: &Resource, obj: &mut Value) -> ApiResult<()> {
    if is(r, "persistentvolumeclaims") {
        default_class(reg, obj).await?;
        add_finalizer(obj, storage::PVC_PROTECTION_FINALIZER);
    } else if is(r, "persistentvolumes") {
        add_finalizer(obj, storage::PV_PROTECTION_FINALIZER);
    }
    Ok(())
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = object::meta_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(items) = list.as_array_mut() {
        if !items.iter().any(|f| f.as_str() == Some(finalizer)) {
            items.push(json!(finalizer));
        }
    }
}

async fn classes(reg: &Registry) -> ApiResult<Vec<Value>> {
    let Some(sc) = reg.catalog.snapshot().find("storage.k8s.io", "v1", "storageclasses").cloned()
    else {
        return Ok(vec![]);
    };
    let page =
        reg.store.range(RangeRequest { prefix: sc.key_prefix(), ..Default::default() }).await?;
    Ok(page.kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
}

/// `DefaultStorageClass`: only a claim that says nothing about its class gets the default
/// (`storageClassName: ""` asks for no class and stays so).
async fn default_class(reg: &Registry, claim: &mut Value) -> ApiResult<()> {
    let unset = claim.pointer("/spec/storageClassName").is_none_or(Value::is_null)
        && claim
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(storage::BETA_CLASS_ANNOTATION))
            .is_none();
    if !unset || !claim["spec"].is_object() {
        return Ok(());
    }
    let mut defaults: Vec<Value> =
        classes(reg).await?.into_iter().filter(storage::is_default_class).collect();
    // Upstream picks the newest default, the name breaking ties.
    defaults.sort_by(|a, b| {
        let key = |c: &Value| {
            (
                c["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string(),
                c["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        };
        key(b).cmp(&key(a))
    });
    if let Some(class) = defaults.first() {
        claim["spec"]["storageClassName"] = class["metadata"]["name"].clone();
    }
    Ok(())
}

/// `PersistentVolumeClaimResize`, on updates of the main resource.
pub async fn validate(
    reg: &Registry,
    r: &Resource,
    obj: &Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    let Some(old) = old.filter(|_| is(r, "persistentvolumeclaims")) else { return Ok(()) };
    let size = |v: &Value| storage::requested_bytes(v).unwrap_or(0);
    if size(obj) <= size(old) {
        return Ok(());
    }
    let name = object::name(obj);
    let forbidden = |why: &str| {
        ApiError::Forbidden(
            format!("persistentvolumeclaims \"{name}\" is forbidden: {why}"),
            Some(Details::new("", "persistentvolumeclaims", name)),
        )
    };
    if old["status"]["phase"].as_str() != Some("Bound") {
        return Err(forbidden("Only bound persistent volume claims can be expanded"));
    }
    let class = storage::class_of(obj);
    let allowed = !class.is_empty()
        && class == storage::class_of(old)
        && classes(reg).await?.iter().any(|c| {
            c["metadata"]["name"].as_str() == Some(class)
                && c["allowVolumeExpansion"].as_bool() == Some(true)
        });
    if !allowed {
        return Err(forbidden(
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        ));
    }
    Ok(())
}
