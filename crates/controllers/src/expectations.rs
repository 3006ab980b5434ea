//! Expectations: what a controller just wrote and has not yet seen come back through its watch.
//!
//! A reconcile reads pods from a watch-fed cache. Right after creating two pods, the cache may not
//! show them yet; acting on it again would create two more. Upstream's
//! `UIDTrackingControllerExpectations` counts pending adds and deletes per controller and skips
//! the replica decision until they are observed. This is the level-triggered form of the same
//! idea: we remember the *names* we created and the *uids* we deleted, and a controller is
//! satisfied when the cache shows every created name and none of the deleted uids as active (or
//! when the record is older than [`EXPECTATIONS_TTL`], so a lost event cannot wedge it).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After this long, unmet expectations are dropped (upstream uses 5 minutes; a shorter time
/// heals faster when a just-created pod was deleted before our cache saw it).
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Record {
    adds: BTreeSet<String>,
    deletes: BTreeSet<String>,
    at: Option<Instant>,
}

/// Pending creates/deletes per controller key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    /// Remember that `names` were created and `uids` deleted for `key`.
    pub fn expect(&self, key: &str, names: Vec<String>, uids: Vec<String>) {
        if names.is_empty() && uids.is_empty() {
            return;
        }
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let rec = map.entry(key.to_string()).or_default();
        rec.adds.extend(names);
        rec.deletes.extend(uids);
        rec.at = Some(Instant::now());
    }

    /// Whether the cache has caught up with our writes for `key`. `seen_name` tells whether a
    /// pod of that name is in the cache; `active_uid` whether a pod of that uid is still active.
    /// Observed entries are forgotten.
    pub fn satisfied(
        &self,
        key: &str,
        seen_name: impl Fn(&str) -> bool,
        active_uid: impl Fn(&str) -> bool,
    ) -> bool {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rec) = map.get_mut(key) else { return true };
        rec.adds.retain(|n| !seen_name(n));
        rec.deletes.retain(|u| active_uid(u));
        let expired = rec.at.is_some_and(|at| at.elapsed() > EXPECTATIONS_TTL);
        if expired || (rec.adds.is_empty() && rec.deletes.is_empty()) {
            map.remove(key);
            return true;
        }
        false
    }

    /// Forget everything about `key` (its controller is gone).
    pub fn forget(&self, key: &str) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unseen_creates_and_active_deletes_block_until_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/a", |_| false, |_| true));
        e.expect("ns/a", vec!["a-1".into(), "a-2".into()], vec!["u9".into()]);
        // a-1 seen, u9 still active: not yet.
        assert!(!e.satisfied("ns/a", |n| n == "a-1", |_| true));
        // a-2 seen too, but u9 still active.
        assert!(!e.satisfied("ns/a", |_| true, |u| u == "u9"));
        // u9 gone: caught up.
        assert!(e.satisfied("ns/a", |_| false, |_| false));
        // Satisfied records are gone: nothing is pending any more.
        assert!(e.satisfied("ns/a", |_| false, |_| true));
    }

    #[test]
    fn keys_are_independent_and_forgettable() {
        let e = Expectations::default();
        e.expect("ns/a", vec!["a-1".into()], vec![]);
        assert!(e.satisfied("ns/b", |_| false, |_| true));
        assert!(!e.satisfied("ns/a", |_| false, |_| true));
        e.forget("ns/a");
        assert!(e.satisfied("ns/a", |_| false, |_| true));
    }
}
