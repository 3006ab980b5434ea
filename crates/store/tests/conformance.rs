//! The `Store` contract, written once (in `conformance/cases.rs`) and run against every backend.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod conformance {
    pub mod cases;
}

use std::ops::Deref;
use std::sync::Arc;

use kumo_store::{Store, StoreOptions};

/// A store under test plus whatever must outlive it (the temp dir of a file-backed store).
pub struct Harness {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

impl Deref for Harness {
    type Target = Arc<dyn Store>;
    fn deref(&self) -> &Self::Target {
        &self.store
    }
}

fn mem_store(options: StoreOptions) -> Harness {
    Harness { store: Arc::new(kumo_store::MemStore::with_options(options)), _dir: None }
}

#[cfg(feature = "embedded")]
fn embedded_store(options: StoreOptions) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = kumo_store::EmbeddedStore::open_with(&dir.path().join("store.redb"), options);
    Harness { store: Arc::new(store.unwrap()), _dir: Some(dir) }
}

/// One `#[tokio::test]` per case per backend: `mem::<case>` and `embedded::<case>`.
macro_rules! conformance_suite {
    ($($case:ident),* $(,)?) => {
        mod mem {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::conformance::cases::$case(&crate::mem_store).await;
                }
            )*
        }
        #[cfg(feature = "embedded")]
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::conformance::cases::$case(&crate::embedded_store).await;
                }
            )*
        }
    };
}

conformance_suite!(
    empty_store_is_at_revision_one,
    create_then_get_returns_the_stored_kv,
    create_of_existing_key_is_already_exists,
    update_with_current_revision_succeeds,
    update_with_stale_revision_is_conflict,
    unconditional_update_ignores_revision,
    update_of_missing_key_is_not_found,
    delete_checks_precondition_and_returns_deleted_value,
    range_returns_prefix_in_key_order_with_pagination,
    range_without_limit_returns_everything_and_its_revision,
    range_chunks_hand_over_one_snapshot_in_chunks,
    revisions_increase_by_exactly_one_per_successful_write,
    watch_replays_history_then_delivers_live_events,
    watch_from_zero_starts_now,
    watch_filters_by_prefix,
    watch_after_list_revision_misses_nothing,
    watch_from_compacted_revision_is_compacted,
    watch_before_trimmed_history_is_compacted,
    lagging_watcher_goes_on_from_the_history,
    lagging_watcher_behind_the_history_ends_with_compacted,
    concurrent_creates_from_64_tasks_get_distinct_revisions,
);
