//! The writer thread: group commit.
//!
//! Callers send a [`WriteOp`] and a reply slot over a channel. The thread takes everything
//! pending (up to [`MAX_BATCH`]), applies the ops in order inside ONE redb write transaction
//! (each op checks its own precondition and gets its own revision; a failed precondition fails
//! only that op), commits once with an fsync, publishes the events to the watch hub and then
//! answers every caller. One fsync per batch instead of per write is where throughput comes from.

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{Database, ReadableTable};
use tokio::sync::oneshot;

use super::codec::{backend, decode, encode, KEYS, META, REVISION};
use crate::hub::WatchHub;
use crate::op::WriteOp;
use crate::{EventKind, KeyValue, Revision, StoreError, WatchEvent};

/// Most ops committed in one transaction; bounds the latency a batch adds to its first op.
const MAX_BATCH: usize = 1000;

type Reply = oneshot::Sender<Result<KeyValue, StoreError>>;

struct WriteRequest {
    op: WriteOp,
    reply: Reply,
}

/// Handle to the writer thread. Dropping it lets the thread finish what is queued, then joins it.
pub(super) struct Writer {
    tx: Option<mpsc::Sender<WriteRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread; `revision` is the last committed revision in `db`.
    pub(super) fn spawn(
        db: Arc<Database>,
        hub: Arc<WatchHub>,
        revision: Revision,
    ) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kumo-store-writer".into())
            .spawn(move || run(&db, &hub, revision, &rx))
            .map_err(backend("spawn writer thread"))?;
        Ok(Writer { tx: Some(tx), thread: Some(thread) })
    }

    /// Queues `op` and waits for its commit. If the caller stops waiting, the write still happens.
    pub(super) async fn submit(&self, op: WriteOp) -> Result<KeyValue, StoreError> {
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.send(WriteRequest { op, reply }).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the loop once the queue is drained; joining releases the
        // thread's handle on the database so the file can be reopened right away.
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

fn run(db: &Database, hub: &WatchHub, mut revision: Revision, rx: &mpsc::Receiver<WriteRequest>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        revision = commit_batch(db, hub, revision, batch);
    }
}

/// Commits one batch, publishes its events, answers its callers; returns the new revision.
fn commit_batch(
    db: &Database,
    hub: &WatchHub,
    revision: Revision,
    batch: Vec<WriteRequest>,
) -> Revision {
    let started = Instant::now();
    let size = batch.len();
    let (ops, replies): (Vec<WriteOp>, Vec<Reply>) =
        batch.into_iter().map(|request| (request.op, request.reply)).unzip();
    match apply_batch(db, revision, ops) {
        Ok((outcomes, committed)) => {
            let mut events = Vec::with_capacity(outcomes.len());
            let mut results = Vec::with_capacity(outcomes.len());
            for outcome in outcomes {
                match outcome {
                    Ok(event) => {
                        results.push(Ok(event.kv.clone()));
                        events.push(event);
                    }
                    Err(err) => results.push(Err(err)),
                }
            }
            // Publish before answering: once a caller holds its revision, watches see it.
            hub.publish(events);
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            tracing::debug!(ops = size, revision = committed, elapsed = ?started.elapsed(), "store batch committed");
            committed
        }
        Err(err) => {
            tracing::error!(ops = size, error = %err, "store batch failed");
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
            revision
        }
    }
}

type Outcomes = Vec<Result<WatchEvent, StoreError>>;

/// Applies `ops` in one write transaction and commits it. A precondition failure is that op's
/// outcome; a storage failure aborts the whole batch.
fn apply_batch(
    db: &Database,
    revision: Revision,
    ops: Vec<WriteOp>,
) -> Result<(Outcomes, Revision), StoreError> {
    let txn = db.begin_write().map_err(backend("begin write"))?;
    let mut next = revision;
    let mut outcomes = Vec::with_capacity(ops.len());
    {
        let mut keys = txn.open_table(KEYS).map_err(backend("open keys table"))?;
        for op in ops {
            let current = match keys.get(op.key()).map_err(backend("read key"))? {
                Some(record) => match decode(op.key(), record.value()) {
                    Ok(kv) => Some(kv),
                    Err(err) => {
                        outcomes.push(Err(err));
                        continue;
                    }
                },
                None => None,
            };
            let event = match op.apply(current, next + 1) {
                Ok(event) => event,
                Err(err) => {
                    outcomes.push(Err(err));
                    continue;
                }
            };
            let key = event.kv.key.as_str();
            match event.kind {
                EventKind::Put => {
                    keys.insert(key, encode(&event.kv).as_slice()).map_err(backend("write key"))?;
                }
                EventKind::Delete => {
                    keys.remove(key).map_err(backend("delete key"))?;
                }
            }
            next += 1;
            outcomes.push(Ok(event));
        }
        if next != revision {
            let mut meta = txn.open_table(META).map_err(backend("open meta table"))?;
            meta.insert(REVISION, next).map_err(backend("write revision"))?;
        }
    }
    txn.commit().map_err(backend("commit"))?;
    Ok((outcomes, next))
}
