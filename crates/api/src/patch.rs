//! Patches: how a `PATCH` request body changes a stored object.
//!
//! The API server accepts three patch types, one function each:
//!
//! * [`merge_patch`] — `application/merge-patch+json`, RFC 7386: objects merge recursively,
//!   `null` deletes a key, anything else (lists included) replaces.
//! * [`json_patch`] — `application/json-patch+json`, RFC 6902: a list of `add`, `remove`,
//!   `replace`, `move`, `copy` and `test` operations on JSON pointers, applied all or nothing.
//! * [`strategic_merge_patch`] — `application/strategic-merge-patch+json`, what `kubectl apply`,
//!   `kubectl patch` and `kubectl edit` send for built-in kinds: a merge patch whose lists merge
//!   by key where the kind's schema says so (`x-kubernetes-patch-strategy`,
//!   `x-kubernetes-patch-merge-key`), with the `$patch`, `$retainKeys`,
//!   `$deleteFromPrimitiveList/…` and `$setElementOrder/…` directives.
//!
//! All three work on `serde_json::Value` and never panic, whatever the input; the two that can
//! fail return a [`PatchError`] whose message says what is wrong with the patch, in the words
//! Kubernetes uses, so that the server can answer `422`/`400` with it.
//!
//! ```
//! use kumo_api::patch::{merge_patch, strategic_merge_patch};
//! use kumo_api::schema::Definitions;
//! use serde_json::json;
//!
//! let mut obj = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
//! merge_patch(&mut obj, &json!({"metadata": {"labels": {"a": null, "c": "3"}}}));
//! assert_eq!(obj, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
//!
//! let pod = json!({"spec": {"containers": [{"name": "app", "image": "nginx:1"}]}});
//! let patch = json!({"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}});
//! let schema = Definitions::builtin().get("io.k8s.api.core.v1.Pod");
//! let patched = strategic_merge_patch(&pod, &patch, schema).unwrap();
//! assert_eq!(patched["spec"]["containers"][0]["image"], "nginx:2");
//! ```

use serde_json::Value;

mod json_patch;
mod strategic;

pub use json_patch::json_patch;
pub use strategic::strategic_merge_patch;

/// Why a patch could not be applied. The message tells the client what to fix in its patch.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PatchError {
    /// The patch document has the wrong overall shape (not an object, not a list of operations).
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    /// The object being patched is not a JSON object.
    #[error("invalid JSON document: the object to patch must be a JSON object, not {0}")]
    InvalidDocument(&'static str),
    /// A JSON patch operation is malformed (unknown `op`, missing `path`, `value` or `from`).
    #[error("invalid JSON patch operation {index}: {message}")]
    InvalidOperation {
        /// Position of the operation in the patch array.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A JSON pointer is malformed.
    #[error("invalid JSON pointer {pointer:?}: {message}")]
    InvalidPointer {
        /// The pointer as given.
        pointer: String,
        /// What is wrong with it.
        message: String,
    },
    /// A JSON patch operation refers to a location that does not exist in the document.
    #[error("doc is missing path: {0}")]
    MissingPath(String),
    /// A JSON patch `remove`/`replace` names a key or index that is not there.
    #[error("unable to {op} nonexistent key or index: {path}: missing value")]
    NonexistentTarget {
        /// The operation (`remove`, `replace`).
        op: &'static str,
        /// The pointer as given.
        path: String,
    },
    /// An array index in a JSON pointer is past the end of the array.
    #[error("index out of bounds at {path}: the array has {len} elements")]
    IndexOutOfBounds {
        /// The pointer as given.
        path: String,
        /// The length of the array.
        len: usize,
    },
    /// A JSON patch `test` operation found a different value.
    #[error("testing value {0} failed")]
    TestFailed(String),
    /// A JSON patch `move` would move a value into one of its own children.
    #[error("unable to move {from} into its own child {path}")]
    MoveIntoChild {
        /// The source pointer.
        from: String,
        /// The destination pointer.
        path: String,
    },
    /// A `$patch` directive has a value other than `replace`, `delete` or `merge`.
    #[error("unknown patch type: {value} in map: {map}")]
    UnknownPatchType {
        /// The directive's value.
        value: String,
        /// The map that carries it.
        map: String,
    },
    /// A list element of a list merged by key lacks that key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The element.
        map: String,
        /// The merge key the schema declares.
        key: String,
    },
    /// The schema says to merge a list of objects but declares no merge key.
    #[error("cannot merge lists without merge key for field {0}")]
    NoMergeKeyDeclared(String),
    /// `$patch: merge` inside a list.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeListDirective,
    /// A merged list holds lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A merged list mixes kinds of elements (objects and strings, …).
    #[error("list element types are not identical: {0}")]
    MixedListElements(String),
    /// A list that is merged by key holds something other than objects.
    #[error("expected a map, but received a {found}: {value}")]
    NotAMap {
        /// The kind of value found.
        found: &'static str,
        /// The value.
        value: String,
    },
    /// `$retainKeys` is not a list of field names.
    #[error("invalid patch format of retainKeys: {0}")]
    BadRetainKeys(String),
    /// The patch sets a field its own `$retainKeys` list does not keep.
    #[error("patch content doesn't match retainKeys list: field {0:?} is not in $retainKeys")]
    PatchContentNotMatchRetainKeys(String),
    /// `$setElementOrder/<field>` is malformed or disagrees with the patch list.
    #[error("invalid patch format of setElementOrder list: {0}")]
    BadSetElementOrder(String),
    /// `$deleteFromPrimitiveList/<field>` is malformed.
    #[error("invalid patch format of primitive list: {0}")]
    BadPrimitiveList(String),
    /// The patch or the object nests deeper than the patcher follows.
    #[error("patch is nested too deeply: more than {0} levels")]
    TooDeep(usize),
}

/// Applies an RFC 7386 JSON merge patch to `target` in place.
///
/// Where the patch is an object, its keys are merged into `target` (which becomes an object if
/// it was not one): `null` deletes the key, objects merge recursively, anything else replaces.
/// A patch that is not an object replaces `target` whole.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(target_map) = target else { return };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.shift_remove(key);
        } else {
            let slot = target_map.entry(key.clone()).or_insert(Value::Null);
            merge_patch(slot, value);
        }
    }
}

/// The name of a JSON value's kind, for messages.
pub(crate) fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// JSON equality as RFC 6902 defines it: numbers compare by value (`1` equals `1.0`), objects
/// by their members regardless of order, arrays element by element.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    json_equal_at(a, b, 0)
}

fn json_equal_at(a: &Value, b: &Value, depth: usize) -> bool {
    if depth > 256 {
        return a == b;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal_at(x, y, depth + 1))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal_at(v, w, depth + 1)))
        }
        _ => a == b,
    }
}

/// A string that is equal for two scalars exactly when [`json_equal`] holds (`1` and `1.0`
/// give the same identity); maps and lists use their JSON text. Used to index list elements.
pub(crate) fn identity(v: &Value) -> String {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                format!("i{i}")
            } else if let Some(u) = n.as_u64() {
                format!("u{u}")
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // `as` saturates; the range check keeps only floats that are exact integers.
                if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
                    format!("i{}", f as i64)
                } else {
                    format!("f{f}")
                }
            }
        }
        Value::String(s) => format!("s{s}"),
        other => format!("j{other}"),
    }
}

/// A short rendering of a value for error messages (long values are cut).
pub(crate) fn brief(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386_examples() {
        // The table of RFC 7386, appendix A.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}})),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}})),
        ];
        for (target, patch, want) in cases {
            let mut got = target.clone();
            merge_patch(&mut got, &patch);
            assert_eq!(got, want, "target {target} patch {patch}");
        }
    }

    #[test]
    fn merge_patch_keeps_key_order() {
        let mut obj = json!({"a": 1, "b": 2, "c": 3});
        merge_patch(&mut obj, &json!({"a": null, "d": 4}));
        let keys: Vec<_> = obj.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        assert_eq!(keys, ["b", "c", "d"]);
    }

    #[test]
    fn json_equal_compares_numbers_by_value() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(json_equal(&json!({"a": [1, {"b": 2}]}), &json!({"a": [1.0, {"b": 2}]})));
        assert!(!json_equal(&json!([1, 2]), &json!([2, 1])));
        assert!(!json_equal(&json!("1"), &json!(1)));
        for (a, b) in [(json!(1), json!(1.0)), (json!(-0.0), json!(0)), (json!("a"), json!("a"))] {
            assert_eq!(identity(&a), identity(&b), "{a} {b}");
        }
        for (a, b) in [(json!(1), json!("1")), (json!(1.5), json!(1)), (json!(true), json!("true"))]
        {
            assert_ne!(identity(&a), identity(&b), "{a} {b}");
        }
    }
}
