//! Storage end to end: the default `local-path` StorageClass, claims that wait for their first
//! consumer and are provisioned as directories on the node the scheduler picked, reclaim by
//! `Delete` and `Retain`, pvc-protection, static volumes with selectors, resize refusals and
//! StatefulSet claims with their retention policy — driven by the real kubectl against
//! `kumo up` with its real agent (pods are host processes of the process runtime).

use crate::harness::Cluster;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn node_of(c: &Cluster) -> String {
    let node = c.kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    c.kubectl(&["wait", "--for=condition=Ready", &format!("node/{node}"), "--timeout=30s"]);
    node
}

fn claim(name: &str, class: Option<&str>, size: &str) -> String {
    let class = class.map(|c| format!("  storageClassName: \"{c}\"\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n{class}  resources: {{requests: {{storage: {size}}}}}\n"
    )
}

fn pod_using(name: &str, claim: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}}}
"#
    )
}

fn phase(c: &Cluster, kind: &str, name: &str) -> String {
    let out = c.kubectl_output(&["get", kind, name, "-o", "jsonpath={.status.phase}"]);
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn gone(c: &Cluster, kind: &str, name: &str) -> bool {
    let out = c.kubectl_output(&["get", kind, name, "--ignore-not-found", "-o", "name"]);
    out.status.success() && out.stdout.is_empty()
}

fn events_of(c: &Cluster, name: &str) -> String {
    c.kubectl(&["get", "events", "--field-selector", &format!("involvedObject.name={name}")])
}

fn has_event(c: &Cluster, name: &str, reason: &str) -> bool {
    events_of(c, name).contains(reason)
}

#[test]
fn a_local_path_claim_waits_for_its_pod_binds_on_its_node_and_is_deleted_with_its_directory() {
    let c = Cluster::with_agent(&[]);
    let node = node_of(&c);
    let classes = c.kubectl(&["get", "sc"]);
    let header: Vec<&str> = classes.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    let row: Vec<&str> = classes.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(
        &row[..6],
        [
            "local-path",
            "(default)",
            "kumo.dev/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ],
        "{classes}"
    );

    // No class named: the default one is filled in, and the claim waits for a consumer.
    c.kubectl_in(&["apply", "-f", "-"], &claim("data", None, "1Gi"));
    let pvc = c.get_json(&["pvc", "data"]);
    assert_eq!(pvc["spec"]["storageClassName"], "local-path");
    assert!(pvc["metadata"]["finalizers"].to_string().contains("kubernetes.io/pvc-protection"));
    c.eventually("WaitForFirstConsumer event", WAIT, || {
        has_event(&c, "data", "WaitForFirstConsumer")
    });
    let events = events_of(&c, "data");
    assert!(events.contains("waiting for first consumer to be created before binding"), "{events}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(phase(&c, "pvc", "data"), "Pending", "no consumer, no binding");

    c.kubectl_in(&["apply", "-f", "-"], &pod_using("user", "data"));
    c.eventually("claim bound", WAIT, || phase(&c, "pvc", "data") == "Bound");
    c.kubectl(&["wait", "--for=condition=Ready", "pod/user", "--timeout=60s"]);
    let pvc = c.get_json(&["pvc", "data"]);
    assert_eq!(pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"], node.as_str());
    assert_eq!(pvc["status"]["capacity"]["storage"], "1Gi");
    let pv_name = pvc["spec"]["volumeName"].as_str().expect("volumeName").to_string();
    let pv = c.get_json(&["pv", &pv_name]);
    let term =
        &pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0];
    assert_eq!(term["key"], "kubernetes.io/hostname");
    assert_eq!(term["values"][0], node.as_str());
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    let dir = pv["spec"]["hostPath"]["path"].as_str().expect("hostPath").to_string();
    assert!(Path::new(&dir).is_dir(), "{dir} exists");
    assert!(
        dir.starts_with(&c.data_dir().to_string_lossy().to_string()),
        "{dir} under the data dir"
    );
    assert_eq!(c.get_json(&["pod", "user"])["spec"]["nodeName"], node.as_str());
    let events = events_of(&c, "data");
    assert!(events.contains("ProvisioningSucceeded"), "{events}");
    assert!(events.contains("ExternalProvisioning"), "{events}");

    let pvcs = c.kubectl(&["get", "pvc"]);
    let header: Vec<&str> = pvcs.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ]
    );
    let row: Vec<&str> = pvcs.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(
        &row[..7],
        ["data", "Bound", pv_name.as_str(), "1Gi", "RWO", "local-path", "<unset>"],
        "{pvcs}"
    );
    let pvs = c.kubectl(&["get", "pv"]);
    let header: Vec<&str> = pvs.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "RECLAIM",
            "POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ]
    );
    let row: Vec<&str> = pvs.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(
        &row[..7],
        [pv_name.as_str(), "1Gi", "RWO", "Delete", "Bound", "default/data", "local-path"],
        "{pvs}"
    );

    // pvc-protection: a claim in use stays Terminating until its pod is gone.
    c.kubectl(&["delete", "pvc", "data", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(3));
    let shown = c.kubectl(&["get", "pvc", "data"]);
    assert!(shown.contains("Terminating"), "{shown}");
    assert!(Path::new(&dir).is_dir());
    c.kubectl(&["delete", "pod", "user", "--wait=true", "--timeout=60s"]);
    c.eventually("claim gone", WAIT, || gone(&c, "pvc", "data"));
    // Reclaim policy Delete: the provisioner removes the directory and the volume.
    c.eventually("volume gone", WAIT, || gone(&c, "pv", &pv_name));
    assert!(!Path::new(&dir).exists(), "{dir} removed");
}

#[test]
fn a_retained_volume_is_released_and_keeps_its_directory() {
    let c = Cluster::with_agent(&[]);
    node_of(&c);
    let class = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: keep}
provisioner: kumo.dev/local-path
reclaimPolicy: Retain
volumeBindingMode: WaitForFirstConsumer
"#;
    c.kubectl_in(&["apply", "-f", "-"], class);
    c.kubectl_in(&["apply", "-f", "-"], &claim("kept", Some("keep"), "64Mi"));
    c.kubectl_in(&["apply", "-f", "-"], &pod_using("user", "kept"));
    c.eventually("claim bound", WAIT, || phase(&c, "pvc", "kept") == "Bound");
    let pv_name =
        c.get_json(&["pvc", "kept"])["spec"]["volumeName"].as_str().unwrap_or("").to_string();
    let pv = c.get_json(&["pv", &pv_name]);
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    let dir = pv["spec"]["hostPath"]["path"].as_str().expect("hostPath").to_string();
    std::fs::write(Path::new(&dir).join("state"), b"kept").expect("write into the volume");
    c.kubectl(&["delete", "pod", "user", "--wait=true", "--timeout=60s"]);
    c.kubectl(&["delete", "pvc", "kept", "--wait=true", "--timeout=60s"]);
    c.eventually("volume released", WAIT, || phase(&c, "pv", &pv_name) == "Released");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(phase(&c, "pv", &pv_name), "Released", "a retained volume stays");
    assert_eq!(std::fs::read(Path::new(&dir).join("state")).expect("data kept"), b"kept");
}

#[test]
fn static_volumes_bind_by_selector_and_a_claim_no_volume_fits_says_why() {
    let c = Cluster::start();
    let volumes = r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: fast, labels: {tier: fast}}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: {path: /tmp/kumo-static-fast}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: slow, labels: {tier: slow}}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: {path: /tmp/kumo-static-slow}
"#;
    c.kubectl_in(&["apply", "-f", "-"], volumes);
    c.eventually("volumes available", WAIT, || phase(&c, "pv", "fast") == "Available");
    let pv = c.get_json(&["pv", "fast"]);
    assert!(pv["metadata"]["finalizers"].to_string().contains("kubernetes.io/pv-protection"));
    assert_eq!(
        pv["spec"]["persistentVolumeReclaimPolicy"], "Retain",
        "the default for static volumes"
    );
    let picky = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: picky}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  selector: {matchLabels: {tier: slow}}
  resources: {requests: {storage: 500Mi}}
"#;
    c.kubectl_in(&["apply", "-f", "-"], picky);
    c.eventually("selected volume bound", WAIT, || phase(&c, "pvc", "picky") == "Bound");
    let pvc = c.get_json(&["pvc", "picky"]);
    assert_eq!(pvc["spec"]["volumeName"], "slow");
    assert_eq!(pvc["status"]["capacity"]["storage"], "1Gi", "the volume's size");
    c.eventually("volume bound", WAIT, || phase(&c, "pv", "slow") == "Bound");
    assert_eq!(phase(&c, "pv", "fast"), "Available");

    // More than any volume has: Pending, and the events say why.
    c.kubectl_in(&["apply", "-f", "-"], &claim("huge", Some(""), "10Gi"));
    c.eventually("FailedBinding event", WAIT, || has_event(&c, "huge", "FailedBinding"));
    let events = events_of(&c, "huge");
    assert!(
        events
            .contains("no persistent volumes available for this claim and no storage class is set"),
        "{events}"
    );
    assert_eq!(phase(&c, "pvc", "huge"), "Pending");
    assert_eq!(phase(&c, "pv", "fast"), "Available", "too small, not taken");

    // The spec is immutable except the requested size of a bound claim...
    let err = c.kubectl_fails(&[
        "patch",
        "pvc",
        "huge",
        "-p",
        r#"{"spec":{"accessModes":["ReadWriteMany"]}}"#,
    ]);
    assert!(err.contains("spec is immutable after creation except resources.requests"), "{err}");
    // ...and a bound claim grows only where its class allows expansion.
    let err = c.kubectl_fails(&[
        "patch",
        "pvc",
        "picky",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    assert!(
        err.contains("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"),
        "{err}"
    );
    assert!(err.contains("Forbidden") || err.contains("forbidden"), "{err}");
}

#[test]
fn a_class_that_allows_expansion_records_the_new_size_and_local_path_refuses() {
    let c = Cluster::start();
    let objects = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: grow}
provisioner: kubernetes.io/no-provisioner
allowVolumeExpansion: true
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: growing}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: grow
  hostPath: {path: /tmp/kumo-growing}
"#;
    c.kubectl_in(&["apply", "-f", "-"], objects);
    c.kubectl_in(&["apply", "-f", "-"], &claim("g", Some("grow"), "1Gi"));
    c.eventually("claim bound", WAIT, || phase(&c, "pvc", "g") == "Bound");
    c.kubectl(&[
        "patch",
        "pvc",
        "g",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}"#,
    ]);
    c.eventually("new size recorded", WAIT, || {
        c.get_json(&["pvc", "g"])["status"]["capacity"]["storage"] == "3Gi"
    });
    assert_eq!(c.get_json(&["pv", "growing"])["spec"]["capacity"]["storage"], "3Gi");
    // A pending claim cannot change its size (it is not bound).
    c.kubectl_in(&["apply", "-f", "-"], &claim("lp", None, "1Gi"));
    let err = c.kubectl_fails(&[
        "patch",
        "pvc",
        "lp",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    assert!(err.contains("is invalid") || err.contains("forbidden"), "{err}");
}

fn claim_of(c: &Cluster, name: &str) -> Option<Value> {
    let out = c.kubectl_output(&["get", "pvc", name, "-o", "json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

#[test]
fn statefulset_claims_bind_survive_their_pods_and_follow_the_retention_policy() {
    let c = Cluster::with_agent(&[]);
    node_of(&c);
    let set = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  selector: {matchLabels: {app: db}}
  serviceName: db
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: busybox
        command: ["sleep", "3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 64Mi}}
"#;
    c.kubectl_in(&["apply", "-f", "-"], set);
    c.kubectl(&["rollout", "status", "statefulset/db", "--timeout=120s"]);
    for o in 0..2 {
        c.eventually("claims bound", WAIT, || phase(&c, "pvc", &format!("data-db-{o}")) == "Bound");
    }
    let first = claim_of(&c, "data-db-0").expect("claim of db-0");
    let pv0 = first["spec"]["volumeName"].as_str().unwrap_or("").to_string();
    let second = claim_of(&c, "data-db-1").expect("claim of db-1");
    let uid1 = second["metadata"]["uid"].clone();
    let pv1 = second["spec"]["volumeName"].as_str().unwrap_or("").to_string();

    // A deleted pod's replacement uses the same claim and volume.
    let old_uid = c.get_json(&["pod", "db-0"])["metadata"]["uid"].clone();
    // Not `--wait`: kubectl 1.33 waits for a delete event of whatever pod it lists under the
    // name, and when the StatefulSet has already made db-0 again by then it waits for the new
    // pod's deletion until it times out (kubernetes/kubernetes#135563, fixed after 1.33).
    c.kubectl(&["delete", "pod", "db-0", "--wait=false"]);
    c.eventually("db-0 replaced", WAIT, || {
        let out = c.kubectl_output(&["get", "pod", "db-0", "-o", "json"]);
        let pod: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        pod["metadata"]["uid"] != old_uid && pod["status"]["phase"] == "Running"
    });
    let pod = c.get_json(&["pod", "db-0"]);
    let volumes = pod["spec"]["volumes"].to_string();
    assert!(volumes.contains("\"claimName\":\"data-db-0\""), "{volumes}");
    assert_eq!(claim_of(&c, "data-db-0").expect("claim")["spec"]["volumeName"], pv0.as_str());

    // whenScaled: Retain (the default): scaling down and up keeps the claim.
    c.kubectl(&["scale", "statefulset", "db", "--replicas=1"]);
    c.eventually("db-1 gone", WAIT, || gone(&c, "pod", "db-1"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(claim_of(&c, "data-db-1").expect("kept")["metadata"]["uid"], uid1);
    c.kubectl(&["scale", "statefulset", "db", "--replicas=2"]);
    c.kubectl(&["rollout", "status", "statefulset/db", "--timeout=120s"]);
    assert_eq!(claim_of(&c, "data-db-1").expect("kept")["metadata"]["uid"], uid1, "same claim");

    // whenScaled: Delete: the claims of removed ordinals go with their pods.
    c.kubectl(&[
        "patch",
        "statefulset",
        "db",
        "-p",
        r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete"}}}"#,
    ]);
    c.kubectl(&["scale", "statefulset", "db", "--replicas=1"]);
    c.eventually("claim of db-1 deleted", WAIT, || claim_of(&c, "data-db-1").is_none());
    assert!(claim_of(&c, "data-db-0").is_some(), "the live ordinal keeps its claim");
    c.eventually("its volume deleted too (reclaim Delete)", WAIT, || gone(&c, "pv", &pv1));
    assert_eq!(phase(&c, "pv", &pv0), "Bound");
}

#[test]
fn a_statefulset_ordinal_reads_back_its_own_data_after_its_pod_is_replaced_and_after_scaling() {
    let c = Cluster::with_agent(&[]);
    node_of(&c);
    // Each start increments a counter kept on the ordinal's volume and logs it.
    let set = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: counter}
spec:
  replicas: 2
  selector: {matchLabels: {app: counter}}
  serviceName: counter
  template:
    metadata: {labels: {app: counter}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "n=$(cat /var/lib/counter/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /var/lib/counter/n; echo start=$n; exec sleep 3600"]
        volumeMounts: [{name: data, mountPath: /var/lib/counter}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 16Mi}}
"#;
    c.kubectl_in(&["apply", "-f", "-"], set);
    c.kubectl(&["rollout", "status", "statefulset/counter", "--timeout=120s"]);
    let logged = |pod: &str, want: &str| {
        c.eventually(&format!("{pod} logs {want}"), WAIT, || {
            let out = c.kubectl_output(&["logs", pod]);
            String::from_utf8_lossy(&out.stdout).contains(want)
        })
    };
    logged("counter-0", "start=1");
    logged("counter-1", "start=1");
    // The counter lives in the claim's directory on the node, not at the host's mountPath.
    assert!(
        !std::path::Path::new("/var/lib/counter/n").exists(),
        "nothing written on the host path"
    );
    let pv0 = claim_of(&c, "data-counter-0").expect("claim")["spec"]["volumeName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let dir0 =
        c.get_json(&["pv", &pv0])["spec"]["hostPath"]["path"].as_str().unwrap_or("").to_string();
    assert_eq!(std::fs::read_to_string(format!("{dir0}/n")).unwrap_or_default().trim(), "1");

    // The replacement of a deleted pod mounts the same volume and reads the counter back.
    // Not `--wait`, for the reason given in the test above.
    c.kubectl(&["delete", "pod", "counter-0", "--wait=false"]);
    logged("counter-0", "start=2");
    // Scaling down and up keeps each ordinal's data.
    c.kubectl(&["scale", "statefulset", "counter", "--replicas=1"]);
    c.eventually("counter-1 gone", WAIT, || gone(&c, "pod", "counter-1"));
    c.kubectl(&["scale", "statefulset", "counter", "--replicas=2"]);
    c.kubectl(&["rollout", "status", "statefulset/counter", "--timeout=120s"]);
    logged("counter-1", "start=2");
    assert_eq!(std::fs::read_to_string(format!("{dir0}/n")).unwrap_or_default().trim(), "2");
}
