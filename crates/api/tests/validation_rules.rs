//! Validation rules and their upstream messages.

use kumo_api::resources::{builtin, Resource};
use kumo_api::validation::{validate, ErrorType};
use serde_json::{json, Value};

fn res(kind: &str) -> Resource {
    builtin().into_iter().find(|r| r.kind == kind).expect(kind)
}

fn errs(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<String> {
    validate(&res(kind), obj, old).iter().map(ToString::to_string).collect()
}

fn pod(containers: Value) -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Always", "containers": containers}})
}

fn deploy(selector: Value, labels: Value) -> Value {
    json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": selector,
        "template": {"metadata": {"labels": labels}, "spec": {"restartPolicy": "Always", "containers": [{"name": "a", "image": "nginx"}]}}}})
}

#[test]
fn metadata_rules() {
    assert_eq!(errs("ConfigMap", &json!({"metadata": {"name": "Foo_Bar"}}), None), vec![
        "metadata.name: Invalid value: \"Foo_Bar\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    ]);
    assert_eq!(
        errs("ConfigMap", &json!({"metadata": {}}), None),
        vec!["metadata.name: Required value: name or generateName is required"]
    );
    assert!(errs("ConfigMap", &json!({"metadata": {"generateName": "cfg-"}}), None).is_empty());
    assert_eq!(errs("ConfigMap", &json!({"metadata": {"generateName": "Cfg-"}}), None).len(), 1);
    let ns = errs("Namespace", &json!({"metadata": {"name": "a.b"}}), None);
    assert!(
        ns[0].starts_with(
            "metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label must consist"
        ),
        "{ns:?}"
    );
    let svc = errs(
        "Service",
        &json!({"metadata": {"name": "1svc"}, "spec": {"clusterIP": "None"}}),
        None,
    );
    assert!(svc[0].contains("a DNS-1035 label must consist"), "{svc:?}");
    assert!(errs("ClusterRole", &json!({"metadata": {"name": "system:admin"}}), None).is_empty());
    assert_eq!(
        errs("ClusterRole", &json!({"metadata": {"name": "a/b"}}), None),
        vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
    );
    let labels = errs(
        "ConfigMap",
        &json!({"metadata": {"name": "c", "labels": {"bad key!": "ok", "k": "-bad"}}}),
        None,
    );
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(labels[0]
        .starts_with("metadata.labels: Invalid value: \"bad key!\": name part must consist of"));
    assert!(labels[1].starts_with(
        "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string"
    ));
    let big = "x".repeat(300 * 1024);
    assert_eq!(
        errs("ConfigMap", &json!({"metadata": {"name": "c", "annotations": {"a": big}}}), None),
        vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
    assert_eq!(
        errs(
            "ConfigMap",
            &json!({"metadata": {"name": "d"}}),
            Some(&json!({"metadata": {"name": "c"}}))
        ),
        vec!["metadata.name: Invalid value: \"d\": field is immutable"]
    );
    // Unknown kinds and custom resources: metadata only.
    let mut cr = res("Deployment");
    cr.definition = None;
    assert!(validate(&cr, &json!({"metadata": {"name": "x"}, "spec": 5}), None).is_empty());
}

#[test]
fn pod_rules() {
    assert_eq!(errs("Pod", &pod(json!([])), None), vec!["spec.containers: Required value"]);
    assert_eq!(
        errs("Pod", &pod(json!([{"name": "a"}])), None),
        vec!["spec.containers[0].image: Required value"]
    );
    let e = validate(&res("Pod"), &pod(json!([{"name": "a"}])), None);
    assert_eq!((e[0].type_, e[0].reason()), (ErrorType::Required, "FieldValueRequired"));
    let dup = errs(
        "Pod",
        &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}], "initContainers": [{"name": "a", "image": "y"}]}}),
        None,
    );
    assert_eq!(dup, vec!["spec.initContainers[0].name: Duplicate value: \"a\""]);
    let bad = errs(
        "Pod",
        &pod(
            json!([{"name": "A_b", "image": "x", "ports": [{"containerPort": 70000, "protocol": "HTTP"}, {}], "env": [{"name": "A=B"}]}]),
        ),
        None,
    );
    assert_eq!(bad.len(), 5, "{bad:?}");
    assert!(bad[0].starts_with(
        "spec.containers[0].name: Invalid value: \"A_b\": a lowercase RFC 1123 label"
    ));
    assert_eq!(bad[1], "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive");
    assert_eq!(bad[2], "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"");
    assert_eq!(bad[3], "spec.containers[0].ports[1].containerPort: Required value");
    assert!(bad[4].starts_with("spec.containers[0].env[0].name: Invalid value: \"A=B\""));
    let rp = errs(
        "Pod",
        &json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": "x"}]}}),
        None,
    );
    assert_eq!(rp, vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""]);
}

#[test]
fn pod_update_rules() {
    let old = pod(json!([{"name": "a", "image": "nginx:1", "ports": [{"containerPort": 80}]}]));
    let image = pod(json!([{"name": "a", "image": "nginx:2", "ports": [{"containerPort": 80}]}]));
    assert!(errs("Pod", &image, Some(&old)).is_empty());
    let mut deadline = old.clone();
    deadline["spec"]["activeDeadlineSeconds"] = json!(30);
    deadline["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
    assert!(errs("Pod", &deadline, Some(&old)).is_empty());
    let port = pod(json!([{"name": "a", "image": "nginx:1", "ports": [{"containerPort": 81}]}]));
    let e = errs("Pod", &port, Some(&old));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{e:?}");
    assert!(e[0].contains("containerPort"));
}

#[test]
fn workload_rules() {
    assert!(errs(
        "Deployment",
        &deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"})),
        None
    )
    .is_empty());
    assert_eq!(errs("Deployment", &deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "api"})), None), vec![
        "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`"
    ]);
    let mut none = deploy(json!({}), json!({"app": "web"}));
    none["spec"].as_object_mut().expect("spec").remove("selector");
    assert_eq!(errs("Deployment", &none, None), vec!["spec.selector: Required value"]);
    let mut neg = deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
    neg["spec"]["replicas"] = json!(-1);
    assert_eq!(
        errs("Deployment", &neg, None),
        vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    );
    let old = deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "web", "v": "1"}));
    let new =
        deploy(json!({"matchLabels": {"app": "web", "v": "1"}}), json!({"app": "web", "v": "1"}));
    assert_eq!(errs("Deployment", &new, Some(&old)), vec![
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"1\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    ]);
    let expr = deploy(
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}),
        json!({"app": "api"}),
    );
    assert!(errs("ReplicaSet", &expr, None).is_empty());
    let mut sts = deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
    sts["spec"]["serviceName"] = json!("web");
    let mut sts2 = sts.clone();
    sts2["spec"]["serviceName"] = json!("other");
    assert!(errs("StatefulSet", &sts, None).is_empty());
    assert_eq!(errs("StatefulSet", &sts2, Some(&sts)).len(), 1);
    let mut ds = deploy(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
    ds["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(errs("DaemonSet", &ds, None), vec![
        "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
    ]);
}

#[test]
fn batch_rules() {
    let job = |policy: &str| json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": "x"}]}}}});
    assert!(errs("Job", &job("Never"), None).is_empty());
    assert_eq!(errs("Job", &job("Always"), None), vec![
        "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
    ]);
    let mut changed = job("Never");
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("y");
    let e = errs("Job", &changed, Some(&job("Never")));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("spec.template: Invalid value: ")
            && e[0].ends_with(": field is immutable"),
        "{e:?}"
    );

    let cj = |schedule: &str| json!({"metadata": {"name": "c"}, "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "a", "image": "x"}]}}}}}});
    for ok in ["*/5 * * * *", "0 0 * * 1-5", "@hourly", "0 12 1 JAN,jun sun"] {
        assert!(errs("CronJob", &cj(ok), None).is_empty(), "{ok}");
    }
    assert_eq!(errs("CronJob", &cj(""), None), vec!["spec.schedule: Required value"]);
    assert_eq!(errs("CronJob", &cj("every minute"), None), vec!["spec.schedule: Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]"]);
    assert_eq!(errs("CronJob", &cj("61 * * * *"), None), vec!["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"]);
    assert_eq!(
        errs("CronJob", &cj("@sometimes"), None),
        vec!["spec.schedule: Invalid value: \"@sometimes\": unrecognized descriptor: @sometimes"]
    );
}

#[test]
fn service_rules() {
    let svc = |spec: Value| json!({"metadata": {"name": "s"}, "spec": spec});
    assert!(errs(
        "Service",
        &svc(json!({"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]})),
        None
    )
    .is_empty());
    assert_eq!(
        errs("Service", &svc(json!({"type": "ClusterIP"})), None),
        vec!["spec.ports: Required value"]
    );
    assert!(errs("Service", &svc(json!({"clusterIP": "None"})), None).is_empty());
    assert!(errs(
        "Service",
        &svc(json!({"type": "ExternalName", "externalName": "db.example.com."})),
        None
    )
    .is_empty());
    assert_eq!(
        errs("Service", &svc(json!({"ports": [{"port": 0, "protocol": "TCP"}]})), None),
        vec!["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]
    );
    assert_eq!(
        errs(
            "Service",
            &svc(
                json!({"ports": [{"port": 80, "protocol": "TCP"}, {"name": "b", "port": 81, "protocol": "TCP"}]})
            ),
            None
        ),
        vec!["spec.ports[0].name: Required value"]
    );
    assert_eq!(
        errs(
            "Service",
            &svc(
                json!({"ports": [{"name": "a", "port": 80, "protocol": "TCP"}, {"name": "a", "port": 81, "protocol": "TCP"}]})
            ),
            None
        ),
        vec!["spec.ports[1].name: Duplicate value: \"a\""]
    );
    assert_eq!(errs("Service", &svc(json!({"type": "Magic", "ports": [{"port": 80}]})), None),
        vec!["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]);
    let old = svc(
        json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"], "ports": [{"port": 80}]}),
    );
    let moved = svc(
        json!({"clusterIP": "10.96.0.6", "clusterIPs": ["10.96.0.6"], "ports": [{"port": 80}]}),
    );
    assert_eq!(
        errs("Service", &moved, Some(&old)),
        vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.6\"}: may not change once set"]
    );
    let to_external = svc(json!({"type": "ExternalName", "externalName": "x.com"}));
    assert!(errs("Service", &to_external, Some(&old)).is_empty());
}

#[test]
fn config_and_secret_rules() {
    assert_eq!(errs("ConfigMap", &json!({"metadata": {"name": "c"}, "data": {"a b": "x"}}), None), vec![
        "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
    ]);
    let big = "x".repeat(1024 * 1024 + 1);
    assert_eq!(
        errs("ConfigMap", &json!({"metadata": {"name": "c"}, "data": {"k": big}}), None),
        vec![": Too long: may not be more than 1048576 bytes"]
    );
    let frozen = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
    let thawed = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "2"}});
    assert_eq!(
        errs("ConfigMap", &thawed, Some(&frozen)),
        vec!["data: Forbidden: field is immutable when `immutable` is set"]
    );
    assert_eq!(
        errs(
            "Secret",
            &json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}),
            None
        ),
        vec!["data[tls.key]: Required value"]
    );
    let old = json!({"metadata": {"name": "s"}, "type": "Opaque"});
    assert_eq!(
        errs(
            "Secret",
            &json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "data": {"username": ""}}),
            Some(&old)
        ),
        vec!["type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"]
    );
}

#[test]
fn crd_rules() {
    let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget"}, "versions": [{"name": "v1", "served": true, "storage": true}]}});
    assert!(errs("CustomResourceDefinition", &crd, None).is_empty());
    let mut wrong = crd.clone();
    wrong["metadata"]["name"] = json!("gadgets.example.com");
    assert_eq!(errs("CustomResourceDefinition", &wrong, None), vec!["metadata.name: Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group"]);
    let mut two = crd.clone();
    two["spec"]["versions"] =
        json!([{"name": "v1", "storage": true}, {"name": "v2", "storage": true}]);
    let e = errs("CustomResourceDefinition", &two, None);
    assert!(
        e.len() == 1 && e[0].ends_with("must have exactly one version marked as storage version"),
        "{e:?}"
    );
    let mut nokind = crd.clone();
    nokind["spec"]["names"] = json!({"plural": "widgets"});
    nokind["spec"].as_object_mut().expect("spec").remove("group");
    let e = errs("CustomResourceDefinition", &nokind, None);
    assert!(
        e.contains(&"spec.group: Required value".to_string())
            && e.contains(&"spec.names.kind: Required value".to_string()),
        "{e:?}"
    );
}

#[test]
fn never_panics_on_garbage() {
    let garbage = [
        json!(null),
        json!(1),
        json!("x"),
        json!([]),
        json!({"metadata": 1, "spec": "x"}),
        json!({"metadata": {"name": 5, "labels": [1], "annotations": {"a": 1}}, "spec": {"containers": {"a": 1}, "ports": [1, "x", {"port": "80"}], "selector": 3, "template": [], "versions": 2, "schedule": 7}}),
        json!({"metadata": {"name": "ok"}, "spec": {"containers": [1, {"name": 3, "ports": [{"containerPort": 1.5}], "env": [5]}], "restartPolicy": 9}, "data": [1]}),
    ];
    for r in builtin() {
        for g in &garbage {
            let _ = validate(&r, g, None);
            let _ = validate(&r, g, Some(g));
        }
    }
}
