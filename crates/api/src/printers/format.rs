//! Cell formatting shared by the built-in kinds (labels, selectors, access modes, ...) and
//! the cells of the kinds with the most involved rows (Job, Service, Node, Event, Endpoints,
//! HorizontalPodAutoscaler).

use super::since;
use crate::validation::json::{arr_at, at, int_at, str_at, string_map};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeSet;

pub(super) fn st<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    str_at(v, path).unwrap_or("")
}
pub(super) fn n(v: &Value, path: &[&str]) -> Value {
    json!(int_at(v, path).unwrap_or(0))
}
pub(super) fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

/// `k=v,k2=v2` (sorted), upstream's `labels.FormatLabels`: `<none>` when empty.
pub(super) fn format_labels(v: Option<&Value>) -> String {
    let pairs = string_map(v);
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A LabelSelector as `selector.String()` prints it (empty when it selects everything).
pub(super) fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| s.is_object()) else { return String::new() };
    let mut reqs: Vec<(String, String)> = string_map(at(sel, &["matchLabels"]))
        .into_iter()
        .map(|(k, v)| (k.clone(), format!("{k}={v}")))
        .collect();
    for e in arr_at(sel, &["matchExpressions"]) {
        let key = st(e, &["key"]).to_string();
        let mut values: Vec<&str> =
            arr_at(e, &["values"]).iter().filter_map(Value::as_str).collect();
        values.sort_unstable();
        values.dedup();
        let text = match st(e, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key, text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter().map(|r| r.1).collect::<Vec<_>>().join(",")
}

/// `metav1.FormatLabelSelector`: the selector, or `<none>`.
pub(super) fn format_label_selector(sel: Option<&Value>) -> String {
    or_none(&selector_string(sel))
}

pub(super) fn containers_cells(spec_path: &[&str], obj: &Value) -> (Value, Value) {
    let mut path = spec_path.to_vec();
    path.push("containers");
    let list = arr_at(obj, &path);
    let names: Vec<&str> = list.iter().map(|c| st(c, &["name"])).collect();
    let images: Vec<&str> = list.iter().map(|c| st(c, &["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

pub(super) fn int_or_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(num) => Some(num.to_string()),
        _ => None,
    }
}

pub(super) fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|x| x.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

pub(super) fn condition_true(obj: &Value, ty: &str) -> bool {
    arr_at(obj, &["status", "conditions"])
        .iter()
        .find(|c| st(c, &["type"]) == ty)
        .is_some_and(|c| st(c, &["status"]) == "True")
}

pub(super) fn lb_ingress(obj: &Value) -> String {
    let set: BTreeSet<&str> = arr_at(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| {
            str_at(i, &["ip"])
                .filter(|s| !s.is_empty())
                .or_else(|| str_at(i, &["hostname"]).filter(|s| !s.is_empty()))
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

pub(super) fn list_with_more(
    list: Vec<String>,
    more: bool,
    count: usize,
    max: usize,
    empty: &str,
) -> String {
    let joined = list.join(",");
    if more {
        return format!("{joined} + {} more...", count - max);
    }
    if joined.is_empty() {
        empty.to_string()
    } else {
        joined
    }
}

pub(super) fn job_cells(obj: &Value, nm: Value, ag: Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int_at(obj, &["status", "succeeded"]).unwrap_or(0);
    let completions = match int_at(obj, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let par = int_at(obj, &["spec", "parallelism"]).unwrap_or(0);
            if par > 1 {
                format!("{succeeded}/1 of {par}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = str_at(obj, &["status", "startTime"]).and_then(super::parse_time);
    let done = str_at(obj, &["status", "completionTime"]).and_then(super::parse_time);
    let duration = match (start, done) {
        (None, _) => String::new(),
        (Some(s), None) => super::human_duration(now.signed_duration_since(s)),
        (Some(s), Some(d)) => super::human_duration(d.signed_duration_since(s)),
    };
    let status = if condition_true(obj, "Complete") {
        "Complete"
    } else if condition_true(obj, "Failed") {
        "Failed"
    } else if str_at(obj, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else if condition_true(obj, "Suspended") {
        "Suspended"
    } else if condition_true(obj, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers_cells(&["spec", "template", "spec"], obj);
    vec![
        nm,
        json!(status),
        json!(completions),
        json!(duration),
        ag,
        names,
        images,
        json!(format_label_selector(at(obj, &["spec", "selector"]))),
    ]
}

pub(super) fn service_cells(obj: &Value, nm: Value, ag: Value) -> Vec<Value> {
    let ty = st(obj, &["spec", "type"]);
    let cluster_ip = arr_at(obj, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or_else(|| str_at(obj, &["spec", "clusterIP"]))
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let external: Vec<String> = arr_at(obj, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let external_ip = match ty {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = lb_ingress(obj);
            if !external.is_empty() {
                let mut all: Vec<String> = if lb.is_empty() {
                    vec![]
                } else {
                    lb.split(',').map(str::to_string).collect()
                };
                all.extend(external);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => st(obj, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr_at(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]).unwrap_or(0);
            let proto = st(p, &["protocol"]);
            match int_at(p, &["nodePort"]).filter(|np| *np > 0) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };
    vec![
        nm,
        json!(ty),
        json!(cluster_ip),
        json!(external_ip),
        json!(ports),
        ag,
        json!(format_labels(at(obj, &["spec", "selector"]))),
    ]
}

pub(super) fn node_cells(obj: &Value, nm: Value, ag: Value) -> Vec<Value> {
    let ready = arr_at(obj, &["status", "conditions"]).iter().find(|c| st(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if st(c, &["status"]) == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    }];
    if at(obj, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles = BTreeSet::new();
    for (k, v) in string_map(at(obj, &["metadata", "labels"])) {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v);
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let addr = |ty: &str| {
        arr_at(obj, &["status", "addresses"])
            .iter()
            .find(|a| st(a, &["type"]) == ty)
            .map(|a| st(a, &["address"]).to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let info = |k: &str| {
        let v = st(obj, &["status", "nodeInfo", k]);
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        nm,
        json!(status.join(",")),
        json!(roles),
        ag,
        json!(st(obj, &["status", "nodeInfo", "kubeletVersion"])),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

pub(super) fn event_cells(obj: &Value, nm: Value, now: DateTime<Utc>) -> Vec<Value> {
    let set = |p: &[&str]| str_at(obj, p).filter(|s| !s.is_empty());
    let first = match set(&["firstTimestamp"]) {
        Some(ts) => since(Some(ts), now),
        None => since(set(&["eventTime"]), now),
    };
    let mut last = match set(&["lastTimestamp"]) {
        Some(ts) => since(Some(ts), now),
        None => first.clone(),
    };
    let mut count = int_at(obj, &["count"]).unwrap_or(0);
    if at(obj, &["series"]).is_some_and(Value::is_object) {
        last = since(set(&["series", "lastObservedTime"]), now);
        count = int_at(obj, &["series", "count"]).unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = st(obj, &["involvedObject", "kind"]).to_lowercase();
    let target = match set(&["involvedObject", "name"]) {
        Some(n) => format!("{kind}/{n}"),
        None => kind,
    };
    let component =
        set(&["source", "component"]).or_else(|| set(&["reportingComponent"])).unwrap_or("");
    let host = set(&["source", "host"]).or_else(|| set(&["reportingInstance"])).unwrap_or("");
    let source =
        if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    vec![
        json!(last),
        json!(st(obj, &["type"])),
        json!(st(obj, &["reason"])),
        json!(target),
        json!(st(obj, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(st(obj, &["message"]).trim()),
        json!(first),
        json!(count),
        nm,
    ]
}

pub(super) fn format_endpoints(obj: &Value) -> String {
    let subsets = arr_at(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let (mut list, mut more, mut count) = (Vec::new(), false, 0usize);
    for ss in subsets {
        let addrs = arr_at(ss, &["addresses"]);
        let ports = arr_at(ss, &["ports"]);
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(st(a, &["ip"]).to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                let ip = st(a, &["ip"]);
                let port = int_at(p, &["port"]).unwrap_or(0);
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - max)
    } else {
        joined
    }
}

pub(super) fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "<unknown>".into(),
    }
}

pub(super) fn hpa_metrics(obj: &Value) -> String {
    let specs = arr_at(obj, &["spec", "metrics"]);
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = arr_at(obj, &["status", "currentMetrics"]);
    let mut list = Vec::new();
    for (idx, spec) in specs.iter().enumerate() {
        let status = statuses.get(idx);
        let text = match st(spec, &["type"]) {
            "Resource" | "ContainerResource" => {
                let key = if st(spec, &["type"]) == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let rname = st(spec, &[key, "name"]);
                let cur = status.and_then(|s| at(s, &[key, "current"]));
                if let Some(target) = at(spec, &[key, "target", "averageValue"]) {
                    let current = cur
                        .and_then(|c| at(c, &["averageValue"]))
                        .map(|v| quantity(Some(v)))
                        .unwrap_or_else(|| "<unknown>".into());
                    format!("{rname}: {current}/{}", quantity(Some(target)))
                } else {
                    let current = cur
                        .and_then(|c| int_at(c, &["averageUtilization"]))
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<unknown>".into());
                    let target = int_at(spec, &[key, "target", "averageUtilization"])
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<auto>".into());
                    format!("{rname}: {current}/{target}")
                }
            }
            "Pods" => {
                let current = status
                    .and_then(|s| at(s, &["pods", "current", "averageValue"]))
                    .map(|v| quantity(Some(v)))
                    .unwrap_or_else(|| "<unknown>".into());
                format!("{current}/{}", quantity(at(spec, &["pods", "target", "averageValue"])))
            }
            t @ ("Object" | "External") => {
                let key = if t == "Object" { "object" } else { "external" };
                let cur = status.and_then(|s| at(s, &[key, "current"]));
                if let Some(target) = at(spec, &[key, "target", "averageValue"]) {
                    let current = cur
                        .and_then(|c| at(c, &["averageValue"]))
                        .map(|v| quantity(Some(v)))
                        .unwrap_or_else(|| "<unknown>".into());
                    format!("{current}/{} (avg)", quantity(Some(target)))
                } else {
                    let current = cur
                        .map(|c| quantity(at(c, &["value"])))
                        .unwrap_or_else(|| "<unknown>".into());
                    format!("{current}/{}", quantity(at(spec, &[key, "target", "value"])))
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(text);
    }
    let count = list.len();
    if count > 2 {
        list.truncate(2);
        return format!("{} + {} more...", list.join(", "), count - 2);
    }
    list.join(", ")
}
