//! Discovery: `/version`, `/api`, `/apis` and the per-group-version resource lists, in the
//! legacy shape and in the aggregated shape (`apidiscovery.k8s.io/v2`) that kubectl 1.33 asks
//! for first. Both are rendered from the same catalog snapshot.

use crate::catalog::Snapshot;
use kumo_api::resources::Resource;
use serde_json::{json, Value};

/// The media type of aggregated discovery v2.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the `Accept` header asks for aggregated discovery (v2).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p = part.replace(' ', "");
        p.contains("g=apidiscovery.k8s.io")
            && p.contains("v=v2;")
            && p.contains("as=APIGroupDiscoveryList")
            || p.contains("g=apidiscovery.k8s.io")
                && p.ends_with("v=v2")
                && p.contains("as=APIGroupDiscoveryList")
    })
}

/// `/version`: what kumo reports, as Kubernetes v1.33.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0-kumo.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-11-23T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Legacy `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// Legacy `/apis`.
pub fn group_list(snap: &Snapshot) -> Value {
    let groups: Vec<Value> = snap
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| group_json(&g, &versions))
        .chain(std::iter::once(crate::metrics::group()))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/apis/<group>`.
pub fn group(snap: &Snapshot, group: &str) -> Option<Value> {
    if group == crate::metrics::GROUP {
        let mut v = crate::metrics::group();
        v["kind"] = json!("APIGroup");
        v["apiVersion"] = json!("v1");
        return Some(v);
    }
    let (g, versions) = snap.groups().into_iter().find(|(g, _)| g == group)?;
    let mut v = group_json(&g, &versions);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": vs, "preferredVersion": preferred})
}

fn subresource_names(r: &Resource) -> Vec<&'static str> {
    let mut subs = Vec::new();
    if r.status {
        subs.push("status");
    }
    if r.scale.is_some() {
        subs.push("scale");
    }
    if r.group == "certificates.k8s.io" && r.plural == "certificatesigningrequests" {
        subs.push("approval");
    }
    subs
}

/// Legacy `/api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(snap: &Snapshot, group: &str, version: &str) -> Option<Value> {
    if group == crate::metrics::GROUP && version == crate::metrics::VERSION {
        return Some(crate::metrics::resource_list());
    }
    let rs: Vec<&Resource> =
        snap.resources.iter().filter(|r| r.group == group && r.version == version).collect();
    if rs.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in &rs {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for sub in subresource_names(r) {
            let kind = if sub == "scale" { "Scale" } else { r.kind.as_str() };
            let mut e = json!({
                "name": format!("{}/{}", r.plural, sub),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": ["get", "patch", "update"],
            });
            if sub == "scale" {
                e["group"] = json!("autoscaling");
                e["version"] = json!("v1");
            }
            list.push(e);
        }
        if r.group.is_empty() && r.plural == "pods" {
            list.push(json!({"name": "pods/binding", "singularName": "", "namespaced": true,
                "kind": "Binding", "verbs": ["create"]}));
            list.push(json!({"name": "pods/log", "singularName": "", "namespaced": true,
                "kind": "Pod", "verbs": ["get"]}));
            list.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true,
                "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

/// Aggregated discovery for `/api` (core only) or `/apis` (every named group).
pub fn aggregated(snap: &Snapshot, core: bool) -> Value {
    let items: Vec<Value> = snap
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = snap
                        .resources
                        .iter()
                        .filter(|r| r.group == g && &r.version == v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let meta = if g.is_empty() { json!({}) } else { json!({"name": g}) };
            json!({"metadata": meta, "versions": vs})
        })
        .chain((!core).then(crate::metrics::aggregated_item))
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn aggregated_resource(r: &Resource) -> Value {
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let mut subs: Vec<Value> = subresource_names(r)
        .into_iter()
        .map(|s| {
            let rk = if s == "scale" {
                json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
            } else {
                kind.clone()
            };
            json!({"subresource": s, "responseKind": rk, "verbs": ["get", "patch", "update"]})
        })
        .collect();
    if r.group.is_empty() && r.plural == "pods" {
        subs.push(json!({"subresource": "binding", "responseKind": {"group": "", "version": "v1", "kind": "Binding"}, "verbs": ["create"]}));
        subs.push(json!({"subresource": "log", "responseKind": {"group": "", "version": "v1", "kind": "Pod"}, "verbs": ["get"]}));
        subs.push(json!({"subresource": "eviction", "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"}, "verbs": ["create"]}));
    }
    let mut v = json!({
        "resource": r.plural,
        "responseKind": kind,
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        v["subresources"] = Value::Array(subs);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_selects_aggregated() {
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(accept));
        assert!(!wants_aggregated("application/json, */*"));
    }

    #[test]
    fn apps_group_lists_deployments_with_scale() {
        let snap = Snapshot { resources: kumo_api::resources::builtin() };
        let list = resource_list(&snap, "apps", "v1").expect("apps/v1");
        let names: Vec<&str> = list["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"deployments"));
        assert!(names.contains(&"deployments/scale"));
        let agg = aggregated(&snap, false);
        assert!(agg["items"].as_array().is_some_and(|i| i.len() > 5));
    }
}
