//! Who owns what: controller ownerReferences, adoption of orphans and release of strays.
//!
//! As upstream's `ControllerRefManager`
//! (<https://kubernetes.io/docs/concepts/overview/working-with-objects/owners-dependents/>):
//! an object belongs to at most one controller (the ownerReference with `controller: true`).
//! A controller adopts orphans that match its selector and releases the objects it owns that
//! stopped matching; objects owned by another controller are never touched.

use crate::selector::{self, Labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::{json, Value};

/// What a controller must do about one candidate child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Owned and matching: it counts.
    Keep,
    /// An orphan that matches: take it (then it counts).
    Adopt,
    /// Owned but no longer matching: let it go.
    Release,
    /// Another controller's, or an orphan that does not match, or on its way out.
    Ignore,
}

/// The controller ownerReference of `meta`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// Decide about one child of an owner with uid `owner_uid` and `selector`.
/// `owner_deleting` stops adoption (upstream: a controller being deleted adopts nothing).
pub fn decide(
    owner_uid: &str,
    selector: &LabelSelector,
    owner_deleting: bool,
    child: &ObjectMeta,
) -> Claim {
    let empty = Labels::new();
    let matches = !selector::is_empty(selector)
        && selector::matches(selector, child.labels.as_ref().unwrap_or(&empty));
    match controller_of(child) {
        Some(r) if r.uid == owner_uid => {
            if matches {
                Claim::Keep
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && !owner_deleting && child.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// The controller ownerReference a child of this owner carries.
pub fn owner_reference(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A JSON merge patch that sets the child's ownerReferences to its current ones plus `owner`
/// (adopt); the child's resourceVersion makes it a precondition (a concurrent change → 409).
pub fn adopt_patch(child: &ObjectMeta, owner: OwnerReference) -> Value {
    let mut refs: Vec<OwnerReference> = child.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner);
    json!({"metadata": {"ownerReferences": refs, "resourceVersion": child.resource_version}})
}

/// A JSON merge patch that removes the ownerReference to `owner_uid` (release).
pub fn release_patch(child: &ObjectMeta, owner_uid: &str) -> Value {
    let refs: Vec<OwnerReference> =
        child.owner_references.iter().flatten().filter(|r| r.uid != owner_uid).cloned().collect();
    let refs = if refs.is_empty() { Value::Null } else { json!(refs) };
    json!({"metadata": {"ownerReferences": refs, "resourceVersion": child.resource_version}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sel() -> LabelSelector {
        LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..Default::default()
        }
    }

    fn child(app: &str, owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
            owner_references: owner
                .map(|uid| vec![owner_reference("apps/v1", "ReplicaSet", "x", uid)]),
            resource_version: Some("7".into()),
            ..Default::default()
        }
    }

    #[test]
    fn owned_matching_is_kept_and_owned_stray_released() {
        assert_eq!(decide("u1", &sel(), false, &child("web", Some("u1"))), Claim::Keep);
        assert_eq!(decide("u1", &sel(), false, &child("db", Some("u1"))), Claim::Release);
    }

    #[test]
    fn orphans_are_adopted_only_when_matching_and_owner_alive() {
        assert_eq!(decide("u1", &sel(), false, &child("web", None)), Claim::Adopt);
        assert_eq!(decide("u1", &sel(), true, &child("web", None)), Claim::Ignore);
        assert_eq!(decide("u1", &sel(), false, &child("db", None)), Claim::Ignore);
        assert_eq!(
            decide("u1", &LabelSelector::default(), false, &child("web", None)),
            Claim::Ignore
        );
    }

    #[test]
    fn other_controllers_children_are_ignored() {
        assert_eq!(decide("u1", &sel(), false, &child("web", Some("u2"))), Claim::Ignore);
    }

    #[test]
    fn patches_add_and_remove_the_reference_with_a_precondition() {
        let c = child("web", None);
        let p = adopt_patch(&c, owner_reference("apps/v1", "ReplicaSet", "rs", "u1"));
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true);
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        let owned = child("db", Some("u1"));
        assert_eq!(release_patch(&owned, "u1")["metadata"]["ownerReferences"], Value::Null);
    }
}
