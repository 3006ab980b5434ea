//! Shared by the integration tests of the controllers and of the DNS server (which includes
//! this file by path): find the `kumo` binary and run `kumo up --no-agent` on free ports in a
//! temp dir (killed on drop; its log printed when a test fails), reading the DNS address from
//! its ready lines. `cargo test --workspace` builds the binary; `KUMO_BIN` or
//! `$CARGO_TARGET_DIR/debug/kumo` point elsewhere.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn kumo_bin() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("KUMO_BIN").map(PathBuf::from),
        std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("debug/kumo")),
        Some(manifest.join("../../target/debug/kumo")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

pub struct Server {
    child: Child,
    _dir: tempfile::TempDir,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The cluster DNS server (UDP and TCP).
    pub dns: std::net::SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self._dir.path().join("kumo.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- kumo log (tail) ----\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(bin: &PathBuf) -> Server {
    start_with(bin, &[])
}

/// Start kumo with extra `up` flags.
pub fn start_with(bin: &PathBuf, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = Command::new(bin)
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--api-addr", "127.0.0.1:0", "--dns-addr", "127.0.0.1:0", "--no-agent"])
        .args(["--gateway-addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("kumo.log")).expect("log file"))
        .spawn()
        .expect("spawn kumo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut ready = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            ready |= line.starts_with("kumo is ready at https://");
            // "  dns: 127.0.0.1:PORT (cluster.local)", right after the ready line.
            if let Some(rest) = line.trim_start().strip_prefix("dns: ") {
                let addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                if let (true, Some(addr)) = (ready, addr) {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let dns = rx.recv_timeout(Duration::from_secs(60)).expect("kumo ready within 60 s");
    Server { child, _dir: dir, kubeconfig: data.join("kubeconfig.yaml"), dns }
}
