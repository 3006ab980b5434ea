//! The agent's Node: registration (labels, addresses, capacity from the host, nodeInfo, the
//! agent's endpoint), the node's Lease in `kube-node-lease` renewed every 10 s, and a status
//! kept current (Ready again after the node lifecycle controller marked it Unknown).

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::time::Duration;

/// How often the Lease is renewed.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The Lease's duration, as kubelet sets it.
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// What the node says about itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its address (InternalIP), also the IP of its pods.
    pub ip: String,
    /// Port of the agent's endpoint (logs, stats).
    pub port: u16,
    /// `process://0.1.0` or `docker://28.2.2`.
    pub runtime_version: String,
    /// Extra labels (`--node-labels`).
    pub labels: Vec<(String, String)>,
    /// `pods` capacity.
    pub max_pods: u32,
    /// Where the agent keeps its data (ephemeral-storage capacity is that filesystem's size).
    pub data_dir: std::path::PathBuf,
}

/// CPUs and memory bytes of the host.
pub fn host_capacity() -> (u32, u64) {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    (cpus, mem_kb * 1024)
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

fn disk_bytes(path: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(path).map(|s| s.blocks() * s.fragment_size()).unwrap_or(0)
}

/// The Node's status as the agent reports it.
pub fn status(info: &NodeInfo) -> Value {
    let (cpus, mem) = host_capacity();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let capacity = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", mem / 1024),
        "pods": info.max_pods.to_string(),
        "ephemeral-storage": format!("{}Ki", disk_bytes(&info.data_dir) / 1024),
    });
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": info.ip},
            {"type": "Hostname", "address": info.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": info.port}},
        "nodeInfo": {
            "machineID": read_trim("/etc/machine-id"),
            "systemUUID": read_trim("/sys/class/dmi/id/product_uuid"),
            "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": kernel,
            "osImage": os_image(),
            "containerRuntimeVersion": info.runtime_version,
            "kubeletVersion": "v1.33.0",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn labels(info: &NodeInfo) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(info.name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!(arch()));
    labels.insert("beta.kubernetes.io/os".into(), json!("linux"));
    labels.insert("beta.kubernetes.io/arch".into(), json!(arch()));
    for (k, v) in &info.labels {
        labels.insert(k.clone(), json!(v));
    }
    Value::Object(labels)
}

/// Create the Node (or take it over again after a restart) and post its status.
pub async fn register(client: &kube::Client, info: &NodeInfo) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    match api.get_opt(&info.name).await? {
        None => {
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": info.name, "labels": labels(info)},
            }))
            .map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Some(_) => {
            let patch = json!({"metadata": {"labels": labels(info)}});
            api.patch(&info.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
    }
    post_status(&api, info).await
}

async fn post_status(api: &Api<Node>, info: &NodeInfo) -> Result<(), kube::Error> {
    let patch = json!({"status": status(info)});
    api.patch_status(&info.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Renew the Lease now, creating it if needed.
pub async fn renew_lease(client: &kube::Client, info: &NodeInfo) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let spec = json!({"holderIdentity": info.name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                      "renewTime": now});
    let patch = json!({"spec": spec});
    match api.patch(&info.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let nodes: Api<Node> = Api::all(client.clone());
            let uid = nodes.get(&info.name).await?.metadata.uid.unwrap_or_default();
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": info.name, "namespace": "kube-node-lease",
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                                  "name": info.name, "uid": uid}]},
                "spec": spec,
            }))
            .map_err(kube::Error::SerdeError)?;
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Keep the Lease fresh and the status right until `shutdown`.
pub async fn heartbeat(
    client: kube::Client,
    info: NodeInfo,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let api: Api<Node> = Api::all(client.clone());
    let mut last_full = tokio::time::Instant::now();
    loop {
        if let Err(e) = renew_lease(&client, &info).await {
            tracing::warn!("node {}: cannot renew lease: {e}", info.name);
        }
        // Re-register a deleted node; repost when someone else changed Ready (the lifecycle
        // controller sets Unknown while the Lease was stale), and every minute anyway.
        let result = match api.get_opt(&info.name).await {
            Ok(None) => register(&client, &info).await,
            Ok(Some(node)) => {
                let ready = node
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if !ready || last_full.elapsed() >= Duration::from_secs(60) {
                    last_full = tokio::time::Instant::now();
                    post_status(&api, &info).await
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!("node {}: cannot update status: {e}", info.name);
        }
        tokio::select! {
            _ = tokio::time::sleep(LEASE_RENEW) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
