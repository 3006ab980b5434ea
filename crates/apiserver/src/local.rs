//! The in-process transport: API clients that live in the server's own process (the
//! controllers, the scheduler, DNS, the proxy and the agent of `kumo up`) hand their HTTP
//! requests straight to the router, with no socket, TLS or HTTP framing in between.
//!
//! They still speak the whole API: the same routes, authentication (the transport plays a
//! connection whose peer presented the admin certificate), admission, priority (in a pool of
//! their own, see [`crate::priority`]) and watch streams as a remote client gets. Only the
//! bytes' trip over loopback is saved — at scale that trip (TLS records and HTTP/1 parsing on
//! both ends, for every controller request and watch event) was a large share of the control
//! plane's CPU (docs/adr/0015).

use crate::auth::{PeerIdentity, User};
use axum::body::{Body, Bytes, HttpBody};
use axum::Router;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

/// A tower service that serves requests with the API's router in this process, as `user`.
#[derive(Clone)]
pub struct LocalTransport {
    router: Router,
    identity: PeerIdentity,
}

impl LocalTransport {
    pub(crate) fn new(router: Router, user: User) -> LocalTransport {
        LocalTransport { router, identity: PeerIdentity(Some(user)) }
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
        Box::pin(self.router.clone().oneshot(req))
    }
}
