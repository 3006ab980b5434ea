//! Every kind a v1.33 cluster serves by default: `kubectl api-resources` lists the same rows,
//! `kubectl get all` the same category, each new kind round-trips through `kubectl create`,
//! bad input gets a 422 naming the field, and the objects a cluster bootstraps (RBAC roles,
//! APF objects, APIServices, the ServiceCIDR) exist. CertificateSigningRequests are approved
//! (and signed by the cluster CA) and denied with `kubectl certificate`, events.k8s.io Events share storage with core ones.

use crate::harness::Cluster;
use std::time::Duration;

/// (NAME, SHORTNAMES, APIVERSION, NAMESPACED, KIND) of every resource `kubectl
/// api-resources` prints against a v1.33 cluster with the default API set.
const V1_33: &[(&str, &str, &str, bool, &str)] = &[
    ("bindings", "", "v1", true, "Binding"),
    ("componentstatuses", "cs", "v1", false, "ComponentStatus"),
    ("configmaps", "cm", "v1", true, "ConfigMap"),
    ("endpoints", "ep", "v1", true, "Endpoints"),
    ("events", "ev", "v1", true, "Event"),
    ("limitranges", "limits", "v1", true, "LimitRange"),
    ("namespaces", "ns", "v1", false, "Namespace"),
    ("nodes", "no", "v1", false, "Node"),
    ("persistentvolumeclaims", "pvc", "v1", true, "PersistentVolumeClaim"),
    ("persistentvolumes", "pv", "v1", false, "PersistentVolume"),
    ("pods", "po", "v1", true, "Pod"),
    ("podtemplates", "", "v1", true, "PodTemplate"),
    ("replicationcontrollers", "rc", "v1", true, "ReplicationController"),
    ("resourcequotas", "quota", "v1", true, "ResourceQuota"),
    ("secrets", "", "v1", true, "Secret"),
    ("serviceaccounts", "sa", "v1", true, "ServiceAccount"),
    ("services", "svc", "v1", true, "Service"),
    (
        "mutatingwebhookconfigurations",
        "",
        "admissionregistration.k8s.io/v1",
        false,
        "MutatingWebhookConfiguration",
    ),
    (
        "validatingadmissionpolicies",
        "",
        "admissionregistration.k8s.io/v1",
        false,
        "ValidatingAdmissionPolicy",
    ),
    (
        "validatingadmissionpolicybindings",
        "",
        "admissionregistration.k8s.io/v1",
        false,
        "ValidatingAdmissionPolicyBinding",
    ),
    (
        "validatingwebhookconfigurations",
        "",
        "admissionregistration.k8s.io/v1",
        false,
        "ValidatingWebhookConfiguration",
    ),
    (
        "customresourcedefinitions",
        "crd,crds",
        "apiextensions.k8s.io/v1",
        false,
        "CustomResourceDefinition",
    ),
    ("apiservices", "", "apiregistration.k8s.io/v1", false, "APIService"),
    ("controllerrevisions", "", "apps/v1", true, "ControllerRevision"),
    ("daemonsets", "ds", "apps/v1", true, "DaemonSet"),
    ("deployments", "deploy", "apps/v1", true, "Deployment"),
    ("replicasets", "rs", "apps/v1", true, "ReplicaSet"),
    ("statefulsets", "sts", "apps/v1", true, "StatefulSet"),
    ("selfsubjectreviews", "", "authentication.k8s.io/v1", false, "SelfSubjectReview"),
    ("tokenreviews", "", "authentication.k8s.io/v1", false, "TokenReview"),
    ("localsubjectaccessreviews", "", "authorization.k8s.io/v1", true, "LocalSubjectAccessReview"),
    ("selfsubjectaccessreviews", "", "authorization.k8s.io/v1", false, "SelfSubjectAccessReview"),
    ("selfsubjectrulesreviews", "", "authorization.k8s.io/v1", false, "SelfSubjectRulesReview"),
    ("subjectaccessreviews", "", "authorization.k8s.io/v1", false, "SubjectAccessReview"),
    ("horizontalpodautoscalers", "hpa", "autoscaling/v2", true, "HorizontalPodAutoscaler"),
    ("cronjobs", "cj", "batch/v1", true, "CronJob"),
    ("jobs", "", "batch/v1", true, "Job"),
    (
        "certificatesigningrequests",
        "csr",
        "certificates.k8s.io/v1",
        false,
        "CertificateSigningRequest",
    ),
    ("leases", "", "coordination.k8s.io/v1", true, "Lease"),
    ("endpointslices", "", "discovery.k8s.io/v1", true, "EndpointSlice"),
    ("events", "ev", "events.k8s.io/v1", true, "Event"),
    ("flowschemas", "", "flowcontrol.apiserver.k8s.io/v1", false, "FlowSchema"),
    (
        "prioritylevelconfigurations",
        "",
        "flowcontrol.apiserver.k8s.io/v1",
        false,
        "PriorityLevelConfiguration",
    ),
    ("ingressclasses", "", "networking.k8s.io/v1", false, "IngressClass"),
    ("ingresses", "ing", "networking.k8s.io/v1", true, "Ingress"),
    ("ipaddresses", "ip", "networking.k8s.io/v1", false, "IPAddress"),
    ("networkpolicies", "netpol", "networking.k8s.io/v1", true, "NetworkPolicy"),
    ("servicecidrs", "", "networking.k8s.io/v1", false, "ServiceCIDR"),
    ("runtimeclasses", "", "node.k8s.io/v1", false, "RuntimeClass"),
    ("poddisruptionbudgets", "pdb", "policy/v1", true, "PodDisruptionBudget"),
    ("clusterrolebindings", "", "rbac.authorization.k8s.io/v1", false, "ClusterRoleBinding"),
    ("clusterroles", "", "rbac.authorization.k8s.io/v1", false, "ClusterRole"),
    ("rolebindings", "", "rbac.authorization.k8s.io/v1", true, "RoleBinding"),
    ("roles", "", "rbac.authorization.k8s.io/v1", true, "Role"),
    ("priorityclasses", "pc", "scheduling.k8s.io/v1", false, "PriorityClass"),
    ("csidrivers", "", "storage.k8s.io/v1", false, "CSIDriver"),
    ("csinodes", "", "storage.k8s.io/v1", false, "CSINode"),
    ("csistoragecapacities", "", "storage.k8s.io/v1", true, "CSIStorageCapacity"),
    ("storageclasses", "sc", "storage.k8s.io/v1", false, "StorageClass"),
    ("volumeattachments", "", "storage.k8s.io/v1", false, "VolumeAttachment"),
];

/// Rows of `kubectl api-resources`, cut at the header's column starts.
fn api_resource_rows(out: &str) -> Vec<(String, String, String, bool, String)> {
    let mut lines = out.lines();
    let header = lines.next().expect("header");
    let starts: Vec<usize> = ["SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
        .iter()
        .map(|h| header.find(h).expect("column"))
        .collect();
    let cell = |l: &str, from: usize, to: Option<usize>| {
        let end = to.unwrap_or(l.len()).min(l.len());
        l.get(from.min(end)..end).unwrap_or("").trim().to_string()
    };
    lines
        .map(|l| {
            (
                cell(l, 0, Some(starts[0])),
                cell(l, starts[0], Some(starts[1])),
                cell(l, starts[1], Some(starts[2])),
                cell(l, starts[2], Some(starts[3])) == "true",
                cell(l, starts[3], None),
            )
        })
        .collect()
}

#[test]
fn api_resources_match_a_v1_33_cluster() {
    let c = Cluster::start();
    let rows = api_resource_rows(&c.kubectl(&["api-resources"]));
    for (name, short, version, namespaced, kind) in V1_33 {
        let want = (
            name.to_string(),
            short.to_string(),
            version.to_string(),
            *namespaced,
            kind.to_string(),
        );
        assert!(rows.contains(&want), "missing row {want:?} in {rows:#?}");
    }
    // Nothing beyond the v1.33 list in the Kubernetes groups (kumo's CRD groups aside).
    for row in &rows {
        let group = row.2.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let upstream = group.is_empty()
            || group.ends_with(".k8s.io") && !group.starts_with("gateway.")
            || ["apps", "autoscaling", "batch", "policy"].contains(&group);
        if upstream && group != "metrics.k8s.io" {
            assert!(
                V1_33.iter().any(|(n, _, v, _, _)| *n == row.0 && *v == row.2),
                "unexpected row {row:?}"
            );
        }
    }
    // The `all` category is upstream's, no more.
    let mut all: Vec<String> = c
        .kubectl(&["api-resources", "--categories=all", "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect();
    all.sort();
    assert_eq!(
        all,
        [
            "cronjobs.batch",
            "daemonsets.apps",
            "deployments.apps",
            "horizontalpodautoscalers.autoscaling",
            "jobs.batch",
            "pods",
            "replicasets.apps",
            "replicationcontrollers",
            "services",
            "statefulsets.apps"
        ]
    );
}

#[test]
fn get_all_lists_workloads_and_services_only() {
    let c = Cluster::start();
    c.kubectl(&["create", "deployment", "web", "--image=nginx"]);
    c.kubectl(&["create", "configmap", "conf", "--from-literal=a=b"]);
    c.kubectl(&["create", "job", "once", "--image=busybox"]);
    let mut names = String::new();
    c.eventually("the ReplicaSet appears in get all", Duration::from_secs(30), || {
        names = c.kubectl(&["get", "all", "-o", "name"]);
        names.contains("replicaset.apps/web-")
    });
    for want in ["service/kubernetes", "deployment.apps/web", "job.batch/once"] {
        assert!(names.lines().any(|l| l == want), "{want} not in:\n{names}");
    }
    assert!(!names.contains("configmap"), "{names}");
    assert!(!names.contains("endpoints"), "{names}");
}

const KINDS: &str = r#"
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: gvisor}
handler: runsc
---
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: hostpath.csi.k8s.io}
spec: {podInfoOnMount: true}
---
apiVersion: storage.k8s.io/v1
kind: CSINode
metadata: {name: node-a}
spec:
  drivers: [{name: hostpath.csi.k8s.io, nodeID: node-a}]
---
apiVersion: storage.k8s.io/v1
kind: VolumeAttachment
metadata: {name: va-1}
spec: {attacher: hostpath.csi.k8s.io, nodeName: node-a, source: {persistentVolumeName: pv-1}}
---
apiVersion: storage.k8s.io/v1
kind: CSIStorageCapacity
metadata: {name: cap-1, namespace: default}
storageClassName: standard
capacity: 10Gi
---
apiVersion: v1
kind: PodTemplate
metadata: {name: tpl}
template:
  metadata: {labels: {app: tpl}}
  spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: vwc}
webhooks:
- name: check.example.com
  clientConfig: {url: "https://example.com/check"}
  sideEffects: None
  admissionReviewVersions: [v1]
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: mwc}
webhooks:
- name: mutate.example.com
  clientConfig: {service: {name: hook, namespace: default}}
  sideEffects: NoneOnDryRun
  admissionReviewVersions: [v1]
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {name: batch}
spec: {type: Limited, limited: {limitResponse: {type: Queue}}}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: batch-jobs}
spec:
  priorityLevelConfiguration: {name: batch}
  rules:
  - subjects: [{kind: User, user: {name: batcher}}]
    resourceRules: [{verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["*"]}]
---
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: extra}
spec: {cidrs: [10.96.0.0/16]}
---
apiVersion: networking.k8s.io/v1
kind: IPAddress
metadata: {name: 10.96.0.10}
spec: {parentRef: {group: "", resource: services, namespace: default, name: dns}}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.example.com}
spec: {group: metrics.example.com, version: v1beta1, groupPriorityMinimum: 100, versionPriority: 100,
  service: {name: metrics, namespace: kube-system}, insecureSkipTLSVerify: true}
"#;

#[test]
fn each_new_kind_round_trips_and_bad_input_names_the_field() {
    let c = Cluster::start();
    let f = c.file("kinds.yaml", KINDS);
    let out = c.kubectl(&["create", "-f", f.to_str().unwrap()]);
    assert_eq!(out.lines().count(), 13, "{out}");
    // Stored as given, with upstream's defaults.
    assert_eq!(c.kubectl(&["get", "runtimeclass", "gvisor", "-o", "jsonpath={.handler}"]), "runsc");
    let driver = c.get_json(&["csidriver", "hostpath.csi.k8s.io"]);
    assert_eq!(driver["spec"]["podInfoOnMount"], true);
    assert_eq!(driver["spec"]["attachRequired"], true, "defaulted");
    assert_eq!(driver["spec"]["volumeLifecycleModes"][0], "Persistent");
    let vwc = c.get_json(&["validatingwebhookconfiguration", "vwc"]);
    assert_eq!(vwc["webhooks"][0]["failurePolicy"], "Fail");
    assert_eq!(vwc["webhooks"][0]["timeoutSeconds"], 10);
    let plc = c.get_json(&["prioritylevelconfiguration", "batch"]);
    assert_eq!(plc["spec"]["limited"]["nominalConcurrencyShares"], 30);
    assert_eq!(plc["spec"]["limited"]["limitResponse"]["queuing"]["queues"], 64);
    assert_eq!(c.get_json(&["flowschema", "batch-jobs"])["spec"]["matchingPrecedence"], 1000);
    assert_eq!(
        c.kubectl(&[
            "get",
            "podtemplate",
            "tpl",
            "-o",
            "jsonpath={.template.spec.containers[0].image}"
        ]),
        "busybox"
    );
    assert_eq!(
        c.kubectl(&["get", "csistoragecapacity", "cap-1", "-o", "jsonpath={.capacity}"]),
        "10Gi"
    );
    assert_eq!(
        c.kubectl(&["get", "ip", "10.96.0.10", "-o", "jsonpath={.spec.parentRef.name}"]),
        "dns"
    );
    // Printed with upstream's columns.
    let table = c.kubectl(&["get", "volumeattachment"]);
    assert!(
        table.starts_with("NAME")
            && table.contains("ATTACHER")
            && table.contains("hostpath.csi.k8s.io"),
        "{table}"
    );
    let table = c.kubectl(&["get", "apiservice", "v1.apps", "v1beta1.metrics.example.com"]);
    assert!(table.contains("Local") && table.contains("kube-system/metrics"), "{table}");
    // Every kind is explained recursively from its schema.
    for kind in [
        "runtimeclasses",
        "csidrivers",
        "csinodes",
        "volumeattachments",
        "csistoragecapacities",
        "podtemplates",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "mutatingwebhookconfigurations",
        "flowschemas",
        "prioritylevelconfigurations",
        "servicecidrs",
        "ipaddresses",
        "apiservices",
        "certificatesigningrequests",
        "componentstatuses",
        "tokenreviews",
        "subjectaccessreviews",
    ] {
        let out = c.kubectl(&["explain", kind, "--recursive"]);
        assert!(out.contains("FIELDS:"), "explain {kind}: {out}");
    }
    let out = c.kubectl(&["explain", "events", "--api-version=events.k8s.io/v1", "--recursive"]);
    assert!(out.contains("GROUP:      events.k8s.io") && out.contains("regarding"), "{out}");
    // Bad input: a 422 that names the field.
    for (manifest, field) in [
        ("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: bad}\nhandler: Not_A_Label\n", "handler"),
        ("apiVersion: storage.k8s.io/v1\nkind: VolumeAttachment\nmetadata: {name: bad}\nspec: {attacher: a, source: {persistentVolumeName: p}}\n", "spec.nodeName"),
        ("apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata: {name: bad}\nspec: {priorityLevelConfiguration: {name: x}, matchingPrecedence: 20000}\n", "spec.matchingPrecedence"),
        ("apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: bad}\nspec: {cidrs: [not-a-cidr]}\n", "spec.cidrs[0]"),
        ("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: bad}\nwebhooks: [{name: a.b.c, clientConfig: {url: 'https://x'}, admissionReviewVersions: [v1]}]\n", "webhooks[0].sideEffects"),
        ("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: bad}\nspec: {matchConstraints: {resourceRules: [{apiGroups: ['*'], apiVersions: ['*'], operations: ['*'], resources: ['*']}]}, validations: [{expression: 'object.spec +'}]}\n", "spec.validations[0].expression"),
        ("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {name: bad}\nspec: {request: aGVsbG8=, signerName: example.com/x, usages: [client auth]}\n", "spec.request"),
        ("apiVersion: networking.k8s.io/v1\nkind: IPAddress\nmetadata: {name: not-an-ip}\nspec: {parentRef: {resource: services, name: x}}\n", "metadata.name"),
    ] {
        let out = c.kubectl_stdin(&["create", "-f", "-"], manifest);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("is invalid") && err.contains(field), "{field}: {err}");
    }
}

#[test]
fn default_objects_exist_and_admin_edit_view_aggregate() {
    let c = Cluster::start();
    let roles = c.kubectl(&[
        "get",
        "clusterroles",
        "-l",
        "kubernetes.io/bootstrapping=rbac-defaults",
        "-o",
        "name",
    ]);
    for r in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:node",
    ] {
        assert!(
            roles.lines().any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{r}")),
            "{r} not in {roles}"
        );
    }
    let binding = c.get_json(&["clusterrolebinding", "cluster-admin"]);
    assert_eq!(binding["subjects"][0]["kind"], "Group");
    assert_eq!(binding["subjects"][0]["name"], "system:masters");
    assert_eq!(binding["roleRef"]["name"], "cluster-admin");
    c.get_json(&["clusterrolebinding", "system:discovery"]);
    // admin ⊇ edit ⊇ view through aggregation; a new labelled role joins.
    c.eventually("admin aggregates edit and view", Duration::from_secs(20), || {
        let admin = c.kubectl(&["get", "clusterrole", "admin", "-o", "json"]);
        admin.contains("rolebindings")
            && admin.contains("impersonate")
            && admin.contains("\"configmaps\"")
    });
    c.kubectl_in(&["create", "-f", "-"], "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: widgets-view, labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}}\nrules: [{apiGroups: [example.com], resources: [widgets], verbs: [get]}]\n");
    c.eventually("view aggregates a new role", Duration::from_secs(20), || {
        c.kubectl(&["get", "clusterrole", "view", "-o", "json"]).contains("widgets")
    });
    // API Priority and Fairness' mandatory objects, APIServices and the ServiceCIDR.
    for fs in ["exempt", "catch-all"] {
        c.get_json(&["flowschema", fs]);
        c.get_json(&["prioritylevelconfiguration", fs]);
    }
    let apps = c.get_json(&["apiservice", "v1.apps"]);
    assert_eq!(apps["status"]["conditions"][0]["reason"], "Local");
    assert!(c
        .kubectl(&["get", "apiservices", "-o", "name"])
        .contains("v1.gateway.networking.k8s.io"));
    let cidr = c.get_json(&["servicecidr", "kubernetes"]);
    assert_eq!(cidr["spec"]["cidrs"][0], "127.64.0.0/10");
    let cs = c.kubectl(&["get", "componentstatuses"]);
    assert!(cs.contains("etcd-0") && cs.contains("Healthy"), "{cs}");
}

fn csr_manifest(c: &Cluster, name: &str) -> String {
    let dir = c.data_dir().join(format!("csr-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}/O=devs"),
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("req.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use base64::Engine;
    let req = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(dir.join("req.pem")).unwrap());
    format!("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {req}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  usages: [client auth]\n")
}

#[test]
fn certificate_approve_issues_a_working_client_certificate_and_deny_refuses() {
    let c = Cluster::start();
    c.kubectl_in(&["create", "-f", "-"], &csr_manifest(&c, "alice"));
    c.kubectl_in(&["create", "-f", "-"], &csr_manifest(&c, "bob"));
    let csr = c.get_json(&["csr", "alice"]);
    assert_eq!(csr["spec"]["username"], "kumo-admin", "the requester is recorded");
    assert!(c.kubectl(&["get", "csr", "alice"]).contains("Pending"));
    let out = c.kubectl(&["certificate", "approve", "alice"]);
    assert!(out.contains("approved"), "{out}");
    let csr = c.get_json(&["csr", "alice"]);
    assert_eq!(csr["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(csr["status"]["conditions"][0]["status"], "True");
    assert!(c.kubectl(&["get", "csr", "alice"]).contains("Approved,Issued"));
    // The cluster CA issued a client certificate that authenticates as the request's subject.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cert = b64.decode(csr["status"]["certificate"].as_str().expect("issued")).unwrap();
    let dir = c.data_dir().join("csr-alice");
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&c.kubectl(&["config", "view", "--raw", "-o", "json"])).unwrap();
    let cluster = &config["clusters"][0]["cluster"];
    let alice = serde_json::json!({"apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "kumo", "cluster": cluster}],
        "users": [{"name": "alice", "user": {
            "client-certificate": dir.join("cert.pem"), "client-key": dir.join("key.pem")}}],
        "contexts": [{"name": "alice", "context": {"cluster": "kumo", "user": "alice"}}],
        "current-context": "alice"});
    let kubeconfig = c.file("alice.kubeconfig", &alice.to_string());
    let whoami =
        c.kubectl(&["--kubeconfig", kubeconfig.to_str().unwrap(), "auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "alice", "{whoami}");
    assert!(who["status"]["userInfo"]["groups"].to_string().contains("devs"), "{whoami}");
    c.kubectl(&["certificate", "deny", "bob"]);
    assert_eq!(c.get_json(&["csr", "bob"])["status"]["conditions"][0]["type"], "Denied");
    // An approved request cannot be denied as well.
    let err = c.kubectl_fails(&["certificate", "deny", "alice"]);
    assert!(err.contains("mutually exclusive") || err.to_lowercase().contains("approved"), "{err}");
}

#[test]
fn events_are_one_store_seen_through_two_apis() {
    let c = Cluster::start();
    c.kubectl_in(&["create", "-f", "-"], "apiVersion: v1\nkind: Event\nmetadata: {name: e1}\ninvolvedObject: {kind: Pod, name: p1, namespace: default}\nreason: Started\nmessage: started it\ntype: Normal\ncount: 2\nreportingComponent: kubelet\n");
    let v1 = c.get_json(&["events.v1.events.k8s.io", "e1"]);
    assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
    assert_eq!(v1["note"], "started it");
    assert_eq!(v1["regarding"]["name"], "p1");
    assert_eq!(v1["deprecatedCount"], 2);
    c.kubectl_in(&["create", "-f", "-"], "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: e2}\neventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: example.com/ctl\nreportingInstance: ctl-1\naction: Scale\nreason: Scaled\nnote: scaled up\ntype: Normal\nregarding: {kind: Deployment, name: web, namespace: default}\n");
    let raw = c.kubectl(&["get", "--raw", "/api/v1/namespaces/default/events/e2"]);
    let core: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(core["message"], "scaled up");
    assert_eq!(core["involvedObject"]["kind"], "Deployment");
    assert_eq!(core["reportingComponent"], "example.com/ctl");
    let err = c.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: e3}\nreason: X\n",
    );
    let err = String::from_utf8_lossy(&err.stderr);
    assert!(err.contains("eventTime: Required value"), "{err}");
}
