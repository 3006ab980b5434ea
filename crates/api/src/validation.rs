//! # Validation: what the API server refuses
//!
//! The checks Kubernetes v1.33 runs on create and update, for the built-in kinds kumo serves,
//! with upstream's field paths and messages so that `kubectl` shows the same
//! `The Deployment "web" is invalid: ...` text. Objects arrive already defaulted (see
//! [`crate::defaults`]); namespace presence and matching, name generation and cluster IP
//! allocation are the server's business and are not checked here.
//!
//! Layout: [`names`] holds the format checks (DNS labels, qualified names, ...), `meta` the
//! ObjectMeta rules every kind shares, `pod` the pod spec (also used for templates), `apps`
//! the workload controllers (with `cron` for CronJob schedules), `core` Services, ConfigMaps, Secrets, CRDs and the rest, and `storage` volumes, claims and
//! storage classes.

mod apps;
mod cluster;
mod core;
mod cron;
pub(crate) mod json;
mod meta;
pub mod names;
mod pod;
mod storage;
mod volume;

pub use names::{is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_label_value};
pub(crate) use volume::SOURCES as VOLUME_SOURCES;

use crate::resources::Resource;
use serde_json::Value;
use std::fmt;

/// The kind of a validation failure (upstream's `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ErrorType {
    /// A required field is missing.
    Required,
    /// A field has a malformed or otherwise bad value.
    Invalid,
    /// A field's value is not one of the supported values.
    NotSupported,
    /// A value repeats one that must be unique.
    Duplicate,
    /// A field may not be set or changed.
    Forbidden,
    /// A value is too long.
    TooLong,
    /// A list has too many items.
    TooMany,
    /// A value names something that does not exist.
    NotFound,
    /// A message that stands alone, with no phrase or value (an admission policy's denial).
    Message,
}

impl ErrorType {
    /// The phrase upstream prints (`Required value`, `Invalid value`, ...).
    pub fn phrase(self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::NotFound => "Not found",
            ErrorType::Message => "",
        }
    }
}

/// One validation failure of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What went wrong.
    pub type_: ErrorType,
    /// The field's path (`spec.template.spec.containers[0].image`).
    pub field: String,
    /// The bad value as upstream prints it (strings quoted, numbers bare, Go syntax for
    /// maps); `None` when the error carries no value.
    pub value: Option<String>,
    /// Further explanation (may be empty).
    pub detail: String,
}

impl FieldError {
    /// The `reason` of the `StatusCause` this error becomes (`FieldValueInvalid`, ...).
    pub fn reason(&self) -> &'static str {
        match self.type_ {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Message => "FieldValueInvalid",
        }
    }

    /// The message without the field path (upstream's `ErrorBody`, the `StatusCause` message).
    pub fn body(&self) -> String {
        if self.type_ == ErrorType::Message {
            return self.detail.clone();
        }
        let mut s = self.type_.phrase().to_string();
        let prints_value =
            !matches!(self.type_, ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong);
        if prints_value {
            if let Some(v) = &self.value {
                s.push_str(": ");
                s.push_str(v);
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// A missing field.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            type_: ErrorType::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    /// A bad value; `value` is already rendered (see [`go_quote`]).
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            type_: ErrorType::Invalid,
            field: field.into(),
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    /// A string value outside `supported` (listed in the given order, quoted).
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError {
            type_: ErrorType::NotSupported,
            field: field.into(),
            value: Some(go_quote(value)),
            detail,
        }
    }

    /// A repeated value; `value` is already rendered.
    pub fn duplicate(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldError {
            type_: ErrorType::Duplicate,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    /// A field that may not be set or changed.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            type_: ErrorType::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    /// A value that names something that does not exist; `value` is already rendered.
    pub fn not_found(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldError {
            type_: ErrorType::NotFound,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    /// A value over `max` bytes.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError {
            type_: ErrorType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }

    /// A list of `actual` items where at most `max` are allowed.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        FieldError {
            type_: ErrorType::TooMany,
            field: field.into(),
            value: Some(actual.to_string()),
            detail: format!("must have at most {max} items"),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// A string rendered as Go's `%q` does (close enough: JSON string syntax).
pub fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A string map rendered as Go's `%#v` of `map[string]string` (keys sorted).
pub fn go_string_map(v: Option<&Value>) -> String {
    let pairs = json::string_map(v);
    if v.and_then(Value::as_object).is_none() {
        return "map[string]string(nil)".into();
    }
    let inner: Vec<String> =
        pairs.iter().map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v))).collect();
    format!("map[string]string{{{}}}", inner.join(", "))
}

/// A JSON value rendered for an error message: strings quoted, numbers and booleans bare,
/// anything else as compact JSON.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// Validate an object for create (`old` is `None`) or update (`old` is the stored object).
///
/// Built-in kinds get their upstream checks; custom resources and unknown kinds get the
/// ObjectMeta checks only. The result is empty when the object is acceptable.
pub fn validate(resource: &Resource, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let builtin = resource.definition.is_some() && resource.crd_schema.is_none();
    let kind = if builtin { resource.kind.as_str() } else { "" };
    let mut errs = meta::validate_object_meta(kind, obj, old);
    if !obj.is_object() {
        return errs;
    }
    match kind {
        "Pod" => errs.extend(pod::validate_pod(obj, old)),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicationController"
        | "Job"
        | "CronJob"
        | "HorizontalPodAutoscaler"
        | "PodDisruptionBudget" => errs.extend(apps::validate(kind, obj, old)),
        "Service"
        | "ConfigMap"
        | "Secret"
        | "CustomResourceDefinition"
        | "Namespace"
        | "RoleBinding"
        | "ClusterRoleBinding"
        | "PriorityClass" => errs.extend(core::validate(kind, obj, old)),
        "PersistentVolumeClaim" | "PersistentVolume" | "StorageClass" => {
            errs.extend(storage::validate(kind, obj, old))
        }
        "PodTemplate" => errs.extend(pod::validate_pod_template(obj.get("template"), "template")),
        _ => errs.extend(cluster::validate(kind, obj, old)),
    }
    if kind == "CustomResourceDefinition" {
        for (i, v) in json::arr_at(obj, &["spec", "versions"]).iter().enumerate() {
            let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
            errs.extend(crate::cel::rules::check_compiles(&v["schema"]["openAPIV3Schema"], &path));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_field_error_format() {
        let e = FieldError::invalid("metadata.name", go_quote("Foo_Bar"), "bad");
        assert_eq!(e.to_string(), "metadata.name: Invalid value: \"Foo_Bar\": bad");
        assert_eq!(e.reason(), "FieldValueInvalid");
        let e = FieldError::required("spec.containers[0].image", "");
        assert_eq!(e.to_string(), "spec.containers[0].image: Required value");
        let e = FieldError::not_supported(
            "spec.restartPolicy",
            "Sometimes",
            &["Always", "OnFailure", "Never"],
        );
        assert_eq!(
            e.to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(e.reason(), "FieldValueNotSupported");
        let e = FieldError::too_long("metadata.annotations", 262144);
        assert_eq!(
            e.to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        let e = FieldError::forbidden("spec", "nope");
        assert_eq!(e.to_string(), "spec: Forbidden: nope");
        let e = FieldError::duplicate("spec.containers[1].name", go_quote("web"));
        assert_eq!(e.to_string(), "spec.containers[1].name: Duplicate value: \"web\"");
        assert_eq!(
            FieldError::too_many("x", 5, 3).to_string(),
            "x: Too many: 5: must have at most 3 items"
        );
    }

    #[test]
    fn go_map_rendering() {
        let v = serde_json::json!({"b": "2", "a": "1"});
        assert_eq!(go_string_map(Some(&v)), "map[string]string{\"a\":\"1\", \"b\":\"2\"}");
        assert_eq!(go_string_map(None), "map[string]string(nil)");
    }
}
