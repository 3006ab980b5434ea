//! The resolved L7 configuration: plain structs that the request path reads. `compile` builds
//! them from the API objects; nothing here talks to the API or holds live state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A Service, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

/// One port of a Service: what the proxy balances over (Envoy's "cluster").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterKey {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

impl ClusterKey {
    pub fn service_key(&self) -> ServiceKey {
        ServiceKey { namespace: self.namespace.clone(), name: self.service.clone() }
    }
}

impl std::fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// Everything the L7 engine needs, rebuilt on every change of the inputs.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Routes of the edge listener (Ingress, HTTPRoute, VirtualService bound to a gateway),
    /// sorted by precedence: the first that matches wins.
    pub edge: Vec<Route>,
    /// Routes for traffic to a Service's ClusterIP (VirtualService for the mesh). A Service
    /// without any goes straight to its own port.
    pub mesh: HashMap<ServiceKey, Vec<Route>>,
    /// Every TCP port of every Service.
    pub clusters: HashMap<ClusterKey, ClusterSpec>,
    /// Policies on the whole edge listener (TrafficPolicy targeting a Gateway).
    pub edge_policies: Vec<String>,
    /// Rate limits and load shedding by policy key (`namespace/name`).
    pub policies: HashMap<String, PolicySpec>,
    /// Access rules for the edge listener as a whole (targetRefs to a Gateway).
    pub edge_auth: Option<Arc<AuthSpec>>,
    /// Access rules per destination Service.
    pub auth: HashMap<ServiceKey, Arc<AuthSpec>>,
}

/// A match and the rule it belongs to. A rule with several matches (ORed) has one `Route` per
/// match, because precedence is decided per match.
#[derive(Debug, Clone)]
pub struct Route {
    pub hosts: Vec<HostMatch>,
    pub matcher: Match,
    pub rule: Arc<Rule>,
    /// Sort key, smaller first.
    pub order: Order,
}

/// Gateway API precedence: most specific host, then Exact path, longest prefix, method, most
/// header matches, most query matches; then the older source and its rule order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Order {
    pub host: (u8, i64),
    pub path: (u8, i64),
    pub method: u8,
    pub headers: i64,
    pub query: i64,
    pub source: (String, String, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com`: the suffix including the dot.
    Suffix(String),
}

impl HostMatch {
    pub fn parse(h: &str) -> HostMatch {
        let h = h.to_ascii_lowercase();
        match h.strip_prefix('*') {
            Some(rest) => HostMatch::Suffix(rest.to_string()),
            None => HostMatch::Exact(h),
        }
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Match {
    pub path: Option<PathMatch>,
    pub method: Option<StrMatch>,
    pub authority: Option<StrMatch>,
    pub headers: Vec<(String, StrMatch)>,
    pub without_headers: Vec<(String, StrMatch)>,
    pub query: Vec<(String, StrMatch)>,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Element-wise prefix (Gateway API, Ingress): `/abc` matches `/abc` and `/abc/d`, not
    /// `/abcd`.
    Segments(String),
    /// Plain string prefix (Istio `uri.prefix`).
    Prefix(String),
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

impl StrMatch {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StrMatch::Exact(e) => e == v,
            StrMatch::Prefix(p) => v.starts_with(p.as_str()),
            StrMatch::Regex(r) => r.is_match(v),
        }
    }
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(e) => e == path,
            PathMatch::Segments(p) => {
                let p = p.trim_end_matches('/');
                p.is_empty()
                    || path == p
                    || (path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/'))
            }
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }

    /// The part of the path a prefix rewrite replaces.
    pub fn prefix(&self) -> Option<&str> {
        match self {
            PathMatch::Segments(p) | PathMatch::Prefix(p) => Some(p),
            _ => None,
        }
    }
}

/// What the matched rule does, with its policies.
#[derive(Debug)]
pub struct Rule {
    /// Stable name for metrics and logs: `httproute/ns/name/rule`.
    pub id: String,
    pub action: Action,
    /// The whole request, retries included (`timeouts.request`, VirtualService `timeout`).
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub fault: Option<Fault>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    pub rewrite: Option<Rewrite>,
    /// TrafficPolicy keys on this rule's route.
    pub policies: Vec<String>,
    /// The rule's measurements, looked up once in the registry.
    pub stats: std::sync::OnceLock<Arc<crate::l7::metrics::HopStats>>,
}

#[derive(Debug)]
pub enum Action {
    Forward(Vec<WeightedBackend>),
    Redirect(Redirect),
    Respond { status: u16, body: String },
}

#[derive(Debug, Clone)]
pub struct WeightedBackend {
    pub weight: u32,
    pub target: Backend,
}

#[derive(Debug, Clone)]
pub enum Backend {
    Cluster(ClusterKey),
    /// A reference that does not resolve: answered with `status` (Gateway API: 500).
    Invalid {
        status: u16,
        reason: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    pub host: Option<String>,
    pub path: Option<PathRewrite>,
}

#[derive(Debug, Clone)]
pub enum PathRewrite {
    Full(String),
    /// Replace the matched prefix.
    Prefix(String),
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathRewrite>,
    pub status: u16,
}

/// Retries: `attempts` counts retries (so at most `1 + attempts` tries), as both Gateway API
/// and Istio define it.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub backoff: Duration,
    pub on: RetryOn,
}

impl Default for RetryPolicy {
    /// Istio's default when a route says nothing: two retries of connection failures.
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            backoff: Duration::from_millis(25),
            on: RetryOn { connect_failure: true, ..Default::default() },
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RetryOn {
    pub connect_failure: bool,
    /// Reset after connecting, or a per-try timeout.
    pub reset: bool,
    pub five_xx: bool,
    pub gateway_error: bool,
    pub retriable_4xx: bool,
    pub codes: Vec<u16>,
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub delay: Option<(Duration, f64)>,
    pub abort: Option<(u16, f64)>,
}

/// Per-Service-port settings from the Service and its DestinationRule.
#[derive(Debug, Clone, Default)]
pub struct ClusterSpec {
    pub endpoints: Vec<SocketAddr>,
    /// Speak HTTP/2 (h2c) to the endpoints (`appProtocol` http2, h2c, grpc).
    pub h2: bool,
    /// Serve this port at L7 on its ClusterIP.
    pub http: bool,
    pub lb: LbPolicy,
    pub pool: PoolLimits,
    pub outlier: Option<OutlierSpec>,
    /// TrafficPolicy keys targeting the Service.
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum LbPolicy {
    RoundRobin,
    Random,
    /// Power of two choices on active requests (Istio's LEAST_REQUEST, its default).
    #[default]
    LeastRequest,
    ConsistentHash(HashKey),
}

#[derive(Debug, Clone, PartialEq)]
pub enum HashKey {
    Header(String),
    Cookie(String),
    SourceIp,
    Query(String),
}

/// DestinationRule `connectionPool`; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolLimits {
    pub max_connections: Option<usize>,
    pub max_pending: Option<usize>,
    pub max_requests: Option<usize>,
    pub max_requests_per_connection: Option<u32>,
    pub max_retries: Option<usize>,
}

/// DestinationRule `outlierDetection`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierSpec {
    pub consecutive_5xx: u32,
    pub consecutive_gateway: u32,
    pub interval: Duration,
    pub base_ejection: Duration,
    pub max_ejection_percent: u32,
    pub min_health_percent: u32,
}

impl Default for OutlierSpec {
    fn default() -> Self {
        OutlierSpec {
            consecutive_5xx: 5,
            consecutive_gateway: 0,
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 10,
            min_health_percent: 0,
        }
    }
}

/// A `kumo.dev/v1alpha1` TrafficPolicy's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySpec {
    pub rate: Option<RateSpec>,
    pub shed: Option<ShedSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateSpec {
    pub per_second: f64,
    pub burst: f64,
    pub key: RateKey,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RateKey {
    Global,
    ClientIp,
    Header(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShedSpec {
    pub max_concurrent: usize,
    pub retry_after_secs: u64,
}

/// Istio RequestAuthentication and AuthorizationPolicy for one destination.
#[derive(Debug, Default)]
pub struct AuthSpec {
    pub jwt: Vec<crate::l7::jwt::JwtRule>,
    pub deny: Vec<AuthzRule>,
    /// `None`: no ALLOW policy (everything allowed); `Some(rules)`: one must match.
    pub allow: Option<Vec<AuthzRule>>,
}

/// One `rules[]` entry: every present part must match.
#[derive(Debug, Default, Clone)]
pub struct AuthzRule {
    pub from: Vec<AuthzSource>,
    pub to: Vec<AuthzOperation>,
    pub when: Vec<AuthzCondition>,
}

#[derive(Debug, Default, Clone)]
pub struct AuthzSource {
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct AuthzOperation {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct AuthzCondition {
    pub key: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

/// Durations as Gateway API (`1h30m`, `250ms`) and Istio (`1.5s`) write them.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_both_notations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("10 seconds"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn path_prefixes_match_whole_segments() {
        let p = PathMatch::Segments("/abc".into());
        assert!(p.matches("/abc") && p.matches("/abc/") && p.matches("/abc/def"));
        assert!(!p.matches("/abcd"));
        assert!(PathMatch::Segments("/".into()).matches("/anything"));
        assert!(PathMatch::Segments("/abc/".into()).matches("/abc/x"));
        assert!(PathMatch::Prefix("/abc".into()).matches("/abcd"));
    }

    #[test]
    fn wildcard_hosts_need_a_label_before_the_suffix() {
        let h = HostMatch::parse("*.Example.com");
        assert!(h.matches("a.example.com"));
        assert!(!h.matches("example.com"));
        assert!(HostMatch::parse("shop.example.com").matches("shop.example.com"));
    }
}
