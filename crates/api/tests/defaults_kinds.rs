//! Defaulting as Kubernetes v1.33 does it.

use kumo_api::defaults::apply;
use kumo_api::resources::{builtin, Resource};
use serde_json::{json, Value};

fn res(kind: &str) -> Resource {
    builtin().into_iter().find(|r| r.kind == kind).expect(kind)
}

fn defaulted(kind: &str, mut obj: Value) -> Value {
    apply(&res(kind), &mut obj);
    obj
}

#[test]
fn pod_defaults() {
    let pod = defaulted(
        "Pod",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
         "livenessProbe": {"httpGet": {"port": 80}},
         "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
        {"name": "b", "image": "nginx:1.25"},
        {"name": "c", "image": "registry:5000/app:latest"},
        {"name": "d", "image": "app@sha256:abc"},
        {"name": "e", "image": "localhost:5000/app"}
    ], "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}}),
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
    assert_eq!(spec["priority"], 0);
    let a = &spec["containers"][0];
    assert_eq!(a["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(a["terminationMessagePolicy"], "File");
    assert_eq!(a["resources"], json!({}));
    assert_eq!(a["ports"][0]["protocol"], "TCP");
    assert_eq!(
        a["livenessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(a["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    let policies: Vec<&str> = spec["containers"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["imagePullPolicy"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(policies, ["Always", "IfNotPresent", "Always", "IfNotPresent", "Always"]);
    assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
    assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
}

#[test]
fn explicit_values_win() {
    let pod = defaulted(
        "Pod",
        json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x", "imagePullPolicy": "Never"}]}}),
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
}

#[test]
fn deployment_defaults() {
    let d = defaulted(
        "Deployment",
        json!({"spec": {"selector": {"matchLabels": {"app": "w"}},
        "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}}}}),
    );
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    let t = &spec["template"]["spec"];
    assert_eq!(t["restartPolicy"], "Always");
    assert_eq!(t["containers"][0]["imagePullPolicy"], "Always");
    // Pod-only defaults stay out of templates.
    assert!(t.get("enableServiceLinks").is_none());
    assert!(t.get("priority").is_none());

    let recreate = defaulted("Deployment", json!({"spec": {"strategy": {"type": "Recreate"}}}));
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn workload_defaults() {
    let sts = defaulted("StatefulSet", json!({"spec": {"volumeClaimTemplates": [{"spec": {}}]}}));
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"], "Filesystem");

    let ds = defaulted("DaemonSet", json!({"spec": {}}));
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);

    let rs = defaulted("ReplicaSet", json!({"spec": {}}));
    assert_eq!(rs["spec"]["replicas"], 1);

    let job = defaulted(
        "Job",
        json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}}}}),
    );
    let s = &job["spec"];
    assert_eq!(
        (s["parallelism"].clone(), s["completions"].clone(), s["backoffLimit"].clone()),
        (json!(1), json!(1), json!(6))
    );
    assert_eq!(
        (s["completionMode"].clone(), s["suspend"].clone()),
        (json!("NonIndexed"), json!(false))
    );
    assert_eq!(s["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(job["metadata"]["labels"], json!({"a": "b"}));
    assert!(s.get("manualSelector").is_none());
    let par = defaulted("Job", json!({"spec": {"parallelism": 3}}));
    assert!(par["spec"].get("completions").is_none());

    let cj = defaulted(
        "CronJob",
        json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}}}}),
    );
    let s = &cj["spec"];
    assert_eq!(
        (s["concurrencyPolicy"].clone(), s["suspend"].clone()),
        (json!("Allow"), json!(false))
    );
    assert_eq!(
        (s["successfulJobsHistoryLimit"].clone(), s["failedJobsHistoryLimit"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(
        s["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
}

#[test]
fn service_and_core_defaults() {
    let svc = defaulted(
        "Service",
        json!({"spec": {"selector": {"a": "b"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
    );
    let s = &svc["spec"];
    assert_eq!(s["type"], "ClusterIP");
    assert_eq!(s["sessionAffinity"], "None");
    assert_eq!(s["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
    assert_eq!(s["ports"][1]["targetPort"], "dns");
    assert_eq!(s["internalTrafficPolicy"], "Cluster");
    assert_eq!(s["ipFamilyPolicy"], "SingleStack");
    assert_eq!(s["ipFamilies"], json!(["IPv4"]));
    assert!(s.get("clusterIP").is_none());

    let np = defaulted("Service", json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}));
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    let en =
        defaulted("Service", json!({"spec": {"type": "ExternalName", "externalName": "x.com"}}));
    assert!(en["spec"].get("ipFamilies").is_none());

    assert_eq!(defaulted("Secret", json!({"data": {}}))["type"], "Opaque");
    let ns = defaulted("Namespace", json!({"metadata": {"name": "dev"}}));
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "dev");

    let hpa = defaulted(
        "HorizontalPodAutoscaler",
        json!({"spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
    );
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
    assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 60);
    assert_eq!(hpa["spec"]["behavior"]["scaleUp"]["policies"].as_array().map(Vec::len), Some(2));

    let pdb = json!({"spec": {"minAvailable": 1}});
    assert_eq!(defaulted("PodDisruptionBudget", pdb.clone()), pdb);
}

#[test]
fn unknown_kinds_and_garbage_are_left_alone() {
    let mut cr = res("Deployment");
    cr.definition = None;
    let mut obj = json!({"spec": {}});
    apply(&cr, &mut obj);
    assert_eq!(obj, json!({"spec": {}}));
    for r in builtin() {
        for g in [
            json!(null),
            json!([1]),
            json!({"spec": 7, "metadata": "x"}),
            json!({"spec": {"containers": "x", "template": [], "ports": {}}}),
        ] {
            let mut v = g.clone();
            apply(&r, &mut v);
        }
    }
}
