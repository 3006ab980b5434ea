//! ReplicationControllers, driven by kubectl: the RC controller (the ReplicaSet code over an
//! equality selector) creates pods the RC owns, adopts matching orphans, scales through the
//! scale subresource, reports status, and `kubectl get rc` prints upstream's columns. No node
//! agent runs: the test plays the kubelet and marks pods Ready.

use crate::harness::Cluster;
use std::time::Duration;

const RC: &str = "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  template:\n    metadata:\n      labels: {app: web, tier: fe}\n    spec:\n      containers:\n      - {name: app, image: nginx:1.25}\n";

fn pods(c: &Cluster) -> Vec<serde_json::Value> {
    c.get_json(&["pods", "-l", "app=web"])["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_replication_controller_owns_scales_and_reports_its_pods() {
    let c = Cluster::start();
    // A pod that matches the selector is adopted and counts toward the replicas; one that
    // matches only part of it is left alone.
    c.kubectl(&["run", "orphan", "--image=nginx", "--labels=app=web"]);
    c.kubectl(&["run", "stray", "--image=nginx", "--labels=app=web,tier=fe"]);
    let f = c.file("rc.yaml", RC);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    let rc = c.get_json(&["rc", "web"]);
    // The selector is defaulted from the template's labels.
    assert_eq!(rc["spec"]["selector"], serde_json::json!({"app": "web", "tier": "fe"}));
    c.eventually("3 pods owned by the RC", Duration::from_secs(20), || {
        pods(&c)
            .iter()
            .filter(|p| {
                p["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController"
                    && p["metadata"]["ownerReferences"][0]["name"] == "web"
                    && p["metadata"]["ownerReferences"][0]["uid"] == rc["metadata"]["uid"]
            })
            .count()
            == 3
    });
    let stray = c.get_json(&["pod", "stray"]);
    assert_eq!(stray["metadata"]["ownerReferences"][0]["kind"], "ReplicationController");
    let orphan = c.get_json(&["pod", "orphan"]);
    assert!(orphan["metadata"].get("ownerReferences").is_none(), "{orphan}");
    for p in pods(&c) {
        let name = p["metadata"]["name"].as_str().unwrap().to_string();
        if name == "orphan" {
            continue;
        }
        assert!(name.starts_with("web-") || name == "stray", "{name}");
        assert_eq!(p["metadata"]["labels"]["tier"], "fe");
        let status = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"},{"type":"ContainersReady","status":"True"}]}}"#;
        c.kubectl(&["patch", "pod", &name, "--subresource=status", "--type=merge", "-p", status]);
    }
    c.eventually("status to count 3 ready", Duration::from_secs(20), || {
        let s = &c.get_json(&["rc", "web"])["status"];
        s["replicas"] == 3
            && s["readyReplicas"] == 3
            && s["availableReplicas"] == 3
            && s["fullyLabeledReplicas"] == 3
            && s["observedGeneration"] == 1
    });
    let table = c.kubectl(&["get", "rc", "web"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "3", "3", "3"]);
    let wide = c.kubectl(&["get", "rc", "web", "-o", "wide"]);
    assert!(wide.contains("app=web,tier=fe"), "{wide}");
    // Scale through the scale subresource.
    let out = c.kubectl(&["scale", "rc", "web", "--replicas=1"]);
    assert!(out.contains("replicationcontroller/web scaled"), "{out}");
    c.eventually("1 pod left", Duration::from_secs(20), || {
        pods(&c).iter().filter(|p| p["metadata"]["name"] != "orphan").count() == 1
    });
    c.eventually("status to follow", Duration::from_secs(20), || {
        let s = &c.get_json(&["rc", "web"])["status"];
        s["replicas"] == 1 && s["observedGeneration"] == 2
    });
    // Deleting the RC takes its pods; the orphan stays.
    c.kubectl(&["delete", "rc", "web"]);
    c.eventually("the RC's pods to go", Duration::from_secs(20), || {
        let names: Vec<String> =
            pods(&c).iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
        names == ["orphan"]
    });
}
