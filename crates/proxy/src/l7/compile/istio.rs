//! Routes from Istio's VirtualService: those naming a gateway serve the edge listener, those
//! for the `mesh` serve traffic to the Services their hosts name.

use super::routes::{host_order, regex_full, Context};
use super::{parse_duration, service_for_host, source_key, str_at};
use crate::l7::model::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

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
    HeaderOps { set: map(&v["set"]), add: map(&v["add"]), remove: super::strings(&v["remove"]) }
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
