//! Watch events serialized once: the bytes of a plain watch event (no selector, whole
//! objects) are the same for every watcher of a resource, so the first watcher to send an
//! event renders it and the others reuse the bytes.
//!
//! Before this, each watcher decoded the stored object (and the previous one) and encoded the
//! event line itself: with the scheduler, six controllers, the hollow nodes and a benchmark
//! all watching pods, every pod write was decoded eighteen times and encoded nine. The design
//! calls for "events serialized once" (ARCHITECTURE.md §3); Kubernetes' watch cache does the
//! same with its cached serializations.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How many rendered events are kept: enough for every watcher of a busy resource to catch up
/// within a burst; a miss only costs a render.
const CAPACITY: usize = 8_192;

/// Key of a rendered event: revision, store key, and the version it was rendered for.
type Key = (i64, String, String);

/// The cache, shared by every watch of one API server.
#[derive(Default)]
pub struct RenderedEvents {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Bytes>,
    order: VecDeque<Key>,
}

impl RenderedEvents {
    /// The bytes for (`revision`, `key`, `version`), rendered by `render` on a miss.
    pub fn get_or_render<E>(
        &self,
        revision: i64,
        key: &str,
        version: &str,
        render: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        let k = (revision, key.to_string(), version.to_string());
        if let Ok(inner) = self.inner.lock() {
            if let Some(b) = inner.map.get(&k) {
                return Ok(b.clone());
            }
        }
        // Rendered outside the lock: two watchers may both render a fresh event, which is
        // harmless, and no watcher waits behind another's JSON work.
        let bytes = render()?;
        if let Ok(mut inner) = self.inner.lock() {
            if inner.map.insert(k.clone(), bytes.clone()).is_none() {
                inner.order.push_back(k);
                while inner.order.len() > CAPACITY {
                    if let Some(old) = inner.order.pop_front() {
                        inner.map.remove(&old);
                    }
                }
            }
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_once_per_event_and_forgets_the_oldest() {
        let cache = RenderedEvents::default();
        let mut renders = 0;
        for _ in 0..3 {
            let b = cache
                .get_or_render(5, "/registry/pods/ns/a", "v1", || {
                    renders += 1;
                    Ok::<_, ()>(Bytes::from_static(b"x"))
                })
                .unwrap_or_default();
            assert_eq!(&b[..], b"x");
        }
        assert_eq!(renders, 1);
        // Another version of the same event is another rendering.
        let _ = cache.get_or_render(5, "/registry/pods/ns/a", "v2", || Ok::<_, ()>(Bytes::new()));
        for rev in 0..CAPACITY as i64 + 10 {
            let _ = cache.get_or_render(100 + rev, "k", "v1", || Ok::<_, ()>(Bytes::new()));
        }
        let mut again = false;
        let _ = cache.get_or_render(5, "/registry/pods/ns/a", "v1", || {
            again = true;
            Ok::<_, ()>(Bytes::new())
        });
        assert!(again, "the oldest entries are forgotten");
    }
}
