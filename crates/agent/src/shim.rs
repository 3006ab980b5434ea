//! The shim: one small process per container of the process runtime.
//!
//! The agent starts `kumo shim <dir>` in a process group of its own and forgets it. The shim
//! starts the workload (in a new process group, inside the container's cgroups), copies its
//! stdout and stderr into the CRI log file, waits for it and writes how it ended to
//! `<dir>/exit.json`. Because the workload's parent is the shim and not the agent, the agent can
//! die and come back: the workload keeps running, its output keeps flowing to the log, and its
//! exit code is not lost. The shim holds no other state, so it is as small as a thread pair.
//!
//! A container with volumes first gets a private mount namespace with each volume at its
//! `mountPath` ([`mounts`]); the workload inherits it.
//!
//! Files in `<dir>`: `spec.json` (written by the agent before the start), `pid` (the
//! workload's pid and start time, written by the shim once it runs), `exit.json`.

pub mod mounts;

use crate::cgroup::Groups;
use crate::logs::{LogWriter, Output};
use crate::runtime::{Exit, Mount};
use chrono::{DateTime, Utc};
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// What to run, as the agent resolved it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShimSpec {
    /// The program (resolved to a path) and its arguments.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: Option<PathBuf>,
    /// The CRI log file.
    pub log_path: PathBuf,
    /// Rotate the log past this size.
    pub log_max_bytes: u64,
    /// Groups to join.
    pub cgroups: Groups,
    /// Volumes to mount in the container's private mount namespace.
    #[serde(default)]
    pub mounts: Vec<Mount>,
}

/// The `reason` of an [`Exit`] written when the volumes could not be mounted.
pub const FAILED_MOUNT: &str = "FailedMount";

/// The `pid` file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PidFile {
    /// The workload's pid (and process group id).
    pub pid: u32,
    /// Its start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`), so a reused
    /// pid is never mistaken for it.
    pub start_ticks: u64,
    /// The shim's pid.
    pub shim_pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// File names in a container directory.
pub const SPEC: &str = "spec.json";
/// See [`PidFile`].
pub const PID: &str = "pid";
/// See [`Exit`].
pub const EXIT: &str = "exit.json";

/// Run the shim for the container directory `dir`; returns the shim's exit code.
pub fn main(dir: &Path) -> i32 {
    match run(dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kumo shim {}: {e}", dir.display());
            1
        }
    }
}

fn run(dir: &Path) -> anyhow::Result<()> {
    let spec: ShimSpec = serde_json::from_slice(&std::fs::read(dir.join(SPEC))?)?;
    let started_at = Utc::now();
    let Some((program, args)) = spec.argv.split_first() else {
        return write_exit(dir, start_error(started_at, "no command to run".into()));
    };
    if !spec.mounts.is_empty() {
        // Before any thread starts: a user namespace can only be entered by a lone thread.
        if let Err(e) = mounts::enter(&spec.mounts, dir) {
            let mut exit = start_error(started_at, e);
            exit.reason = FAILED_MOUNT.into();
            return write_exit(dir, exit);
        }
    }
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that stopping it reaches everything it started.
        .process_group(0);
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let message = format!("failed to start {program:?}: {e}");
            return write_exit(dir, start_error(started_at, message));
        }
    };
    let pid = child.id();
    if let Err(e) = spec.cgroups.join(pid) {
        // A limit that cannot be applied must not be silently ignored.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        spec.cgroups.remove();
        let message = format!("cannot apply resource limits (cgroups): {e}");
        return write_exit(dir, start_error(started_at, message));
    }
    let pid_file = PidFile {
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
        shim_pid: std::process::id(),
        started_at,
    };
    write_atomic(&dir.join(PID), &serde_json::to_vec(&pid_file)?)?;

    let log = Arc::new(Mutex::new(LogWriter::open(&spec.log_path, spec.log_max_bytes)?));
    let mut copiers = Vec::new();
    if let Some(out) = child.stdout.take() {
        copiers.push(copy(out, Output::Stdout, log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        copiers.push(copy(err, Output::Stderr, log.clone()));
    }
    let status = child.wait()?;
    let finished_at = Utc::now();
    // As in a container: when the main process ends, whatever it left behind ends too (and
    // releases the pipes, so the copiers see the end of their input).
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    for c in copiers {
        let _ = c.join();
    }
    let oom = spec.cgroups.oom_killed();
    let signal = status.signal();
    let exit_code = status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0));
    let reason = if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    spec.cgroups.remove();
    write_exit(
        dir,
        Exit { exit_code, signal, reason: reason.into(), message: None, started_at, finished_at },
    )
}

fn copy(
    mut input: impl Read + Send + 'static,
    output: Output,
    log: Arc<Mutex<LogWriter>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut w) = log.lock() {
                        let _ = w.write(output, &buf[..n]);
                    }
                }
            }
        }
    })
}

fn start_error(at: DateTime<Utc>, message: String) -> Exit {
    Exit {
        exit_code: 128,
        signal: None,
        reason: "StartError".into(),
        message: Some(message),
        started_at: at,
        finished_at: at,
    }
}

fn write_exit(dir: &Path, exit: Exit) -> anyhow::Result<()> {
    write_atomic(&dir.join(EXIT), &serde_json::to_vec(&exit)?)?;
    Ok(())
}

/// Write a file so that a reader sees all of it or none of it.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` is the one that started at `ticks` and has not ended (a zombie
/// counts as ended).
pub fn alive(pid: u32, ticks: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some(close) = stat.rfind(')') else { return false };
    let mut fields = stat[close + 1..].split_whitespace();
    let state = fields.next().unwrap_or("Z");
    if state == "Z" || state == "X" {
        return false;
    }
    ticks == 0 || fields.nth(18).and_then(|t| t.parse::<u64>().ok()) == Some(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_its_start_time_matches() {
        let pid = std::process::id();
        let ticks = start_ticks(pid).expect("own stat");
        assert!(alive(pid, ticks));
        assert!(!alive(pid, ticks + 1));
        assert!(!alive(u32::MAX - 1, 0));
    }
}
