//! The docker runtime against the real Docker engine of this machine.
//!
//! The engine has no registry to pull from, so the tests first import a tiny image made of the
//! host's static busybox (`apt-get install -y busybox-static`) under a tag of their own. Every
//! test runs its containers under a fresh pod UID and removes everything with that UID when it
//! ends, failed or not. Without a Docker socket the tests say so and pass.

use futures::StreamExt;
use kumo_agent::runtime::docker::DockerRuntime;
use kumo_agent::runtime::{
    ContainerConfig, ContainerId, ContainerState, Limits, LogOptions, PodRef, PortMapping, Runtime,
    RuntimeError, SandboxConfig, SandboxId,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The test image: busybox, `PATH=/bin`, and a cmd to tell the image's cmd from ours.
const IMAGE: &str = "kumo-agent-test-busybox:1";

/// How long any one test may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

fn docker_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// The runtime, or `None` (and a message) when this machine has no Docker engine.
async fn runtime() -> Option<DockerRuntime> {
    let socket = docker_socket();
    if !socket.exists() {
        eprintln!(
            "SKIPPED: no Docker socket at {}; the docker runtime is not tested",
            socket.display()
        );
        return None;
    }
    static IMAGE_READY: OnceLock<()> = OnceLock::new();
    IMAGE_READY.get_or_init(import_test_image);
    Some(DockerRuntime::connect().await.expect("connect to the Docker engine"))
}

/// Import the test image unless the engine has it already (`scripts/test-image`, shared with
/// the end-to-end tests).
fn import_test_image() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-image");
    let out = Command::new(script).arg(IMAGE).output().expect("run scripts/test-image");
    assert!(out.status.success(), "scripts/test-image: {}", String::from_utf8_lossy(&out.stderr));
}

/// Removes every container of one pod when dropped, so a failed test leaves nothing behind.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let script = format!(
            "docker ps -aq --filter label=io.kumo.pod.uid={} | xargs -r docker rm -f >/dev/null",
            self.0
        );
        let _ = Command::new("sh").args(["-c", &script]).status();
    }
}

/// A fresh pod, and its cleanup.
fn new_pod(name: &str) -> (PodRef, Cleanup) {
    let uid = uuid::Uuid::new_v4().to_string();
    let pod = PodRef { namespace: "kumo-agent-test".into(), name: name.into(), uid: uid.clone() };
    (pod, Cleanup(uid))
}

async fn make_sandbox(rt: &DockerRuntime, pod: &PodRef, hostname: &str) -> SandboxId {
    let config = SandboxConfig { pod: pod.clone(), hostname: hostname.into(), ports: vec![] };
    rt.create_sandbox(&config).await.expect("create sandbox")
}

fn container(pod: &PodRef, name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        pod: pod.clone(),
        name: name.into(),
        attempt: 0,
        image: IMAGE.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        args: vec![],
        env: vec![],
        working_dir: None,
        limits: Limits::default(),
        log_path: PathBuf::from("/nonexistent/unused.log"),
        ports: vec![],
        mounts: vec![],
    }
}

async fn logs(rt: &DockerRuntime, id: &ContainerId, options: LogOptions) -> String {
    let chunks: Vec<_> = rt.logs(id, &options).await.expect("logs").collect().await;
    let mut text = Vec::new();
    for chunk in chunks {
        text.extend_from_slice(&chunk.expect("log chunk"));
    }
    String::from_utf8(text).expect("utf-8 log")
}

/// How many containers of `pod` the runtime lists.
async fn mine(rt: &DockerRuntime, pod: &PodRef) -> usize {
    rt.list_containers().await.expect("list containers").iter().filter(|c| &c.pod == pod).count()
}

/// Run `body` within the time bound.
async fn bounded(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, body).await.expect("test timed out");
}

#[tokio::test]
async fn a_failing_container_reports_its_exit_and_its_logs() {
    let Some(rt) = runtime().await else { return };
    let (pod, _cleanup) = new_pod("exit3");
    bounded(async {
        assert_eq!(rt.name(), "docker");
        assert!(!rt.version().await.unwrap().is_empty());
        assert!(rt.ensure_image(IMAGE).await.unwrap().starts_with("docker://sha256:"));

        let sandbox = make_sandbox(&rt, &pod, "exit3").await;
        let script = "echo one; echo two >&2; sleep 1; echo three; exit 3";
        let id = rt
            .start_container(&sandbox, &container(&pod, "main", &["sh", "-c", script]))
            .await
            .unwrap();
        let exit = rt.wait(&id).await.unwrap();
        assert_eq!((exit.exit_code, exit.reason.as_str(), exit.signal), (3, "Error", None));
        // The engine stamps `StartedAt` a little after the process began: less than the
        // script's one second passes between the two stamps.
        assert!(
            exit.finished_at >= exit.started_at + chrono::Duration::milliseconds(500),
            "{exit:?}"
        );
        assert_eq!(rt.container_state(&id).await.unwrap(), ContainerState::Exited(exit.clone()));

        let all = logs(&rt, &id, LogOptions::default()).await;
        let mut lines: Vec<&str> = all.lines().collect();
        lines.sort();
        assert_eq!(lines, ["one", "three", "two"], "{all:?}");

        let stamped = logs(&rt, &id, LogOptions { timestamps: true, ..Default::default() }).await;
        for line in stamped.lines() {
            let (time, content) = line.split_once(' ').expect("timestamped line");
            let time = chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339 time");
            assert!(["one", "two", "three"].contains(&content), "{line:?}");
            assert!(time.timestamp() >= exit.started_at.timestamp());
            // Kubernetes prints Go's RFC3339Nano: no trailing zeros in the fraction.
            let written = line.split_once(' ').unwrap().0;
            assert!(
                !written.contains('.') || !written.trim_end_matches('Z').ends_with('0'),
                "{line:?}"
            );
        }
        assert_eq!(stamped.lines().count(), 3);

        assert_eq!(
            logs(&rt, &id, LogOptions { tail_lines: Some(1), ..Default::default() }).await,
            "three\n"
        );
        assert_eq!(
            logs(&rt, &id, LogOptions { limit_bytes: Some(2), ..Default::default() }).await.len(),
            2
        );
        let future = chrono::Utc::now() + chrono::Duration::hours(1);
        assert_eq!(
            logs(&rt, &id, LogOptions { since: Some(future), ..Default::default() }).await,
            ""
        );
        // `since` at sub-second precision: only the line written a second after the others.
        let three_at = stamped
            .lines()
            .find(|line| line.ends_with(" three"))
            .and_then(|line| {
                chrono::DateTime::parse_from_rfc3339(line.split_once(' ').unwrap().0).ok()
            })
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            logs(&rt, &id, LogOptions { since: Some(three_at), ..Default::default() }).await,
            "three\n"
        );

        let listed = rt.list_containers().await.unwrap();
        let found = listed.iter().find(|c| c.id == id).expect("listed by its labels");
        assert_eq!((&found.pod, found.name.as_str(), found.attempt), (&pod, "main", 0));
        assert!(matches!(&found.state, ContainerState::Exited(e) if e.exit_code == 3));
    })
    .await;
}

#[tokio::test]
async fn a_running_container_execs_streams_and_stops_within_its_grace() {
    let Some(rt) = runtime().await else { return };
    let (pod, _cleanup) = new_pod("sleeper");
    bounded(async {
        let sandbox = make_sandbox(&rt, &pod, "pod-host").await;
        let mut config = container(&pod, "main", &["sh", "-c", "echo ready; exec sleep 300"]);
        config.env = vec![("FOO".into(), "bar".into())];
        config.ports = vec![PortMapping {
            name: None,
            container_port: 80,
            host_port: 31234,
            protocol: "TCP".into(),
        }];
        let id = rt.start_container(&sandbox, &config).await.unwrap();
        assert!(matches!(rt.container_state(&id).await.unwrap(), ContainerState::Running { .. }));

        let mut follow =
            rt.logs(&id, &LogOptions { follow: true, ..Default::default() }).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), follow.next())
            .await
            .expect("a first line");
        assert_eq!(&first.unwrap().unwrap()[..], b"ready\n");

        let script =
            ["sh", "-c", "echo $PORT $FOO $(hostname); echo err >&2; exit 4"].map(String::from);
        let result = rt.exec(&id, &script, Duration::from_secs(10)).await.unwrap();
        assert_eq!(result.exit_code, 4);
        // stdout and stderr come through separate pipes, in no set order.
        let mut lines: Vec<&str> = result.output.lines().collect();
        lines.sort();
        assert_eq!(lines, ["31234 bar pod-host", "err"], "{:?}", result.output);

        let long = ["sh", "-c", "head -c 10000 /dev/zero | tr '\\0' a"].map(String::from);
        let result = rt.exec(&id, &long, Duration::from_secs(10)).await.unwrap();
        assert_eq!((result.exit_code, result.output.len()), (0, 4096));

        let slow = ["sleep", "10"].map(String::from);
        match rt.exec(&id, &slow, Duration::from_secs(1)).await {
            Err(RuntimeError::Other(message)) => {
                assert!(message.contains("timed out"), "{message}")
            }
            other => panic!("expected a time-out, got {other:?}"),
        }

        let stats = rt.stats(&id).await.unwrap();
        assert!(stats.cpu_usage_core_nanos > 0, "{stats:?}");
        assert!(stats.memory_working_set_bytes > 0, "{stats:?}");

        // `sleep` as PID 1 ignores SIGTERM, so only the kill after the grace ends it.
        let began = Instant::now();
        rt.stop_container(&id, Duration::from_millis(1000)).await.unwrap();
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(15), "{took:?}");
        let exit = rt.wait(&id).await.unwrap();
        assert_eq!((exit.exit_code, exit.reason.as_str()), (137, "Error"));

        let rest = tokio::time::timeout(Duration::from_secs(10), follow.collect::<Vec<_>>()).await;
        assert!(rest.expect("the followed log ends with the container").is_empty());

        rt.stop_container(&id, Duration::from_secs(1)).await.expect("stopping a stopped container");
        rt.remove_container(&id).await.unwrap();
        assert_eq!(rt.container_state(&id).await.unwrap(), ContainerState::Unknown);
        rt.remove_container(&id).await.expect("removing a removed container");
        assert!(matches!(rt.wait(&id).await, Err(RuntimeError::NotFound(_))));
    })
    .await;
}

#[tokio::test]
async fn a_missing_image_is_err_image_pull() {
    let Some(rt) = runtime().await else { return };
    let (pod, _cleanup) = new_pod("missing");
    bounded(async {
        match rt.ensure_image("kumo-agent-test-no-such-image").await {
            Err(RuntimeError::ImageNotFound(message)) => assert!(
                message.starts_with(
                    "image \"kumo-agent-test-no-such-image:latest\" not present locally"
                ),
                "{message}"
            ),
            other => panic!("expected ImageNotFound, got {other:?}"),
        }
        let sandbox = make_sandbox(&rt, &pod, "missing").await;
        let mut config = container(&pod, "main", &["true"]);
        config.image = "kumo-agent-test-no-such-image:v1".into();
        assert!(matches!(
            rt.start_container(&sandbox, &config).await,
            Err(RuntimeError::ImageNotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let Some(rt) = runtime().await else { return };
    let (pod, _cleanup) = new_pod("oom");
    bounded(async {
        let sandbox = make_sandbox(&rt, &pod, "oom").await;
        let hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived";
        let mut config = container(&pod, "hog", &["sh", "-c", hog]);
        config.limits.memory_bytes = Some(20 << 20);
        let id = rt.start_container(&sandbox, &config).await.unwrap();
        let exit = rt.wait(&id).await.unwrap();
        assert_eq!(exit.reason, "OOMKilled", "{exit:?}");
        assert_ne!(exit.exit_code, 0);
    })
    .await;
}

#[tokio::test]
async fn command_args_workdir_and_start_errors() {
    let Some(rt) = runtime().await else { return };
    let (pod, _cleanup) = new_pod("commands");
    bounded(async {
        let sandbox = make_sandbox(&rt, &pod, "commands").await;
        let run = |name: &str, command: &[&str], args: &[&str]| {
            let mut config = container(&pod, name, command);
            config.args = args.iter().map(|s| s.to_string()).collect();
            config
        };
        let cases = [
            (run("image-cmd", &[], &[]), "image-cmd\n"),
            (run("command-only", &["echo", "x"], &[]), "x\n"),
            (run("args-only", &[], &["echo", "y"]), "y\n"),
            (run("both", &["echo"], &["z"]), "z\n"),
        ];
        for (config, expected) in cases {
            let id = rt.start_container(&sandbox, &config).await.unwrap();
            assert_eq!(rt.wait(&id).await.unwrap().reason, "Completed");
            assert_eq!(logs(&rt, &id, LogOptions::default()).await, expected, "{}", config.name);
        }

        let mut config = container(&pod, "workdir", &["pwd"]);
        config.working_dir = Some("/bin".into());
        let id = rt.start_container(&sandbox, &config).await.unwrap();
        rt.wait(&id).await.unwrap();
        assert_eq!(logs(&rt, &id, LogOptions::default()).await, "/bin\n");

        let before = mine(&rt, &pod).await;
        let config = container(&pod, "broken", &["/no/such/binary"]);
        match rt.start_container(&sandbox, &config).await {
            Err(RuntimeError::Start(message)) => {
                assert!(message.contains("no such file"), "{message}")
            }
            other => panic!("expected a start error, got {other:?}"),
        }
        assert_eq!(mine(&rt, &pod).await, before, "the failed container is removed");

        // The same attempt again (an agent that died after create) replaces the leftover.
        let again =
            rt.start_container(&sandbox, &container(&pod, "workdir", &["true"])).await.unwrap();
        assert_ne!(again, id);
        assert_eq!(rt.container_state(&id).await.unwrap(), ContainerState::Unknown);
    })
    .await;
}

#[tokio::test]
async fn remove_sandbox_removes_every_container_of_the_pod() {
    let Some(rt) = runtime().await else { return };
    let (pod, _cleanup) = new_pod("doomed");
    let (other, _other_cleanup) = new_pod("bystander");
    bounded(async {
        let sandbox = make_sandbox(&rt, &pod, "doomed").await;
        let mut ids = Vec::new();
        for attempt in 0..2 {
            let mut config = container(&pod, "main", &["sleep", "300"]);
            config.attempt = attempt;
            ids.push(rt.start_container(&sandbox, &config).await.unwrap());
        }
        let other_sandbox = make_sandbox(&rt, &other, "bystander").await;
        let survivor = rt
            .start_container(&other_sandbox, &container(&other, "main", &["sleep", "300"]))
            .await
            .unwrap();

        let listed = rt.list_containers().await.unwrap();
        let mine: Vec<u32> = listed.iter().filter(|c| c.pod == pod).map(|c| c.attempt).collect();
        assert_eq!(mine.len(), 2);
        assert!(mine.contains(&0) && mine.contains(&1));

        rt.remove_sandbox(&pod).await.unwrap();
        let listed = rt.list_containers().await.unwrap();
        assert!(!listed.iter().any(|c| c.pod == pod));
        for id in &ids {
            assert_eq!(rt.container_state(id).await.unwrap(), ContainerState::Unknown);
        }
        assert!(matches!(
            rt.container_state(&survivor).await.unwrap(),
            ContainerState::Running { .. }
        ));
        rt.remove_sandbox(&pod).await.expect("removing a removed sandbox");
    })
    .await;
}
