//! Per-hop measurements, read as Prometheus text on `/metrics`: requests by status code and
//! latency histograms per route, per Service port and per backend; active connections per
//! listener; circuit state (ejections, overflows), retries, rate-limited and shed requests.
//! Counters are atomics held by the objects they describe, so the request path never takes a
//! global lock to count.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Histogram bounds in seconds.
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Requests, codes and latency of one hop (a route, a Service port or a backend).
pub struct HopStats {
    codes: Box<[AtomicU64]>,
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
    pub active: AtomicU64,
}

impl Default for HopStats {
    fn default() -> Self {
        HopStats {
            codes: (0..600).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
            active: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for HopStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HopStats").field("count", &self.count.load(Relaxed)).finish()
    }
}

impl HopStats {
    pub fn record(&self, status: u16, took: Duration) {
        if let Some(c) = self.codes.get(status as usize) {
            c.fetch_add(1, Relaxed);
        }
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add(took.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn write(&self, out: &mut String, prefix: &str, labels: &str) {
        for (code, n) in self.codes.iter().enumerate() {
            let n = n.load(Relaxed);
            if n > 0 {
                let _ = writeln!(out, "{prefix}_requests_total{{{labels},code=\"{code}\"}} {n}");
            }
        }
        let count = self.count.load(Relaxed);
        if count == 0 {
            return;
        }
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(
                out,
                "{prefix}_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{prefix}_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{prefix}_request_duration_seconds_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{prefix}_request_duration_seconds_count{{{labels}}} {count}");
    }
}

/// A Service port's circuit: overflows of the connection pool, retries, ejections.
#[derive(Default)]
pub struct CircuitStats {
    pub hop: HopStats,
    pub overflow: AtomicU64,
    pub retries: AtomicU64,
    pub retries_refused: AtomicU64,
    pub ejections: AtomicU64,
    pub ejected: AtomicU64,
}

/// A TrafficPolicy's refusals.
#[derive(Default)]
pub struct PolicyStats {
    pub rate_limited: AtomicU64,
    pub shed: AtomicU64,
}

/// The registry: objects register their stats here once and keep the `Arc`.
#[derive(Default)]
pub struct Metrics {
    routes: RwLock<HashMap<String, Arc<HopStats>>>,
    clusters: Mutex<Vec<(String, Arc<CircuitStats>)>>,
    backends: Mutex<Vec<(String, String, Arc<HopStats>)>>,
    listeners: Mutex<HashMap<String, Arc<ListenerStats>>>,
    policies: Mutex<HashMap<String, Arc<PolicyStats>>>,
    pub faults: AtomicU64,
    pub access_log_dropped: AtomicU64,
}

#[derive(Default)]
pub struct ListenerStats {
    pub active_connections: AtomicU64,
    pub connections: AtomicU64,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Metrics {
    pub fn route(&self, id: &str) -> Arc<HopStats> {
        if let Some(s) = self.routes.read().ok().and_then(|m| m.get(id).cloned()) {
            return s;
        }
        let mut m = self.routes.write().unwrap_or_else(|e| e.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }

    pub fn cluster(&self, name: &str) -> Arc<CircuitStats> {
        let s = Arc::new(CircuitStats::default());
        let mut m = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(n, s)| n != name || Arc::strong_count(s) > 1);
        m.push((name.to_string(), s.clone()));
        s
    }

    pub fn backend(&self, cluster: &str, addr: &str) -> Arc<HopStats> {
        let s = Arc::new(HopStats::default());
        let mut m = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        // Forget backends that are gone (only the registry holds them).
        m.retain(|(_, _, s)| Arc::strong_count(s) > 1);
        m.push((cluster.to_string(), addr.to_string(), s.clone()));
        s
    }

    pub fn listener(&self, name: &str) -> Arc<ListenerStats> {
        let mut m = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(name.to_string()).or_default().clone()
    }

    pub fn policy(&self, key: &str) -> Arc<PolicyStats> {
        let mut m = self.policies.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(key.to_string()).or_default().clone()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# TYPE kumo_proxy_route_requests_total counter\n");
        out.push_str("# TYPE kumo_proxy_route_request_duration_seconds histogram\n");
        let routes: Vec<(String, Arc<HopStats>)> = self
            .routes
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (id, s) in &routes {
            s.write(&mut out, "kumo_proxy_route", &format!("route=\"{}\"", escape(id)));
        }
        out.push_str("# TYPE kumo_proxy_service_requests_total counter\n");
        out.push_str("# TYPE kumo_proxy_service_request_duration_seconds histogram\n");
        let clusters = self.clusters.lock().map(|m| m.clone()).unwrap_or_default();
        for (name, s) in &clusters {
            s.hop.write(&mut out, "kumo_proxy_service", &format!("service=\"{}\"", escape(name)));
        }
        type Read = fn(&CircuitStats) -> u64;
        let gauges: [(&str, &str, Read); 6] = [
            ("kumo_proxy_service_active_requests", "gauge", |s| s.hop.active.load(Relaxed)),
            ("kumo_proxy_service_overflow_total", "counter", |s| s.overflow.load(Relaxed)),
            ("kumo_proxy_service_retries_total", "counter", |s| s.retries.load(Relaxed)),
            ("kumo_proxy_service_retries_refused_total", "counter", |s| {
                s.retries_refused.load(Relaxed)
            }),
            ("kumo_proxy_service_ejections_total", "counter", |s| s.ejections.load(Relaxed)),
            ("kumo_proxy_service_ejected_backends", "gauge", |s| s.ejected.load(Relaxed)),
        ];
        for (metric, kind, get) in gauges {
            let _ = writeln!(out, "# TYPE {metric} {kind}");
            for (name, s) in &clusters {
                let _ = writeln!(out, "{metric}{{service=\"{}\"}} {}", escape(name), get(s));
            }
        }
        out.push_str("# TYPE kumo_proxy_backend_requests_total counter\n");
        out.push_str("# TYPE kumo_proxy_backend_request_duration_seconds histogram\n");
        out.push_str("# TYPE kumo_proxy_backend_active_requests gauge\n");
        let backends = self.backends.lock().map(|m| m.clone()).unwrap_or_default();
        for (cluster, addr, s) in &backends {
            let labels = format!("service=\"{}\",backend=\"{addr}\"", escape(cluster));
            s.write(&mut out, "kumo_proxy_backend", &labels);
            let _ = writeln!(
                out,
                "kumo_proxy_backend_active_requests{{{labels}}} {}",
                s.active.load(Relaxed)
            );
        }
        out.push_str("# TYPE kumo_proxy_listener_active_connections gauge\n");
        out.push_str("# TYPE kumo_proxy_listener_connections_total counter\n");
        let listeners: Vec<(String, Arc<ListenerStats>)> = self
            .listeners
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (name, s) in &listeners {
            let l = escape(name);
            let _ = writeln!(
                out,
                "kumo_proxy_listener_active_connections{{listener=\"{l}\"}} {}",
                s.active_connections.load(Relaxed)
            );
            let _ = writeln!(
                out,
                "kumo_proxy_listener_connections_total{{listener=\"{l}\"}} {}",
                s.connections.load(Relaxed)
            );
        }
        out.push_str("# TYPE kumo_proxy_rate_limited_total counter\n");
        out.push_str("# TYPE kumo_proxy_shed_total counter\n");
        let policies: Vec<(String, Arc<PolicyStats>)> = self
            .policies
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (name, s) in &policies {
            let p = escape(name);
            let _ = writeln!(
                out,
                "kumo_proxy_rate_limited_total{{policy=\"{p}\"}} {}",
                s.rate_limited.load(Relaxed)
            );
            let _ =
                writeln!(out, "kumo_proxy_shed_total{{policy=\"{p}\"}} {}", s.shed.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# TYPE kumo_proxy_faults_injected_total counter\nkumo_proxy_faults_injected_total {}",
            self.faults.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE kumo_proxy_access_log_dropped_total counter\nkumo_proxy_access_log_dropped_total {}",
            self.access_log_dropped.load(Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_codes_labelled() {
        let m = Metrics::default();
        let r = m.route("httproute/default/shop/0");
        r.record(200, Duration::from_micros(700));
        r.record(503, Duration::from_millis(30));
        let text = m.render();
        assert!(
            text.contains(
                r#"kumo_proxy_route_requests_total{route="httproute/default/shop/0",code="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"kumo_proxy_route_requests_total{route="httproute/default/shop/0",code="503"} 1"#
        ));
        assert!(text.contains(r#"kumo_proxy_route_request_duration_seconds_bucket{route="httproute/default/shop/0",le="0.001"} 1"#));
        assert!(text.contains(r#"kumo_proxy_route_request_duration_seconds_bucket{route="httproute/default/shop/0",le="0.05"} 2"#));
        assert!(text.contains(
            r#"kumo_proxy_route_request_duration_seconds_count{route="httproute/default/shop/0"} 2"#
        ));
    }
}
