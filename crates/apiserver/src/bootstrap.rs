//! Objects a v1.33 API server keeps from the start, beyond namespaces and the `kubernetes`
//! Service (see `lib.rs`):
//! - the default RBAC roles and bindings (`bootstrap/rbac.yaml`), labelled
//!   `kubernetes.io/bootstrapping: rbac-defaults`, and the ClusterRole aggregation that fills
//!   `admin`, `edit` and `view` from the roles their `aggregationRule` selects;
//! - the mandatory API Priority and Fairness objects (`exempt` and `catch-all` FlowSchemas
//!   and PriorityLevelConfigurations; kumo does not queue requests by them);
//! - one APIService per served group-version, `Local` and `Available`, as the aggregator lists
//!   them (`v1.apps`), kept in step with the CustomResourceDefinitions;
//! - the `kubernetes` ServiceCIDR, the range Service cluster IPs come from.
//!
//! Objects are created when absent and never overwritten (a changed default role stays
//! changed, as with upstream's `autoupdate: "false"`), except aggregated roles' rules.

use crate::object;
use crate::registry::{Registry, WriteOptions};
use kumo_api::resources::Resource;
use kumo_api::selector::LabelSelector;
use kumo_store::RangeRequest;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

const RBAC: &str = include_str!("../bootstrap/rbac.yaml");
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

async fn create_if_absent(reg: &Registry, r: &Resource, obj: Value) {
    let name = object::name(&obj).to_string();
    if let Ok(Some(_)) = reg.store.get(&r.key(None, &name)).await {
        return;
    }
    let opts = WriteOptions { field_manager: "kumo-apiserver".into(), ..Default::default() };
    if let Err(e) = reg.create(r, None, obj, &opts).await {
        if !matches!(e, crate::error::ApiError::AlreadyExists(..)) {
            tracing::warn!(object = name, kind = r.kind, error = %e, "bootstrap object not created");
        }
    }
}

/// Create every default object that is missing.
pub async fn install(reg: &Registry) {
    rbac(reg).await;
    flow_control(reg).await;
    service_cidr(reg).await;
    sync_api_services(reg.clone()).await;
    aggregate_cluster_roles(reg.clone()).await;
    // Started last: the wake-ups stored meanwhile then cost one more run each, after these.
    start_reconcilers(reg);
}

/// The default roles and bindings.
pub fn rbac_objects() -> Vec<Value> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(RBAC) {
        let Ok(mut obj) = Value::deserialize(doc) else {
            tracing::warn!("bootstrap/rbac.yaml holds a document that is not an object");
            continue;
        };
        obj["apiVersion"] = json!(format!("{RBAC_GROUP}/v1"));
        let meta = &mut obj["metadata"];
        if !meta["labels"].is_object() {
            meta["labels"] = json!({});
        }
        meta["labels"]["kubernetes.io/bootstrapping"] = json!("rbac-defaults");
        meta["annotations"] = json!({"rbac.authorization.kubernetes.io/autoupdate": "true"});
        out.push(obj);
    }
    out
}

async fn rbac(reg: &Registry) {
    let snap = reg.catalog.snapshot();
    for obj in rbac_objects() {
        let kind = obj["kind"].as_str().unwrap_or("");
        if let Some(r) = snap.by_kind(RBAC_GROUP, kind) {
            create_if_absent(reg, r, obj).await;
        }
    }
}

/// Wake-ups of the two background reconcilers. A burst of writes (the RBAC roles or built-in
/// CRDs stored at start-up) coalesces into one more run, not one run per write.
#[derive(Debug, Default)]
pub struct Triggers {
    api_services: Notify,
    aggregation: Notify,
}

/// Start the reconcilers that keep APIServices and aggregated ClusterRoles in step with the
/// objects they derive from. They run until the runtime stops.
pub fn start_reconcilers(reg: &Registry) {
    let r = reg.clone();
    tokio::spawn(async move {
        loop {
            r.triggers.api_services.notified().await;
            sync_api_services(r.clone()).await;
        }
    });
    let r = reg.clone();
    tokio::spawn(async move {
        loop {
            r.triggers.aggregation.notified().await;
            aggregate_cluster_roles(r.clone()).await;
        }
    });
}

/// Ask for [`aggregate_cluster_roles`] to run again (a ClusterRole changed).
pub fn request_aggregation(reg: &Registry) {
    reg.triggers.aggregation.notify_one();
}

/// Ask for [`sync_api_services`] to run again (a CRD changed).
pub fn request_api_service_sync(reg: &Registry) {
    reg.triggers.api_services.notify_one();
}

/// Fill the rules of every ClusterRole that has an `aggregationRule` with the rules of the
/// ClusterRoles its selectors match (upstream's clusterrole-aggregation controller).
pub async fn aggregate_cluster_roles(reg: Registry) {
    let reg = &reg;
    let Some(r) = reg.catalog.snapshot().find(RBAC_GROUP, "v1", "clusterroles").cloned() else {
        return;
    };
    let Ok(page) =
        reg.store.range(RangeRequest { prefix: r.key_prefix(), ..Default::default() }).await
    else {
        return;
    };
    let roles: Vec<Value> = page.kvs.iter().filter_map(object::from_kv).collect();
    for role in roles.iter().filter(|role| role["aggregationRule"].is_object()) {
        let rules = aggregated_rules(role, &roles);
        if role["rules"] == rules {
            continue;
        }
        let mut updated = role.clone();
        updated["rules"] = rules;
        let opts = WriteOptions {
            field_manager: "clusterrole-aggregation-controller".into(),
            ..Default::default()
        };
        if let Err(e) = reg.update(&r, None, object::name(role), updated, None, &opts).await {
            tracing::debug!(role = object::name(role), error = %e, "aggregation will be retried on the next role write");
        }
    }
}

/// The union of the rules of the roles `role`'s selectors match, each rule once, in role
/// name order (the list is sorted by key, as upstream's lister gives it).
fn aggregated_rules(role: &Value, roles: &[Value]) -> Value {
    let selectors: Vec<LabelSelector> = role["aggregationRule"]["clusterRoleSelectors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| LabelSelector::from_object(s).ok())
        .filter(|s| !s.is_empty())
        .collect();
    let mut rules: Vec<Value> = Vec::new();
    for other in roles {
        if object::name(other) == object::name(role) {
            continue;
        }
        let labels = other["metadata"]["labels"].as_object();
        if !selectors.iter().any(|s| s.matches(labels)) {
            continue;
        }
        for rule in other["rules"].as_array().into_iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Value::Array(rules)
}

async fn flow_control(reg: &Registry) {
    let snap = reg.catalog.snapshot();
    let g = "flowcontrol.apiserver.k8s.io";
    let annotations = json!({"apf.kubernetes.io/autoupdate-spec": "true"});
    if let Some(r) = snap.find(g, "v1", "prioritylevelconfigurations") {
        for (name, spec) in [
            (
                "exempt",
                json!({"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}),
            ),
            (
                "catch-all",
                json!({"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "lendablePercent": 0,
                "limitResponse": {"type": "Reject"}}}),
            ),
        ] {
            let obj = json!({"apiVersion": format!("{g}/v1"), "kind": "PriorityLevelConfiguration",
                "metadata": {"name": name, "annotations": annotations}, "spec": spec});
            create_if_absent(reg, r, obj).await;
        }
    }
    if let Some(r) = snap.find(g, "v1", "flowschemas") {
        let everything = json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
            "clusterScope": true, "namespaces": ["*"]}], "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]});
        let group = |n: &str| json!({"kind": "Group", "group": {"name": n}});
        let mut exempt = everything.clone();
        exempt["subjects"] = json!([group("system:masters")]);
        let mut catch_all = everything;
        catch_all["subjects"] =
            json!([group("system:unauthenticated"), group("system:authenticated")]);
        for (name, precedence, level, rule, distinguisher) in [
            ("exempt", 1, "exempt", exempt, Value::Null),
            ("catch-all", 10000, "catch-all", catch_all, json!({"type": "ByUser"})),
        ] {
            let mut spec = json!({"matchingPrecedence": precedence,
                "priorityLevelConfiguration": {"name": level}, "rules": [rule]});
            if !distinguisher.is_null() {
                spec["distinguisherMethod"] = distinguisher;
            }
            let obj = json!({"apiVersion": format!("{g}/v1"), "kind": "FlowSchema",
                "metadata": {"name": name, "annotations": annotations}, "spec": spec});
            create_if_absent(reg, r, obj).await;
        }
    }
}

async fn service_cidr(reg: &Registry) {
    let Some(r) = reg.catalog.snapshot().find("networking.k8s.io", "v1", "servicecidrs").cloned()
    else {
        return;
    };
    let (ip, bits) = crate::hooks::SERVICE_CIDR;
    let obj = json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
        "metadata": {"name": "kubernetes"}, "spec": {"cidrs": [format!("{ip}/{bits}")]}});
    create_if_absent(reg, &r, obj).await;
    // The range is in use from the start: Ready, as upstream's controller reports it.
    if let Ok(mut cur) = reg.get(&r, None, "kubernetes").await {
        if cur["status"]["conditions"].is_array() {
            return;
        }
        cur["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "",
            "message": "Kubernetes Service CIDR is ready", "lastTransitionTime": object::now_rfc3339()}]});
        let _ =
            reg.update(&r, None, "kubernetes", cur, Some("status"), &WriteOptions::default()).await;
    }
}

/// Upstream's group priorities (`groupPriorityMinimum`, `versionPriority`) for the built-in
/// groups; custom groups get 1000 and 100, as the CRD autoregistration gives them.
fn priority(group: &str) -> (i64, i64) {
    match group {
        "" => (18000, 1),
        "apiregistration.k8s.io" => (18000, 15),
        "apps" => (17800, 15),
        "events.k8s.io" => (17750, 15),
        "authentication.k8s.io" => (17700, 15),
        "authorization.k8s.io" => (17600, 15),
        "autoscaling" => (17500, 30),
        "batch" => (17400, 15),
        "certificates.k8s.io" => (17300, 15),
        "networking.k8s.io" => (17200, 15),
        "policy" => (17100, 15),
        "rbac.authorization.k8s.io" => (17000, 15),
        "storage.k8s.io" => (16800, 15),
        "apiextensions.k8s.io" => (16700, 15),
        "admissionregistration.k8s.io" => (16700, 15),
        "scheduling.k8s.io" => (16600, 15),
        "coordination.k8s.io" => (16500, 15),
        "node.k8s.io" => (16300, 15),
        "discovery.k8s.io" => (16200, 15),
        "flowcontrol.apiserver.k8s.io" => (16100, 21),
        _ => (1000, 100),
    }
}

/// One APIService per served group-version (built-in ones `automanaged: onstart`, custom
/// ones `true`), each `Local` and Available. APIServices of removed CRD groups are deleted.
pub async fn sync_api_services(reg: Registry) {
    let reg = &reg;
    let snap = reg.catalog.snapshot();
    let Some(r) = snap.find("apiregistration.k8s.io", "v1", "apiservices").cloned() else {
        return;
    };
    let mut wanted = Vec::new();
    for (group, versions) in snap.groups() {
        let builtin = snap.resources.iter().any(|x| x.group == group && x.crd_schema.is_none());
        for version in versions {
            let name = format!("{version}.{group}");
            let (gp, vp) = priority(&group);
            let managed = if builtin { "onstart" } else { "true" };
            let obj = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": managed}},
                "spec": {"group": group, "version": version, "groupPriorityMinimum": gp, "versionPriority": vp}});
            create_if_absent(reg, &r, obj).await;
            wanted.push(name.clone());
            if let Ok(mut cur) = reg.get(&r, None, &name).await {
                if cur["status"]["conditions"].is_array() {
                    continue;
                }
                cur["status"] = json!({"conditions": [{"type": "Available", "status": "True", "reason": "Local",
                    "message": "Local APIServices are always available", "lastTransitionTime": object::now_rfc3339()}]});
                let _ = reg
                    .update(&r, None, &name, cur, Some("status"), &WriteOptions::default())
                    .await;
            }
        }
    }
    // A CRD group that is gone takes its APIService with it (only automanaged ones).
    let Ok(page) =
        reg.store.range(RangeRequest { prefix: r.key_prefix(), ..Default::default() }).await
    else {
        return;
    };
    for obj in page.kvs.iter().filter_map(object::from_kv) {
        let name = object::name(&obj).to_string();
        let auto = obj["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"] == "true";
        if auto && !wanted.contains(&name) {
            let _ = reg.delete(&r, None, &name, &Default::default()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rbac_has_the_aggregated_user_facing_roles() {
        let objs = rbac_objects();
        let find = |n: &str| objs.iter().find(|o| o["metadata"]["name"] == n).cloned();
        let admin = find("admin").expect("admin");
        assert!(admin["aggregationRule"]["clusterRoleSelectors"].is_array());
        let roles: Vec<Value> =
            objs.iter().filter(|o| o["kind"] == "ClusterRole").cloned().collect();
        let view_rules = aggregated_rules(&find("view").expect("view"), &roles);
        assert!(view_rules
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["resources"][0] == "configmaps")));
        let edit_rules = aggregated_rules(&find("edit").expect("edit"), &roles);
        // edit aggregates view's own (still empty) rules and system:aggregate-to-edit.
        assert!(edit_rules
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["verbs"][0] == "impersonate")));
        let binding = find("cluster-admin").filter(|_| true).expect("cluster-admin");
        assert_eq!(binding["metadata"]["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults");
        assert!(objs.iter().any(|o| o["kind"] == "ClusterRoleBinding"
            && o["metadata"]["name"] == "cluster-admin"
            && o["subjects"][0]["name"] == "system:masters"));
    }
}
