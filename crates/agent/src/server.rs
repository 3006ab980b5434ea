//! The agent's own HTTP endpoint, what the API server calls for `kubectl logs` and
//! `kubectl top` (kubelet's port 10250 in Kubernetes): `GET /containerLogs/{ns}/{pod}/{container}`
//! with kubelet's query parameters, `GET /stats/summary` (kubelet's Summary API shape),
//! `GET /healthz`. Requests carry `Authorization: Bearer <token>`.

use crate::runtime::{ContainerId, ContainerStats, LogOptions, PodRef, Runtime, RuntimeError};
use crate::stats;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server asks of the rest of the agent.
pub trait NodeView: Send + Sync + 'static {
    /// The node's name.
    fn node_name(&self) -> String;
    /// The container a log request means; `previous` asks for the attempt before the current
    /// one. The error is the message Kubernetes gives (e.g. `container "c" in pod "p" is
    /// waiting to start: ContainerCreating`), answered with 400.
    fn find_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<ContainerId, String>;
    /// Every pod on the node with its running containers (name, id), for stats.
    fn pods(&self) -> Vec<(PodRef, Vec<(String, ContainerId)>)>;
    /// The runtime that runs them.
    fn runtime(&self) -> Arc<dyn Runtime>;
}

/// How long open requests (a `kubectl logs -f`, say) may go on after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A CPU rate needs two samples this far apart at least; a closer sample reuses the last rate.
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// When a summary finds containers it has no earlier sample of, it samples again after this
/// long, so the first `kubectl top` already shows real rates rather than zeros.
const FIRST_WINDOW: Duration = Duration::from_millis(250);

/// The key of the node's own CPU sample (container ids have a `scheme://` and never clash).
const NODE_KEY: &str = "node";

/// The last CPU sample of a container or of the node, for rates.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_nanos: u64,
    rate: u64,
}

struct ServerState {
    token: String,
    view: Arc<dyn NodeView>,
    samples: Mutex<HashMap<String, Sample>>,
}

/// Serve until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    token: String,
    view: Arc<dyn NodeView>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(ServerState { token, view, samples: Mutex::new(HashMap::new()) });
    let app = Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/stats/summary", get(summary))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        // Outside the auth layer: health is public, as kubelet's healthz port is.
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state);
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let graceful = async move {
        shutdown.await;
        let _ = tx.send(true);
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful).into_future();
    // Graceful shutdown waits for every connection, and a followed log may never end.
    let deadline = async move {
        let _ = rx.wait_for(|stop| *stop).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server => r,
        () = deadline => Ok(()),
    }
}

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    let mut resp = (code, body.into()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Compares in time independent of where the first difference is, so the token cannot be
/// guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authenticate(State(st): State<Arc<ServerState>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if !st.token.is_empty() && same(t.as_bytes(), st.token.as_bytes()) => {
            next.run(req).await
        }
        _ => text(StatusCode::UNAUTHORIZED, "Unauthorized"),
    }
}

fn flag(q: &HashMap<String, String>, k: &str) -> Result<bool, String> {
    match q.get(k).map(String::as_str) {
        None | Some("") => Ok(false),
        // Go's strconv.ParseBool, which kubelet uses.
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(format!("invalid value for {k}: {v:?} is not a boolean")),
    }
}

fn int(q: &HashMap<String, String>, k: &str) -> Result<Option<i64>, String> {
    match q.get(k).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid value for {k}: {v:?} is not an integer")),
    }
}

/// kubelet's query parameters, validated as upstream validates `PodLogOptions`.
fn log_options(
    q: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<(LogOptions, bool), String> {
    let tail = int(q, "tailLines")?;
    if tail.is_some_and(|t| t < 0) {
        return Err("tailLines: Invalid value: must be greater than or equal to 0".into());
    }
    let limit = int(q, "limitBytes")?;
    if limit.is_some_and(|l| l < 1) {
        return Err("limitBytes: Invalid value: must be greater than 0".into());
    }
    let since_seconds = int(q, "sinceSeconds")?;
    if since_seconds.is_some_and(|s| s < 1) {
        return Err("sinceSeconds: Invalid value: must be greater than 0".into());
    }
    let since_time = match q.get("sinceTime").map(String::as_str) {
        None | Some("") => None,
        Some(t) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|_| format!("sinceTime: Invalid value: {t:?} is not an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
    };
    if since_seconds.is_some() && since_time.is_some() {
        return Err("at most one of sinceTime or sinceSeconds may be specified".into());
    }
    let since = since_time.or_else(|| {
        since_seconds.and_then(|s| now.checked_sub_signed(chrono::TimeDelta::seconds(s)))
    });
    let options = LogOptions {
        follow: flag(q, "follow")?,
        tail_lines: tail.map(|t| t.unsigned_abs()),
        since,
        timestamps: flag(q, "timestamps")?,
        limit_bytes: limit.map(|l| l.unsigned_abs()),
    };
    Ok((options, flag(q, "previous")?))
}

async fn container_logs(
    State(st): State<Arc<ServerState>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (options, previous) = match log_options(&q, Utc::now()) {
        Ok(o) => o,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    let id = match st.view.find_container(&namespace, &pod, &container, previous) {
        Ok(id) => id,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    match st.view.runtime().logs(&id, &options).await {
        Ok(stream) => {
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
        Err(RuntimeError::NotFound(m)) => text(StatusCode::NOT_FOUND, m),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// One round of readings: the node's and every running container's.
struct Readings {
    at: Instant,
    time: DateTime<Utc>,
    node_cpu: Option<stats::NodeCpu>,
    containers: HashMap<String, ContainerStats>,
}

async fn read_all(view: &dyn NodeView, pods: &[(PodRef, Vec<(String, ContainerId)>)]) -> Readings {
    let runtime = view.runtime();
    let ids: Vec<&ContainerId> =
        pods.iter().flat_map(|(_, cs)| cs.iter().map(|(_, id)| id)).collect();
    let results = futures::future::join_all(ids.iter().map(|id| runtime.stats(id))).await;
    let containers =
        ids.iter().zip(results).filter_map(|(id, r)| r.ok().map(|s| (id.0.clone(), s))).collect();
    Readings { at: Instant::now(), time: Utc::now(), node_cpu: stats::node_cpu().ok(), containers }
}

/// The CPU rate (nanocores) of `key` against its previous sample, recording this one.
fn rate(samples: &mut HashMap<String, Sample>, key: &str, at: Instant, cpu_nanos: u64) -> u64 {
    match samples.get(key).copied() {
        Some(p) if at.saturating_duration_since(p.at) < MIN_WINDOW => p.rate,
        Some(p) if cpu_nanos >= p.cpu_nanos => {
            let window = at.saturating_duration_since(p.at).as_nanos().max(1);
            let r = u128::from(cpu_nanos - p.cpu_nanos) * 1_000_000_000 / window;
            let r = u64::try_from(r).unwrap_or(u64::MAX);
            samples.insert(key.to_string(), Sample { at, cpu_nanos, rate: r });
            r
        }
        _ => {
            samples.insert(key.to_string(), Sample { at, cpu_nanos, rate: 0 });
            0
        }
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn summary(State(st): State<Arc<ServerState>>) -> Response {
    let pods = st.view.pods();
    let mut readings = read_all(st.view.as_ref(), &pods).await;
    let unseen = {
        let mut samples = st.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<&str> = readings.containers.keys().map(String::as_str).collect();
        if readings.node_cpu.is_some() {
            keys.push(NODE_KEY);
        }
        let unseen = keys.iter().any(|k| !samples.contains_key(*k));
        if unseen {
            for (k, s) in &readings.containers {
                rate(&mut samples, k, readings.at, s.cpu_usage_core_nanos);
            }
            if let Some(c) = readings.node_cpu {
                rate(&mut samples, NODE_KEY, readings.at, c.usage_core_nanos);
            }
        }
        unseen
    };
    if unseen {
        tokio::time::sleep(FIRST_WINDOW).await;
        readings = read_all(st.view.as_ref(), &pods).await;
    }
    let node_mem = stats::node_memory().ok();
    let now = time(readings.time);
    let mut samples = st.samples.lock().unwrap_or_else(|p| p.into_inner());
    let node_rate = readings
        .node_cpu
        .map(|c| (rate(&mut samples, NODE_KEY, readings.at, c.usage_core_nanos), c));
    let mut pod_items = Vec::new();
    for (pod, containers) in &pods {
        let (mut cpu_sum, mut rate_sum, mut mem_sum) = (0u64, 0u64, 0u64);
        let mut items = Vec::new();
        for (name, id) in containers {
            let Some(s) = readings.containers.get(&id.0) else { continue };
            let r = rate(&mut samples, &id.0, readings.at, s.cpu_usage_core_nanos);
            cpu_sum = cpu_sum.saturating_add(s.cpu_usage_core_nanos);
            rate_sum = rate_sum.saturating_add(r);
            mem_sum = mem_sum.saturating_add(s.memory_working_set_bytes);
            items.push(json!({
                "name": name,
                "cpu": {"time": now, "usageNanoCores": r, "usageCoreNanoSeconds": s.cpu_usage_core_nanos},
                "memory": {"time": now, "workingSetBytes": s.memory_working_set_bytes},
            }));
        }
        pod_items.push(json!({
            "podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "containers": items,
            "cpu": {"time": now, "usageNanoCores": rate_sum, "usageCoreNanoSeconds": cpu_sum},
            "memory": {"time": now, "workingSetBytes": mem_sum},
        }));
    }
    // Forget containers that are gone, so the map does not grow with every restart.
    let live: HashSet<&str> = readings.containers.keys().map(String::as_str).collect();
    samples.retain(|k, _| k == NODE_KEY || live.contains(k.as_str()));
    drop(samples);
    let mut node = json!({"nodeName": st.view.node_name()});
    if let Some((r, c)) = node_rate {
        if let Some(boot) = c.boot_time {
            node["startTime"] = json!(time(boot));
        }
        node["cpu"] =
            json!({"time": now, "usageNanoCores": r, "usageCoreNanoSeconds": c.usage_core_nanos});
    }
    if let Some(m) = node_mem {
        node["memory"] = json!({"time": now, "workingSetBytes": m.working_set_bytes,
            "usageBytes": m.usage_bytes, "availableBytes": m.available_bytes});
    }
    let body: Value = json!({"node": node, "pods": pod_items});
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{
        ContainerConfig, ContainerInfo, ContainerState, ExecResult, Exit, LogStream, SandboxConfig,
        SandboxId,
    };
    use async_trait::async_trait;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct FakeRuntime {
        calls: AtomicU64,
        last_options: Mutex<Option<LogOptions>>,
    }

    fn nope<T>() -> Result<T, RuntimeError> {
        Err(RuntimeError::Other("not in this fake".into()))
    }

    #[async_trait]
    impl Runtime for FakeRuntime {
        fn name(&self) -> &'static str {
            "fake"
        }
        async fn version(&self) -> Result<String, RuntimeError> {
            nope()
        }
        async fn ensure_image(&self, _: &str) -> Result<String, RuntimeError> {
            nope()
        }
        async fn create_sandbox(&self, _: &SandboxConfig) -> Result<SandboxId, RuntimeError> {
            nope()
        }
        async fn remove_sandbox(&self, _: &PodRef) -> Result<(), RuntimeError> {
            nope()
        }
        async fn start_container(
            &self,
            _: &SandboxId,
            _: &ContainerConfig,
        ) -> Result<ContainerId, RuntimeError> {
            nope()
        }
        async fn container_state(&self, _: &ContainerId) -> Result<ContainerState, RuntimeError> {
            nope()
        }
        async fn wait(&self, _: &ContainerId) -> Result<Exit, RuntimeError> {
            nope()
        }
        async fn stop_container(&self, _: &ContainerId, _: Duration) -> Result<(), RuntimeError> {
            nope()
        }
        async fn remove_container(&self, _: &ContainerId) -> Result<(), RuntimeError> {
            nope()
        }
        async fn list_containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
            nope()
        }
        async fn exec(
            &self,
            _: &ContainerId,
            _: &[String],
            _: Duration,
        ) -> Result<ExecResult, RuntimeError> {
            nope()
        }
        async fn logs(
            &self,
            id: &ContainerId,
            options: &LogOptions,
        ) -> Result<LogStream, RuntimeError> {
            if id.0 == "fake://gone" {
                return Err(RuntimeError::NotFound("container fake://gone".into()));
            }
            *self.last_options.lock().expect("lock") = Some(options.clone());
            let parts =
                vec![Ok(Bytes::from_static(b"hello\n")), Ok(Bytes::from_static(b"world\n"))];
            Ok(Box::pin(futures::stream::iter(parts)))
        }
        async fn stats(&self, id: &ContainerId) -> Result<ContainerStats, RuntimeError> {
            // Each call adds 50 ms of CPU time: a busy container.
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let weight = if id.0.ends_with("a") { 1 } else { 2 };
            Ok(ContainerStats {
                cpu_usage_core_nanos: n * 50_000_000 * weight,
                memory_working_set_bytes: 1024 * 1024 * weight,
            })
        }
    }

    struct FakeView {
        runtime: Arc<FakeRuntime>,
    }

    impl NodeView for FakeView {
        fn node_name(&self) -> String {
            "node-1".into()
        }
        fn find_container(
            &self,
            namespace: &str,
            pod: &str,
            container: &str,
            previous: bool,
        ) -> Result<ContainerId, String> {
            match (namespace, pod, container, previous) {
                ("default", "web", "app", false) => Ok(ContainerId("fake://app".into())),
                ("default", "web", "gone", _) => Ok(ContainerId("fake://gone".into())),
                _ => Err(format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                )),
            }
        }
        fn pods(&self) -> Vec<(PodRef, Vec<(String, ContainerId)>)> {
            let pod = PodRef { namespace: "default".into(), name: "web".into(), uid: "u1".into() };
            vec![(
                pod,
                vec![
                    ("a".into(), ContainerId("fake://a".into())),
                    ("b".into(), ContainerId("fake://b".into())),
                ],
            )]
        }
        fn runtime(&self) -> Arc<dyn Runtime> {
            self.runtime.clone()
        }
    }

    /// A plain HTTP/1.1 exchange: status, headers (lower-cased) and the body, de-chunked.
    async fn get(
        addr: std::net::SocketAddr,
        path: &str,
        token: Option<&str>,
    ) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8(raw).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        let code = head[9..12].parse().expect("code");
        let head = head.to_ascii_lowercase();
        let body = if head.contains("transfer-encoding: chunked") {
            let mut out = String::new();
            let mut rest = body;
            loop {
                let (size, after) = rest.split_once("\r\n").expect("size");
                let n = usize::from_str_radix(size.trim(), 16).expect("hex");
                if n == 0 {
                    break;
                }
                out.push_str(&after[..n]);
                rest = &after[n + 2..];
            }
            out
        } else {
            body.to_string()
        };
        (code, head, body)
    }

    async fn start() -> (std::net::SocketAddr, Arc<FakeRuntime>, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let runtime =
            Arc::new(FakeRuntime { calls: AtomicU64::new(0), last_options: Mutex::new(None) });
        let view = Arc::new(FakeView { runtime: runtime.clone() });
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(listener, "s3cret".into(), view, async move {
            let _ = rx.await;
        }));
        (addr, runtime, tx)
    }

    #[tokio::test]
    async fn auth_health_and_logs() {
        let (addr, runtime, stop) = start().await;
        assert_eq!(get(addr, "/healthz", None).await.2, "ok");
        let path = "/containerLogs/default/web/app";
        assert_eq!(get(addr, path, None).await.0, 401);
        assert_eq!(get(addr, path, Some("wrong")).await.0, 401);
        let (code, head, body) = get(
            addr,
            "/containerLogs/default/web/app?follow=true&tailLines=5&timestamps=1&limitBytes=100&sinceTime=2026-11-23T10%3A00%3A00Z",
            Some("s3cret"),
        )
        .await;
        assert_eq!((code, body.as_str()), (200, "hello\nworld\n"));
        assert!(head.contains("content-type: text/plain"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        let opts = runtime.last_options.lock().expect("lock").clone().expect("called");
        assert!(opts.follow && opts.timestamps);
        assert_eq!((opts.tail_lines, opts.limit_bytes), (Some(5), Some(100)));
        assert_eq!(opts.since.map(|t| t.to_rfc3339()), Some("2026-11-23T10:00:00+00:00".into()));
        get(addr, "/containerLogs/default/web/app?sinceSeconds=60", Some("s3cret")).await;
        let opts = runtime.last_options.lock().expect("lock").clone().expect("called");
        let ago = Utc::now() - opts.since.expect("since");
        assert!(ago.num_seconds() >= 59 && ago.num_seconds() <= 61);

        let (code, _, body) =
            get(addr, "/containerLogs/default/web/app?previous=true", Some("s3cret")).await;
        assert_eq!(code, 400);
        assert_eq!(body, "container \"app\" in pod \"web\" is waiting to start: ContainerCreating");
        assert_eq!(get(addr, "/containerLogs/default/web/gone", Some("s3cret")).await.0, 404);
        let (code, _, body) =
            get(addr, "/containerLogs/default/web/app?tailLines=x", Some("s3cret")).await;
        assert_eq!(code, 400, "{body}");
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn summary_has_node_and_pod_usage_with_rates() {
        let (addr, _runtime, stop) = start().await;
        let (code, _, body) = get(addr, "/stats/summary", Some("s3cret")).await;
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["node"]["nodeName"], "node-1");
        assert!(v["node"]["cpu"]["usageCoreNanoSeconds"].as_u64().is_some_and(|n| n > 0));
        assert!(v["node"]["memory"]["workingSetBytes"].as_u64().is_some_and(|n| n > 0));
        assert!(v["node"]["memory"]["availableBytes"].as_u64().is_some());
        assert!(v["node"]["startTime"].as_str().is_some());
        let pod = &v["pods"][0];
        assert_eq!(pod["podRef"], json!({"name": "web", "namespace": "default", "uid": "u1"}));
        let a = &pod["containers"][0];
        assert_eq!(a["name"], "a");
        assert_eq!(a["memory"]["workingSetBytes"], 1024 * 1024);
        // 100 ms of CPU per ~250 ms window: some 0.4 cores, clearly not zero on the first call.
        let rate = a["cpu"]["usageNanoCores"].as_u64().expect("rate");
        assert!(rate > 10_000_000 && rate < 1_000_000_000, "{rate}");
        assert_eq!(pod["memory"]["workingSetBytes"], 3 * 1024 * 1024);
        let pod_rate = pod["cpu"]["usageNanoCores"].as_u64().expect("rate");
        assert!(pod_rate > rate, "{pod_rate}");
        let _ = stop.send(());
    }

    #[test]
    fn rates_come_from_the_previous_sample() {
        let mut samples = HashMap::new();
        let t0 = Instant::now();
        assert_eq!(rate(&mut samples, "c", t0, 1_000), 0);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(rate(&mut samples, "c", t1, 1_000_001_000), 500_000_000);
        // Too close to the last one: the last rate again.
        assert_eq!(
            rate(&mut samples, "c", t1 + Duration::from_millis(1), 9_000_000_000),
            500_000_000
        );
        // A counter that went back (a new process) starts over.
        assert_eq!(rate(&mut samples, "c", t1 + Duration::from_secs(1), 5), 0);
    }
}
