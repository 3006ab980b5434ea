//! Subresources that are not the object itself: `scale` (an `autoscaling/v1` Scale over the
//! owner's replica fields) and `pods/binding` (how a scheduler places a pod).

use crate::error::{ApiError, ApiResult, Details};
use crate::http::{read_body, read_object};
use crate::object;
use crate::registry::{Registry, WriteOptions};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kumo_api::resources::Resource;
use kumo_api::selector::LabelSelector;
use serde_json::{json, Value};

fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.').split('.').try_fold(obj, |v, k| v.get(k))
}

fn set_path(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    let keys: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, k) in keys.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        if i == keys.len() - 1 {
            cur[*k] = value;
            return;
        }
        cur = &mut cur[*k];
    }
}

fn to_scale(r: &Resource, obj: &Value) -> Value {
    let Some(paths) = &r.scale else { return Value::Null };
    let spec = get_path(obj, &paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0);
    let status = get_path(obj, &paths.status_replicas).and_then(Value::as_i64).unwrap_or(0);
    let selector = paths
        .label_selector
        .as_deref()
        .and_then(|p| get_path(obj, p))
        .map(|s| match s {
            Value::String(s) => s.clone(),
            other => LabelSelector::from_object(other).map(|l| l.to_string()).unwrap_or_default(),
        })
        .unwrap_or_default();
    let m = &obj["metadata"];
    let mut meta = json!({"name": m["name"], "uid": m["uid"], "resourceVersion": m["resourceVersion"],
        "creationTimestamp": m["creationTimestamp"]});
    if let Some(ns) = m["namespace"].as_str() {
        meta["namespace"] = json!(ns);
    }
    let mut status_obj = json!({"replicas": status});
    if !selector.is_empty() {
        status_obj["selector"] = json!(selector);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
        "spec": {"replicas": spec}, "status": status_obj})
}

fn json_ok(v: &Value) -> Response {
    let mut resp = (StatusCode::OK, serde_json::to_vec(v).unwrap_or_default()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// GET, PUT or PATCH on `<resource>/<name>/scale`.
#[allow(clippy::too_many_arguments)]
pub async fn scale(
    reg: &Registry,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
    opts: &WriteOptions,
) -> ApiResult<Response> {
    let Some(paths) = r.scale.clone() else {
        return Err(ApiError::NotFound(
            "the server could not find the requested resource".into(),
            None,
        ));
    };
    if method == Method::GET {
        return Ok(json_ok(&to_scale(r, &reg.get(r, ns, name).await?)));
    }
    let (new_scale, patch_body, pinned) = match *method {
        Method::PUT => {
            let s = read_object(headers, body).await?;
            let rv = s["metadata"]["resourceVersion"].as_str().map(str::to_string);
            (Some(s), None, rv)
        }
        Method::PATCH => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let bytes = read_body(body).await?;
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("the patch is not valid JSON: {e}")))?;
            (None, Some((ct, v)), None)
        }
        _ => return Err(ApiError::MethodNotAllowed(format!("{method} is not allowed on scale"))),
    };
    for _ in 0..16 {
        let current = reg.get(r, ns, name).await?;
        let scale_now = to_scale(r, &current);
        let target = match (&new_scale, &patch_body) {
            (Some(s), _) => s.clone(),
            (None, Some((ct, p))) => {
                let mut s = scale_now.clone();
                if ct.starts_with("application/json-patch+json") {
                    kumo_api::patch::json_patch(&mut s, p).map_err(|e| {
                        ApiError::BadRequest(format!("the patch could not be applied: {e}"))
                    })?;
                } else {
                    kumo_api::patch::merge_patch(&mut s, p);
                }
                s
            }
            _ => scale_now.clone(),
        };
        let Some(replicas) = target["spec"]["replicas"].as_i64() else {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                vec![kumo_api::validation::FieldError {
                    type_: kumo_api::validation::ErrorType::Required,
                    field: "spec.replicas".into(),
                    value: None,
                    detail: String::new(),
                }],
            ));
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                vec![kumo_api::validation::FieldError {
                    type_: kumo_api::validation::ErrorType::Invalid,
                    field: "spec.replicas".into(),
                    value: Some(replicas.to_string()),
                    detail: "must be greater than or equal to 0".into(),
                }],
            ));
        }
        if let Some(rv) = &pinned {
            if current["metadata"]["resourceVersion"].as_str() != Some(rv) {
                return Err(ApiError::stale(&r.group_resource(), &r.group, &r.plural, name));
            }
        }
        let mut updated = current.clone();
        set_path(&mut updated, &paths.spec_replicas, json!(replicas));
        match reg.update(r, ns, name, updated, None, opts).await {
            Ok(w) => return Ok(json_ok(&to_scale(r, &w.object))),
            Err(ApiError::Conflict(..)) if pinned.is_none() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict(
        format!("too many concurrent writes to {} \"{name}\"", r.group_resource()),
        None,
    ))
}

/// POST `pods/<name>/binding`: set `spec.nodeName` once.
pub async fn bind(
    reg: &Registry,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
    opts: &WriteOptions,
) -> ApiResult<Response> {
    let Some(node) = binding["target"]["name"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            vec![kumo_api::validation::FieldError {
                type_: kumo_api::validation::ErrorType::Required,
                field: "target.name".into(),
                value: None,
                detail: String::new(),
            }],
        ));
    };
    for _ in 0..16 {
        let mut pod = reg.get(r, ns, name).await?;
        if let Some(existing) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::Conflict(
                format!("pod {name} is already assigned to node \"{existing}\""),
                Some(Details::new("", "pods", name)),
            ));
        }
        if object::is_deleting(&pod) {
            return Err(ApiError::Conflict(
                format!("pod {name} is being deleted, cannot be assigned to a host"),
                None,
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        let now = object::now_rfc3339();
        let conds = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conds: Vec<Value> =
            conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        // Binding writes spec and status in one step, as upstream's binding storage does.
        let mut with_status = pod.clone();
        with_status["status"]["conditions"] = json!(conds);
        let rv = pod["metadata"]["resourceVersion"].clone();
        let key = r.key(ns, name);
        let expected: i64 = rv.as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        if opts.dry_run {
            break;
        }
        match reg.store.update(&key, object::to_bytes(&with_status), Some(expected)).await {
            Ok(_) => {
                return Ok((
                    StatusCode::CREATED,
                    [(header::CONTENT_TYPE, "application/json")],
                    serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})).unwrap_or_default(),
                )
                    .into_response())
            }
            Err(kumo_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json_ok(&json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})))
}

/// POST `pods/<name>/eviction`: delete the pod unless a PodDisruptionBudget that selects it
/// allows no disruption now (429, as upstream; clients such as `kubectl drain` retry).
pub async fn evict(
    reg: &Registry,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
    eviction: &Value,
) -> ApiResult<Response> {
    let pod = reg.get(r, ns, name).await?;
    let terminal = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    if !terminal && !object::is_deleting(&pod) {
        let pdbs = reg.catalog.snapshot().find("policy", "v1", "poddisruptionbudgets").cloned();
        if let Some(pdbs) = pdbs {
            let opts = crate::registry::ListOptions::default();
            let budgets = reg.list(&pdbs, ns, &opts).await?.items;
            let matching: Vec<&Value> =
                budgets.iter().filter(|b| kumo_api::disruption::selects(b, &pod)).collect();
            if matching.len() > 1 {
                return Err(ApiError::Internal(
                    "this pod has more than one PodDisruptionBudget, which the eviction subresource does not support".into(),
                ));
            }
            if let Some(pdb) = matching.first() {
                let pods = reg.list(r, ns, &opts).await?.items;
                let budget = kumo_api::disruption::budget(pdb, &pods);
                if budget.disruptions_allowed < 1 {
                    return Err(ApiError::TooManyRequests(
                        format!(
                            "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {} needs {} healthy pods and has {} currently",
                            object::name(pdb),
                            budget.desired_healthy,
                            budget.current_healthy
                        ),
                        Some(Details::new("policy", "poddisruptionbudgets", object::name(pdb))),
                    ));
                }
            }
        }
    }
    let delete = &eviction["deleteOptions"];
    let opts = crate::registry::DeleteOptions {
        grace_period: delete["gracePeriodSeconds"].as_i64(),
        uid: delete["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: delete["preconditions"]["resourceVersion"].as_str().map(str::to_string),
        ..Default::default()
    };
    reg.delete(r, ns, name, &opts).await?;
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&status).unwrap_or_default(),
    )
        .into_response())
}
