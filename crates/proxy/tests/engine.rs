//! The L7 engine on real sockets: hyper backends on loopback, the engine's gateway listener in
//! front, configuration compiled from API objects exactly as the proxy's watches deliver them.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kumo_proxy::l7::{compile, Engine, EngineConfig, ListenerKind};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A backend: answers `status` after `delay`, with its name and the HTTP version it saw.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

async fn backend(name: &'static str, status: u16, delay: Duration) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, SeqCst);
                        async move {
                            tokio::time::sleep(delay).await;
                            let body = format!("{name} {:?}", req.version());
                            let mut r = http::Response::new(Full::new(Bytes::from(body)));
                            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Backend { addr, hits }
}

/// A Service `web` (port 80) whose endpoints are `backends`, plus `objects` routing to it.
fn inputs(backends: &[&Backend], app_protocol: &str, objects: Value) -> compile::Inputs {
    let svc = json!({"metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "127.64.0.10", "ports": [{"name": "http", "port": 80, "appProtocol": app_protocol}]}});
    let slices = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Arc::new(
                serde_json::from_value(json!({
                    "metadata": {"name": format!("web-{i}"), "namespace": "default",
                                 "labels": {"kubernetes.io/service-name": "web"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": b.addr.port()}],
                    "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]}))
                .unwrap(),
            )
        })
        .collect();
    let mut i = compile::Inputs {
        services: vec![Arc::new(serde_json::from_value(svc).unwrap())],
        slices,
        ..Default::default()
    };
    for o in objects.as_array().unwrap() {
        match o["kind"].as_str().unwrap() {
            "VirtualService" => i.virtual_services.push(o.clone()),
            "DestinationRule" => i.destination_rules.push(o.clone()),
            "Ingress" => i.ingresses.push(o.clone()),
            other => panic!("{other}"),
        }
    }
    i
}

/// Start an engine with `inputs` installed; its gateway address.
async fn gateway(inputs: &compile::Inputs) -> SocketAddr {
    let engine = Engine::new(&EngineConfig::default()).unwrap();
    engine.install(compile::compile(inputs));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(engine.serve(l, ListenerKind::Edge));
    addr
}

fn vs(http: Value) -> Value {
    json!({"kind": "VirtualService", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"hosts": ["*"], "gateways": ["edge"], "http": [http]}})
}

async fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, String, Duration) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let mut req = http::Request::get(format!("http://{addr}/")).header("host", "web.example");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let t = Instant::now();
    let resp = client.request(req.body(Empty::new()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body =
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).to_string();
    (status, body, t.elapsed())
}

#[tokio::test]
async fn retries_go_to_another_endpoint() {
    let bad = backend("bad", 503, Duration::ZERO).await;
    let good = backend("good", 200, Duration::ZERO).await;
    let route = vs(json!({"retries": {"attempts": 2, "retryOn": "5xx"},
                          "route": [{"destination": {"host": "web"}}]}));
    let gw = gateway(&inputs(&[&bad, &good], "http", json!([route]))).await;
    for _ in 0..30 {
        let (status, body, _) = get(gw, &[]).await;
        assert_eq!((status, body.as_str()), (200, "good HTTP/1.1"));
    }
    assert!(bad.hits.load(SeqCst) > 0, "the failing endpoint was tried, then another");
}

#[tokio::test]
async fn per_try_timeouts_retry_within_the_route_timeout() {
    let slow = backend("slow", 200, Duration::from_millis(400)).await;
    let route = vs(json!({"timeout": "1s",
                          "retries": {"attempts": 2, "perTryTimeout": "100ms", "retryOn": "5xx"},
                          "route": [{"destination": {"host": "web"}}]}));
    let gw = gateway(&inputs(&[&slow], "http", json!([route]))).await;
    let (status, body, took) = get(gw, &[]).await;
    assert_eq!((status, body.as_str()), (504, "upstream request timeout"));
    assert_eq!(slow.hits.load(SeqCst), 3, "1 try + 2 retries");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(900), "{took:?}");
}

#[tokio::test]
async fn an_exhausted_connection_pool_answers_503_at_once() {
    let slow = backend("slow", 200, Duration::from_millis(300)).await;
    let dr = json!({"kind": "DestinationRule", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"host": "web", "trafficPolicy": {"connectionPool": {"http": {"http2MaxRequests": 1}}}}});
    let route = vs(json!({"route": [{"destination": {"host": "web"}}]}));
    let gw = gateway(&inputs(&[&slow], "http", json!([route, dr]))).await;
    let results = futures::future::join_all((0..5).map(|_| get(gw, &[]))).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let overflow: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!((ok, overflow.len()), (1, 4), "{results:?}");
    assert!(overflow.iter().all(|r| r.1.contains("overflow") && r.2 < Duration::from_millis(150)));
}

#[tokio::test]
async fn h2c_in_and_out() {
    let b = backend("h2", 200, Duration::ZERO).await;
    let route = vs(json!({"route": [{"destination": {"host": "web"}}]}));
    let gw = gateway(&inputs(&[&b], "h2c", json!([route]))).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let req = http::Request::get(format!("http://{gw}/")).body(Empty::new()).unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2, "the gateway speaks h2c");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"h2 HTTP/2.0", "and h2c to an appProtocol h2c backend");
}

#[tokio::test]
async fn consistent_hashing_keeps_a_user_on_one_endpoint() {
    let a = backend("a", 200, Duration::ZERO).await;
    let b = backend("b", 200, Duration::ZERO).await;
    let c = backend("c", 200, Duration::ZERO).await;
    let dr = json!({"kind": "DestinationRule", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"host": "web", "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}}});
    let route = vs(json!({"route": [{"destination": {"host": "web"}}]}));
    let gw = gateway(&inputs(&[&a, &b, &c], "http", json!([route, dr]))).await;
    let mut seen = std::collections::BTreeSet::new();
    for user in ["ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal"] {
        let (_, first, _) = get(gw, &[("x-user", user)]).await;
        for _ in 0..5 {
            assert_eq!(get(gw, &[("x-user", user)]).await.1, first, "{user} stays");
        }
        seen.insert(first);
    }
    assert!(seen.len() >= 2, "users spread over the endpoints: {seen:?}");
}
