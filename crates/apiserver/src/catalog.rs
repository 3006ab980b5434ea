//! The live catalog of served resources: the built-ins plus one entry per established version
//! of every CustomResourceDefinition. Discovery, OpenAPI and routing read it; CRD writes
//! replace it (copy on write, so readers never wait).

use kumo_api::resources::{self, Resource, ScalePaths, ALL_VERBS};
use serde_json::Value;
use std::sync::{Arc, RwLock};

/// A snapshot of every served resource.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// All resources, built-ins first.
    pub resources: Vec<Resource>,
}

impl Snapshot {
    /// The resource served at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource of a kind in a group (any version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.group == group && r.kind == kind)
    }

    /// Groups in serving order, each with its versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.resources {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }
}

/// The catalog, shared by all handlers.
#[derive(Debug, Clone)]
pub struct Catalog {
    inner: Arc<RwLock<Arc<Snapshot>>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    /// A catalog of the built-in resources.
    pub fn new() -> Self {
        let snap = Snapshot { resources: resources::builtin() };
        Catalog { inner: Arc::new(RwLock::new(Arc::new(snap))) }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replace the custom resources with those of `crds` (stored CRD objects).
    pub fn set_crds(&self, crds: &[Value]) {
        let mut all = resources::builtin();
        // Custom groups come after the built-in ones, ordered by group name as the
        // aggregator orders APIServices of equal priority: kubectl resolves a short name such
        // as `gateway` to the first group that has it (Gateway API before Istio, as upstream).
        let mut custom: Vec<Resource> = crds.iter().flat_map(crd_resources).collect();
        custom.sort_by(|a, b| a.group.cmp(&b.group));
        all.extend(custom);
        let snap = Arc::new(Snapshot { resources: all });
        match self.inner.write() {
            Ok(mut g) => *g = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The resources a CRD serves: one per served version. A CRD being deleted serves nothing new
/// but its objects stay readable until cleanup, so it is still listed.
pub fn crd_resources(crd: &Value) -> Vec<Resource> {
    let spec = &crd["spec"];
    let (Some(group), Some(plural), Some(kind)) =
        (spec["group"].as_str(), spec["names"]["plural"].as_str(), spec["names"]["kind"].as_str())
    else {
        return vec![];
    };
    let names = &spec["names"];
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let singular = names["singular"].as_str().map(str::to_string).unwrap_or(kind.to_lowercase());
    let mut out = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let Some(version) = v["name"].as_str() else { continue };
        let sub = &v["subresources"];
        let scale = sub.get("scale").filter(|s| s.is_object()).map(|s| ScalePaths {
            spec_replicas: s["specReplicasPath"].as_str().unwrap_or(".spec.replicas").into(),
            status_replicas: s["statusReplicasPath"].as_str().unwrap_or(".status.replicas").into(),
            label_selector: s["labelSelectorPath"].as_str().map(str::to_string),
        });
        out.push(Resource {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: singular.clone(),
            short_names: strings(names.get("shortNames")),
            namespaced,
            categories: strings(names.get("categories")),
            status: sub.get("status").is_some_and(Value::is_object),
            scale,
            definition: None,
            crd_schema: Some(v["schema"]["openAPIV3Schema"].clone()),
            printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
            verbs: ALL_VERBS.to_vec(),
            create_only: false,
        });
    }
    out
}
