//! Calls from the API server to the node agents (kumo's kubelets), and the `pods/log`
//! subresource built on them.
//!
//! An agent is reached at the address and port its Node reports (`status.addresses`, InternalIP
//! first, then Hostname; `status.daemonEndpoints.kubeletEndpoint.Port`) over plain HTTP with the
//! API server's admin token as bearer token: see docs/adr/0005-agent-endpoint.md.

use crate::error::{ApiError, ApiResult, Details};
use crate::http::AppState;
use crate::request::Params;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;

/// How long connecting to an agent may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The annotation naming the container `kubectl logs` and `exec` pick by default.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// The `pods/log` query parameters kubelet understands, forwarded as they came.
const LOG_PARAMS: &[&str] =
    &["follow", "tailLines", "sinceSeconds", "sinceTime", "timestamps", "limitBytes", "previous"];

/// Where a node's agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The node's name.
    pub node: String,
    /// Host part of the URL (an IPv6 address in brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Endpoint {
    /// `http://host:port` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.port)
    }
}

/// The agent endpoint a Node object reports.
pub(crate) fn endpoint(node: &Value) -> Result<Endpoint, String> {
    let name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
    let addresses = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
    let of_type = |t: &str| {
        addresses
            .iter()
            .find(|a| a["type"] == t)
            .and_then(|a| a["address"].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let Some(address) = of_type("InternalIP").or_else(|| of_type("Hostname")) else {
        return Err(format!("node \"{name}\" reports no InternalIP or Hostname address"));
    };
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0);
    let Some(port) = port else {
        return Err(format!("node \"{name}\" reports no agent port (daemonEndpoints)"));
    };
    let host = if address.contains(':') { format!("[{address}]") } else { address };
    Ok(Endpoint { node: name, host, port })
}

/// The HTTP client for agents: one, so connections are reused.
pub(crate) fn client() -> ApiResult<&'static reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    // No overall timeout: a followed log lasts as long as the container.
    let c = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        // Agents are on the cluster's own network; a proxy from the environment would not
        // know them.
        .no_proxy()
        .build()
        .map_err(|e| ApiError::Internal(format!("cannot make the HTTP client for agents: {e}")))?;
    Ok(CLIENT.get_or_init(|| c))
}

/// An error with its causes, as one line (reqwest's own message hides the cause).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Go's formatting of a string slice (`[a b]`), which upstream's messages use.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn names<'a>(pod: &'a Value, field: &str) -> Vec<&'a str> {
    pod["spec"][field].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect()
}

/// The container a log request means, as upstream picks it: the one asked for (which must be
/// in the pod), else the only one, else the one the default-container annotation names.
pub(crate) fn select_container(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let containers = names(pod, "containers");
    let init = names(pod, "initContainers");
    let ephemeral = names(pod, "ephemeralContainers");
    if let Some(c) = requested {
        if containers.contains(&c) || init.contains(&c) || ephemeral.contains(&c) {
            return Ok(c.to_string());
        }
        return Err(ApiError::BadRequest(format!("container {c} is not valid for pod {name}")));
    }
    if let [only] = containers.as_slice() {
        return Ok(only.to_string());
    }
    if let Some(d) = pod["metadata"]["annotations"][DEFAULT_CONTAINER].as_str() {
        if containers.contains(&d) {
            return Ok(d.to_string());
        }
    }
    if containers.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}"
        )));
    }
    let mut msg = format!(
        "a container name must be specified for pod {name}, choose one of: {}",
        go_list(&containers)
    );
    if !init.is_empty() {
        msg.push_str(&format!(" or one of the init containers: {}", go_list(&init)));
    }
    if !ephemeral.is_empty() {
        msg.push_str(&format!(" or one of the ephemeral containers: {}", go_list(&ephemeral)));
    }
    Err(ApiError::BadRequest(msg))
}

/// The agent endpoint of the node named `node`.
pub(crate) async fn node_endpoint(st: &AppState, node: &str) -> ApiResult<Endpoint> {
    let snap = st.registry.catalog.snapshot();
    let Some(nodes) = snap.find("", "v1", "nodes").cloned() else {
        return Err(ApiError::Internal("the nodes resource is not served".into()));
    };
    let obj = st.registry.get(&nodes, None, node).await?;
    endpoint(&obj).map_err(ApiError::Internal)
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`: ask the agent of the pod's node and stream
/// its answer through as it comes (so `kubectl logs -f` sees lines as they are written).
pub(crate) async fn pod_log(
    st: &AppState,
    pods: &kumo_api::resources::Resource,
    ns: &str,
    name: &str,
    params: &Params,
) -> ApiResult<Response> {
    let pod = st.registry.get(pods, Some(ns), name).await?;
    let container = select_container(&pod, params.get("container"))?;
    let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!("pod {name} does not have a host assigned")));
    };
    let ep = node_endpoint(st, node).await?;
    let query: Vec<(&str, &str)> =
        LOG_PARAMS.iter().filter_map(|k| params.get(k).map(|v| (*k, v))).collect();
    let url = ep.url(&format!("/containerLogs/{ns}/{name}/{container}"));
    let resp =
        client()?.get(&url).bearer_auth(&st.agent_token).query(&query).send().await.map_err(
            |e| {
                ApiError::Internal(format!(
                    "the agent of node \"{}\" at {}:{} could not be reached: {}",
                    ep.node,
                    ep.host,
                    ep.port,
                    chain(&e)
                ))
            },
        )?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let text = text.trim().to_string();
        return Err(match status {
            StatusCode::BAD_REQUEST => ApiError::BadRequest(text),
            StatusCode::NOT_FOUND => ApiError::NotFound(text, Some(Details::new("", "pods", name))),
            other => ApiError::Internal(format!(
                "the agent of node \"{}\" answered {other}: {text}",
                ep.node
            )),
        });
    }
    let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str], default: Option<&str>) -> Value {
        let list = |n: &[&str]| n.iter().map(|c| json!({"name": c})).collect::<Vec<_>>();
        let mut p = json!({"metadata": {"name": "web"},
            "spec": {"containers": list(containers)}});
        if !init.is_empty() {
            p["spec"]["initContainers"] = json!(list(init));
        }
        if let Some(d) = default {
            p["metadata"]["annotations"] = json!({DEFAULT_CONTAINER: d});
        }
        p
    }

    fn message(r: ApiResult<String>) -> String {
        match r {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn picks_the_only_container_or_the_named_one() {
        assert_eq!(select_container(&pod(&["app"], &[], None), None).ok(), Some("app".into()));
        let two = pod(&["app", "side"], &["setup"], None);
        assert_eq!(select_container(&two, Some("side")).ok(), Some("side".into()));
        assert_eq!(select_container(&two, Some("setup")).ok(), Some("setup".into()));
    }

    #[test]
    fn default_container_annotation_breaks_the_tie() {
        let p = pod(&["app", "side"], &[], Some("side"));
        assert_eq!(select_container(&p, None).ok(), Some("side".into()));
    }

    #[test]
    fn ambiguous_or_unknown_containers_are_400_with_upstream_wording() {
        let p = pod(&["a", "b"], &[], None);
        assert_eq!(
            message(select_container(&p, None)),
            "a container name must be specified for pod web, choose one of: [a b]"
        );
        let p = pod(&["a", "b"], &["init"], Some("nope"));
        assert_eq!(
            message(select_container(&p, None)),
            "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [init]"
        );
        assert_eq!(
            message(select_container(&p, Some("x"))),
            "container x is not valid for pod web"
        );
    }

    #[test]
    fn endpoint_prefers_internal_ip_then_hostname() {
        let node = json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "host-1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        let ep = endpoint(&node).expect("endpoint");
        assert_eq!(ep.url("/x"), "http://10.0.0.5:10250/x");
        let node = json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "host-1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(endpoint(&node).expect("endpoint").host, "host-1");
        let node = json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "InternalIP", "address": "::1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}}}});
        assert_eq!(endpoint(&node).expect("endpoint").url(""), "http://[::1]:1");
        let node = json!({"metadata": {"name": "n1"}, "status": {"addresses": []}});
        assert!(endpoint(&node).is_err());
    }
}
