//! `pods/log` and `metrics.k8s.io` against a small fake node agent on 127.0.0.1:0, registered
//! as a Node's daemon endpoint: what the API server sends an agent (path, query, bearer token),
//! how it streams the answer back, how agent errors and unreachable agents come out, and the
//! NodeMetrics/PodMetrics it builds from agent summaries.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
struct Agent {
    token: String,
    /// Query of the last log request.
    last_query: Arc<Mutex<Option<HashMap<String, String>>>>,
    /// Lets a followed log go on.
    release: Arc<tokio::sync::Notify>,
}

fn authorized(agent: &Agent, headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {}", agent.token))
}

async fn logs(
    State(agent): State<Agent>,
    headers: HeaderMap,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&agent, &headers) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    *agent.last_query.lock().expect("lock") = Some(q.clone());
    if container == "side" {
        return (
            StatusCode::BAD_REQUEST,
            format!("container \"side\" in pod \"{pod}\" is waiting to start: ContainerCreating"),
        )
            .into_response();
    }
    if q.get("follow").map(String::as_str) == Some("true") {
        let release = agent.release.clone();
        let first = futures::stream::once(async { Ok::<_, std::io::Error>("first\n".to_string()) });
        let second = futures::stream::once(async move {
            release.notified().await;
            Ok("second\n".to_string())
        });
        return Response::new(Body::from_stream(first.chain(second)));
    }
    format!("{ns}/{pod}/{container} line 1\nline 2\n").into_response()
}

async fn summary(State(agent): State<Agent>, headers: HeaderMap) -> Response {
    if !authorized(&agent, &headers) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let c = |name: &str, nanos: u64, bytes: u64| {
        json!({"name": name, "cpu": {"time": "2026-11-23T10:00:00Z", "usageNanoCores": nanos, "usageCoreNanoSeconds": 1},
            "memory": {"time": "2026-11-23T10:00:00Z", "workingSetBytes": bytes}})
    };
    axum::Json(json!({
        "node": {"nodeName": "n1", "startTime": "2026-11-23T09:00:00Z",
            "cpu": {"time": "2026-11-23T10:00:00Z", "usageNanoCores": 250_000_000u64, "usageCoreNanoSeconds": 9},
            "memory": {"time": "2026-11-23T10:00:00Z", "workingSetBytes": 512u64 << 20, "usageBytes": 1u64 << 30, "availableBytes": 1u64 << 30}},
        "pods": [
            {"podRef": {"name": "web", "namespace": "default", "uid": ""},
             "containers": [c("app", 5_000_000, 4 << 20), c("side", 1_000_000, 1 << 20)],
             "cpu": {"time": "2026-11-23T10:00:00Z", "usageNanoCores": 6_000_000, "usageCoreNanoSeconds": 2},
             "memory": {"time": "2026-11-23T10:00:00Z", "workingSetBytes": 5 << 20}},
            {"podRef": {"name": "solo", "namespace": "default", "uid": ""},
             "containers": [c("app", 2_000_000, 2 << 20)],
             "cpu": {"time": "2026-11-23T10:00:00Z", "usageNanoCores": 2_000_000, "usageCoreNanoSeconds": 1},
             "memory": {"time": "2026-11-23T10:00:00Z", "workingSetBytes": 2 << 20}},
        ],
    }))
    .into_response()
}

struct Cluster {
    _dir: tempfile::TempDir,
    server: kumo_apiserver::Running,
    client: reqwest::Client,
    base: String,
    agent: Agent,
}

impl Cluster {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.server.pki.admin_token)
            .send()
            .await
            .expect("request")
    }

    async fn json(&self, path: &str) -> (u16, Value) {
        let resp = self.get(path).await;
        let code = resp.status().as_u16();
        (code, resp.json().await.expect("json"))
    }

    async fn create(&self, path: &str, obj: Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.server.pki.admin_token)
            .json(&obj)
            .send()
            .await
            .expect("create");
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap_or_default());
    }
}

fn node(name: &str, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kind": name}},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})
}

fn pod(name: &str, node: Option<&str>, containers: &[&str]) -> Value {
    let cs: Vec<Value> =
        containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect();
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"containers": cs}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("tmp");
    let config = kumo_apiserver::Config {
        data_dir: dir.path().to_path_buf(),
        addr: "127.0.0.1:0".parse().expect("addr"),
        hosts: vec![],
        max_inflight: kumo_apiserver::priority::DEFAULT_MAX_INFLIGHT,
    };
    let store: Arc<dyn kumo_store::Store> = Arc::new(kumo_store::MemStore::new());
    let server = kumo_apiserver::start(config, store).await.expect("start");
    let agent = Agent {
        token: server.pki.admin_token.clone(),
        last_query: Arc::default(),
        release: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let agent_port = listener.local_addr().expect("addr").port();
    let app = Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/stats/summary", get(summary))
        .with_state(agent.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    // A port nothing listens on: bind, note, close.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .build()
        .expect("client");
    let c = Cluster { base: format!("https://{}", server.addr), _dir: dir, server, client, agent };
    c.create("/api/v1/nodes", node("n1", agent_port)).await;
    c.create("/api/v1/nodes", node("n2", dead_port)).await;
    let pods = "/api/v1/namespaces/default/pods";
    c.create(pods, pod("web", Some("n1"), &["app", "side"])).await;
    c.create(pods, pod("solo", Some("n1"), &["app"])).await;
    c.create(pods, pod("far", Some("n2"), &["app"])).await;
    c.create(pods, pod("pending", None, &["app"])).await;
    c
}

#[tokio::test]
async fn pod_logs_are_fetched_from_the_agent_and_streamed() {
    let c = cluster().await;
    let resp = c
        .get("/api/v1/namespaces/default/pods/solo/log?tailLines=2&timestamps=true&sinceTime=2026-11-23T10%3A00%3A00Z&limitBytes=10&previous=false&ignored=1")
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().expect("ct").starts_with("text/plain"));
    assert_eq!(resp.text().await.expect("body"), "default/solo/app line 1\nline 2\n");
    let q = c.agent.last_query.lock().expect("lock").clone().expect("asked");
    let expected: HashMap<String, String> = [
        ("tailLines", "2"),
        ("timestamps", "true"),
        ("sinceTime", "2026-11-23T10:00:00Z"),
        ("limitBytes", "10"),
        ("previous", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(q, expected);

    // Several containers: the named one, else a 400 naming the choices.
    let (code, status) = c.json("/api/v1/namespaces/default/pods/web/log").await;
    assert_eq!(code, 400);
    assert_eq!(
        status["message"],
        "a container name must be specified for pod web, choose one of: [app side]"
    );
    let (code, status) = c.json("/api/v1/namespaces/default/pods/web/log?container=nope").await;
    assert_eq!(
        (code, status["message"].as_str()),
        (400, Some("container nope is not valid for pod web"))
    );
    let resp = c.get("/api/v1/namespaces/default/pods/web/log?container=app").await;
    assert_eq!(resp.text().await.expect("body"), "default/web/app line 1\nline 2\n");

    // The agent's own 400 comes through as a Status with its message.
    let (code, status) = c.json("/api/v1/namespaces/default/pods/web/log?container=side").await;
    assert_eq!(code, 400);
    assert_eq!(status["kind"], "Status");
    assert_eq!(
        status["message"],
        "container \"side\" in pod \"web\" is waiting to start: ContainerCreating"
    );

    let (code, status) = c.json("/api/v1/namespaces/default/pods/pending/log").await;
    assert_eq!(
        (code, status["message"].as_str()),
        (400, Some("pod pending does not have a host assigned"))
    );
    let (code, _) = c.json("/api/v1/namespaces/default/pods/ghost/log").await;
    assert_eq!(code, 404);

    let (code, status) = c.json("/api/v1/namespaces/default/pods/far/log").await;
    assert_eq!(code, 500);
    let msg = status["message"].as_str().expect("message");
    assert!(msg.contains("node \"n2\"") && msg.contains("127.0.0.1:"), "{msg}");
}

#[tokio::test]
async fn followed_logs_arrive_before_the_agent_is_done() {
    let c = cluster().await;
    let resp = c.get("/api/v1/namespaces/default/pods/solo/log?follow=true").await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("the first line is not held back")
        .expect("chunk")
        .expect("bytes");
    assert_eq!(&first[..], b"first\n");
    c.agent.release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.expect("bytes"));
    }
    assert_eq!(rest, b"second\n");
}

#[tokio::test]
async fn metrics_api_is_discoverable_and_built_from_agent_summaries() {
    let c = cluster().await;
    let (_, groups) = c.json("/apis").await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(names.contains(&"metrics.k8s.io"), "{names:?}");
    let resp = c
        .client
        .get(format!("{}/apis", c.base))
        .bearer_auth(&c.server.pki.admin_token)
        .header("accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
        .send()
        .await
        .expect("aggregated");
    let agg: Value = resp.json().await.expect("json");
    let metrics = agg["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["metadata"]["name"] == "metrics.k8s.io")
        .expect("metrics group in aggregated discovery");
    assert_eq!(metrics["versions"][0]["resources"][1]["resource"], "pods");
    let (code, list) = c.json("/apis/metrics.k8s.io/v1beta1").await;
    assert_eq!(code, 200);
    assert_eq!(list["resources"][0]["kind"], "NodeMetrics");
    let (code, _) = c.json("/apis/metrics.k8s.io").await;
    assert_eq!(code, 200);
    let (_, core) = c.json("/api/v1").await;
    assert!(core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .any(|r| r["name"] == "pods/log"));

    // n2's agent does not answer: it is left out.
    let (code, nodes) = c.json("/apis/metrics.k8s.io/v1beta1/nodes").await;
    assert_eq!(code, 200);
    assert_eq!(nodes["kind"], "NodeMetricsList");
    let items = nodes["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{nodes}");
    assert_eq!(items[0]["metadata"]["name"], "n1");
    assert_eq!(items[0]["usage"], json!({"cpu": "250000000n", "memory": "512Mi"}));
    assert_eq!(items[0]["timestamp"], "2026-11-23T10:00:00Z");
    let (code, one) = c.json("/apis/metrics.k8s.io/v1beta1/nodes/n1").await;
    assert_eq!((code, one["kind"].as_str()), (200, Some("NodeMetrics")));
    let (code, _) = c.json("/apis/metrics.k8s.io/v1beta1/nodes/n2").await;
    assert_eq!(code, 404);
    let (_, none) = c.json("/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=kind%3Dn2").await;
    assert_eq!(none["items"], json!([]));

    let (code, pods) = c.json("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods").await;
    assert_eq!(code, 200);
    assert_eq!(pods["kind"], "PodMetricsList");
    let mut names: Vec<&str> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["solo", "web"]);
    let (_, all) = c.json("/apis/metrics.k8s.io/v1beta1/pods").await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2));
    let (code, web) = c.json("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web").await;
    assert_eq!(code, 200);
    assert_eq!(web["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        web["containers"],
        json!([{"name": "app", "usage": {"cpu": "5000000n", "memory": "4Mi"}},
               {"name": "side", "usage": {"cpu": "1000000n", "memory": "1Mi"}}])
    );
    let (_, selected) = c
        .json("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dsolo")
        .await;
    let items = selected["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["name"], "solo");
    let (code, _) = c.json("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/far").await;
    assert_eq!(code, 404);
}

/// Run the real kubectl against the server (in a blocking thread: the server runs on this
/// test's runtime).
async fn kubectl(c: &Cluster, args: &[&str]) -> std::process::Output {
    let kubeconfig = c.server.kubeconfig.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(&args)
            .env("HOME", kubeconfig.parent().expect("dir"))
            .output()
    })
    .await
    .expect("join")
    .expect("kubectl runs")
}

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_and_top_work() {
    if std::process::Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        eprintln!("kubectl is not on PATH: skipped");
        return;
    }
    let c = cluster().await;
    let out = stdout(&kubectl(&c, &["logs", "solo", "--tail=2"]).await);
    assert_eq!(out, "default/solo/app line 1\nline 2\n");
    let out = stdout(&kubectl(&c, &["logs", "web", "-c", "app"]).await);
    assert_eq!(out, "default/web/app line 1\nline 2\n");
    let failed = kubectl(&c, &["logs", "web", "-c", "side"]).await;
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("is waiting to start: ContainerCreating"), "{err}");

    let out = stdout(&kubectl(&c, &["top", "nodes"]).await);
    assert!(out.contains("n1") && out.contains("250m") && out.contains("512Mi"), "{out}");
    let out = stdout(&kubectl(&c, &["top", "pods", "--containers"]).await);
    assert!(out.contains("web") && out.contains("side") && out.contains("4Mi"), "{out}");
    let out = stdout(&kubectl(&c, &["top", "pods", "-A", "-l", "app=solo"]).await);
    assert!(out.contains("solo") && !out.contains("web"), "{out}");
}
