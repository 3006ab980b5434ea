//! The HTTP face of the API: the axum router, request decoding (JSON, YAML, the 3 MiB limit),
//! verbs mapped to registry calls, subresources (`status`, `scale`, `binding`, `finalize`, `log`),
//! response shapes (objects, lists, Tables) and `Warning` headers.

use crate::admission::FieldValidation;
use crate::auth::{self, Authenticator};
use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::openapi;
use crate::registry::{DeleteOptions, Deleted, ListOptions, PatchType, Registry, WriteOptions};
use crate::request::{Params, RequestInfo};
use crate::table::{self, Include, Shape};
use crate::watch::{self, WatchRequest};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use http_body_util::BodyExt;
use kumo_api::resources::Resource;
use kumo_api::selector::{FieldSelector, LabelSelector};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (as upstream's 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The registry.
    pub registry: Registry,
    /// Who may call.
    pub auth: Arc<Authenticator>,
    /// The address clients reach the server at (discovery's serverAddressByClientCIDRs).
    pub address: String,
    /// The bearer token the server presents to node agents (`pods/log`, metrics).
    pub agent_token: String,
    /// The cluster CA as the `kube-apiserver-client` CSR signer, when its key is readable.
    pub signer: Option<Arc<crate::certificates::Signer>>,
    /// How many requests of each priority class are served at once.
    pub limits: Arc<crate::priority::Limits>,
}

/// The router of the whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/api", get(api_root))
        .route("/apis", get(apis_root))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/{*path}", get(openapi_doc))
        .route("/openapi/v2", get(openapi_v2))
        .route("/api/{*rest}", any(resource))
        .route("/apis/{*rest}", any(resource))
        .fallback(not_found)
        // Inside authentication: a request without credentials is refused before it queues.
        .layer(axum::middleware::from_fn_with_state(
            state.limits.clone(),
            crate::priority::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::middleware))
        .with_state(state)
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn ok() -> &'static str {
    "ok"
}

async fn version() -> Response {
    json_response(StatusCode::OK, &discovery::version())
}

async fn not_found() -> Response {
    ApiError::NotFound("the server could not find the requested resource".into(), None)
        .into_response()
}

fn accept(headers: &HeaderMap) -> String {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

fn aggregated_response(v: &Value) -> Response {
    let mut resp = json_response(StatusCode::OK, v);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(discovery::AGGREGATED_V2));
    resp
}

async fn api_root(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let snap = st.registry.catalog.snapshot();
    if discovery::wants_aggregated(&accept(&headers)) {
        return aggregated_response(&discovery::aggregated(&snap, true));
    }
    json_response(StatusCode::OK, &discovery::core_versions(&st.address))
}

async fn apis_root(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let snap = st.registry.catalog.snapshot();
    if discovery::wants_aggregated(&accept(&headers)) {
        return aggregated_response(&discovery::aggregated(&snap, false));
    }
    json_response(StatusCode::OK, &discovery::group_list(&snap))
}

async fn openapi_index(State(st): State<AppState>) -> Response {
    json_response(StatusCode::OK, &openapi::index(&st.registry.catalog.snapshot()))
}

async fn openapi_doc(
    State(st): State<AppState>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let snap = st.registry.catalog.snapshot();
    let parts: Vec<&str> = path.split('/').collect();
    let gv = match parts.as_slice() {
        ["api", v] => Some(("", *v)),
        ["apis", g, v] => Some((*g, *v)),
        _ => None,
    };
    match gv.and_then(|(g, v)| openapi::document(&snap, g, v)) {
        Some((bytes, _)) => {
            let mut resp = (StatusCode::OK, bytes.as_ref().clone()).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        None => not_found().await,
    }
}

/// kubectl computes strategic merge patches from its compiled-in schemas when `/openapi/v2` is
/// absent, which is exactly right for the built-in kinds; see docs/adr/0002.
async fn openapi_v2() -> Response {
    not_found().await
}

async fn resource(State(st): State<AppState>, req: Request) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = match handle(st, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    // Off by default; `KUMO_LOG=kumo::request=debug` counts requests by verb and path when
    // profiling (how the scale benchmark found its conflict storms).
    tracing::debug!(target: "kumo::request", %method, path, status = resp.status().as_u16());
    resp
}

async fn handle(st: AppState, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let user = parts.extensions.get::<crate::auth::User>().cloned();
    let path = parts.uri.path().to_string();
    let params = Params::parse(parts.uri.query());
    let headers = parts.headers;
    let method = parts.method;
    let snap = st.registry.catalog.snapshot();
    let Some(info) = RequestInfo::parse(&path) else {
        // `/apis/<group>`.
        let group = path.trim_matches('/').strip_prefix("apis/").unwrap_or("");
        return match discovery::group(&snap, group) {
            Some(v) if method == Method::GET => Ok(json_response(StatusCode::OK, &v)),
            _ => Err(ApiError::NotFound(
                "the server could not find the requested resource".into(),
                None,
            )),
        };
    };
    if info.group == crate::metrics::GROUP && info.resource.is_some() {
        return crate::metrics::handle(&st, &method, &info, &params).await;
    }
    let Some(plural) = info.resource.clone() else {
        return match discovery::resource_list(&snap, &info.group, &info.version) {
            Some(v) if method == Method::GET => Ok(json_response(StatusCode::OK, &v)),
            _ => Err(ApiError::NotFound(
                "the server could not find the requested resource".into(),
                None,
            )),
        };
    };
    let Some(r) = snap.find(&info.group, &info.version, &plural).cloned() else {
        return Err(ApiError::NotFound(
            "the server could not find the requested resource".into(),
            None,
        ));
    };
    drop(snap);
    if !r.namespaced && info.namespace.is_some() {
        return Err(ApiError::NotFound(
            "the server could not find the requested resource".into(),
            None,
        ));
    }
    let ns = if r.namespaced { info.namespace.clone() } else { None };
    let shape = table::shape(&accept(&headers));
    let reg = &st.registry;
    let user_agent =
        headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
    let write = WriteOptions {
        dry_run: params.dry_run()?,
        field_validation: FieldValidation::parse(params.get("fieldValidation"))?,
        field_manager: params
            .get("fieldManager")
            .map(str::to_string)
            .unwrap_or_else(|| user_agent.split('/').next().unwrap_or("unknown").to_string()),
        force: params.flag("force"),
        applied: false,
        user: user.clone(),
    };
    if write.field_manager.chars().count() > 128 {
        return Err(ApiError::BadRequest(format!(
            "fieldManager is too long ({} characters): at most 128 are allowed",
            write.field_manager.chars().count()
        )));
    }
    let sub = info.subresource.as_deref();
    if crate::special::handles(&r, &method, info.name.as_deref(), sub) {
        let answer = crate::special::serve(
            reg,
            &r,
            ns.as_deref(),
            info.name.as_deref(),
            &method,
            &headers,
            body,
            &write,
            st.signer.as_deref(),
        )
        .await?;
        return Ok(special_response(answer, shape, &r, &params));
    }
    match (&method, info.name.as_deref(), sub) {
        (&Method::GET, None, _) => {
            if params.flag("watch") {
                return watch_response(reg, &r, ns, &params, shape);
            }
            list_response(reg, &r, ns.as_deref(), &params, shape).await
        }
        (&Method::POST, None, _) if r.create_only => {
            let obj = read_object(&headers, body).await?;
            let answer = crate::reviews::answer(&r, obj, user.as_ref(), &st.auth, ns.as_deref())?;
            Ok(json_response(StatusCode::CREATED, &answer))
        }
        (&Method::POST, None, _) => {
            let mut obj = read_object(&headers, body).await?;
            if r.group == "certificates.k8s.io" {
                crate::special::stamp_requester(&mut obj, user.as_ref());
            }
            let w = reg.create(&r, ns.as_deref(), obj, &write).await?;
            Ok(written(StatusCode::CREATED, w.object, w.warnings, shape, &r))
        }
        (&Method::DELETE, None, _) => {
            delete_collection(reg, &r, ns.as_deref(), &params, &headers, body).await
        }
        (&Method::GET, Some(name), None) => {
            let obj = reg.get(&r, ns.as_deref(), name).await?;
            Ok(shaped(StatusCode::OK, obj, shape, &r, &params))
        }
        (&Method::GET, Some(name), Some("status")) if r.status => {
            let obj = reg.get(&r, ns.as_deref(), name).await?;
            Ok(json_response(StatusCode::OK, &obj))
        }
        (&Method::PUT, Some(name), None | Some("status")) if sub.is_none() || r.status => {
            let obj = read_object(&headers, body).await?;
            let w = reg.update(&r, ns.as_deref(), name, obj, sub, &write).await?;
            Ok(written(StatusCode::OK, w.object, w.warnings, shape, &r))
        }
        (&Method::PATCH, Some(name), None | Some("status")) if sub.is_none() || r.status => {
            let (kind, patch) = read_patch(&headers, body).await?;
            if kind == PatchType::Apply && params.get("fieldManager").is_none() {
                return Err(ApiError::BadRequest(
                    "PATCH requests with apply content type must set fieldManager".into(),
                ));
            }
            let w = reg.patch(&r, ns.as_deref(), name, kind, &patch, sub, &write).await?;
            Ok(written(StatusCode::OK, w.object, w.warnings, shape, &r))
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = delete_options(&params, &headers, body).await?;
            match reg.delete(&r, ns.as_deref(), name, &opts).await? {
                Deleted::Pending(obj) => Ok(json_response(StatusCode::ACCEPTED, &obj)),
                Deleted::Gone(obj) => {
                    if r.group.is_empty() && r.plural == "pods" || r.crd_schema.is_some() {
                        // Pods and custom resources answer with the deleted object, as upstream.
                        return Ok(json_response(StatusCode::OK, &obj));
                    }
                    Ok(json_response(
                        StatusCode::OK,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "details": {"name": name, "group": r.group, "kind": r.plural, "uid": obj["metadata"]["uid"]}}),
                    ))
                }
            }
        }
        (_, Some(name), Some("scale")) if r.scale.is_some() => {
            crate::subresources::scale(
                reg,
                &r,
                ns.as_deref(),
                name,
                &method,
                &headers,
                body,
                &write,
            )
            .await
        }
        (&Method::POST, Some(name), Some("binding"))
            if r.group.is_empty() && r.plural == "pods" =>
        {
            let obj = read_object(&headers, body).await?;
            crate::subresources::bind(reg, &r, ns.as_deref(), name, &obj, &write).await
        }
        (&Method::GET, Some(name), Some("log")) if r.group.is_empty() && r.plural == "pods" => {
            crate::agents::pod_log(&st, &r, ns.as_deref().unwrap_or("default"), name, &params).await
        }
        (&Method::POST, Some(name), Some("eviction"))
            if r.group.is_empty() && r.plural == "pods" =>
        {
            let eviction = read_object(&headers, body).await?;
            crate::subresources::evict(reg, &r, ns.as_deref(), name, &eviction).await
        }
        (&Method::PUT, Some(name), Some("finalize"))
            if r.group.is_empty() && r.plural == "namespaces" =>
        {
            let obj = read_object(&headers, body).await?;
            let mut current = reg.get(&r, None, name).await?;
            current["spec"]["finalizers"] = obj["spec"]["finalizers"].clone();
            let w = reg.update(&r, None, name, current, None, &write).await?;
            Ok(json_response(StatusCode::OK, &w.object))
        }
        (_, Some(_), Some(s)) => Err(ApiError::NotFound(
            format!(
                "the server could not find the requested resource ({}/{s} is not served)",
                r.plural
            ),
            None,
        )),
        _ => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            r.group_resource()
        ))),
    }
}

fn shaped(code: StatusCode, obj: Value, shape: Shape, r: &Resource, params: &Params) -> Response {
    match shape {
        Shape::Object => json_response(code, &obj),
        Shape::PartialMetadata => json_response(code, &table::partial(&obj)),
        Shape::Table => {
            let include = Include::parse(params.get("includeObject"));
            let rv = obj["metadata"]["resourceVersion"].as_str().map(str::to_string);
            json_response(code, &table::table(r, &[obj], include, rv, None, true))
        }
    }
}

fn special_response(
    answer: crate::special::Answer,
    shape: Shape,
    r: &Resource,
    params: &Params,
) -> Response {
    match answer {
        crate::special::Answer::Object(code, v) => {
            shaped(StatusCode::from_u16(code).unwrap_or(StatusCode::OK), v, shape, r, params)
        }
        crate::special::Answer::List(items) => {
            let v = if shape == Shape::Table {
                table::table(
                    r,
                    &items,
                    Include::parse(params.get("includeObject")),
                    None,
                    None,
                    true,
                )
            } else {
                json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(),
                    "metadata": {}, "items": items})
            };
            json_response(StatusCode::OK, &v)
        }
    }
}

fn written(
    code: StatusCode,
    obj: Value,
    warnings: Vec<String>,
    shape: Shape,
    r: &Resource,
) -> Response {
    let mut resp = shaped(
        code,
        obj,
        if shape == Shape::Table { Shape::Object } else { shape },
        r,
        &Params::default(),
    );
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(&w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn list_options(r: &Resource, params: &Params) -> ApiResult<ListOptions> {
    let labels = LabelSelector::parse(params.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(params.get("fieldSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("invalid field selector: {e}")))?;
    for f in fields.fields() {
        if !field_supported(r, f) {
            return Err(ApiError::BadRequest(format!("field label not supported: {f}")));
        }
    }
    let limit = params.int("limit")?.unwrap_or(0).max(0) as usize;
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: params.get("continue").map(str::to_string),
    })
}

/// The field selectors each kind supports, as upstream's field label conversion functions.
fn field_supported(r: &Resource, f: &str) -> bool {
    if matches!(f, "metadata.name" | "metadata.namespace") {
        return true;
    }
    let extra: &[&str] = match (r.group.as_str(), r.plural.as_str()) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "replicationcontrollers") => &["status.replicas"],
        ("apps", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        ("certificates.k8s.io", "certificatesigningrequests") => &["spec.signerName"],
        _ => &[],
    };
    extra.contains(&f)
}

async fn list_response(
    reg: &Registry,
    r: &Resource,
    ns: Option<&str>,
    params: &Params,
    shape: Shape,
) -> ApiResult<Response> {
    let opts = list_options(r, params)?;
    if shape == Shape::Object {
        return encoded_list(reg, r, ns, &opts).await;
    }
    let page = reg.list(r, ns, &opts).await?;
    let rv = page.revision.to_string();
    let v = match shape {
        Shape::Table => {
            let include = Include::parse(params.get("includeObject"));
            table::table(r, &page.items, include, Some(rv), page.continue_token.clone(), true)
        }
        // Whole objects went out above.
        Shape::Object | Shape::PartialMetadata => {
            let items: Vec<Value> = page.items.iter().map(table::partial).collect();
            json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list_meta(&page.revision, page.continue_token.as_deref(), page.remaining),
                "items": items,
            })
        }
    };
    Ok(json_response(StatusCode::OK, &v))
}

/// `metadata` of a list.
fn list_meta(revision: &i64, continue_token: Option<&str>, remaining: Option<u64>) -> Value {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(n) = remaining {
        meta["remainingItemCount"] = json!(n);
    }
    meta
}

/// The start of a list body, up to the opening of `items`.
fn list_head(r: &Resource, meta: Value) -> String {
    format!(
        r#"{{"kind":{},"apiVersion":{},"metadata":{},"items":["#,
        Value::String(format!("{}List", r.kind)),
        Value::String(r.api_version()),
        meta,
    )
}

/// A whole-object list, each item encoded as soon as it is read (the items are never all held
/// as decoded objects; ADR 0016). A page (`limit`) goes out as three chunks, head, items and
/// tail, so the items are not copied again to put the metadata, known only at the end, in
/// front; a whole list is streamed (see [`streamed_list`]).
async fn encoded_list(
    reg: &Registry,
    r: &Resource,
    ns: Option<&str>,
    opts: &ListOptions,
) -> ApiResult<Response> {
    if opts.limit == 0 && opts.continue_token.is_none() {
        return streamed_list(reg, r, ns, opts).await;
    }
    let mut items = Vec::with_capacity(4096);
    let meta = reg
        .list_each(r, ns, opts, |obj| {
            if !items.is_empty() {
                items.push(b',');
            }
            serde_json::to_writer(&mut items, &obj)
                .map_err(|e| ApiError::Internal(format!("could not encode a list item: {e}")))
        })
        .await?;
    let head =
        list_head(r, list_meta(&meta.revision, meta.continue_token.as_deref(), meta.remaining));
    let len = head.len() + items.len() + 2;
    let chunks =
        [bytes::Bytes::from(head), bytes::Bytes::from(items), bytes::Bytes::from_static(b"]}")];
    let stream = futures::stream::iter(chunks.map(Ok::<_, std::convert::Infallible>));
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

/// A whole list read from one snapshot of the store in chunks, each chunk encoded when the
/// connection is ready for more: however many objects match, the server holds a few chunks
/// of stored values and one of JSON at a time (before, a list held all of its stored values
/// and all of its JSON; ADR 0018). Its metadata (only the revision: no
/// `continue` without `limit`) is known from the snapshot, so it goes first, as usual. A
/// failure after the head has gone out can no longer be a `Status`: the body is cut off,
/// which the client sees as a broken response, never as a short list.
async fn streamed_list(
    reg: &Registry,
    r: &Resource,
    ns: Option<&str>,
    opts: &ListOptions,
) -> ApiResult<Response> {
    use futures::StreamExt;
    let kumo_store::RangeChunks { revision, chunks } = reg.list_chunks(r, ns).await?;
    let head = list_head(r, list_meta(&revision, None, None));
    struct Items {
        chunks: futures::stream::BoxStream<
            'static,
            Result<Vec<kumo_store::KeyValue>, kumo_store::StoreError>,
        >,
        r: Resource,
        opts: ListOptions,
        first: bool,
    }
    let state = Items { chunks, r: r.clone(), opts: opts.clone(), first: true };
    let items = futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        // Chunks whose values all miss the selectors add nothing: read on to one that does.
        loop {
            let kvs = match st.chunks.next().await? {
                Ok(kvs) => kvs,
                Err(e) => return Some((Err(list_cut_off(&st.r, &e.to_string())), None)),
            };
            let mut buf = Vec::new();
            for kv in &kvs {
                let encoded = crate::registry::list_item(&st.r, &st.opts, kv).and_then(|item| {
                    let Some(obj) = item else { return Ok(()) };
                    if !std::mem::take(&mut st.first) {
                        buf.push(b',');
                    }
                    serde_json::to_writer(&mut buf, &obj).map_err(|e| {
                        ApiError::Internal(format!("could not encode a list item: {e}"))
                    })
                });
                if let Err(e) = encoded {
                    return Some((Err(list_cut_off(&st.r, &e.to_string())), None));
                }
            }
            if !buf.is_empty() {
                return Some((Ok(bytes::Bytes::from(buf)), Some(st)));
            }
        }
    });
    let stream = futures::stream::once(async move { Ok(bytes::Bytes::from(head)) })
        .chain(items)
        .chain(futures::stream::once(async { Ok(bytes::Bytes::from_static(b"]}")) }));
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// A streamed list that failed after its head went out: logged, and the body is cut off.
fn list_cut_off(r: &Resource, why: &str) -> std::io::Error {
    tracing::warn!(resource = %r.group_resource(), error = %why, "a streamed list was cut off");
    std::io::Error::other(why.to_string())
}

fn watch_response(
    reg: &Registry,
    r: &Resource,
    ns: Option<String>,
    params: &Params,
    shape: Shape,
) -> ApiResult<Response> {
    let mut opts = list_options(r, params)?;
    opts.limit = 0;
    let timeout =
        params.int("timeoutSeconds")?.filter(|t| *t > 0).map(|t| t as u64).unwrap_or(1800);
    let w = WatchRequest {
        resource: r.clone(),
        namespace: ns,
        opts,
        resource_version: params.get("resourceVersion").map(str::to_string),
        send_initial_events: params.flag("sendInitialEvents"),
        bookmarks: params.flag("allowWatchBookmarks"),
        timeout: Duration::from_secs(timeout),
        shape,
        include: Include::parse(params.get("includeObject")),
    };
    let rx = watch::start(reg.clone(), w);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}

async fn delete_collection(
    reg: &Registry,
    r: &Resource,
    ns: Option<&str>,
    params: &Params,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if !r.verbs.contains(&"deletecollection") {
        return Err(ApiError::MethodNotAllowed(format!(
            "deletecollection is not supported on {}",
            r.group_resource()
        )));
    }
    let opts = delete_options(params, headers, body).await?;
    let mut lopts = list_options(r, params)?;
    lopts.limit = 0;
    let page = reg.list(r, ns, &lopts).await?;
    let mut items = Vec::new();
    for obj in page.items {
        let name = object::name(&obj).to_string();
        let ons = object::namespace(&obj).map(str::to_string);
        match reg.delete(r, ons.as_deref().or(ns), &name, &opts).await {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => items.push(o),
            Err(ApiError::NotFound(..)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(), "metadata": {}, "items": items}),
    ))
}

/// Read a body up to [`MAX_BODY`], or answer 413.
pub async fn read_body(body: Body) -> ApiResult<bytes::Bytes> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ApiError::TooLarge(format!(
            "the request body is larger than the server accepts ({MAX_BODY} bytes); split the object or store large data elsewhere"
        ))),
        Err(e) => Err(ApiError::BadRequest(format!("could not read the request body: {e}"))),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn parse_value(bytes: &[u8], yaml: bool) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the request body is empty; send the object as JSON or YAML".into(),
        ));
    }
    if yaml {
        serde_yaml::from_slice::<Value>(bytes)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid YAML: {e}")))
    } else {
        serde_json::from_slice::<Value>(bytes)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
    }
}

/// Read and decode an object body (JSON or YAML).
pub async fn read_object(headers: &HeaderMap, body: Body) -> ApiResult<Value> {
    let ct = content_type(headers);
    let yaml = match ct.as_str() {
        "application/json" | "" | "*/*" => false,
        "application/yaml" | "application/x-yaml" | "text/yaml" => true,
        "application/vnd.kubernetes.protobuf" => {
            let bytes = read_body(body).await?;
            return kumo_api::protobuf::decode(&bytes).map_err(|e| match e {
                kumo_api::protobuf::ProtoError::UnknownKind(_) => ApiError::UnsupportedMediaType(e.to_string()),
                other => ApiError::BadRequest(format!("the request body is not valid protobuf: {other}")),
            });
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/yaml"
            )))
        }
    };
    let bytes = read_body(body).await?;
    let v = parse_value(&bytes, yaml)?;
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be an object (a map of fields), not a list or a scalar".into(),
        ));
    }
    Ok(v)
}

async fn read_patch(headers: &HeaderMap, body: Body) -> ApiResult<(PatchType, Value)> {
    let ct = content_type(headers);
    let kind = match ct.as_str() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" => PatchType::Merge,
        "application/strategic-merge-patch+json" => PatchType::Strategic,
        "application/apply-patch+yaml" => PatchType::Apply,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
            )))
        }
    };
    let bytes = read_body(body).await?;
    let v = parse_value(&bytes, kind == PatchType::Apply)?;
    match kind {
        PatchType::Json if !v.is_array() => {
            Err(ApiError::BadRequest("a JSON patch must be a list of operations".into()))
        }
        PatchType::Json => Ok((kind, v)),
        _ if !v.is_object() => {
            Err(ApiError::BadRequest("the patch must be an object (a map of fields)".into()))
        }
        _ => Ok((kind, v)),
    }
}

async fn delete_options(
    params: &Params,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<DeleteOptions> {
    let bytes = read_body(body).await?;
    let mut opts = DeleteOptions {
        propagation: params.get("propagationPolicy").map(str::to_string),
        grace_period: params.int("gracePeriodSeconds")?,
        dry_run: params.dry_run()?,
        ..Default::default()
    };
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let yaml = content_type(headers).contains("yaml");
        let v = parse_value(&bytes, yaml)?;
        if let Some(p) = v["propagationPolicy"].as_str() {
            opts.propagation = Some(p.to_string());
        }
        if v["orphanDependents"].as_bool() == Some(true) {
            opts.propagation = Some("Orphan".into());
        }
        if let Some(g) = v["gracePeriodSeconds"].as_i64() {
            opts.grace_period = Some(g);
        }
        if let Some(uid) = v["preconditions"]["uid"].as_str() {
            opts.uid = Some(uid.to_string());
        }
        if let Some(rv) = v["preconditions"]["resourceVersion"].as_str() {
            opts.resource_version = Some(rv.to_string());
        }
        if v["dryRun"].as_array().is_some_and(|a| a.iter().any(|x| x == "All")) {
            opts.dry_run = true;
        }
    }
    if let Some(p) = &opts.propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::BadRequest(format!(
                "propagationPolicy {p:?} is not supported: use Orphan, Background or Foreground"
            )));
        }
    }
    Ok(opts)
}
