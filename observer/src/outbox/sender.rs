//! The outbox's sender: the task that takes batches off the queue, gzips them as NDJSON,
//! posts them to the backend at the token bucket's pace, retries with a jittered backoff and
//! acknowledges what the backend took.

use std::hash::BuildHasher;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use tokio::sync::{watch, Notify};

use super::pacing::TokenBucket;
use super::queue::{Caps, DiskQueue};
use super::{Buffer, OutboxConfig, OutboxHandle, Shared};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The `endpoint` label of the latency histogram.
const ENDPOINT: &str = "runtime/events";
/// How long the last flush at shutdown may take.
const FLUSH_DEADLINE: Duration = Duration::from_secs(2);
/// How much of a rejecting backend's answer goes into the log.
const BODY_EXCERPT_BYTES: usize = 512;

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
    use crate::outbox::test_events::{event, events, take_all};
    use crate::outbox::EVENTS_PATH;
    use crate::testutil::TempDir;

    use std::collections::VecDeque;
    use std::io::Read;
    use std::path::Path;
    use std::sync::atomic::{AtomicU16, Ordering};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use axum::Router;
    use flate2::read::GzDecoder;

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
