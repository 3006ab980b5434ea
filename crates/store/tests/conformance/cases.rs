//! The cases of the `Store` contract. Each takes a factory so it can ask for its own options.

use std::time::Duration;

use futures::StreamExt;
use kumo_store::{
    EventKind, RangeRequest, Revision, StoreError, StoreOptions, WatchEvent, WatchStream,
};

use crate::Harness;

/// Builds a fresh, empty store.
pub type Factory = dyn Fn(StoreOptions) -> Harness;

fn fresh(new: &Factory) -> Harness {
    new(StoreOptions::default())
}

async fn next_event(stream: &mut WatchStream) -> Result<WatchEvent, StoreError> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watch event within 10s")
        .expect("stream still open")
}

async fn assert_no_event(stream: &mut WatchStream) {
    let next = tokio::time::timeout(Duration::from_millis(100), stream.next()).await;
    assert!(next.is_err(), "unexpected watch item: {next:?}");
}

fn keys(kvs: &[kumo_store::KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

pub async fn empty_store_is_at_revision_one(new: &Factory) {
    let store = fresh(new);
    assert_eq!(store.current_revision().await.unwrap(), 1);
    assert_eq!(store.get("/nope").await.unwrap(), None);
}

pub async fn create_then_get_returns_the_stored_kv(new: &Factory) {
    let store = fresh(new);
    let kv = store.create("/a", b"one".to_vec()).await.unwrap();
    assert_eq!((kv.key.as_str(), kv.value.as_slice()), ("/a", &b"one"[..]));
    assert_eq!((kv.create_revision, kv.mod_revision), (2, 2));
    assert_eq!(store.get("/a").await.unwrap(), Some(kv));
}

pub async fn create_of_existing_key_is_already_exists(new: &Factory) {
    let store = fresh(new);
    store.create("/a", b"one".to_vec()).await.unwrap();
    let err = store.create("/a", b"two".to_vec()).await.unwrap_err();
    assert_eq!(err, StoreError::AlreadyExists("/a".into()));
    assert_eq!(store.get("/a").await.unwrap().unwrap().value, b"one");
}

pub async fn update_with_current_revision_succeeds(new: &Factory) {
    let store = fresh(new);
    let created = store.create("/a", b"one".to_vec()).await.unwrap();
    let updated = store.update("/a", b"two".to_vec(), Some(created.mod_revision)).await.unwrap();
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.mod_revision, created.mod_revision + 1);
    assert_eq!(store.get("/a").await.unwrap(), Some(updated));
}

pub async fn update_with_stale_revision_is_conflict(new: &Factory) {
    let store = fresh(new);
    let created = store.create("/a", b"one".to_vec()).await.unwrap();
    let current = store.update("/a", b"two".to_vec(), None).await.unwrap();
    let err = store.update("/a", b"three".to_vec(), Some(created.mod_revision)).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            key: "/a".into(),
            expected: created.mod_revision,
            actual: current.mod_revision
        }
    );
    assert_eq!(store.get("/a").await.unwrap(), Some(current));
}

pub async fn unconditional_update_ignores_revision(new: &Factory) {
    let store = fresh(new);
    store.create("/a", b"one".to_vec()).await.unwrap();
    store.update("/a", b"two".to_vec(), None).await.unwrap();
    let third = store.update("/a", b"three".to_vec(), None).await.unwrap();
    assert_eq!((third.create_revision, third.mod_revision), (2, 4));
}

pub async fn update_of_missing_key_is_not_found(new: &Factory) {
    let store = fresh(new);
    let err = store.update("/a", b"x".to_vec(), None).await.unwrap_err();
    assert_eq!(err, StoreError::NotFound("/a".into()));
    let err = store.delete("/a", None).await.unwrap_err();
    assert_eq!(err, StoreError::NotFound("/a".into()));
}

pub async fn delete_checks_precondition_and_returns_deleted_value(new: &Factory) {
    let store = fresh(new);
    let created = store.create("/a", b"one".to_vec()).await.unwrap();
    let err = store.delete("/a", Some(created.mod_revision + 7)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let deleted = store.delete("/a", Some(created.mod_revision)).await.unwrap();
    assert_eq!(deleted.value, b"one");
    assert_eq!(deleted.create_revision, created.create_revision);
    assert_eq!(deleted.mod_revision, created.mod_revision + 1);
    assert_eq!(store.current_revision().await.unwrap(), deleted.mod_revision);
    assert_eq!(store.get("/a").await.unwrap(), None);
    // The key can be created again, with a new create_revision.
    let again = store.create("/a", b"two".to_vec()).await.unwrap();
    assert_eq!(again.create_revision, deleted.mod_revision + 1);
}

pub async fn range_returns_prefix_in_key_order_with_pagination(new: &Factory) {
    let store = fresh(new);
    for key in ["/p/c", "/p/a", "/q/a", "/p/e", "/p", "/p/b", "/p/d", "/pz"] {
        store.create(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let page = |start_after: Option<&str>| RangeRequest {
        prefix: "/p/".into(),
        start_after: start_after.map(str::to_owned),
        limit: 2,
    };
    let first = store.range(page(None)).await.unwrap();
    assert_eq!(keys(&first.kvs), ["/p/a", "/p/b"]);
    assert!(first.more);
    assert_eq!(first.remaining, Some(3));
    assert_eq!(first.kvs[0].value, b"/p/a");

    let second = store.range(page(Some("/p/b"))).await.unwrap();
    assert_eq!(keys(&second.kvs), ["/p/c", "/p/d"]);
    assert!(second.more);

    let last = store.range(page(Some("/p/d"))).await.unwrap();
    assert_eq!(keys(&last.kvs), ["/p/e"]);
    assert!(!last.more);
    assert!(matches!(last.remaining, None | Some(0)));

    // An exact fit: limit equals what is left.
    let exact = store.range(page(Some("/p/c"))).await.unwrap();
    assert_eq!(keys(&exact.kvs), ["/p/d", "/p/e"]);
    assert!(!exact.more);

    // start_after before the prefix starts at the prefix.
    let before = store.range(page(Some("/a"))).await.unwrap();
    assert_eq!(keys(&before.kvs), ["/p/a", "/p/b"]);
}

pub async fn range_without_limit_returns_everything_and_its_revision(new: &Factory) {
    let store = fresh(new);
    for i in 0..20 {
        store.create(&format!("/k/{i:02}"), vec![i]).await.unwrap();
    }
    let all = store.range(RangeRequest::default()).await.unwrap();
    assert_eq!(all.kvs.len(), 20);
    assert!(!all.more);
    assert!(all.kvs.windows(2).all(|pair| pair[0].key < pair[1].key));
    assert_eq!(all.revision, store.current_revision().await.unwrap());
    assert_eq!(all.revision, 21);
}

pub async fn range_chunks_hand_over_one_snapshot_in_chunks(new: &Factory) {
    let store = fresh(new);
    store.create("/b/outside", vec![0]).await.unwrap();
    for i in 0..25u8 {
        store.create(&format!("/c/{i:02}"), vec![i]).await.unwrap();
    }
    store.create("/d/outside", vec![0]).await.unwrap();
    let before = store.current_revision().await.unwrap();
    let req = RangeRequest { prefix: "/c/".into(), ..RangeRequest::default() };
    let mut read = store.range_chunks(req, 10).await.unwrap();
    assert_eq!(read.revision, before);
    let mut chunks = vec![read.chunks.next().await.unwrap().unwrap()];
    // Writes after the first chunk was taken are in no chunk: the read is one snapshot.
    store.update("/c/24", vec![99], None).await.unwrap();
    store.delete("/c/20", None).await.unwrap();
    store.create("/c/30", vec![30]).await.unwrap();
    while let Some(chunk) = read.chunks.next().await {
        chunks.push(chunk.unwrap());
    }
    assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= 10), "chunks of at most 10");
    let kvs: Vec<_> = chunks.into_iter().flatten().collect();
    let keys: Vec<_> = kvs.iter().map(|kv| kv.key.clone()).collect();
    let want: Vec<_> = (0..25).map(|i| format!("/c/{i:02}")).collect();
    assert_eq!(keys, want);
    assert!(kvs.iter().enumerate().all(|(i, kv)| kv.value == vec![i as u8]));
    assert!(kvs.iter().all(|kv| kv.mod_revision <= before));
}

pub async fn revisions_increase_by_exactly_one_per_successful_write(new: &Factory) {
    let store = fresh(new);
    let a = store.create("/a", vec![]).await.unwrap();
    assert_eq!(a.mod_revision, 2);
    store.create("/a", vec![]).await.unwrap_err(); // failures do not advance the revision
    store.update("/missing", vec![], None).await.unwrap_err();
    let b = store.create("/b", vec![]).await.unwrap();
    assert_eq!(b.mod_revision, 3);
    let a2 = store.update("/a", vec![1], Some(a.mod_revision)).await.unwrap();
    assert_eq!(a2.mod_revision, 4);
    let gone = store.delete("/b", None).await.unwrap();
    assert_eq!(gone.mod_revision, 5);
    assert_eq!(store.current_revision().await.unwrap(), 5);
}

pub async fn watch_replays_history_then_delivers_live_events(new: &Factory) {
    let store = fresh(new);
    let a = store.create("/w/a", b"1".to_vec()).await.unwrap();
    let a2 = store.update("/w/a", b"2".to_vec(), None).await.unwrap();
    let mut stream = store.watch("/w/", a.mod_revision).await.unwrap();

    let replayed = next_event(&mut stream).await.unwrap();
    assert_eq!(replayed.kind, EventKind::Put);
    assert_eq!(replayed.kv, a2);
    assert_eq!(replayed.prev, Some(a.clone()));

    let b = store.create("/w/b", b"b".to_vec()).await.unwrap();
    let live = next_event(&mut stream).await.unwrap();
    assert_eq!((live.kind, live.kv.clone(), live.prev), (EventKind::Put, b, None));

    let deleted = store.delete("/w/a", Some(a2.mod_revision)).await.unwrap();
    let delete = next_event(&mut stream).await.unwrap();
    assert_eq!(delete.kind, EventKind::Delete);
    assert_eq!(delete.kv, deleted);
    assert_eq!(delete.kv.value, b"2");
    assert_eq!(delete.prev, Some(a2));
    assert_no_event(&mut stream).await;
}

pub async fn watch_from_zero_starts_now(new: &Factory) {
    let store = fresh(new);
    store.create("/old", vec![]).await.unwrap();
    let mut stream = store.watch("", 0).await.unwrap();
    let new_kv = store.create("/new", vec![]).await.unwrap();
    assert_eq!(next_event(&mut stream).await.unwrap().kv, new_kv);
}

pub async fn watch_filters_by_prefix(new: &Factory) {
    let store = fresh(new);
    let mut stream = store.watch("/pods/", 0).await.unwrap();
    store.create("/services/x", vec![]).await.unwrap();
    store.create("/pods/x", vec![]).await.unwrap();
    store.create("/podsx", vec![]).await.unwrap();
    store.create("/pods/y", vec![]).await.unwrap();
    assert_eq!(next_event(&mut stream).await.unwrap().kv.key, "/pods/x");
    assert_eq!(next_event(&mut stream).await.unwrap().kv.key, "/pods/y");
    assert_no_event(&mut stream).await;
}

pub async fn watch_after_list_revision_misses_nothing(new: &Factory) {
    let store = fresh(new);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                store.create(&format!("/l/{i:03}"), vec![]).await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let list = store.range(RangeRequest { prefix: "/l/".into(), ..Default::default() }).await;
    let list = list.unwrap();
    let mut stream = store.watch("/l/", list.revision).await.unwrap();
    writer.await.unwrap();
    let mut seen = list.kvs.len();
    let mut last: Revision = list.revision;
    while seen < 200 {
        let event = next_event(&mut stream).await.unwrap();
        assert_eq!(event.kv.mod_revision, last + 1, "gap or duplicate");
        last = event.kv.mod_revision;
        seen += 1;
    }
    assert_no_event(&mut stream).await;
}

pub async fn watch_from_compacted_revision_is_compacted(new: &Factory) {
    let store = fresh(new);
    for i in 0..5 {
        store.create(&format!("/c/{i}"), vec![]).await.unwrap();
    }
    store.compact(4).await.unwrap();
    let err = store.watch("/c/", 3).await.err().expect("compacted");
    assert!(matches!(err, StoreError::Compacted { requested: 3, compacted: 4 }), "{err:?}");
    let mut stream = store.watch("/c/", 4).await.unwrap();
    assert_eq!(next_event(&mut stream).await.unwrap().kv.mod_revision, 5);
    assert_eq!(next_event(&mut stream).await.unwrap().kv.mod_revision, 6);
}

pub async fn watch_before_trimmed_history_is_compacted(new: &Factory) {
    let store = new(StoreOptions { history: 3, ..StoreOptions::default() });
    for i in 0..10 {
        store.create(&format!("/t/{i}"), vec![]).await.unwrap();
    }
    // Revisions 2..=11 written; only 9, 10, 11 are kept.
    assert!(matches!(store.watch("", 7).await, Err(StoreError::Compacted { .. })));
    let mut stream = store.watch("", 8).await.unwrap();
    assert_eq!(next_event(&mut stream).await.unwrap().kv.mod_revision, 9);
}

pub async fn lagging_watcher_goes_on_from_the_history(new: &Factory) {
    let store = new(StoreOptions { watch_buffer: 4, ..StoreOptions::default() });
    let mut stream = store.watch("/lag/", 0).await.unwrap();
    let mut written = Vec::new();
    for i in 0..10 {
        written.push(store.create(&format!("/lag/{i}"), vec![]).await.unwrap().mod_revision);
        store.create(&format!("/other/{i}"), vec![]).await.unwrap();
    }
    // Ten events for a buffer of four: the rest come from the history, none lost or repeated.
    let mut delivered = Vec::new();
    for _ in 0..10 {
        delivered.push(next_event(&mut stream).await.unwrap().kv.mod_revision);
    }
    assert_eq!(delivered, written);
}

pub async fn lagging_watcher_behind_the_history_ends_with_compacted(new: &Factory) {
    let store = new(StoreOptions { watch_buffer: 4, history: 3, ..StoreOptions::default() });
    let mut stream = store.watch("", 0).await.unwrap();
    for i in 0..10 {
        store.create(&format!("/lag/{i}"), vec![]).await.unwrap();
    }
    let mut delivered = 0;
    loop {
        match next_event(&mut stream).await {
            Ok(_) => delivered += 1,
            Err(err) => {
                assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
                break;
            }
        }
    }
    assert!(delivered <= 4, "delivered {delivered} events past a buffer of 4");
    let end = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
    assert!(matches!(end, Ok(None)), "stream must end after Compacted");
}

pub async fn concurrent_creates_from_64_tasks_get_distinct_revisions(new: &Factory) {
    let store = fresh(new);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for j in 0..5 {
                    let kv = store.create(&format!("/cc/{i:02}/{j}"), vec![0; 1024]).await;
                    revisions.push(kv.unwrap().mod_revision);
                }
                revisions
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.extend(task.await.unwrap());
    }
    revisions.sort_unstable();
    let expected: Vec<Revision> = (2..2 + 64 * 5).collect();
    assert_eq!(revisions, expected);
    assert_eq!(store.current_revision().await.unwrap(), 1 + 64 * 5);
    let all = store.range(RangeRequest { prefix: "/cc/".into(), ..Default::default() }).await;
    assert_eq!(all.unwrap().kvs.len(), 64 * 5);
}
