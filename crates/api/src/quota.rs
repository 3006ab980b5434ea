//! ResourceQuota accounting, without I/O: what an object consumes ([`usage`]), whether a quota
//! applies to it ([`applies`], scopes), what a pod must specify ([`constraints`]), and the
//! check of a request against a quota ([`check`]) with upstream's messages
//! (`plugin/pkg/admission/resourcequota`, `pkg/quota/v1/evaluator/core`).
//!
//! <https://kubernetes.io/docs/concepts/policy/resource-quotas/>. Amounts are kept in
//! thousandths (as [`crate::quantity::parse_milli`]) so CPU and counts share one type.

use crate::limitrange::format_milli;
use crate::quantity;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Resource name → amount in thousandths.
pub type Usage = BTreeMap<String, i64>;

/// The quota resource that counts objects of `plural` in `group`:
/// `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The bare object-count names of the core kinds (`pods`, `services`, …).
fn legacy_count(group: &str, plural: &str) -> Option<&'static str> {
    if !group.is_empty() {
        return None;
    }
    Some(match plural {
        "pods" => "pods",
        "services" => "services",
        "configmaps" => "configmaps",
        "secrets" => "secrets",
        "persistentvolumeclaims" => "persistentvolumeclaims",
        "replicationcontrollers" => "replicationcontrollers",
        "resourcequotas" => "resourcequotas",
        _ => return None,
    })
}

fn q(v: &Value) -> i64 {
    match v {
        Value::String(s) => quantity::parse_milli(s).unwrap_or(0),
        Value::Number(n) => n.as_f64().map(|f| (f * 1000.0).ceil() as i64).unwrap_or(0),
        _ => 0,
    }
}

/// A pod is charged until it reaches a terminal phase (upstream `QuotaV1Pod`).
pub fn pod_counts(pod: &Value) -> bool {
    !matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        && pod["metadata"]["deletionTimestamp"].is_null()
}

/// A pod's requests or limits: containers summed, the largest init container if larger, plus
/// `overhead` (upstream `resourcehelper.PodRequests`).
fn pod_resources(spec: &Value, field: &str) -> Usage {
    let mut sum = Usage::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        for (k, v) in c["resources"][field].as_object().into_iter().flatten() {
            *sum.entry(k.clone()).or_default() += q(v);
        }
    }
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        for (k, v) in c["resources"][field].as_object().into_iter().flatten() {
            let e = sum.entry(k.clone()).or_default();
            *e = (*e).max(q(v));
        }
    }
    for (k, v) in spec["overhead"].as_object().into_iter().flatten() {
        *sum.entry(k.clone()).or_default() += q(v);
    }
    sum
}

/// Requests and limits as quota names: `requests.cpu` and `cpu`, `limits.cpu`, …
/// (upstream `podComputeUsageHelper`).
fn compute_names(requests: &Usage, limits: &Usage) -> Usage {
    let mut out = Usage::new();
    for (k, v) in requests {
        out.insert(format!("requests.{k}"), *v);
        if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            out.insert(k.clone(), *v);
        }
    }
    for (k, v) in limits {
        out.insert(format!("limits.{k}"), *v);
    }
    out
}

/// What creating `obj` (of `plural` in `group`) consumes.
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    if group.is_empty() && plural == "pods" && !pod_counts(obj) {
        return u;
    }
    u.insert(count_name(group, plural), 1000);
    if let Some(name) = legacy_count(group, plural) {
        u.insert(name.into(), 1000);
    }
    if !group.is_empty() {
        return u;
    }
    match plural {
        "pods" => {
            let spec = &obj["spec"];
            u.extend(compute_names(
                &pod_resources(spec, "requests"),
                &pod_resources(spec, "limits"),
            ));
        }
        "services" => {
            let type_ = obj["spec"]["type"].as_str().unwrap_or("ClusterIP");
            let ports = obj["spec"]["ports"].as_array().map(Vec::len).unwrap_or(0) as i64;
            if type_ == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), 1000);
            }
            if matches!(type_, "NodePort" | "LoadBalancer") {
                u.insert("services.nodeports".into(), ports * 1000);
            }
        }
        "persistentvolumeclaims" => {
            let storage = q(&obj["spec"]["resources"]["requests"]["storage"]);
            u.insert("requests.storage".into(), storage);
            if let Some(class) = obj["spec"]["storageClassName"].as_str() {
                let prefix = format!("{class}.storageclass.storage.k8s.io/");
                u.insert(format!("{prefix}requests.storage"), storage);
                u.insert(format!("{prefix}persistentvolumeclaims"), 1000);
            }
        }
        _ => {}
    }
    u
}

fn qos_best_effort(spec: &Value) -> bool {
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .all(|c| {
            ["requests", "limits"].iter().all(|f| {
                c["resources"][*f]
                    .as_object()
                    .is_none_or(|m| m.keys().all(|k| !matches!(k.as_str(), "cpu" | "memory")))
            })
        })
}

fn scope_matches(scope: &str, operator: &str, values: &[&str], pod: &Value) -> bool {
    let spec = &pod["spec"];
    match scope {
        "Terminating" => spec["activeDeadlineSeconds"].as_i64().is_some_and(|s| s >= 0),
        "NotTerminating" => spec["activeDeadlineSeconds"].as_i64().is_none_or(|s| s < 0),
        "BestEffort" => qos_best_effort(spec),
        "NotBestEffort" => !qos_best_effort(spec),
        "PriorityClass" => {
            let class = spec["priorityClassName"].as_str().filter(|s| !s.is_empty());
            match operator {
                "In" => class.is_some_and(|c| values.contains(&c)),
                "NotIn" => class.is_none_or(|c| !values.contains(&c)),
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => {
            let a = &spec["affinity"];
            ["podAffinity", "podAntiAffinity"].iter().any(|k| {
                [
                    "requiredDuringSchedulingIgnoredDuringExecution",
                    "preferredDuringSchedulingIgnoredDuringExecution",
                ]
                .iter()
                .flat_map(|f| a[*k][*f].as_array().into_iter().flatten())
                .any(|t| {
                    let t =
                        if t["podAffinityTerm"].is_object() { &t["podAffinityTerm"] } else { t };
                    t["namespaces"].as_array().is_some_and(|n| !n.is_empty())
                        || t["namespaceSelector"].is_object()
                })
            })
        }
        _ => false,
    }
}

/// Whether `quota` applies to an object of `plural` in `group`: a quota with scopes (from
/// `scopes` or `scopeSelector`) only tracks pods that match every scope.
pub fn applies(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let mut scopes: Vec<(String, String, Vec<&str>)> = quota["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), vec![]))
        .collect();
    for e in quota["spec"]["scopeSelector"]["matchExpressions"].as_array().into_iter().flatten() {
        let values =
            e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        scopes.push((
            e["scopeName"].as_str().unwrap_or_default().to_string(),
            e["operator"].as_str().unwrap_or_default().to_string(),
            values,
        ));
    }
    if scopes.is_empty() {
        return true;
    }
    group.is_empty()
        && plural == "pods"
        && scopes.iter().all(|(s, op, values)| scope_matches(s, op, values, obj))
}

/// The hard limits a quota enforces (`spec.hard`).
pub fn hard(quota: &Value) -> Usage {
    quota["spec"]["hard"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), q(v)))
        .collect()
}

/// `status.used` of a quota, when recorded.
pub fn used(quota: &Value) -> Usage {
    quota["status"]["used"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), q(v)))
        .collect()
}

/// Whether quantities of this resource print with binary suffixes (memory, storage).
fn is_binary(name: &str) -> bool {
    ["memory", "storage", "ephemeral-storage"].iter().any(|s| name.ends_with(s))
}

/// An amount as the quota's status shows it.
pub fn render(name: &str, milli: i64) -> String {
    if name.starts_with("count/") || !name.contains("cpu") && !is_binary(name) {
        // Object counts are whole numbers.
        return format_milli(
            milli.div_euclid(1000) * 1000 + if milli % 1000 > 0 { 1000 } else { 0 },
            false,
        );
    }
    format_milli(milli, is_binary(name))
}

/// Upstream's `prettyPrint`: `a=1,b=2`, sorted.
fn pretty(u: &Usage) -> String {
    u.iter().map(|(k, v)| format!("{k}={}", render(k, *v))).collect::<Vec<_>>().join(",")
}

/// What a pod must specify when the quota limits compute resources: each container states a
/// request or limit for every one of `cpu`, `memory`, `requests.*`, `limits.*` the quota
/// limits (upstream `podEvaluator.Constraints`). `Err`: `must specify …`.
pub fn constraints(hard: &Usage, pod: &Value) -> Result<(), String> {
    const VALIDATED: [&str; 6] =
        ["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];
    let required: BTreeSet<&str> =
        VALIDATED.iter().copied().filter(|r| hard.contains_key(*r)).collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for key in ["containers", "initContainers"] {
        for c in pod["spec"][key].as_array().into_iter().flatten() {
            let req: Usage = c["resources"]["requests"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), q(v)))
                .collect();
            let lim: Usage = c["resources"]["limits"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), q(v)))
                .collect();
            let has = compute_names(&req, &lim);
            for r in &required {
                if !has.contains_key(*r) {
                    missing
                        .entry(r)
                        .or_default()
                        .insert(c["name"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(","))
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// Check a request that consumes `requested` against a quota whose current usage is `used`.
/// `Ok`: the usage after charging it (only the resources the quota limits). `Err`: upstream's
/// `exceeded quota: …` message.
pub fn check(name: &str, hard: &Usage, used: &Usage, requested: &Usage) -> Result<Usage, String> {
    let mut after = used.clone();
    let mut exceeded = Vec::new();
    for (k, limit) in hard {
        let Some(add) = requested.get(k).filter(|v| **v != 0) else { continue };
        let now = used.get(k).copied().unwrap_or(0);
        let total = now.saturating_add(*add);
        if total > *limit {
            exceeded.push(k.clone());
        }
        after.insert(k.clone(), total);
    }
    if exceeded.is_empty() {
        return Ok(after);
    }
    let mask = |u: &Usage| -> Usage {
        exceeded.iter().map(|k| (k.clone(), u.get(k).copied().unwrap_or(0))).collect()
    };
    Err(format!(
        "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
        pretty(&mask(requested)),
        pretty(&mask(used)),
        pretty(&mask(hard))
    ))
}

/// Whether the quota limits anything `requested` touches.
pub fn relevant(hard: &Usage, requested: &Usage) -> bool {
    requested.keys().any(|k| hard.contains_key(k))
}

/// A usage as a status resource list, for the resources the quota limits (absent ones are 0).
pub fn to_list(hard: &Usage, used: &Usage) -> serde_json::Map<String, Value> {
    hard.keys()
        .map(|k| (k.clone(), Value::String(render(k, used.get(k).copied().unwrap_or(0)))))
        .collect()
}

/// Which kind a quota resource name counts: `count/deployments.apps` → (apps, deployments);
/// `requests.cpu` → pods; `services.nodeports` → services; `requests.storage` → PVCs.
pub fn kind_of(name: &str) -> (String, String) {
    if let Some(rest) = name.strip_prefix("count/") {
        return match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        };
    }
    let plural = match name {
        "services" | "services.nodeports" | "services.loadbalancers" => "services",
        "configmaps" => "configmaps",
        "secrets" => "secrets",
        "replicationcontrollers" => "replicationcontrollers",
        "resourcequotas" => "resourcequotas",
        n if n == "persistentvolumeclaims"
            || n.ends_with("storage") && !n.contains("ephemeral")
            || n.ends_with("/persistentvolumeclaims") =>
        {
            "persistentvolumeclaims"
        }
        _ => "pods",
    };
    (String::new(), plural.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "resources": resources}]}})
    }

    fn usage_of(pairs: &[(&str, i64)]) -> Usage {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn pods_consume_counts_and_compute() {
        let u = usage(
            "",
            "pods",
            &pod(json!({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}})),
        );
        assert_eq!(u["pods"], 1000);
        assert_eq!(u["count/pods"], 1000);
        assert_eq!(u["requests.cpu"], 250);
        assert_eq!(u["cpu"], 250);
        assert_eq!(u["limits.cpu"], 1000);
        assert_eq!(u["requests.memory"], 64 * 1024 * 1024 * 1000);
        let mut done = pod(json!({}));
        done["status"] = json!({"phase": "Succeeded"});
        assert!(usage("", "pods", &done).is_empty());
        let svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 1}, {"port": 2}]}});
        let u = usage("", "services", &svc);
        assert_eq!(
            (u["services"], u["services.loadbalancers"], u["services.nodeports"]),
            (1000, 1000, 2000)
        );
        assert_eq!(usage("apps", "deployments", &json!({}))["count/deployments.apps"], 1000);
    }

    #[test]
    fn exceeding_a_quota_uses_upstreams_message() {
        let hard = usage_of(&[("pods", 2000), ("requests.cpu", 1000)]);
        let used = usage_of(&[("pods", 2000), ("requests.cpu", 500)]);
        let err = check("q", &hard, &used, &usage_of(&[("pods", 1000), ("requests.cpu", 100)]))
            .unwrap_err();
        assert_eq!(err, "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2");
        let ok = check(
            "q",
            &hard,
            &usage_of(&[("pods", 1000)]),
            &usage_of(&[("pods", 1000), ("requests.cpu", 500)]),
        )
        .expect("fits");
        assert_eq!(ok, usage_of(&[("pods", 2000), ("requests.cpu", 500)]));
        let err = check(
            "q",
            &usage_of(&[("requests.memory", (1i64 << 30) * 1000)]),
            &Usage::new(),
            &usage_of(&[("requests.memory", (2i64 << 30) * 1000)]),
        )
        .unwrap_err();
        assert_eq!(err, "exceeded quota: q, requested: requests.memory=2Gi, used: requests.memory=0, limited: requests.memory=1Gi");
    }

    #[test]
    fn pods_must_state_what_the_quota_limits() {
        let hard = usage_of(&[("requests.cpu", 1000), ("pods", 5000)]);
        assert_eq!(
            constraints(&hard, &pod(json!({}))).unwrap_err(),
            "must specify requests.cpu for: app"
        );
        assert!(constraints(&hard, &pod(json!({"requests": {"cpu": "1"}}))).is_ok());
        assert!(constraints(&usage_of(&[("pods", 1000)]), &pod(json!({}))).is_ok());
    }

    #[test]
    fn quota_names_map_to_the_kinds_they_count() {
        let k = |n: &str| kind_of(n);
        assert_eq!(k("count/deployments.apps"), ("apps".into(), "deployments".into()));
        assert_eq!(k("count/pods"), ("".into(), "pods".into()));
        assert_eq!(k("requests.cpu"), ("".into(), "pods".into()));
        assert_eq!(k("requests.ephemeral-storage"), ("".into(), "pods".into()));
        assert_eq!(k("requests.storage"), ("".into(), "persistentvolumeclaims".into()));
        assert_eq!(
            k("gold.storageclass.storage.k8s.io/persistentvolumeclaims"),
            ("".into(), "persistentvolumeclaims".into())
        );
        assert_eq!(k("services.nodeports"), ("".into(), "services".into()));
    }

    #[test]
    fn scopes_select_pods() {
        let be = json!({"spec": {"scopes": ["BestEffort"]}});
        assert!(applies(&be, "", "pods", &pod(json!({}))));
        assert!(!applies(&be, "", "pods", &pod(json!({"requests": {"cpu": "1"}}))));
        assert!(!applies(&be, "", "services", &json!({})));
        let term = json!({"spec": {"scopes": ["Terminating"]}});
        let mut p = pod(json!({}));
        assert!(!applies(&term, "", "pods", &p));
        p["spec"]["activeDeadlineSeconds"] = json!(30);
        assert!(applies(&term, "", "pods", &p));
        let pc = json!({"spec": {"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        p["spec"]["priorityClassName"] = json!("high");
        assert!(applies(&pc, "", "pods", &p));
        p["spec"]["priorityClassName"] = json!("low");
        assert!(!applies(&pc, "", "pods", &p));
        assert!(applies(&json!({"spec": {}}), "", "secrets", &json!({})));
    }
}
