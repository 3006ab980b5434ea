//! What the engine changes on the way through: trace context, forwarding headers, header
//! filters, path rewrites and redirects.

use super::handler::{local, Body};
use super::model::*;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

/// The low `digits` hex digits of `v`, zero-padded (cheaper than `format!` on the hot path).
pub(super) fn hex(v: u128, digits: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..digits).rev().map(|i| DIGITS[((v >> (i * 4)) & 0xf) as usize] as char).collect()
}

/// W3C trace context for this hop: the caller's trace (or a new one) and a new span.
pub(super) struct Trace {
    pub trace_id: String,
    pub parent: Option<String>,
    pub span: String,
    pub flags: String,
}

impl Trace {
    pub fn from(headers: &HeaderMap) -> Trace {
        let span = hex(rand::random::<u64>() as u128 | 1, 16);
        let incoming = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(|v| {
            let p: Vec<&str> = v.split('-').collect();
            let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
            (p.len() >= 4
                && hex(p[0], 2)
                && p[0] != "ff"
                && hex(p[1], 32)
                && p[1] != "0".repeat(32)
                && hex(p[2], 16)
                && p[2] != "0".repeat(16)
                && hex(p[3], 2))
            .then(|| (p[1].to_ascii_lowercase(), p[2].to_ascii_lowercase(), p[3].to_string()))
        });
        match incoming {
            Some((trace_id, parent, flags)) => {
                Trace { trace_id, parent: Some(parent), span, flags }
            }
            None => Trace {
                trace_id: hex(rand::random::<u128>() | 1, 32),
                parent: None,
                span,
                flags: "01".into(),
            },
        }
    }

    pub fn header(&self) -> String {
        // "00-" trace "-" span "-" flags, built without the formatting machinery.
        let mut s = String::with_capacity(55);
        for part in ["00", &self.trace_id, &self.span, &self.flags] {
            if !s.is_empty() {
                s.push('-');
            }
            s.push_str(part);
        }
        s
    }
}

pub(super) fn request_host(req: &Request<Incoming>) -> String {
    let raw = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let host = match raw.rsplit_once(':') {
        Some((h, port))
            if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']')
                || raw.starts_with('[') && raw.ends_with(']') =>
        {
            if raw.starts_with('[') && raw.ends_with(']') {
                raw
            } else {
                h
            }
        }
        _ => raw,
    };
    host.to_ascii_lowercase()
}

pub(super) fn query_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

pub(super) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
];

pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for h in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(listed) {
        headers.remove(h.as_str());
    }
}

pub(super) fn apply_ops(headers: &mut HeaderMap, ops: &HeaderOps) {
    if ops.is_empty() {
        return;
    }
    for (n, v) in &ops.set {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_str(v)) {
            headers.insert(n, v);
        }
    }
    for (n, v) in &ops.add {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_str(v)) {
            headers.append(n, v);
        }
    }
    for n in &ops.remove {
        headers.remove(n.as_str());
    }
}

pub(super) fn prepare_headers(
    headers: &mut HeaderMap,
    client: &str,
    host: &str,
    trace: &Trace,
    rule: &Rule,
    strip: Option<&str>,
) {
    strip_hop_by_hop(headers);
    if !headers.contains_key(http::header::HOST) {
        if let Ok(v) = HeaderValue::from_str(host) {
            headers.insert(http::header::HOST, v);
        }
    }
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {client}")),
        None => HeaderValue::from_str(client),
    };
    if let Ok(v) = xff {
        headers.insert("x-forwarded-for", v);
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !headers.contains_key("x-request-id") {
        // A version-4 UUID from the thread's RNG: no system call per request.
        let r = rand::random::<u128>() & !(0xf000 << 64) & !(0xc000 << 48)
            | (0x4000 << 64)
            | (0x8000 << 48);
        let h = hex(r, 32);
        let id = [&h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]].join("-");
        if let Ok(v) = HeaderValue::from_str(&id) {
            headers.insert("x-request-id", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&trace.header()) {
        headers.insert("traceparent", v);
    }
    if let Some(h) = strip {
        headers.remove(h);
    }
    apply_ops(headers, &rule.request_headers);
}

pub(super) fn replace_prefix(path: &str, prefix: &str, with: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.get(prefix.len()..).unwrap_or("");
    let mut out = if with.ends_with('/') && rest.starts_with('/') {
        format!("{}{}", with.trim_end_matches('/'), rest)
    } else {
        format!("{with}{rest}")
    };
    if out.is_empty() {
        out.push('/');
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

pub(super) fn rewrite_path(uri: &http::Uri, rule: &Rule, route: &Route) -> String {
    let path = uri.path();
    let new = match rule.rewrite.as_ref().and_then(|r| r.path.as_ref()) {
        Some(PathRewrite::Full(p)) => p.clone(),
        Some(PathRewrite::Prefix(with)) => {
            match route.matcher.path.as_ref().and_then(|p| p.prefix()) {
                Some(prefix) => replace_prefix(path, prefix, with),
                None => with.clone(),
            }
        }
        None => path.to_string(),
    };
    match uri.query() {
        Some(q) => format!("{new}?{q}"),
        None => new,
    }
}

pub(super) fn redirect(
    r: &Redirect,
    route: &Route,
    req: &Request<Incoming>,
    host: &str,
) -> Response<Body> {
    let scheme = r.scheme.clone().unwrap_or_else(|| "http".into());
    let host = r.host.clone().unwrap_or_else(|| host.to_string());
    let port = match r.port {
        Some(p) if !((scheme == "http" && p == 80) || (scheme == "https" && p == 443)) => {
            format!(":{p}")
        }
        _ => String::new(),
    };
    let path = req.uri().path();
    let path = match &r.path {
        Some(PathRewrite::Full(p)) => p.clone(),
        Some(PathRewrite::Prefix(with)) => {
            match route.matcher.path.as_ref().and_then(|p| p.prefix()) {
                Some(prefix) => replace_prefix(path, prefix, with),
                None => with.clone(),
            }
        }
        None => path.to_string(),
    };
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut resp = local(r.status, "");
    if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{host}{port}{path}{query}")) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rewrites_keep_the_rest_of_the_path() {
        assert_eq!(replace_prefix("/v2/items", "/v2", "/"), "/items");
        assert_eq!(replace_prefix("/v2", "/v2", "/"), "/");
        assert_eq!(replace_prefix("/old/x", "/old", "/new"), "/new/x");
        assert_eq!(replace_prefix("/api/", "/api/", "/"), "/");
    }
}
