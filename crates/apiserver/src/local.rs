//! The in-process transport: API clients that live in the server's own process (the
//! controllers, the scheduler, DNS, the proxy and the agent of `kumo up`) hand their HTTP
//! requests straight to the router, with no socket, TLS or HTTP framing in between.
//!
//! They still speak the whole API: the same routes, authentication (the transport plays a
//! connection whose peer presented the admin certificate), admission, priority (in a pool of
//! their own, see [`crate::priority`]) and watch streams as a remote client gets. Only the bytes' trip over loopback is saved — at scale
//! that trip (TLS records and HTTP/1 parsing on both ends, for every controller request and
//! watch event) was a large share of the control plane's CPU (docs/adr/0015).

use crate::auth::{PeerIdentity, User};
use axum::body::{Body, Bytes, HttpBody};
use axum::response::IntoResponse;
use axum::Router;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

/// A tower service that serves requests with the API's router in this process, as `user`.
///
/// Requests are served on the runtime the transport was made on (the API server's), whatever
/// runtime the client runs on: a client on a thread of its own (the scheduler, the
/// controllers) then spends its thread on its own work, not on serving its requests. Served
/// on the controllers' one thread, their hundreds of requests in flight queued past the
/// priority pool's time limit (429s) and starved the scheduler's bindings.
#[derive(Clone)]
pub struct LocalTransport {
    router: Router,
    identity: PeerIdentity,
    server: Option<tokio::runtime::Handle>,
}

impl LocalTransport {
    pub(crate) fn new(router: Router, user: User) -> LocalTransport {
        let server = tokio::runtime::Handle::try_current().ok();
        LocalTransport { router, identity: PeerIdentity(Some(user)), server }
    }
}

impl<B> Service<http::Request<B>> for LocalTransport
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(self.identity.clone());
        req.extensions_mut().insert(crate::priority::InProcess);
        let served = self.router.clone().oneshot(req);
        let Some(server) = &self.server else { return Box::pin(served) };
        let task = server.spawn(served);
        Box::pin(async move {
            match task.await {
                Ok(response) => response,
                // The request's task panicked or the server's runtime is gone.
                Err(e) => Ok(crate::error::ApiError::Internal(format!("request failed: {e}"))
                    .into_response()),
            }
        })
    }
}
