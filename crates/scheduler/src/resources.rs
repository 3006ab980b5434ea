//! Resource vectors and a pod's effective requests, computed the way Kubernetes does.
//!
//! A pod's request for each resource is
//! `max(sum(app containers) + sum(sidecars), max over init containers of (init + sidecars started before it))
//! + overhead`, and it always counts as one pod. Sidecars are init containers with
//! `restartPolicy: Always`: they keep running, so they add to everything after them.
//! Pod-level `spec.resources.requests` (when set) replace the container sum for cpu and memory.
//!
//! See <https://kubernetes.io/docs/concepts/workloads/pods/init-containers/#resource-sharing-within-containers>
//! and <https://kubernetes.io/docs/concepts/scheduling-eviction/pod-overhead/>.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::{parse_milli, parse_value, QuantityError};

/// CPU assumed for a container without a cpu request when *scoring* (upstream's
/// `DefaultMilliCPURequest`), so that request-less pods still spread.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a memory request when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    /// Component-wise sum (saturating).
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.pods = self.pods.saturating_add(other.pods);
    }

    /// Component-wise difference (saturating).
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.pods = self.pods.saturating_sub(other.pods);
    }

    /// Component-wise maximum.
    pub fn max(&self, other: &Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.max(other.milli_cpu),
            memory: self.memory.max(other.memory),
            pods: self.pods.max(other.pods),
        }
    }
}

/// A resource quantity in a pod or node could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource {resource:?}: {source}")]
pub struct ResourceError {
    /// The resource name (`cpu`, `memory`, `pods`).
    pub resource: String,
    /// Why its quantity was rejected.
    #[source]
    pub source: QuantityError,
}

/// What the pod asks for, two ways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// The requests as declared (what filtering and accounting use).
    pub requested: Resources,
    /// The requests with defaults for unset cpu/memory (what least/most-allocated scoring uses).
    pub non_zero: Resources,
}

/// Reads `cpu`, `memory` and `pods` out of a resource list; other resources are ignored.
pub fn from_resource_list(list: &BTreeMap<String, Quantity>) -> Result<Resources, ResourceError> {
    let get = |name: &str, milli: bool| -> Result<i64, ResourceError> {
        match list.get(name) {
            None => Ok(0),
            Some(q) => {
                let parsed = if milli { parse_milli(&q.0) } else { parse_value(&q.0) };
                parsed
                    .map(|v| v.max(0))
                    .map_err(|source| ResourceError { resource: name.to_string(), source })
            }
        }
    };
    Ok(Resources {
        milli_cpu: get("cpu", true)?,
        memory: get("memory", false)?,
        pods: get("pods", false)?,
    })
}

/// A node's allocatable resources (falling back to capacity, as the kubelet reports both).
pub fn node_allocatable(node: &Node) -> Result<Resources, ResourceError> {
    let status = node.status.as_ref();
    match status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())) {
        Some(list) => from_resource_list(list),
        None => Ok(Resources::default()),
    }
}

/// One container's requests: declared, and with scoring defaults for unset cpu/memory.
fn container_requests(container: &Container) -> Result<(Resources, Resources), ResourceError> {
    let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
    let declared = match requests {
        Some(list) => from_resource_list(list)?,
        None => Resources::default(),
    };
    let has = |name: &str| requests.is_some_and(|l| l.contains_key(name));
    let non_zero = Resources {
        milli_cpu: if has("cpu") { declared.milli_cpu } else { DEFAULT_MILLI_CPU_REQUEST },
        memory: if has("memory") { declared.memory } else { DEFAULT_MEMORY_REQUEST },
        pods: 0,
    };
    Ok((declared, non_zero))
}

/// The effective requests of `pod`: see the module doc for the formula.
pub fn pod_requests(pod: &Pod) -> Result<PodRequests, ResourceError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(one_pod(Resources::default(), Resources::default()));
    };
    let mut apps = (Resources::default(), Resources::default());
    for container in &spec.containers {
        let (declared, non_zero) = container_requests(container)?;
        apps.0.add(&declared);
        apps.1.add(&non_zero);
    }
    let mut sidecars = (Resources::default(), Resources::default());
    let mut init_peak = (Resources::default(), Resources::default());
    for container in spec.init_containers.iter().flatten() {
        let (declared, non_zero) = container_requests(container)?;
        if container.restart_policy.as_deref() == Some("Always") {
            sidecars.0.add(&declared);
            sidecars.1.add(&non_zero);
            init_peak.0 = init_peak.0.max(&sidecars.0);
            init_peak.1 = init_peak.1.max(&sidecars.1);
        } else {
            let mut running = declared;
            running.add(&sidecars.0);
            let mut running_non_zero = non_zero;
            running_non_zero.add(&sidecars.1);
            init_peak.0 = init_peak.0.max(&running);
            init_peak.1 = init_peak.1.max(&running_non_zero);
        }
    }
    apps.0.add(&sidecars.0);
    apps.1.add(&sidecars.1);
    if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        // Pod-level resources (KEP-2837) replace the aggregate for the resources they name.
        let declared = from_resource_list(pod_level)?;
        if pod_level.contains_key("cpu") {
            apps.0.milli_cpu = declared.milli_cpu;
            apps.1.milli_cpu = declared.milli_cpu;
        }
        if pod_level.contains_key("memory") {
            apps.0.memory = declared.memory;
            apps.1.memory = declared.memory;
        }
    }
    let mut requested = apps.0.max(&init_peak.0);
    let mut non_zero = apps.1.max(&init_peak.1);
    if let Some(overhead) = spec.overhead.as_ref() {
        let overhead = from_resource_list(overhead)?;
        requested.add(&overhead);
        non_zero.add(&overhead);
    }
    Ok(one_pod(requested, non_zero))
}

fn one_pod(mut requested: Resources, mut non_zero: Resources) -> PodRequests {
    requested.pods = 1;
    non_zero.pods = 1;
    PodRequests { requested, non_zero }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn container(cpu: &str, memory: &str) -> Container {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), Quantity(cpu.to_string()));
        }
        if !memory.is_empty() {
            requests.insert("memory".to_string(), Quantity(memory.to_string()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec { containers, init_containers: Some(init), ..Default::default() }),
            ..Default::default()
        }
    }

    fn requested(p: &Pod) -> Resources {
        pod_requests(p).map(|r| r.requested).unwrap_or_default()
    }

    #[test]
    fn containers_are_summed_and_pod_counts_one() {
        let p = pod(vec![container("100m", "1Mi"), container("200m", "1Mi")], vec![]);
        assert_eq!(requested(&p), Resources { milli_cpu: 300, memory: 2 << 20, pods: 1 });
    }

    #[test]
    fn init_containers_take_the_max_per_resource() {
        let p = pod(
            vec![container("100m", "64Mi"), container("100m", "64Mi")],
            vec![container("500m", "10Mi"), container("50m", "100Mi")],
        );
        let r = requested(&p);
        assert_eq!(r.milli_cpu, 500);
        assert_eq!(r.memory, 128 << 20);
    }

    #[test]
    fn sidecars_add_to_apps_and_later_inits() {
        let mut sidecar = container("200m", "0");
        sidecar.restart_policy = Some("Always".into());
        let p = pod(vec![container("100m", "")], vec![sidecar, container("500m", "")]);
        // init after sidecar: 500 + 200 = 700 > apps 100 + 200 = 300
        assert_eq!(requested(&p).milli_cpu, 700);
    }

    #[test]
    fn overhead_is_added() {
        let mut p = pod(vec![container("1", "1Gi")], vec![]);
        if let Some(spec) = p.spec.as_mut() {
            spec.overhead = Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("250m".into())),
                ("memory".to_string(), Quantity("120Mi".into())),
            ]));
        }
        let r = requested(&p);
        assert_eq!(r.milli_cpu, 1250);
        assert_eq!(r.memory, (1 << 30) + (120 << 20));
    }

    #[test]
    fn pod_level_requests_replace_container_sum() {
        let mut p = pod(vec![container("1", "1Gi"), container("1", "")], vec![]);
        if let Some(spec) = p.spec.as_mut() {
            spec.resources = Some(ResourceRequirements {
                requests: Some(BTreeMap::from([("cpu".to_string(), Quantity("3".into()))])),
                ..Default::default()
            });
        }
        let r = requested(&p);
        assert_eq!(r.milli_cpu, 3000);
        assert_eq!(r.memory, 1 << 30);
    }

    #[test]
    fn unset_requests_get_scoring_defaults_only() {
        let p = pod(vec![container("", "")], vec![]);
        let r = pod_requests(&p).unwrap_or_default();
        assert_eq!(r.requested.milli_cpu, 0);
        assert_eq!(r.non_zero.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.non_zero.memory, DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn bad_quantity_is_an_error_naming_the_resource() {
        let p = pod(vec![container("lots", "")], vec![]);
        let err = pod_requests(&p).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("resource \"cpu\": quantity \"lots\" has no valid number"));
    }
}
