//! # kumo-sim: hollow nodes and trace-shaped workloads
//!
//! The instrument for measuring kumo at scale, in the spirit of Kubernetes' kubemark and kwok:
//! many simulated nodes in one process against a real control plane, and a workload generator
//! with the shape of a production trace.
//!
//! * [`hollow`]: [`hollow::run`] registers N Nodes (capacity, labels, taints of your choice),
//!   renews their Leases spread evenly over the renewal period, and plays the node agent's
//!   part for the pods bound to them — `Running` and `Ready` after a delay, completion of Job
//!   pods after a duration, failures at a rate, graceful deletion finished — without running
//!   anything. It is cheap by construction: one shared watch of pods, one of nodes, one timer
//!   heap and a bounded pool of API requests for the whole fleet, never a task or a watch per
//!   node. Stopping a share of the nodes (their Leases stop, their pods are abandoned) stages
//!   node failure at scale.
//! * [`workload`]: [`workload::generate`] turns a seed and a pod count into Deployments
//!   (long-running services) and Jobs (batch work that finishes) with many small and few large
//!   requests, a heavy tail of long tasks, priorities and arrival times — the shape Reiss et
//!   al. describe for the Google cluster trace (SoCC 2012). Same seed, same workload.
//!
//! ```text
//!  kumo control plane ◀── register Nodes, Leases (spread over 10 s) ── hollow::nodes
//!        │  watch pods (spec.nodeName != "")                               ▲
//!        ▼                                                                 │ due actions
//!  hollow::pods: timer heap ── start / finish / delete ── request pool ────┘ (status patches,
//!                                                                            deletes)
//! ```
//!
//! ```
//! let spec = kumo_sim::workload::WorkloadSpec { pods: 200, seed: 7, ..Default::default() };
//! let a = kumo_sim::workload::generate(&spec);
//! let b = kumo_sim::workload::generate(&spec);
//! assert_eq!(a.total_pods(), b.total_pods());
//! assert!(a.total_pods() >= 200);
//! ```

pub mod hollow;
pub mod workload;

/// Annotation on a pod (template) that makes a hollow node complete it this many seconds after
/// it started (`Succeeded`, or `Failed` at the configured failure rate). Pods owned by a Job
/// without it complete after the hollow nodes' default duration; other pods run until deleted.
pub const RUN_SECONDS_ANNOTATION: &str = "sim.kumo.dev/run-seconds";

/// Label every hollow Node carries, with the simulator's name as value.
pub const HOLLOW_LABEL: &str = "sim.kumo.dev/hollow";
