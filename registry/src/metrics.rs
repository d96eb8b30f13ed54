//! The registry client's two metrics. The caller owns the Prometheus registry: the webhook
//! registers them on its own (so `/metrics` shows them under the names below); a client whose
//! calls nobody scrapes passes [`RegistryMetrics::new`] unregistered.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Buckets of [`RegistryMetrics::latency`], in seconds (the webhook's decision latency uses
/// the same ones).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Clone)]
pub struct RegistryMetrics {
    /// `zastava_registry_failures_total{kind}`: registry failures by kind (`unreachable`,
    /// `timeout`, `server_error`, ..., see [`FetchError::kind`](crate::distribution::FetchError::kind)).
    pub failures: IntCounterVec,
    /// `zastava_registry_latency_seconds{operation}`: registry calls by operation (`resolve`,
    /// `manifest`, `referrers`, `blob`, ...).
    pub latency: HistogramVec,
}

impl RegistryMetrics {
    /// The metrics, registered nowhere yet.
    pub fn new() -> Self {
        Self {
            failures: IntCounterVec::new(
                Opts::new(
                    "zastava_registry_failures_total",
                    "Registry calls that failed, by kind",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "zastava_registry_latency_seconds",
                    "Registry call latency by operation",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["operation"],
            )
            .expect("valid metric"),
        }
    }

    /// Registers both metrics on `registry`; fails when it has metrics of these names already.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.latency.clone()))
    }
}

impl Default for RegistryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_those_dashboards_read() {
        let registry = Registry::new();
        let metrics = RegistryMetrics::new();
        metrics.register(&registry).unwrap();
        metrics.failures.with_label_values(&["timeout"]).inc();
        metrics.latency.with_label_values(&["resolve"]).observe(0.1);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "zastava_registry_failures_total",
                "zastava_registry_latency_seconds"
            ]
        );
        assert!(
            metrics.register(&registry).is_err(),
            "registered once per registry"
        );
    }
}
