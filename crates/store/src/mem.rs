//! `MemStore`: the whole store in a `BTreeMap`, for tests and for other rooms' fakes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::hub::WatchHub;
use crate::op::WriteOp;
use crate::{
    EventKind, KeyValue, RangeRequest, RangeResponse, Revision, Store, StoreError, StoreOptions,
    WatchStream,
};

/// An in-memory [`Store`] with exactly the semantics of the embedded one (revisions,
/// preconditions, watch history, compaction), minus durability. Nothing survives a drop.
///
/// ```
/// use kumo_store::{MemStore, Store};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kumo_store::StoreError> {
/// let store = MemStore::new();
/// let kv = store.create("/registry/pods/default/web", b"{}".to_vec()).await?;
/// assert_eq!(kv.mod_revision, 2);
/// # Ok(()) }
/// ```
pub struct MemStore {
    state: Mutex<MemState>,
    hub: Arc<WatchHub>,
}

struct MemState {
    keys: BTreeMap<String, KeyValue>,
    revision: Revision,
}

impl MemStore {
    /// An empty store at revision 1 with default [`StoreOptions`].
    pub fn new() -> MemStore {
        MemStore::with_options(StoreOptions::default())
    }

    /// An empty store at revision 1.
    pub fn with_options(options: StoreOptions) -> MemStore {
        MemStore {
            state: Mutex::new(MemState { keys: BTreeMap::new(), revision: 1 }),
            hub: WatchHub::new(1, &options),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, op: WriteOp) -> Result<KeyValue, StoreError> {
        let mut state = self.lock();
        let current = state.keys.get(op.key()).cloned();
        let event = op.apply(current, state.revision + 1)?;
        state.revision += 1;
        match event.kind {
            EventKind::Put => state.keys.insert(event.kv.key.clone(), event.kv.clone()),
            EventKind::Delete => state.keys.remove(&event.kv.key),
        };
        let kv = event.kv.clone();
        // Publish while still holding the state lock so events reach the hub in revision order.
        self.hub.publish([event]);
        Ok(kv)
    }
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("MemStore")
            .field("keys", &state.keys.len())
            .field("revision", &state.revision)
            .finish()
    }
}

#[async_trait::async_trait]
impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.lock().keys.get(key).cloned())
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let state = self.lock();
        let start = req.start_bound();
        let mut keys = state
            .keys
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(&req.prefix));
        let limit = if req.limit == 0 { usize::MAX } else { req.limit };
        let kvs: Vec<KeyValue> = keys.by_ref().take(limit).map(|(_, kv)| kv.clone()).collect();
        let remaining = keys.count() as u64;
        Ok(RangeResponse {
            kvs,
            more: remaining > 0,
            remaining: Some(remaining),
            revision: state.revision,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        self.write(WriteOp::Create { key: key.to_owned(), value })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.write(WriteOp::Update { key: key.to_owned(), value, expected })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.write(WriteOp::Delete { key: key.to_owned(), expected })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.hub.watch(prefix, after)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.hub.compact(revision);
        Ok(())
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock().revision)
    }
}
