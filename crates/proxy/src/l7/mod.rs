//! The L7 engine: HTTP routing and the resilience policies, on the edge listener (the gateway)
//! and on the ClusterIPs of HTTP Service ports (the mesh).
//!
//! Data flow: the proxy's watches feed [`compile::Inputs`]; [`compile::compile`] turns them into
//! a [`model::Snapshot`] of plain structs; [`Engine::install`] swaps it in and syncs the live
//! state ([`cluster`]: endpoints, outlier ejection, pool limits; [`policy`]: rate limits and
//! shedding). Each request then runs [`handler`] top to bottom. [`metrics`] and [`accesslog`]
//! record every hop.

pub mod accesslog;
pub mod cluster;
pub mod compile;
pub mod handler;
pub mod jwt;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod rewrite;
pub mod upstream;

pub use model::{ClusterKey, ServiceKey};

use handler::Body;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Which listener a request came in on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// The gateway.
    Edge,
    /// A Service port's ClusterIP, NodePort or load-balancer address.
    Service(ClusterKey),
}

impl ListenerKind {
    pub fn name(&self) -> String {
        match self {
            ListenerKind::Edge => "gateway".into(),
            ListenerKind::Service(k) => k.to_string(),
        }
    }
}

/// A listener as requests see it: its kind and its name in metrics and logs.
pub struct Listener {
    pub kind: ListenerKind,
    pub name: String,
}

/// The installed snapshot with what is derived from it once.
pub struct Installed {
    pub snapshot: model::Snapshot,
    /// For each HTTP Service port: the route used when no VirtualService claims the traffic.
    pub defaults: HashMap<ClusterKey, model::Route>,
}

thread_local! {
    /// Each thread keeps its own HTTP/2 upstream connections (HTTP/1.1 ones: [`upstream`]).
    static H2: Client<HttpConnector, Body> = {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(16)
            .http2_only(true)
            .build(connector)
    };
}

/// This thread's h2c client (multiplexed, pooled by hyper-util).
pub(crate) fn h2_client() -> Client<HttpConnector, Body> {
    H2.with(|c| c.clone())
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// JSON-lines access log; `None` for none.
    pub access_log: Option<std::path::PathBuf>,
    /// Requests in flight on the gateway above which new ones are shed with 503 + Retry-After.
    pub edge_limit: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { access_log: None, edge_limit: 10_000 }
    }
}

pub struct Engine {
    installed: RwLock<Arc<Installed>>,
    pub clusters: cluster::Clusters,
    policies: policy::Policies,
    pub metrics: Arc<metrics::Metrics>,
    access_log: Option<accesslog::AccessLog>,
    edge_inflight: Arc<AtomicUsize>,
    edge_limit: usize,
}

impl Engine {
    pub fn new(config: &EngineConfig) -> std::io::Result<Arc<Engine>> {
        let metrics = Arc::new(metrics::Metrics::default());
        let access_log = match &config.access_log {
            Some(p) => Some(accesslog::AccessLog::open(p.clone(), metrics.clone())?),
            None => None,
        };
        Ok(Arc::new(Engine {
            installed: RwLock::new(Arc::new(Installed {
                snapshot: Default::default(),
                defaults: HashMap::new(),
            })),
            clusters: cluster::Clusters::new(metrics.clone()),
            policies: policy::Policies::default(),
            metrics,
            access_log,
            edge_inflight: Arc::default(),
            edge_limit: config.edge_limit.max(1),
        }))
    }

    pub fn installed(&self) -> Arc<Installed> {
        self.installed.read().map(|i| i.clone()).unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Swap in a new snapshot. Requests in flight finish with the one they started with.
    pub fn install(&self, snapshot: model::Snapshot) {
        self.clusters.sync(&snapshot.clusters);
        self.policies.sync(&snapshot.policies, &self.metrics);
        let defaults = snapshot
            .clusters
            .iter()
            .filter(|(_, c)| c.http)
            .map(|(k, _)| (k.clone(), default_route(k)))
            .collect();
        let installed = Arc::new(Installed { snapshot, defaults });
        if let Ok(mut i) = self.installed.write() {
            *i = installed;
        }
    }

    /// Serve the gateway on `threads` threads of their own, each a single-threaded runtime
    /// accepting from the same socket: a connection and its upstream requests stay on one
    /// thread, the layout of nginx's workers. Returns when `stop` fires.
    pub fn serve_workers(
        self: Arc<Self>,
        listener: std::net::TcpListener,
        kind: ListenerKind,
        threads: usize,
    ) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        for i in 0..threads.max(1) {
            let l = listener.try_clone()?;
            let engine = self.clone();
            let kind = kind.clone();
            std::thread::Builder::new().name(format!("kumo-gateway-{i}")).spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("gateway worker: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => engine.serve(l, kind).await,
                        Err(e) => tracing::error!("gateway worker: {e}"),
                    }
                });
            })?;
        }
        Ok(())
    }

    /// Serve HTTP/1.1 and h2c on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener, kind: ListenerKind) {
        let listener_info = Arc::new(Listener { name: kind.name(), kind });
        let stats = self.metrics.listener(&listener_info.name);
        loop {
            let (stream, client) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let engine = self.clone();
            let info = listener_info.clone();
            let stats = stats.clone();
            // Formatted once per connection, used by every request on it.
            let client_ip: Arc<str> = client.ip().to_string().into();
            stats.connections.fetch_add(1, Relaxed);
            stats.active_connections.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let engine = engine.clone();
                    let info = info.clone();
                    let client_ip = client_ip.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            engine.handle(info, client, client_ip, req).await,
                        )
                    }
                });
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .max_buf_size(64 << 10);
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                stats.active_connections.fetch_sub(1, Relaxed);
            });
        }
    }

    /// `GET /metrics` (Prometheus text) and `GET /healthz` on an admin listener.
    pub async fn serve_admin(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let engine = self.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let engine = engine.clone();
                        async move {
                            let resp = match req.uri().path() {
                                "/metrics" => {
                                    let mut r = handler::local(200, engine.metrics.render());
                                    r.headers_mut().insert(
                                        http::header::CONTENT_TYPE,
                                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                                    );
                                    r
                                }
                                "/healthz" => handler::local(200, "ok"),
                                _ => handler::local(404, "not found"),
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

fn default_route(key: &ClusterKey) -> model::Route {
    use model::*;
    Route {
        hosts: Vec::new(),
        matcher: Match::default(),
        order: Order {
            host: (2, 0),
            path: (1, 0),
            method: 1,
            headers: 0,
            query: 0,
            source: (String::new(), String::new(), 0),
        },
        rule: Arc::new(Rule {
            id: format!("service/{key}"),
            action: Action::Forward(vec![WeightedBackend {
                weight: 1,
                target: Backend::Cluster(key.clone()),
            }]),
            timeout: None,
            retry: RetryPolicy::default(),
            fault: None,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            rewrite: None,
            policies: Vec::new(),
            stats: Default::default(),
        }),
    }
}
