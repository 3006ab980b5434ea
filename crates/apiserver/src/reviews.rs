//! Reviews: `SelfSubjectReview` (who am I), `SelfSubjectAccessReview` (may I),
//! `SelfSubjectRulesReview` (what may I), `TokenReview` (whose token is this),
//! `SubjectAccessReview` and `LocalSubjectAccessReview` (may they). Created to ask, answered
//! in `status`, never stored.
//!
//! kumo has authentication but no RBAC enforcement yet, so every authenticated user may do
//! everything; the answers say exactly that rather than pretending to evaluate roles.

use crate::auth::{Authenticator, User};
use crate::error::{ApiError, ApiResult};
use kumo_api::resources::Resource;
use serde_json::{json, Value};

const NO_RBAC: &str = "kumo does not enforce RBAC yet: every authenticated user is allowed";

/// Answer a review for `user`.
pub fn answer(
    r: &Resource,
    mut obj: Value,
    user: Option<&User>,
    auth: &Authenticator,
    namespace: Option<&str>,
) -> ApiResult<Value> {
    let Some(user) = user else {
        return Err(ApiError::Unauthorized("Unauthorized".into()));
    };
    obj["apiVersion"] = json!(r.api_version());
    obj["kind"] = json!(r.kind);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    let mut groups = user.groups.clone();
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    obj["status"] = match r.kind.as_str() {
        "SelfSubjectReview" => json!({"userInfo": {"username": user.name, "groups": groups}}),
        "SelfSubjectAccessReview" => {
            one_of_attributes(r, &obj)?;
            json!({"allowed": true, "reason": NO_RBAC})
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            one_of_attributes(r, &obj)?;
            let spec = obj["spec"].clone();
            let no_user = spec["user"].as_str().is_none_or(str::is_empty);
            let no_groups = spec["groups"].as_array().is_none_or(Vec::is_empty);
            if no_user && no_groups {
                return Err(invalid(
                    r,
                    "spec.user",
                    Some("\"\""),
                    "at least one of user or group must be specified",
                ));
            }
            if r.kind == "LocalSubjectAccessReview" {
                let ns = namespace.unwrap_or("");
                obj["metadata"]["namespace"] = json!(ns);
                let asked = spec["resourceAttributes"]["namespace"].as_str().unwrap_or("");
                if spec["resourceAttributes"].is_object() && asked != ns {
                    let v = kumo_api::validation::go_quote(asked);
                    return Err(invalid(
                        r,
                        "spec.resourceAttributes.namespace",
                        Some(&v),
                        "must match metadata.namespace",
                    ));
                }
            }
            json!({"allowed": true, "reason": NO_RBAC})
        }
        "TokenReview" => {
            let token = obj["spec"]["token"].as_str().unwrap_or("");
            if token.is_empty() {
                return Err(invalid(r, "spec.token", None, "token must be specified"));
            }
            let audiences = obj["spec"]["audiences"].clone();
            match auth.token(token) {
                Some(who) => {
                    let mut groups = who.groups.clone();
                    groups.push("system:authenticated".into());
                    let mut status = json!({"authenticated": true, "user": {"username": who.name, "groups": groups}});
                    if audiences.is_array() {
                        status["audiences"] = audiences;
                    }
                    status
                }
                None => {
                    json!({"authenticated": false, "user": {}, "error": "invalid bearer token"})
                }
            }
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
            "evaluationError": NO_RBAC,
        }),
        other => return Err(ApiError::MethodNotAllowed(format!("{other} cannot be created"))),
    };
    Ok(obj)
}

/// An access review asks about resources or non-resource URLs, exactly one of the two.
fn one_of_attributes(r: &Resource, obj: &Value) -> ApiResult<()> {
    let resource = obj["spec"]["resourceAttributes"].is_object();
    let non_resource = obj["spec"]["nonResourceAttributes"].is_object();
    if resource == non_resource {
        return Err(invalid(
            r,
            "spec.resourceAttributes",
            None,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    Ok(())
}

fn invalid(r: &Resource, field: &str, value: Option<&str>, detail: &str) -> ApiError {
    ApiError::invalid(
        &r.group,
        &r.kind,
        "",
        vec![kumo_api::validation::FieldError {
            type_: kumo_api::validation::ErrorType::Invalid,
            field: field.into(),
            value: value.map(str::to_string),
            detail: detail.into(),
        }],
    )
}
