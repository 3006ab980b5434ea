//! Builders for pods and nodes, for tests, property tests and the benchmark.
//!
//! `pod("web-1").cpu("500m").memory("1Gi").label("app", "web").build()`
//! `NodeBuilder::new("n1").cpu("8").memory("32Gi").label("zone", "a").build()`

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus,
    ResourceRequirements, Taint, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::pod_info::PodInfo;

/// Starts a pod builder in namespace `default` with one container.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder::new(name)
}

/// A node with `cpu`, `memory` and 110 pods allocatable.
pub fn node(name: &str, cpu: &str, memory: &str) -> Node {
    NodeBuilder::new(name).cpu(cpu).memory(memory).build()
}

/// Builds a [`Pod`] step by step.
#[derive(Debug, Clone)]
pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    /// A pod named `name` with one request-less container.
    pub fn new(name: &str) -> Self {
        Self {
            pod: Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("default".into()),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    containers: vec![Container { name: "main".into(), ..Default::default() }],
                    ..Default::default()
                }),
                status: None,
            },
        }
    }

    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(Default::default)
    }

    fn request(mut self, resource: &str, value: &str) -> Self {
        if let Some(c) = self.spec().containers.first_mut() {
            c.resources
                .get_or_insert_with(ResourceRequirements::default)
                .requests
                .get_or_insert_with(BTreeMap::new)
                .insert(resource.into(), Quantity(value.into()));
        }
        self
    }

    /// Sets the namespace.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.pod.metadata.namespace = Some(ns.into());
        self
    }

    /// Requests `cpu` on the first container.
    pub fn cpu(self, cpu: &str) -> Self {
        self.request("cpu", cpu)
    }

    /// Requests `memory` on the first container.
    pub fn memory(self, memory: &str) -> Self {
        self.request("memory", memory)
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.pod.metadata.labels.get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
        self
    }

    /// Sets `spec.nodeName`.
    pub fn node(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.into());
        self
    }

    /// Sets `spec.schedulerName`.
    pub fn scheduler_name(mut self, name: &str) -> Self {
        self.spec().scheduler_name = Some(name.into());
        self
    }

    /// Sets `spec.priority`.
    pub fn priority(mut self, priority: i32) -> Self {
        self.spec().priority = Some(priority);
        self
    }

    /// Sets `status.phase`.
    pub fn phase(mut self, phase: &str) -> Self {
        self.pod.status.get_or_insert_with(PodStatus::default).phase = Some(phase.into());
        self
    }

    /// Claims TCP host port `port` on the first container.
    pub fn host_port(mut self, port: i32) -> Self {
        if let Some(c) = self.spec().containers.first_mut() {
            c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
                container_port: port,
                host_port: Some(port),
                ..Default::default()
            });
        }
        self
    }

    /// Adds a `nodeSelector` entry.
    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// Adds a toleration.
    pub fn toleration(mut self, toleration: Toleration) -> Self {
        self.spec().tolerations.get_or_insert_with(Vec::new).push(toleration);
        self
    }

    /// Sets `spec.affinity`.
    pub fn affinity(mut self, affinity: Affinity) -> Self {
        self.spec().affinity = Some(affinity);
        self
    }

    /// Adds a topology spread constraint.
    pub fn spread(mut self, constraint: TopologySpreadConstraint) -> Self {
        self.spec().topology_spread_constraints.get_or_insert_with(Vec::new).push(constraint);
        self
    }

    /// The pod.
    pub fn build(self) -> Pod {
        self.pod
    }

    /// The pod as a [`PodInfo`]. Builders only produce valid quantities when given valid
    /// strings; an invalid one yields a request-less `PodInfo` so tests can still proceed.
    pub fn info(self) -> PodInfo {
        let pod = Arc::new(self.pod);
        PodInfo::new(pod.clone()).unwrap_or_else(|_| PodInfo {
            key: crate::pod_info::pod_key(&pod),
            namespace: "default".into(),
            requests: Default::default(),
            host_ports: Vec::new(),
            priority: 0,
            pod,
        })
    }
}

/// Builds a [`Node`] step by step.
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    node: Node,
}

impl NodeBuilder {
    /// A node named `name` with 110 pods allocatable and nothing else.
    pub fn new(name: &str) -> Self {
        let mut builder = Self {
            node: Node {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    labels: Some(BTreeMap::from([(
                        "kubernetes.io/hostname".to_string(),
                        name.to_string(),
                    )])),
                    ..Default::default()
                },
                spec: Some(NodeSpec::default()),
                status: Some(NodeStatus::default()),
            },
        };
        builder = builder.allocatable("pods", "110");
        builder
    }

    /// Sets an allocatable resource.
    pub fn allocatable(mut self, resource: &str, value: &str) -> Self {
        self.node
            .status
            .get_or_insert_with(NodeStatus::default)
            .allocatable
            .get_or_insert_with(BTreeMap::new)
            .insert(resource.into(), Quantity(value.into()));
        self
    }

    /// Sets allocatable cpu.
    pub fn cpu(self, cpu: &str) -> Self {
        self.allocatable("cpu", cpu)
    }

    /// Sets allocatable memory.
    pub fn memory(self, memory: &str) -> Self {
        self.allocatable("memory", memory)
    }

    /// Sets allocatable pods.
    pub fn pods(self, pods: &str) -> Self {
        self.allocatable("pods", pods)
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.node
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// Adds a taint.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.node
            .spec
            .get_or_insert_with(NodeSpec::default)
            .taints
            .get_or_insert_with(Vec::new)
            .push(Taint {
                key: key.into(),
                value: Some(value.into()).filter(|v: &String| !v.is_empty()),
                effect: effect.into(),
                time_added: None,
            });
        self
    }

    /// Marks the node unschedulable (cordoned).
    pub fn unschedulable(mut self) -> Self {
        self.node.spec.get_or_insert_with(NodeSpec::default).unschedulable = Some(true);
        self
    }

    /// The node.
    pub fn build(self) -> Node {
        self.node
    }
}

/// A toleration `key op value : effect` (empty strings mean unset).
pub fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
    let opt = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    Toleration {
        key: opt(key),
        operator: opt(operator),
        value: opt(value),
        effect: opt(effect),
        toleration_seconds: None,
    }
}
