//! Schemas of the API's types: the JSON Schema definitions of every built-in kind (with the
//! `x-kubernetes-*` extensions kept) and a way to walk them.
//!
//! The definitions are data about Kubernetes v1.33 (see `schemas/README.md` for their origin).
//! They drive strategic merge patch (merge keys and strategies), unknown-field detection for
//! `fieldValidation`, and the OpenAPI documents the API server serves. Custom resources bring
//! their own schemas (`openAPIV3Schema`), which are walked with the same [`SchemaRef`].

use serde_json::{Map, Value};
use std::sync::OnceLock;

static DEFINITIONS_JSON: &str = include_str!("../schemas/k8s-v1.33-definitions.json");

/// All named definitions, keyed by their OpenAPI name (`io.k8s.api.core.v1.Pod`).
#[derive(Debug)]
pub struct Definitions {
    defs: Map<String, Value>,
}

impl Definitions {
    /// The built-in definitions, parsed once per process.
    pub fn builtin() -> &'static Definitions {
        static DEFS: OnceLock<Definitions> = OnceLock::new();
        DEFS.get_or_init(|| {
            let mut root: Value = match serde_json::from_str(DEFINITIONS_JSON) {
                Ok(v) => v,
                // The file is compiled in and covered by tests; an empty set keeps the server up.
                Err(_) => Value::Null,
            };
            let defs = match root.get_mut("$defs").map(Value::take) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            Definitions { defs }
        })
    }

    /// Definitions from a map (tests, custom sets).
    pub fn from_map(defs: Map<String, Value>) -> Self {
        Definitions { defs }
    }

    /// Every definition by name.
    pub fn all(&self) -> &Map<String, Value> {
        &self.defs
    }

    /// The definition called `name`.
    pub fn get(&self, name: &str) -> Option<SchemaRef<'_>> {
        self.defs.get(name).map(|node| SchemaRef { defs: Some(self), node })
    }

    /// The definition whose `x-kubernetes-group-version-kind` names this kind.
    pub fn by_gvk(&self, group: &str, version: &str, kind: &str) -> Option<(&str, SchemaRef<'_>)> {
        self.defs.iter().find_map(|(name, node)| {
            let gvks = node.get("x-kubernetes-group-version-kind")?.as_array()?;
            gvks.iter()
                .any(|g| {
                    g.get("group").and_then(Value::as_str) == Some(group)
                        && g.get("version").and_then(Value::as_str) == Some(version)
                        && g.get("kind").and_then(Value::as_str) == Some(kind)
                })
                .then_some((name.as_str(), SchemaRef { defs: Some(self), node }))
        })
    }
}

/// A node of a schema, with `$ref`s resolved on the way down.
#[derive(Debug, Clone, Copy)]
pub struct SchemaRef<'a> {
    defs: Option<&'a Definitions>,
    node: &'a Value,
}

impl<'a> SchemaRef<'a> {
    /// A free-standing schema (a CRD's `openAPIV3Schema`) with no named definitions.
    pub fn standalone(node: &'a Value) -> Self {
        SchemaRef { defs: None, node }.resolved()
    }

    fn resolved(self) -> Self {
        let mut cur = self;
        // `$ref` chains are short; the bound guards against a cycle in bad data.
        for _ in 0..8 {
            let Some(r) = cur.node.get("$ref").and_then(Value::as_str) else { break };
            let name = r.rsplit('/').next().unwrap_or(r);
            match cur.defs.and_then(|d| d.defs.get(name)) {
                Some(node) => cur = SchemaRef { defs: cur.defs, node },
                None => break,
            }
        }
        // A single `allOf` wrapping a `$ref` is how some generators attach a description.
        if let Some(Value::Array(all)) = cur.node.get("allOf") {
            if all.len() == 1 {
                return SchemaRef { defs: cur.defs, node: &all[0] }.resolved();
            }
        }
        cur
    }

    /// The raw JSON of this node.
    pub fn raw(&self) -> &'a Value {
        self.node
    }

    /// The schema of property `name` of an object.
    pub fn property(&self, name: &str) -> Option<SchemaRef<'a>> {
        let node = self.node.get("properties")?.get(name)?;
        Some(SchemaRef { defs: self.defs, node }.resolved())
    }

    /// Whether this object schema declares properties.
    pub fn has_properties(&self) -> bool {
        self.node.get("properties").and_then(Value::as_object).is_some_and(|m| !m.is_empty())
    }

    /// The names of the declared properties.
    pub fn property_names(&self) -> impl Iterator<Item = &'a str> {
        self.node
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
    }

    /// The schema of an array's items.
    pub fn items(&self) -> Option<SchemaRef<'a>> {
        let node = self.node.get("items")?;
        Some(SchemaRef { defs: self.defs, node }.resolved())
    }

    /// The schema of a map's values (`additionalProperties` when it is a schema).
    pub fn additional_properties(&self) -> Option<SchemaRef<'a>> {
        let node = self.node.get("additionalProperties")?;
        node.is_object().then(|| SchemaRef { defs: self.defs, node }.resolved())
    }

    /// The schema of a child field: a declared property, else the map's value schema.
    pub fn child(&self, name: &str) -> Option<SchemaRef<'a>> {
        self.property(name).or_else(|| self.additional_properties())
    }

    /// Whether unknown fields are kept (`x-kubernetes-preserve-unknown-fields`, or a map schema,
    /// or a schema that says nothing about its shape).
    pub fn preserves_unknown_fields(&self) -> bool {
        self.ext_bool("x-kubernetes-preserve-unknown-fields")
            || self
                .node
                .get("additionalProperties")
                .is_some_and(|a| a.is_object() || a == &Value::Bool(true))
            || self.ext_bool("x-kubernetes-int-or-string")
            || self.ext_bool("x-kubernetes-embedded-resource") && !self.has_properties()
            || (!self.has_properties() && self.primary_type().is_none_or(|t| t == "object"))
    }

    /// The JSON type this node names, ignoring `null` (`["string","null"]` → `string`).
    pub fn primary_type(&self) -> Option<&'a str> {
        match self.node.get("type")? {
            Value::String(s) => Some(s.as_str()),
            Value::Array(a) => a.iter().filter_map(Value::as_str).find(|t| *t != "null"),
            _ => None,
        }
    }

    /// An extension or keyword's value.
    pub fn ext(&self, name: &str) -> Option<&'a Value> {
        self.node.get(name)
    }

    fn ext_bool(&self, name: &str) -> bool {
        self.node.get(name).and_then(Value::as_bool).unwrap_or(false)
    }

    /// `x-kubernetes-patch-strategy`, split on commas (`merge`, `retainKeys`, `replace`).
    pub fn patch_strategies(&self) -> Vec<&'a str> {
        self.node
            .get("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
            .map(|s| s.split(',').map(str::trim).collect())
            .unwrap_or_default()
    }

    /// `x-kubernetes-patch-merge-key`.
    pub fn patch_merge_key(&self) -> Option<&'a str> {
        self.node.get("x-kubernetes-patch-merge-key").and_then(Value::as_str)
    }

    /// `x-kubernetes-list-type` (`atomic`, `set`, `map`).
    pub fn list_type(&self) -> Option<&'a str> {
        self.node.get("x-kubernetes-list-type").and_then(Value::as_str)
    }

    /// `x-kubernetes-list-map-keys`.
    pub fn list_map_keys(&self) -> Vec<&'a str> {
        self.node
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_definitions_load_and_carry_extensions() {
        let defs = Definitions::builtin();
        assert!(defs.all().len() > 700);
        let (name, deploy) = defs.by_gvk("apps", "v1", "Deployment").expect("deployment");
        assert_eq!(name, "io.k8s.api.apps.v1.Deployment");
        let containers = deploy
            .property("spec")
            .and_then(|s| s.property("template"))
            .and_then(|t| t.property("spec"))
            .and_then(|s| s.property("containers"))
            .expect("containers");
        assert_eq!(containers.patch_merge_key(), Some("name"));
        assert_eq!(containers.patch_strategies(), vec!["merge"]);
        assert_eq!(containers.list_type(), Some("map"));
        let image = containers.items().and_then(|c| c.property("image")).expect("image");
        assert_eq!(image.primary_type(), Some("string"));
    }

    #[test]
    fn labels_are_a_map_that_keeps_unknown_keys() {
        let defs = Definitions::builtin();
        let meta = defs.get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").expect("meta");
        let labels = meta.property("labels").expect("labels");
        assert!(labels.preserves_unknown_fields());
        assert!(!meta.preserves_unknown_fields());
    }
}
