//! # kumo-store: where cluster state lives
//!
//! Every object the API server accepts ends up here as bytes under a key such as
//! `/registry/pods/default/web-0`. The store gives those keys etcd's semantics, because the
//! Kubernetes API (resourceVersion, optimistic concurrency, list + watch) is built on them:
//!
//! - one global [`Revision`], advanced by exactly one per successful write (an empty store is at
//!   revision 1, the first write gets 2); each [`KeyValue`] carries the revision that created it
//!   and the one that last modified it — the API server's `resourceVersion`;
//! - writes with preconditions: [`Store::create`] only if absent, [`Store::update`] /
//!   [`Store::delete`] only at an expected `mod_revision` ([`StoreError::Conflict`] otherwise);
//! - ordered, paginated, consistent [`Store::range`] reads ([`RangeRequest`] → [`RangeResponse`]);
//! - [`Store::watch`]: every change under a prefix after a revision, replayed from a bounded
//!   in-memory history, then live; history that is gone yields [`StoreError::Compacted`], the
//!   signal for a client to re-list.
//!
//! ## Main types
//! - [`Store`]: the seam the API server codes against; share one as `Arc<dyn Store>`.
//! - [`MemStore`]: everything in memory; for tests and other rooms' fakes.
//! - `EmbeddedStore` (feature `embedded`, on by default): one redb file; acknowledged writes are
//!   fsynced, and concurrent writes are group-committed by a writer thread into one transaction.
//! - [`StoreOptions`]: watch history length and per-watcher buffer.
//!
//! ## How data enters and leaves
//! Writes enter through `create`/`update`/`delete`, are applied in revision order, and (once
//! durable) are published to the watch hub before the caller hears back. They leave through
//! `get`/`range` (snapshots of the current state) and through watch streams (the changes).
//!
//! ```
//! use futures::StreamExt;
//! use kumo_store::{EventKind, MemStore, RangeRequest, Store};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kumo_store::StoreError> {
//! let store = MemStore::new();
//! let created = store.create("/registry/pods/default/web", b"v1".to_vec()).await?;
//!
//! // List, then watch from the list's revision: nothing is missed in between.
//! let list = store.range(RangeRequest { prefix: "/registry/pods/".into(), ..Default::default() }).await?;
//! let mut changes = store.watch("/registry/pods/", list.revision).await?;
//!
//! // Compare-and-swap on mod_revision.
//! store.update(&created.key, b"v2".to_vec(), Some(created.mod_revision)).await?;
//! let event = changes.next().await.expect("an event")?;
//! assert_eq!(event.kind, EventKind::Put);
//! assert_eq!(event.prev.map(|prev| prev.value), Some(b"v1".to_vec()));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

#[cfg(feature = "embedded")]
mod embedded;
mod error;
mod hub;
mod mem;
mod op;
mod store;
mod types;

#[cfg(feature = "embedded")]
pub use embedded::EmbeddedStore;
pub use error::StoreError;
pub use mem::MemStore;
pub use store::{RangeChunks, Store, WatchStream};
pub use types::{
    EventKind, KeyValue, RangeRequest, RangeResponse, Revision, StoreOptions, WatchEvent,
};
