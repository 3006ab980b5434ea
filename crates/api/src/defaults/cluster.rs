//! Defaults of the cluster-plumbing kinds (admission policies and webhooks, flow control,
//! CSI drivers), after `SetDefaults_*` in upstream's `pkg/apis/*/v1/defaults.go`.

use crate::validation::json::{default_field, existing_obj_mut};
use serde_json::{json, Map, Value};

/// A `MatchResources`: `matchPolicy: Equivalent`, empty selectors (match everything) and
/// rule scope `*`.
fn match_resources(m: &mut Map<String, Value>) {
    default_field(m, "matchPolicy", json!("Equivalent"));
    default_field(m, "namespaceSelector", json!({}));
    default_field(m, "objectSelector", json!({}));
    for key in ["resourceRules", "excludeResourceRules"] {
        if let Some(Value::Array(rules)) = m.get_mut(key) {
            for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                default_field(r, "scope", json!("*"));
            }
        }
    }
}

/// ValidatingAdmissionPolicy: `failurePolicy: Fail` and the MatchResources defaults.
pub(super) fn admission_policy(obj: &mut Value) {
    let Some(spec) = existing_obj_mut(obj, &["spec"]) else { return };
    default_field(spec, "failurePolicy", json!("Fail"));
    if let Some(Value::Object(m)) = spec.get_mut("matchConstraints") {
        match_resources(m);
    }
}

/// ValidatingAdmissionPolicyBinding: the MatchResources defaults when it has one.
pub(super) fn admission_policy_binding(obj: &mut Value) {
    if let Some(m) = existing_obj_mut(obj, &["spec", "matchResources"]) {
        match_resources(m);
    }
}

/// Validating/MutatingWebhookConfiguration: per webhook, as `SetDefaults_ValidatingWebhook`.
pub(super) fn webhooks(obj: &mut Value, mutating: bool) {
    let Some(Value::Array(hooks)) = obj.get_mut("webhooks") else { return };
    for h in hooks.iter_mut().filter_map(Value::as_object_mut) {
        default_field(h, "failurePolicy", json!("Fail"));
        default_field(h, "matchPolicy", json!("Equivalent"));
        default_field(h, "namespaceSelector", json!({}));
        default_field(h, "objectSelector", json!({}));
        default_field(h, "timeoutSeconds", json!(10));
        if mutating {
            default_field(h, "reinvocationPolicy", json!("Never"));
        }
        if let Some(Value::Array(rules)) = h.get_mut("rules") {
            for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                default_field(r, "scope", json!("*"));
            }
        }
        if let Some(Value::Object(svc)) =
            h.get_mut("clientConfig").and_then(|c| c.get_mut("service"))
        {
            default_field(svc, "port", json!(443));
        }
    }
}

/// FlowSchema: `matchingPrecedence` 1000.
pub(super) fn flow_schema(obj: &mut Value) {
    if let Some(spec) = existing_obj_mut(obj, &["spec"]) {
        if spec.get("matchingPrecedence").and_then(Value::as_i64).unwrap_or(0) == 0 {
            spec.insert("matchingPrecedence".into(), json!(1000));
        }
    }
}

/// PriorityLevelConfiguration: concurrency shares 30 (exempt: 0), no lending, and queues
/// 64 × hand 8 × length 50 for `Queue` responses.
pub(super) fn priority_level(obj: &mut Value) {
    if let Some(limited) = existing_obj_mut(obj, &["spec", "limited"]) {
        default_field(limited, "nominalConcurrencyShares", json!(30));
        default_field(limited, "lendablePercent", json!(0));
        if let Some(Value::Object(resp)) = limited.get_mut("limitResponse") {
            if resp.get("type").and_then(Value::as_str) == Some("Queue") {
                let q = resp.entry("queuing").or_insert_with(|| json!({}));
                if let Some(q) = q.as_object_mut() {
                    default_field(q, "queues", json!(64));
                    default_field(q, "handSize", json!(8));
                    default_field(q, "queueLengthLimit", json!(50));
                }
            }
        }
    }
    if let Some(exempt) = existing_obj_mut(obj, &["spec", "exempt"]) {
        default_field(exempt, "nominalConcurrencyShares", json!(0));
        default_field(exempt, "lendablePercent", json!(0));
    }
}

/// CSIDriver: attach required, nothing else asked of the driver, persistent volumes.
pub(super) fn csi_driver(obj: &mut Value) {
    let Some(spec) = existing_obj_mut(obj, &["spec"]) else { return };
    default_field(spec, "attachRequired", json!(true));
    default_field(spec, "podInfoOnMount", json!(false));
    default_field(spec, "storageCapacity", json!(false));
    default_field(spec, "requiresRepublish", json!(false));
    default_field(spec, "seLinuxMount", json!(false));
    default_field(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
    default_field(spec, "volumeLifecycleModes", json!(["Persistent"]));
}
