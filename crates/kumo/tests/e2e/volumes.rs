//! Pod volumes end to end: real processes (and Docker containers) read ConfigMaps, Secrets and
//! the downward API as files at their `mountPath`, share emptyDirs, and see updates applied
//! with the real kubectl, all at once; bad mounts are refused or held as kubelet holds them.

use crate::harness::Cluster;
use std::path::Path;
use std::time::Duration;

fn logs(c: &Cluster, pod: &str, container: &str) -> String {
    let out = c.kubectl_output(&["logs", pod, "-c", container]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_log(c: &Cluster, pod: &str, container: &str, needle: &str, secs: u64) {
    c.eventually(&format!("{pod}/{container} logs {needle:?}"), Duration::from_secs(secs), || {
        logs(c, pod, container).contains(needle)
    });
}

/// No mount of the cluster's data dir is left in the host's mount table.
fn assert_no_mounts_under(dir: &Path) {
    let table = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let left: Vec<&str> = table
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|p| Path::new(p).starts_with(&dir)))
        .collect();
    assert!(left.is_empty(), "mounts left behind: {left:?}");
}

/// Writes `a` and `b` with the same value `v`.
fn config_map(name: &str, v: u32) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: \"{v}\", b: \"{v}\", app.conf: \"v={v}\"}}\n"
    )
}

#[test]
fn a_config_map_is_read_at_its_mount_path_and_updates_arrive_whole() {
    let c = Cluster::with_agent(&[]);
    let mount = format!("/etc/kumo-e2e-{}", std::process::id());
    let sub = format!("/opt/kumo-e2e-sub-{}/app.conf", std::process::id());
    assert!(!Path::new(&mount).exists());
    c.kubectl_in(&["apply", "-f", "-"], &config_map("app", 1));
    // The reader resolves `..data` once per round, as a program that opens the directory
    // would, and reports a round whose two keys differ.
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  containers:
  - name: r
    image: busybox
    command: ["sh", "-c"]
    args:
    - |
      echo sub=$(cat {sub})
      touch {mount}/new 2>/dev/null && echo WRITABLE || echo read-only
      last=""
      while true; do
        out=$(cd {mount}/..data 2>/dev/null && a=$(cat a) && b=$(cat b) && echo "$a $b") || continue
        set -- $out
        [ "$1" = "$2" ] || echo "MIXED $1 $2"
        [ "$1" = "$last" ] || echo "seen $1"
        last=$1
        sleep 0.02
      done
    # The probe runs where the process runs: it sees the volume too.
    readinessProbe:
      exec: {{command: ["cat", "{mount}/a"]}}
      periodSeconds: 1
    volumeMounts:
    - {{name: cfg, mountPath: {mount}}}
    - {{name: cfg, mountPath: {sub}, subPath: app.conf}}
  volumes:
  - {{name: cfg, configMap: {{name: app}}}}
"#
    );
    c.kubectl_in(&["apply", "-f", "-"], &manifest);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/reader", "--timeout=60s"]);
    wait_log(&c, "reader", "r", "seen 1", 30);
    let out = logs(&c, "reader", "r");
    assert!(out.contains("sub=v=1"), "{out}");
    assert!(out.contains("read-only"), "a ConfigMap volume is read-only: {out}");
    // The process sees /etc/kumo-e2e-*, the host does not.
    assert!(!Path::new(&mount).exists(), "{mount} was created on the host");
    assert!(!Path::new(&sub).exists(), "{sub} was created on the host");
    for v in 2..=8 {
        c.kubectl_in(&["apply", "-f", "-"], &config_map("app", v));
        wait_log(&c, "reader", "r", &format!("seen {v}"), 30);
    }
    let out = logs(&c, "reader", "r");
    assert!(!out.contains("MIXED"), "a reader saw two versions at once:\n{out}");
    c.kubectl(&["delete", "pod", "reader", "--timeout=60s"]);
    assert!(!Path::new(&mount).exists() && !Path::new(&sub).exists());
    assert_no_mounts_under(&c.data_dir());
    let pods = c.data_dir().join("agent/pods");
    let left: Vec<_> = std::fs::read_dir(&pods)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the pod's files are left in {}: {left:?}", pods.display());
}

#[test]
fn secret_files_take_their_mode_and_an_optional_secret_may_be_missing() {
    let c = Cluster::with_agent(&[]);
    c.kubectl(&["create", "secret", "generic", "creds", "--from-literal=password=s3cret"]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: secrets}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "echo mode=$(stat -L -c %a /etc/kumo-e2e-creds/password) pw=$(cat /etc/kumo-e2e-creds/password) opt=$(ls /etc/kumo-e2e-opt | wc -l)"]
    volumeMounts:
    - {name: creds, mountPath: /etc/kumo-e2e-creds}
    - {name: opt, mountPath: /etc/kumo-e2e-opt}
  volumes:
  - {name: creds, secret: {secretName: creds, defaultMode: 256}}
  - {name: opt, secret: {secretName: not-there, optional: true}}
"#;
    c.kubectl_in(&["apply", "-f", "-"], manifest);
    c.eventually("pod secrets Succeeded", Duration::from_secs(60), || {
        c.get_json(&["pod", "secrets"])["status"]["phase"] == "Succeeded"
    });
    // The optional volume exists and is empty (apart from the writer's `..` entries).
    assert_eq!(logs(&c, "secrets", "c").trim(), "mode=400 pw=s3cret opt=0");
}

#[test]
fn a_missing_config_map_holds_the_pod_until_it_is_created() {
    let c = Cluster::with_agent(&[]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: patient}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "cat /etc/kumo-e2e-late/greeting; echo; exec sleep 600"]
    volumeMounts: [{name: cfg, mountPath: /etc/kumo-e2e-late}]
  volumes: [{name: cfg, configMap: {name: late}}]
"#;
    c.kubectl_in(&["apply", "-f", "-"], manifest);
    let message = "MountVolume.SetUp failed for volume \"cfg\" : configmap \"late\" not found";
    c.eventually("a FailedMount event", Duration::from_secs(30), || {
        let events = c.get_json(&["events", "--field-selector", "involvedObject.name=patient"]);
        events["items"].as_array().into_iter().flatten().any(|e| {
            e["reason"] == "FailedMount" && e["type"] == "Warning" && e["message"] == message
        })
    });
    let pod = c.get_json(&["pod", "patient"]);
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["state"]["waiting"]["reason"], "ContainerCreating", "{status}");
    assert_eq!(pod["status"]["phase"], "Pending");
    let shown = c.kubectl(&["get", "pod", "patient"]);
    assert!(shown.contains("ContainerCreating"), "{shown}");
    c.kubectl(&["create", "configmap", "late", "--from-literal=greeting=finally"]);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/patient", "--timeout=30s"]);
    wait_log(&c, "patient", "c", "finally", 20);
}

#[test]
fn containers_of_a_pod_share_empty_dirs_and_memory_ones_are_bounded() {
    let c = Cluster::with_agent(&[]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: share}
spec:
  containers:
  - name: writer
    image: busybox
    command: ["sh", "-c"]
    args:
    - |
      echo hello-from-writer > /scratch/msg
      echo in-memory > /mem/msg
      dd if=/dev/zero of=/mem/big bs=1M count=4 2>/dev/null && echo unbounded || echo full
      exec sleep 600
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: mem, mountPath: /mem}
  - name: reader
    image: busybox
    command: ["sh", "-c"]
    args:
    - |
      until [ -s /shared/msg ] && [ -s /shared-mem/msg ]; do sleep 0.1; done
      echo got $(cat /shared/msg) $(cat /shared-mem/msg)
      exec sleep 600
    volumeMounts:
    - {name: scratch, mountPath: /shared}
    - {name: mem, mountPath: /shared-mem}
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
"#;
    c.kubectl_in(&["apply", "-f", "-"], manifest);
    wait_log(&c, "share", "reader", "got hello-from-writer in-memory", 60);
    wait_log(&c, "share", "writer", "full", 20);
    for p in ["/scratch", "/mem", "/shared", "/shared-mem"] {
        assert!(!Path::new(p).exists(), "{p} was created on the host");
    }
    c.kubectl(&["delete", "pod", "share", "--timeout=60s"]);
    assert_no_mounts_under(&c.data_dir());
}

#[test]
fn a_downward_api_file_holds_the_labels_and_follows_them() {
    let c = Cluster::with_agent(&[]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: labelled, labels: {app: shop}}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c"]
    args:
    - |
      last=""
      while true; do
        now=$(cat /etc/kumo-e2e-podinfo/labels | tr '\n' ' ')
        [ "$now" = "$last" ] || echo "labels: $now"
        last=$now
        sleep 0.1
      done
    volumeMounts: [{name: podinfo, mountPath: /etc/kumo-e2e-podinfo}]
  volumes:
  - name: podinfo
    downwardAPI:
      items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
"#;
    c.kubectl_in(&["apply", "-f", "-"], manifest);
    wait_log(&c, "labelled", "c", "labels: app=\"shop\"", 60);
    c.kubectl(&["label", "pod", "labelled", "tier=gold"]);
    wait_log(&c, "labelled", "c", "labels: app=\"shop\" tier=\"gold\"", 30);
}

#[test]
fn mounts_that_escape_their_volume_or_name_none_are_refused() {
    let c = Cluster::start();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: escape}
spec:
  containers:
  - name: c
    image: busybox
    volumeMounts:
    - {name: data, mountPath: /data, subPath: ../../etc}
    - {name: nothing, mountPath: /other}
  volumes: [{name: data, emptyDir: {}}]
"#;
    let out = c.kubectl_stdin(&["apply", "-f", "-"], manifest);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("The Pod \"escape\" is invalid"), "{stderr}");
    assert!(
        stderr.contains(
            "spec.containers[0].volumeMounts.subPath: Invalid value: \"../../etc\": must not contain '..'"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("spec.containers[0].volumeMounts[1].name: Not found: \"nothing\""),
        "{stderr}"
    );
    // The same through the API directly: 422 with the causes.
    let out = c.kubectl_stdin(&["create", "-f", "-", "-v=6"], manifest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("422 Unprocessable Entity"), "{stderr}");
}

/// Removes the Docker containers whose names mention `marker`, even when the test fails.
struct DockerCleanup(String);

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let Ok(out) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("name={}", self.0)])
            .output()
        else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = std::process::Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}

#[test]
fn volumes_work_with_the_docker_runtime() {
    if !Path::new("/var/run/docker.sock").exists() {
        eprintln!("SKIPPED: no Docker engine at /var/run/docker.sock");
        return;
    }
    let image = "kumo-e2e-busybox:1";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-image");
    let out = std::process::Command::new(script).arg(image).output().expect("scripts/test-image");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let marker = format!("dvol{}", std::process::id());
    let _cleanup = DockerCleanup(format!("_{marker}_"));
    let c = Cluster::with_agent(&["--runtime", "docker"]);
    c.kubectl_in(&["apply", "-f", "-"], &config_map("app", 1));
    c.kubectl(&["create", "secret", "generic", "creds", "--from-literal=password=s3cret"]);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {marker}}}
spec:
  containers:
  - name: writer
    image: {image}
    command: ["sh", "-c"]
    args:
    - |
      echo mode=$(busybox stat -L -c %a /etc/creds/password) pw=$(cat /etc/creds/password)
      echo from-writer > /scratch/msg
      last=""
      while true; do
        out=$(cd /etc/app/..data 2>/dev/null && a=$(cat a) && b=$(cat b) && echo "$a $b") || continue
        set -- $out
        [ "$1" = "$2" ] || echo "MIXED $1 $2"
        [ "$1" = "$last" ] || echo "seen $1"
        last=$1
        sleep 0.05
      done
    volumeMounts:
    - {{name: cfg, mountPath: /etc/app}}
    - {{name: creds, mountPath: /etc/creds}}
    - {{name: scratch, mountPath: /scratch}}
  - name: reader
    image: {image}
    command: ["sh", "-c", "until [ -s /shared/msg ]; do sleep 0.1; done; echo got $(cat /shared/msg); exec sleep 600"]
    volumeMounts: [{{name: scratch, mountPath: /shared}}]
  volumes:
  - {{name: cfg, configMap: {{name: app}}}}
  - {{name: creds, secret: {{secretName: creds, defaultMode: 0400}}}}
  - {{name: scratch, emptyDir: {{}}}}
"#
    );
    c.kubectl_in(&["apply", "-f", "-"], &manifest);
    wait_log(&c, &marker, "writer", "seen 1", 90);
    assert!(logs(&c, &marker, "writer").contains("mode=400 pw=s3cret"));
    wait_log(&c, &marker, "reader", "got from-writer", 30);
    for v in 2..=4 {
        c.kubectl_in(&["apply", "-f", "-"], &config_map("app", v));
        wait_log(&c, &marker, "writer", &format!("seen {v}"), 30);
    }
    assert!(!logs(&c, &marker, "writer").contains("MIXED"));
    c.kubectl(&["delete", "pod", &marker, "--timeout=60s"]);
}

#[test]
fn a_claim_waits_until_bound_then_mounts_its_volumes_node_directory() {
    let c = Cluster::with_agent(&[]);
    let host_dir = c.dir.path().join("pv-data");
    std::fs::create_dir_all(&host_dir).expect("pv dir");
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: stateful}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c"]
    args:
    - |
      echo kept > /kumo-e2e-data/hello
      touch /kumo-e2e-ro/x 2>/dev/null && echo WRITABLE || echo read-only
      exec sleep 600
    volumeMounts:
    - {name: data, mountPath: /kumo-e2e-data}
    - {name: same, mountPath: /kumo-e2e-ro}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: claim}}
  - {name: same, persistentVolumeClaim: {claimName: claim, readOnly: true}}
"#;
    c.kubectl_in(&["apply", "-f", "-"], manifest);
    // The scheduler holds a pod whose claim is missing (upstream's VolumeBinding plugin), so
    // the missing claim is reported as FailedScheduling; an agent given such a pod anyway
    // (a pod created with `nodeName`) reports FailedMount.
    c.eventually("the missing claim is named", Duration::from_secs(30), || {
        let events = c.get_json(&["events", "--field-selector", "involvedObject.name=stateful"]);
        events["items"].as_array().into_iter().flatten().any(|e| {
            (e["reason"] == "FailedScheduling" || e["reason"] == "FailedMount")
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("persistentvolumeclaim \"claim\" not found"))
        })
    });
    // A pod bound to the node directly (no scheduler) reaches the agent, which waits for the claim.
    c.eventually("a node", Duration::from_secs(30), || {
        !c.get_json(&["nodes"])["items"].as_array().is_none_or(|n| n.is_empty())
    });
    let node =
        c.get_json(&["nodes"])["items"][0]["metadata"]["name"].as_str().unwrap_or("").to_string();
    let direct = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: direct}}\nspec:\n  nodeName: {node}\n  \
         containers: [{{name: c, image: busybox, command: [sleep, '600'], volumeMounts: \
         [{{name: d, mountPath: /kumo-e2e-direct}}]}}]\n  volumes: [{{name: d, \
         persistentVolumeClaim: {{claimName: absent}}}}]\n"
    );
    c.kubectl_in(&["apply", "-f", "-"], &direct);
    c.eventually("FailedMount names the missing claim", Duration::from_secs(30), || {
        let events = c.get_json(&["events", "--field-selector", "involvedObject.name=direct"]);
        events["items"].as_array().into_iter().flatten().any(|e| {
            e["reason"] == "FailedMount"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("persistentvolumeclaim \"absent\" not found"))
        })
    });
    assert_eq!(c.get_json(&["pod", "direct"])["status"]["phase"], "Pending");
    c.kubectl(&["delete", "pod", "direct", "--timeout=60s"]);
    let volumes = format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-e2e}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: {{path: {}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: claim}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: pv-e2e
  resources: {{requests: {{storage: 1Gi}}}}
"#,
        host_dir.display()
    );
    c.kubectl_in(&["apply", "-f", "-"], &volumes);
    // The PV binder binds the pre-bound pair; the scheduler then places the pod.
    c.eventually("claim bound", Duration::from_secs(30), || {
        c.get_json(&["pvc", "claim"])["status"]["phase"] == "Bound"
    });
    c.kubectl(&["wait", "--for=condition=Ready", "pod/stateful", "--timeout=60s"]);
    c.eventually("the file on the PV's node directory", Duration::from_secs(20), || {
        std::fs::read_to_string(host_dir.join("hello")).is_ok_and(|s| s == "kept\n")
    });
    wait_log(&c, "stateful", "c", "read-only", 20);
    c.kubectl(&["delete", "pod", "stateful", "--timeout=60s"]);
    // The agent never deletes a claim's data.
    assert_eq!(std::fs::read_to_string(host_dir.join("hello")).expect("kept"), "kept\n");
    assert!(!Path::new("/kumo-e2e-data").exists() && !Path::new("/kumo-e2e-ro").exists());
}

/// The unprivileged path of the process runtime: `kumo shim`, run as `nobody`, mounts the
/// volumes in a user namespace of its own, read-only where asked, at paths the host does not
/// have (under `/etc`, and a new top-level directory), and the host never sees them.
#[test]
fn the_shim_mounts_volumes_without_root_in_a_user_namespace() {
    use std::os::unix::fs::PermissionsExt;
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.contains("\t0\t")));
    if !root || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("SKIPPED: needs root (to become nobody) and setpriv");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, vol) = (tmp.path().join("c"), tmp.path().join("vol"));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::create_dir_all(&vol).expect("vol");
    std::fs::write(vol.join("f"), "hello-userns").expect("f");
    let id = std::process::id();
    let (etc, top) = (format!("/etc/kumo-userns-{id}"), format!("/kumo-userns-{id}"));
    let script = format!(
        "cat {etc}/f; echo; touch {etc}/g 2>/dev/null && echo WRITABLE || echo read-only; \
         id -u; touch {top}/h && echo top-writable"
    );
    let spec = serde_json::json!({
        "argv": ["/bin/sh", "-c", script],
        "env": [["PATH", "/usr/bin:/bin"]],
        "working_dir": null,
        "log_path": dir.join("log"),
        "log_max_bytes": 1_000_000,
        "cgroups": {"version": "", "dirs": []},
        "mounts": [
            {"host_path": vol, "container_path": etc, "read_only": true},
            {"host_path": vol, "container_path": top, "read_only": false}
        ]
    });
    std::fs::write(dir.join("spec.json"), spec.to_string()).expect("spec");
    for p in [tmp.path(), &dir, &vol, &vol.join("f")] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).expect("chown");
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_kumo")])
        .arg("shim")
        .arg(&dir)
        .current_dir("/")
        .output()
        .expect("shim");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exit = std::fs::read_to_string(dir.join("exit.json")).expect("exit.json");
    assert!(exit.contains("\"Completed\""), "{exit}");
    let log = std::fs::read_to_string(dir.join("log")).expect("log");
    // CRI log lines: `<time> <stream> <P|F> <text>`; a partial (P) line continues in the next.
    let mut lines: Vec<String> = Vec::new();
    let mut partial = String::new();
    for line in log.lines() {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        partial.push_str(fields.get(3).copied().unwrap_or(""));
        if fields.get(2) != Some(&"P") {
            lines.push(std::mem::take(&mut partial));
        }
    }
    assert_eq!(lines, ["hello-userns", "read-only", "65534", "top-writable"], "{log}");
    assert!(vol.join("h").exists(), "a write through the volume reaches its directory");
    assert!(!Path::new(&etc).exists() && !Path::new(&top).exists());
}
