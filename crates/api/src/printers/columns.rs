//! Column definitions of the built-in kinds (names, types, priorities and descriptions as
//! upstream's `printers.go` declares them).

use super::{doc, Column};

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const CONTAINERS: &str = "Names of each container in the template.";
const IMAGES: &str = "Images referenced by each container in the template.";

fn col(name: &str, ty: &str, description: String, priority: i32) -> Column {
    Column { name: name.into(), type_: ty.into(), format: String::new(), description, priority }
}
fn s(name: &str, description: String) -> Column {
    col(name, "string", description, 0)
}
fn i(name: &str, description: String) -> Column {
    col(name, "integer", description, 0)
}
fn wide(name: &str, description: String) -> Column {
    col(name, "string", description, 1)
}
fn t(text: &str) -> String {
    text.to_string()
}
fn name_col() -> Column {
    Column {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: doc(META, "name"),
        priority: 0,
    }
}
fn age_col() -> Column {
    s("Age", doc(META, "creationTimestamp"))
}

/// The columns of a built-in kind.
pub(crate) fn columns(kind: &str) -> Vec<Column> {
    let mut c = vec![name_col()];
    if let Some(more) = super::cluster::columns(kind) {
        c.extend(more);
        return c;
    }
    match kind {
        "Pod" => c.extend([
            s("Ready", t("The aggregate readiness state of this pod for accepting traffic.")),
            s("Status", t("The aggregate status of the containers in this pod.")),
            s("Restarts", t("The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.")),
            age_col(),
            wide("IP", doc("core.v1.PodStatus", "podIP")),
            wide("Node", doc("core.v1.PodSpec", "nodeName")),
            wide("Nominated Node", doc("core.v1.PodStatus", "nominatedNodeName")),
            wide("Readiness Gates", doc("core.v1.PodSpec", "readinessGates")),
        ]),
        "PodDisruptionBudget" => c.extend([
            s("Min Available", t("The minimum number of pods that must be available.")),
            s("Max Unavailable", t("The maximum number of pods that may be unavailable.")),
            i("Allowed Disruptions", t("Calculated number of pods that may be disrupted at this time.")),
            age_col(),
        ]),
        "ReplicationController" | "ReplicaSet" => {
            let (spec, status) = if kind == "ReplicaSet" {
                ("apps.v1.ReplicaSetSpec", "apps.v1.ReplicaSetStatus")
            } else {
                ("core.v1.ReplicationControllerSpec", "core.v1.ReplicationControllerStatus")
            };
            c.extend([
                i("Desired", doc(spec, "replicas")),
                i("Current", doc(status, "replicas")),
                i("Ready", doc(status, "readyReplicas")),
                age_col(),
                wide("Containers", t(CONTAINERS)),
                wide("Images", t(IMAGES)),
                wide("Selector", doc(spec, "selector")),
            ])
        }
        "DaemonSet" => c.extend([
            i("Desired", doc("apps.v1.DaemonSetStatus", "desiredNumberScheduled")),
            i("Current", doc("apps.v1.DaemonSetStatus", "currentNumberScheduled")),
            i("Ready", doc("apps.v1.DaemonSetStatus", "numberReady")),
            i("Up-to-date", doc("apps.v1.DaemonSetStatus", "updatedNumberScheduled")),
            i("Available", doc("apps.v1.DaemonSetStatus", "numberAvailable")),
            s("Node Selector", doc("core.v1.PodSpec", "nodeSelector")),
            age_col(),
            wide("Containers", t(CONTAINERS)),
            wide("Images", t(IMAGES)),
            wide("Selector", doc("apps.v1.DaemonSetSpec", "selector")),
        ]),
        "Job" => c.extend([
            s("Status", t("Status of the job.")),
            s("Completions", doc("batch.v1.JobStatus", "succeeded")),
            s("Duration", t("Time required to complete the job.")),
            age_col(),
            wide("Containers", t(CONTAINERS)),
            wide("Images", t(IMAGES)),
            wide("Selector", doc("batch.v1.JobSpec", "selector")),
        ]),
        "CronJob" => c.extend([
            s("Schedule", doc("batch.v1.CronJobSpec", "schedule")),
            s("Timezone", doc("batch.v1.CronJobSpec", "timeZone")),
            col("Suspend", "boolean", doc("batch.v1.CronJobSpec", "suspend"), 0),
            i("Active", doc("batch.v1.CronJobStatus", "active")),
            s("Last Schedule", doc("batch.v1.CronJobStatus", "lastScheduleTime")),
            age_col(),
            wide("Containers", t(CONTAINERS)),
            wide("Images", t(IMAGES)),
            wide("Selector", doc("batch.v1.JobSpec", "selector")),
        ]),
        "Service" => c.extend([
            s("Type", doc("core.v1.ServiceSpec", "type")),
            s("Cluster-IP", doc("core.v1.ServiceSpec", "clusterIP")),
            s("External-IP", doc("core.v1.ServiceSpec", "externalIPs")),
            s("Port(s)", doc("core.v1.ServiceSpec", "ports")),
            age_col(),
            wide("Selector", doc("core.v1.ServiceSpec", "selector")),
        ]),
        "Ingress" => c.extend([
            s("Class", t("The name of the IngressClass resource that should be used for additional configuration")),
            s("Hosts", t("Hosts that incoming requests are matched against before the ingress rule")),
            s("Address", t("Address is a list containing ingress points for the load-balancer")),
            s("Ports", t("Ports of TLS configurations that open")),
            age_col(),
        ]),
        "IngressClass" => c.extend([
            s("Controller", t("Controller that is responsible for handling this class")),
            s("Parameters", t("A reference to a resource with additional parameters")),
            age_col(),
        ]),
        "StatefulSet" => c.extend([
            s("Ready", t("Number of the pod with ready state")),
            age_col(),
            wide("Containers", t(CONTAINERS)),
            wide("Images", t(IMAGES)),
        ]),
        "Endpoints" => c.extend([s("Endpoints", doc("core.v1.Endpoints", "subsets")), age_col()]),
        "Node" => c.extend([
            s("Status", t("The status of the node")),
            s("Roles", t("The roles of the node")),
            age_col(),
            s("Version", doc("core.v1.NodeSystemInfo", "kubeletVersion")),
            wide("Internal-IP", doc("core.v1.NodeStatus", "addresses")),
            wide("External-IP", doc("core.v1.NodeStatus", "addresses")),
            wide("OS-Image", doc("core.v1.NodeSystemInfo", "osImage")),
            wide("Kernel-Version", doc("core.v1.NodeSystemInfo", "kernelVersion")),
            wide("Container-Runtime", doc("core.v1.NodeSystemInfo", "containerRuntimeVersion")),
        ]),
        "Event" => {
            let mut name = name_col();
            name.priority = 1;
            return vec![
                s("Last Seen", doc("core.v1.Event", "lastTimestamp")),
                s("Type", doc("core.v1.Event", "type")),
                s("Reason", doc("core.v1.Event", "reason")),
                s("Object", doc("core.v1.Event", "involvedObject")),
                wide("Subobject", doc("core.v1.ObjectReference", "fieldPath")),
                wide("Source", doc("core.v1.Event", "source")),
                s("Message", doc("core.v1.Event", "message")),
                wide("First Seen", doc("core.v1.Event", "firstTimestamp")),
                wide("Count", doc("core.v1.Event", "count")),
                name,
            ];
        }
        "Namespace" => c.extend([s("Status", t("The status of the namespace")), age_col()]),
        "Secret" => c.extend([
            s("Type", doc("core.v1.Secret", "type")),
            s("Data", doc("core.v1.Secret", "data")),
            age_col(),
        ]),
        "ServiceAccount" => c.extend([s("Secrets", doc("core.v1.ServiceAccount", "secrets")), age_col()]),
        "PersistentVolume" => c.extend([
            s("Capacity", doc("core.v1.PersistentVolumeSpec", "capacity")),
            s("Access Modes", doc("core.v1.PersistentVolumeSpec", "accessModes")),
            s("Reclaim Policy", doc("core.v1.PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
            s("Status", doc("core.v1.PersistentVolumeStatus", "phase")),
            s("Claim", doc("core.v1.PersistentVolumeSpec", "claimRef")),
            s("StorageClass", t("StorageClass of the pv")),
            s("VolumeAttributesClass", t("VolumeAttributesClass of the pv")),
            s("Reason", doc("core.v1.PersistentVolumeStatus", "reason")),
            age_col(),
            wide("VolumeMode", doc("core.v1.PersistentVolumeSpec", "volumeMode")),
        ]),
        "PersistentVolumeClaim" => c.extend([
            s("Status", doc("core.v1.PersistentVolumeClaimStatus", "phase")),
            s("Volume", doc("core.v1.PersistentVolumeClaimSpec", "volumeName")),
            s("Capacity", doc("core.v1.PersistentVolumeClaimStatus", "capacity")),
            s("Access Modes", doc("core.v1.PersistentVolumeClaimStatus", "accessModes")),
            s("StorageClass", t("StorageClass of the pvc")),
            s("VolumeAttributesClass", t("VolumeAttributesClass of the pvc")),
            age_col(),
            wide("VolumeMode", doc("core.v1.PersistentVolumeClaimSpec", "volumeMode")),
        ]),
        "Deployment" => c.extend([
            s("Ready", t("Number of the pod with ready state")),
            s("Up-to-date", doc("apps.v1.DeploymentStatus", "updatedReplicas")),
            s("Available", doc("apps.v1.DeploymentStatus", "availableReplicas")),
            age_col(),
            wide("Containers", t(CONTAINERS)),
            wide("Images", t(IMAGES)),
            wide("Selector", doc("apps.v1.DeploymentSpec", "selector")),
        ]),
        "HorizontalPodAutoscaler" => c.extend([
            s("Reference", doc("autoscaling.v2.HorizontalPodAutoscalerSpec", "scaleTargetRef")),
            s("Targets", doc("autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics")),
            s("MinPods", doc("autoscaling.v2.HorizontalPodAutoscalerSpec", "minReplicas")),
            s("MaxPods", doc("autoscaling.v2.HorizontalPodAutoscalerSpec", "maxReplicas")),
            s("Replicas", doc("autoscaling.v2.HorizontalPodAutoscalerStatus", "currentReplicas")),
            age_col(),
        ]),
        "ConfigMap" => c.extend([s("Data", doc("core.v1.ConfigMap", "data")), age_col()]),
        "NetworkPolicy" => c.extend([s("Pod-Selector", doc("networking.v1.NetworkPolicySpec", "podSelector")), age_col()]),
        "RoleBinding" | "ClusterRoleBinding" => {
            let what = if kind == "RoleBinding" { "roleBinding" } else { "clusterRoleBinding" };
            c.extend([
                s("Role", doc(&format!("rbac.v1.{kind}"), "roleRef")),
                age_col(),
                wide("Users", format!("Users in the {what}")),
                wide("Groups", format!("Groups in the {what}")),
                wide("ServiceAccounts", format!("ServiceAccounts in the {what}")),
            ])
        }
        "Lease" => c.extend([s("Holder", doc("coordination.v1.LeaseSpec", "holderIdentity")), age_col()]),
        "StorageClass" => c.extend([
            s("Provisioner", doc("storage.v1.StorageClass", "provisioner")),
            s("ReclaimPolicy", doc("storage.v1.StorageClass", "reclaimPolicy")),
            s("VolumeBindingMode", doc("storage.v1.StorageClass", "volumeBindingMode")),
            s("AllowVolumeExpansion", doc("storage.v1.StorageClass", "allowVolumeExpansion")),
            age_col(),
        ]),
        "ControllerRevision" => c.extend([
            s("Controller", t("Controller of the object")),
            s("Revision", doc("apps.v1.ControllerRevision", "revision")),
            age_col(),
        ]),
        "ResourceQuota" => c.extend([
            s("Request", t("Request represents a minimum amount of cpu/memory that a container may consume.")),
            s("Limit", t("Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.")),
            age_col(),
        ]),
        "PriorityClass" => c.extend([
            i("Value", doc("scheduling.v1.PriorityClass", "value")),
            col("Global-Default", "boolean", doc("scheduling.v1.PriorityClass", "globalDefault"), 0),
            age_col(),
            s("PreemptionPolicy", doc("scheduling.v1.PriorityClass", "preemptionPolicy")),
        ]),
        "EndpointSlice" => c.extend([
            s("AddressType", doc("discovery.v1.EndpointSlice", "addressType")),
            s("Ports", doc("discovery.v1.EndpointSlice", "ports")),
            s("Endpoints", doc("discovery.v1.EndpointSlice", "endpoints")),
            age_col(),
        ]),
        // Kinds upstream prints with the default table convertor.
        "Role" | "ClusterRole" | "LimitRange" | "CustomResourceDefinition" => {
            c.push(col("Created At", "date", doc(META, "creationTimestamp"), 0))
        }
        _ => c.push(age_col()),
    }
    c
}
