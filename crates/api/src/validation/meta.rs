//! ObjectMeta rules every kind shares: the name (whose format depends on the kind),
//! `generateName`, labels, annotations, and the name's immutability on update.

use super::json::{at, obj_at, str_or_empty};
use super::names::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value, is_valid_path_segment_name,
};
use super::{go_quote, FieldError};
use serde_json::Value;

/// Most bytes all annotations of an object may take together.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// The name rule of a kind (upstream's `ValidateNameFunc`); `prefix` for `generateName`.
fn name_messages(kind: &str, obj: &Value, name: &str, prefix: bool) -> Vec<String> {
    let masked = if prefix { mask_trailing_dash(name) } else { name.to_string() };
    match kind {
        "Namespace" => is_dns1123_label(&masked),
        "Service" => is_dns1035_label(&masked),
        "Role"
        | "ClusterRole"
        | "RoleBinding"
        | "ClusterRoleBinding"
        | "APIService"
        | "FlowSchema"
        | "PriorityLevelConfiguration"
        | "CertificateSigningRequest"
        | "IPAddress" => is_valid_path_segment_name(name),
        "CustomResourceDefinition" => {
            let mut out = is_dns1123_subdomain(&masked);
            let plural = str_or_empty(obj, &["spec", "names", "plural"]);
            let group = str_or_empty(obj, &["spec", "group"]);
            if name != format!("{plural}.{group}") {
                out.push("must be spec.names.plural+\".\"+spec.group".to_string());
            }
            out
        }
        _ => is_dns1123_subdomain(&masked),
    }
}

/// Upstream replaces a trailing dash of a prefix so that `web-` passes as a prefix.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let cut = name.len().saturating_sub(2);
        match name.get(..cut) {
            Some(head) => format!("{head}a"),
            None => name.to_string(),
        }
    } else {
        name.to_string()
    }
}

/// Labels: qualified-name keys and label values, reported at `path`.
pub(crate) fn validate_labels(labels: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = labels.and_then(Value::as_object) else {
        return errs;
    };
    for (k, v) in map {
        for msg in is_qualified_name(k) {
            errs.push(FieldError::invalid(path, go_quote(k), msg));
        }
        match v.as_str() {
            Some(s) => {
                for msg in is_valid_label_value(s) {
                    errs.push(FieldError::invalid(path, go_quote(s), msg));
                }
            }
            None => {
                errs.push(FieldError::invalid(path, super::render_value(v), "must be a string"))
            }
        }
    }
    errs
}

/// Annotations: qualified-name keys (checked lower-cased) and a total size limit.
pub(crate) fn validate_annotations(annotations: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = annotations.and_then(Value::as_object) else {
        return errs;
    };
    let mut total = 0usize;
    for (k, v) in map {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, go_quote(k), msg));
        }
        total += k.len() + v.as_str().map(str::len).unwrap_or_else(|| v.to_string().len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// The ObjectMeta checks of `kind` (`""` for custom resources and unknown kinds).
pub(crate) fn validate_object_meta(
    kind: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !obj.is_object() {
        errs.push(FieldError::invalid("", super::render_value(obj), "must be an object"));
        return errs;
    }
    let name = str_or_empty(obj, &["metadata", "name"]);
    let generate = str_or_empty(obj, &["metadata", "generateName"]);
    if !generate.is_empty() {
        for msg in name_messages(kind, obj, generate, true) {
            errs.push(FieldError::invalid("metadata.generateName", go_quote(generate), msg));
        }
    }
    if name.is_empty() {
        // With a generateName the server makes up the name before it gets here.
        if generate.is_empty() {
            errs.push(FieldError::required("metadata.name", "name or generateName is required"));
        }
    } else {
        for msg in name_messages(kind, obj, name, false) {
            errs.push(FieldError::invalid("metadata.name", go_quote(name), msg));
        }
    }
    if kind == "CronJob" && name.len() > 52 {
        errs.push(FieldError::invalid(
            "metadata.name",
            go_quote(name),
            "must be no more than 52 characters",
        ));
    }
    errs.extend(validate_labels(at(obj, &["metadata", "labels"]), "metadata.labels"));
    errs.extend(validate_annotations(
        at(obj, &["metadata", "annotations"]),
        "metadata.annotations",
    ));
    if let Some(old) = old {
        let old_name = str_or_empty(old, &["metadata", "name"]);
        if obj_at(old, &["metadata"]).is_some() && !old_name.is_empty() && old_name != name {
            errs.push(FieldError::invalid("metadata.name", go_quote(name), "field is immutable"));
        }
    }
    errs
}
