//! Resources served by code rather than by storage alone:
//! - `bindings` (core): `POST` binds the pod the Binding names, as `pods/binding` does;
//! - `componentstatuses` (core, read-only): computed on each read. kumo has no separate
//!   scheduler or controller-manager processes to probe, so the list holds `etcd-0`, the
//!   store, healthy when a read of it succeeds;
//! - `certificatesigningrequests/approval`: `kubectl certificate approve|deny` writes the
//!   `Approved`/`Denied` condition through it; approving a `kube-apiserver-client` request
//!   issues its certificate at once (see [`crate::certificates`]). A CSR's creation records the requesting user in
//!   `spec.username`/`spec.groups`, as upstream.

use crate::auth::User;
use crate::certificates::{Signer, CLIENT_SIGNER};
use crate::error::{ApiError, ApiResult};
use crate::http::read_object;
use crate::registry::{Registry, WriteOptions};
use axum::body::Body;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use kumo_api::resources::Resource;
use kumo_api::validation::{ErrorType, FieldError};
use serde_json::{json, Value};

/// Whether this request is one of the special ones.
pub fn handles(r: &Resource, method: &Method, name: Option<&str>, sub: Option<&str>) -> bool {
    match (r.group.as_str(), r.plural.as_str()) {
        ("", "bindings") => *method == Method::POST && name.is_none(),
        ("", "componentstatuses") => *method == Method::GET && sub.is_none(),
        ("certificates.k8s.io", "certificatesigningrequests") => sub == Some("approval"),
        _ => false,
    }
}

/// What a special request answers: an object, or a list of objects for the caller to shape.
pub enum Answer {
    /// One object (status code 200, or 201 for a binding).
    Object(u16, Value),
    /// Items of a list.
    List(Vec<Value>),
}

/// Serve a request for which [`handles`] said yes.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    reg: &Registry,
    r: &Resource,
    ns: Option<&str>,
    name: Option<&str>,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
    write: &WriteOptions,
    signer: Option<&Signer>,
) -> ApiResult<Answer> {
    match r.plural.as_str() {
        "bindings" => {
            let binding = read_object(headers, body).await?;
            let pod = binding["metadata"]["name"].as_str().unwrap_or("").to_string();
            let Some(pods) = reg.catalog.snapshot().find("", "v1", "pods").cloned() else {
                return Err(ApiError::Internal("pods are not served".into()));
            };
            let resp: Response =
                crate::subresources::bind(reg, &pods, ns, &pod, &binding, write).await?;
            let code = resp.status().as_u16();
            Ok(Answer::Object(
                code,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}),
            ))
        }
        "componentstatuses" => {
            let items = vec![etcd_status(reg).await];
            match name {
                None => Ok(Answer::List(items)),
                Some(n) => items
                    .into_iter()
                    .find(|i| i["metadata"]["name"] == n)
                    .map(|i| Answer::Object(200, i))
                    .ok_or_else(|| {
                        ApiError::not_found("componentstatuses", "", "componentstatuses", n)
                    }),
            }
        }
        _ => {
            let name = name.unwrap_or("");
            if *method == Method::GET {
                return Ok(Answer::Object(200, reg.get(r, None, name).await?));
            }
            if !matches!(*method, Method::PUT) {
                return Err(ApiError::MethodNotAllowed(format!(
                    "the server does not allow this method on the requested resource ({method} certificatesigningrequests/approval)"
                )));
            }
            let given = read_object(headers, body).await?;
            let approved = approve(reg, r, name, &given, write).await?;
            Ok(Answer::Object(200, issue(reg, r, approved, write, signer).await?))
        }
    }
}

async fn etcd_status(reg: &Registry) -> Value {
    let (healthy, message) = match reg.store.get("/registry/health").await {
        Ok(_) => ("True", json!("ok")),
        Err(e) => ("False", json!(format!("store read failed: {e}"))),
    };
    let mut condition = json!({"type": "Healthy", "status": healthy});
    if healthy == "True" {
        condition["message"] = message;
    } else {
        condition["error"] = message;
    }
    json!({"kind": "ComponentStatus", "apiVersion": "v1",
        "metadata": {"name": "etcd-0", "creationTimestamp": null}, "conditions": [condition]})
}

/// The approval subresource: only `status.conditions` of the given object is taken, and it
/// must not both approve and deny, nor drop an earlier decision.
async fn approve(
    reg: &Registry,
    r: &Resource,
    name: &str,
    given: &Value,
    write: &WriteOptions,
) -> ApiResult<Value> {
    let mut current = reg.get(r, None, name).await?;
    let conditions = given["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let has = |t: &str| conditions.iter().any(|c| c["type"] == t);
    let invalid = |detail: &str| {
        ApiError::invalid(
            &r.group,
            &r.kind,
            name,
            vec![FieldError {
                type_: ErrorType::Invalid,
                field: "status.conditions".into(),
                value: None,
                detail: detail.into(),
            }],
        )
    };
    if has("Approved") && has("Denied") {
        return Err(invalid("Approved and Denied conditions are mutually exclusive"));
    }
    let had = |t: &str| {
        current["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == t))
    };
    for t in ["Approved", "Denied"] {
        if had(t) && !has(t) {
            return Err(invalid(&format!("updates may not remove a condition of type {t:?}")));
        }
    }
    let now = crate::object::now_rfc3339();
    let stamped: Vec<Value> = conditions
        .into_iter()
        .map(|mut c| {
            for k in ["lastUpdateTime", "lastTransitionTime"] {
                if c[k].as_str().is_none_or(str::is_empty) {
                    c[k] = json!(now);
                }
            }
            if c["status"].as_str().is_none_or(str::is_empty) {
                c["status"] = json!("True");
            }
            c
        })
        .collect();
    current["status"]["conditions"] = Value::Array(stamped);
    let w = reg.update(r, None, name, current, Some("status"), write).await?;
    Ok(w.object)
}

/// An approved request for the `kube-apiserver-client` signer gets its certificate (or a
/// `Failed` condition saying why not).
async fn issue(
    reg: &Registry,
    r: &Resource,
    mut csr: Value,
    write: &WriteOptions,
    signer: Option<&Signer>,
) -> ApiResult<Value> {
    let conditions = csr["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let approved = conditions.iter().any(|c| c["type"] == "Approved" && c["status"] == "True");
    let decided = conditions.iter().any(|c| c["type"] == "Denied" || c["type"] == "Failed");
    let Some(signer) = signer else { return Ok(csr) };
    if !approved
        || decided
        || csr["spec"]["signerName"] != CLIENT_SIGNER
        || csr["status"]["certificate"].as_str().is_some_and(|c| !c.is_empty())
    {
        return Ok(csr);
    }
    match signer.sign(&csr) {
        Ok(pem) => {
            use base64::Engine;
            csr["status"]["certificate"] =
                json!(base64::engine::general_purpose::STANDARD.encode(pem));
        }
        Err(message) => {
            let now = crate::object::now_rfc3339();
            let mut all = conditions;
            all.push(
                json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                "message": message, "lastUpdateTime": now, "lastTransitionTime": now}),
            );
            csr["status"]["conditions"] = Value::Array(all);
        }
    }
    let name = crate::object::name(&csr).to_string();
    Ok(reg.update(r, None, &name, csr, Some("status"), write).await?.object)
}

/// A new CSR records who asked for it.
pub fn stamp_requester(obj: &mut Value, user: Option<&User>) {
    let Some(user) = user else { return };
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        return;
    }
    spec["username"] = json!(user.name);
    let mut groups = user.groups.clone();
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    spec["groups"] = json!(groups);
}
