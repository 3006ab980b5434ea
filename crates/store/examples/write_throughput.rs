//! Measures fsynced creates per second of `EmbeddedStore` for 1 and 64 concurrent writers.
//!
//! ```text
//! cargo run -p kumo-store --release --example write_throughput [DIR] [SECONDS]
//! ```
//! DIR defaults to the system temp dir (put it on the disk you care about).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kumo_store::{EmbeddedStore, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().map_or_else(std::env::temp_dir, Into::into);
    let seconds: u64 = args.next().map_or(Ok(3), |s| s.parse())?;
    println!("{:>8} {:>12} {:>10}", "writers", "creates/s", "total");
    for writers in [1usize, 64] {
        let dir = tempfile::tempdir_in(&base)?;
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb"))?);
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let (store, done) = (store.clone(), done.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let key = format!("/registry/bench/w{w}/{i}");
                        store.create(&key, vec![b'x'; 1024]).await?;
                        done.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    Ok::<_, kumo_store::StoreError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let total = done.load(Ordering::Relaxed);
        let rate = total as f64 / started.elapsed().as_secs_f64();
        println!("{writers:>8} {rate:>12.0} {total:>10}");
    }
    Ok(())
}
