//! Pod spec defaults (`SetDefaults_PodSpec`, `SetDefaults_Container`, probes, ports,
//! volumes), applied to Pods and to every pod template.

use crate::validation::json::{default_field, existing_obj_mut};
use serde_json::{json, Map, Value};

/// The defaults only a Pod (not a template) gets: `enableServiceLinks`, requests copied from
/// limits, and what the Priority admission plugin fills in (`priority`, `preemptionPolicy`).
pub(crate) fn pod_only(spec: &mut Map<String, Value>) {
    default_field(spec, "enableServiceLinks", Value::Bool(true));
    if !spec.contains_key("priority") || spec.get("priority").is_some_and(Value::is_null) {
        let has_class =
            spec.get("priorityClassName").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
        if !has_class {
            spec.insert("priority".into(), json!(0));
        }
    }
    default_field(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(items)) = spec.get_mut(list) {
            for c in items.iter_mut() {
                requests_from_limits(c);
            }
        }
    }
}

fn requests_from_limits(c: &mut Value) {
    let Some(res) = existing_obj_mut(c, &["resources"]) else { return };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else { return };
    if limits.is_empty() {
        return;
    }
    let requests = res.entry("requests").or_insert_with(|| Value::Object(Map::new()));
    if let Some(req) = requests.as_object_mut() {
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
    }
}

/// Defaults of a pod template (`metadata` left alone, `spec` defaulted).
pub(crate) fn template(t: &mut Value) {
    if let Some(spec) = existing_obj_mut(t, &["spec"]) {
        pod_spec(spec);
    }
}

/// `SetDefaults_PodSpec` and everything nested in it.
pub(crate) fn pod_spec(spec: &mut Map<String, Value>) {
    default_field(spec, "restartPolicy", json!("Always"));
    default_field(spec, "dnsPolicy", json!("ClusterFirst"));
    if !spec.get("securityContext").is_some_and(Value::is_object) {
        spec.insert("securityContext".into(), json!({}));
    }
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_field(spec, "schedulerName", json!("default-scheduler"));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(items)) = spec.get_mut(list) {
            for c in items.iter_mut() {
                if let Some(c) = c.as_object_mut() {
                    container(c, host_network);
                }
            }
        }
    }
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        for v in vols.iter_mut() {
            if let Some(v) = v.as_object_mut() {
                volume(v);
            }
        }
    }
}

/// Whether an image reference names the `latest` tag (explicitly, or by naming no tag and
/// no digest).
pub(crate) fn image_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

fn container(c: &mut Map<String, Value>, host_network: bool) {
    if c.get("imagePullPolicy").and_then(Value::as_str).unwrap_or("").is_empty() {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_is_latest(image) { "Always" } else { "IfNotPresent" };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_field(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_field(c, "terminationMessagePolicy", json!("File"));
    if !c.get("resources").is_some_and(Value::is_object) {
        c.insert("resources".into(), json!({}));
    }
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_field(p, "protocol", json!("TCP"));
            if host_network
                && p.get("hostPort").is_none_or(|h| h.as_i64() == Some(0) || h.is_null())
            {
                if let Some(cp) = p.get("containerPort").cloned() {
                    p.insert("hostPort".into(), cp);
                }
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default_field(p, "timeoutSeconds", json!(1));
            default_field(p, "periodSeconds", json!(10));
            default_field(p, "successThreshold", json!(1));
            default_field(p, "failureThreshold", json!(3));
            handler(p);
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).and_then(Value::as_object_mut) {
                handler(h);
            }
        }
    }
    if let Some(Value::Array(env)) = c.get_mut("env") {
        for e in env.iter_mut() {
            if let Some(fr) = existing_obj_mut(e, &["valueFrom", "fieldRef"]) {
                default_field(fr, "apiVersion", json!("v1"));
            }
        }
    }
}

fn handler(h: &mut Map<String, Value>) {
    if let Some(g) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        default_field(g, "path", json!("/"));
        default_field(g, "scheme", json!("HTTP"));
    }
}

fn volume(v: &mut Map<String, Value>) {
    if !crate::validation::VOLUME_SOURCES.iter().any(|s| v.get(*s).is_some_and(|x| !x.is_null())) {
        v.insert("emptyDir".into(), json!({}));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(src).and_then(Value::as_object_mut) {
            default_field(s, "defaultMode", json!(420));
            if src == "downwardAPI" {
                if let Some(Value::Array(items)) = s.get_mut("items") {
                    for it in items.iter_mut() {
                        if let Some(fr) = existing_obj_mut(it, &["fieldRef"]) {
                            default_field(fr, "apiVersion", json!("v1"));
                        }
                    }
                }
            }
            if src == "projected" {
                if let Some(Value::Array(sources)) = s.get_mut("sources") {
                    for ps in sources.iter_mut() {
                        if let Some(t) = existing_obj_mut(ps, &["serviceAccountToken"]) {
                            default_field(t, "expirationSeconds", json!(3600));
                        }
                        if let Some(Value::Array(items)) = ps.pointer_mut("/downwardAPI/items") {
                            for it in items.iter_mut() {
                                if let Some(fr) = existing_obj_mut(it, &["fieldRef"]) {
                                    default_field(fr, "apiVersion", json!("v1"));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        default_field(h, "type", json!(""));
    }
}
