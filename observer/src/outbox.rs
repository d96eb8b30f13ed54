//! The outbox: runtime events on their way to the optional external backend
//! (Scanner.WebService, `POST /api/v1/scanner/runtime/events`, batched NDJSON), through a
//! queue on disk, so that a backend outage or a restart of the observer loses nothing but what
//! the caps drop.
//!
//! Pure core, thin shell: [`DiskQueue`] (plain file code) keeps the events in order on disk and
//! remembers how far the backend acknowledged them; [`TokenBucket`] paces how fast events
//! leave the node; [`Outbox`] is the async shell that batches, compresses, sends and retries.
//!
//! On disk, in the outbox's directory:
//! - `events-<seq>.ndjson`: segments of events, one JSON document a line, `<seq>` in 20
//!   digits so that names sort like numbers. Events are appended to the newest segment until
//!   it would pass [`Caps::segment_bytes`]; each start of the observer begins a new one.
//! - `acked`: `<seq> <offset>\n`, the position of the first event not yet acknowledged,
//!   rewritten through `acked.tmp` and a rename so that it is always whole. Segments before
//!   it are deleted.
//!
//! Durability: an append is one `write(2)` straight to the file, so once it returns the event
//! is in the kernel's page cache, which a killed process (SIGKILL, OOM) does not lose. There is
//! no fsync: a power loss or kernel crash can lose what was appended in the last ~30 s (the
//! kernel's writeback delay) and can move the `acked` mark back, so that the backend gets some
//! events twice (their `eventId` tells it). A line cut short by any of these is cut off on the
//! next [`DiskQueue::open`].

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::de::IgnoredAny;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The backend's endpoint for runtime events, after its base URL.
pub const EVENTS_PATH: &str = "/api/v1/scanner/runtime/events";
/// The `endpoint` label of the latency histogram.
const ENDPOINT: &str = "runtime/events";
/// How long the last flush at shutdown may take.
const FLUSH_DEADLINE: Duration = Duration::from_secs(2);
/// How much of a rejecting backend's answer goes into the log.
const BODY_EXCERPT_BYTES: usize = 512;
/// At most one warning about events dropped for capacity per this interval: a full queue
/// drops on every push.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

const ACKED: &str = "acked";
const ACKED_TMP: &str = "acked.tmp";
const SEGMENT_PREFIX: &str = "events-";
const SEGMENT_SUFFIX: &str = ".ndjson";
const SEQ_DIGITS: usize = 20;

// ---------------------------------------------------------------------------------------------
// Disk queue
// ---------------------------------------------------------------------------------------------

/// How much the queue holds before it drops its oldest events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Bytes of events not yet acknowledged (newlines included). On disk there can be up to
    /// one segment more: the acknowledged start of the oldest one.
    pub max_bytes: u64,
    /// Events not yet acknowledged (DESIGN.md `limits.perNodeQueue`).
    pub max_events: usize,
    /// Size at which a new segment file is started.
    pub segment_bytes: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_bytes: 50_000_000,
            max_events: 10_000,
            segment_bytes: 1 << 20,
        }
    }
}

/// Where an event starts on disk. Positions grow with every event appended (new segments get
/// higher numbers, also across restarts), so they order the queue and name how far an
/// acknowledgement goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    seq: u64,
    offset: u64,
}

/// What [`DiskQueue::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Events not yet acknowledged, now queued again.
    pub events: usize,
    /// Lines cut short (a process killed mid-write), cut off the files.
    pub torn: usize,
    /// Lines that are not JSON, left out.
    pub skipped_lines: usize,
    /// Files that are unreadable or no segment of the outbox, left alone.
    pub skipped_files: usize,
    /// The oldest events dropped because the caps are now lower than what was on disk.
    pub dropped: usize,
}

/// The oldest events of the queue, to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The events, oldest first, without their newlines.
    pub lines: Vec<String>,
    /// The position of the last one: what to [`DiskQueue::ack`] once they are delivered.
    pub through: Position,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    pos: Position,
    /// Bytes of the line without its newline.
    len: u64,
    /// When it was queued (for a restart: when the queue was opened).
    at: Instant,
}

/// The segment appended to.
#[derive(Debug)]
struct Tail {
    seq: u64,
    file: File,
    size: u64,
}

/// Runtime events in order, in NDJSON segment files of a directory. Synchronous: each call is
/// a few small reads or writes.
#[derive(Debug)]
pub struct DiskQueue {
    dir: PathBuf,
    caps: Caps,
    entries: VecDeque<Entry>,
    /// Bytes of `entries`, newlines included.
    bytes: u64,
    /// Segment files on disk, by number.
    segments: BTreeSet<u64>,
    tail: Option<Tail>,
    next_seq: u64,
    /// The acknowledged position as written to `acked`.
    acked: Position,
}

impl DiskQueue {
    /// Opens the queue in `dir` (created if missing): the events not yet acknowledged are
    /// queued again, in order. A line cut short at the end of a segment is cut off; lines and
    /// files that make no sense are left out with a warning.
    pub fn open(dir: impl Into<PathBuf>, caps: Caps) -> Result<(DiskQueue, Recovered)> {
        let dir = dir.into();
        if caps.max_bytes == 0 || caps.max_events == 0 || caps.segment_bytes == 0 {
            return Err(Error::OutboxConfig(format!(
                "queue caps must not be zero: {caps:?}"
            )));
        }
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        remove_if_present(&dir.join(ACKED_TMP));
        let acked = read_acked(&dir);
        let mut recovered = Recovered::default();
        let mut seqs = BTreeSet::new();
        for item in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let item = item.map_err(|e| Error::io(&dir, e))?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name == ACKED || name == ACKED_TMP {
                continue;
            }
            match segment_seq(&name) {
                Some(seq) => {
                    seqs.insert(seq);
                }
                None => {
                    tracing::warn!(path = %item.path().display(), "not an outbox file: left alone");
                    recovered.skipped_files += 1;
                }
            }
        }

        let now = Instant::now();
        let mut entries = VecDeque::new();
        let mut bytes = 0;
        let mut segments = BTreeSet::new();
        for &seq in &seqs {
            let path = segment_path(&dir, seq);
            if seq < acked.seq {
                // Acknowledged before the last stop, which came before it was deleted.
                remove_if_present(&path);
                continue;
            }
            let start = if seq == acked.seq { acked.offset } else { 0 };
            let scan = match scan_segment(&path, start) {
                Ok(scan) => scan,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable outbox segment: skipped");
                    recovered.skipped_files += 1;
                    continue;
                }
            };
            if scan.torn {
                tracing::warn!(path = %path.display(), "outbox segment ends in a line cut short (killed mid-write): cut off");
                recovered.torn += 1;
            }
            if scan.skipped > 0 {
                tracing::warn!(path = %path.display(), lines = scan.skipped, "outbox segment lines that are not JSON: left out");
                recovered.skipped_lines += scan.skipped;
            }
            if scan.lines.is_empty() {
                remove_if_present(&path);
                continue;
            }
            segments.insert(seq);
            for (offset, len) in scan.lines {
                bytes += len + 1;
                entries.push_back(Entry {
                    pos: Position { seq, offset },
                    len,
                    at: now,
                });
            }
        }
        recovered.events = entries.len();
        let last_seq = seqs.last().copied().unwrap_or(0).max(acked.seq);
        let mut queue = DiskQueue {
            dir,
            caps,
            entries,
            bytes,
            segments,
            tail: None,
            next_seq: last_seq.saturating_add(1),
            acked,
        };
        recovered.dropped = queue.enforce_caps();
        recovered.events -= recovered.dropped;
        Ok((queue, recovered))
    }

    /// Appends one event: `line` is one JSON document without a newline. When the queue then
    /// holds more than its caps, its oldest events are dropped; returns how many.
    pub fn append(&mut self, line: &str) -> Result<usize> {
        if line.contains('\n') {
            return Err(Error::InvalidEvent {
                reason: "it spans more than one line".to_string(),
            });
        }
        if let Err(e) = serde_json::from_str::<IgnoredAny>(line) {
            return Err(Error::InvalidEvent {
                reason: format!("not JSON: {e}"),
            });
        }
        let len = line.len() as u64;
        if len + 1 > self.caps.max_bytes {
            return Err(Error::EventTooLarge {
                bytes: len + 1,
                max: self.caps.max_bytes,
            });
        }
        let tail = self.tail_for(len + 1)?;
        // One buffer, one write: no userspace buffer is left behind when this returns.
        let mut record = Vec::with_capacity(line.len() + 1);
        record.extend_from_slice(line.as_bytes());
        record.push(b'\n');
        if let Err(e) = tail.file.write_all(&record) {
            // A short write (a full disk) leaves part of a line: cut it, and append to a new
            // segment from now on in case the cut failed too (open() cuts it then).
            let _ = tail.file.set_len(tail.size);
            let seq = tail.seq;
            self.tail = None;
            return Err(Error::io(segment_path(&self.dir, seq), e));
        }
        let pos = Position {
            seq: tail.seq,
            offset: tail.size,
        };
        tail.size += len + 1;
        self.entries.push_back(Entry {
            pos,
            len,
            at: Instant::now(),
        });
        self.bytes += len + 1;
        Ok(self.enforce_caps())
    }

    /// Up to `n` of the oldest events, from the oldest segment only (one file read); `None`
    /// when the queue is empty.
    pub fn peek(&self, n: usize) -> Result<Option<Batch>> {
        let Some(first) = self.entries.front() else {
            return Ok(None);
        };
        let seq = first.pos.seq;
        let batch: Vec<&Entry> = self
            .entries
            .iter()
            .take(n.max(1))
            .take_while(|e| e.pos.seq == seq)
            .collect();
        let Some(&last) = batch.last() else {
            return Ok(None);
        };
        let start = first.pos.offset;
        let span = last.pos.offset + last.len - start;
        let path = segment_path(&self.dir, seq);
        let mut data = vec![0; usize::try_from(span).unwrap_or(usize::MAX)];
        File::open(&path)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(start))?;
                f.read_exact(&mut data)
            })
            .map_err(|e| Error::io(&path, e))?;
        let mut lines = Vec::with_capacity(batch.len());
        for e in &batch {
            let from = (e.pos.offset - start) as usize;
            let bytes = data[from..from + e.len as usize].to_vec();
            let line = String::from_utf8(bytes).map_err(|_| Error::Parse {
                path: path.clone(),
                reason: format!("the event at byte {} is no longer UTF-8", e.pos.offset),
            })?;
            lines.push(line);
        }
        Ok(Some(Batch {
            lines,
            through: last.pos,
        }))
    }

    /// Removes the events up to `through` (delivered, or refused for good); returns how many
    /// were still queued (the caps may have dropped some meanwhile). The new start is written
    /// to `acked` so that a restart does not send them again; when that fails, a warning
    /// says so and a restart may send them twice.
    pub fn ack(&mut self, through: Position) -> usize {
        let n = self.entries.iter().take_while(|e| e.pos <= through).count();
        self.remove_oldest(n);
        n
    }

    /// Drops every event of the oldest segment (one that [`DiskQueue::peek`] cannot read:
    /// it would block the queue forever); returns how many.
    pub fn drop_oldest_segment(&mut self) -> usize {
        let Some(seq) = self.entries.front().map(|e| e.pos.seq) else {
            return 0;
        };
        let n = self.entries.iter().take_while(|e| e.pos.seq == seq).count();
        self.remove_oldest(n);
        n
    }

    /// Events queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the events queued, newlines included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// When the oldest event was queued.
    pub fn oldest_at(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.at)
    }

    /// The segment to append `size` bytes to: the current one while it has room, else a
    /// new one.
    fn tail_for(&mut self, size: u64) -> Result<&mut Tail> {
        let has_room = self
            .tail
            .as_ref()
            .is_some_and(|t| t.size == 0 || t.size + size <= self.caps.segment_bytes);
        let tail = match self.tail.take() {
            Some(tail) if has_room => tail,
            _ => {
                let seq = self.next_seq;
                let path = segment_path(&self.dir, seq);
                let file = OpenOptions::new()
                    .append(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                self.next_seq += 1;
                self.segments.insert(seq);
                Tail { seq, file, size: 0 }
            }
        };
        Ok(self.tail.insert(tail))
    }

    /// Drops the oldest events while the queue holds more than its caps; returns how many.
    fn enforce_caps(&mut self) -> usize {
        let mut n = 0;
        let mut freed = 0;
        while n < self.entries.len()
            && (self.entries.len() - n > self.caps.max_events
                || self.bytes - freed > self.caps.max_bytes)
        {
            freed += self.entries[n].len + 1;
            n += 1;
        }
        self.remove_oldest(n);
        n
    }

    /// Removes the `n` oldest events, records the new start in `acked`, then deletes the
    /// segments before it. In that order, a crash in between only leaves segments that
    /// open() deletes; the other way round, `acked` could point into a deleted segment and
    /// the start of the next one would be sent again.
    fn remove_oldest(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        for e in self.entries.drain(..n.min(self.entries.len())) {
            self.bytes -= e.len + 1;
        }
        let start = match (self.entries.front(), &self.tail) {
            (Some(e), _) => e.pos,
            (None, Some(t)) => Position {
                seq: t.seq,
                offset: t.size,
            },
            (None, None) => Position {
                seq: self.next_seq,
                offset: 0,
            },
        };
        if start != self.acked {
            match write_acked(&self.dir, start) {
                Ok(()) => self.acked = start,
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot record which runtime events were delivered: a restart may send them again"
                ),
            }
        }
        let done: Vec<u64> = self.segments.range(..start.seq).copied().collect();
        for seq in done {
            remove_if_present(&segment_path(&self.dir, seq));
            self.segments.remove(&seq);
        }
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{seq:020}{SEGMENT_SUFFIX}"))
}

/// The number of a segment file's name; `None` for any other name.
fn segment_seq(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Deletes a file; a failure other than its absence is a warning (open() deletes it later).
fn remove_if_present(path: &Path) {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete outbox file");
        }
        _ => {}
    }
}

/// The acknowledged position; the start of everything when there is none or it is garbage
/// (sending events twice is better than losing them).
fn read_acked(dir: &Path) -> Position {
    let path = dir.join(ACKED);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Position { seq: 0, offset: 0 },
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable outbox mark: every queued event will be sent");
            return Position { seq: 0, offset: 0 };
        }
    };
    let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(seq)), Some(Ok(offset)), None) => Position { seq, offset },
        _ => {
            tracing::warn!(path = %path.display(), "garbled outbox mark: every queued event will be sent");
            Position { seq: 0, offset: 0 }
        }
    }
}

fn write_acked(dir: &Path, pos: Position) -> Result<()> {
    let tmp = dir.join(ACKED_TMP);
    fs::write(&tmp, format!("{} {}\n", pos.seq, pos.offset)).map_err(|e| Error::io(&tmp, e))?;
    let path = dir.join(ACKED);
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// The lines of a segment from byte `start` on.
struct Scan {
    /// (offset, length without the newline) of each JSON line.
    lines: Vec<(u64, u64)>,
    /// Whether it ended in a line without its newline.
    torn: bool,
    /// Lines that are not JSON.
    skipped: usize,
}

fn scan_segment(path: &Path, start: u64) -> io::Result<Scan> {
    let data = fs::read(path)?;
    let whole = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn = whole < data.len();
    if torn {
        // Appends always go to a new segment after open(), so this is only tidying: when
        // the cut fails, the torn bytes are left out all the same.
        if let Err(e) = OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(whole as u64))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot cut the torn line off");
        }
    }
    let mut lines = Vec::new();
    let mut skipped = 0;
    let mut offset = 0u64;
    for line in data[..whole].split_inclusive(|&b| b == b'\n') {
        let len = line.len() as u64 - 1;
        if offset >= start {
            if serde_json::from_slice::<IgnoredAny>(&line[..line.len() - 1]).is_ok() {
                lines.push((offset, len));
            } else {
                skipped += 1;
            }
        }
        offset += len + 1;
    }
    Ok(Scan {
        lines,
        torn,
        skipped,
    })
}

// ---------------------------------------------------------------------------------------------
// Token bucket
// ---------------------------------------------------------------------------------------------

/// Slack for float rounding: tokens that are `n` give or take this are `n`.
const TOKEN_EPSILON: f64 = 1e-6;

/// A token bucket: `burst` tokens at most, refilled at `events_per_second`; each event takes
/// one. Pure: every call is told what time it is.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    /// When `tokens` was counted; `None` until the first call.
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket. A rate that is not a positive number never refills it.
    pub fn new(events_per_second: f64, burst: u32) -> Self {
        let rate = if events_per_second.is_finite() && events_per_second > 0.0 {
            events_per_second
        } else {
            0.0
        };
        TokenBucket {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: None,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_n(now, 1)
    }

    /// Takes `n` tokens if there are as many; else takes none.
    pub fn try_take_n(&mut self, now: Instant, n: u32) -> bool {
        self.tokens = self.available(now);
        // A clock that goes back does not refill: keep the later time.
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        if self.tokens + TOKEN_EPSILON >= f64::from(n) {
            self.tokens = (self.tokens - f64::from(n)).max(0.0);
            true
        } else {
            false
        }
    }

    /// How long until `n` tokens are there (zero when they are); `None` when they never
    /// will be (more than `burst`, or no refill).
    pub fn wait_time(&self, now: Instant, n: u32) -> Option<Duration> {
        let n = f64::from(n);
        if n > self.burst {
            return None;
        }
        let missing = n - self.available(now);
        if missing <= TOKEN_EPSILON {
            return Some(Duration::ZERO);
        }
        if self.rate == 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(missing / self.rate).ok()
    }

    fn available(&self, now: Instant) -> f64 {
        let elapsed = self
            .at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst)
    }
}

// ---------------------------------------------------------------------------------------------
// Sender
// ---------------------------------------------------------------------------------------------

/// How the outbox queues and sends.
#[derive(Clone, Debug)]
pub struct OutboxConfig {
    /// The queue's directory (a writable volume: the observer's root fs is read-only).
    pub dir: PathBuf,
    pub max_bytes: u64,
    /// DESIGN.md `limits.perNodeQueue`.
    pub max_events: usize,
    /// The backend's base URL; events go to `{backend_url}/api/v1/scanner/runtime/events`.
    pub backend_url: Url,
    /// A batch leaves once this many events are queued...
    pub batch_events: usize,
    /// ... or once the oldest has waited this long.
    pub batch_interval: Duration,
    /// DESIGN.md `limits.eventsPerSecond`: how fast events leave the node.
    pub events_per_second: f64,
    /// DESIGN.md `limits.burst`.
    pub burst: u32,
    /// Per request.
    pub timeout: Duration,
    /// The first wait after a failed delivery; doubled after each failure...
    pub retry_min: Duration,
    /// ... up to this.
    pub retry_max: Duration,
}

impl OutboxConfig {
    /// The defaults (DESIGN.md limits) for a queue in `dir` sending to `backend_url`.
    pub fn new(dir: impl Into<PathBuf>, backend_url: Url) -> Self {
        let caps = Caps::default();
        OutboxConfig {
            dir: dir.into(),
            max_bytes: caps.max_bytes,
            max_events: caps.max_events,
            backend_url,
            batch_events: 100,
            batch_interval: Duration::from_secs(2),
            events_per_second: 50.0,
            burst: 200,
            timeout: Duration::from_secs(5),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }

    /// The events endpoint; an error for settings that cannot work.
    fn validate(&self) -> Result<Url> {
        if self.batch_events == 0 || self.burst == 0 {
            return Err(Error::OutboxConfig(
                "batch size and burst must be at least 1".to_string(),
            ));
        }
        if !(self.events_per_second.is_finite() && self.events_per_second > 0.0) {
            return Err(Error::OutboxConfig(format!(
                "events per second must be a positive number, not {}",
                self.events_per_second
            )));
        }
        let url = &self.backend_url;
        if url.cannot_be_a_base() || url.query().is_some() || url.fragment().is_some() {
            return Err(Error::OutboxConfig(format!(
                "backend URL {url} is not a base URL (scheme, host, optional path)"
            )));
        }
        // The URL goes into logs and error messages.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::OutboxConfig(
                "the backend URL must not carry credentials".to_string(),
            ));
        }
        let base = self.backend_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{EVENTS_PATH}"))
            .map_err(|e| Error::OutboxConfig(format!("backend URL {base}: {e}")))
    }
}

/// What the sender and the pushers share: the queue (a `std` mutex, held for one file read or
/// write at a time, never across an await) and the sender's wake-up call.
struct Shared {
    buffer: Mutex<Buffer>,
    wake: Notify,
}

struct Buffer {
    queue: DiskQueue,
    /// Events dropped for capacity since the last warning, and when that was.
    unreported_drops: usize,
    last_drop_warning: Option<Instant>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // Nothing panics while holding it; if something did, the queue is still consistent
        // on disk, so keep going rather than stop reporting.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The daemon's side of the outbox.
pub struct OutboxHandle {
    shared: Arc<Shared>,
    metrics: Metrics,
    batch_events: usize,
    task: JoinHandle<()>,
}

impl OutboxHandle {
    /// Queues one runtime event (one line of canonical JSON, [`crate::report::RuntimeEvent::to_json`]).
    ///
    /// Written straight to the disk queue under a mutex: one small write, so it does not hold
    /// the daemon up, and once it returns the event survives a kill of the process. (A channel
    /// to a writer task would have to either block or drop when full, and would lose what is
    /// in it on a kill.) Events that cannot be queued are logged and counted in
    /// `zastava_buffer_drops_total`: the outbox is best effort and must not stop the daemon.
    pub fn push(&self, line: String) {
        let mut buffer = self.shared.lock();
        match buffer.queue.append(&line) {
            Ok(dropped) => {
                let len = buffer.queue.len();
                self.metrics.buffered_events.set(len as i64);
                if dropped > 0 {
                    self.capacity_drops(&mut buffer, dropped);
                }
                drop(buffer);
                // The sender wants to know when a batch is full, or when there is an oldest
                // event to time; pushes in between change nothing for it.
                if len == 1 || len >= self.batch_events {
                    self.shared.wake.notify_one();
                }
            }
            Err(e @ Error::EventTooLarge { .. }) => {
                drop(buffer);
                self.metrics
                    .buffer_drops
                    .with_label_values(&["capacity"])
                    .inc();
                tracing::warn!(error = %e, "runtime event dropped");
            }
            Err(e) => {
                drop(buffer);
                self.metrics
                    .buffer_drops
                    .with_label_values(&["error"])
                    .inc();
                tracing::warn!(error = %e, "runtime event dropped");
            }
        }
    }

    fn capacity_drops(&self, buffer: &mut Buffer, dropped: usize) {
        self.metrics
            .buffer_drops
            .with_label_values(&["capacity"])
            .inc_by(dropped as u64);
        buffer.unreported_drops += dropped;
        let now = Instant::now();
        if buffer
            .last_drop_warning
            .is_none_or(|at| now.duration_since(at) >= DROP_WARNING_INTERVAL)
        {
            tracing::warn!(
                dropped = buffer.unreported_drops,
                queued = buffer.queue.len(),
                bytes = buffer.queue.bytes(),
                "outbox full: dropped the oldest runtime events"
            );
            buffer.unreported_drops = 0;
            buffer.last_drop_warning = Some(now);
        }
    }

    /// Waits for the sender to finish (after `stop`, its last flush).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the outbox sender failed");
        }
    }
}

/// The outcome of one delivery attempt.
enum Delivery {
    Delivered,
    /// The backend refuses the batch for good (a 4xx other than 408 and 429).
    Rejected {
        status: StatusCode,
        excerpt: String,
    },
    /// Try again later; `reason` is the metric label.
    Failed {
        reason: &'static str,
        detail: String,
    },
}

/// The sender: a task that takes batches off the queue and delivers them.
pub struct Outbox {
    shared: Arc<Shared>,
    http: reqwest::Client,
    url: Url,
    config: OutboxConfig,
    bucket: TokenBucket,
    metrics: Metrics,
}

impl Outbox {
    /// Opens the queue in `config.dir` (what an earlier run left is sent first) and starts
    /// the sender on the current Tokio runtime. It sends until `stop` turns true (or its sender is dropped), then tries one
    /// last flush of at most [`FLUSH_DEADLINE`]; what is left stays on disk for the next start.
    ///
    /// A batch answered with a 4xx other than 408 and 429 is dropped (logged, counted as
    /// `zastava_buffer_drops_total{reason="rejected"}`): the backend says it is malformed and
    /// will say so again, and keeping it would block every later event. Any other failure
    /// keeps the batch and retries it with a backoff.
    pub fn spawn(
        config: OutboxConfig,
        metrics: Metrics,
        stop: watch::Receiver<bool>,
    ) -> Result<OutboxHandle> {
        let url = config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // A backend that redirects is misconfigured; a POST turned into a GET would lose
            // the batch.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::HttpClient(e.to_string()))?;
        let caps = Caps {
            max_bytes: config.max_bytes,
            max_events: config.max_events,
            ..Caps::default()
        };
        let (queue, recovered) = DiskQueue::open(&config.dir, caps)?;
        if recovered.events > 0 {
            tracing::info!(
                events = recovered.events,
                dir = %config.dir.display(),
                "runtime events left by an earlier run: sending them"
            );
        }
        metrics
            .buffer_drops
            .with_label_values(&["capacity"])
            .inc_by(recovered.dropped as u64);
        metrics.buffered_events.set(queue.len() as i64);
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer {
                queue,
                unreported_drops: 0,
                last_drop_warning: None,
            }),
            wake: Notify::new(),
        });
        let batch_events = config.batch_events;
        let outbox = Outbox {
            shared: shared.clone(),
            http,
            url,
            bucket: TokenBucket::new(config.events_per_second, config.burst),
            config,
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(outbox.run(stop));
        Ok(OutboxHandle {
            shared,
            metrics,
            batch_events,
            task,
        })
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut retry = self.config.retry_min;
        loop {
            if *stop.borrow() {
                break;
            }
            let now = Instant::now();
            let (len, oldest) = {
                let buffer = self.shared.lock();
                (buffer.queue.len(), buffer.queue.oldest_at())
            };
            let deadline = oldest.and_then(|at| at.checked_add(self.config.batch_interval));
            if len < self.config.batch_events && deadline.is_none_or(|d| now < d) {
                tokio::select! {
                    _ = self.shared.wake.notified() => continue,
                    _ = sleep_until(deadline) => continue,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            let n = self.batch_size(len);
            let wait = self
                .bucket
                .wait_time(now, n)
                .unwrap_or(self.config.retry_max);
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            match self.deliver_next(n as usize, self.config.timeout).await {
                Some(Delivery::Failed { reason, detail }) => {
                    tracing::warn!(
                        reason,
                        error = %detail,
                        retry_in_ms = retry.as_millis() as u64,
                        queued = len,
                        "cannot deliver runtime events to the backend: keeping them"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(jittered(retry)) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    retry = (retry * 2).min(self.config.retry_max);
                }
                Some(_) => retry = self.config.retry_min,
                None => {}
            }
        }
        self.flush().await;
    }

    /// The last flush: batches while the deadline and the token bucket allow, stopping at the
    /// first failure.
    async fn flush(&mut self) {
        let deadline = Instant::now() + FLUSH_DEADLINE;
        loop {
            let now = Instant::now();
            let len = self.shared.lock().queue.len();
            let left = deadline.saturating_duration_since(now);
            if len == 0 || left.is_zero() {
                break;
            }
            let n = self.batch_size(len);
            match self.bucket.wait_time(now, n) {
                Some(wait) if wait < left => tokio::time::sleep(wait).await,
                _ => break,
            }
            let timeout = self
                .config
                .timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            if let Some(Delivery::Failed { .. }) | None =
                self.deliver_next(n as usize, timeout).await
            {
                break;
            }
        }
        let left = self.shared.lock().queue.len();
        if left > 0 {
            tracing::info!(
                events = left,
                "outbox stopped: undelivered runtime events stay on disk for the next start"
            );
        }
    }

    /// Events in the next batch: what is queued, up to a batch and to what the bucket can
    /// ever hold.
    fn batch_size(&self, len: usize) -> u32 {
        let n = len.clamp(1, self.config.batch_events);
        u32::try_from(n).unwrap_or(u32::MAX).min(self.config.burst)
    }

    /// Sends up to `n` of the oldest events and acknowledges them when delivered or rejected;
    /// `None` when there was nothing to send.
    async fn deliver_next(&mut self, n: usize, timeout: Duration) -> Option<Delivery> {
        let peeked = self.shared.lock().queue.peek(n);
        let batch = match peeked {
            Ok(batch) => batch?,
            Err(e) => {
                // Unreadable now is unreadable forever: drop it rather than block the queue.
                let lost = self.shared.lock().queue.drop_oldest_segment();
                tracing::error!(error = %e, events = lost, "unreadable runtime events dropped");
                self.metrics
                    .buffer_drops
                    .with_label_values(&["error"])
                    .inc_by(lost as u64);
                return None;
            }
        };
        // Waited for as many tokens as asked for, and the batch is no larger.
        let taken = u32::try_from(batch.lines.len()).unwrap_or(u32::MAX);
        self.bucket.try_take_n(Instant::now(), taken);
        let delivery = self.send(&batch.lines, timeout).await;
        match &delivery {
            Delivery::Delivered => {
                tracing::debug!(events = batch.lines.len(), "runtime events delivered");
            }
            Delivery::Rejected { status, excerpt } => {
                tracing::error!(
                    %status,
                    body = %excerpt,
                    events = batch.lines.len(),
                    "the backend rejects a batch of runtime events as malformed: dropped"
                );
                self.metrics
                    .backend_failures
                    .with_label_values(&["rejected"])
                    .inc();
            }
            Delivery::Failed { reason, .. } => {
                self.metrics
                    .backend_failures
                    .with_label_values(&[reason])
                    .inc();
                return Some(delivery);
            }
        }
        let acked = {
            let mut buffer = self.shared.lock();
            let acked = buffer.queue.ack(batch.through);
            self.metrics.buffered_events.set(buffer.queue.len() as i64);
            acked
        };
        if let Delivery::Rejected { .. } = delivery {
            // Those the caps dropped meanwhile are counted as such already.
            self.metrics
                .buffer_drops
                .with_label_values(&["rejected"])
                .inc_by(acked as u64);
        }
        Some(delivery)
    }

    /// One POST of `lines` as gzip-compressed NDJSON.
    async fn send(&self, lines: &[String], timeout: Duration) -> Delivery {
        let body = match gzip_ndjson(lines) {
            Ok(body) => body,
            Err(e) => {
                return Delivery::Failed {
                    reason: "transport",
                    detail: format!("cannot compress the batch: {e}"),
                }
            }
        };
        let started = Instant::now();
        let sent = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .header(CONTENT_ENCODING, "gzip")
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        self.metrics
            .backend_latency
            .with_label_values(&[ENDPOINT])
            .observe(started.elapsed().as_secs_f64() * 1000.0);
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                let reason = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                return Delivery::Failed {
                    reason,
                    detail: format!("{}: {e}", self.url),
                };
            }
        };
        let status = response.status();
        match answer(status) {
            Answer::Delivered => Delivery::Delivered,
            Answer::Rejected => Delivery::Rejected {
                status,
                excerpt: excerpt(response).await,
            },
            Answer::Retry(reason) => Delivery::Failed {
                reason,
                detail: format!("{}: HTTP {status}", self.url),
            },
        }
    }
}

/// What the backend's status says about a batch.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Delivered,
    /// Malformed: sending it again would be refused again.
    Rejected,
    /// Try again later; the metric label says why.
    Retry(&'static str),
}

fn answer(status: StatusCode) -> Answer {
    if status.is_success() {
        Answer::Delivered
    } else if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS {
        Answer::Retry("throttled")
    } else if status.is_client_error() {
        Answer::Rejected
    } else if status.is_server_error() {
        Answer::Retry("server_error")
    } else {
        // 1xx, 3xx: a proxy or a misconfigured backend; the events are kept.
        Answer::Retry("unexpected_status")
    }
}

/// The start of a response's body, read no further than needed.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < BODY_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    zastava_process::events::truncate(&text, BODY_EXCERPT_BYTES)
}

/// The lines as NDJSON (each ending in a newline), gzip-compressed.
fn gzip_ndjson(lines: &[String]) -> io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    for line in lines {
        gz.write_all(line.as_bytes())?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

/// Somewhere between half `delay` and `delay`: the observers of a cluster do not all come
/// back at once to a backend that was down.
fn jittered(delay: Duration) -> Duration {
    // A randomly keyed hasher is random enough for this, without a dependency.
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    delay / 2 + delay.mul_f64((random % 1024) as f64 / 2048.0)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    use std::collections::VecDeque;
    use std::ops::Range;
    use std::sync::atomic::{AtomicU16, Ordering};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use axum::Router;
    use flate2::read::GzDecoder;

    fn event(i: usize) -> String {
        format!(r#"{{"eventId":"e{i:04}","kind":"DRIFT"}}"#)
    }

    fn events(range: Range<usize>) -> Vec<String> {
        range.map(event).collect()
    }

    /// Bytes one [`event`] takes in the queue.
    fn event_bytes() -> u64 {
        event(0).len() as u64 + 1
    }

    /// Everything queued, oldest first, acknowledged on the way.
    fn take_all(q: &mut DiskQueue) -> Vec<String> {
        let mut all = Vec::new();
        while let Some(batch) = q.peek(1000).unwrap() {
            all.extend(batch.lines);
            q.ack(batch.through);
        }
        all
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn append_peek_ack_in_order() {
        let dir = TempDir::new("outbox-order");
        let (mut q, recovered) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        assert_eq!(recovered, Recovered::default());
        assert!(q.peek(10).unwrap().is_none());
        for i in 0..5 {
            assert_eq!(q.append(&event(i)).unwrap(), 0);
        }
        assert_eq!(q.len(), 5);
        assert_eq!(q.bytes(), 5 * event_bytes());
        let batch = q.peek(3).unwrap().unwrap();
        assert_eq!(batch.lines, events(0..3));
        assert_eq!(q.peek(3).unwrap().unwrap(), batch, "peek takes nothing");
        assert_eq!(q.ack(batch.through), 3);
        assert_eq!(q.ack(batch.through), 0, "acknowledged once");
        assert_eq!(q.peek(10).unwrap().unwrap().lines, events(3..5));
        assert_eq!(take_all(&mut q), events(3..5));
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        assert!(q.oldest_at().is_none());
    }

    #[test]
    fn bad_events_are_refused() {
        let dir = TempDir::new("outbox-refused");
        let caps = Caps {
            max_bytes: 100,
            ..Caps::default()
        };
        let (mut q, _) = DiskQueue::open(dir.path(), caps).unwrap();
        for bad in ["{\"a\":1}\n{\"b\":2}", "not json", "", "{\"a\":"] {
            assert!(
                matches!(q.append(bad), Err(Error::InvalidEvent { .. })),
                "{bad:?}"
            );
        }
        let huge = format!(r#"{{"a":"{}"}}"#, "x".repeat(200));
        assert!(matches!(
            q.append(&huge),
            Err(Error::EventTooLarge { max: 100, .. })
        ));
        assert!(q.is_empty());
        let zero = Caps {
            max_events: 0,
            ..Caps::default()
        };
        assert!(matches!(
            DiskQueue::open(dir.path(), zero),
            Err(Error::OutboxConfig(_))
        ));
    }

    #[test]
    fn a_crash_keeps_exactly_what_was_not_acknowledged() {
        let dir = TempDir::new("outbox-crash");
        let (mut q, _) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        for i in 0..6 {
            q.append(&event(i)).unwrap();
        }
        let batch = q.peek(2).unwrap().unwrap();
        q.ack(batch.through);
        for i in 6..8 {
            q.append(&event(i)).unwrap();
        }
        // No clean close: the queue is just gone, as in a SIGKILL.
        drop(q);
        let (mut q, recovered) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        assert_eq!(recovered.events, 6);
        assert_eq!(q.len(), 6);
        assert_eq!(q.bytes(), 6 * event_bytes());
        q.append(&event(8)).unwrap();
        let batch = q.peek(4).unwrap().unwrap();
        assert_eq!(batch.lines, events(2..6), "the old segment first");
        q.ack(batch.through);
        drop(q);
        let (mut q, recovered) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        assert_eq!(recovered.events, 3);
        assert_eq!(take_all(&mut q), events(6..9));
        drop(q);
        let (q, recovered) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        assert_eq!(
            recovered.events, 0,
            "acknowledged events are not sent again"
        );
        assert!(q.is_empty());
    }

    #[test]
    fn caps_drop_the_oldest() {
        let dir = TempDir::new("outbox-caps");
        let caps = Caps {
            max_events: 3,
            ..Caps::default()
        };
        let (mut q, _) = DiskQueue::open(dir.path(), caps).unwrap();
        for i in 0..3 {
            assert_eq!(q.append(&event(i)).unwrap(), 0);
        }
        assert_eq!(q.append(&event(3)).unwrap(), 1);
        assert_eq!(q.append(&event(4)).unwrap(), 1);
        assert_eq!(q.peek(10).unwrap().unwrap().lines, events(2..5));
        drop(q);

        // The drops are remembered, and lower caps drop more on open.
        let lower = Caps {
            max_events: 2,
            ..Caps::default()
        };
        let (mut q, recovered) = DiskQueue::open(dir.path(), lower).unwrap();
        assert_eq!(recovered.dropped, 1);
        assert_eq!(recovered.events, 2);
        assert_eq!(take_all(&mut q), events(3..5));

        // Bytes: room for two and a half events.
        let dir = TempDir::new("outbox-caps-bytes");
        let caps = Caps {
            max_bytes: event_bytes() * 5 / 2,
            ..Caps::default()
        };
        let (mut q, _) = DiskQueue::open(dir.path(), caps).unwrap();
        assert_eq!(q.append(&event(0)).unwrap(), 0);
        assert_eq!(q.append(&event(1)).unwrap(), 0);
        assert_eq!(q.append(&event(2)).unwrap(), 1);
        // Exactly the cap, newline included.
        let fill = caps.max_bytes as usize - r#"{"eventId":""}"#.len() - 1;
        let big = format!(r#"{{"eventId":"{}"}}"#, "b".repeat(fill));
        assert_eq!(q.append(&big).unwrap(), 2, "as many as it takes");
        assert_eq!(q.peek(10).unwrap().unwrap().lines, vec![big]);
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = TempDir::new("outbox-torn");
        let (mut q, _) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        for i in 0..3 {
            q.append(&event(i)).unwrap();
        }
        drop(q);
        let files = segment_files(dir.path());
        assert_eq!(files.len(), 1);
        let mut file = OpenOptions::new().append(true).open(&files[0]).unwrap();
        file.write_all(br#"{"eventId":"e0003","ki"#).unwrap();
        drop(file);

        let (mut q, recovered) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        assert_eq!(recovered.torn, 1);
        assert_eq!(recovered.events, 3);
        assert_eq!(fs::metadata(&files[0]).unwrap().len(), 3 * event_bytes());
        q.append(&event(3)).unwrap();
        drop(q);
        let (mut q, recovered) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        assert_eq!(recovered.torn, 0);
        assert_eq!(take_all(&mut q), events(0..4));
    }

    #[test]
    fn segments_rotate_and_go_when_acknowledged() {
        let dir = TempDir::new("outbox-rotate");
        let caps = Caps {
            segment_bytes: 2 * event_bytes(),
            ..Caps::default()
        };
        let (mut q, _) = DiskQueue::open(dir.path(), caps).unwrap();
        for i in 0..7 {
            q.append(&event(i)).unwrap();
        }
        assert_eq!(segment_files(dir.path()).len(), 4);
        let batch = q.peek(10).unwrap().unwrap();
        assert_eq!(batch.lines, events(0..2), "one segment at a time");
        q.ack(batch.through);
        let batch = q.peek(10).unwrap().unwrap();
        assert_eq!(batch.lines, events(2..4));
        q.ack(batch.through);
        assert_eq!(segment_files(dir.path()).len(), 2);
        q.append(&event(7)).unwrap();
        drop(q);
        let (mut q, recovered) = DiskQueue::open(dir.path(), caps).unwrap();
        assert_eq!(recovered.events, 4);
        assert_eq!(take_all(&mut q), events(4..8));
        assert_eq!(segment_files(dir.path()), Vec::<PathBuf>::new());
    }

    #[test]
    fn garbage_is_left_out() {
        let dir = TempDir::new("outbox-garbage");
        fs::write(dir.join("notes.txt"), "hello").unwrap();
        fs::write(dir.join("events-7.ndjson"), "{}\n").unwrap();
        let mut segment = event(0).into_bytes();
        segment.extend_from_slice(b"\nnot json\n\xff\xfe\n\n");
        segment.extend_from_slice(event(1).as_bytes());
        segment.push(b'\n');
        fs::write(segment_path(dir.path(), 3), segment).unwrap();
        fs::write(dir.join(ACKED), "garbage").unwrap();

        let (mut q, recovered) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        assert_eq!(
            recovered,
            Recovered {
                events: 2,
                torn: 0,
                skipped_lines: 3,
                skipped_files: 2,
                dropped: 0,
            }
        );
        assert_eq!(take_all(&mut q), events(0..2));
        q.append(&event(2)).unwrap();
        drop(q);
        let (mut q, _) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        assert_eq!(take_all(&mut q), events(2..3));
    }

    #[test]
    fn an_unreadable_segment_does_not_block_the_queue() {
        let dir = TempDir::new("outbox-unreadable");
        let caps = Caps {
            segment_bytes: 2 * event_bytes(),
            ..Caps::default()
        };
        let (mut q, _) = DiskQueue::open(dir.path(), caps).unwrap();
        for i in 0..4 {
            q.append(&event(i)).unwrap();
        }
        fs::remove_file(&segment_files(dir.path())[0]).unwrap();
        assert!(matches!(q.peek(10), Err(Error::Io { .. })));
        assert_eq!(q.drop_oldest_segment(), 2);
        assert_eq!(take_all(&mut q), events(2..4));
        assert_eq!(q.drop_oldest_segment(), 0);
    }

    #[test]
    fn token_bucket_paces_and_bursts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut bucket = TokenBucket::new(10.0, 3);
        assert_eq!(bucket.wait_time(t0, 3), Some(Duration::ZERO), "starts full");
        for _ in 0..3 {
            assert!(bucket.try_take(t0));
        }
        assert!(!bucket.try_take(t0));
        let wait = bucket.wait_time(t0, 1).unwrap();
        assert!(wait.abs_diff(ms(100)) < ms(1), "{wait:?}");
        let wait = bucket.wait_time(t0, 2).unwrap();
        assert!(wait.abs_diff(ms(200)) < ms(1), "{wait:?}");
        assert!(!bucket.try_take(t0 + ms(50)));
        assert!(bucket.try_take(t0 + ms(100)));
        assert!(!bucket.try_take(t0 + ms(100)));
        // All or nothing.
        assert!(!bucket.try_take_n(t0 + ms(250), 2));
        assert!(bucket.try_take_n(t0 + ms(300), 2));
        // Idle time fills it up to the burst, no more.
        assert!(bucket.try_take_n(t0 + Duration::from_secs(60), 3));
        assert!(!bucket.try_take(t0 + Duration::from_secs(60)));
        // A clock that goes back refills nothing.
        assert!(!bucket.try_take(t0));
        assert_eq!(bucket.wait_time(t0, 4), None, "more than the burst");

        let mut fixed = TokenBucket::new(0.0, 2);
        assert!(fixed.try_take_n(t0, 2));
        assert!(!fixed.try_take(t0 + Duration::from_secs(3600)));
        assert_eq!(fixed.wait_time(t0, 1), None);
        let mut nan = TokenBucket::new(f64::NAN, 1);
        assert!(nan.try_take(t0));
        assert_eq!(nan.wait_time(t0 + Duration::from_secs(1), 1), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(answer(StatusCode::OK), Answer::Delivered);
        assert_eq!(answer(StatusCode::ACCEPTED), Answer::Delivered);
        assert_eq!(answer(StatusCode::BAD_REQUEST), Answer::Rejected);
        assert_eq!(answer(StatusCode::PAYLOAD_TOO_LARGE), Answer::Rejected);
        assert_eq!(
            answer(StatusCode::TOO_MANY_REQUESTS),
            Answer::Retry("throttled")
        );
        assert_eq!(
            answer(StatusCode::REQUEST_TIMEOUT),
            Answer::Retry("throttled")
        );
        assert_eq!(
            answer(StatusCode::SERVICE_UNAVAILABLE),
            Answer::Retry("server_error")
        );
        assert_eq!(
            answer(StatusCode::FOUND),
            Answer::Retry("unexpected_status")
        );
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        let delay = Duration::from_millis(800);
        for _ in 0..100 {
            let d = jittered(delay);
            assert!(d >= delay / 2 && d <= delay, "{d:?}");
        }
    }

    #[test]
    fn config_is_checked() {
        let url = Url::parse("http://backend.example:8080/scanner/").unwrap();
        let config = OutboxConfig::new("/tmp/x", url);
        assert_eq!(
            config.validate().unwrap().as_str(),
            "http://backend.example:8080/scanner/api/v1/scanner/runtime/events"
        );
        let bad = OutboxConfig {
            events_per_second: 0.0,
            ..config.clone()
        };
        assert!(matches!(bad.validate(), Err(Error::OutboxConfig(_))));
        let bad = OutboxConfig {
            burst: 0,
            ..config.clone()
        };
        assert!(matches!(bad.validate(), Err(Error::OutboxConfig(_))));
        for url in [
            "mailto:someone@example.com",
            "http://backend/?tenant=a",
            "http://user:secret@backend/",
        ] {
            let bad = OutboxConfig {
                backend_url: Url::parse(url).unwrap(),
                ..config.clone()
            };
            assert!(
                matches!(bad.validate(), Err(Error::OutboxConfig(_))),
                "{url}"
            );
        }
    }

    // ---- the sender against a real HTTP server ----

    /// What the test backend saw.
    #[derive(Default)]
    struct Seen {
        /// Batches it accepted (answered 2xx), their lines.
        accepted: Vec<Vec<String>>,
        attempts: usize,
        /// Requests without the NDJSON/gzip headers or with a body that is not gzip.
        malformed: usize,
    }

    /// A backend on loopback: it answers with the statuses of `script`, then `fallback`.
    #[derive(Clone, Default)]
    struct Backend {
        seen: Arc<Mutex<Seen>>,
        script: Arc<Mutex<VecDeque<u16>>>,
        fallback: Arc<AtomicU16>,
    }

    impl Backend {
        async fn start(script: &[u16], fallback: u16) -> (Backend, Url) {
            let backend = Backend::default();
            backend.script.lock().unwrap().extend(script);
            backend.fallback.store(fallback, Ordering::SeqCst);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
            let app = Router::new()
                .route(EVENTS_PATH, post(receive))
                .with_state(backend.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            (backend, url)
        }

        fn accepted_lines(&self) -> Vec<String> {
            self.seen.lock().unwrap().accepted.concat()
        }
    }

    async fn receive(
        State(backend): State<Backend>,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::http::StatusCode {
        let status = backend
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| backend.fallback.load(Ordering::SeqCst));
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let mut text = String::new();
        let well_formed = header(CONTENT_TYPE) == Some("application/x-ndjson")
            && header(CONTENT_ENCODING) == Some("gzip")
            && GzDecoder::new(&body[..]).read_to_string(&mut text).is_ok()
            && text.ends_with('\n');
        let mut seen = backend.seen.lock().unwrap();
        seen.attempts += 1;
        if !well_formed {
            seen.malformed += 1;
            return axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
        }
        let status = axum::http::StatusCode::from_u16(status).unwrap();
        if status.is_success() {
            seen.accepted.push(text.lines().map(String::from).collect());
        }
        status
    }

    fn config(dir: &Path, url: Url) -> OutboxConfig {
        let _ = rustls::crypto::ring::default_provider().install_default();
        OutboxConfig {
            batch_interval: Duration::from_millis(100),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(200),
            timeout: Duration::from_secs(3),
            ..OutboxConfig::new(dir, url)
        }
    }

    /// Waits for `condition`, generously: the machine may be loaded.
    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn counter(metrics: &Metrics, name: &str, reason: &str) -> u64 {
        let vec = match name {
            "drops" => &metrics.buffer_drops,
            _ => &metrics.backend_failures,
        };
        vec.with_label_values(&[reason]).get()
    }

    #[tokio::test]
    async fn batches_are_gzipped_ndjson_in_order() {
        let dir = TempDir::new("outbox-send");
        let (backend, url) = Backend::start(&[], 200).await;
        let metrics = Metrics::new();
        let (stop, stop_rx) = watch::channel(false);
        let outbox = Outbox::spawn(
            OutboxConfig {
                batch_events: 10,
                ..config(dir.path(), url)
            },
            metrics.clone(),
            stop_rx,
        )
        .unwrap();
        for i in 0..25 {
            outbox.push(event(i));
        }
        eventually("25 events", || backend.accepted_lines().len() >= 25).await;
        assert_eq!(backend.accepted_lines(), events(0..25));
        {
            let seen = backend.seen.lock().unwrap();
            assert_eq!(seen.malformed, 0);
            assert!(seen.accepted.iter().all(|b| b.len() <= 10));
        }
        eventually("an empty buffer", || metrics.buffered_events.get() == 0).await;
        let text = metrics.render();
        assert!(
            !text.contains(
                "zastava_runtime_backend_latency_ms_count{endpoint=\"runtime/events\"} 0"
            ),
            "{text}"
        );
        stop.send(true).unwrap();
        outbox.join().await;
    }

    #[tokio::test]
    async fn a_full_batch_leaves_without_waiting() {
        let dir = TempDir::new("outbox-size-trigger");
        let (backend, url) = Backend::start(&[], 200).await;
        let (_stop, stop_rx) = watch::channel(false);
        let outbox = Outbox::spawn(
            OutboxConfig {
                batch_events: 5,
                batch_interval: Duration::from_secs(3600),
                ..config(dir.path(), url)
            },
            Metrics::new(),
            stop_rx,
        )
        .unwrap();
        for i in 0..4 {
            outbox.push(event(i));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(backend.seen.lock().unwrap().attempts, 0, "not a full batch");
        outbox.push(event(4));
        eventually("a batch", || backend.seen.lock().unwrap().attempts > 0).await;
        assert_eq!(backend.seen.lock().unwrap().accepted, vec![events(0..5)]);
    }

    #[tokio::test]
    async fn the_interval_sends_a_partial_batch() {
        let dir = TempDir::new("outbox-interval-trigger");
        let (backend, url) = Backend::start(&[], 200).await;
        let (_stop, stop_rx) = watch::channel(false);
        let outbox = Outbox::spawn(
            OutboxConfig {
                batch_events: 100,
                batch_interval: Duration::from_millis(200),
                ..config(dir.path(), url)
            },
            Metrics::new(),
            stop_rx,
        )
        .unwrap();
        for i in 0..3 {
            outbox.push(event(i));
        }
        eventually("a partial batch", || backend.accepted_lines().len() == 3).await;
        assert_eq!(backend.accepted_lines(), events(0..3));
    }

    #[tokio::test]
    async fn failures_are_retried_and_each_event_arrives_once() {
        let dir = TempDir::new("outbox-retry");
        let (backend, url) = Backend::start(&[503, 503, 429, 500], 200).await;
        let metrics = Metrics::new();
        let (_stop, stop_rx) = watch::channel(false);
        let outbox = Outbox::spawn(
            OutboxConfig {
                batch_events: 4,
                ..config(dir.path(), url)
            },
            metrics.clone(),
            stop_rx,
        )
        .unwrap();
        for i in 0..8 {
            outbox.push(event(i));
        }
        eventually("8 events", || backend.accepted_lines().len() >= 8).await;
        eventually("an empty buffer", || metrics.buffered_events.get() == 0).await;
        assert_eq!(backend.accepted_lines(), events(0..8));
        {
            let seen = backend.seen.lock().unwrap();
            assert_eq!(seen.attempts, 4 + seen.accepted.len());
        }
        assert_eq!(counter(&metrics, "failures", "server_error"), 3);
        assert_eq!(counter(&metrics, "failures", "throttled"), 1);
        assert_eq!(counter(&metrics, "drops", "rejected"), 0);
    }

    #[tokio::test]
    async fn a_rejected_batch_is_dropped_and_the_rest_go_on() {
        let dir = TempDir::new("outbox-rejected");
        let (backend, url) = Backend::start(&[400], 200).await;
        let metrics = Metrics::new();
        let (_stop, stop_rx) = watch::channel(false);
        let outbox = Outbox::spawn(
            OutboxConfig {
                batch_events: 3,
                batch_interval: Duration::from_secs(3600),
                ..config(dir.path(), url)
            },
            metrics.clone(),
            stop_rx,
        )
        .unwrap();
        for i in 0..6 {
            outbox.push(event(i));
        }
        eventually("the second batch", || backend.accepted_lines().len() >= 3).await;
        assert_eq!(backend.accepted_lines(), events(3..6));
        assert_eq!(counter(&metrics, "drops", "rejected"), 3);
        assert_eq!(counter(&metrics, "failures", "rejected"), 1);
    }

    #[tokio::test]
    async fn events_survive_a_kill_while_the_backend_is_down() {
        let dir = TempDir::new("outbox-kill");
        // Before the kill: a backend that takes 3 events, then is down for good.
        let (down, url) = Backend::start(&[200], 503).await;
        let (_stop, stop_rx) = watch::channel(false);
        let first = Outbox::spawn(
            OutboxConfig {
                batch_events: 3,
                ..config(dir.path(), url)
            },
            Metrics::new(),
            stop_rx,
        )
        .unwrap();
        for i in 0..3 {
            first.push(event(i));
        }
        eventually("3 events", || down.accepted_lines().len() == 3).await;
        for i in 3..7 {
            first.push(event(i));
        }
        eventually("a failed attempt", || {
            down.seen.lock().unwrap().attempts >= 2
        })
        .await;
        // SIGKILL: the task is gone mid-whatever, nothing is flushed or closed.
        first.task.abort();
        drop(first);

        let (up, url) = Backend::start(&[], 200).await;
        let (_stop, stop_rx) = watch::channel(false);
        let metrics = Metrics::new();
        let second = Outbox::spawn(config(dir.path(), url), metrics.clone(), stop_rx).unwrap();
        assert_eq!(metrics.buffered_events.get(), 4);
        eventually("4 events", || up.accepted_lines().len() >= 4).await;
        eventually("an empty buffer", || metrics.buffered_events.get() == 0).await;
        assert_eq!(up.accepted_lines(), events(3..7));
        assert_eq!(down.accepted_lines(), events(0..3));
        drop(second);
    }

    #[tokio::test]
    async fn stop_flushes_and_leaves_the_rest_on_disk() {
        let dir = TempDir::new("outbox-stop");
        let (backend, url) = Backend::start(&[], 200).await;
        let spawn = |stop_rx| {
            let config = OutboxConfig {
                batch_interval: Duration::from_secs(3600),
                ..config(dir.path(), url.clone())
            };
            Outbox::spawn(config, Metrics::new(), stop_rx).unwrap()
        };
        let (stop, stop_rx) = watch::channel(false);
        let outbox = spawn(stop_rx);
        for i in 0..5 {
            outbox.push(event(i));
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(20), outbox.join())
            .await
            .unwrap();
        assert_eq!(backend.accepted_lines(), events(0..5));
        let (q, _) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        assert!(q.is_empty());

        // With the backend down, the flush gives up and the events wait on disk.
        backend.fallback.store(503, Ordering::SeqCst);
        let (stop, stop_rx) = watch::channel(false);
        let outbox = spawn(stop_rx);
        for i in 5..8 {
            outbox.push(event(i));
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(20), outbox.join())
            .await
            .unwrap();
        let (mut q, _) = DiskQueue::open(dir.path(), Caps::default()).unwrap();
        assert_eq!(take_all(&mut q), events(5..8));
        assert_eq!(backend.accepted_lines(), events(0..5));
    }
}
