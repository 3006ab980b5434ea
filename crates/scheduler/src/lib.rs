//! # kumo-scheduler: where pods run (in progress)
//!
//! The pure core of kumo's scheduler, in the shape of Kubernetes' scheduler framework: a node
//! cache with incremental accounting of assumed pods ([`cache`]), a pod's effective requests
//! ([`resources`], [`quantity`]), and filter and score plugins, one file each ([`plugins`]),
//! each a pure function returning a [`Status`] or a score. The profile that orders them, the
//! scheduling loop against the API and the benchmark are the next steps (issue 4).
#![warn(missing_docs)]

pub mod cache;
pub mod plugins;
pub mod pod_info;
pub mod quantity;
pub mod resources;
pub mod selector;
pub mod status;
#[cfg(test)]
pub mod testing;

pub use status::Status;
