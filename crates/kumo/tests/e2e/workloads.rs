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

fn ready_all(c: &Cluster, selector: &str) {
    let out = c.kubectl(&["get", "pods", "-l", selector, "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"]);
    for line in out.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(name), None) = (parts.next(), parts.next()) {
            mark_ready(c, name);
        }
    }
}

fn roll_to_completion(c: &Cluster) {
    c.eventually("the rollout to complete", Duration::from_secs(40), || {
        ready_all(c, "app=web");
        let out = c.kubectl_output(&["rollout", "status", "deployment/web", "--timeout=1s"]);
        String::from_utf8_lossy(&out.stdout).contains("successfully rolled out")
    });
}

fn image(c: &Cluster) -> String {
    c.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

#[test]
fn rollout_history_undo_and_restart() {
    let c = Cluster::start();
    c.kubectl(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2"]);
    roll_to_completion(&c);
    c.kubectl(&["set", "image", "deployment/web", "nginx=nginx:1.26"]);
    roll_to_completion(&c);
    let history = c.kubectl(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    assert_eq!(c.get_json(&["replicasets", "-l", "app=web"])["items"].as_array().unwrap().len(), 2);
    let out = c.kubectl(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(image(&c), "nginx:1.25");
    roll_to_completion(&c);
    // The old ReplicaSet was reused, now at revision 3.
    assert_eq!(c.get_json(&["replicasets", "-l", "app=web"])["items"].as_array().unwrap().len(), 2);
    c.kubectl(&["rollout", "restart", "deployment/web"]);
    let d = c.get_json(&["deployment", "web"]);
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{d}"
    );
    roll_to_completion(&c);
    c.kubectl(&["rollout", "pause", "deployment/web"]);
    assert_eq!(c.get_json(&["deployment", "web"])["spec"]["paused"], true);
    c.kubectl(&["rollout", "resume", "deployment/web"]);
}

#[test]
fn eviction_respects_pod_disruption_budgets() {
    let c = Cluster::start();
    for name in ["web-1", "web-2"] {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}});
        c.kubectl_in(&["create", "-f", "-"], &pod.to_string());
        mark_ready(&c, name);
    }
    c.kubectl(&["create", "poddisruptionbudget", "web", "--selector=app=web", "--min-available=2"]);
    c.eventually("the budget's status", Duration::from_secs(20), || {
        c.kubectl(&[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.currentHealthy}/{.status.disruptionsAllowed}",
        ]) == "2/0"
    });
    let eviction = c.file(
        "eviction.json",
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"default"}}"#,
    );
    let path = "/api/v1/namespaces/default/pods/web-1/eviction";
    let refused = c.kubectl_output(&["create", "--raw", path, "-f", eviction.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("disruption budget"), "{err}");
    assert!(c.kubectl_output(&["get", "pod", "web-1"]).status.success(), "web-1 must survive");
    c.kubectl(&["patch", "pdb", "web", "--type=merge", "-p", r#"{"spec":{"minAvailable":1}}"#]);
    c.kubectl(&["create", "--raw", path, "-f", eviction.to_str().unwrap()]);
    assert!(!c.kubectl_output(&["get", "pod", "web-1"]).status.success(), "web-1 must be evicted");
    // Now only one healthy pod is left and the budget needs one: no more evictions.
    let again = c.kubectl_output(&[
        "create", "--raw", "/api/v1/namespaces/default/pods/web-2/eviction", "-f",
        c.file("e2.json", r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-2","namespace":"default"}}"#).to_str().unwrap(),
    ]);
    assert!(!again.status.success(), "the last pod must be protected");
}

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:16}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"#;

#[test]
fn a_statefulset_creates_web_0_1_2_in_order_with_their_claims() {
    let c = Cluster::start();
    let f = c.file("sts.yaml", STATEFULSET);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    for i in 0..3 {
        let name = format!("web-{i}");
        c.eventually(&format!("{name} to exist"), Duration::from_secs(20), || {
            pod_names(&c, "app=db").contains(&name)
        });
        // Ordered: the next pod waits until this one is Ready.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            pod_names(&c, "app=db").len(),
            i + 1,
            "web-{} appeared before web-{i} was Ready",
            i + 1
        );
        let pod = c.get_json(&["pod", &name]);
        assert_eq!(pod["spec"]["hostname"], name);
        assert_eq!(
            pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            format!("data-{name}")
        );
        mark_ready(&c, &name);
    }
    let claims = c.kubectl(&["get", "pvc", "-o", "name"]);
    for i in 0..3 {
        assert!(claims.contains(&format!("data-web-{i}")), "{claims}");
    }
    c.eventually("3 ready replicas", Duration::from_secs(20), || {
        c.kubectl(&["get", "sts", "web", "-o", "jsonpath={.status.readyReplicas}"]) == "3"
    });
    c.kubectl(&["scale", "sts", "web", "--replicas=1"]);
    c.eventually("scale down to web-0", Duration::from_secs(20), || {
        pod_names(&c, "app=db") == vec!["web-0".to_string()]
    });
    // Claims outlive their pods.
    assert!(c.kubectl(&["get", "pvc", "-o", "name"]).contains("data-web-2"));
}

#[test]
fn a_daemonset_puts_one_pod_on_each_eligible_node() {
    let c = Cluster::start();
    crate::scheduling::register_node(&c, "n1", "2", "4Gi");
    crate::scheduling::register_node(&c, "n2", "2", "4Gi");
    c.kubectl(&["taint", "node", "n2", "dedicated=db:NoSchedule"]);
    let ds = r#"{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"agent"},
      "spec":{"selector":{"matchLabels":{"app":"agent"}},"template":{"metadata":{"labels":{"app":"agent"}},
      "spec":{"containers":[{"name":"a","image":"busybox"}]}}}}"#;
    c.kubectl_in(&["apply", "-f", "-"], ds);
    let nodes = || {
        c.kubectl(&["get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[*].spec.nodeName}"])
    };
    c.eventually("a pod bound on n1 only", Duration::from_secs(20), || nodes() == "n1");
    crate::scheduling::register_node(&c, "n3", "2", "4Gi");
    c.eventually("a pod on n3 too", Duration::from_secs(20), || {
        let mut n: Vec<String> = nodes().split_whitespace().map(str::to_string).collect();
        n.sort();
        n == vec!["n1".to_string(), "n3".to_string()]
    });
    c.eventually("desiredNumberScheduled 2", Duration::from_secs(20), || {
        c.kubectl(&["get", "ds", "agent", "-o", "jsonpath={.status.desiredNumberScheduled}"]) == "2"
    });
}

#[test]
fn a_job_completes_with_its_completions() {
    let c = Cluster::start();
    let job = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"batch"},
      "spec":{"completions":3,"parallelism":2,"template":{"spec":{"restartPolicy":"Never",
      "containers":[{"name":"w","image":"busybox","command":["true"]}]}}}}"#;
    c.kubectl_in(&["apply", "-f", "-"], job);
    let succeed = |name: &str| {
        let status = r#"{"status":{"phase":"Succeeded","containerStatuses":[{"name":"w","ready":false,"restartCount":0,"image":"busybox","imageID":"","state":{"terminated":{"exitCode":0,"reason":"Completed"}}}]}}"#;
        c.kubectl(&["patch", "pod", name, "--subresource=status", "--type=merge", "-p", status]);
    };
    let mut done = std::collections::HashSet::new();
    c.eventually("3 pods to run to completion", Duration::from_secs(40), || {
        let running = c.kubectl(&[
            "get",
            "pods",
            "-l",
            "job-name=batch",
            "--field-selector=status.phase!=Succeeded",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        let active: Vec<&str> = running.split_whitespace().collect();
        assert!(active.len() <= 2, "parallelism 2 exceeded: {active:?}");
        for p in active {
            if done.insert(p.to_string()) {
                succeed(p);
            }
        }
        done.len() >= 3
    });
    c.kubectl(&["wait", "--for=condition=complete", "job/batch", "--timeout=30s"]);
    assert_eq!(c.kubectl(&["get", "job", "batch", "-o", "jsonpath={.status.succeeded}"]), "3");
    let table = c.kubectl(&["get", "job", "batch"]);
    assert!(table.contains("Complete") && table.contains("3/3"), "{table}");
}
