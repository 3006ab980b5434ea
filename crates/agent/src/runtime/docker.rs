//! The `docker` runtime: containers of the local Docker engine (`bollard`).
//!
//! [`DockerRuntime`] turns the [`Runtime`] calls of the pod worker into Docker Engine API calls
//! over the local socket. It holds no Kubernetes policy and no state of its own: everything it
//! needs to find a pod's containers again (after an agent restart) is in labels on the
//! containers themselves.
//!
//! # The sandbox is the host's network
//!
//! kumo's first pod networking mode is `host`: pods share the node's network, each declared
//! `containerPort` gets a free host port (passed to the program as `PORT`) and the pod IP is the
//! node IP. So a pod's containers already share one network namespace, the node's, and this
//! runtime needs no pause container and no sandbox image: every container runs with
//! `network_mode: host`, and [`Runtime::create_sandbox`] creates nothing in the engine. The
//! sandbox ID it returns carries the pod UID and the pod's hostname, so that
//! [`Runtime::start_container`] can give each container the pod's hostname (each container has
//! its own UTS namespace with the same name in it) without the runtime remembering anything.
//! The alternatives (a long-running pause container built on demand from a static binary, or
//! the first container owning the namespace) would buy network isolation that the `host` mode
//! does not want, at the price of an image to build and a container whose death takes the pod
//! down.
//!
//! `PORT` is set to the host port of the container's first declared port unless the
//! environment already sets it (the worker's value wins).
//!
//! # Images
//!
//! kumo has no registry and pulls nothing: [`Runtime::ensure_image`] only inspects the local
//! image (`busybox` means `busybox:latest`) and reports a missing one as
//! [`RuntimeError::ImageNotFound`], which the worker shows as `ErrImagePull`.
//!
//! # Volumes
//!
//! The worker prepares every volume on the node (see `crate::volumes`); this runtime bind-mounts
//! each one at its `mountPath`, read-only where asked.
//!
//! # Labels
//!
//! Every container carries `io.kumo.pod.namespace`, `io.kumo.pod.name`, `io.kumo.pod.uid`,
//! `io.kumo.container.name` and `io.kumo.container.attempt`, and is named
//! `kumo_<container>_<pod>_<namespace>_<uid8>_<attempt>` so `docker ps` reads like the pod.

use super::{
    ContainerConfig, ContainerId, ContainerInfo, ContainerState, ContainerStats, ExecResult, Exit,
    LogOptions, LogStream, PodRef, Runtime, RuntimeError, SandboxConfig, SandboxId,
};
use async_trait::async_trait;
use bollard::errors::Error as EngineError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerState as EngineState, ContainerStateStatusEnum, ExecConfig,
    HostConfig, HostConfigLogConfig, Mount as EngineMount, MountType, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StatsOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Datelike, Utc};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const LABEL_NAMESPACE: &str = "io.kumo.pod.namespace";
const LABEL_POD: &str = "io.kumo.pod.name";
const LABEL_UID: &str = "io.kumo.pod.uid";
const LABEL_CONTAINER: &str = "io.kumo.container.name";
const LABEL_ATTEMPT: &str = "io.kumo.container.attempt";

/// Exec output kept for the caller (a probe's message, an error's detail).
const EXEC_OUTPUT_LIMIT: usize = 4096;

/// How long after an exit the engine may still learn that it was an OOM kill.
const OOM_SETTLE: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// Timeout of ordinary engine requests (bollard's default is two minutes, far longer than
/// anything but a stop should take).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Timeout of requests that block by design (`wait`, `logs --follow`). bollard's timeout only
/// covers the arrival of the response head, which the engine sends at once, but a bound is
/// kept so that an engine that never answers does not hang a worker forever.
const BLOCKING_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The local Docker engine as a kumo container runtime.
pub struct DockerRuntime {
    /// Client for ordinary requests.
    docker: Docker,
    /// Same connection, for requests whose answer may take as long as a container runs.
    blocking: Docker,
}

impl DockerRuntime {
    /// Connect to the local engine: `DOCKER_HOST` when it is a `unix://` address, else
    /// `/var/run/docker.sock`. Fails when the engine does not answer.
    pub async fn connect() -> Result<DockerRuntime, RuntimeError> {
        let docker = Docker::connect_with_unix_defaults()
            .map_err(|e| RuntimeError::Other(format!("cannot reach the Docker engine: {e}")))?;
        DockerRuntime::negotiate(docker).await
    }

    /// Connect to the engine listening on the Unix socket at `socket`.
    pub async fn connect_with(socket: &Path) -> Result<DockerRuntime, RuntimeError> {
        let path = socket.to_string_lossy();
        let docker = Docker::connect_with_unix(
            &path,
            REQUEST_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| {
            RuntimeError::Other(format!("cannot reach the Docker engine at {path}: {e}"))
        })?;
        DockerRuntime::negotiate(docker).await
    }

    /// Agree on the API version: bollard speaks a newer one than many engines in use
    /// (Debian's 20.10 speaks 1.41), and an engine refuses a client newer than itself.
    async fn negotiate(docker: Docker) -> Result<DockerRuntime, RuntimeError> {
        let docker = docker
            .with_timeout(REQUEST_TIMEOUT)
            .negotiate_version()
            .await
            .map_err(|e| RuntimeError::Other(format!("cannot reach the Docker engine: {e}")))?;
        let blocking = docker.clone().with_timeout(BLOCKING_TIMEOUT);
        Ok(DockerRuntime { docker, blocking })
    }

    /// Inspect a container; `None` when the engine does not know it.
    async fn inspect(
        &self,
        id: &str,
    ) -> Result<Option<bollard::models::ContainerInspectResponse>, RuntimeError> {
        match self.docker.inspect_container(id, None::<InspectContainerOptions>).await {
            Ok(found) => Ok(Some(found)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    /// The state of a container, [`ContainerState::Unknown`] when the engine does not know it.
    ///
    /// The engine (20.10 at least) records `OOMKilled` when the kernel's OOM event reaches it,
    /// which can be a moment after the exit itself: a container killed (137) under a memory
    /// limit in the last [`OOM_SETTLE`] is read again until the flag shows or that time passed.
    async fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let mut tries = 0;
        loop {
            let Some(found) = self.inspect(id).await? else { return Ok(ContainerState::Unknown) };
            let state = state_of(found.state.as_ref());
            let limited = found.host_config.as_ref().and_then(|host| host.memory).unwrap_or(0) > 0;
            let pending = match &state {
                ContainerState::Exited(exit) => {
                    limited
                        && exit.exit_code == 137
                        && exit.reason == "Error"
                        && Utc::now() < exit.finished_at + OOM_SETTLE
                }
                _ => false,
            };
            tries += 1;
            if !pending || tries > 40 {
                return Ok(state);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Containers of kumo, all of them or those of one pod.
    async fn list(
        &self,
        pod_uid: Option<&str>,
    ) -> Result<Vec<bollard::models::ContainerSummary>, RuntimeError> {
        let label = match pod_uid {
            Some(uid) => format!("{LABEL_UID}={uid}"),
            None => LABEL_UID.to_string(),
        };
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_string(), vec![label])])),
            ..Default::default()
        };
        self.docker.list_containers(Some(options)).await.map_err(engine)
    }

    /// Force-remove a container; one already gone (or going) is fine.
    async fn force_remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 409: a removal of it is already in progress.
            Err(e) if matches!(status(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// Create the container, replacing a leftover of the same name: an agent that died between
    /// create and record leaves one, and the worker asks for the same attempt again.
    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String, RuntimeError> {
        let options =
            CreateContainerOptions { name: Some(name.to_string()), platform: String::new() };
        let mut replaced = false;
        loop {
            match self.docker.create_container(Some(options.clone()), body.clone()).await {
                Ok(created) => return Ok(created.id),
                Err(e) if status(&e) == Some(409) && !replaced => {
                    self.force_remove(name).await?;
                    replaced = true;
                }
                Err(e) if status(&e) == Some(404) => {
                    let image = body.image.clone().unwrap_or_default();
                    return Err(RuntimeError::ImageNotFound(not_present(&image)));
                }
                Err(e) => return Err(RuntimeError::Start(message(e))),
            }
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        let version = self.docker.version().await.map_err(engine)?;
        version.version.ok_or_else(|| RuntimeError::Other("the engine reports no version".into()))
    }

    async fn ensure_image(&self, image: &str) -> Result<String, RuntimeError> {
        let reference = normalize_image(image);
        match self.docker.inspect_image(&reference).await {
            Ok(found) => image_id(&reference, &found),
            Err(e) if status(&e) == Some(404) => {
                Err(RuntimeError::ImageNotFound(not_present(&reference)))
            }
            Err(e) => Err(engine(e)),
        }
    }

    async fn create_sandbox(&self, config: &SandboxConfig) -> Result<SandboxId, RuntimeError> {
        // Nothing to make in the engine: see the module docs.
        Ok(SandboxId(format!("host/{}/{}", config.pod.uid, config.hostname)))
    }

    async fn remove_sandbox(&self, pod: &PodRef) -> Result<(), RuntimeError> {
        for container in self.list(Some(&pod.uid)).await? {
            if let Some(id) = container.id {
                self.force_remove(&id).await?;
            }
        }
        Ok(())
    }

    async fn start_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig,
    ) -> Result<ContainerId, RuntimeError> {
        let name = container_name(config);
        let id = self.create(&name, create_body(sandbox, config)).await?;
        if let Err(e) = self.docker.start_container(&id, None).await {
            // The worker never learns the ID of a container that failed to start, so nobody
            // else would remove it.
            let _ = self.force_remove(&id).await;
            return Err(RuntimeError::Start(message(e)));
        }
        Ok(ContainerId(id))
    }

    async fn container_state(&self, id: &ContainerId) -> Result<ContainerState, RuntimeError> {
        self.state(&id.0).await
    }

    async fn wait(&self, id: &ContainerId) -> Result<Exit, RuntimeError> {
        loop {
            match self.container_state(id).await? {
                ContainerState::Exited(exit) => return Ok(exit),
                ContainerState::Unknown => return Err(RuntimeError::NotFound(id.0.clone())),
                ContainerState::Running { .. } => {}
            }
            let options = WaitContainerOptions { condition: "not-running".to_string() };
            let mut waiting = self.blocking.wait_container(&id.0, Some(options));
            match waiting.next().await {
                // bollard reports a non-zero exit as an error; the inspect above the next turn
                // of the loop reads the details either way.
                Some(Ok(_)) | Some(Err(EngineError::DockerContainerWaitError { .. })) | None => {}
                Some(Err(e)) if status(&e) == Some(404) => {
                    return Err(RuntimeError::NotFound(id.0.clone()))
                }
                Some(Err(e)) => {
                    tracing::debug!(container = %id.0, error = %e, "docker wait failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptions {
            t: Some(i32::try_from(seconds).unwrap_or(i32::MAX)),
            signal: None,
        };
        // The engine answers only once the container has ended, up to `grace` later.
        let client =
            self.docker.clone().with_timeout(REQUEST_TIMEOUT + Duration::from_secs(seconds));
        match client.stop_container(&id.0, Some(options)).await {
            // bollard maps "304 already stopped" to Ok.
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.force_remove(&id.0).await
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut found = Vec::new();
        for summary in self.list(None).await? {
            let (Some(id), Some(labels)) = (summary.id, summary.labels) else { continue };
            let Some((pod, name, attempt)) = identity(&labels) else {
                tracing::debug!(container = %id, "kumo container without its labels; ignored");
                continue;
            };
            // Inspect for the exit details the summary lacks; one removed meanwhile is skipped.
            let state = match self.state(&id).await? {
                ContainerState::Unknown => continue,
                state => state,
            };
            found.push(ContainerInfo { id: ContainerId(id), pod, name, attempt, state });
        }
        Ok(found)
    }

    async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let run = async {
            let config = ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(command.to_vec()),
                ..Default::default()
            };
            let created = match self.docker.create_exec(&id.0, config).await {
                Ok(created) => created,
                Err(e) if status(&e) == Some(404) => {
                    return Err(RuntimeError::NotFound(id.0.clone()))
                }
                Err(e) => return Err(engine(e)),
            };
            let options = StartExecOptions { detach: false, tty: false, output_capacity: None };
            let mut output = BytesMut::new();
            if let StartExecResults::Attached { output: mut stream, .. } =
                self.docker.start_exec(&created.id, Some(options)).await.map_err(engine)?
            {
                // Read to the end (a command blocked on a full pipe would never exit) but keep
                // only the head.
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(engine)?;
                    let room = EXEC_OUTPUT_LIMIT.saturating_sub(output.len());
                    let bytes = chunk.into_bytes();
                    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            // The output ends when the process closes it, a moment before the engine records
            // the exit code.
            loop {
                let inspected = self.docker.inspect_exec(&created.id).await.map_err(engine)?;
                if inspected.running != Some(true) {
                    let exit_code = inspected.exit_code.unwrap_or(-1);
                    return Ok(ExecResult {
                        exit_code: i32::try_from(exit_code).unwrap_or(-1),
                        output: String::from_utf8_lossy(&output).into_owned(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => {
                Err(RuntimeError::Other(format!("command {:?} timed out", command.join(" "))))
            }
        }
    }

    async fn logs(
        &self,
        id: &ContainerId,
        options: &LogOptions,
    ) -> Result<LogStream, RuntimeError> {
        // The engine's stream is lazy: find out now whether the container exists.
        if self.inspect(&id.0).await?.is_none() {
            return Err(RuntimeError::NotFound(id.0.clone()));
        }
        // Timestamps are always asked for: they let `since` be applied to the nanosecond (the
        // engine's filter takes whole seconds) and are re-formatted as Kubernetes prints them.
        let query = LogsOptions {
            follow: options.follow,
            stdout: true,
            stderr: true,
            since: options
                .since
                .and_then(|since| i32::try_from(since.timestamp()).ok())
                .unwrap_or(0)
                .max(0),
            until: 0,
            timestamps: true,
            tail: options.tail_lines.map_or_else(|| "all".to_string(), |n| n.to_string()),
        };
        let since = options.since;
        let timestamps = options.timestamps;
        let lines = self.blocking.logs(&id.0, Some(query)).filter_map(move |frame| {
            let line = match frame {
                Ok(frame) => log_line(&frame.into_bytes(), since, timestamps).map(Ok),
                Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
            };
            futures::future::ready(line)
        });
        Ok(limit_bytes(lines.boxed(), options.limit_bytes))
    }

    async fn stats(&self, id: &ContainerId) -> Result<ContainerStats, RuntimeError> {
        let options = StatsOptions { stream: false, one_shot: true };
        let stats = match self.docker.stats(&id.0, Some(options)).next().await {
            Some(Ok(stats)) => stats,
            Some(Err(e)) if status(&e) == Some(404) => {
                return Err(RuntimeError::NotFound(id.0.clone()))
            }
            Some(Err(e)) => return Err(engine(e)),
            None => return Err(RuntimeError::Other("the engine sent no stats".into())),
        };
        let cpu = stats
            .cpu_stats
            .and_then(|cpu| cpu.cpu_usage)
            .and_then(|usage| usage.total_usage)
            .unwrap_or(0);
        let memory = stats.memory_stats.map_or(0, |memory| {
            let inactive = memory.stats.as_ref().and_then(|stats| {
                // cgroup v1 names it `total_inactive_file` (hierarchical), v2 `inactive_file`.
                stats.get("total_inactive_file").or_else(|| stats.get("inactive_file")).copied()
            });
            memory.usage.unwrap_or(0).saturating_sub(inactive.unwrap_or(0))
        });
        Ok(ContainerStats { cpu_usage_core_nanos: cpu, memory_working_set_bytes: memory })
    }
}

/// The HTTP status of an engine error, if the engine answered.
fn status(e: &EngineError) -> Option<u16> {
    match e {
        EngineError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own words when it answered, else bollard's description.
fn message(e: EngineError) -> String {
    match e {
        EngineError::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    }
}

fn engine(e: EngineError) -> RuntimeError {
    RuntimeError::Other(format!("docker: {}", message(e)))
}

/// What `ErrImagePull` says for an image that is not in the engine.
fn not_present(image: &str) -> String {
    format!(
        "image {image:?} not present locally and kumo pulls nothing: build or load it into the \
         engine (docker load / docker import)"
    )
}

/// `busybox` → `busybox:latest`, as the engine (and kubelet) read a reference without tag;
/// digests (`name@sha256:…`) and tags are kept as written.
fn normalize_image(image: &str) -> String {
    if image.contains('@') {
        return image.to_string();
    }
    // A colon before the last `/` belongs to a registry host (`localhost:5000/app`).
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// The `imageID` of a container status, as kubelet with Docker reports it: the digest the
/// image was pulled by (`docker-pullable://name@sha256:…`) when it has one, else its local ID
/// (`docker://sha256:…`, the case of images built or imported locally).
fn image_id(
    reference: &str,
    found: &bollard::models::ImageInspect,
) -> Result<String, RuntimeError> {
    let digests = found.repo_digests.as_deref().unwrap_or_default();
    let repository = reference.split('@').next().unwrap_or(reference);
    let repository = match repository.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => repository,
    };
    let digest = digests
        .iter()
        .find(|digest| digest.split('@').next() == Some(repository))
        .or_else(|| digests.first());
    if let Some(digest) = digest {
        return Ok(format!("docker-pullable://{digest}"));
    }
    match &found.id {
        Some(id) => Ok(format!("docker://{id}")),
        None => {
            Err(RuntimeError::Other(format!("the engine reports no ID for image {reference:?}")))
        }
    }
}

/// `kumo_<container>_<pod>_<namespace>_<uid8>_<attempt>`, with anything the engine refuses
/// in a name replaced.
fn container_name(config: &ContainerConfig) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
            .collect()
    };
    let uid: String = config.pod.uid.chars().take(8).collect();
    format!(
        "kumo_{}_{}_{}_{}_{}",
        clean(&config.name),
        clean(&config.pod.name),
        clean(&config.pod.namespace),
        clean(&uid),
        config.attempt
    )
}

/// The hostname a sandbox ID carries (see [`Runtime::create_sandbox`] above); the pod name,
/// Kubernetes' default, for an ID this runtime did not make.
fn sandbox_hostname<'a>(sandbox: &'a SandboxId, config: &'a ContainerConfig) -> &'a str {
    let mut parts = sandbox.0.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("host"), Some(_uid), Some(hostname)) if !hostname.is_empty() => hostname,
        _ => &config.pod.name,
    }
}

/// The engine's container from a kumo container: Kubernetes' `command`/`args` rules, labels,
/// limits, host networking.
fn create_body(sandbox: &SandboxId, config: &ContainerConfig) -> ContainerCreateBody {
    // `command` replaces the image's entrypoint, and then the image's cmd is not used (the
    // engine only merges the image's cmd when no entrypoint is given); `args` alone keeps
    // the image's entrypoint and replaces its cmd.
    let entrypoint = (!config.command.is_empty()).then(|| config.command.clone());
    let cmd = if !config.args.is_empty() {
        Some(config.args.clone())
    } else if entrypoint.is_some() {
        Some(Vec::new())
    } else {
        None
    };

    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(port) = config.ports.first() {
        if !config.env.iter().any(|(name, _)| name == "PORT") {
            env.push(("PORT".to_string(), port.host_port.to_string()));
        }
    }
    // Later entries win, as in Kubernetes: keep the last value of each name, in first order.
    for (name, value) in &config.env {
        match env.iter_mut().find(|(existing, _)| existing == name) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((name.clone(), value.clone())),
        }
    }

    let labels = HashMap::from([
        (LABEL_NAMESPACE.to_string(), config.pod.namespace.clone()),
        (LABEL_POD.to_string(), config.pod.name.clone()),
        (LABEL_UID.to_string(), config.pod.uid.clone()),
        (LABEL_CONTAINER.to_string(), config.name.clone()),
        (LABEL_ATTEMPT.to_string(), config.attempt.to_string()),
    ]);

    let limits = &config.limits;
    let memory = limits.memory_bytes.map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX));
    let host_config = HostConfig {
        network_mode: Some("host".to_string()),
        memory,
        // No swap beyond the limit, as kubelet sets it (ignored where swap is not accounted).
        memory_swap: memory,
        nano_cpus: limits
            .cpu_millis
            .map(|millis| i64::try_from(millis.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
        // kubelet's conversion of a CPU request to shares: 1024 per core, at least 2.
        cpu_shares: limits.cpu_request_millis.map(|millis| {
            i64::try_from((millis.saturating_mul(1024) / 1000).max(2)).unwrap_or(i64::MAX)
        }),
        // Restarts are the worker's business.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        // A driver the logs API can read back, whatever the engine's default is, rotated at
        // kubelet's default size and count.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_string()),
            config: Some(HashMap::from([
                ("max-size".to_string(), "10m".to_string()),
                ("max-file".to_string(), "5".to_string()),
            ])),
        }),
        // Volumes are directories (or, for a subPath, files) the agent prepared on the node;
        // a memory-backed emptyDir is a tmpfs the agent mounted there, so containers of the
        // pod share it.
        mounts: (!config.mounts.is_empty()).then(|| {
            config
                .mounts
                .iter()
                .map(|m| EngineMount {
                    target: Some(m.container_path.clone()),
                    source: Some(m.host_path.display().to_string()),
                    typ: Some(MountType::BIND),
                    read_only: Some(m.read_only),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    };

    ContainerCreateBody {
        image: Some(normalize_image(&config.image)),
        hostname: Some(sandbox_hostname(sandbox, config).to_string()),
        entrypoint,
        cmd,
        env: Some(env.into_iter().map(|(name, value)| format!("{name}={value}")).collect()),
        working_dir: config.working_dir.clone(),
        labels: Some(labels),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Pod, container name and attempt from a container's labels.
fn identity(labels: &HashMap<String, String>) -> Option<(PodRef, String, u32)> {
    let pod = PodRef {
        namespace: labels.get(LABEL_NAMESPACE)?.clone(),
        name: labels.get(LABEL_POD)?.clone(),
        uid: labels.get(LABEL_UID)?.clone(),
    };
    let name = labels.get(LABEL_CONTAINER)?.clone();
    let attempt = labels.get(LABEL_ATTEMPT)?.parse().ok()?;
    Some((pod, name, attempt))
}

/// A time of the engine; `None` for its zero time (`0001-01-01T00:00:00Z`: never).
fn engine_time(value: Option<&str>) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(value?).ok()?.with_timezone(&Utc);
    (parsed.year() > 1).then_some(parsed)
}

/// The runtime's view of the engine's container state.
fn state_of(state: Option<&EngineState>) -> ContainerState {
    let Some(state) = state else { return ContainerState::Unknown };
    let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
    let started = engine_time(state.started_at.as_deref());
    let running = state.running == Some(true)
        || matches!(
            status,
            ContainerStateStatusEnum::RUNNING
                | ContainerStateStatusEnum::PAUSED
                | ContainerStateStatusEnum::RESTARTING
        );
    if running {
        return ContainerState::Running { started_at: started.unwrap_or_else(Utc::now) };
    }
    let finished = engine_time(state.finished_at.as_deref());
    let code = i32::try_from(state.exit_code.unwrap_or(0)).unwrap_or(-1);
    let error = state.error.clone().filter(|error| !error.is_empty());
    if status == ContainerStateStatusEnum::CREATED || started.is_none() {
        // Created but never run: its start failed, or the agent died between create and start.
        let at = finished.unwrap_or_else(Utc::now);
        return ContainerState::Exited(Exit {
            exit_code: if code == 0 { 128 } else { code },
            signal: None,
            reason: "StartError".to_string(),
            message: Some(error.unwrap_or_else(|| "the container was never started".to_string())),
            started_at: at,
            finished_at: at,
        });
    }
    let reason = if state.oom_killed == Some(true) {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let finished = finished.or(started).unwrap_or_else(Utc::now);
    ContainerState::Exited(Exit {
        exit_code: code,
        signal: None,
        reason: reason.to_string(),
        message: error,
        started_at: started.unwrap_or(finished),
        finished_at: finished,
    })
}

/// One frame of the engine's log (`<RFC 3339 time with 9 digits> <content>`) as `kubectl logs`
/// shows it; `None` when it is before `since`.
fn log_line(frame: &[u8], since: Option<DateTime<Utc>>, timestamps: bool) -> Option<Bytes> {
    let split = frame.iter().position(|b| *b == b' ');
    let stamped = split.and_then(|at| {
        let time = std::str::from_utf8(&frame[..at]).ok()?;
        let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
        Some((time, &frame[at + 1..]))
    });
    // A frame without a time is passed through as it is.
    let Some((time, content)) = stamped else { return Some(Bytes::copy_from_slice(frame)) };
    if since.is_some_and(|since| time < since) {
        return None;
    }
    if !timestamps {
        return Some(Bytes::copy_from_slice(content));
    }
    let mut line = rfc3339_nano(time).into_bytes();
    line.push(b' ');
    line.extend_from_slice(content);
    Some(Bytes::from(line))
}

/// Go's `RFC3339Nano`, which kubelet prints: trailing zeros of the fraction dropped (the
/// engine always writes nine digits).
fn rfc3339_nano(time: DateTime<Utc>) -> String {
    let seconds = time.format("%Y-%m-%dT%H:%M:%S");
    let nanos = time.timestamp_subsec_nanos().min(999_999_999);
    if nanos == 0 {
        return format!("{seconds}Z");
    }
    let fraction = format!("{nanos:09}");
    format!("{seconds}.{}Z", fraction.trim_end_matches('0'))
}

/// End the stream after `limit` bytes (`--limit-bytes`), without waiting for more to come.
fn limit_bytes(stream: LogStream, limit: Option<u64>) -> LogStream {
    let Some(limit) = limit else { return stream };
    futures::stream::unfold((stream, limit), |(mut stream, left)| async move {
        if left == 0 {
            return None;
        }
        match stream.next().await? {
            Ok(chunk) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
                let left = left - take as u64;
                Some((Ok(chunk.slice(..take)), (stream, left)))
            }
            Err(e) => Some((Err(e), (stream, left))),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Limits, PortMapping};
    use chrono::TimeZone;

    fn config() -> ContainerConfig {
        ContainerConfig {
            pod: PodRef { namespace: "ns".into(), name: "web".into(), uid: "0123456789ab".into() },
            name: "app".into(),
            attempt: 2,
            image: "busybox".into(),
            command: vec![],
            args: vec![],
            env: vec![],
            working_dir: None,
            limits: Limits::default(),
            log_path: "/tmp/x.log".into(),
            ports: vec![],
            mounts: vec![],
        }
    }

    #[test]
    fn images_get_the_latest_tag_unless_tagged_or_pinned() {
        assert_eq!(normalize_image("busybox"), "busybox:latest");
        assert_eq!(normalize_image("busybox:1.36"), "busybox:1.36");
        assert_eq!(normalize_image("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalize_image("localhost:5000/app:v1"), "localhost:5000/app:v1");
        let pinned =
            "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(normalize_image(pinned), pinned);
    }

    #[test]
    fn image_ids_prefer_the_pull_digest() {
        let mut found = bollard::models::ImageInspect {
            id: Some("sha256:abc".into()),
            repo_digests: Some(vec!["other@sha256:1".into(), "busybox@sha256:2".into()]),
            ..Default::default()
        };
        assert_eq!(
            image_id("busybox:latest", &found).unwrap(),
            "docker-pullable://busybox@sha256:2"
        );
        found.repo_digests = None;
        assert_eq!(image_id("busybox:latest", &found).unwrap(), "docker://sha256:abc");
    }

    #[test]
    fn names_and_labels_identify_the_container() {
        let config = config();
        assert_eq!(container_name(&config), "kumo_app_web_ns_01234567_2");
        let body = create_body(&SandboxId("host/0123456789ab/web-0".into()), &config);
        let labels = body.labels.unwrap();
        let (pod, name, attempt) = identity(&labels).unwrap();
        assert_eq!((pod, name.as_str(), attempt), (config.pod.clone(), "app", 2));
        assert_eq!(body.hostname.as_deref(), Some("web-0"));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("host"));
    }

    #[test]
    fn command_and_args_follow_kubernetes() {
        let sandbox = SandboxId("elsewhere".into());
        let mut config = config();
        let body = create_body(&sandbox, &config);
        assert_eq!((body.entrypoint, body.cmd), (None, None));
        assert_eq!(body.hostname.as_deref(), Some("web"));

        config.args = vec!["a".into()];
        let body = create_body(&sandbox, &config);
        assert_eq!((body.entrypoint, body.cmd), (None, Some(vec!["a".to_string()])));

        config.command = vec!["sh".into()];
        let body = create_body(&sandbox, &config);
        assert_eq!(body.entrypoint, Some(vec!["sh".to_string()]));
        assert_eq!(body.cmd, Some(vec!["a".to_string()]));

        config.args.clear();
        let body = create_body(&sandbox, &config);
        assert_eq!(body.cmd, Some(vec![]), "the image's cmd must not follow a command");
    }

    #[test]
    fn env_limits_and_port() {
        let mut config = config();
        config.env =
            vec![("A".into(), "1".into()), ("B".into(), "2".into()), ("A".into(), "3".into())];
        config.ports = vec![PortMapping {
            name: None,
            container_port: 80,
            host_port: 31000,
            protocol: "TCP".into(),
        }];
        config.limits = Limits {
            memory_bytes: Some(20 << 20),
            cpu_millis: Some(500),
            cpu_request_millis: Some(1),
        };
        let body = create_body(&SandboxId("x".into()), &config);
        assert_eq!(body.env.unwrap(), ["PORT=31000", "A=3", "B=2"]);
        let host = body.host_config.unwrap();
        assert_eq!(host.memory, Some(20 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.cpu_shares, Some(2));

        config.env.push(("PORT".into(), "8080".into()));
        let body = create_body(&SandboxId("x".into()), &config);
        assert!(body.env.unwrap().contains(&"PORT=8080".to_string()));
    }

    #[test]
    fn volumes_become_bind_mounts() {
        let mut config = config();
        assert!(create_body(&SandboxId("x".into()), &config).host_config.unwrap().mounts.is_none());
        config.mounts = vec![
            crate::runtime::Mount {
                host_path: "/data/pods/u/volumes/kubernetes.io~configmap/cfg".into(),
                container_path: "/etc/app".into(),
                read_only: true,
            },
            crate::runtime::Mount {
                host_path: "/data/pods/u/volumes/kubernetes.io~empty-dir/scratch".into(),
                container_path: "/scratch".into(),
                read_only: false,
            },
        ];
        let mounts =
            create_body(&SandboxId("x".into()), &config).host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].target.as_deref(), Some("/etc/app"));
        assert_eq!(
            mounts[0].source.as_deref(),
            Some("/data/pods/u/volumes/kubernetes.io~configmap/cfg")
        );
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(mounts[1].read_only, Some(false));
    }

    #[test]
    fn states_read_like_kubernetes() {
        let exited = |code: i64, oom: bool| EngineState {
            status: Some(ContainerStateStatusEnum::EXITED),
            running: Some(false),
            oom_killed: Some(oom),
            exit_code: Some(code),
            started_at: Some("2026-11-23T10:00:00.5Z".into()),
            finished_at: Some("2026-11-23T10:00:01Z".into()),
            ..Default::default()
        };
        let reason = |state: &EngineState| match state_of(Some(state)) {
            ContainerState::Exited(exit) => exit.reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(&exited(0, false)), "Completed");
        assert_eq!(reason(&exited(3, false)), "Error");
        assert_eq!(reason(&exited(137, true)), "OOMKilled");
        let ContainerState::Exited(exit) = state_of(Some(&exited(3, false))) else { panic!() };
        assert_eq!(
            exit.started_at,
            Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
                + chrono::Duration::milliseconds(500)
        );
        assert_eq!(exit.exit_code, 3);

        let never = EngineState {
            status: Some(ContainerStateStatusEnum::CREATED),
            exit_code: Some(127),
            error: Some("exec: \"nope\": executable file not found".into()),
            started_at: Some("0001-01-01T00:00:00Z".into()),
            finished_at: Some("0001-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let ContainerState::Exited(exit) = state_of(Some(&never)) else { panic!() };
        assert_eq!((exit.reason.as_str(), exit.exit_code), ("StartError", 127));
        assert!(exit.message.unwrap().contains("not found"));
    }

    #[test]
    fn log_lines_are_filtered_and_stamped_like_kubelet() {
        let frame = b"2026-11-23T10:00:00.120000000Z hello\n";
        assert_eq!(log_line(frame, None, false).unwrap(), &b"hello\n"[..]);
        assert_eq!(log_line(frame, None, true).unwrap(), &b"2026-11-23T10:00:00.12Z hello\n"[..]);
        let after = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
            + chrono::Duration::milliseconds(121);
        assert!(log_line(frame, Some(after), false).is_none());
        assert_eq!(log_line(b"plain", None, true).unwrap(), &b"plain"[..]);
        assert_eq!(
            rfc3339_nano(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()),
            "2026-01-02T03:04:05Z"
        );
    }

    #[tokio::test]
    async fn limit_bytes_cuts_the_stream() {
        let chunks: Vec<std::io::Result<Bytes>> =
            vec![Ok(Bytes::from_static(b"abc")), Ok(Bytes::from_static(b"def"))];
        let limited = limit_bytes(futures::stream::iter(chunks).boxed(), Some(4));
        let got: Vec<Bytes> = limited.map(|chunk| chunk.unwrap()).collect().await;
        assert_eq!(got, [Bytes::from_static(b"abc"), Bytes::from_static(b"d")]);
    }
}
