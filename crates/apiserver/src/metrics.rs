//! The resource metrics API, `metrics.k8s.io/v1beta1`, as metrics-server serves it, so that
//! `kubectl top nodes` and `kubectl top pods` work: NodeMetrics and PodMetrics built on demand
//! from each node agent's `/stats/summary` (kubelet's Summary API shape). Nodes whose agent
//! does not answer are left out, as metrics-server leaves out nodes it cannot scrape.
//!
//! kubectl checks discovery for the group before it asks, so [`group`], [`resource_list`] and
//! [`aggregated_item`] are what `crate::discovery` adds to its answers.

use crate::agents;
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::registry::ListOptions;
use crate::request::{Params, RequestInfo};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use kumo_api::selector::{FieldSelector, LabelSelector};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The group.
pub const GROUP: &str = "metrics.k8s.io";
/// Its one version.
pub const VERSION: &str = "v1beta1";

/// How long one agent may take to answer for its summary before it is left out.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(5);

/// The window reported with every sample: the agents' rates are measured over their last
/// interval between scrapes, which is about this long when `kubectl top` is run repeatedly.
const WINDOW: &str = "10s";

/// The group in legacy `/apis` form (`APIGroup` without kind).
pub fn group() -> Value {
    let gv = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"name": GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

/// Legacy `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"),
    "resources": [
        {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ]})
}

/// The group as one item of aggregated discovery.
pub fn aggregated_item() -> Value {
    let res = |plural: &str, kind: &str, scope: &str| {
        json!({"resource": plural, "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
            "scope": scope, "singularResource": "", "verbs": ["get", "list"]})
    };
    json!({"metadata": {"name": GROUP}, "versions": [{"version": VERSION, "freshness": "Current",
        "resources": [res("nodes", "NodeMetrics", "Cluster"), res("pods", "PodMetrics", "Namespaced")]}]})
}

/// A CPU quantity from nanocores, as metrics-server writes it.
fn cpu(nanos: u64) -> String {
    format!("{nanos}n")
}

/// A memory quantity from bytes in its canonical binary form (`1234Ki`, `5Mi`, or bytes).
fn memory(bytes: u64) -> String {
    // The units are powers of two: a mask tells whether one divides the size.
    for (suffix, unit) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= unit && bytes & (unit - 1) == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

fn json_ok(v: &Value) -> Response {
    let mut resp = (StatusCode::OK, v.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn list_options(params: &Params, name: Option<&str>) -> ApiResult<ListOptions> {
    let labels = LabelSelector::parse(params.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))?;
    let mut fields = params.get("fieldSelector").unwrap_or("").to_string();
    if let Some(n) = name {
        // One object is the list narrowed to its name, so both share one path.
        if !fields.is_empty() {
            fields.push(',');
        }
        fields.push_str(&format!("metadata.name={n}"));
    }
    let fields = FieldSelector::parse(&fields)
        .map_err(|e| ApiError::BadRequest(format!("invalid field selector: {e}")))?;
    Ok(ListOptions { labels, fields, ..Default::default() })
}

/// Serve a `metrics.k8s.io` request.
pub(crate) async fn handle(
    st: &AppState,
    method: &Method,
    info: &RequestInfo,
    params: &Params,
) -> ApiResult<Response> {
    if *method != Method::GET {
        return Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({method} {GROUP})"
        )));
    }
    if info.version != VERSION || info.subresource.is_some() {
        return Err(ApiError::NotFound(
            "the server could not find the requested resource".into(),
            None,
        ));
    }
    match info.resource.as_deref() {
        Some("nodes") if info.namespace.is_none() => {
            node_metrics(st, info.name.as_deref(), params).await
        }
        Some("pods") => {
            pod_metrics(st, info.namespace.as_deref(), info.name.as_deref(), params).await
        }
        _ => {
            Err(ApiError::NotFound("the server could not find the requested resource".into(), None))
        }
    }
}

async fn list(
    st: &AppState,
    plural: &str,
    ns: Option<&str>,
    opts: &ListOptions,
) -> ApiResult<Vec<Value>> {
    let snap = st.registry.catalog.snapshot();
    let Some(r) = snap.find("", "v1", plural).cloned() else {
        return Err(ApiError::Internal(format!("the {plural} resource is not served")));
    };
    drop(snap);
    Ok(st.registry.list(&r, ns, opts).await?.items)
}

/// The summaries of these nodes' agents, by node name; a node that does not answer is absent.
async fn summaries(st: &AppState, nodes: &[Value]) -> HashMap<String, Value> {
    let Ok(client) = agents::client() else { return HashMap::new() };
    let calls = nodes.iter().filter_map(|n| agents::endpoint(n).ok()).map(|ep| async move {
        let call = client
            .get(ep.url("/stats/summary"))
            .bearer_auth(&st.agent_token)
            .timeout(SUMMARY_TIMEOUT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let summary = match call {
            Ok(resp) => resp.json::<Value>().await.map_err(|e| agents::chain(&e)),
            Err(e) => Err(agents::chain(&e)),
        };
        match summary {
            Ok(v) => Some((ep.node, v)),
            Err(e) => {
                tracing::debug!(node = ep.node, error = e, "no summary from the node's agent");
                None
            }
        }
    });
    futures::future::join_all(calls).await.into_iter().flatten().collect()
}

fn meta(obj: &Value, now: &str) -> Value {
    let mut m = json!({"name": obj["metadata"]["name"], "creationTimestamp": now});
    if let Some(ns) = obj["metadata"]["namespace"].as_str() {
        m["namespace"] = json!(ns);
    }
    if obj["metadata"]["labels"].is_object() {
        m["labels"] = obj["metadata"]["labels"].clone();
    }
    m
}

fn usage(stats: &Value) -> Value {
    json!({
        "cpu": cpu(stats["cpu"]["usageNanoCores"].as_u64().unwrap_or(0)),
        "memory": memory(stats["memory"]["workingSetBytes"].as_u64().unwrap_or(0)),
    })
}

fn timestamp(stats: &Value, now: &str) -> Value {
    stats["cpu"]["time"].as_str().map_or_else(|| json!(now), |t| json!(t))
}

async fn node_metrics(st: &AppState, name: Option<&str>, params: &Params) -> ApiResult<Response> {
    let nodes = list(st, "nodes", None, &list_options(params, name)?).await?;
    let summaries = summaries(st, &nodes).await;
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let items: Vec<Value> = nodes
        .iter()
        .filter_map(|n| {
            let s = &summaries.get(n["metadata"]["name"].as_str()?)?["node"];
            s["cpu"].is_object().then(|| {
                json!({"kind": "NodeMetrics", "apiVersion": format!("{GROUP}/{VERSION}"),
                    "metadata": meta(n, &now), "timestamp": timestamp(s, &now), "window": WINDOW,
                    "usage": usage(s)})
            })
        })
        .collect();
    one_or_list(items, name, "NodeMetricsList", "nodemetrics")
}

async fn pod_metrics(
    st: &AppState,
    ns: Option<&str>,
    name: Option<&str>,
    params: &Params,
) -> ApiResult<Response> {
    let pods = list(st, "pods", ns, &list_options(params, name)?).await?;
    // Only the nodes these pods run on need asking.
    let wanted: HashSet<&str> =
        pods.iter().filter_map(|p| p["spec"]["nodeName"].as_str()).collect();
    let nodes: Vec<Value> = list(st, "nodes", None, &ListOptions::default())
        .await?
        .into_iter()
        .filter(|n| n["metadata"]["name"].as_str().is_some_and(|n| wanted.contains(n)))
        .collect();
    let summaries = summaries(st, &nodes).await;
    let mut by_pod: HashMap<(String, String), &Value> = HashMap::new();
    for s in summaries.values() {
        for p in s["pods"].as_array().into_iter().flatten() {
            let r = &p["podRef"];
            if let (Some(pns), Some(pname)) = (r["namespace"].as_str(), r["name"].as_str()) {
                by_pod.insert((pns.to_string(), pname.to_string()), p);
            }
        }
    }
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let items: Vec<Value> = pods
        .iter()
        .filter_map(|p| {
            let key = (
                p["metadata"]["namespace"].as_str()?.to_string(),
                p["metadata"]["name"].as_str()?.to_string(),
            );
            let s = by_pod.get(&key)?;
            // A pod deleted and made again under the same name is another pod.
            let uid = s["podRef"]["uid"].as_str().unwrap_or("");
            if !uid.is_empty() && p["metadata"]["uid"].as_str().is_some_and(|u| u != uid) {
                return None;
            }
            let containers: Vec<Value> = s["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "usage": usage(c)}))
                .collect();
            Some(json!({"kind": "PodMetrics", "apiVersion": format!("{GROUP}/{VERSION}"),
                "metadata": meta(p, &now), "timestamp": timestamp(s, &now), "window": WINDOW,
                "containers": containers}))
        })
        .collect();
    one_or_list(items, name, "PodMetricsList", "podmetrics")
}

fn one_or_list(
    mut items: Vec<Value>,
    name: Option<&str>,
    list_kind: &str,
    plural: &str,
) -> ApiResult<Response> {
    match name {
        Some(n) => match items.pop() {
            Some(item) => Ok(json_ok(&item)),
            None => Err(ApiError::not_found(&format!("{plural}.{GROUP}"), GROUP, plural, n)),
        },
        None => Ok(json_ok(&json!({"kind": list_kind, "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": {}, "items": items}))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_metrics_server_writes_them() {
        assert_eq!(cpu(1_500_000), "1500000n");
        assert_eq!(memory(4096), "4Ki");
        assert_eq!(memory(3 << 20), "3Mi");
        assert_eq!(memory(1000), "1000");
        assert_eq!(memory(0), "0");
    }
}
