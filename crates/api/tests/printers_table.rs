//! Server-side printing: columns and cells as `kubectl get` shows them.

use chrono::{DateTime, Duration, Utc};
use kumo_api::printers::{cells, columns};
use kumo_api::resources::{builtin, Resource};
use serde_json::{json, Value};

fn res(kind: &str) -> Resource {
    builtin().into_iter().find(|r| r.kind == kind).expect(kind)
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T12:00:00Z").expect("time").with_timezone(&Utc)
}

fn ago(d: Duration) -> String {
    (now() - d).to_rfc3339()
}

fn names(kind: &str) -> Vec<(String, i32)> {
    columns(&res(kind)).into_iter().map(|c| (c.name.to_uppercase(), c.priority)).collect()
}

fn pod_status(pod: Value) -> (String, String, String) {
    let c = cells(&res("Pod"), &pod, now());
    (
        c[1].as_str().unwrap_or("").into(),
        c[2].as_str().unwrap_or("").into(),
        c[3].as_str().unwrap_or("").into(),
    )
}

#[test]
fn column_headers_match_upstream() {
    let cases: &[(&str, &[&str])] = &[
        (
            "Pod",
            &[
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES",
            ],
        ),
        (
            "Deployment",
            &[
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
        ),
        ("Service", &["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]),
        ("ConfigMap", &["NAME", "DATA", "AGE"]),
        ("Secret", &["NAME", "TYPE", "DATA", "AGE"]),
        ("Namespace", &["NAME", "STATUS", "AGE"]),
        (
            "Job",
            &[
                "NAME",
                "STATUS",
                "COMPLETIONS",
                "DURATION",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
        ),
        (
            "CronJob",
            &[
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
        ),
        ("StatefulSet", &["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]),
        ("ClusterRole", &["NAME", "CREATED AT"]),
        ("CustomResourceDefinition", &["NAME", "CREATED AT"]),
        ("ServiceAccount", &["NAME", "SECRETS", "AGE"]),
        (
            "Event",
            &[
                "LAST SEEN",
                "TYPE",
                "REASON",
                "OBJECT",
                "SUBOBJECT",
                "SOURCE",
                "MESSAGE",
                "FIRST SEEN",
                "COUNT",
                "NAME",
            ],
        ),
        (
            "Node",
            &[
                "NAME",
                "STATUS",
                "ROLES",
                "AGE",
                "VERSION",
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ],
        ),
    ];
    for (kind, want) in cases {
        let got: Vec<String> = names(kind).into_iter().map(|c| c.0).collect();
        assert_eq!(&got, want, "{kind}");
    }
    let pod = names("Pod");
    assert_eq!(pod.iter().filter(|c| c.1 == 0).count(), 5);
    let name = &columns(&res("Pod"))[0];
    assert_eq!(name.format, "name");
    assert!(!name.description.is_empty());
}

#[test]
fn every_builtin_row_matches_its_header_and_survives_garbage() {
    let garbage =
        [json!(null), json!(3), json!({"metadata": 5, "spec": [1], "status": "x"}), json!({})];
    for r in builtin() {
        let n = columns(&r).len();
        for g in &garbage {
            assert_eq!(cells(&r, g, now()).len(), n, "{}", r.kind);
        }
    }
}

#[test]
fn pod_status_column() {
    let running = json!({"metadata": {"name": "p", "creationTimestamp": ago(Duration::minutes(5))},
        "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
    assert_eq!(pod_status(running.clone()), ("1/1".into(), "Running".into(), "0".into()));
    assert_eq!(cells(&res("Pod"), &running, now())[4], json!("5m"));

    let crash = json!({"spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(Duration::minutes(5))}}}]}});
    assert_eq!(pod_status(crash), ("0/1".into(), "CrashLoopBackOff".into(), "3 (5m ago)".into()));

    let completed = json!({"spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
    assert_eq!(pod_status(completed).1, "Completed");

    let terminating = json!({"metadata": {"deletionTimestamp": ago(Duration::seconds(3))}, "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}});
    assert_eq!(pod_status(terminating).1, "Terminating");

    let init = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"running": {}}}],
            "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}});
    assert_eq!(pod_status(init), ("0/1".into(), "Init:0/1".into(), "0".into()));

    let init_crash = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
    assert_eq!(pod_status(init_crash).1, "Init:CrashLoopBackOff");

    let exit = json!({"spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 2}}}]}});
    assert_eq!(pod_status(exit).1, "ExitCode:2");

    let pending = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": {"phase": "Pending"}});
    assert_eq!(pod_status(pending), ("0/2".into(), "Pending".into(), "0".into()));

    let sidecar = json!({"spec": {"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "state": {"running": {}}}],
            "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}});
    assert_eq!(pod_status(sidecar), ("2/2".into(), "Running".into(), "0".into()));
}

#[test]
fn pod_wide_cells() {
    let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [], "readinessGates": [{"conditionType": "x"}]},
        "status": {"podIP": "10.0.0.5", "conditions": [{"type": "x", "status": "True"}]}});
    let c = cells(&res("Pod"), &pod, now());
    assert_eq!(c[5..], [json!("10.0.0.5"), json!("n1"), json!("<none>"), json!("1/1")]);
    assert_eq!(c[4], json!("<unknown>"));
}

#[test]
fn deployment_cells() {
    let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(Duration::hours(3))},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    assert_eq!(
        cells(&res("Deployment"), &d, now()),
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("3h"),
            json!("nginx,side"),
            json!("nginx:1.25,busybox"),
            json!("app=web")
        ]
    );
}

#[test]
fn service_cells() {
    let cases = [
        (
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "protocol": "TCP"}]}),
            "10.96.0.10",
            "<none>",
            "80/TCP",
        ),
        (
            json!({"type": "NodePort", "clusterIPs": ["10.96.0.11"], "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}),
            "10.96.0.11",
            "<none>",
            "80:30080/TCP,53/UDP",
        ),
        (
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.12", "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
            "10.96.0.12",
            "<pending>",
            "443:31443/TCP",
        ),
        (
            json!({"type": "ExternalName", "externalName": "example.com"}),
            "<none>",
            "example.com",
            "<none>",
        ),
    ];
    for (spec, ip, ext, ports) in cases {
        let svc = json!({"metadata": {"name": "s"}, "spec": spec});
        let c = cells(&res("Service"), &svc, now());
        assert_eq!(
            (c[2].clone(), c[3].clone(), c[4].clone()),
            (json!(ip), json!(ext), json!(ports)),
            "{svc}"
        );
    }
    let lb = json!({"spec": {"type": "LoadBalancer", "selector": {"b": "2", "a": "1"}}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
    let c = cells(&res("Service"), &lb, now());
    assert_eq!(c[3], json!("1.2.3.4"));
    assert_eq!(c[6], json!("a=1,b=2"));
}

#[test]
fn other_kinds() {
    let job = json!({"metadata": {"name": "j"}, "spec": {"completions": 1},
        "status": {"succeeded": 1, "startTime": ago(Duration::seconds(30)), "completionTime": ago(Duration::seconds(20)),
            "conditions": [{"type": "Complete", "status": "True"}]}});
    let c = cells(&res("Job"), &job, now());
    assert_eq!(c[1..4], [json!("Complete"), json!("1/1"), json!("10s")]);

    let cj =
        json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "suspend": false}});
    let c = cells(&res("CronJob"), &cj, now());
    assert_eq!(
        c[1..6],
        [json!("*/5 * * * *"), json!("<none>"), json!("False"), json!(0), json!("<none>")]
    );

    let cm =
        json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
    assert_eq!(cells(&res("ConfigMap"), &cm, now())[1], json!(3));

    let node = json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"}}});
    let c = cells(&res("Node"), &node, now());
    assert_eq!(c[1..3], [json!("Ready,SchedulingDisabled"), json!("control-plane")]);
    assert_eq!(c[4], json!("v1.33.0"));

    let ev = json!({"metadata": {"name": "e"}, "type": "Normal", "reason": "Scheduled", "message": "ok ",
        "involvedObject": {"kind": "Pod", "name": "p"}, "lastTimestamp": ago(Duration::seconds(40)), "firstTimestamp": ago(Duration::seconds(50)), "count": 2});
    let c = cells(&res("Event"), &ev, now());
    assert_eq!(c[..4], [json!("40s"), json!("Normal"), json!("Scheduled"), json!("pod/p")]);
    assert_eq!(c[6], json!("ok"));

    let ep = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]});
    assert_eq!(cells(&res("Endpoints"), &ep, now())[1], json!("10.0.0.1:80,10.0.0.2:80"));

    let role = json!({"metadata": {"name": "r", "creationTimestamp": "2024-01-01T10:00:00Z"}});
    assert_eq!(cells(&res("ClusterRole"), &role, now())[1], json!("2024-01-01T10:00:00Z"));

    let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}, {"kind": "User", "name": "u"}]});
    let c = cells(&res("RoleBinding"), &rb, now());
    assert_eq!(c[1], json!("Role/r"));
    assert_eq!(c[3..], [json!("u"), json!(""), json!("ns/sa")]);

    let pdb = json!({"metadata": {"name": "p"}, "spec": {"minAvailable": 1}, "status": {"disruptionsAllowed": 0}});
    assert_eq!(
        cells(&res("PodDisruptionBudget"), &pdb, now())[1..4],
        [json!("1"), json!("N/A"), json!(0)]
    );

    let hpa = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]},
        "status": {"currentReplicas": 2}});
    assert_eq!(
        cells(&res("HorizontalPodAutoscaler"), &hpa, now())[1..6],
        [json!("Deployment/web"), json!("cpu: <unknown>/80%"), json!("1"), json!(5), json!(2)]
    );
}

fn custom(columns_json: Value) -> Resource {
    Resource {
        group: "example.com".into(),
        version: "v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
        singular: "widget".into(),
        short_names: vec![],
        namespaced: true,
        categories: vec![],
        status: false,
        scale: None,
        definition: None,
        crd_schema: Some(json!({"type": "object"})),
        printer_columns: columns_json.as_array().cloned().unwrap_or_default(),
        verbs: vec![],
        create_only: false,
    }
}

#[test]
fn custom_resources() {
    let bare = custom(json!([]));
    let cols: Vec<String> = columns(&bare).into_iter().map(|c| c.name).collect();
    assert_eq!(cols, vec!["Name", "Age"]);
    let obj = json!({"metadata": {"name": "w", "creationTimestamp": ago(Duration::minutes(7))},
        "spec": {"replicas": 2}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    assert_eq!(cells(&bare, &obj, now()), vec![json!("w"), json!("7m")]);

    let r = custom(json!([
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Missing", "type": "string", "jsonPath": ".spec.nope", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]));
    let cols = columns(&r);
    assert_eq!(cols[3].priority, 1);
    assert_eq!(
        cols[3].description,
        "Custom resource definition column (in JSONPath format): .spec.nope"
    );
    assert_eq!(
        cells(&r, &obj, now()),
        vec![json!("w"), json!(2), json!("True"), Value::Null, json!("7m")]
    );
}
