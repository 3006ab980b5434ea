//! The `Store` trait: the seam between the API server and its storage backends.

use crate::{KeyValue, RangeRequest, RangeResponse, Revision, StoreError, WatchEvent};

/// The stream a [`Store::watch`] returns. It ends after an `Err` item (`Compacted` when the
/// watcher fell behind, `Closed` when the store shut down). Dropping it unregisters the watcher.
pub type WatchStream = futures::stream::BoxStream<'static, Result<WatchEvent, StoreError>>;

/// A key-value store with etcd's semantics: one global revision, compare-and-swap writes on
/// `mod_revision`, ordered prefix ranges, and watches that resume from a revision.
///
/// Implementations: [`MemStore`](crate::MemStore) (tests, fakes) and, with the `embedded`
/// feature, `EmbeddedStore` (a redb file). Share one as `Arc<dyn Store>`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key's current value, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys under `req.prefix`, in key order, from one consistent snapshot.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError>;

    /// Creates `key`; `AlreadyExists` if present. Returns the stored kv.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError>;

    /// Replaces `key`'s value. `NotFound` if absent; `Conflict` if `expected` is `Some` and differs
    /// from the current `mod_revision`; `None` writes unconditionally. Returns the stored kv.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError>;

    /// Deletes `key` (same preconditions as [`Store::update`]). Returns the deleted value with
    /// `mod_revision` = the delete's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// Every event under `prefix` with revision > `after`, in revision order, then live ones.
    /// `after == 0` means "from now". An `after` older than the retained history gives
    /// `Err(Compacted)` from this call (not in the stream): the caller must re-list.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Forgets history at or below `revision`; later watches from before it get `Compacted`.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The revision of the last acknowledged write (1 for an empty store). Every event at or
    /// below it has already been handed to the live watchers it concerns, so a watcher whose
    /// stream has nothing ready has seen all of them (the API server's watch bookmarks rely on
    /// this).
    async fn current_revision(&self) -> Result<Revision, StoreError>;
}
