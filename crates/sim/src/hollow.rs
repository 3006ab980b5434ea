//! Hollow nodes: many simulated nodes in one process, sharing one pod watch, one node watch, one
//! timer heap and one bounded pool of API requests.
//!
//! [`run`] registers the fleet, then runs three loops until shutdown: lease renewals
//! ([`nodes::renew_leases`], each node once per period at its own offset), node status repair
//! ([`nodes::repair_status`]: a node the lifecycle controller marked not Ready is posted Ready
//! again while it lives), and the pod lifecycle ([`pods::run`]). [`Fleet::stop_nodes`] stops a
//! share of the nodes as a crashed kubelet would: no more Lease renewals, pods left as they are.

pub mod nodes;
pub mod pods;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

/// A node taint, `key[=value]:Effect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value (may be empty).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl std::str::FromStr for Taint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kv, effect) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("taint {s:?}: expected key[=value]:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!(
                "taint {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if key.is_empty() {
            return Err(format!("taint {s:?}: empty key"));
        }
        Ok(Taint { key: key.into(), value: value.into(), effect: effect.into() })
    }
}

/// How the hollow nodes look and behave.
#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// How many nodes.
    pub nodes: usize,
    /// Node names are `<prefix><index>`; also the value of the [`crate::HOLLOW_LABEL`] label.
    pub prefix: String,
    /// CPU capacity of each node (a Kubernetes quantity, e.g. `32`).
    pub cpu: String,
    /// Memory capacity of each node (e.g. `128Gi`).
    pub memory: String,
    /// How many pods each node takes.
    pub max_pods: u32,
    /// Extra labels on every node.
    pub labels: Vec<(String, String)>,
    /// Taints on every node.
    pub taints: Vec<Taint>,
    /// Nodes are spread over this many zones (`topology.kubernetes.io/zone=zone-<i mod n>`);
    /// 0 sets no zone label.
    pub zones: usize,
    /// From a pod bound to the node to its status `Running` and `Ready`.
    pub startup_delay: Duration,
    /// How long a Job pod without [`crate::RUN_SECONDS_ANNOTATION`] runs.
    pub job_duration: Duration,
    /// Share of completing pods that fail (exit code 1) instead of succeeding, 0..=1.
    pub failure_rate: f64,
    /// Longest time a graceful deletion takes (the pod's own grace period if shorter).
    pub delete_delay: Duration,
    /// How often each node renews its Lease (kubelet: 10 s).
    pub lease_period: Duration,
    /// Pod requests in flight at most (Leases and node status have a quarter of this again).
    pub concurrency: usize,
    /// Seed of the failure draws.
    pub seed: u64,
}

impl Default for HollowConfig {
    fn default() -> Self {
        HollowConfig {
            nodes: 10,
            prefix: "hollow-".into(),
            cpu: "32".into(),
            memory: "128Gi".into(),
            max_pods: 110,
            labels: Vec::new(),
            taints: Vec::new(),
            zones: 3,
            startup_delay: Duration::from_millis(500),
            job_duration: Duration::from_secs(10),
            failure_rate: 0.0,
            delete_delay: Duration::from_millis(200),
            lease_period: Duration::from_secs(10),
            concurrency: 64,
            seed: 1,
        }
    }
}

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A node could not be registered.
    #[error("cannot register node {node}")]
    Register {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// One hollow node's state.
#[derive(Debug)]
pub struct HollowNode {
    /// The node's name.
    pub name: String,
    /// Its InternalIP (also its pods' IP).
    pub ip: String,
    /// The Node's uid, once registered (the Lease's owner).
    pub uid: Mutex<String>,
    /// False once stopped: no renewals, its pods abandoned.
    pub alive: AtomicBool,
}

/// The whole fleet, shared by the loops.
#[derive(Debug)]
pub struct Fleet {
    /// The configuration.
    pub config: HollowConfig,
    /// Nodes by index.
    pub nodes: Vec<HollowNode>,
    /// Index by node name.
    index: HashMap<String, usize>,
    /// Every pod request goes through this pool.
    pub pool: Arc<Semaphore>,
    /// Lease renewals and node status go through this one: a backlog of pod work must not
    /// delay a node's heartbeat (a kubelet renews its Lease whatever its pods are doing), or a
    /// busy run declares its own nodes dead and evicts their pods.
    pub node_pool: Arc<Semaphore>,
    /// Counters, for the progress line.
    pub stats: Stats,
}

/// What the fleet did so far.
#[derive(Debug, Default)]
pub struct Stats {
    /// Pods made Running.
    pub started: AtomicU64,
    /// Pods completed (Succeeded or Failed).
    pub completed: AtomicU64,
    /// Pods whose deletion was finished.
    pub deleted: AtomicU64,
    /// Lease renewals sent.
    pub renewals: AtomicU64,
    /// The longest a renewal took, from its turn to the server's answer, in milliseconds (a
    /// node looks dead once this nears the grace period).
    pub renewal_max_ms: AtomicU64,
    /// Requests that failed.
    pub errors: AtomicU64,
}

impl Fleet {
    /// A fleet as `config` describes, not yet registered.
    pub fn new(config: HollowConfig) -> Result<Arc<Fleet>, SimError> {
        if config.nodes == 0 {
            return Err(SimError::Config("at least one node".into()));
        }
        if config.nodes > 4 * 65_536 {
            return Err(SimError::Config(
                "at most 262,144 nodes (one 10.0.0.0/8 address each)".into(),
            ));
        }
        if !(0.0..=1.0).contains(&config.failure_rate) {
            return Err(SimError::Config("the failure rate is between 0 and 1".into()));
        }
        if config.lease_period < Duration::from_millis(100) {
            return Err(SimError::Config("the lease period is at least 100 ms".into()));
        }
        let nodes: Vec<HollowNode> = (0..config.nodes)
            .map(|i| HollowNode {
                name: format!("{}{i}", config.prefix),
                // 10.0.0.1 onwards: unique per node within 10.0.0.0/8.
                ip: {
                    let n = i + 1;
                    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
                },
                uid: Mutex::new(String::new()),
                alive: AtomicBool::new(true),
            })
            .collect();
        let index = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        let pool = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let node_pool = Arc::new(Semaphore::new((config.concurrency / 4).max(4)));
        Ok(Arc::new(Fleet { config, nodes, index, pool, node_pool, stats: Stats::default() }))
    }

    /// The node called `name`, if it is one of ours.
    pub fn node(&self, name: &str) -> Option<&HollowNode> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Is `name` one of ours and alive?
    pub fn is_alive(&self, name: &str) -> bool {
        self.node(name).is_some_and(|n| n.alive.load(Ordering::Relaxed))
    }

    /// Stops the first `count` live nodes (in index order, so a run is repeatable): their
    /// Leases are no longer renewed and their pods are left as they are, as when a machine
    /// dies. Returns their names.
    pub fn stop_nodes(&self, count: usize) -> Vec<String> {
        let mut stopped = Vec::new();
        for node in &self.nodes {
            if stopped.len() >= count {
                break;
            }
            if node.alive.swap(false, Ordering::Relaxed) {
                stopped.push(node.name.clone());
            }
        }
        stopped
    }

    /// How many nodes are alive.
    pub fn alive_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.alive.load(Ordering::Relaxed)).count()
    }
}

/// Registers the fleet's nodes, then keeps them (Leases, status, pods) until `shutdown`.
/// `registered` is called once every node exists.
pub async fn run(
    client: kube::Client,
    fleet: Arc<Fleet>,
    registered: impl FnOnce(),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SimError> {
    nodes::register_all(&client, &fleet).await?;
    registered();
    let leases = nodes::renew_leases(client.clone(), fleet.clone());
    let repair = nodes::repair_status(client.clone(), fleet.clone());
    let pods = pods::run(client, fleet);
    tokio::select! {
        _ = shutdown => {}
        _ = leases => {}
        _ = repair => {}
        _ = pods => {}
    }
    Ok(())
}
