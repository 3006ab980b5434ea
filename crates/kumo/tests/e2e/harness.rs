//! Shared helpers of the end-to-end tests: start the real `kumo up` binary on a free port in a
//! temp dir, wait until it is ready, drive it with the real `kubectl`, and leave nothing
//! behind (the process is killed on drop; its log is printed when a test fails).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `kubectl` users get (the dispatcher picks the minor matching the server).
pub const KUBECTL: &str = "kubectl";

/// A running `kumo up`.
pub struct Cluster {
    child: Option<Child>,
    /// The data dir (kept across restarts).
    pub dir: tempfile::TempDir,
    /// HOME for kubectl (its cache), separate per cluster.
    pub home: PathBuf,
    /// `<dir>/kubeconfig.yaml`.
    pub kubeconfig: PathBuf,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The gateway, `127.0.0.1:<port>` (every cluster runs one on a free port).
    pub gateway: String,
    /// The proxy's Prometheus endpoint, `http://127.0.0.1:<port>/metrics`.
    pub proxy_metrics: String,
    log: PathBuf,
    extra_args: Vec<String>,
    /// Released after the process is killed (`Drop` runs before fields drop).
    proxy_lock: Option<ProxyTurn>,
}

impl Cluster {
    /// Start a new control plane (no node agent: tests bring their own fake nodes) in a
    /// fresh temp dir.
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// Start a new control plane (no node agent) with extra `kumo up` flags.
    pub fn start_with(extra_args: &[&str]) -> Cluster {
        let mut args = vec!["--no-agent"];
        args.extend_from_slice(extra_args);
        Self::start_raw(&args)
    }

    /// Start a single-node cluster with its node agent; restarts back off after 1 s instead of
    /// 10 s so tests see several. No node proxy: clusters of parallel tests would all claim
    /// the same ClusterIPs (see [`Cluster::with_proxy`]).
    pub fn with_agent(extra_args: &[&str]) -> Cluster {
        let mut args = vec!["--crashloop-backoff-initial", "1", "--no-proxy"];
        args.extend_from_slice(extra_args);
        Self::start_raw(&args)
    }

    /// A whole single-node cluster as `kumo up` runs by default, node proxy included. Holds a
    /// process-wide lock while it lives, so only one test at a time serves ClusterIPs.
    pub fn with_proxy(extra_args: &[&str]) -> Cluster {
        let guard = ProxyTurn::take();
        let mut args = vec!["--crashloop-backoff-initial", "1"];
        args.extend_from_slice(extra_args);
        let mut c = Self::start_raw(&args);
        c.proxy_lock = Some(guard);
        c
    }

    fn start_raw(extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let mut c = Cluster {
            child: None,
            kubeconfig: dir.path().join("data").join("kubeconfig.yaml"),
            log: dir.path().join("kumo.log"),
            dir,
            home,
            addr: String::new(),
            gateway: String::new(),
            proxy_metrics: String::new(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            proxy_lock: None,
        };
        c.boot("127.0.0.1:0");
        c
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn boot(&mut self, api_addr: &str) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(["up", "--data-dir"])
            .arg(self.data_dir())
            .args(["--api-addr", api_addr, "--gateway-addr", "127.0.0.1:0"])
            .args(&self.extra_args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn kumo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let word = |rest: &str| rest.split_whitespace().next().unwrap_or("").to_string();
                if let Some(rest) = line.strip_prefix("kumo is ready at https://") {
                    let _ = tx.send(("api", word(rest)));
                }
                if let Some(rest) = line.strip_prefix("  gateway: http://") {
                    let _ = tx.send(("gateway", word(rest)));
                }
                if let Some(rest) = line.strip_prefix("  proxy metrics: ") {
                    let _ = tx.send(("metrics", word(rest)));
                }
                if line.starts_with("Press Ctrl-C") {
                    let _ = tx.send(("done", String::new()));
                }
            }
        });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(("api", addr)) => self.addr = addr,
                Ok(("gateway", addr)) => self.gateway = addr,
                Ok(("metrics", url)) => self.proxy_metrics = url,
                Ok(_) => break,
                Err(_) => panic!("kumo did not become ready in 60 s; log:\n{}", self.log_text()),
            }
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Kill the server with SIGKILL (no chance to clean up).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop with SIGINT (Ctrl-C) and wait for a clean exit; returns the exit status.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("kumo did not stop within 20 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start again on the same data dir and port.
    pub fn restart(&mut self) {
        self.kill();
        let addr = self.addr.clone();
        self.boot(&addr);
    }

    /// A `kubectl` command bound to this cluster.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        self.kubectl_bin_cmd(KUBECTL, args)
    }

    /// A command for a specific kubectl binary (version skew tests).
    pub fn kubectl_bin_cmd(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .args(["--request-timeout=30s"])
            .args(args);
        cmd
    }

    /// Run kubectl; returns the output whatever the exit code.
    pub fn kubectl_output(&self, args: &[&str]) -> Output {
        run_bounded(self.kubectl_cmd(args), None, Duration::from_secs(60))
    }

    /// Run kubectl with `stdin` as input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run_bounded(self.kubectl_cmd(args), Some(stdin), Duration::from_secs(60))
    }

    /// Run kubectl and insist it succeeds with no warnings on stderr; returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        self.expect_ok(args, &out)
    }

    /// Like [`Cluster::kubectl`] with stdin.
    pub fn kubectl_in(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        self.expect_ok(args, &out)
    }

    fn expect_ok(&self, args: &[&str], out: &Output) -> String {
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}\nserver log tail:\n{}",
            out.status,
            tail(&self.log_text(), 40)
        );
        assert!(
            !stderr.to_lowercase().contains("warning") && !stderr.to_lowercase().contains("error"),
            "kubectl {args:?} printed on stderr: {stderr}"
        );
        stdout
    }

    /// Run kubectl expecting failure; returns stderr.
    pub fn kubectl_fails(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// `kubectl get <what> -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a)).expect("json")
    }

    /// Write `contents` to a file in the temp dir and return its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(&p, contents).expect("write");
        p
    }

    /// Poll `f` until it returns true or `timeout` passes.
    pub fn eventually(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; server log tail:\n{}", tail(&self.log_text(), 40));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- kumo log ----\n{}", tail(&self.log_text(), 80));
        }
        self.kill();
        self.kill_workloads();
    }
}

impl Cluster {
    /// Kill what the process runtime started (shims and their workloads survive kumo by
    /// design), so no test leaves a process behind.
    pub fn kill_workloads(&self) {
        self.unmount_volumes();
        let Ok(dirs) = std::fs::read_dir(self.data_dir().join("agent/containers")) else {
            return;
        };
        for dir in dirs.flatten() {
            let Ok(text) = std::fs::read_to_string(dir.path().join("pid")) else { continue };
            let Ok(pid) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            if let Some(p) = pid["pid"].as_u64() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{p}")])
                    .stderr(Stdio::null())
                    .status();
            }
            if let Some(p) = pid["shim_pid"].as_u64() {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Cluster {
    /// Unmount what the agent mounted under the data dir (memory-backed emptyDirs) and a
    /// killed kumo could not: the temp dir can then be removed and no mount outlives a test.
    fn unmount_volumes(&self) {
        let Ok(dir) = self.data_dir().canonicalize() else { return };
        let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
        let mut points: Vec<&str> = table
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", p]).stderr(Stdio::null()).status();
        }
    }
}

/// One test at a time runs a node proxy (a lock that, unlike a `MutexGuard`, may move between
/// threads with its cluster).
pub struct ProxyTurn;

static PROXY_BUSY: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

impl ProxyTurn {
    fn take() -> ProxyTurn {
        loop {
            {
                let mut busy = PROXY_BUSY.lock().unwrap_or_else(|e| e.into_inner());
                if !*busy {
                    *busy = true;
                    return ProxyTurn;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ProxyTurn {
    fn drop(&mut self) {
        *PROXY_BUSY.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run a command with a time limit; kill it if it overruns.
pub fn run_bounded(mut cmd: Command, stdin: Option<&str>, limit: Duration) -> Output {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        let data = input.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(data.as_bytes());
        });
    }
    let id = child.id();
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
        }
    });
    let out = child.wait_with_output().expect("wait");
    let _ = tx.send(());
    out
}

/// The shared conformance manifests.
pub fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/manifests")
}
