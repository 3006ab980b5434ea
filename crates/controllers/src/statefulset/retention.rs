//! `persistentVolumeClaimRetentionPolicy`: which owner references a set's claims carry, so
//! that the garbage collector removes them when they should go, as upstream's StatefulSet
//! controller arranges it
//! (<https://kubernetes.io/docs/concepts/workloads/controllers/statefulset/#persistentvolumeclaim-retention>):
//!
//! | whenDeleted | whenScaled | claim of a live ordinal | claim of a scaled-down ordinal |
//! |---|---|---|---|
//! | Retain | Retain | no set/pod owner | no set/pod owner |
//! | Delete | Retain | owned by the set | owned by the set |
//! | Retain | Delete | no owner | owned by its pod |
//! | Delete | Delete | owned by the set | owned by its pod (not the set) |
//!
//! Owner references that are neither the set's nor the pod's are kept as they are.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;

/// The policy, `Delete` read as `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// `whenDeleted: Delete`.
    pub when_deleted: bool,
    /// `whenScaled: Delete`.
    pub when_scaled: bool,
}

impl Policy {
    /// The set's policy (absent fields mean Retain).
    pub fn of(set: &StatefulSet) -> Policy {
        let p = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        let delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
        Policy {
            when_deleted: delete(p.and_then(|p| p.when_deleted.as_ref())),
            when_scaled: delete(p.and_then(|p| p.when_scaled.as_ref())),
        }
    }
}

/// The owner references a claim should carry, from its current ones.
pub fn desired_refs(
    current: &[OwnerReference],
    set: &OwnerReference,
    pod: &OwnerReference,
    policy: Policy,
    scaled_down: bool,
) -> Vec<OwnerReference> {
    // A pod reference by name covers earlier incarnations of the ordinal's pod too.
    let mut refs: Vec<OwnerReference> = current
        .iter()
        .filter(|r| {
            r.uid != set.uid && r.uid != pod.uid && !(r.kind == "Pod" && r.name == pod.name)
        })
        .cloned()
        .collect();
    let (by_set, by_pod) = match (policy.when_deleted, policy.when_scaled) {
        (false, false) => (false, false),
        (true, false) => (true, false),
        (false, true) => (false, scaled_down),
        (true, true) => (!scaled_down, scaled_down),
    };
    if by_set {
        refs.push(set.clone());
    }
    if by_pod {
        refs.push(pod.clone());
    }
    refs
}

fn plain_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// Bring the claims of the set's existing pods in line with the policy (before any pod of a
/// scale-down is deleted, so the garbage collector sees the pod's claims as its own).
pub async fn update_claim_owners(
    client: &kube::Client,
    set: &StatefulSet,
    pods: &BTreeMap<i32, &Pod>,
    replicas: i32,
) -> Result<(), kube::Error> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let templates: Vec<String> = set
        .spec
        .iter()
        .flat_map(|s| s.volume_claim_templates.iter().flatten())
        .filter_map(|t| t.metadata.name.clone())
        .collect();
    if templates.is_empty() {
        return Ok(());
    }
    let policy = Policy::of(set);
    let set_ref =
        plain_ref("apps/v1", "StatefulSet", &name, set.metadata.uid.as_deref().unwrap_or(""));
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let claims = api.list(&ListParams::default()).await?;
    for (ordinal, pod) in pods {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let pod_ref = plain_ref("v1", "Pod", &pod_name, pod.metadata.uid.as_deref().unwrap_or(""));
        for t in &templates {
            let claim_name = format!("{t}-{pod_name}");
            let Some(claim) =
                claims.items.iter().find(|c| c.metadata.name.as_deref() == Some(&claim_name))
            else {
                continue;
            };
            if claim.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let current = claim.metadata.owner_references.clone().unwrap_or_default();
            let desired = desired_refs(&current, &set_ref, &pod_ref, policy, *ordinal >= replicas);
            if desired == current {
                continue;
            }
            let refs = if desired.is_empty() { serde_json::Value::Null } else { json!(desired) };
            let patch = json!({"metadata": {"ownerReferences": refs,
                "resourceVersion": claim.metadata.resource_version}});
            api.patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_the_policy_table() {
        let set = plain_ref("apps/v1", "StatefulSet", "db", "s1");
        let pod = plain_ref("v1", "Pod", "db-1", "p1");
        let other = plain_ref("example.dev/v1", "Backup", "b", "o1");
        let uids = |refs: Vec<OwnerReference>| refs.into_iter().map(|r| r.uid).collect::<Vec<_>>();
        let p = |d, s| Policy { when_deleted: d, when_scaled: s };
        let cur = [other.clone(), pod.clone()];
        assert_eq!(uids(desired_refs(&cur, &set, &pod, p(false, false), true)), ["o1"]);
        assert_eq!(uids(desired_refs(&cur, &set, &pod, p(true, false), true)), ["o1", "s1"]);
        assert_eq!(uids(desired_refs(&cur, &set, &pod, p(false, true), false)), ["o1"]);
        assert_eq!(uids(desired_refs(&cur, &set, &pod, p(false, true), true)), ["o1", "p1"]);
        assert_eq!(uids(desired_refs(&cur, &set, &pod, p(true, true), false)), ["o1", "s1"]);
        assert_eq!(uids(desired_refs(&cur, &set, &pod, p(true, true), true)), ["o1", "p1"]);
    }
}
