//! Watch bookmarks through the real registry over a `MemStore` (tokio's clock paused, so the
//! 30 s bookmark interval passes at once): a quiet watch's bookmark moves with the store's
//! revision, and no bookmark ever passes an event that the watch has yet to send.

use kumo_apiserver::catalog::Catalog;
use kumo_apiserver::registry::{ListOptions, Registry, WriteOptions};
use kumo_apiserver::table::{Include, Shape};
use kumo_apiserver::watch::{self, WatchRequest};
use kumo_store::MemStore;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn registry() -> Registry {
    Registry::new(Arc::new(MemStore::new()), Catalog::new())
}

fn resource(reg: &Registry, group: &str, plural: &str) -> kumo_api::resources::Resource {
    reg.catalog
        .snapshot()
        .resources
        .iter()
        .find(|r| r.group == group && r.plural == plural)
        .cloned()
        .unwrap_or_else(|| panic!("{plural}.{group} is not served"))
}

async fn create_namespace(reg: &Registry, name: &str) -> i64 {
    let ns = resource(reg, "", "namespaces");
    let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let written = reg.create(&ns, None, obj, &WriteOptions::default()).await.expect("namespace");
    rv(&written.object)
}

async fn create_storage_class(reg: &Registry, name: &str) -> i64 {
    let sc = resource(reg, "storage.k8s.io", "storageclasses");
    let obj = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name}, "provisioner": "example.com/none"});
    let written = reg.create(&sc, None, obj, &WriteOptions::default()).await.expect("class");
    rv(&written.object)
}

fn rv(obj: &Value) -> i64 {
    obj["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).expect("rv")
}

/// A watch of StorageClasses with bookmarks, resuming after `after`.
fn watch_classes(
    reg: &Registry,
    after: i64,
) -> tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>> {
    let w = WatchRequest {
        resource: resource(reg, "storage.k8s.io", "storageclasses"),
        namespace: None,
        opts: ListOptions::default(),
        resource_version: Some(after.to_string()),
        send_initial_events: false,
        bookmarks: true,
        timeout: Duration::from_secs(3600),
        shape: Shape::Object,
        include: Include::Metadata,
    };
    watch::start(reg.clone(), w)
}

/// The next event line of the watch: (type, resourceVersion).
async fn next_event(
    rx: &mut tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> (String, i64) {
    let chunk = rx.recv().await.expect("watch open").expect("chunk");
    let event: Value = serde_json::from_slice(&chunk).expect("one JSON event per chunk");
    (event["type"].as_str().unwrap_or_default().to_string(), rv(&event["object"]))
}

#[tokio::test(start_paused = true)]
async fn a_quiet_watch_bookmarks_the_store_revision() {
    let reg = registry();
    let start = create_storage_class(&reg, "quiet").await;
    let mut rx = watch_classes(&reg, start);
    let mut last = start;
    for i in 0..5 {
        last = create_namespace(&reg, &format!("busy-{i}")).await;
    }
    // Creating a namespace may write more than the namespace: the store's revision is the mark.
    let current = reg.store.current_revision().await.expect("revision");
    assert!(current >= last && last > start);
    let (kind, bookmark) = next_event(&mut rx).await;
    assert_eq!(kind, "BOOKMARK");
    assert_eq!(
        bookmark, current,
        "the bookmark carries the store's revision, not the watch's start"
    );
    // Resuming from it misses nothing: the next class arrives.
    let added = create_storage_class(&reg, "next").await;
    let mut resumed = watch_classes(&reg, bookmark);
    assert_eq!(next_event(&mut resumed).await, ("ADDED".to_string(), added));
}

#[tokio::test(start_paused = true)]
async fn a_bookmark_never_passes_an_event_still_to_be_sent() {
    let reg = registry();
    let start = create_storage_class(&reg, "first").await;
    let mut rx = watch_classes(&reg, start);
    let mut sent = Vec::new();
    // Each round lets the watch catch up and wait, writes classes and namespaces while it
    // cannot run (a current-thread runtime), then moves the clock to its bookmark tick: the
    // tick and the queued events are ready together, and the watch's loop may take either
    // first. Each bookmark must be at or after every event sent before it and before every
    // event sent after it.
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_secs(29)).await;
        for i in 0..3 {
            sent.push(create_storage_class(&reg, &format!("c-{round}-{i}")).await);
            create_namespace(&reg, &format!("n-{round}-{i}")).await;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    let mut events = Vec::new();
    let mut bookmarks = Vec::new();
    while events.len() < sent.len() || bookmarks.len() < ROUNDS {
        let (kind, rv) = next_event(&mut rx).await;
        if kind == "BOOKMARK" {
            assert!(events.iter().all(|e| *e <= rv), "bookmark {rv} before an event it passed");
            bookmarks.push(rv);
        } else {
            assert!(bookmarks.iter().all(|b| *b < rv), "event {rv} after a bookmark past it");
            events.push(rv);
        }
    }
    assert_eq!(events, sent, "every class once, in order");
}
