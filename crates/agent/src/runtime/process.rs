//! The `process` runtime (the default): each container is a host process behind a shim
//! ([`crate::shim`]).
//!
//! State lives in files under `<root>/containers/<id>/`, so an agent that restarts finds every
//! container again ([`Runtime::list_containers`]) and never starts a second copy. The image name
//! is informational: `command` and `args` say what runs, resolved against the container's
//! `PATH`. Pods share the node's network (`host` mode); their ports were chosen by the agent.

use super::*;
use crate::cgroup::Cgroups;
use crate::shim::{self, PidFile, ShimSpec};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::sync::Arc;

/// What the agent writes beside the shim's spec, to find the container again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    config: ContainerConfig,
    sandbox: SandboxId,
    shim: ShimSpec,
}

/// Logs past this size are rotated (one older part is kept).
const LOG_MAX_BYTES: u64 = 10 << 20;

/// The process runtime.
#[derive(Clone)]
pub struct ProcessRuntime {
    root: PathBuf,
    shim: Arc<Vec<String>>,
    cgroups: Arc<Cgroups>,
}

impl ProcessRuntime {
    /// A runtime keeping its state under `root`, starting shims with `shim_command` followed by
    /// the container directory (e.g. `["/usr/bin/kumo", "shim"]`), with the host's cgroups.
    pub fn new(root: PathBuf, shim_command: Vec<String>) -> std::io::Result<ProcessRuntime> {
        Self::with_cgroups(root, shim_command, Cgroups::detect())
    }

    /// As [`ProcessRuntime::new`], with cgroups chosen by the caller.
    pub fn with_cgroups(
        root: PathBuf,
        shim_command: Vec<String>,
        cgroups: Cgroups,
    ) -> std::io::Result<ProcessRuntime> {
        std::fs::create_dir_all(root.join("containers"))?;
        std::fs::create_dir_all(root.join("sandboxes"))?;
        if let Some(why) = cgroups.unavailable() {
            tracing::warn!("process runtime: resource limits are not enforced: {why}");
        }
        Ok(ProcessRuntime { root, shim: Arc::new(shim_command), cgroups: Arc::new(cgroups) })
    }

    /// Whether limits are enforced, and if not why.
    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    fn dir(&self, id: &ContainerId) -> Result<PathBuf, RuntimeError> {
        // Ids are ours (hex); anything else must not escape the root.
        if id.0.is_empty() || !id.0.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(RuntimeError::NotFound(id.0.clone()));
        }
        Ok(self.root.join("containers").join(&id.0))
    }

    fn record(&self, id: &ContainerId) -> Result<Record, RuntimeError> {
        let path = self.dir(id)?.join("record.json");
        let bytes = std::fs::read(&path).map_err(|_| RuntimeError::NotFound(id.0.clone()))?;
        serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Other(format!("{path:?}: {e}")))
    }

    fn pid_file(dir: &Path) -> Option<PidFile> {
        serde_json::from_slice(&std::fs::read(dir.join(shim::PID)).ok()?).ok()
    }

    fn exit_file(dir: &Path) -> Option<Exit> {
        serde_json::from_slice(&std::fs::read(dir.join(shim::EXIT)).ok()?).ok()
    }

    fn state_of(dir: &Path) -> ContainerState {
        if let Some(exit) = Self::exit_file(dir) {
            return ContainerState::Exited(exit);
        }
        match Self::pid_file(dir) {
            Some(p) if shim::alive(p.pid, p.start_ticks) => {
                ContainerState::Running { started_at: p.started_at }
            }
            Some(p) if shim::alive(p.shim_pid, 0) => {
                // The workload is gone and its shim is writing exit.json right now.
                ContainerState::Running { started_at: p.started_at }
            }
            Some(p) => {
                // The shim was killed before it could record the exit (the host rebooted, or
                // someone killed it): the workload is gone, how it ended is not known.
                let now = Utc::now();
                let exit = Exit {
                    exit_code: 137,
                    signal: None,
                    reason: "Error".into(),
                    message: Some("the container's shim ended without recording its exit".into()),
                    started_at: p.started_at,
                    finished_at: now,
                };
                if let Ok(data) = serde_json::to_vec(&exit) {
                    let _ = shim::write_atomic(&dir.join(shim::EXIT), &data);
                }
                ContainerState::Exited(exit)
            }
            None => ContainerState::Unknown,
        }
    }

    fn signal(dir: &Path, signal: Signal) {
        if let Some(p) = Self::pid_file(dir) {
            if shim::alive(p.pid, p.start_ticks) {
                let _ = killpg(Pid::from_raw(p.pid as i32), signal);
            }
        }
    }

    /// Find the program as a container runtime would: a path as given, or a name on `PATH`.
    fn resolve(program: &str, env: &[(String, String)], cwd: Option<&Path>) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let executable = |p: &Path| {
            p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if program.contains('/') {
            let p = match cwd {
                Some(cwd) if !program.starts_with('/') => cwd.join(program),
                _ => PathBuf::from(program),
            };
            return executable(&p).then_some(p);
        }
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(program))
            .find(|p| executable(p))
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        Ok(env!("CARGO_PKG_VERSION").to_string())
    }

    async fn ensure_image(&self, image: &str) -> Result<String, RuntimeError> {
        // Nothing to pull: the image only names what the manifest meant.
        Ok(format!("process://{image}"))
    }

    async fn create_sandbox(&self, config: &SandboxConfig) -> Result<SandboxId, RuntimeError> {
        let path = self.root.join("sandboxes").join(format!("{}.json", config.pod.uid));
        if !path.exists() {
            let data =
                serde_json::to_vec(config).map_err(|e| RuntimeError::Other(e.to_string()))?;
            shim::write_atomic(&path, &data)?;
        }
        Ok(SandboxId(config.pod.uid.clone()))
    }

    async fn remove_sandbox(&self, pod: &PodRef) -> Result<(), RuntimeError> {
        for c in self.list_containers().await? {
            if c.pod.uid == pod.uid {
                if matches!(c.state, ContainerState::Running { .. }) {
                    self.stop_container(&c.id, Duration::ZERO).await?;
                }
                self.remove_container(&c.id).await?;
            }
        }
        let _ = std::fs::remove_dir_all(pod.log_dir(&self.root));
        let _ = std::fs::remove_file(self.root.join("sandboxes").join(format!("{}.json", pod.uid)));
        Ok(())
    }

    async fn start_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig,
    ) -> Result<ContainerId, RuntimeError> {
        let argv: Vec<String> = config.command.iter().chain(&config.args).cloned().collect();
        let Some(program) = argv.first() else {
            return Err(RuntimeError::Start(format!(
                "the process runtime runs the container's command and args, and container {:?} \
                 has neither (image {:?} cannot be run by the process runtime)",
                config.name, config.image
            )));
        };
        let cwd = config.working_dir.as_ref().map(PathBuf::from);
        if let Some(dir) = &cwd {
            if !on_host(dir, &config.mounts).is_dir() {
                return Err(RuntimeError::Start(format!(
                    "workingDir {:?} does not exist on the node",
                    dir.display().to_string()
                )));
            }
        }
        let resolved = match Self::resolve(program, &config.env, cwd.as_deref()) {
            Some(p) => p,
            // A program inside a volume exists only in the container's mount namespace.
            None if program.starts_with('/')
                && Self::resolve(
                    &on_host(Path::new(program), &config.mounts).display().to_string(),
                    &config.env,
                    None,
                )
                .is_some() =>
            {
                PathBuf::from(program)
            }
            None => {
                return Err(RuntimeError::Start(format!(
                    "exec: {program:?}: executable file not found in $PATH"
                )))
            }
        };
        let id = ContainerId(uuid::Uuid::new_v4().simple().to_string());
        let dir = self.dir(&id)?;
        std::fs::create_dir_all(&dir)?;
        if let Some(parent) = config.log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let cgroups = self
            .cgroups
            .create(&id.0, &config.limits)
            .map_err(|e| RuntimeError::Start(format!("cannot set resource limits: {e}")))?;
        let mut argv = argv;
        argv[0] = resolved.display().to_string();
        let spec = ShimSpec {
            argv,
            env: config.env.clone(),
            working_dir: cwd,
            log_path: config.log_path.clone(),
            log_max_bytes: LOG_MAX_BYTES,
            cgroups,
            mounts: config.mounts.clone(),
        };
        let record = Record { config: config.clone(), sandbox: sandbox.clone(), shim: spec };
        let json = |e: serde_json::Error| RuntimeError::Other(e.to_string());
        shim::write_atomic(&dir.join("record.json"), &serde_json::to_vec(&record).map_err(json)?)?;
        shim::write_atomic(
            &dir.join(shim::SPEC),
            &serde_json::to_vec(&record.shim).map_err(json)?,
        )?;
        let Some((exe, args)) = self.shim.split_first() else {
            return Err(RuntimeError::Other("no shim command configured".into()));
        };
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(args)
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Out of the agent's process group: a Ctrl-C or a kill of the agent's group must not
            // reach the workloads.
            .process_group(0);
        let child =
            cmd.spawn().map_err(|e| RuntimeError::Other(format!("cannot start shim: {e}")))?;
        // Dropping the handle leaves the shim running; tokio reaps it when it ends.
        drop(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(exit) = Self::exit_file(&dir) {
                if exit.reason == "StartError" || exit.reason == shim::FAILED_MOUNT {
                    let _ = std::fs::remove_dir_all(&dir);
                    let message = exit.message.unwrap_or_default();
                    if exit.reason == shim::FAILED_MOUNT {
                        return Err(RuntimeError::Mount(message));
                    }
                    return Err(RuntimeError::Start(message));
                }
                return Ok(id);
            }
            if Self::pid_file(&dir).is_some() {
                return Ok(id);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(RuntimeError::Other(
                    "the shim did not start the container in 10 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn container_state(&self, id: &ContainerId) -> Result<ContainerState, RuntimeError> {
        Ok(Self::state_of(&self.dir(id)?))
    }

    async fn wait(&self, id: &ContainerId) -> Result<Exit, RuntimeError> {
        let dir = self.dir(id)?;
        loop {
            match Self::state_of(&dir) {
                ContainerState::Exited(exit) => return Ok(exit),
                ContainerState::Unknown => return Err(RuntimeError::NotFound(id.0.clone())),
                ContainerState::Running { .. } => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
            }
        }
    }

    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        let dir = self.dir(id)?;
        if !matches!(Self::state_of(&dir), ContainerState::Running { .. }) {
            return Ok(());
        }
        if !grace.is_zero() {
            Self::signal(&dir, Signal::SIGTERM);
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline {
                if !matches!(Self::state_of(&dir), ContainerState::Running { .. }) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Self::signal(&dir, Signal::SIGKILL);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while matches!(Self::state_of(&dir), ContainerState::Running { .. }) {
            if tokio::time::Instant::now() > deadline {
                return Err(RuntimeError::Other(format!("container {} did not stop", id.0)));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let dir = self.dir(id)?;
        if let Ok(record) = self.record(id) {
            let _ = std::fs::remove_file(&record.config.log_path);
            let _ = std::fs::remove_file(record.config.log_path.with_extension("log.1"));
            record.shim.cgroups.remove();
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.root.join("containers"))? {
            let entry = entry?;
            let id = ContainerId(entry.file_name().to_string_lossy().into_owned());
            let Ok(record) = self.record(&id) else { continue };
            out.push(ContainerInfo {
                state: Self::state_of(&entry.path()),
                pod: record.config.pod,
                name: record.config.name,
                attempt: record.config.attempt,
                id,
            });
        }
        Ok(out)
    }

    async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let record = self.record(id)?;
        let Some(program) = command.first() else {
            return Err(RuntimeError::Other("exec: empty command".into()));
        };
        let cwd = record.shim.working_dir.clone();
        let mut cmd = if record.shim.mounts.is_empty() {
            let Some(resolved) = Self::resolve(program, &record.shim.env, cwd.as_deref()) else {
                return Err(RuntimeError::Start(format!(
                    "exec: {program:?}: executable file not found in $PATH"
                )));
            };
            let mut cmd = tokio::process::Command::new(resolved);
            cmd.args(&command[1..]);
            if let Some(cwd) = cwd {
                cmd.current_dir(cwd);
            }
            cmd
        } else {
            // The command runs where the workload runs: in its mount namespace (and user
            // namespace when unprivileged), with its root and working directory.
            let dir = self.dir(id)?;
            let pid = Self::pid_file(&dir)
                .map(|p| p.pid)
                .ok_or_else(|| RuntimeError::NotFound(id.0.clone()))?;
            let nsenter = Self::resolve("nsenter", &[], None).ok_or_else(|| {
                RuntimeError::Other("exec into a container with volumes needs nsenter".into())
            })?;
            let mut cmd = tokio::process::Command::new(nsenter);
            cmd.arg("-t").arg(pid.to_string()).arg("-m");
            if !shim::mounts::privileged() {
                cmd.args(["-U", "--preserve-credentials"]);
            }
            cmd.args(["-r", "-w", "--"]).args(command);
            cmd
        };
        cmd.env_clear()
            .envs(record.shim.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = match tokio::time::timeout(timeout, cmd.output()).await {
            Ok(out) => out?,
            Err(_) => {
                return Err(RuntimeError::Other(format!(
                    "command timed out after {}s",
                    timeout.as_secs_f64()
                )))
            }
        };
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        if text.len() > 4096 {
            let mut cut = 4096;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        use std::os::unix::process::ExitStatusExt;
        let code =
            output.status.code().unwrap_or_else(|| 128 + output.status.signal().unwrap_or(0));
        Ok(ExecResult { exit_code: code, output: text })
    }

    async fn logs(
        &self,
        id: &ContainerId,
        options: &LogOptions,
    ) -> Result<LogStream, RuntimeError> {
        let record = self.record(id)?;
        let dir = self.dir(id)?;
        let finished = move || !matches!(Self::state_of(&dir), ContainerState::Running { .. });
        Ok(crate::logs::read_log(record.config.log_path, options.clone(), Box::new(finished)))
    }

    async fn stats(&self, id: &ContainerId) -> Result<ContainerStats, RuntimeError> {
        let record = self.record(id)?;
        if let Some(stats) = record.shim.cgroups.stats() {
            return Ok(stats);
        }
        // Without cgroups: the main process only, from /proc.
        let dir = self.dir(id)?;
        let pid = Self::pid_file(&dir)
            .map(|p| p.pid)
            .ok_or_else(|| RuntimeError::NotFound(id.0.clone()))?;
        Ok(proc_stats(pid).unwrap_or_default())
    }
}

/// Where a container path is on the host: inside the volume mounted over it, if one is.
fn on_host(path: &Path, mounts: &[Mount]) -> PathBuf {
    mounts
        .iter()
        .filter_map(|m| Some((m, path.strip_prefix(&m.container_path).ok()?)))
        .max_by_key(|(m, _)| m.container_path.len())
        .map_or_else(
            || path.to_path_buf(),
            |(m, rest)| {
                if rest.as_os_str().is_empty() {
                    m.host_path.clone()
                } else {
                    m.host_path.join(rest)
                }
            },
        )
}

fn proc_stats(pid: u32) -> Option<ContainerStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime (fields 14 and 15), in clock ticks of 1/100 s on Linux.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Some(ContainerStats {
        cpu_usage_core_nanos: ticks * 10_000_000,
        memory_working_set_bytes: rss_kb * 1024,
    })
}
