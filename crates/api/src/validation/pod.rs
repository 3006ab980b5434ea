//! Pod spec rules, shared by Pods and every pod template (Deployments, Jobs, ...), and the
//! Pod update rule (the spec is immutable apart from images, deadlines and tolerations).

use super::json::{arr_at, as_int, at, int_at, str_at};
use super::meta::{validate_annotations, validate_labels};
use super::names::{
    inclusive_range_error, is_dns1123_label, is_env_var_name, is_valid_port_name, is_valid_port_num,
};
use super::volume;
use super::{go_quote, render_value, FieldError};
use serde_json::Value;
use std::collections::BTreeSet;

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// The Pod update rule's message (what may change).
pub const POD_UPDATE_MESSAGE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// A whole Pod: its spec, and on update the immutability rule.
pub(crate) fn validate_pod(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let empty = Value::Null;
    let spec = at(obj, &["spec"]).unwrap_or(&empty);
    let mut errs = validate_pod_spec(spec, "spec");
    if let Some(old) = old {
        let old_spec = at(old, &["spec"]).unwrap_or(&empty);
        errs.extend(validate_pod_spec_update(spec, old_spec));
    }
    errs
}

/// A pod template: its labels and annotations, and its spec.
pub(crate) fn validate_pod_template(template: Option<&Value>, path: &str) -> Vec<FieldError> {
    validate_pod_template_with(template, path, &[])
}

/// A pod template whose `volumeMounts` may also name `claims` (a StatefulSet's
/// `volumeClaimTemplates`, which become volumes of its pods).
pub(crate) fn validate_pod_template_with(
    template: Option<&Value>,
    path: &str,
    claims: &[String],
) -> Vec<FieldError> {
    let Some(t) = template.filter(|t| t.is_object()) else {
        return vec![FieldError::required(path, "")];
    };
    let mut errs =
        validate_labels(at(t, &["metadata", "labels"]), &format!("{path}.metadata.labels"));
    errs.extend(validate_annotations(
        at(t, &["metadata", "annotations"]),
        &format!("{path}.metadata.annotations"),
    ));
    let empty = Value::Null;
    let spec = at(t, &["spec"]).unwrap_or(&empty);
    errs.extend(validate_pod_spec_with(spec, &format!("{path}.spec"), claims));
    errs
}

/// A pod spec at `path`.
pub(crate) fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    validate_pod_spec_with(spec, path, &[])
}

/// A pod spec at `path` whose mounts may also name the volumes `extra`.
fn validate_pod_spec_with(spec: &Value, path: &str, extra: &[String]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    // Volumes: named, DNS labels, unique, one source each.
    let mut volumes = BTreeSet::new();
    for (i, v) in arr_at(spec, &["volumes"]).iter().enumerate() {
        errs.extend(volume::validate_volume_source(v, &format!("{path}.volumes[{i}]")));
        let p = format!("{path}.volumes[{i}].name");
        let name = str_at(v, &["name"]).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(p, ""));
            continue;
        }
        for msg in is_dns1123_label(name) {
            errs.push(FieldError::invalid(p.clone(), go_quote(name), msg));
        }
        if !volumes.insert(name.to_string()) {
            errs.push(FieldError::duplicate(p, go_quote(name)));
        }
    }
    let mut mountable = volumes.clone();
    mountable.extend(extra.iter().cloned());
    // Containers, then init containers (whose names must not clash with either list).
    let containers = arr_at(spec, &["containers"]);
    let mut names = BTreeSet::new();
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{path}.containers[{i}]");
        errs.extend(validate_container(c, &p, &mut names));
        errs.extend(volume::validate_volume_mounts(c, &p, &mountable));
    }
    for (i, c) in arr_at(spec, &["initContainers"]).iter().enumerate() {
        let p = format!("{path}.initContainers[{i}]");
        errs.extend(validate_container(c, &p, &mut names));
        errs.extend(volume::validate_volume_mounts(c, &p, &mountable));
    }
    if let Some(policy) = str_at(spec, &["restartPolicy"]) {
        match policy {
            "Always" | "OnFailure" | "Never" => {}
            "" => errs.push(FieldError::required(format!("{path}.restartPolicy"), "")),
            other => errs.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                other,
                &["Always", "OnFailure", "Never"],
            )),
        }
    }
    if let Some(policy) = str_at(spec, &["dnsPolicy"]) {
        if !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None", ""].contains(&policy) {
            errs.push(FieldError::not_supported(
                format!("{path}.dnsPolicy"),
                policy,
                &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
            ));
        }
    }
    if let Some(v) = at(spec, &["activeDeadlineSeconds"]).filter(|v| !v.is_null()) {
        match as_int(v) {
            Some(n) if (1..=i64::from(i32::MAX)).contains(&n) => {}
            _ => errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                render_value(v),
                inclusive_range_error(1, i64::from(i32::MAX)),
            )),
        }
    }
    if let Some(n) = int_at(spec, &["terminationGracePeriodSeconds"]) {
        if n < 0 {
            errs.push(FieldError::invalid(
                format!("{path}.terminationGracePeriodSeconds"),
                n.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    errs
}

fn validate_container(c: &Value, path: &str, names: &mut BTreeSet<String>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(c, &["name"]).unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        for msg in is_dns1123_label(name) {
            errs.push(FieldError::invalid(format!("{path}.name"), go_quote(name), msg));
        }
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), go_quote(name)));
        }
    }
    let image = str_at(c, &["image"]).unwrap_or("");
    if image.is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            format!("{path}.image"),
            go_quote(image),
            "must not have leading or trailing whitespace",
        ));
    }
    if let Some(policy) = str_at(c, &["imagePullPolicy"]).filter(|p| !p.is_empty()) {
        if !["Always", "IfNotPresent", "Never"].contains(&policy) {
            errs.push(FieldError::not_supported(
                format!("{path}.imagePullPolicy"),
                policy,
                &["Always", "IfNotPresent", "Never"],
            ));
        }
    }
    let mut port_names = BTreeSet::new();
    for (i, p) in arr_at(c, &["ports"]).iter().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        if let Some(pn) = str_at(p, &["name"]).filter(|s| !s.is_empty()) {
            let msgs = is_valid_port_name(pn);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid(format!("{pp}.name"), go_quote(pn), msg));
                }
            } else if !port_names.insert(pn.to_string()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), go_quote(pn)));
            }
        }
        match at(p, &["containerPort"]).filter(|v| !v.is_null()) {
            None => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
            Some(v) => match as_int(v) {
                Some(0) => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
                Some(n) => {
                    for msg in is_valid_port_num(n) {
                        errs.push(FieldError::invalid(
                            format!("{pp}.containerPort"),
                            n.to_string(),
                            msg,
                        ));
                    }
                }
                None => errs.push(FieldError::invalid(
                    format!("{pp}.containerPort"),
                    render_value(v),
                    inclusive_range_error(1, 65535),
                )),
            },
        }
        if let Some(n) = int_at(p, &["hostPort"]).filter(|n| *n != 0) {
            for msg in is_valid_port_num(n) {
                errs.push(FieldError::invalid(format!("{pp}.hostPort"), n.to_string(), msg));
            }
        }
        if let Some(proto) = str_at(p, &["protocol"]) {
            if proto.is_empty() {
                errs.push(FieldError::required(format!("{pp}.protocol"), ""));
            } else if !PROTOCOLS.contains(&proto) {
                errs.push(FieldError::not_supported(format!("{pp}.protocol"), proto, PROTOCOLS));
            }
        }
    }
    for (i, e) in arr_at(c, &["env"]).iter().enumerate() {
        let ep = format!("{path}.env[{i}].name");
        let n = str_at(e, &["name"]).unwrap_or("");
        if n.is_empty() {
            errs.push(FieldError::required(ep, ""));
        } else {
            for msg in is_env_var_name(n) {
                errs.push(FieldError::invalid(ep.clone(), go_quote(n), msg));
            }
        }
        let has_value = str_at(e, &["value"]).is_some_and(|v| !v.is_empty());
        if has_value && at(e, &["valueFrom"]).is_some_and(Value::is_object) {
            errs.push(FieldError::invalid(
                format!("{path}.env[{i}].valueFrom"),
                "\"\"",
                "may not be specified when `value` is not empty",
            ));
        }
    }
    errs
}

/// The Pod update rule: after taking over the fields that may change, the new spec must equal
/// the old one.
fn validate_pod_spec_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut munged = new.clone();
    if let Some(m) = munged.as_object_mut() {
        for list in ["containers", "initContainers"] {
            let old_list = arr_at(old, &[list]);
            if let Some(Value::Array(items)) = m.get_mut(list) {
                if items.len() == old_list.len() {
                    for (item, old_item) in items.iter_mut().zip(old_list) {
                        if let (Some(obj), Some(img)) =
                            (item.as_object_mut(), at(old_item, &["image"]))
                        {
                            obj.insert("image".into(), img.clone());
                        }
                    }
                }
            }
        }
        // activeDeadlineSeconds may be set, or lowered, but not unset or raised.
        let old_ads = int_at(old, &["activeDeadlineSeconds"]);
        let new_ads = m.get("activeDeadlineSeconds").and_then(as_int);
        let ads_ok = match (old_ads, new_ads) {
            (None, _) => true,
            (Some(o), Some(n)) => n <= o,
            (Some(_), None) => false,
        };
        if ads_ok {
            match at(old, &["activeDeadlineSeconds"]) {
                Some(v) => m.insert("activeDeadlineSeconds".into(), v.clone()),
                None => m.remove("activeDeadlineSeconds"),
            };
        }
        // Tolerations may only be added to.
        let old_tol = arr_at(old, &["tolerations"]);
        let new_tol = m.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
        if old_tol.iter().all(|t| new_tol.contains(t)) {
            match at(old, &["tolerations"]) {
                Some(v) => m.insert("tolerations".into(), v.clone()),
                None => m.remove("tolerations"),
            };
        }
        // A negative grace period may be raised to 1.
        if int_at(old, &["terminationGracePeriodSeconds"]).is_some_and(|g| g < 0)
            && m.get("terminationGracePeriodSeconds").and_then(as_int) == Some(1)
        {
            if let Some(v) = at(old, &["terminationGracePeriodSeconds"]) {
                m.insert("terminationGracePeriodSeconds".into(), v.clone());
            }
        }
    }
    if &munged == old {
        return vec![];
    }
    let mut diff = Vec::new();
    spec_diff(old, &munged, "", &mut diff);
    let body = diff.join("\n");
    vec![FieldError::forbidden(
        "spec",
        format!("{POD_UPDATE_MESSAGE}\n  core.PodSpec{{\n{body}\n  }}\n"),
    )]
}

/// A compact line diff of two JSON values (`-` old, `+` new), in the spirit of upstream's.
fn spec_diff(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    if out.len() > 40 || old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                spec_diff(
                    a.get(k.as_str()).unwrap_or(&Value::Null),
                    b.get(k.as_str()).unwrap_or(&Value::Null),
                    &p,
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                spec_diff(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            if !old.is_null() {
                out.push(format!("- \t{path}: {old},"));
            }
            if !new.is_null() {
                out.push(format!("+ \t{path}: {new},"));
            }
        }
    }
}
