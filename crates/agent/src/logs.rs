//! Container logs in files, in the CRI format kubelet uses
//! (`2026-11-23T10:00:00.123456789Z stdout F the line`), with size-based rotation; and the
//! reader behind `kubectl logs` (`--tail`, `--since`, `--timestamps`, `--limit-bytes`, `-f`).
//!
//! The shim of the process runtime writes with [`LogWriter`]; the process runtime reads with
//! [`read_log`].
//!
//! A line longer than one chunk of output, or one the program has not finished yet, is stored
//! as `P` (partial) records followed by an `F` (full) record; the reader joins them again per
//! output, so `kubectl logs` shows the line whole.

use crate::runtime::{LogOptions, LogStream};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which output a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// stdout
    Stdout,
    /// stderr
    Stderr,
}

impl Output {
    fn tag(self) -> &'static str {
        match self {
            Output::Stdout => "stdout",
            Output::Stderr => "stderr",
        }
    }
}

/// How timestamps are written, in the file and in `--timestamps` output: RFC 3339 in UTC with
/// nine fractional digits, as kubelet prints them.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.9fZ";

/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(150);

/// Largest chunk handed to the HTTP body at once.
const CHUNK: usize = 32 * 1024;

/// Appends a container's output to its log file in the CRI format; when the file passes
/// `max_bytes` it is renamed to `<path>.1` (replacing an older one) and a new file begins.
pub struct LogWriter {
    path: PathBuf,
    max_bytes: u64,
    file: File,
    size: u64,
}

impl LogWriter {
    /// Open (append to) the log at `path`.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter { path: path.to_path_buf(), max_bytes, file, size })
    }

    /// Write a chunk read from one output: complete lines are tagged `F`, a trailing partial
    /// line `P`.
    pub fn write(&mut self, output: Output, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let ts = Utc::now().format(TIME_FORMAT).to_string();
        let mut rest = data;
        while !rest.is_empty() {
            let (content, tag, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], "F", &rest[i + 1..]),
                None => (rest, "P", &rest[rest.len()..]),
            };
            let mut record = Vec::with_capacity(ts.len() + content.len() + 12);
            record.extend_from_slice(ts.as_bytes());
            record.push(b' ');
            record.extend_from_slice(output.tag().as_bytes());
            record.push(b' ');
            record.extend_from_slice(tag.as_bytes());
            record.push(b' ');
            record.extend_from_slice(content);
            record.push(b'\n');
            // One write per record, so a reader never sees half of one from this writer
            // interleaved with another record.
            self.file.write_all(&record)?;
            self.size += record.len() as u64;
            if self.size >= self.max_bytes {
                self.rotate()?;
            }
            rest = next;
        }
        Ok(())
    }

    /// Rotation happens only between records, so each file holds whole records.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        std::fs::rename(&self.path, rotated(&self.path))?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".1");
    PathBuf::from(s)
}

/// One record of the file.
struct Record<'a> {
    time: DateTime<Utc>,
    stderr: bool,
    full: bool,
    content: &'a [u8],
}

fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    let stderr = match parts.next()? {
        b"stdout" => false,
        b"stderr" => true,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(Record { time, stderr, full, content: parts.next().unwrap_or(b"") })
}

/// A line as `kubectl logs` shows it, joined from its records.
#[derive(Debug, Clone)]
struct Line {
    time: DateTime<Utc>,
    content: Vec<u8>,
    /// Whether the line ended with a newline (the last line of a container may not).
    complete: bool,
}

/// Turns records into lines: keeps the partial line of each output until its `F` record.
#[derive(Default)]
struct Assembler {
    /// Bytes of a record not yet terminated by `\n` (the writer may be mid-record).
    buf: Vec<u8>,
    /// Partial lines of stdout and stderr.
    pending: [Option<Line>; 2],
}

impl Assembler {
    fn push(&mut self, data: &[u8], out: &mut Vec<Line>) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + i;
            if let Some(r) = parse_record(&self.buf[start..end]) {
                let slot = &mut self.pending[usize::from(r.stderr)];
                let line = slot.get_or_insert_with(|| Line {
                    time: r.time,
                    content: Vec::new(),
                    complete: false,
                });
                line.content.extend_from_slice(r.content);
                if r.full {
                    if let Some(mut l) = slot.take() {
                        l.complete = true;
                        out.push(l);
                    }
                }
            }
            start = end + 1;
        }
        self.buf.drain(..start);
    }

    /// A new file begins: a torn record at the end of the old one cannot be completed.
    fn next_file(&mut self) {
        self.buf.clear();
    }

    /// The container has ended: unfinished lines are shown as they are.
    fn flush(&mut self, out: &mut Vec<Line>) {
        let mut rest: Vec<Line> = self.pending.iter_mut().filter_map(Option::take).collect();
        rest.sort_by_key(|l| l.time);
        out.extend(rest);
    }
}

/// Stream the log at `path` (with its rotated part `<path>.1` before it) as `kubectl logs`
/// shows it: content only, or with timestamps. With `follow`, keeps reading new lines until
/// `finished()` says the container has ended and everything written is sent.
pub fn read_log(
    path: PathBuf,
    options: LogOptions,
    finished: Box<dyn Fn() -> bool + Send + Sync>,
) -> LogStream {
    let reader = Reader {
        path,
        options,
        finished,
        started: false,
        done: false,
        current: None,
        assembler: Assembler::default(),
        queue: VecDeque::new(),
        sent: 0,
    };
    Box::pin(futures::stream::unfold(reader, |mut r| async move {
        match r.next_chunk().await {
            Ok(Some(b)) => Some((Ok(b), r)),
            Ok(None) => None,
            Err(e) => {
                r.done = true;
                r.queue.clear();
                Some((Err(e), r))
            }
        }
    }))
}

/// The file a follower reads, with where it is in it.
struct Current {
    file: File,
    ino: u64,
    offset: u64,
}

struct Reader {
    path: PathBuf,
    options: LogOptions,
    finished: Box<dyn Fn() -> bool + Send + Sync>,
    started: bool,
    done: bool,
    current: Option<Current>,
    assembler: Assembler,
    queue: VecDeque<Bytes>,
    sent: u64,
}

impl Reader {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(b) = self.queue.pop_front() {
                return Ok(Some(b));
            }
            if self.done {
                return Ok(None);
            }
            if !self.started {
                self.started = true;
                let lines = self.initial()?;
                self.emit(lines);
                if !self.options.follow {
                    self.done = true;
                }
                continue;
            }
            // Ask first, read after: whatever was written before the container ended is then
            // certainly in the files when they are read.
            let ended = (self.finished)();
            let mut lines = Vec::new();
            self.poll(&mut lines)?;
            if ended {
                self.assembler.flush(&mut lines);
                self.done = true;
            }
            let since = self.options.since;
            lines.retain(|l| since.is_none_or(|s| l.time >= s));
            if lines.is_empty() && !self.done {
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            self.emit(lines);
        }
    }

    /// Everything written so far: the rotated file, then the current one (which a follower
    /// keeps open to read on from).
    fn initial(&mut self) -> io::Result<Vec<Line>> {
        let mut lines = Vec::new();
        let current = match File::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let current_ino = match &current {
            Some(f) => Some(f.metadata()?.ino()),
            None => None,
        };
        match File::open(rotated(&self.path)) {
            Ok(mut old) => {
                // If the writer rotated between the two opens, `.1` is the file already open.
                if Some(old.metadata()?.ino()) != current_ino {
                    let mut data = Vec::new();
                    old.read_to_end(&mut data)?;
                    self.assembler.push(&data, &mut lines);
                    self.assembler.next_file();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let (Some(file), Some(ino)) = (current, current_ino) {
            self.current = Some(Current { file, ino, offset: 0 });
            self.read_current(&mut lines)?;
        }
        if !self.options.follow {
            self.assembler.flush(&mut lines);
        }
        if let Some(since) = self.options.since {
            lines.retain(|l| l.time >= since);
        }
        if let Some(n) = self.options.tail_lines {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if lines.len() > n {
                lines.drain(..lines.len() - n);
            }
        }
        Ok(lines)
    }

    /// Read what is new in the open file up to its end.
    fn read_current(&mut self, lines: &mut Vec<Line>) -> io::Result<()> {
        let Some(cur) = self.current.as_mut() else { return Ok(()) };
        cur.file.seek(SeekFrom::Start(cur.offset))?;
        let mut data = Vec::new();
        // Bounded by the rotation size, so a short blocking read on a local file.
        let n = cur.file.read_to_end(&mut data)?;
        cur.offset += n as u64;
        self.assembler.push(&data, lines);
        Ok(())
    }

    /// Read new lines, following the writer into a new file when it rotated.
    fn poll(&mut self, lines: &mut Vec<Line>) -> io::Result<()> {
        self.read_current(lines)?;
        let now = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let rotated_away = match (&self.current, now) {
            (Some(cur), Some(ino)) => cur.ino != ino,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if rotated_away {
            // The writer may have added to the old file just before renaming it. (Were it to
            // rotate twice between two polls, the middle file would be missed; rotation sizes
            // are megabytes, polls a few per second.)
            self.read_current(lines)?;
            self.assembler.next_file();
            let file = File::open(&self.path)?;
            let ino = file.metadata()?.ino();
            self.current = Some(Current { file, ino, offset: 0 });
            self.read_current(lines)?;
        }
        Ok(())
    }

    /// Render lines and queue them, stopping at `limit_bytes`.
    fn emit(&mut self, lines: Vec<Line>) {
        let mut chunk = Vec::new();
        for l in lines {
            if self.options.timestamps {
                chunk.extend_from_slice(l.time.format(TIME_FORMAT).to_string().as_bytes());
                chunk.push(b' ');
            }
            chunk.extend_from_slice(&l.content);
            if l.complete {
                chunk.push(b'\n');
            }
            if let Some(limit) = self.options.limit_bytes {
                let room = limit.saturating_sub(self.sent);
                if chunk.len() as u64 >= room {
                    chunk.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                    self.push_chunk(std::mem::take(&mut chunk));
                    self.done = true;
                    return;
                }
            }
            if chunk.len() >= CHUNK {
                self.push_chunk(std::mem::take(&mut chunk));
            }
        }
        self.push_chunk(chunk);
    }

    fn push_chunk(&mut self, chunk: Vec<u8>) {
        if !chunk.is_empty() {
            self.sent += chunk.len() as u64;
            self.queue.push_back(Bytes::from(chunk));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    async fn collect(path: &Path, options: LogOptions) -> String {
        let mut s = read_log(path.to_path_buf(), options, Box::new(|| true));
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b.expect("read"));
        }
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn writes_cri_records_with_partial_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 1 << 20).expect("open");
        w.write(Output::Stdout, b"one\ntw").expect("write");
        w.write(Output::Stderr, b"err\n").expect("write");
        w.write(Output::Stdout, b"o\n").expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let records: Vec<Vec<&str>> =
            text.lines().map(|l| l.splitn(4, ' ').collect::<Vec<_>>()).collect();
        let tail: Vec<Vec<&str>> = records.iter().map(|r| r[1..].to_vec()).collect();
        assert_eq!(
            tail,
            vec![
                vec!["stdout", "F", "one"],
                vec!["stdout", "P", "tw"],
                vec!["stderr", "F", "err"],
                vec!["stdout", "F", "o"],
            ]
        );
        let ts = records[0][0];
        assert!(ts.ends_with('Z') && ts.len() == "2026-11-23T10:00:00.123456789Z".len(), "{ts}");
        assert!(DateTime::parse_from_rfc3339(ts).is_ok());
    }

    #[tokio::test]
    async fn reads_lines_joined_tail_timestamps_limit() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 1 << 20).expect("open");
        w.write(Output::Stdout, b"a\nlong ").expect("write");
        w.write(Output::Stderr, b"e1\n").expect("write");
        w.write(Output::Stdout, b"line\nc\nno newline").expect("write");
        drop(w);
        let all = collect(&path, LogOptions::default()).await;
        assert_eq!(all, "a\ne1\nlong line\nc\nno newline");
        let tail = collect(&path, LogOptions { tail_lines: Some(2), ..Default::default() }).await;
        assert_eq!(tail, "c\nno newline");
        let limited =
            collect(&path, LogOptions { limit_bytes: Some(5), ..Default::default() }).await;
        assert_eq!(limited, "a\ne1\n");
        let limited =
            collect(&path, LogOptions { limit_bytes: Some(4), ..Default::default() }).await;
        assert_eq!(limited, "a\ne1");
        let stamped = collect(
            &path,
            LogOptions { timestamps: true, tail_lines: Some(1), ..Default::default() },
        )
        .await;
        let (ts, rest) = stamped.split_once(' ').expect("timestamp");
        assert_eq!(rest, "no newline");
        assert!(DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        let none = collect(&path, LogOptions { tail_lines: Some(0), ..Default::default() }).await;
        assert_eq!(none, "");
    }

    #[tokio::test]
    async fn since_filters_by_record_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:00.000000000Z stdout F old\n\
             2026-01-01T00:00:10.000000000Z stdout F new\n\
             garbage line\n\
             2026-01-01T00:00:20.5Z stderr F newer\n",
        )
        .expect("write");
        let since = DateTime::parse_from_rfc3339("2026-01-01T00:00:10Z").expect("t").to_utc();
        let out = collect(&path, LogOptions { since: Some(since), ..Default::default() }).await;
        assert_eq!(out, "new\nnewer\n");
        let out = collect(
            &path,
            LogOptions { since: Some(since), timestamps: true, ..Default::default() },
        )
        .await;
        assert_eq!(
            out,
            "2026-01-01T00:00:10.000000000Z new\n2026-01-01T00:00:20.500000000Z newer\n"
        );
    }

    #[tokio::test]
    async fn rotation_keeps_one_old_file_and_reader_reads_both() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 200).expect("open");
        for i in 0..20 {
            w.write(Output::Stdout, format!("line {i}\n").as_bytes()).expect("write");
        }
        assert!(rotated(&path).exists());
        assert!(std::fs::metadata(&path).expect("meta").len() < 200);
        let out = collect(&path, LogOptions::default()).await;
        let lines: Vec<&str> = out.lines().collect();
        // Older rotations are gone; what is left is a contiguous, ordered suffix.
        assert_eq!(lines.last(), Some(&"line 19"));
        let first: usize =
            lines[0].strip_prefix("line ").and_then(|n| n.parse().ok()).expect("number");
        let expected: Vec<String> = (first..20).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, expected);
    }

    #[tokio::test]
    async fn follow_streams_concurrent_writes_across_rotation_until_finished() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 1500).expect("open");
        w.write(Output::Stdout, b"before\n").expect("write");
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let mut stream = read_log(
            path.clone(),
            LogOptions { follow: true, tail_lines: Some(1), ..Default::default() },
            Box::new(move || flag.load(Ordering::SeqCst)),
        );
        // The stream reads on its first poll: take the tail before the writer goes on.
        let first = stream.next().await.expect("first chunk").expect("read");
        assert_eq!(&first[..], b"before\n");
        let writer = std::thread::spawn(move || {
            for i in 0..40 {
                let chunk = format!("l{i} ");
                w.write(Output::Stdout, chunk.as_bytes()).expect("write");
                w.write(Output::Stdout, b"x\n").expect("write");
                std::thread::sleep(Duration::from_millis(20));
            }
            w.write(Output::Stderr, b"bye").expect("write");
            done.store(true, Ordering::SeqCst);
        });
        let mut out = Vec::new();
        let read = async {
            while let Some(b) = stream.next().await {
                out.extend_from_slice(&b.expect("chunk"));
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read).await.expect("follow ends");
        writer.join().expect("writer");
        let text = String::from_utf8(out).expect("utf8");
        let mut expected = String::new();
        for i in 0..40 {
            expected.push_str(&format!("l{i} x\n"));
        }
        expected.push_str("bye");
        assert_eq!(text, expected);
        assert!(rotated(&path).exists(), "the writer rotated during the test");
    }
}
