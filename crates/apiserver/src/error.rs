//! API errors and their one mapping to a Kubernetes `Status` response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kumo_api::validation::FieldError;
use kumo_store::StoreError;
use serde_json::{json, Value};

/// What a request failed with; each variant maps to one `Status` reason and HTTP code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The object or collection does not exist (404 NotFound).
    #[error("{0}")]
    NotFound(String, Option<Details>),
    /// An object of that name exists already (409 AlreadyExists).
    #[error("{0}")]
    AlreadyExists(String, Details),
    /// A precondition (resourceVersion, uid) did not hold (409 Conflict).
    #[error("{0}")]
    Conflict(String, Option<Details>),
    /// Server-side apply met fields other managers own (409 Conflict with causes).
    #[error("{0}")]
    ApplyConflict(String, Details, Vec<kumo_api::managed::Conflict>),
    /// The object failed validation (422 Invalid).
    #[error("{0}")]
    Invalid(String, Details, Vec<FieldError>),
    /// The request cannot be understood (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The request is understood but refused (403 Forbidden).
    #[error("{0}")]
    Forbidden(String, Option<Details>),
    /// No credentials, or bad ones (401 Unauthorized).
    #[error("{0}")]
    Unauthorized(String),
    /// The method is not supported on this resource (405 MethodNotAllowed).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body's media type is not supported here (415 UnsupportedMediaType).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is larger than the server accepts (413 RequestEntityTooLarge).
    #[error("{0}")]
    TooLarge(String),
    /// The requested resourceVersion or continue token is too old (410 Gone / Expired).
    #[error("{0}")]
    Gone(String),
    /// A limit says not now; the client should retry (429 TooManyRequests), e.g. an eviction
    /// that a PodDisruptionBudget does not allow yet.
    #[error("{0}")]
    TooManyRequests(String, Option<Details>),
    /// Something broke inside the server (500 InternalError).
    #[error("{0}")]
    Internal(String),
    /// The server is shutting down or the store is unavailable (503 ServiceUnavailable).
    #[error("{0}")]
    Unavailable(String),
}

/// `Status.details`: which object the error is about.
#[derive(Debug, Clone, Default)]
pub struct Details {
    /// Object name.
    pub name: String,
    /// API group (empty for core).
    pub group: String,
    /// Kind, or plural resource name as upstream puts it for NotFound/AlreadyExists.
    pub kind: String,
}

impl Details {
    /// Details naming an object of a resource.
    pub fn new(group: &str, kind: &str, name: &str) -> Self {
        Details { name: name.into(), group: group.into(), kind: kind.into() }
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// `<resource> "<name>" not found`, as upstream words it.
    pub fn not_found(group_resource: &str, group: &str, plural: &str, name: &str) -> Self {
        ApiError::NotFound(
            format!("{group_resource} \"{name}\" not found"),
            Some(Details::new(group, plural, name)),
        )
    }

    /// The object failed validation: `<Kind>.<group> "<name>" is invalid: ...`.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: Vec<FieldError>) -> Self {
        let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let joined =
            if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        ApiError::Invalid(
            format!("{qualified} \"{name}\" is invalid: {joined}"),
            Details::new(group, kind, name),
            errors,
        )
    }

    /// Server-side apply conflicts, worded as upstream's (`Apply failed with 1 conflict: conflict
    /// with "kubectl" using apps/v1: .spec.replicas`).
    pub fn apply_conflict(
        group: &str,
        plural: &str,
        name: &str,
        conflicts: Vec<kumo_api::managed::Conflict>,
    ) -> Self {
        let n = conflicts.len();
        let message = if n == 1 {
            let c = &conflicts[0];
            format!(
                "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
                c.manager, c.api_version, c.field
            )
        } else {
            let mut by_manager: Vec<(String, String, Vec<String>)> = Vec::new();
            for c in &conflicts {
                match by_manager.iter_mut().find(|(m, v, _)| *m == c.manager && *v == c.api_version)
                {
                    Some((_, _, fields)) => fields.push(c.field.clone()),
                    None => by_manager.push((
                        c.manager.clone(),
                        c.api_version.clone(),
                        vec![c.field.clone()],
                    )),
                }
            }
            let parts: Vec<String> = by_manager
                .iter()
                .map(|(m, v, fields)| {
                    let list: Vec<String> = fields.iter().map(|f| format!("- {f}")).collect();
                    format!("conflicts with \"{m}\" using {v}:\n{}", list.join("\n"))
                })
                .collect();
            format!("Apply failed with {n} conflicts: {}", parts.join("\n"))
        };
        ApiError::ApplyConflict(message, Details::new(group, plural, name), conflicts)
    }

    /// The conflict message that `kubectl` users know from a stale update.
    pub fn stale(group_resource: &str, group: &str, plural: &str, name: &str) -> Self {
        ApiError::Conflict(
            format!(
                "Operation cannot be fulfilled on {group_resource} \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again"
            ),
            Some(Details::new(group, plural, name)),
        )
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound(..) => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::AlreadyExists(..) => (StatusCode::CONFLICT, "AlreadyExists"),
            ApiError::Conflict(..) | ApiError::ApplyConflict(..) => {
                (StatusCode::CONFLICT, "Conflict")
            }
            ApiError::Invalid(..) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            ApiError::BadRequest(..) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::Forbidden(..) => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::Unauthorized(..) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::MethodNotAllowed(..) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::UnsupportedMediaType(..) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            ApiError::TooLarge(..) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            ApiError::Gone(..) => (StatusCode::GONE, "Expired"),
            ApiError::TooManyRequests(..) => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            ApiError::Internal(..) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            ApiError::Unavailable(..) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        }
    }

    /// The `metav1.Status` object for this error.
    pub fn status(&self) -> Value {
        let (code, reason) = self.parts();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        let details = match self {
            ApiError::NotFound(_, d)
            | ApiError::Conflict(_, d)
            | ApiError::Forbidden(_, d)
            | ApiError::TooManyRequests(_, d) => d.clone(),
            ApiError::AlreadyExists(_, d) => Some(d.clone()),
            ApiError::ApplyConflict(_, d, conflicts) => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict",
                        "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                        "field": c.field}))
                    .collect();
                let mut d = details_json(d);
                d["causes"] = Value::Array(causes);
                status["details"] = d;
                None
            }
            ApiError::Invalid(_, d, errors) => {
                let causes: Vec<Value> = errors
                    .iter()
                    .map(|e| {
                        json!({"reason": e.reason(), "message": cause_message(e), "field": e.field})
                    })
                    .collect();
                let mut d = details_json(d);
                d["causes"] = Value::Array(causes);
                status["details"] = d;
                None
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = details_json(&d);
        }
        status
    }

    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        self.parts().0
    }
}

fn cause_message(e: &FieldError) -> String {
    // Upstream's cause message is the error without its field prefix.
    let full = e.to_string();
    let prefix = format!("{}: ", e.field);
    full.strip_prefix(&prefix).map(str::to_string).unwrap_or(full)
}

fn details_json(d: &Details) -> Value {
    let mut v = json!({"name": d.name, "kind": d.kind});
    if !d.group.is_empty() {
        v["group"] = Value::String(d.group.clone());
    }
    v
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if code.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if code == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read; the connection cannot carry another request.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => ApiError::Unavailable("the store is shutting down".into()),
            StoreError::Compacted { requested, compacted } => {
                ApiError::Gone(format!("too old resource version: {requested} ({compacted})"))
            }
            other => ApiError::Internal(format!("store: {other}")),
        }
    }
}
