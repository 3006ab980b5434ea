//! The gateway and the L7 engine end to end: real pods (Python HTTP servers run by the agent)
//! behind Services, routed by Ingress, HTTPRoute and VirtualService through `kumo up`'s
//! gateway and the ClusterIPs, with the resilience policies acting on real sockets.

use crate::harness::Cluster;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// An HTTP/1.1 keep-alive server that answers with its pod name, the path and the request
/// headers as JSON. `/status/N` answers N, `/sleep/MS` waits first; while `$HANG_FILE`
/// exists every request hangs (a backend that stops answering). `/ready` (the readiness probe)
/// fails while `$FLAG_DIR/unready-<pod>` exists.
const SERVER: &str = r#"
import http.server, json, os, time
name = os.environ.get("POD_NAME", "?")
hang = os.environ.get("HANG_FILE", "")
flags = os.environ.get("FLAG_DIR", "")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/ready":
            unready = flags and os.path.exists(os.path.join(flags, "unready-" + name))
            self.send_response(503 if unready else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if hang and os.path.exists(hang):
            time.sleep(20)
        code = 200
        parts = self.path.split("/")
        if len(parts) > 2 and parts[1] == "status":
            code = int(parts[2])
        if len(parts) > 2 and parts[1] == "sleep":
            time.sleep(int(parts[2]) / 1000)
        body = json.dumps({"pod": name, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// A Deployment of the test server and its Service (port 80, named http).
fn app(name: &str, replicas: u32, hang_file: &str) -> String {
    app_with_flags(name, replicas, hang_file, "")
}

fn app_with_flags(name: &str, replicas: u32, hang_file: &str, flag_dir: &str) -> String {
    let script: String =
        SERVER.trim_start().lines().map(|l| format!("            {l}\n")).collect();
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: python:3
        command: ["python3", "-c", "$(SCRIPT)"]
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: HANG_FILE, value: "{hang_file}"}}
        - {{name: FLAG_DIR, value: "{flag_dir}"}}
        - name: SCRIPT
          value: |
{script}
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /ready, port: http}}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    )
}

struct Reply {
    status: u16,
    body: serde_json::Value,
    headers: reqwest::header::HeaderMap,
    took: Duration,
}

/// Many requests at once over keep-alive connections.
struct Load {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Load {
    fn new() -> Load {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(30)).no_proxy().build().unwrap();
        Load { rt, http }
    }

    fn get(&self, url: &str, host: &str, headers: &[(&str, &str)]) -> Reply {
        self.many(1, 1, url, host, headers).pop().unwrap()
    }

    /// `n` GETs with `concurrency` in flight; a connection failure is status 0.
    fn many(
        &self,
        n: usize,
        concurrency: usize,
        url: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Vec<Reply> {
        use futures::StreamExt;
        let reqs = (0..n).map(|_| {
            let mut r = self.http.get(url).header("host", host);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            async move {
                let t = Instant::now();
                match r.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let headers = resp.headers().clone();
                        let text = resp.text().await.unwrap_or_default();
                        let body =
                            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
                        Reply { status, body, headers, took: t.elapsed() }
                    }
                    Err(_) => Reply {
                        status: 0,
                        body: serde_json::Value::Null,
                        headers: Default::default(),
                        took: t.elapsed(),
                    },
                }
            }
        });
        self.rt.block_on(futures::stream::iter(reqs).buffer_unordered(concurrency).collect())
    }
}

fn counts(replies: &[Reply]) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for r in replies {
        *m.entry(r.status).or_insert(0) += 1;
    }
    m
}

fn pods_of(replies: &[Reply]) -> BTreeSet<String> {
    replies.iter().filter_map(|r| r.body["pod"].as_str().map(str::to_string)).collect()
}

fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

const ROUTES: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: blue}
spec:
  rules:
  - host: ing.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: blue, port: {name: http}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: kumo
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split}
spec:
  parentRefs: [{name: edge}]
  hostnames: [split.example]
  rules:
  - backendRefs:
    - {name: blue, port: 80, weight: 90}
    - {name: green, port: 80, weight: 10}
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: nowhere, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: v2}]}
    backendRefs: [{name: green, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: faults}
spec:
  hosts: [fault.example]
  gateways: [edge]
  http:
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}
    route: [{destination: {host: blue}}]
  - fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
    route: [{destination: {host: blue}}]
"#;

#[test]
fn the_gateway_routes_by_host_and_path_splits_by_weight_and_injects_faults() {
    let c = Cluster::with_proxy(&[]);
    c.kubectl_in(
        &["apply", "-f", "-"],
        &format!("{}---{}", app("blue", 2, ""), app("green", 1, "")),
    );
    c.kubectl_in(&["apply", "-f", "-"], ROUTES);
    c.kubectl(&["rollout", "status", "deployment/blue", "--timeout=60s"]);
    c.kubectl(&["rollout", "status", "deployment/green", "--timeout=60s"]);
    let gw = format!("http://{}/", c.gateway);
    let load = Load::new();
    c.eventually("the routes are served", Duration::from_secs(30), || {
        load.get(&gw, "split.example", &[]).status == 200
            && load.get(&gw, "ing.example", &[]).status == 200
    });
    // Ingress: every ready replica answers.
    let replies = load.many(40, 4, &gw, "ing.example", &[]);
    assert_eq!(counts(&replies), BTreeMap::from([(200, 40)]));
    assert_eq!(pods_of(&replies).len(), 2, "both blue replicas");
    // HTTPRoute weights 90/10 over 10,000 requests.
    let replies = load.many(10_000, 32, &gw, "split.example", &[]);
    assert_eq!(counts(&replies), BTreeMap::from([(200, 10_000)]));
    let blue = replies
        .iter()
        .filter(|r| r.body["pod"].as_str().is_some_and(|p| p.starts_with("blue-")))
        .count();
    let share = blue as f64 / 10_000.0;
    assert!((share - 0.9).abs() <= 0.02, "blue share {share}");
    // Rewrite and header filter; a missing Service is 500; no route is 404.
    let r = load.get(&format!("{gw}v2/items"), "split.example", &[]);
    assert_eq!((r.status, r.body["path"].as_str()), (200, Some("/items")), "{:?}", r.body);
    assert_eq!(r.body["headers"]["x-route"], "v2");
    assert!(r.body["pod"].as_str().unwrap().starts_with("green-"));
    assert_eq!(load.get(&format!("{gw}missing"), "split.example", &[]).status, 500);
    assert_eq!(load.get(&gw, "nobody.example", &[]).status, 404);
    // Trace context: the caller's trace goes on, with this hop's span as the parent.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = load.get(&gw, "ing.example", &[("traceparent", parent)]);
    let sent = r.body["headers"]["traceparent"].as_str().unwrap().to_string();
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            && !sent.contains("00f067aa0ba902b7"),
        "{sent}"
    );
    assert!(
        r.body["headers"]["x-request-id"].is_string()
            && r.body["headers"]["x-forwarded-for"] == "127.0.0.1"
    );
    // Fault injection: half aborted, and a delay that shows.
    let replies = load.many(1000, 16, &gw, "fault.example", &[]);
    let aborted = counts(&replies).get(&503).copied().unwrap_or(0);
    assert!((400..=600).contains(&aborted), "{:?}", counts(&replies));
    let r = load.get(&format!("{gw}delay"), "fault.example", &[]);
    assert!(r.status == 200 && r.took >= Duration::from_millis(300), "{} {:?}", r.status, r.took);
    // The mesh: the ClusterIP of an HTTP port is served at L7 and balances over the replicas.
    let ip = c.get_json(&["service", "blue"])["spec"]["clusterIP"].as_str().unwrap().to_string();
    let replies = load.many(40, 4, &format!("http://{ip}/"), "blue", &[]);
    assert_eq!(counts(&replies), BTreeMap::from([(200, 40)]));
    assert_eq!(pods_of(&replies).len(), 2);
    // Bad input: malformed requests and oversized headers are refused, the gateway lives on.
    assert!(raw(&c.gateway, b"NOT HTTP AT ALL\r\n\r\n").starts_with("HTTP/1.1 400"));
    let big =
        format!("GET / HTTP/1.1\r\nHost: ing.example\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000));
    let answer = raw(&c.gateway, big.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.is_empty(),
        "{}",
        &answer[..answer.len().min(80)]
    );
    assert_eq!(load.get(&gw, "ing.example", &[]).status, 200);
    // Every hop measured: routes, services, backends; the access log has the spans.
    let metrics = load
        .rt
        .block_on(async { reqwest::get(&c.proxy_metrics).await.unwrap().text().await.unwrap() });
    assert!(
        metrics.contains(
            r#"kumo_proxy_route_requests_total{route="httproute/default/split/0",code="200"}"#
        ),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"kumo_proxy_service_requests_total{service="default/green:80",code="200"}"#));
    assert!(metrics.contains(
        "kumo_proxy_backend_request_duration_seconds_bucket{service=\"default/blue:80\""
    ));
    assert!(metrics.contains("kumo_proxy_faults_injected_total"));
    let log = std::fs::read_to_string(c.data_dir().join("proxy/access.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("4bf92f3577b34da6a3ce929d0e0e4736"))
        .expect("the traced request is logged");
    let rec: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(rec["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(rec["route"], "ingress/default/blue/0");
    // The HTTPRoute says it is accepted, and that one backend does not resolve.
    c.eventually("the HTTPRoute's status", Duration::from_secs(10), || {
        let st = c.get_json(&["httproute", "split"]);
        let conds = &st["status"]["parents"][0]["conditions"];
        let get =
            |t: &str| conds.as_array().into_iter().flatten().find(|c| c["type"] == t).cloned();
        get("Accepted").is_some_and(|c| c["status"] == "True")
            && get("ResolvedRefs")
                .is_some_and(|c| c["status"] == "False" && c["reason"] == "BackendNotFound")
    });
    // kubectl shows the Gateway programmed with its address.
    c.eventually("the Gateway is programmed", Duration::from_secs(10), || {
        c.kubectl(&[
            "get",
            "gateway",
            "edge",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Programmed\")].status}",
        ]) == "True"
    });
}

#[test]
fn a_hanging_backend_is_ejected_fast_failures_protect_other_routes_and_it_returns() {
    let c = Cluster::with_proxy(&[]);
    let hang = c.data_dir().join("hang");
    let hang_s = hang.display().to_string();
    c.kubectl_in(
        &["apply", "-f", "-"],
        &format!("{}---{}", app("slow", 1, &hang_s), app("fast", 1, "")),
    );
    c.kubectl_in(
        &["apply", "-f", "-"],
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: kumo
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: apps}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    backendRefs: [{name: slow, port: 80}]
    timeouts: {request: 400ms}
  - backendRefs: [{name: fast, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: slow}
spec:
  host: slow
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 3s, maxEjectionPercent: 100}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: tcp-echo, port: 7000, targetPort: echo}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo, labels: {app: echo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: echo
    image: python:3
    command: ["python3", "-c", "import os, socketserver\nclass H(socketserver.StreamRequestHandler):\n  def handle(self):\n    for line in self.rfile:\n      self.wfile.write(b'echo ' + line)\nsocketserver.ThreadingTCPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"]
    ports: [{name: echo, containerPort: 7000}]
    readinessProbe: {tcpSocket: {port: echo}, periodSeconds: 1}
"#,
    );
    c.kubectl(&["rollout", "status", "deployment/slow", "--timeout=60s"]);
    c.kubectl(&["rollout", "status", "deployment/fast", "--timeout=60s"]);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/echo", "--timeout=60s"]);
    let gw = format!("http://{}/", c.gateway);
    let load = Load::new();
    c.eventually("the routes are served", Duration::from_secs(30), || {
        load.get(&format!("{gw}slow"), "x", &[]).status == 200
            && load.get(&gw, "x", &[]).status == 200
    });
    // A TCP Service (not HTTP) goes through its ClusterIP at L4.
    let ip = c.get_json(&["service", "echo"])["spec"]["clusterIP"].as_str().unwrap().to_string();
    let mut s = std::net::TcpStream::connect(format!("{ip}:7000")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"hello\n").unwrap();
    let mut buf = [0u8; 11];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"echo hello\n");
    // The backend hangs: each call times out at 400 ms, three of them eject it, and from then
    // on callers fail at once instead of waiting.
    std::fs::write(&hang, "").unwrap();
    let timed_out = load.many(3, 1, &format!("{gw}slow"), "x", &[]);
    assert!(
        timed_out.iter().all(|r| r.status == 504 && r.took >= Duration::from_millis(350)),
        "{:?}",
        counts(&timed_out)
    );
    let fast_fail = load.many(20, 4, &format!("{gw}slow"), "x", &[]);
    assert_eq!(counts(&fast_fail), BTreeMap::from([(503, 20)]));
    assert!(fast_fail.iter().all(|r| r.took < Duration::from_millis(100)), "failures are fast");
    // Meanwhile the other route keeps its latency, even with callers hammering the slow one.
    let other = std::thread::scope(|s| {
        let hammer = s.spawn(|| load.many(500, 16, &format!("{gw}slow"), "x", &[]));
        let other = Load::new().many(200, 4, &gw, "x", &[]);
        let _ = hammer.join();
        other
    });
    assert_eq!(counts(&other), BTreeMap::from([(200, 200)]));
    let mut lat: Vec<Duration> = other.iter().map(|r| r.took).collect();
    lat.sort();
    assert!(
        lat[lat.len() * 99 / 100] < Duration::from_millis(350),
        "p99 of the healthy route {:?}",
        lat[lat.len() * 99 / 100]
    );
    // Recovery: after the ejection time a trial request goes through and traffic returns.
    std::fs::remove_file(&hang).unwrap();
    c.eventually("traffic returns after the ejection", Duration::from_secs(15), || {
        load.get(&format!("{gw}slow"), "x", &[]).status == 200
    });
    let back = load.many(20, 2, &format!("{gw}slow"), "x", &[]);
    assert_eq!(counts(&back), BTreeMap::from([(200, 20)]));
    let metrics = load
        .rt
        .block_on(async { reqwest::get(&c.proxy_metrics).await.unwrap().text().await.unwrap() });
    assert!(
        metrics.contains(r#"kumo_proxy_service_ejections_total{service="default/slow:80"}"#),
        "{metrics}"
    );
}

/// An ES256 issuer for tests: its JWKS and signed tokens.
struct Issuer {
    pair: ring::signature::EcdsaKeyPair,
    jwks: String,
}

impl Issuer {
    fn new() -> Issuer {
        use base64::Engine;
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pk = pair.public_key().as_ref().to_vec();
        let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "test", "alg": "ES256",
            "x": enc(&pk[1..33]), "y": enc(&pk[33..65])}]})
        .to_string();
        Issuer { pair, jwks }
    }

    fn token(&self, claims: serde_json::Value) -> String {
        use base64::Engine;
        let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let msg = format!(
            "{}.{}",
            enc(br#"{"alg":"ES256","kid":"test","typ":"JWT"}"#),
            enc(claims.to_string().as_bytes())
        );
        let sig = self.pair.sign(&ring::rand::SystemRandom::new(), msg.as_bytes()).unwrap();
        format!("{msg}.{}", enc(sig.as_ref()))
    }
}

#[test]
fn rate_limits_load_shedding_and_jwt_access_at_the_gateway() {
    // No node proxy needed: the gateway runs in every `kumo up`.
    let c = Cluster::with_agent(&[]);
    let issuer = Issuer::new();
    let other = Issuer::new();
    let jwks: String = issuer.jwks.clone();
    c.kubectl_in(
        &["apply", "-f", "-"],
        &format!("{}---{}", app("api", 1, ""), app("secure", 1, "")),
    );
    c.kubectl_in(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  gatewayClassName: kumo
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: limited}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [limited.example]
  rules: [{{backendRefs: [{{name: api, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: guarded}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [guarded.example]
  rules: [{{backendRefs: [{{name: api, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: secure}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [secure.example]
  rules: [{{backendRefs: [{{name: secure, port: 80}}]}}]
---
apiVersion: kumo.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: rate}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: limited}}]
  rateLimit: {{requests: 50, unit: Second, burst: 50}}
---
apiVersion: kumo.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: shed}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: guarded}}]
  loadShedding: {{maxConcurrentRequests: 2, retryAfterSeconds: 2}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt}}
spec:
  selector: {{matchLabels: {{app: secure}}}}
  jwtRules:
  - issuer: https://issuer.example
    audiences: [shop]
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: need-jwt}}
spec:
  selector: {{matchLabels: {{app: secure}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["https://issuer.example/*"]}}}}]
    when: [{{key: "request.auth.claims[role]", values: [admin, shopper]}}]
"#
        ),
    );
    c.kubectl(&["rollout", "status", "deployment/api", "--timeout=60s"]);
    c.kubectl(&["rollout", "status", "deployment/secure", "--timeout=60s"]);
    let gw = format!("http://{}/", c.gateway);
    let load = Load::new();
    c.eventually("the routes are served", Duration::from_secs(30), || {
        load.get(&gw, "guarded.example", &[]).status == 200
    });
    // The rate limit: a burst of 50, then 429 with Retry-After; the rest of a flood too.
    std::thread::sleep(Duration::from_millis(1100));
    let t = Instant::now();
    let flood = load.many(2000, 64, &gw, "limited.example", &[]);
    let took = t.elapsed().as_secs_f64();
    let by = counts(&flood);
    assert_eq!(by.keys().copied().collect::<Vec<_>>(), vec![200, 429], "{by:?}");
    let expected = 50.0 + 50.0 * took;
    assert!((by[&200] as f64) <= expected + 5.0 && by[&200] >= 50, "{by:?} in {took:.2}s");
    let limited = flood.iter().find(|r| r.status == 429).unwrap();
    assert!(limited.headers.contains_key("retry-after"));
    // Load shedding: two in flight at most; the others get 503 + Retry-After at once.
    let burst = load.many(10, 10, &format!("{gw}sleep/800"), "guarded.example", &[]);
    let by = counts(&burst);
    assert_eq!((by.get(&200), by.get(&503)), (Some(&2), Some(&8)), "{by:?}");
    let shed = burst.iter().find(|r| r.status == 503).unwrap();
    assert_eq!(shed.headers["retry-after"], "2");
    assert!(shed.took < Duration::from_millis(300), "shed at once: {:?}", shed.took);
    // The process is healthy after the flood.
    assert_eq!(load.get(&gw, "guarded.example", &[]).status, 200);
    // JWT: a valid token passes; expired, wrong issuer, bad signature, wrong claim and
    // missing tokens are refused.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    let claims = |iss: &str, exp: i64, role: &str| serde_json::json!({"iss": iss, "sub": "alice", "aud": "shop", "exp": exp, "role": role});
    let bearer = |t: String| format!("Bearer {t}");
    let try_token = |auth: Option<String>| {
        let h: Vec<(&str, &str)> =
            auth.as_deref().map(|a| vec![("authorization", a)]).unwrap_or_default();
        load.get(&gw, "secure.example", &h)
    };
    let ok =
        try_token(Some(bearer(issuer.token(claims("https://issuer.example", now + 300, "admin")))));
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert!(ok.body["headers"].get("authorization").is_none(), "the token is not forwarded");
    let cases = [
        (
            "expired",
            Some(bearer(issuer.token(claims("https://issuer.example", now - 10, "admin")))),
            401,
            "Jwt is expired",
        ),
        (
            "wrong issuer",
            Some(bearer(issuer.token(claims("https://evil.example", now + 300, "admin")))),
            401,
            "Jwt issuer is not configured",
        ),
        (
            "bad signature",
            Some(bearer(other.token(claims("https://issuer.example", now + 300, "admin")))),
            401,
            "Jwt verification fails",
        ),
        (
            "claim not allowed",
            Some(bearer(issuer.token(claims("https://issuer.example", now + 300, "guest")))),
            403,
            "RBAC: access denied",
        ),
        ("missing", None, 403, "RBAC: access denied"),
    ];
    for (what, auth, status, message) in cases {
        let r = try_token(auth);
        assert_eq!(r.status, status, "{what}");
        assert_eq!(r.body.as_str().map(str::trim), Some(message), "{what}");
    }
    // Invalid policy objects are refused by validation with a clear message.
    let bad = c.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: kumo.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: bad}\nspec:\n  targetRefs: [{group: '', kind: Service, name: api}]\n",
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("rateLimit"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn a_rolling_update_under_constant_load_loses_no_request() {
    let c = Cluster::with_agent(&[]);
    c.kubectl_in(&["apply", "-f", "-"], &app("web", 3, ""));
    c.kubectl_in(
        &["apply", "-f", "-"],
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  defaultBackend: {service: {name: web, port: {number: 80}}}
"#,
    );
    c.kubectl(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":0,"maxSurge":1}}}}"#,
    ]);
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let gw = format!("http://{}/", c.gateway);
    let load = Load::new();
    c.eventually("the route is served", Duration::from_secs(30), || {
        load.get(&gw, "any", &[]).status == 200
    });
    let before = pods_of(&load.many(60, 4, &gw, "any", &[]));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let replies = std::thread::scope(|s| {
        let driver = s.spawn(|| {
            let mut all = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                all.extend(load.many(50, 4, &gw, "any", &[]));
            }
            all
        });
        c.kubectl(&["set", "env", "deployment/web", "VERSION=2"]);
        c.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]);
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        driver.join().unwrap()
    });
    let by = counts(&replies);
    assert_eq!(
        by.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "{by:?} over {} requests",
        replies.len()
    );
    let after = pods_of(&load.many(60, 4, &gw, "any", &[]));
    assert!(before.is_disjoint(&after), "all replicas replaced: {before:?} → {after:?}");
    assert!(replies.len() > 200, "{}", replies.len());
}
