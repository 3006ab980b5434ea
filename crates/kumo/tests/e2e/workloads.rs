//! Workload controllers inside `kumo up`, driven by kubectl: a Deployment makes a ReplicaSet and
//! pods, scales, reports its rollout, and takes its children with it when deleted. There is no
//! node agent yet, so the test plays the kubelet's part by marking pods Ready.

use crate::harness::Cluster;
use std::time::Duration;

fn pod_names(c: &Cluster, selector: &str) -> Vec<String> {
    c.kubectl(&["get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}"])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn mark_ready(c: &Cluster, pod: &str) {
    let status = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"},{"type":"ContainersReady","status":"True"}]}}"#;
    c.kubectl(&["patch", "pod", pod, "--subresource=status", "--type=merge", "-p", status]);
}

#[test]
fn a_deployment_rolls_out_scales_and_is_deleted_with_its_children() {
    let c = Cluster::start();
    c.kubectl(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2"]);
    c.eventually("2 pods", Duration::from_secs(20), || pod_names(&c, "app=web").len() == 2);
    let rs = c.get_json(&["replicasets", "-l", "app=web"]);
    let rs = &rs["items"][0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_string();
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    for p in pod_names(&c, "app=web") {
        assert!(p.starts_with(&format!("web-{hash}-")), "{p}");
        mark_ready(&c, &p);
    }
    let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    c.kubectl(&["scale", "deployment", "web", "--replicas=3"]);
    c.eventually("3 pods", Duration::from_secs(20), || pod_names(&c, "app=web").len() == 3);
    let table = c.kubectl(&["get", "deployment", "web"]);
    assert!(table.contains("web"), "{table}");
    c.kubectl(&["delete", "deployment", "web"]);
    c.eventually("replica sets and pods to go", Duration::from_secs(20), || {
        pod_names(&c, "app=web").is_empty()
            && c.kubectl(&["get", "replicasets", "-o", "name"]).trim().is_empty()
    });
}
