//! A list page read in several chunks reports the revision of its first chunk, through the real
//! registry over a `MemStore` wrapped to write between the chunks (the write a busy store makes
//! at that moment). A later chunk's revision would let a watch started from it miss that write.

use kumo_apiserver::catalog::Catalog;
use kumo_apiserver::registry::{ListOptions, Registry, WriteOptions};
use kumo_store::{
    KeyValue, MemStore, RangeRequest, RangeResponse, Revision, Store, StoreError, WatchStream,
};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A `MemStore` that, on its second range read, first rewrites `key` and records the revision.
struct WritesBetweenChunks {
    inner: MemStore,
    ranges: AtomicUsize,
    key: Mutex<Option<String>>,
    written: Mutex<Option<Revision>>,
}

#[async_trait::async_trait]
impl Store for WritesBetweenChunks {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let key = self.key.lock().expect("lock").clone();
        if let Some(key) = key {
            if self.ranges.fetch_add(1, Ordering::SeqCst) == 1 {
                let kv = self.inner.get(&key).await?.expect("key to rewrite");
                let kv = self.inner.update(&key, kv.value, None).await?;
                *self.written.lock().expect("lock") = Some(kv.mod_revision);
            }
        }
        self.inner.range(req).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.inner.watch(prefix, after).await
    }
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }
}

#[tokio::test]
async fn a_page_read_in_chunks_is_as_of_its_first_chunk() {
    let store = Arc::new(WritesBetweenChunks {
        inner: MemStore::new(),
        ranges: AtomicUsize::new(0),
        key: Mutex::new(None),
        written: Mutex::new(None),
    });
    let reg = Registry::new(store.clone(), Catalog::new());
    let snapshot = reg.catalog.snapshot();
    let namespaces = snapshot.find("", "v1", "namespaces").cloned().expect("namespaces");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    reg.create(&namespaces, None, ns, &WriteOptions::default()).await.expect("namespace");
    let maps = snapshot.find("", "v1", "configmaps").cloned().expect("configmaps");
    // 300 that the selector skips (more than one chunk of 256), then one it matches.
    for i in 0..300 {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("a-{i:03}")}});
        reg.create(&maps, Some("default"), obj, &WriteOptions::default()).await.expect("create");
    }
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "z", "labels": {"app": "x"}}});
    reg.create(&maps, Some("default"), obj, &WriteOptions::default()).await.expect("create");

    *store.key.lock().expect("lock") = Some(maps.key(Some("default"), "a-000"));
    let opts = ListOptions {
        labels: kumo_api::selector::LabelSelector::parse("app=x").expect("selector"),
        limit: 10,
        ..ListOptions::default()
    };
    let page = reg.list(&maps, Some("default"), &opts).await.expect("list");
    assert_eq!(page.items.len(), 1);
    let written = store.written.lock().expect("lock").expect("a write between the chunks");
    assert!(
        page.revision < written,
        "the page says {} but a-000 was rewritten at {written} after its chunk was read",
        page.revision
    );
}
