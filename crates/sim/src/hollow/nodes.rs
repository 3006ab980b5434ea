//! The hollow nodes' Node objects and Leases: registration with bounded concurrency, Lease
//! renewals spread evenly over the period (10,000 nodes every 10 s are 1,000 renewals a second
//! at a steady pace, not 10,000 at once), and Ready posted again when the lifecycle controller
//! marked a live node otherwise.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use super::{Fleet, HollowNode, SimError};
use crate::HOLLOW_LABEL;

/// The namespace of node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How far renewals are spread: one batch per tick.
const TICK: Duration = Duration::from_millis(50);

fn now_micros() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The Node object `node` registers with (labels and taints; status is posted separately).
pub fn node_object(fleet: &Fleet, index: usize) -> Value {
    let config = &fleet.config;
    let node = &fleet.nodes[index];
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(node.name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!("amd64"));
    labels.insert(HOLLOW_LABEL.into(), json!(config.prefix.trim_end_matches('-')));
    if config.zones > 0 {
        labels.insert(
            "topology.kubernetes.io/zone".into(),
            json!(format!("zone-{}", index % config.zones)),
        );
    }
    for (k, v) in &config.labels {
        labels.insert(k.clone(), json!(v));
    }
    let taints: Vec<Value> = config
        .taints
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value, "effect": t.effect}))
        .collect();
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node.name, "labels": labels},
    });
    if !taints.is_empty() {
        obj["spec"] = json!({"taints": taints});
    }
    obj
}

/// The status a live hollow node reports.
pub fn node_status(fleet: &Fleet, node: &HollowNode) -> Value {
    let config = &fleet.config;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let capacity = json!({
        "cpu": config.cpu, "memory": config.memory,
        "pods": config.max_pods.to_string(), "ephemeral-storage": "100Gi",
    });
    let condition = |kind: &str, status: &str, reason: &str| {
        json!({"type": kind, "status": status, "reason": reason,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID"),
            condition("Ready", "True", "KubeletReady"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": node.ip},
            {"type": "Hostname", "address": node.name},
        ],
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
            "osImage": "kumo hollow node", "containerRuntimeVersion": "sim://0.1.0",
            "kubeletVersion": "v1.33.0", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": "amd64",
        },
    })
}

/// Creates (or takes over) one node, posts its status and creates its Lease.
async fn register(client: &kube::Client, fleet: &Fleet, index: usize) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = &fleet.nodes[index];
    let object: Node =
        serde_json::from_value(node_object(fleet, index)).map_err(kube::Error::SerdeError)?;
    let created = match nodes.create(&PostParams::default(), &object).await {
        Ok(n) => n,
        // Left from an earlier run of the simulator: take it over.
        Err(kube::Error::Api(e)) if e.code == 409 => nodes.get(&node.name).await?,
        Err(e) => return Err(e),
    };
    let uid = created.metadata.uid.unwrap_or_default();
    if let Ok(mut slot) = node.uid.lock() {
        slot.clone_from(&uid);
    }
    post_status(&nodes, fleet, node).await?;
    renew(client, node).await
}

async fn post_status(api: &Api<Node>, fleet: &Fleet, node: &HollowNode) -> Result<(), kube::Error> {
    let patch = json!({"status": node_status(fleet, node)});
    api.patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

/// Registers every node, `concurrency` at a time; a node that cannot be registered after a few
/// tries fails the whole registration.
pub async fn register_all(client: &kube::Client, fleet: &Arc<Fleet>) -> Result<(), SimError> {
    let concurrency = fleet.config.concurrency.max(1);
    futures::stream::iter(0..fleet.nodes.len())
        .map(|i| async move {
            let mut delay = Duration::from_millis(100);
            let mut tries = 0;
            loop {
                match register(client, fleet, i).await {
                    Ok(()) => return Ok(()),
                    Err(e) if tries >= 8 => {
                        return Err(SimError::Register {
                            node: fleet.nodes[i].name.clone(),
                            source: e,
                        })
                    }
                    Err(e) => {
                        tracing::debug!(node = %fleet.nodes[i].name, error = %e, "register retry");
                        tries += 1;
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// Renews the node's Lease now (creating it when missing), as kubelet does.
pub async fn renew(client: &kube::Client, node: &HollowNode) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let spec = json!({"holderIdentity": node.name, "leaseDurationSeconds": 40,
                      "renewTime": now_micros()});
    match api
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(&json!({"spec": spec})))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let uid = node.uid.lock().map(|u| u.clone()).unwrap_or_default();
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                                  "name": node.name, "uid": uid}]},
                "spec": spec,
            }))
            .map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Which node indexes renew in tick `tick` of a period of `ticks` ticks: node `i` renews in
/// tick `i * ticks / n`, so every node renews exactly once per period, evenly spread.
pub fn renewals_in_tick(tick: u64, ticks: u64, n: usize) -> std::ops::Range<usize> {
    let ticks = ticks.max(1);
    let tick = tick % ticks;
    let n64 = n as u64;
    // First index i with i * ticks / n >= tick, i.e. i >= ceil(tick * n / ticks).
    let start = (tick * n64).div_ceil(ticks);
    let end = ((tick + 1) * n64).div_ceil(ticks);
    (start as usize).min(n)..(end as usize).min(n)
}

/// Renews every live node's Lease once per period, forever.
pub async fn renew_leases(client: kube::Client, fleet: Arc<Fleet>) {
    let ticks = (fleet.config.lease_period.as_millis() / TICK.as_millis()).max(1) as u64;
    let mut interval = tokio::time::interval(TICK);
    // Falling behind (a busy server) delays renewals; it never bunches them up.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick: u64 = 0;
    loop {
        interval.tick().await;
        for i in renewals_in_tick(tick, ticks, fleet.nodes.len()) {
            if !fleet.nodes[i].alive.load(Ordering::Relaxed) {
                continue;
            }
            let turn = std::time::Instant::now();
            let Ok(permit) = fleet.node_pool.clone().acquire_owned().await else { return };
            let client = client.clone();
            let fleet = fleet.clone();
            tokio::spawn(async move {
                let node = &fleet.nodes[i];
                if let Err(e) = renew(&client, node).await {
                    fleet.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(node = %node.name, error = %e, "lease renewal failed");
                }
                let took = turn.elapsed().as_millis() as u64;
                fleet.stats.renewal_max_ms.fetch_max(took, Ordering::Relaxed);
                fleet.stats.renewals.fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        tick += 1;
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Watches the fleet's Nodes (one watch) and posts Ready again for a live node that someone
/// else marked otherwise (the lifecycle controller, while its Lease looked stale).
pub async fn repair_status(client: kube::Client, fleet: Arc<Fleet>) {
    let api: Api<Node> = Api::all(client.clone());
    let selector = format!("{HOLLOW_LABEL}={}", fleet.config.prefix.trim_end_matches('-'));
    let events = watcher(api.clone(), watcher::Config::default().labels(&selector))
        .default_backoff()
        .applied_objects();
    tokio::pin!(events);
    while let Some(event) = events.next().await {
        let Ok(node) = event else { continue };
        let name = node.metadata.name.clone().unwrap_or_default();
        if is_ready(&node) || !fleet.is_alive(&name) {
            continue;
        }
        let Ok(permit) = fleet.node_pool.clone().acquire_owned().await else { return };
        let (api, fleet) = (api.clone(), fleet.clone());
        tokio::spawn(async move {
            if let Some(hollow) = fleet.node(&name) {
                if let Err(e) = post_status(&api, &fleet, hollow).await {
                    fleet.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(node = %name, error = %e, "status repost failed");
                }
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_renews_once_per_period_evenly() {
        for (n, ticks) in [(10_000usize, 200u64), (7, 200), (1, 1), (333, 7)] {
            let mut seen = vec![0u32; n];
            let mut most = 0;
            for t in 0..ticks {
                let r = renewals_in_tick(t, ticks, n);
                most = most.max(r.len());
                for i in r {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "n={n} ticks={ticks}");
            assert!(most <= n.div_ceil(ticks as usize), "n={n} ticks={ticks}: {most} in one tick");
        }
        // The next period starts over.
        assert_eq!(renewals_in_tick(200, 200, 10), renewals_in_tick(0, 200, 10));
    }

    #[test]
    fn taints_parse_like_kubectl_taint() {
        let t: super::super::Taint = "dedicated=batch:NoSchedule".parse().expect("taint");
        assert_eq!(
            (t.key.as_str(), t.value.as_str(), t.effect.as_str()),
            ("dedicated", "batch", "NoSchedule")
        );
        let t: super::super::Taint = "gpu:NoExecute".parse().expect("taint");
        assert_eq!(t.value, "");
        assert!("gpu".parse::<super::super::Taint>().is_err());
        assert!("gpu:Sometimes".parse::<super::super::Taint>().is_err());
        assert!("=x:NoSchedule".parse::<super::super::Taint>().is_err());
    }
}
