//! Live state of each Service port: its endpoints with their outlier state, load balancing,
//! connection-pool limits and the retry budget. Specs come from the snapshot; the state
//! (ejections, counters, connection permits) survives snapshot changes for endpoints that stay.

use super::metrics::{CircuitStats, HopStats, Metrics};
use super::model::{ClusterKey, ClusterSpec, HashKey, LbPolicy, OutlierSpec, PoolLimits};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Retries always allowed in flight per Service port, however few requests are active: small
/// bursts against a backend that just exited (a rollout) are all retried, while at scale the
/// 20% budget bounds how much retries can add to an outage.
const MIN_RETRY_CONCURRENCY: usize = 10;

pub struct Endpoint {
    pub addr: SocketAddr,
    pub active: AtomicUsize,
    outlier: Mutex<OutlierState>,
    pub stats: Arc<HopStats>,
}

#[derive(Default)]
struct OutlierState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
    /// Back from an ejection: the next failure ejects again at once (half-open).
    probation: bool,
}

/// How one try ended, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// Connect failure, reset or per-try timeout: a gateway error of the endpoint.
    LocalFailure,
}

/// Settings that change with the snapshot; swapped as a whole.
struct Settings {
    spec: ClusterSpec,
    connections: Option<Arc<Semaphore>>,
}

pub struct Cluster {
    pub key: ClusterKey,
    pub label: String,
    settings: RwLock<Arc<Settings>>,
    endpoints: RwLock<Arc<Vec<Arc<Endpoint>>>>,
    rr: AtomicUsize,
    pending: AtomicUsize,
    active_retries: AtomicUsize,
    pub stats: Arc<CircuitStats>,
    metrics: Arc<Metrics>,
}

/// Why a request could not get a slot.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

/// Held for the length of one request to the cluster.
pub struct Slot {
    cluster: Arc<Cluster>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.cluster.stats.hop.active.fetch_sub(1, Relaxed);
    }
}

pub struct RetryGuard(Arc<Cluster>);

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.0.active_retries.fetch_sub(1, Relaxed);
    }
}

impl Cluster {
    fn new(key: ClusterKey, spec: ClusterSpec, metrics: Arc<Metrics>) -> Arc<Cluster> {
        let label = key.to_string();
        let c = Arc::new(Cluster {
            stats: metrics.cluster(&label),
            key,
            label,
            settings: RwLock::new(Arc::new(Settings {
                spec: ClusterSpec::default(),
                connections: None,
            })),
            endpoints: RwLock::new(Arc::new(Vec::new())),
            rr: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            active_retries: AtomicUsize::new(0),
            metrics,
        });
        c.update(spec);
        c
    }

    pub fn spec(&self) -> ClusterSpecView {
        ClusterSpecView(
            self.settings.read().map(|s| s.clone()).unwrap_or_else(|e| e.into_inner().clone()),
        )
    }

    fn update(&self, spec: ClusterSpec) {
        let old = self.endpoints.read().map(|e| e.clone()).unwrap_or_default();
        let endpoints: Vec<Arc<Endpoint>> = spec
            .endpoints
            .iter()
            .map(|addr| {
                old.iter().find(|e| e.addr == *addr).cloned().unwrap_or_else(|| {
                    Arc::new(Endpoint {
                        addr: *addr,
                        active: AtomicUsize::new(0),
                        outlier: Mutex::new(OutlierState::default()),
                        stats: self.metrics.backend(&self.label, &addr.to_string()),
                    })
                })
            })
            .collect();
        if let Ok(mut e) = self.endpoints.write() {
            *e = Arc::new(endpoints);
        }
        let mut settings = self.settings.write().unwrap_or_else(|e| e.into_inner());
        let connections = if settings.spec.pool.max_connections == spec.pool.max_connections {
            settings.connections.clone()
        } else {
            spec.pool.max_connections.map(|n| Arc::new(Semaphore::new(n)))
        };
        *settings = Arc::new(Settings { spec, connections });
    }

    /// Take a request slot, honouring `http2MaxRequests`, `maxConnections` and
    /// `http1MaxPendingRequests`: over the limits the answer is an immediate overflow, never
    /// a queue behind a dead backend.
    pub async fn slot(self: &Arc<Self>, deadline: Option<Instant>) -> Result<Slot, Overflow> {
        let settings = self.spec().0;
        let pool = &settings.spec.pool;
        if let Some(max) = pool.max_requests {
            if self.stats.hop.active.load(Relaxed) as usize >= max {
                self.stats.overflow.fetch_add(1, Relaxed);
                return Err(Overflow);
            }
        }
        let permit = match &settings.connections {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let pending = self.pending.fetch_add(1, Relaxed);
                    let _undo = scopeguard(|| {
                        self.pending.fetch_sub(1, Relaxed);
                    });
                    if pool.max_pending.is_some_and(|m| pending >= m) {
                        self.stats.overflow.fetch_add(1, Relaxed);
                        return Err(Overflow);
                    }
                    let wait = sem.clone().acquire_owned();
                    let got = match deadline {
                        Some(d) => tokio::time::timeout_at(d.into(), wait).await.ok(),
                        None => Some(wait.await),
                    };
                    match got {
                        Some(Ok(p)) => Some(p),
                        _ => {
                            self.stats.overflow.fetch_add(1, Relaxed);
                            return Err(Overflow);
                        }
                    }
                }
            },
        };
        self.stats.hop.active.fetch_add(1, Relaxed);
        Ok(Slot { cluster: self.clone(), _permit: permit })
    }

    /// A retry may go out while retries in flight stay under 20% of active requests (at least
    /// [`MIN_RETRY_CONCURRENCY`]) and under `maxRetries`: Envoy's retry budget, so retries never multiply an outage.
    pub fn retry_budget(self: &Arc<Self>) -> Option<RetryGuard> {
        let settings = self.spec().0;
        let active = self.stats.hop.active.load(Relaxed) as usize;
        let mut allowed = (active / 5).max(MIN_RETRY_CONCURRENCY);
        if let Some(m) = settings.spec.pool.max_retries {
            allowed = allowed.min(m);
        }
        if self.active_retries.fetch_add(1, Relaxed) >= allowed {
            self.active_retries.fetch_sub(1, Relaxed);
            self.stats.retries_refused.fetch_add(1, Relaxed);
            return None;
        }
        self.stats.retries.fetch_add(1, Relaxed);
        Some(RetryGuard(self.clone()))
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.read().map(|e| e.len()).unwrap_or(0)
    }

    /// Choose an endpoint: not ejected, not tried before for this request when others remain.
    pub fn pick(&self, tried: &[SocketAddr], hash: Option<u64>) -> Option<Arc<Endpoint>> {
        let settings = self.spec().0;
        let all = self.endpoints.read().map(|e| e.clone()).ok()?;
        if all.is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut healthy: Vec<&Arc<Endpoint>> = match settings.spec.outlier {
            Some(_) => all.iter().filter(|e| !e.ejected(now, &self.stats)).collect(),
            None => all.iter().collect(),
        };
        if let Some(o) = &settings.spec.outlier {
            // Below minHealthPercent, outlier detection stands aside and every host serves.
            if o.min_health_percent > 0
                && healthy.len() * 100 < all.len() * o.min_health_percent as usize
            {
                healthy = all.iter().collect();
            }
        }
        let fresh: Vec<&Arc<Endpoint>> =
            healthy.iter().copied().filter(|e| !tried.contains(&e.addr)).collect();
        let candidates = if fresh.is_empty() { healthy } else { fresh };
        if candidates.is_empty() {
            return None;
        }
        let n = candidates.len();
        let chosen = match (&settings.spec.lb, hash) {
            (LbPolicy::ConsistentHash(_), Some(h)) => {
                // Rendezvous hashing: few keys move when endpoints come and go.
                candidates.iter().max_by_key(|e| {
                    let mut s = std::collections::hash_map::DefaultHasher::new();
                    (h, e.addr).hash(&mut s);
                    s.finish()
                })
            }
            (LbPolicy::Random, _) => candidates.get(rand::random_range(0..n)),
            (LbPolicy::LeastRequest, _) if n > 1 => {
                let a = rand::random_range(0..n);
                let mut b = rand::random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (ea, eb) = (candidates[a], candidates[b]);
                Some(if eb.active.load(Relaxed) < ea.active.load(Relaxed) {
                    &candidates[b]
                } else {
                    &candidates[a]
                })
            }
            _ => candidates.get(self.rr.fetch_add(1, Relaxed) % n),
        };
        chosen.map(|e| (*e).clone())
    }

    /// Feed outlier detection with how a try ended.
    pub fn report(&self, endpoint: &Endpoint, outcome: Outcome) {
        let settings = self.spec().0;
        let Some(spec) = &settings.spec.outlier else { return };
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Status(s) => (s >= 500, (502..=504).contains(&s)),
            Outcome::LocalFailure => (true, true),
        };
        let mut st = endpoint.outlier.lock().unwrap_or_else(|e| e.into_inner());
        if !is_5xx {
            st.consecutive_5xx = 0;
            st.consecutive_gateway = 0;
            if st.probation {
                st.probation = false;
            }
            return;
        }
        st.consecutive_5xx += 1;
        if is_gateway {
            st.consecutive_gateway += 1;
        }
        let tripped = st.probation
            || (spec.consecutive_5xx > 0 && st.consecutive_5xx >= spec.consecutive_5xx)
            || (spec.consecutive_gateway > 0 && st.consecutive_gateway >= spec.consecutive_gateway);
        if !tripped || st.ejected_until.is_some() {
            return;
        }
        drop(st);
        if self.may_eject(spec) {
            let mut st = endpoint.outlier.lock().unwrap_or_else(|e| e.into_inner());
            st.ejections += 1;
            st.ejected_until = Some(Instant::now() + spec.base_ejection * st.ejections);
            st.consecutive_5xx = 0;
            st.consecutive_gateway = 0;
            st.probation = false;
            self.stats.ejections.fetch_add(1, Relaxed);
            self.stats.ejected.fetch_add(1, Relaxed);
            tracing::info!(
                "proxy: ejected {} from {} for {:?}",
                endpoint.addr,
                self.label,
                spec.base_ejection * st.ejections
            );
        }
    }

    /// `maxEjectionPercent` of the hosts, and at least one, as Envoy does.
    fn may_eject(&self, spec: &OutlierSpec) -> bool {
        let all = self.endpoints.read().map(|e| e.clone()).unwrap_or_default();
        let now = Instant::now();
        let ejected = all.iter().filter(|e| e.ejected(now, &self.stats)).count();
        let max = (all.len() * spec.max_ejection_percent as usize / 100).max(1);
        ejected < max
    }
}

impl Endpoint {
    /// Whether the endpoint is ejected now; an ejection that has run out ends here, and the
    /// endpoint goes on probation.
    fn ejected(&self, now: Instant, stats: &CircuitStats) -> bool {
        let mut st = self.outlier.lock().unwrap_or_else(|e| e.into_inner());
        match st.ejected_until {
            Some(t) if now < t => true,
            Some(_) => {
                st.ejected_until = None;
                st.probation = true;
                stats.ejected.fetch_sub(1, Relaxed);
                false
            }
            None => false,
        }
    }
}

/// A read-only view of the cluster's current settings.
pub struct ClusterSpecView(Arc<Settings>);

impl ClusterSpecView {
    pub fn h2(&self) -> bool {
        self.0.spec.h2
    }
    pub fn pool(&self) -> &PoolLimits {
        &self.0.spec.pool
    }
    pub fn policies(&self) -> &[String] {
        &self.0.spec.policies
    }
    pub fn hash_key(&self) -> Option<&HashKey> {
        match &self.0.spec.lb {
            LbPolicy::ConsistentHash(k) => Some(k),
            _ => None,
        }
    }
}

fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Every cluster by key.
#[derive(Default)]
pub struct Clusters {
    map: RwLock<HashMap<ClusterKey, Arc<Cluster>>>,
    pub metrics: Arc<Metrics>,
}

impl Clusters {
    pub fn new(metrics: Arc<Metrics>) -> Clusters {
        Clusters { map: RwLock::default(), metrics }
    }

    pub fn get(&self, key: &ClusterKey) -> Option<Arc<Cluster>> {
        self.map.read().ok()?.get(key).cloned()
    }

    /// Apply the clusters of a new snapshot.
    pub fn sync(&self, specs: &HashMap<ClusterKey, ClusterSpec>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, _| specs.contains_key(k));
        for (k, spec) in specs {
            match map.get(k) {
                Some(c) => c.update(spec.clone()),
                None => {
                    map.insert(
                        k.clone(),
                        Cluster::new(k.clone(), spec.clone(), self.metrics.clone()),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(n: usize, spec: impl FnOnce(&mut ClusterSpec)) -> Arc<Cluster> {
        let mut s = ClusterSpec {
            endpoints: (0..n)
                .map(|i| SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16)))
                .collect(),
            ..Default::default()
        };
        spec(&mut s);
        let key = ClusterKey { namespace: "default".into(), service: "web".into(), port: 80 };
        Cluster::new(key, s, Arc::new(Metrics::default()))
    }

    #[test]
    fn consecutive_errors_eject_then_probation_ejects_at_once() {
        let c = cluster(1, |s| {
            s.outlier = Some(OutlierSpec {
                consecutive_5xx: 3,
                base_ejection: Duration::from_millis(50),
                ..Default::default()
            })
        });
        let e = c.pick(&[], None).unwrap();
        c.report(&e, Outcome::Status(500));
        c.report(&e, Outcome::LocalFailure);
        assert!(c.pick(&[], None).is_some(), "two errors do not eject");
        c.report(&e, Outcome::Status(503));
        assert!(c.pick(&[], None).is_none(), "the only host is ejected (at least one may be)");
        std::thread::sleep(Duration::from_millis(60));
        let e = c.pick(&[], None).expect("back after the ejection time");
        c.report(&e, Outcome::Status(502));
        assert!(c.pick(&[], None).is_none(), "a failure on probation ejects again");
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.pick(&[], None).is_none(), "the second ejection lasts twice as long");
        std::thread::sleep(Duration::from_millis(50));
        let e = c.pick(&[], None).unwrap();
        c.report(&e, Outcome::Status(200));
        c.report(&e, Outcome::Status(500));
        assert!(c.pick(&[], None).is_some(), "a success ends the probation");
    }

    #[test]
    fn max_ejection_percent_keeps_most_hosts_in() {
        let c = cluster(10, |s| {
            s.outlier = Some(OutlierSpec {
                consecutive_5xx: 1,
                max_ejection_percent: 20,
                ..Default::default()
            });
        });
        let eps: Vec<_> = (0..10).map(|i| SocketAddr::from(([127, 0, 0, 1], 10_000 + i))).collect();
        let all = c.endpoints.read().unwrap().clone();
        for e in all.iter() {
            c.report(e, Outcome::Status(500));
        }
        let now = Instant::now();
        let ejected = all.iter().filter(|e| e.ejected(now, &c.stats)).count();
        assert_eq!(ejected, 2, "20% of 10 hosts");
        let picked: std::collections::HashSet<_> =
            (0..200).filter_map(|_| c.pick(&[], None)).map(|e| e.addr).collect();
        assert_eq!(picked.len(), 8);
        assert!(picked.iter().all(|a| eps.contains(a)));
    }

    #[tokio::test]
    async fn pool_limits_overflow_at_once() {
        let c = cluster(1, |s| s.pool = PoolLimits { max_requests: Some(2), ..Default::default() });
        let a = c.slot(None).await.unwrap();
        let _b = c.slot(None).await.unwrap();
        assert!(c.slot(None).await.is_err());
        drop(a);
        assert!(c.slot(None).await.is_ok());
        let c = cluster(1, |s| {
            s.pool =
                PoolLimits { max_connections: Some(1), max_pending: Some(1), ..Default::default() }
        });
        let held = c.slot(None).await.unwrap();
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.slot(None).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(c.slot(None).await.is_err(), "the one pending place is taken");
        drop(held);
        assert!(waiter.await.unwrap(), "the pending request gets the connection");
    }

    #[test]
    fn least_request_prefers_idle_hosts_and_hashing_is_sticky() {
        let c = cluster(2, |_| {});
        let busy = c.pick(&[], None).unwrap();
        busy.active.store(10, Relaxed);
        let picks: Vec<_> = (0..50).map(|_| c.pick(&[], None).unwrap().addr).collect();
        assert!(picks.iter().all(|a| *a != busy.addr));
        let c = cluster(5, |s| s.lb = LbPolicy::ConsistentHash(HashKey::Header("x-user".into())));
        let first = c.pick(&[], Some(42)).unwrap().addr;
        assert!((0..20).all(|_| c.pick(&[], Some(42)).unwrap().addr == first));
    }

    #[test]
    fn retries_have_a_budget() {
        let c = cluster(1, |_| {});
        let held: Vec<_> = (0..MIN_RETRY_CONCURRENCY).map(|_| c.retry_budget().unwrap()).collect();
        assert!(c.retry_budget().is_none(), "the minimum, 20% of 0 active");
        drop(held);
        assert!(c.retry_budget().is_some());
    }
}
