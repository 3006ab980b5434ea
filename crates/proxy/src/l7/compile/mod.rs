//! From API objects to a [`Snapshot`]: a pure function, tested without sockets.
//!
//! Services and EndpointSlices give the clusters; Ingress, Gateway + HTTPRoute and
//! VirtualService give the routes ([`routes`]); DestinationRule the per-cluster policies;
//! TrafficPolicy (`kumo.dev/v1alpha1`) rate limits and load shedding; RequestAuthentication and
//! AuthorizationPolicy the access rules ([`auth`]). Objects of the CRD kinds arrive as JSON,
//! since their types are not in k8s-openapi.

pub mod auth;
pub mod istio;
pub mod routes;

use super::model::*;
use crate::table;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Everything the snapshot is made from.
#[derive(Default)]
pub struct Inputs {
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    pub ingresses: Vec<Value>,
    pub gateways: Vec<Value>,
    pub http_routes: Vec<Value>,
    pub reference_grants: Vec<Value>,
    pub virtual_services: Vec<Value>,
    pub destination_rules: Vec<Value>,
    pub traffic_policies: Vec<Value>,
    pub request_authentications: Vec<Value>,
    pub authorization_policies: Vec<Value>,
}

/// Build the snapshot. Objects that do not make sense are skipped (validation rejects most of
/// them before they get here); a reference that does not resolve becomes an error answer.
pub fn compile(inputs: &Inputs) -> Snapshot {
    let mut snap = Snapshot { clusters: clusters(inputs), ..Default::default() };
    apply_destination_rules(&mut snap, inputs);
    let policies = traffic_policies(inputs);
    for (key, targets, spec) in &policies {
        snap.policies.insert(key.clone(), spec.clone());
        for t in targets {
            if t.kind == "Service" {
                for (ck, c) in snap.clusters.iter_mut() {
                    if ck.namespace == t.namespace && ck.service == t.name {
                        c.policies.push(key.clone());
                    }
                }
            }
            if t.kind == "Gateway" {
                snap.edge_policies.push(key.clone());
            }
        }
    }
    let route_policies = |kind: &str, ns: &str, name: &str| -> Vec<String> {
        policies
            .iter()
            .filter(|(_, targets, _)| {
                targets.iter().any(|t| t.kind == kind && t.namespace == ns && t.name == name)
            })
            .map(|(k, _, _)| k.clone())
            .collect()
    };
    let ctx = routes::Context { services: &inputs.services, policies: &route_policies };
    snap.edge.extend(routes::ingress_routes(&ctx, &inputs.ingresses));
    snap.edge.extend(routes::http_routes(
        &ctx,
        &inputs.gateways,
        &inputs.http_routes,
        &inputs.reference_grants,
    ));
    let (edge, mesh) = istio::virtual_service_routes(&ctx, &inputs.virtual_services);
    snap.edge.extend(edge);
    snap.edge.sort_by(|a, b| a.order.cmp(&b.order));
    for (svc, mut routes) in mesh {
        routes.sort_by(|a, b| a.order.cmp(&b.order));
        snap.mesh.insert(svc, routes);
    }
    auth::attach(&mut snap, inputs);
    snap
}

/// Whether a Service port carries HTTP: `appProtocol` or the port-name convention Istio uses.
pub fn is_http_port(name: Option<&str>, app_protocol: Option<&str>) -> (bool, bool) {
    if let Some(p) = app_protocol {
        let p = p.to_ascii_lowercase();
        let h2 = matches!(p.as_str(), "http2" | "h2c" | "grpc" | "kubernetes.io/h2c");
        let http = h2 || matches!(p.as_str(), "http" | "kubernetes.io/http");
        return (http, h2);
    }
    let n = name.unwrap_or_default().to_ascii_lowercase();
    let h2 = n == "http2" || n.starts_with("http2-") || n.starts_with("grpc");
    (h2 || n == "http" || n.starts_with("http-"), h2)
}

fn clusters(inputs: &Inputs) -> HashMap<ClusterKey, ClusterSpec> {
    let by_service = table::slices_by_service(&inputs.slices);
    let mut out = HashMap::new();
    for svc in &inputs.services {
        let Some(spec) = &svc.spec else { continue };
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let slices = by_service.get(&(namespace.clone(), name.clone()));
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(number) = u16::try_from(port.port) else { continue };
            let (http, h2) = is_http_port(port.name.as_deref(), port.app_protocol.as_deref());
            let endpoints = table::ready_endpoints(slices, port.name.as_deref().unwrap_or(""));
            let key =
                ClusterKey { namespace: namespace.clone(), service: name.clone(), port: number };
            out.insert(key, ClusterSpec { endpoints, h2, http, ..Default::default() });
        }
    }
    out
}

/// The Service a host names, seen from `namespace`: `name`, `name.ns`, `name.ns.svc`,
/// `name.ns.svc.<domain>`.
pub fn service_for_host(
    services: &[Arc<Service>],
    namespace: &str,
    host: &str,
) -> Option<ServiceKey> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mut parts = host.split('.');
    let name = parts.next()?.to_string();
    let ns = match parts.next() {
        Some(ns) => ns.to_string(),
        None => namespace.to_string(),
    };
    if let Some(third) = parts.next() {
        if third != "svc" {
            return None;
        }
    }
    services
        .iter()
        .any(|s| {
            s.metadata.name.as_deref() == Some(name.as_str())
                && s.metadata.namespace.as_deref() == Some(ns.as_str())
        })
        .then_some(ServiceKey { namespace: ns, name })
}

fn apply_destination_rules(snap: &mut Snapshot, inputs: &Inputs) {
    // Oldest first so that, as in Istio, the first DestinationRule for a host wins.
    let mut rules: Vec<&Value> = inputs.destination_rules.iter().collect();
    rules.sort_by_key(|r| source_key(r));
    let mut done = std::collections::HashSet::new();
    for dr in rules {
        let ns = str_at(dr, &["metadata", "namespace"]).unwrap_or("default");
        let Some(host) = str_at(dr, &["spec", "host"]) else { continue };
        let Some(svc) = service_for_host(&inputs.services, ns, host) else { continue };
        if !done.insert(svc.clone()) {
            continue;
        }
        let policy = &dr["spec"]["trafficPolicy"];
        let lb = load_balancer(&policy["loadBalancer"]);
        let pool = pool_limits(&policy["connectionPool"]);
        let outlier = outlier(&policy["outlierDetection"]);
        for (key, c) in snap.clusters.iter_mut() {
            if key.namespace == svc.namespace && key.service == svc.name {
                c.lb = lb.clone();
                c.pool = pool.clone();
                c.outlier = outlier.clone();
            }
        }
    }
}

fn load_balancer(v: &Value) -> LbPolicy {
    if let Some(h) = v.get("consistentHash") {
        if let Some(name) = h["httpHeaderName"].as_str() {
            return LbPolicy::ConsistentHash(HashKey::Header(name.to_ascii_lowercase()));
        }
        if let Some(name) = h["httpCookie"]["name"].as_str() {
            return LbPolicy::ConsistentHash(HashKey::Cookie(name.to_string()));
        }
        if let Some(name) = h["httpQueryParameterName"].as_str() {
            return LbPolicy::ConsistentHash(HashKey::Query(name.to_string()));
        }
        if h["useSourceIp"].as_bool() == Some(true) {
            return LbPolicy::ConsistentHash(HashKey::SourceIp);
        }
    }
    match v["simple"].as_str() {
        Some("ROUND_ROBIN") => LbPolicy::RoundRobin,
        Some("RANDOM") | Some("PASSTHROUGH") => LbPolicy::Random,
        _ => LbPolicy::LeastRequest,
    }
}

fn pool_limits(v: &Value) -> PoolLimits {
    let n = |p: &Value| p.as_u64().filter(|n| *n > 0).map(|n| n as usize);
    PoolLimits {
        max_connections: n(&v["tcp"]["maxConnections"]),
        max_pending: n(&v["http"]["http1MaxPendingRequests"]),
        max_requests: n(&v["http"]["http2MaxRequests"]),
        max_requests_per_connection: v["http"]["maxRequestsPerConnection"]
            .as_u64()
            .filter(|n| *n > 0)
            .map(|n| n as u32),
        max_retries: n(&v["http"]["maxRetries"]),
    }
}

fn outlier(v: &Value) -> Option<OutlierSpec> {
    if !v.is_object() {
        return None;
    }
    let d = OutlierSpec::default();
    let dur = |k: &str, def: Duration| v[k].as_str().and_then(parse_duration).unwrap_or(def);
    let num = |k: &str| v[k].as_u64().map(|n| n.min(u32::MAX as u64) as u32);
    Some(OutlierSpec {
        // The deprecated `consecutiveErrors` counted gateway errors.
        consecutive_5xx: num("consecutive5xxErrors")
            .unwrap_or(if v.get("consecutiveErrors").is_some() { 0 } else { d.consecutive_5xx }),
        consecutive_gateway: num("consecutiveGatewayErrors")
            .or_else(|| num("consecutiveErrors"))
            .unwrap_or(0),
        interval: dur("interval", d.interval),
        base_ejection: dur("baseEjectionTime", d.base_ejection),
        max_ejection_percent: num("maxEjectionPercent").unwrap_or(d.max_ejection_percent).min(100),
        min_health_percent: num("minHealthPercent").unwrap_or(0).min(100),
    })
}

/// A policy's target, resolved to the policy's namespace.
pub struct Target {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

fn traffic_policies(inputs: &Inputs) -> Vec<(String, Vec<Target>, PolicySpec)> {
    let mut out = Vec::new();
    for tp in &inputs.traffic_policies {
        let ns = str_at(tp, &["metadata", "namespace"]).unwrap_or("default").to_string();
        let name = str_at(tp, &["metadata", "name"]).unwrap_or_default();
        let spec = &tp["spec"];
        let rate = spec.get("rateLimit").and_then(|r| {
            let requests = r["requests"].as_f64().filter(|n| *n >= 1.0)?;
            let unit = match r["unit"].as_str().unwrap_or("Second") {
                "Minute" => 60.0,
                "Hour" => 3600.0,
                _ => 1.0,
            };
            let key = match r["key"]["type"].as_str() {
                Some("ClientIP") => RateKey::ClientIp,
                Some("Header") => {
                    RateKey::Header(r["key"]["header"].as_str()?.to_ascii_lowercase())
                }
                _ => RateKey::Global,
            };
            let burst = r["burst"].as_f64().filter(|b| *b >= 1.0).unwrap_or(requests);
            Some(RateSpec { per_second: requests / unit, burst, key })
        });
        let shed = spec.get("loadShedding").and_then(|s| {
            Some(ShedSpec {
                max_concurrent: s["maxConcurrentRequests"].as_u64().filter(|n| *n >= 1)? as usize,
                retry_after_secs: s["retryAfterSeconds"].as_u64().unwrap_or(1),
            })
        });
        if rate.is_none() && shed.is_none() {
            continue;
        }
        out.push((format!("{ns}/{name}"), targets(tp, &ns), PolicySpec { rate, shed }));
    }
    out
}

/// `spec.targetRefs` (and Istio's single `targetRef`), in the object's namespace.
pub fn targets(obj: &Value, ns: &str) -> Vec<Target> {
    let spec = &obj["spec"];
    let mut refs: Vec<&Value> =
        spec["targetRefs"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    if spec["targetRef"].is_object() {
        refs.push(&spec["targetRef"]);
    }
    refs.into_iter()
        .filter_map(|r| {
            Some(Target {
                kind: r["kind"].as_str()?.to_string(),
                namespace: r["namespace"].as_str().unwrap_or(ns).to_string(),
                name: r["name"].as_str()?.to_string(),
            })
        })
        .collect()
}

/// A JSON list of strings (other entries skipped).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Older objects first, then by namespace/name: Gateway API's tie-break.
pub fn source_key(v: &Value) -> (String, String) {
    let created = str_at(v, &["metadata", "creationTimestamp"]).unwrap_or_default().to_string();
    let ns = str_at(v, &["metadata", "namespace"]).unwrap_or_default();
    let name = str_at(v, &["metadata", "name"]).unwrap_or_default();
    (created, format!("{ns}/{name}"))
}

#[cfg(test)]
mod tests;
