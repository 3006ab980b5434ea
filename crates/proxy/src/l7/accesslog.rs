//! The access log: one JSON line per request, written by a background task so the request path
//! only formats and hands over. Each line is also the hop's span record (trace and span ids
//! from W3C `traceparent`). The file rotates to `<name>.1` at 64 MiB.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::mpsc;

const ROTATE_AT: u64 = 64 << 20;

#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<String>,
    metrics: Arc<super::metrics::Metrics>,
}

impl AccessLog {
    /// Start the writer for `path` (its directory is created).
    pub fn open(
        path: PathBuf,
        metrics: Arc<super::metrics::Metrics>,
    ) -> std::io::Result<AccessLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, mut rx) = mpsc::channel::<String>(8192);
        std::thread::Builder::new().name("kumo-access-log".into()).spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(64 << 10, file);
            while let Some(line) = rx.blocking_recv() {
                let mut batch = vec![line];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                    if batch.len() > 4096 {
                        break;
                    }
                }
                for l in &batch {
                    let _ = out.write_all(l.as_bytes());
                    size += l.len() as u64;
                }
                let _ = out.flush();
                if size > ROTATE_AT {
                    let _ = std::fs::rename(&path, path.with_extension("log.1"));
                    if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(&path)
                    {
                        out = std::io::BufWriter::with_capacity(64 << 10, f);
                        size = 0;
                    }
                }
            }
        })?;
        Ok(AccessLog { tx, metrics })
    }

    /// Queue a record; a full queue drops it (counted) rather than slow the request.
    pub fn write(&self, record: &serde_json::Value) {
        let mut line = record.to_string();
        line.push('\n');
        if self.tx.try_send(line).is_err() {
            self.metrics.access_log_dropped.fetch_add(1, Relaxed);
        }
    }
}
