//! # kumo-dns: Kubernetes service discovery over DNS
//!
//! Pods find Services by name: `web.default.svc.cluster.local` resolves to the Service's
//! ClusterIP. This crate is the cluster DNS server of kumo, answering the names CoreDNS's
//! `kubernetes` plugin answers (see [`records`] for the schema), from an in-memory copy of the
//! Services and EndpointSlices of every namespace kept current by watches ([`watch`]). Queries
//! never reach the API server.
//!
//! ```text
//!  Service, EndpointSlice ──watch──▶ Records ◀──read── UDP / TCP ◀── dig, resolvers
//! ```
//!
//! It is authoritative for the cluster domain only and does not recurse: a name outside it gets
//! REFUSED, so it belongs behind (or beside) the host's resolver, not in front of it. Records
//! live 5 s. UDP replies larger than 512 bytes, or than the client's EDNS size, come back
//! truncated (TC) and the client retries over TCP, which is served on the same port.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let client = kube::Client::try_default().await?;
//! let config = kumo_dns::Config::default();
//! kumo_dns::run(client, config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![warn(missing_docs)]

pub mod records;
mod server;
pub mod watch;
pub mod wire;

pub use records::{Answer, Records};
pub use watch::Shared;

use futures::FutureExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tokio::net::{TcpListener, UdpSocket};

/// Where to listen and which domain to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// UDP and TCP address; port 0 picks a free port (the same for both).
    pub listen: SocketAddr,
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { listen: SocketAddr::from(([127, 0, 0, 1], 0)), domain: "cluster.local".into() }
    }
}

/// Bound sockets and an empty zone: bind first, learn the address, then serve.
pub struct Server {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
    records: Shared,
}

impl Server {
    /// Bind UDP and TCP on `config.listen` for `config.domain`.
    pub async fn bind(config: &Config) -> anyhow::Result<Server> {
        let records = Records::new(&config.domain)?;
        let (udp, tcp) = server::bind(config.listen).await?;
        let addr = udp.local_addr()?;
        Ok(Server { udp, tcp, addr, records: Arc::new(RwLock::new(records)) })
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The zone this server answers from; tests fill it by hand.
    pub fn records(&self) -> Shared {
        self.records.clone()
    }

    /// Answer from [`Server::records`] as it is, until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let shutdown = shutdown.shared();
        tokio::join!(
            server::serve_udp(self.udp, self.records.clone(), shutdown.clone()),
            server::serve_tcp(self.tcp, self.records, shutdown),
        );
    }

    /// Watch Services and EndpointSlices through `client` and answer from them until
    /// `shutdown` completes. Names in the zone get SERVFAIL until the first lists are in.
    pub async fn run(
        self,
        client: kube::Client,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        watch::write(&self.records).wait_for_sync();
        let shutdown = shutdown.shared();
        let watches = watch::watch(client, self.records.clone());
        let stop = shutdown.clone();
        let watches = async move {
            tokio::select! {
                _ = watches => {}
                _ = stop => {}
            }
        };
        tokio::join!(watches, self.serve(shutdown));
    }
}

/// Serve cluster DNS on `config.listen` from watches through `client` until `shutdown`
/// completes. Fails only when the address cannot be bound or the domain is invalid.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server = Server::bind(&config).await?;
    tracing::info!(addr = %server.local_addr(), domain = %config.domain, "dns: serving");
    server.run(client, shutdown).await;
    Ok(())
}
