//! The observer's Prometheus registry (DESIGN.md names; dots become underscores).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Runtime events by `kind` (`CONTAINER_START`, `CONTAINER_STOP`, `DRIFT`).
    pub runtime_events: IntCounterVec,
    /// Samples of a container's main process by `result`: `ok`, `partial` (it exited
    /// mid-sample), `gone` (nothing left to sample), `error` (unreadable `/proc`).
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
        for collector in [
            Box::new(runtime_events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(proc_maps_samples.clone()),
            Box::new(hash_bytes.clone()),
            Box::new(containers.clone()),
            Box::new(api_writes.clone()),
            Box::new(cri_errors.clone()),
            Box::new(sbom_fetches.clone()),
            Box::new(inventory_fallback.clone()),
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
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        zastava_shell::render(&self.registry)
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
    }
}
