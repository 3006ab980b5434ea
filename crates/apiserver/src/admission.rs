//! Admission: what happens to an object between decoding and the store. In order:
//! 1. the schema walk — unknown fields are pruned (and reported per `fieldValidation`), values of
//!    the wrong type are refused, and custom resources get their `openAPIV3Schema` defaults and
//!    checks;
//! 2. system fields (uid, creationTimestamp, generation) are set or carried over;
//! 3. defaulting and validation from `kumo-api`, by kind;
//! 4. the admission plugins that read other objects: [`limitrange`] (defaults and limits from
//!    the namespace's LimitRanges) and [`quota`] (ResourceQuota check and charge).

pub mod limitrange;
pub mod quota;

use crate::error::{ApiError, ApiResult};
use crate::object;
use kumo_api::resources::Resource;
use kumo_api::schema::{Definitions, SchemaRef};
use kumo_api::validation::{render_value, ErrorType, FieldError};
use serde_json::{Map, Value};

/// How to treat unknown fields (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the request.
    Strict,
    /// Drop them and warn (the default).
    Warn,
    /// Drop them silently.
    Ignore,
}

impl FieldValidation {
    /// From the query parameter.
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// The root schema of a resource's objects, if it has one.
pub fn root_schema(resource: &Resource) -> Option<SchemaRef<'_>> {
    match (&resource.definition, &resource.crd_schema) {
        (Some(def), _) => Definitions::builtin().get(def),
        (None, Some(schema)) if schema.is_object() => Some(SchemaRef::standalone(schema)),
        _ => None,
    }
}

struct Walk {
    unknown: Vec<String>,
    type_errors: Vec<FieldError>,
    /// Custom resources also get defaults and value checks (required, enum, bounds, patterns).
    structural: bool,
}

/// Prune unknown fields and check types. Returns the warnings to send (for `Warn`).
pub fn check_schema(
    resource: &Resource,
    obj: &mut Value,
    mode: FieldValidation,
) -> ApiResult<Vec<String>> {
    let Some(schema) = root_schema(resource) else { return Ok(vec![]) };
    let mut w =
        Walk { unknown: vec![], type_errors: vec![], structural: resource.crd_schema.is_some() };
    if let Value::Object(map) = obj {
        if w.structural {
            apply_defaults(map, schema);
        }
        // apiVersion, kind and metadata are known for every kind, whatever its schema says.
        let meta_schema =
            Definitions::builtin().get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
        for (k, v) in map.iter_mut() {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    if let Some(ms) = meta_schema {
                        walk(&mut w, v, ms, "metadata");
                    }
                }
                _ => {}
            }
        }
        let keys: Vec<String> = map.keys().cloned().collect();
        for k in keys {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match schema.property(&k) {
                Some(child) => {
                    if let Some(v) = map.get_mut(&k) {
                        walk(&mut w, v, child, &k);
                    }
                }
                None if schema.preserves_unknown_fields() && resource.crd_schema.is_some() => {}
                None => {
                    w.unknown.push(k.clone());
                    map.remove(&k);
                }
            }
        }
        if w.structural {
            required(&mut w, &Value::Object(map.clone()), schema, "");
        }
    } else {
        return Err(ApiError::BadRequest("the body must be a JSON object".into()));
    }
    if !w.type_errors.is_empty() {
        if resource.crd_schema.is_some() {
            return Err(ApiError::invalid(
                &resource.group,
                &resource.kind,
                object::name(obj),
                w.type_errors,
            ));
        }
        let msgs: Vec<String> = w.type_errors.iter().map(|e| e.to_string()).collect();
        return Err(ApiError::BadRequest(format!(
            "the object could not be decoded: {}",
            msgs.join("; ")
        )));
    }
    let messages: Vec<String> =
        w.unknown.iter().map(|p| format!("unknown field \"{p}\"")).collect();
    match mode {
        FieldValidation::Strict if !messages.is_empty() => {
            Err(ApiError::BadRequest(format!("strict decoding error: {}", messages.join(", "))))
        }
        FieldValidation::Warn => Ok(messages),
        _ => Ok(vec![]),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value for an error message, as upstream prints it: strings quoted, long ones cut.
fn short(v: &Value) -> String {
    let cut = |s: &str| match s.char_indices().nth(60) {
        Some((i, _)) if s.len() > 64 => format!("{}...", &s[..i]),
        _ => s.to_string(),
    };
    match v {
        Value::String(s) => render_value(&Value::String(cut(s))),
        other => cut(&other.to_string()),
    }
}

fn walk(w: &mut Walk, v: &mut Value, schema: SchemaRef<'_>, path: &str) {
    if v.is_null() {
        return;
    }
    let int_or_string = schema.ext("x-kubernetes-int-or-string").and_then(Value::as_bool)
        == Some(true)
        || schema.ext("format").and_then(Value::as_str) == Some("int-or-string");
    if let Some(t) = schema.primary_type() {
        let actual = type_name(v);
        let ok = int_or_string && matches!(actual, "integer" | "string")
            || t == actual
            || (t == "number" && actual == "integer")
            || (t == "integer" && v.as_f64().is_some_and(|f| f.fract() == 0.0));
        if !ok {
            w.type_errors.push(FieldError {
                type_: ErrorType::Invalid,
                field: path.to_string(),
                value: Some(short(v)),
                detail: format!("{path} in body must be of type {t}: \"{actual}\""),
            });
            return;
        }
    }
    if w.structural {
        value_checks(w, v, schema, path);
    }
    match v {
        Value::Object(map) => {
            let declared = schema.has_properties();
            let additional = schema.additional_properties();
            let preserve = schema.preserves_unknown_fields();
            if w.structural && declared {
                apply_defaults(map, schema);
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let child_path = format!("{path}.{k}");
                let child = if declared { schema.property(&k) } else { None }.or(additional);
                match child {
                    Some(c) => {
                        if let Some(cv) = map.get_mut(&k) {
                            walk(w, cv, c, &child_path);
                        }
                    }
                    None if preserve => {}
                    None => {
                        w.unknown.push(child_path);
                        map.remove(&k);
                    }
                }
            }
            if w.structural && declared {
                required(w, &Value::Object(map.clone()), schema, path);
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.items() {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(w, item, item_schema, &format!("{path}[{i}]"));
                }
            }
        }
        _ => {}
    }
}

/// Structural-schema defaulting: a declared property that is absent (or null) takes its
/// `default`, which the walk then visits like any given value, so defaults nest. As upstream,
/// defaults apply only inside objects that are present.
/// <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#defaulting>
fn apply_defaults(map: &mut Map<String, Value>, schema: SchemaRef<'_>) {
    for name in schema.property_names() {
        if map.get(name).is_some_and(|v| !v.is_null()) {
            continue;
        }
        if let Some(default) = schema.property(name).and_then(|p| p.ext("default")) {
            map.insert(name.to_string(), default.clone());
        }
    }
}

fn required(w: &mut Walk, v: &Value, schema: SchemaRef<'_>, path: &str) {
    for req in schema.ext("required").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = req.as_str() else { continue };
        if v.get(name).is_none_or(Value::is_null) {
            let field = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
            w.type_errors.push(FieldError {
                type_: ErrorType::Required,
                field,
                value: None,
                detail: String::new(),
            });
        }
    }
}

fn value_checks(w: &mut Walk, v: &Value, schema: SchemaRef<'_>, path: &str) {
    if let Some(allowed) = schema.ext("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(render_value).collect();
            w.type_errors.push(FieldError {
                type_: ErrorType::NotSupported,
                field: path.into(),
                value: Some(render_value(v)),
                detail: format!("supported values: {}", list.join(", ")),
            });
        }
    }
    let mut count_error = |count: usize, detail: String, type_: ErrorType| {
        w.type_errors.push(FieldError {
            type_,
            field: path.into(),
            value: Some(count.to_string()),
            detail,
        });
    };
    if let Some(a) = v.as_array() {
        if let Some(max) = schema.ext("maxItems").and_then(Value::as_u64) {
            if a.len() as u64 > max {
                count_error(a.len(), format!("must have at most {max} items"), ErrorType::TooMany);
            }
        }
        if let Some(min) = schema.ext("minItems").and_then(Value::as_u64) {
            if (a.len() as u64) < min {
                count_error(
                    a.len(),
                    format!("{path} in body should have at least {min} items"),
                    ErrorType::Invalid,
                );
            }
        }
    }
    if let Some(m) = v.as_object() {
        if let Some(max) = schema.ext("maxProperties").and_then(Value::as_u64) {
            if m.len() as u64 > max {
                count_error(
                    m.len(),
                    format!("{path} in body should have at most {max} properties"),
                    ErrorType::TooMany,
                );
            }
        }
        if let Some(min) = schema.ext("minProperties").and_then(Value::as_u64) {
            if (m.len() as u64) < min {
                count_error(
                    m.len(),
                    format!("{path} in body should have at least {min} properties"),
                    ErrorType::Invalid,
                );
            }
        }
    }
    let mut bad = |detail: String, type_: ErrorType| {
        w.type_errors.push(FieldError { type_, field: path.into(), value: Some(short(v)), detail });
    };
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.ext("minimum").and_then(Value::as_f64) {
            if n < min {
                bad(
                    format!("{path} in body should be greater than or equal to {min}"),
                    ErrorType::Invalid,
                );
            }
        }
        if let Some(max) = schema.ext("maximum").and_then(Value::as_f64) {
            if n > max {
                bad(
                    format!("{path} in body should be less than or equal to {max}"),
                    ErrorType::Invalid,
                );
            }
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.ext("minLength").and_then(Value::as_u64) {
            if len < min {
                bad(
                    format!("{path} in body should be at least {min} chars long"),
                    ErrorType::Invalid,
                );
            }
        }
        if let Some(max) = schema.ext("maxLength").and_then(Value::as_u64) {
            if len > max {
                bad(
                    format!("{path} in body should be at most {max} chars long"),
                    ErrorType::TooLong,
                );
            }
        }
        if let Some(p) = schema.ext("pattern").and_then(Value::as_str) {
            if let Ok(re) = regex::Regex::new(p) {
                if !re.is_match(s) {
                    bad(format!("{path} in body should match '{p}'"), ErrorType::Invalid);
                }
            }
        }
    }
}

/// Whether this kind tracks `metadata.generation` (bumped when the desired state changes).
pub fn tracks_generation(resource: &Resource) -> bool {
    resource.crd_schema.is_some()
        || resource.status
            && !matches!(resource.plural.as_str(), "pods" | "namespaces" | "nodes" | "services")
}

/// Stamp the fields the server owns on a new object.
pub fn prepare_create(resource: &Resource, obj: &mut Value) {
    let tracks = tracks_generation(resource);
    let meta = object::meta_mut(obj);
    meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), Value::String(object::now_rfc3339()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if tracks {
        meta.insert("generation".into(), Value::from(1));
    } else {
        meta.remove("generation");
    }
    // The status subresource owns status: a create starts from an empty one (then defaults).
    if resource.status
        && !matches!(
            resource.plural.as_str(),
            "nodes" | "persistentvolumes" | "persistentvolumeclaims"
        )
    {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
}

/// Carry the server-owned fields of `old` into an update, and bump the generation when the
/// desired state changed. `status_only` is the status subresource's update.
pub fn prepare_update(resource: &Resource, obj: &mut Value, old: &Value, status_only: bool) {
    if status_only {
        // Only status changes through /status.
        let status = obj.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                if let Some(m) = merged.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        *obj = merged;
        return;
    }
    if resource.status {
        // The main resource cannot change status (it has its own subresource).
        match old.get("status") {
            Some(s) => obj["status"] = s.clone(),
            None => {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
    let changed = desired_state(obj) != desired_state(old);
    let tracks = tracks_generation(resource);
    let meta = object::meta_mut(obj);
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(k) {
            Some(v) => meta.insert(k.into(), v.clone()),
            None => meta.remove(k),
        };
    }
    if tracks && changed {
        let g = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        meta.insert("generation".into(), Value::from(g + 1));
    }
}

fn desired_state(obj: &Value) -> Map<String, Value> {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    m.remove("metadata");
    m.remove("status");
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(kind: &str) -> Resource {
        kumo_api::resources::builtin().into_iter().find(|r| r.kind == kind).expect("kind")
    }

    #[test]
    fn unknown_fields_are_pruned_and_reported_by_path() {
        let mut d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x","bogus":1},
            "spec":{"replicas":2,"foo":true,"template":{"spec":{"containers":[{"name":"a","image":"b","nope":1}]}}}});
        let warnings = check_schema(&res("Deployment"), &mut d, FieldValidation::Warn).expect("ok");
        assert_eq!(
            warnings,
            vec![
                "unknown field \"metadata.bogus\"".to_string(),
                "unknown field \"spec.foo\"".to_string(),
                "unknown field \"spec.template.spec.containers[0].nope\"".to_string()
            ]
        );
        assert!(d["spec"].get("foo").is_none());
        let mut again = json!({"kind":"Deployment","spec":{"foo":1}});
        let err =
            check_schema(&res("Deployment"), &mut again, FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code().as_u16(), 400);
        assert!(err.to_string().contains("unknown field \"spec.foo\""));
    }

    #[test]
    fn wrong_types_are_refused_but_maps_and_int_or_string_pass() {
        let mut d = json!({"spec":{"replicas":"three"}});
        let err = check_schema(&res("Deployment"), &mut d, FieldValidation::Ignore).unwrap_err();
        assert!(err.to_string().contains("spec.replicas"), "{err}");
        let mut ok = json!({"metadata":{"labels":{"a":"b"}},"spec":{"strategy":{"rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}}}});
        check_schema(&res("Deployment"), &mut ok, FieldValidation::Strict).expect("valid");
    }

    #[test]
    fn generation_moves_only_with_the_spec() {
        let r = res("Deployment");
        let old = json!({"metadata":{"name":"x","generation":3,"uid":"u"},"spec":{"replicas":1}});
        let mut same = json!({"metadata":{"name":"x","labels":{"a":"b"}},"spec":{"replicas":1}});
        prepare_update(&r, &mut same, &old, false);
        assert_eq!(same["metadata"]["generation"], 3);
        assert_eq!(same["metadata"]["uid"], "u");
        let mut changed = json!({"metadata":{"name":"x"},"spec":{"replicas":2}});
        prepare_update(&r, &mut changed, &old, false);
        assert_eq!(changed["metadata"]["generation"], 4);
    }

    fn custom(schema: Value) -> Resource {
        let mut r = res("ConfigMap");
        r.group = "example.com".into();
        r.kind = "Widget".into();
        r.definition = None;
        r.crd_schema = Some(schema);
        r
    }

    #[test]
    fn custom_resources_take_schema_defaults_inside_present_objects() {
        let r = custom(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
                "mode": {"type": "string", "default": "fast"},
                "limits": {"type": "object", "default": {}, "properties": {"rate": {"type": "integer", "default": 5}}},
                "rules": {"type": "array", "items": {"type": "object", "properties": {
                    "weight": {"type": "integer", "default": 1}}}},
                "absent": {"type": "object", "properties": {"x": {"type": "integer", "default": 2}}}
            }}}}),
        );
        let mut obj = json!({"spec": {"mode": null, "rules": [{}, {"weight": 7}]}});
        check_schema(&r, &mut obj, FieldValidation::Strict).expect("valid");
        assert_eq!(obj["spec"]["mode"], "fast");
        assert_eq!(obj["spec"]["limits"], json!({"rate": 5}), "defaults nest");
        assert_eq!(obj["spec"]["rules"], json!([{"weight": 1}, {"weight": 7}]));
        assert!(obj["spec"].get("absent").is_none(), "no object is made up without a default");
        let mut none = json!({});
        check_schema(&r, &mut none, FieldValidation::Strict).expect("valid");
        assert!(none.get("spec").is_none());
    }

    #[test]
    fn custom_resources_get_property_counts_and_quoted_enum_values() {
        let r = custom(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
                "match": {"type": "object", "maxProperties": 1, "properties": {
                    "exact": {"type": "string"}, "prefix": {"type": "string"}}},
                "kind": {"type": "string", "enum": ["A", "B"]},
                "tags": {"type": "array", "maxItems": 1, "items": {"type": "string"}}
            }}}}),
        );
        let mut obj = json!({"spec": {"match": {"exact": "/", "prefix": "/a"}, "kind": "C", "tags": ["x", "y"]}});
        let err = check_schema(&r, &mut obj, FieldValidation::Strict).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(
                "spec.match: Too many: 2: spec.match in body should have at most 1 properties"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("spec.kind: Unsupported value: \"C\": supported values: \"A\", \"B\""),
            "{msg}"
        );
        assert!(msg.contains("spec.tags: Too many: 2: must have at most 1 items"), "{msg}");
        let mut ok = json!({"spec": {"match": {}, "kind": "A"}});
        check_schema(&r, &mut ok, FieldValidation::Strict).expect("an empty match is allowed");
    }
}
