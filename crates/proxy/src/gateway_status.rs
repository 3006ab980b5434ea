//! Status the gateway owes its objects: Gateways get their address and the `Accepted` and
//! `Programmed` conditions (what `kubectl get gateway` shows), Ingresses their load-balancer
//! address (the ADDRESS column). Written only when it differs, so a resync writes nothing.

use crate::l7::compile::routes::parent_listeners;
use crate::l7::compile::{str_at, Inputs};
use serde_json::{json, Value};
use std::net::SocketAddr;

const HTTP_ROUTE: (&str, &str, &str, &str) =
    ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes");
const CONTROLLER: &str = "kumo.dev/gateway-controller";
const GATEWAY: (&str, &str, &str, &str) =
    ("gateway.networking.k8s.io", "v1", "Gateway", "gateways");

pub fn publish(client: &kube::Client, inputs: &Inputs, addr: SocketAddr) {
    let ip = addr.ip().to_string();
    for gw in &inputs.gateways {
        let generation = gw["metadata"]["generation"].as_i64().unwrap_or(1);
        let current = &gw["status"];
        let programmed = current["conditions"].as_array().into_iter().flatten().any(|c| {
            c["type"] == "Programmed"
                && c["status"] == "True"
                && c["observedGeneration"].as_i64() == Some(generation)
        });
        let has_addr = current["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["value"].as_str() == Some(ip.as_str()));
        if programmed && has_addr {
            continue;
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let cond = |t: &str, reason: &str, msg: &str| {
            json!({"type": t, "status": "True", "reason": reason, "message": msg,
                   "observedGeneration": generation, "lastTransitionTime": now})
        };
        let listeners: Vec<Value> = gw["spec"]["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| {
                Some(json!({
                    "name": l["name"].as_str()?,
                    "attachedRoutes": attached(inputs, gw, l["name"].as_str()?),
                    "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
                    "conditions": [cond("Accepted", "Accepted", "Listener accepted"),
                                   cond("Programmed", "Programmed", &format!("Served by the kumo gateway on {addr}"))],
                }))
            })
            .collect();
        let status = json!({"status": {
            "addresses": [{"type": "IPAddress", "value": ip}],
            "conditions": [cond("Accepted", "Accepted", "Accepted by kumo"),
                           cond("Programmed", "Programmed", &format!("Served by the kumo gateway on {addr}"))],
            "listeners": listeners,
        }});
        patch(client, gw, GATEWAY, status);
    }
    for route in &inputs.http_routes {
        route_status(client, inputs, route);
    }
    for ing in &inputs.ingresses {
        let has = ing["status"]["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["ip"].as_str() == Some(ip.as_str()));
        if !has {
            let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip, "ports": [{"port": addr.port(), "protocol": "TCP"}]}]}}});
            patch(client, ing, ("networking.k8s.io", "v1", "Ingress", "ingresses"), status);
        }
    }
}

/// Routes a listener admits: Gateway API's `attachedRoutes`.
fn attached(inputs: &Inputs, gw: &Value, listener: &str) -> usize {
    inputs
        .http_routes
        .iter()
        .filter(|r| {
            let ns = str_at(r, &["metadata", "namespace"]).unwrap_or("default");
            r["spec"]["parentRefs"].as_array().into_iter().flatten().any(|p| {
                parent_listeners(&inputs.gateways, p, ns).is_some_and(|(g, ls)| {
                    std::ptr::eq(g, gw) && ls.iter().any(|l| l["name"].as_str() == Some(listener))
                })
            })
        })
        .count()
}

fn patch(
    client: &kube::Client,
    obj: &Value,
    (group, version, kind, plural): (&str, &str, &str, &str),
    body: Value,
) {
    let (Some(ns), Some(name)) =
        (str_at(obj, &["metadata", "namespace"]), str_at(obj, &["metadata", "name"]))
    else {
        return;
    };
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(client.clone(), ns, &resource);
    let name = name.to_string();
    tokio::spawn(async move {
        let params = kube::api::PatchParams::default();
        if let Err(e) = api.patch_status(&name, &params, &kube::api::Patch::Merge(&body)).await {
            tracing::debug!("gateway: cannot write the status of {name}: {e}");
        }
    });
}

/// `status.parents` of an HTTPRoute: for each Gateway it names, whether the Gateway accepted
/// it and whether its backends resolve (Gateway API's Accepted and ResolvedRefs).
fn route_status(client: &kube::Client, inputs: &Inputs, route: &Value) {
    let ns = str_at(route, &["metadata", "namespace"]).unwrap_or("default");
    let generation = route["metadata"]["generation"].as_i64().unwrap_or(1);
    let resolved = resolve_refs(inputs, route, ns);
    let mut parents = Vec::new();
    for p in route["spec"]["parentRefs"].as_array().into_iter().flatten() {
        if p["kind"].as_str().unwrap_or("Gateway") != "Gateway" {
            continue;
        }
        let gw_ns = p["namespace"].as_str().unwrap_or(ns);
        let gw_name = p["name"].as_str().unwrap_or_default();
        let accepted = match parent_listeners(&inputs.gateways, p, ns) {
            None => Err(("NoMatchingParent", format!("no Gateway {gw_ns}/{gw_name}"))),
            Some((_, listeners)) if listeners.is_empty() => Err((
                "NotAllowedByListeners",
                "no listener of the Gateway admits this route".into(),
            )),
            Some(_) => Ok(()),
        };
        let cond = |t: &str, r: &Result<(), (&str, String)>, ok_reason: &str| match r {
            Ok(()) => json!({"type": t, "status": "True", "reason": ok_reason, "message": "",
                             "observedGeneration": generation}),
            Err((reason, msg)) => json!({"type": t, "status": "False", "reason": reason,
                                        "message": msg, "observedGeneration": generation}),
        };
        let mut parent_ref = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                     "namespace": gw_ns, "name": gw_name});
        if let Some(s) = p["sectionName"].as_str() {
            parent_ref["sectionName"] = json!(s);
        }
        parents.push(json!({
            "parentRef": parent_ref,
            "controllerName": CONTROLLER,
            "conditions": [cond("Accepted", &accepted, "Accepted"),
                           cond("ResolvedRefs", &resolved, "ResolvedRefs")],
        }));
    }
    // Compare without the transition times, so an unchanged status is never rewritten.
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        for p in v.as_array_mut().into_iter().flatten() {
            for c in p["conditions"].as_array_mut().into_iter().flatten() {
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastTransitionTime");
                }
            }
        }
        v
    };
    let wanted = Value::Array(parents);
    if strip(&route["status"]["parents"]) == wanted {
        return;
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut with_times = wanted;
    for p in with_times.as_array_mut().into_iter().flatten() {
        for c in p["conditions"].as_array_mut().into_iter().flatten() {
            c["lastTransitionTime"] = json!(now);
        }
    }
    patch(client, route, HTTP_ROUTE, json!({"status": {"parents": with_times}}));
}

fn resolve_refs(inputs: &Inputs, route: &Value, ns: &str) -> Result<(), (&'static str, String)> {
    for rule in route["spec"]["rules"].as_array().into_iter().flatten() {
        for b in rule["backendRefs"].as_array().into_iter().flatten() {
            let kind = b["kind"].as_str().unwrap_or("Service");
            let name = b["name"].as_str().unwrap_or_default();
            if kind != "Service" || !b["group"].as_str().unwrap_or("").is_empty() {
                return Err(("InvalidKind", format!("backend kind {kind} is not supported")));
            }
            let target_ns = b["namespace"].as_str().unwrap_or(ns);
            if target_ns != ns
                && !crate::l7::compile::routes::granted(
                    &inputs.reference_grants,
                    ns,
                    target_ns,
                    name,
                )
            {
                return Err((
                    "RefNotPermitted",
                    format!("no ReferenceGrant allows service {target_ns}/{name}"),
                ));
            }
            let svc = inputs.services.iter().find(|s| {
                s.metadata.namespace.as_deref() == Some(target_ns)
                    && s.metadata.name.as_deref() == Some(name)
            });
            let Some(svc) = svc else {
                return Err(("BackendNotFound", format!("service {target_ns}/{name} not found")));
            };
            let port = b["port"].as_i64();
            let has_port = svc
                .spec
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .any(|p| Some(p.port as i64) == port);
            if !has_port {
                return Err((
                    "BackendNotFound",
                    format!("service {target_ns}/{name} has no port {}", b["port"]),
                ));
            }
        }
    }
    Ok(())
}
