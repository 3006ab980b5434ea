//! `kumo-bench agent`: the node agent's figures (issue 3), measured on one node.
//!
//! Starts `kumo up --no-agent` and a separate `kumo agent` process (so the agent's RSS is its
//! own), then for 1, 10 and 100 pods created at once measures, per pod, the time from just
//! before its create request to the first watch event showing it scheduled, `Running`, and with
//! its `Ready` condition `True`. Each pod runs a trivial HTTP server on the host port the agent
//! gives it (`$(PORT)`) with an `httpGet` readiness probe every second. Two servers are
//! measured: `python3 -m http.server` and `kumo-bench serve` (a few lines of std Rust, so the
//! agent's own cost shows without Python's start-up). Also reports the agent's RSS idle and with
//! 100 pods ready, and the RSS of the workloads and shims beside it.
//!
//! Workloads outlive the agent by design, so every exit path (including errors and panics)
//! deletes nothing by chance: [`Cluster`]'s `Drop` kills both kumo processes and every workload
//! and shim recorded under the agent's data dir.

use crate::{kumo_binary, percentile, rss_kib, watch_events};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = "bench-node";
const LABEL_Q: &str = "bench%3Dagent";
/// Longest wait for one round's pods to become ready, or to be gone.
const ROUND_TIMEOUT: Duration = Duration::from_secs(180);

/// Which HTTP server the pods run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Python,
    Light,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Python => "python3 -m http.server",
            Server::Light => "kumo-bench serve (std Rust)",
        }
    }
}

/// The control plane and the agent, and everything the agent started.
struct Cluster {
    up: Child,
    agent: Option<Child>,
    agent_root: PathBuf,
}

impl Cluster {
    fn agent_pid(&self) -> u32 {
        self.agent.as_ref().map_or(0, Child::id)
    }

    /// Stop the agent gracefully (SIGTERM), then kill what is left.
    fn stop_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let pid = nix::unistd::Pid::from_raw(agent.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = agent.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_agent();
        let left = kill_workloads(&self.agent_root);
        if left > 0 {
            eprintln!("kumo-bench: killed {left} leftover workload(s)");
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
    }
}

/// The containers under `root` whose workload or shim is still alive: (pid, shim pid).
fn live_containers(root: &Path) -> Vec<(Option<u32>, Option<u32>)> {
    let Ok(dirs) = std::fs::read_dir(root.join("containers")) else { return Vec::new() };
    let mut out = Vec::new();
    for d in dirs.flatten() {
        let Ok(text) = std::fs::read_to_string(d.path().join(kumo_agent::shim::PID)) else {
            continue;
        };
        let Ok(p) = serde_json::from_str::<kumo_agent::shim::PidFile>(&text) else { continue };
        let pid = kumo_agent::shim::alive(p.pid, p.start_ticks).then_some(p.pid);
        let shim =
            (kumo_agent::shim::alive(p.shim_pid, 0) && is_shim(p.shim_pid)).then_some(p.shim_pid);
        if pid.is_some() || shim.is_some() {
            out.push((pid, shim));
        }
    }
    out
}

fn is_shim(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|a| a == b"shim"))
        .unwrap_or(false)
}

/// Kill every workload (its whole process group) and shim recorded under `root`; returns how
/// many containers still had something alive.
pub(crate) fn kill_workloads(root: &Path) -> usize {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    let live = live_containers(root);
    for (pid, shim) in &live {
        if let Some(pid) = pid {
            let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        if let Some(shim) = shim {
            let _ = kill(Pid::from_raw(*shim as i32), Signal::SIGKILL);
        }
    }
    live.len()
}

/// A `kB` field of `/proc/<pid>/status` (`RssAnon`: the private part of VmRSS, without the
/// binary's file pages that processes of one executable share).
fn status_kib(pid: u32, field: &str) -> u64 {
    proc_kib(&format!("/proc/{pid}/status"), field)
}

/// Proportional set size: shared pages split among the processes that map them, so sums over
/// many processes of one binary add up to what they really use.
fn pss_kib(pid: u32) -> u64 {
    proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss")
}

fn proc_kib(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// VmRSS and PSS sums of the live workloads and of their shims, KiB.
fn workload_rss(root: &Path, loaded: &mut Loaded) {
    let live = live_containers(root);
    let work: Vec<u32> = live.iter().filter_map(|(p, _)| *p).collect();
    let shims: Vec<u32> = live.iter().filter_map(|(_, s)| *s).collect();
    loaded.live = live.len();
    loaded.workloads_kib = work.iter().map(|p| rss_kib(*p)).sum();
    loaded.workloads_pss_kib = work.iter().map(|p| pss_kib(*p)).sum();
    loaded.shims_kib = shims.iter().map(|p| rss_kib(*p)).sum();
    loaded.shims_pss_kib = shims.iter().map(|p| pss_kib(*p)).sum();
}

/// Start a child whose stdout and stderr go to `log`.
fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    Ok(cmd.stdout(out).stderr(err).spawn()?)
}

/// Start the control plane and an agent in `dir`.
fn start(dir: &Path) -> Result<(Cluster, String)> {
    let kumo = kumo_binary()?;
    let data = dir.join("data");
    let mut up = Command::new(&kumo)
        .args(["up", "--no-agent", "--data-dir"])
        .arg(&data)
        .args(["--api-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("up.log"))?)
        .spawn()?;
    let stdout = up.stdout.take().context("stdout")?;
    // From here on, dropping `cluster` stops everything started so far.
    let mut cluster = Cluster { up, agent: None, agent_root: dir.join("agent") };
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            bail!("kumo up exited before ready (see {})", dir.join("up.log").display());
        };
        if let Some(rest) = line.strip_prefix("kumo is ready at https://") {
            break rest.split_whitespace().next().unwrap_or_default().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pki = data.join("pki");
    let token = std::fs::read_to_string(pki.join("token"))?.trim().to_string();
    let agent = spawn_logged(
        Command::new(&kumo)
            .args(["agent", "--server", &format!("https://{addr}"), "--token", &token])
            .arg("--ca-file")
            .arg(pki.join("ca.crt"))
            .arg("--data-dir")
            .arg(&cluster.agent_root)
            .args(["--node-name", NODE, "--node-ip", "127.0.0.1"]),
        &dir.join("agent.log"),
    )?;
    cluster.agent = Some(agent);
    Ok((cluster, addr))
}

fn client(dir: &Path) -> Result<reqwest::Client> {
    let pki = dir.join("data").join("pki");
    let token = std::fs::read_to_string(pki.join("token"))?.trim().to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.crt"))?)?)
        .default_headers(headers)
        .pool_max_idle_per_host(128)
        .connect_timeout(Duration::from_secs(10))
        .build()?)
}

/// Wait until the Node reports Ready.
async fn wait_node_ready(http: &reqwest::Client, base: &str) -> Result<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if let Ok(r) = http.get(format!("{base}/api/v1/nodes/{NODE}")).send().await {
            if r.status().is_success() {
                let node: Value = r.json().await?;
                let ready = node["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                if ready {
                    return Ok(t0.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("node {NODE} not Ready after 60 s")
}

fn pod(name: &str, server: Server, bench_exe: &Path, www: &Path) -> Value {
    let command: Vec<String> = match server {
        Server::Python => ["python3", "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"]
            .map(String::from)
            .to_vec(),
        Server::Light => vec![bench_exe.display().to_string(), "serve".into(), "$(PORT)".into()],
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "agent"}},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "web",
                "image": "bench",
                "command": command,
                "workingDir": www.display().to_string(),
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
            }],
        },
    })
}

/// What the watch saw of a pod, and when.
#[derive(Default, Clone)]
struct Seen {
    scheduled: Option<Instant>,
    running: Option<Instant>,
    ready: Option<Instant>,
    deleted: Option<Instant>,
    last: Value,
}

/// Open a watch on the bench's pods from now on; the returned receiver gets every event.
async fn watch(
    http: &reqwest::Client,
    base: &str,
) -> Result<tokio::sync::mpsc::UnboundedReceiver<(String, Value, Instant)>> {
    let url = format!("{base}/api/v1/namespaces/default/pods");
    let list: Value =
        http.get(format!("{url}?labelSelector={LABEL_Q}")).send().await?.json().await?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let resp = http
        .get(format!(
            "{url}?watch=1&resourceVersion={rv}&labelSelector={LABEL_Q}&timeoutSeconds=900"
        ))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("watch returned {}", resp.status());
    }
    Ok(watch_events(resp))
}

/// Fold one watch event into `seen`.
fn observe(seen: &mut HashMap<String, Seen>, kind: &str, obj: Value, at: Instant) {
    let Some(name) = obj["metadata"]["name"].as_str() else { return };
    let s = seen.entry(name.to_string()).or_default();
    if obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()) {
        s.scheduled.get_or_insert(at);
    }
    if obj["status"]["phase"] == "Running" {
        s.running.get_or_insert(at);
    }
    let ready = obj["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    if ready {
        s.ready.get_or_insert(at);
    }
    if kind == "DELETED" {
        s.deleted.get_or_insert(at);
    }
    s.last = obj;
}

/// One round's latencies (sorted), ms.
struct Round {
    pods: usize,
    scheduled: Vec<Duration>,
    running: Vec<Duration>,
    ready: Vec<Duration>,
    create_wall: Duration,
    delete_wall: Duration,
}

/// Create `n` pods at once, wait until all are Ready, measure, delete them and wait until
/// they are gone. With `snapshot` (agent pid, agent root), also takes the RSS figures two
/// seconds after the last pod became ready.
async fn round(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    tag: &str,
    make: impl Fn(&str) -> Value,
    snapshot: Option<(u32, &Path)>,
) -> Result<(Round, Option<Loaded>)> {
    let mut events = watch(http, base).await?;
    let url = format!("{base}/api/v1/namespaces/default/pods");
    let names: Vec<String> = (0..n).map(|i| format!("{tag}-{n}-{i}")).collect();
    let t_all = Instant::now();
    let mut creates = Vec::new();
    for name in &names {
        let (http, url, body) = (http.clone(), url.clone(), make(name));
        creates.push(tokio::spawn(async move {
            let sent = Instant::now();
            let r = http.post(&url).json(&body).send().await?;
            if r.status().as_u16() != 201 {
                bail!("create returned {}: {}", r.status(), r.text().await.unwrap_or_default());
            }
            Ok::<_, anyhow::Error>(sent)
        }));
    }
    let mut sent = HashMap::new();
    for (name, t) in names.iter().zip(creates) {
        sent.insert(name.clone(), t.await??);
    }
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
    while names.iter().any(|n| seen.get(n).is_none_or(|s| s.ready.is_none())) {
        let Ok(Some((kind, obj, at))) = tokio::time::timeout_at(deadline, events.recv()).await
        else {
            let stuck: Vec<&String> =
                names.iter().filter(|n| seen.get(*n).is_none_or(|s| s.ready.is_none())).collect();
            let example =
                stuck.first().and_then(|n| seen.get(*n)).map(|s| s.last["status"].clone());
            bail!(
                "{} of {n} pods not Ready after {:?}; e.g. {}: {}",
                stuck.len(),
                ROUND_TIMEOUT,
                stuck.first().map_or("", |s| s.as_str()),
                example.unwrap_or_default()
            );
        };
        if obj["status"]["phase"] == "Failed" {
            bail!("pod {} failed: {}", obj["metadata"]["name"], obj["status"]);
        }
        observe(&mut seen, &kind, obj, at);
    }
    let create_wall = t_all.elapsed();
    let mut loaded = None;
    if let Some((agent_pid, root)) = snapshot {
        // Steady state: every pod ready, probes running every second.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut l = Loaded {
            agent_kib: rss_kib(agent_pid),
            agent_anon_kib: status_kib(agent_pid, "RssAnon"),
            ..Default::default()
        };
        workload_rss(root, &mut l);
        loaded = Some(l);
    }
    let lat = |f: fn(&Seen) -> Option<Instant>| -> Vec<Duration> {
        let mut v: Vec<Duration> = names
            .iter()
            .filter_map(|n| Some(f(seen.get(n)?)?.saturating_duration_since(*sent.get(n)?)))
            .collect();
        v.sort();
        v
    };
    let (scheduled, running, ready) = (lat(|s| s.scheduled), lat(|s| s.running), lat(|s| s.ready));
    let t_del = Instant::now();
    delete_all(http, base, &names).await?;
    let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
    while names.iter().any(|n| seen.get(n).is_none_or(|s| s.deleted.is_none())) {
        let Ok(Some((kind, obj, at))) = tokio::time::timeout_at(deadline, events.recv()).await
        else {
            bail!("pods not gone {:?} after deleting them", ROUND_TIMEOUT);
        };
        observe(&mut seen, &kind, obj, at);
    }
    let r = Round { pods: n, scheduled, running, ready, create_wall, delete_wall: t_del.elapsed() };
    Ok((r, loaded))
}

async fn delete_all(http: &reqwest::Client, base: &str, names: &[String]) -> Result<()> {
    let mut tasks = Vec::new();
    for name in names {
        let (http, url) = (http.clone(), format!("{base}/api/v1/namespaces/default/pods/{name}"));
        tasks.push(tokio::spawn(async move {
            let r = http.delete(&url).send().await?;
            if !r.status().is_success() && r.status().as_u16() != 404 {
                bail!("delete returned {}", r.status());
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Delete whatever bench pods are left (after an error), waiting a bounded time.
async fn delete_leftovers(http: &reqwest::Client, base: &str) {
    let url = format!("{base}/api/v1/namespaces/default/pods?labelSelector={LABEL_Q}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Ok(Ok(list)) = (match http.get(&url).send().await {
            Ok(r) => Ok(r.json::<Value>().await),
            Err(e) => Err(e),
        }) else {
            return;
        };
        let names: Vec<String> = list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            return;
        }
        let _ = delete_all(http, base, &names).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{}", d.as_millis())
}

/// RSS figures taken with 100 pods ready.
#[derive(Default, Clone, Copy)]
struct Loaded {
    agent_kib: u64,
    agent_anon_kib: u64,
    workloads_kib: u64,
    workloads_pss_kib: u64,
    shims_kib: u64,
    shims_pss_kib: u64,
    live: usize,
}

pub async fn main(args: &[String]) -> Result<()> {
    let mut servers = vec![Server::Python, Server::Light];
    let mut sizes = vec![1usize, 10, 100];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--server" => {
                servers = match it.next().map(String::as_str) {
                    Some("python") => vec![Server::Python],
                    Some("light") => vec![Server::Light],
                    Some("both") => vec![Server::Python, Server::Light],
                    other => bail!("--server python|light|both, not {other:?}"),
                }
            }
            "--pods" => {
                let list = it.next().context("--pods 1,10,100")?;
                sizes = list
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().with_context(|| format!("--pods {s:?}")))
                    .collect::<Result<_>>()?;
            }
            other => {
                bail!("unknown argument {other:?} (--server python|light|both, --pods 1,10,100)")
            }
        }
    }
    let dir = tempfile::Builder::new().prefix("kumo-bench-agent").tempdir()?;
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "ok\n")?;
    let bench_exe = std::env::current_exe()?;
    let (mut cluster, addr) = start(dir.path())?;
    let base = format!("https://{addr}");
    let http = client(dir.path())?;
    // Ctrl-C ends the run like an error: the pods and their processes are still cleaned up.
    let result = tokio::select! {
        r = measure(&http, &base, &mut cluster, &servers, &sizes, &bench_exe, &www) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if result.is_err() {
        eprintln!("kumo-bench: failed; logs in {} (kept)", dir.path().display());
        delete_leftovers(&http, &base).await;
        drop(cluster);
        // Keep the logs to look at.
        let _ = dir.keep();
        return result;
    }
    // Pods are gone; stop the agent and the control plane, then sweep anything left.
    drop(cluster);
    result
}

async fn measure(
    http: &reqwest::Client,
    base: &str,
    cluster: &mut Cluster,
    servers: &[Server],
    sizes: &[usize],
    bench_exe: &Path,
    www: &Path,
) -> Result<()> {
    let to_ready = wait_node_ready(http, base).await?;
    // Let registration settle (first heartbeats, watch set-up) before reading the idle RSS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let agent_pid = cluster.agent_pid();
    let idle = rss_kib(agent_pid);
    let idle_anon = status_kib(agent_pid, "RssAnon");
    let max = sizes.iter().copied().max().unwrap_or(0);
    let mut report = Vec::new();
    for &server in servers {
        let mut rounds = Vec::new();
        let mut loaded = Loaded::default();
        for &n in sizes {
            let tag = match server {
                Server::Python => "py",
                Server::Light => "light",
            };
            let root = cluster.agent_root.clone();
            let snapshot = (n == max).then_some((agent_pid, root.as_path()));
            let (r, snap) =
                round(http, base, n, tag, |name| pod(name, server, bench_exe, www), snapshot)
                    .await?;
            if let Some(s) = snap {
                loaded = s;
            }
            eprintln!(
                "{}: {n} pods ready in {} ms, deleted in {} ms",
                server.name(),
                r.create_wall.as_millis(),
                r.delete_wall.as_millis()
            );
            rounds.push(r);
            // Nothing may linger between rounds.
            let left = live_containers(&cluster.agent_root).len();
            if left > 0 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let left = live_containers(&cluster.agent_root).len();
                if left > 0 {
                    eprintln!(
                        "warning: {left} container(s) still alive after their pods were deleted"
                    );
                }
            }
        }
        report.push((server, rounds, loaded));
    }
    let after = rss_kib(agent_pid);
    println!("node agent benchmark: kumo up --no-agent + kumo agent (process runtime), one node");
    println!("node Ready {} ms after the agent started", to_ready.as_millis());
    println!(
        "times from just before each pod's create request to the first watch event showing it"
    );
    println!("readinessProbe httpGet periodSeconds 1 (first probe when the container starts)");
    for (server, rounds, loaded) in &report {
        println!();
        println!("server: {}", server.name());
        println!(
            "{:>4}  {:>9}  {:>11}  {:>11}  {:>11}  {:>9}  {:>9}  {:>9}   (ms)",
            "pods",
            "sched p50",
            "running p50",
            "running p99",
            "running max",
            "ready p50",
            "ready p99",
            "ready max"
        );
        for r in rounds {
            let last = |v: &[Duration]| v.last().copied().unwrap_or_default();
            println!(
                "{:>4}  {:>9}  {:>11}  {:>11}  {:>11}  {:>9}  {:>9}  {:>9}",
                r.pods,
                ms(percentile(&r.scheduled, 0.5)),
                ms(percentile(&r.running, 0.5)),
                ms(percentile(&r.running, 0.99)),
                ms(last(&r.running)),
                ms(percentile(&r.ready, 0.5)),
                ms(percentile(&r.ready, 0.99)),
                ms(last(&r.ready)),
            );
        }
        if loaded.live > 0 {
            let mib = |k: u64| k as f64 / 1024.0;
            println!(
                "with {max} pods ready: agent RSS {:.1} MiB (anon {:.1}); {} workloads VmRSS sum \
                 {:.1} MiB (PSS {:.1}), their shims {:.1} MiB (PSS {:.1})",
                mib(loaded.agent_kib),
                mib(loaded.agent_anon_kib),
                loaded.live,
                mib(loaded.workloads_kib),
                mib(loaded.workloads_pss_kib),
                mib(loaded.shims_kib),
                mib(loaded.shims_pss_kib),
            );
        }
    }
    println!();
    println!(
        "agent RSS: idle {:.1} MiB (anon {:.1}), after the run, 0 pods {:.1} MiB",
        idle as f64 / 1024.0,
        idle_anon as f64 / 1024.0,
        after as f64 / 1024.0
    );
    println!("Kubernetes SLO: p99 pod startup <= 5 s (images pre-pulled)");
    Ok(())
}

/// `kumo-bench serve PORT`: the lightest HTTP server that passes an `httpGet` probe. Answers
/// every request with `200 ok` on 127.0.0.1:PORT, one connection at a time.
pub fn serve(args: &[String]) -> Result<()> {
    let port: u16 = args
        .first()
        .context("usage: kumo-bench serve PORT")?
        .parse()
        .context("PORT must be a port number")?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        // Read the request head (the body of a GET is empty).
        while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 16 * 1024 {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        }
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_events_give_first_times() {
        let mut seen = HashMap::new();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        let t2 = t0 + Duration::from_millis(9);
        observe(&mut seen, "ADDED", json!({"metadata": {"name": "a"}, "spec": {}}), t0);
        observe(
            &mut seen,
            "MODIFIED",
            json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n"}, "status": {"phase": "Running"}}),
            t1,
        );
        observe(
            &mut seen,
            "MODIFIED",
            json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n"},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            t2,
        );
        let s = &seen["a"];
        assert_eq!(s.scheduled, Some(t1));
        assert_eq!(s.running, Some(t1));
        assert_eq!(s.ready, Some(t2));
        assert_eq!(s.deleted, None);
    }

    #[test]
    fn serve_rejects_a_bad_port() {
        assert!(serve(&["x".into()]).is_err());
        assert!(serve(&[]).is_err());
    }
}
