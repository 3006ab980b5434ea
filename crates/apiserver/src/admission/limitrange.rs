//! The LimitRanger admission plugin: on create, pods get the defaults of their namespace's
//! LimitRanges, then pods and PersistentVolumeClaims are checked against them; a violation is a
//! 403 with upstream's message (`pods "x" is forbidden: maximum cpu usage per Container is 1,
//! but limit is 2`). The rules themselves are [`kumo_api::limitrange`].

use crate::error::{ApiError, ApiResult, Details};
use crate::object;
use crate::registry::Registry;
use kumo_api::limitrange;
use kumo_api::resources::Resource;
use kumo_store::RangeRequest;
use serde_json::Value;

fn is_pod(r: &Resource) -> bool {
    r.group.is_empty() && r.plural == "pods"
}

fn is_pvc(r: &Resource) -> bool {
    r.group.is_empty() && r.plural == "persistentvolumeclaims"
}

/// The LimitRanges of namespace `ns`.
async fn ranges(reg: &Registry, ns: &str) -> ApiResult<Vec<Value>> {
    let Some(lr) = reg.catalog.snapshot().find("", "v1", "limitranges").cloned() else {
        return Ok(vec![]);
    };
    let page = reg
        .store
        .range(RangeRequest { prefix: format!("{}{ns}/", lr.key_prefix()), ..Default::default() })
        .await?;
    Ok(page.kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
}

/// Mutating half: defaults for the containers of a new pod.
pub async fn default(reg: &Registry, r: &Resource, obj: &mut Value) -> ApiResult<()> {
    if !is_pod(r) {
        return Ok(());
    }
    let ns = object::namespace(obj).unwrap_or("default").to_string();
    let ranges = ranges(reg, &ns).await?;
    limitrange::default_pod(obj, &ranges);
    Ok(())
}

/// Validating half: min, max and ratio for a new pod or claim.
pub async fn validate(reg: &Registry, r: &Resource, obj: &Value) -> ApiResult<()> {
    if !is_pod(r) && !is_pvc(r) {
        return Ok(());
    }
    let ns = object::namespace(obj).unwrap_or("default").to_string();
    let ranges = ranges(reg, &ns).await?;
    if ranges.is_empty() {
        return Ok(());
    }
    let errors = if is_pod(r) {
        limitrange::validate_pod(obj, &ranges)
    } else {
        limitrange::validate_pvc(obj, &ranges)
    };
    if errors.is_empty() {
        return Ok(());
    }
    let name = object::name(obj);
    Err(ApiError::Forbidden(
        format!(
            "{} \"{name}\" is forbidden: {}",
            r.group_resource(),
            limitrange::aggregate(&errors)
        ),
        Some(Details::new(&r.group, &r.plural, name)),
    ))
}
