//! pod-template-hash: a stable name for a pod template.
//!
//! Upstream (`controller.ComputeHash`) hashes the template with FNV-1a (32 bit), mixes in the
//! Deployment's `status.collisionCount`, and spells the number with `rand.SafeEncodeString`'s
//! alphabet (no vowels, so no words). We hash the template's canonical JSON instead of Go's
//! `spew` dump; the value is ours to choose as long as it is stable for equal templates.
//! The hash names the ReplicaSet (`<deployment>-<hash>`) and labels its selector, template and
//! pods, so the pods of two templates never match each other's ReplicaSet.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The label (and RS selector key) carrying the hash.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a(hash: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(hash, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The template without the hash label: what two templates are compared and hashed by.
pub fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    t
}

/// Upstream `EqualIgnoreHash`: equal templates apart from the hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The hash of `template` with `collision_count` mixed in.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(&without_hash(template)).unwrap_or_default();
    let mut h = fnv1a(0x811c_9dc5, &json);
    if let Some(c) = collision_count {
        h = fnv1a(h, &c.to_le_bytes());
    }
    h.to_string().bytes().map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn template(image: &str, hash_label: Option<&str>) -> PodTemplateSpec {
        let mut labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        if let Some(h) = hash_label {
            labels.insert(POD_TEMPLATE_HASH.into(), h.into());
        }
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn hash_is_stable_safe_and_ignores_its_own_label() {
        let h = pod_template_hash(&template("nginx:1", None), None);
        assert_eq!(h, pod_template_hash(&template("nginx:1", Some("zzz")), None));
        assert!(h.bytes().all(|b| ALPHANUMS.contains(&b)), "{h}");
        assert!(!h.is_empty() && h.len() <= 10);
    }

    #[test]
    fn different_templates_or_collisions_give_different_hashes() {
        let a = pod_template_hash(&template("nginx:1", None), None);
        assert_ne!(a, pod_template_hash(&template("nginx:2", None), None));
        assert_ne!(a, pod_template_hash(&template("nginx:1", None), Some(1)));
    }

    #[test]
    fn equality_ignores_only_the_hash_label() {
        assert!(equal_ignore_hash(&template("a", Some("x")), &template("a", None)));
        assert!(!equal_ignore_hash(&template("a", None), &template("b", None)));
    }
}
