//! `kumo-bench volumes` (`bench/volumes`): how fast pod volumes follow their objects, and
//! what volumes cost at pod start.
//!
//! Starts `kumo up` (control plane and agent, process runtime, no node proxy) in a temp dir,
//! runs one pod that mounts a ConfigMap, then updates the ConfigMap `--updates` times (default
//! 100) and measures, per update, the time from the API's acknowledgement of the write to the
//! new value in the pod's file (often already there: the agent's watch event and the write's
//! response leave the server together), and from just before the request was sent. The file is read on the node at the volume's directory, which
//! the process sees through a bind mount (the same inode; no polling inside the pod adds to the
//! figure). Then creates `--pods` pods (default 10) one at a time with no volume and with five
//! (configMap, secret, downwardAPI, emptyDir, projected) and measures create → `Ready`.
//! Every workload is killed on exit, whatever happens.

use crate::{client, ms, percentile, Kumo};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// kumo and the workloads its agent started, killed on drop.
struct Node {
    kumo: Kumo,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.kumo.child.kill();
        let _ = self.kumo.child.wait();
        crate::agent::kill_workloads(&self.kumo.data.join("agent"));
        // Memory-backed emptyDirs are tmpfs mounts under the data dir.
        if let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") {
            for point in table.lines().filter_map(|l| l.split(' ').nth(4)) {
                if Path::new(point).starts_with(&self.kumo.data) {
                    let _ = Command::new("umount").args(["-l", point]).status();
                }
            }
        }
    }
}

fn start(dir: &Path) -> Result<Node> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let data = data.canonicalize()?;
    let mut child = Command::new(crate::kumo_binary()?)
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--api-addr", "127.0.0.1:0", "--no-gateway", "--no-proxy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let Some(line) = lines.next() else { bail!("kumo exited before ready") };
        if let Some(rest) = line?.strip_prefix("kumo is ready at https://") {
            break rest.split_whitespace().next().unwrap_or_default().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Node { kumo: Kumo { child, addr, data } })
}

async fn send(req: reqwest::RequestBuilder) -> Result<Value> {
    let r = req.send().await?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{status}: {body}");
    }
    Ok(body)
}

fn pod(name: &str, with_volumes: bool) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "volumes"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "c", "image": "busybox", "command": ["sleep", "3600"]
        }]}
    });
    if with_volumes {
        pod["spec"]["containers"][0]["volumeMounts"] = json!([
            {"name": "cfg", "mountPath": "/etc/kumo-bench/cfg"},
            {"name": "sec", "mountPath": "/etc/kumo-bench/sec"},
            {"name": "info", "mountPath": "/etc/kumo-bench/info"},
            {"name": "scratch", "mountPath": "/kumo-bench-scratch"},
            {"name": "all", "mountPath": "/etc/kumo-bench/all"}
        ]);
        pod["spec"]["volumes"] = json!([
            {"name": "cfg", "configMap": {"name": "bench-cm"}},
            {"name": "sec", "secret": {"secretName": "bench-secret"}},
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "all", "projected": {"sources": [
                {"configMap": {"name": "bench-cm"}}, {"secret": {"name": "bench-secret"}}]}}
        ]);
    }
    pod
}

async fn wait_ready(http: &reqwest::Client, url: &str, timeout: Duration) -> Result<Value> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        let p: Value = http.get(url).send().await?.json().await?;
        let ready = p["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        if ready {
            return Ok(p);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("{url} not ready within {timeout:?}")
}

/// `kumo-bench volumes [--updates N] [--pods N]`.
pub async fn main(args: &[String]) -> Result<()> {
    let mut updates = 100usize;
    let mut pods = 10usize;
    let mut i = 0;
    while i < args.len() {
        let n: usize = args.get(i + 1).context("a number after the flag")?.parse()?;
        match args[i].as_str() {
            "--updates" => updates = n,
            "--pods" => pods = n,
            other => bail!("unknown flag {other:?}: use --updates N, --pods N"),
        }
        i += 2;
    }
    let dir = tempfile::tempdir()?;
    let node = start(dir.path())?;
    let http = client(&node.kumo)?;
    let base = format!("https://{}/api/v1/namespaces/default", node.kumo.addr);
    // The node must be registered before pods can be scheduled.
    let t0 = Instant::now();
    loop {
        let r = http.get(format!("https://{}/api/v1/nodes", node.kumo.addr)).send().await?;
        let v: Value = r.json().await?;
        if v["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("no node registered");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench-cm"},
                    "data": {"v": "0"}});
    send(http.post(format!("{base}/configmaps")).json(&cm)).await?;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-secret"},
                        "stringData": {"password": "x"}});
    send(http.post(format!("{base}/secrets")).json(&secret)).await?;

    // Update latency.
    send(http.post(format!("{base}/pods")).json(&pod("follower", true))).await?;
    let p = wait_ready(&http, &format!("{base}/pods/follower"), Duration::from_secs(60)).await?;
    let uid = p["metadata"]["uid"].as_str().context("uid")?;
    let file: PathBuf =
        node.kumo.data.join("agent/pods").join(uid).join("volumes/kubernetes.io~configmap/cfg/v");
    let (mut lat, mut from_sent) = (Vec::new(), Vec::new());
    for i in 1..=updates {
        let value = format!("update-{i}");
        let patch = json!({"data": {"v": value}});
        let sent = Instant::now();
        send(
            http.patch(format!("{base}/configmaps/bench-cm"))
                .header("Content-Type", "application/merge-patch+json")
                .body(patch.to_string()),
        )
        .await?;
        let acked = Instant::now();
        loop {
            if std::fs::read_to_string(&file).is_ok_and(|s| s == value) {
                break;
            }
            if acked.elapsed() > Duration::from_secs(30) {
                bail!("update {i} did not reach {} in 30 s", file.display());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        lat.push(acked.elapsed());
        from_sent.push(sent.elapsed());
    }
    lat.sort();
    from_sent.sort();

    // Start time with and without volumes, one pod at a time.
    let mut start_times = [Vec::new(), Vec::new()];
    for i in 0..pods {
        for (k, with) in [false, true].into_iter().enumerate() {
            let name = format!("start-{k}-{i}");
            let t0 = Instant::now();
            send(http.post(format!("{base}/pods")).json(&pod(&name, with))).await?;
            wait_ready(&http, &format!("{base}/pods/{name}"), Duration::from_secs(60)).await?;
            start_times[k].push(t0.elapsed());
            let _ = http.delete(format!("{base}/pods/{name}")).send().await?;
        }
    }
    for s in &mut start_times {
        s.sort();
    }

    let rows = [
        (
            format!("ConfigMap update → file in pod, p50 ({updates} updates)"),
            ms(percentile(&lat, 0.5)),
            "kubelet: up to sync period + cache TTL (~60 s default)",
        ),
        (
            "ConfigMap update → file in pod, p99".into(),
            ms(percentile(&lat, 0.99)),
            "goal: under 1 s",
        ),
        (
            "ConfigMap update → file in pod, max".into(),
            ms(lat.last().copied().unwrap_or_default()),
            "",
        ),
        (
            "same, from the request sent (not the ack), p50".into(),
            ms(percentile(&from_sent, 0.5)),
            "",
        ),
        ("same, from the request sent, p99".into(), ms(percentile(&from_sent, 0.99)), ""),
        (
            format!("pod create → Ready, no volume, p50 ({pods} pods)"),
            ms(percentile(&start_times[0], 0.5)),
            "",
        ),
        ("pod create → Ready, five volumes, p50".into(), ms(percentile(&start_times[1], 0.5)), ""),
        (
            "pod create → Ready, no volume, max".into(),
            ms(*start_times[0].last().unwrap_or(&Duration::ZERO)),
            "",
        ),
        (
            "pod create → Ready, five volumes, max".into(),
            ms(*start_times[1].last().unwrap_or(&Duration::ZERO)),
            "",
        ),
    ];
    crate::print_table(&rows);
    drop(node);
    Ok(())
}
