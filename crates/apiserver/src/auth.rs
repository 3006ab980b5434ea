//! Authentication: a client certificate signed by the cluster CA (CN = user, O = groups) or a
//! bearer token from the server's token table. Anonymous requests get 401, except the health
//! and version endpoints that Kubernetes also serves to everyone.

use crate::error::ApiError;
use crate::http::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name.
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// The identity the TLS handshake established for a connection, if any.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub Option<User>);

/// Known bearer tokens.
#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: HashMap<String, User>,
}

impl Authenticator {
    /// An authenticator that knows these tokens.
    pub fn new(tokens: impl IntoIterator<Item = (String, User)>) -> Self {
        Authenticator { tokens: tokens.into_iter().collect() }
    }

    /// The user a bearer token belongs to.
    pub fn token(&self, token: &str) -> Option<&User> {
        self.tokens.get(token)
    }
}

const PUBLIC: &[&str] = &["/version", "/healthz", "/livez", "/readyz"];

/// The middleware: find the user or answer 401.
pub async fn middleware(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let from_cert = req.extensions().get::<PeerIdentity>().and_then(|p| p.0.clone());
    let from_token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| st.auth.token(t.trim()).cloned());
    match from_token.or(from_cert) {
        Some(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        None if PUBLIC.contains(&req.uri().path()) => next.run(req).await,
        None => ApiError::Unauthorized("Unauthorized".into()).into_response(),
    }
}

/// The user named by a client certificate (DER).
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(User { name, groups })
}
