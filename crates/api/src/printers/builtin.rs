//! Cells of the built-in kinds, after upstream's `printers.go`.

use super::format::{
    access_modes, containers_cells, event_cells, format_endpoints, format_label_selector,
    format_labels, hpa_metrics, int_or_string, job_cells, lb_ingress, list_with_more, n,
    node_cells, or_none, selector_string, service_cells, st,
};
use super::{age, name, pod, since};
use crate::validation::json::{arr_at, as_int, at, int_at, obj_at, str_at};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

pub(crate) use super::columns::columns;

pub(crate) fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    if let Some(row) = super::cluster::cells(kind, obj, now) {
        return row;
    }
    if kind == "Event" && obj["apiVersion"] == "events.k8s.io/v1" {
        // Printed as upstream prints both: from the core fields.
        return cells(kind, &crate::events::to_core(obj), now);
    }
    let nm = name(obj);
    let ag = age(obj, now);
    match kind {
        "Pod" => pod::cells(obj, now),
        "PodDisruptionBudget" => vec![
            nm,
            json!(int_or_string(at(obj, &["spec", "minAvailable"])).unwrap_or_else(|| "N/A".into())),
            json!(
                int_or_string(at(obj, &["spec", "maxUnavailable"])).unwrap_or_else(|| "N/A".into())
            ),
            n(obj, &["status", "disruptionsAllowed"]),
            ag,
        ],
        "ReplicationController" | "ReplicaSet" => {
            let (names, images) = containers_cells(&["spec", "template", "spec"], obj);
            let selector = if kind == "ReplicaSet" {
                format_label_selector(at(obj, &["spec", "selector"]))
            } else {
                format_labels(at(obj, &["spec", "selector"]))
            };
            vec![
                nm,
                n(obj, &["spec", "replicas"]),
                n(obj, &["status", "replicas"]),
                n(obj, &["status", "readyReplicas"]),
                ag,
                names,
                images,
                json!(selector),
            ]
        }
        "DaemonSet" => {
            let (names, images) = containers_cells(&["spec", "template", "spec"], obj);
            vec![
                nm,
                n(obj, &["status", "desiredNumberScheduled"]),
                n(obj, &["status", "currentNumberScheduled"]),
                n(obj, &["status", "numberReady"]),
                n(obj, &["status", "updatedNumberScheduled"]),
                n(obj, &["status", "numberAvailable"]),
                json!(format_labels(at(obj, &["spec", "template", "spec", "nodeSelector"]))),
                ag,
                names,
                images,
                json!(format_label_selector(at(obj, &["spec", "selector"]))),
            ]
        }
        "Job" => job_cells(obj, nm, ag, now),
        "CronJob" => {
            let (names, images) =
                containers_cells(&["spec", "jobTemplate", "spec", "template", "spec"], obj);
            let last = match str_at(obj, &["status", "lastScheduleTime"]) {
                Some(ts) => since(Some(ts), now),
                None => "<none>".into(),
            };
            let suspend = match at(obj, &["spec", "suspend"]).and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            vec![
                nm,
                json!(st(obj, &["spec", "schedule"])),
                json!(or_none(st(obj, &["spec", "timeZone"]))),
                json!(suspend),
                json!(arr_at(obj, &["status", "active"]).len()),
                json!(last),
                ag,
                names,
                images,
                json!(format_label_selector(at(obj, &["spec", "jobTemplate", "spec", "selector"]))),
            ]
        }
        "Service" => service_cells(obj, nm, ag),
        "Ingress" => {
            let rules = arr_at(obj, &["spec", "rules"]);
            let mut hosts = Vec::new();
            let mut more = false;
            for r in rules {
                if hosts.len() == 3 {
                    more = true;
                }
                if !more && !st(r, &["host"]).is_empty() {
                    hosts.push(st(r, &["host"]).to_string());
                }
            }
            let hosts = if hosts.is_empty() {
                "*".to_string()
            } else if more {
                format!("{} + {} more...", hosts.join(","), rules.len() - 3)
            } else {
                hosts.join(",")
            };
            let ports = if arr_at(obj, &["spec", "tls"]).is_empty() { "80" } else { "80, 443" };
            vec![
                nm,
                json!(or_none(st(obj, &["spec", "ingressClassName"]))),
                json!(hosts),
                json!(lb_ingress(obj)),
                json!(ports),
                ag,
            ]
        }
        "IngressClass" => {
            let params = match at(obj, &["spec", "parameters"]).filter(|p| p.is_object()) {
                None => "<none>".to_string(),
                Some(p) => {
                    let mut s = st(p, &["kind"]).to_string();
                    if let Some(g) = str_at(p, &["apiGroup"]) {
                        s = format!("{s}.{g}");
                    }
                    format!("{s}/{}", st(p, &["name"]))
                }
            };
            vec![nm, json!(st(obj, &["spec", "controller"])), json!(params), ag]
        }
        "StatefulSet" => {
            let (names, images) = containers_cells(&["spec", "template", "spec"], obj);
            let ready = format!(
                "{}/{}",
                int_at(obj, &["status", "readyReplicas"]).unwrap_or(0),
                int_at(obj, &["spec", "replicas"]).unwrap_or(0)
            );
            vec![nm, json!(ready), ag, names, images]
        }
        "Endpoints" => vec![nm, json!(format_endpoints(obj)), ag],
        "Node" => node_cells(obj, nm, ag),
        "Event" => event_cells(obj, nm, now),
        "Namespace" => vec![nm, json!(st(obj, &["status", "phase"])), ag],
        "Secret" => vec![
            nm,
            json!(st(obj, &["type"])),
            json!(obj_at(obj, &["data"]).map_or(0, |m| m.len())),
            ag,
        ],
        "ServiceAccount" => vec![nm, json!(arr_at(obj, &["secrets"]).len()), ag],
        "PersistentVolume" => {
            let claim = match at(obj, &["spec", "claimRef"]).filter(|c| c.is_object()) {
                Some(c) => format!("{}/{}", st(c, &["namespace"]), st(c, &["name"])),
                None => String::new(),
            };
            let phase = if str_at(obj, &["metadata", "deletionTimestamp"]).is_some() {
                "Terminating"
            } else {
                st(obj, &["status", "phase"])
            };
            let class = str_at(
                obj,
                &["metadata", "annotations", "volume.beta.kubernetes.io/storage-class"],
            )
            .unwrap_or_else(|| st(obj, &["spec", "storageClassName"]));
            vec![
                nm,
                json!(st(obj, &["spec", "capacity", "storage"])),
                json!(access_modes(arr_at(obj, &["spec", "accessModes"]))),
                json!(st(obj, &["spec", "persistentVolumeReclaimPolicy"])),
                json!(phase),
                json!(claim),
                json!(class),
                json!(str_at(obj, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
                json!(st(obj, &["status", "reason"])),
                ag,
                json!(str_at(obj, &["spec", "volumeMode"]).unwrap_or("<unset>")),
            ]
        }
        "PersistentVolumeClaim" => {
            let phase = if str_at(obj, &["metadata", "deletionTimestamp"]).is_some() {
                "Terminating"
            } else {
                st(obj, &["status", "phase"])
            };
            let bound = !st(obj, &["spec", "volumeName"]).is_empty();
            let (capacity, modes) = if bound {
                (
                    st(obj, &["status", "capacity", "storage"]).to_string(),
                    access_modes(arr_at(obj, &["status", "accessModes"])),
                )
            } else {
                (String::new(), String::new())
            };
            let class = str_at(
                obj,
                &["metadata", "annotations", "volume.beta.kubernetes.io/storage-class"],
            )
            .unwrap_or_else(|| st(obj, &["spec", "storageClassName"]));
            vec![
                nm,
                json!(phase),
                json!(st(obj, &["spec", "volumeName"])),
                json!(capacity),
                json!(modes),
                json!(class),
                json!(str_at(obj, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
                ag,
                json!(str_at(obj, &["spec", "volumeMode"]).unwrap_or("<unset>")),
            ]
        }
        "Deployment" => {
            let (names, images) = containers_cells(&["spec", "template", "spec"], obj);
            let ready = format!(
                "{}/{}",
                int_at(obj, &["status", "readyReplicas"]).unwrap_or(0),
                int_at(obj, &["spec", "replicas"]).unwrap_or(0)
            );
            vec![
                nm,
                json!(ready),
                n(obj, &["status", "updatedReplicas"]),
                n(obj, &["status", "availableReplicas"]),
                ag,
                names,
                images,
                json!(selector_string(at(obj, &["spec", "selector"]))),
            ]
        }
        "HorizontalPodAutoscaler" => {
            let reference = format!(
                "{}/{}",
                st(obj, &["spec", "scaleTargetRef", "kind"]),
                st(obj, &["spec", "scaleTargetRef", "name"])
            );
            let min = int_at(obj, &["spec", "minReplicas"])
                .map(|m| m.to_string())
                .unwrap_or_else(|| "<unset>".into());
            vec![
                nm,
                json!(reference),
                json!(hpa_metrics(obj)),
                json!(min),
                n(obj, &["spec", "maxReplicas"]),
                n(obj, &["status", "currentReplicas"]),
                ag,
            ]
        }
        "ConfigMap" => {
            let count = obj_at(obj, &["data"]).map_or(0, |m| m.len())
                + obj_at(obj, &["binaryData"]).map_or(0, |m| m.len());
            vec![nm, json!(count), ag]
        }
        "NetworkPolicy" => {
            vec![nm, json!(format_label_selector(at(obj, &["spec", "podSelector"]))), ag]
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let role =
                format!("{}/{}", st(obj, &["roleRef", "kind"]), st(obj, &["roleRef", "name"]));
            let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
            for s in arr_at(obj, &["subjects"]) {
                match st(s, &["kind"]) {
                    "User" => users.push(st(s, &["name"]).to_string()),
                    "Group" => groups.push(st(s, &["name"]).to_string()),
                    "ServiceAccount" => {
                        sas.push(format!("{}/{}", st(s, &["namespace"]), st(s, &["name"])))
                    }
                    _ => {}
                }
            }
            vec![
                nm,
                json!(role),
                ag,
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        "Lease" => vec![nm, json!(st(obj, &["spec", "holderIdentity"])), ag],
        "StorageClass" => {
            let default = [
                "storageclass.kubernetes.io/is-default-class",
                "storageclass.beta.kubernetes.io/is-default-class",
            ]
            .iter()
            .any(|a| str_at(obj, &["metadata", "annotations", a]) == Some("true"));
            let shown = format!(
                "{}{}",
                st(obj, &["metadata", "name"]),
                if default { " (default)" } else { "" }
            );
            vec![
                json!(shown),
                json!(st(obj, &["provisioner"])),
                json!(str_at(obj, &["reclaimPolicy"]).unwrap_or("Delete")),
                json!(str_at(obj, &["volumeBindingMode"]).unwrap_or("Immediate")),
                json!(at(obj, &["allowVolumeExpansion"]).and_then(Value::as_bool).unwrap_or(false)),
                ag,
            ]
        }
        "ControllerRevision" => {
            let owner = arr_at(obj, &["metadata", "ownerReferences"])
                .iter()
                .find(|o| at(o, &["controller"]).and_then(Value::as_bool) == Some(true));
            let controller = match owner {
                None => "<none>".to_string(),
                Some(o) => {
                    let api = st(o, &["apiVersion"]);
                    let group =
                        if api.contains('/') { api.split('/').next().unwrap_or("") } else { "" };
                    let kind = st(o, &["kind"]);
                    let gk =
                        if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
                    if gk.is_empty() {
                        st(o, &["name"]).to_string()
                    } else {
                        format!("{}/{}", gk.to_lowercase(), st(o, &["name"]))
                    }
                }
            };
            vec![nm, json!(controller), n(obj, &["revision"]), ag]
        }
        "ResourceQuota" => {
            let hard = obj_at(obj, &["status", "hard"]).cloned().unwrap_or_default();
            let mut keys: Vec<&String> = hard.keys().collect();
            keys.sort();
            let (mut req, mut lim) = (Vec::new(), Vec::new());
            for k in keys {
                let used = str_at(obj, &["status", "used", k]).unwrap_or("0");
                let h = hard
                    .get(k)
                    .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                    .unwrap_or_default();
                let text = format!("{k}: {used}/{h}");
                if k.split('.').count() > 1 && k.starts_with("limits.") {
                    lim.push(text)
                } else {
                    req.push(text)
                }
            }
            vec![nm, json!(req.join(", ")), json!(lim.join(", ")), ag]
        }
        "PriorityClass" => vec![
            nm,
            n(obj, &["value"]),
            json!(at(obj, &["globalDefault"]).and_then(Value::as_bool).unwrap_or(false)),
            ag,
            json!(st(obj, &["preemptionPolicy"])),
        ],
        "EndpointSlice" => {
            let ports = arr_at(obj, &["ports"]);
            let list: Vec<String> = ports
                .iter()
                .take(3)
                .map(|p| match at(p, &["port"]).and_then(as_int) {
                    Some(num) => num.to_string(),
                    None => str_at(p, &["name"]).map(str::to_string).unwrap_or_else(|| "*".into()),
                })
                .collect();
            let ports_cell = list_with_more(list, ports.len() > 3, ports.len(), 3, "<unset>");
            let addrs: Vec<String> = arr_at(obj, &["endpoints"])
                .iter()
                .flat_map(|e| {
                    arr_at(e, &["addresses"]).iter().filter_map(Value::as_str).map(str::to_string)
                })
                .collect();
            let count = addrs.len();
            let eps =
                list_with_more(addrs.into_iter().take(3).collect(), count > 3, count, 3, "<unset>");
            vec![nm, json!(st(obj, &["addressType"])), json!(ports_cell), json!(eps), ag]
        }
        "Role" | "ClusterRole" | "LimitRange" | "CustomResourceDefinition" => {
            let created = str_at(obj, &["metadata", "creationTimestamp"])
                .and_then(super::parse_time)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
            vec![nm, json!(created)]
        }
        _ => vec![nm, ag],
    }
}
