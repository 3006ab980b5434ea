//! The controllers' shared pod informer ([`SharedPods`]: one watch, one cache, events fanned
//! out to every controller that follows pods) and pods by controller: an index over that cache,
//! fed from the same watch, so a ReplicaSet or Job reconcile reads the pods it controls plus
//! its namespace's orphans (the candidates for adoption) instead of every pod in the cluster.
//!
//! Without it each reconcile walked the whole pod cache: at 150,000 pods and thousands of
//! owners that is O(owners × pods) per round of events (read from the code; not yet measured,
//! issue 6). client-go's informers index pods the same way (by namespace, and
//! by controller in the ReplicaSet controller's `controllerUIDIndex`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

use futures::channel::mpsc::{unbounded, UnboundedSender};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

use crate::claim;

#[derive(Default)]
struct Entries {
    /// Pod keys by controller uid.
    owned: HashMap<String, HashSet<ObjectRef<Pod>>>,
    /// Pods without a controller, by namespace.
    orphans: HashMap<String, HashSet<ObjectRef<Pod>>>,
    /// Where each pod is filed (its controller uid, or None for an orphan).
    filed: HashMap<ObjectRef<Pod>, Option<String>>,
}

impl Entries {
    fn remove(&mut self, key: &ObjectRef<Pod>) {
        match self.filed.remove(key) {
            Some(Some(owner)) => {
                if let Some(set) = self.owned.get_mut(&owner) {
                    set.remove(key);
                    if set.is_empty() {
                        self.owned.remove(&owner);
                    }
                }
            }
            Some(None) => {
                let ns = key.namespace.clone().unwrap_or_default();
                if let Some(set) = self.orphans.get_mut(&ns) {
                    set.remove(key);
                }
            }
            None => {}
        }
    }

    fn insert(&mut self, pod: &Pod) {
        let key = ObjectRef::from_obj(pod);
        let owner = claim::controller_of(&pod.metadata)
            .and_then(|o| Some(o.uid.clone()).filter(|u| !u.is_empty()));
        if self.filed.get(&key) == Some(&owner) {
            return;
        }
        self.remove(&key);
        match &owner {
            Some(uid) => {
                self.owned.entry(uid.clone()).or_default().insert(key.clone());
            }
            None => {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                self.orphans.entry(ns).or_default().insert(key.clone());
            }
        }
        self.filed.insert(key, owner);
    }
}

/// The index; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct PodIndex {
    live: Arc<RwLock<Entries>>,
    /// Filled during a (re)list, swapped in when it is done.
    relist: Arc<RwLock<Option<Entries>>>,
}

/// The one watch of every pod that all controllers share: one decode and one cache per pod
/// event instead of one per controller (a dozen, before; each kept its own copy of every pod).
/// Controllers read [`SharedPods::store`] and [`SharedPods::index`], and take their reconcile
/// triggers from [`SharedPods::subscribe`]; [`SharedPods::run`] drives the watch.
#[derive(Clone)]
pub struct SharedPods {
    /// Every pod in the cluster, without `managedFields`.
    pub store: Store<Pod>,
    /// The same pods by controller.
    pub index: PodIndex,
    writer: Arc<Mutex<Option<Writer<Pod>>>>,
    subscribers: Arc<Mutex<Vec<UnboundedSender<Arc<Pod>>>>>,
}

impl Default for SharedPods {
    fn default() -> Self {
        let (store, writer) = reflector::store::<Pod>();
        SharedPods {
            store,
            index: PodIndex::default(),
            writer: Arc::new(Mutex::new(Some(writer))),
            subscribers: Arc::default(),
        }
    }
}

impl SharedPods {
    /// Every pod the watch touches (applied, listed again or deleted), after the store and the
    /// index show the change. Subscribe before [`SharedPods::run`] starts to see the first list.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<Pod>> + Send + 'static {
        let (tx, rx) = unbounded();
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }

    /// Watch every pod until `shutdown` completes (once; a second call returns at once).
    pub async fn run(&self, client: Client, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) else { return };
        let index = self.index.clone();
        let store = self.store.clone();
        let subscribers = self.subscribers.clone();
        let feed = reflector::reflector(writer, crate::pod_watcher(&client))
            .default_backoff()
            .for_each(move |event| {
                let Ok(event) = event else { return futures::future::ready(()) };
                index.observe(&event);
                let touched = match event {
                    // The store holds the applied pod already: hand out its Arc, not a copy.
                    watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                        store.get(&ObjectRef::from_obj(&pod)).unwrap_or_else(|| Arc::new(pod))
                    }
                    watcher::Event::Delete(pod) => Arc::new(pod),
                    watcher::Event::Init | watcher::Event::InitDone => {
                        return futures::future::ready(())
                    }
                };
                if let Ok(mut subs) = subscribers.lock() {
                    // A controller that stopped has dropped its receiver.
                    subs.retain(|tx| tx.unbounded_send(touched.clone()).is_ok());
                }
                futures::future::ready(())
            });
        tokio::select! {
            _ = feed => {}
            _ = shutdown => {}
        }
    }
}

impl PodIndex {
    /// Follows one watch event (call it for every event of the pod watch feeding the store).
    pub fn observe(&self, event: &watcher::Event<Pod>) {
        match event {
            watcher::Event::Apply(pod) => {
                if let Ok(mut e) = self.live.write() {
                    e.insert(pod);
                }
            }
            watcher::Event::Delete(pod) => {
                if let Ok(mut e) = self.live.write() {
                    e.remove(&ObjectRef::from_obj(pod));
                }
            }
            watcher::Event::Init => {
                if let Ok(mut r) = self.relist.write() {
                    *r = Some(Entries::default());
                }
            }
            watcher::Event::InitApply(pod) => {
                if let Ok(mut r) = self.relist.write() {
                    if let Some(e) = r.as_mut() {
                        e.insert(pod);
                    }
                }
            }
            watcher::Event::InitDone => {
                let fresh = self.relist.write().ok().and_then(|mut r| r.take());
                if let (Some(fresh), Ok(mut live)) = (fresh, self.live.write()) {
                    *live = fresh;
                }
            }
        }
    }

    /// The pods controlled by `owner_uid` and the orphans of namespace `ns`, from `store`.
    pub fn candidates(&self, store: &Store<Pod>, ns: &str, owner_uid: &str) -> Vec<Arc<Pod>> {
        let keys: Vec<ObjectRef<Pod>> = match self.live.read() {
            Ok(e) => e
                .owned
                .get(owner_uid)
                .into_iter()
                .flatten()
                .chain(e.orphans.get(ns).into_iter().flatten())
                .cloned()
                .collect(),
            Err(_) => return Vec::new(),
        };
        keys.iter()
            .filter_map(|k| store.get(k))
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;

    fn pod(name: &str, owner: Option<&str>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("ns".into());
        if let Some(uid) = owner {
            p.metadata.owner_references =
                Some(vec![claim::owner_reference("apps/v1", "ReplicaSet", "rs", uid)]);
        }
        p
    }

    #[test]
    fn owned_pods_and_orphans_follow_the_watch() {
        let (store, mut writer) = reflector::store::<Pod>();
        let index = PodIndex::default();
        let events = [
            watcher::Event::Init,
            watcher::Event::InitApply(pod("a", Some("u1"))),
            watcher::Event::InitApply(pod("b", Some("u2"))),
            watcher::Event::InitApply(pod("o", None)),
            watcher::Event::InitDone,
        ];
        for ev in &events {
            writer.apply_watcher_event(ev);
            index.observe(ev);
        }
        let names = |v: Vec<Arc<Pod>>| {
            let mut n: Vec<String> = v.iter().filter_map(|p| p.metadata.name.clone()).collect();
            n.sort();
            n
        };
        assert_eq!(names(index.candidates(&store, "ns", "u1")), ["a", "o"]);
        // The orphan is adopted by u2; a is deleted.
        for ev in [
            watcher::Event::Apply(pod("o", Some("u2"))),
            watcher::Event::Delete(pod("a", Some("u1"))),
        ] {
            writer.apply_watcher_event(&ev);
            index.observe(&ev);
        }
        assert!(index.candidates(&store, "ns", "u1").is_empty());
        assert_eq!(names(index.candidates(&store, "ns", "u2")), ["b", "o"]);
        assert!(index.candidates(&store, "other", "u2").is_empty());
    }
}
