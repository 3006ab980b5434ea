//! One scheduling cycle: pick a node for one pod, as a visible pipeline.
//!
//! ```text
//! pre-filter ─▶ filter (from a rotating start, until enough feasible) ─▶ score ─▶ select
//! ```
//! * **pre-filter** computes the cluster-wide facts some filters need (inter-pod affinity and
//!   topology-spread counts), once per pod, and only when the pod or cluster uses them.
//! * **filter** runs the filter plugins on each node in [`run_filters`]'s order, stopping at a
//!   node's first failure, and stops looking once [`num_feasible_nodes_to_find`] nodes passed,
//!   like upstream's `percentageOfNodesToScore`. The next cycle starts where this one stopped,
//!   so every node gets its turn.
//! * **score** sums each score plugin's 0..=100 score times its profile weight.
//! * **select** takes the highest total; ties are broken uniformly at random (reservoir
//!   sampling with the caller's seeded rng, so runs are reproducible).
//!
//! When no node passes, the result is a [`FitError`] that prints exactly like upstream's:
//! `0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu.`

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rand::Rng;

use crate::cache::{Cache, CacheError, NodeInfo};
use crate::plugins::{
    balanced_allocation, inter_pod_affinity, inter_pod_affinity_score, node_affinity, node_name,
    node_ports, node_resources_fit, node_unschedulable, pod_topology_spread, taint_toleration,
    volume_binding,
};
use crate::pod_info::PodInfo;
use crate::profile::Profile;
use crate::status::{Code, Status};

/// Below this many nodes, all nodes are checked (upstream's `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// No node can take the pod, and why, node by node, as a histogram of reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitError {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// How many nodes the cache had.
    pub num_all_nodes: usize,
    /// How many nodes gave each reason.
    pub reasons: BTreeMap<String, usize>,
    /// How many nodes failed in a way preemption cannot fix.
    pub unresolvable_nodes: usize,
    /// A message from the post-filter (preemption) stage, when one ran.
    pub post_filter_msg: Option<String>,
    /// Why pre-filter turned the pod away before any node was looked at (then every node
    /// counts as failed and the message replaces the per-node histogram, as upstream prints).
    pub pre_filter_msg: Option<String>,
}

impl fmt::Display for FitError {
    /// Upstream's `FitError.Error()`: reasons as `"<count> <reason>"`, sorted as strings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_all_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if let Some(msg) = &self.pre_filter_msg {
            write!(f, " {msg}.")?;
            if let Some(post) = &self.post_filter_msg {
                write!(f, " {post}.")?;
            }
            return Ok(());
        }
        let mut histogram: Vec<String> =
            self.reasons.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
        histogram.sort();
        if !histogram.is_empty() {
            write!(f, " {}.", histogram.join(", "))?;
        }
        if let Some(msg) = &self.post_filter_msg {
            write!(f, " {msg}.")?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

impl FitError {
    fn record(&mut self, status: Status) {
        if status.code == Code::UnschedulableAndUnresolvable {
            self.unresolvable_nodes += 1;
        }
        for reason in status.reasons {
            *self.reasons.entry(reason).or_default() += 1;
        }
    }
}

/// State carried from one cycle to the next: the rng for tie-breaks, where the next node
/// search starts, and scratch buffers reused so a cycle does not allocate per node.
#[derive(Debug)]
pub struct Scheduler<R> {
    /// Random source for tie-breaks (seed it for reproducible runs).
    pub rng: R,
    next_start_node_index: usize,
    feasible: Vec<usize>,
    totals: Vec<i64>,
    raw: Vec<i64>,
}

impl<R: Rng> Scheduler<R> {
    /// A scheduler state using `rng`.
    pub fn new(rng: R) -> Self {
        Self {
            rng,
            next_start_node_index: 0,
            feasible: Vec::new(),
            totals: Vec::new(),
            raw: Vec::new(),
        }
    }
}

/// How many feasible nodes to find before scoring (upstream's `numFeasibleNodesToFind`):
/// all of them below 100 nodes; otherwise `percentage`% (adaptive when `None`/0:
/// `50 - nodes/125`, at least 5%), and never fewer than 100.
pub fn num_feasible_nodes_to_find(percentage: Option<u32>, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let percentage = match percentage {
        Some(p) if p > 0 => (p as usize).min(100),
        _ => 50usize.saturating_sub(num_all_nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
    };
    (num_all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Facts computed once per cycle for the filters that look beyond one node.
pub struct PreFilterState {
    inter_pod: Option<inter_pod_affinity::PreFilterState>,
    spread: Option<pod_topology_spread::State>,
    volumes: Result<Option<volume_binding::PodVolumes>, Status>,
}

/// Computes the pre-filter state for `pod`.
pub fn pre_filter(pod: &PodInfo, cache: &Cache) -> PreFilterState {
    PreFilterState {
        inter_pod: inter_pod_affinity::pre_filter(
            pod,
            cache.nodes().iter(),
            cache.has_pods_with_required_anti_affinity(),
        ),
        spread: pod_topology_spread::pre_filter(pod, cache.nodes().iter(), true),
        volumes: volume_binding::pre_filter(pod, cache.volumes()),
    }
}

/// Runs the filters on one node in policy order and returns the first failure.
pub fn run_filters(pod: &PodInfo, node: &NodeInfo, state: &PreFilterState) -> Status {
    // Upstream's order: cheap, node-local, unresolvable checks first (cordon, name, taints,
    // labels), then ports and resources (which preemption could fix), then the checks that
    // need cluster-wide counts.
    // VolumeBinding last: it matches volumes against the node, the costliest check.
    let steps: [&dyn Fn() -> Status; 9] = [
        &|| node_unschedulable::filter(pod, node),
        &|| node_name::filter(pod, node),
        &|| taint_toleration::filter(pod, node),
        &|| node_affinity::filter(pod, node),
        &|| node_ports::filter(pod, node),
        &|| node_resources_fit::filter(pod, node),
        &|| pod_topology_spread::filter(node, state.spread.as_ref()),
        &|| inter_pod_affinity::filter(pod, node, state.inter_pod.as_ref()),
        &|| match &state.volumes {
            Ok(v) => volume_binding::filter(v.as_ref(), node),
            Err(rejected) => rejected.clone(),
        },
    ];
    for step in steps {
        let status = step();
        if !status.is_success() {
            return status;
        }
    }
    Status::success("")
}

/// Picks a node for `pod`, or says why none fits. Does not change the cache: call
/// [`Cache::assume_pod`] with the result (or use [`schedule_and_assume`]).
pub fn schedule_one<R: Rng>(
    pod: &PodInfo,
    cache: &Cache,
    profile: &Profile,
    scheduler: &mut Scheduler<R>,
) -> Result<String, FitError> {
    let nodes = cache.nodes();
    let mut fit_error =
        FitError { pod: pod.key.clone(), num_all_nodes: nodes.len(), ..Default::default() };
    if nodes.is_empty() {
        return Err(fit_error);
    }
    let state = pre_filter(pod, cache);
    if let Err(rejected) = &state.volumes {
        fit_error.unresolvable_nodes = nodes.len();
        fit_error.pre_filter_msg = Some(rejected.reasons.join(", "));
        return Err(fit_error);
    }
    let to_find = num_feasible_nodes_to_find(profile.percentage_of_nodes_to_score, nodes.len());
    let start = scheduler.next_start_node_index % nodes.len();
    let feasible = &mut scheduler.feasible;
    feasible.clear();
    let mut processed = 0;
    for offset in 0..nodes.len() {
        let index = (start + offset) % nodes.len();
        processed += 1;
        let status = run_filters(pod, &nodes[index], &state);
        if status.is_success() {
            feasible.push(index);
            if feasible.len() >= to_find {
                break;
            }
        } else {
            fit_error.record(status);
        }
    }
    scheduler.next_start_node_index = (start + processed) % nodes.len();
    match feasible.len() {
        0 => return Err(fit_error),
        1 => return Ok(nodes[feasible[0]].name.clone()),
        _ => {}
    }
    score(pod, cache, profile, scheduler);
    Ok(nodes[select(scheduler)].name.clone())
}

/// Fills `scheduler.totals` with the weighted score of each feasible node.
fn score<R>(pod: &PodInfo, cache: &Cache, profile: &Profile, scheduler: &mut Scheduler<R>) {
    let nodes = cache.nodes();
    let Scheduler { feasible, totals, raw, .. } = scheduler;
    totals.clear();
    totals.resize(feasible.len(), 0);
    let weights = &profile.weights;
    let mut add =
        |weight: i64, score: &dyn Fn(&NodeInfo) -> i64, normalize: Option<fn(&mut [i64])>| {
            if weight == 0 {
                return;
            }
            raw.clear();
            raw.extend(feasible.iter().map(|&i| score(&nodes[i])));
            if let Some(normalize) = normalize {
                normalize(raw);
            }
            for (total, s) in totals.iter_mut().zip(raw.iter()) {
                *total += weight * s;
            }
        };
    add(
        weights.node_resources_fit,
        &|n| node_resources_fit::score(pod, n, profile.strategy, profile.resource_weights),
        None,
    );
    add(weights.balanced_allocation, &|n| balanced_allocation::score(pod, n), None);
    // Plugins without input for this pod would give every node the same score: skip them.
    if !node_affinity::preferred_terms(pod).is_empty() {
        add(
            weights.node_affinity,
            &|n| node_affinity::score(pod, n),
            Some(node_affinity::normalize),
        );
    }
    add(
        weights.taint_toleration,
        &|n| taint_toleration::score(pod, n),
        Some(taint_toleration::normalize),
    );
    if let Some(domains) = inter_pod_affinity_score::pre_score(pod, nodes.iter()) {
        add(
            weights.inter_pod_affinity,
            &|n| inter_pod_affinity_score::score(n, &domains),
            Some(inter_pod_affinity_score::normalize),
        );
    }
    if let Some(soft) = pod_topology_spread::pre_filter(pod, nodes.iter(), false) {
        add(
            weights.pod_topology_spread,
            &|n| pod_topology_spread::score(n, &soft),
            Some(pod_topology_spread::normalize),
        );
    }
}

/// The index (into the cache's nodes) of a highest-scoring feasible node, ties broken at random.
fn select<R: Rng>(scheduler: &mut Scheduler<R>) -> usize {
    let mut best = scheduler.feasible[0];
    let mut best_score = i64::MIN;
    let mut ties = 0u32;
    for (&index, &score) in scheduler.feasible.iter().zip(&scheduler.totals) {
        if score > best_score {
            best_score = score;
            best = index;
            ties = 1;
        } else if score == best_score {
            ties += 1;
            if scheduler.rng.random_range(0..ties) == 0 {
                best = index;
            }
        }
    }
    best
}

/// Why [`schedule_and_assume`] placed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// No node fits.
    #[error(transparent)]
    Unschedulable(#[from] FitError),
    /// The cache refused the assumption (the pod is already there).
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Schedules `pod` and assumes it on the chosen node, so the next pod sees its resources used.
pub fn schedule_and_assume<R: Rng>(
    pod: Arc<PodInfo>,
    cache: &mut Cache,
    profile: &Profile,
    scheduler: &mut Scheduler<R>,
) -> Result<String, ScheduleError> {
    let _span = tracing::trace_span!("schedule", pod = %pod.key).entered();
    let node = schedule_one(&pod, cache, profile, scheduler)?;
    cache.assume_pod(pod, &node)?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, NodeBuilder};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn scheduler() -> Scheduler<StdRng> {
        Scheduler::new(StdRng::seed_from_u64(7))
    }

    #[test]
    fn fit_error_prints_like_upstream() {
        let mut cache = Cache::new();
        cache
            .add_node(
                &NodeBuilder::new("cp")
                    .cpu("8")
                    .memory("8Gi")
                    .taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")
                    .build(),
            )
            .ok();
        cache.add_node(&node("w1", "1", "8Gi")).ok();
        cache.add_node(&node("w2", "1", "8Gi")).ok();
        let err = schedule_one(
            &pod("big").cpu("2").info(),
            &cache,
            &Profile::default(),
            &mut scheduler(),
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "0/3 nodes are available: 1 node(s) had untolerated taint \
                 {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
            )
        );
    }

    #[test]
    fn fit_error_lists_every_resource_and_sorts_as_strings() {
        let mut e = FitError { num_all_nodes: 12, ..Default::default() };
        e.reasons.insert("Insufficient memory".into(), 10);
        e.reasons.insert("Insufficient cpu".into(), 2);
        e.post_filter_msg = Some(
            "preemption: 0/12 nodes are available: 12 No preemption victims found for incoming pod"
                .into(),
        );
        assert_eq!(
            e.to_string(),
            "0/12 nodes are available: 10 Insufficient memory, 2 Insufficient cpu. \
             preemption: 0/12 nodes are available: 12 No preemption victims found for incoming pod."
        );
        assert_eq!(FitError::default().to_string(), "no nodes available to schedule pods");
    }

    #[test]
    fn adaptive_sampling_matches_upstream() {
        assert_eq!(num_feasible_nodes_to_find(None, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(None, 100), 100);
        assert_eq!(num_feasible_nodes_to_find(None, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(None, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(None, 6000), 300);
        assert_eq!(num_feasible_nodes_to_find(None, 1500), 570);
        assert_eq!(num_feasible_nodes_to_find(Some(100), 5000), 5000);
        assert_eq!(num_feasible_nodes_to_find(Some(1), 5000), 100);
    }

    fn busy_cluster() -> Cache {
        let mut cache = Cache::new();
        cache.add_node(&node("empty", "4", "8Gi")).ok();
        cache.add_node(&node("busy", "4", "8Gi")).ok();
        let filler = Arc::new(pod("filler").cpu("2").memory("4Gi").info());
        cache.assume_pod(filler, "busy").ok();
        cache
    }

    #[test]
    fn spread_prefers_the_emptier_node_and_binpack_the_fuller() {
        let cache = busy_cluster();
        let p = pod("p").cpu("1").memory("1Gi").info();
        let spread = schedule_one(&p, &cache, &Profile::default(), &mut scheduler());
        assert_eq!(spread.ok().as_deref(), Some("empty"));
        let binpack = schedule_one(&p, &cache, &Profile::binpack("b"), &mut scheduler());
        assert_eq!(binpack.ok().as_deref(), Some("busy"));
    }

    #[test]
    fn ties_are_broken_randomly_but_reproducibly() {
        let mut cache = Cache::new();
        for i in 0..4 {
            cache.add_node(&node(&format!("n{i}"), "4", "8Gi")).ok();
        }
        let p = pod("p").cpu("1").info();
        let pick = |seed| {
            let mut s = Scheduler::new(StdRng::seed_from_u64(seed));
            schedule_one(&p, &cache, &Profile::default(), &mut s).unwrap_or_default()
        };
        assert_eq!(pick(1), pick(1));
        let distinct: std::collections::BTreeSet<String> = (0..40).map(pick).collect();
        assert!(distinct.len() > 1, "{distinct:?}");
    }

    #[test]
    fn sampling_rotates_the_start_node() {
        let mut cache = Cache::new();
        for i in 0..300 {
            cache.add_node(&node(&format!("n{i}"), "4", "8Gi")).ok();
        }
        let mut s = scheduler();
        let p = pod("p").cpu("1").info();
        // 300 nodes: 48% = 144 feasible to find per cycle.
        schedule_one(&p, &cache, &Profile::default(), &mut s).ok();
        assert_eq!(s.next_start_node_index, 144);
        schedule_one(&p, &cache, &Profile::default(), &mut s).ok();
        assert_eq!(s.next_start_node_index, 288);
    }

    #[test]
    fn assume_makes_the_next_pod_see_the_usage() {
        let mut cache = Cache::new();
        cache.add_node(&node("n1", "2", "8Gi")).ok();
        let mut s = scheduler();
        let profile = Profile::default();
        for name in ["a", "b"] {
            let p = Arc::new(pod(name).cpu("1").info());
            assert!(schedule_and_assume(p, &mut cache, &profile, &mut s).is_ok());
        }
        let third = Arc::new(pod("c").cpu("1").info());
        let err = schedule_and_assume(third, &mut cache, &profile, &mut s);
        assert!(matches!(err, Err(ScheduleError::Unschedulable(_))));
    }

    #[test]
    fn preferred_node_affinity_and_prefer_no_schedule_steer_the_choice() {
        use k8s_openapi::api::core::v1::{
            Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm,
            PreferredSchedulingTerm,
        };
        let mut cache = Cache::new();
        for (name, zone) in [("a", "a"), ("b", "b")] {
            cache
                .add_node(
                    &NodeBuilder::new(name).cpu("4").memory("8Gi").label("zone", zone).build(),
                )
                .ok();
        }
        let p = pod("p")
            .affinity(Affinity {
                node_affinity: Some(NodeAffinity {
                    preferred_during_scheduling_ignored_during_execution: Some(vec![
                        PreferredSchedulingTerm {
                            weight: 10,
                            preference: NodeSelectorTerm {
                                match_expressions: Some(vec![NodeSelectorRequirement {
                                    key: "zone".into(),
                                    operator: "In".into(),
                                    values: Some(vec!["b".into()]),
                                }]),
                                match_fields: None,
                            },
                        },
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .info();
        for seed in 0..5 {
            let mut s = Scheduler::new(StdRng::seed_from_u64(seed));
            let got = schedule_one(&p, &cache, &Profile::default(), &mut s);
            assert_eq!(got.ok().as_deref(), Some("b"));
        }
        let mut soft = Cache::new();
        soft.add_node(
            &NodeBuilder::new("t")
                .cpu("4")
                .memory("8Gi")
                .taint("x", "", "PreferNoSchedule")
                .build(),
        )
        .ok();
        soft.add_node(&node("u", "4", "8Gi")).ok();
        for seed in 0..5 {
            let mut s = Scheduler::new(StdRng::seed_from_u64(seed));
            let got = schedule_one(&pod("q").info(), &soft, &Profile::default(), &mut s);
            assert_eq!(got.ok().as_deref(), Some("u"));
        }
    }
}
