//! Routes from the three routing vocabularies: `networking.k8s.io/v1` Ingress,
//! `gateway.networking.k8s.io/v1` HTTPRoute (attached to a Gateway), and Istio's
//! VirtualService. Semantics: `../shared/reference/dataplane.md` §2–3 and the upstream API docs.

use super::{parse_duration, service_for_host, source_key, str_at};
use crate::l7::model::*;
use k8s_openapi::api::core::v1::Service;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct Context<'a> {
    pub services: &'a [Arc<Service>],
    /// TrafficPolicy keys targeting (kind, namespace, name).
    pub policies: &'a dyn Fn(&str, &str, &str) -> Vec<String>,
}

impl Context<'_> {
    /// The cluster for a Service port given by number or name; `None` port: the only port.
    fn cluster(&self, ns: &str, name: &str, port: Option<&Value>) -> Backend {
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

fn host_order(hosts: &[HostMatch]) -> (u8, i64) {
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

fn regex_full(r: &str) -> Option<regex::Regex> {
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

/// `Some(listener hostnames)` when one of the route's parentRefs is a Gateway that accepts it.
fn attachment(gateways: &[Value], route: &Value, ns: &str) -> Option<Vec<HostMatch>> {
    let mut hosts = Vec::new();
    let mut attached = false;
    let mut any_host = false;
    for p in route["spec"]["parentRefs"].as_array().into_iter().flatten() {
        if p["kind"].as_str().unwrap_or("Gateway") != "Gateway" {
            continue;
        }
        let gw_ns = p["namespace"].as_str().unwrap_or(ns);
        let Some(gw_name) = p["name"].as_str() else { continue };
        let Some(gw) = gateways.iter().find(|g| {
            str_at(g, &["metadata", "namespace"]) == Some(gw_ns)
                && str_at(g, &["metadata", "name"]) == Some(gw_name)
        }) else {
            continue;
        };
        for l in gw["spec"]["listeners"].as_array().into_iter().flatten() {
            if let Some(section) = p["sectionName"].as_str() {
                if l["name"].as_str() != Some(section) {
                    continue;
                }
            }
            let from = l["allowedRoutes"]["namespaces"]["from"].as_str().unwrap_or("Same");
            if from == "Same" && gw_ns != ns {
                continue;
            }
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
    HeaderOps {
        set: pairs(&v["set"]),
        add: pairs(&v["add"]),
        remove: v["remove"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(str::to_string))
            .collect(),
    }
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

// ---------------------------------------------------------------------- VirtualService

/// VirtualService routes: those naming a gateway serve the edge listener (hosts match the
/// Host header); those for the `mesh` (no `gateways`, or `mesh` listed) serve traffic to the
/// Services their hosts name. Within one VirtualService the first matching rule wins.
pub fn virtual_service_routes(
    ctx: &Context,
    vss: &[Value],
) -> (Vec<Route>, HashMap<ServiceKey, Vec<Route>>) {
    let mut edge = Vec::new();
    let mut mesh: HashMap<ServiceKey, Vec<Route>> = HashMap::new();
    for vs in vss {
        let ns = str_at(vs, &["metadata", "namespace"]).unwrap_or("default");
        let name = str_at(vs, &["metadata", "name"]).unwrap_or_default();
        let gateways: Vec<&str> = vs["spec"]["gateways"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str())
            .collect();
        let for_mesh = gateways.is_empty() || gateways.contains(&"mesh");
        let for_edge = gateways.iter().any(|g| *g != "mesh");
        let host_strs: Vec<&str> = vs["spec"]["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str())
            .collect();
        let hosts: Vec<HostMatch> = if host_strs.contains(&"*") {
            Vec::new()
        } else {
            host_strs.iter().map(|h| HostMatch::parse(h)).collect()
        };
        let (created, id) = source_key(vs);
        let policies = (ctx.policies)("VirtualService", ns, name);
        let mut routes = Vec::new();
        for (idx, h) in vs["spec"]["http"].as_array().into_iter().flatten().enumerate() {
            let rule = Arc::new(vs_rule(ctx, ns, name, idx, h, &policies));
            let mut matches: Vec<&Value> =
                h["match"].as_array().map(|m| m.iter().collect()).unwrap_or_default();
            let any = serde_json::json!({});
            if matches.is_empty() {
                matches.push(&any);
            }
            for m in matches {
                let Some(matcher) = vs_match(m) else { continue };
                // Rule order is the precedence inside a VirtualService.
                let o = Order {
                    host: host_order(&hosts),
                    path: (1, 0),
                    method: 1,
                    headers: 0,
                    query: 0,
                    source: (created.clone(), id.clone(), idx),
                };
                routes.push(Route { hosts: hosts.clone(), matcher, rule: rule.clone(), order: o });
            }
        }
        if for_edge {
            edge.extend(routes.iter().cloned());
        }
        if for_mesh {
            for h in &host_strs {
                if let Some(svc) = service_for_host(ctx.services, ns, h) {
                    let mesh_routes = routes.iter().cloned().map(|mut r| {
                        r.hosts.clear();
                        r
                    });
                    mesh.entry(svc).or_default().extend(mesh_routes);
                }
            }
        }
    }
    (edge, mesh)
}

fn string_match(v: &Value) -> Option<StrMatch> {
    if let Some(e) = v["exact"].as_str() {
        return Some(StrMatch::Exact(e.to_string()));
    }
    if let Some(p) = v["prefix"].as_str() {
        return Some(StrMatch::Prefix(p.to_string()));
    }
    v["regex"].as_str().and_then(regex_full).map(StrMatch::Regex)
}

fn vs_match(m: &Value) -> Option<Match> {
    let path = if m["uri"].is_object() {
        let u = &m["uri"];
        Some(if let Some(e) = u["exact"].as_str() {
            PathMatch::Exact(e.to_string())
        } else if let Some(p) = u["prefix"].as_str() {
            PathMatch::Prefix(p.to_string())
        } else {
            PathMatch::Regex(regex_full(u["regex"].as_str()?)?)
        })
    } else {
        None
    };
    let map = |v: &Value, lower: bool| -> Option<Vec<(String, StrMatch)>> {
        let mut out = Vec::new();
        for (k, m) in v.as_object().into_iter().flatten() {
            let k = if lower { k.to_ascii_lowercase() } else { k.clone() };
            out.push((k, string_match(m)?));
        }
        Some(out)
    };
    Some(Match {
        path,
        method: if m["method"].is_object() { Some(string_match(&m["method"])?) } else { None },
        authority: if m["authority"].is_object() {
            Some(string_match(&m["authority"])?)
        } else {
            None
        },
        headers: map(&m["headers"], true)?,
        without_headers: map(&m["withoutHeaders"], true)?,
        query: map(&m["queryParams"], false)?,
    })
}

fn vs_header_ops(v: &Value) -> HeaderOps {
    let map = |v: &Value| -> Vec<(String, String)> {
        v.as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect()
    };
    HeaderOps {
        set: map(&v["set"]),
        add: map(&v["add"]),
        remove: v["remove"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(str::to_string))
            .collect(),
    }
}

fn percentage(v: &Value) -> f64 {
    v["percentage"]["value"]
        .as_f64()
        .or_else(|| v["percent"].as_f64())
        .unwrap_or(100.0)
        .clamp(0.0, 100.0)
}

fn vs_rule(
    ctx: &Context,
    ns: &str,
    name: &str,
    idx: usize,
    h: &Value,
    policies: &[String],
) -> Rule {
    let action = if h["redirect"].is_object() {
        let r = &h["redirect"];
        Action::Redirect(Redirect {
            scheme: r["scheme"].as_str().map(str::to_string),
            host: r["authority"].as_str().map(str::to_string),
            port: r["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
            path: r["uri"].as_str().map(|u| PathRewrite::Full(u.to_string())),
            status: r["redirectCode"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(301),
        })
    } else if h["directResponse"].is_object() {
        let d = &h["directResponse"];
        Action::Respond {
            status: d["status"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(200),
            body: d["body"]["string"].as_str().unwrap_or_default().to_string(),
        }
    } else {
        let backends = h["route"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let host = d["destination"]["host"].as_str().unwrap_or_default();
                let target = match service_for_host(ctx.services, ns, host) {
                    Some(svc) => match ctx.cluster(
                        &svc.namespace,
                        &svc.name,
                        d["destination"]["port"].get("number"),
                    ) {
                        Backend::Invalid { reason, .. } => Backend::Invalid { status: 503, reason },
                        b => b,
                    },
                    None => Backend::Invalid {
                        status: 503,
                        reason: format!("no service for host {host}"),
                    },
                };
                let weight = d["weight"].as_u64().map(|w| w.min(1_000_000) as u32);
                (weight, target)
            })
            .collect::<Vec<_>>();
        // A single destination takes all traffic; otherwise unset weights are 0.
        let single = backends.len() == 1;
        Action::Forward(
            backends
                .into_iter()
                .map(|(w, target)| WeightedBackend {
                    weight: if single { 1 } else { w.unwrap_or(0) },
                    target,
                })
                .collect(),
        )
    };
    let mut retry = RetryPolicy::default();
    if h["retries"].is_object() {
        let r = &h["retries"];
        retry.attempts = r["attempts"].as_u64().unwrap_or(0).min(10) as u32;
        retry.per_try_timeout =
            r["perTryTimeout"].as_str().and_then(parse_duration).filter(|d| !d.is_zero());
        if let Some(on) = r["retryOn"].as_str() {
            retry.on = retry_on(on);
        }
    }
    let fault = if h["fault"].is_object() {
        let f = &h["fault"];
        Some(Fault {
            delay: f["delay"]["fixedDelay"]
                .as_str()
                .and_then(parse_duration)
                .map(|d| (d, percentage(&f["delay"]))),
            abort: f["abort"]["httpStatus"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .map(|c| (c, percentage(&f["abort"]))),
        })
    } else {
        None
    };
    let rewrite = h["rewrite"].is_object().then(|| Rewrite {
        host: h["rewrite"]["authority"].as_str().map(str::to_string),
        path: h["rewrite"]["uri"].as_str().map(|u| PathRewrite::Prefix(u.to_string())),
    });
    Rule {
        id: format!(
            "virtualservice/{ns}/{name}/{}",
            h["name"].as_str().map(str::to_string).unwrap_or(idx.to_string())
        ),
        action,
        timeout: h["timeout"].as_str().and_then(parse_duration).filter(|d| !d.is_zero()),
        retry,
        fault,
        request_headers: vs_header_ops(&h["headers"]["request"]),
        response_headers: vs_header_ops(&h["headers"]["response"]),
        rewrite,
        policies: policies.to_vec(),
        stats: Default::default(),
    }
}

/// Envoy's `x-envoy-retry-on` vocabulary, plus bare status codes.
pub fn retry_on(s: &str) -> RetryOn {
    let mut on = RetryOn::default();
    for part in s.split(',').map(str::trim) {
        match part {
            "5xx" => on.five_xx = true,
            "gateway-error" => on.gateway_error = true,
            "connect-failure" => on.connect_failure = true,
            "reset" | "refused-stream" => on.reset = true,
            "retriable-4xx" => on.retriable_4xx = true,
            code => {
                if let Ok(c) = code.parse::<u16>() {
                    on.codes.push(c);
                }
            }
        }
    }
    on
}
