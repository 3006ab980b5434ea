//! Services, ConfigMaps, Secrets, CustomResourceDefinitions, Namespaces and a few smaller
//! core rules (bindings, priority classes).

use super::json::{arr_at, as_int, at, bool_at, obj_at, str_at};
use super::names::{
    is_config_map_key, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain,
    is_valid_port_name, is_valid_port_num,
};
use super::{go_quote, FieldError};
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeSet;

/// Most bytes a ConfigMap's or Secret's data may take.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

pub(crate) fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match kind {
        "Service" => validate_service(obj, old),
        "ConfigMap" => validate_config_map(obj, old),
        "Secret" => validate_secret(obj, old),
        "CustomResourceDefinition" => validate_crd(obj),
        "Namespace" => validate_namespace(obj),
        "RoleBinding" | "ClusterRoleBinding" => validate_binding(obj, old),
        "PriorityClass" => validate_priority_class(obj, old),
        _ => vec![],
    }
}

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

fn validate_service(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ty = str_at(obj, &["spec", "type"]).unwrap_or("ClusterIP");
    let cluster_ip = str_at(obj, &["spec", "clusterIP"]).unwrap_or("");
    let headless = cluster_ip == "None";
    let ports = arr_at(obj, &["spec", "ports"]);
    if !SERVICE_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", ty, SERVICE_TYPES));
    }
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    if ty == "ExternalName" {
        let name = str_at(obj, &["spec", "externalName"]).unwrap_or("");
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        if trimmed.is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        } else {
            for msg in is_dns1123_subdomain(trimmed) {
                errs.push(FieldError::invalid("spec.externalName", go_quote(trimmed), msg));
            }
        }
    }
    let require_name = ports.len() > 1;
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = str_at(p, &["name"]).unwrap_or("");
        if require_name && name.is_empty() {
            errs.push(FieldError::required(format!("{pp}.name"), ""));
        } else if !name.is_empty() {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(format!("{pp}.name"), go_quote(name), msg));
            }
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), go_quote(name)));
            }
        }
        let port = at(p, &["port"]).and_then(as_int).unwrap_or(0);
        for msg in is_valid_port_num(port) {
            errs.push(FieldError::invalid(format!("{pp}.port"), port.to_string(), msg));
        }
        let proto = str_at(p, &["protocol"]).unwrap_or("TCP");
        if proto.is_empty() {
            errs.push(FieldError::required(format!("{pp}.protocol"), ""));
        } else if !PROTOCOLS.contains(&proto) {
            errs.push(FieldError::not_supported(format!("{pp}.protocol"), proto, PROTOCOLS));
        }
        match at(p, &["targetPort"]) {
            Some(Value::String(s)) => {
                for msg in is_valid_port_name(s) {
                    errs.push(FieldError::invalid(format!("{pp}.targetPort"), go_quote(s), msg));
                }
            }
            Some(v @ Value::Number(_)) => {
                let n = as_int(v).unwrap_or(-1);
                if n != 0 {
                    for msg in is_valid_port_num(n) {
                        errs.push(FieldError::invalid(
                            format!("{pp}.targetPort"),
                            n.to_string(),
                            msg,
                        ));
                    }
                }
            }
            _ => {}
        }
        if ty == "ClusterIP" && at(p, &["nodePort"]).and_then(as_int).is_some_and(|n| n != 0) {
            errs.push(FieldError::forbidden(
                format!("{pp}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
        if !seen.insert((proto.to_string(), port)) {
            errs.push(FieldError::duplicate(
                pp,
                format!("core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}", go_quote(proto)),
            ));
        }
    }
    if let Some(sa) = str_at(obj, &["spec", "sessionAffinity"]).filter(|s| !s.is_empty()) {
        if sa != "None" && sa != "ClientIP" {
            errs.push(FieldError::not_supported("spec.sessionAffinity", sa, &["ClientIP", "None"]));
        }
    }
    if let Some(old) = old {
        let old_ty = str_at(old, &["spec", "type"]).unwrap_or("ClusterIP");
        let old_ip = str_at(old, &["spec", "clusterIP"]).unwrap_or("");
        // The cluster IP is fixed once allocated, unless the service turns into (or out of)
        // an ExternalName one. An empty new value means "keep" (the server fills it in).
        if ty != "ExternalName"
            && old_ty != "ExternalName"
            && !old_ip.is_empty()
            && !cluster_ip.is_empty()
            && cluster_ip != old_ip
        {
            let ips: Vec<String> = arr_at(obj, &["spec", "clusterIPs"])
                .iter()
                .filter_map(Value::as_str)
                .map(go_quote)
                .collect();
            let shown = if ips.is_empty() {
                format!("[]string{{{}}}", go_quote(cluster_ip))
            } else {
                format!("[]string{{{}}}", ips.join(", "))
            };
            errs.push(FieldError::invalid("spec.clusterIPs[0]", shown, "may not change once set"));
        }
    }
    errs
}

fn data_errors(obj: &Value, binary: bool, errs: &mut Vec<FieldError>) -> usize {
    let mut total = 0usize;
    let mut keys = BTreeSet::new();
    let fields: &[&str] = if binary { &["data", "binaryData"] } else { &["data", "stringData"] };
    for field in fields {
        let Some(map) = obj_at(obj, &[field]) else { continue };
        for (k, v) in map {
            for msg in is_config_map_key(k) {
                errs.push(FieldError::invalid(format!("{field}[{k}]"), go_quote(k), msg));
            }
            if binary && !keys.insert(k.clone()) {
                errs.push(FieldError::invalid(
                    format!("{field}[{k}]"),
                    go_quote(k),
                    "duplicate of key present in binaryData",
                ));
            }
            total += k.len();
            total += match v.as_str() {
                // Secret data and ConfigMap binaryData travel base64-encoded.
                Some(s) if (!binary && *field == "data") || *field == "binaryData" => {
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map(|b| b.len())
                        .unwrap_or(s.len())
                }
                Some(s) => s.len(),
                None => v.to_string().len(),
            };
        }
    }
    total
}

fn validate_immutable_data(
    obj: &Value,
    old: Option<&Value>,
    fields: &[&str],
    errs: &mut Vec<FieldError>,
) {
    let Some(old) = old else { return };
    if bool_at(old, &["immutable"]) != Some(true) {
        return;
    }
    for f in fields {
        if at(obj, &[f]) != at(old, &[f]) {
            errs.push(FieldError::forbidden(*f, "field is immutable when `immutable` is set"));
        }
    }
    if bool_at(obj, &["immutable"]) != Some(true) {
        errs.push(FieldError::forbidden("immutable", "field is immutable when `immutable` is set"));
    }
}

fn validate_config_map(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let total = data_errors(obj, true, &mut errs);
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("", MAX_DATA_SIZE));
    }
    validate_immutable_data(obj, old, &["data", "binaryData"], &mut errs);
    errs
}

fn validate_secret(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let total = data_errors(obj, false, &mut errs);
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("data", MAX_DATA_SIZE));
    }
    let has = |k: &str| {
        obj_at(obj, &["data"]).is_some_and(|m| m.contains_key(k))
            || obj_at(obj, &["stringData"]).is_some_and(|m| m.contains_key(k))
    };
    let ty = str_at(obj, &["type"]).unwrap_or("Opaque");
    match ty {
        "kubernetes.io/service-account-token"
            if str_at(obj, &["metadata", "annotations", "kubernetes.io/service-account.name"])
                .unwrap_or("")
                .is_empty() =>
        {
            errs.push(FieldError::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            ));
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => {
            errs.push(FieldError::required("data[.dockercfg]", ""))
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(FieldError::required("data[.dockerconfigjson]", ""))
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => {
            errs.push(FieldError::required("data[ssh-privatekey]", ""))
        }
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                errs.push(FieldError::required("data[tls.crt]", ""));
            }
            if !has("tls.key") {
                errs.push(FieldError::required("data[tls.key]", ""));
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        let old_ty = str_at(old, &["type"]).unwrap_or("Opaque");
        if old_ty != ty {
            errs.push(FieldError::invalid("type", go_quote(ty), "field is immutable"));
        }
    }
    validate_immutable_data(obj, old, &["data"], &mut errs);
    errs
}

fn validate_crd(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = str_at(obj, &["spec", "group"]).unwrap_or("");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        for msg in is_dns1123_subdomain(group) {
            errs.push(FieldError::invalid("spec.group", go_quote(group), msg));
        }
        if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                go_quote(group),
                "should be a domain with at least one dot",
            ));
        }
    }
    match str_at(obj, &["spec", "scope"]).unwrap_or("") {
        "Cluster" | "Namespaced" => {}
        "" => errs.push(FieldError::required("spec.scope", "")),
        other => {
            errs.push(FieldError::not_supported("spec.scope", other, &["Cluster", "Namespaced"]))
        }
    }
    let plural = str_at(obj, &["spec", "names", "plural"]).unwrap_or("");
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    } else {
        let msgs = is_dns1035_label(plural);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid("spec.names.plural", go_quote(plural), msgs.join(",")));
        }
    }
    if let Some(singular) = str_at(obj, &["spec", "names", "singular"]).filter(|s| !s.is_empty()) {
        let msgs = is_dns1035_label(singular);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                "spec.names.singular",
                go_quote(singular),
                msgs.join(","),
            ));
        }
    }
    let kind = str_at(obj, &["spec", "names", "kind"]).unwrap_or("");
    if kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    } else {
        let msgs = is_dns1035_label(&kind.to_lowercase());
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                "spec.names.kind",
                go_quote(kind),
                format!("may have mixed case, but should otherwise match: {}", msgs.join(",")),
            ));
        }
    }
    let versions = arr_at(obj, &["spec", "versions"]);
    let shown =
        at(obj, &["spec", "versions"]).map(|v| v.to_string()).unwrap_or_else(|| "null".into());
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            shown.clone(),
            "must have exactly one version marked as storage version",
        ));
        return errs;
    }
    let mut names = BTreeSet::new();
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let name = str_at(v, &["name"]).unwrap_or("");
        let msgs = is_dns1035_label(name);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                format!("spec.versions[{i}].name"),
                go_quote(name),
                msgs.join(","),
            ));
        }
        names.insert(name.to_string());
        if bool_at(v, &["storage"]) == Some(true) {
            storage += 1;
        }
    }
    if names.len() != versions.len() {
        errs.push(FieldError::invalid(
            "spec.versions",
            shown.clone(),
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            shown,
            "must have exactly one version marked as storage version",
        ));
    }
    errs
}

fn validate_namespace(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, f) in arr_at(obj, &["spec", "finalizers"]).iter().enumerate() {
        let s = f.as_str().unwrap_or("");
        if s.is_empty() {
            errs.push(FieldError::required(format!("spec.finalizers[{i}]"), ""));
        }
    }
    errs
}

fn validate_binding(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let kind = str_at(obj, &["roleRef", "kind"]).unwrap_or("");
    match kind {
        "Role" | "ClusterRole" => {}
        "" => errs.push(FieldError::required("roleRef.kind", "")),
        other => {
            errs.push(FieldError::not_supported("roleRef.kind", other, &["ClusterRole", "Role"]))
        }
    }
    if str_at(obj, &["roleRef", "name"]).unwrap_or("").is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    }
    for (i, s) in arr_at(obj, &["subjects"]).iter().enumerate() {
        if str_at(s, &["name"]).unwrap_or("").is_empty() {
            errs.push(FieldError::required(format!("subjects[{i}].name"), ""));
        }
        match str_at(s, &["kind"]).unwrap_or("") {
            "ServiceAccount" | "User" | "Group" => {}
            other => errs.push(FieldError::not_supported(
                format!("subjects[{i}].kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old {
        if at(old, &["roleRef"]).is_some() && at(obj, &["roleRef"]) != at(old, &["roleRef"]) {
            let r = at(obj, &["roleRef"]);
            let shown = format!(
                "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                go_quote(r.and_then(|r| str_at(r, &["apiGroup"])).unwrap_or("")),
                go_quote(r.and_then(|r| str_at(r, &["kind"])).unwrap_or("")),
                go_quote(r.and_then(|r| str_at(r, &["name"])).unwrap_or(""))
            );
            errs.push(FieldError::invalid("roleRef", shown, "cannot change roleRef"));
        }
    }
    errs
}

fn validate_priority_class(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(obj, &["metadata", "name"]).unwrap_or("");
    let value = at(obj, &["value"]).and_then(as_int).unwrap_or(0);
    if name.starts_with("system-")
        && !["system-node-critical", "system-cluster-critical"].contains(&name)
    {
        errs.push(FieldError::forbidden(
            "metadata.name",
            "priority class names with 'system-' prefix are reserved for system use only",
        ));
    }
    if value > 1_000_000_000 && !name.starts_with("system-") {
        errs.push(FieldError::forbidden(
            "value",
            "maximum allowed value of a user defined priority is 1000000000",
        ));
    }
    if let Some(old) = old {
        if at(old, &["value"]).is_some() && at(obj, &["value"]) != at(old, &["value"]) {
            errs.push(FieldError::forbidden("value", "may not be changed in an update."));
        }
    }
    if let Some(p) = str_at(obj, &["preemptionPolicy"]).filter(|p| !p.is_empty()) {
        if p != "Never" && p != "PreemptLowerPriority" {
            errs.push(FieldError::not_supported(
                "preemptionPolicy",
                p,
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
    errs
}
