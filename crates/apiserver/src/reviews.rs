//! Reviews: `SelfSubjectReview` (who am I), `SelfSubjectAccessReview` (may I) and
//! `SelfSubjectRulesReview` (what may I). Created to ask, answered in `status`, never stored.
//!
//! kumo has authentication but no RBAC enforcement yet, so every authenticated user may do
//! everything; the answers say exactly that rather than pretending to evaluate roles.

use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use kumo_api::resources::Resource;
use serde_json::{json, Value};

const NO_RBAC: &str = "kumo does not enforce RBAC yet: every authenticated user is allowed";

/// Answer a review for `user`.
pub fn answer(r: &Resource, mut obj: Value, user: Option<&User>) -> ApiResult<Value> {
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
            if obj["spec"]["resourceAttributes"].is_null()
                && obj["spec"]["nonResourceAttributes"].is_null()
            {
                return Err(ApiError::invalid(
                    &r.group,
                    &r.kind,
                    "",
                    vec![kumo_api::validation::FieldError {
                        type_: kumo_api::validation::ErrorType::Invalid,
                        field: "spec.resourceAttributes".into(),
                        value: None,
                        detail: "exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
                    }],
                ));
            }
            json!({"allowed": true, "reason": NO_RBAC})
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
