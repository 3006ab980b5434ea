//! Server-side apply: field ownership in managedFields, conflicts between managers, force, and
//! removal of fields a manager stops applying.

use crate::harness::Cluster;

const BASE: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {team: a}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: app, image: nginx:1.25}\n";

#[test]
fn two_managers_conflict_force_and_dropped_fields() {
    let c = Cluster::start();
    let first = c.file("first.yaml", BASE);
    let out = c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=alice",
        "-f",
        first.to_str().unwrap(),
    ]);
    assert!(out.contains("serverside-applied"), "{out}");
    c.kubectl(&["apply", "--server-side", "--field-manager=alice", "-f", first.to_str().unwrap()]);
    let d = c.get_json(&["deploy", "web", "--show-managed-fields"]);
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["operation"] == "Apply")
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    // (The deployment controller owns status through its own Update entry.)
    assert_eq!(managers, vec!["alice"]);
    let alice = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "alice")
        .unwrap();
    assert_eq!(alice["operation"], "Apply");
    assert!(alice["fieldsV1"]["f:spec"]["f:replicas"].is_object(), "{d}");
    // The same apply again changes nothing, not even the resourceVersion (on an object no
    // controller writes to).
    let cm =
        c.file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n");
    c.kubectl(&["apply", "--server-side", "--field-manager=alice", "-f", cm.to_str().unwrap()]);
    let rv1 = c.kubectl(&["get", "cm", "cfg", "-o", "jsonpath={.metadata.resourceVersion}"]);
    c.kubectl(&["apply", "--server-side", "--field-manager=alice", "-f", cm.to_str().unwrap()]);
    let rv2 = c.kubectl(&["get", "cm", "cfg", "-o", "jsonpath={.metadata.resourceVersion}"]);
    assert_eq!(rv1, rv2, "a no-op apply must not write");
    // A second manager wants replicas 5: conflict naming the field and alice.
    let second = c.file(
        "second.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 5\n  template:\n    spec:\n      containers:\n      - {name: app, env: [{name: MODE, value: blue}]}\n",
    );
    let err = c.kubectl_fails(&[
        "apply",
        "--server-side",
        "--field-manager=bob",
        "-f",
        second.to_str().unwrap(),
    ]);
    assert!(
        err.contains(
            "Apply failed with 1 conflict: conflict with \"alice\" using apps/v1: .spec.replicas"
        ),
        "{err}"
    );
    assert_eq!(c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=bob",
        "--force-conflicts",
        "-f",
        second.to_str().unwrap(),
    ]);
    let d = c.get_json(&["deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "blue");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.25");
    // Alice drops her label and replicas from her config: the label goes, bob's fields stay.
    let less = BASE.replace("  labels: {team: a}\n", "").replace("  replicas: 2\n", "");
    let f = c.file("first-less.yaml", &less);
    c.kubectl(&["apply", "--server-side", "--field-manager=alice", "-f", f.to_str().unwrap()]);
    let d = c.get_json(&["deploy", "web"]);
    assert!(d["metadata"]["labels"].get("team").is_none(), "{d}");
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"], "MODE");
    // Ordinary updates are recorded too.
    c.kubectl(&["label", "deploy", "web", "tier=front"]);
    let d = c.get_json(&["deploy", "web", "--show-managed-fields"]);
    let update = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["operation"] == "Update"
                && m["manager"].as_str().is_some_and(|n| n.starts_with("kubectl"))
        })
        .expect("update entry");
    assert!(update["fieldsV1"]["f:metadata"]["f:labels"]["f:tier"].is_object(), "{d}");
}
