//! Label and field selectors: which objects a `list` or `watch` returns.
//!
//! * [`LabelSelector`] — the `labelSelector` query parameter (`app=web,tier in (a,b),!canary`)
//!   and the `metav1.LabelSelector` objects of workloads (`spec.selector` with `matchLabels` and
//!   `matchExpressions`); its [`Display`](std::fmt::Display) form is the canonical string
//!   Kubernetes prints, e.g. for `status.selector` of the scale subresource.
//! * [`FieldSelector`] — the `fieldSelector` query parameter (`metadata.name=x,status.phase!=Running`),
//!   matched against the object's fields read with [`field_value`].
//!
//! Parsing follows apimachinery's `labels.Parse` and `fields.ParseSelector`, error messages
//! included, so that clients see what they would see from Kubernetes.
//!
//! ```
//! use kumo_api::selector::{FieldSelector, LabelSelector};
//! use serde_json::json;
//!
//! let sel = LabelSelector::parse("tier in (web, api),app=shop,!canary").unwrap();
//! assert_eq!(sel.to_string(), "app=shop,!canary,tier in (api,web)");
//! let labels = json!({"app": "shop", "tier": "web"});
//! assert!(sel.matches(labels.as_object()));
//!
//! let fields = FieldSelector::parse("status.phase!=Running,metadata.name=db").unwrap();
//! assert!(fields.matches(&json!({"metadata": {"name": "db"}, "status": {"phase": "Pending"}})));
//! ```

use serde_json::Value;

mod fields;
mod labels;

pub use fields::FieldSelector;
pub use labels::LabelSelector;

/// Why a selector could not be parsed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SelectorError {
    /// A label selector requirement is malformed or names an invalid key or value.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A label selector string does not follow the grammar.
    #[error("{0}")]
    Syntax(String),
    /// A `metav1.LabelSelector` object is malformed.
    #[error("invalid label selector: {0}")]
    InvalidLabelSelector(String),
    /// A field selector term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole selector.
        selector: String,
        /// The term that could not be understood.
        term: String,
    },
    /// A field selector value has a backslash escape other than `\\`, `\,` and `\=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value has an unescaped `,` or `=`.
    #[error("invalid field selector: unescaped character in value: {0}")]
    UnescapedChar(char),
}

/// The string value of the dotted field path `path` in `obj` (`metadata.name`,
/// `spec.nodeName`, `status.phase`).
///
/// Strings are returned as they are, numbers and booleans as their JSON text (`3`, `true`),
/// maps and lists as JSON; a missing field or `null` is `""`, as Kubernetes treats an unset field.
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(next) => cur = next,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_values() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns", "generation": 3},
            "spec": {"nodeName": "n1", "hostNetwork": true, "schedulerName": null},
            "status": {"phase": "Running"}
        });
        let cases = [
            ("metadata.name", "p"),
            ("metadata.namespace", "ns"),
            ("metadata.generation", "3"),
            ("spec.nodeName", "n1"),
            ("spec.hostNetwork", "true"),
            ("spec.schedulerName", ""),
            ("status.phase", "Running"),
            ("status.podIP", ""),
            ("metadata.name.x", ""),
            ("", ""),
        ];
        for (path, want) in cases {
            assert_eq!(field_value(&pod, path), want, "{path}");
        }
        assert_eq!(field_value(&json!("x"), "a"), "");
    }
}
