//! What a request addresses: group, version, namespace, resource, name and subresource, parsed
//! from the URL path as Kubernetes lays it out, plus the query parameters the registry reads.

use crate::error::{ApiError, ApiResult};
use std::collections::HashMap;

/// The parsed path of a resource request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestInfo {
    /// API group (`""` for `/api`).
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Resource (plural), if the path goes that deep.
    pub resource: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `binding`, ...).
    pub subresource: Option<String>,
}

impl RequestInfo {
    /// Parse `/api/v1/...` or `/apis/<group>/<version>/...`. `None` for discovery paths
    /// (`/api`, `/apis`, `/apis/<group>`).
    pub fn parse(path: &str) -> Option<RequestInfo> {
        let parts: Vec<&str> =
            path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match parts.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let mut info = RequestInfo {
            group: group.to_string(),
            version: version.to_string(),
            ..Default::default()
        };
        let rest: &[&str] = match rest {
            // `/namespaces/<ns>/<resource>...`; a bare `/namespaces/<ns>` is the Namespace itself.
            ["namespaces", ns, tail @ ..] if !tail.is_empty() && !is_ns_subresource(tail) => {
                info.namespace = Some(ns.to_string());
                tail
            }
            other => other,
        };
        let mut it = rest.iter();
        info.resource = it.next().map(|s| s.to_string());
        info.name = it.next().map(|s| s.to_string());
        info.subresource = it.next().map(|s| s.to_string());
        if it.next().is_some() {
            return Some(RequestInfo { resource: None, ..info });
        }
        Some(info)
    }
}

fn is_ns_subresource(tail: &[&str]) -> bool {
    tail.len() == 1 && matches!(tail[0], "status" | "finalize")
}

/// Query parameters, decoded.
#[derive(Debug, Clone, Default)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    /// From a raw query string.
    pub fn parse(query: Option<&str>) -> Params {
        let mut map = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(k), decode(v));
        }
        Params(map)
    }

    /// A parameter's value, if given and non-empty.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    /// An integer parameter; a malformed one is a 400.
    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::BadRequest(format!(
                    "invalid value for query parameter {k}: {v:?} is not an integer"
                ))
            }),
        }
    }

    /// Whether `dryRun=All` was asked for; other values are a 400 as upstream.
    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "Invalid dry run value: unsupported dry run value {other:?}, supported values: \"All\""
            ))),
        }
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaced_and_cluster_paths() {
        let r = RequestInfo::parse("/apis/apps/v1/namespaces/default/deployments/web/scale")
            .expect("parse");
        assert_eq!(r.group, "apps");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.resource.as_deref(), Some("deployments"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        let ns = RequestInfo::parse("/api/v1/namespaces/kube-system").expect("ns");
        assert_eq!(ns.resource.as_deref(), Some("namespaces"));
        assert_eq!(ns.name.as_deref(), Some("kube-system"));
        assert_eq!(ns.namespace, None);
        let fin = RequestInfo::parse("/api/v1/namespaces/x/finalize").expect("finalize");
        assert_eq!(fin.subresource.as_deref(), Some("finalize"));
        assert!(RequestInfo::parse("/apis").is_none());
        assert!(RequestInfo::parse("/apis/apps").is_none());
    }

    #[test]
    fn decodes_query_values() {
        let p = Params::parse(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&limit=5&x=%zz"));
        assert_eq!(p.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(p.int("limit").ok().flatten(), Some(5));
        assert_eq!(p.get("x"), Some("%zz"));
    }
}
