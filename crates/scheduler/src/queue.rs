//! The scheduling queue: which pending pod is tried next.
//!
//! Three places, as upstream's `PriorityQueue`:
//! * **active**: ready now, ordered by priority (higher first), then by the time the pod first
//!   entered the queue (older first);
//! * **backoff**: failed recently; waits `1s · 2^(attempts-1)`, at most 10 s;
//! * **unschedulable**: fitted nowhere; parked until the cluster changes
//!   ([`SchedulingQueue::on_cluster_change`]) or for at most 5 minutes.
//!
//! Time is passed in (`now`), so the queue is pure and its tests need no clock.
//! <https://github.com/kubernetes/enhancements/tree/master/keps/sig-scheduling/1774-scheduling-queue>

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pod_info::PodInfo;

/// First back-off after a failure (upstream `podInitialBackoffSeconds`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off (upstream `podMaxBackoffSeconds`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest stay among the unschedulable before another try (`podMaxInUnschedulablePodsDuration`).
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// A pod waiting to be scheduled.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    /// The pod.
    pub info: Arc<PodInfo>,
    /// Failed scheduling attempts so far.
    pub attempts: u32,
    /// When the pod first entered the queue (its age for ordering).
    pub first_seen: Instant,
}

impl QueuedPod {
    fn backoff(&self) -> Duration {
        let shift = self.attempts.saturating_sub(1).min(16);
        INITIAL_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
    }
}

type SortKey = (Reverse<i32>, Instant, u64);

/// Where a pod currently waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active(SortKey),
    Backoff,
    Unschedulable,
}

/// Pending pods in active, backoff and unschedulable sets.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    active: BTreeMap<SortKey, QueuedPod>,
    backoff: HashMap<String, (QueuedPod, Instant)>,
    unschedulable: HashMap<String, (QueuedPod, Instant)>,
    places: HashMap<String, Place>,
    sequence: u64,
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pods waiting anywhere in the queue.
    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// Is the queue empty?
    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Adds a new pending pod, or updates one already waiting (an update makes it active: the
    /// change may be what lets it fit).
    pub fn add(&mut self, info: Arc<PodInfo>, now: Instant) {
        // A change of status only (for instance our own `PodScheduled=False` patch) must not
        // wake a parked pod, or reporting a failure would retry it in a loop.
        let same = |old: &PodInfo| {
            old.pod.spec == info.pod.spec && old.pod.metadata.labels == info.pod.metadata.labels
        };
        let waiting = match self.places.get(&info.key) {
            Some(Place::Active(sort)) => self.active.get_mut(sort),
            Some(Place::Backoff) => self.backoff.get_mut(&info.key).map(|(q, _)| q),
            Some(Place::Unschedulable) => self.unschedulable.get_mut(&info.key).map(|(q, _)| q),
            None => None,
        };
        if let Some(queued) = waiting.filter(|q| same(&q.info)) {
            queued.info = info;
            return;
        }
        let queued = match self.take(&info.key) {
            Some(mut old) => {
                old.info = info;
                old
            }
            None => QueuedPod { info, attempts: 0, first_seen: now },
        };
        self.activate(queued);
    }

    /// The keys of every waiting pod.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.places.keys().map(String::as_str)
    }

    /// Removes a pod (deleted, or bound by someone else).
    pub fn delete(&mut self, key: &str) {
        self.take(key);
    }

    /// The next pod to try: moves finished back-offs and expired parkings to active first.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush(now);
        let (_, queued) = self.active.pop_first()?;
        self.places.remove(&queued.info.key);
        Some(queued)
    }

    /// When the earliest back-off ends (for a runner to sleep until), if any.
    pub fn next_ready(&self) -> Option<Instant> {
        self.backoff.values().map(|(_, ready)| *ready).min()
    }

    /// Parks a pod that fitted nowhere until the cluster changes.
    pub fn requeue_unschedulable(&mut self, mut queued: QueuedPod, now: Instant) {
        queued.attempts += 1;
        let key = queued.info.key.clone();
        self.take(&key);
        self.places.insert(key.clone(), Place::Unschedulable);
        self.unschedulable.insert(key, (queued, now));
    }

    /// Backs off a pod whose attempt failed for another reason (binding error, conflict).
    pub fn requeue_backoff(&mut self, mut queued: QueuedPod, now: Instant) {
        queued.attempts += 1;
        let ready = now + queued.backoff();
        let key = queued.info.key.clone();
        self.take(&key);
        self.places.insert(key.clone(), Place::Backoff);
        self.backoff.insert(key, (queued, ready));
    }

    /// A node was added or changed, or a pod left: every parked pod may fit now. Each goes to
    /// back-off (its delay counted from when it was parked) or straight to active.
    pub fn on_cluster_change(&mut self, now: Instant) {
        let parked: Vec<(QueuedPod, Instant)> =
            self.unschedulable.drain().map(|(_, v)| v).collect();
        for (queued, parked_at) in parked {
            let ready = parked_at + queued.backoff();
            self.places.remove(&queued.info.key);
            if ready <= now {
                self.activate(queued);
            } else {
                self.places.insert(queued.info.key.clone(), Place::Backoff);
                self.backoff.insert(queued.info.key.clone(), (queued, ready));
            }
        }
    }

    fn flush(&mut self, now: Instant) {
        let ready: Vec<String> = self
            .backoff
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| k.clone())
            .chain(
                self.unschedulable
                    .iter()
                    .filter(|(_, (_, at))| now.saturating_duration_since(*at) >= MAX_UNSCHEDULABLE)
                    .map(|(k, _)| k.clone()),
            )
            .collect();
        for key in ready {
            if let Some(queued) = self.take(&key) {
                self.activate(queued);
            }
        }
    }

    fn activate(&mut self, queued: QueuedPod) {
        self.sequence += 1;
        let sort: SortKey = (Reverse(queued.info.priority), queued.first_seen, self.sequence);
        self.places.insert(queued.info.key.clone(), Place::Active(sort));
        self.active.insert(sort, queued);
    }

    fn take(&mut self, key: &str) -> Option<QueuedPod> {
        match self.places.remove(key)? {
            Place::Active(sort) => self.active.remove(&sort),
            Place::Backoff => self.backoff.remove(key).map(|(q, _)| q),
            Place::Unschedulable => self.unschedulable.remove(key).map(|(q, _)| q),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pod;

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod(name).priority(priority).info())
    }

    fn names(queue: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| queue.pop(now)).map(|q| q.info.key.clone()).collect()
    }

    #[test]
    fn pops_by_priority_then_age() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(info("old-low", 0), t0);
        q.add(info("new-high", 100), t0 + Duration::from_secs(2));
        q.add(info("mid-low", 0), t0 + Duration::from_secs(1));
        q.add(info("old-high", 100), t0 + Duration::from_secs(1));
        assert_eq!(
            names(&mut q, t0 + Duration::from_secs(3)),
            ["default/old-high", "default/new-high", "default/old-low", "default/mid-low"]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn an_update_keeps_the_pods_age_and_place_is_unique() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(info("a", 0), t0);
        q.add(info("b", 0), t0 + Duration::from_secs(1));
        q.add(info("a", 0), t0 + Duration::from_secs(2));
        assert_eq!(q.len(), 2);
        assert_eq!(names(&mut q, t0), ["default/a", "default/b"]);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(info("a", 0), t0);
        let mut popped = q.pop(t0);
        let mut now = t0;
        for want in [1, 2, 4, 8, 10, 10] {
            let Some(queued) = popped.take() else {
                panic!("pod lost from the queue");
            };
            q.requeue_backoff(queued, now);
            assert!(q.pop(now + Duration::from_secs(want) - Duration::from_millis(1)).is_none());
            now += Duration::from_secs(want);
            popped = q.pop(now);
            assert!(popped.is_some(), "ready after {want}s");
        }
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(info("a", 0), t0);
        let Some(queued) = q.pop(t0) else {
            panic!("pod expected");
        };
        q.requeue_unschedulable(queued, t0);
        let later = t0 + Duration::from_secs(30);
        assert!(q.pop(later).is_none());
        q.on_cluster_change(later);
        assert_eq!(names(&mut q, later), ["default/a"]);
    }

    #[test]
    fn a_status_only_update_does_not_wake_a_parked_pod_but_a_spec_change_does() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(info("a", 0), t0);
        if let Some(queued) = q.pop(t0) {
            q.requeue_unschedulable(queued, t0);
        }
        let status_only = Arc::new(pod("a").priority(0).phase("Pending").info());
        q.add(status_only, t0);
        assert!(q.pop(t0).is_none());
        q.add(Arc::new(pod("a").priority(0).cpu("1").info()), t0);
        assert_eq!(names(&mut q, t0), ["default/a"]);
    }

    #[test]
    fn unschedulable_pods_are_retried_after_five_minutes_and_deletes_stick() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(info("a", 0), t0);
        q.add(info("b", 0), t0);
        for _ in 0..2 {
            if let Some(queued) = q.pop(t0) {
                q.requeue_unschedulable(queued, t0);
            }
        }
        q.delete("default/b");
        assert_eq!(q.len(), 1);
        assert_eq!(names(&mut q, t0 + MAX_UNSCHEDULABLE), ["default/a"]);
    }
}
