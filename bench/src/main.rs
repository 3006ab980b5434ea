//! `kumo-bench`: kumo's figures, measured against real release builds on loopback.
//!
//! - `kumo-bench` (no subcommand, `bench/run`): the foundation's figures against `kumo up` and
//!   directly against the embedded store, printed as one table: creates/s of 1 KB ConfigMaps
//!   (1 and 64 concurrent clients; HTTP API and store), list latency with 10,000 objects, watch
//!   latency (write → delivery), control-plane RSS idle and with 10,000 objects, and time from
//!   `kumo up` to ready.
//! - `kumo-bench agent` (`bench/agent`): the node agent's pod start-up latency and RSS; see
//!   [`agent`].
//! - `kumo-bench volumes` (`bench/volumes`): ConfigMap update → file latency and pod start
//!   time with volumes; see [`volumes`].
//! - `kumo-bench apply` (`bench/apply`): server-side apply against create and update of a
//!   3 KB Deployment; see [`apply`].
//! - `kumo-bench scale` (`bench/scale`): hollow nodes and a trace-shaped workload at 1,000,
//!   5,000 and 10,000 nodes: scheduling throughput, start-up and API latency, RSS and CPU per
//!   pod, binpack quality, node failure; see [`scale`].
//! - `kumo-bench serve PORT`: the trivial HTTP server the agent benchmark's pods run.

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod agent;
mod apply;
mod scale;
mod volumes;

const VALUE_1K: usize = 1000;

struct Kumo {
    child: Child,
    addr: String,
    data: PathBuf,
}

impl Drop for Kumo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kumo_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.parent().context("exe dir")?.join("kumo");
    if !p.exists() {
        bail!("{} not found: build it with `cargo build --release -p kumo`", p.display());
    }
    Ok(p)
}

/// Start `kumo up` in `dir`; returns it and the time until it printed ready.
fn start(dir: &Path) -> Result<(Kumo, Duration)> {
    start_with(dir, &[])
}

/// [`start`] with extra `kumo up` flags.
fn start_with(dir: &Path, extra: &[&str]) -> Result<(Kumo, Duration)> {
    let t0 = Instant::now();
    let data = dir.join("data");
    // KUMO_BENCH_WRAP runs kumo under a profiler, e.g. `heaptrack -o /tmp/kumo` (the CPU and
    // memory figures are then the wrapper's, not kumo's).
    let wrap = std::env::var("KUMO_BENCH_WRAP").unwrap_or_default();
    let mut wrap = wrap.split_whitespace();
    let mut child = match wrap.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(wrap).arg(kumo_binary()?);
            c
        }
        None => Command::new(kumo_binary()?),
    };
    let mut child = child
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--api-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(match std::env::var_os("KUMO_BENCH_LOG") {
            Some(f) => Stdio::from(std::fs::File::create(f)?),
            None => Stdio::null(),
        })
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let Some(line) = lines.next() else { bail!("kumo exited before ready") };
        let line = line?;
        if let Some(rest) = line.strip_prefix("kumo is ready at https://") {
            break rest.split_whitespace().next().unwrap_or_default().to_string();
        }
    };
    let ready = t0.elapsed();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((Kumo { child, addr, data }, ready))
}

fn client(k: &Kumo) -> Result<reqwest::Client> {
    let pki = k.data.join("pki");
    let mut pem = std::fs::read(pki.join("admin.crt"))?;
    pem.extend(std::fs::read(pki.join("admin.key"))?);
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.crt"))?)?)
        .identity(reqwest::Identity::from_pem(&pem)?)
        .pool_max_idle_per_host(128)
        .timeout(Duration::from_secs(60))
        .build()?)
}

fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`…); 0 if unreadable.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn configmap(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
           "data": {"payload": "x".repeat(VALUE_1K)}})
}

/// Create `total` ConfigMaps with `clients` concurrent clients; returns creates/s.
async fn http_creates(
    http: &reqwest::Client,
    url: &str,
    prefix: &str,
    total: usize,
    clients: usize,
) -> Result<f64> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, next, prefix) =
            (http.clone(), url.to_string(), next.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let r = http.post(&url).json(&configmap(&format!("{prefix}-{i}"))).send().await?;
                if r.status().as_u16() != 201 {
                    bail!("create returned {}", r.status());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(total as f64 / t0.elapsed().as_secs_f64())
}

async fn store_creates(clients: usize, total: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn kumo_store::Store> =
        Arc::new(kumo_store::EmbeddedStore::open(&dir.path().join("bench.redb"))?);
    let value = serde_json::to_vec(&configmap("x"))?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (store, next, value) = (store.clone(), next.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                store
                    .create(&format!("/registry/core/configmaps/default/cm-{i}"), value.clone())
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(total as f64 / t0.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Watch latency: time from a create's response to its ADDED event on an open watch.
/// The events of a watch response as (type, object, when the chunk holding it arrived), read
/// in a task of their own so arrival times are not delayed by the reader.
pub(crate) fn watch_events(
    resp: reqwest::Response,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, serde_json::Value, Instant)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut body = resp.bytes_stream();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            let now = Instant::now();
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if let Ok(ev) = serde_json::from_slice::<serde_json::Value>(&line) {
                    let kind = ev["type"].as_str().unwrap_or_default().to_string();
                    if tx.send((kind, ev["object"].clone(), now)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

async fn watch_latency(
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> Result<(Duration, Duration)> {
    let url = format!("{base}/api/v1/namespaces/default/configmaps");
    let list: serde_json::Value = http.get(format!("{url}?limit=1")).send().await?.json().await?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let resp = http
        .get(format!(
            "{url}?watch=true&resourceVersion={rv}&labelSelector=bench%3Dwatch&timeoutSeconds=120"
        ))
        .send()
        .await?;
    let mut rx = watch_events(resp);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("watched-{i}");
        let mut obj = configmap(&name);
        obj["metadata"]["labels"] = json!({"bench": "watch"});
        let sent = Instant::now();
        http.post(&url).json(&obj).send().await?;
        loop {
            let (_, obj, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await?
                .context("watch closed")?;
            if obj["metadata"]["name"] == name.as_str() {
                lat.push(at.saturating_duration_since(sent));
                break;
            }
        }
    }
    lat.sort();
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        // No async runtime: the pods' server stays a single small thread.
        Some("serve") => agent::serve(&args[1..]),
        Some("agent") => runtime()?.block_on(agent::main(&args[1..])),
        Some("volumes") => runtime()?.block_on(volumes::main(&args[1..])),
        Some("apply") => runtime()?.block_on(apply::main(&args[1..])),
        Some("scale") => runtime()?.block_on(scale::main(&args[1..])),
        None => runtime()?.block_on(foundation()),
        Some(other) => {
            bail!("unknown subcommand {other:?}: use none, `agent`, `volumes`, `apply` or `serve PORT`")
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn foundation() -> Result<()> {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let dir = tempfile::tempdir()?;
    // Time to ready, cold (first start creates the CA and certificates) and warm.
    let (k, cold) = start(dir.path())?;
    drop(k);
    let (k, warm) = start(dir.path())?;
    rows.push(("kumo up → ready (first start, makes PKI)".into(), ms(cold), String::new()));
    rows.push(("kumo up → ready (restart)".into(), ms(warm), String::new()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = k.child.id();
    rows.push((
        "control-plane RSS, idle".into(),
        format!("{} MiB", rss_kib(pid) / 1024),
        String::new(),
    ));
    let http = client(&k)?;
    let base = format!("https://{}", k.addr);
    let cms = format!("{base}/api/v1/namespaces/default/configmaps");

    let one = http_creates(&http, &cms, "c1", 2000, 1).await?;
    rows.push((
        "HTTP creates/s, 1 client (1 KB ConfigMap)".into(),
        format!("{one:.0}"),
        String::new(),
    ));
    let many = http_creates(&http, &cms, "c64", 8000, 64).await?;
    rows.push((
        "HTTP creates/s, 64 clients".into(),
        format!("{many:.0}"),
        "etcd 3.4 here: ~5,000 puts/s (1 KB, 64 conns, oha)".into(),
    ));
    let total_now = 10_000;
    rows.push((
        format!("control-plane RSS, {total_now} ConfigMaps"),
        format!("{} MiB", rss_kib(pid) / 1024),
        String::new(),
    ));

    let mut lat = Vec::new();
    let mut items = 0;
    for _ in 0..20 {
        let t0 = Instant::now();
        let v: serde_json::Value = http.get(&cms).send().await?.json().await?;
        lat.push(t0.elapsed());
        items = v["items"].as_array().map_or(0, Vec::len);
    }
    lat.sort();
    rows.push((
        format!("list {items} ConfigMaps (JSON), p50"),
        ms(percentile(&lat, 0.5)),
        "k8s SLO: list p99 ≤ 30 s".into(),
    ));
    rows.push((
        format!("list {items} ConfigMaps (JSON), p99"),
        ms(percentile(&lat, 0.99)),
        String::new(),
    ));
    let mut lat = Vec::new();
    for _ in 0..50 {
        let t0 = Instant::now();
        http.get(format!("{cms}?labelSelector=app%3Dnone")).send().await?.bytes().await?;
        lat.push(t0.elapsed());
    }
    lat.sort();
    rows.push((
        format!("list {items} with a selector matching none, p50"),
        ms(percentile(&lat, 0.5)),
        String::new(),
    ));

    let (p50, p99) = watch_latency(&http, &base, 200).await?;
    rows.push(("watch latency write→delivery, p50".into(), ms(p50), String::new()));
    rows.push(("watch latency write→delivery, p99".into(), ms(p99), String::new()));
    rows.push((
        "control-plane RSS after the run".into(),
        format!("{} MiB", rss_kib(pid) / 1024),
        String::new(),
    ));
    drop(k);

    let s1 = store_creates(1, 1000).await?;
    rows.push((
        "store creates/s, 1 writer (embedded, fsync)".into(),
        format!("{s1:.0}"),
        String::new(),
    ));
    let s64 = store_creates(64, 16000).await?;
    rows.push((
        "store creates/s, 64 writers (group commit)".into(),
        format!("{s64:.0}"),
        "etcd 3.4 here: ~5,000 puts/s".into(),
    ));

    print_table(&rows);
    Ok(())
}

/// Prints (figure, kumo's value, anchor) rows as an aligned table.
pub(crate) fn print_table<A: std::fmt::Display>(rows: &[(String, String, A)]) {
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(10);
    let v = rows.iter().map(|r| r.1.len()).max().unwrap_or(10);
    println!("{:w$}  {:>v$}  anchor", "figure", "kumo");
    println!("{}", "-".repeat(w + v + 10));
    for (name, value, anchor) in rows {
        println!("{name:w$}  {value:>v$}  {anchor}");
    }
}
