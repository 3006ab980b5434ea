//! The access log: one JSON line per request. Requests append to a shared buffer; a
//! background thread writes it out every 100 ms, so the request path neither blocks on the
//! file nor wakes a thread per line. Each line is also the hop's span record (trace and span
//! ids from W3C `traceparent`). The file rotates to `<name>.1` at 64 MiB.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROTATE_AT: u64 = 64 << 20;
/// Lines beyond this much unwritten text are dropped (and counted) rather than held.
const MAX_PENDING: usize = 16 << 20;

#[derive(Clone)]
pub struct AccessLog {
    pending: Arc<Mutex<Vec<u8>>>,
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
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let pending: Arc<Mutex<Vec<u8>>> = Arc::default();
        let shared = pending.clone();
        std::thread::Builder::new().name("kumo-access-log".into()).spawn(move || {
            let mut out = Vec::new();
            loop {
                std::thread::sleep(Duration::from_millis(100));
                if let Ok(mut p) = shared.lock() {
                    std::mem::swap(&mut *p, &mut out);
                }
                if out.is_empty() {
                    continue;
                }
                let _ = file.write_all(&out);
                size += out.len() as u64;
                out.clear();
                if size > ROTATE_AT {
                    let _ = std::fs::rename(&path, path.with_extension("log.1"));
                    if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(&path)
                    {
                        file = f;
                        size = 0;
                    }
                }
            }
        })?;
        Ok(AccessLog { pending, metrics })
    }

    /// Queue a record; past the pending limit it is dropped (counted) rather than slow the
    /// request.
    pub fn write(&self, record: &Record) {
        let line = record.to_json();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() + line.len() > MAX_PENDING {
            self.metrics.access_log_dropped.fetch_add(1, Relaxed);
            return;
        }
        p.extend_from_slice(line.as_bytes());
    }
}

/// One request, as the access log writes it.
pub struct Record<'a> {
    pub listener: &'a str,
    pub client: &'a str,
    pub method: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub route: Option<&'a str>,
    pub service: Option<&'a str>,
    pub backend: Option<std::net::SocketAddr>,
    pub attempts: u32,
    pub flags: &'a [&'static str],
    pub duration: std::time::Duration,
    pub trace_id: &'a str,
    pub span_id: &'a str,
    pub parent_span_id: Option<&'a str>,
}

thread_local! {
    /// The formatted time of the current second: formatting a date per request is costly.
    static SECOND: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
}

fn timestamp(out: &mut String) {
    use std::fmt::Write as _;
    let now = chrono::Utc::now();
    let secs = now.timestamp();
    SECOND.with(|s| {
        let mut s = s.borrow_mut();
        if s.0 != secs {
            *s = (secs, now.format("%Y-%m-%dT%H:%M:%S").to_string());
        }
        out.push_str(&s.1);
    });
    let _ = write!(out, ".{:06}Z", now.timestamp_subsec_micros());
}

/// A JSON string literal.
fn quoted(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Record<'_> {
    /// The JSON line, written by hand: a `serde_json::Value` costs a map and a string per field.
    pub fn to_json(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::with_capacity(384);
        o.push_str("{\"time\":\"");
        timestamp(&mut o);
        o.push_str("\",\"listener\":");
        quoted(&mut o, self.listener);
        o.push_str(",\"client\":");
        quoted(&mut o, self.client);
        o.push_str(",\"method\":");
        quoted(&mut o, self.method);
        o.push_str(",\"authority\":");
        quoted(&mut o, self.authority);
        o.push_str(",\"path\":");
        quoted(&mut o, self.path);
        let _ = write!(o, ",\"status\":{}", self.status);
        let opt = |o: &mut String, key: &str, v: Option<&str>| {
            let _ = write!(o, ",\"{key}\":");
            match v {
                Some(v) => quoted(o, v),
                None => o.push_str("null"),
            }
        };
        opt(&mut o, "route", self.route);
        opt(&mut o, "service", self.service);
        opt(&mut o, "backend", self.backend.map(|b| b.to_string()).as_deref());
        let _ = write!(
            o,
            ",\"attempts\":{},\"flags\":\"{}\",\"duration_ms\":{}.{:03},\"trace_id\":\"{}\",\"span_id\":\"{}\"",
            self.attempts,
            self.flags.join(","),
            self.duration.as_micros() / 1000,
            self.duration.as_micros() % 1000,
            self.trace_id,
            self.span_id
        );
        opt(&mut o, "parent_span_id", self.parent_span_id);
        o.push_str("}\n");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_valid_json_lines() {
        let r = Record {
            listener: "gateway",
            client: "127.0.0.1",
            method: "GET",
            authority: "shop.example",
            path: "/a\"b\\c\u{1}",
            status: 200,
            route: Some("httproute/default/x/0"),
            service: None,
            backend: Some("127.0.0.1:8080".parse().unwrap()),
            attempts: 1,
            flags: &["URX", "UT"],
            duration: std::time::Duration::from_micros(1500),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            span_id: "00f067aa0ba902b7",
            parent_span_id: None,
        };
        let line = r.to_json();
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/a\"b\\c\u{1}");
        assert_eq!(v["service"], serde_json::Value::Null);
        assert_eq!(v["flags"], "URX,UT");
        assert_eq!(v["duration_ms"], 1.5);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
