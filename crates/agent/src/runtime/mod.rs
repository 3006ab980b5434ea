//! The container runtimes behind one trait.
//!
//! A [`Runtime`] knows how to make a pod's sandbox, start one container of it from a fully
//! resolved [`ContainerConfig`], say what state a container is in, stop it gracefully, list what
//! exists (so an agent that restarts re-adopts what is already running), run a command beside
//! it (exec probes), read its logs and its resource usage. The pod worker holds all Kubernetes
//! policy (ordering, restart policy, back-off, probes); a runtime holds none.
//!
//! - [`process`]: host processes behind a per-container shim (the default).
//! - [`docker`]: containers of the local Docker engine.

pub mod docker;
pub mod process;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use std::path::PathBuf;
use std::time::Duration;

/// Which pod a sandbox or container belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PodRef {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// UID of the pod (a new pod with the same name is another pod).
    pub uid: String,
}

impl PodRef {
    /// Where the pod's container logs live under the agent's `root`
    /// (`<root>/pods/<ns>_<name>_<uid>`, kubelet's layout).
    pub fn log_dir(&self, root: &std::path::Path) -> PathBuf {
        root.join("pods").join(format!("{}_{}_{}", self.namespace, self.name, self.uid))
    }
}

/// A declared container port and the host port the runtime gives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// Name of the port, if it has one.
    pub name: Option<String>,
    /// The `containerPort` of the manifest.
    pub container_port: u16,
    /// The port on the node that reaches it.
    pub host_port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// What a runtime needs to make a pod's sandbox (the things its containers share).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SandboxConfig {
    /// The pod.
    pub pod: PodRef,
    /// Host name the containers see (the pod name, or `spec.hostname`).
    pub hostname: String,
    /// Every declared port of every container, with its host port already chosen.
    pub ports: Vec<PortMapping>,
}

/// A sandbox made by [`Runtime::create_sandbox`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxId(pub String);

/// Resource limits of one container, already converted from quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// `limits.memory` in bytes.
    pub memory_bytes: Option<u64>,
    /// `limits.cpu` in millicores.
    pub cpu_millis: Option<u64>,
    /// `requests.cpu` in millicores (CPU shares/weight).
    pub cpu_request_millis: Option<u64>,
}

/// One container to start, with everything resolved: env values looked up, `$(VAR)`
/// references in command and args expanded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    /// The pod it belongs to.
    pub pod: PodRef,
    /// The container's name in the pod spec.
    pub name: String,
    /// 0 for the first run, then the restart count.
    pub attempt: u32,
    /// The image as written in the manifest.
    pub image: String,
    /// `command` (replaces the image's entrypoint when non-empty).
    pub command: Vec<String>,
    /// `args` (replaces the image's cmd when non-empty).
    pub args: Vec<String>,
    /// Environment, in order (later entries win, as in Kubernetes).
    pub env: Vec<(String, String)>,
    /// `workingDir`, if set.
    pub working_dir: Option<String>,
    /// Resource limits.
    pub limits: Limits,
    /// Where the runtime keeps this attempt's log when it keeps logs in files
    /// (`<root>/pods/<ns>_<pod>_<uid>/<container>/<attempt>.log`, as kubelet lays them out).
    pub log_path: PathBuf,
    /// The container's own ports.
    pub ports: Vec<PortMapping>,
    /// The pod's volumes as this container mounts them, parents before children.
    #[serde(default)]
    pub mounts: Vec<Mount>,
}

/// One volume mount of a container: a host path (a volume's directory, or a file or
/// directory inside it for a `subPath`) shown at `container_path`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// What the container sees, on the node.
    pub host_path: PathBuf,
    /// Where the container sees it (absolute).
    pub container_path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A container made by [`Runtime::start_container`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ContainerId(pub String);

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    /// Exit code (128 + signal when a signal killed it).
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// `Completed` (0), `Error`, `OOMKilled` or `StartError`, as Kubernetes reports them.
    pub reason: String,
    /// A message for the user (why it could not start, for instance).
    pub message: Option<String>,
    /// When it started (equal to `finished_at` when it never started).
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
}

/// The state of a container as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContainerState {
    /// Running since.
    Running {
        /// Start time.
        started_at: DateTime<Utc>,
    },
    /// Ended.
    Exited(Exit),
    /// The runtime no longer knows it.
    Unknown,
}

/// A container that exists in the runtime, for re-adoption after an agent restart.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerInfo {
    /// Its id.
    pub id: ContainerId,
    /// The pod it belongs to.
    pub pod: PodRef,
    /// Its name in the pod spec.
    pub name: String,
    /// Its attempt number.
    pub attempt: u32,
    /// Its state now.
    pub state: ContainerState,
}

/// Output of a command run inside a container's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// Exit code of the command.
    pub exit_code: i32,
    /// stdout and stderr, truncated to a few KiB.
    pub output: String,
}

/// Resource usage of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerStats {
    /// Cumulative CPU time, in nanoseconds.
    pub cpu_usage_core_nanos: u64,
    /// Memory working set in bytes (usage minus inactive file cache).
    pub memory_working_set_bytes: u64,
}

/// What `kubectl logs` asks for (the `pods/log` query, as kubelet receives it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming until the container ends.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Only lines at or after this time (from `sinceSeconds` or `sinceTime`).
    pub since: Option<DateTime<Utc>>,
    /// Prefix every line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

/// A stream of log bytes.
pub type LogStream = BoxStream<'static, std::io::Result<Bytes>>;

/// What went wrong in a runtime, with the reason Kubernetes would show for it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not in the local engine (`ErrImagePull`).
    #[error("{0}")]
    ImageNotFound(String),
    /// The container could not be created or started (`RunContainerError`): a command that
    /// does not exist, a bad working directory, a refused limit.
    #[error("{0}")]
    Start(String),
    /// No such container or sandbox.
    #[error("not found: {0}")]
    NotFound(String),
    /// The container's volumes could not be mounted (`FailedMount`): the host allows no
    /// private mount namespace, or a mount point cannot be made.
    #[error("{0}")]
    Mount(String),
    /// Anything else (I/O, the engine's API).
    #[error("{0}")]
    Other(String),
}

impl From<std::io::Error> for RuntimeError {
    fn from(e: std::io::Error) -> Self {
        RuntimeError::Other(e.to_string())
    }
}

/// A container runtime. Every method is safe to call again after a crash of the agent: state
/// lives in the runtime (files, the engine), not in the agent's memory.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `process` or `docker`: the scheme of container IDs (`process://…`) and of
    /// `nodeInfo.containerRuntimeVersion`.
    fn name(&self) -> &'static str;

    /// The runtime's version, for `nodeInfo.containerRuntimeVersion` (`docker://28.2.2`).
    async fn version(&self) -> Result<String, RuntimeError>;

    /// Make sure the image can run; returns its ID (`imageID` in container statuses).
    /// [`RuntimeError::ImageNotFound`] when it is not present (there is no registry).
    async fn ensure_image(&self, image: &str) -> Result<String, RuntimeError>;

    /// Make (or find again, same pod UID) the pod's sandbox.
    async fn create_sandbox(&self, config: &SandboxConfig) -> Result<SandboxId, RuntimeError>;

    /// Remove a pod's sandbox and whatever the runtime kept for it, containers included.
    async fn remove_sandbox(&self, pod: &PodRef) -> Result<(), RuntimeError>;

    /// Create and start a container in a sandbox. Returns once it runs (or failed to start:
    /// [`RuntimeError::Start`]).
    async fn start_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig,
    ) -> Result<ContainerId, RuntimeError>;

    /// The container's state now.
    async fn container_state(&self, id: &ContainerId) -> Result<ContainerState, RuntimeError>;

    /// Wait until the container is no longer running and return how it ended.
    async fn wait(&self, id: &ContainerId) -> Result<Exit, RuntimeError>;

    /// SIGTERM, then SIGKILL after `grace`; returns when it has ended.
    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError>;

    /// Forget an ended container (its log goes with it).
    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    /// Every container the runtime knows, running or ended.
    async fn list_containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError>;

    /// Run a command in the container's environment (exec probes, exec hooks).
    async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError>;

    /// The container's log.
    async fn logs(&self, id: &ContainerId, options: &LogOptions)
        -> Result<LogStream, RuntimeError>;

    /// The container's resource usage now.
    async fn stats(&self, id: &ContainerId) -> Result<ContainerStats, RuntimeError>;
}
