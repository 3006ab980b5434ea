//! Keeps [`Records`] in step with the API server: one watch of Services and one of
//! EndpointSlices, all namespaces. Queries read only the in-memory records, never the API.
//!
//! A watch (re)list arrives as `Init`, `InitApply`…, `InitDone`; the objects are gathered and
//! swapped in at `InitDone` in one go, so a re-list after a lost watch never shows a half-empty
//! zone. Errors are retried by the watcher's backoff; until the first list of each kind is in,
//! the zone answers SERVFAIL (see [`Records::wait_for_sync`]).

use crate::records::Records;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kinds::Object;
use kube::runtime::watcher::Event;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use std::sync::{Arc, RwLock};

/// The zone shared by the watches (writers) and the servers (readers).
pub type Shared = Arc<RwLock<Records>>;

/// Lock for writing; a poisoned lock still holds a usable zone (no update panics half-way
/// through leaving it inconsistent in a way that matters more than stopping DNS).
pub(crate) fn write(shared: &Shared) -> std::sync::RwLockWriteGuard<'_, Records> {
    shared.write().unwrap_or_else(|e| e.into_inner())
}

/// Lock for reading, as [`write`].
pub(crate) fn read(shared: &Shared) -> std::sync::RwLockReadGuard<'_, Records> {
    shared.read().unwrap_or_else(|e| e.into_inner())
}

mod kinds {
    //! How each watched kind updates the records.
    use super::*;

    pub trait Object: Resource + Clone + std::fmt::Debug + Send + 'static {
        fn apply(records: &mut Records, obj: &Self);
        fn remove(records: &mut Records, obj: &Self);
        fn replace(records: &mut Records, list: &[Self]);
    }

    impl Object for Service {
        fn apply(records: &mut Records, obj: &Self) {
            records.apply_service(obj)
        }
        fn remove(records: &mut Records, obj: &Self) {
            records.remove_service(obj)
        }
        fn replace(records: &mut Records, list: &[Self]) {
            records.replace_services(list)
        }
    }

    impl Object for EndpointSlice {
        fn apply(records: &mut Records, obj: &Self) {
            records.apply_slice(obj)
        }
        fn remove(records: &mut Records, obj: &Self) {
            records.remove_slice(obj)
        }
        fn replace(records: &mut Records, list: &[Self]) {
            records.replace_slices(list)
        }
    }
}

/// Watch Services and EndpointSlices into `records` until the streams end (they do not: the
/// backoff retries forever; callers stop this by dropping it).
pub async fn watch(client: Client, records: Shared) {
    tokio::join!(
        watch_kind(Api::<Service>::all(client.clone()), records.clone()),
        watch_kind(Api::<EndpointSlice>::all(client), records),
    );
}

async fn watch_kind<K>(api: Api<K>, records: Shared)
where
    K: Object + serde::de::DeserializeOwned + Sync,
    K::DynamicType: Default,
{
    let kind = K::kind(&Default::default()).to_string();
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut relist: Vec<K> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(obj)) => relist.push(obj),
            Ok(Event::InitDone) => {
                let list = std::mem::take(&mut relist);
                K::replace(&mut write(&records), &list);
                tracing::debug!(kind = %kind, count = list.len(), "dns: listed");
            }
            Ok(Event::Apply(obj)) => K::apply(&mut write(&records), &obj),
            Ok(Event::Delete(obj)) => K::remove(&mut write(&records), &obj),
            Err(e) => tracing::warn!(kind = %kind, error = %e, "dns: watch failed, retrying"),
        }
    }
}
