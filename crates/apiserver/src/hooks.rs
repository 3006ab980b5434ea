//! The few places where a kind needs more than the generic registry: Services get cluster IPs
//! and node ports, Pods start Pending with a QoS class, CustomResourceDefinitions change what the
//! server serves, Namespaces get their default ServiceAccount and terminate, and deletions
//! follow Kubernetes' rules for grace periods and finalizers.

use crate::error::{ApiError, ApiResult, Details};
use crate::gc;
use crate::object;
use crate::registry::{DeleteOptions, Registry};
use kumo_api::resources::Resource;
use kumo_store::RangeRequest;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// The range Service cluster IPs come from: loopback, so every node can serve every VIP.
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 64, 0, 0), 10);
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn is(r: &Resource, group: &str, plural: &str) -> bool {
    r.group == group && r.plural == plural
}

/// Kind-specific work before a create is validated and stored.
pub async fn before_create(reg: &Registry, r: &Resource, obj: &mut Value) -> ApiResult<()> {
    if is(r, "", "services") {
        allocate_service(reg, obj, None).await?;
    } else if is(r, "", "pods") {
        resolve_priority(reg, obj).await?;
        let qos = qos_class(&obj["spec"]);
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    } else if is(r, "apiextensions.k8s.io", "customresourcedefinitions") {
        accept_crd(obj);
    } else if is(r, "batch", "jobs") {
        job_selector(obj);
    }
    crate::storage_admission::before_create(reg, r, obj).await
}

/// The Priority admission plugin: `priorityClassName` (or the global default class) sets
/// `spec.priority` and `spec.preemptionPolicy`; naming a class that does not exist is refused.
async fn resolve_priority(reg: &Registry, pod: &mut Value) -> ApiResult<()> {
    let Some(pcr) =
        reg.catalog.snapshot().find("scheduling.k8s.io", "v1", "priorityclasses").cloned()
    else {
        return Ok(());
    };
    let wanted =
        pod["spec"]["priorityClassName"].as_str().filter(|n| !n.is_empty()).map(str::to_string);
    let class = match &wanted {
        Some(name) => match reg.store.get(&pcr.key(None, name)).await? {
            Some(kv) => serde_json::from_slice::<Value>(&kv.value).ok(),
            None => {
                return Err(ApiError::Forbidden(
                    format!(
                        "pods \"{}\" is forbidden: no PriorityClass with name {name} was found",
                        object::name(pod)
                    ),
                    Some(Details::new("", "pods", object::name(pod))),
                ))
            }
        },
        None => {
            let page = reg
                .store
                .range(RangeRequest { prefix: pcr.key_prefix(), ..Default::default() })
                .await?;
            page.kvs
                .iter()
                .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
                .find(|c| c["globalDefault"].as_bool() == Some(true))
        }
    };
    if let Some(class) = class {
        pod["spec"]["priorityClassName"] = class["metadata"]["name"].clone();
        pod["spec"]["priority"] = class["value"].clone();
        pod["spec"]["preemptionPolicy"] = class
            .get("preemptionPolicy")
            .cloned()
            .filter(|v| v.is_string())
            .unwrap_or(json!("PreemptLowerPriority"));
    }
    Ok(())
}

/// Before an update is validated: fields the client may omit and the server keeps.
pub fn before_update(r: &Resource, obj: &mut Value, old: &Value) {
    if is(r, "", "services") {
        // An update that leaves clusterIP empty keeps the allocated one, as upstream.
        if obj["spec"]["clusterIP"].as_str().is_none_or(str::is_empty)
            && old["spec"]["clusterIP"].is_string()
        {
            obj["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
            obj["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
        let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
        if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
            for p in ports.iter_mut().filter(|p| p["nodePort"].is_null()) {
                if let Some(o) =
                    old_ports.iter().find(|o| o["port"] == p["port"] && o["nodePort"].is_u64())
                {
                    p["nodePort"] = o["nodePort"].clone();
                }
            }
        }
    }
}

/// Jobs get a selector on their own uid unless the user manages it (`manualSelector`).
fn job_selector(obj: &mut Value) {
    if obj["spec"]["manualSelector"].as_bool() == Some(true) {
        return;
    }
    let uid = obj["metadata"]["uid"].clone();
    let name = obj["metadata"]["name"].clone();
    obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let labels = &mut obj["spec"]["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels[k] = v.clone();
    }
}

/// Kind-specific checks that need the store, and the rules of the built-in custom resources
/// that their schemas cannot express.
pub async fn validate(
    reg: &Registry,
    r: &Resource,
    obj: &Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    if let Some(schema) = &r.crd_schema {
        let mut errors = crate::builtin_crds::rules::validate(r, obj);
        // The CRD's own `x-kubernetes-validations` rules, in CEL.
        errors.extend(kumo_api::cel::rules::validate(schema, obj, old));
        if !errors.is_empty() {
            return Err(ApiError::invalid(&r.group, &r.kind, object::name(obj), errors));
        }
    }
    if is(r, "apiextensions.k8s.io", "customresourcedefinitions") {
        if let Some(old) = old.filter(|o| o["spec"]["group"] != obj["spec"]["group"]) {
            return Err(ApiError::invalid(
                &r.group,
                &r.kind,
                object::name(obj),
                vec![kumo_api::validation::FieldError {
                    type_: kumo_api::validation::ErrorType::Invalid,
                    field: "spec.group".into(),
                    value: old["spec"]["group"].as_str().map(str::to_string),
                    detail: "field is immutable".into(),
                }],
            ));
        }
    }
    crate::storage_admission::validate(reg, r, obj, old).await
}

/// After a successful create or update.
pub async fn after_write(reg: &Registry, r: &Resource, obj: &Value) {
    if is(r, "apiextensions.k8s.io", "customresourcedefinitions") {
        refresh_crds(reg).await;
        // Done by background reconcilers: they write through the registry, which calls back
        // into this hook.
        crate::bootstrap::request_api_service_sync(reg);
    } else if is(r, "rbac.authorization.k8s.io", "clusterroles") {
        crate::bootstrap::request_aggregation(reg);
    } else if is(r, "", "namespaces") {
        if object::is_deleting(obj) {
            gc::spawn_namespace_cleanup(reg.clone(), object::name(obj).to_string());
        } else {
            ensure_default_service_account(reg, object::name(obj)).await;
        }
    } else if object::is_deleting(obj) {
        gc::spawn_for_deleting(reg.clone(), r.clone(), obj.clone());
    }
}

/// After an object is gone from the store.
pub async fn after_delete(reg: &Registry, r: &Resource, obj: &Value) {
    if is(r, "apiextensions.k8s.io", "customresourcedefinitions") {
        refresh_crds(reg).await;
        crate::bootstrap::request_api_service_sync(reg);
    } else if is(r, "rbac.authorization.k8s.io", "clusterroles") {
        crate::bootstrap::request_aggregation(reg);
    }
    gc::spawn_for_deleted(reg.clone(), obj.clone());
}

/// How a delete proceeds.
#[derive(Debug, Clone)]
pub struct DeletionPlan {
    /// Remove from the store now.
    pub immediate: bool,
    /// Finalizers the delete adds (`orphan`, `foregroundDeletion`).
    pub add_finalizers: Vec<String>,
    /// Replace an earlier orphan/foreground choice with this one.
    pub remove_orphan_foreground: bool,
    /// `deletionGracePeriodSeconds`.
    pub grace_seconds: i64,
    /// `deletionTimestamp`.
    pub deletion_timestamp: String,
}

/// Decide how to delete: graceful for running pods, via finalizers for orphan/foreground
/// propagation and objects that already carry finalizers, immediate otherwise.
pub fn deletion_plan(r: &Resource, obj: &Value, opts: &DeleteOptions) -> DeletionPlan {
    let mut add = Vec::new();
    match opts.propagation.as_deref() {
        Some("Orphan") => add.push("orphan".to_string()),
        Some("Foreground") => add.push("foregroundDeletion".to_string()),
        _ => {}
    }
    let now = chrono::Utc::now();
    let mut grace = 0;
    let mut graceful = false;
    if is(r, "", "pods") {
        let bound = obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        let terminal = matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        grace = opts
            .grace_period
            .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30)
            .max(0);
        graceful = bound && !terminal && grace > 0;
        if !graceful {
            grace = 0;
        }
    }
    let has_finalizers = !object::finalizers(obj).is_empty();
    let namespace = is(r, "", "namespaces");
    let immediate = !graceful && add.is_empty() && !has_finalizers && !namespace;
    DeletionPlan {
        immediate,
        remove_orphan_foreground: !add.is_empty(),
        add_finalizers: add,
        grace_seconds: grace,
        deletion_timestamp: (now + chrono::Duration::seconds(grace))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    }
}

/// Whether something other than `metadata.finalizers` still holds a deleting object (a
/// namespace's `spec.finalizers`, which the namespace cleanup clears when it is empty).
pub fn holds_deletion(r: &Resource, obj: &Value) -> bool {
    is(r, "", "namespaces") && obj["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
}

/// Changes to an object as it is marked for deletion.
pub fn on_mark_deleted(r: &Resource, obj: &mut Value) {
    if is(r, "", "namespaces") {
        obj["status"]["phase"] = json!("Terminating");
    }
}

async fn refresh_crds(reg: &Registry) {
    let Some(crd_res) =
        reg.catalog.snapshot().by_kind("apiextensions.k8s.io", "CustomResourceDefinition").cloned()
    else {
        return;
    };
    match reg.store.range(RangeRequest { prefix: crd_res.key_prefix(), ..Default::default() }).await
    {
        Ok(page) => {
            let crds: Vec<Value> =
                page.kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect();
            reg.catalog.set_crds(&crds);
        }
        Err(e) => tracing::warn!(error = %e, "could not reload custom resource definitions"),
    }
}

/// Load the CRDs into the catalog at start-up.
pub async fn load_crds(reg: &Registry) {
    refresh_crds(reg).await;
}

fn accept_crd(obj: &mut Value) {
    let now = object::now_rfc3339();
    let names = obj["spec"]["names"].clone();
    let stored: Vec<Value> = obj["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .filter_map(|v| v["name"].as_str().map(|s| json!(s)))
        .collect();
    let mut accepted = names.clone();
    if accepted["singular"].is_null() {
        if let Some(k) = names["kind"].as_str() {
            accepted["singular"] = json!(k.to_lowercase());
        }
    }
    if accepted["listKind"].is_null() {
        if let Some(k) = names["kind"].as_str() {
            accepted["listKind"] = json!(format!("{k}List"));
        }
    }
    obj["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "storedVersions": stored,
    });
}

async fn ensure_default_service_account(reg: &Registry, ns: &str) {
    let Some(sa) = reg.catalog.snapshot().find("", "v1", "serviceaccounts").cloned() else {
        return;
    };
    let key = sa.key(Some(ns), "default");
    if let Ok(Some(_)) = reg.store.get(&key).await {
        return;
    }
    // Written straight to the store: a server-made object that needs no admission, and going
    // through `create` would recurse into these hooks.
    let mut obj = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
    crate::admission::prepare_create(&sa, &mut obj);
    kumo_api::defaults::apply(&sa, &mut obj);
    if let Err(e) = reg.store.create(&key, object::to_bytes(&obj)).await {
        tracing::debug!(namespace = ns, error = %e, "default service account not created");
    }
}

/// Pod QoS class from its containers' requests and limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for res in ["cpu", "memory"] {
            let (r, l) = (req.get(res), lim.get(res));
            if r.is_some() || l.is_some() {
                any = true;
            }
            match (r, l) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        _ => "Burstable",
    }
}

async fn allocate_service(reg: &Registry, obj: &mut Value, _old: Option<&Value>) -> ApiResult<()> {
    let svc_type = obj["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
    let snap = reg.catalog.snapshot();
    let Some(services) = snap.find("", "v1", "services") else { return Ok(()) };
    let page = reg
        .store
        .range(RangeRequest { prefix: services.key_prefix(), ..Default::default() })
        .await?;
    let mut used_ips = HashSet::new();
    let mut used_ports = HashSet::new();
    for kv in &page.kvs {
        let s: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        if let Some(ip) = s["spec"]["clusterIP"].as_str() {
            used_ips.insert(ip.to_string());
        }
        for p in s["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(np) = p["nodePort"].as_u64() {
                used_ports.insert(np);
            }
        }
    }
    if svc_type != "ExternalName" {
        match obj["spec"]["clusterIP"].as_str() {
            Some("None") => {
                obj["spec"]["clusterIPs"] = json!(["None"]);
            }
            Some(ip) if !ip.is_empty() => {
                if used_ips.contains(ip) {
                    return Err(ApiError::invalid(
                        "",
                        "Service",
                        object::name(obj),
                        vec![kumo_api::validation::FieldError {
                            type_: kumo_api::validation::ErrorType::Invalid,
                            field: "spec.clusterIPs".into(),
                            value: Some(ip.into()),
                            detail: "failed to allocate IP: provided IP is already allocated"
                                .into(),
                        }],
                    ));
                }
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
            _ => {
                let ip = next_ip(&used_ips).ok_or_else(|| {
                    ApiError::Internal("failed to allocate a serviceIP: range is full".into())
                })?;
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
        }
    }
    if matches!(svc_type.as_str(), "NodePort" | "LoadBalancer") {
        let mut next = *NODE_PORTS.start() as u64;
        if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
            for p in ports {
                if p["nodePort"].as_u64().is_some() {
                    continue;
                }
                while used_ports.contains(&next) && next <= *NODE_PORTS.end() as u64 {
                    next += 1;
                }
                if next > *NODE_PORTS.end() as u64 {
                    return Err(ApiError::Forbidden(
                        "no node ports are left".into(),
                        Some(Details::default()),
                    ));
                }
                p["nodePort"] = json!(next);
                used_ports.insert(next);
            }
        }
    }
    Ok(())
}

fn next_ip(used: &HashSet<String>) -> Option<String> {
    let (base, bits) = SERVICE_CIDR;
    let base = u32::from(base);
    let size = 1u32 << (32 - bits);
    // .0.1 is the `kubernetes` Service's; start after it in a stable order.
    (1..size - 1).map(|i| Ipv4Addr::from(base + i).to_string()).find(|ip| !used.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&json!({"containers":[{"name":"a"}]})), "BestEffort");
        assert_eq!(
            qos_class(
                &json!({"containers":[{"resources":{"requests":{"cpu":"1","memory":"1Gi"},"limits":{"cpu":"1","memory":"1Gi"}}}]})
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&json!({"containers":[{"resources":{"requests":{"cpu":"1"}}}]})),
            "Burstable"
        );
    }

    #[test]
    fn first_service_ip_is_after_the_kubernetes_service() {
        let mut used = HashSet::new();
        assert_eq!(next_ip(&used).as_deref(), Some("127.64.0.1"));
        used.insert("127.64.0.1".to_string());
        assert_eq!(next_ip(&used).as_deref(), Some("127.64.0.2"));
    }
}
