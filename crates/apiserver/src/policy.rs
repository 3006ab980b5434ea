//! The ValidatingAdmissionPolicy admission step: every write is checked against the stored
//! policies through their bindings, after the object is defaulted and validated and before it
//! is stored (<https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/>).
//!
//! The CEL and the matching are `kumo_api::cel::policy`; this module reads what they need
//! from the store (bindings, their policies, params, the namespace) and turns failures into
//! what the binding's `validationActions` ask for: `Deny` → an error with the validation's
//! `reason` (422 `Invalid` by default), `Warn` → a `Warning` header, `Audit` → a log line
//! (kumo keeps no audit log). The `authorizer` variable is not offered. Policies and bindings
//! are read from the store on each write that could match, so a new binding applies at once;
//! with no binding stored the cost is one empty range read.

use crate::auth::User;
use crate::error::{ApiError, ApiResult, Details};
use crate::object;
use crate::registry::Registry;
use kumo_api::cel::policy::{self, Failure, Inputs, MatchInput, Request};
use kumo_api::resources::Resource;
use kumo_api::selector::LabelSelector;
use kumo_api::validation::{ErrorType, FieldError};
use kumo_store::RangeRequest;
use serde_json::Value;

const GROUP: &str = "admissionregistration.k8s.io";

/// One write to admit.
pub struct Admission<'a> {
    /// The resource written.
    pub resource: &'a Resource,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'static str,
    /// `status` for the status subresource, else empty.
    pub subresource: &'a str,
    /// The object as it would be stored (`None` for deletes).
    pub object: Option<&'a Value>,
    /// The stored object (`None` for creates).
    pub old_object: Option<&'a Value>,
    /// Who asks.
    pub user: Option<&'a User>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

async fn list(reg: &Registry, r: &Resource, ns: Option<&str>) -> ApiResult<Vec<Value>> {
    let prefix = match ns {
        Some(ns) if r.namespaced => format!("{}{ns}/", r.key_prefix()),
        _ => r.key_prefix(),
    };
    let page = reg.store.range(RangeRequest { prefix, ..Default::default() }).await?;
    Ok(page.kvs.iter().filter_map(object::from_kv).collect())
}

/// Run every matching policy on the write. Returns the warnings to send; a denial is an error.
pub async fn admit(reg: &Registry, a: &Admission<'_>) -> ApiResult<Vec<String>> {
    // Policies never apply to policies and bindings themselves, as upstream, so a bad policy
    // can always be fixed.
    if a.resource.group == GROUP
        && matches!(
            a.resource.plural.as_str(),
            "validatingadmissionpolicies" | "validatingadmissionpolicybindings"
        )
    {
        return Ok(vec![]);
    }
    let snap = reg.catalog.snapshot();
    let (Some(bindings_r), Some(policies_r)) = (
        snap.find(GROUP, "v1", "validatingadmissionpolicybindings").cloned(),
        snap.find(GROUP, "v1", "validatingadmissionpolicies").cloned(),
    ) else {
        return Ok(vec![]);
    };
    let bindings = list(reg, &bindings_r, None).await?;
    if bindings.is_empty() {
        return Ok(vec![]);
    }
    let subject = a.object.or(a.old_object).unwrap_or(&Value::Null);
    let namespace = if a.resource.namespaced {
        object::namespace(subject).unwrap_or("").to_string()
    } else {
        String::new()
    };
    let request = Request {
        operation: a.operation.into(),
        group: a.resource.group.clone(),
        version: a.resource.version.clone(),
        resource: a.resource.plural.clone(),
        subresource: a.subresource.into(),
        kind: a.resource.kind.clone(),
        namespace: namespace.clone(),
        name: object::name(subject).to_string(),
        username: a.user.map(|u| u.name.clone()).unwrap_or_default(),
        groups: a.user.map(|u| u.groups.clone()).unwrap_or_default(),
        dry_run: a.dry_run,
    };
    let namespace_object = match (namespace.is_empty(), snap.find("", "v1", "namespaces")) {
        (false, Some(nsr)) => {
            reg.store.get(&nsr.key(None, &namespace)).await?.as_ref().and_then(object::from_kv)
        }
        _ => None,
    };
    let input = MatchInput {
        request: &request,
        object_labels: subject["metadata"]["labels"].as_object(),
        namespace_labels: namespace_object
            .as_ref()
            .and_then(|n| n["metadata"]["labels"].as_object()),
    };
    let mut warnings = Vec::new();
    for binding in &bindings {
        let spec = &binding["spec"];
        let Some(policy_name) = spec["policyName"].as_str() else { continue };
        let Some(kv) = reg.store.get(&policies_r.key(None, policy_name)).await? else { continue };
        let Some(policy) = object::from_kv(&kv) else { continue };
        if !policy::matches(Some(&policy["spec"]["matchConstraints"]), input)
            || !policy::matches(spec.get("matchResources"), input)
        {
            continue;
        }
        let failures = match params(reg, &policy, binding, &namespace).await? {
            Params::None => evaluate(&policy, &request, a, None, namespace_object.as_ref()),
            Params::Objects(list) => list
                .iter()
                .flat_map(|p| evaluate(&policy, &request, a, Some(p), namespace_object.as_ref()))
                .collect(),
            Params::Missing(message) => {
                vec![Failure { message, reason: "Invalid".into() }]
            }
            Params::Skip => vec![],
        };
        let actions: Vec<&str> = spec["validationActions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let binding_name = object::name(binding);
        for f in &failures {
            if actions.contains(&"Warn") {
                warnings.push(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {}",
                    f.message
                ));
            }
            if actions.contains(&"Audit") {
                tracing::info!(policy = policy_name, binding = binding_name, message = %f.message, "admission policy audit");
            }
        }
        if let Some(f) = failures.first().filter(|_| actions.contains(&"Deny")) {
            return Err(denial(a.resource, &request.name, policy_name, binding_name, f));
        }
    }
    Ok(warnings)
}

fn evaluate(
    policy: &Value,
    request: &Request,
    a: &Admission<'_>,
    params: Option<&Value>,
    namespace_object: Option<&Value>,
) -> Vec<Failure> {
    let inputs = Inputs {
        request: Some(request),
        object: a.object,
        old_object: a.old_object,
        params,
        namespace_object,
    };
    policy::evaluate(&policy["spec"], &inputs)
}

enum Params {
    /// The policy takes no params.
    None,
    /// Evaluate once per param object.
    Objects(Vec<Value>),
    /// No params, and the binding says to deny.
    Missing(String),
    /// No params, and the binding says to allow.
    Skip,
}

/// The param objects of a binding (`paramRef` by name or selector, in the request's namespace
/// unless it names one).
async fn params(
    reg: &Registry,
    policy: &Value,
    binding: &Value,
    namespace: &str,
) -> ApiResult<Params> {
    let kind = &policy["spec"]["paramKind"];
    let (Some(api_version), Some(kind_name)) = (kind["apiVersion"].as_str(), kind["kind"].as_str())
    else {
        return Ok(Params::None);
    };
    let (group, _) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let pref = &binding["spec"]["paramRef"];
    let deny = pref["parameterNotFoundAction"].as_str() != Some("Allow");
    let missing = || {
        if deny {
            Params::Missing(
                "no params found for policy binding with `Deny` parameterNotFoundAction"
                    .to_string(),
            )
        } else {
            Params::Skip
        }
    };
    let Some(r) = reg.catalog.snapshot().by_kind(group, kind_name).cloned() else {
        return Ok(Params::Missing(format!(
            "failed to configure binding: paramKind {api_version}, Kind={kind_name} is not served"
        )));
    };
    let ns = pref["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(namespace);
    if r.namespaced && ns.is_empty() {
        return Ok(missing());
    }
    let found = if let Some(name) = pref["name"].as_str().filter(|n| !n.is_empty()) {
        match reg.store.get(&r.key(Some(ns), name)).await? {
            Some(kv) => object::from_kv(&kv).into_iter().collect(),
            None => vec![],
        }
    } else {
        let selector = LabelSelector::from_object(&pref["selector"]).map_err(|e| {
            ApiError::Internal(format!(
                "binding {}: bad paramRef.selector: {e}",
                object::name(binding)
            ))
        })?;
        list(reg, &r, Some(ns))
            .await?
            .into_iter()
            .filter(|p| selector.matches(p["metadata"]["labels"].as_object()))
            .collect()
    };
    Ok(if found.is_empty() { missing() } else { Params::Objects(found) })
}

/// The error a `Deny` binding answers with, worded as upstream's.
fn denial(r: &Resource, name: &str, policy: &str, binding: &str, f: &Failure) -> ApiError {
    let message = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {}",
        f.message
    );
    let details = Some(Details::new(&r.group, &r.plural, name));
    match f.reason.as_str() {
        "Forbidden" => ApiError::Forbidden(
            format!("{} \"{name}\" is forbidden: {message}", r.group_resource()),
            details,
        ),
        "Unauthorized" => ApiError::Unauthorized(message),
        "RequestEntityTooLarge" => ApiError::TooLarge(message),
        _ => ApiError::invalid(
            &r.group,
            &r.plural,
            name,
            vec![FieldError {
                type_: ErrorType::Message,
                field: String::new(),
                value: None,
                detail: message,
            }],
        ),
    }
}
