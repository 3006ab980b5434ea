//! Routes from Kubernetes' routing vocabularies: `networking.k8s.io/v1` Ingress and
//! `gateway.networking.k8s.io/v1` HTTPRoute (attached to a Gateway); Istio's VirtualService is
//! in [`super::istio`]. Semantics: `../shared/reference/dataplane.md` §2–3 and the upstream
//! API docs.

use super::{parse_duration, source_key, str_at};
use crate::l7::model::*;
use k8s_openapi::api::core::v1::Service;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub struct Context<'a> {
    pub services: &'a [Arc<Service>],
    /// TrafficPolicy keys targeting (kind, namespace, name).
    pub policies: &'a dyn Fn(&str, &str, &str) -> Vec<String>,
}

impl Context<'_> {
    /// The cluster for a Service port given by number or name; `None` port: the only port.
    pub(super) fn cluster(&self, ns: &str, name: &str, port: Option<&Value>) -> Backend {
        let Some(svc) = self.services.iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name)
        }) else {
            return Backend::Invalid {
                status: 500,
                reason: format!("service {ns}/{name} not found"),
            };
        };
        let ports: Vec<_> = svc.spec.iter().flat_map(|s| s.ports.iter().flatten()).collect();
        let found = match port {
            Some(Value::Number(n)) => ports.iter().find(|p| Some(p.port as u64) == n.as_u64()),
            Some(Value::String(s)) => ports.iter().find(|p| p.name.as_deref() == Some(s.as_str())),
            _ if ports.len() == 1 => ports.first(),
            _ => None,
        };
        match found.and_then(|p| u16::try_from(p.port).ok()) {
            Some(port) => Backend::Cluster(ClusterKey {
                namespace: ns.to_string(),
                service: name.to_string(),
                port,
            }),
            None => Backend::Invalid {
                status: 500,
                reason: format!("service {ns}/{name} has no port {}", port.unwrap_or(&Value::Null)),
            },
        }
    }
}

pub(super) fn host_order(hosts: &[HostMatch]) -> (u8, i64) {
    hosts
        .iter()
        .map(|h| match h {
            HostMatch::Exact(e) => (0, -(e.len() as i64)),
            HostMatch::Suffix(s) => (1, -(s.len() as i64)),
        })
        .min()
        .unwrap_or((2, 0))
}

fn path_order(p: &Option<PathMatch>) -> (u8, i64) {
    match p {
        Some(PathMatch::Exact(e)) => (0, -(e.len() as i64)),
        Some(PathMatch::Segments(s)) | Some(PathMatch::Prefix(s)) => (1, -(s.len() as i64)),
        Some(PathMatch::Regex(_)) => (2, 0),
        None => (1, 0),
    }
}

fn order(hosts: &[HostMatch], m: &Match, source: (String, String, usize)) -> Order {
    Order {
        host: host_order(hosts),
        path: path_order(&m.path),
        method: if m.method.is_some() { 0 } else { 1 },
        headers: -(m.headers.len() as i64),
        query: -(m.query.len() as i64),
        source,
    }
}

pub(super) fn regex_full(r: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{r})$")).ok()
}

// ---------------------------------------------------------------------------------- Ingress

/// Every Ingress is served by the one edge listener (kumo is the only ingress controller).
pub fn ingress_routes(ctx: &Context, ingresses: &[Value]) -> Vec<Route> {
    let mut out = Vec::new();
    for ing in ingresses {
        let ns = str_at(ing, &["metadata", "namespace"]).unwrap_or("default");
        let name = str_at(ing, &["metadata", "name"]).unwrap_or_default();
        let (created, id) = source_key(ing);
        let policies = (ctx.policies)("Ingress", ns, name);
        let backend = |b: &Value| -> Backend {
            let Some(svc) = b["service"]["name"].as_str() else {
                return Backend::Invalid { status: 503, reason: "backend has no service".into() };
            };
            let port =
                b["service"]["port"].get("number").or_else(|| b["service"]["port"].get("name"));
            match ctx.cluster(ns, svc, port) {
                // nginx-ingress answers 503 for a missing Service.
                Backend::Invalid { reason, .. } => Backend::Invalid { status: 503, reason },
                b => b,
            }
        };
        let rule = |idx: usize, b: Backend| {
            Arc::new(Rule {
                id: format!("ingress/{ns}/{name}/{idx}"),
                action: Action::Forward(vec![WeightedBackend { weight: 1, target: b }]),
                timeout: None,
                retry: RetryPolicy::default(),
                fault: None,
                request_headers: HeaderOps::default(),
                response_headers: HeaderOps::default(),
                rewrite: None,
                policies: policies.clone(),
                stats: Default::default(),
            })
        };
        let mut idx = 0;
        for r in ing["spec"]["rules"].as_array().into_iter().flatten() {
            let hosts: Vec<HostMatch> =
                r["host"].as_str().map(HostMatch::parse).into_iter().collect();
            for p in r["http"]["paths"].as_array().into_iter().flatten() {
                let path = p["path"].as_str().unwrap_or("/").to_string();
                let matcher = Match {
                    path: Some(match p["pathType"].as_str() {
                        Some("Exact") => PathMatch::Exact(path),
                        _ => PathMatch::Segments(path),
                    }),
                    ..Default::default()
                };
                let source = (created.clone(), id.clone(), idx);
                out.push(Route {
                    order: order(&hosts, &matcher, source),
                    hosts: hosts.clone(),
                    matcher,
                    rule: rule(idx, backend(&p["backend"])),
                });
                idx += 1;
            }
        }
        if ing["spec"]["defaultBackend"].is_object() {
            let matcher = Match::default();
            let mut o = order(&[], &matcher, (created.clone(), id.clone(), idx));
            // The default backend is the last resort of every host.
            o.host = (3, 0);
            out.push(Route {
                order: o,
                hosts: Vec::new(),
                matcher,
                rule: rule(idx, backend(&ing["spec"]["defaultBackend"])),
            });
        }
    }
    out
}

// ------------------------------------------------------------------------ Gateway API

/// Routes of HTTPRoutes attached to a Gateway that admits them. All Gateways share the edge
/// listener; a listener's `hostname` narrows the routes that do not name their own.
pub fn http_routes(
    ctx: &Context,
    gateways: &[Value],
    routes: &[Value],
    grants: &[Value],
) -> Vec<Route> {
    let mut out = Vec::new();
    for route in routes {
        let ns = str_at(route, &["metadata", "namespace"]).unwrap_or("default");
        let name = str_at(route, &["metadata", "name"]).unwrap_or_default();
        let Some(listener_hosts) = attachment(gateways, route, ns) else { continue };
        let mut hosts: Vec<HostMatch> = route["spec"]["hostnames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(HostMatch::parse))
            .collect();
        if hosts.is_empty() {
            hosts = listener_hosts;
        }
        let (created, id) = source_key(route);
        let policies = (ctx.policies)("HTTPRoute", ns, name);
        for (idx, r) in route["spec"]["rules"].as_array().into_iter().flatten().enumerate() {
            let rule = Arc::new(http_route_rule(ctx, grants, ns, name, idx, r, &policies));
            let mut matches: Vec<&Value> =
                r["matches"].as_array().map(|m| m.iter().collect()).unwrap_or_default();
            let default_match = serde_json::json!({});
            if matches.is_empty() {
                matches.push(&default_match);
            }
            for m in matches {
                let Some(matcher) = http_route_match(m) else { continue };
                let source = (created.clone(), id.clone(), idx);
                out.push(Route {
                    order: order(&hosts, &matcher, source),
                    hosts: hosts.clone(),
                    matcher,
                    rule: rule.clone(),
                });
            }
        }
    }
    out
}

/// What one `parentRef` of a route in `route_ns` reaches: `None` when it names no Gateway;
/// otherwise the Gateway and its listeners that admit the route (`sectionName`,
/// `allowedRoutes.namespaces.from`). The data plane and the route's status both ask this.
pub fn parent_listeners<'a>(
    gateways: &'a [Value],
    parent: &Value,
    route_ns: &str,
) -> Option<(&'a Value, Vec<&'a Value>)> {
    if parent["kind"].as_str().unwrap_or("Gateway") != "Gateway" {
        return None;
    }
    let gw_ns = parent["namespace"].as_str().unwrap_or(route_ns);
    let gw_name = parent["name"].as_str()?;
    let gw = gateways.iter().find(|g| {
        str_at(g, &["metadata", "namespace"]) == Some(gw_ns)
            && str_at(g, &["metadata", "name"]) == Some(gw_name)
    })?;
    let listeners = gw["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| parent["sectionName"].as_str().is_none_or(|s| l["name"].as_str() == Some(s)))
        .filter(|l| {
            let from = l["allowedRoutes"]["namespaces"]["from"].as_str().unwrap_or("Same");
            from != "Same" || gw_ns == route_ns
        })
        .collect();
    Some((gw, listeners))
}

/// `Some(listener hostnames)` when one of the route's parentRefs is a Gateway that accepts it.
fn attachment(gateways: &[Value], route: &Value, ns: &str) -> Option<Vec<HostMatch>> {
    let mut hosts = Vec::new();
    let mut attached = false;
    let mut any_host = false;
    for p in route["spec"]["parentRefs"].as_array().into_iter().flatten() {
        let Some((_, listeners)) = parent_listeners(gateways, p, ns) else { continue };
        for l in listeners {
            attached = true;
            match l["hostname"].as_str() {
                Some(h) => hosts.push(HostMatch::parse(h)),
                None => any_host = true,
            }
        }
    }
    if any_host {
        hosts.clear();
    }
    attached.then_some(hosts)
}

fn http_route_match(m: &Value) -> Option<Match> {
    let path = &m["path"];
    let value = path["value"].as_str().unwrap_or("/").to_string();
    let path = Some(match path["type"].as_str().unwrap_or("PathPrefix") {
        "Exact" => PathMatch::Exact(value),
        "RegularExpression" => PathMatch::Regex(regex_full(&value)?),
        _ => PathMatch::Segments(value),
    });
    let pairs = |list: &Value, lower: bool| -> Option<Vec<(String, StrMatch)>> {
        let mut out: Vec<(String, StrMatch)> = Vec::new();
        for h in list.as_array().into_iter().flatten() {
            let mut name = h["name"].as_str()?.to_string();
            if lower {
                name = name.to_ascii_lowercase();
            }
            // The first entry for a name wins.
            if out.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let value = h["value"].as_str()?.to_string();
            let m = match h["type"].as_str() {
                Some("RegularExpression") => StrMatch::Regex(regex_full(&value)?),
                _ => StrMatch::Exact(value),
            };
            out.push((name, m));
        }
        Some(out)
    };
    Some(Match {
        path,
        method: m["method"].as_str().map(|s| StrMatch::Exact(s.to_string())),
        headers: pairs(&m["headers"], true)?,
        query: pairs(&m["queryParams"], false)?,
        ..Default::default()
    })
}

fn header_ops(v: &Value) -> HeaderOps {
    let pairs = |list: &Value| -> Vec<(String, String)> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| {
                Some((h["name"].as_str()?.to_string(), h["value"].as_str()?.to_string()))
            })
            .collect()
    };
    HeaderOps { set: pairs(&v["set"]), add: pairs(&v["add"]), remove: super::strings(&v["remove"]) }
}

fn path_modifier(p: &Value) -> Option<PathRewrite> {
    match p["type"].as_str()? {
        "ReplaceFullPath" => Some(PathRewrite::Full(p["replaceFullPath"].as_str()?.to_string())),
        "ReplacePrefixMatch" => {
            Some(PathRewrite::Prefix(p["replacePrefixMatch"].as_str()?.to_string()))
        }
        _ => None,
    }
}

pub(crate) fn granted(grants: &[Value], from_ns: &str, to_ns: &str, service: &str) -> bool {
    grants.iter().any(|g| {
        str_at(g, &["metadata", "namespace"]) == Some(to_ns)
            && g["spec"]["from"].as_array().into_iter().flatten().any(|f| {
                f["group"].as_str() == Some("gateway.networking.k8s.io")
                    && f["kind"].as_str() == Some("HTTPRoute")
                    && f["namespace"].as_str() == Some(from_ns)
            })
            && g["spec"]["to"].as_array().into_iter().flatten().any(|t| {
                t["group"].as_str().unwrap_or("").is_empty()
                    && t["kind"].as_str() == Some("Service")
                    && t["name"].as_str().is_none_or(|n| n == service)
            })
    })
}

fn http_route_rule(
    ctx: &Context,
    grants: &[Value],
    ns: &str,
    name: &str,
    idx: usize,
    r: &Value,
    policies: &[String],
) -> Rule {
    let mut request_headers = HeaderOps::default();
    let mut response_headers = HeaderOps::default();
    let mut rewrite = None;
    let mut redirect = None;
    let mut unsupported = None;
    for f in r["filters"].as_array().into_iter().flatten() {
        match f["type"].as_str().unwrap_or_default() {
            "RequestHeaderModifier" => request_headers = header_ops(&f["requestHeaderModifier"]),
            "ResponseHeaderModifier" => response_headers = header_ops(&f["responseHeaderModifier"]),
            "URLRewrite" => {
                let u = &f["urlRewrite"];
                rewrite = Some(Rewrite {
                    host: u["hostname"].as_str().map(str::to_string),
                    path: path_modifier(&u["path"]),
                });
            }
            "RequestRedirect" => {
                let rr = &f["requestRedirect"];
                redirect = Some(Redirect {
                    scheme: rr["scheme"].as_str().map(str::to_string),
                    host: rr["hostname"].as_str().map(str::to_string),
                    port: rr["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
                    path: path_modifier(&rr["path"]),
                    status: rr["statusCode"]
                        .as_u64()
                        .and_then(|c| u16::try_from(c).ok())
                        .unwrap_or(302),
                });
            }
            // Best effort and ignored responses: kumo does not mirror yet, and dropping the
            // copy is within the filter's contract.
            "RequestMirror" => {}
            other => unsupported = Some(other.to_string()),
        }
    }
    let backends: Vec<WeightedBackend> = r["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let weight = b["weight"].as_u64().unwrap_or(1).min(1_000_000) as u32;
            let kind = b["kind"].as_str().unwrap_or("Service");
            let group = b["group"].as_str().unwrap_or("");
            let target_ns = b["namespace"].as_str().unwrap_or(ns);
            let svc = b["name"].as_str().unwrap_or_default();
            let target = if kind != "Service" || !group.is_empty() {
                Backend::Invalid { status: 500, reason: format!("unsupported backend kind {kind}") }
            } else if target_ns != ns && !granted(grants, ns, target_ns, svc) {
                Backend::Invalid {
                    status: 500,
                    reason: format!(
                        "no ReferenceGrant allows {ns} to reach service {target_ns}/{svc}"
                    ),
                }
            } else {
                ctx.cluster(target_ns, svc, b.get("port"))
            };
            WeightedBackend { weight, target }
        })
        .collect();
    let action = if let Some(kind) = unsupported {
        // An unresolvable filter must give an error, never be skipped.
        Action::Respond { status: 500, body: format!("unsupported filter {kind}\n") }
    } else if let Some(r) = redirect {
        Action::Redirect(r)
    } else if backends.is_empty() {
        Action::Respond { status: 500, body: "route has no backends\n".into() }
    } else {
        Action::Forward(backends)
    };
    let t = &r["timeouts"];
    let nonzero = |d: Option<Duration>| d.filter(|d| !d.is_zero());
    let backend_timeout = nonzero(t["backendRequest"].as_str().and_then(parse_duration));
    let mut retry = RetryPolicy { per_try_timeout: backend_timeout, ..RetryPolicy::default() };
    if r["retry"].is_object() {
        let rt = &r["retry"];
        let codes: Vec<u16> = rt["codes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_u64().and_then(|c| u16::try_from(c).ok()))
            .collect();
        retry.attempts = rt["attempts"].as_u64().unwrap_or(1).min(10) as u32;
        retry.backoff =
            rt["backoff"].as_str().and_then(parse_duration).unwrap_or(Duration::from_millis(25));
        retry.on = RetryOn { connect_failure: true, reset: true, codes, ..Default::default() };
    }
    Rule {
        id: format!(
            "httproute/{ns}/{name}/{}",
            r["name"].as_str().map(str::to_string).unwrap_or(idx.to_string())
        ),
        action,
        timeout: nonzero(t["request"].as_str().and_then(parse_duration)),
        retry,
        fault: None,
        request_headers,
        response_headers,
        rewrite,
        policies: policies.to_vec(),
        stats: Default::default(),
    }
}
