//! Property: scheduling random pods one by one onto random nodes, with assume, never
//! over-commits any node, and every pod either lands on a node that passes every filter or
//! gets a `FitError` (and then truly fits nowhere).

use std::sync::Arc;

use kumo_scheduler::schedule::{pre_filter, run_filters};
use kumo_scheduler::testing::{pod, toleration, NodeBuilder};
use kumo_scheduler::{schedule_and_assume, Cache, Profile, ScheduleError, Scheduler};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

#[derive(Debug, Clone)]
struct NodeSpec {
    milli_cpu: u32,
    mib: u32,
    pods: u32,
    tainted: bool,
    zone: u8,
}

#[derive(Debug, Clone)]
struct PodSpec {
    milli_cpu: u32,
    mib: u32,
    tolerates: bool,
    zone: Option<u8>,
    host_port: Option<u16>,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (500u32..8000, 256u32..16384, 1u32..12, prop::bool::weighted(0.2), 0u8..3).prop_map(
        |(milli_cpu, mib, pods, tainted, zone)| NodeSpec { milli_cpu, mib, pods, tainted, zone },
    )
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        0u32..3000,
        0u32..4096,
        any::<bool>(),
        prop::option::weighted(0.2, 0u8..3),
        prop::option::weighted(0.1, 8000u16..8003),
    )
        .prop_map(|(milli_cpu, mib, tolerates, zone, host_port)| PodSpec {
            milli_cpu,
            mib,
            tolerates,
            zone,
            host_port,
        })
}

fn build_cache(nodes: &[NodeSpec]) -> Cache {
    let mut cache = Cache::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut b = NodeBuilder::new(&format!("n{i}"))
            .cpu(&format!("{}m", n.milli_cpu))
            .memory(&format!("{}Mi", n.mib))
            .pods(&n.pods.to_string())
            .label("zone", &n.zone.to_string());
        if n.tainted {
            b = b.taint("dedicated", "gpu", "NoSchedule");
        }
        if cache.add_node(&b.build()).is_err() {
            panic!("generated node {i} is invalid");
        }
    }
    cache
}

fn build_pod(i: usize, p: &PodSpec) -> kumo_scheduler::PodInfo {
    let mut b = pod(&format!("p{i}"));
    if p.milli_cpu > 0 {
        b = b.cpu(&format!("{}m", p.milli_cpu));
    }
    if p.mib > 0 {
        b = b.memory(&format!("{}Mi", p.mib));
    }
    if p.tolerates {
        b = b.toleration(toleration("dedicated", "Equal", "gpu", "NoSchedule"));
    }
    if let Some(z) = p.zone {
        b = b.node_selector("zone", &z.to_string());
    }
    if let Some(port) = p.host_port {
        b = b.host_port(i32::from(port));
    }
    b.info()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn assume_never_overcommits_and_placements_pass_filters(
        nodes in prop::collection::vec(node_spec(), 0..12),
        pods in prop::collection::vec(pod_spec(), 1..80),
        binpack in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut cache = build_cache(&nodes);
        let profile = if binpack { Profile::binpack("b") } else { Profile::default() };
        let mut scheduler = Scheduler::new(StdRng::seed_from_u64(seed));
        for (i, p) in pods.iter().enumerate() {
            let info = Arc::new(build_pod(i, p));
            // The verdict of every filter *before* the pod is assumed.
            let state = pre_filter(&info, &cache);
            let passing: Vec<String> = cache
                .nodes()
                .iter()
                .filter(|n| run_filters(&info, n, &state).is_success())
                .map(|n| n.name.clone())
                .collect();
            match schedule_and_assume(info, &mut cache, &profile, &mut scheduler) {
                Ok(node) => prop_assert!(passing.contains(&node), "{} not in {:?}", node, passing),
                Err(ScheduleError::Unschedulable(e)) => {
                    prop_assert!(passing.is_empty(), "fit error {} but {:?} pass", e, passing);
                    prop_assert_eq!(e.num_all_nodes, nodes.len());
                }
                Err(other) => prop_assert!(false, "unexpected {}", other),
            }
            for n in cache.nodes() {
                prop_assert!(n.requested.milli_cpu <= n.allocatable.milli_cpu, "{} cpu", n.name);
                prop_assert!(n.requested.memory <= n.allocatable.memory, "{} memory", n.name);
                prop_assert!(n.requested.pods <= n.allocatable.pods, "{} pods", n.name);
                let mut ports: Vec<_> = n.used_ports.iter().map(|p| p.port).collect();
                let before = ports.len();
                ports.sort();
                ports.dedup();
                prop_assert_eq!(before, ports.len(), "{} host ports", n.name);
            }
        }
    }

    #[test]
    fn forgetting_every_assumed_pod_restores_an_empty_cluster(
        nodes in prop::collection::vec(node_spec(), 1..8),
        pods in prop::collection::vec(pod_spec(), 1..40),
        seed in any::<u64>(),
    ) {
        let mut cache = build_cache(&nodes);
        let mut scheduler = Scheduler::new(StdRng::seed_from_u64(seed));
        let mut placed = Vec::new();
        for (i, p) in pods.iter().enumerate() {
            let info = Arc::new(build_pod(i, p));
            let key = info.key.clone();
            if schedule_and_assume(info, &mut cache, &Profile::default(), &mut scheduler).is_ok() {
                placed.push(key);
            }
        }
        for key in &placed {
            cache.forget_pod(key);
        }
        for n in cache.nodes() {
            prop_assert_eq!(n.requested, Default::default());
            prop_assert_eq!(n.non_zero_requested, Default::default());
            prop_assert!(n.pods.is_empty() && n.used_ports.is_empty());
        }
    }
}
