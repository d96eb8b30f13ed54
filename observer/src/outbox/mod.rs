//! The outbox: runtime events on their way to the optional external backend
//! (Scanner.WebService, `POST /api/v1/scanner/runtime/events`, batched NDJSON), through a
//! queue on disk, so that a backend outage or a restart of the observer loses nothing but what
//! the caps drop.
//!
//! Pure core, thin shell, one file each:
//! - [`queue`]: the [`DiskQueue`] (plain file code) keeps the events in order in segment files
//!   and remembers how far the backend acknowledged them; its on-disk format and durability.
//! - [`pacing`]: the [`TokenBucket`] that paces how fast events leave the node.
//! - [`sender`]: the async [`Outbox`] task that batches, compresses, sends and retries.
//! - here: the configuration and the daemon's [`OutboxHandle`], which appends to the queue.

mod pacing;
mod queue;
mod sender;

pub use pacing::TokenBucket;
pub use queue::{Batch, Caps, DiskQueue, Position, Recovered};
pub use sender::Outbox;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The backend's endpoint for runtime events, after its base URL.
pub const EVENTS_PATH: &str = "/api/v1/scanner/runtime/events";
/// At most one warning about events dropped for capacity per this interval: a full queue
/// drops on every push.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

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

#[cfg(test)]
pub(crate) mod test_events {
    use std::ops::Range;

    use super::DiskQueue;

    pub fn event(i: usize) -> String {
        format!(r#"{{"eventId":"e{i:04}","kind":"DRIFT"}}"#)
    }

    pub fn events(range: Range<usize>) -> Vec<String> {
        range.map(event).collect()
    }

    /// Everything queued, oldest first, acknowledged on the way.
    pub fn take_all(q: &mut DiskQueue) -> Vec<String> {
        let mut all = Vec::new();
        while let Some(batch) = q.peek(1000).unwrap() {
            all.extend(batch.lines);
            q.ack(batch.through);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
