//! The node agent end to end: `kumo up` with its agent and the process runtime runs real
//! processes; the real kubectl sees them as on a real cluster (status, restarts, probes, logs,
//! events, deletion), and the workloads survive a SIGKILL of kumo.

use crate::harness::Cluster;
use std::time::{Duration, Instant};

fn pod_json(c: &Cluster, name: &str) -> serde_json::Value {
    c.get_json(&["pod", name])
}

fn container_status(c: &Cluster, name: &str) -> serde_json::Value {
    pod_json(c, name)["status"]["containerStatuses"][0].clone()
}

#[test]
fn a_web_server_becomes_ready_and_its_log_is_served() {
    let c = Cluster::with_agent(&[]);
    let node = c.kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    c.kubectl(&["wait", "--for=condition=Ready", &format!("node/{node}"), "--timeout=30s"]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    image: python:3
    command: ["python3", "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"]
    ports: [{name: http, containerPort: 8000}]
    readinessProbe:
      httpGet: {path: /, port: http}
      periodSeconds: 1
"#;
    c.kubectl_in(&["apply", "-f", "-"], manifest);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/web", "--timeout=60s"]);
    let pod = pod_json(&c, "web");
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["podIP"], "127.0.0.1");
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["ready"], true);
    assert_eq!(status["started"], true);
    assert_eq!(status["restartCount"], 0);
    assert!(status["state"]["running"]["startedAt"].is_string(), "{status}");
    // The host port the agent chose is on the pod, and the server really listens there.
    let ports: serde_json::Value = serde_json::from_str(
        pod["metadata"]["annotations"]["kumo.dev/host-ports"].as_str().expect("host ports"),
    )
    .expect("json");
    let port = ports["web/8000"].as_u64().expect("port of web/8000");
    std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("server listens on host port");
    // The readiness probe's requests are in the server's access log, read through the API.
    let mut logs = String::new();
    c.eventually("probe requests in kubectl logs", Duration::from_secs(20), || {
        logs = c.kubectl(&["logs", "web"]);
        logs.contains("GET / HTTP/1.1\" 200")
    });
    let tail = c.kubectl(&["logs", "web", "--tail=1", "--timestamps"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("20"), "timestamps first: {tail}");
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=web"]);
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "{reason} event missing:\n{events}");
    }
    let wide = c.kubectl(&["get", "pod", "web", "-o", "wide"]);
    assert!(wide.contains(&node), "{wide}");
    // A Service in front of it lists the port that really answers.
    c.kubectl(&["expose", "pod", "web", "--port=80", "--target-port=http", "--selector=run=web"]);
    c.kubectl(&["label", "pod", "web", "run=web"]);
    c.eventually("endpoints with the host port", Duration::from_secs(20), || {
        let eps = c.get_json(&["endpoints", "web"]);
        eps["subsets"][0]["ports"][0]["port"].as_u64() == Some(port)
            && eps["subsets"][0]["addresses"][0]["ip"] == "127.0.0.1"
    });
    let top = c.kubectl(&["top", "pod", "web"]);
    assert!(top.contains("web"), "{top}");
}

#[test]
fn crash_loops_back_off_and_never_fails_with_the_exit_code() {
    let c = Cluster::with_agent(&[]);
    c.kubectl(&["run", "crash", "--image=busybox", "--", "sh", "-c", "echo boom-$RANDOM; exit 1"]);
    c.kubectl(&["run", "once", "--image=busybox", "--restart=Never", "--", "sh", "-c", "exit 3"]);
    let mut seen_backoff = false;
    c.eventually("two restarts and CrashLoopBackOff", Duration::from_secs(60), || {
        let s = container_status(&c, "crash");
        seen_backoff |= s["state"]["waiting"]["reason"] == "CrashLoopBackOff";
        seen_backoff && s["restartCount"].as_u64().unwrap_or(0) >= 2
    });
    let s = container_status(&c, "crash");
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 1, "{s}");
    assert_eq!(s["lastState"]["terminated"]["reason"], "Error", "{s}");
    let previous = c.kubectl(&["logs", "crash", "--previous"]);
    assert!(previous.starts_with("boom-"), "{previous}");
    c.eventually("pod once Failed", Duration::from_secs(30), || {
        pod_json(&c, "once")["status"]["phase"] == "Failed"
    });
    let s = container_status(&c, "once");
    assert_eq!(s["state"]["terminated"]["exitCode"], 3, "{s}");
    assert_eq!(s["state"]["terminated"]["reason"], "Error", "{s}");
    assert_eq!(s["restartCount"], 0);
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=crash"]);
    assert!(events.contains("BackOff"), "{events}");
    // A command that does not exist waits with a reason that says so; nothing is stuck.
    c.kubectl(&["run", "nocmd", "--image=busybox", "--", "no-such-command-kumo"]);
    c.eventually("RunContainerError", Duration::from_secs(30), || {
        let s = container_status(&c, "nocmd");
        s["state"]["waiting"]["reason"] == "RunContainerError"
            && s["state"]["waiting"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("executable file not found"))
    });
    c.kubectl(&["delete", "pod", "nocmd", "crash", "--timeout=30s"]);
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let c = Cluster::with_agent(&[]);
    let flag = c.dir.path().join("healthy");
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: live}}
spec:
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "touch {flag}; sleep 2; rm -f {flag}; sleep 600"]
    livenessProbe:
      exec: {{command: ["cat", "{flag}"]}}
      periodSeconds: 1
      failureThreshold: 2
"#,
        flag = flag.display()
    );
    c.kubectl_in(&["apply", "-f", "-"], &manifest);
    c.eventually("a restart by the liveness probe", Duration::from_secs(60), || {
        container_status(&c, "live")["restartCount"].as_u64().unwrap_or(0) >= 1
    });
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=live"]);
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert!(events.contains("failed liveness probe, will be restarted"), "{events}");
}

#[test]
fn config_maps_secrets_and_the_downward_api_reach_the_environment() {
    let c = Cluster::with_agent(&[]);
    c.kubectl(&["create", "configmap", "cfg", "--from-literal=greeting=hello"]);
    c.kubectl(&["create", "secret", "generic", "sec", "--from-literal=password=s3cret"]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: envy, labels: {team: blue}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "echo G=$GREETING P=$PASSWORD N=$POD_NAME T=$TEAM M=$MEM A=$(ALIAS) K=$KUBERNETES_SERVICE_HOST"]
    envFrom: [{configMapRef: {name: cfg}}]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: sec, key: password}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: TEAM, valueFrom: {fieldRef: {fieldPath: "metadata.labels['team']"}}}
    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: ALIAS, value: "$(GREETING)-again"}
    resources: {limits: {memory: 64Mi}}
"#;
    c.kubectl_in(&["apply", "-f", "-"], manifest);
    c.eventually("pod envy Succeeded", Duration::from_secs(30), || {
        pod_json(&c, "envy")["status"]["phase"] == "Succeeded"
    });
    let out = c.kubectl(&["logs", "envy"]);
    assert_eq!(
        out.trim(),
        "G=hello P=s3cret N=envy T=blue M=64 A=hello-again K=127.64.0.1",
        "environment as the process saw it"
    );
    // A missing ConfigMap is a config error that says which one.
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sleep", "600"]
    envFrom: [{configMapRef: {name: nowhere}}]
"#;
    c.kubectl_in(&["apply", "-f", "-"], manifest);
    c.eventually("CreateContainerConfigError", Duration::from_secs(30), || {
        let s = container_status(&c, "missing");
        s["state"]["waiting"]["reason"] == "CreateContainerConfigError"
            && s["state"]["waiting"]["message"] == "configmap \"nowhere\" not found"
    });
    // ... and the pod starts once the ConfigMap exists.
    c.kubectl(&["create", "configmap", "nowhere", "--from-literal=x=1"]);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/missing", "--timeout=30s"]);
}

#[test]
fn delete_sends_sigterm_waits_the_grace_period_then_kills() {
    let c = Cluster::with_agent(&[]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: c
    image: python:3
    command:
    - python3
    - -c
    - |
      import signal, time
      signal.signal(signal.SIGTERM, lambda s, f: print("got SIGTERM", flush=True))
      print("started", flush=True)
      time.sleep(600)
"#;
    c.kubectl_in(&["apply", "-f", "-"], manifest);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/stubborn", "--timeout=30s"]);
    c.eventually("the handler is installed", Duration::from_secs(20), || {
        c.kubectl(&["logs", "stubborn"]).contains("started")
    });
    let container_dir = only_container_dir(&c);
    let log_path = c.data_dir().join("agent/pods");
    let t = Instant::now();
    c.kubectl(&["delete", "pod", "stubborn", "--timeout=30s"]);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(2900), "deleted before the grace period: {took:?}");
    assert!(took < Duration::from_secs(15), "deletion took {took:?}");
    let out = c.kubectl_output(&["get", "pod", "stubborn"]);
    assert!(!out.status.success(), "the pod is gone");
    // The process got SIGTERM first (its log said so), then SIGKILL: its exit is recorded
    // and nothing of it is left on the node.
    assert!(!container_dir.exists(), "container state removed: {container_dir:?}");
    let leftover = std::fs::read_dir(&log_path).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftover, 0, "pod logs removed with the pod");
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=stubborn"]);
    assert!(events.contains("Killing"), "{events}");
}

fn only_container_dir(c: &Cluster) -> std::path::PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(c.data_dir().join("agent/containers"))
        .expect("containers dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn workload_pid(dir: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("pid")).expect("pid file");
    serde_json::from_str::<serde_json::Value>(&text).expect("json")["pid"].as_u64().expect("pid")
}

#[test]
fn workloads_survive_a_sigkill_of_kumo_and_are_adopted_again() {
    let mut c = Cluster::with_agent(&[]);
    let starts = c.dir.path().join("starts");
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: survivor}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "echo started >> {starts}; exec sleep 600"]
"#,
        starts = starts.display()
    );
    c.kubectl_in(&["apply", "-f", "-"], &manifest);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/survivor", "--timeout=30s"]);
    let before = container_status(&c, "survivor")["containerID"].clone();
    let dir = only_container_dir(&c);
    let pid = workload_pid(&dir);
    c.kill();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "workload outlived kumo");
    c.restart();
    // The new agent finds the container: same ID, no restart, one process only.
    std::thread::sleep(Duration::from_secs(3));
    let s = container_status(&c, "survivor");
    assert_eq!(s["containerID"], before, "{s}");
    assert_eq!(s["restartCount"], 0, "{s}");
    assert_eq!(s["ready"], true, "{s}");
    assert_eq!(std::fs::read_to_string(&starts).expect("starts").lines().count(), 1);
    assert_eq!(only_container_dir(&c), dir);
    // It is really adopted: deleting the pod stops that very process.
    c.kubectl(&["delete", "pod", "survivor", "--timeout=30s"]);
    c.eventually("the adopted process is gone", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let writable = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/cgroup.controllers"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
        && nix_is_root();
    if !writable {
        eprintln!("SKIPPED: cgroups are not writable here (need root and cgroup v1 memory or v2)");
        return;
    }
    let c = Cluster::with_agent(&[]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: python:3
    command: ["python3", "-c", "x = bytearray(300 * 1024 * 1024); import time; time.sleep(60)"]
    resources: {limits: {memory: 50Mi}}
"#;
    c.kubectl_in(&["apply", "-f", "-"], manifest);
    c.eventually("OOMKilled", Duration::from_secs(30), || {
        container_status(&c, "hog")["state"]["terminated"]["reason"] == "OOMKilled"
    });
    let s = container_status(&c, "hog");
    assert_eq!(s["state"]["terminated"]["exitCode"], 137, "{s}");
    let get = c.kubectl(&["get", "pod", "hog"]);
    assert!(get.contains("OOMKilled"), "{get}");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.to_string()))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn init_containers_run_in_order_before_the_containers() {
    let c = Cluster::with_agent(&[]);
    let trace = c.dir.path().join("trace");
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: staged}}
spec:
  initContainers:
  - {{name: one, image: busybox, command: ["sh", "-c", "echo one >> {t}"]}}
  - {{name: two, image: busybox, command: ["sh", "-c", "sleep 1; echo two >> {t}"]}}
  containers:
  - {{name: main, image: busybox, command: ["sh", "-c", "echo main >> {t}; exec sleep 600"]}}
"#,
        t = trace.display()
    );
    c.kubectl_in(&["apply", "-f", "-"], &manifest);
    let get = c.kubectl(&["get", "pod", "staged"]);
    assert!(get.contains("Init:") || get.contains("Running") || get.contains("Pending"), "{get}");
    c.kubectl(&["wait", "--for=condition=Ready", "pod/staged", "--timeout=30s"]);
    assert_eq!(std::fs::read_to_string(&trace).expect("trace"), "one\ntwo\nmain\n");
    let pod = pod_json(&c, "staged");
    for s in pod["status"]["initContainerStatuses"].as_array().expect("init statuses") {
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{s}");
    }
    let conditions = pod["status"]["conditions"].as_array().expect("conditions");
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        let cond = conditions.iter().find(|x| x["type"] == kind).expect(kind);
        assert_eq!(cond["status"], "True", "{cond}");
    }
}

/// Removes the Docker containers whose names mention `marker` (the runtime names containers
/// `kumo_<container>_<pod>_…`), even when the test fails.
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
fn the_docker_runtime_runs_a_locally_built_image() {
    if !std::path::Path::new("/var/run/docker.sock").exists() {
        eprintln!("SKIPPED: no Docker engine at /var/run/docker.sock");
        return;
    }
    let image = "kumo-e2e-busybox:1";
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-image");
    let out = std::process::Command::new(script).arg(image).output().expect("scripts/test-image");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let marker = format!("dkr{}", std::process::id());
    let _cleanup = DockerCleanup(format!("_{marker}-"));
    let c = Cluster::with_agent(&["--runtime", "docker"]);
    let (hello, ghost) = (format!("{marker}-hello"), format!("{marker}-ghost"));
    c.kubectl(&[
        "run",
        &hello,
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo hello from docker; exit 4",
    ]);
    c.eventually("the docker pod Failed", Duration::from_secs(60), || {
        pod_json(&c, &hello)["status"]["phase"] == "Failed"
    });
    let s = container_status(&c, &hello);
    assert_eq!(s["state"]["terminated"]["exitCode"], 4, "{s}");
    assert!(s["containerID"].as_str().is_some_and(|id| id.starts_with("docker://")), "{s}");
    assert_eq!(c.kubectl(&["logs", &hello]), "hello from docker\n");
    let node =
        c.get_json(&["nodes"])["items"][0]["status"]["nodeInfo"]["containerRuntimeVersion"].clone();
    assert!(node.as_str().is_some_and(|v| v.starts_with("docker://")), "{node}");
    // No registry: an image that is not in the engine is reported as Kubernetes does.
    c.kubectl(&["run", &ghost, "--image=kumo-no-such-image:404"]);
    c.eventually("ErrImagePull then ImagePullBackOff", Duration::from_secs(30), || {
        let reason = container_status(&c, &ghost)["state"]["waiting"]["reason"].clone();
        reason == "ImagePullBackOff"
    });
    c.kubectl(&["delete", "pod", &hello, &ghost, "--timeout=30s"]);
}

/// A `kumo agent` process, killed on drop.
struct AgentProcess(std::process::Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_separate_agent_joins_with_a_token_and_runs_pods() {
    let c = Cluster::start();
    let pki = c.data_dir().join("pki");
    let token = std::fs::read_to_string(pki.join("token")).expect("token");
    let log = std::fs::File::create(c.dir.path().join("agent.log")).expect("agent log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["agent", "--server", &format!("https://{}", c.addr), "--token", token.trim()])
        .arg("--ca-file")
        .arg(pki.join("ca.crt"))
        .arg("--data-dir")
        // Where the harness looks for leftover workloads.
        .arg(c.data_dir().join("agent"))
        .args(["--node-name", "joiner", "--node-ip", "127.0.0.1", "--node-label", "zone=z1"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn kumo agent");
    let _agent = AgentProcess(child);
    c.kubectl(&["wait", "--for=create", "node/joiner", "--timeout=30s"]);
    c.kubectl(&["wait", "--for=condition=Ready", "node/joiner", "--timeout=30s"]);
    let node = c.get_json(&["node", "joiner"]);
    assert_eq!(node["metadata"]["labels"]["zone"], "z1");
    assert!(node["status"]["capacity"]["cpu"].is_string(), "{node}");
    let lease = c.get_json(&["lease", "joiner", "-n", "kube-node-lease"]);
    assert_eq!(lease["spec"]["holderIdentity"], "joiner");
    c.kubectl(&[
        "run",
        "joined",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo on joiner; exec sleep 600",
    ]);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/joined", "--timeout=30s"]);
    assert_eq!(c.get_json(&["pod", "joined"])["spec"]["nodeName"], "joiner");
    c.eventually("the log through the API", Duration::from_secs(10), || {
        c.kubectl(&["logs", "joined"]) == "on joiner\n"
    });
    c.kubectl(&["delete", "pod", "joined", "--timeout=30s"]);
}

#[test]
fn logs_follow_streams_until_the_container_ends() {
    let c = Cluster::with_agent(&[]);
    c.kubectl(&[
        "run",
        "ticker",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line-$i; sleep 1; done",
    ]);
    c.eventually("the first line", Duration::from_secs(20), || {
        c.kubectl_output(&["logs", "ticker"]).stdout.starts_with(b"line-1")
    });
    let t = Instant::now();
    let out = crate::harness::run_bounded(
        c.kubectl_cmd(&["logs", "-f", "ticker"]),
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line-1\nline-2\nline-3\n");
    // It waited for lines still to come, and ended with the container.
    assert!(t.elapsed() >= Duration::from_millis(900), "{:?}", t.elapsed());
}

#[test]
fn a_native_sidecar_starts_first_runs_beside_and_stops_after_the_containers() {
    let c = Cluster::with_agent(&[]);
    let trace = c.dir.path().join("trace");
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: sided}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  initContainers:
  - {{name: side, image: busybox, restartPolicy: Always, command: ["sh", "-c", "echo side >> {t}; exec sleep 600"]}}
  - {{name: after, image: busybox, command: ["sh", "-c", "echo after >> {t}"]}}
  containers:
  - {{name: main, image: busybox, command: ["sh", "-c", "echo main >> {t}; sleep 2"]}}
"#,
        t = trace.display()
    );
    c.kubectl_in(&["apply", "-f", "-"], &manifest);
    c.eventually("the sidecar running beside main", Duration::from_secs(30), || {
        let pod = pod_json(&c, "sided");
        pod["status"]["phase"] == "Running"
            && pod["status"]["initContainerStatuses"][0]["state"]["running"].is_object()
    });
    c.eventually("pod sided Succeeded", Duration::from_secs(30), || {
        pod_json(&c, "sided")["status"]["phase"] == "Succeeded"
    });
    assert_eq!(std::fs::read_to_string(&trace).expect("trace"), "side\nafter\nmain\n");
    // With the containers done, the sidecar was stopped.
    c.eventually("the sidecar stopped", Duration::from_secs(15), || {
        pod_json(&c, "sided")["status"]["initContainerStatuses"][0]["state"]["terminated"]
            .is_object()
    });
}
