//! PersistentVolumes, PersistentVolumeClaims and StorageClasses, as upstream's
//! `ValidatePersistentVolume*` and `ValidateStorageClass*` check them
//! (`pkg/apis/core/validation`, `pkg/apis/storage/validation`).
//!
//! A claim's spec is immutable once created, except `resources.requests` (once the claim is
//! bound: that is a resize) and `volumeAttributesClassName`; `volumeName` may be set once and
//! `storageClassName` may go from unset to set (the binder and the default class do both).

use super::json::{arr_at, at, obj_at, str_at};
use super::names::{is_dns1123_subdomain, is_qualified_name};
use super::{go_quote, render_value, FieldError};
use crate::quantity::parse_milli;
use serde_json::Value;

/// The access modes a volume or claim may ask for.
pub const ACCESS_MODES: &[&str] =
    &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];

/// The volume sources a PersistentVolume may carry (exactly one of them).
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// Checks of one storage kind; `old` is the stored object on update.
pub(crate) fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match kind {
        "PersistentVolumeClaim" => {
            let mut errs = validate_claim_spec(obj);
            if let Some(old) = old {
                errs.extend(validate_claim_update(obj, old));
            }
            errs
        }
        "PersistentVolume" => {
            let mut errs = validate_volume(obj);
            if let Some(old) = old {
                if source_of(obj) != source_of(old) {
                    errs.push(FieldError::forbidden(
                        "spec.persistentvolumesource",
                        "spec.persistentvolumesource is immutable after creation",
                    ));
                }
            }
            errs
        }
        "StorageClass" => validate_storage_class(obj, old),
        _ => Vec::new(),
    }
}

fn access_modes(obj: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for m in arr_at(obj, &["spec", "accessModes"]) {
        let s = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&s) {
            errs.push(FieldError::not_supported(path, s, ACCESS_MODES));
        }
    }
}

fn class_name(obj: &Value, errs: &mut Vec<FieldError>) {
    if let Some(class) = str_at(obj, &["spec", "storageClassName"]).filter(|c| !c.is_empty()) {
        for msg in is_dns1123_subdomain(class) {
            errs.push(FieldError::invalid("spec.storageClassName", go_quote(class), msg));
        }
    }
}

fn validate_claim_spec(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let modes = arr_at(obj, &["spec", "accessModes"]);
    if modes.is_empty() && at(obj, &["spec", "dataSourceRef"]).is_none() {
        errs.push(FieldError::required("spec.accessModes", "at least 1 access mode is required"));
    }
    access_modes(obj, "spec.accessModes", &mut errs);
    match at(obj, &["spec", "resources", "requests", "storage"]) {
        None => errs.push(FieldError::required("spec.resources[storage]", "")),
        Some(q) => {
            let text = q.as_str().map(str::to_string).unwrap_or_else(|| q.to_string());
            match parse_milli(&text) {
                Ok(v) if v > 0 => {}
                Ok(_) => errs.push(FieldError::invalid(
                    "spec.resources.requests[storage]",
                    go_quote(&text),
                    "must be greater than zero",
                )),
                Err(_) => errs.push(FieldError::invalid(
                    "spec.resources.requests[storage]",
                    render_value(q),
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )),
            }
        }
    }
    class_name(obj, &mut errs);
    errs
}

/// The spec with what an update may change blanked out, for comparison.
fn comparable_claim_spec(spec: &Value, old: &Value, new_phase: &str) -> Value {
    let mut spec = spec.clone();
    let Some(m) = spec.as_object_mut() else { return spec };
    m.remove("volumeAttributesClassName");
    // volumeName may be set once (by the binder).
    if str_at(old, &["spec", "volumeName"]).is_none_or(str::is_empty) {
        m.remove("volumeName");
    }
    // storageClassName may go from unset to set (the default class, retroactively).
    if at(old, &["spec", "storageClassName"]).is_none() {
        m.remove("storageClassName");
    }
    // A bound claim may ask for a new size (a resize); nothing else changes in requests.
    if new_phase == "Bound" {
        if let Some(requests) = m
            .get_mut("resources")
            .and_then(|r| r.get_mut("requests"))
            .and_then(Value::as_object_mut)
        {
            requests.remove("storage");
        }
    }
    spec
}

fn validate_claim_update(obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let phase = str_at(obj, &["status", "phase"]).unwrap_or("");
    let new = comparable_claim_spec(&obj["spec"], old, phase);
    let before = comparable_claim_spec(&old["spec"], old, phase);
    if new != before {
        errs.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    let size = |v: &Value, path: &[&str]| {
        at(v, path).and_then(Value::as_str).and_then(|s| parse_milli(s).ok())
    };
    let new_size = size(obj, &["spec", "resources", "requests", "storage"]);
    let old_size = size(old, &["spec", "resources", "requests", "storage"]);
    let capacity = size(old, &["status", "capacity", "storage"]);
    if let (Some(n), Some(o)) = (new_size, old_size) {
        // Upstream (RecoverVolumeExpansionFailure, on in 1.33) lets a request shrink back to
        // just above the size the volume already has, never to it or below.
        if n < o && capacity.is_some_and(|c| n <= c) {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            ));
        }
    }
    errs
}

/// The volume source of a PersistentVolume (the one source field it carries).
fn source_of(obj: &Value) -> Vec<(String, Value)> {
    obj_at(obj, &["spec"])
        .map(|spec| {
            PV_SOURCES
                .iter()
                .filter_map(|k| spec.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect()
        })
        .unwrap_or_default()
}

fn validate_volume(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match obj_at(obj, &["spec", "capacity"]) {
        None => errs.push(FieldError::required("spec.capacity", "")),
        Some(c) if c.is_empty() => errs.push(FieldError::required("spec.capacity", "")),
        Some(c) if !c.contains_key("storage") || c.len() > 1 => {
            let keys: Vec<&str> = c.keys().map(String::as_str).collect();
            errs.push(FieldError::not_supported("spec.capacity", &keys.join(","), &["storage"]));
        }
        Some(_) => {}
    }
    if arr_at(obj, &["spec", "accessModes"]).is_empty() {
        errs.push(FieldError::required("spec.accessModes", ""));
    }
    access_modes(obj, "spec.accessModes", &mut errs);
    const POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
    if let Some(p) = str_at(obj, &["spec", "persistentVolumeReclaimPolicy"]) {
        if !POLICIES.contains(&p) {
            errs.push(FieldError::not_supported("spec.persistentVolumeReclaimPolicy", p, POLICIES));
        }
    }
    let sources = source_of(obj);
    match sources.len() {
        0 => errs.push(FieldError::required("spec", "must specify a volume type")),
        1 => {}
        _ => errs.push(FieldError::forbidden(
            format!("spec.{}", sources[1].0),
            "may not specify more than 1 volume type",
        )),
    }
    for (k, v) in &sources {
        if (k == "hostPath" || k == "local") && str_at(v, &["path"]).is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("spec.{k}.path"), ""));
        }
    }
    if let Some(na) = at(obj, &["spec", "nodeAffinity"]).filter(|v| !v.is_null()) {
        let terms = arr_at(na, &["required", "nodeSelectorTerms"]);
        if at(na, &["required"]).is_some() && terms.is_empty() {
            errs.push(FieldError::required(
                "spec.nodeAffinity.required.nodeSelectorTerms",
                "must have at least one node selector term",
            ));
        }
    }
    class_name(obj, &mut errs);
    errs
}

fn validate_storage_class(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match str_at(obj, &["provisioner"]).filter(|p| !p.is_empty()) {
        None => errs.push(FieldError::required("provisioner", "")),
        Some(p) => {
            for msg in is_qualified_name(&p.to_lowercase()) {
                errs.push(FieldError::invalid("provisioner", go_quote(p), msg));
            }
        }
    }
    const RECLAIM: &[&str] = &["Delete", "Retain"];
    if let Some(p) = str_at(obj, &["reclaimPolicy"]) {
        if !RECLAIM.contains(&p) {
            errs.push(FieldError::not_supported("reclaimPolicy", p, RECLAIM));
        }
    }
    const MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];
    if let Some(m) = str_at(obj, &["volumeBindingMode"]) {
        if !MODES.contains(&m) {
            errs.push(FieldError::not_supported("volumeBindingMode", m, MODES));
        }
    }
    let Some(old) = old else { return errs };
    if at(obj, &["parameters"]) != at(old, &["parameters"]) {
        errs.push(FieldError::forbidden("parameters", "updates to parameters are forbidden."));
    }
    if at(obj, &["provisioner"]) != at(old, &["provisioner"]) {
        errs.push(FieldError::forbidden("provisioner", "updates to provisioner are forbidden."));
    }
    if at(obj, &["reclaimPolicy"]) != at(old, &["reclaimPolicy"]) {
        errs.push(FieldError::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    if let Some(m) =
        at(obj, &["volumeBindingMode"]).filter(|m| Some(*m) != at(old, &["volumeBindingMode"]))
    {
        errs.push(FieldError::invalid("volumeBindingMode", render_value(m), "field is immutable"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(phase: &str, size: &str) -> Value {
        json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}}, "storageClassName": "local-path",
            "volumeMode": "Filesystem"},
            "status": {"phase": phase, "capacity": {"storage": "1Gi"}}})
    }

    #[test]
    fn claims_need_modes_and_a_positive_size() {
        let bad = json!({"spec": {"accessModes": ["Sometimes"], "resources": {"requests": {"storage": "0"}}}});
        let text: Vec<String> =
            validate("PersistentVolumeClaim", &bad, None).iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("spec.accessModes: Unsupported value: \"Sometimes\"")),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.contains("must be greater than zero")), "{text:?}");
        assert!(validate("PersistentVolumeClaim", &claim("Pending", "1Gi"), None).is_empty());
    }

    #[test]
    fn claim_spec_is_immutable_except_requests_of_bound_claims() {
        let old = claim("Pending", "1Gi");
        let mut changed = old.clone();
        changed["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        let errs = validate("PersistentVolumeClaim", &changed, Some(&old));
        assert_eq!(errs.len(), 1);
        assert!(errs[0]
            .to_string()
            .starts_with("spec: Forbidden: spec is immutable after creation"));
        // A pending claim cannot be resized; a bound one can, but not below its capacity.
        assert!(!validate("PersistentVolumeClaim", &claim("Pending", "2Gi"), Some(&old)).is_empty());
        let bound = claim("Bound", "1Gi");
        assert!(validate("PersistentVolumeClaim", &claim("Bound", "2Gi"), Some(&bound)).is_empty());
        let mut grown = claim("Bound", "2Gi");
        grown["status"]["capacity"]["storage"] = json!("2Gi");
        let errs = validate("PersistentVolumeClaim", &claim("Bound", "1Gi"), Some(&grown));
        assert_eq!(
            errs.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            vec!["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
        );
        // The binder sets volumeName once; attributes classes may change.
        let mut named = old.clone();
        named["spec"]["volumeName"] = json!("pv1");
        named["spec"]["volumeAttributesClassName"] = json!("fast");
        assert!(validate("PersistentVolumeClaim", &named, Some(&old)).is_empty());
        let mut renamed = named.clone();
        renamed["spec"]["volumeName"] = json!("pv2");
        assert!(!validate("PersistentVolumeClaim", &renamed, Some(&named)).is_empty());
    }

    #[test]
    fn volumes_need_capacity_modes_and_one_source() {
        let pv = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data"}, "persistentVolumeReclaimPolicy": "Retain"}});
        assert!(validate("PersistentVolume", &pv, None).is_empty());
        let none = json!({"spec": {"accessModes": ["ReadWriteOnce"]}});
        let text: Vec<String> =
            validate("PersistentVolume", &none, None).iter().map(|e| e.to_string()).collect();
        assert!(text.contains(&"spec.capacity: Required value".to_string()), "{text:?}");
        assert!(
            text.contains(&"spec: Required value: must specify a volume type".to_string()),
            "{text:?}"
        );
        let mut moved = pv.clone();
        moved["spec"]["hostPath"]["path"] = json!("/elsewhere");
        assert_eq!(validate("PersistentVolume", &moved, Some(&pv)).len(), 1);
    }

    #[test]
    fn storage_classes_need_a_provisioner_and_keep_it() {
        let sc = json!({"provisioner": "kumo.dev/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
        assert!(validate("StorageClass", &sc, None).is_empty());
        let text: Vec<String> =
            validate("StorageClass", &json!({"reclaimPolicy": "Recycle"}), None)
                .iter()
                .map(|e| e.to_string())
                .collect();
        assert!(text.contains(&"provisioner: Required value".to_string()), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("reclaimPolicy: Unsupported value")), "{text:?}");
        let mut changed = sc.clone();
        changed["provisioner"] = json!("other.dev/x");
        changed["allowVolumeExpansion"] = json!(true);
        let errs = validate("StorageClass", &changed, Some(&sc));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].to_string(),
            "provisioner: Forbidden: updates to provisioner are forbidden."
        );
    }
}
