//! The CustomResourceDefinitions every kumo cluster serves from the start: the Gateway API
//! (`gateway.networking.k8s.io`), Istio networking and security (`networking.istio.io`,
//! `security.istio.io`) and kumo's own `TrafficPolicy` (`kumo.dev`), the kinds the gateway in
//! `crates/proxy` reads. With them a fresh cluster takes `kubectl apply` of routes and policies
//! without installing anything first.
//!
//! The definitions are YAML files under `crates/apiserver/crds/`, one per API group, compiled in.
//! At start-up [`install`] stores each one that is absent and replaces each one whose built-in
//! definition changed since it was stored; the `kumo.dev/builtin-crd-digest` annotation records
//! which definition a stored CRD came from. A CRD of the same name stored without that
//! annotation (installed by hand, say upstream's) is the user's and is left alone.
//!
//! What a schema cannot say (upstream writes it in CEL) is checked by [`rules::validate`].

pub mod rules;

use crate::error::ApiError;
use crate::registry::{self, Registry, WriteOptions};
use kumo_api::resources::Resource;
use serde::Deserialize;
use serde_json::{json, Value};

/// The annotation holding the digest of the built-in definition a stored CRD was made from.
pub const DIGEST_ANNOTATION: &str = "kumo.dev/builtin-crd-digest";

/// The field manager of the API server's own writes of these CRDs.
const FIELD_MANAGER: &str = "kumo-apiserver";

/// One file of definitions per API group.
const SOURCES: [(&str, &str); 4] = [
    ("gateway.networking.k8s.io.yaml", include_str!("../crds/gateway.networking.k8s.io.yaml")),
    ("networking.istio.io.yaml", include_str!("../crds/networking.istio.io.yaml")),
    ("security.istio.io.yaml", include_str!("../crds/security.istio.io.yaml")),
    ("kumo.dev.yaml", include_str!("../crds/kumo.dev.yaml")),
];

/// Errors reading the compiled-in definitions (a build with a broken file; the unit tests
/// catch it first).
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// A file is not valid YAML.
    #[error("built-in CRDs in {file} are not valid YAML: {source}")]
    Yaml {
        /// The file under `crates/apiserver/crds/`.
        file: &'static str,
        /// The parser's error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A document is not a named CustomResourceDefinition.
    #[error("a document in {file} is not a named CustomResourceDefinition")]
    NotACrd {
        /// The file under `crates/apiserver/crds/`.
        file: &'static str,
    },
}

/// Every built-in CRD, each annotated with the digest of its definition.
pub fn definitions() -> Result<Vec<Value>, DefinitionError> {
    let mut out = Vec::new();
    for (file, text) in SOURCES {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let mut crd =
                Value::deserialize(doc).map_err(|source| DefinitionError::Yaml { file, source })?;
            let named = crd["kind"] == "CustomResourceDefinition"
                && crd["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty());
            if !named {
                return Err(DefinitionError::NotACrd { file });
            }
            let digest = digest(&crd);
            let annotations = &mut crd["metadata"]["annotations"];
            if !annotations.is_object() {
                *annotations = json!({});
            }
            annotations[DIGEST_ANNOTATION] = json!(digest);
            out.push(crd);
        }
    }
    Ok(out)
}

/// FNV-1a over the definition's JSON: stable across builds and processes (std's hasher is not
/// promised to be), and a change detector needs nothing stronger.
fn digest(crd: &Value) -> String {
    let bytes = serde_json::to_vec(crd).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// What start-up does with one built-in CRD.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Nothing is stored under its name: create it.
    Create,
    /// The stored one came from this very definition: leave it.
    Keep,
    /// The stored one came from an older built-in definition: replace it with this object.
    Update(Value),
    /// The stored one was not made by kumo: leave it to its owner.
    Foreign,
}

/// Decide what to do with the built-in `definition` given what is `stored` under its name.
pub fn plan(stored: Option<&Value>, definition: &Value) -> Plan {
    let Some(stored) = stored else { return Plan::Create };
    let annotation = |o: &Value| o["metadata"]["annotations"][DIGEST_ANNOTATION].clone();
    match annotation(stored) {
        Value::Null => Plan::Foreign,
        d if d == annotation(definition) => Plan::Keep,
        _ => {
            let mut next = stored.clone();
            next["spec"] = definition["spec"].clone();
            for field in ["labels", "annotations"] {
                if let Some(wanted) = definition["metadata"][field].as_object() {
                    let have = &mut next["metadata"][field];
                    if !have.is_object() {
                        *have = json!({});
                    }
                    for (k, v) in wanted {
                        have[k] = v.clone();
                    }
                }
            }
            if let Some(meta) = next["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
                meta.remove("managedFields");
            }
            Plan::Update(next)
        }
    }
}

/// Store the built-in CRDs that are missing or out of date. Failures are logged: the server
/// still serves everything else.
pub async fn install(reg: &Registry) {
    let definitions = match definitions() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "built-in custom resource definitions not installed");
            return;
        }
    };
    let Some(crd) =
        reg.catalog.snapshot().by_kind("apiextensions.k8s.io", "CustomResourceDefinition").cloned()
    else {
        return;
    };
    let (mut created, mut updated) = (0, 0);
    for definition in definitions {
        let name = definition["metadata"]["name"].as_str().unwrap_or_default().to_string();
        match install_one(reg, &crd, &name, definition).await {
            Ok(Installed::Created) => created += 1,
            Ok(Installed::Updated) => updated += 1,
            Ok(Installed::Unchanged) => {}
            Err(e) => {
                tracing::warn!(crd = name, error = %e, "built-in custom resource definition not installed")
            }
        }
    }
    if created + updated > 0 {
        tracing::info!(created, updated, "built-in custom resource definitions installed");
    }
}

/// What [`install_one`] did.
enum Installed {
    Created,
    Updated,
    Unchanged,
}

async fn install_one(
    reg: &Registry,
    crd: &Resource,
    name: &str,
    definition: Value,
) -> Result<Installed, ApiError> {
    let stored = match reg.store.get(&crd.key(None, name)).await? {
        Some(kv) => Some(registry::decode(crd, &kv)?),
        None => None,
    };
    let opts = WriteOptions { field_manager: FIELD_MANAGER.into(), ..Default::default() };
    match plan(stored.as_ref(), &definition) {
        Plan::Create => match reg.create(crd, None, definition, &opts).await {
            Ok(_) => Ok(Installed::Created),
            // Another server over the same store got there first.
            Err(ApiError::AlreadyExists(..)) => Ok(Installed::Unchanged),
            Err(e) => Err(e),
        },
        Plan::Update(next) => {
            tracing::info!(
                crd = name,
                "replacing a built-in custom resource definition by its new version"
            );
            reg.update(crd, None, name, next, None, &opts).await.map(|_| Installed::Updated)
        }
        Plan::Keep => Ok(Installed::Unchanged),
        Plan::Foreign => {
            tracing::debug!(
                crd = name,
                "a custom resource definition installed by hand replaces the built-in one"
            );
            Ok(Installed::Unchanged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Value> {
        definitions().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_definition_parses_and_is_valid_for_the_catalog() {
        let defs = all();
        let names: Vec<&str> = defs.iter().filter_map(|d| d["metadata"]["name"].as_str()).collect();
        for want in [
            "gatewayclasses.gateway.networking.k8s.io",
            "gateways.gateway.networking.k8s.io",
            "httproutes.gateway.networking.k8s.io",
            "referencegrants.gateway.networking.k8s.io",
            "virtualservices.networking.istio.io",
            "destinationrules.networking.istio.io",
            "gateways.networking.istio.io",
            "requestauthentications.security.istio.io",
            "authorizationpolicies.security.istio.io",
            "trafficpolicies.kumo.dev",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        for d in &defs {
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            let spec = &d["spec"];
            let plural = spec["names"]["plural"].as_str().unwrap_or_default();
            let group = spec["group"].as_str().unwrap_or_default();
            assert_eq!(name, format!("{plural}.{group}"));
            let versions = spec["versions"].as_array().cloned().unwrap_or_default();
            let storage = versions.iter().filter(|v| v["storage"] == true).count();
            assert_eq!(storage, 1, "{name}: one storage version");
            assert!(
                !spec["names"]["categories"].as_array().into_iter().flatten().any(|c| c == "all"),
                "{name} is not in `all`"
            );
            let errors = kumo_api::validation::validate(&crd_resource(), d, None);
            assert!(errors.is_empty(), "{name}: {errors:?}");
            for r in crate::catalog::crd_resources(d) {
                let schema = r.crd_schema.clone().unwrap_or_default();
                assert!(schema["properties"]["spec"].is_object(), "{name} {}", r.version);
                assert_schema_is_structural(&schema, &format!("{name}/{}", r.version));
            }
        }
    }

    fn crd_resource() -> Resource {
        kumo_api::resources::builtin()
            .into_iter()
            .find(|r| r.kind == "CustomResourceDefinition")
            .unwrap_or_else(|| panic!("no CRD resource"))
    }

    /// Every node says its type; every pattern compiles; every default is allowed by its own
    /// node's enum.
    fn assert_schema_is_structural(node: &Value, path: &str) {
        let preserve = node["x-kubernetes-preserve-unknown-fields"] == true;
        assert!(node["type"].is_string() || preserve, "{path}: no type");
        if let Some(p) = node["pattern"].as_str() {
            assert!(regex::Regex::new(p).is_ok(), "{path}: pattern {p} does not compile");
        }
        if let (Some(d), Some(e)) = (node.get("default"), node["enum"].as_array()) {
            assert!(e.contains(d), "{path}: default {d} not in enum");
        }
        for (k, child) in node["properties"].as_object().into_iter().flatten() {
            assert_schema_is_structural(child, &format!("{path}.{k}"));
        }
        if node["items"].is_object() {
            assert_schema_is_structural(&node["items"], &format!("{path}[]"));
        }
        if node["additionalProperties"].is_object() {
            assert_schema_is_structural(&node["additionalProperties"], &format!("{path}{{}}"));
        }
    }

    #[test]
    fn digests_are_stable_and_follow_the_definition() {
        let a = all();
        let b = all();
        assert_eq!(a, b);
        let first = &a[0];
        let mut changed = first.clone();
        changed["spec"]["names"]["shortNames"] = json!(["changed"]);
        assert_ne!(digest(first), digest(&changed));
    }

    #[test]
    fn start_up_creates_keeps_updates_and_leaves_foreign_definitions() {
        let def = all().remove(0);
        assert_eq!(plan(None, &def), Plan::Create);
        let mut stored = def.clone();
        stored["metadata"]["resourceVersion"] = json!("7");
        stored["metadata"]["labels"] = json!({"mine": "yes"});
        assert_eq!(plan(Some(&stored), &def), Plan::Keep);
        stored["metadata"]["annotations"][DIGEST_ANNOTATION] = json!("0000000000000000");
        stored["spec"]["names"]["shortNames"] = json!(["old"]);
        match plan(Some(&stored), &def) {
            Plan::Update(next) => {
                assert_eq!(next["spec"], def["spec"]);
                assert_eq!(
                    next["metadata"]["annotations"][DIGEST_ANNOTATION],
                    def["metadata"]["annotations"][DIGEST_ANNOTATION]
                );
                assert_eq!(next["metadata"]["labels"]["mine"], "yes", "other labels stay");
                assert!(next["metadata"].get("resourceVersion").is_none());
            }
            other => panic!("want an update, got {other:?}"),
        }
        let mut foreign = def.clone();
        foreign["metadata"]["annotations"] = json!({});
        assert_eq!(plan(Some(&foreign), &def), Plan::Foreign);
    }
}
