//! Deletion's follow-up work, run in the background after the write that triggers it:
//! garbage collection by `ownerReferences` (background, foreground and orphan propagation),
//! namespace termination (delete the contents, then the namespace), and removal of a custom
//! resource's objects when its CRD goes.
//!
//! These loops work through the [`Registry`], never around it, so every step is an ordinary
//! API write that watchers see. They are level-triggered from the object that changed; a
//! controller-manager with informers (see issue 4) can replace them without changing behaviour.

use crate::error::ApiError;
use crate::object;
use crate::registry::{DeleteOptions, Registry};
use kumo_api::resources::Resource;
use kumo_store::RangeRequest;
use serde_json::{json, Value};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(250);
/// How long a foreground deletion or namespace waits for its contents before trying again later.
const PATIENCE: usize = 4 * 60 * 10;

/// How long a lookup waits for the owner index to catch up before scanning the store instead.
const INDEX_PATIENCE: Duration = Duration::from_secs(5);

/// Scans of the store for dependents (see [`dependents`]) run one at a time.
static SCANS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Objects whose `ownerReferences` name `uid`, with their resource.
async fn dependents(reg: &Registry, owner: &Value) -> Vec<(Resource, Value)> {
    let Some(uid) = owner["metadata"]["uid"].as_str().filter(|u| !u.is_empty()) else {
        return vec![];
    };
    let ns = object::namespace(owner).map(str::to_string);
    let snap = reg.catalog.snapshot();
    let keys = match reg.owners.dependents(&reg.store, uid, INDEX_PATIENCE).await {
        Some(keys) => keys,
        None => {
            // One scan at a time: when the index lags under load, every deletion would
            // otherwise read the whole namespace at once (at 100,000 pods kumo's threads grew
            // to 193 and its memory to 22 GB before the kernel killed it). Waiting for the permit gives the index
            // time to catch up, so most waiters need no scan; they ask it again without
            // waiting more, not to hold the permit while they wait.
            let _one = SCANS.acquire().await;
            match reg.owners.dependents(&reg.store, uid, Duration::ZERO).await {
                Some(keys) => keys,
                None => return scan(reg, &snap, uid, ns.as_deref()).await,
            }
        }
    };
    let mut out = Vec::new();
    for key in keys {
        let Some(r) = snap.resources.iter().find(|r| key.starts_with(&r.key_prefix())) else {
            continue;
        };
        // A cluster-scoped owner may own objects anywhere; a namespaced one only in its namespace.
        let in_scope = match &ns {
            None => true,
            Some(ns) => r.namespaced && key[r.key_prefix().len()..].starts_with(&format!("{ns}/")),
        };
        if !in_scope {
            continue;
        }
        let Ok(Some(kv)) = reg.store.get(&key).await else { continue };
        let Ok(obj) = crate::registry::decode(r, &kv) else { continue };
        if names_owner(&obj, uid) {
            out.push((r.clone(), obj));
        }
    }
    out
}

fn names_owner(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|o| o["uid"].as_str() == Some(uid)))
}

/// [`dependents`] the slow way: read every object the owner could own.
async fn scan(
    reg: &Registry,
    snap: &crate::catalog::Snapshot,
    uid: &str,
    ns: Option<&str>,
) -> Vec<(Resource, Value)> {
    let mut out = Vec::new();
    let mut seen_prefixes = std::collections::HashSet::new();
    for r in &snap.resources {
        let prefix = match (ns, r.namespaced) {
            (Some(ns), true) => format!("{}{ns}/", r.key_prefix()),
            (Some(_), false) => continue,
            (None, _) => r.key_prefix(),
        };
        if !seen_prefixes.insert(prefix.clone()) {
            continue;
        }
        let Ok(page) = reg.store.range(RangeRequest { prefix, ..Default::default() }).await else {
            continue;
        };
        for kv in &page.kvs {
            // Cheap pre-check before parsing.
            if memchr::memmem::find(&kv.value, uid.as_bytes()).is_none() {
                continue;
            }
            let Ok(obj) = crate::registry::decode(r, kv) else { continue };
            if names_owner(&obj, uid) {
                out.push((r.clone(), obj));
            }
        }
    }
    out
}

/// Read-modify-write of one object through the registry, retried on conflicts.
async fn modify(
    reg: &Registry,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
    f: impl Fn(&mut Value) -> bool,
) {
    for _ in 0..16 {
        let Ok(mut obj) = reg.get(r, ns, name).await else { return };
        if !f(&mut obj) {
            return;
        }
        match reg.update(r, ns, name, obj, None, &Default::default()).await {
            Err(ApiError::Conflict(..)) => continue,
            Err(e) => {
                tracing::debug!(object = name, error = %e, "garbage collector update failed");
                return;
            }
            Ok(_) => return,
        }
    }
}

fn drop_owner(obj: &mut Value, uid: &str) -> bool {
    let Some(refs) = obj["metadata"]["ownerReferences"].as_array_mut() else { return false };
    let before = refs.len();
    refs.retain(|o| o["uid"].as_str() != Some(uid));
    let changed = refs.len() != before;
    if refs.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("ownerReferences");
        }
    }
    changed
}

fn drop_finalizer(obj: &mut Value, name: &str) -> bool {
    let Some(fins) = obj["metadata"]["finalizers"].as_array_mut() else { return false };
    let before = fins.len();
    fins.retain(|f| f.as_str() != Some(name));
    fins.len() != before
}

/// Delete or release the dependents of an owner that is gone.
async fn collect(reg: &Registry, owner: &Value, propagation: &str) {
    let Some(uid) = owner["metadata"]["uid"].as_str() else { return };
    for (r, dep) in dependents(reg, owner).await {
        let name = object::name(&dep).to_string();
        let ns = object::namespace(&dep).map(str::to_string);
        let other_owners = dep["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|o| o["uid"].as_str() != Some(uid)));
        if other_owners {
            modify(reg, &r, ns.as_deref(), &name, |o| drop_owner(o, uid)).await;
            continue;
        }
        let opts = DeleteOptions { propagation: Some(propagation.into()), ..Default::default() };
        match reg.delete(&r, ns.as_deref(), &name, &opts).await {
            Ok(_) | Err(ApiError::NotFound(..)) => {}
            Err(e) => tracing::debug!(object = name, error = %e, "garbage collector delete failed"),
        }
    }
}

/// An object was removed from the store: collect its dependents (background propagation).
pub fn spawn_for_deleted(reg: Registry, obj: Value) {
    tokio::spawn(async move {
        if obj["kind"] == "CustomResourceDefinition" {
            delete_custom_objects(&reg, &obj).await;
        }
        collect(&reg, &obj, "Background").await;
    });
}

/// An object is marked for deletion: carry out `orphan` and `foregroundDeletion` finalizers.
pub fn spawn_for_deleting(reg: Registry, r: Resource, obj: Value) {
    let fins = object::finalizers(&obj);
    let orphan = fins.iter().any(|f| f == "orphan");
    let foreground = fins.iter().any(|f| f == "foregroundDeletion");
    if !orphan && !foreground {
        return;
    }
    tokio::spawn(async move {
        let Some(uid) = obj["metadata"]["uid"].as_str().map(str::to_string) else { return };
        let name = object::name(&obj).to_string();
        let ns = object::namespace(&obj).map(str::to_string);
        if orphan {
            for (dr, dep) in dependents(&reg, &obj).await {
                let dn = object::name(&dep).to_string();
                let dns = object::namespace(&dep).map(str::to_string);
                modify(&reg, &dr, dns.as_deref(), &dn, |o| drop_owner(o, &uid)).await;
            }
            modify(&reg, &r, ns.as_deref(), &name, |o| drop_finalizer(o, "orphan")).await;
            return;
        }
        collect(&reg, &obj, "Foreground").await;
        for _ in 0..PATIENCE {
            if dependents(&reg, &obj).await.is_empty() {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        modify(&reg, &r, ns.as_deref(), &name, |o| drop_finalizer(o, "foregroundDeletion")).await;
    });
}

/// A namespace is terminating: delete everything in it, then the namespace itself.
pub fn spawn_namespace_cleanup(reg: Registry, ns: String) {
    tokio::spawn(async move {
        for round in 0..PATIENCE {
            let mut left = 0usize;
            let snap = reg.catalog.snapshot();
            let mut seen = std::collections::HashSet::new();
            for r in snap.resources.iter().filter(|r| r.namespaced) {
                if !seen.insert(r.key_prefix()) {
                    continue;
                }
                let prefix = format!("{}{ns}/", r.key_prefix());
                let Ok(page) = reg.store.range(RangeRequest { prefix, ..Default::default() }).await
                else {
                    continue;
                };
                for kv in &page.kvs {
                    left += 1;
                    let Ok(obj) = crate::registry::decode(r, kv) else { continue };
                    if object::is_deleting(&obj) && round > 0 {
                        continue;
                    }
                    let opts = DeleteOptions {
                        propagation: Some("Background".into()),
                        ..Default::default()
                    };
                    let _ = reg.delete(r, Some(&ns), object::name(&obj), &opts).await;
                }
            }
            if left == 0 {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let Some(nsr) = reg.catalog.snapshot().find("", "v1", "namespaces").cloned() else {
            return;
        };
        modify(&reg, &nsr, None, &ns, |o| {
            let had = o["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
            o["spec"]["finalizers"] = json!([]);
            had || object::finalizers(o).is_empty()
        })
        .await;
        // With no finalizers left the namespace can go.
        if let Ok(obj) = reg.get(&nsr, None, &ns).await {
            if object::finalizers(&obj).is_empty() {
                let key = nsr.key(None, &ns);
                if let Ok(Some(kv)) = reg.store.get(&key).await {
                    if reg.store.delete(&key, Some(kv.mod_revision)).await.is_ok() {
                        tracing::info!(namespace = ns, "namespace deleted");
                    }
                }
            }
        }
    });
}

async fn delete_custom_objects(reg: &Registry, crd: &Value) {
    let (Some(group), Some(plural)) =
        (crd["spec"]["group"].as_str(), crd["spec"]["names"]["plural"].as_str())
    else {
        return;
    };
    let prefix = format!("/registry/{group}/{plural}/");
    let Ok(page) = reg.store.range(RangeRequest { prefix, ..Default::default() }).await else {
        return;
    };
    for kv in page.kvs {
        let _ = reg.store.delete(&kv.key, None).await;
    }
}
