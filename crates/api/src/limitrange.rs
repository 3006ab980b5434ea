//! The LimitRanger admission plugin's rules, without I/O: defaults from a namespace's
//! LimitRanges for containers that lack requests or limits, and the `min`, `max` and
//! `maxLimitRequestRatio` checks for containers, pods and PersistentVolumeClaims.
//!
//! <https://kubernetes.io/docs/concepts/policy/limit-range/>. Messages are upstream's
//! (`plugin/pkg/admission/limitranger`), e.g.
//! `maximum cpu usage per Container is 1, but limit is 2`.

use crate::quantity;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The annotation LimitRanger leaves on pods it defaulted.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

fn items<'a>(ranges: &'a [Value], type_: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ranges
        .iter()
        .flat_map(|r| r["spec"]["limits"].as_array().into_iter().flatten())
        .filter(move |i| i["type"].as_str() == Some(type_))
}

/// A resource list (`{"cpu": "1"}`) as name → quantity string, sorted.
fn list(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), quantity_string(q)?)))
        .collect()
}

fn quantity_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn milli(q: &str) -> i64 {
    quantity::parse_milli(q).unwrap_or(0)
}

/// Fill in the `default` (limits) and `defaultRequest` (requests) of the namespace's
/// Container limit items for containers that lack them, and record what was set in the
/// `kubernetes.io/limit-ranger` annotation, as upstream's `mergeContainerResources`.
pub fn default_pod(pod: &mut Value, ranges: &[Value]) {
    let mut limits = Map::new();
    let mut requests = Map::new();
    for item in items(ranges, "Container") {
        for (k, v) in item["defaultRequest"].as_object().into_iter().flatten() {
            requests.insert(k.clone(), v.clone());
        }
        for (k, v) in item["default"].as_object().into_iter().flatten() {
            limits.insert(k.clone(), v.clone());
        }
    }
    if limits.is_empty() && requests.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (key, prefix) in [("containers", "container"), ("initContainers", "init container")] {
        let Some(containers) = pod["spec"][key].as_array_mut() else { continue };
        for c in containers.iter_mut() {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let res = &mut c["resources"];
            if !res.is_object() {
                *res = json!({});
            }
            let mut set = |field: &str, defaults: &Map<String, Value>| {
                let target = &mut res[field];
                if !target.is_object() {
                    *target = json!({});
                }
                let mut names = Vec::new();
                if let Some(m) = target.as_object_mut() {
                    for (k, v) in defaults {
                        if !m.contains_key(k) {
                            m.insert(k.clone(), v.clone());
                            names.push(k.clone());
                        }
                    }
                    if m.is_empty() {
                        res.as_object_mut().map(|r| r.remove(field));
                    }
                }
                names.sort();
                names
            };
            let set_requests = set("requests", &requests);
            let set_limits = set("limits", &limits);
            if !set_requests.is_empty() {
                notes.push(format!("{} request for {prefix} {name}", set_requests.join(", ")));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {prefix} {name}", set_limits.join(", ")));
            }
        }
    }
    if !notes.is_empty() {
        let meta = &mut pod["metadata"];
        if !meta["annotations"].is_object() {
            meta["annotations"] = json!({});
        }
        meta["annotations"][ANNOTATION] =
            Value::String(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

fn min_constraint(
    kind: &str,
    resource: &str,
    enforced: &str,
    requests: &BTreeMap<String, String>,
    limits: &BTreeMap<String, String>,
) -> Option<String> {
    let e = milli(enforced);
    let Some(req) = requests.get(resource) else {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if milli(req) < e {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    match limits.get(resource) {
        Some(lim) if milli(lim) < e => {
            Some(format!("minimum {resource} usage per {kind} is {enforced}, but limit is {lim}"))
        }
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    resource: &str,
    enforced: &str,
    requests: &BTreeMap<String, String>,
    limits: &BTreeMap<String, String>,
) -> Option<String> {
    let e = milli(enforced);
    let Some(lim) = limits.get(resource) else {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if milli(lim) > e {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}, but limit is {lim}"
        ));
    }
    match requests.get(resource) {
        Some(req) if milli(req) > e => {
            Some(format!("maximum {resource} usage per {kind} is {enforced}, but request is {req}"))
        }
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    resource: &str,
    enforced: &str,
    requests: &BTreeMap<String, String>,
    limits: &BTreeMap<String, String>,
) -> Option<String> {
    let req = requests.get(resource).map(|q| milli(q)).unwrap_or(0);
    if req == 0 {
        return Some(format!("{resource} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
    }
    let lim = limits.get(resource).map(|q| milli(q)).unwrap_or(0);
    if lim == 0 {
        return Some(format!("{resource} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
    }
    let observed = lim as f64 / req as f64;
    if observed * 1000.0 > milli(enforced) as f64 {
        return Some(format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"
        ));
    }
    None
}

/// Check one limit item against observed requests and limits; errors in the item's key order.
fn check_item(
    kind: &str,
    item: &Value,
    requests: &BTreeMap<String, String>,
    limits: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) {
    for (k, v) in list(&item["min"]) {
        errors.extend(min_constraint(kind, &k, &v, requests, limits));
    }
    for (k, v) in list(&item["max"]) {
        errors.extend(max_constraint(kind, &k, &v, requests, limits));
    }
    for (k, v) in list(&item["maxLimitRequestRatio"]) {
        errors.extend(ratio_constraint(kind, &k, &v, requests, limits));
    }
}

/// A pod's total of one resource field (`requests` or `limits`): containers summed, then the
/// largest init container if larger, as upstream's `podRequests`/`podLimits`.
fn pod_total(spec: &Value, field: &str) -> BTreeMap<String, String> {
    let mut sum: BTreeMap<String, i64> = BTreeMap::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        for (k, v) in list(&c["resources"][field]) {
            *sum.entry(k).or_default() += milli(&v);
        }
    }
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        for (k, v) in list(&c["resources"][field]) {
            let m = milli(&v);
            let e = sum.entry(k).or_default();
            *e = (*e).max(m);
        }
    }
    sum.into_iter().map(|(k, m)| (k.clone(), format_milli(m, false))).collect()
}

/// Check a pod against the namespace's LimitRanges. Empty: allowed.
pub fn validate_pod(pod: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    let spec = &pod["spec"];
    for range in ranges {
        for item in range["spec"]["limits"].as_array().into_iter().flatten() {
            match item["type"].as_str() {
                Some("Container") => {
                    for key in ["containers", "initContainers"] {
                        for c in spec[key].as_array().into_iter().flatten() {
                            let requests = list(&c["resources"]["requests"]);
                            let limits = list(&c["resources"]["limits"]);
                            check_item("Container", item, &requests, &limits, &mut errors);
                        }
                    }
                }
                Some("Pod") => {
                    let requests = pod_total(spec, "requests");
                    let limits = pod_total(spec, "limits");
                    check_item("Pod", item, &requests, &limits, &mut errors);
                }
                _ => {}
            }
        }
    }
    errors
}

/// Check a PersistentVolumeClaim's requested storage against the PersistentVolumeClaim items:
/// `min` and `max` apply to `spec.resources.requests` (limits are not the user's input here).
pub fn validate_pvc(pvc: &Value, ranges: &[Value]) -> Vec<String> {
    let kind = "PersistentVolumeClaim";
    let requests = list(&pvc["spec"]["resources"]["requests"]);
    let mut errors = Vec::new();
    for item in items(ranges, kind) {
        for (k, v) in list(&item["min"]) {
            errors.extend(min_constraint(kind, &k, &v, &requests, &BTreeMap::new()));
        }
        for (k, v) in list(&item["max"]) {
            let e = milli(&v);
            match requests.get(&k) {
                None => errors
                    .push(format!("maximum {k} usage per {kind} is {v}.  No request is specified")),
                Some(req) if milli(req) > e => errors
                    .push(format!("maximum {k} usage per {kind} is {v}, but request is {req}")),
                Some(_) => {}
            }
        }
    }
    errors
}

/// Join errors as upstream's `utilerrors.NewAggregate` prints them.
pub fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// A quantity in thousandths, printed in Kubernetes' canonical form: `500m`, `2`, `1Gi`
/// (binary suffixes when `binary` and the value divides evenly), `2k`.
pub fn format_milli(milli: i64, binary: bool) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let v = milli / 1000;
    if v == 0 {
        return "0".into();
    }
    if binary {
        for (suffix, exp) in
            [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)]
        {
            let unit = 1i64 << exp;
            if v % unit == 0 {
                return format!("{}{suffix}", v / unit);
            }
        }
    }
    for (suffix, unit) in [
        ("E", 1_000_000_000_000_000_000i64),
        ("P", 1_000_000_000_000_000),
        ("T", 1_000_000_000_000),
        ("G", 1_000_000_000),
        ("M", 1_000_000),
        ("k", 1_000),
    ] {
        if v % unit == 0 {
            return format!("{}{suffix}", v / unit);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(items: Value) -> Vec<Value> {
        vec![json!({"kind": "LimitRange", "spec": {"limits": items}})]
    }

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "app", "image": "i", "resources": resources}]}})
    }

    #[test]
    fn defaults_fill_only_what_is_missing_and_are_annotated() {
        let ranges = range(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]));
        let mut p = pod(json!({"limits": {"memory": "1Gi"}}));
        default_pod(&mut p, &ranges);
        let res = &p["spec"]["containers"][0]["resources"];
        assert_eq!(res["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(res["requests"], json!({"cpu": "100m", "memory": "128Mi"}));
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container app; cpu limit for container app"
        );
        let mut untouched = pod(json!({}));
        default_pod(&mut untouched, &range(json!([{"type": "Pod", "max": {"cpu": "1"}}])));
        assert!(untouched["metadata"].get("annotations").is_none());
    }

    #[test]
    fn container_min_max_and_ratio_use_upstream_messages() {
        let ranges =
            range(json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"},
            "maxLimitRequestRatio": {"cpu": "2"}}]));
        let errs = validate_pod(
            &pod(
                json!({"limits": {"cpu": "2", "memory": "128Mi"}, "requests": {"cpu": "500m", "memory": "32Mi"}}),
            ),
            &ranges,
        );
        assert_eq!(
            errs,
            vec![
                "minimum memory usage per Container is 64Mi, but request is 32Mi",
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
            ]
        );
        assert_eq!(
            validate_pod(
                &pod(json!({})),
                &range(json!([{"type": "Container", "max": {"cpu": "1"}}]))
            ),
            vec!["maximum cpu usage per Container is 1.  No limit is specified"]
        );
        let ok = pod(
            json!({"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "500m", "memory": "64Mi"}}),
        );
        assert!(validate_pod(&ok, &ranges).is_empty());
    }

    #[test]
    fn pod_items_sum_containers_and_pvc_items_check_requests() {
        let mut p = pod(json!({"limits": {"cpu": "600m"}}));
        p["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "b", "resources": {"limits": {"cpu": "600m"}}}));
        let errs = validate_pod(&p, &range(json!([{"type": "Pod", "max": {"cpu": "1"}}])));
        assert_eq!(errs, vec!["maximum cpu usage per Pod is 1, but limit is 1200m"]);
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
        let ranges = range(
            json!([{"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}, "min": {"storage": "1Gi"}}]),
        );
        assert_eq!(
            validate_pvc(&pvc, &ranges),
            vec!["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"]
        );
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }

    #[test]
    fn quantities_print_canonically() {
        assert_eq!(format_milli(500, false), "500m");
        assert_eq!(format_milli(2000, false), "2");
        assert_eq!(format_milli(1_073_741_824_000, true), "1Gi");
        assert_eq!(format_milli(1_500_000_000_000, true), "1500M");
        assert_eq!(format_milli(0, true), "0");
    }
}
