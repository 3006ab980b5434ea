//! Small, panic-free accessors over `serde_json::Value` shared by the validation, defaulting
//! and printing rooms. Every accessor treats a value of the wrong type as absent.

use serde_json::{Map, Value};

/// The value at a path of object keys.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object()?.get(*key)?;
    }
    Some(cur)
}

/// A string at a path.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)?.as_str()
}

/// A string at a path, or `""`.
pub(crate) fn str_or_empty<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    str_at(v, path).unwrap_or("")
}

/// An integer at a path (floats with no fraction count too).
pub(crate) fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    as_int(at(v, path)?)
}

/// A JSON number as an integer (floats with no fraction count too).
pub(crate) fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18).map(|f| f as i64)
        }),
        _ => None,
    }
}

/// A boolean at a path.
pub(crate) fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    at(v, path)?.as_bool()
}

/// An array at a path, or an empty slice.
pub(crate) fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// An object at a path.
pub(crate) fn obj_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    at(v, path)?.as_object()
}

/// The mutable object at a path, creating empty objects on the way (and replacing values
/// of the wrong type only when `force` is set). `None` when a non-object blocks the way.
pub(crate) fn obj_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for key in path {
        let map = cur.as_object_mut()?;
        cur = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
    cur.as_object_mut()
}

/// The mutable object at a path if it exists (never creates anything).
pub(crate) fn existing_obj_mut<'a>(
    v: &'a mut Value,
    path: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object_mut()?.get_mut(*key)?;
    }
    cur.as_object_mut()
}

/// Whether a field is absent, `null`, or an empty string.
pub(crate) fn unset(m: &Map<String, Value>, key: &str) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// Sets `key` to `value` when it is absent, `null` or `""`.
pub(crate) fn default_field(m: &mut Map<String, Value>, key: &str, value: Value) {
    if unset(m, key) {
        m.insert(key.to_string(), value);
    }
}

/// A string map (labels, selectors) as sorted pairs; non-string values are skipped.
pub(crate) fn string_map(v: Option<&Value>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
