//! # kumo-scheduler: which node runs each pod
//!
//! This room decides placement, the way kube-scheduler does, and nothing else. Its core is
//! pure (no I/O, no async); [`runner::run`] is the API-facing loop that feeds it Pods and Nodes
//! from watches, keeps the [`SchedulingQueue`], and writes back bindings and failure reports.
//!
//! * [`Cache`] holds one [`NodeInfo`] per node with incremental accounting of the pods on it;
//!   a pod is **assumed** (counted) the moment a node is chosen, before its binding is
//!   confirmed, so consecutive decisions never over-commit a node.
//! * [`plugins`] are pure functions: filters answer "may the pod run here?" with a
//!   [`Status`], scores rank the nodes that may.
//! * A [`Profile`] (selected by `spec.schedulerName`) picks the strategy — **spread**
//!   (LeastAllocated) or **binpack** (MostAllocated) — and the score weights;
//!   [`profile::parse_config`] reads them from a `KubeSchedulerConfiguration`-like file.
//! * [`schedule_one`] runs the pipeline pre-filter → filter → score → select for one pod and
//!   returns a node name or a [`FitError`] worded like upstream's.
//!
//! ```
//! use std::sync::Arc;
//! use kumo_scheduler::{schedule_and_assume, testing, Cache, Profile, Scheduler};
//! use rand::{rngs::StdRng, SeedableRng};
//!
//! let mut cache = Cache::new();
//! cache.add_node(&testing::node("n1", "4", "8Gi")).expect("valid node");
//! let pod = Arc::new(testing::pod("web").cpu("3").info());
//! let mut scheduler = Scheduler::new(StdRng::seed_from_u64(1));
//! let profile = Profile::default();
//! let node = schedule_and_assume(pod, &mut cache, &profile, &mut scheduler);
//! assert_eq!(node.ok().as_deref(), Some("n1"));
//!
//! let too_big = Arc::new(testing::pod("big").cpu("3").info());
//! let err = schedule_and_assume(too_big, &mut cache, &profile, &mut scheduler);
//! assert_eq!(
//!     err.err().map(|e| e.to_string()).as_deref(),
//!     Some("0/1 nodes are available: 1 Insufficient cpu.")
//! );
//! ```
//!
//! See `README.md` in this crate for the data flow, a glossary and a file map.

#![warn(missing_docs)]

pub mod cache;
pub mod plugins;
pub mod pod_info;
pub mod preemption;
pub mod profile;
pub use kumo_api::quantity;
pub mod queue;
pub mod resources;
pub mod runner;
pub mod schedule;
pub mod selector;
pub mod status;
pub mod testing;

pub use cache::{Cache, CacheError, NodeInfo};
pub use pod_info::PodInfo;
pub use profile::{parse_config, Profile, ScoringStrategy};
pub use queue::{QueuedPod, SchedulingQueue};
pub use runner::run;
pub use schedule::{schedule_and_assume, schedule_one, FitError, ScheduleError, Scheduler};
pub use status::{Code, Status};
