//! Columns and cells of the cluster-plumbing kinds (admission, API registration,
//! certificates, flow control, storage drivers, node runtime classes, service CIDRs, pod
//! templates, component statuses), after upstream's `printers.go`.

use super::format::{containers_cells, format_labels, or_none, st};
use super::{age, name, Column};
use crate::validation::json::{arr_at, at, bool_at, str_at};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

fn col(name: &str, ty: &str, priority: i32) -> Column {
    Column {
        name: name.into(),
        type_: ty.into(),
        format: String::new(),
        description: String::new(),
        priority,
    }
}

/// The columns after NAME of these kinds (`None` for any other kind).
pub(crate) fn columns(kind: &str) -> Option<Vec<Column>> {
    let s = |n: &str| col(n, "string", 0);
    let i = |n: &str| col(n, "integer", 0);
    let b = |n: &str| col(n, "boolean", 0);
    Some(match kind {
        "APIService" => vec![s("Service"), s("Available"), s("Age")],
        "CertificateSigningRequest" => {
            vec![s("Age"), s("SignerName"), s("Requestor"), s("RequestedDuration"), s("Condition")]
        }
        "FlowSchema" => vec![
            s("PriorityLevel"),
            i("MatchingPrecedence"),
            s("DistinguisherMethod"),
            s("Age"),
            s("MissingPL"),
        ],
        "PriorityLevelConfiguration" => vec![
            s("Type"),
            s("NominalConcurrencyShares"),
            s("Queues"),
            s("HandSize"),
            s("QueueLengthLimit"),
            s("Age"),
        ],
        "ValidatingAdmissionPolicy" => vec![i("Validations"), s("ParamKind"), s("Age")],
        "ValidatingAdmissionPolicyBinding" => vec![s("PolicyName"), s("ParamRef"), s("Age")],
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
            vec![i("Webhooks"), s("Age")]
        }
        "RuntimeClass" => vec![s("Handler"), s("Age")],
        "CSIDriver" => vec![
            b("AttachRequired"),
            b("PodInfoOnMount"),
            b("StorageCapacity"),
            s("TokenRequests"),
            b("RequiresRepublish"),
            s("Modes"),
            s("Age"),
        ],
        "CSINode" => vec![i("Drivers"), s("Age")],
        "VolumeAttachment" => vec![s("Attacher"), s("PV"), s("Node"), b("Attached"), s("Age")],
        "CSIStorageCapacity" => vec![s("StorageClassName"), s("Capacity"), s("Age")],
        "PodTemplate" => vec![s("Containers"), s("Images"), s("Pod Labels")],
        "ComponentStatus" => vec![s("Status"), s("Message"), s("Error")],
        "ServiceCIDR" => vec![s("CIDRs"), s("Age")],
        "IPAddress" => vec![s("ParentRef"), s("Age")],
        _ => return None,
    })
}

/// The row of one object of these kinds (`None` for any other kind).
pub(crate) fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Option<Vec<Value>> {
    let nm = name(obj);
    let ag = age(obj, now);
    let yes_no = |path: &[&str]| json!(bool_at(obj, path).unwrap_or(false));
    Some(match kind {
        "APIService" => {
            let service = match at(obj, &["spec", "service"]).filter(|s| s.is_object()) {
                Some(svc) => format!("{}/{}", st(svc, &["namespace"]), st(svc, &["name"])),
                None => "Local".into(),
            };
            let available = arr_at(obj, &["status", "conditions"])
                .iter()
                .find(|c| st(c, &["type"]) == "Available")
                .map(|c| match st(c, &["status"]) {
                    "True" => "True".to_string(),
                    other => format!("{other} ({})", st(c, &["reason"])),
                })
                .unwrap_or_else(|| "Unknown".into());
            vec![nm, json!(service), json!(available), ag]
        }
        "CertificateSigningRequest" => {
            let duration = at(obj, &["spec", "expirationSeconds"])
                .and_then(Value::as_i64)
                .map(|s| super::human_duration(chrono::Duration::seconds(s)))
                .unwrap_or_else(|| "<none>".into());
            vec![
                nm,
                ag,
                json!(st(obj, &["spec", "signerName"])),
                json!(st(obj, &["spec", "username"])),
                json!(duration),
                json!(csr_condition(obj)),
            ]
        }
        "FlowSchema" => {
            let dangling = arr_at(obj, &["status", "conditions"])
                .iter()
                .find(|c| st(c, &["type"]) == "Dangling")
                .map(|c| st(c, &["status"]).to_string())
                .unwrap_or_else(|| "?".into());
            vec![
                nm,
                json!(st(obj, &["spec", "priorityLevelConfiguration", "name"])),
                at(obj, &["spec", "matchingPrecedence"]).cloned().unwrap_or(json!(1000)),
                json!(or_none(st(obj, &["spec", "distinguisherMethod", "type"]))),
                ag,
                json!(dangling),
            ]
        }
        "PriorityLevelConfiguration" => {
            let limited = at(obj, &["spec", "limited"]);
            let field = |path: &[&str]| {
                limited
                    .and_then(|l| at(l, path))
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "<none>".into())
            };
            vec![
                nm,
                json!(st(obj, &["spec", "type"])),
                json!(field(&["nominalConcurrencyShares"])),
                json!(field(&["limitResponse", "queuing", "queues"])),
                json!(field(&["limitResponse", "queuing", "handSize"])),
                json!(field(&["limitResponse", "queuing", "queueLengthLimit"])),
                ag,
            ]
        }
        "ValidatingAdmissionPolicy" => {
            let param = match at(obj, &["spec", "paramKind"]).filter(|p| p.is_object()) {
                Some(p) => format!("{}/{}", st(p, &["apiVersion"]), st(p, &["kind"])),
                None => "<unset>".into(),
            };
            vec![nm, json!(arr_at(obj, &["spec", "validations"]).len()), json!(param), ag]
        }
        "ValidatingAdmissionPolicyBinding" => {
            let param = match at(obj, &["spec", "paramRef"]).filter(|p| p.is_object()) {
                Some(p) if !st(p, &["name"]).is_empty() => {
                    let ns = st(p, &["namespace"]);
                    if ns.is_empty() {
                        format!("*/{}", st(p, &["name"]))
                    } else {
                        format!("{ns}/{}", st(p, &["name"]))
                    }
                }
                Some(_) => "*/*".into(),
                None => "<unset>".into(),
            };
            vec![nm, json!(st(obj, &["spec", "policyName"])), json!(param), ag]
        }
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
            vec![nm, json!(arr_at(obj, &["webhooks"]).len()), ag]
        }
        "RuntimeClass" => vec![nm, json!(st(obj, &["handler"])), ag],
        "CSIDriver" => {
            let modes: Vec<&str> = arr_at(obj, &["spec", "volumeLifecycleModes"])
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let tokens: Vec<String> = arr_at(obj, &["spec", "tokenRequests"])
                .iter()
                .map(|t| {
                    let aud = st(t, &["audience"]);
                    if aud.is_empty() {
                        "<api-server-default>".into()
                    } else {
                        aud.to_string()
                    }
                })
                .collect();
            vec![
                nm,
                yes_no(&["spec", "attachRequired"]),
                yes_no(&["spec", "podInfoOnMount"]),
                yes_no(&["spec", "storageCapacity"]),
                json!(if tokens.is_empty() { "<unset>".to_string() } else { tokens.join(",") }),
                yes_no(&["spec", "requiresRepublish"]),
                json!(if modes.is_empty() { "<none>".to_string() } else { modes.join(",") }),
                ag,
            ]
        }
        "CSINode" => vec![nm, json!(arr_at(obj, &["spec", "drivers"]).len()), ag],
        "VolumeAttachment" => vec![
            nm,
            json!(st(obj, &["spec", "attacher"])),
            json!(st(obj, &["spec", "source", "persistentVolumeName"])),
            json!(st(obj, &["spec", "nodeName"])),
            yes_no(&["status", "attached"]),
            ag,
        ],
        "CSIStorageCapacity" => {
            let cap = str_at(obj, &["capacity"]).unwrap_or("<unset>");
            vec![nm, json!(st(obj, &["storageClassName"])), json!(cap), ag]
        }
        "PodTemplate" => {
            let (names, images) = containers_cells(&["template", "spec"], obj);
            let labels = format_labels(at(obj, &["template", "metadata", "labels"]));
            vec![nm, names, images, json!(labels)]
        }
        "ComponentStatus" => {
            let (mut status, mut message, mut error) = ("Unknown", "", "");
            for c in arr_at(obj, &["conditions"]).iter().filter(|c| st(c, &["type"]) == "Healthy") {
                status = if st(c, &["status"]) == "True" { "Healthy" } else { "Unhealthy" };
                message = st(c, &["message"]);
                error = st(c, &["error"]);
            }
            vec![nm, json!(status), json!(message), json!(error)]
        }
        "ServiceCIDR" => {
            let cidrs: Vec<&str> =
                arr_at(obj, &["spec", "cidrs"]).iter().filter_map(Value::as_str).collect();
            vec![nm, json!(cidrs.join(",")), ag]
        }
        "IPAddress" => {
            let p = at(obj, &["spec", "parentRef"]).cloned().unwrap_or(Value::Null);
            let group = st(&p, &["group"]);
            let resource = if group.is_empty() {
                st(&p, &["resource"]).to_string()
            } else {
                format!("{}.{group}", st(&p, &["resource"]))
            };
            let ns = st(&p, &["namespace"]);
            let parent = if ns.is_empty() {
                format!("{resource}/{}", st(&p, &["name"]))
            } else {
                format!("{resource}/{ns}/{}", st(&p, &["name"]))
            };
            vec![nm, json!(parent), ag]
        }
        _ => return None,
    })
}

/// A CSR's CONDITION cell: its condition types joined (`Approved,Issued`), or `Pending`.
fn csr_condition(obj: &Value) -> String {
    let mut parts: Vec<String> = arr_at(obj, &["status", "conditions"])
        .iter()
        .map(|c| st(c, &["type"]).to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if obj["status"]["certificate"].as_str().is_some_and(|c| !c.is_empty()) {
        parts.push("Issued".into());
    }
    if parts.is_empty() {
        "Pending".into()
    } else {
        parts.join(",")
    }
}
