//! The everyday kubectl commands against a fresh cluster.

use crate::harness::{run_bounded, Cluster};
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

const DEPLOY_V1: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.25
        env:
        - {name: MODE, value: blue}
        - {name: DEBUG, value: "1"}
        ports:
        - containerPort: 80
      - name: sidecar
        image: busybox:1.36
        command: [sleep, "3600"]
"#;

#[test]
fn apply_creates_then_a_changed_apply_patches_by_merge_key() {
    let c = Cluster::start();
    let f = c.file("deploy.yaml", DEPLOY_V1);
    let out = c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    // Change the first container's image, drop an env var, change replicas; keep the sidecar.
    let v2 = DEPLOY_V1
        .replace("nginx:1.25", "nginx:1.26")
        .replace("        - {name: DEBUG, value: \"1\"}\n", "")
        .replace("replicas: 2", "replicas: 3");
    let f2 = c.file("deploy-v2.yaml", &v2);
    let out = c.kubectl(&["apply", "-f", f2.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let d = c.get_json(&["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    let containers = d["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "{containers:?}");
    assert_eq!(containers[0]["image"], "nginx:1.26");
    assert_eq!(containers[0]["env"].as_array().unwrap().len(), 1);
    assert_eq!(containers[0]["env"][0]["name"], "MODE");
    assert_eq!(containers[1]["name"], "sidecar");
    assert_eq!(d["metadata"]["generation"], 2);
    // Defaults as Kubernetes sets them.
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(containers[0]["imagePullPolicy"], "IfNotPresent");
    // Applying the same file again changes nothing.
    let out = c.kubectl(&["apply", "-f", f2.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
}

#[test]
fn apply_k_builds_a_kustomization() {
    let c = Cluster::start();
    c.file("kust/deploy.yaml", DEPLOY_V1);
    c.file(
        "kust/kustomization.yaml",
        "namePrefix: shop-\nlabels:\n- pairs:\n    team: checkout\nresources:\n- deploy.yaml\nconfigMapGenerator:\n- name: settings\n  literals:\n  - COLOR=green\n",
    );
    let dir = c.dir.path().join("kust");
    let out = c.kubectl(&["apply", "-k", dir.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/shop-web created"), "{out}");
    let cms = c.get_json(&["configmaps", "-l", "team=checkout"]);
    let items = cms["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0]["metadata"]["name"].as_str().unwrap().starts_with("shop-settings-"));
    assert_eq!(items[0]["data"]["COLOR"], "green");
}

#[test]
fn get_in_every_output_format_with_selectors() {
    let c = Cluster::start();
    c.kubectl(&["create", "namespace", "shop"]);
    c.kubectl(&["create", "configmap", "a", "--from-literal=k=v1", "-n", "shop"]);
    c.kubectl(&["create", "configmap", "b", "--from-literal=k=v2", "--from-literal=x=y"]);
    c.kubectl(&["label", "configmap", "b", "color=red"]);
    let table = c.kubectl(&["get", "configmaps"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("DATA") && header.contains("AGE"),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("b ") && l.contains(" 2 ")), "{table}");
    let all = c.kubectl(&["get", "configmaps", "-A"]);
    assert!(all.lines().next().unwrap().starts_with("NAMESPACE"), "{all}");
    assert!(all.contains("shop") && all.contains("default"), "{all}");
    let wide = c.kubectl(&["get", "namespaces", "-o", "wide"]);
    assert!(wide.contains("shop") && wide.contains("Active"), "{wide}");
    let yaml = c.kubectl(&["get", "configmap", "b", "-o", "yaml"]);
    let v: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(v["data"]["x"], "y");
    assert_eq!(v["metadata"]["labels"]["color"], "red");
    let jp = c.kubectl(&["get", "configmap", "b", "-o", "jsonpath={.data.k}"]);
    assert_eq!(jp, "v2");
    let labelled = c.kubectl(&["get", "configmaps", "-l", "color=red", "-o", "name"]);
    assert_eq!(labelled.trim(), "configmap/b");
    let by_field = c.kubectl(&[
        "get",
        "configmaps",
        "-A",
        "--field-selector",
        "metadata.namespace=shop",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "configmap/a");
    let none = c.kubectl(&["get", "configmaps", "-l", "color=blue"]);
    assert!(none.trim().is_empty(), "{none}");
    let pods = c.kubectl_output(&["get", "pods"]);
    assert!(
        String::from_utf8_lossy(&pods.stderr).contains("No resources found in default namespace.")
    );
    let chunks = c.kubectl(&["get", "configmaps", "-A", "--chunk-size=1", "-o", "name"]);
    assert!(chunks.lines().count() >= 2, "{chunks}");
}

#[test]
fn get_watch_sees_a_change() {
    let c = Cluster::start();
    c.kubectl(&["create", "configmap", "watched", "--from-literal=k=1"]);
    let mut child = c
        .kubectl_cmd(&["get", "configmaps", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut acc = String::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            acc.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(acc.clone());
        }
    });
    // Wait for the initial listing before changing anything.
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("watched") && std::time::Instant::now() < deadline {
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(200)) {
            seen = s;
        }
    }
    c.kubectl(&["create", "configmap", "newcomer", "--from-literal=a=b"]);
    c.kubectl(&["delete", "configmap", "watched"]);
    // kubectl's table writer flushes a row when the next event comes; send one more.
    c.kubectl(&["create", "configmap", "trailer"]);
    let done = |s: &str| {
        s.contains("trailer")
            && s.lines().any(|l| l.starts_with("DELETED") && l.contains("watched"))
    };
    while !done(&seen) && std::time::Instant::now() < deadline {
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(200)) {
            seen = s;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("ADDED") && seen.contains("newcomer"), "{seen}");
    assert!(seen.lines().any(|l| l.contains("DELETED") && l.contains("watched")), "{seen}");
}

/// A list without `limit` is read from the store in chunks (of 1,024) and streamed: across
/// chunk boundaries, and with a selector that only the last chunk matches, it must say what the
/// paged list says.
#[test]
fn a_whole_list_streamed_in_chunks_matches_the_paged_one() {
    let c = Cluster::start();
    c.kubectl(&["create", "namespace", "many"]);
    // In batches of 300, side by side: one kubectl creating 2,100 objects one by one can
    // outlast the harness's 60 s bound when the whole suite runs.
    let batch = |from: usize| {
        let mut docs = String::new();
        for i in from..from + 300 {
            let late = if i >= 2050 { "yes" } else { "no" };
            docs.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:04}\n  \
                 labels: {{third: \"{}\", late: \"{late}\"}}\ndata: {{num: \"{i}\"}}\n",
                if i % 3 == 0 { "yes" } else { "no" }
            ));
        }
        c.kubectl_in(&["create", "-n", "many", "-f", "-"], &docs);
    };
    std::thread::scope(|s| {
        for from in (0..2100).step_by(300) {
            s.spawn(move || batch(from));
        }
    });
    let names = |list: &serde_json::Value| -> Vec<String> {
        let items = list["items"].as_array().expect("items");
        items.iter().map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string()).collect()
    };
    let raw = |path: &str| -> serde_json::Value {
        serde_json::from_str(&c.kubectl(&["get", "--raw", path])).expect("a list")
    };
    let whole = raw("/api/v1/namespaces/many/configmaps");
    assert_eq!(whole["kind"], "ConfigMapList");
    assert!(whole["metadata"]["resourceVersion"].as_str().is_some_and(|rv| !rv.is_empty()));
    assert!(whole["metadata"].get("continue").is_none(), "{}", whole["metadata"]);
    let paged = c.get_json(&["configmaps", "-n", "many", "--chunk-size=100"]);
    let mut want = names(&paged);
    want.sort();
    assert_eq!(names(&whole), want, "the streamed list is in key order and complete");
    assert_eq!(want.iter().filter(|n| n.starts_with("cm-")).count(), 2100);
    assert!(whole["items"][5]["data"]["num"] == "5", "{}", whole["items"][5]);
    let thirds = raw("/api/v1/namespaces/many/configmaps?labelSelector=third%3Dyes");
    assert_eq!(names(&thirds).len(), 700);
    let late = raw("/api/v1/configmaps?labelSelector=late%3Dyes");
    let want: Vec<String> = (2050..2100).map(|i| format!("cm-{i:04}")).collect();
    assert_eq!(names(&late), want);
    let none = raw("/api/v1/namespaces/many/configmaps?labelSelector=late%3Dmaybe");
    assert_eq!(none["items"], serde_json::json!([]), "{none}");
}

#[test]
fn describe_label_annotate_scale() {
    let c = Cluster::start();
    let f = c.file("deploy.yaml", DEPLOY_V1);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    c.kubectl(&["label", "deployment", "web", "release=stable"]);
    c.kubectl(&["annotate", "deployment", "web", "owner=team-a"]);
    c.kubectl(&["scale", "deployment", "web", "--replicas=5"]);
    let d = c.get_json(&["deployment", "web"]);
    assert_eq!(d["metadata"]["labels"]["release"], "stable");
    assert_eq!(d["metadata"]["annotations"]["owner"], "team-a");
    assert_eq!(d["spec"]["replicas"], 5);
    c.kubectl(&["label", "deployment", "web", "release-"]);
    let d = c.get_json(&["deployment", "web"]);
    assert!(d["metadata"]["labels"].get("release").is_none());
    let desc = c.kubectl(&["describe", "deployment", "web"]);
    assert!(desc.contains("Name:") && desc.contains("web"), "{desc}");
    assert!(desc.contains("Replicas:") && desc.contains("5 desired"), "{desc}");
    assert!(desc.contains("nginx:1.25"), "{desc}");
    let cm = c.kubectl(&["create", "configmap", "cfg", "--from-literal=a=1", "--from-literal=b=2"]);
    assert!(cm.contains("configmap/cfg created"), "{cm}");
    let desc = c.kubectl(&["describe", "configmap", "cfg"]);
    assert!(desc.contains("a:") || desc.contains("a\n"), "{desc}");
}

#[test]
fn explain_and_api_resources() {
    let c = Cluster::start();
    let ex = c.kubectl(&["explain", "deployment.spec"]);
    assert!(ex.contains("KIND:") && ex.contains("Deployment"), "{ex}");
    assert!(ex.contains("replicas") && ex.contains("template"), "{ex}");
    let ex = c.kubectl(&["explain", "pods.spec.containers.image"]);
    assert!(ex.contains("image") && ex.contains("<string>"), "{ex}");
    let res = c.kubectl(&["api-resources"]);
    for needle in [
        "deployments",
        "deploy",
        "apps/v1",
        "configmaps",
        "cm",
        "customresourcedefinitions",
        "leases",
    ] {
        assert!(res.contains(needle), "api-resources lacks {needle}:\n{res}");
    }
    let versions = c.kubectl(&["api-versions"]);
    assert!(versions.contains("apps/v1") && versions.contains("batch/v1"), "{versions}");
    let v = c.kubectl(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "33");
}

#[test]
fn restart_brings_every_object_back() {
    let mut c = Cluster::start();
    c.kubectl(&["create", "namespace", "keep"]);
    c.kubectl(&["create", "configmap", "survivor", "-n", "keep", "--from-literal=k=v"]);
    let before = c.get_json(&["configmap", "survivor", "-n", "keep"]);
    let status = c.interrupt();
    assert!(status.success(), "kumo exited with {status}");
    c.restart();
    let after = c.get_json(&["configmap", "survivor", "-n", "keep"]);
    assert_eq!(before["metadata"]["uid"], after["metadata"]["uid"]);
    assert_eq!(after["data"]["k"], "v");
    // A watch from before the restart is too old now: 410 Gone, so clients relist.
    let old_rv = "2";
    let raw = c.kubectl(&["get", "--raw", &format!("/api/v1/namespaces/keep/configmaps?watch=true&resourceVersion={old_rv}&timeoutSeconds=1")]);
    assert!(
        raw.contains("\"ERROR\"")
            && raw.contains("\"code\":410")
            && raw.contains("too old resource version"),
        "{raw}"
    );
    // Writes continue with higher revisions.
    c.kubectl(&["create", "configmap", "later", "-n", "keep"]);
    let later = c.get_json(&["configmap", "later", "-n", "keep"]);
    let rv = |v: &serde_json::Value| {
        v["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap()
    };
    assert!(rv(&later) > rv(&after));
}

#[test]
fn old_kubectl_within_skew_works() {
    let c = Cluster::start();
    let bin = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";
    if !std::path::Path::new(bin).exists() {
        eprintln!("skipping: {bin} is not installed");
        return;
    }
    let f = c.file("deploy.yaml", DEPLOY_V1);
    let out = run_bounded(
        c.kubectl_bin_cmd(bin, &["apply", "-f", f.to_str().unwrap()]),
        None,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_bounded(
        c.kubectl_bin_cmd(bin, &["get", "deploy", "web"]),
        None,
        Duration::from_secs(60),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"));
}

#[test]
fn auth_whoami_and_can_i_answer_from_the_credentials() {
    let c = Cluster::start();
    let who = c.kubectl(&["auth", "whoami"]);
    assert!(who.contains("kumo-admin") && who.contains("system:masters"), "{who}");
    let yes = c.kubectl(&["auth", "can-i", "create", "deployments"]);
    assert_eq!(yes.trim(), "yes");
    let list = c.kubectl(&["auth", "can-i", "--list"]);
    assert!(list.contains("*.*"), "{list}");
}

#[test]
fn daily_commands_diff_dry_run_wait_replace_patch_columns() {
    let c = Cluster::start();
    let f = c.file("deploy.yaml", DEPLOY_V1);
    c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    let changed = c.file("deploy-4.yaml", &DEPLOY_V1.replace("replicas: 2", "replicas: 4"));
    // kubectl diff exits 1 when there are differences, and stores nothing.
    let out = c.kubectl_output(&["diff", "-f", changed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("-  replicas: 2") && diff.contains("+  replicas: 4"), "{diff}");
    let out = c.kubectl(&["apply", "-f", changed.to_str().unwrap(), "--dry-run=server"]);
    assert!(out.contains("(server dry run)"), "{out}");
    assert_eq!(c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");
    c.kubectl(&["wait", "--for=jsonpath={.spec.replicas}=2", "deploy/web", "--timeout=10s"]);
    let uid_before = c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"]);
    let out = c.kubectl(&["replace", "--force", "-f", changed.to_str().unwrap()]);
    assert!(out.contains("replaced"), "{out}");
    let uid_after = c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"]);
    assert_ne!(uid_before, uid_after);
    c.kubectl(&["patch", "deploy", "web", "--type", "merge", "-p", r#"{"spec":{"replicas":5}}"#]);
    c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.27"}]}}}}"#,
    ]);
    let d = c.get_json(&["deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][1]["name"], "sidecar");
    c.kubectl(&["create", "configmap", "b-second"]);
    c.kubectl(&["create", "configmap", "a-first"]);
    let cols = c.kubectl(&[
        "get",
        "cm",
        "-o",
        "custom-columns=NAME:.metadata.name,NS:.metadata.namespace",
        "--sort-by=.metadata.name",
    ]);
    let names: Vec<&str> =
        cols.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "{cols}");
    let rec = c.kubectl(&["explain", "deployment.spec.strategy", "--recursive"]);
    assert!(rec.contains("rollingUpdate") && rec.contains("maxSurge"), "{rec}");
}
