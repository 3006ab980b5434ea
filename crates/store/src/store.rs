//! The `Store` trait: the seam between the API server and its storage backends.

use crate::{KeyValue, RangeRequest, RangeResponse, Revision, StoreError, WatchEvent};
use futures::StreamExt;

/// The stream a [`Store::watch`] returns. It ends after an `Err` item (`Compacted` when the
/// watcher fell behind, `Closed` when the store shut down). Dropping it unregisters the watcher.
pub type WatchStream = futures::stream::BoxStream<'static, Result<WatchEvent, StoreError>>;

/// What [`Store::range_chunks`] returns: the snapshot's revision, then its keys chunk by chunk.
/// The stream ends after an `Err` item.
pub struct RangeChunks {
    /// The store revision the snapshot is at.
    pub revision: Revision,
    /// The keys, in key order, in chunks handed over as the caller takes them.
    pub chunks: futures::stream::BoxStream<'static, Result<Vec<KeyValue>, StoreError>>,
}

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

    /// Every key under `req.prefix` after `req.start_after` (`req.limit` is not used) from one
    /// consistent snapshot, handed over in chunks of at most `chunk` keys as the caller takes
    /// them: a reader of every pod holds a few chunks of values, not all of them. The default
    /// reads them all with [`Store::range`] and hands them over in chunks (for a store that
    /// holds every value in memory anyway).
    async fn range_chunks(
        &self,
        req: RangeRequest,
        chunk: usize,
    ) -> Result<RangeChunks, StoreError> {
        let page = self.range(RangeRequest { limit: 0, ..req }).await?;
        let mut kvs = page.kvs.into_iter().peekable();
        let chunk = chunk.max(1);
        let chunks = futures::stream::iter(std::iter::from_fn(move || {
            kvs.peek()?;
            Some(Ok(kvs.by_ref().take(chunk).collect()))
        }))
        .boxed();
        Ok(RangeChunks { revision: page.revision, chunks })
    }

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
