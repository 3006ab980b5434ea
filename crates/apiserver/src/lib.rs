//! # kumo-apiserver: the Kubernetes API, served
//!
//! An HTTPS server that speaks the Kubernetes v1.33 API well enough for the real `kubectl`,
//! the `kube` crate and client-go: discovery (legacy and aggregated), OpenAPI v3, a generic
//! registry for every built-in kind and for custom resources, watch, patch (JSON, merge,
//! strategic), `status`/`scale`/`binding` subresources, Table printing, and authentication by
//! client certificate or bearer token. The Gateway API, Istio networking/security and kumo's
//! TrafficPolicy are served from the start as built-in CRDs ([`builtin_crds`]).
//!
//! ```text
//! client ─TLS─▶ server (rustls, h1/h2) ─▶ auth ─▶ http (route, decode, 3 MiB cap)
//!        ─▶ registry (admission: schema walk, defaults, validation, hooks) ─▶ Store
//!        ◀─ watch (store watch → filtered WatchEvents, Tables) ◀──────────────┘
//! ```
//!
//! Start one with [`start`]; everything it needs is a data directory and a [`kumo_store::Store`].
#![warn(missing_docs)]

pub mod admission;
mod agents;
pub mod auth;
mod bootstrap;
pub mod builtin_crds;
pub mod catalog;
pub mod certificates;
pub mod discovery;
pub mod error;
mod gc;
pub mod hooks;
pub mod http;
pub mod local;
mod metrics;
pub mod object;
pub mod openapi;
mod owners;
pub mod pki;
pub mod policy;
pub mod priority;
pub mod registry;
pub mod request;
mod reviews;
pub mod server;
mod special;
mod storage_admission;
mod subresources;
pub mod table;
pub mod watch;

use catalog::Catalog;
use kumo_store::Store;
use registry::Registry;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How to run the API server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where credentials and the kubeconfig live.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free one).
    pub addr: SocketAddr,
    /// Extra names or addresses for the serving certificate.
    pub hosts: Vec<String>,
    /// Requests served at once in each limited priority class ([`priority`]).
    pub max_inflight: usize,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Credentials could not be made or read.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// TLS could not be configured.
    #[error(transparent)]
    Tls(#[from] server::TlsError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running server.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The credentials.
    pub pki: pki::Pki,
    /// Path of the admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The registry (for in-process clients).
    pub registry: Registry,
    router: axum::Router,
    admin: auth::User,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// A transport for API clients in this process, with the admin identity: the same API as
    /// over TLS, without the socket (`kube::Client::new(running.local_transport(), "default")`).
    pub fn local_transport(&self) -> local::LocalTransport {
        local::LocalTransport::new(self.router.clone(), self.admin.clone())
    }

    /// Stop accepting, let open requests finish briefly, and return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Start the API server over `store`.
pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<Running, StartError> {
    let mut hosts = config.hosts.clone();
    hosts.push(config.addr.ip().to_string());
    let pki = pki::Pki::load_or_create(&config.data_dir, &hosts)?;
    let tls = server::tls_config(&pki)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| StartError::Bind { addr: config.addr, source })?;
    let addr = listener.local_addr()?;
    let registry = Registry::new(store, Catalog::new());
    hooks::load_crds(&registry).await;
    bootstrap(&registry, addr).await;
    let url_host =
        if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let url =
        format!("https://{}", SocketAddr::new(url_host.parse().unwrap_or(addr.ip()), addr.port()));
    let kubeconfig = config.data_dir.join("kubeconfig.yaml");
    std::fs::write(&kubeconfig, pki.kubeconfig(&url))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o600))?;
    }
    let admin = auth::User { name: "kumo-admin".into(), groups: vec!["system:masters".into()] };
    let state = http::AppState {
        registry: registry.clone(),
        auth: Arc::new(auth::Authenticator::new([(pki.admin_token.clone(), admin.clone())])),
        address: addr.to_string(),
        agent_token: pki.admin_token.clone(),
        signer: certificates::Signer::from_pki(&pki).map(Arc::new),
        limits: Arc::new(priority::Limits::new(config.max_inflight)),
    };
    let router = http::router(state);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server::serve(listener, tls, router.clone(), async move {
        let _ = rx.await;
    }));
    Ok(Running { addr, pki, kubeconfig, registry, router, admin, shutdown: Some(tx), task })
}

/// The objects a cluster has from the start: the built-in CRDs, the namespaces, the priority
/// classes, the default `local-path` StorageClass and the `kubernetes` Service.
async fn bootstrap(reg: &Registry, addr: SocketAddr) {
    builtin_crds::install(reg).await;
    bootstrap::install(reg).await;
    let snap = reg.catalog.snapshot();
    let (Some(ns), Some(svc), Some(ep)) = (
        snap.find("", "v1", "namespaces").cloned(),
        snap.find("", "v1", "services").cloned(),
        snap.find("", "v1", "endpoints").cloned(),
    ) else {
        return;
    };
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        create_if_absent(reg, &ns, None, obj).await;
    }
    if let Some(pc) = snap.find("scheduling.k8s.io", "v1", "priorityclasses").cloned() {
        for (name, value, description) in [
            ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
            ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
        ] {
            let obj = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value, "globalDefault": false, "description": description});
            create_if_absent(reg, &pc, None, obj).await;
        }
    }
    if let Some(sc) = snap.find("storage.k8s.io", "v1", "storageclasses").cloned() {
        // k3s answers storage with a default local-path class; so does kumo (the node agents
        // provision its volumes as directories).
        let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": kumo_api::storage::LOCAL_PATH_CLASS,
                "annotations": {kumo_api::storage::DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": kumo_api::storage::LOCAL_PATH_PROVISIONER,
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
        create_if_absent(reg, &sc, None, class).await;
    }
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": "127.64.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": addr.port()}]}});
    create_if_absent(reg, &svc, Some("default"), service).await;
    let host =
        if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": host}], "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}]}]});
    let key = ep.key(Some("default"), "kubernetes");
    // The API server's own address may change between starts; keep the Endpoints current.
    match reg.store.get(&key).await {
        Ok(Some(kv)) => {
            if let Ok(mut cur) = registry::decode(&ep, &kv) {
                cur["subsets"] = endpoints["subsets"].clone();
                let _ = reg
                    .update(&ep, Some("default"), "kubernetes", cur, None, &Default::default())
                    .await;
            }
        }
        _ => create_if_absent(reg, &ep, Some("default"), endpoints).await,
    }
}

async fn create_if_absent(
    reg: &Registry,
    r: &kumo_api::resources::Resource,
    ns: Option<&str>,
    obj: serde_json::Value,
) {
    let name = object::name(&obj).to_string();
    if let Ok(Some(_)) = reg.store.get(&r.key(ns, &name)).await {
        return;
    }
    if let Err(e) = reg.create(r, ns, obj, &Default::default()).await {
        if !matches!(e, error::ApiError::AlreadyExists(..)) {
            tracing::warn!(object = name, error = %e, "bootstrap object not created");
        }
    }
}
