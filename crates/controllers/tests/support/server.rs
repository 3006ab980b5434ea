//! Shared by the integration tests: find the `kumo` binary and run `kumo up` on a free port in
//! a temp dir (killed on drop). `cargo test --workspace` builds the binary; `KUMO_BIN` or
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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(bin: &PathBuf) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = Command::new(bin)
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--api-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kumo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("kumo is ready at https://") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("kumo ready within 60 s");
    Server { child, _dir: dir, kubeconfig: data.join("kubeconfig.yaml") }
}
