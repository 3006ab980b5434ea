//! # kumo-proxy: the node proxy (kube-proxy's part)
//!
//! Every node runs one. It watches Services and EndpointSlices and listens on every
//! `ClusterIP:port` (kumo's ClusterIPs are loopback addresses from `127.64.0.0/10`, so they
//! need no interface set-up) and every `NodePort`, and forwards each TCP connection to a ready
//! endpoint of the Service: round robin, or the same endpoint for the same client with
//! `sessionAffinity: ClientIP`. An endpoint that refuses the connection is skipped for the next
//! one. Endpoint changes apply to new connections; connections in flight are never cut.
//!
//! HTTP ports (`appProtocol: http|http2|h2c|grpc`, or names `http`, `http-*`, `grpc*`) are
//! served by the L7 engine ([`l7`]) instead: routing, retries, timeouts, circuit breaking,
//! rate limits, access rules, metrics. The same engine serves the gateway (the edge listener)
//! from Ingress, Gateway API and Istio objects. UDP and SCTP ports are not proxied yet.

mod gateway_status;
pub mod l7;
pub mod table;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use table::{Listener, Target};
use tokio::task::JoinHandle;

/// How the proxy runs.
#[derive(Clone)]
pub struct Config {
    /// Listen on Service ClusterIPs (and NodePorts, load-balancer addresses): the node proxy.
    /// Without it only the engine's configuration is kept current (for the gateway).
    pub services: bool,
    /// Also listen on NodePorts (on all addresses), as kube-proxy does.
    pub node_ports: bool,
    /// The node's address: `LoadBalancer` Services listen on it and publish it in
    /// `status.loadBalancer.ingress`.
    pub node_ip: Option<std::net::IpAddr>,
    /// The L7 engine fed with every change.
    pub engine: Arc<l7::Engine>,
    /// The gateway's address, published in the status of Gateways and Ingresses.
    pub gateway_addr: Option<SocketAddr>,
}

/// The live backends of one listener, swapped as EndpointSlices change.
#[derive(Default)]
struct Backends {
    target: RwLock<Target>,
    next: std::sync::atomic::AtomicUsize,
    /// ClientIP affinity: client address → (backend, last use).
    sticky: Mutex<HashMap<std::net::IpAddr, (SocketAddr, Instant)>>,
}

impl Backends {
    /// Backends in the order to try them for `client`.
    fn order(&self, client: SocketAddr) -> Vec<SocketAddr> {
        let target = self.target.read().map(|t| t.clone()).unwrap_or_default();
        let n = target.backends.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        let mut order: Vec<SocketAddr> = (0..n).map(|i| target.backends[(start + i) % n]).collect();
        if let Some(timeout) = target.affinity_timeout {
            if let Ok(mut sticky) = self.sticky.lock() {
                let now = Instant::now();
                sticky.retain(|_, (_, used)| now.duration_since(*used) < timeout);
                if let Some((b, _)) = sticky.get(&client.ip()).copied() {
                    if let Some(i) = order.iter().position(|x| *x == b) {
                        order.swap(0, i);
                    }
                }
                if let Some(first) = order.first() {
                    sticky.insert(client.ip(), (*first, now));
                }
            }
        }
        order
    }
}

/// Proxy until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let mut streams: Vec<futures::stream::BoxStream<'static, ()>> = vec![
        reflector::reflector(
            svc_writer,
            watcher(kube::Api::<Service>::all(client.clone()), Default::default()),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
        reflector::reflector(
            slice_writer,
            watcher(kube::Api::<EndpointSlice>::all(client.clone()), Default::default()),
        )
        .default_backoff()
        .map(|_| ())
        .boxed(),
    ];
    let mut kinds = Vec::new();
    for (group, version, kind, plural) in WATCHED {
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
        let writer = reflector::store::Writer::<kube::api::DynamicObject>::new(resource.clone());
        let store = writer.as_reader();
        let api = kube::Api::<kube::api::DynamicObject>::all_with(client.clone(), &resource);
        // A kind whose CRD is missing keeps retrying with back-off until it exists.
        streams.push(
            reflector::reflector(writer, watcher(api, Default::default()))
                .default_backoff()
                .map(|_| ())
                .boxed(),
        );
        kinds.push((*kind, store));
    }
    let mut changes = futures::stream::select_all(streams);
    let mut running: HashMap<Listener, (Arc<Backends>, JoinHandle<()>)> = HashMap::new();
    let mut retry = tokio::time::interval(Duration::from_secs(5));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            c = changes.next() => if c.is_none() { break },
            _ = retry.tick() => {}
            _ = &mut shutdown => break,
        }
        // Take every change already queued before recomputing.
        while let Some(Some(())) = futures::FutureExt::now_or_never(changes.next()) {}
        let svcs: Vec<Arc<Service>> = services.state();
        let eps: Vec<Arc<EndpointSlice>> = slices.state();
        let inputs = inputs(svcs.clone(), eps.clone(), &kinds);
        config.engine.install(l7::compile::compile(&inputs));
        if let Some(addr) = config.gateway_addr {
            gateway_status::publish(&client, &inputs, addr);
        }
        if !config.services {
            continue;
        }
        let wanted = table::compute(&svcs, &eps, config.node_ports, config.node_ip);
        if let Some(ip) = config.node_ip {
            publish_ingress(&client, &svcs, ip);
        }
        running.retain(|l, (_, task)| {
            let keep = wanted.contains_key(l) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (listener, target) in wanted {
            if let Some((backends, _)) = running.get(&listener) {
                if let Ok(mut t) = backends.target.write() {
                    *t = target;
                }
                continue;
            }
            let http = target.http.clone();
            let backends = Arc::new(Backends { target: RwLock::new(target), ..Default::default() });
            match tokio::net::TcpListener::bind(listener.addr).await {
                Ok(l) => {
                    let task = match http {
                        Some(key) => tokio::spawn(
                            config.engine.clone().serve(l, l7::ListenerKind::Service(key)),
                        ),
                        None => tokio::spawn(serve(l, backends.clone())),
                    };
                    running.insert(listener, (backends, task));
                }
                Err(e) => tracing::warn!(
                    "proxy: cannot listen on {} for service {}: {e} (retrying)",
                    listener.addr,
                    listener.service
                ),
            }
        }
    }
    for (_, (_, task)) in running {
        task.abort();
    }
}

/// The kinds the L7 engine reads besides Services and EndpointSlices: group, version, kind,
/// plural.
const WATCHED: &[(&str, &str, &str, &str)] = &[
    ("networking.k8s.io", "v1", "Ingress", "ingresses"),
    ("gateway.networking.k8s.io", "v1", "Gateway", "gateways"),
    ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
    ("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant", "referencegrants"),
    ("networking.istio.io", "v1", "VirtualService", "virtualservices"),
    ("networking.istio.io", "v1", "DestinationRule", "destinationrules"),
    ("kumo.dev", "v1alpha1", "TrafficPolicy", "trafficpolicies"),
    ("security.istio.io", "v1", "RequestAuthentication", "requestauthentications"),
    ("security.istio.io", "v1", "AuthorizationPolicy", "authorizationpolicies"),
];

type KindStore = (&'static str, reflector::Store<kube::api::DynamicObject>);

fn inputs(
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    kinds: &[KindStore],
) -> l7::compile::Inputs {
    let mut inputs = l7::compile::Inputs { services, slices, ..Default::default() };
    for (kind, store) in kinds {
        let objects: Vec<serde_json::Value> =
            store.state().iter().filter_map(|o| serde_json::to_value(o.as_ref()).ok()).collect();
        let slot = match *kind {
            "Ingress" => &mut inputs.ingresses,
            "Gateway" => &mut inputs.gateways,
            "HTTPRoute" => &mut inputs.http_routes,
            "ReferenceGrant" => &mut inputs.reference_grants,
            "VirtualService" => &mut inputs.virtual_services,
            "DestinationRule" => &mut inputs.destination_rules,
            "TrafficPolicy" => &mut inputs.traffic_policies,
            "RequestAuthentication" => &mut inputs.request_authentications,
            _ => &mut inputs.authorization_policies,
        };
        *slot = objects;
    }
    inputs
}

/// Add this node's address to the `status.loadBalancer.ingress` of LoadBalancer Services that
/// do not list it yet (what `kubectl get svc` shows as EXTERNAL-IP).
fn publish_ingress(client: &kube::Client, services: &[Arc<Service>], ip: std::net::IpAddr) {
    for svc in services {
        if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
            continue;
        }
        let mut ingress: Vec<String> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref()?.ingress.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip)
            .collect();
        if ingress.contains(&ip.to_string()) {
            continue;
        }
        ingress.push(ip.to_string());
        let (Some(ns), Some(name)) = (svc.metadata.namespace.clone(), svc.metadata.name.clone())
        else {
            continue;
        };
        let api: kube::Api<Service> = kube::Api::namespaced(client.clone(), &ns);
        let list: Vec<serde_json::Value> =
            ingress.iter().map(|ip| serde_json::json!({"ip": ip, "ipMode": "VIP"})).collect();
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": list}}});
        tokio::spawn(async move {
            let params = kube::api::PatchParams::default();
            if let Err(e) = api.patch_status(&name, &params, &kube::api::Patch::Merge(&patch)).await
            {
                tracing::debug!(
                    "proxy: cannot publish the load balancer address of {ns}/{name}: {e}"
                );
            }
        });
    }
}

async fn serve(listener: tokio::net::TcpListener, backends: Arc<Backends>) {
    loop {
        let Ok((inbound, client)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let backends = backends.clone();
        // Each connection lives on its own: replacing or stopping the listener never cuts it.
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            for backend in backends.order(client) {
                let connect = tokio::net::TcpStream::connect(backend);
                match tokio::time::timeout(Duration::from_secs(2), connect).await {
                    Ok(Ok(outbound)) => {
                        let _ = outbound.set_nodelay(true);
                        let (mut a, mut b) = (inbound, outbound);
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                        return;
                    }
                    _ => continue,
                }
            }
            // No ready endpoint answered: close at once, as a REJECT would.
        });
    }
}
