//! Admission before forwarding: TrafficPolicy rate limits (token buckets) and load shedding
//! (a concurrency limit), and Istio access rules (JWT, then DENY, then ALLOW).

use super::jwt::{self, JwtError};
use super::metrics::{Metrics, PolicyStats};
use super::model::*;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// A refusal: status, extra header, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: String,
    pub flag: &'static str,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A TrafficPolicy's live state.
pub struct PolicyState {
    spec: PolicySpec,
    buckets: Mutex<HashMap<String, Bucket>>,
    inflight: Arc<AtomicUsize>,
    stats: Arc<PolicyStats>,
}

/// Held while a request counts against a load-shedding limit.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Wrap a counter the caller has already incremented.
    pub fn new(counter: Arc<AtomicUsize>) -> InFlight {
        InFlight(counter)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// What a request looks like to policies.
pub struct RequestView<'a> {
    pub client: IpAddr,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
    pub query: &'a str,
}

impl PolicyState {
    /// Admit a request or refuse it (429 over the rate, 503 + Retry-After over the limit).
    pub fn admit(&self, req: &RequestView) -> Result<Option<InFlight>, Refusal> {
        if let Some(rate) = &self.spec.rate {
            let key = match &rate.key {
                RateKey::Global => String::new(),
                RateKey::ClientIp => req.client.to_string(),
                RateKey::Header(h) => req
                    .headers
                    .get(h.as_str())
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
            };
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if buckets.len() > 10_000 {
                // Full buckets carry no information: forget them.
                buckets.retain(|_, b| {
                    b.tokens + now.duration_since(b.last).as_secs_f64() * rate.per_second
                        < rate.burst
                });
            }
            let b = buckets.entry(key).or_insert(Bucket { tokens: rate.burst, last: now });
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate.per_second)
                .min(rate.burst);
            b.last = now;
            if b.tokens < 1.0 {
                self.stats.rate_limited.fetch_add(1, Relaxed);
                let wait = ((1.0 - b.tokens) / rate.per_second).ceil().max(1.0) as u64;
                return Err(Refusal {
                    status: 429,
                    retry_after: Some(wait),
                    body: "local_rate_limited\n".into(),
                    flag: "RL",
                });
            }
            b.tokens -= 1.0;
        }
        if let Some(shed) = &self.spec.shed {
            if self.inflight.fetch_add(1, Relaxed) >= shed.max_concurrent {
                self.inflight.fetch_sub(1, Relaxed);
                self.stats.shed.fetch_add(1, Relaxed);
                return Err(Refusal {
                    status: 503,
                    retry_after: Some(shed.retry_after_secs),
                    body: "overloaded: request shed\n".into(),
                    flag: "LS",
                });
            }
            return Ok(Some(InFlight(self.inflight.clone())));
        }
        Ok(None)
    }
}

/// Every TrafficPolicy's state by key; state survives snapshots that keep the same spec.
#[derive(Default)]
pub struct Policies {
    map: RwLock<HashMap<String, Arc<PolicyState>>>,
}

impl Policies {
    pub fn sync(&self, specs: &HashMap<String, PolicySpec>, metrics: &Metrics) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, s| specs.get(k) == Some(&s.spec));
        for (k, spec) in specs {
            map.entry(k.clone()).or_insert_with(|| {
                Arc::new(PolicyState {
                    spec: spec.clone(),
                    buckets: Mutex::default(),
                    inflight: Arc::default(),
                    stats: metrics.policy(k),
                })
            });
        }
    }

    /// Admit through every policy in `keys`; the guards hold the concurrency slots.
    pub fn admit(
        &self,
        keys: &[String],
        req: &RequestView,
        guards: &mut Vec<InFlight>,
    ) -> Result<(), Refusal> {
        if keys.is_empty() {
            return Ok(());
        }
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            if let Some(p) = map.get(k) {
                guards.extend(p.admit(req)?);
            }
        }
        Ok(())
    }
}

/// Who the request is, from its token.
#[derive(Debug, Default, Clone)]
pub struct Identity {
    pub principal: Option<String>,
    pub claims: Value,
    /// Header carrying the token, removed before forwarding unless `forwardOriginalToken`.
    pub strip: Option<String>,
}

/// Istio's order: an invalid token is 401; DENY rules that match are 403; with ALLOW rules,
/// one must match or 403 (so a missing token is refused when a rule wants a principal).
pub fn authorize(spec: &AuthSpec, req: &RequestView, now_secs: i64) -> Result<Identity, Refusal> {
    let mut id = Identity::default();
    for rule in &spec.jwt {
        let Some((token, header)) = find_token(rule, req) else { continue };
        match jwt::verify(&spec.jwt, &token, now_secs) {
            Ok((idx, claims)) => {
                let iss = claims["iss"].as_str().unwrap_or_default();
                let sub = claims["sub"].as_str().unwrap_or_default();
                id.principal = Some(format!("{iss}/{sub}"));
                id.claims = claims;
                if !spec.jwt[idx].forward_original_token {
                    id.strip = header;
                }
            }
            Err(e) => return Err(unauthorized(e)),
        }
        break;
    }
    let deny = |msg: &str| Refusal {
        status: 403,
        retry_after: None,
        body: format!("{msg}\n"),
        flag: "UAEX",
    };
    if spec.deny.iter().any(|r| rule_matches(r, req, &id)) {
        return Err(deny("RBAC: access denied"));
    }
    if let Some(allow) = &spec.allow {
        if !allow.iter().any(|r| rule_matches(r, req, &id)) {
            return Err(deny("RBAC: access denied"));
        }
    }
    Ok(id)
}

fn unauthorized(e: JwtError) -> Refusal {
    Refusal { status: 401, retry_after: None, body: format!("{e}\n"), flag: "UAEX" }
}

fn find_token(rule: &jwt::JwtRule, req: &RequestView) -> Option<(String, Option<String>)> {
    for (name, prefix) in &rule.from_headers {
        if let Some(v) = req.headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
            if let Some(t) = v.strip_prefix(prefix.as_str()) {
                return Some((t.trim().to_string(), Some(name.clone())));
            }
        }
    }
    for p in &rule.from_params {
        for pair in req.query.split('&') {
            if let Some(t) = pair.strip_prefix(&format!("{p}=")) {
                return Some((t.to_string(), None));
            }
        }
    }
    None
}

/// Istio string patterns: exact, `prefix*`, `*suffix`, or `*`.
fn pattern(p: &str, v: &str) -> bool {
    if p == "*" {
        return true;
    }
    if let Some(prefix) = p.strip_suffix('*') {
        return v.starts_with(prefix);
    }
    if let Some(suffix) = p.strip_prefix('*') {
        return v.ends_with(suffix);
    }
    p == v
}

fn any(patterns: &[String], v: Option<&str>) -> bool {
    v.is_some_and(|v| patterns.iter().any(|p| pattern(p, v)))
}

fn ip_in(blocks: &[String], ip: IpAddr) -> bool {
    blocks.iter().any(|b| match b.split_once('/') {
        None => b.parse::<IpAddr>().ok() == Some(ip),
        Some((net, bits)) => match (net.parse::<IpAddr>(), bits.parse::<u32>(), ip) {
            (Ok(IpAddr::V4(n)), Ok(bits), IpAddr::V4(ip)) if bits <= 32 => {
                let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                u32::from(n) & mask == u32::from(ip) & mask
            }
            (Ok(IpAddr::V6(n)), Ok(bits), IpAddr::V6(ip)) if bits <= 128 => {
                let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                u128::from(n) & mask == u128::from(ip) & mask
            }
            _ => false,
        },
    })
}

fn rule_matches(rule: &AuthzRule, req: &RequestView, id: &Identity) -> bool {
    let principal = id.principal.as_deref();
    let from = rule.from.is_empty()
        || rule.from.iter().any(|s| {
            (s.request_principals.is_empty() || any(&s.request_principals, principal))
                && !any(&s.not_request_principals, principal)
                && (s.ip_blocks.is_empty() || ip_in(&s.ip_blocks, req.client))
                && !ip_in(&s.not_ip_blocks, req.client)
        });
    let to = rule.to.is_empty()
        || rule.to.iter().any(|o| {
            (o.methods.is_empty() || any(&o.methods, Some(req.method)))
                && !any(&o.not_methods, Some(req.method))
                && (o.paths.is_empty() || any(&o.paths, Some(req.path)))
                && !any(&o.not_paths, Some(req.path))
                && (o.hosts.is_empty() || any(&o.hosts, Some(req.host)))
                && !any(&o.not_hosts, Some(req.host))
        });
    let when = rule.when.iter().all(|c| {
        let values = condition_values(&c.key, req, id);
        (c.values.is_empty() || values.iter().any(|v| any(&c.values, Some(v))))
            && !values.iter().any(|v| any(&c.not_values, Some(v)))
    });
    from && to && when
}

/// The values a `when` key stands for; a claim that is a list gives each element.
fn condition_values(key: &str, req: &RequestView, id: &Identity) -> Vec<String> {
    let as_strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            Value::Null => vec![],
            other => vec![other.to_string()],
        }
    };
    if let Some(rest) = key.strip_prefix("request.auth.claims") {
        let mut v = &id.claims;
        for part in rest.split('[').filter(|p| !p.is_empty()) {
            v = &v[part.trim_end_matches(']')];
        }
        return as_strings(v);
    }
    if let Some(h) = key.strip_prefix("request.headers[").and_then(|k| k.strip_suffix(']')) {
        return req
            .headers
            .get_all(h.to_ascii_lowercase().as_str())
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
    }
    match key {
        "request.auth.principal" => id.principal.iter().cloned().collect(),
        "request.auth.audiences" => as_strings(&id.claims["aud"]),
        "request.auth.presenter" => as_strings(&id.claims["azp"]),
        "source.ip" | "remote.ip" => vec![req.client.to_string()],
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::jwt::tests::TestIssuer;
    use crate::l7::jwt::{parse_jwks, JwtRule};

    fn view<'a>(headers: &'a http::HeaderMap, path: &'a str) -> RequestView<'a> {
        RequestView {
            client: "127.0.0.1".parse().unwrap(),
            method: "GET",
            host: "shop",
            path,
            headers,
            query: "",
        }
    }

    #[test]
    fn token_bucket_refuses_over_the_rate_and_refills() {
        let state = PolicyState {
            spec: PolicySpec {
                rate: Some(RateSpec { per_second: 100.0, burst: 5.0, key: RateKey::Global }),
                shed: None,
            },
            buckets: Mutex::default(),
            inflight: Arc::default(),
            stats: Arc::default(),
        };
        let h = http::HeaderMap::new();
        let ok = (0..10).filter(|_| state.admit(&view(&h, "/")).is_ok()).count();
        assert_eq!(ok, 5, "the burst");
        std::thread::sleep(std::time::Duration::from_millis(30));
        let ok = (0..10).filter(|_| state.admit(&view(&h, "/")).is_ok()).count();
        assert!((2..=4).contains(&ok), "about 3 tokens in 30 ms at 100/s: {ok}");
        let refusal = state.admit(&view(&h, "/")).unwrap_err();
        assert_eq!(refusal.status, 429);
    }

    #[test]
    fn shedding_caps_concurrency_with_retry_after() {
        let state = PolicyState {
            spec: PolicySpec {
                rate: None,
                shed: Some(ShedSpec { max_concurrent: 2, retry_after_secs: 3 }),
            },
            buckets: Mutex::default(),
            inflight: Arc::default(),
            stats: Arc::default(),
        };
        let h = http::HeaderMap::new();
        let a = state.admit(&view(&h, "/")).unwrap();
        let _b = state.admit(&view(&h, "/")).unwrap();
        let r = state.admit(&view(&h, "/")).unwrap_err();
        assert_eq!((r.status, r.retry_after), (503, Some(3)));
        drop(a);
        assert!(state.admit(&view(&h, "/")).is_ok());
    }

    #[test]
    fn jwt_then_deny_then_allow() {
        let issuer = TestIssuer::new();
        let spec = AuthSpec {
            jwt: vec![JwtRule {
                issuer: "iss".into(),
                audiences: vec![],
                keys: parse_jwks(&issuer.jwks),
                from_headers: vec![("authorization".into(), "Bearer ".into())],
                from_params: vec![],
                forward_original_token: false,
            }],
            deny: vec![AuthzRule {
                when: vec![AuthzCondition {
                    key: "request.auth.claims[groups]".into(),
                    values: vec!["banned".into()],
                    not_values: vec![],
                }],
                ..Default::default()
            }],
            allow: Some(vec![AuthzRule {
                from: vec![AuthzSource {
                    request_principals: vec!["iss/*".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }]),
        };
        let now = 1_000;
        let with = |claims: Value| {
            let mut h = http::HeaderMap::new();
            h.insert("authorization", format!("Bearer {}", issuer.sign(&claims)).parse().unwrap());
            h
        };
        let h = with(serde_json::json!({"iss": "iss", "sub": "alice", "exp": 2000}));
        let id = authorize(&spec, &view(&h, "/"), now).unwrap();
        assert_eq!(id.principal.as_deref(), Some("iss/alice"));
        assert_eq!(id.strip.as_deref(), Some("authorization"));
        let none = http::HeaderMap::new();
        assert_eq!(
            authorize(&spec, &view(&none, "/"), now).unwrap_err().status,
            403,
            "missing token"
        );
        let expired = with(serde_json::json!({"iss": "iss", "sub": "a", "exp": 10}));
        let r = authorize(&spec, &view(&expired, "/"), now).unwrap_err();
        assert_eq!((r.status, r.body.as_str()), (401, "Jwt is expired\n"));
        let banned = with(serde_json::json!({"iss": "iss", "sub": "b", "groups": ["x", "banned"]}));
        assert_eq!(authorize(&spec, &view(&banned, "/"), now).unwrap_err().status, 403);
    }

    #[test]
    fn patterns_and_cidrs() {
        assert!(pattern("*", "x") && pattern("/api/*", "/api/v1") && pattern("*.png", "a.png"));
        assert!(!pattern("/api/*", "/web"));
        let ip = "10.1.2.3".parse().unwrap();
        assert!(ip_in(&["10.0.0.0/8".into()], ip));
        assert!(!ip_in(&["10.1.3.0/24".into()], ip));
        assert!(ip_in(&["10.1.2.3".into()], ip));
    }
}
