//! # Storage vocabulary: which volume may serve which claim
//!
//! The pure rules the PersistentVolume binder (`kumo-controllers`), the scheduler's
//! VolumeBinding plugin and the node agent's local-path provisioner share, on plain JSON
//! objects: the well-known annotations and finalizers, a claim's class, whether a volume fits a
//! claim and a node, and which of several volumes is the best match — as upstream's
//! `pkg/controller/volume/persistentvolume` (`findMatchingVolume`) decides it:
//! <https://kubernetes.io/docs/concepts/storage/persistent-volumes/#binding>.

use crate::quantity::parse_value;
use crate::selector::LabelSelector;
use serde_json::{Map, Value};

/// The provisioner name of kumo's built-in local-path provisioner.
pub const LOCAL_PATH_PROVISIONER: &str = "kumo.dev/local-path";
/// The name of the StorageClass kumo creates at start-up.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// Marks the default StorageClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling of [`DEFAULT_CLASS_ANNOTATION`], still honoured upstream.
pub const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The beta class annotation that takes precedence over `spec.storageClassName`.
pub const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// The node a delayed-binding claim's volume must be made on (set by the scheduler).
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// Which provisioner is to make a claim's volume (set by the binder).
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`STORAGE_PROVISIONER_ANNOTATION`], set alongside it as upstream does.
pub const BETA_STORAGE_PROVISIONER_ANNOTATION: &str =
    "volume.beta.kubernetes.io/storage-provisioner";
/// Which provisioner made a volume.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// On a claim: the binder finished binding it.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or volume: the binder (not the user) made the binding.
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// Keeps a claim while a pod uses it.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// Keeps a volume while it is bound.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";
/// The node label a local volume's node affinity names.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for k in path {
        match cur.get(*k) {
            Some(next) => cur = next,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

/// The class of a claim or volume: the beta annotation if set, else `spec.storageClassName`.
pub fn class_of(obj: &Value) -> &str {
    match obj.pointer("/metadata/annotations").and_then(|a| a.get(BETA_CLASS_ANNOTATION)) {
        Some(Value::String(c)) => c,
        _ => s(obj, &["spec", "storageClassName"]),
    }
}

/// Whether a StorageClass is marked default (either annotation says `"true"`).
pub fn is_default_class(class: &Value) -> bool {
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|a| s(class, &["metadata", "annotations", a]) == "true")
}

/// Whether a class delays binding until a pod uses the claim (`WaitForFirstConsumer`).
pub fn delays_binding(class: Option<&Value>) -> bool {
    class.is_some_and(|c| s(c, &["volumeBindingMode"]) == "WaitForFirstConsumer")
}

/// A storage quantity in bytes (`None` when absent or malformed).
pub fn bytes(q: Option<&Value>) -> Option<i64> {
    q.and_then(Value::as_str).and_then(|t| parse_value(t).ok())
}

/// What a claim asks for, in bytes.
pub fn requested_bytes(claim: &Value) -> Option<i64> {
    bytes(claim.pointer("/spec/resources/requests/storage"))
}

/// Whether `pv.spec.claimRef` names this claim (by namespace and name, and uid when both
/// carry one): a volume pre-bound, or bound, to it.
pub fn volume_bound_to(pv: &Value, claim: &Value) -> bool {
    let Some(r) = pv.pointer("/spec/claimRef").filter(|r| r.is_object()) else { return false };
    if s(r, &["name"]) != s(claim, &["metadata", "name"])
        || s(r, &["namespace"]) != s(claim, &["metadata", "namespace"])
    {
        return false;
    }
    let uid = s(r, &["uid"]);
    uid.is_empty() || uid == s(claim, &["metadata", "uid"])
}

/// Whether a volume's `spec.nodeAffinity` admits the node with `name` and `labels`
/// (no affinity admits every node). Terms are ORed, expressions within a term ANDed.
pub fn volume_fits_node(pv: &Value, name: &str, labels: Option<&Map<String, Value>>) -> bool {
    let Some(terms) =
        pv.pointer("/spec/nodeAffinity/required/nodeSelectorTerms").and_then(Value::as_array)
    else {
        return true;
    };
    let empty = Map::new();
    let labels = labels.unwrap_or(&empty);
    terms.iter().any(|term| {
        let exprs = term.get("matchExpressions").and_then(Value::as_array);
        let fields = term.get("matchFields").and_then(Value::as_array);
        if exprs.is_none_or(Vec::is_empty) && fields.is_none_or(Vec::is_empty) {
            return false; // An empty term matches nothing.
        }
        exprs.into_iter().flatten().all(|e| requirement(e, |k| labels.get(k)?.as_str()))
            && fields
                .into_iter()
                .flatten()
                .all(|e| requirement(e, |k| (k == "metadata.name").then_some(name)))
    })
}

fn requirement<'a>(e: &Value, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
    let have = lookup(s(e, &["key"]));
    let values: Vec<&str> = e
        .get("values")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let number = |x: &str| x.parse::<i64>().ok();
    match s(e, &["operator"]) {
        "In" => have.is_some_and(|h| values.contains(&h)),
        "NotIn" => have.is_none_or(|h| !values.contains(&h)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" => {
            matches!((have.and_then(number), values.first().and_then(|v| number(v))), (Some(h), Some(v)) if h > v)
        }
        "Lt" => {
            matches!((have.and_then(number), values.first().and_then(|v| number(v))), (Some(h), Some(v)) if h < v)
        }
        _ => false,
    }
}

fn modes(v: &Value, path: &str) -> Vec<String> {
    v.pointer(path)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn volume_mode(v: &Value) -> &str {
    match s(v, &["spec", "volumeMode"]) {
        "" => "Filesystem",
        m => m,
    }
}

/// Whether a volume could serve a claim at all, ignoring who it is bound to and the node:
/// class, volume mode, access modes (a superset), capacity and the claim's `selector`.
pub fn volume_satisfies_claim(pv: &Value, claim: &Value) -> bool {
    if class_of(pv) != class_of(claim) || volume_mode(pv) != volume_mode(claim) {
        return false;
    }
    let have = modes(pv, "/spec/accessModes");
    if !modes(claim, "/spec/accessModes").iter().all(|m| have.contains(m)) {
        return false;
    }
    match (bytes(pv.pointer("/spec/capacity/storage")), requested_bytes(claim)) {
        (Some(c), Some(r)) if c >= r => {}
        _ => return false,
    }
    match claim.pointer("/spec/selector").filter(|v| !v.is_null()) {
        None => true,
        Some(sel) => LabelSelector::from_object(sel).is_ok_and(|sel| {
            sel.matches(pv.pointer("/metadata/labels").and_then(Value::as_object))
        }),
    }
}

/// Where a claim may be bound: `None` for any node (the binder's view), or one node by name
/// and labels (the scheduler's view of a delayed-binding claim).
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// The node's name.
    pub name: &'a str,
    /// The node's labels.
    pub labels: Option<&'a Map<String, Value>>,
}

/// The best volume for a claim among `volumes` (upstream's `findMatchingVolume`): a volume
/// pre-bound to the claim wins; otherwise the smallest Available, unclaimed, not deleting
/// volume that satisfies the claim (and admits `node`, when given). A delayed-binding claim
/// is matched only when a node is given, except to a volume pre-bound to it.
pub fn best_match<'v>(
    claim: &Value,
    volumes: impl IntoIterator<Item = &'v Value>,
    node: Option<NodeView<'_>>,
    delay_binding: bool,
) -> Option<&'v Value> {
    let mut best: Option<(&Value, i64)> = None;
    for pv in volumes {
        if pv.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
            continue;
        }
        if !volume_satisfies_claim(pv, claim) {
            continue;
        }
        if let Some(n) = node {
            if !volume_fits_node(pv, n.name, n.labels) {
                continue;
            }
        }
        if volume_bound_to(pv, claim) {
            return Some(pv);
        }
        if node.is_none() && delay_binding {
            continue; // The scheduler chooses volumes for delayed claims.
        }
        let claimed = pv.pointer("/spec/claimRef").is_some_and(|r| r.is_object());
        if claimed || s(pv, &["status", "phase"]) != "Available" {
            continue;
        }
        let size = bytes(pv.pointer("/spec/capacity/storage")).unwrap_or(i64::MAX);
        if best.is_none_or(|(_, b)| size < b) {
            best = Some((pv, size));
        }
    }
    best.map(|(pv, _)| pv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, class: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                "storageClassName": class, "hostPath": {"path": "/x"}},
            "status": {"phase": "Available"}})
    }

    fn claim(size: &str, class: &str) -> Value {
        json!({"metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                "storageClassName": class}})
    }

    #[test]
    fn the_smallest_fitting_volume_wins() {
        let vols = [pv("big", "10Gi", ""), pv("small", "2Gi", ""), pv("tiny", "1Mi", "")];
        let c = claim("1Gi", "");
        assert_eq!(
            best_match(&c, &vols, None, false).map(|v| s(v, &["metadata", "name"])),
            Some("small")
        );
        assert!(best_match(&claim("20Gi", ""), &vols, None, false).is_none(), "too big for all");
        assert!(best_match(&claim("1Gi", "other"), &vols, None, false).is_none(), "class differs");
    }

    #[test]
    fn selectors_modes_and_claim_refs_narrow_the_choice() {
        let mut c = claim("1Gi", "");
        c["spec"]["selector"] = json!({"matchLabels": {"tier": "slow"}});
        assert!(best_match(&c, &[pv("a", "1Gi", "")], None, false).is_none());
        c["spec"]["selector"] =
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fast"]}]});
        assert!(best_match(&c, &[pv("a", "1Gi", "")], None, false).is_some());
        let mut rwx = claim("1Gi", "");
        rwx["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert!(best_match(&rwx, &[pv("a", "1Gi", "")], None, false).is_none());
        let mut taken = pv("a", "1Gi", "");
        taken["spec"]["claimRef"] = json!({"namespace": "default", "name": "other"});
        assert!(best_match(&claim("1Gi", ""), &[taken.clone()], None, false).is_none());
        // Pre-bound to this claim: wins even over a smaller free one, and even when delayed.
        let mut mine = pv("mine", "5Gi", "");
        mine["spec"]["claimRef"] = json!({"namespace": "default", "name": "data"});
        let vols = [pv("free", "1Gi", ""), mine];
        assert_eq!(
            best_match(&claim("1Gi", ""), &vols, None, true).map(|v| s(v, &["metadata", "name"])),
            Some("mine")
        );
        assert!(
            best_match(&claim("1Gi", ""), &vols[..1], None, true).is_none(),
            "delayed: the scheduler picks"
        );
    }

    #[test]
    fn node_affinity_decides_where_a_volume_can_be_used() {
        let mut local = pv("l", "1Gi", "");
        local["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}]}]}});
        let n1 = json!({HOSTNAME_LABEL: "n1"});
        let n2 = json!({HOSTNAME_LABEL: "n2"});
        assert!(volume_fits_node(&local, "n1", n1.as_object()));
        assert!(!volume_fits_node(&local, "n2", n2.as_object()));
        assert!(volume_fits_node(&pv("any", "1Gi", ""), "n2", None));
        let on = |name, labels: &Value| {
            best_match(
                &claim("1Gi", ""),
                [&local],
                Some(NodeView { name, labels: labels.as_object() }),
                true,
            )
            .is_some()
        };
        assert!(on("n1", &n1));
        assert!(!on("n2", &n2));
    }

    #[test]
    fn classes_come_from_the_beta_annotation_first() {
        let mut c = claim("1Gi", "a");
        assert_eq!(class_of(&c), "a");
        c["metadata"]["annotations"] = json!({BETA_CLASS_ANNOTATION: "b"});
        assert_eq!(class_of(&c), "b");
        let sc = json!({"metadata": {"annotations": {DEFAULT_CLASS_ANNOTATION: "true"}}, "volumeBindingMode": "WaitForFirstConsumer"});
        assert!(is_default_class(&sc) && delays_binding(Some(&sc)));
    }
}
