//! Admission plugins that read other objects, driven by kubectl: LimitRanger (defaults, min,
//! max, ratio for containers, pods and claims) and ResourceQuota (object counts, compute
//! resources, scopes, the quota controller's status, concurrent creates), each refusal a 403
//! with upstream's message, and nothing stored for a refused request.

use crate::harness::Cluster;
use std::time::Duration;

const LIMITS: &str = "apiVersion: v1\nkind: LimitRange\nmetadata: {name: limits}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m, memory: 256Mi}\n    defaultRequest: {cpu: 100m, memory: 128Mi}\n    max: {cpu: \"1\"}\n    min: {memory: 64Mi}\n    maxLimitRequestRatio: {cpu: \"10\"}\n  - type: PersistentVolumeClaim\n    max: {storage: 2Gi}\n";

fn pod(name: &str, resources: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: app\n    image: nginx\n    resources: {resources}\n")
}

#[test]
fn limit_ranges_default_and_bound_containers_and_claims() {
    let c = Cluster::start();
    let f = c.file("limits.yaml", LIMITS);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    // The LimitRange itself is defaulted as upstream (nothing to add here: all set).
    let lr = c.get_json(&["limitrange", "limits"]);
    assert_eq!(lr["spec"]["limits"][0]["default"]["cpu"], "500m");
    // A pod without resources takes the defaults, and the annotation says so.
    let plain = c.file("plain.yaml", &pod("plain", "{}"));
    c.kubectl(&["apply", "-f", plain.to_str().unwrap()]);
    let p = c.get_json(&["pod", "plain"]);
    let res = &p["spec"]["containers"][0]["resources"];
    assert_eq!(res["limits"], serde_json::json!({"cpu": "500m", "memory": "256Mi"}));
    assert_eq!(res["requests"], serde_json::json!({"cpu": "100m", "memory": "128Mi"}));
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );
    // Over the max: refused with upstream's message, and not stored.
    let big = c.file("big.yaml", &pod("big", "{limits: {cpu: \"2\"}}"));
    let err = c.kubectl_fails(&["apply", "-f", big.to_str().unwrap()]);
    assert!(
        err.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{err}"
    );
    let missing = c.kubectl_output(&["get", "pod", "big"]);
    assert!(!missing.status.success());
    // Under the min, and over the ratio: every violation is listed.
    let small = c.file(
        "small.yaml",
        &pod("small", "{requests: {memory: 32Mi, cpu: 10m}, limits: {memory: 32Mi, cpu: 500m}}"),
    );
    let err = c.kubectl_fails(&["create", "-f", small.to_str().unwrap()]);
    assert!(err.contains("pods \"small\" is forbidden: [minimum memory usage per Container is 64Mi, but request is 32Mi, cpu max limit to request ratio per Container is 10, but provided ratio is 50.000000]"), "{err}");
    // Claims: max storage.
    let pvc = c.file("pvc.yaml", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 5Gi}}\n");
    let err = c.kubectl_fails(&["create", "-f", pvc.to_str().unwrap()]);
    assert!(err.contains("persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"), "{err}");
    assert!(!c.kubectl_output(&["get", "pvc", "data"]).status.success());
    // Another namespace has no LimitRange: no defaults there.
    c.kubectl(&["create", "namespace", "free"]);
    c.kubectl(&["apply", "-n", "free", "-f", plain.to_str().unwrap()]);
    let p = c.get_json(&["-n", "free", "pod", "plain"]);
    assert!(p["spec"]["containers"][0]["resources"].get("limits").is_none(), "{p}");
}

const QUOTA: &str = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec:\n  hard: {pods: \"2\", requests.cpu: \"1\", limits.memory: 1Gi, count/deployments.apps: \"1\"}\n";

fn used(c: &Cluster, quota: &str, resource: &str) -> String {
    c.get_json(&["resourcequota", quota])["status"]["used"][resource]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn resource_quotas_count_refuse_and_give_back() {
    let c = Cluster::start();
    let f = c.file("quota.yaml", QUOTA);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    c.eventually("the quota controller to fill status", Duration::from_secs(20), || {
        let s = &c.get_json(&["quota", "q"])["status"];
        s["hard"]["pods"] == "2" && s["used"]["pods"] == "0" && s["used"]["requests.cpu"] == "0"
    });
    // A pod that does not state what the quota limits is refused.
    let bare = c.file("bare.yaml", &pod("bare", "{}"));
    let err = c.kubectl_fails(&["create", "-f", bare.to_str().unwrap()]);
    assert!(
        err.contains("pods \"bare\" is forbidden: failed quota: q: must specify limits.memory for: app; requests.cpu for: app"),
        "{err}"
    );
    let sized = |name: &str| {
        c.file(
            &format!("{name}.yaml"),
            &pod(name, "{requests: {cpu: 400m}, limits: {cpu: 400m, memory: 256Mi}}"),
        )
    };
    c.kubectl(&["create", "-f", sized("a").to_str().unwrap()]);
    // Admission charges at once (no wait for the controller).
    assert_eq!(used(&c, "q", "pods"), "1");
    assert_eq!(used(&c, "q", "requests.cpu"), "400m");
    c.kubectl(&["create", "-f", sized("b").to_str().unwrap()]);
    let err = c.kubectl_fails(&["create", "-f", sized("c").to_str().unwrap()]);
    assert!(
        err.contains("pods \"c\" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=400m, used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1"),
        "{err}"
    );
    assert!(!c.kubectl_output(&["get", "pod", "c"]).status.success());
    // describe shows the table of used and hard.
    let d = c.kubectl(&["describe", "quota", "q"]);
    let line = |name: &str| {
        d.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or("").to_string()
    };
    assert_eq!(line("pods").split_whitespace().collect::<Vec<_>>(), ["pods", "2", "2"], "{d}");
    assert_eq!(
        line("requests.cpu").split_whitespace().collect::<Vec<_>>(),
        ["requests.cpu", "800m", "1"],
        "{d}"
    );
    assert_eq!(
        line("limits.memory").split_whitespace().collect::<Vec<_>>(),
        ["limits.memory", "512Mi", "1Gi"],
        "{d}"
    );
    // count/deployments.apps.
    c.kubectl(&["create", "deployment", "one", "--image=nginx", "--replicas=0"]);
    let err = c.kubectl_fails(&["create", "deployment", "two", "--image=nginx", "--replicas=0"]);
    assert!(err.contains("exceeded quota: q, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1"), "{err}");
    // A deleted pod gives its share back through the quota controller.
    let out = c.kubectl_output(&["delete", "pod", "a", "--grace-period=0", "--force"]);
    assert!(out.status.success(), "{out:?}");
    c.eventually("usage to drop", Duration::from_secs(30), || used(&c, "q", "pods") == "1");
    c.kubectl(&["create", "-f", sized("c").to_str().unwrap()]);
    // A dry run is checked but not charged.
    let err = c.kubectl_fails(&["create", "--dry-run=server", "-f", sized("d").to_str().unwrap()]);
    assert!(err.contains("exceeded quota: q"), "{err}");
    assert_eq!(used(&c, "q", "pods"), "2");
}

#[test]
fn concurrent_creates_never_overrun_a_quota_and_scopes_select_pods() {
    let c = Cluster::start();
    c.kubectl(&["create", "namespace", "race"]);
    let q = c.file("cms.yaml", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: cms}\nspec:\n  hard: {configmaps: \"5\", services.nodeports: \"1\"}\n");
    c.kubectl(&["create", "-n", "race", "-f", q.to_str().unwrap()]);
    let results: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    let name = format!("cm{i}");
                    c.kubectl_output(&["create", "configmap", &name, "-n", "race"]).status.success()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|ok| **ok).count(), 5, "{results:?}");
    let stored = c.kubectl(&["get", "configmaps", "-n", "race", "-o", "name"]);
    assert_eq!(stored.lines().count(), 5, "{stored}");
    assert_eq!(c.get_json(&["-n", "race", "quota", "cms"])["status"]["used"]["configmaps"], "5");
    // services.nodeports counts the ports of NodePort services.
    c.kubectl(&["create", "service", "nodeport", "one", "-n", "race", "--tcp=80:80"]);
    let err =
        c.kubectl_fails(&["create", "service", "nodeport", "two", "-n", "race", "--tcp=81:81"]);
    assert!(err.contains("exceeded quota: cms, requested: services.nodeports=1, used: services.nodeports=1, limited: services.nodeports=1"), "{err}");
    c.kubectl(&["create", "service", "clusterip", "three", "-n", "race", "--tcp=82:82"]);
    // A BestEffort-scoped quota counts only pods without requests or limits.
    c.kubectl(&["create", "namespace", "scoped"]);
    let q = c.file("be.yaml", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: be}\nspec:\n  hard: {pods: \"1\"}\n  scopes: [BestEffort]\n");
    c.kubectl(&["create", "-n", "scoped", "-f", q.to_str().unwrap()]);
    let be1 = c.file("be1.yaml", &pod("be1", "{}"));
    let be2 = c.file("be2.yaml", &pod("be2", "{}"));
    let burst = c.file("burst.yaml", &pod("burst", "{requests: {cpu: 100m}}"));
    c.kubectl(&["create", "-n", "scoped", "-f", be1.to_str().unwrap()]);
    c.kubectl(&["create", "-n", "scoped", "-f", burst.to_str().unwrap()]);
    let err = c.kubectl_fails(&["create", "-n", "scoped", "-f", be2.to_str().unwrap()]);
    assert!(
        err.contains("exceeded quota: be, requested: pods=1, used: pods=1, limited: pods=1"),
        "{err}"
    );
}
