//! CRD validation rules: the `x-kubernetes-validations` of a structural schema, evaluated on
//! a custom resource as the apiextensions server does
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules>).
//!
//! Each rule sees `self`, the value at the schema node that declares it, and, on an update,
//! `oldSelf`, the value at the same place in the stored object. A rule that mentions `oldSelf`
//! is a transition rule: it is checked only when both exist (on updates, for values that
//! correlate — object properties, map entries and items of `x-kubernetes-list-type: map`
//! lists by their keys). A failed rule is a field error at the node's path (plus the rule's
//! `fieldPath`), worded by `messageExpression`, else `message`, else `failed rule: <rule>`,
//! typed by `reason`.

use super::{Activation, Program};
use crate::validation::{go_quote, ErrorType, FieldError};
use serde_json::Value;

/// Check every rule of `schema` (a CRD version's `openAPIV3Schema`) against `obj`; `old` is
/// the stored object on updates.
pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(schema, obj, old, "", &mut errors);
    errors
}

/// Compile every rule of a CRD version's schema: a rule that does not parse is refused when
/// the CRD is written, as upstream. `path` is the schema's own path
/// (`spec.versions[0].schema.openAPIV3Schema`).
pub fn check_compiles(schema: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    compile_walk(schema, path, &mut errors);
    errors
}

fn compile_walk(schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    for (i, rule) in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for key in ["rule", "messageExpression"] {
            if let Some(src) = rule.get(key).and_then(Value::as_str) {
                if let Err(e) = Program::compile(src) {
                    errors.push(FieldError::invalid(
                        format!("{path}.x-kubernetes-validations[{i}].{key}"),
                        go_quote(src),
                        e.to_string(),
                    ));
                }
            }
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, child) in props {
            compile_walk(child, &format!("{path}.properties[{k}]"), errors);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = schema.get(key).filter(|c| c.is_object()) {
            compile_walk(child, &format!("{path}.{key}"), errors);
        }
    }
}

fn join(path: &str, child: &str) -> String {
    if path.is_empty() {
        child.to_string()
    } else {
        format!("{path}.{child}")
    }
}

fn walk(schema: &Value, v: &Value, old: Option<&Value>, path: &str, errors: &mut Vec<FieldError>) {
    if v.is_null() {
        return;
    }
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        for rule in rules {
            check_rule(schema, rule, v, old, path, errors);
        }
    }
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in map {
                let child_schema = props.and_then(|p| p.get(k)).or(additional);
                if let Some(cs) = child_schema {
                    let old_child = old.and_then(|o| o.get(k));
                    walk(cs, child, old_child, &join(path, k), errors);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else { return };
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let is_map = schema.get("x-kubernetes-list-type").and_then(Value::as_str)
                == Some("map")
                && !keys.is_empty();
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                // Only map lists correlate items with the old list (by their keys).
                let old_item = if is_map {
                    old_items.and_then(|olds| {
                        olds.iter().find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
                    })
                } else {
                    None
                };
                walk(item_schema, item, old_item, &format!("{path}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

fn check_rule(
    schema: &Value,
    rule: &Value,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(source) = rule.get("rule").and_then(Value::as_str) else { return };
    let mut field = path.to_string();
    if let Some(extra) = rule.get("fieldPath").and_then(Value::as_str) {
        field.push_str(extra);
        if path.is_empty() {
            field = field.trim_start_matches('.').to_string();
        }
    }
    let type_ = schema.get("type").and_then(Value::as_str).unwrap_or("object");
    let program = match Program::compile(source) {
        Ok(p) => p,
        Err(e) => {
            errors.push(FieldError::invalid(
                field,
                go_quote(type_),
                format!("rule {source:?}: {e}"),
            ));
            return;
        }
    };
    let transition = program.references("oldSelf");
    if transition && old.is_none() {
        return;
    }
    let mut vars = Activation::default();
    vars.bind_json("self", v);
    if let Some(o) = old {
        vars.bind_json("oldSelf", o);
    }
    let message = match program.eval_bool(&vars) {
        Ok(true) => return,
        Ok(false) => failure_message(rule, source, &vars),
        Err(e) => format!("{source}: {e}"),
    };
    let reason = rule.get("reason").and_then(Value::as_str).unwrap_or("FieldValueInvalid");
    let error = match reason {
        "FieldValueForbidden" => FieldError::forbidden(field, message),
        "FieldValueRequired" => FieldError::required(field, message),
        "FieldValueDuplicate" => FieldError {
            type_: ErrorType::Duplicate,
            field,
            value: Some(go_quote(type_)),
            detail: message,
        },
        _ => FieldError::invalid(field, go_quote(type_), message),
    };
    errors.push(error);
}

/// `messageExpression` when it gives a non-empty string, else `message`, else the rule.
fn failure_message(rule: &Value, source: &str, vars: &Activation) -> String {
    if let Some(expr) = rule.get("messageExpression").and_then(Value::as_str) {
        if let Ok(msg) = Program::compile(expr).and_then(|p| p.eval_string(vars)) {
            if !msg.trim().is_empty() {
                return msg;
            }
        }
    }
    match rule.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => format!("failed rule: {source}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.min <= self.max", "message": "min must not exceed max"},
            {"rule": "self.size == oldSelf.size || !oldSelf.locked", "messageExpression": "'size is locked at ' + string(oldSelf.size)", "fieldPath": ".size"},
            {"rule": "!has(self.banned)", "reason": "FieldValueForbidden"}
        ],
        "properties": {
            "min": {"type": "integer"}, "max": {"type": "integer"},
            "size": {"type": "integer"}, "locked": {"type": "boolean"},
            "banned": {"type": "string"},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port", "message": "port is immutable"}],
                    "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
            "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self.startsWith('x')"}]}
        }}}})
    }

    #[test]
    fn rules_see_self_and_report_at_their_node() {
        let s = schema();
        let ok = json!({"spec": {"min": 1, "max": 2, "name": "xy"}});
        assert!(validate(&s, &ok, None).is_empty());
        let bad = json!({"spec": {"min": 3, "max": 2, "name": "web", "banned": "b"}});
        let errs: Vec<String> = validate(&s, &bad, None).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            vec![
                "spec: Invalid value: \"object\": min must not exceed max".to_string(),
                "spec: Forbidden: failed rule: !has(self.banned)".to_string(),
                "spec.name: Invalid value: \"string\": failed rule: self.startsWith('x')"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn transition_rules_run_only_on_updates_with_an_old_value() {
        let s = schema();
        let new = json!({"spec": {"min": 1, "max": 2, "size": 5, "locked": true,
            "ports": [{"name": "a", "port": 2}, {"name": "b", "port": 9}]}});
        assert!(validate(&s, &new, None).is_empty(), "no oldSelf on create");
        let old = json!({"spec": {"min": 1, "max": 2, "size": 3, "locked": true,
            "ports": [{"name": "a", "port": 1}]}});
        let errs: Vec<String> =
            validate(&s, &new, Some(&old)).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            vec![
                "spec.size: Invalid value: \"object\": size is locked at 3".to_string(),
                "spec.ports[0]: Invalid value: \"object\": port is immutable".to_string(),
            ],
            "port b is new, so its transition rule does not run"
        );
        let unlocked = json!({"spec": {"min": 1, "max": 2, "size": 3, "locked": false}});
        assert!(validate(&s, &new, Some(&unlocked)).iter().all(|e| e.field != "spec.size"));
    }
}
