//! End-to-end tests: the real `kumo up` binary driven by the real `kubectl`, the `kube` crate
#![allow(clippy::unwrap_used)]
//! and plain HTTPS. Each test starts its own cluster on a free port in a temp dir.

mod admission;
mod admission_policies;
mod agent;
mod api_errors;
mod api_kinds;
mod apply_upgrade;
mod conformance;
mod crds;
mod durability;
mod gateway;
mod gateway_crds;
mod harness;
mod kube_client;
mod kubectl_basics;
mod kubectl_deletion;
mod kubectl_edit;
mod replication_controllers;
mod scheduling;
mod server_side_apply;
mod services;
mod storage;
mod volumes;
mod workloads;
