//! ValidatingAdmissionPolicy, the pure part: which requests a policy or binding matches
//! (`matchConstraints` / `matchResources`) and what its CEL says about one request
//! (<https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/>).
//! Fetching policies, bindings, params and namespaces is the API server's business; it hands
//! them here as JSON.
//!
//! Evaluation follows upstream's order: `matchConditions` (all must hold, else the policy does
//! not apply), then `variables` (each sees the ones before it), then `validations`. An
//! expression that fails to compile or run is a failure of the policy, which `failurePolicy`
//! turns into a denial (`Fail`, the default) or nothing (`Ignore`).

use super::{map_of, to_cel, Activation, Program};
use crate::selector::LabelSelector;
use serde_json::{Map, Value};

/// The request being admitted, as policies see it (`request` in CEL).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    /// API group of the resource (`apps`).
    pub group: String,
    /// Version (`v1`).
    pub version: String,
    /// Resource, plural (`deployments`).
    pub resource: String,
    /// Subresource (`status`), empty for the main resource.
    pub subresource: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// The requesting user.
    pub username: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

impl Request {
    /// The `request` variable.
    pub fn to_cel(&self) -> cel::Value {
        let s = |v: &str| cel::Value::from(v.to_string());
        let groups =
            cel::Value::List(std::sync::Arc::new(self.groups.iter().map(|g| s(g)).collect()));
        map_of(vec![
            ("operation".into(), s(&self.operation)),
            (
                "kind".into(),
                map_of(vec![
                    ("group".into(), s(&self.group)),
                    ("version".into(), s(&self.version)),
                    ("kind".into(), s(&self.kind)),
                ]),
            ),
            (
                "resource".into(),
                map_of(vec![
                    ("group".into(), s(&self.group)),
                    ("version".into(), s(&self.version)),
                    ("resource".into(), s(&self.resource)),
                ]),
            ),
            ("subResource".into(), s(&self.subresource)),
            ("namespace".into(), s(&self.namespace)),
            ("name".into(), s(&self.name)),
            (
                "userInfo".into(),
                map_of(vec![("username".into(), s(&self.username)), ("groups".into(), groups)]),
            ),
            ("dryRun".into(), cel::Value::Bool(self.dry_run)),
        ])
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn listed(list: &[&str], want: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == want)
}

/// Whether one `NamedRuleWithOperations` covers the request.
fn rule_matches(rule: &Value, req: &Request, namespaced: bool) -> bool {
    let resource_ok = strings(&rule["resources"]).iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == req.resource) && (sub == "*" || sub == req.subresource)
    });
    let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => !namespaced,
        "Namespaced" => namespaced,
        _ => true,
    };
    let names = strings(&rule["resourceNames"]);
    listed(&strings(&rule["operations"]), &req.operation)
        && listed(&strings(&rule["apiGroups"]), &req.group)
        && listed(&strings(&rule["apiVersions"]), &req.version)
        && resource_ok
        && scope_ok
        && (names.is_empty() || names.contains(&req.name.as_str()))
}

/// What a `MatchResources` needs besides the request: the labels of the object (the old one
/// for deletes) and of its namespace (`None` for cluster-scoped objects).
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    /// The request.
    pub request: &'a Request,
    /// `metadata.labels` of the object.
    pub object_labels: Option<&'a Map<String, Value>>,
    /// Labels of the object's namespace.
    pub namespace_labels: Option<&'a Map<String, Value>>,
}

/// Whether a `MatchResources` (a policy's `matchConstraints` or a binding's `matchResources`)
/// selects the request. `None` (a binding without `matchResources`) selects everything.
/// Unparseable selectors select nothing: a broken policy must not catch every request.
pub fn matches(m: Option<&Value>, input: MatchInput<'_>) -> bool {
    let Some(m) = m.filter(|m| m.is_object()) else { return true };
    let namespaced = !input.request.namespace.is_empty();
    if namespaced {
        match LabelSelector::from_object(&m["namespaceSelector"]) {
            Ok(sel) => {
                if !sel.matches(input.namespace_labels) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    match LabelSelector::from_object(&m["objectSelector"]) {
        Ok(sel) if sel.matches(input.object_labels) => {}
        _ => return false,
    }
    let rules = m["resourceRules"].as_array();
    // A binding may leave resourceRules out (the policy's constraints decide the resources).
    let included = rules
        .map(|rs| rs.iter().any(|r| rule_matches(r, input.request, namespaced)))
        .unwrap_or(true);
    let excluded = m["excludeResourceRules"]
        .as_array()
        .is_some_and(|rs| rs.iter().any(|r| rule_matches(r, input.request, namespaced)));
    included && !excluded
}

/// The values a policy's expressions see.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    /// The request.
    pub request: Option<&'a Request>,
    /// The new object (`null` for deletes).
    pub object: Option<&'a Value>,
    /// The stored object (`null` for creates).
    pub old_object: Option<&'a Value>,
    /// The binding's param resource (`null` without `paramKind`).
    pub params: Option<&'a Value>,
    /// The namespace object (`null` for cluster-scoped requests).
    pub namespace_object: Option<&'a Value>,
}

/// One validation that did not pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What to tell the client.
    pub message: String,
    /// `Unauthorized`, `Forbidden`, `Invalid` (the default) or `RequestEntityTooLarge`.
    pub reason: String,
}

/// Evaluate `spec` (a ValidatingAdmissionPolicy's spec) on one request. The result lists the
/// validations that failed; empty means admitted (or not applicable).
pub fn evaluate(spec: &Value, inputs: &Inputs<'_>) -> Vec<Failure> {
    let fail_closed = spec["failurePolicy"].as_str() != Some("Ignore");
    let mut vars = Activation::default();
    let opt = |v: Option<&Value>| v.map(to_cel).unwrap_or(cel::Value::Null);
    vars.bind("object", opt(inputs.object));
    vars.bind("oldObject", opt(inputs.old_object));
    vars.bind("params", opt(inputs.params));
    vars.bind("namespaceObject", opt(inputs.namespace_object));
    vars.bind("request", inputs.request.map(Request::to_cel).unwrap_or(cel::Value::Null));
    let error = |expr: &str, e: &dyn std::fmt::Display| Failure {
        message: format!("expression '{expr}' resulted in error: {e}"),
        reason: "Invalid".into(),
    };
    for cond in spec["matchConditions"].as_array().into_iter().flatten() {
        let expr = cond["expression"].as_str().unwrap_or("");
        match Program::compile(expr).and_then(|p| p.eval_bool(&vars)) {
            Ok(true) => {}
            Ok(false) => return vec![],
            Err(e) if fail_closed => return vec![error(expr, &e)],
            Err(_) => return vec![],
        }
    }
    let mut computed: Vec<(String, cel::Value)> = Vec::new();
    for var in spec["variables"].as_array().into_iter().flatten() {
        let (Some(name), Some(expr)) = (var["name"].as_str(), var["expression"].as_str()) else {
            continue;
        };
        vars.bind("variables", map_of(computed.clone()));
        // A variable that fails is left out; an expression that uses it then fails in turn.
        if let Ok(v) = Program::compile(expr).and_then(|p| p.eval(&vars)) {
            computed.push((name.to_string(), v));
        }
    }
    vars.bind("variables", map_of(computed));
    let mut failures = Vec::new();
    for v in spec["validations"].as_array().into_iter().flatten() {
        let expr = v["expression"].as_str().unwrap_or("");
        let reason = v["reason"].as_str().unwrap_or("Invalid").to_string();
        match Program::compile(expr).and_then(|p| p.eval_bool(&vars)) {
            Ok(true) => {}
            Ok(false) => failures.push(Failure { message: message(v, expr, &vars), reason }),
            Err(e) if fail_closed => failures.push(error(expr, &e)),
            Err(_) => {}
        }
    }
    failures
}

fn message(validation: &Value, expr: &str, vars: &Activation) -> String {
    if let Some(m) = validation["messageExpression"].as_str() {
        if let Ok(s) = Program::compile(m).and_then(|p| p.eval_string(vars)) {
            if !s.trim().is_empty() && !s.contains('\n') {
                return s;
            }
        }
    }
    match validation["message"].as_str().filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => format!("failed expression: {expr}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy_request() -> Request {
        Request {
            operation: "CREATE".into(),
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
            kind: "Deployment".into(),
            namespace: "default".into(),
            name: "web".into(),
            username: "alice".into(),
            groups: vec!["devs".into()],
            ..Default::default()
        }
    }

    #[test]
    fn resource_rules_and_selectors_decide_what_matches() {
        let req = deploy_request();
        let ns_labels = json!({"env": "prod"});
        let input = MatchInput {
            request: &req,
            object_labels: None,
            namespace_labels: ns_labels.as_object(),
        };
        let m = json!({"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]});
        assert!(matches(Some(&m), input));
        let other = json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["*"],
            "operations": ["*"], "resources": ["pods"]}]});
        assert!(!matches(Some(&other), input));
        let mut by_ns = m.clone();
        by_ns["namespaceSelector"] = json!({"matchLabels": {"env": "test"}});
        assert!(!matches(Some(&by_ns), input));
        by_ns["namespaceSelector"] =
            json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]});
        assert!(matches(Some(&by_ns), input));
        let mut excluded = m.clone();
        excluded["excludeResourceRules"] = json!([{"apiGroups": ["*"], "apiVersions": ["*"],
            "operations": ["*"], "resources": ["*"], "resourceNames": ["web"]}]);
        assert!(!matches(Some(&excluded), input));
        assert!(matches(None, input), "a binding without matchResources matches");
    }

    #[test]
    fn validations_see_object_params_variables_and_request() {
        let spec = json!({
        "variables": [
            {"name": "replicas", "expression": "object.spec.replicas"},
            {"name": "limit", "expression": "int(params.data.maxReplicas)"},
            {"name": "over", "expression": "variables.replicas > variables.limit"}
        ],
        "validations": [
            {"expression": "!variables.over", "messageExpression": "'replicas ' + string(variables.replicas) + ' over ' + string(variables.limit)"},
            {"expression": "request.userInfo.username != 'alice'", "reason": "Forbidden", "message": "not alice"},
            {"expression": "object.metadata.name.size() < 10"}
        ]});
        let obj = json!({"metadata": {"name": "web"}, "spec": {"replicas": 7}});
        let params = json!({"data": {"maxReplicas": "5"}});
        let req = deploy_request();
        let inputs = Inputs {
            request: Some(&req),
            object: Some(&obj),
            params: Some(&params),
            ..Default::default()
        };
        let failures = evaluate(&spec, &inputs);
        assert_eq!(
            failures,
            vec![
                Failure { message: "replicas 7 over 5".into(), reason: "Invalid".into() },
                Failure { message: "not alice".into(), reason: "Forbidden".into() },
            ]
        );
    }

    #[test]
    fn match_conditions_and_failure_policy() {
        let obj = json!({"metadata": {"name": "web"}});
        let inputs = Inputs { object: Some(&obj), ..Default::default() };
        let skipped = json!({"matchConditions": [{"name": "c", "expression": "object.metadata.name == 'db'"}],
            "validations": [{"expression": "false"}]});
        assert!(evaluate(&skipped, &inputs).is_empty(), "a false matchCondition skips the policy");
        let broken = json!({"validations": [{"expression": "object.spec.replicas > 1"}]});
        let f = evaluate(&broken, &inputs);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message.starts_with("expression 'object.spec.replicas > 1' resulted in error"),
            "{f:?}"
        );
        let mut ignored = broken.clone();
        ignored["failurePolicy"] = json!("Ignore");
        assert!(evaluate(&ignored, &inputs).is_empty());
        let plain = json!({"validations": [{"expression": "object.metadata.name == 'db'"}]});
        assert_eq!(
            evaluate(&plain, &inputs)[0].message,
            "failed expression: object.metadata.name == 'db'"
        );
    }
}
