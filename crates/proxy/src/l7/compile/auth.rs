//! Istio's RequestAuthentication and AuthorizationPolicy, resolved per destination Service.
//!
//! Istio selects workloads by pod labels; kumo applies a policy to the Services whose pod
//! selector includes the policy's `selector.matchLabels` (the pods behind them carry those
//! labels), to Services and Gateways named in `targetRefs`, and to every Service of its
//! namespace when it names neither (`istio-system`: the whole mesh).

use super::{str_at, strings, targets, Inputs};
use crate::l7::jwt::{parse_jwks, JwtRule};
use crate::l7::model::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

const ROOT_NAMESPACE: &str = "istio-system";

/// Where a policy applies.
enum Scope {
    Edge,
    Service(ServiceKey),
}

fn scopes(inputs: &Inputs, policy: &Value) -> Vec<Scope> {
    let ns = str_at(policy, &["metadata", "namespace"]).unwrap_or("default");
    let refs = targets(policy, ns);
    if !refs.is_empty() {
        return refs
            .into_iter()
            .filter_map(|t| match t.kind.as_str() {
                "Gateway" => Some(Scope::Edge),
                "Service" => {
                    Some(Scope::Service(ServiceKey { namespace: t.namespace, name: t.name }))
                }
                _ => None,
            })
            .collect();
    }
    let wanted = policy["spec"]["selector"]["matchLabels"].as_object();
    inputs
        .services
        .iter()
        .filter(|s| ns == ROOT_NAMESPACE || s.metadata.namespace.as_deref() == Some(ns))
        .filter(|s| match wanted {
            None => true,
            Some(w) => {
                let sel = s.spec.as_ref().and_then(|sp| sp.selector.as_ref());
                !w.is_empty()
                    && w.iter()
                        .all(|(k, v)| sel.and_then(|m| m.get(k)).map(String::as_str) == v.as_str())
            }
        })
        .map(|s| {
            Scope::Service(ServiceKey {
                namespace: s.metadata.namespace.clone().unwrap_or_default(),
                name: s.metadata.name.clone().unwrap_or_default(),
            })
        })
        .collect()
}

fn jwt_rules(ra: &Value) -> Vec<JwtRule> {
    ra["spec"]["jwtRules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let mut from_headers: Vec<(String, String)> = r["fromHeaders"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| {
                    Some((
                        h["name"].as_str()?.to_ascii_lowercase(),
                        h["prefix"].as_str().unwrap_or("").to_string(),
                    ))
                })
                .collect();
            let mut from_params = strings(&r["fromParams"]);
            if from_headers.is_empty() && from_params.is_empty() {
                from_headers.push(("authorization".into(), "Bearer ".into()));
                from_params.push("access_token".into());
            }
            Some(JwtRule {
                issuer: r["issuer"].as_str()?.to_string(),
                audiences: strings(&r["audiences"]),
                keys: r["jwks"].as_str().map(parse_jwks).unwrap_or_default(),
                from_headers,
                from_params,
                forward_original_token: r["forwardOriginalToken"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

fn authz_rules(ap: &Value) -> Vec<AuthzRule> {
    ap["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| AuthzRule {
            from: r["from"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    let s = &f["source"];
                    AuthzSource {
                        request_principals: strings(&s["requestPrincipals"]),
                        not_request_principals: strings(&s["notRequestPrincipals"]),
                        ip_blocks: [strings(&s["ipBlocks"]), strings(&s["remoteIpBlocks"])]
                            .concat(),
                        not_ip_blocks: [
                            strings(&s["notIpBlocks"]),
                            strings(&s["notRemoteIpBlocks"]),
                        ]
                        .concat(),
                    }
                })
                .collect(),
            to: r["to"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let o = &t["operation"];
                    AuthzOperation {
                        hosts: strings(&o["hosts"]),
                        not_hosts: strings(&o["notHosts"]),
                        methods: strings(&o["methods"]),
                        not_methods: strings(&o["notMethods"]),
                        paths: strings(&o["paths"]),
                        not_paths: strings(&o["notPaths"]),
                    }
                })
                .collect(),
            when: r["when"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| {
                    Some(AuthzCondition {
                        key: w["key"].as_str()?.to_string(),
                        values: strings(&w["values"]),
                        not_values: strings(&w["notValues"]),
                    })
                })
                .collect(),
        })
        .collect()
}

/// Fill `snap.auth` and `snap.edge_auth`.
pub fn attach(snap: &mut Snapshot, inputs: &Inputs) {
    let mut specs: HashMap<Option<ServiceKey>, AuthSpec> = HashMap::new();
    let key = |s: Scope| match s {
        Scope::Edge => None,
        Scope::Service(k) => Some(k),
    };
    for ra in &inputs.request_authentications {
        let rules = jwt_rules(ra);
        for s in scopes(inputs, ra) {
            specs.entry(key(s)).or_default().jwt.extend(rules.iter().cloned());
        }
    }
    for ap in &inputs.authorization_policies {
        let action = ap["spec"]["action"].as_str().unwrap_or("ALLOW");
        let rules = authz_rules(ap);
        for s in scopes(inputs, ap) {
            let spec = specs.entry(key(s)).or_default();
            match action {
                "ALLOW" => spec.allow.get_or_insert_with(Vec::new).extend(rules.iter().cloned()),
                "DENY" => spec.deny.extend(rules.iter().cloned()),
                // AUDIT and CUSTOM need providers kumo does not have: they do not change access.
                _ => {}
            }
        }
    }
    for (k, spec) in specs {
        match k {
            None => snap.edge_auth = Some(Arc::new(spec)),
            Some(svc) => {
                snap.auth.insert(svc, Arc::new(spec));
            }
        }
    }
}
