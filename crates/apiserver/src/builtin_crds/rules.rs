//! Checks of the built-in custom resources that a structural schema cannot express: the rules
//! upstream writes as CEL (`x-kubernetes-validations`), which kumo does not evaluate, and the
//! cross-field rules of kumo's own TrafficPolicy. They run after the schema walk, so defaults
//! are in place, and return errors in the same shape (a 422 naming the field).

use kumo_api::resources::Resource;
use kumo_api::validation::{go_quote, FieldError};
use serde_json::Value;

const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// The errors of a built-in custom resource (none for every other kind).
pub fn validate(r: &Resource, obj: &Value) -> Vec<FieldError> {
    match (r.group.as_str(), r.kind.as_str()) {
        ("kumo.dev", "TrafficPolicy") => traffic_policy(&obj["spec"]),
        (GATEWAY_API, "HTTPRoute") => http_route(&obj["spec"]),
        _ => vec![],
    }
}

/// The group a TrafficPolicy target of `kind` lives in.
fn target_group(kind: &str) -> Option<&'static str> {
    match kind {
        "Service" => Some(""),
        "Gateway" | "HTTPRoute" => Some(GATEWAY_API),
        "Ingress" => Some("networking.k8s.io"),
        "VirtualService" => Some("networking.istio.io"),
        _ => None,
    }
}

fn traffic_policy(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !spec.is_object() {
        return errs;
    }
    if spec["rateLimit"].is_null() && spec["loadShedding"].is_null() {
        errs.push(FieldError::invalid(
            "spec",
            "\"object\"",
            "at least one of rateLimit or loadShedding is required",
        ));
    }
    let key = &spec["rateLimit"]["key"];
    let header = key["header"].as_str().filter(|h| !h.is_empty());
    match (key["type"].as_str(), header) {
        (Some("Header"), None) => errs.push(FieldError::required(
            "spec.rateLimit.key.header",
            "the header to key on is required when type is Header",
        )),
        (Some(t), Some(h)) if t != "Header" => errs.push(FieldError::invalid(
            "spec.rateLimit.key.header",
            go_quote(h),
            "may only be set when type is Header",
        )),
        _ => {}
    }
    let mut seen = Vec::new();
    for (i, target) in spec["targetRefs"].as_array().into_iter().flatten().enumerate() {
        let kind = target["kind"].as_str().unwrap_or_default();
        if let (Some(group), Some(want)) = (target["group"].as_str(), target_group(kind)) {
            if group != want {
                errs.push(FieldError::invalid(
                    format!("spec.targetRefs[{i}].group"),
                    go_quote(group),
                    format!("a {kind} is in group {}", go_quote(want)),
                ));
            }
        }
        let id = (kind, target["name"].as_str().unwrap_or_default());
        if seen.contains(&id) {
            errs.push(FieldError::duplicate(
                format!("spec.targetRefs[{i}]"),
                format!("{}/{}", id.0, id.1),
            ));
        }
        seen.push(id);
    }
    errs
}

/// Each filter type and the field that configures it.
const FILTER_FIELDS: [(&str, &str); 8] = [
    ("RequestHeaderModifier", "requestHeaderModifier"),
    ("ResponseHeaderModifier", "responseHeaderModifier"),
    ("RequestMirror", "requestMirror"),
    ("RequestRedirect", "requestRedirect"),
    ("URLRewrite", "urlRewrite"),
    ("ExtensionRef", "extensionRef"),
    ("CORS", "cors"),
    ("ExternalAuth", "externalAuth"),
];

/// The CEL rules of upstream's HTTPRoute that matter to a gateway: a filter is configured by
/// the field its type names and no other; a redirect neither forwards nor rewrites; filters
/// other than RequestMirror and ExtensionRef appear once; Exact and PathPrefix paths are
/// absolute; a path modifier carries the value its type names; backendRequest fits in request.
/// <https://gateway-api.sigs.k8s.io/reference/spec/#httproutefilter>
fn http_route(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, rule) in spec["rules"].as_array().into_iter().flatten().enumerate() {
        let at = format!("spec.rules[{i}]");
        for (k, m) in rule["matches"].as_array().into_iter().flatten().enumerate() {
            let path = &m["path"];
            if matches!(path["type"].as_str(), Some("Exact" | "PathPrefix")) {
                if let Some(v) = path["value"].as_str().filter(|v| !v.starts_with('/')) {
                    errs.push(FieldError::invalid(
                        format!("{at}.matches[{k}].path.value"),
                        go_quote(v),
                        "must be an absolute path (start with '/')",
                    ));
                }
            }
        }
        let types = filters(&rule["filters"], &format!("{at}.filters"), &mut errs);
        let has = |t: &str| types.iter().any(|x| x == t);
        let forwards = rule["backendRefs"].as_array().is_some_and(|b| !b.is_empty());
        if has("RequestRedirect") && forwards {
            errs.push(FieldError::invalid(
                at.clone(),
                "\"object\"",
                "a RequestRedirect filter must not be used together with backendRefs",
            ));
        }
        if has("RequestRedirect") && has("URLRewrite") {
            errs.push(FieldError::invalid(
                format!("{at}.filters"),
                "\"array\"",
                "may contain either a RequestRedirect or a URLRewrite filter, not both",
            ));
        }
        for (b, backend) in rule["backendRefs"].as_array().into_iter().flatten().enumerate() {
            filters(&backend["filters"], &format!("{at}.backendRefs[{b}].filters"), &mut errs);
        }
        timeouts(&rule["timeouts"], &format!("{at}.timeouts"), &mut errs);
    }
    errs
}

/// Check a list of filters; returns their types in order.
fn filters(list: &Value, at: &str, errs: &mut Vec<FieldError>) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    for (j, f) in list.as_array().into_iter().flatten().enumerate() {
        let Some(t) = f["type"].as_str() else { continue };
        let here = format!("{at}[{j}]");
        for (filter_type, field) in FILTER_FIELDS {
            let set = !f[field].is_null();
            if filter_type == t && !set {
                errs.push(FieldError::required(
                    format!("{here}.{field}"),
                    format!("must be set for filter type {t}"),
                ));
            } else if filter_type != t && set {
                errs.push(FieldError::forbidden(
                    format!("{here}.{field}"),
                    format!("may only be set for filter type {filter_type}"),
                ));
            }
        }
        if types.iter().any(|x| x == t) && !matches!(t, "RequestMirror" | "ExtensionRef") {
            errs.push(FieldError::duplicate(format!("{here}.type"), go_quote(t)));
        }
        for holder in ["requestRedirect", "urlRewrite"] {
            path_modifier(&f[holder]["path"], &format!("{here}.{holder}.path"), errs);
        }
        types.push(t.to_string());
    }
    types
}

fn path_modifier(path: &Value, at: &str, errs: &mut Vec<FieldError>) {
    let field = match path["type"].as_str() {
        Some("ReplaceFullPath") => "replaceFullPath",
        Some("ReplacePrefixMatch") => "replacePrefixMatch",
        _ => return,
    };
    if path[field].is_null() {
        errs.push(FieldError::required(
            format!("{at}.{field}"),
            format!("must be set when type is {}", path["type"].as_str().unwrap_or_default()),
        ));
    }
}

fn timeouts(t: &Value, at: &str, errs: &mut Vec<FieldError>) {
    let request = t["request"].as_str().and_then(gep_duration_ms);
    let backend = t["backendRequest"].as_str();
    // "0s" disables the request timeout, and then any backend timeout fits.
    if let (Some(request), Some(text)) = (request.filter(|r| *r > 0), backend) {
        if gep_duration_ms(text).is_some_and(|b| b > request) {
            errs.push(FieldError::invalid(
                format!("{at}.backendRequest"),
                go_quote(text),
                "must not be longer than the request timeout",
            ));
        }
    }
}

/// A GEP-2257 duration (`1h30m`, `250ms`) in milliseconds; `None` when malformed (the schema's
/// pattern reports that).
fn gep_duration_ms(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(group: &str, kind: &str) -> Resource {
        let mut r = kumo_api::resources::builtin().remove(0);
        r.group = group.into();
        r.kind = kind.into();
        r.definition = None;
        r.crd_schema = Some(json!({"type": "object"}));
        r
    }

    fn tp(spec: Value) -> Vec<String> {
        validate(&resource("kumo.dev", "TrafficPolicy"), &json!({ "spec": spec }))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn route(spec: Value) -> Vec<String> {
        validate(&resource(GATEWAY_API, "HTTPRoute"), &json!({ "spec": spec }))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_traffic_policy_needs_a_limit() {
        let targets = json!([{"kind": "Service", "name": "api"}]);
        assert_eq!(
            tp(json!({"targetRefs": targets})),
            vec!["spec: Invalid value: \"object\": at least one of rateLimit or loadShedding is required"]
        );
        assert!(tp(json!({"targetRefs": targets, "loadShedding": {"maxConcurrentRequests": 5}}))
            .is_empty());
        assert!(tp(json!({"targetRefs": targets, "rateLimit": {"requests": 5}})).is_empty());
    }

    #[test]
    fn a_header_key_names_its_header_and_only_then() {
        let base = |key: Value| {
            tp(json!({"targetRefs": [{"kind": "Service", "name": "a"}],
                "rateLimit": {"requests": 1, "key": key}}))
        };
        assert_eq!(
            base(json!({"type": "Header"})),
            vec!["spec.rateLimit.key.header: Required value: the header to key on is required when type is Header"]
        );
        assert!(base(json!({"type": "Header", "header": "x-user"})).is_empty());
        assert_eq!(
            base(json!({"type": "ClientIP", "header": "x-user"})),
            vec!["spec.rateLimit.key.header: Invalid value: \"x-user\": may only be set when type is Header"]
        );
    }

    #[test]
    fn traffic_policy_targets_match_their_group_and_do_not_repeat() {
        let errs = tp(json!({"loadShedding": {"maxConcurrentRequests": 1}, "targetRefs": [
            {"group": "", "kind": "HTTPRoute", "name": "r"},
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"},
            {"kind": "Gateway", "name": "g"},
        ]}));
        assert_eq!(
            errs,
            vec![
                "spec.targetRefs[0].group: Invalid value: \"\": a HTTPRoute is in group \"gateway.networking.k8s.io\"",
                "spec.targetRefs[2]: Duplicate value: Gateway/g",
            ]
        );
    }

    #[test]
    fn http_route_filters_are_configured_by_their_own_field() {
        let errs = route(json!({"rules": [{"filters": [
            {"type": "RequestRedirect", "urlRewrite": {"hostname": "x"}},
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {}},
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {}},
        ]}]}));
        assert_eq!(
            errs,
            vec![
                "spec.rules[0].filters[0].requestRedirect: Required value: must be set for filter type RequestRedirect",
                "spec.rules[0].filters[0].urlRewrite: Forbidden: may only be set for filter type URLRewrite",
                "spec.rules[0].filters[2].type: Duplicate value: \"RequestHeaderModifier\"",
            ]
        );
    }

    #[test]
    fn a_redirect_neither_forwards_nor_rewrites() {
        let errs = route(json!({"rules": [{
            "filters": [
                {"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplacePrefixMatch"}}},
                {"type": "URLRewrite", "urlRewrite": {"hostname": "h"}},
            ],
            "backendRefs": [{"name": "svc"}],
        }]}));
        assert_eq!(
            errs,
            vec![
                "spec.rules[0].filters[0].requestRedirect.path.replacePrefixMatch: Required value: must be set when type is ReplacePrefixMatch",
                "spec.rules[0]: Invalid value: \"object\": a RequestRedirect filter must not be used together with backendRefs",
                "spec.rules[0].filters: Invalid value: \"array\": may contain either a RequestRedirect or a URLRewrite filter, not both",
            ]
        );
    }

    #[test]
    fn http_route_paths_are_absolute_and_backend_timeouts_fit() {
        let errs = route(json!({"rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "api"}},
                         {"path": {"type": "RegularExpression", "value": "api.*"}}],
             "timeouts": {"request": "1s", "backendRequest": "1500ms"}},
            {"timeouts": {"request": "0s", "backendRequest": "1h"}},
            {"timeouts": {"request": "1m", "backendRequest": "59s"}},
        ]}));
        assert_eq!(
            errs,
            vec![
                "spec.rules[0].matches[0].path.value: Invalid value: \"api\": must be an absolute path (start with '/')",
                "spec.rules[0].timeouts.backendRequest: Invalid value: \"1500ms\": must not be longer than the request timeout",
            ]
        );
    }

    #[test]
    fn gep_durations() {
        assert_eq!(gep_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(gep_duration_ms("250ms"), Some(250));
        assert_eq!(gep_duration_ms("1s500ms"), Some(1_500));
        assert_eq!(gep_duration_ms("10 seconds"), None);
        assert_eq!(gep_duration_ms("5"), None);
    }
}
