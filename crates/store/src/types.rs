//! The values that cross the [`Store`](crate::Store) seam: key-values, watch events, range
//! requests and responses, and the options both backends share.

/// A position in the store's single, global history.
///
/// Every successful write (create, update, delete) advances it by exactly one. An empty store is
/// at revision 1, so the first write gets revision 2 (as in etcd).
pub type Revision = i64;

/// One key as stored, with the revisions that created and last modified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/pods/default/web-0`.
    pub key: String,
    /// The stored bytes (the serialized object); the store never looks inside.
    pub value: Vec<u8>,
    /// Revision of the write that created this key.
    pub create_revision: Revision,
    /// Revision of the last write to this key (for a deleted value: the delete's revision).
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change, as delivered to watchers.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// Put or Delete.
    pub kind: EventKind,
    /// for Put: the new kv; for Delete: the deleted value with mod_revision = the delete's revision
    pub kv: KeyValue,
    /// The key's value before this write (`None` for a create).
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision of the write that produced this event.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A consistent, ordered read of the keys under a prefix.
#[derive(Debug, Clone, Default)]
pub struct RangeRequest {
    /// Only keys starting with this string (empty = every key).
    pub prefix: String,
    /// return keys strictly greater than this (pagination)
    pub start_after: Option<String>,
    /// 0 = no limit
    pub limit: usize,
}

impl RangeRequest {
    /// Where the range begins: just after `start_after` when that lies at or past the prefix,
    /// else at the prefix itself.
    pub(crate) fn start_bound(&self) -> std::ops::Bound<&str> {
        match self.start_after.as_deref() {
            Some(after) if after >= self.prefix.as_str() => std::ops::Bound::Excluded(after),
            _ => std::ops::Bound::Included(self.prefix.as_str()),
        }
    }
}

/// The answer to a [`RangeRequest`].
#[derive(Debug, Clone)]
pub struct RangeResponse {
    /// The keys found, in ascending key order.
    pub kvs: Vec<KeyValue>,
    /// more keys under the prefix after the last returned
    pub more: bool,
    /// how many keys remain after the returned ones (when cheap; else None)
    pub remaining: Option<u64>,
    /// the store revision this read saw
    pub revision: Revision,
}

/// Tuning shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// events kept in memory for watch resume, default 50_000
    pub history: usize,
    /// The most bytes (keys and values, new and previous) that history may hold, default
    /// 128 MiB: whichever of the two bounds is reached first drops the oldest events. At
    /// 9,000 pods 50,000 events of whole pods (each with its previous version) were a third
    /// of the control plane's memory; a budget in bytes keeps that share fixed as objects grow.
    pub history_bytes: usize,
    /// Events younger than this are not dropped for the byte budget (the event count still
    /// applies), default 75 s as upstream's watch cache: a client that lists and then watches
    /// from the list's revision needs the history to reach back that far.
    pub history_min_age: std::time::Duration,
    /// Events queued per watcher, default 10_000. A watcher that overflows it goes on from the
    /// history once it has read them; only one further behind than the history gets
    /// `Compacted`.
    pub watch_buffer: usize,
    /// The embedded store's page cache in bytes, default 64 MiB. redb's own default (1 GiB)
    /// fills with the pages every commit writes, and made most of the control plane's RSS at
    /// scale; reads past the cache come from the OS page cache, which is not ours to hold.
    pub cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            history: 50_000,
            history_bytes: 128 << 20,
            history_min_age: std::time::Duration::from_secs(75),
            watch_buffer: 10_000,
            cache_bytes: 64 << 20,
        }
    }
}
