//! VolumeBinding: a pod runs only where its PersistentVolumeClaims can be served.
//!
//! As upstream's plugin (<https://kubernetes.io/docs/concepts/storage/storage-classes/#volume-binding-mode>):
//! * **pre-filter**: every claim the pod names must exist and not be deleting; a claim already
//!   bound contributes its volume; an unbound claim must be of a `WaitForFirstConsumer` class
//!   (an unbound `Immediate` claim is the binder's business: the pod waits for it).
//! * **filter**: the bound volumes' node affinity must admit the node; each delayed claim needs
//!   an Available volume that fits it and admits the node, or a class that can provision there.
//! * **bind** ([`bind_steps`]): before the pod is bound, each delayed claim is either pre-bound
//!   to the chosen volume (its `claimRef`) or given `volume.kubernetes.io/selected-node`, so the
//!   provisioner makes its volume on that node; the runner waits for the claims to be Bound.
//!
//! Claims, volumes and classes are kept as JSON ([`Volumes`]) and matched with
//! [`kumo_api::storage`], the rules the binder uses too.

use std::collections::{BTreeMap, HashMap, HashSet};

use kumo_api::storage::{self, NodeView};
use serde_json::{Map, Value};

use crate::cache::NodeInfo;
use crate::pod_info::PodInfo;
use crate::status::Status;

/// Plugin name.
pub const NAME: &str = "VolumeBinding";
/// No volume fits a delayed claim here, and none can be provisioned here.
pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// A bound volume's node affinity excludes the node.
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// A claim names a volume that does not exist.
pub const REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// A pod's unbound claim of an `Immediate` class.
pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// A class that never provisions (local volumes made by hand).
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// The claims, volumes and classes the scheduler knows, from its watches.
#[derive(Debug, Clone, Default)]
pub struct Volumes {
    claims: HashMap<String, Value>,
    volumes: BTreeMap<String, Value>,
    classes: HashMap<String, Value>,
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn claim_key(v: &Value) -> String {
    format!("{}/{}", s(v, "/metadata/namespace"), s(v, "/metadata/name"))
}

impl Volumes {
    /// Adds or replaces a claim.
    pub fn set_claim(&mut self, claim: Value) {
        self.claims.insert(claim_key(&claim), claim);
    }
    /// Forgets a claim.
    pub fn remove_claim(&mut self, claim: &Value) {
        self.claims.remove(&claim_key(claim));
    }
    /// Adds or replaces a volume.
    pub fn set_volume(&mut self, pv: Value) {
        self.volumes.insert(s(&pv, "/metadata/name").to_string(), pv);
    }
    /// Forgets a volume.
    pub fn remove_volume(&mut self, pv: &Value) {
        self.volumes.remove(s(pv, "/metadata/name"));
    }
    /// Adds or replaces a StorageClass.
    pub fn set_class(&mut self, class: Value) {
        self.classes.insert(s(&class, "/metadata/name").to_string(), class);
    }
    /// Forgets a StorageClass.
    pub fn remove_class(&mut self, class: &Value) {
        self.classes.remove(s(class, "/metadata/name"));
    }
    /// Whether no claim is known (then no pod can need this plugin).
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }
    /// Records a decision before the API reflects it (the scheduler's assume step), so the
    /// next pod does not pick the same volume.
    pub fn assume(&mut self, steps: &[BindStep], node: &str) {
        for step in steps {
            match step {
                BindStep::PreBind { volume, claim_namespace, claim_name, claim_uid } => {
                    if let Some(pv) = self.volumes.get_mut(volume) {
                        pv["spec"]["claimRef"] = serde_json::json!({"namespace": claim_namespace,
                            "name": claim_name, "uid": claim_uid});
                    }
                }
                BindStep::SelectNode { claim_namespace, claim_name } => {
                    if let Some(c) = self.claims.get_mut(&format!("{claim_namespace}/{claim_name}"))
                    {
                        c["metadata"]["annotations"][storage::SELECTED_NODE_ANNOTATION] =
                            Value::String(node.to_string());
                    }
                }
            }
        }
    }
}

/// What pre-filter found about one pod's claims.
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    /// Volumes of the pod's bound claims.
    bound: Vec<Value>,
    /// Claims bound to volumes that do not exist.
    missing: usize,
    /// Unbound claims of `WaitForFirstConsumer` classes, with their class.
    delayed: Vec<(Value, Option<Value>)>,
    /// Every volume, for matching the delayed claims.
    candidates: Vec<Value>,
}

fn claim_names(pod: &PodInfo) -> Vec<String> {
    let name = pod.pod.metadata.name.clone().unwrap_or_default();
    pod.pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(format!("{name}-{}", v.name)),
            _ => None,
        })
        .collect()
}

/// Pre-filter: `Ok(None)` when the pod uses no claims (the plugin is skipped), the pod's
/// volume facts otherwise, or the status that makes every node fail.
pub fn pre_filter(pod: &PodInfo, volumes: &Volumes) -> Result<Option<PodVolumes>, Status> {
    let names = claim_names(pod);
    if names.is_empty() {
        return Ok(None);
    }
    let mut out = PodVolumes::default();
    for name in names {
        let Some(claim) = volumes.claims.get(&format!("{}/{name}", pod.namespace)) else {
            return Err(Status::unresolvable(
                NAME,
                format!("persistentvolumeclaim \"{name}\" not found"),
            ));
        };
        if claim.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
            return Err(Status::unresolvable(
                NAME,
                format!("persistentvolumeclaim \"{name}\" is being deleted"),
            ));
        }
        let volume_name = s(claim, "/spec/volumeName");
        if !volume_name.is_empty() {
            match volumes.volumes.get(volume_name) {
                Some(pv) => out.bound.push(pv.clone()),
                None => out.missing += 1,
            }
            continue;
        }
        let class = volumes.classes.get(storage::class_of(claim)).cloned();
        if !storage::delays_binding(class.as_ref()) {
            return Err(Status::unresolvable(NAME, REASON_UNBOUND_IMMEDIATE));
        }
        out.delayed.push((claim.clone(), class));
    }
    if !out.delayed.is_empty() {
        out.candidates = volumes.volumes.values().cloned().collect();
    }
    Ok(Some(out))
}

fn labels_of(node: &NodeInfo) -> Map<String, Value> {
    node.labels.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()
}

/// Filter: may the pod's claims be served on `node`?
pub fn filter(state: Option<&PodVolumes>, node: &NodeInfo) -> Status {
    let Some(state) = state else { return Status::success(NAME) };
    if state.missing > 0 {
        return Status::unresolvable(NAME, REASON_PV_NOT_EXIST);
    }
    let labels = labels_of(node);
    if state.bound.iter().any(|pv| !storage::volume_fits_node(pv, &node.name, Some(&labels))) {
        return Status::unresolvable(NAME, REASON_NODE_CONFLICT);
    }
    match plan_delayed(state, node, &labels) {
        Some(_) => Status::success(NAME),
        None => Status::unresolvable(NAME, REASON_BIND_CONFLICT),
    }
}

/// What to write before binding the pod, for one delayed claim.
#[derive(Debug, Clone, PartialEq)]
pub enum BindStep {
    /// Pre-bind an existing volume to the claim (its `claimRef`); the binder completes it.
    PreBind {
        /// The volume.
        volume: String,
        /// The claim's namespace.
        claim_namespace: String,
        /// The claim's name.
        claim_name: String,
        /// The claim's uid.
        claim_uid: String,
    },
    /// Ask the class's provisioner for a volume on the chosen node.
    SelectNode {
        /// The claim's namespace.
        claim_namespace: String,
        /// The claim's name.
        claim_name: String,
    },
}

/// Can the class provision on this node (a real provisioner, and its `allowedTopologies`
/// admit the node)?
fn provisionable(class: Option<&Value>, labels: &Map<String, Value>) -> bool {
    let Some(class) = class else { return false };
    let provisioner = s(class, "/provisioner");
    if provisioner.is_empty() || provisioner == NO_PROVISIONER {
        return false;
    }
    let Some(topologies) = class.get("allowedTopologies").and_then(Value::as_array) else {
        return true;
    };
    topologies.is_empty()
        || topologies.iter().any(|term| {
            term.get("matchLabelExpressions").and_then(Value::as_array).into_iter().flatten().all(
                |e| {
                    let have = labels.get(s(e, "/key")).and_then(Value::as_str);
                    e.get("values").and_then(Value::as_array).is_some_and(|vals| {
                        vals.iter().any(|v| v.as_str() == have && have.is_some())
                    })
                },
            )
        })
}

fn plan_delayed(
    state: &PodVolumes,
    node: &NodeInfo,
    labels: &Map<String, Value>,
) -> Option<Vec<BindStep>> {
    let view = NodeView { name: &node.name, labels: Some(labels) };
    let mut taken: HashSet<&str> = HashSet::new();
    let mut steps = Vec::new();
    for (claim, class) in &state.delayed {
        let free = state.candidates.iter().filter(|pv| !taken.contains(s(pv, "/metadata/name")));
        let claim_namespace = s(claim, "/metadata/namespace").to_string();
        let claim_name = s(claim, "/metadata/name").to_string();
        if let Some(pv) = storage::best_match(claim, free, Some(view), true) {
            taken.insert(s(pv, "/metadata/name"));
            steps.push(BindStep::PreBind {
                volume: s(pv, "/metadata/name").to_string(),
                claim_namespace,
                claim_name,
                claim_uid: s(claim, "/metadata/uid").to_string(),
            });
        } else if provisionable(class.as_ref(), labels) {
            steps.push(BindStep::SelectNode { claim_namespace, claim_name });
        } else {
            return None;
        }
    }
    Some(steps)
}

/// The writes that bind the pod's delayed claims for `node` (empty when there are none).
pub fn bind_steps(pod: &PodInfo, volumes: &Volumes, node: &NodeInfo) -> Vec<BindStep> {
    match pre_filter(pod, volumes) {
        Ok(Some(state)) => plan_delayed(&state, node, &labels_of(node)).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The claims (namespace, name) a pod must see Bound before it is bound itself.
pub fn claims_to_wait_for(steps: &[BindStep]) -> Vec<(String, String)> {
    steps
        .iter()
        .map(|s| match s {
            BindStep::PreBind { claim_namespace, claim_name, .. }
            | BindStep::SelectNode { claim_namespace, claim_name } => {
                (claim_namespace.clone(), claim_name.clone())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Volume};
    use serde_json::json;

    fn with_claim(name: &str) -> PodInfo {
        let mut p = pod("web").build();
        if let Some(spec) = p.spec.as_mut() {
            spec.volumes = Some(vec![Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: name.into(),
                    read_only: None,
                }),
                ..Default::default()
            }]);
        }
        PodInfo::new(std::sync::Arc::new(p)).expect("valid pod")
    }

    fn node_info(name: &str) -> NodeInfo {
        let mut n = NodeInfo::from_node(&node(name, "4", "8Gi")).unwrap_or_default();
        n.labels.insert(storage::HOSTNAME_LABEL.into(), name.into());
        n
    }

    fn claim(name: &str, class: &str, volume: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": class, "volumeName": volume}})
    }

    fn local_pv(name: &str, node: &str, class: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"capacity": {"storage": "5Gi"},
            "accessModes": ["ReadWriteOnce"], "storageClassName": class, "local": {"path": "/d"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": storage::HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Available"}})
    }

    fn state() -> Volumes {
        let mut v = Volumes::default();
        v.set_class(json!({"metadata": {"name": "local-path"}, "provisioner": storage::LOCAL_PATH_PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer"}));
        v.set_class(json!({"metadata": {"name": "manual"}, "provisioner": NO_PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer"}));
        v.set_class(json!({"metadata": {"name": "now"}, "provisioner": "x.dev/y", "volumeBindingMode": "Immediate"}));
        v
    }

    #[test]
    fn pods_without_claims_skip_the_plugin() {
        assert!(matches!(pre_filter(&pod("p").info(), &state()), Ok(None)));
        assert!(filter(None, &node_info("n1")).is_success());
    }

    #[test]
    fn missing_deleting_and_unbound_immediate_claims_fail_everywhere() {
        let mut v = state();
        let err = pre_filter(&with_claim("data"), &v).err().map(|s| s.reasons);
        assert_eq!(err, Some(vec!["persistentvolumeclaim \"data\" not found".to_string()]));
        v.set_claim(claim("data", "now", ""));
        let err = pre_filter(&with_claim("data"), &v).err().map(|s| s.reasons);
        assert_eq!(err, Some(vec![REASON_UNBOUND_IMMEDIATE.to_string()]));
        let mut deleting = claim("data", "now", "");
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        v.set_claim(deleting);
        assert!(pre_filter(&with_claim("data"), &v).is_err());
    }

    #[test]
    fn bound_volumes_pin_the_pod_to_their_node() {
        let mut v = state();
        v.set_volume(local_pv("pv1", "n1", "local-path"));
        v.set_claim(claim("data", "local-path", "pv1"));
        let st = pre_filter(&with_claim("data"), &v).ok().flatten();
        assert!(filter(st.as_ref(), &node_info("n1")).is_success());
        assert_eq!(filter(st.as_ref(), &node_info("n2")).reasons, vec![REASON_NODE_CONFLICT]);
        v.set_claim(claim("data", "local-path", "gone"));
        let st = pre_filter(&with_claim("data"), &v).ok().flatten();
        assert_eq!(filter(st.as_ref(), &node_info("n1")).reasons, vec![REASON_PV_NOT_EXIST]);
    }

    #[test]
    fn delayed_claims_match_local_volumes_or_are_provisioned_on_the_node() {
        let mut v = state();
        v.set_volume(local_pv("pv1", "n1", "manual"));
        v.set_claim(claim("data", "manual", ""));
        let p = with_claim("data");
        let st = pre_filter(&p, &v).ok().flatten();
        assert!(filter(st.as_ref(), &node_info("n1")).is_success());
        assert_eq!(filter(st.as_ref(), &node_info("n2")).reasons, vec![REASON_BIND_CONFLICT]);
        assert_eq!(
            bind_steps(&p, &v, &node_info("n1")),
            vec![BindStep::PreBind {
                volume: "pv1".into(),
                claim_namespace: "default".into(),
                claim_name: "data".into(),
                claim_uid: "uid-data".into()
            }]
        );
        // Once assumed for one claim, the volume is not offered to another.
        v.assume(&bind_steps(&p, &v, &node_info("n1")), "n1");
        v.set_claim(claim("other", "manual", ""));
        let st = pre_filter(&with_claim("other"), &v).ok().flatten();
        assert!(!filter(st.as_ref(), &node_info("n1")).is_success());
        // A provisioning class fits any node and selects it.
        v.set_claim(claim("dyn", "local-path", ""));
        let p = with_claim("dyn");
        let st = pre_filter(&p, &v).ok().flatten();
        assert!(filter(st.as_ref(), &node_info("n2")).is_success());
        let steps = bind_steps(&p, &v, &node_info("n2"));
        assert_eq!(
            steps,
            vec![BindStep::SelectNode {
                claim_namespace: "default".into(),
                claim_name: "dyn".into()
            }]
        );
        v.assume(&steps, "n2");
        assert_eq!(claims_to_wait_for(&steps), vec![("default".to_string(), "dyn".to_string())]);
    }

    #[test]
    fn allowed_topologies_limit_provisioning() {
        let class = json!({"provisioner": "x.dev/y", "allowedTopologies": [{"matchLabelExpressions": [
            {"key": storage::HOSTNAME_LABEL, "values": ["n1"]}]}]});
        let on = |n: &str| provisionable(Some(&class), &labels_of(&node_info(n)));
        assert!(on("n1"));
        assert!(!on("n2"));
    }
}
