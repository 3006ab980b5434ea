//! The binder's decisions, as pure functions of the objects (JSON, as the API serves them):
//! what to do about one claim ([`plan_claim`]) and one volume ([`plan_volume`]). The words of
//! the events are upstream's (`pkg/controller/volume/persistentvolume/pv_controller.go`).

use kumo_api::storage::{self, best_match};
use serde_json::Value;

/// What the binder does about one claim.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimAction {
    /// Nothing to do.
    None,
    /// Bind the claim to this volume (both sides, then both statuses).
    Bind {
        /// The volume's name.
        volume: String,
    },
    /// Bound already: keep its status (phase, capacity, access modes) in step with the volume.
    Bound {
        /// The volume's name.
        volume: String,
    },
    /// A delayed-binding claim no pod has been scheduled with yet.
    WaitForFirstConsumer {
        /// Pods that use the claim but are not scheduled yet.
        pods: Vec<String>,
    },
    /// No volume fits: an external provisioner is to make one.
    Provision {
        /// The class's provisioner.
        provisioner: String,
    },
    /// The claim stays Pending, and says why.
    Pending {
        /// Event reason.
        reason: &'static str,
        /// Event message.
        message: String,
        /// A Warning (else Normal) event.
        warning: bool,
    },
    /// A bound claim whose volume is gone or bound elsewhere.
    Lost {
        /// Event message.
        message: String,
    },
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn was_bound(claim: &Value) -> bool {
    s(claim, "/status/phase") == "Bound"
        || s(
            claim,
            &format!(
                "/metadata/annotations/{}",
                storage::BIND_COMPLETED_ANNOTATION.replace('/', "~1")
            ),
        ) == "yes"
}

/// Decide about one claim, given every volume, the claim's class (if it exists) and the pods
/// that use the claim but have no node yet.
pub fn plan_claim(
    claim: &Value,
    volumes: &[Value],
    class: Option<&Value>,
    unscheduled_pods: &[String],
) -> ClaimAction {
    if claim.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return ClaimAction::None;
    }
    let wanted = s(claim, "/spec/volumeName");
    if wanted.is_empty() {
        return plan_unbound(claim, volumes, class, unscheduled_pods);
    }
    let Some(pv) = volumes.iter().find(|v| s(v, "/metadata/name") == wanted) else {
        if was_bound(claim) {
            return ClaimAction::Lost {
                message: "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
                    .into(),
            };
        }
        // Pre-bound to a volume that does not exist (yet): wait for it.
        return ClaimAction::None;
    };
    let unclaimed = pv.pointer("/spec/claimRef").is_none_or(|r| !r.is_object());
    if storage::volume_bound_to(pv, claim) || unclaimed {
        let complete = s(pv, "/spec/claimRef/uid") == s(claim, "/metadata/uid") && was_bound(claim);
        if !complete && !storage::volume_satisfies_claim(pv, claim) {
            return ClaimAction::Pending {
                reason: "VolumeMismatch",
                message: format!("Cannot bind to requested volume \"{wanted}\": the volume does not satisfy the claim (class, access modes, mode or size)"),
                warning: true,
            };
        }
        return if complete {
            ClaimAction::Bound { volume: wanted.to_string() }
        } else {
            ClaimAction::Bind { volume: wanted.to_string() }
        };
    }
    if was_bound(claim) {
        return ClaimAction::Lost {
            message: "Two claims are bound to the same volume, this one is bound incorrectly"
                .into(),
        };
    }
    ClaimAction::Pending {
        reason: "FailedBinding",
        message: format!("volume \"{wanted}\" already bound to a different claim."),
        warning: true,
    }
}

fn plan_unbound(
    claim: &Value,
    volumes: &[Value],
    class: Option<&Value>,
    unscheduled_pods: &[String],
) -> ClaimAction {
    let delayed = storage::delays_binding(class);
    if let Some(pv) = best_match(claim, volumes, None, delayed) {
        return ClaimAction::Bind { volume: s(pv, "/metadata/name").to_string() };
    }
    let class_name = storage::class_of(claim);
    if class_name.is_empty() {
        return ClaimAction::Pending {
            reason: "FailedBinding",
            message: "no persistent volumes available for this claim and no storage class is set"
                .into(),
            warning: false,
        };
    }
    let Some(class) = class else {
        return ClaimAction::Pending {
            reason: "ProvisioningFailed",
            message: format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
            warning: true,
        };
    };
    let selected = claim
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(storage::SELECTED_NODE_ANNOTATION))
        .is_some();
    if delayed && !selected {
        return ClaimAction::WaitForFirstConsumer { pods: unscheduled_pods.to_vec() };
    }
    ClaimAction::Provision { provisioner: s(class, "/provisioner").to_string() }
}

/// What the binder does about one volume.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeAction {
    /// Nothing to do.
    None,
    /// Set `status.phase` (and `status.message`).
    Phase {
        /// The new phase.
        phase: &'static str,
        /// Why (empty for none).
        message: String,
    },
    /// Clear a claimRef the binder set for a claim that went to another volume.
    Unbind,
}

/// Decide about one volume. `claim` is the claim its `claimRef` names, if that exists (the
/// caller confirms an absence with the API before acting on a `Released`).
pub fn plan_volume(pv: &Value, claim: Option<&Value>) -> VolumeAction {
    if pv.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return VolumeAction::None;
    }
    let phase = s(pv, "/status/phase");
    let set = |p: &'static str, message: String| {
        if phase == p && s(pv, "/status/message") == message {
            VolumeAction::None
        } else {
            VolumeAction::Phase { phase: p, message }
        }
    };
    let Some(claim_ref) = pv.pointer("/spec/claimRef").filter(|r| r.is_object()) else {
        return set("Available", String::new());
    };
    let ref_uid = s(claim_ref, "/uid");
    match claim.filter(|c| ref_uid.is_empty() || s(c, "/metadata/uid") == ref_uid) {
        Some(c) => {
            let on = s(c, "/spec/volumeName");
            if on == s(pv, "/metadata/name") {
                set("Bound", String::new())
            } else if on.is_empty() {
                set("Available", String::new())
            } else if s(
                pv,
                &format!(
                    "/metadata/annotations/{}",
                    storage::BOUND_BY_CONTROLLER_ANNOTATION.replace('/', "~1")
                ),
            ) == "yes"
            {
                VolumeAction::Unbind
            } else {
                set("Available", String::new())
            }
        }
        // Pre-bound by name to a claim not created yet.
        None if ref_uid.is_empty() => set("Available", String::new()),
        None => released(pv, phase),
    }
}

/// The claim of a bound volume is gone: reclaim the volume by its policy.
fn released(pv: &Value, phase: &str) -> VolumeAction {
    if phase == "Failed" {
        return VolumeAction::None;
    }
    let dynamic = pv
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(storage::PROVISIONED_BY_ANNOTATION))
        .is_some();
    let message = match s(pv, "/spec/persistentVolumeReclaimPolicy") {
        // The provisioner that made it deletes it (upstream's external provisioners do).
        "Delete" if dynamic => String::new(),
        "Delete" => format!(
            "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
            s(pv, "/metadata/name")
        ),
        "Recycle" => "recycling is not supported by kumo".into(),
        _ => String::new(),
    };
    if message.is_empty() {
        if phase == "Released" {
            VolumeAction::None
        } else {
            VolumeAction::Phase { phase: "Released", message }
        }
    } else {
        VolumeAction::Phase { phase: "Failed", message }
    }
}

/// Whether a pod (as JSON) still uses the claim `name`: it names it in its volumes and has not
/// finished (upstream's pvc-protection keeps the claim for such pods).
pub fn pod_uses_claim(pod: &Value, name: &str) -> bool {
    if matches!(s(pod, "/status/phase"), "Succeeded" | "Failed") {
        return false;
    }
    let pod_name = s(pod, "/metadata/name");
    pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten().any(|v| {
        s(v, "/persistentVolumeClaim/claimName") == name
            || (v.pointer("/ephemeral").is_some_and(|e| !e.is_null())
                && format!("{pod_name}-{}", s(v, "/name")) == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(class: &str) -> Value {
        json!({"metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": class}, "status": {"phase": "Pending"}})
    }

    fn pv(name: &str, size: &str, class: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"], "storageClassName": class, "hostPath": {"path": "/x"},
            "persistentVolumeReclaimPolicy": "Retain"}, "status": {"phase": "Available"}})
    }

    fn wffc() -> Value {
        json!({"metadata": {"name": "local-path"}, "provisioner": "kumo.dev/local-path",
            "volumeBindingMode": "WaitForFirstConsumer"})
    }

    #[test]
    fn unbound_claims_bind_wait_provision_or_say_why() {
        let vols = [pv("small", "500Mi", ""), pv("fits", "2Gi", "")];
        assert_eq!(
            plan_claim(&claim(""), &vols, None, &[]),
            ClaimAction::Bind { volume: "fits".into() }
        );
        match plan_claim(&claim(""), &vols[..1], None, &[]) {
            ClaimAction::Pending { reason, message, .. } => {
                assert_eq!(reason, "FailedBinding");
                assert_eq!(
                    message,
                    "no persistent volumes available for this claim and no storage class is set"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan_claim(&claim("gone"), &[], None, &[]),
            ClaimAction::Pending { reason: "ProvisioningFailed", .. }
        ));
        let class = wffc();
        assert_eq!(
            plan_claim(&claim("local-path"), &[], Some(&class), &["web".into()]),
            ClaimAction::WaitForFirstConsumer { pods: vec!["web".into()] }
        );
        let mut selected = claim("local-path");
        selected["metadata"]["annotations"] = json!({storage::SELECTED_NODE_ANNOTATION: "n1"});
        assert_eq!(
            plan_claim(&selected, &[], Some(&class), &[]),
            ClaimAction::Provision { provisioner: "kumo.dev/local-path".into() }
        );
    }

    #[test]
    fn a_provisioned_volume_pointing_at_the_claim_is_bound_then_kept_bound() {
        let mut made = pv("pvc-u1", "1Gi", "local-path");
        made["spec"]["claimRef"] = json!({"namespace": "default", "name": "data", "uid": "u1"});
        let c = claim("local-path");
        let class = wffc();
        assert_eq!(
            plan_claim(&c, &[made.clone()], Some(&class), &[]),
            ClaimAction::Bind { volume: "pvc-u1".into() }
        );
        let mut bound = c.clone();
        bound["spec"]["volumeName"] = json!("pvc-u1");
        bound["status"]["phase"] = json!("Bound");
        assert_eq!(
            plan_claim(&bound, &[made.clone()], Some(&class), &[]),
            ClaimAction::Bound { volume: "pvc-u1".into() }
        );
        assert!(matches!(plan_claim(&bound, &[], Some(&class), &[]), ClaimAction::Lost { .. }));
        assert_eq!(
            plan_volume(&made, Some(&bound)),
            VolumeAction::Phase { phase: "Bound", message: String::new() }
        );
    }

    #[test]
    fn a_claim_naming_a_taken_volume_stays_pending() {
        let mut taken = pv("pv1", "1Gi", "");
        taken["spec"]["claimRef"] = json!({"namespace": "default", "name": "other", "uid": "u9"});
        let mut c = claim("");
        c["spec"]["volumeName"] = json!("pv1");
        assert_eq!(
            plan_claim(&c, &[taken], None, &[]),
            ClaimAction::Pending {
                reason: "FailedBinding",
                message: "volume \"pv1\" already bound to a different claim.".into(),
                warning: true
            }
        );
        assert_eq!(
            plan_claim(&c, &[pv("pv1", "1Gi", "")], None, &[]),
            ClaimAction::Bind { volume: "pv1".into() }
        );
    }

    #[test]
    fn volumes_whose_claim_is_gone_are_released_by_policy() {
        let mut v = pv("pv1", "1Gi", "");
        assert_eq!(plan_volume(&v, None), VolumeAction::None, "already Available");
        v["spec"]["claimRef"] = json!({"namespace": "default", "name": "data", "uid": "u1"});
        v["status"]["phase"] = json!("Bound");
        assert_eq!(
            plan_volume(&v, None),
            VolumeAction::Phase { phase: "Released", message: String::new() }
        );
        v["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
        assert!(
            matches!(plan_volume(&v, None), VolumeAction::Phase { phase: "Failed", .. }),
            "no deleter for a static volume"
        );
        v["metadata"]["annotations"] =
            json!({storage::PROVISIONED_BY_ANNOTATION: "kumo.dev/local-path"});
        assert_eq!(
            plan_volume(&v, None),
            VolumeAction::Phase { phase: "Released", message: String::new() }
        );
        // A claim of the same name but another uid is a different claim.
        let mut other = claim("");
        other["metadata"]["uid"] = json!("u2");
        assert_eq!(
            plan_volume(&v, Some(&other)),
            VolumeAction::Phase { phase: "Released", message: String::new() }
        );
    }

    #[test]
    fn only_running_pods_hold_a_claim() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}, "status": {"phase": "Running"}});
        assert!(pod_uses_claim(&pod, "data"));
        assert!(!pod_uses_claim(&pod, "other"));
        let mut done = pod.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert!(!pod_uses_claim(&done, "data"));
    }
}
