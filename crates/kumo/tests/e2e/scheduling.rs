//! The scheduler inside `kumo up`: pods are bound to nodes that fit them, and a pod that fits
//! nowhere says why, in its PodScheduled condition and a FailedScheduling event. The nodes are
//! registered by the test through the API (the node agent will register real ones).

use crate::harness::Cluster;
use std::time::Duration;

pub fn register_node(c: &Cluster, name: &str, cpu: &str, memory: &str) {
    let node = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        }
    });
    c.kubectl_in(&["create", "-f", "-"], &node.to_string());
}

fn pod(name: &str, cpu: &str) -> String {
    pod_spec(name, cpu).to_string()
}

/// A pod of one container requesting `cpu`.
fn pod_spec(name: &str, cpu: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "nginx", "resources": {"requests": {"cpu": cpu}}}]}
    })
}

#[test]
fn pods_are_bound_where_they_fit_and_misfits_say_why() {
    let c = Cluster::start();
    register_node(&c, "node-a", "2", "4Gi");
    register_node(&c, "node-b", "4", "8Gi");
    c.kubectl_in(&["create", "-f", "-"], &pod("small", "500m"));
    c.kubectl_in(&["create", "-f", "-"], &pod("big", "3"));
    c.kubectl_in(&["create", "-f", "-"], &pod("huge", "16"));
    let node_of = |p: &str| c.kubectl(&["get", "pod", p, "-o", "jsonpath={.spec.nodeName}"]);
    c.eventually("small and big to be bound", Duration::from_secs(20), || {
        !node_of("small").is_empty() && !node_of("big").is_empty()
    });
    assert_eq!(node_of("big"), "node-b", "only node-b has 3 free cpus");
    let small = c.get_json(&["pod", "small"]);
    let scheduled = small["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap()
        .clone();
    assert_eq!(scheduled["status"], "True");
    c.eventually("huge to be reported unschedulable", Duration::from_secs(20), || {
        let p = c.get_json(&["pod", "huge"]);
        p["status"]["conditions"].as_array().into_iter().flatten().any(|c| {
            c["type"] == "PodScheduled" && c["status"] == "False" && c["reason"] == "Unschedulable"
        })
    });
    assert!(node_of("huge").is_empty());
    let huge = c.get_json(&["pod", "huge"]);
    let cond = huge["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap()
        .clone();
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .starts_with("0/2 nodes are available: 2 Insufficient cpu."),
        "{cond}"
    );
    c.eventually("a FailedScheduling event", Duration::from_secs(20), || {
        c.kubectl(&["get", "events", "--field-selector", "reason=FailedScheduling", "-o", "name"])
            .contains("huge")
    });
    let desc = c.kubectl(&["describe", "pod", "huge"]);
    assert!(desc.contains("FailedScheduling") && desc.contains("Insufficient cpu"), "{desc}");
    let table = c.kubectl(&["get", "pods", "-o", "wide"]);
    assert!(table.lines().any(|l| l.starts_with("big ") && l.contains("node-b")), "{table}");
}

#[test]
fn a_deployment_s_pods_are_spread_over_the_nodes() {
    let c = Cluster::start();
    for n in ["n1", "n2", "n3"] {
        register_node(&c, n, "4", "8Gi");
    }
    c.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=6"]);
    c.eventually("6 bound pods", Duration::from_secs(30), || {
        let nodes = c.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ]);
        nodes.split_whitespace().count() == 6
    });
    let nodes =
        c.kubectl(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(nodes.split_whitespace().filter(|x| *x == n).count(), 2, "spread: {nodes}");
    }
}

fn pod_with_class(name: &str, cpu: &str, class: &str) -> String {
    let mut pod = pod_spec(name, cpu);
    pod["spec"]["priorityClassName"] = serde_json::json!(class);
    pod.to_string()
}

#[test]
fn a_high_priority_pod_preempts_a_low_priority_one() {
    let c = Cluster::start();
    let classes = c.kubectl(&["get", "priorityclasses", "-o", "name"]);
    assert!(
        classes.contains("system-cluster-critical") && classes.contains("system-node-critical"),
        "{classes}"
    );
    c.kubectl(&["create", "priorityclass", "low", "--value=10"]);
    c.kubectl(&["create", "priorityclass", "high", "--value=1000"]);
    let err = c.kubectl_stdin(&["create", "-f", "-"], &pod_with_class("orphan", "1", "nope"));
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("no PriorityClass with name nope was found")
    );
    register_node(&c, "node-a", "2", "4Gi");
    c.kubectl_in(&["create", "-f", "-"], &pod_with_class("low-1", "1", "low"));
    c.kubectl_in(&["create", "-f", "-"], &pod_with_class("low-2", "1", "low"));
    let node_of = |p: &str| c.kubectl(&["get", "pod", p, "-o", "jsonpath={.spec.nodeName}"]);
    c.eventually("the low pods to be bound", Duration::from_secs(20), || {
        node_of("low-1") == "node-a" && node_of("low-2") == "node-a"
    });
    assert_eq!(c.kubectl(&["get", "pod", "low-1", "-o", "jsonpath={.spec.priority}"]), "10");
    c.kubectl_in(&["create", "-f", "-"], &pod_with_class("high", "1", "high"));
    c.eventually("high to be nominated to node-a", Duration::from_secs(20), || {
        c.kubectl(&["get", "pod", "high", "-o", "jsonpath={.status.nominatedNodeName}"]) == "node-a"
    });
    // Exactly one victim is being deleted; play the kubelet and finish its termination.
    let deleting = || -> Vec<String> {
        ["low-1", "low-2"]
            .iter()
            .filter(|p| {
                !c.kubectl(&["get", "pod", p, "-o", "jsonpath={.metadata.deletionTimestamp}"])
                    .is_empty()
            })
            .map(|p| p.to_string())
            .collect()
    };
    c.eventually("a victim to be deleted", Duration::from_secs(20), || !deleting().is_empty());
    let victims = deleting();
    assert_eq!(victims.len(), 1, "{victims:?}");
    // (kubectl warns about immediate deletion on any cluster; that warning is expected.)
    let out = c.kubectl_output(&["delete", "pod", &victims[0], "--grace-period=0", "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.eventually("high to be bound to node-a", Duration::from_secs(30), || {
        node_of("high") == "node-a"
    });
}

fn lease(c: &Cluster, node: &str, renew: &str) {
    let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": renew}});
    c.kubectl_in(&["apply", "-f", "-"], &lease.to_string());
}

#[test]
fn a_node_whose_lease_stops_is_tainted_and_its_pods_are_replaced() {
    let c = Cluster::start_with(&[
        "--node-monitor-grace-period=2",
        "--default-unreachable-toleration-seconds=2",
    ]);
    register_node(&c, "alive", "4", "8Gi");
    register_node(&c, "dying", "4", "8Gi");
    lease(&c, "alive", "2099-01-01T00:00:00.000000Z");
    let now = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.000000Z"])
        .output()
        .unwrap();
    lease(&c, "dying", String::from_utf8_lossy(&now.stdout).trim());
    // One replica on each node (spread), then the dying node's lease goes stale.
    c.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    let placement = || {
        let out = c.kubectl(&["get", "pods", "-l", "app=web", "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\" \"}{.metadata.deletionTimestamp}{\"\\n\"}{end}"]);
        out.lines().map(str::to_string).collect::<Vec<_>>()
    };
    c.eventually("a replica on each node", Duration::from_secs(4), || {
        let mut nodes: Vec<String> = placement().iter().map(|l| l.trim().to_string()).collect();
        nodes.sort();
        nodes == vec!["alive".to_string(), "dying".to_string()]
    });
    c.eventually("the dying node to be tainted unreachable", Duration::from_secs(30), || {
        c.kubectl(&["get", "node", "dying", "-o", "jsonpath={.spec.taints[*].key}"])
            .contains("node.kubernetes.io/unreachable")
    });
    let ready = c.kubectl(&[
        "get",
        "node",
        "dying",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready, "Unknown");
    // Its pod is evicted after the toleration and replaced on the live node.
    c.eventually("both live replicas on the alive node", Duration::from_secs(40), || {
        let p = placement();
        let live: Vec<&String> = p.iter().filter(|l| l.split_whitespace().count() == 1).collect();
        live.len() == 2 && live.iter().all(|l| l.trim() == "alive")
    });
}
