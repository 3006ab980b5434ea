//! The ResourceQuota admission plugin: a create that a quota in its namespace limits is
//! checked against the quota and charged to its `status.used` before it is stored; one that
//! would exceed it is a 403 with upstream's message (`exceeded quota: q, requested: pods=1,
//! used: pods=2, limited: pods=2`), and a pod that does not state a limited compute resource is
//! refused (`failed quota: q: must specify requests.cpu for: app`).
//!
//! Race safety is upstream's: the charge is a compare-and-swap on the quota object's revision,
//! so two concurrent creates cannot both take the last unit; the loser re-reads and is checked
//! again. Usage goes down when objects go away through the quota controller
//! (`kumo-controllers`' `resourcequota`), which recomputes `status.used` from the objects.
//! Until a quota's status is first filled, the missing figures are computed here from the
//! store, so a quota works from the moment it exists.

use crate::error::{ApiError, ApiResult, Details};
use crate::object;
use crate::registry::Registry;
use kumo_api::quota::{self, Usage};
use kumo_api::resources::Resource;
use kumo_store::{RangeRequest, StoreError};
use serde_json::{json, Value};

const MAX_RETRIES: usize = 32;

fn forbidden(r: &Resource, obj: &Value, message: String) -> ApiError {
    let name = object::name(obj);
    ApiError::Forbidden(
        format!("{} \"{name}\" is forbidden: {message}", r.group_resource()),
        Some(Details::new(&r.group, &r.plural, name)),
    )
}

/// What a request was charged: given back if it is refused after all.
#[derive(Debug, Default)]
pub struct Charge {
    /// Store keys of the quotas charged.
    quotas: Vec<String>,
    /// What was charged to each.
    requested: Usage,
}

/// Check `obj` (about to be created) against every quota of its namespace and, unless
/// `dry_run`, charge it. A refusal by one quota after others were charged (a race lost on a
/// later quota, then a recheck that no longer fits) gives the earlier charges back.
pub async fn admit(reg: &Registry, r: &Resource, obj: &Value, dry_run: bool) -> ApiResult<Charge> {
    let mut charge = Charge::default();
    match charge_all(reg, r, obj, dry_run, &mut charge).await {
        Ok(()) => Ok(charge),
        Err(e) => {
            release(reg, &charge).await;
            Err(e)
        }
    }
}

/// Give a charge back (the request it was for was not stored).
pub async fn release(reg: &Registry, charge: &Charge) {
    for key in &charge.quotas {
        for _ in 0..MAX_RETRIES {
            let Ok(Some(kv)) = reg.store.get(key).await else { break };
            let Some(mut q) = object::from_kv(&kv) else { break };
            let hard = quota::hard(&q);
            let mut used = quota::used(&q);
            for (k, v) in &charge.requested {
                if let Some(u) = used.get_mut(k) {
                    *u = (*u - v).max(0);
                }
            }
            q["status"]["used"] = Value::Object(quota::to_list(&hard, &used));
            match reg.store.update(key, object::to_bytes(&q), Some(kv.mod_revision)).await {
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    tracing::warn!(quota = %key, error = %e, "charge not given back; the quota controller will correct it");
                    break;
                }
                Ok(_) => break,
            }
        }
    }
}

async fn charge_all(
    reg: &Registry,
    r: &Resource,
    obj: &Value,
    dry_run: bool,
    charged: &mut Charge,
) -> ApiResult<()> {
    if !r.namespaced {
        return Ok(());
    }
    let Some(rq) = reg.catalog.snapshot().find("", "v1", "resourcequotas").cloned() else {
        return Ok(());
    };
    let ns = object::namespace(obj).unwrap_or("default").to_string();
    let requested = quota::usage(&r.group, &r.plural, obj);
    charged.requested = requested.clone();
    let is_pod = r.group.is_empty() && r.plural == "pods";
    for _ in 0..MAX_RETRIES {
        let page = reg
            .store
            .range(RangeRequest {
                prefix: format!("{}{ns}/", rq.key_prefix()),
                ..Default::default()
            })
            .await?;
        if page.kvs.is_empty() {
            return Ok(());
        }
        // Check every quota first, then charge: a refusal by any charges none.
        let mut charges = Vec::new();
        for kv in &page.kvs {
            // Charged already in an earlier round that lost a race on another quota.
            if charged.quotas.contains(&kv.key) {
                continue;
            }
            let Some(q) = object::from_kv(kv) else { continue };
            if !quota::applies(&q, &r.group, &r.plural, obj) {
                continue;
            }
            let hard = quota::hard(&q);
            let name = object::name(&q).to_string();
            if is_pod && !requested.is_empty() {
                quota::constraints(&hard, obj)
                    .map_err(|e| forbidden(r, obj, format!("failed quota: {name}: {e}")))?;
            }
            if !quota::relevant(&hard, &requested) {
                continue;
            }
            let mut used = quota::used(&q);
            if hard.keys().any(|k| !used.contains_key(k)) {
                let computed = compute_used(reg, &ns, &q).await?;
                for (k, v) in computed {
                    used.entry(k).or_insert(v);
                }
            }
            let after =
                quota::check(&name, &hard, &used, &requested).map_err(|e| forbidden(r, obj, e))?;
            charges.push((kv.key.clone(), kv.mod_revision, q, hard, after));
        }
        if dry_run || charges.is_empty() {
            return Ok(());
        }
        let mut lost_race = false;
        for (key, revision, mut q, hard, after) in charges {
            q["status"] =
                json!({"hard": q["spec"]["hard"].clone(), "used": quota::to_list(&hard, &after)});
            match reg.store.update(&key, object::to_bytes(&q), Some(revision)).await {
                Ok(_) => charged.quotas.push(key),
                Err(StoreError::Conflict { .. }) => {
                    lost_race = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !lost_race {
            return Ok(());
        }
    }
    Err(ApiError::Conflict(
        format!("too many concurrent changes to the resource quotas of namespace {ns}; try again"),
        None,
    ))
}

/// Usage of everything `quota` limits in namespace `ns`, from the objects in the store.
pub async fn compute_used(reg: &Registry, ns: &str, q: &Value) -> ApiResult<Usage> {
    let hard = quota::hard(q);
    let snap = reg.catalog.snapshot();
    let mut used: Usage = hard.keys().map(|k| (k.clone(), 0)).collect();
    // Each resource kind the quota may count, listed once.
    let mut seen = std::collections::BTreeSet::new();
    for name in hard.keys() {
        let (group, plural) = quota::kind_of(name);
        if !seen.insert((group.clone(), plural.clone())) {
            continue;
        }
        let Some(res) = snap.resources.iter().find(|r| r.group == group && r.plural == plural)
        else {
            continue;
        };
        let page = reg
            .store
            .range(RangeRequest {
                prefix: format!("{}{ns}/", res.key_prefix()),
                ..Default::default()
            })
            .await?;
        for kv in &page.kvs {
            let Some(obj) = object::from_kv(kv) else { continue };
            if !quota::applies(q, &group, &plural, &obj) {
                continue;
            }
            for (k, v) in quota::usage(&group, &plural, &obj) {
                if let Some(u) = used.get_mut(&k) {
                    *u += v;
                }
            }
        }
    }
    Ok(used)
}
