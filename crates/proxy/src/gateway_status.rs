//! Status the gateway owes its objects: Gateways get their address and the `Accepted` and
//! `Programmed` conditions (what `kubectl get gateway` shows), Ingresses their load-balancer
//! address (the ADDRESS column). Written only when it differs, so a resync writes nothing.

use crate::l7::compile::{str_at, Inputs};
use serde_json::{json, Value};
use std::net::SocketAddr;

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

fn attached(inputs: &Inputs, gw: &Value, listener: &str) -> usize {
    let gw_ns = str_at(gw, &["metadata", "namespace"]).unwrap_or_default();
    let gw_name = str_at(gw, &["metadata", "name"]).unwrap_or_default();
    inputs
        .http_routes
        .iter()
        .filter(|r| {
            let ns = str_at(r, &["metadata", "namespace"]).unwrap_or_default();
            r["spec"]["parentRefs"].as_array().into_iter().flatten().any(|p| {
                p["name"].as_str() == Some(gw_name)
                    && p["namespace"].as_str().unwrap_or(ns) == gw_ns
                    && p["sectionName"].as_str().is_none_or(|s| s == listener)
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
