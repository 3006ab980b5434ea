//! OpenAPI v3: `/openapi/v3` lists one document per group-version; each document has the
//! paths of its resources (PATCH operations carry `x-kubernetes-group-version-kind` and the
//! `fieldValidation` parameter, which is how kubectl decides to leave validation to the server)
//! and the schemas kubectl's `explain` renders.
//!
//! Built-in documents are made once from the vendored v1.33 definitions; custom resources'
//! documents are made from their CRD's `openAPIV3Schema` on each request (CRDs change).

use crate::catalog::Snapshot;
use kumo_api::resources::Resource;
use kumo_api::schema::Definitions;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};

/// A built document and its hash.
type Doc = (std::sync::Arc<Vec<u8>>, String);

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// The path key of a group-version in `/openapi/v3` (`api/v1`, `apis/apps/v1`).
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `/openapi/v3` index.
pub fn index(snap: &Snapshot) -> Value {
    let mut paths = Map::new();
    for (group, versions) in snap.groups() {
        for v in versions {
            let key = gv_path(&group, &v);
            let hash = document(snap, &group, &v).map(|(_, h)| h).unwrap_or_default();
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// The document of one group-version, with its hash; `None` when nothing is served there.
pub fn document(
    snap: &Snapshot,
    group: &str,
    version: &str,
) -> Option<(std::sync::Arc<Vec<u8>>, String)> {
    let rs: Vec<&Resource> =
        snap.resources.iter().filter(|r| r.group == group && r.version == version).collect();
    if rs.is_empty() {
        return None;
    }
    let custom = rs.iter().any(|r| r.crd_schema.is_some());
    let key = gv_path(group, version);
    static CACHE: OnceLock<Mutex<HashMap<String, Doc>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if !custom {
        if let Ok(c) = cache.lock() {
            if let Some(hit) = c.get(&key) {
                return Some(hit.clone());
            }
        }
    }
    let doc = build(&rs, group, version);
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    let entry = (std::sync::Arc::new(bytes), format!("{:016X}", h.finish()));
    if !custom {
        if let Ok(mut c) = cache.lock() {
            c.insert(key, entry.clone());
        }
    }
    Some(entry)
}

fn build(rs: &[&Resource], group: &str, version: &str) -> Value {
    let defs = Definitions::builtin();
    let mut wanted: Vec<String> = vec![
        format!("{META}.Status"),
        format!("{META}.DeleteOptions"),
        format!("{META}.Patch"),
        format!("{META}.ObjectMeta"),
        format!("{META}.ListMeta"),
        "io.k8s.api.autoscaling.v1.Scale".into(),
    ];
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for r in rs {
        let schema_name = match (&r.definition, &r.crd_schema) {
            (Some(def), _) => {
                wanted.push(def.clone());
                wanted.push(format!("{def}List"));
                def.clone()
            }
            (None, Some(crd_schema)) => {
                let name = crd_schema_name(r);
                schemas.insert(name.clone(), crd_component(r, crd_schema));
                name
            }
            (None, None) => continue,
        };
        add_paths(&mut paths, r, &schema_name);
    }
    // Transitive closure of the referenced built-in definitions.
    let mut seen = BTreeSet::new();
    while let Some(name) = wanted.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(node) = defs.all().get(&name) else { continue };
        collect_refs(node, &mut wanted);
        schemas.insert(name, convert(node));
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
        "x-kumo-group-version": format!("{group}/{version}"),
    })
}

fn crd_schema_name(r: &Resource) -> String {
    let rev: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", rev.join("."), r.version, r.kind)
}

fn crd_component(r: &Resource, schema: &Value) -> Value {
    let mut s = if schema.is_object() { schema.clone() } else { json!({"type": "object"}) };
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "metadata".into(),
            json!({"allOf": [{"$ref": format!("#/components/schemas/{META}.ObjectMeta")}],
                   "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
        );
        props.entry("apiVersion").or_insert(json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        props.entry("kind").or_insert(json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
    } else if let Some(obj) = s.as_object_mut() {
        obj.insert("properties".into(), json!({
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{META}.ObjectMeta")}]},
        }));
    }
    s["x-kubernetes-group-version-kind"] =
        json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
    s
}

fn collect_refs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    if let Some(s) = v.as_str() {
                        out.push(s.rsplit('/').next().unwrap_or(s).to_string());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// JSON Schema (draft 2020, nullable types, `$defs`) → OpenAPI 3.0 schema object.
fn convert(node: &Value) -> Value {
    match node {
        Value::Object(m) => {
            let mut out = Map::new();
            let mut reference = None;
            for (k, v) in m {
                match k.as_str() {
                    "$ref" => {
                        let name = v.as_str().unwrap_or_default().rsplit('/').next().unwrap_or("");
                        reference = Some(format!("#/components/schemas/{name}"));
                    }
                    "$schema" | "$id" => {}
                    "type" => {
                        let t = match v {
                            Value::Array(a) => {
                                a.iter().find(|t| t.as_str() != Some("null")).cloned()
                            }
                            other => Some(other.clone()),
                        };
                        if let Some(t) = t {
                            out.insert(k.clone(), t);
                        }
                    }
                    // Upstream's documents do not pin apiVersion/kind to enums.
                    "enum" if m.get("type").is_some() && is_gvk_field_enum(v) => {}
                    "properties" => {
                        let props: Map<String, Value> = v
                            .as_object()
                            .map(|p| p.iter().map(|(k, v)| (k.clone(), convert(v))).collect())
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    _ => {
                        out.insert(k.clone(), convert(v));
                    }
                }
            }
            if let Some(r) = reference {
                if out.is_empty() {
                    return json!({"$ref": r});
                }
                out.insert("allOf".into(), json!([{"$ref": r}]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(convert).collect()),
        other => other.clone(),
    }
}

fn is_gvk_field_enum(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.len() == 1)
}

fn add_paths(paths: &mut Map<String, Value>, r: &Resource, schema_name: &str) {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let collection = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let obj_ref = json!({"$ref": format!("#/components/schemas/{schema_name}")});
    let list_ref = if r.definition.is_some() {
        json!({"$ref": format!("#/components/schemas/{schema_name}List")})
    } else {
        json!({"type": "object"})
    };
    let write_params = || {
        json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "description": "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.", "schema": {"type": "string", "uniqueItems": true}},
        ])
    };
    let op = |action: &str, verb: &str, body: Option<&Value>, resp: &Value| {
        let mut o = json!({
            "operationId": format!("{verb}{}", r.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": resp}}}},
        });
        if let Some(b) = body {
            o["requestBody"] = json!({"content": {"*/*": {"schema": b}}, "required": true});
            o["parameters"] = write_params();
        }
        o
    };
    let patch_body = json!({"$ref": format!("#/components/schemas/{META}.Patch")});
    let mut coll = json!({"post": op("post", "create", Some(&obj_ref), &obj_ref)});
    if r.verbs.contains(&"list") {
        coll["get"] = op("list", "list", None, &list_ref);
    }
    if r.verbs.contains(&"deletecollection") {
        coll["delete"] = op(
            "deletecollection",
            "deletecollection",
            None,
            &json!({"$ref": format!("#/components/schemas/{META}.Status")}),
        );
    }
    if r.namespaced {
        coll["parameters"] = json!([{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}]);
    }
    paths.insert(collection.clone(), coll);
    if r.create_only {
        return;
    }
    let item_params = if r.namespaced {
        json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
               {"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}])
    } else {
        json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}])
    };
    let mut item = json!({
        "get": op("get", "read", None, &obj_ref),
        "put": op("put", "replace", Some(&obj_ref), &obj_ref),
        "patch": op("patch", "patch", Some(&patch_body), &obj_ref),
        "delete": op("delete", "delete", None, &json!({"$ref": format!("#/components/schemas/{META}.Status")})),
        "parameters": item_params.clone(),
    });
    if let Some(o) = item.as_object_mut() {
        o.retain(|k, _| k == "parameters" || r.verbs.contains(&verb_of(k)));
    }
    paths.insert(format!("{collection}/{{name}}"), item);
    if r.status {
        paths.insert(
            format!("{collection}/{{name}}/status"),
            json!({
                "get": op("get", "read", None, &obj_ref),
                "put": op("put", "replace", Some(&obj_ref), &obj_ref),
                "patch": op("patch", "patch", Some(&patch_body), &obj_ref),
                "parameters": item_params,
            }),
        );
    }
    if r.namespaced {
        paths.insert(
            format!("{prefix}/{}", r.plural),
            json!({"get": op("list", "list", None, &list_ref)}),
        );
    }
}

fn verb_of(method: &str) -> &'static str {
    match method {
        "get" => "get",
        "put" => "update",
        "patch" => "patch",
        "delete" => "delete",
        _ => "get",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_document_has_patch_with_field_validation_and_gvk() {
        let snap = Snapshot { resources: kumo_api::resources::builtin() };
        let (bytes, hash) = document(&snap, "apps", "v1").expect("doc");
        assert!(!hash.is_empty());
        let doc: Value = serde_json::from_slice(&bytes).expect("json");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"fieldValidation"));
        let deploy = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(deploy["type"], "object");
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"].is_object());
        // Every reference resolves inside the document.
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        for r in refs {
            assert!(doc["components"]["schemas"].get(&r).is_some(), "dangling {r}");
        }
    }
}
