//! What the proxy should listen on and where each listener forwards: a pure function of the
//! Services and EndpointSlices, so it is tested without sockets.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Listener {
    /// `ClusterIP:port` or `0.0.0.0:nodePort`.
    pub addr: SocketAddr,
    /// `namespace/name:port` (for messages).
    pub service: String,
    /// Served by the L7 engine (an HTTP port) rather than forwarded as TCP.
    pub http: bool,
}

/// Where a listener sends connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Ready endpoints, sorted.
    pub backends: Vec<SocketAddr>,
    /// `sessionAffinity: ClientIP` and its timeout.
    pub affinity_timeout: Option<Duration>,
    /// For an HTTP port: the Service port the L7 engine routes for.
    pub http: Option<crate::l7::ClusterKey>,
}

/// The listeners every TCP port of every Service needs, with their ready endpoints.
/// `LoadBalancer` Services also listen on `lb_ip:port` (the node's address), as k3s's service
/// load balancer does.
pub fn compute(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    node_ports: bool,
    lb_ip: Option<IpAddr>,
) -> HashMap<Listener, Target> {
    let by_service = slices_by_service(slices);
    let mut out = HashMap::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let cluster_ip: Option<IpAddr> =
            spec.cluster_ip.as_deref().filter(|ip| *ip != "None").and_then(|ip| ip.parse().ok());
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let secs = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref()?.timeout_seconds)
                .unwrap_or(10800);
            Duration::from_secs(secs.max(1) as u64)
        });
        let slices = by_service.get(&(ns.clone(), name.clone()));
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let backends = ready_endpoints(slices, port.name.as_deref().unwrap_or(""));
            let (http, _) = crate::l7::compile::is_http_port(
                port.name.as_deref(),
                port.app_protocol.as_deref(),
            );
            let Ok(number) = u16::try_from(port.port) else { continue };
            let cluster = crate::l7::ClusterKey {
                namespace: ns.clone(),
                service: name.clone(),
                port: number,
            };
            let target = Target { backends, affinity_timeout, http: http.then_some(cluster) };
            let label = format!("{ns}/{name}:{}", port.port);
            if let Some(ip) = cluster_ip {
                let l =
                    Listener { addr: SocketAddr::new(ip, number), service: label.clone(), http };
                out.insert(l, target.clone());
            }
            if let (Some(ip), Some("LoadBalancer")) = (lb_ip, spec.type_.as_deref()) {
                let l =
                    Listener { addr: SocketAddr::new(ip, number), service: label.clone(), http };
                out.insert(l, target.clone());
            }
            let node_port = port.node_port.and_then(|p| u16::try_from(p).ok());
            if let (true, Some(np)) = (node_ports, node_port) {
                let addr = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), np);
                out.insert(Listener { addr, service: label, http }, target);
            }
        }
    }
    out
}

/// EndpointSlices grouped by the Service they belong to.
pub fn slices_by_service(
    slices: &[Arc<EndpointSlice>],
) -> HashMap<(String, String), Vec<&EndpointSlice>> {
    let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
    for s in slices {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        if let Some(name) =
            s.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name"))
        {
            by_service.entry((ns, name.clone())).or_default().push(s);
        }
    }
    by_service
}

/// The ready endpoints of one Service port (by port name, as EndpointSlices name them), sorted.
pub fn ready_endpoints(slices: Option<&Vec<&EndpointSlice>>, port_name: &str) -> Vec<SocketAddr> {
    let mut backends: Vec<SocketAddr> = slices
        .into_iter()
        .flatten()
        .flat_map(|s| {
            let number = s
                .ports
                .iter()
                .flatten()
                .find(|p| {
                    p.name.as_deref().unwrap_or("") == port_name
                        && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                })?
                .port?;
            let number = u16::try_from(number).ok()?;
            Some(
                s.endpoints
                    .iter()
                    // Unknown readiness counts as ready, as upstream says.
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
                    .flat_map(|e| e.addresses.iter())
                    .filter_map(move |a| Some(SocketAddr::new(a.parse().ok()?, number)))
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect();
    backends.sort();
    backends.dedup();
    backends
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(v).unwrap())
    }
    fn slice(v: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn ready_endpoints_behind_cluster_ips_and_node_ports() {
        let s = svc(json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "127.64.0.7", "type": "NodePort", "sessionAffinity": "ClientIP",
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}}));
        let headless = svc(json!({"metadata": {"name": "db", "namespace": "shop"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}));
        let e = slice(json!({"metadata": {"name": "web-x", "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 31000}],
        "endpoints": [
            {"addresses": ["127.0.0.1"], "conditions": {"ready": true}},
            {"addresses": ["127.0.0.2"], "conditions": {"ready": false}},
            {"addresses": ["127.0.0.3"]}
        ]}));
        let other_ns = slice(json!({"metadata": {"name": "web-y", "namespace": "other",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 1}],
            "endpoints": [{"addresses": ["10.0.0.9"]}]}));
        let t = compute(&[s.clone(), headless], &[e, other_ns], true, None);
        assert_eq!(t.len(), 2, "{t:?}");
        let cip: SocketAddr = "127.64.0.7:80".parse().unwrap();
        let target = t.iter().find(|(l, _)| l.addr == cip).map(|(_, t)| t.clone()).unwrap();
        assert_eq!(
            target.backends,
            vec!["127.0.0.1:31000".parse().unwrap(), "127.0.0.3:31000".parse().unwrap()]
        );
        assert_eq!(target.affinity_timeout, Some(Duration::from_secs(10800)));
        assert!(t.keys().any(|l| l.addr == "0.0.0.0:30080".parse().unwrap()));
        assert_eq!(compute(&[s], &[], false, None).len(), 1, "no node ports when disabled");
    }

    #[test]
    fn load_balancers_listen_on_the_node_address() {
        let s = svc(json!({"metadata": {"name": "lb", "namespace": "x"},
            "spec": {"clusterIP": "127.64.0.9", "type": "LoadBalancer",
                     "ports": [{"port": 8443, "nodePort": 30443}]}}));
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let t = compute(&[s], &[], false, Some(ip));
        let mut addrs: Vec<String> = t.keys().map(|l| l.addr.to_string()).collect();
        addrs.sort();
        assert_eq!(addrs, ["10.0.0.5:8443", "127.64.0.9:8443"]);
    }
}
