//! Behaviour only the file-backed store has: durability across reopen.
#![allow(clippy::unwrap_used)] // tests may unwrap
#![cfg(feature = "embedded")]

use futures::StreamExt;
use kumo_store::{EmbeddedStore, RangeRequest, Store, StoreError};

#[tokio::test]
async fn reopen_after_drop_keeps_keys_and_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let (kept, revision) = {
        let store = EmbeddedStore::open(&path).unwrap();
        let kept = store.create("/a", b"one".to_vec()).await.unwrap();
        store.create("/b", b"two".to_vec()).await.unwrap();
        store.delete("/b", None).await.unwrap();
        (kept, store.current_revision().await.unwrap())
    };
    assert_eq!(revision, 4);

    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), revision);
    assert_eq!(store.get("/a").await.unwrap(), Some(kept));
    assert_eq!(store.get("/b").await.unwrap(), None);
    let all = store.range(RangeRequest::default()).await.unwrap();
    assert_eq!((all.kvs.len(), all.revision), (1, revision));
    let next = store.create("/c", vec![]).await.unwrap();
    assert_eq!(next.mod_revision, revision + 1);
}

#[tokio::test]
async fn watch_from_before_a_restart_is_compacted_but_from_now_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.create("/a", vec![]).await.unwrap();
        store.create("/b", vec![]).await.unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    let err = store.watch("", 2).await.err().unwrap();
    assert_eq!(err, StoreError::Compacted { requested: 2, compacted: 3 });
    let mut stream = store.watch("", 3).await.unwrap();
    store.create("/c", vec![]).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().kv.mod_revision, 4);
}

#[tokio::test]
async fn opening_a_file_that_is_already_open_is_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let _first = EmbeddedStore::open(&path).unwrap();
    assert!(matches!(EmbeddedStore::open(&path), Err(StoreError::Backend(_))));
}

#[tokio::test]
async fn a_garbage_file_is_a_backend_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::write(&path, b"this is not a redb file, just some bytes").unwrap();
    assert!(matches!(EmbeddedStore::open(&path), Err(StoreError::Backend(_))));
}

#[tokio::test]
async fn a_page_counts_what_remains_only_up_to_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    let shared = &store;
    let creates =
        (0..1_500).map(|i| async move { shared.create(&format!("/p/{i:05}"), vec![]).await });
    for r in futures::future::join_all(creates).await {
        r.unwrap();
    }
    let page = |start_after: Option<String>| RangeRequest {
        prefix: "/p/".into(),
        start_after,
        limit: 100,
    };
    // 1,400 keys after the first page: too many to count, so the count is left out.
    let first = store.range(page(None)).await.unwrap();
    assert_eq!(first.kvs.len(), 100);
    assert!(first.more);
    assert_eq!(first.remaining, None);
    // 900 after this one: counted exactly.
    let later = store.range(page(Some("/p/00499".into()))).await.unwrap();
    assert_eq!(later.kvs.first().map(|kv| kv.key.as_str()), Some("/p/00500"));
    assert!(later.more);
    assert_eq!(later.remaining, Some(900));
}
