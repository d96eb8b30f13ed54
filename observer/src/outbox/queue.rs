//! The outbox's queue on disk: runtime events in order, and how far the backend acknowledged
//! them. Synchronous file code, no async and no network.
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
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::de::IgnoredAny;

use crate::error::{Error, Result};

const ACKED: &str = "acked";
const ACKED_TMP: &str = "acked.tmp";
const SEGMENT_PREFIX: &str = "events-";
const SEGMENT_SUFFIX: &str = ".ndjson";
const SEQ_DIGITS: usize = 20;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::test_events::{event, events, take_all};
    use crate::testutil::TempDir;

    /// Bytes one [`event`] takes in the queue.
    fn event_bytes() -> u64 {
        event(0).len() as u64 + 1
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
}
