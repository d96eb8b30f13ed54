//! The webhook's Prometheus registry (names from DESIGN.md where it gives them).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use zastava_registry::metrics::RegistryMetrics;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `zastava_admission_decisions_total{decision}`: Allow, Deny, and `error` for HTTP 400s.
    pub decisions: IntCounterVec,
    /// The children of `decisions`, looked up once: `with_label_values` hashes the labels and
    /// takes the vector's lock on every call, and every admission counts one of them.
    pub allowed: IntCounter,
    pub denied: IntCounter,
    pub decode_errors: IntCounter,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    /// Admissions in fail-open namespaces that a failed verification would have denied.
    pub fail_open: IntCounter,
    pub backend_failures: IntCounter,
    /// `zastava_runtime_backend_latency_ms{endpoint}`.
    pub backend_latency: HistogramVec,
    /// What the registry client records (`zastava_registry_failures_total{kind}`,
    /// `zastava_registry_latency_seconds{operation}`), registered here.
    pub registry_calls: RegistryMetrics,
    /// The whole decision, from body received to response ready.
    pub decision_latency: Histogram,
    /// ZastavaPolicy objects the webhook currently enforces.
    pub policies: IntGauge,
    /// Certificate reloads from the TLS Secret, by result.
    pub tls_reloads: IntCounterVec,
    /// `zastava_admission_rejected_total{reason}`: requests and connections refused by a limit
    /// of the admission port (see [`crate::transport::reason`]).
    pub admission_rejected: IntCounterVec,
    /// Connections open on the admission port.
    pub connections: IntGauge,
    /// TLS handshakes completed on the admission port: against `zastava_admission_decisions_total`,
    /// how often the apiserver opens a new connection instead of reusing a kept-alive one
    /// (each costs it a handshake, and with client certificates a signature).
    pub handshakes: IntCounter,
    /// Seconds until the served certificate expires (negative once it has), set at each
    /// scrape; 0 until a certificate is loaded.
    pub certificate_expiry: IntGauge,
    /// 1 while the served certificate is past its renewal time (crate::cert_health), else 0.
    pub certificate_renewal_overdue: IntGauge,
    /// Backends the policies name whose connection cannot be made (credentials missing or
    /// unusable, CA bundle unusable): their verdicts are unavailable until it is fixed.
    pub backend_connections_unusable: IntGauge,
    /// `zastava_reverifications_total{trigger,result}`: running workloads verified again
    /// (crate::verifier), by why and how it went.
    pub reverifications: IntCounterVec,
    pub reverification_duration: Histogram,
    /// Images running workloads run that today's Enforce policies would deny.
    pub runtime_policy_violations: IntGauge,
    /// 1 while this replica holds the verifier Lease.
    pub verifier_leader: IntGauge,
}

const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid metric");
            registry.register(Box::new(h.clone())).expect("unique");
            h
        };
        let decisions = counter_vec(
            "zastava_admission_decisions_total",
            "Admission decisions by result (Allow, Deny, error)",
            &["decision"],
        );
        let cache_hits = counter(
            "zastava_admission_cache_hits_total",
            "Image lookups answered from the verdict cache",
        );
        let cache_misses = counter(
            "zastava_admission_cache_misses_total",
            "Image lookups that went to the registry",
        );
        let fail_open = counter(
            "zastava_admission_fail_open_total",
            "Workloads admitted in fail-open namespaces although verification could not complete",
        );
        let backend_failures = counter(
            "zastava_backend_failures_total",
            "Backend calls that failed (timeout, 5xx, 429, unreachable)",
        );
        let backend_latency = histogram_vec(
            "zastava_runtime_backend_latency_ms",
            "Backend call latency in milliseconds",
            &["endpoint"],
            vec![
                1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
            ],
        );
        let registry_calls = RegistryMetrics::new();
        registry_calls.register(&registry).expect("unique");
        let decision_latency = Histogram::with_opts(
            HistogramOpts::new(
                "zastava_admission_latency_seconds",
                "Time to decide one AdmissionReview",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(decision_latency.clone()))
            .expect("unique");
        let policies = IntGauge::new(
            "zastava_webhook_policies",
            "ZastavaPolicy objects the webhook enforces",
        )
        .expect("valid metric");
        registry
            .register(Box::new(policies.clone()))
            .expect("unique");
        let tls_reloads = counter_vec(
            "zastava_webhook_tls_reloads_total",
            "Serving certificate loads from the TLS Secret, by result",
            &["result"],
        );
        let admission_rejected = counter_vec(
            "zastava_admission_rejected_total",
            "Admission requests and connections refused by a limit of the admission port, by reason",
            &["reason"],
        );
        let connections = IntGauge::new(
            "zastava_webhook_connections",
            "Connections open on the admission port",
        )
        .expect("valid metric");
        registry
            .register(Box::new(connections.clone()))
            .expect("unique");
        let handshakes = IntCounter::new(
            "zastava_webhook_tls_handshakes_total",
            "TLS handshakes completed on the admission port (new connections)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(handshakes.clone()))
            .expect("unique");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let certificate_expiry = gauge(
            "zastava_webhook_certificate_expiry_seconds",
            "Seconds until the served certificate expires (negative once expired; 0 before one is loaded)",
        );
        let certificate_renewal_overdue = gauge(
            "zastava_webhook_certificate_renewal_overdue",
            "1 while the served certificate is past its renewal time (two thirds of its lifetime), else 0",
        );
        let backend_connections_unusable = gauge(
            "zastava_backend_connections_unusable",
            "Backends named by policies whose connection cannot be made (credentials or CA bundle missing or unusable)",
        );
        let reverifications = counter_vec(
            "zastava_reverifications_total",
            "Running workloads verified again, by trigger (new, policy, digest, retry, period) and result (verified, incomplete, error)",
            &["trigger", "result"],
        );
        let reverification_duration = Histogram::with_opts(
            HistogramOpts::new(
                "zastava_reverification_duration_seconds",
                "Time to verify one running workload again",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(reverification_duration.clone()))
            .expect("unique");
        let runtime_policy_violations = gauge(
            "zastava_runtime_policy_violations",
            "Images of running workloads that today's Enforce policies would deny",
        );
        let verifier_leader = gauge(
            "zastava_verifier_leader",
            "1 while this webhook replica holds the verifier Lease and verifies running workloads",
        );
        Self {
            registry,
            allowed: decisions.with_label_values(&["Allow"]),
            denied: decisions.with_label_values(&["Deny"]),
            decode_errors: decisions.with_label_values(&["error"]),
            decisions,
            cache_hits,
            cache_misses,
            fail_open,
            backend_failures,
            backend_latency,
            registry_calls,
            decision_latency,
            policies,
            tls_reloads,
            admission_rejected,
            connections,
            handshakes,
            certificate_expiry,
            certificate_renewal_overdue,
            backend_connections_unusable,
            reverifications,
            reverification_duration,
            runtime_policy_violations,
            verifier_leader,
        }
    }

    pub fn render(&self) -> String {
        zastava_process::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
