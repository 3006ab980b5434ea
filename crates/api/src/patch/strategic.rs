//! Kubernetes strategic merge patch, driven by the kind's schema.
//!
//! The rules follow apimachinery's `strategicpatch` (the apply half, with the options the API
//! server uses: unmatched `null`s are dropped and `$deleteFromPrimitiveList` lists are applied):
//!
//! * maps merge recursively and `null` deletes a key;
//! * a list whose field has `x-kubernetes-patch-strategy: merge` merges: lists of maps element by
//!   element on `x-kubernetes-patch-merge-key` (patch elements update the original element with
//!   the same key or are added), lists of primitives as a union; any other list is replaced;
//! * a map field with strategy `replace` is replaced;
//! * `$patch: replace | delete | merge` in a map, and `{<key>: …, "$patch": "delete"}` or
//!   `{"$patch": "replace"}` as elements of a merged list;
//! * `$retainKeys: [fields]` clears the original's other fields;
//! * `$deleteFromPrimitiveList/<field>: [values]` removes values from a primitive list;
//! * `$setElementOrder/<field>: [...]` orders the resulting list: the listed elements in the
//!   listed order, interleaved with the elements only the server has, which keep their places
//!   relative to the live list (apimachinery's `normalizeElementOrder`).
//!
//! Without `$setElementOrder`, patch elements of a merged list are ordered by the patch and
//! server-only elements by the live list, interleaved the same way, so a new element lands
//! before the elements that follow it in neither list — as upstream, which puts a container
//! added by `kubectl patch` first.
//!
//! Directive keys never reach the result. Where the schema is unknown the patch behaves like
//! a JSON merge patch (maps merge, lists are replaced); directives in maps still apply.

use super::{brief, identity, json_equal, kind_name, PatchError};
use crate::schema::SchemaRef;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
/// How deep the patcher follows maps and lists. Kubernetes objects nest a few dozen levels.
const MAX_DEPTH: usize = 256;

/// Applies a Kubernetes strategic merge patch to `original` and returns the result.
///
/// `schema` is the schema of the object's kind (e.g.
/// `Definitions::builtin().get("io.k8s.api.apps.v1.Deployment")`). Where it is `None`, or where
/// the walk down the object leaves it, lists are replaced as in a JSON merge patch. The patch
/// must be a JSON object; `original` must be an object (or `null`, taken as `{}`).
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: Option<SchemaRef<'_>>,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::InvalidPatch(format!(
            "a strategic merge patch must be a JSON object, not a {}",
            kind_name(patch)
        )));
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        other => return Err(PatchError::InvalidDocument(kind_name(other))),
    };
    merge_map(original, patch.clone(), schema, 0).map(Value::Object)
}

/// What the schema says about one field.
#[derive(Clone, Copy, Default)]
struct FieldMeta<'a> {
    schema: Option<SchemaRef<'a>>,
    merge: bool,
    replace: bool,
    merge_key: Option<&'a str>,
}

/// The patch metadata of field `name` of an object whose schema is `parent`.
///
/// The extensions are read from the property node itself before its `$ref` is resolved: a
/// field such as Deployment `spec.strategy` carries its strategy next to the `$ref`.
fn field_meta<'a>(parent: Option<SchemaRef<'a>>, name: &str) -> FieldMeta<'a> {
    let Some(parent) = parent else { return FieldMeta::default() };
    let schema = parent.child(name);
    let raw = parent
        .raw()
        .get("properties")
        .and_then(|p| p.get(name))
        .or_else(|| parent.raw().get("additionalProperties").filter(|a| a.is_object()));
    let ext = |key: &str| -> Option<&'a str> {
        raw.and_then(|r| r.get(key))
            .or_else(|| schema.and_then(|s| s.ext(key)))
            .and_then(Value::as_str)
    };
    let strategies: Vec<&str> = ext("x-kubernetes-patch-strategy")
        .map(|s| s.split(',').map(str::trim).collect())
        .unwrap_or_default();
    FieldMeta {
        schema,
        merge: strategies.contains(&"merge"),
        replace: strategies.contains(&"replace"),
        merge_key: ext("x-kubernetes-patch-merge-key"),
    }
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

fn unknown_patch_type(value: &Value, map: &Map<String, Value>) -> PatchError {
    PatchError::UnknownPatchType {
        value: value.as_str().map_or_else(|| brief(value), str::to_string),
        map: brief(&Value::Object(map.clone())),
    }
}

fn check_depth(depth: usize) -> Result<(), PatchError> {
    if depth > MAX_DEPTH {
        Err(PatchError::TooDeep(MAX_DEPTH))
    } else {
        Ok(())
    }
}

/// Merges `patch` into `original` (both maps), following `schema`.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Option<SchemaRef<'_>>,
    depth: usize,
) -> Result<Map<String, Value>, PatchError> {
    check_depth(depth)?;
    if let Some(directive) = patch.get(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                // The patch's content, with its own directives applied, replaces the map.
                return merge_map(Map::new(), patch, schema, depth + 1);
            }
            Some("delete") => return Ok(Map::new()),
            // The default; upstream rejects it in maps, accepting it costs nothing.
            Some("merge") => {
                patch.shift_remove(DIRECTIVE);
            }
            _ => return Err(unknown_patch_type(directive, &patch)),
        }
    }

    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, schema, depth)?;

    for (key, patch_value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(values) = patch_value else {
                return Err(PatchError::BadPrimitiveList(format!(
                    "{key} must be a list of the values to delete, not {}",
                    brief(&patch_value)
                )));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                let doomed: HashSet<String> = values.iter().map(identity).collect();
                list.retain(|v| !doomed.contains(&identity(v)));
            }
            continue;
        }
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let meta = field_meta(schema, &key);
        let existing = original.get_mut(&key).map(Value::take);
        let merged = match (existing, patch_value) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                let base = if meta.replace { Map::new() } else { o };
                Some(Value::Object(merge_map(base, p, meta.schema, depth + 1)?))
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                Some(Value::Array(merge_list_handler(o, p, meta, &key, depth + 1)?))
            }
            (_, p) => new_value(p, meta, &key, depth + 1)?,
        };
        match merged {
            Some(v) => {
                original.insert(key, v);
            }
            None => {
                original.shift_remove(&key);
            }
        }
    }
    Ok(original)
}

/// A patch value for a field the original lacks (or holds with another type): the patch
/// applied to nothing, so its directives are honoured and its `null`s dropped. `None` when
/// nothing should be stored (`{"$patch": "delete"}`).
fn new_value(
    patch: Value,
    meta: FieldMeta<'_>,
    field: &str,
    depth: usize,
) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(m) => {
            if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                return Ok(None);
            }
            Ok(Some(Value::Object(merge_map(Map::new(), m, meta.schema, depth)?)))
        }
        Value::Array(a) => {
            Ok(Some(Value::Array(merge_list_handler(Vec::new(), a, meta, field, depth)?)))
        }
        Value::Null => Ok(None),
        other => Ok(Some(other)),
    }
}

/// `$retainKeys`: clears the original's fields the list does not name, after checking that the
/// patch sets no field outside it.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else { return Ok(()) };
    let Value::Array(list) = retain else {
        return Err(PatchError::BadRetainKeys(format!(
            "$retainKeys must be a list of field names, not {}",
            brief(&retain)
        )));
    };
    let mut keep = Vec::with_capacity(list.len());
    for v in &list {
        match v.as_str() {
            Some(s) => keep.push(s),
            None => {
                return Err(PatchError::BadRetainKeys(format!(
                    "$retainKeys must hold field names, found {}",
                    brief(v)
                )))
            }
        }
    }
    for (k, v) in patch.iter() {
        if v.is_null() || is_directive_key(k) {
            continue;
        }
        if !keep.contains(&k.as_str()) {
            return Err(PatchError::PatchContentNotMatchRetainKeys(k.clone()));
        }
    }
    original.retain(|k, _| keep.contains(&k.as_str()));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's list now and orders the result.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Option<SchemaRef<'_>>,
    depth: usize,
) -> Result<(), PatchError> {
    let keys: Vec<String> =
        patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for key in keys {
        let Some(order) = patch.shift_remove(&key) else { continue };
        let field = &key[SET_ELEMENT_ORDER.len()..];
        let Value::Array(order) = order else {
            return Err(PatchError::BadSetElementOrder(format!(
                "{key} must be a list, not {}",
                brief(&order)
            )));
        };
        let original_list = match original.get(field) {
            Some(Value::Array(a)) => Some(a.clone()),
            None | Some(Value::Null) => None,
            Some(other) => {
                return Err(PatchError::BadSetElementOrder(format!(
                    "{key} orders field {field:?}, which is a {} in the object, not a list",
                    kind_name(other)
                )))
            }
        };
        let patch_list = match patch.get(field) {
            Some(Value::Array(a)) => Some(a.clone()),
            None => None,
            // The field is deleted or replaced by a non-list: nothing to order.
            Some(_) => continue,
        };
        let meta = field_meta(schema, field);
        let key_for =
            |list: &[Value]| if list.iter().any(Value::is_object) { meta.merge_key } else { None };
        if let Some(p) = &patch_list {
            validate_order(p, &order, key_for(p))?;
        }
        let merged = match (original_list.clone(), patch_list) {
            (Some(o), None) => o,
            (None, Some(p)) => merge_list_handler(Vec::new(), p, meta, field, depth + 1)?,
            (Some(o), Some(p)) => merge_list_handler(o, p, meta, field, depth + 1)?,
            (None, None) => continue,
        };
        let merge_key = key_for(&merged);
        if merge_key.is_none()
            && merged.iter().any(Value::is_object)
            && order.iter().any(Value::is_object)
        {
            // Maps without a merge key can only be matched whole; the order list names
            // elements by key, so it cannot apply.
            return Err(PatchError::BadSetElementOrder(format!(
                "field {field:?} declares no merge key, so {key} cannot name its elements"
            )));
        }
        let server_order = original_list.unwrap_or_default();
        let ordered = order_merged(merged, &order, &server_order, merge_key)?;
        original.insert(field.to_string(), Value::Array(ordered));
        patch.shift_remove(field);
    }
    Ok(())
}

/// Checks that the patch list's elements appear in the `$setElementOrder` list in the same
/// relative order (deletions ignored).
fn validate_order(
    patch_list: &[Value],
    order: &[Value],
    key: Option<&str>,
) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(patch_list.len());
    for v in patch_list {
        if key.is_some() {
            let m = as_map(v)?;
            if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        kept.push(v);
    }
    let (mut pi, mut si) = (0, 0);
    while pi < kept.len() && si < order.len() {
        if kept[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if same_element(kept[pi], &order[si], key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < kept.len() && si >= order.len() {
        return Err(PatchError::BadSetElementOrder(format!(
            "the order in patch list {} doesn't match $setElementOrder list {}",
            brief(&Value::Array(patch_list.to_vec())),
            brief(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn as_map(v: &Value) -> Result<&Map<String, Value>, PatchError> {
    v.as_object().ok_or_else(|| PatchError::NotAMap { found: kind_name(v), value: brief(v) })
}

fn merge_key_value<'v>(v: &'v Value, key: &str) -> Result<&'v Value, PatchError> {
    let m = as_map(v)?;
    m.get(key).ok_or_else(|| PatchError::NoMergeKey { map: brief(v), key: key.to_string() })
}

/// Whether two list elements are the same element: same merge key value for maps, equal
/// values for primitives.
fn same_element(a: &Value, b: &Value, key: Option<&str>) -> Result<bool, PatchError> {
    match key {
        Some(key) => Ok(json_equal(merge_key_value(a, key)?, merge_key_value(b, key)?)),
        None => Ok(json_equal(a, b)),
    }
}

/// What identifies a list element: its merge key value for maps, itself for primitives.
fn element_id(v: &Value, key: Option<&str>) -> Option<String> {
    match key {
        Some(key) => v.get(key).map(identity),
        None => Some(identity(v)),
    }
}

/// The first position of each element of a list, by [`element_id`].
struct Positions(HashMap<String, usize>);

impl Positions {
    fn new(list: &[Value], key: Option<&str>) -> Self {
        let mut map = HashMap::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            if let Some(id) = element_id(v, key) {
                map.entry(id).or_insert(i);
            }
        }
        Positions(map)
    }

    fn of(&self, v: &Value, key: Option<&str>) -> Option<usize> {
        element_id(v, key).and_then(|id| self.0.get(&id).copied())
    }
}

/// Merges two lists as the field's strategy says: merged when it is `merge`, else replaced.
fn merge_list_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: FieldMeta<'_>,
    field: &str,
    depth: usize,
) -> Result<Vec<Value>, PatchError> {
    if meta.merge {
        merge_list(original, patch, meta, field, depth)
    } else {
        let mut out = Vec::with_capacity(patch.len());
        for v in patch {
            if let Some(v) = strip_directives(v, depth + 1)? {
                out.push(v);
            }
        }
        Ok(out)
    }
}

/// A replaced value with its directive keys removed (and maps marked `$patch: delete` dropped).
fn strip_directives(v: Value, depth: usize) -> Result<Option<Value>, PatchError> {
    check_depth(depth)?;
    match v {
        Value::Object(m) => {
            if let Some(d) = m.get(DIRECTIVE) {
                match d.as_str() {
                    Some("delete") => return Ok(None),
                    Some("replace" | "merge") => {}
                    _ => return Err(unknown_patch_type(d, &m)),
                }
            }
            let mut out = Map::new();
            for (k, v) in m {
                if is_directive_key(&k) {
                    continue;
                }
                if let Some(v) = strip_directives(v, depth + 1)? {
                    out.insert(k, v);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        Value::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            for v in a {
                if let Some(v) = strip_directives(v, depth + 1)? {
                    out.push(v);
                }
            }
            Ok(Some(Value::Array(out)))
        }
        other => Ok(Some(other)),
    }
}

/// The kind shared by every element of both lists: `true` for maps, `false` for primitives.
fn element_kind(original: &[Value], patch: &[Value]) -> Result<bool, PatchError> {
    let mut first: Option<&Value> = None;
    for v in original.iter().chain(patch) {
        if v.is_array() {
            return Err(PatchError::ListOfLists);
        }
        match first {
            None => first = Some(v),
            Some(f) if std::mem::discriminant(f) != std::mem::discriminant(v) => {
                return Err(PatchError::MixedListElements(format!(
                    "{} and {}",
                    brief(&Value::Array(original.to_vec())),
                    brief(&Value::Array(patch.to_vec()))
                )));
            }
            Some(_) => {}
        }
    }
    Ok(first.is_some_and(Value::is_object))
}

/// Merges a list with strategy `merge`.
fn merge_list(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    meta: FieldMeta<'_>,
    field: &str,
    depth: usize,
) -> Result<Vec<Value>, PatchError> {
    check_depth(depth)?;
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if !element_kind(&original, &patch)? {
        // Primitives: an ordered union.
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        let mut seen = HashSet::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if seen.insert(identity(v)) {
                merged.push(v.clone());
            }
        }
        return order_merged(merged, &patch, &original, None);
    }
    let Some(key) = meta.merge_key else {
        return Err(PatchError::NoMergeKeyDeclared(field.to_string()));
    };
    let items = meta.schema.and_then(|s| s.items());

    // Special elements first: deletions by key, and `$patch: replace` for the whole list.
    let mut replace = false;
    let mut doomed = HashSet::new();
    let mut plain: Vec<Map<String, Value>> = Vec::with_capacity(patch.len());
    for v in patch {
        let Value::Object(m) = v else {
            return Err(PatchError::NotAMap { found: kind_name(&v), value: brief(&v) });
        };
        let Some(directive) = m.get(DIRECTIVE) else {
            plain.push(m);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(id) = m.get(key) else {
                    return Err(PatchError::NoMergeKey {
                        map: brief(&Value::Object(m.clone())),
                        key: key.to_string(),
                    });
                };
                doomed.insert(identity(id));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::MergeListDirective),
            _ => return Err(unknown_patch_type(directive, &m)),
        }
    }
    if !doomed.is_empty() {
        original.retain(|o| !o.get(key).is_some_and(|id| doomed.contains(&identity(id))));
    }
    if replace {
        let mut out = Vec::with_capacity(plain.len());
        for m in plain {
            let element = Value::Object(merge_map(Map::new(), m, items, depth + 1)?);
            merge_key_value(&element, key)?;
            out.push(element);
        }
        return Ok(out);
    }

    let mut merged = original.clone();
    let mut index = Positions::new(&merged, Some(key));
    let mut patch_order = Vec::with_capacity(plain.len());
    for m in plain {
        let Some(id) = m.get(key).cloned() else {
            return Err(PatchError::NoMergeKey {
                map: brief(&Value::Object(m)),
                key: key.to_string(),
            });
        };
        let id_key = identity(&id);
        let mut order_entry = Map::new();
        order_entry.insert(key.to_string(), id);
        patch_order.push(Value::Object(order_entry));
        match index.0.get(&id_key).and_then(|&i| merged.get_mut(i)) {
            Some(slot) => {
                let base = match slot.take() {
                    Value::Object(o) => o,
                    other => {
                        return Err(PatchError::NotAMap {
                            found: kind_name(&other),
                            value: brief(&other),
                        })
                    }
                };
                *slot = Value::Object(merge_map(base, m, items, depth + 1)?);
            }
            None => {
                // Indexed by the patch's id: a later patch element with it merges into this one.
                index.0.insert(id_key, merged.len());
                merged.push(Value::Object(merge_map(Map::new(), m, items, depth + 1)?));
            }
        }
    }
    order_merged(merged, &patch_order, &original, Some(key))
}

/// Orders a merged list: the elements named in `patch_order` in that order, the others in
/// their `server_order` order, interleaved so that a server-only element comes before a patch
/// element only when both are in `server_order` and it came first there.
fn order_merged(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    if let Some(key) = key {
        for v in merged.iter().chain(patch_order) {
            merge_key_value(v, key)?;
        }
    }
    let patch_pos = Positions::new(patch_order, key);
    let server_pos = Positions::new(server_order, key);
    // (position in its order list, position in the live list, element)
    let mut patch_items = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        let live = server_pos.of(&v, key);
        match patch_pos.of(&v, key) {
            Some(p) => patch_items.push((p, live, v)),
            None => server_only.push((live.unwrap_or(usize::MAX), live, v)),
        }
    }
    patch_items.sort_by_key(|item| item.0);
    server_only.sort_by_key(|item| item.0);

    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((l.1, r.1), (Some(li), Some(ri)) if li < ri),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next.map(|(_, _, v)| v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
