//! Volume rules of a pod spec: one source per volume, paths inside `configMap`, `secret`,
//! `downwardAPI` and `projected` volumes, `hostPath.path`, and each container's
//! `volumeMounts` (a known volume, a unique mount path, a `subPath` that stays inside its
//! volume). Messages and field paths are upstream's (`ValidateVolumeMounts`,
//! `validateLocalDescendingPath`), quirks included: a bad `subPath` is reported at
//! `…volumeMounts.subPath`, without the index, as upstream does.

use super::json::{arr_at, at, str_at};
use super::{go_quote, FieldError};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Component, Path};

/// The volume sources of `core.v1.Volume` (defaulting adds `emptyDir` when none is given).
pub(crate) const SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// A volume at `path` (`spec.volumes[0]`): one source, and its paths.
pub(crate) fn validate_volume_source(v: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let set: Vec<&str> =
        SOURCES.iter().copied().filter(|s| at(v, &[s]).is_some_and(|x| !x.is_null())).collect();
    for extra in set.iter().skip(1) {
        errs.push(FieldError::forbidden(
            format!("{path}.{extra}"),
            "may not specify more than 1 volume type",
        ));
    }
    if let Some(h) = at(v, &["hostPath"]).filter(|h| h.is_object()) {
        if str_at(h, &["path"]).unwrap_or("").is_empty() {
            errs.push(FieldError::required(format!("{path}.hostPath.path"), ""));
        }
    }
    if let Some(p) = at(v, &["persistentVolumeClaim"]).filter(|p| p.is_object()) {
        if str_at(p, &["claimName"]).unwrap_or("").is_empty() {
            errs.push(FieldError::required(format!("{path}.persistentVolumeClaim.claimName"), ""));
        }
    }
    for src in ["configMap", "secret"] {
        for (i, item) in arr_at(v, &[src, "items"]).iter().enumerate() {
            errs.extend(key_to_path(item, &format!("{path}.{src}.items[{i}]")));
        }
    }
    for (i, item) in arr_at(v, &["downwardAPI", "items"]).iter().enumerate() {
        let p = format!("{path}.downwardAPI.items[{i}].path");
        errs.extend(local_non_reserved_path(str_at(item, &["path"]).unwrap_or(""), &p));
    }
    for (s, source) in arr_at(v, &["projected", "sources"]).iter().enumerate() {
        let base = format!("{path}.projected.sources[{s}]");
        for src in ["configMap", "secret"] {
            for (i, item) in arr_at(source, &[src, "items"]).iter().enumerate() {
                errs.extend(key_to_path(item, &format!("{base}.{src}.items[{i}]")));
            }
        }
        for (i, item) in arr_at(source, &["downwardAPI", "items"]).iter().enumerate() {
            let p = format!("{base}.downwardAPI.items[{i}].path");
            errs.extend(local_non_reserved_path(str_at(item, &["path"]).unwrap_or(""), &p));
        }
    }
    errs
}

fn key_to_path(item: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if str_at(item, &["key"]).unwrap_or("").is_empty() {
        errs.push(FieldError::required(format!("{path}.key"), ""));
    }
    let p = str_at(item, &["path"]).unwrap_or("");
    if p.is_empty() {
        errs.push(FieldError::required(format!("{path}.path"), ""));
    } else {
        errs.extend(local_non_reserved_path(p, &format!("{path}.path")));
    }
    errs
}

/// Upstream's `validateLocalDescendingPath`: relative, no `..` element.
fn local_descending_path(target: &str, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if Path::new(target).is_absolute() {
        errs.push(FieldError::invalid(field, go_quote(target), "must be a relative path"));
    }
    if Path::new(target).components().any(|c| matches!(c, Component::ParentDir)) {
        errs.push(FieldError::invalid(field, go_quote(target), "must not contain '..'"));
    }
    errs
}

/// Upstream's `validateLocalNonReservedPath`: descending, and not starting with `..` (the
/// atomic writer's names).
fn local_non_reserved_path(target: &str, field: &str) -> Vec<FieldError> {
    let mut errs = local_descending_path(target, field);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(FieldError::invalid(field, go_quote(target), "must not start with '..'"));
    }
    errs
}

/// The `volumeMounts` of the container at `path`, against the pod's `volumes`.
pub(crate) fn validate_volume_mounts(
    c: &Value,
    path: &str,
    volumes: &BTreeSet<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let list = format!("{path}.volumeMounts");
    let mut mount_points = BTreeSet::new();
    for (i, m) in arr_at(c, &["volumeMounts"]).iter().enumerate() {
        let idx = format!("{list}[{i}]");
        let name = str_at(m, &["name"]).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else if !volumes.contains(name) {
            errs.push(FieldError::not_found(format!("{idx}.name"), go_quote(name)));
        }
        let mount_path = str_at(m, &["mountPath"]).unwrap_or("");
        if mount_path.is_empty() {
            errs.push(FieldError::required(format!("{idx}.mountPath"), ""));
        } else if !mount_points.insert(mount_path.to_string()) {
            errs.push(FieldError::invalid(
                format!("{idx}.mountPath"),
                go_quote(mount_path),
                "must be unique",
            ));
        }
        let sub_path = str_at(m, &["subPath"]).unwrap_or("");
        if !sub_path.is_empty() {
            errs.extend(local_descending_path(sub_path, &format!("{list}.subPath")));
        }
        let expr = str_at(m, &["subPathExpr"]).unwrap_or("");
        if !expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{idx}.subPathExpr"),
                    go_quote(expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(local_descending_path(expr, &format!("{list}.subPathExpr")));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mounts(c: Value) -> Vec<String> {
        let volumes: BTreeSet<String> = ["data".to_string()].into();
        validate_volume_mounts(&c, "spec.containers[0]", &volumes)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn sub_paths_must_stay_inside_their_volume() {
        let errs = mounts(json!({"volumeMounts": [
            {"name": "data", "mountPath": "/a", "subPath": "../etc"},
            {"name": "data", "mountPath": "/b", "subPath": "/etc"},
            {"name": "data", "mountPath": "/c", "subPath": "ok/dir"},
            {"name": "data", "mountPath": "/d", "subPathExpr": "$(POD)/../x"}
        ]}));
        assert_eq!(
            errs,
            [
                "spec.containers[0].volumeMounts.subPath: Invalid value: \"../etc\": must not contain '..'",
                "spec.containers[0].volumeMounts.subPath: Invalid value: \"/etc\": must be a relative path",
                "spec.containers[0].volumeMounts.subPathExpr: Invalid value: \"$(POD)/../x\": must not contain '..'",
            ]
        );
    }

    #[test]
    fn mounts_name_a_volume_and_unique_paths() {
        let errs = mounts(json!({"volumeMounts": [
            {"name": "nope", "mountPath": "/a"},
            {"name": "data", "mountPath": "/a", "subPath": "x", "subPathExpr": "y"}
        ]}));
        assert_eq!(
            errs,
            [
                "spec.containers[0].volumeMounts[0].name: Not found: \"nope\"",
                "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/a\": must be unique",
                "spec.containers[0].volumeMounts[1].subPathExpr: Invalid value: \"y\": subPathExpr and subPath are mutually exclusive",
            ]
        );
    }

    #[test]
    fn statefulset_templates_may_mount_their_claims() {
        let t = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
            {"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}});
        let with = super::super::pod::validate_pod_template_with(
            Some(&t),
            "spec.template",
            &["data".to_string()],
        );
        assert!(with.is_empty(), "{with:?}");
        let without = super::super::pod::validate_pod_template(Some(&t), "spec.template");
        assert_eq!(without.len(), 1, "{without:?}");
    }

    #[test]
    fn volumes_have_one_source_and_safe_item_paths() {
        let v = json!({"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}});
        let errs: Vec<String> =
            validate_volume_source(&v, "spec.volumes[0]").iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            ["spec.volumes[0].emptyDir: Forbidden: may not specify more than 1 volume type"]
        );
        let v = json!({"name": "v", "configMap": {"name": "c", "items": [
            {"key": "k", "path": "..data"}, {"key": "", "path": "../x"}]}});
        let errs: Vec<String> =
            validate_volume_source(&v, "spec.volumes[0]").iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            [
                "spec.volumes[0].configMap.items[0].path: Invalid value: \"..data\": must not start with '..'",
                "spec.volumes[0].configMap.items[1].key: Required value",
                "spec.volumes[0].configMap.items[1].path: Invalid value: \"../x\": must not contain '..'",
            ]
        );
    }
}
