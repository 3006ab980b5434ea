//! `EmbeddedStore`: the store in one redb file, with group-committed, fsynced writes.
//!
//! Writes go through the writer thread ([`writer`]); reads open their own redb read transaction
//! (a consistent snapshot that never waits for writers); watches come from the in-memory hub.

mod codec;
mod writer;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};

use self::codec::{backend, decode, KEYS, META, REVISION};
use self::writer::Writer;
use crate::hub::WatchHub;
use crate::op::WriteOp;
use crate::{
    KeyValue, RangeChunks, RangeRequest, RangeResponse, Revision, Store, StoreError, StoreOptions,
    WatchStream,
};
use futures::StreamExt;

/// A [`Store`] kept in a redb file. An acknowledged write has been fsynced; concurrent writes
/// share one transaction and one fsync. Watch history lives in memory only, so after a restart
/// watching from any older revision gives `Compacted` and clients re-list.
///
/// ```no_run
/// use kumo_store::{EmbeddedStore, Store};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kumo_store::StoreError> {
/// let store = EmbeddedStore::open(std::path::Path::new("/var/lib/kumo/store.redb"))?;
/// store.create("/registry/namespaces/default", b"{}".to_vec()).await?;
/// # Ok(()) }
/// ```
pub struct EmbeddedStore {
    // Declared first so it drops (and joins the writer thread) before the rest.
    writer: Writer,
    db: Arc<Database>,
    hub: Arc<WatchHub>,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path` with default [`StoreOptions`].
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the store file at `path`; every key and the revision counter come back.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<EmbeddedStore, StoreError> {
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(path)
            .map_err(backend("open store file"))?;
        let revision = initialize(&db)?;
        tracing::info!(path = %path.display(), revision, "store opened");
        let db = Arc::new(db);
        let hub = WatchHub::new(revision, &options);
        let writer = Writer::spawn(Arc::clone(&db), Arc::clone(&hub), revision)?;
        Ok(EmbeddedStore { writer, db, hub, path: path.to_owned() })
    }
}

/// Creates the tables if absent and returns the last committed revision.
fn initialize(db: &Database) -> Result<Revision, StoreError> {
    let txn = db.begin_write().map_err(backend("begin write"))?;
    let revision = {
        txn.open_table(KEYS).map_err(backend("open keys table"))?;
        let mut meta = txn.open_table(META).map_err(backend("open meta table"))?;
        let stored = meta.get(REVISION).map_err(backend("read revision"))?.map(|rev| rev.value());
        match stored {
            Some(revision) => revision,
            None => {
                meta.insert(REVISION, 1).map_err(backend("write revision"))?;
                1
            }
        }
    };
    txn.commit().map_err(backend("commit"))?;
    Ok(revision)
}

/// A read snapshot of the store: its revision and its keys (the table keeps the read
/// transaction open).
fn snapshot(db: &Database) -> Result<(Revision, Keys), StoreError> {
    let txn = db.begin_read().map_err(backend("begin read"))?;
    let meta = txn.open_table(META).map_err(backend("open meta table"))?;
    let revision =
        meta.get(REVISION).map_err(backend("read revision"))?.map_or(1, |rev| rev.value());
    let keys = txn.open_table(KEYS).map_err(backend("open keys table"))?;
    Ok((revision, keys))
}

type Keys = redb::ReadOnlyTable<&'static str, &'static [u8]>;
type Entry = (redb::AccessGuard<'static, &'static str>, redb::AccessGuard<'static, &'static [u8]>);

/// The stored entries under `req`'s prefix from where `req` starts, in key order.
fn prefix_entries<'r>(
    keys: &Keys,
    req: &'r RangeRequest,
) -> Result<impl Iterator<Item = Result<Entry, StoreError>> + 'r, StoreError> {
    let entries =
        keys.range::<&str>((req.start_bound(), Bound::Unbounded)).map_err(backend("range"))?;
    Ok(entries.map(|entry| entry.map_err(backend("range"))).take_while(
        |entry| !matches!(entry, Ok((key, _)) if !key.value().starts_with(&req.prefix)),
    ))
}

/// One consistent read of a prefix (runs on a blocking thread).
fn range_blocking(db: &Database, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
    let (revision, keys) = snapshot(db)?;
    let limit = if req.limit == 0 { usize::MAX } else { req.limit };
    let mut kvs = Vec::new();
    let mut remaining = 0u64;
    let mut counted_all = true;
    for entry in prefix_entries(&keys, req)? {
        let (key, record) = entry?;
        if kvs.len() < limit {
            kvs.push(decode(key.value(), record.value())?);
        } else {
            remaining += 1;
            if remaining > REMAINING_COUNT_MAX {
                counted_all = false;
                break;
            }
        }
    }
    let counted = counted_all.then_some(remaining);
    Ok(RangeResponse { kvs, more: remaining > 0, remaining: counted, revision })
}

/// Reads a prefix from one read transaction, sending it to `chunks` `chunk` keys at a time;
/// the snapshot's revision goes to `revision` first. Runs on a blocking thread, which waits
/// while the reader has a chunk it has not taken, and stops when the reader is gone.
fn range_chunks_blocking(
    db: &Database,
    req: &RangeRequest,
    chunk: usize,
    revision: tokio::sync::oneshot::Sender<Result<Revision, StoreError>>,
    chunks: &tokio::sync::mpsc::Sender<Result<Vec<KeyValue>, StoreError>>,
) {
    let keys = match snapshot(db) {
        Ok((rev, keys)) => {
            if revision.send(Ok(rev)).is_err() {
                return;
            }
            keys
        }
        Err(err) => {
            let _ = revision.send(Err(err));
            return;
        }
    };
    let read = (|| {
        let mut kvs = Vec::with_capacity(chunk);
        for entry in prefix_entries(&keys, req)? {
            let (key, record) = entry?;
            kvs.push(decode(key.value(), record.value())?);
            if kvs.len() >= chunk {
                let full = std::mem::replace(&mut kvs, Vec::with_capacity(chunk));
                if chunks.blocking_send(Ok(full)).is_err() {
                    return Ok(());
                }
            }
        }
        if !kvs.is_empty() {
            let _ = chunks.blocking_send(Ok(kvs));
        }
        Ok(())
    })();
    if let Err(err) = read {
        let _ = chunks.blocking_send(Err(err));
    }
}

/// How many chunks of a [`Store::range_chunks`] read are read ahead of its reader.
const READ_AHEAD: usize = 4;

/// How many keys past a page are counted for `remaining` (a list's `remainingItemCount`, an
/// estimate that clients must not rely on; beyond this it is left out). Counting every key made
/// each page of a paginated list walk the rest of the range (150,000 pods in pages of 500:
/// 300 pages walking 75,000 keys on average), so a reflector's list took longer than the watch
/// history lasted and it listed again and again (docs/adr/0016).
const REMAINING_COUNT_MAX: u64 = 1_000;

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        // A point read is a few cached page lookups: cheap enough to do inline.
        let txn = self.db.begin_read().map_err(backend("begin read"))?;
        let keys = txn.open_table(KEYS).map_err(backend("open keys table"))?;
        match keys.get(key).map_err(backend("read key"))? {
            Some(record) => decode(key, record.value()).map(Some),
            None => Ok(None),
        }
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || range_blocking(&db, &req))
            .await
            .map_err(backend("range task"))?
    }

    async fn range_chunks(
        &self,
        req: RangeRequest,
        chunk: usize,
    ) -> Result<RangeChunks, StoreError> {
        let db = Arc::clone(&self.db);
        let chunk = chunk.max(1);
        let (rev_tx, rev_rx) = tokio::sync::oneshot::channel();
        // Up to four chunks wait in the channel: a reader that filters most values out, and
        // gets the CPU late on a busy server, then finds several ready rather than waiting
        // on this thread once per chunk (with one waiting, selector lists were several times
        // slower under the scale benchmark's load; ADR 0018).
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || range_chunks_blocking(&db, &req, chunk, rev_tx, &tx));
        let revision =
            rev_rx.await.map_err(|_| StoreError::Backend("range task ended".into()))??;
        let chunks =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
            )
            .boxed();
        Ok(RangeChunks { revision, chunks })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        self.writer.submit(WriteOp::Create { key: key.to_owned(), value }).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.writer.submit(WriteOp::Update { key: key.to_owned(), value, expected }).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.writer.submit(WriteOp::Delete { key: key.to_owned(), expected }).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.hub.watch(prefix, after)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        // Only the latest version of each key is stored, so compaction is history-only.
        self.hub.compact(revision);
        Ok(())
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.hub.current_revision())
    }
}
