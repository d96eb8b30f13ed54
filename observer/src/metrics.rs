//! The observer's Prometheus registry (DESIGN.md names; dots become underscores).

use prometheus::{
    Counter, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Runtime events by `kind` (`CONTAINER_START`, `CONTAINER_STOP`, `DRIFT`).
    pub runtime_events: IntCounterVec,
    /// Samples of a container's main process by `result`: `ok`, `partial` (it exited
    /// mid-sample, or a cap of `limits.rs` left something unread), `gone` (nothing left to
    /// sample), `timeout` (not back within `CONTAINER_TIME_LIMIT`), `error` (unreadable
    /// `/proc`).
    pub proc_maps_samples: IntCounterVec,
    /// Bytes read for hashing (cache misses only).
    pub hash_bytes: IntCounter,
    /// Containers tracked on this node.
    pub containers: IntGauge,
    /// Writes of `RuntimePosture` objects and Events, by `what` (`posture`, `status`,
    /// `event`) and `result` (`ok`, `error`).
    pub api_writes: IntCounterVec,
    /// Failed calls to the container runtime.
    pub cri_errors: IntCounter,
    /// Lookups of images' CycloneDX SBOMs (library drift) by `result`: `found`, `absent`,
    /// `invalid`, `error`.
    pub sbom_fetches: IntCounterVec,
    /// 1 while the inventory comes from the Kubernetes API because the CRI socket cannot be
    /// reached.
    pub inventory_fallback: IntGauge,
    /// Runtime events the outbox dropped, by `reason`: `capacity` (the disk queue was full:
    /// the oldest went), `rejected` (the backend refused the batch as malformed), `error`
    /// (the event could not be written to the queue).
    pub buffer_drops: IntCounterVec,
    /// Backend call latency in milliseconds by `endpoint` (`runtime/events`).
    pub backend_latency: HistogramVec,
    /// Failed batch deliveries by `reason` (`connect`, `timeout`, `transport`, `throttled`,
    /// `server_error`, `unexpected_status`, `rejected`).
    pub backend_failures: IntCounterVec,
    /// Runtime events waiting in the outbox's disk queue.
    pub buffered_events: IntGauge,
    /// Depth of the entry traces followed (scripts and interpreters deep).
    pub entrytrace_depth: Histogram,
    /// Results a cap or budget of `limits.rs` cut short, by `what`: `trace` (an entry trace
    /// truncated), `sample` (a sample partial), `observation` (a drift observation partial),
    /// `timeout` (a container's sample, trace or observation not back within
    /// `CONTAINER_TIME_LIMIT`).
    pub partial_results: IntCounterVec,
    /// Wall time of each drift round (every container observed and compared).
    pub drift_round_seconds: Histogram,
    /// CPU time (user + system, the whole process) spent during drift rounds.
    pub drift_round_cpu_seconds: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let runtime_events = IntCounterVec::new(
            Opts::new("zastava_runtime_events_total", "Runtime events by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let proc_maps_samples = IntCounterVec::new(
            Opts::new(
                "zastava_proc_maps_samples_total",
                "Samples of container processes (/proc/<pid>/maps) by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let hash_bytes = IntCounter::new(
            "zastava_hash_bytes_total",
            "Bytes read to compute sha256 of executables and libraries",
        )
        .expect("valid metric");
        let containers = IntGauge::new(
            "zastava_observer_containers",
            "Containers the observer tracks on its node",
        )
        .expect("valid metric");
        let api_writes = IntCounterVec::new(
            Opts::new(
                "zastava_observer_api_writes_total",
                "Writes to the Kubernetes API by what was written and result",
            ),
            &["what", "result"],
        )
        .expect("valid metric");
        let cri_errors = IntCounter::new(
            "zastava_observer_cri_errors_total",
            "Failed calls to the container runtime (CRI)",
        )
        .expect("valid metric");
        let sbom_fetches = IntCounterVec::new(
            Opts::new(
                "zastava_observer_sbom_fetches_total",
                "Lookups of images' CycloneDX SBOMs in their registries by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let inventory_fallback = IntGauge::new(
            "zastava_observer_inventory_fallback",
            "1 while containers are inventoried from the Kubernetes API and /proc because the CRI socket cannot be reached",
        )
        .expect("valid metric");
        let buffer_drops = IntCounterVec::new(
            Opts::new(
                "zastava_buffer_drops_total",
                "Runtime events the outbox dropped, by reason (capacity, rejected, error)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let backend_latency = HistogramVec::new(
            HistogramOpts::new(
                "zastava_runtime_backend_latency_ms",
                "Backend call latency in milliseconds",
            )
            .buckets(vec![
                1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
            ]),
            &["endpoint"],
        )
        .expect("valid metric");
        let backend_failures = IntCounterVec::new(
            Opts::new(
                "zastava_observer_backend_failures_total",
                "Failed deliveries of runtime event batches to the backend, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let buffered_events = IntGauge::new(
            "zastava_observer_buffered_events",
            "Runtime events waiting in the outbox's disk queue",
        )
        .expect("valid metric");
        let entrytrace_depth = Histogram::with_opts(
            HistogramOpts::new(
                "zastava_entrytrace_depth",
                "Depth of the entry traces followed from a container's entrypoint",
            )
            .buckets(vec![
                0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0,
            ]),
        )
        .expect("valid metric");
        let partial_results = IntCounterVec::new(
            Opts::new(
                "zastava_observer_partial_total",
                "Entry traces, samples and observations a cap or time limit cut short, by what",
            ),
            &["what"],
        )
        .expect("valid metric");
        let drift_round_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "zastava_observer_drift_round_seconds",
                "Wall time of the drift rounds (every tracked container observed and compared)",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid metric");
        let drift_round_cpu_seconds = Counter::new(
            "zastava_observer_drift_round_cpu_seconds_total",
            "CPU time (user and system, the whole process) spent during drift rounds",
        )
        .expect("valid metric");
        for collector in [
            Box::new(runtime_events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(proc_maps_samples.clone()),
            Box::new(hash_bytes.clone()),
            Box::new(containers.clone()),
            Box::new(api_writes.clone()),
            Box::new(cri_errors.clone()),
            Box::new(sbom_fetches.clone()),
            Box::new(inventory_fallback.clone()),
            Box::new(buffer_drops.clone()),
            Box::new(backend_latency.clone()),
            Box::new(backend_failures.clone()),
            Box::new(buffered_events.clone()),
            Box::new(entrytrace_depth.clone()),
            Box::new(partial_results.clone()),
            Box::new(drift_round_seconds.clone()),
            Box::new(drift_round_cpu_seconds.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            runtime_events,
            proc_maps_samples,
            hash_bytes,
            containers,
            api_writes,
            cri_errors,
            sbom_fetches,
            inventory_fallback,
            buffer_drops,
            backend_latency,
            backend_failures,
            buffered_events,
            entrytrace_depth,
            partial_results,
            drift_round_seconds,
            drift_round_cpu_seconds,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        zastava_process::render(&self.registry)
    }

    /// Counts a write's outcome.
    pub fn api_write<T, E>(&self, what: &str, result: &Result<T, E>) {
        let label = if result.is_ok() { "ok" } else { "error" };
        self.api_writes.with_label_values(&[what, label]).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_names_are_exposed() {
        let m = Metrics::new();
        m.runtime_events.with_label_values(&["DRIFT"]).inc();
        m.proc_maps_samples.with_label_values(&["ok"]).inc();
        m.hash_bytes.inc_by(42);
        m.api_write("status", &Err::<(), ()>(()));
        m.buffer_drops.with_label_values(&["capacity"]).inc_by(3);
        m.backend_latency
            .with_label_values(&["runtime/events"])
            .observe(12.0);
        m.backend_failures.with_label_values(&["timeout"]).inc();
        m.buffered_events.set(7);
        m.entrytrace_depth.observe(5.0);
        m.partial_results.with_label_values(&["timeout"]).inc();
        let text = m.render();
        assert!(
            text.contains("zastava_runtime_events_total{kind=\"DRIFT\"} 1"),
            "{text}"
        );
        assert!(text.contains("zastava_proc_maps_samples_total{result=\"ok\"} 1"));
        assert!(text.contains("zastava_hash_bytes_total 42"));
        assert!(
            text.contains("zastava_observer_api_writes_total{result=\"error\",what=\"status\"} 1")
        );
        assert!(text.contains("zastava_buffer_drops_total{reason=\"capacity\"} 3"));
        assert!(text
            .contains("zastava_runtime_backend_latency_ms_count{endpoint=\"runtime/events\"} 1"));
        assert!(text.contains("zastava_observer_backend_failures_total{reason=\"timeout\"} 1"));
        assert!(text.contains("zastava_observer_buffered_events 7"));
        assert!(text.contains("zastava_entrytrace_depth_bucket{le=\"6\"} 1"));
        assert!(text.contains("zastava_entrytrace_depth_bucket{le=\"4\"} 0"));
        assert!(text.contains("zastava_observer_partial_total{what=\"timeout\"} 1"));
    }
}
