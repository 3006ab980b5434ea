//! One request's way through the engine, top to bottom: trace context → route match → edge
//! policies → fault injection → redirect/direct answer or forward (service policies, access
//! rules, connection pool, endpoint choice, tries with timeouts and retries, outlier
//! reports) → response headers → metrics and access log.

use super::cluster::{Cluster, Outcome};
use super::model::*;
use super::policy::{authorize, InFlight, Refusal, RequestView};
use super::rewrite::*;
use super::{Engine, Installed, ListenerKind};
use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Bodies up to this size are kept so a retry can resend them; larger ones stream once.
const REPLAY_LIMIT: u64 = 64 << 10;

/// What the access log and metrics record about an exchange.
#[derive(Default)]
struct Exchange {
    route: Option<Arc<Rule>>,
    service: Option<Arc<Cluster>>,
    backend: Option<SocketAddr>,
    attempts: u32,
    flags: Vec<&'static str>,
}

pub fn local(status: u16, body: impl Into<String>) -> Response<Body> {
    let body: String = body.into();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn refusal(r: Refusal, ex: &mut Exchange) -> Response<Body> {
    ex.flags.push(r.flag);
    let mut resp = local(r.status, r.body);
    if let Some(secs) = r.retry_after {
        resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn matches(
    route: &Route,
    host: &str,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    query: &str,
) -> bool {
    if !route.hosts.is_empty() && !route.hosts.iter().any(|h| h.matches(host)) {
        return false;
    }
    let m = &route.matcher;
    if let Some(p) = &m.path {
        if !p.matches(path) {
            return false;
        }
    }
    if let Some(mm) = &m.method {
        if !mm.matches(method) {
            return false;
        }
    }
    if let Some(a) = &m.authority {
        if !a.matches(host) {
            return false;
        }
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !m.headers.iter().all(|(n, sm)| header(n).is_some_and(|v| sm.matches(v))) {
        return false;
    }
    if m.without_headers.iter().any(|(n, sm)| header(n).is_some_and(|v| sm.matches(v))) {
        return false;
    }
    m.query.iter().all(|(n, sm)| query_pairs(query).any(|(k, v)| k == n && sm.matches(v)))
}

impl Engine {
    pub(crate) async fn handle(
        self: Arc<Self>,
        listener: Arc<super::Listener>,
        client: SocketAddr,
        client_ip: Arc<str>,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let kind = &listener.kind;
        let start = Instant::now();
        let installed = self.installed();
        let trace = Trace::from(req.headers());
        let method = req.method().as_str().to_string();
        let host = request_host(&req);
        let path = req.uri().path().to_string();
        let mut ex = Exchange::default();
        let peer = (client, &*client_ip);
        let mut resp = self.route(&installed, kind, peer, req, &host, &trace, &mut ex).await;
        let status = resp.status().as_u16();
        let took = start.elapsed();
        if let Some(rule) = &ex.route {
            rule.stats.get_or_init(|| self.metrics.route(&rule.id)).record(status, took);
        }
        strip_hop_by_hop(resp.headers_mut());
        if let Some(log) = &self.access_log {
            log.write(&super::accesslog::Record {
                listener: &listener.name,
                client: &client_ip,
                method: &method,
                authority: &host,
                path: &path,
                status,
                route: ex.route.as_ref().map(|r| r.id.as_str()),
                service: ex.service.as_ref().map(|c| c.label.as_str()),
                backend: ex.backend,
                attempts: ex.attempts,
                flags: &ex.flags,
                duration: took,
                trace_id: &trace.trace_id,
                span_id: &trace.span,
                parent_span_id: trace.parent.as_deref(),
            });
        }
        resp
    }

    #[allow(clippy::too_many_arguments)]
    async fn route(
        &self,
        installed: &Installed,
        kind: &ListenerKind,
        (client, client_ip): (SocketAddr, &str),
        req: Request<Incoming>,
        host: &str,
        trace: &Trace,
        ex: &mut Exchange,
    ) -> Response<Body> {
        let snap = &installed.snapshot;
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().as_str().to_string();
        let view = RequestView {
            client: client.ip(),
            method: &method,
            host,
            path: &path,
            headers: req.headers(),
            query: &query,
        };
        let mut guards: Vec<InFlight> = Vec::new();
        let route: &Route = match kind {
            ListenerKind::Edge => {
                if let Some(g) = self.edge_inflight() {
                    guards.push(g);
                } else {
                    return refusal(
                        Refusal {
                            status: 503,
                            retry_after: Some(1),
                            body: "overloaded: request shed\n".into(),
                            flag: "LS",
                        },
                        ex,
                    );
                }
                if let Err(r) = self.policies.admit(&snap.edge_policies, &view, &mut guards) {
                    return refusal(r, ex);
                }
                if let Some(auth) = &snap.edge_auth {
                    if let Err(r) = authorize(auth, &view, chrono::Utc::now().timestamp()) {
                        return refusal(r, ex);
                    }
                }
                match snap
                    .edge
                    .iter()
                    .find(|r| matches(r, host, &method, &path, req.headers(), &query))
                {
                    Some(r) => r,
                    None => {
                        ex.flags.push("NR");
                        return local(404, "route not found\n");
                    }
                }
            }
            ListenerKind::Service(key) => {
                let routes = snap.mesh.get(&key.service_key());
                match routes.and_then(|rs| {
                    rs.iter().find(|r| matches(r, host, &method, &path, req.headers(), &query))
                }) {
                    Some(r) => r,
                    None => match installed.defaults.get(key) {
                        Some(r) => r,
                        None => {
                            ex.flags.push("NR");
                            return local(404, "route not found\n");
                        }
                    },
                }
            }
        };
        let rule = route.rule.clone();
        ex.route = Some(rule.clone());
        if let Err(r) = self.policies.admit(&rule.policies, &view, &mut guards) {
            return refusal(r, ex);
        }
        if let Some(f) = &rule.fault {
            if let Some((delay, pct)) = f.delay {
                if rand::random::<f64>() * 100.0 < pct {
                    self.metrics.faults.fetch_add(1, Relaxed);
                    ex.flags.push("DI");
                    tokio::time::sleep(delay).await;
                }
            }
            if let Some((status, pct)) = f.abort {
                if rand::random::<f64>() * 100.0 < pct {
                    self.metrics.faults.fetch_add(1, Relaxed);
                    ex.flags.push("FI");
                    return local(status, "fault filter abort");
                }
            }
        }
        let backends = match &rule.action {
            Action::Respond { status, body } => return local(*status, body.clone()),
            Action::Redirect(r) => return redirect(r, route, &req, host),
            Action::Forward(b) => b,
        };
        let Some(backend) = choose(backends) else {
            return local(500, "no backend with a weight above 0\n");
        };
        let key = match backend {
            Backend::Cluster(k) => k,
            Backend::Invalid { status, reason } => {
                ex.flags.push("NC");
                return local(*status, format!("{reason}\n"));
            }
        };
        let Some(cluster) = self.clusters.get(key) else {
            ex.flags.push("NC");
            return local(503, "no healthy upstream");
        };
        ex.service = Some(cluster.clone());
        if let Err(r) = self.policies.admit(cluster.spec().policies(), &view, &mut guards) {
            return refusal(r, ex);
        }
        let mut strip = None;
        if let Some(auth) = snap.auth.get(&key.service_key()) {
            match authorize(auth, &view, chrono::Utc::now().timestamp()) {
                Ok(id) => strip = id.strip,
                Err(r) => return refusal(r, ex),
            }
        }
        let hash = hash_key(&cluster, &view);
        let started = Instant::now();
        let resp = self
            .forward(&cluster, &rule, route, req, client_ip, host, trace, strip, hash, ex)
            .await;
        cluster.stats.hop.record(resp.status().as_u16(), started.elapsed());
        let mut resp = resp;
        apply_ops(resp.headers_mut(), &rule.response_headers);
        drop(guards);
        resp
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        cluster: &Arc<Cluster>,
        rule: &Rule,
        route: &Route,
        req: Request<Incoming>,
        client: &str,
        host: &str,
        trace: &Trace,
        strip: Option<String>,
        hash: Option<u64>,
        ex: &mut Exchange,
    ) -> Response<Body> {
        let deadline = rule.timeout.map(|t| Instant::now() + t);
        let Ok(_slot) = cluster.slot(deadline).await else {
            ex.flags.push("UO");
            return local(
                503,
                "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            );
        };
        let (mut parts, body) = req.into_parts();
        prepare_headers(&mut parts.headers, client, host, trace, rule, strip.as_deref());
        let path_and_query = rewrite_path(&parts.uri, rule, route);
        if let Some(h) = rule.rewrite.as_ref().and_then(|r| r.host.as_ref()) {
            if let Ok(v) = HeaderValue::from_str(h) {
                parts.headers.insert(http::header::HOST, v);
            }
        }
        // Keep small bodies so that a retry can send them again.
        let (replay, mut body) = match body.size_hint().exact() {
            Some(0) if body.is_end_stream() => (Some(Bytes::new()), None),
            Some(n) if n <= REPLAY_LIMIT => match body.collect().await {
                Ok(b) => (Some(b.to_bytes()), None),
                Err(_) => return local(400, "request body could not be read"),
            },
            _ => (None, Some(body)),
        };
        let spec = cluster.spec();
        let h2 = spec.h2();
        let keepalive = spec.pool().max_requests_per_connection != Some(1);
        let max_tries = if replay.is_some() { 1 + rule.retry.attempts } else { 1 };
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut _retry_guard = None;
        loop {
            ex.attempts += 1;
            let Some(ep) = cluster.pick(&tried, hash) else {
                ex.flags.push("UH");
                return local(503, "no healthy upstream");
            };
            tried.push(ep.addr);
            ex.backend = Some(ep.addr);
            // HTTP/1.1 connections of our own take the origin form; the h2 client wants the
            // absolute form to pick its connection.
            let mut builder = Request::builder().method(parts.method.clone());
            if h2 {
                builder = builder
                    .uri(format!("http://{}{}", ep.addr, path_and_query))
                    .version(http::Version::HTTP_2);
            } else {
                builder = builder.uri(path_and_query.as_str());
            }
            let Ok(mut up) = builder.body(match (&replay, body.take()) {
                (Some(b), _) => Full::new(b.clone()).map_err(|never| match never {}).boxed(),
                (None, Some(b)) => b.boxed(),
                (None, None) => Full::new(Bytes::new()).map_err(|never| match never {}).boxed(),
            }) else {
                return local(400, "bad request target");
            };
            *up.headers_mut() = parts.headers.clone();
            let per_try = match (rule.retry.per_try_timeout, deadline) {
                (Some(t), Some(d)) => Some(t.min(d.saturating_duration_since(Instant::now()))),
                (Some(t), None) => Some(t),
                (None, Some(d)) => Some(d.saturating_duration_since(Instant::now())),
                (None, None) => None,
            };
            ep.active.fetch_add(1, Relaxed);
            ep.stats.active.fetch_add(1, Relaxed);
            let t0 = Instant::now();
            let addr = ep.addr;
            let sent = async move {
                if h2 {
                    match super::h2_client().request(up).await {
                        Ok(r) => Ok(r.map(|b| b.boxed())),
                        Err(e) if e.is_connect() => Err(Failure::Connect),
                        Err(_) => Err(Failure::Reset),
                    }
                } else {
                    super::upstream::send(addr, up, keepalive).await.map_err(|e| match e {
                        super::upstream::SendError::Connect => Failure::Connect,
                        super::upstream::SendError::Reset => Failure::Reset,
                    })
                }
            };
            let result = match per_try {
                Some(t) => tokio::time::timeout(t, sent).await.unwrap_or(Err(Failure::Timeout)),
                None => sent.await,
            };
            ep.active.fetch_sub(1, Relaxed);
            ep.stats.active.fetch_sub(1, Relaxed);
            let outcome = match &result {
                Ok(r) => Outcome::Status(r.status().as_u16()),
                Err(_) => Outcome::LocalFailure,
            };
            cluster.report(&ep, outcome);
            let status_for_stats = match &result {
                Ok(r) => r.status().as_u16(),
                Err(Failure::Timeout) => 504,
                Err(_) => 503,
            };
            ep.stats.record(status_for_stats, t0.elapsed());
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            // As nginx's `proxy_next_upstream error` does by default, an idempotent request whose
            // connection failed (typically a backend that just exited) goes to another endpoint.
            let idempotent = matches!(
                parts.method,
                http::Method::GET
                    | http::Method::HEAD
                    | http::Method::OPTIONS
                    | http::Method::TRACE
            );
            let retriable = retriable(&rule.retry.on, &result)
                || (idempotent && matches!(result, Err(Failure::Reset)));
            if retriable && ex.attempts < max_tries && !out_of_time {
                if let Some(g) = cluster.retry_budget() {
                    _retry_guard = Some(g);
                    let wait = backoff(rule.retry.backoff, ex.attempts);
                    let wait = match deadline {
                        Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
                        None => wait,
                    };
                    tokio::time::sleep(wait).await;
                    ex.flags.push("URX");
                    continue;
                }
            }
            return match result {
                Ok(r) => r,
                Err(Failure::Timeout) => {
                    ex.flags.push("UT");
                    local(504, "upstream request timeout")
                }
                Err(Failure::Connect) => {
                    ex.flags.push("UF");
                    local(503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
                }
                Err(Failure::Reset) => {
                    ex.flags.push("UC");
                    local(503, "upstream connect error or disconnect/reset before headers. reset reason: connection termination")
                }
            };
        }
    }

    fn edge_inflight(&self) -> Option<InFlight> {
        let n = self.edge_inflight.fetch_add(1, Relaxed);
        if n >= self.edge_limit {
            self.edge_inflight.fetch_sub(1, Relaxed);
            return None;
        }
        Some(InFlight::new(self.edge_inflight.clone()))
    }
}

#[derive(Debug)]
enum Failure {
    Connect,
    Reset,
    Timeout,
}

fn retriable(on: &RetryOn, result: &Result<Response<Body>, Failure>) -> bool {
    match result {
        Err(Failure::Connect) => on.connect_failure || on.reset || on.five_xx || on.gateway_error,
        Err(_) => on.reset || on.five_xx || on.gateway_error,
        Ok(r) => {
            let s = r.status().as_u16();
            (on.five_xx && s >= 500)
                || (on.gateway_error && (502..=504).contains(&s))
                || (on.retriable_4xx && s == 409)
                || on.codes.contains(&s)
        }
    }
}

/// Exponential back-off from `base` with full jitter, capped at 10 × base (Envoy's rule).
fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base * 10;
    let exp = base.saturating_mul(1u32 << attempt.min(10)).min(cap);
    // Never sooner than the minimum Gateway API asks for.
    base + Duration::from_secs_f64(rand::random::<f64>() * exp.saturating_sub(base).as_secs_f64())
}

/// A weighted choice among the backends with weight above 0.
fn choose(backends: &[WeightedBackend]) -> Option<&Backend> {
    let total: u64 = backends.iter().map(|b| b.weight as u64).sum();
    if total == 0 {
        return None;
    }
    let mut n = rand::random_range(0..total);
    for b in backends {
        if n < b.weight as u64 {
            return Some(&b.target);
        }
        n -= b.weight as u64;
    }
    None
}

fn hash_key(cluster: &Cluster, req: &RequestView) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let key: String = match cluster.spec().hash_key()? {
        HashKey::Header(h) => req.headers.get(h.as_str())?.to_str().ok()?.to_string(),
        HashKey::Cookie(name) => req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim().strip_prefix(name.as_str())?.strip_prefix('=').map(str::to_string)
            })?,
        HashKey::SourceIp => req.client.to_string(),
        HashKey::Query(q) => query_pairs(req.query).find(|(k, _)| k == q)?.1.to_string(),
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_at_least_the_base_and_capped() {
        let base = Duration::from_millis(25);
        for attempt in 1..8 {
            let b = backoff(base, attempt);
            assert!(b >= base && b <= base * 10, "{b:?}");
        }
    }

    #[test]
    fn weights_split_traffic() {
        let key = |s: &str| {
            Backend::Cluster(ClusterKey { namespace: "d".into(), service: s.into(), port: 80 })
        };
        let b = vec![
            WeightedBackend { weight: 90, target: key("a") },
            WeightedBackend { weight: 10, target: key("b") },
            WeightedBackend { weight: 0, target: key("c") },
        ];
        let mut counts = std::collections::HashMap::new();
        for _ in 0..20_000 {
            if let Some(Backend::Cluster(k)) = choose(&b) {
                *counts.entry(k.service.clone()).or_insert(0) += 1;
            }
        }
        let a = counts["a"] as f64 / 20_000.0;
        assert!((a - 0.9).abs() < 0.02, "{a}");
        assert!(!counts.contains_key("c"));
    }
}
