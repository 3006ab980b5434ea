//! The files of a `configMap`, `secret`, `downwardAPI` or `projected` volume, computed from the
//! objects they read. Pure: the caller supplies what its watches know of each object.
//!
//! Rules and messages follow kubelet's volume plugins: `items` select and rename keys, an item's
//! `mode` overrides `defaultMode`, a missing key is an error unless the source is `optional`,
//! a missing object is an error unless it is `optional` (then the volume is empty).

use super::atomic::{check_path, FileData, Payload};
use crate::env;
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIVolumeFile, KeyToPath, Pod,
    ProjectedVolumeSource, SecretProjection, SecretVolumeSource,
};
use std::collections::BTreeMap;

/// The data of a ConfigMap (`data` and `binaryData`) or a Secret (`data`), as bytes.
pub type ObjectData = BTreeMap<String, Vec<u8>>;

/// Kinds of objects a volume reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

impl ObjectKind {
    /// The word kubelet's messages use (`configmap "x" not found`).
    pub fn word(self) -> &'static str {
        match self {
            ObjectKind::ConfigMap => "configmap",
            ObjectKind::Secret => "secret",
        }
    }
}

/// What the watches know of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Not yet (its watch has not listed it).
    Unknown,
    /// It does not exist.
    Missing,
    /// Its data.
    Present(ObjectData),
}

/// Why a payload cannot be made yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// An object is not known yet: wait for its watch, say nothing.
    Pending,
    /// A user-visible failure (`FailedMount`).
    Failed(String),
}

/// Where a payload's objects and pod come from.
pub struct Context<'a> {
    /// The pod (downward API).
    pub pod: &'a Pod,
    /// The node's IP.
    pub node_ip: &'a str,
    /// Node allocatable (millicores, bytes), for `resourceFieldRef` to unset limits.
    pub allocatable: (i64, i64),
    /// Objects by kind and name.
    pub lookup: &'a dyn Fn(ObjectKind, &str) -> Known,
}

/// The objects a volume source reads.
pub fn references(
    config_map: Option<&ConfigMapVolumeSource>,
    secret: Option<&SecretVolumeSource>,
    projected: Option<&ProjectedVolumeSource>,
) -> Vec<(ObjectKind, String)> {
    let mut out = Vec::new();
    if let Some(cm) = config_map {
        out.push((ObjectKind::ConfigMap, cm.name.clone()));
    }
    if let Some(s) = secret {
        out.push((ObjectKind::Secret, s.secret_name.clone().unwrap_or_default()));
    }
    for p in projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        if let Some(cm) = &p.config_map {
            out.push((ObjectKind::ConfigMap, cm.name.clone()));
        }
        if let Some(s) = &p.secret {
            out.push((ObjectKind::Secret, s.name.clone()));
        }
    }
    out
}

/// The payload of a `configMap` volume.
pub fn config_map(ctx: &Context<'_>, src: &ConfigMapVolumeSource) -> Result<Payload, PayloadError> {
    let mode = mode_of(src.default_mode);
    let optional = src.optional.unwrap_or(false);
    let mut out = Payload::new();
    keyed(ctx, ObjectKind::ConfigMap, &src.name, src.items.as_deref(), optional, mode, &mut out)?;
    Ok(out)
}

/// The payload of a `secret` volume.
pub fn secret(ctx: &Context<'_>, src: &SecretVolumeSource) -> Result<Payload, PayloadError> {
    let mode = mode_of(src.default_mode);
    let optional = src.optional.unwrap_or(false);
    let name = src.secret_name.clone().unwrap_or_default();
    let mut out = Payload::new();
    keyed(ctx, ObjectKind::Secret, &name, src.items.as_deref(), optional, mode, &mut out)?;
    Ok(out)
}

/// The payload of a `downwardAPI` volume.
pub fn downward_api(
    ctx: &Context<'_>,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<Payload, PayloadError> {
    let mut out = Payload::new();
    downward(ctx, items, mode_of(default_mode), &mut out)?;
    Ok(out)
}

/// The payload of a `projected` volume. `serviceAccountToken` and `clusterTrustBundle` sources
/// are not projected (kumo issues no service account tokens).
pub fn projected(ctx: &Context<'_>, src: &ProjectedVolumeSource) -> Result<Payload, PayloadError> {
    let mode = mode_of(src.default_mode);
    let mut out = Payload::new();
    for p in src.sources.iter().flatten() {
        if let Some(ConfigMapProjection { name, items, optional }) = &p.config_map {
            let optional = optional.unwrap_or(false);
            keyed(ctx, ObjectKind::ConfigMap, name, items.as_deref(), optional, mode, &mut out)?;
        }
        if let Some(SecretProjection { name, items, optional }) = &p.secret {
            let optional = optional.unwrap_or(false);
            keyed(ctx, ObjectKind::Secret, name, items.as_deref(), optional, mode, &mut out)?;
        }
        if let Some(d) = &p.downward_api {
            downward(ctx, d.items.as_deref().unwrap_or_default(), mode, &mut out)?;
        }
    }
    Ok(out)
}

fn mode_of(default_mode: Option<i32>) -> u32 {
    default_mode.map_or(0o644, |m| (m as u32) & 0o777)
}

/// The keys of one ConfigMap or Secret, all of them or the `items`.
fn keyed(
    ctx: &Context<'_>,
    kind: ObjectKind,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    mode: u32,
    out: &mut Payload,
) -> Result<(), PayloadError> {
    let data = match (ctx.lookup)(kind, name) {
        Known::Unknown => return Err(PayloadError::Pending),
        Known::Missing if optional => return Ok(()),
        Known::Missing => {
            return Err(PayloadError::Failed(format!("{} {name:?} not found", kind.word())))
        }
        Known::Present(data) => data,
    };
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data {
                add(out, &key, value, mode)?;
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(value) => {
                        let m = item.mode.map_or(mode, |m| (m as u32) & 0o777);
                        add(out, &item.path, value.clone(), m)?;
                    }
                    None if optional => {}
                    None => {
                        return Err(PayloadError::Failed(format!(
                            "{} references non-existent config key: {}",
                            kind.word(),
                            item.key
                        )))
                    }
                }
            }
        }
    }
    Ok(())
}

fn downward(
    ctx: &Context<'_>,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
    out: &mut Payload,
) -> Result<(), PayloadError> {
    let no_container = k8s_openapi::api::core::v1::Container::default();
    for item in items {
        let container = item
            .resource_field_ref
            .as_ref()
            .and_then(|r| r.container_name.as_deref())
            .and_then(|n| {
                ctx.pod.spec.iter().flat_map(|s| s.containers.iter()).find(|c| c.name == n)
            })
            .unwrap_or(&no_container);
        let inputs = env::Inputs {
            pod: ctx.pod,
            container,
            node_ip: ctx.node_ip,
            ports: &[],
            allocatable: ctx.allocatable,
            default_path: "",
        };
        let value = if let Some(f) = &item.field_ref {
            env::field_ref(&inputs, &f.field_path)
        } else if let Some(r) = &item.resource_field_ref {
            env::resource_field_ref(&inputs, r)
        } else {
            continue;
        }
        .map_err(|e| PayloadError::Failed(e.0))?;
        let m = item.mode.map_or(mode, |m| (m as u32) & 0o777);
        add(out, &item.path, value.into_bytes(), m)?;
    }
    Ok(())
}

fn add(out: &mut Payload, path: &str, data: Vec<u8>, mode: u32) -> Result<(), PayloadError> {
    check_path(path).map_err(PayloadError::Failed)?;
    out.insert(path.to_string(), FileData { data, mode });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"b": "2", "a": "x\"y"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}
        }))
        .expect("pod")
    }

    fn lookup(kind: ObjectKind, name: &str) -> Known {
        match (kind, name) {
            (ObjectKind::ConfigMap, "cm") => Known::Present(
                [("k1".to_string(), b"v1".to_vec()), ("k2".to_string(), b"v2".to_vec())].into(),
            ),
            (ObjectKind::Secret, "s") => Known::Present([("pw".to_string(), b"x".to_vec())].into()),
            (_, "later") => Known::Unknown,
            _ => Known::Missing,
        }
    }

    fn ctx(pod: &Pod) -> Context<'_> {
        Context { pod, node_ip: "10.0.0.1", allocatable: (2000, 1 << 30), lookup: &lookup }
    }

    #[test]
    fn config_map_items_modes_and_missing_keys() {
        let pod = pod();
        let src: ConfigMapVolumeSource = serde_json::from_value(json!({"name": "cm"})).expect("s");
        let p = config_map(&ctx(&pod), &src).expect("payload");
        assert_eq!(p.keys().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(p["k1"].mode, 0o644);
        let src: ConfigMapVolumeSource = serde_json::from_value(json!({
            "name": "cm", "defaultMode": 0o400,
            "items": [{"key": "k2", "path": "dir/two"}, {"key": "k1", "path": "one", "mode": 0o600}]
        }))
        .expect("s");
        let p = config_map(&ctx(&pod), &src).expect("payload");
        assert_eq!(p["dir/two"], FileData { data: b"v2".to_vec(), mode: 0o400 });
        assert_eq!(p["one"].mode, 0o600);
        let src: ConfigMapVolumeSource =
            serde_json::from_value(json!({"name": "cm", "items": [{"key": "nope", "path": "x"}]}))
                .expect("s");
        assert_eq!(
            config_map(&ctx(&pod), &src),
            Err(PayloadError::Failed("configmap references non-existent config key: nope".into()))
        );
    }

    #[test]
    fn missing_objects_fail_unless_optional_and_unknown_ones_wait() {
        let pod = pod();
        let src: SecretVolumeSource =
            serde_json::from_value(json!({"secretName": "gone"})).expect("s");
        assert_eq!(
            secret(&ctx(&pod), &src),
            Err(PayloadError::Failed("secret \"gone\" not found".into()))
        );
        let src: SecretVolumeSource =
            serde_json::from_value(json!({"secretName": "gone", "optional": true})).expect("s");
        assert_eq!(secret(&ctx(&pod), &src), Ok(Payload::new()));
        let src: ConfigMapVolumeSource =
            serde_json::from_value(json!({"name": "later"})).expect("s");
        assert_eq!(config_map(&ctx(&pod), &src), Err(PayloadError::Pending));
    }

    #[test]
    fn downward_api_files_hold_labels_as_kubelet_formats_them() {
        let pod = pod();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}
        ]))
        .expect("items");
        let p = downward_api(&ctx(&pod), &items, None).expect("payload");
        assert_eq!(String::from_utf8_lossy(&p["labels"].data), "a=\"x\\\"y\"\nb=\"2\"");
        assert_eq!(p["name"].data, b"p");
        assert_eq!(p["mem"].data, b"64");
    }

    #[test]
    fn projected_volumes_merge_their_sources() {
        let pod = pod();
        let src: ProjectedVolumeSource = serde_json::from_value(json!({
            "defaultMode": 0o440,
            "sources": [
                {"configMap": {"name": "cm", "items": [{"key": "k1", "path": "cfg"}]}},
                {"secret": {"name": "s"}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                {"serviceAccountToken": {"path": "token"}}
            ]
        }))
        .expect("src");
        let p = projected(&ctx(&pod), &src).expect("payload");
        assert_eq!(p.keys().collect::<Vec<_>>(), ["cfg", "ns", "pw"]);
        assert!(p.values().all(|f| f.mode == 0o440));
    }
}
