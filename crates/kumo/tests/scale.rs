//! Scale, correctness only: 500 hollow nodes (`kumo-sim`, in this process) and a seeded
//! trace-shaped workload of 5,000 pods (Deployments and Jobs, three priority classes) arriving
//! over 50 s against a real `kumo up`. Every pod must be bound exactly once — its node never
//! changes once set, and the scheduler reports one `Scheduled` event for it — and start; no
//! node may hold more than its capacity (CPU, memory, pod count). Speed is `bench/scale`'s
//! business, not this test's: the time limit is only there so a hang fails.
//!
//! A test binary of its own, so it runs alone rather than beside the end-to-end tests: it
//! loads both cores with the debug build of the control plane. It takes about 95 s here. (The
//! same 5,000 pods did not finish in five and a half minutes before lists were encoded as read
//! (docs/adr/0016) and before this test followed its watch instead of listing every pod each
//! second; it ran 3,000 pods then.)
#![allow(clippy::unwrap_used)]

#[path = "e2e/harness.rs"]
mod harness;

use futures::StreamExt;
use harness::Cluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODES: usize = 500;
const PODS: usize = 5_000;
const NODE_CPU_MILLIS: i64 = 32_000;
const NODE_MEMORY_MIB: i64 = 128 * 1024;
const MAX_PODS: usize = 110;

fn millis(q: &Quantity) -> i64 {
    let s = q.0.as_str();
    match s.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => (s.parse::<f64>().unwrap() * 1000.0).round() as i64,
    }
}

fn mib(q: &Quantity) -> i64 {
    let s = q.0.as_str();
    if let Some(n) = s.strip_suffix("Mi") {
        n.parse().unwrap()
    } else if let Some(n) = s.strip_suffix("Gi") {
        n.parse::<i64>().unwrap() * 1024
    } else {
        panic!("unexpected memory quantity {s}")
    }
}

/// (cpu millis, memory MiB) the pod requests.
fn requests(pod: &Pod) -> (i64, i64) {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers.iter().fold((0, 0), |(c, m), k| {
        let r = k.resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
        (c + r.get("cpu").map_or(0, millis), m + r.get("memory").map_or(0, mib))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn five_thousand_pods_on_500_hollow_nodes_bound_once_and_never_overcommitted() {
    let c = Cluster::start();
    let kubeconfig = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();

    let fleet = kumo_sim::hollow::Fleet::new(kumo_sim::hollow::HollowConfig {
        nodes: NODES,
        cpu: "32".into(),
        memory: "128Gi".into(),
        max_pods: MAX_PODS as u32,
        startup_delay: Duration::from_millis(100),
        job_duration: Duration::from_secs(36_000),
        ..Default::default()
    })
    .unwrap();
    let (reg_tx, reg_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sim = tokio::spawn(kumo_sim::hollow::run(
        client.clone(),
        fleet.clone(),
        move || {
            let _ = reg_tx.send(());
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    tokio::time::timeout(Duration::from_secs(120), reg_rx)
        .await
        .expect("500 hollow nodes register within 120 s")
        .expect("hollow nodes registered");

    // Every node each pod was ever seen bound to, and which pods have started, from one watch
    // that starts before any pod. (Polling with lists instead loaded the debug-built server
    // with a list of every pod each second.)
    let bindings: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let started: Arc<Mutex<HashSet<String>>> = Arc::default();
    let watch = {
        let (bindings, started) = (bindings.clone(), started.clone());
        let pods: Api<Pod> = Api::all(client.clone());
        tokio::spawn(async move {
            let mut events = watcher(pods, watcher::Config::default()).boxed();
            while let Some(ev) = events.next().await {
                let p = match ev {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                    _ => continue,
                };
                let uid = p.metadata.uid.clone().unwrap_or_default();
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                if matches!(phase, Some("Running" | "Succeeded")) {
                    started.lock().unwrap().insert(uid.clone());
                }
                let mut b = bindings.lock().unwrap();
                let seen = b.entry(uid).or_default();
                if let Some(node) = p.spec.and_then(|s| s.node_name) {
                    if seen.last() != Some(&node) {
                        seen.push(node);
                    }
                }
            }
        })
    };

    let spec = kumo_sim::workload::WorkloadSpec {
        pods: PODS,
        seed: 6,
        namespace: "sim".into(),
        // Batch tasks outlive the test (the shortest of 1,000 draws is some ten minutes).
        median_task_seconds: 36_000.0,
        max_task_seconds: 72_000.0,
        arrival_window: Duration::from_secs(50),
        ..Default::default()
    };
    let workload = kumo_sim::workload::generate(&spec);
    assert_eq!(workload.total_pods(), PODS);
    let pp = PostParams::default();
    let ns: Namespace = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sim"}}),
    )
    .unwrap();
    Api::<Namespace>::all(client.clone()).create(&pp, &ns).await.unwrap();
    for pc in &workload.priority_classes {
        let pc: PriorityClass = serde_json::from_value(pc.clone()).unwrap();
        Api::<PriorityClass>::all(client.clone()).create(&pp, &pc).await.unwrap();
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "sim");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "sim");
    let start = tokio::time::Instant::now();
    let creates = futures::stream::iter(workload.items.iter().map(|item| {
        let (deployments, jobs, pp) = (deployments.clone(), jobs.clone(), pp.clone());
        async move {
            tokio::time::sleep_until(start + item.at).await;
            match item.kind {
                kumo_sim::workload::Kind::Service => {
                    let d: Deployment = serde_json::from_value(item.object.clone()).unwrap();
                    deployments.create(&pp, &d).await.map(|_| ())
                }
                kumo_sim::workload::Kind::Batch => {
                    let j: Job = serde_json::from_value(item.object.clone()).unwrap();
                    jobs.create(&pp, &j).await.map(|_| ())
                }
            }
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    for r in creates {
        r.expect("workload object created");
    }

    // Every pod bound and started (Running, or Succeeded should a batch task be that short):
    // the watch counts them, then one list checks the same from the server's side.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "sim");
    let t0 = Instant::now();
    loop {
        let running = started.lock().unwrap().len();
        if running >= PODS {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "after 600 s: {running} pods seen Running or Succeeded of {PODS}; kumo log:\n{}",
            harness::tail(&c.log_text(), 40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pods = pods_api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(pods.len(), PODS, "pods in the namespace");
    for p in &pods {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        assert!(
            matches!(phase, Some("Running" | "Succeeded")),
            "pod {:?} is {phase:?}",
            p.metadata.name
        );
    }

    // No node over its capacity.
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.unwrap().items;
    assert_eq!(nodes.len(), NODES);
    let mut per_node: BTreeMap<String, (i64, i64, usize)> = BTreeMap::new();
    for p in &pods {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).expect("bound");
        assert!(fleet.node(&node).is_some(), "pod bound to {node}, not a hollow node");
        let (cpu, mem) = requests(p);
        let e = per_node.entry(node).or_default();
        e.0 += cpu;
        e.1 += mem;
        e.2 += 1;
    }
    for (node, (cpu, mem, count)) in &per_node {
        assert!(
            *cpu <= NODE_CPU_MILLIS && *mem <= NODE_MEMORY_MIB && *count <= MAX_PODS,
            "{node} overcommitted: {cpu}m CPU, {mem} MiB, {count} pods"
        );
    }

    // Bound exactly once: the watch never saw a pod move, and each has one Scheduled event.
    {
        let b = bindings.lock().unwrap();
        for p in &pods {
            let uid = p.metadata.uid.as_deref().unwrap();
            let seen = b.get(uid).map(Vec::as_slice).unwrap_or_default();
            assert_eq!(seen.len(), 1, "pod {:?} was bound to {seen:?}", p.metadata.name);
        }
    }
    let events =
        Api::<Event>::namespaced(client.clone(), "sim").list(&ListParams::default()).await.unwrap();
    let mut scheduled: HashMap<String, usize> = HashMap::new();
    for e in events.items.iter().filter(|e| e.reason.as_deref() == Some("Scheduled")) {
        *scheduled.entry(e.involved_object.uid.clone().unwrap_or_default()).or_default() +=
            e.count.unwrap_or(1).max(1) as usize;
    }
    for p in &pods {
        let uid = p.metadata.uid.as_deref().unwrap();
        assert_eq!(
            scheduled.get(uid).copied().unwrap_or(0),
            1,
            "Scheduled events of pod {:?}",
            p.metadata.name
        );
    }

    let _ = stop_tx.send(());
    watch.abort();
    sim.abort();
}
