//! Watch: a stream of newline-delimited `WatchEvent`s from the store's watch, filtered by label
//! and field selectors (an object that stops matching is reported DELETED, one that starts
//! matching ADDED), with bookmarks, the initial-events list, Table rendering and a time limit.

use crate::error::ApiError;
use crate::registry::{decode, ListOptions, Registry};
use crate::table::{self, Include, Shape};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use kumo_api::resources::Resource;
use kumo_store::{EventKind, StoreError};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;

pub mod rendered;

/// A watch request, parsed.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// The resource.
    pub resource: Resource,
    /// The namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// Selectors.
    pub opts: ListOptions,
    /// `resourceVersion` (None or "0" = start with the current state).
    pub resource_version: Option<String>,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// Response shape.
    pub shape: Shape,
    /// `includeObject` for tables.
    pub include: Include,
}

const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

fn line(event_type: &str, object: Value) -> Bytes {
    let mut v =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    v.push(b'\n');
    // Rendered lines are kept (the rendered-event cache, every watcher's queue); the buffer
    // grew by doubling, so up to half of it would be spare capacity.
    v.shrink_to_fit();
    Bytes::from(v)
}

fn render(w: &WatchRequest, obj: &Value, first: &mut bool) -> Value {
    match w.shape {
        Shape::Object => obj.clone(),
        Shape::PartialMetadata => table::partial(obj),
        Shape::Table => {
            let t =
                table::table(&w.resource, std::slice::from_ref(obj), w.include, None, None, *first);
            *first = false;
            t
        }
    }
}

fn error_event(e: &ApiError) -> Bytes {
    line("ERROR", e.status())
}

/// Start the watch; the returned channel yields the response body's chunks.
pub fn start(reg: Registry, w: WatchRequest) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(w.timeout);
        tokio::pin!(deadline);
        tokio::select! {
            _ = run(&reg, &w, &tx) => {}
            _ = &mut deadline => {}
            _ = tx.closed() => {}
        }
    });
    rx
}

async fn run(reg: &Registry, w: &WatchRequest, tx: &mpsc::Sender<Result<Bytes, std::io::Error>>) {
    let send = |b: Bytes| async move { tx.send(Ok(b)).await.is_ok() };
    let mut first = true;
    let prefix = match &w.namespace {
        Some(ns) if w.resource.namespaced => format!("{}{ns}/", w.resource.key_prefix()),
        _ => w.resource.key_prefix(),
    };
    let from_now = matches!(w.resource_version.as_deref(), None | Some("") | Some("0"));
    let mut after: i64 = 0;
    if from_now || w.send_initial_events {
        // Start with the current state, as ADDED events, then follow from that revision.
        let mut opts = w.opts.clone();
        opts.limit = 0;
        opts.continue_token = None;
        match reg.list(&w.resource, w.namespace.as_deref(), &opts).await {
            Ok(page) => {
                after = page.revision;
                for obj in &page.items {
                    if !send(line("ADDED", render(w, obj, &mut first))).await {
                        return;
                    }
                }
                if w.send_initial_events && w.bookmarks {
                    let b = json!({"kind": w.resource.kind, "apiVersion": w.resource.api_version(),
                        "metadata": {"resourceVersion": after.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                    if !send(line("BOOKMARK", b)).await {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = send(error_event(&e)).await;
                return;
            }
        }
    }
    if !from_now && !w.send_initial_events {
        match w.resource_version.as_deref().map(str::parse::<i64>) {
            Some(Ok(rv)) => after = rv,
            _ => {
                let e = ApiError::BadRequest("resourceVersion must be an integer".into());
                let _ = send(error_event(&e)).await;
                return;
            }
        }
    }
    let mut stream = match reg.store.watch(&prefix, after).await {
        Ok(s) => s,
        Err(e) => {
            // Each of these costs the client a full re-list: worth counting at scale.
            tracing::info!(resource = %w.resource.plural, after, error = %e, "watch cannot resume");
            let _ = send(error_event(&watch_error(e))).await;
            return;
        }
    };
    let mut last_rev = after;
    // No selector and whole objects: every such watcher of the resource sends the same bytes.
    let plain =
        matches!(w.shape, Shape::Object) && w.opts.labels.is_empty() && w.opts.fields.is_empty();
    let version = w.resource.api_version();
    let mut bookmark =
        tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    // What one store event means for this watch: a line to send, nothing, or the end.
    let mut step =
        |ev: Option<Result<kumo_store::WatchEvent, StoreError>>, last_rev: &mut i64| match ev {
            None => Step::End(None),
            Some(Err(e)) => Step::End(Some(error_event(&watch_error(e)))),
            Some(Ok(ev)) => {
                *last_rev = ev.kv.mod_revision;
                let bytes = if plain {
                    render_plain(reg, w, &version, &ev).ok()
                } else {
                    classify(w, &ev).map(|(kind, obj)| line(kind, render(w, &obj, &mut first)))
                };
                bytes.map_or(Step::Skip, Step::Send)
            }
        };
    loop {
        tokio::select! {
            ev = stream.next() => {
                if !step(ev, &mut last_rev).run(&send).await {
                    return;
                }
            }
            _ = bookmark.tick(), if w.bookmarks => {
                // A bookmark may carry the store's revision, not just the last event this watch
                // saw: every event at or below `current` has been handed to this watch's stream
                // (the store's contract), so once the stream has nothing ready, none of them is
                // still queued. A quiet watch (StorageClasses while pods churn) then resumes from
                // a recent revision instead of one the history has long dropped (a 410 and a
                // re-list every few minutes at scale).
                // `unconstrained`: out of tokio's cooperative budget, a stream with events
                // ready would answer Pending, and the bookmark would pass them.
                let current = reg.store.current_revision().await.unwrap_or(last_rev);
                while let Some(ev) = tokio::task::unconstrained(stream.next()).now_or_never() {
                    if !step(ev, &mut last_rev).run(&send).await {
                        return;
                    }
                }
                let b = json!({"kind": w.resource.kind, "apiVersion": w.resource.api_version(),
                    "metadata": {"resourceVersion": last_rev.max(current).to_string()}});
                if !send(line("BOOKMARK", b)).await {
                    return;
                }
            }
        }
    }
}

/// What [`run`] does with one store event.
enum Step {
    /// Send this line.
    Send(Bytes),
    /// Not for this watcher (a selector, or an object that cannot be decoded).
    Skip,
    /// The watch is over, after this ERROR line if any.
    End(Option<Bytes>),
}

impl Step {
    /// Carries the step out; false when the watch is over.
    async fn run<F, Fut>(self, send: &F) -> bool
    where
        F: Fn(Bytes) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        match self {
            Step::Send(bytes) => send(bytes).await,
            Step::Skip => true,
            Step::End(error) => {
                if let Some(error) = error {
                    let _ = send(error).await;
                }
                false
            }
        }
    }
}

fn watch_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted { requested, compacted } => {
            ApiError::Gone(format!("too old resource version: {requested} ({compacted})"))
        }
        other => other.into(),
    }
}

/// The line of a store event for a watcher without selectors: rendered by the first such
/// watcher, shared with the others. Without selectors the previous value needs no decoding:
/// an update is MODIFIED, a create ADDED.
fn render_plain(
    reg: &Registry,
    w: &WatchRequest,
    version: &str,
    ev: &kumo_store::WatchEvent,
) -> Result<Bytes, ApiError> {
    let kind = match ev.kind {
        EventKind::Put if ev.prev.is_some() => "MODIFIED",
        EventKind::Put => "ADDED",
        EventKind::Delete => "DELETED",
    };
    reg.rendered.get_or_render(ev.kv.mod_revision, &ev.kv.key, version, || {
        decode(&w.resource, &ev.kv).map(|obj| line(kind, obj))
    })
}

/// The event type and object a store event becomes for this watcher, if any.
fn classify(w: &WatchRequest, ev: &kumo_store::WatchEvent) -> Option<(&'static str, Value)> {
    let matches =
        |v: &Value| w.opts.labels.matches(crate::object::labels(v)) && w.opts.fields.matches(v);
    let prev = ev.prev.as_ref().and_then(|kv| decode(&w.resource, kv).ok());
    let prev_matched = prev.as_ref().is_some_and(matches);
    match ev.kind {
        EventKind::Put => {
            let obj = decode(&w.resource, &ev.kv).ok()?;
            let now = matches(&obj);
            match (prev.is_some() && prev_matched, now) {
                (false, true) => Some(("ADDED", obj)),
                (true, true) => Some(("MODIFIED", obj)),
                // It stopped matching: to this watcher it is gone.
                (true, false) => Some(("DELETED", obj)),
                (false, false) => None,
            }
        }
        EventKind::Delete => {
            let obj = decode(&w.resource, &ev.kv).ok()?;
            matches(&obj).then_some(("DELETED", obj))
        }
    }
}
