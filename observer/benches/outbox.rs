//! `make bench-observer`: runtime events through the real outbox ([`Outbox::spawn`], its
//! `DiskQueue` in a temp dir, gzip NDJSON batches, retries with backoff) to a backend on
//! loopback in this process, which gunzips and parses every batch and records each event's
//! `eventId`.
//!
//! Events are the daemon's own: [`RuntimeEvent`] built as the daemon builds them
//! (CONTAINER_START with a sample's loaded libraries and entry trace, DRIFT with a finding,
//! CONTAINER_STOP) and serialised by [`RuntimeEvent::to_json`] on the pushing thread, then
//! [`OutboxHandle::push`]ed, as the daemon does from its loop.
//!
//! Three runs, each with a fresh queue directory:
//! 1. sustained, fast-node settings: the pusher pushes as fast as it can while fewer than
//!    [`BACKLOG`] events wait (the outbox drops nothing meanwhile), for [`SUSTAINED`]; the
//!    figure is what the backend received per minute over the steady part of the run.
//! 2. ceiling: the same with the token bucket out of the way, so the machinery itself
//!    (push, disk queue, gzip, HTTP, ack) is what limits.
//! 3. outage: events pushed at the goal rate; after [`BEFORE_OUTAGE`] the backend goes away
//!    for [`OUTAGE`] (listener closed and every connection dropped: connections are refused,
//!    as when the backend's pod is gone), then listens again on the same port. The pusher
//!    keeps going until the backlog is drained and [`AFTER_DRAIN`] more. Every event pushed
//!    must reach the backend at least once (matched by `eventId`), or have been dropped by
//!    the queue's caps: otherwise this benchmark exits with 1.
//!
//! RSS is this process's VmRSS (outbox, pusher, backend, and the benchmark's bookkeeping of
//! 24 bytes an event), sampled every [`SAMPLE_EVERY`]; disk use is the queue directory's
//! allocated blocks.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use flate2::read::GzDecoder;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use reqwest::Url;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use zastava_crds::posture::{DriftFinding, DriftKind, Evidence};
use zastava_observer::entrytrace::TraceStep;
use zastava_observer::metrics::Metrics;
use zastava_observer::outbox::{Outbox, OutboxConfig, OutboxHandle, EVENTS_PATH};
use zastava_observer::report::{
    self, EventKind, EventLib, EventOwner, EventProcess, EventRuntime, EventWorkload, RuntimeEvent,
    RUNTIME_EVENT_SCHEMA,
};

/// The goal: events a minute a node (20× the product documents' 5k events/min/node).
const GOAL_PER_MINUTE: f64 = 100_000.0;
const SEED_PER_MINUTE: f64 = 5_000.0;

/// Fast-node settings (daemon flags): the token bucket at 3× the goal, so that a backlog
/// drains while events keep coming, bursts of two batches, batches of 1000 events...
const EVENTS_PER_SECOND: f64 = 5_000.0;
const EVENTS_BURST: u32 = 10_000;
const BATCH_EVENTS: usize = 1_000;
/// ... and a buffer that holds a 30 s outage at the goal rate (50 000 events, ~55 MB of
/// them) with room to spare. The defaults (10 000 events, 50 MB) hold 6 s of it.
const BUFFER_MAX_EVENTS: usize = 120_000;
const BUFFER_MAX_BYTES: u64 = 256 << 20;

/// Run 1 and 2: how long, the start left out of the figure, and how many events may wait
/// before the pusher waits too.
const SUSTAINED: Duration = Duration::from_secs(25);
const CEILING: Duration = Duration::from_secs(15);
const WARMUP: Duration = Duration::from_secs(3);
const BACKLOG: i64 = 4 * BATCH_EVENTS as i64;
/// Run 3.
const BEFORE_OUTAGE: Duration = Duration::from_secs(10);
const OUTAGE: Duration = Duration::from_secs(30);
const AFTER_DRAIN: Duration = Duration::from_secs(5);
/// A run that has not drained by then fails.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// DRIFT events per container, between its START and its STOP.
const DRIFTS_PER_CONTAINER: u64 = 6;
const LIBS_PER_START: usize = 24;

/// Set in the environment of the child process that does one run: its name.
const RUN_ENV: &str = "ZASTAVA_BENCH_OUTBOX_RUN";
/// The child's last line: `@result <events a minute> <delivered>`.
const RESULT: &str = "@result ";
const RUNS: [&str; 3] = ["sustained", "ceiling", "outage"];

/// Each run is a process of its own, so that its RSS is its own (not what an earlier run
/// left in the allocator).
fn main() -> ExitCode {
    match std::env::var(RUN_ENV) {
        Ok(run) => one_run(&run),
        Err(_) => all_runs(),
    }
}

fn all_runs() -> ExitCode {
    let sizes = event_sizes();
    println!(
        "zastava-observer outbox benchmark: the real Outbox + DiskQueue (in a fresh directory \
         under {}) → a backend on 127.0.0.1 in the same process (gunzips, parses every line, \
         records eventIds); each run a process of its own; {} CPUs; load average at start: {}",
        std::env::temp_dir().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "events: the daemon's RuntimeEvent::to_json, per container 1 CONTAINER_START \
         ({LIBS_PER_START} libs, entry trace; {} B), {DRIFTS_PER_CONTAINER} DRIFT ({} B), \
         1 CONTAINER_STOP ({} B): {:.0} B on average, built on the pushing thread",
        sizes.0, sizes.1, sizes.2, sizes.3
    );
    println!(
        "fast-node settings: --events-per-second {EVENTS_PER_SECOND} --events-burst \
         {EVENTS_BURST} --batch-events {BATCH_EVENTS} --buffer-max-events {BUFFER_MAX_EVENTS} \
         --buffer-max-bytes {BUFFER_MAX_BYTES} (defaults: 50, 200, 100, 10000, 50000000); \
         batch interval (2 s), timeout (5 s) and backoff (0.5 s doubling to 30 s, jittered) \
         as shipped"
    );
    println!();

    let exe = std::env::current_exe().expect("this benchmark's executable");
    let mut results = Vec::new();
    for run in RUNS {
        let mut child = Command::new(&exe)
            .env(RUN_ENV, run)
            .stdout(Stdio::piped())
            .spawn()
            .expect("a child process for a run");
        let mut result = None;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap_or_default();
            match line.strip_prefix(RESULT) {
                Some(r) => {
                    let mut fields = r.split(' ');
                    let per_minute: f64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0.0);
                    result = Some((per_minute, fields.next() == Some("true")));
                }
                None => println!("{line}"),
            }
        }
        let status = child.wait().expect("the run's exit status");
        if !status.success() {
            println!("run {run} failed: {status}");
            result = Some((0.0, false));
        }
        results.push(result.unwrap_or((0.0, false)));
    }
    let [(per_minute, sustained_ok), (ceiling, ceiling_ok), (_, outage_ok)] = results[..] else {
        unreachable!()
    };

    println!();
    println!(
        "goal: ≥ {GOAL_PER_MINUTE:.0} events/min per node (20× the seed's {SEED_PER_MINUTE:.0}): \
         sustained {per_minute:.0} events/min = {:.1}× the goal, {:.1}× the seed: {}",
        per_minute / GOAL_PER_MINUTE,
        per_minute / SEED_PER_MINUTE,
        met(per_minute >= GOAL_PER_MINUTE)
    );
    println!(
        "  (the token bucket's {:.0}/min is the limit there; the outbox's own ceiling on this \
         machine: {ceiling:.0} events/min = {:.1}× the goal: {})",
        EVENTS_PER_SECOND * 60.0,
        ceiling / GOAL_PER_MINUTE,
        met(ceiling >= GOAL_PER_MINUTE)
    );
    println!(
        "goal: after a {} s outage at the goal rate, every event delivered at least once and \
         none lost below the caps: {}",
        OUTAGE.as_secs(),
        met(outage_ok)
    );
    if sustained_ok && ceiling_ok && outage_ok {
        ExitCode::SUCCESS
    } else {
        println!("FAILED: events were lost or a run failed (see above)");
        ExitCode::FAILURE
    }
}

/// One run, in a child process: prints its part and the [`RESULT`] line.
fn one_run(run: &str) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let work = TempDir::new();
    let fast = |dir: &Path, url: Url| OutboxConfig {
        max_bytes: BUFFER_MAX_BYTES,
        max_events: BUFFER_MAX_EVENTS,
        batch_events: BATCH_EVENTS,
        events_per_second: EVENTS_PER_SECOND,
        burst: EVENTS_BURST,
        ..OutboxConfig::new(dir, url)
    };
    let (per_minute, ok) = match run {
        "sustained" => {
            let r = runtime.block_on(closed_loop(work.path().join("q"), SUSTAINED, fast));
            (
                r.per_minute,
                r.report("sustained, fast-node settings", SUSTAINED),
            )
        }
        "ceiling" => {
            let unpaced = |dir: &Path, url: Url| OutboxConfig {
                events_per_second: 1e9,
                burst: BATCH_EVENTS as u32,
                ..fast(dir, url)
            };
            let r = runtime.block_on(closed_loop(work.path().join("q"), CEILING, unpaced));
            let title = "ceiling: the same, token bucket out of the way (--events-per-second 1e9)";
            (r.per_minute, r.report(title, CEILING))
        }
        "outage" => {
            let o = runtime.block_on(outage(work.path().join("q"), fast));
            (0.0, o.run.report_outage(&o))
        }
        _ => panic!("no run {run:?}"),
    };
    println!("{RESULT}{per_minute} {ok}");
    ExitCode::SUCCESS
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

// ---- the runs ----

/// What one run measured.
struct Run {
    pushed: Vec<u64>,
    received: Vec<u64>,
    samples: Vec<Sample>,
    push_times: Vec<u32>,
    build_times: Vec<u32>,
    /// Events a minute the backend received over the steady part (runs 1 and 2).
    per_minute: f64,
    metrics: Metrics,
    backend: BackendStats,
    /// From the last push to the last event received.
    tail: Duration,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kb: u64,
    disk_bytes: u64,
    received: u64,
}

/// Run 1 or 2: push as fast as the outbox takes them for `length`.
async fn closed_loop(
    dir: PathBuf,
    length: Duration,
    config: impl Fn(&Path, Url) -> OutboxConfig,
) -> Run {
    let backend = Backend::new();
    let server = Server::start(backend.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let metrics = Metrics::new();
    let (stop, stop_rx) = watch::channel(false);
    let outbox = Outbox::spawn(config(&dir, server.url()), metrics.clone(), stop_rx).unwrap();
    let sampler = Sampler::start(dir.clone(), backend.clone());

    let gauge = metrics.buffered_events.clone();
    let pusher = std::thread::spawn(move || {
        let mut p = Pusher::new(outbox);
        let end = Instant::now() + length;
        while Instant::now() < end {
            if gauge.get() >= BACKLOG {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            p.push_container();
        }
        p
    });
    let pusher = tokio::task::spawn_blocking(move || pusher.join().unwrap())
        .await
        .unwrap();
    let last_push = Instant::now();
    let gauge = metrics.buffered_events.clone();
    wait_for("an empty queue", || gauge.get() == 0).await;
    let tail = last_push.elapsed();
    let samples = sampler.stop();
    stop.send(true).unwrap();
    pusher.outbox.join().await;
    server.stop().await;

    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= WARMUP && s.at <= length)
        .collect();
    let per_minute = match (steady.first(), steady.last()) {
        (Some(a), Some(b)) if b.at > a.at => {
            (b.received - a.received) as f64 / (b.at - a.at).as_secs_f64() * 60.0
        }
        _ => 0.0,
    };
    Run {
        pushed: pusher.ids,
        received: backend.take_ids(),
        samples,
        push_times: pusher.push_times,
        build_times: pusher.build_times,
        per_minute,
        metrics,
        backend: backend.stats(),
        tail,
    }
}

struct Outage {
    run: Run,
    /// Events queued when the backend came back.
    backlog: i64,
    /// From the backend's return to its first batch accepted (the sender's backoff).
    first_batch: Duration,
    /// From the backend's return to the last event queued before it received.
    drained: Duration,
    attempts_down: u64,
}

/// Run 3: the goal rate, with the backend away for [`OUTAGE`] in the middle.
async fn outage(dir: PathBuf, config: impl Fn(&Path, Url) -> OutboxConfig) -> Outage {
    let backend = Backend::new();
    let server = Server::start(backend.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.addr;
    let metrics = Metrics::new();
    let (stop, stop_rx) = watch::channel(false);
    let outbox = Outbox::spawn(config(&dir, server.url()), metrics.clone(), stop_rx).unwrap();
    let sampler = Sampler::start(dir.clone(), backend.clone());

    let pushed_count = Arc::new(AtomicU64::new(0));
    let stop_pushing = Arc::new(AtomicBool::new(false));
    let pusher = {
        let pushed_count = pushed_count.clone();
        let stop_pushing = stop_pushing.clone();
        std::thread::spawn(move || {
            let mut p = Pusher::new(outbox);
            let rate = GOAL_PER_MINUTE / 60.0;
            let start = Instant::now();
            while !stop_pushing.load(Ordering::Relaxed) {
                // The next container's events are due at this time.
                let due = start + Duration::from_secs_f64(p.ids.len() as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                p.push_container();
                pushed_count.store(p.ids.len() as u64, Ordering::Relaxed);
            }
            p
        })
    };

    tokio::time::sleep(BEFORE_OUTAGE).await;
    server.stop().await;
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err();
    assert!(refused, "the backend still takes connections");
    let failures_before = failures(&metrics);
    tokio::time::sleep(OUTAGE).await;
    let backlog = metrics.buffered_events.get();
    let attempts_down = failures(&metrics) - failures_before;
    backend.reset_first_accept();
    let server = Server::start(backend.clone(), addr).await;
    let back = Instant::now();
    let pushed_at_return = pushed_count.load(Ordering::Relaxed) as i64;
    // Drained: fewer events queued than were pushed since the return (the queue is in order,
    // so every event queued before the return has been delivered).
    let deadline = back + DRAIN_LIMIT;
    let drained = loop {
        let since = pushed_count.load(Ordering::Relaxed) as i64 - pushed_at_return;
        if metrics.buffered_events.get() <= since {
            break back.elapsed();
        }
        if Instant::now() > deadline {
            break DRAIN_LIMIT;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let first_batch = backend
        .first_accept()
        .map_or(drained, |at| at.saturating_duration_since(back));
    tokio::time::sleep(AFTER_DRAIN).await;
    stop_pushing.store(true, Ordering::Relaxed);
    let pusher = tokio::task::spawn_blocking(move || pusher.join().unwrap())
        .await
        .unwrap();
    let last_push = Instant::now();
    let gauge = metrics.buffered_events.clone();
    wait_for("an empty queue", || gauge.get() == 0).await;
    let tail = last_push.elapsed();
    let samples = sampler.stop();
    stop.send(true).unwrap();
    pusher.outbox.join().await;
    server.stop().await;
    Outage {
        run: Run {
            pushed: pusher.ids,
            received: backend.take_ids(),
            samples,
            push_times: pusher.push_times,
            build_times: pusher.build_times,
            per_minute: 0.0,
            metrics,
            backend: backend.stats(),
            tail,
        },
        backlog,
        first_batch,
        drained,
        attempts_down,
    }
}

fn failures(metrics: &Metrics) -> u64 {
    ["connect", "transport", "timeout", "server_error"]
        .iter()
        .map(|r| metrics.backend_failures.with_label_values(&[r]).get())
        .sum()
}

/// Waits for `condition`, at most [`DRAIN_LIMIT`].
async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + DRAIN_LIMIT;
    while !condition() {
        if Instant::now() > deadline {
            println!("timed out waiting for {what}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- what the runs print ----

/// Delivery of one run: every event pushed received, or dropped by the caps.
struct Delivery {
    pushed: usize,
    unique: usize,
    duplicates: usize,
    lost: usize,
    unexpected: usize,
    cap_drops: u64,
    other_drops: u64,
}

impl Run {
    fn delivery(&self) -> Delivery {
        let pushed: HashSet<u64> = self.pushed.iter().copied().collect();
        assert_eq!(
            pushed.len(),
            self.pushed.len(),
            "the benchmark made two events with the same eventId"
        );
        let received: HashSet<u64> = self.received.iter().copied().collect();
        let drops = |reason: &str| self.metrics.buffer_drops.with_label_values(&[reason]).get();
        Delivery {
            pushed: pushed.len(),
            unique: received.len(),
            duplicates: self.received.len() - received.len(),
            lost: pushed.difference(&received).count(),
            unexpected: received.difference(&pushed).count(),
            cap_drops: drops("capacity"),
            other_drops: drops("rejected") + drops("error"),
        }
    }

    /// Bytes of the benchmark's own record of the run (ids pushed and received, timings).
    fn bookkeeping(&self) -> u64 {
        (8 * (self.pushed.capacity() + self.received.capacity())
            + 4 * (self.push_times.capacity() + self.build_times.capacity())) as u64
    }

    fn delivery_ok(&self) -> bool {
        let d = self.delivery();
        let ok = d.unexpected == 0
            && self.backend.malformed == 0
            && d.other_drops == 0
            && (d.lost as u64) <= d.cap_drops;
        ok && (d.cap_drops > 0 || d.lost == 0)
    }

    /// Prints the run; false when events were lost.
    fn report(&self, title: &str, length: Duration) -> bool {
        println!("{title}: {} s of pushing", length.as_secs());
        println!(
            "  sustained: {:.0} events/min received (steady part, from {} s on), {:.0}/s",
            self.per_minute,
            WARMUP.as_secs(),
            self.per_minute / 60.0
        );
        self.report_common()
    }

    fn report_outage(&self, o: &Outage) -> bool {
        println!(
            "outage, fast-node settings: {:.0} events/min pushed at a steady pace; backend \
             up {} s, then gone {} s (listener closed, connections dropped: refused, checked), \
             then back on the same port",
            GOAL_PER_MINUTE,
            BEFORE_OUTAGE.as_secs(),
            OUTAGE.as_secs()
        );
        println!(
            "  during the outage: {} failed attempts (the backoff's), {} events queued when \
             the backend came back",
            o.attempts_down, o.backlog
        );
        println!(
            "  after it came back: first batch accepted after {:.1} s (the sender's backoff \
             wait), backlog drained after {:.1} s{}",
            o.first_batch.as_secs_f64(),
            o.drained.as_secs_f64(),
            if o.drained >= DRAIN_LIMIT {
                " (NOT drained: gave up)"
            } else {
                ""
            }
        );
        self.report_common()
    }

    fn report_common(&self) -> bool {
        let d = self.delivery();
        let b = &self.backend;
        println!(
            "  delivery: {} pushed, {} received ({} unique, {} duplicates), {} lost, \
             {} dropped by the caps, {} dropped otherwise, {} unknown ids, {} malformed \
             requests; last event received {:.2} s after the last push",
            d.pushed,
            self.received.len(),
            d.unique,
            d.duplicates,
            d.lost,
            d.cap_drops,
            d.other_drops,
            d.unexpected,
            b.malformed,
            self.tail.as_secs_f64()
        );
        println!(
            "  batches: {} accepted, {:.0} events each on average, {:.0} KB gzip ({:.0} KB \
             NDJSON) on average, largest {:.0} KB gzip",
            b.batches,
            b.events as f64 / b.batches.max(1) as f64,
            b.gzip_bytes as f64 / b.batches.max(1) as f64 / 1024.0,
            b.ndjson_bytes as f64 / b.batches.max(1) as f64 / 1024.0,
            b.largest_gzip as f64 / 1024.0
        );
        println!(
            "  push(): median {:.1} µs, p99 {:.1} µs, max {:.2} ms; building an event \
             (to_json): median {:.1} µs",
            us(percentile(&self.push_times, 0.5)),
            us(percentile(&self.push_times, 0.99)),
            us(percentile(&self.push_times, 1.0)) / 1000.0,
            us(percentile(&self.build_times, 0.5)),
        );
        let mut rss: Vec<u64> = self.samples.iter().map(|s| s.rss_kb).collect();
        rss.sort_unstable();
        let disk = self.samples.iter().map(|s| s.disk_bytes).max().unwrap_or(0);
        println!(
            "  VmRSS: median {:.1} MB, max {:.1} MB (of it the benchmark's id bookkeeping \
             ~{:.1} MB); queue directory: max {:.1} MB on disk",
            mb(rss.get(rss.len() / 2).copied().unwrap_or(0) * 1024),
            mb(rss.last().copied().unwrap_or(0) * 1024),
            mb(self.bookkeeping()),
            mb(disk)
        );
        let ok = self.delivery_ok();
        if !ok {
            println!("  LOST EVENTS: delivery check failed");
        }
        println!();
        ok
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

fn percentile(nanos: &[u32], q: f64) -> Duration {
    let mut sorted = nanos.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Duration::from_nanos(u64::from(sorted[i]))
}

// ---- the pusher: the daemon's side ----

struct Pusher {
    outbox: OutboxHandle,
    /// The first 64 bits of each pushed event's id.
    ids: Vec<u64>,
    /// Nanoseconds.
    push_times: Vec<u32>,
    build_times: Vec<u32>,
    container: u64,
}

impl Pusher {
    fn new(outbox: OutboxHandle) -> Self {
        Pusher {
            outbox,
            ids: Vec::new(),
            push_times: Vec::new(),
            build_times: Vec::new(),
            container: 0,
        }
    }

    /// Builds and pushes the next container's events (START, DRIFTs, STOP), timing each.
    fn push_container(&mut self) {
        self.container += 1;
        let c = self.container;
        for i in 0..DRIFTS_PER_CONTAINER + 2 {
            let built = Instant::now();
            let line = container_event(c, i).to_json();
            let pushing = Instant::now();
            self.build_times.push(nanos(pushing - built));
            let id = event_id(&line);
            self.outbox.push(line);
            self.push_times.push(nanos(pushing.elapsed()));
            self.ids.push(id);
        }
    }
}

/// The first 64 bits of an event's id (`sha256:<hex>`); in canonical JSON it comes after
/// `delta` only.
fn event_id(line: &str) -> u64 {
    const KEY: &str = "\"eventId\":\"sha256:";
    let at = line.find(KEY).expect("an eventId") + KEY.len();
    id_prefix(&line[at..at + 16])
}

fn id_prefix(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).expect("a sha256 in hex")
}

/// Event `i` of container `c`: 0 its start, then drifts, the last its stop. Distinct
/// containers and subjects make distinct ids (`when` is to the second).
fn container_event(c: u64, i: u64) -> RuntimeEvent {
    let hex = |n: u64, salt: u64| {
        let x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
        format!(
            "{x:016x}{:016x}{:016x}{:016x}",
            x.rotate_left(17),
            x.rotate_left(31) ^ salt,
            x.rotate_left(47)
        )
    };
    let app = c % 13;
    let workload = EventWorkload {
        platform: "kubernetes",
        namespace: format!("team-{}", c % 7),
        pod: format!("shop-{app}-7d9f8b6c5-{:05x}", c & 0xfffff),
        container: "app".to_string(),
        container_id: hex(c, 1),
        image_ref: format!("registry.example.com/shop/svc-{app}@sha256:{}", hex(app, 2)),
        owner: Some(EventOwner {
            kind: "ReplicaSet".to_string(),
            name: format!("shop-{app}-7d9f8b6c5"),
        }),
    };
    let runtime = EventRuntime {
        engine: "containerd".to_string(),
        version: "1.7.24".to_string(),
    };
    let now = report::now();
    let kind = match i {
        0 => EventKind::ContainerStart,
        i if i <= DRIFTS_PER_CONTAINER => EventKind::Drift,
        _ => EventKind::ContainerStop,
    };
    let event = RuntimeEvent::new(kind, &now, "node-17.example.internal", runtime, workload);
    match kind {
        EventKind::ContainerStart => {
            let mut event = event;
            let step = |file: &str, line, op: &str, target: &str| TraceStep {
                file: file.to_string(),
                line,
                op: op.to_string(),
                target: target.to_string(),
            };
            event.process = Some(EventProcess {
                pid: 4000 + (c % 60000) as u32,
                entrypoint: Vec::new(),
                entry_trace: vec![
                    step("argv", 0, "exec", "/usr/local/bin/docker-entrypoint.sh"),
                    step(
                        "/usr/local/bin/docker-entrypoint.sh",
                        1,
                        "shebang",
                        "/bin/sh",
                    ),
                    step(
                        "/usr/local/bin/docker-entrypoint.sh",
                        42,
                        "exec",
                        "/usr/bin/tini",
                    ),
                    step("argv", 0, "wrapper", "/usr/local/bin/shop-server"),
                ],
                build_id: Some(hex(app, 3)[..40].to_string()),
            });
            event.loaded_libs = (0..LIBS_PER_START as u64)
                .map(|l| EventLib {
                    path: format!(
                        "/usr/lib/x86_64-linux-gnu/lib{}.so.{}",
                        LIB_NAMES[l as usize % LIB_NAMES.len()],
                        l % 4
                    ),
                    inode: 1_000_000 + app * 100 + l,
                    sha256: Some(hex(app * 100 + l, 4)),
                })
                .collect();
            event
        }
        EventKind::Drift => {
            let (kind, subject, evidence) = match i % 3 {
                0 => (
                    DriftKind::Process,
                    format!("/tmp/.cache/kworker{i}"),
                    vec![
                        ev("procfs.exe", format!("/tmp/.cache/kworker{i}")),
                        ev("procfs.pid", format!("{}", 5000 + i)),
                    ],
                ),
                1 => (
                    DriftKind::Library,
                    format!("/dev/shm/libhook{i}.so"),
                    vec![ev("procfs.maps", format!("/dev/shm/libhook{i}.so"))],
                ),
                _ => (
                    DriftKind::Filesystem,
                    format!("/etc/shop/config-{i}.yaml"),
                    vec![
                        ev("overlay.upperdir", format!("/etc/shop/config-{i}.yaml")),
                        ev("fs.mtime", "2025-06-01T12:00:00Z".to_string()),
                        ev("image.created", "2025-05-20T08:30:00Z".to_string()),
                    ],
                ),
            };
            let finding = DriftFinding {
                kind,
                pod: event.workload.pod.clone(),
                container: event.workload.container.clone(),
                subject,
                sha256: (kind != DriftKind::Filesystem).then(|| hex(c * 10 + i, 5)),
                evidence,
                first_seen: Some(now),
            };
            let digest = Some(format!("sha256:{}", hex(app, 2)));
            event.with_drift(digest, &[finding])
        }
        EventKind::ContainerStop => event,
    }
}

const LIB_NAMES: [&str; 8] = ["c", "ssl", "crypto", "z", "stdc++", "gcc_s", "m", "pthread"];

fn ev(signal: &str, value: String) -> Evidence {
    Evidence {
        signal: signal.to_string(),
        value,
    }
}

/// Bytes of a START, a DRIFT, a STOP, and on average over a container.
fn event_sizes() -> (usize, usize, usize, f64) {
    let sizes: Vec<usize> = (0..DRIFTS_PER_CONTAINER + 2)
        .map(|i| container_event(1, i).to_json().len())
        .collect();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    (sizes[0], sizes[1], sizes[sizes.len() - 1], mean)
}

// ---- the backend ----

/// What the backend saw, shared by its handlers.
#[derive(Clone)]
struct Backend {
    inner: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    /// The first 64 bits of every id received, duplicates included.
    ids: Vec<u64>,
    stats: BackendStats,
    first_accept: Option<Instant>,
}

#[derive(Clone, Copy, Default)]
struct BackendStats {
    batches: u64,
    events: u64,
    gzip_bytes: u64,
    ndjson_bytes: u64,
    largest_gzip: u64,
    /// Requests without the NDJSON/gzip headers, not gzip, or with a line that is not a
    /// runtime event.
    malformed: u64,
}

/// The fields the backend checks.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: String,
    event_id: String,
    kind: String,
}

impl Backend {
    fn new() -> Self {
        Backend {
            inner: Arc::new(Mutex::new(Seen::default())),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.inner.lock().unwrap()
    }

    fn received(&self) -> u64 {
        self.seen().ids.len() as u64
    }

    fn take_ids(&self) -> Vec<u64> {
        std::mem::take(&mut self.seen().ids)
    }

    fn stats(&self) -> BackendStats {
        self.seen().stats
    }

    fn reset_first_accept(&self) {
        self.seen().first_accept = None;
    }

    fn first_accept(&self) -> Option<Instant> {
        self.seen().first_accept
    }
}

async fn receive(State(backend): State<Backend>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut text = String::new();
    let well_formed = header("content-type") == Some("application/x-ndjson")
        && header("content-encoding") == Some("gzip")
        && GzDecoder::new(&body[..]).read_to_string(&mut text).is_ok()
        && text.ends_with('\n');
    let ids: Option<Vec<u64>> = well_formed
        .then(|| {
            text.lines()
                .map(|line| {
                    let probe: Probe = serde_json::from_str(line).ok()?;
                    let hex = probe.event_id.strip_prefix("sha256:")?;
                    (probe.schema_version == RUNTIME_EVENT_SCHEMA
                        && hex.len() == 64
                        && !probe.kind.is_empty())
                    .then(|| id_prefix(&hex[..16]))
                })
                .collect()
        })
        .flatten();
    let mut seen = backend.seen();
    let Some(ids) = ids else {
        seen.stats.malformed += 1;
        return StatusCode::BAD_REQUEST;
    };
    seen.stats.batches += 1;
    seen.stats.events += ids.len() as u64;
    seen.stats.gzip_bytes += body.len() as u64;
    seen.stats.ndjson_bytes += text.len() as u64;
    seen.stats.largest_gzip = seen.stats.largest_gzip.max(body.len() as u64);
    seen.first_accept.get_or_insert_with(Instant::now);
    seen.ids.extend(ids);
    StatusCode::ACCEPTED
}

/// The backend's HTTP server; stopping it closes its listener and drops every connection,
/// as when its process is gone.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(backend: Backend, addr: SocketAddr) -> Server {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route(EVENTS_PATH, post(receive))
            .layer(DefaultBodyLimit::max(64 << 20))
            .with_state(backend);
        let task = tokio::spawn(async move {
            // Owned here: aborting this task drops the listener and every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Server { addr, task }
    }

    fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

// ---- RSS and disk use ----

struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    fn start(dir: PathBuf, backend: Backend) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                samples.push(Sample {
                    at: start.elapsed(),
                    rss_kb: vm_rss_kb(),
                    disk_bytes: disk_use(&dir),
                    received: backend.received(),
                });
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn vm_rss_kb() -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes allocated to the files of `dir` (what `du` counts).
fn disk_use(dir: &Path) -> u64 {
    let Ok(items) = fs::read_dir(dir) else {
        return 0;
    };
    items
        .filter_map(|i| i.ok()?.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// A directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "zastava-outbox-bench-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
