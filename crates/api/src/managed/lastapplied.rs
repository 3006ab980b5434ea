//! Interplay of server-side apply with client-side apply's
//! `kubectl.kubernetes.io/last-applied-configuration` annotation, as upstream's field manager
//! does it (`lastappliedmanager.go` and `lastappliedupdater.go` in
//! `k8s.io/apimachinery/pkg/util/managedfields/internal`). Both apply only to the field
//! manager `kubectl` (what `kubectl apply --server-side` sends), so other appliers opt out:
//!
//! - [`allowed_conflicts`]: when such an apply conflicts, the conflicts on fields the
//!   annotation lists with the live value are not conflicts (the user applied those values
//!   before, client-side), and the apply is forced;
//! - [`update_annotation`]: after such an apply, an object that has the annotation gets it
//!   rewritten to the applied configuration, so a later client-side `kubectl apply` computes
//!   its three-way patch from what was last applied, whichever way.
//!
//! kubectl's own part (`csaupgrade`: it moves the fields of the `kubectl-client-side-apply`
//! Update entry into its Apply entry with a JSON patch on `metadata.managedFields`, then applies
//! again) needs the server to take managedFields from a request, which [`super::record_update`]
//! does.

use super::{insert_path, owned_fields, Conflict};
use crate::managed::fieldset::{path_string, value_at, FieldSet};
use crate::schema::SchemaRef;
use serde_json::{Map, Value};

/// The annotation client-side apply keeps.
pub const ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The only field manager whose applies take part (kubectl's default for `--server-side`).
pub const MANAGER: &str = "kubectl";

fn annotation(obj: &Value) -> Option<&str> {
    obj["metadata"]["annotations"][ANNOTATION].as_str().filter(|s| !s.is_empty())
}

/// The fields the live object's last-applied configuration sets to the value they still have:
/// conflicts on these are the user's own earlier client-side applies. `None` when there is no
/// usable annotation (absent, not JSON, or of another API version).
pub fn allowed_fields(
    schema: Option<SchemaRef<'_>>,
    live: &Value,
    api_version: &str,
    status_is_separate: bool,
) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last["apiVersion"].as_str() != Some(api_version) {
        return None;
    }
    let mut allowed = FieldSet::default();
    for path in owned_fields(&last, schema, "", status_is_separate).paths() {
        let (theirs, live_value) = (value_at(&last, &path), value_at(live, &path));
        let same = match (theirs, live_value) {
            (Some(a), Some(b)) if a.is_object() && b.is_object() => true,
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        if same {
            insert_path(&mut allowed, &path);
        }
    }
    Some(allowed)
}

/// The conflicts that remain once those on `allowed` fields are set aside.
pub fn remaining(conflicts: &[Conflict], allowed: &FieldSet) -> Vec<Conflict> {
    let allowed: std::collections::HashSet<String> =
        allowed.paths().iter().map(|p| path_string(p)).collect();
    conflicts.iter().filter(|c| !allowed.contains(&c.field)).cloned().collect()
}

/// Whether an apply by `manager` keeps the annotation of `live` in step.
pub fn keeps_annotation(manager: &str, live: Option<&Value>) -> bool {
    manager == MANAGER && live.and_then(annotation).is_some()
}

/// Set the annotation of `obj` to `config` (without the annotation itself), encoded as
/// upstream encodes it: keys sorted, compact, with a final newline.
pub fn update_annotation(obj: &mut Value, config: &Value) {
    let mut last = config.clone();
    if let Some(annotations) =
        last.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut)
    {
        annotations.remove(ANNOTATION);
    }
    let text = format!("{}\n", sorted(&last));
    let meta = &mut obj["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = Value::Object(Map::new());
    }
    meta["annotations"][ANNOTATION] = Value::String(text);
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed::{apply, entries, record_update};
    use crate::schema::Definitions;
    use serde_json::json;

    fn schema() -> Option<SchemaRef<'static>> {
        Definitions::builtin().get("io.k8s.api.apps.v1.Deployment")
    }

    fn deploy(replicas: i64, extra_label: bool) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}}});
        if extra_label {
            d["metadata"]["labels"]["extra"] = json!("yes");
        }
        d
    }

    /// An object as client-side apply leaves it: the annotation, and the fields owned by the
    /// `kubectl-client-side-apply` Update entry.
    fn client_side_applied(config: &Value) -> Value {
        let mut obj = config.clone();
        update_annotation(&mut obj, config);
        record_update(
            schema(),
            None,
            &mut obj,
            "kubectl-client-side-apply",
            "apps/v1",
            "",
            true,
            "t",
        );
        obj
    }

    #[test]
    fn a_kubectl_apply_may_take_what_the_annotation_set_and_updates_it() {
        let live = client_side_applied(&deploy(2, true));
        // Changing replicas conflicts with the client-side manager ...
        let changed = deploy(3, true);
        let conflicts =
            apply(schema(), Some(&live), &changed, MANAGER, "apps/v1", false, true, "t")
                .unwrap_err();
        assert_eq!(conflicts.len(), 1);
        // ... but the annotation says the user set it: nothing remains.
        let allowed = allowed_fields(schema(), &live, "apps/v1", true).expect("annotation");
        assert!(remaining(&conflicts, &allowed).is_empty());
        // A field someone changed after the client-side apply is not the user's any more.
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(7);
        let allowed = allowed_fields(schema(), &edited, "apps/v1", true).expect("annotation");
        assert_eq!(remaining(&conflicts, &allowed), conflicts);
        // Another API version's annotation is not used.
        assert!(allowed_fields(schema(), &live, "apps/v1beta1", true).is_none());
        // The annotation follows the applied configuration, sorted and newline-terminated.
        let mut out = apply(schema(), Some(&live), &changed, MANAGER, "apps/v1", true, true, "t")
            .expect("forced");
        assert!(keeps_annotation(MANAGER, Some(&live)));
        assert!(!keeps_annotation("other", Some(&live)));
        update_annotation(&mut out, &changed);
        let text = out["metadata"]["annotations"][ANNOTATION].as_str().expect("annotation");
        assert!(
            text.starts_with("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":"),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
        let back: Value = serde_json::from_str(text).expect("json");
        assert_eq!(back, changed);
    }

    #[test]
    fn managed_fields_given_by_a_request_replace_the_stored_ones() {
        let live = client_side_applied(&deploy(2, true));
        let mut moved = live.clone();
        // What kubectl's csaupgrade sends: the client-side entry renamed to kubectl's Apply.
        let mut list = moved["metadata"]["managedFields"].clone();
        list[0]["manager"] = json!(MANAGER);
        list[0]["operation"] = json!("Apply");
        moved["metadata"]["managedFields"] = list;
        record_update(schema(), Some(&live), &mut moved, "kubectl", "apps/v1", "", true, "t");
        let e = entries(&moved);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].manager.as_str(), e[0].operation.as_str()), (MANAGER, "Apply"));
        // The next apply that drops the extra label removes it: kubectl's Apply entry owned it.
        let out =
            apply(schema(), Some(&moved), &deploy(2, false), MANAGER, "apps/v1", false, true, "t")
                .expect("no conflict");
        assert!(out["metadata"]["labels"].get("extra").is_none(), "{out}");
        assert_eq!(out["metadata"]["labels"]["app"], "web");
    }
}
