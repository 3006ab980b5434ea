//! Request priority, a small API Priority and Fairness: node heartbeats are never queued behind
//! the workload, and the workload is served at a bounded concurrency.
//!
//! On an overloaded control plane every request slows down together; without priority a node's
//! Lease renewal waits behind hundreds of pod writes, the node lifecycle controller sees a stale
//! heartbeat, declares a live node dead and evicts its pods, which adds more load. Upstream's
//! APF gives node requests their own priority level (`system-node-high`) and long-running
//! requests (watches, logs) no limit at all; kumo does the same with three classes:
//!
//! - **long-running** (watches, `log`, `exec`, `attach`, `portforward`, `proxy`): not limited,
//!   as upstream exempts them (they hold a request open for minutes).
//! - **node** (Nodes and their status, Leases in `kube-node-lease`): a pool of their own.
//! - **system** (every other request of the control plane's own clients, which reach the
//!   router in-process: the controllers, the scheduler, DNS, the proxy, the local agent): a pool
//!   of their own, as upstream puts kube-controller-manager and kube-scheduler in
//!   `workload-high`, above users' requests. Without it, at 5,000 hollow nodes a scheduler's
//!   re-list (hundreds of pages) and every binding waited behind the users' creates.
//! - **workload** (everything else): at most `max_inflight` at once; the rest wait their turn in
//!   arrival order and get `429 TooManyRequests` with `Retry-After` if their turn does not come
//!   within [`QUEUE_TIMEOUT`], as upstream's queues reject after their wait.
//!
//! Fewer requests in progress at once also means each finishes sooner: the work queued behind
//! the limit costs nothing until its turn.

use crate::error::ApiError;
use crate::request::{Params, RequestInfo};
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a request may wait for its turn before it is told to come back later.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

/// Upstream's `--max-requests-inflight` default, for the workload class.
pub const DEFAULT_MAX_INFLIGHT: usize = 400;

/// Where node agents keep their heartbeat Leases.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The class a request is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Watches and streams: never limited.
    LongRunning,
    /// Node heartbeats and status: their own pool.
    Node,
    /// The control plane's in-process clients: their own pool.
    System,
    /// Everything else.
    Workload,
}

/// The pools of the two limited classes.
#[derive(Debug)]
pub struct Limits {
    node: Semaphore,
    system: Semaphore,
    workload: Semaphore,
    queue_timeout: Duration,
}

impl Limits {
    /// `max_inflight` requests of each limited class at once (at least one).
    pub fn new(max_inflight: usize) -> Limits {
        Limits::with_timeout(max_inflight, QUEUE_TIMEOUT)
    }

    fn with_timeout(max_inflight: usize, queue_timeout: Duration) -> Limits {
        let n = max_inflight.clamp(1, Semaphore::MAX_PERMITS);
        Limits {
            node: Semaphore::new(n),
            system: Semaphore::new(n),
            workload: Semaphore::new(n),
            queue_timeout,
        }
    }
}

/// Which class a request for this path and query belongs to.
pub fn classify(path: &str, query: Option<&str>) -> Class {
    let Some(info) = RequestInfo::parse(path) else { return Class::Workload };
    if matches!(
        info.subresource.as_deref(),
        Some("log" | "exec" | "attach" | "portforward" | "proxy")
    ) || Params::parse(query).flag("watch")
    {
        return Class::LongRunning;
    }
    let node = match (info.group.as_str(), info.resource.as_deref()) {
        ("", Some("nodes")) => true,
        ("coordination.k8s.io", Some("leases")) => {
            info.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE)
        }
        _ => false,
    };
    if node {
        Class::Node
    } else {
        Class::Workload
    }
}

/// Marks a request that came over the in-process transport ([`crate::local`]): one of the
/// control plane's own clients.
#[derive(Debug, Clone, Copy)]
pub struct InProcess;

/// The class of `req`: [`classify`], except that the control plane's own requests that would
/// be workload are system.
pub fn class_of<B>(req: &http::Request<B>) -> Class {
    match classify(req.uri().path(), req.uri().query()) {
        Class::Workload if req.extensions().get::<InProcess>().is_some() => Class::System,
        class => class,
    }
}

/// The middleware: wait for a turn in the request's class, then serve it.
pub async fn middleware(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let pool = match class_of(&req) {
        Class::LongRunning => return next.run(req).await,
        Class::Node => &limits.node,
        Class::System => &limits.system,
        Class::Workload => &limits.workload,
    };
    // The permit is held until the response is ready (a streamed body is not counted).
    let _permit = match tokio::time::timeout(limits.queue_timeout, pool.acquire()).await {
        Ok(Ok(permit)) => permit,
        // Closed never happens (the pools live as long as the router); treat it as busy.
        Ok(Err(_)) | Err(_) => return too_many_requests(),
    };
    next.run(req).await
}

fn too_many_requests() -> Response {
    let mut resp = ApiError::TooManyRequests(
        "too many requests, please try again later: the API server is at its concurrency limit \
         (--max-requests-inflight)"
            .into(),
        None,
    )
    .into_response();
    resp.headers_mut().insert("Retry-After", HeaderValue::from_static("1"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn heartbeats_and_node_status_are_node_class() {
        let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1";
        assert_eq!(classify(lease, None), Class::Node);
        assert_eq!(classify("/api/v1/nodes/n1/status", Some("fieldManager=x")), Class::Node);
        assert_eq!(classify("/api/v1/nodes", None), Class::Node);
    }

    #[test]
    fn other_leases_and_pods_are_workload() {
        let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kumo-scheduler";
        assert_eq!(classify(lease, None), Class::Workload);
        assert_eq!(classify("/api/v1/namespaces/default/pods", None), Class::Workload);
        assert_eq!(classify("/api", None), Class::Workload);
    }

    #[test]
    fn watches_and_streams_are_not_limited() {
        let pods = "/api/v1/namespaces/default/pods";
        assert_eq!(classify(pods, Some("watch=true&resourceVersion=5")), Class::LongRunning);
        assert_eq!(classify(pods, Some("watch=1")), Class::LongRunning);
        assert_eq!(classify(pods, Some("watch=false")), Class::Workload);
        assert_eq!(classify("/api/v1/nodes", Some("watch=true")), Class::LongRunning);
        assert_eq!(
            classify("/api/v1/namespaces/default/pods/p/log", Some("follow=true")),
            Class::LongRunning
        );
    }

    #[test]
    fn the_control_planes_own_requests_are_system_class() {
        let request = |path: &str, local: bool| {
            let mut req = http::Request::builder().uri(path).body(()).expect("request");
            if local {
                req.extensions_mut().insert(InProcess);
            }
            class_of(&req)
        };
        let binding = "/api/v1/namespaces/sim/pods/p/binding";
        assert_eq!(request(binding, true), Class::System);
        assert_eq!(request(binding, false), Class::Workload);
        // Heartbeats and watches keep their own class whoever sends them.
        let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1";
        assert_eq!(request(lease, true), Class::Node);
        assert_eq!(request("/api/v1/pods?watch=true", true), Class::LongRunning);
    }

    #[tokio::test]
    async fn a_request_that_waits_too_long_gets_429_and_the_pool_recovers() {
        let limits = Arc::new(Limits::with_timeout(1, Duration::from_millis(50)));
        let held = limits.workload.acquire().await.expect("permit");
        let timed_out = tokio::time::timeout(limits.queue_timeout, limits.workload.acquire()).await;
        assert!(timed_out.is_err(), "the second request must wait while the first holds the pool");
        // Node and system requests are not behind the workload.
        assert!(limits.node.try_acquire().is_ok());
        assert!(limits.system.try_acquire().is_ok());
        drop(held);
        assert!(limits.workload.try_acquire().is_ok());
        let resp = too_many_requests();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers().get("Retry-After").map(|v| v.as_bytes()), Some(&b"1"[..]));
    }
}
