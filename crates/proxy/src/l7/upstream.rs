//! Upstream HTTP/1.1 connections, pooled per thread and endpoint. A connection goes back to its
//! thread's pool when the response body has been read to the end, so the next request on that
//! thread reuses it without locks (the gateway's workers each keep their own). A request that a
//! pooled connection could not take (it closed meanwhile) is sent again on a fresh connection.
//! HTTP/2 upstreams use hyper-util's multiplexing client instead (see `Clients`).

use super::handler::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Idle connections kept per endpoint and thread.
const MAX_IDLE: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<http1::SendRequest<Body>>>> = RefCell::default();
}

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No connection could be made.
    Connect,
    /// The connection failed after the request was sent.
    Reset,
}

fn take_idle(addr: SocketAddr) -> Option<http1::SendRequest<Body>> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(s) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    })
}

fn release(addr: SocketAddr, sender: http1::SendRequest<Body>) {
    if sender.is_closed() {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE {
            list.push(sender);
        }
    });
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Body>, SendError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| SendError::Connect)?
        .map_err(|_| SendError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|_| SendError::Connect)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Send `req` (origin-form URI, Host header set) to `addr`. With `keepalive` the connection is
/// reused afterwards.
pub async fn send(
    addr: SocketAddr,
    req: Request<Body>,
    keepalive: bool,
) -> Result<Response<Body>, SendError> {
    let mut req = req;
    // A pooled connection first; if it turns out closed before taking the request, a new one.
    for pooled in [true, false] {
        let mut sender = match pooled.then(|| take_idle(addr)).flatten() {
            Some(s) => s,
            None if pooled => continue,
            None => connect(addr).await?,
        };
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(req).await {
            Ok(resp) => {
                let sender = keepalive.then_some(sender);
                if resp.body().is_end_stream() {
                    if let Some(s) = sender {
                        release(addr, s);
                    }
                    return Ok(resp.map(|b| b.boxed()));
                }
                return Ok(resp.map(|inner| PooledBody { inner, sender, addr }.boxed()));
            }
            Err(mut e) => match e.take_message() {
                Some(back) if pooled => req = back,
                _ => return Err(SendError::Reset),
            },
        }
    }
    Err(SendError::Connect)
}

/// A response body that returns its connection to the pool once read to the end.
struct PooledBody {
    inner: Incoming,
    sender: Option<http1::SendRequest<Body>>,
    addr: SocketAddr,
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let done = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if done {
            if let Some(s) = this.sender.take() {
                release(this.addr, s);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
