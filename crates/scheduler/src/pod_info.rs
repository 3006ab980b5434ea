//! `PodInfo`: a pod with everything the scheduler derives from it computed once.
//!
//! Parsing quantities and walking containers for every node of every cycle would dominate the
//! hot loop, so a pod is turned into a `PodInfo` once when it enters the queue or the cache, and
//! shared as `Arc<PodInfo>` from then on (never cloned).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Affinity, Pod, PodAffinityTerm};

use crate::resources::{pod_requests, PodRequests, ResourceError};
use crate::selector::Labels;

static NO_LABELS: Labels = BTreeMap::new();

/// A host port a pod claims on its node (`containerPort.hostPort`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `TCP`, `UDP` or `SCTP` (default `TCP`).
    pub protocol: String,
    /// The host IP (default `0.0.0.0`, meaning all addresses).
    pub ip: String,
    /// The port number.
    pub port: i32,
}

impl HostPort {
    /// Two claims collide on the same protocol and port when either binds all addresses or
    /// both bind the same one (upstream's `HostPortInfo`).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod plus its precomputed scheduling facts.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod as the API returned it.
    pub pod: Arc<Pod>,
    /// `namespace/name`, the cache key.
    pub key: String,
    /// The namespace (`default` when unset).
    pub namespace: String,
    /// Effective requests (see [`crate::resources`]).
    pub requests: PodRequests,
    /// Host ports claimed by all containers (init containers included, as upstream).
    pub host_ports: Vec<HostPort>,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
}

/// `namespace/name` of a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

impl PodInfo {
    /// Derives the scheduling facts of `pod`; fails only on unparsable resource quantities.
    pub fn new(pod: Arc<Pod>) -> Result<Self, ResourceError> {
        let requests = pod_requests(&pod)?;
        let mut host_ports = Vec::new();
        if let Some(spec) = pod.spec.as_ref() {
            let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
            for port in containers.flat_map(|c| c.ports.iter().flatten()) {
                let Some(host_port) = port.host_port.filter(|p| *p > 0) else {
                    continue;
                };
                host_ports.push(HostPort {
                    protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ip: port
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    port: host_port,
                });
            }
        }
        Ok(Self {
            key: pod_key(&pod),
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            requests,
            host_ports,
            pod,
        })
    }

    /// The pod's labels (empty when unset).
    pub fn labels(&self) -> &Labels {
        self.pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// `spec.affinity`, if any.
    pub fn affinity(&self) -> Option<&Affinity> {
        self.pod.spec.as_ref().and_then(|s| s.affinity.as_ref())
    }

    /// Required pod-affinity terms.
    pub fn required_affinity_terms(&self) -> &[PodAffinityTerm] {
        self.affinity()
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or(&[])
    }

    /// Required pod-anti-affinity terms.
    pub fn required_anti_affinity_terms(&self) -> &[PodAffinityTerm] {
        self.affinity()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or(&[])
    }

    /// `spec.nodeName` when the pod is bound (or nominated by the user).
    pub fn node_name(&self) -> Option<&str> {
        self.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
    }
}
