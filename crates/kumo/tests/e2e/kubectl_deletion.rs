//! Deletion: cascading (background, foreground, orphan) through ownerReferences, finalizers,
//! and namespaces taking their contents with them.

use crate::harness::Cluster;
use std::time::Duration;

fn owned_configmap(c: &Cluster, name: &str, owner: &serde_json::Value) {
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"]}]},
        "data": {"k": "v"}});
    c.kubectl_in(&["create", "-f", "-"], &manifest.to_string());
}

fn exists(c: &Cluster, kind: &str, name: &str) -> bool {
    c.kubectl_output(&["get", kind, name]).status.success()
}

#[test]
fn cascade_background_deletes_dependents() {
    let c = Cluster::start();
    c.kubectl(&["create", "configmap", "owner"]);
    let owner = c.get_json(&["configmap", "owner"]);
    owned_configmap(&c, "child", &owner);
    let out = c.kubectl(&["delete", "configmap", "owner", "--cascade=background"]);
    assert!(out.contains("configmap \"owner\" deleted"), "{out}");
    c.eventually("the dependent to be collected", Duration::from_secs(10), || {
        !exists(&c, "configmap", "child")
    });
}

#[test]
fn cascade_orphan_keeps_dependents_without_the_owner_reference() {
    let c = Cluster::start();
    c.kubectl(&["create", "configmap", "owner"]);
    let owner = c.get_json(&["configmap", "owner"]);
    owned_configmap(&c, "child", &owner);
    c.kubectl(&["delete", "configmap", "owner", "--cascade=orphan"]);
    c.eventually("the owner to go", Duration::from_secs(10), || !exists(&c, "configmap", "owner"));
    let child = c.get_json(&["configmap", "child"]);
    assert!(child["metadata"].get("ownerReferences").is_none(), "{child}");
}

#[test]
fn cascade_foreground_removes_dependents_first() {
    let c = Cluster::start();
    c.kubectl(&["create", "configmap", "owner"]);
    let owner = c.get_json(&["configmap", "owner"]);
    owned_configmap(&c, "child", &owner);
    c.kubectl(&["delete", "configmap", "owner", "--cascade=foreground"]);
    assert!(!exists(&c, "configmap", "child"));
    assert!(!exists(&c, "configmap", "owner"));
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let c = Cluster::start();
    let manifest = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"held","finalizers":["example.com/hold"]}}"#;
    c.kubectl_in(&["create", "-f", "-"], manifest);
    c.kubectl(&["delete", "configmap", "held", "--wait=false"]);
    let held = c.get_json(&["configmap", "held"]);
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    c.kubectl(&[
        "patch",
        "configmap",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(!exists(&c, "configmap", "held"));
}

#[test]
fn deleting_a_namespace_deletes_its_contents() {
    let c = Cluster::start();
    c.kubectl(&["create", "namespace", "tmp"]);
    c.kubectl(&["create", "configmap", "x", "-n", "tmp"]);
    c.kubectl(&["create", "secret", "generic", "s", "-n", "tmp", "--from-literal=a=b"]);
    let out = c.kubectl(&["delete", "namespace", "tmp", "--timeout=30s"]);
    assert!(out.contains("namespace \"tmp\" deleted"), "{out}");
    assert!(!exists(&c, "namespace", "tmp"));
    let err = c.kubectl_fails(&["create", "configmap", "y", "-n", "tmp"]);
    assert!(err.contains("namespaces \"tmp\" not found"), "{err}");
}
