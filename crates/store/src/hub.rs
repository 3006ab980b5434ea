//! The watch hub: a bounded history of recent events plus the live watchers, shared by every
//! backend.
//!
//! A backend calls [`WatchHub::publish`] with each committed batch, in revision order and before
//! acknowledging the writes. Registration ([`WatchHub::watch`]) and publishing take the same lock,
//! so a new watcher's history replay and its live subscription meet exactly: no event is missed or
//! delivered twice.
//!
//! Events are kept as `Arc<WatchEvent>`: publishing to N watchers costs N pointer copies under the
//! lock; each watcher clones its events out when it reads them.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::mpsc;

use crate::{Revision, StoreError, StoreOptions, WatchEvent, WatchStream};

/// History and watchers behind one lock.
pub(crate) struct WatchHub {
    state: Mutex<HubState>,
    watch_buffer: usize,
}

struct HubState {
    /// The most recent events, oldest first, contiguous in revision, with when each was
    /// published.
    history: VecDeque<(Instant, Arc<WatchEvent>)>,
    /// How many events `history` keeps.
    capacity: usize,
    /// How many bytes `history` keeps, and holds now (see [`event_bytes`]).
    capacity_bytes: usize,
    bytes: usize,
    /// Events younger than this are kept whatever their bytes (not beyond `capacity`).
    min_age: Duration,
    /// Every revision at or below this one is forgotten.
    compacted: Revision,
    /// The revision of the last published event.
    current: Revision,
    watchers: Vec<Watcher>,
    next_id: u64,
}

struct Watcher {
    id: u64,
    prefix: String,
    /// Only events with a revision above this one (a watch may start ahead of the hub when its
    /// `after` came from a read that saw a commit not yet published).
    after: Revision,
    tx: mpsc::Sender<Arc<WatchEvent>>,
    /// Set when the watcher fell behind; its stream yields it after the buffered events.
    lagged: Arc<OnceLock<StoreError>>,
}

impl WatchHub {
    /// A hub for a store at `current`; nothing before it can be watched.
    pub(crate) fn new(current: Revision, options: &StoreOptions) -> Arc<WatchHub> {
        Arc::new(WatchHub {
            state: Mutex::new(HubState {
                history: VecDeque::new(),
                capacity: options.history,
                capacity_bytes: options.history_bytes,
                bytes: 0,
                min_age: options.history_min_age,
                compacted: current,
                current,
                watchers: Vec::new(),
                next_id: 0,
            }),
            watch_buffer: options.watch_buffer.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock leaves the state consistent enough to keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The revision of the last published event.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub(crate) fn current_revision(&self) -> Revision {
        self.lock().current
    }

    /// Appends committed events (in revision order) to the history and hands them to watchers.
    pub(crate) fn publish(&self, events: impl IntoIterator<Item = WatchEvent>) {
        let mut state = self.lock();
        let now = Instant::now();
        for event in events {
            let event = Arc::new(event);
            let revision = event.revision();
            debug_assert!(revision > state.current, "events must be published in revision order");
            state.current = revision;
            state.bytes += event_bytes(&event);
            state.history.push_back((now, Arc::clone(&event)));
            while state.over_budget(now) {
                match state.history.pop_front() {
                    Some((_, old)) => {
                        state.compacted = old.revision();
                        state.bytes -= event_bytes(&old);
                    }
                    None => break,
                }
            }
            if state.history.is_empty() {
                state.compacted = revision;
            }
            state.watchers.retain(|watcher| watcher.offer(&event));
        }
    }

    /// Forgets history at or below `revision` (clamped to the current revision).
    pub(crate) fn compact(&self, revision: Revision) {
        let mut state = self.lock();
        let revision = revision.min(state.current);
        if revision <= state.compacted {
            return;
        }
        while state.history.front().is_some_and(|(_, event)| event.revision() <= revision) {
            if let Some((_, old)) = state.history.pop_front() {
                state.bytes -= event_bytes(&old);
            }
        }
        state.compacted = revision;
    }

    /// Registers a watcher for events under `prefix` with revision > `after` (0 = from now).
    pub(crate) fn watch(
        self: &Arc<Self>,
        prefix: &str,
        after: Revision,
    ) -> Result<WatchStream, StoreError> {
        Ok(Box::pin(self.register(prefix, after)?))
    }

    fn register(
        self: &Arc<Self>,
        prefix: &str,
        after: Revision,
    ) -> Result<WatchReceiver, StoreError> {
        let mut state = self.lock();
        let after = if after == 0 { state.current } else { after };
        if after < state.compacted {
            return Err(StoreError::Compacted { requested: after, compacted: state.compacted });
        }
        // History is in revision order, so find the first wanted event by binary search.
        let start = state.history.partition_point(|(_, event)| event.revision() <= after);
        let replay: VecDeque<_> = state
            .history
            .range(start..)
            .filter(|(_, event)| event.kv.key.starts_with(prefix))
            .map(|(_, event)| Arc::clone(event))
            .collect();
        let (tx, rx) = mpsc::channel(self.watch_buffer);
        let lagged = Arc::new(OnceLock::new());
        let id = state.next_id;
        state.next_id += 1;
        state.watchers.push(Watcher {
            id,
            prefix: prefix.to_owned(),
            after,
            tx,
            lagged: Arc::clone(&lagged),
        });
        Ok(WatchReceiver {
            replay,
            rx,
            lagged,
            hub: Arc::downgrade(self),
            id,
            prefix: prefix.to_owned(),
            done: false,
        })
    }

    fn unregister(&self, id: u64) {
        self.lock().watchers.retain(|watcher| watcher.id != id);
    }

    #[cfg(test)]
    fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }
}

impl HubState {
    /// Whether the oldest event must go: always past the event count; past the byte budget
    /// only once it is `min_age` old, so that a client that lists and then watches has that
    /// long to do so however busy the store is (upstream's watch cache keeps 75 s of events
    /// for the same reason). Without it, 5,000 hollow nodes' writes turned the 128 MiB
    /// over in well under a minute, less than a reflector took to list every pod, and the
    /// scheduler listed again and again.
    fn over_budget(&self, now: Instant) -> bool {
        if self.history.len() > self.capacity {
            return true;
        }
        self.bytes > self.capacity_bytes
            && self.history.front().is_some_and(|(at, _)| now.duration_since(*at) >= self.min_age)
    }
}

/// What one event of history holds, for the byte budget.
fn event_bytes(event: &WatchEvent) -> usize {
    let kv = |kv: &crate::KeyValue| kv.key.len() + kv.value.len();
    std::mem::size_of::<WatchEvent>() + kv(&event.kv) + event.prev.as_ref().map_or(0, kv)
}

impl Watcher {
    /// Delivers `event` if it concerns this watcher; returns false when the watcher must go.
    fn offer(&self, event: &Arc<WatchEvent>) -> bool {
        if event.revision() <= self.after || !event.kv.key.starts_with(&self.prefix) {
            return !self.tx.is_closed();
        }
        match self.tx.try_send(Arc::clone(event)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Its channel is full: stop feeding it rather than let one slow reader hold
                // memory for everyone. Once it has read what the channel holds, it goes on
                // from the history (see `WatchReceiver`), or ends with Compacted if the
                // history no longer reaches back to `dropped`.
                let dropped = event.revision();
                tracing::info!(prefix = %self.prefix, revision = dropped, "watcher overflowed its channel");
                let _ = self
                    .lagged
                    .set(StoreError::Compacted { requested: dropped - 1, compacted: dropped });
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The consumer side of one watcher: first the replayed history, then the live channel.
///
/// A watcher whose channel overflowed (the hub stopped feeding it) reads what the channel
/// holds and then registers again from the history, as a new watch from its last revision
/// would: a burst longer than the channel costs nothing while the history still reaches
/// back. Only a watcher further behind than the history ends, with `Compacted`. At 5,000 hollow
/// nodes the scheduler's pod watch overflowed its 10,000 events, and each overflow cost a
/// re-list of about 100,000 pods (docs/adr/0017).
struct WatchReceiver {
    replay: VecDeque<Arc<WatchEvent>>,
    rx: mpsc::Receiver<Arc<WatchEvent>>,
    lagged: Arc<OnceLock<StoreError>>,
    hub: Weak<WatchHub>,
    id: u64,
    prefix: String,
    done: bool,
}

impl WatchReceiver {
    /// After the channel is drained: the stream's error, or `Ok` once registered again.
    fn resume(&mut self) -> Result<(), StoreError> {
        let lagged = self.lagged.get().cloned();
        let hub = self.hub.upgrade();
        match (lagged, hub) {
            (Some(StoreError::Compacted { requested, .. }), Some(hub)) => {
                let fresh = hub.register(&self.prefix, requested.max(1)).inspect_err(|err| {
                    tracing::warn!(prefix = %self.prefix, error = %err, "watcher fell behind the history");
                })?;
                // The old registration is already gone from the hub; dropping it is a no-op.
                drop(std::mem::replace(self, fresh));
                Ok(())
            }
            (Some(err), _) => Err(err),
            (None, _) => Err(StoreError::Closed),
        }
    }
}

impl Stream for WatchReceiver {
    type Item = Result<WatchEvent, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if let Some(event) = self.replay.pop_front() {
                return Poll::Ready(Some(Ok(Arc::unwrap_or_clone(event))));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    return Poll::Ready(Some(Ok(Arc::unwrap_or_clone(event))));
                }
                // The hub dropped our sender: we overflowed, or the store went away.
                Poll::Ready(None) => {
                    if let Err(err) = self.resume() {
                        self.done = true;
                        return Poll::Ready(Some(Err(err)));
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for WatchReceiver {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.unregister(self.id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{EventKind, KeyValue};
    use futures::StreamExt;

    fn put(key: &str, revision: Revision) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.into(),
                value: vec![],
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        }
    }

    fn hub(history: usize, watch_buffer: usize) -> Arc<WatchHub> {
        WatchHub::new(1, &StoreOptions { history, watch_buffer, ..StoreOptions::default() })
    }

    async fn revisions(stream: &mut WatchStream, n: usize) -> Vec<Revision> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(stream.next().await.unwrap().unwrap().revision());
        }
        out
    }

    #[tokio::test]
    async fn replays_history_then_live_events_without_gap_or_duplicate() {
        let hub = hub(100, 100);
        hub.publish([put("/a", 2), put("/a", 3)]);
        let mut stream = hub.watch("/a", 2).unwrap();
        hub.publish([put("/a", 4)]);
        assert_eq!(revisions(&mut stream, 2).await, vec![3, 4]);
    }

    #[tokio::test]
    async fn filters_by_prefix() {
        let hub = hub(100, 100);
        let mut stream = hub.watch("/a/", 0).unwrap();
        hub.publish([put("/b/x", 2), put("/a/x", 3), put("/ab", 4), put("/a/y", 5)]);
        assert_eq!(revisions(&mut stream, 2).await, vec![3, 5]);
    }

    #[tokio::test]
    async fn trimmed_history_reports_compacted() {
        let hub = hub(2, 100);
        hub.publish([put("/a", 2), put("/a", 3), put("/a", 4)]);
        assert!(hub.watch("", 2).is_ok());
        let err = hub.watch("", 1).err().unwrap();
        assert_eq!(err, StoreError::Compacted { requested: 1, compacted: 2 });
    }

    #[tokio::test]
    async fn history_over_its_byte_budget_drops_the_oldest_events() {
        let big = |revision| WatchEvent {
            prev: Some(KeyValue { value: vec![b'p'; 500], ..put("/a", revision).kv }),
            kv: KeyValue { value: vec![b'v'; 500], ..put("/a", revision).kv },
            ..put("/a", revision)
        };
        let one = event_bytes(&big(2));
        let options = StoreOptions {
            history: 100,
            history_bytes: 2 * one + one / 2,
            history_min_age: Duration::ZERO,
            ..StoreOptions::default()
        };
        let hub = WatchHub::new(1, &options);
        hub.publish([big(2), big(3), big(4), big(5)]);
        // Two events fit: 4 and 5; resuming after 3 works, after 2 does not.
        assert!(matches!(hub.watch("", 2), Err(StoreError::Compacted { compacted: 3, .. })));
        let mut stream = hub.watch("", 3).unwrap();
        assert_eq!(revisions(&mut stream, 2).await, vec![4, 5]);
        hub.compact(4);
        assert_eq!(hub.lock().bytes, one, "compaction gives back the bytes it drops");
    }

    #[tokio::test]
    async fn the_byte_budget_keeps_events_younger_than_the_minimum_age() {
        let big = |revision| WatchEvent {
            kv: KeyValue { value: vec![b'v'; 1000], ..put("/a", revision).kv },
            ..put("/a", revision)
        };
        let one = event_bytes(&big(2));
        let options = StoreOptions {
            history: 3,
            history_bytes: one,
            history_min_age: Duration::from_secs(3600),
            ..StoreOptions::default()
        };
        let hub = WatchHub::new(1, &options);
        hub.publish([big(2), big(3), big(4)]);
        // Over the byte budget three times, but young: all three stay.
        let mut stream = hub.watch("", 1).unwrap();
        assert_eq!(revisions(&mut stream, 3).await, vec![2, 3, 4]);
        // The event count still bounds them.
        hub.publish([big(5)]);
        assert!(matches!(hub.watch("", 1), Err(StoreError::Compacted { compacted: 2, .. })));
    }

    #[tokio::test]
    async fn a_slow_watcher_that_overflows_again_and_again_sees_every_event_once_in_order() {
        // A channel of 8 and a history of 100,000: the reader falls behind many times and
        // always goes on from the history.
        let hub = hub(100_000, 8);
        let mut stream = hub.watch("/a/", 0).unwrap();
        let publisher = {
            let hub = Arc::clone(&hub);
            tokio::spawn(async move {
                let mut revision = 1;
                let mut wanted = Vec::new();
                for round in 0..2_000u64 {
                    let batch: Vec<_> = (0..(round % 7 + 1))
                        .map(|i| {
                            revision += 1;
                            let key = if (round + i) % 3 == 0 { "/b/x" } else { "/a/x" };
                            if key == "/a/x" {
                                wanted.push(revision);
                            }
                            put(key, revision)
                        })
                        .collect();
                    hub.publish(batch);
                    if round % 5 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                wanted
            })
        };
        let mut seen = Vec::new();
        // Read until the stream has been quiet for a while (the publisher is done by then).
        while let Ok(event) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await
        {
            match event {
                Some(Ok(event)) => seen.push(event.revision()),
                _ => panic!("the stream ended or failed"),
            }
        }
        let wanted = publisher.await.unwrap();
        assert!(hub.lock().history.len() > 1_000);
        assert_eq!(seen, wanted);
    }

    #[tokio::test]
    async fn compact_forgets_history_at_or_below_revision() {
        let hub = hub(100, 100);
        hub.publish([put("/a", 2), put("/a", 3), put("/a", 4)]);
        hub.compact(3);
        assert!(matches!(hub.watch("", 2), Err(StoreError::Compacted { compacted: 3, .. })));
        let mut stream = hub.watch("", 3).unwrap();
        assert_eq!(revisions(&mut stream, 1).await, vec![4]);
    }

    #[tokio::test]
    async fn watch_ahead_of_hub_skips_events_up_to_after() {
        let hub = hub(100, 100);
        let mut stream = hub.watch("", 3).unwrap();
        hub.publish([put("/a", 2), put("/a", 3), put("/a", 4)]);
        assert_eq!(revisions(&mut stream, 1).await, vec![4]);
    }

    #[tokio::test]
    async fn an_overflowed_watcher_goes_on_from_the_history() {
        let hub = hub(100, 2);
        let mut stream = hub.watch("/a", 0).unwrap();
        hub.publish([put("/a", 2), put("/b", 3), put("/a", 4), put("/a", 5)]);
        assert_eq!(hub.watcher_count(), 0, "the hub stopped feeding it");
        assert_eq!(revisions(&mut stream, 3).await, vec![2, 4, 5]);
        assert_eq!(hub.watcher_count(), 1, "registered again");
        hub.publish([put("/a", 6)]);
        assert_eq!(revisions(&mut stream, 1).await, vec![6]);
    }

    #[tokio::test]
    async fn an_overflowed_watcher_behind_the_history_gets_compacted_then_end() {
        let hub = hub(2, 2);
        let mut stream = hub.watch("", 0).unwrap();
        hub.publish([put("/a", 2), put("/a", 3), put("/a", 4), put("/a", 5)]);
        assert_eq!(revisions(&mut stream, 2).await, vec![2, 3]);
        // It missed 4, and the history (two events: 4 and 5) starts after 3: it is too late.
        hub.publish([put("/a", 6)]);
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(err, StoreError::Compacted { requested: 3, compacted: 4 });
        assert!(stream.next().await.is_none());
        assert_eq!(hub.watcher_count(), 0);
    }

    #[tokio::test]
    async fn dropping_the_stream_unregisters_the_watcher() {
        let hub = hub(100, 100);
        let stream = hub.watch("", 0).unwrap();
        assert_eq!(hub.watcher_count(), 1);
        drop(stream);
        assert_eq!(hub.watcher_count(), 0);
    }

    #[tokio::test]
    async fn dropping_the_hub_ends_streams_with_closed() {
        let hub = hub(100, 100);
        let mut stream = hub.watch("", 0).unwrap();
        drop(hub);
        assert_eq!(stream.next().await.unwrap().unwrap_err(), StoreError::Closed);
        assert!(stream.next().await.is_none());
    }
}
