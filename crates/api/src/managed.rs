//! Field ownership: `metadata.managedFields` and server-side apply.
//!
//! Every write records which manager set which fields ([`record_update`]: the fields an update
//! changed move to its manager's `Update` entry). Server-side apply ([`apply`]) merges an applied
//! configuration into the live object by the schema's list types, refuses to take fields another
//! manager owns with a different value unless forced, and removes fields its manager applied
//! before but no longer applies (when nobody else owns them). Semantics follow
//! <https://kubernetes.io/docs/reference/using-api/server-side-apply/>.

pub mod fieldset;
pub mod lastapplied;

use crate::schema::SchemaRef;
use fieldset::{path_string, remove_at, value_at, Element, FieldSet};
use serde_json::{json, Map, Value};

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Who (the `fieldManager`).
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The API version the fields were written with.
    pub api_version: String,
    /// When.
    pub time: String,
    /// `status` for the status subresource, else empty.
    pub subresource: String,
    /// The fields.
    pub fields: FieldSet,
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// Its API version.
    pub api_version: String,
    /// The field, as `.spec.replicas`.
    pub field: String,
}

/// The entries stored in an object.
pub fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(Entry {
                manager: e["manager"].as_str()?.to_string(),
                operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                time: e["time"].as_str().unwrap_or_default().to_string(),
                subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
                fields: FieldSet::from_fields_v1(&e["fieldsV1"]),
            })
        })
        .collect()
}

fn store(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": e.fields.to_fields_v1()});
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The fields of `obj` that a manager can own through `subresource` (`status` or main).
pub fn owned_fields(
    obj: &Value,
    schema: Option<SchemaRef<'_>>,
    subresource: &str,
    status_is_separate: bool,
) -> FieldSet {
    let mut copy = obj.clone();
    if let Some(m) = copy.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if subresource == "status" {
            m.retain(|k, _| k == "status");
        } else if status_is_separate {
            m.remove("status");
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in SYSTEM_METADATA {
                meta.remove(*k);
            }
            if meta.is_empty() {
                m.remove("metadata");
            }
        }
    }
    FieldSet::from_value(&copy, schema)
}

/// Record an update by `manager`: the fields it changed become its own and nobody else's;
/// fields it removed are nobody's.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    schema: Option<SchemaRef<'_>>,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    status_is_separate: bool,
    now: &str,
) {
    let mut list = base_entries(old, new);
    let new_set = owned_fields(new, schema, subresource, status_is_separate);
    let old_set =
        old.map(|o| owned_fields(o, schema, subresource, status_is_separate)).unwrap_or_default();
    let empty = Value::Null;
    let old_obj = old.unwrap_or(&empty);
    let mut changed = FieldSet::default();
    for path in new_set.paths() {
        let differs =
            value_at(old_obj, &path) != value_at(new, &path) || !old_set_contains(&old_set, &path);
        if differs {
            insert_path(&mut changed, &path);
        }
    }
    let removed = old_set.difference(&new_set);
    for e in list.iter_mut() {
        e.fields = e.fields.difference(&changed).difference(&removed);
    }
    if !changed.is_empty() {
        let mine = list.iter_mut().find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        });
        match mine {
            Some(mine) => {
                mine.fields = mine.fields.union(&changed);
                mine.time = now.to_string();
                mine.api_version = api_version.to_string();
            }
            None => list.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.to_string(),
                fields: changed,
            }),
        }
    }
    store(new, &list);
}

/// The entries an update starts from, as upstream's `decodeLiveOrNew`: managedFields the
/// request sets (and that differ from the stored ones) replace them; an empty list resets them;
/// a request without any keeps the stored ones, so clients that do not know the field cannot
/// drop it.
fn base_entries(old: Option<&Value>, new: &Value) -> Vec<Entry> {
    let stored = old.map(entries).unwrap_or_default();
    match new["metadata"].get("managedFields") {
        Some(Value::Array(list)) if list.is_empty() => Vec::new(),
        Some(Value::Array(_)) => {
            let given = entries(new);
            if given.is_empty() {
                stored
            } else {
                given
            }
        }
        _ => stored,
    }
}

/// Whether `set` has any path strictly below `path`.
fn owns_inside(set: &FieldSet, path: &[Element]) -> bool {
    let mut cur = set;
    for e in path {
        match cur.children.get(e) {
            Some(c) => cur = c,
            None => return false,
        }
    }
    cur.children.values().any(|c| !c.is_empty())
}

fn old_set_contains(set: &FieldSet, path: &[Element]) -> bool {
    let mut cur = set;
    for e in path {
        match cur.children.get(e) {
            Some(c) => cur = c,
            None => return false,
        }
    }
    cur.member
}

fn insert_path(set: &mut FieldSet, path: &[Element]) {
    let mut cur = set;
    for e in path {
        cur = cur.children.entry(e.clone()).or_default();
    }
    cur.member = true;
}

/// Server-side apply of `config` by `manager` onto `live` (None: the object does not exist).
/// Returns the merged object with its managedFields, or the conflicts.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    schema: Option<SchemaRef<'_>>,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    status_is_separate: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let empty = json!({});
    let live_obj = live.unwrap_or(&empty);
    let mut list = entries(live_obj);
    let applied = owned_fields(config, schema, "", status_is_separate);
    let mut conflicts = Vec::new();
    for e in list.iter_mut().filter(|e| !(e.manager == manager && e.operation == "Apply")) {
        let overlap = e.fields.intersection(&applied);
        let mut lost = FieldSet::default();
        for path in overlap.paths() {
            let (theirs, mine) = (value_at(live_obj, &path), value_at(config, &path));
            // List items and maps are containers: only leaf values can disagree.
            let leaf =
                mine.is_some_and(|v| !v.is_object()) || theirs.is_some_and(|v| !v.is_object());
            if leaf && theirs != mine {
                if force {
                    insert_path(&mut lost, &path);
                } else {
                    conflicts.push(Conflict {
                        manager: e.manager.clone(),
                        api_version: e.api_version.clone(),
                        field: path_string(&path),
                    });
                }
            }
        }
        e.fields = e.fields.difference(&lost);
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let mut merged = merge(live_obj, config, schema);
    let previous = list
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others = list
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
        .fold(FieldSet::default(), |acc, e| acc.union(&e.fields));
    // Fields this manager applied before and stopped applying go, unless someone else owns them.
    let dropped = previous.difference(&applied).difference(&others);
    let all = dropped.paths();
    let kept = others.union(&applied);
    // A dropped list item goes whole: its fields (its key among them) are not removed one by
    // one first, or the item could no longer be found by its key. A field that someone still
    // owns something inside (an empty list applied before, with items now) stays, as
    // upstream adds back the parents of owned items.
    let mut paths: Vec<_> = all
        .iter()
        .filter(|p| !all.iter().any(|q| q.len() < p.len() && p.starts_with(q)))
        .filter(|p| !owns_inside(&kept, p))
        .cloned()
        .collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in paths {
        remove_at(&mut merged, &p);
        // A map emptied by the removal goes too, unless someone owns it as such.
        for len in (1..p.len()).rev() {
            let prefix = &p[..len];
            let empty =
                value_at(&merged, prefix).is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
            if !empty || old_set_contains(&kept, prefix) {
                break;
            }
            remove_at(&mut merged, prefix);
        }
    }
    list.retain(|e| !(e.manager == manager && e.operation == "Apply"));
    list.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: now.to_string(),
        subresource: String::new(),
        fields: applied,
    });
    store(&mut merged, &list);
    Ok(merged)
}

/// Structured merge: maps field by field, map-lists item by key, set-lists as a union, the rest
/// replaced by the applied value.
fn merge(live: &Value, config: &Value, schema: Option<SchemaRef<'_>>) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            let mut out: Map<String, Value> = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                let child = schema.and_then(|s| s.child(k));
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, cv, child),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => {
            let s = schema;
            let map_keys = s.and_then(|s| match s.list_type() {
                Some("map") => Some(s.list_map_keys()),
                None if s.patch_strategies().contains(&"merge") => {
                    s.patch_merge_key().map(|k| vec![k])
                }
                _ => None,
            });
            let is_set = s.is_some_and(|s| s.list_type() == Some("set"));
            if let Some(keys) = map_keys.filter(|k| !k.is_empty()) {
                let item_schema = s.and_then(|s| s.items());
                let mut out = l.clone();
                for ci in c {
                    let key = fieldset::item_key(ci, &keys);
                    let pos = key.as_ref().and_then(|k| {
                        out.iter().position(|li| fieldset::item_key(li, &keys).as_ref() == Some(k))
                    });
                    match pos {
                        Some(i) => out[i] = merge(&out[i], ci, item_schema),
                        None => out.push(ci.clone()),
                    }
                }
                Value::Array(out)
            } else if is_set {
                let mut out = l.clone();
                for ci in c {
                    if !out.contains(ci) {
                        out.push(ci.clone());
                    }
                }
                Value::Array(out)
            } else {
                config.clone()
            }
        }
        _ => config.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Definitions;

    fn deploy_schema() -> Option<SchemaRef<'static>> {
        Definitions::builtin().get("io.k8s.api.apps.v1.Deployment")
    }

    fn cfg(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "b"}},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})
    }

    #[test]
    fn two_managers_conflict_and_force_takes_the_field() {
        let s = deploy_schema();
        let first =
            apply(s, None, &cfg(2, "nginx"), "alice", "apps/v1", false, true, "t").expect("apply");
        let again = apply(s, Some(&first), &cfg(2, "nginx"), "alice", "apps/v1", false, true, "t")
            .expect("no-op");
        assert_eq!(again, first);
        let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let err = apply(s, Some(&first), &bob, "bob", "apps/v1", false, true, "t").unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "alice".into(),
                api_version: "apps/v1".into(),
                field: ".spec.replicas".into()
            }]
        );
        let forced =
            apply(s, Some(&first), &bob, "bob", "apps/v1", true, true, "t").expect("forced");
        assert_eq!(forced["spec"]["replicas"], 5);
        let owners = entries(&forced);
        let alice = owners.iter().find(|e| e.manager == "alice").expect("alice");
        assert!(!alice.fields.paths().iter().any(|p| path_string(p) == ".spec.replicas"));
        // Alice stops applying her label: it goes; bob's replicas stay.
        let mut less = cfg(2, "nginx");
        less["metadata"].as_object_mut().expect("meta").remove("labels");
        less["spec"].as_object_mut().expect("spec").remove("replicas");
        let after =
            apply(s, Some(&forced), &less, "alice", "apps/v1", false, true, "t").expect("apply");
        assert!(after["metadata"].get("labels").is_none(), "{after}");
        assert_eq!(after["spec"]["replicas"], 5);
        assert_eq!(after["spec"]["template"]["spec"]["containers"][0]["image"], "nginx");
    }

    #[test]
    fn updates_move_changed_fields_to_their_manager() {
        let s = deploy_schema();
        let mut created = cfg(1, "a");
        record_update(s, None, &mut created, "kubectl-create", "apps/v1", "", true, "t");
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(3);
        record_update(s, Some(&created), &mut scaled, "kubectl-scale", "apps/v1", "", true, "t");
        let e = entries(&scaled);
        let scale = e.iter().find(|e| e.manager == "kubectl-scale").expect("scale entry");
        let paths: Vec<String> = scale.fields.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(paths, vec![".spec.replicas".to_string()]);
        let create = e.iter().find(|e| e.manager == "kubectl-create").expect("create entry");
        assert!(!create.fields.paths().iter().any(|p| path_string(p) == ".spec.replicas"));
    }
}
