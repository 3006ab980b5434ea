//! # kumo-api: the types at the bottom
//!
//! Everything the API server knows about Kubernetes objects that needs no I/O: the catalog of
//! resources ([`resources`]), their schemas ([`schema`]), patches (JSON merge, JSON patch and
//! strategic merge, in [`patch`]), label and field selectors ([`selector`]), defaulting
//! ([`defaults`]), validation ([`validation`]) and server-side printing ([`printers`]), and decoding of protobuf
//! request bodies ([`protobuf`]).
//!
//! Objects travel as `serde_json::Value`: the registry is generic over kinds (custom resources
//! included), and unknown fields must survive a round trip exactly as the client sent them.
//!
//! ```
//! use kumo_api::resources;
//! let deploy = resources::builtin().into_iter().find(|r| r.kind == "Deployment").unwrap();
//! assert_eq!(deploy.key(Some("default"), "web"), "/registry/apps/deployments/default/web");
//! ```
#![warn(missing_docs)]

pub mod cel;
pub mod defaults;
pub mod disruption;
pub mod events;
pub mod hostports;
pub mod limitrange;
pub mod managed;
pub mod patch;
pub mod printers;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod storage;
pub mod validation;
