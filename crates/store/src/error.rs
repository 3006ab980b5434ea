//! The one error type of the store room.

use crate::Revision;

/// Why a store call failed. Precondition failures (`AlreadyExists`, `NotFound`, `Conflict`) are
/// normal outcomes callers map to Kubernetes statuses; `Compacted` tells a watcher to re-list.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StoreError {
    /// A create found the key already present.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// An update or delete found no such key.
    #[error("key {0} not found")]
    NotFound(String),
    /// An update or delete carried a revision that is not the key's current `mod_revision`.
    #[error("key {key}: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key written.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current `mod_revision`.
        actual: Revision,
    },
    /// The requested history is gone (compacted, trimmed, or the watcher fell too far behind).
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        /// The revision the caller asked to resume after.
        requested: Revision,
        /// The oldest revision a watch may resume after now (history up to it is forgotten).
        compacted: Revision,
    },
    /// The storage engine failed (I/O, corruption); the message says where.
    #[error("store backend: {0}")]
    Backend(String),
    /// The store has been shut down.
    #[error("store is closed")]
    Closed,
}
