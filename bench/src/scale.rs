//! `kumo-bench scale` (`bench/scale`): how kumo grows. For each cluster size it starts a
//! release `kumo up` (embedded store, no node agent) in a temp dir, registers that many hollow
//! nodes in this process (`kumo-sim`), creates a trace-shaped workload of `--pods-per-node` ×
//! nodes pods (Deployments and Jobs, seeded) as fast as 32 clients can, and measures:
//!
//! - pods bound per second and pods Running per second (the whole run, and the best second),
//!   pod start-up latency p50/p99 (first seen unbound → seen Running, on this process' watch);
//! - API latency p50/p99 under that load: get, list with a label selector, cluster-wide list of
//!   every pod, create; and watch delivery (create's response → the event on an open watch);
//! - control-plane RSS (at the end and peak) and CPU seconds per 1,000 pods;
//! - binpack quality: nodes that received pods against the lower bound for the requests;
//! - node failure: the Leases of 10% of the nodes stop, and the time until every Deployment
//!   pod runs on a live node again (detection takes the configured node grace period);
//! - correctness on the way: pods whose node changed after binding, nodes over their capacity.
//!
//! Prints a table, writes `scale.csv` and `scale.png` (pods bound and Running over time) under
//! `--out`. Everything runs on this machine: control plane, hollow nodes and the measuring
//! clients share its cores.

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{ms, percentile, rss_kib};

/// Node grace period given to the control plane (upstream's default): the failure scenario
/// waits this long before the lifecycle controller notices. A shorter one (10 s was tried)
/// let Lease renewals that queued behind the load look like dead nodes, whose pods were then
/// evicted and replaced, which added load: the run stalled at 500 nodes.
const GRACE_SECONDS: u64 = 40;

struct Options {
    nodes: Vec<usize>,
    pods_per_node: usize,
    seed: u64,
    profile: String,
    startup_delay: Duration,
    out: PathBuf,
    failure: bool,
    kumo_args: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        nodes: vec![1_000, 5_000, 10_000],
        pods_per_node: 30,
        seed: 42,
        profile: "binpack".into(),
        startup_delay: Duration::ZERO,
        out: PathBuf::from("target/bench-scale"),
        failure: true,
        kumo_args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => o.nodes = vec![100, 500],
            "--nodes" => {
                o.nodes = value()?
                    .split(',')
                    .map(|n| n.trim().replace('_', "").parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--nodes: a comma-separated list of counts, e.g. 1000,5000")?
            }
            "--pods-per-node" => o.pods_per_node = value()?.parse().context("--pods-per-node")?,
            "--seed" => o.seed = value()?.parse().context("--seed")?,
            "--profile" => o.profile = value()?.clone(),
            "--startup-delay-ms" => {
                o.startup_delay = Duration::from_millis(value()?.parse().context("--startup-delay-ms")?)
            }
            "--out" => o.out = PathBuf::from(value()?),
            "--no-failure" => o.failure = false,
            "--kumo-arg" => o.kumo_args.push(value()?.clone()),
            other => bail!(
                "unknown option {other:?}; options: --quick, --nodes N[,N..], --pods-per-node N, \
                 --seed N, --profile binpack|spread, --startup-delay-ms N, --out DIR, --no-failure, \
                 --kumo-arg FLAG (repeatable, passed to `kumo up`)"
            ),
        }
    }
    if !matches!(o.profile.as_str(), "binpack" | "spread") {
        bail!("--profile is binpack (MostAllocated) or spread (LeastAllocated)");
    }
    if o.nodes.is_empty() || o.nodes.contains(&0) || o.pods_per_node == 0 {
        bail!("--nodes and --pods-per-node must be positive");
    }
    Ok(o)
}

// ---- what the pod watch sees ----------------------------------------------------------------

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: PodLite,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PodLite {
    metadata: MetaLite,
    spec: SpecLite,
    status: StatusLite,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MetaLite {
    uid: String,
    name: String,
    owner_references: Vec<OwnerLite>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OwnerLite {
    kind: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SpecLite {
    node_name: Option<String>,
    containers: Vec<ContainerLite>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContainerLite {
    resources: ResourcesLite,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResourcesLite {
    requests: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StatusLite {
    phase: Option<String>,
}

/// One pod as the bench saw it.
struct PodRecord {
    seen: Instant,
    node: Option<String>,
    running: Option<Instant>,
    service: bool,
    deleted: bool,
    terminal: bool,
    /// Bound and neither terminal nor deleted: its requests count against its node.
    holds: bool,
    cpu_millis: u64,
    memory_mib: u64,
    /// First seen in a re-list, so its start-up latency is unknown.
    from_list: bool,
}

#[derive(Default)]
struct Tracker {
    pods: HashMap<String, PodRecord>,
    bound: usize,
    running: usize,
    last_bound: Option<Instant>,
    last_running: Option<Instant>,
    /// Pods whose nodeName changed once set: a double binding.
    rebound: usize,
    /// A node's capacity: CPU millis, memory MiB, pods.
    capacity: (u64, u64, usize),
    /// What the pods holding each node request now (CPU, memory, count).
    held: HashMap<String, (u64, u64, usize)>,
    /// Nodes whose pods ever requested more than the node has, at any moment of the run.
    overcommitted: HashSet<String>,
    /// Times the pod watch was ended by the server and this process re-listed.
    relists: usize,
}

impl Tracker {
    fn on_event(&mut self, ev: WatchEvent, now: Instant) {
        let p = ev.object;
        let rec = self.pods.entry(p.metadata.uid).or_insert_with(|| {
            let (cpu, mem) = p.spec.containers.iter().fold((0, 0), |(c, m), k| {
                let r = &k.resources.requests;
                (
                    c + r.get("cpu").map_or(0, |q| cpu_millis(q)),
                    m + r.get("memory").map_or(0, |q| memory_mib(q)),
                )
            });
            PodRecord {
                seen: now,
                node: None,
                running: None,
                service: p.metadata.owner_references.iter().any(|o| o.kind == "ReplicaSet"),
                deleted: false,
                terminal: false,
                holds: false,
                cpu_millis: cpu,
                memory_mib: mem,
                from_list: false,
            }
        });
        if let Some(node) = p.spec.node_name.filter(|n| !n.is_empty()) {
            match &rec.node {
                None => {
                    if !rec.deleted && !rec.terminal {
                        let e = self.held.entry(node.clone()).or_default();
                        e.0 += rec.cpu_millis;
                        e.1 += rec.memory_mib;
                        e.2 += 1;
                        let (cpu, mem, pods) = self.capacity;
                        // What it looked like, to tell a real over-commitment from a missed
                        // event: what this watch counts on the node.
                        if (e.0 > cpu || e.1 > mem || e.2 > pods)
                            && self.overcommitted.insert(node.clone())
                        {
                            println!(
                                "  over-committed: {node} holds {}m cpu, {} MiB, {} pods \
                                 (pod {} added) after {} re-lists",
                                e.0, e.1, e.2, p.metadata.name, self.relists
                            );
                        }
                        rec.holds = true;
                    }
                    rec.node = Some(node);
                    self.bound += 1;
                    self.last_bound = Some(now);
                }
                Some(old) if *old != node => self.rebound += 1,
                Some(_) => {}
            }
        }
        match p.status.phase.as_deref() {
            Some("Running") if rec.running.is_none() => {
                rec.running = Some(now);
                self.running += 1;
                self.last_running = Some(now);
            }
            Some("Succeeded" | "Failed") => {
                if rec.running.is_none() {
                    // Finished before a Running status was seen: count it as started now.
                    rec.running = Some(now);
                    self.running += 1;
                    self.last_running = Some(now);
                }
                rec.terminal = true;
            }
            _ => {}
        }
        if ev.kind == "DELETED" {
            rec.deleted = true;
        }
        if rec.holds && (rec.deleted || rec.terminal) {
            // A terminating pod still holds its node until it is gone, as in the scheduler.
            rec.holds = false;
            if let Some(e) = rec.node.as_ref().and_then(|n| self.held.get_mut(n)) {
                e.0 -= rec.cpu_millis;
                e.1 -= rec.memory_mib;
                e.2 -= 1;
            }
        }
    }
}

fn cpu_millis(q: &str) -> u64 {
    if let Some(m) = q.strip_suffix('m') {
        m.parse().unwrap_or(0)
    } else {
        q.parse::<f64>().map_or(0, |c| (c * 1000.0).round() as u64)
    }
}

fn memory_mib(q: &str) -> u64 {
    let (n, mult) = match q {
        _ if q.ends_with("Gi") => (&q[..q.len() - 2], 1024.0),
        _ if q.ends_with("Mi") => (&q[..q.len() - 2], 1.0),
        _ if q.ends_with("Ki") => (&q[..q.len() - 2], 1.0 / 1024.0),
        _ => (q, 1.0 / (1024.0 * 1024.0)),
    };
    n.parse::<f64>().map_or(0, |v| (v * mult).ceil() as u64)
}

/// An ERROR event's object: a Status.
#[derive(Deserialize)]
struct ErrorEvent {
    object: ErrorStatus,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorStatus {
    code: u16,
    message: String,
}

#[derive(Deserialize)]
struct PodListLite {
    metadata: ListMetaLite,
    items: Vec<PodLite>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMetaLite {
    resource_version: String,
}

/// Watches every pod from the start of the run and feeds `tracker`. When the server ends the
/// watch (this process fell behind its buffer, or the history it would resume from is gone:
/// an ERROR event, 410), it re-lists and watches on from the list, as a reflector does. Pods
/// that started meanwhile count as started when the list is read; pods first seen in a list
/// are left out of the start-up latency.
async fn watch_pods(
    http: reqwest::Client,
    base: String,
    tracker: Arc<Mutex<Tracker>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    // The first watch starts before any pod exists: from now.
    let mut from: Option<String> = None;
    loop {
        let ended = watch_once(&http, &base, &tracker, &stop, from.as_deref()).await?;
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        eprintln!("  pod watch ended ({ended}); re-listing");
        from = Some(relist(&http, &base, &tracker).await?);
    }
}

/// One watch, until the run stops (Ok("stopped")) or the server ends it (Ok(why)).
async fn watch_once(
    http: &reqwest::Client,
    base: &str,
    tracker: &Mutex<Tracker>,
    stop: &AtomicBool,
    from: Option<&str>,
) -> Result<String> {
    let rv = from.map(|rv| format!("&resourceVersion={rv}")).unwrap_or_default();
    let resp = http
        .get(format!("{base}/api/v1/pods?watch=true&timeoutSeconds=7200{rv}"))
        .timeout(Duration::from_secs(7200))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("pod watch: {}", resp.status());
    }
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("pod watch broke")?;
        let now = Instant::now();
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        let mut events = Vec::new();
        let mut error = None;
        while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + pos];
            start += pos + 1;
            match serde_json::from_slice::<WatchEvent>(line) {
                Ok(ev) if ev.kind == "ERROR" => {
                    error = Some("an ERROR event".to_string());
                    break;
                }
                Ok(ev) => events.push(ev),
                Err(e) => match serde_json::from_slice::<ErrorEvent>(line) {
                    Ok(err) => {
                        error = Some(format!("{}: {}", err.object.code, err.object.message));
                        break;
                    }
                    Err(_) => bail!("pod watch: undecodable event: {e}"),
                },
            }
        }
        buf.drain(..start);
        if !events.is_empty() {
            let mut t = tracker.lock().map_err(|_| anyhow::anyhow!("tracker poisoned"))?;
            for ev in events {
                t.on_event(ev, now);
            }
        }
        if let Some(why) = error {
            return Ok(why);
        }
        if stop.load(Ordering::Relaxed) {
            return Ok("stopped".into());
        }
    }
    Ok("the server closed it".into())
}

/// Lists every pod into `tracker` (those gone since count as deleted) and returns the list's
/// resourceVersion to watch on from.
async fn relist(http: &reqwest::Client, base: &str, tracker: &Mutex<Tracker>) -> Result<String> {
    let resp =
        http.get(format!("{base}/api/v1/pods")).timeout(Duration::from_secs(600)).send().await?;
    if !resp.status().is_success() {
        bail!("pod re-list: {}", resp.status());
    }
    let list: PodListLite = serde_json::from_slice(&resp.bytes().await?).context("pod re-list")?;
    let now = Instant::now();
    let mut t = tracker.lock().map_err(|_| anyhow::anyhow!("tracker poisoned"))?;
    t.relists += 1;
    let present: HashSet<String> = list.items.iter().map(|p| p.metadata.uid.clone()).collect();
    let unseen: Vec<String> =
        present.iter().filter(|uid| !t.pods.contains_key(*uid)).cloned().collect();
    let gone: Vec<String> = t
        .pods
        .iter()
        .filter(|(uid, rec)| !rec.deleted && !present.contains(*uid))
        .map(|(uid, _)| uid.clone())
        .collect();
    for object in list.items {
        t.on_event(WatchEvent { kind: "MODIFIED".into(), object }, now);
    }
    // First seen here, not when created: their start-up latency is unknown.
    for uid in unseen {
        if let Some(rec) = t.pods.get_mut(&uid) {
            rec.from_list = true;
        }
    }
    for uid in gone {
        let object =
            PodLite { metadata: MetaLite { uid, ..MetaLite::default() }, ..PodLite::default() };
        t.on_event(WatchEvent { kind: "DELETED".into(), object }, now);
    }
    Ok(list.metadata.resource_version)
}

// ---- API latency under load -----------------------------------------------------------------

#[derive(Default)]
struct Latencies {
    get: Vec<Duration>,
    list_selector: Vec<Duration>,
    list_all: Vec<Duration>,
    create: Vec<Duration>,
    watch: Vec<Duration>,
    errors: usize,
}

/// Until `stop`, ten times a second: creates a ConfigMap and reads it back (a watch on the
/// ConfigMaps times their delivery); once a second it lists one Deployment's pods by label, and
/// every 15 s every pod in the cluster.
async fn probe(
    http: reqwest::Client,
    base: String,
    selector_app: String,
    stop: Arc<AtomicBool>,
) -> Result<Latencies> {
    let mut lat = Latencies::default();
    let cms = format!("{base}/api/v1/namespaces/probe/configmaps");
    let resp = http
        .get(format!("{cms}?watch=true&timeoutSeconds=7200"))
        .timeout(Duration::from_secs(7200))
        .send()
        .await?;
    let mut events = crate::watch_events(resp);
    let mut last_list_all: Option<Instant> = None;
    let mut last_list_selector: Option<Instant> = None;
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let name = format!("probe-{i}");
        let t = Instant::now();
        let r = http
            .post(&cms)
            .json(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": name}, "data": {"i": i.to_string()}}))
            .send()
            .await;
        let created = Instant::now();
        match r {
            Ok(r) if r.status().as_u16() == 201 => lat.create.push(created - t),
            _ => {
                lat.errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        // The ADDED event of this ConfigMap (a watch may deliver it before the response).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some((kind, obj, at))) => {
                    if kind == "ADDED" && obj["metadata"]["name"] == name.as_str() {
                        lat.watch.push(at.saturating_duration_since(created));
                        break;
                    }
                }
                _ => {
                    lat.errors += 1;
                    break;
                }
            }
        }
        match timed_get(&http, &format!("{cms}/{name}")).await {
            Some(d) => lat.get.push(d),
            None => lat.errors += 1,
        }
        if last_list_selector.is_some_and(|l| l.elapsed() < Duration::from_secs(1)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        last_list_selector = Some(Instant::now());
        let by_label =
            format!("{base}/api/v1/namespaces/sim/pods?labelSelector=app%3D{selector_app}");
        match timed_get(&http, &by_label).await {
            Some(d) => lat.list_selector.push(d),
            None => lat.errors += 1,
        }
        if last_list_all.is_none_or(|l| l.elapsed() >= Duration::from_secs(15)) {
            match timed_get(&http, &format!("{base}/api/v1/pods")).await {
                Some(d) => lat.list_all.push(d),
                None => lat.errors += 1,
            }
            last_list_all = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(lat)
}

/// How long a GET takes with its whole body read; `None` if it fails.
async fn timed_get(http: &reqwest::Client, url: &str) -> Option<Duration> {
    let t = Instant::now();
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.bytes().await.ok()?;
    Some(t.elapsed())
}

// ---- control-plane CPU and memory -----------------------------------------------------------

fn cpu_seconds(pid: u32) -> f64 {
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat, after the command in parens.
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    (ticks(11) + ticks(12)) / hz as f64
}

fn peak_rss_kib(pid: u32) -> u64 {
    crate::proc_status_kib(pid, "VmHWM:")
}

// ---- one scenario ---------------------------------------------------------------------------

struct Outcome {
    nodes: usize,
    pods: usize,
    register: Duration,
    create: Duration,
    bound_per_s: f64,
    bound_peak: f64,
    running_per_s: f64,
    running_peak: f64,
    startup_p50: Duration,
    startup_p99: Duration,
    lat: Latencies,
    rss_mib: u64,
    peak_rss_mib: u64,
    cpu_per_1000: f64,
    nodes_used: usize,
    lower_bound: usize,
    replace: Option<(usize, Duration)>,
    rebound: usize,
    overcommitted: usize,
    /// Times the bench's pod watch was ended by the server (it fell behind) and re-listed.
    relists: usize,
    /// The slowest Lease renewal of the run (from its turn in the simulator to the answer).
    renewal_max: Duration,
    /// (seconds since the first create, bound, running) every 250 ms.
    series: Vec<(f64, usize, usize)>,
}

fn scheduler_config(profile: &str) -> String {
    let strategy = if profile == "binpack" { "MostAllocated" } else { "LeastAllocated" };
    format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         profiles:\n- schedulerName: default-scheduler\n  pluginConfig:\n  - name: NodeResourcesFit\n    \
         args:\n      scoringStrategy:\n        type: {strategy}\n"
    )
}

async fn kube_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Result<()> {
    let r = http.post(url).json(body).send().await?;
    let code = r.status().as_u16();
    if code != 201 && code != 409 {
        bail!("POST {url}: {code}: {}", r.text().await.unwrap_or_default());
    }
    Ok(())
}

async fn scenario(o: &Options, nodes: usize) -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("scheduler.yaml");
    std::fs::write(&config_path, scheduler_config(&o.profile))?;
    let grace = GRACE_SECONDS.to_string();
    let mut args = vec![
        "--no-agent",
        "--no-gateway",
        "--node-monitor-grace-period",
        &grace,
        "--default-unreachable-toleration-seconds",
        "0",
        "--scheduler-config",
        config_path.to_str().context("temp path")?,
    ];
    args.extend(o.kumo_args.iter().map(String::as_str));
    let (k, _) = crate::start_with(dir.path(), &args)?;
    let pid = k.child.id();
    let http = crate::client(&k)?;
    let base = format!("https://{}", k.addr);
    let kube = kube_client(&k.data.join("kubeconfig.yaml")).await?;

    // Hollow nodes.
    let fleet = kumo_sim::hollow::Fleet::new(kumo_sim::hollow::HollowConfig {
        nodes,
        startup_delay: o.startup_delay,
        job_duration: Duration::from_secs(600),
        concurrency: 128,
        seed: o.seed,
        ..Default::default()
    })?;
    let (cpu_cap, mem_cap, max_pods) = (32_000u64, 128 * 1024u64, 110usize);
    let t = Instant::now();
    let (reg_tx, reg_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sim = tokio::spawn(kumo_sim::hollow::run(
        kube.clone(),
        fleet.clone(),
        move || {
            let _ = reg_tx.send(());
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    if reg_rx.await.is_err() {
        bail!("hollow nodes failed to register: {:?}", sim.await);
    }
    let register = t.elapsed();
    eprintln!("  {nodes} hollow nodes registered in {}", ms(register));

    // The workload.
    let spec = kumo_sim::workload::WorkloadSpec {
        pods: nodes * o.pods_per_node,
        seed: o.seed,
        namespace: "sim".into(),
        // Batch tasks outlive the run: Running counts stay comparable across sizes.
        median_task_seconds: 3_600.0,
        max_task_seconds: 7_200.0,
        ..Default::default()
    };
    let workload = kumo_sim::workload::generate(&spec);
    let total = workload.total_pods();
    for ns in ["sim", "probe"] {
        post(
            &http,
            &format!("{base}/api/v1/namespaces"),
            &json!({"apiVersion": "v1",
            "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    for pc in &workload.priority_classes {
        post(&http, &format!("{base}/apis/scheduling.k8s.io/v1/priorityclasses"), pc).await?;
    }
    let selector_app = workload
        .items
        .iter()
        .find(|i| i.kind == kumo_sim::workload::Kind::Service)
        .map_or_else(|| "none".to_string(), |i| i.name.clone());

    let tracker = Arc::new(Mutex::new(Tracker {
        capacity: (cpu_cap, mem_cap, max_pods),
        ..Tracker::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let watch = tokio::spawn(watch_pods(http.clone(), base.clone(), tracker.clone(), stop.clone()));
    let prober = tokio::spawn(probe(http.clone(), base.clone(), selector_app, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu0 = cpu_seconds(pid);

    let t0 = Instant::now();
    let series = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (tracker, series, stop) = (tracker.clone(), series.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let (b, r) = tracker.lock().map_or((0, 0), |t| (t.bound, t.running));
                if let Ok(mut s) = series.lock() {
                    s.push((t0.elapsed().as_secs_f64(), b, r));
                }
            }
        })
    };
    let items = Arc::new(workload.items);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut creators = Vec::new();
    for _ in 0..32 {
        let (http, base, items, next) = (http.clone(), base.clone(), items.clone(), next.clone());
        creators.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { return Ok::<_, anyhow::Error>(()) };
                let url = match item.kind {
                    kumo_sim::workload::Kind::Service => {
                        format!("{base}/apis/apps/v1/namespaces/sim/deployments")
                    }
                    kumo_sim::workload::Kind::Batch => {
                        format!("{base}/apis/batch/v1/namespaces/sim/jobs")
                    }
                };
                post(&http, &url, &item.object).await?;
            }
        }));
    }
    for c in creators {
        c.await??;
    }
    let create = t0.elapsed();
    eprintln!("  {} objects for {total} pods created in {}", items.len(), ms(create));

    // Until every pod is bound and Running.
    let limit = Duration::from_secs(120 + (total / 100) as u64);
    let mut last_report = Instant::now();
    loop {
        let (b, r) = {
            let t = tracker.lock().map_err(|_| anyhow::anyhow!("tracker poisoned"))?;
            (t.bound, t.running)
        };
        if b >= total && r >= total {
            break;
        }
        if watch.is_finished() {
            bail!("pod watch ended: {:?}", watch.await);
        }
        if t0.elapsed() > limit {
            bail!("after {}: {b} of {total} pods bound, {r} Running", ms(limit));
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("  {:>5.0} s: {b} bound, {r} Running of {total}", t0.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu1 = cpu_seconds(pid);
    let rss_mib = rss_kib(pid) / 1024;

    let (bound_per_s, running_per_s, startup, nodes_used, lower_bound, overcommitted, rebound) = {
        let t = tracker.lock().map_err(|_| anyhow::anyhow!("tracker poisoned"))?;
        let since = |at: Option<Instant>| at.map_or(f64::NAN, |a| (a - t0).as_secs_f64());
        let mut startup: Vec<Duration> = t
            .pods
            .values()
            .filter(|p| !p.from_list)
            .filter_map(|p| Some(p.running? - p.seen))
            .collect();
        startup.sort();
        // Binpack is judged on the pods that hold nodes now (not those deleted and replaced).
        let holding: Vec<&PodRecord> = t.pods.values().filter(|p| p.holds).collect();
        let cpu: u64 = holding.iter().map(|p| p.cpu_millis).sum();
        let mem: u64 = holding.iter().map(|p| p.memory_mib).sum();
        let used = t.held.values().filter(|(_, _, n)| *n > 0).count();
        let over = t.overcommitted.len();
        let lower = [
            cpu.div_ceil(cpu_cap) as usize,
            mem.div_ceil(mem_cap) as usize,
            holding.len().div_ceil(max_pods),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        (
            total as f64 / since(t.last_bound),
            total as f64 / since(t.last_running),
            startup,
            used,
            lower,
            over,
            t.rebound,
        )
    };
    let series: Vec<(f64, usize, usize)> = series.lock().map(|s| s.clone()).unwrap_or_default();
    let peak = |f: fn(&(f64, usize, usize)) -> usize| {
        // Best one-second window of the 250 ms samples.
        series
            .windows(5)
            .map(|w| (f(&w[4]) - f(&w[0])) as f64 / (w[4].0 - w[0].0))
            .fold(0.0, f64::max)
    };
    let bound_peak = peak(|s| s.1);
    let running_peak = peak(|s| s.2);
    eprintln!(
        "  all {total} bound in {:.1} s, Running in {:.1} s; RSS {rss_mib} MiB",
        total as f64 / bound_per_s,
        total as f64 / running_per_s
    );

    // API latency keeps being sampled for a steady period with every pod running.
    tokio::time::sleep(Duration::from_secs(10)).await;

    // Node failure: 10% of the Leases stop.
    let replace = if o.failure {
        let service_pods = {
            let t = tracker.lock().map_err(|_| anyhow::anyhow!("tracker poisoned"))?;
            t.pods.values().filter(|p| p.service && !p.deleted).count()
        };
        let stopped: HashSet<String> = fleet.stop_nodes(nodes / 10).into_iter().collect();
        let tf = Instant::now();
        let on_dead = {
            let t = tracker.lock().map_err(|_| anyhow::anyhow!("tracker poisoned"))?;
            t.pods
                .values()
                .filter(|p| p.service && !p.deleted)
                .filter(|p| p.node.as_ref().is_some_and(|n| stopped.contains(n)))
                .count()
        };
        eprintln!("  stopped {} nodes holding {on_dead} Deployment pods", stopped.len());
        let limit = Duration::from_secs(GRACE_SECONDS + 120 + (on_dead / 50) as u64);
        loop {
            let healthy = {
                let t = tracker.lock().map_err(|_| anyhow::anyhow!("tracker poisoned"))?;
                t.pods
                    .values()
                    .filter(|p| p.service && !p.deleted && !p.terminal && p.running.is_some())
                    .filter(|p| p.node.as_ref().is_some_and(|n| !stopped.contains(n)))
                    .count()
            };
            if healthy >= service_pods {
                break Some((on_dead, tf.elapsed()));
            }
            if tf.elapsed() > limit {
                eprintln!("  after {}: {healthy} of {service_pods} on live nodes", ms(limit));
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        None
    };
    let peak_rss_mib = peak_rss_kib(pid) / 1024;

    stop.store(true, Ordering::Relaxed);
    let lat = match tokio::time::timeout(Duration::from_secs(120), prober).await {
        Ok(r) => r??,
        Err(_) => bail!("the API prober did not stop"),
    };
    let _ = stop_tx.send(());
    let _ = sampler.await;
    watch.abort();
    sim.abort();
    drop(k);
    let relists = tracker.lock().map_err(|_| anyhow::anyhow!("tracker poisoned"))?.relists;
    Ok(Outcome {
        nodes,
        pods: total,
        register,
        create,
        bound_per_s,
        bound_peak,
        running_per_s,
        running_peak,
        startup_p50: percentile(&startup, 0.5),
        startup_p99: percentile(&startup, 0.99),
        lat,
        rss_mib,
        peak_rss_mib,
        cpu_per_1000: (cpu1 - cpu0) / (total as f64 / 1000.0),
        nodes_used,
        lower_bound,
        replace,
        rebound,
        overcommitted,
        relists,
        renewal_max: Duration::from_millis(fleet.stats.renewal_max_ms.load(Ordering::Relaxed)),
        series,
    })
}

// ---- report ---------------------------------------------------------------------------------

fn p50_p99(v: &mut [Duration]) -> String {
    v.sort();
    if v.is_empty() {
        return "-".into();
    }
    format!("{} / {} (n={})", ms(percentile(v, 0.5)), ms(percentile(v, 0.99)), v.len())
}

fn table(outcomes: &mut [Outcome]) -> Vec<(String, Vec<String>, &'static str)> {
    let mut rows: Vec<(String, Vec<String>, &'static str)> = Vec::new();
    let mut row = |name: &str, f: &mut dyn FnMut(&mut Outcome) -> String, anchor: &'static str| {
        rows.push((name.to_string(), outcomes.iter_mut().map(&mut *f).collect(), anchor));
    };
    row("nodes", &mut |o| o.nodes.to_string(), "");
    row("pods", &mut |o| o.pods.to_string(), "");
    row("hollow nodes registered", &mut |o| ms(o.register), "");
    row("workload objects created", &mut |o| ms(o.create), "");
    row(
        "pods bound/s (run; best second)",
        &mut |o| format!("{:.0}; {:.0}", o.bound_per_s, o.bound_peak),
        "kube-scheduler: 100-300/s default; goal ≥ 10,000",
    );
    row(
        "pods Running/s (run; best second)",
        &mut |o| format!("{:.0}; {:.0}", o.running_per_s, o.running_peak),
        "Nomad C1M: 1M containers in <5 min (3,333/s, 5,000 hosts); goal ≥ 5,000",
    );
    row(
        "pod startup p50 / p99",
        &mut |o| format!("{} / {}", ms(o.startup_p50), ms(o.startup_p99)),
        "k8s SLO: p99 ≤ 5 s",
    );
    row("API get p50 / p99", &mut |o| p50_p99(&mut o.lat.get), "k8s SLO: p99 ≤ 1 s");
    row("API create p50 / p99", &mut |o| p50_p99(&mut o.lat.create), "k8s SLO: p99 ≤ 1 s");
    row(
        "API list, label selector p50 / p99",
        &mut |o| p50_p99(&mut o.lat.list_selector),
        "k8s SLO: p99 ≤ 5 s (namespace)",
    );
    row(
        "API list all pods p50 / p99",
        &mut |o| p50_p99(&mut o.lat.list_all),
        "k8s SLO: p99 ≤ 30 s (cluster)",
    );
    row("watch delivery p50 / p99", &mut |o| p50_p99(&mut o.lat.watch), "");
    row("slowest Lease renewal", &mut |o| ms(o.renewal_max), "a node is declared dead at 40 s");
    row("API probe errors", &mut |o| o.lat.errors.to_string(), "");
    row("bench pod watch re-lists (fell behind)", &mut |o| o.relists.to_string(), "");
    row(
        "control-plane RSS at end / peak",
        &mut |o| format!("{} / {} MiB", o.rss_mib, o.peak_rss_mib),
        "goal < 1 GB at 150,000 pods",
    );
    row("control-plane CPU s per 1,000 pods", &mut |o| format!("{:.2}", o.cpu_per_1000), "");
    row(
        "binpack: nodes used / lower bound",
        &mut |o| format!("{} / {}", o.nodes_used, o.lower_bound),
        "",
    );
    row(
        "10% nodes lost: Deployment pods replaced in",
        &mut |o| match o.replace {
            Some((pods, d)) => format!("{} ({pods} pods)", ms(d)),
            None => "not within the limit".into(),
        },
        "includes the 40 s node grace period",
    );
    row(
        "correctness: rebound pods / overcommitted nodes",
        &mut |o| format!("{} / {}", o.rebound, o.overcommitted),
        "must be 0 / 0",
    );
    rows
}

fn write_csv(path: &Path, rows: &[(String, Vec<String>, &'static str)]) -> Result<()> {
    let mut s = String::new();
    for (name, values, _) in rows {
        let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
        s.push_str(&quote(name));
        for v in values {
            s.push(',');
            s.push_str(&quote(v));
        }
        s.push('\n');
    }
    std::fs::write(path, s)?;
    Ok(())
}

fn register_font() -> Result<()> {
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];
    let path = candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .context("no TrueType font found (apt-get install fonts-dejavu-core)")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{path}: not a usable font"))?;
    Ok(())
}

fn plot(path: &Path, outcomes: &[Outcome]) -> Result<()> {
    use plotters::prelude::*;
    register_font()?;
    let root = BitMapBackend::new(path, (1200, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = outcomes.iter().flat_map(|o| o.series.last().map(|s| s.0)).fold(1.0, f64::max);
    let y_max = outcomes.iter().map(|o| o.pods).max().unwrap_or(1) as f64 * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("kumo: pods bound (solid) and Running (dashed) over time", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first workload object was created")
        .y_desc("pods")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, o) in outcomes.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                o.series.iter().map(|s| (s.0, s.1 as f64)),
                color.stroke_width(2),
            ))?
            .label(format!("{} nodes, {} pods", o.nodes, o.pods))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(DashedLineSeries::new(
            o.series.iter().map(|s| (s.0, s.2 as f64)),
            6,
            4,
            color.stroke_width(2),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

pub async fn main(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    std::fs::create_dir_all(&o.out)?;
    let mut outcomes = Vec::new();
    for &nodes in &o.nodes {
        eprintln!("scale: {nodes} nodes × {} pods ({} profile)", o.pods_per_node, o.profile);
        outcomes.push(scenario(&o, nodes).await.with_context(|| format!("{nodes} nodes"))?);
    }
    let rows = table(&mut outcomes);
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let wv = rows.iter().flat_map(|r| r.1.iter().map(|v| v.chars().count())).max().unwrap_or(0);
    println!(
        "\nkumo scale ({} profile, {} pods per node, seed {}, startup delay {} ms, release)",
        o.profile,
        o.pods_per_node,
        o.seed,
        o.startup_delay.as_millis()
    );
    for (name, values, anchor) in &rows {
        let cells: Vec<String> = values.iter().map(|v| format!("{v:>wv$}")).collect();
        println!("{name:<w0$}  {}  {anchor}", cells.join("  "));
    }
    let csv = o.out.join("scale.csv");
    write_csv(&csv, &rows)?;
    let png = o.out.join("scale.png");
    match plot(&png, &outcomes) {
        Ok(()) => println!("\nwrote {} and {}", csv.display(), png.display()),
        Err(e) => println!("\nwrote {}; no plot: {e:#}", csv.display()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("250m"), 250);
        assert_eq!(cpu_millis("2"), 2000);
        assert_eq!(cpu_millis("0.5"), 500);
        assert_eq!(memory_mib("512Mi"), 512);
        assert_eq!(memory_mib("2Gi"), 2048);
        assert_eq!(memory_mib("1048576"), 1);
    }

    #[test]
    fn options() {
        let o = parse(&["--nodes".into(), "10,1_000".into(), "--profile".into(), "spread".into()])
            .unwrap();
        assert_eq!(o.nodes, vec![10, 1000]);
        assert!(parse(&["--nodes".into(), "x".into()]).is_err());
        assert!(parse(&["--profile".into(), "zig".into()]).is_err());
    }
}
