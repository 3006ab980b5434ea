//! Field sets: which fields of an object something touches, in the `FieldsV1` shape that
//! `metadata.managedFields` stores (`f:` fields, `k:` list-map keys, `v:` set values, `.` for a
//! list item itself). Built from an object and its schema's list types
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`).

use crate::schema::SchemaRef;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Element {
    /// A field of an object (`f:name`).
    Field(String),
    /// An item of a map-type list, by its key fields as compact JSON (`k:{"name":"app"}`).
    Key(String),
    /// An item of a set-type list, by its value as compact JSON (`v:"a"`).
    Value(String),
}

impl Element {
    fn encode(&self) -> String {
        match self {
            Element::Field(f) => format!("f:{f}"),
            Element::Key(k) => format!("k:{k}"),
            Element::Value(v) => format!("v:{v}"),
        }
    }

    fn decode(s: &str) -> Option<Element> {
        let (kind, rest) = s.split_once(':')?;
        Some(match kind {
            "f" => Element::Field(rest.to_string()),
            "k" => Element::Key(rest.to_string()),
            "v" => Element::Value(rest.to_string()),
            _ => return None,
        })
    }
}

/// A set of field paths, as a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Whether the path leading here is itself in the set.
    pub member: bool,
    /// Deeper paths.
    pub children: BTreeMap<Element, FieldSet>,
}

/// How a list's items are identified.
enum ListKind<'a> {
    Map(Vec<&'a str>),
    Set,
    Atomic,
}

fn list_kind<'a>(schema: Option<SchemaRef<'a>>) -> ListKind<'a> {
    let Some(s) = schema else { return ListKind::Atomic };
    match s.list_type() {
        Some("map") => {
            let keys = s.list_map_keys();
            if keys.is_empty() {
                s.patch_merge_key().map(|k| ListKind::Map(vec![k])).unwrap_or(ListKind::Atomic)
            } else {
                ListKind::Map(keys)
            }
        }
        Some("set") => ListKind::Set,
        Some(_) => ListKind::Atomic,
        // Built-in lists merged by key in strategic merge patch are maps for apply too.
        None => match (s.patch_merge_key(), s.patch_strategies().contains(&"merge")) {
            (Some(k), true) => ListKind::Map(vec![k]),
            _ => ListKind::Atomic,
        },
    }
}

/// The key element of a map-list item. A missing `protocol` key is its default, `TCP`, as
/// upstream's structured merge fills key fields from their schema defaults: an applied
/// `{containerPort: 80}` is the stored (defaulted) `{containerPort: 80, protocol: TCP}`, not
/// a second item.
pub fn item_key(item: &Value, keys: &[&str]) -> Option<Element> {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(*k) {
            m.insert((*k).to_string(), v.clone());
        } else if *k == "protocol" && !m.is_empty() {
            m.insert("protocol".into(), Value::String("TCP".into()));
        }
    }
    (!m.is_empty()).then(|| Element::Key(Value::Object(m).to_string()))
}

/// Whether a list item has the key fields of `key` (a missing `protocol` being `TCP`, as in
/// [`item_key`]).
fn key_matches(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter().all(|(k, v)| match item.get(k) {
        Some(have) => have == v,
        None => k == "protocol" && v == "TCP",
    })
}

impl FieldSet {
    /// The fields of `value` (whose schema is `schema`).
    pub fn from_value(value: &Value, schema: Option<SchemaRef<'_>>) -> FieldSet {
        let mut set = FieldSet::default();
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let child_schema = schema.and_then(|s| s.child(k));
                    let mut child = FieldSet::from_value(v, child_schema);
                    if child.children.is_empty() {
                        child.member = true;
                    }
                    set.children.insert(Element::Field(k.clone()), child);
                }
            }
            Value::Array(items) => match list_kind(schema) {
                ListKind::Map(keys) => {
                    let item_schema = schema.and_then(|s| s.items());
                    for item in items {
                        let Some(key) = item_key(item, &keys) else { continue };
                        let mut child = FieldSet::from_value(item, item_schema);
                        child.member = true;
                        set.children.insert(key, child);
                    }
                }
                ListKind::Set => {
                    for item in items {
                        let leaf = FieldSet { member: true, ..Default::default() };
                        set.children.insert(Element::Value(item.to_string()), leaf);
                    }
                }
                ListKind::Atomic => {}
            },
            _ => {}
        }
        set
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (k, v) in &other.children {
            let merged = match out.children.get(k) {
                Some(mine) => mine.union(v),
                None => v.clone(),
            };
            out.children.insert(k.clone(), merged);
        }
        out
    }

    /// Paths in `self` but not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet { member: self.member && !other.member, children: BTreeMap::new() };
        for (k, v) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => v.difference(o),
                None => v.clone(),
            };
            if !d.is_empty() {
                out.children.insert(k.clone(), d);
            }
        }
        out
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet { member: self.member && other.member, children: BTreeMap::new() };
        for (k, v) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = v.intersection(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Every member path, as element lists.
    pub fn paths(&self) -> Vec<Vec<Element>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<Element>, out: &mut Vec<Vec<Element>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, v) in &self.children {
            prefix.push(k.clone());
            v.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of this set.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, v) in &self.children {
            if !v.is_empty() {
                m.insert(k.encode(), v.to_fields_v1());
            }
        }
        Value::Object(m)
    }

    /// Parse `FieldsV1` JSON; unknown keys are skipped.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        let Some(m) = v.as_object() else { return set };
        if m.is_empty() {
            set.member = true;
            return set;
        }
        for (k, child) in m {
            if k == "." {
                set.member = true;
            } else if let Some(e) = Element::decode(k) {
                set.children.insert(e, FieldSet::from_fields_v1(child));
            }
        }
        set
    }
}

/// Render a path the way conflict messages show it (`.spec.replicas`,
/// `.spec.containers[name="app"].image`).
pub fn path_string(path: &[Element]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            Element::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Element::Key(k) => {
                let inner: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                s.push_str(&format!("[{}]", inner.join(",")));
            }
            Element::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

/// The value at `path` in `obj`, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[Element]) -> Option<&'a Value> {
    let mut cur = obj;
    for e in path {
        cur = match e {
            Element::Field(f) => cur.get(f)?,
            Element::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).ok()?;
                cur.as_array()?.iter().find(|item| key_matches(item, &key))?
            }
            Element::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                cur.as_array()?.iter().find(|item| **item == want)?
            }
        };
    }
    Some(cur)
}

/// Remove the value at `path` from `obj` (a field, or a list item); false if absent.
pub fn remove_at(obj: &mut Value, path: &[Element]) -> bool {
    let Some((last, parent_path)) = path.split_last() else { return false };
    let mut cur = obj;
    for e in parent_path {
        let next = match e {
            Element::Field(f) => cur.get_mut(f),
            Element::Key(k) => {
                let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else { return false };
                cur.as_array_mut().and_then(|a| a.iter_mut().find(|item| key_matches(item, &key)))
            }
            Element::Value(_) => return false,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match last {
        Element::Field(f) => cur.as_object_mut().is_some_and(|m| m.remove(f).is_some()),
        Element::Key(k) => {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else { return false };
            let Some(a) = cur.as_array_mut() else { return false };
            let before = a.len();
            a.retain(|item| !key_matches(item, &key));
            a.len() != before
        }
        Element::Value(v) => {
            let Ok(want) = serde_json::from_str::<Value>(v) else { return false };
            let Some(a) = cur.as_array_mut() else { return false };
            let before = a.len();
            a.retain(|item| *item != want);
            a.len() != before
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Definitions;
    use serde_json::json;

    #[test]
    fn deployment_fields_use_list_keys_like_upstream() {
        let defs = Definitions::builtin();
        let schema = defs.get("io.k8s.api.apps.v1.Deployment");
        let d = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "app", "image": "nginx", "args": ["a", "b"]}]}}}, "metadata": {"finalizers": ["x"]}});
        let set = FieldSet::from_value(&d, schema);
        let v1 = set.to_fields_v1();
        assert_eq!(
            v1,
            json!({"f:metadata": {"f:finalizers": {"v:\"x\"": {}}},
                   "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                       "k:{\"name\":\"app\"}": {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}}}}}})
        );
        assert_eq!(FieldSet::from_fields_v1(&v1), set);
        let paths: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert!(
            paths.contains(&".spec.template.spec.containers[name=\"app\"].image".to_string()),
            "{paths:?}"
        );
    }

    #[test]
    fn set_algebra_and_removal() {
        let a = FieldSet::from_value(&json!({"a": 1, "b": {"c": 2, "d": 3}}), None);
        let b = FieldSet::from_value(&json!({"b": {"c": 9}}), None);
        assert_eq!(a.intersection(&b), b);
        let d = a.difference(&b);
        assert_eq!(d.paths().len(), 2);
        let mut obj = json!({"a": 1, "b": {"c": 2, "d": 3}});
        for p in d.paths() {
            assert!(remove_at(&mut obj, &p));
        }
        assert_eq!(obj, json!({"b": {"c": 2}}));
    }
}
