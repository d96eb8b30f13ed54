//! The operator's Prometheus registry.

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Reconciliations by resource kind and result (`accepted`, `rejected`, `error`).
    pub reconciliations: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    /// Rejected policies by condition reason.
    pub policy_rejections: IntCounterVec,
    /// 1 while this replica holds the leader Lease.
    pub leader: IntGauge,
    /// Serving-certificate requests by how they ended (`issued`, `denied`, `failed`,
    /// `deleted` by someone else, `error`).
    pub certificate_issuance: IntCounterVec,
    /// Certificates renewed, by `certificate` (`serving`, `ca`) and `reason`.
    pub certificate_renewals: IntCounterVec,
    /// Seconds until the current certificate expires, by `certificate` (`serving`, `ca`);
    /// negative once expired, 0 while there is none.
    pub certificate_expiry: GaugeVec,
    /// Writes of the ValidatingWebhookConfiguration, by `change` (`created`, `updated`: a
    /// policy changed or someone else's edit was put back).
    pub webhook_config_applies: IntCounterVec,
    /// Exemption labels the operator removed from namespaces it had not granted them to, by
    /// `label` (`zastava.stellaops.io/ignore`, `zastava.stellaops.io/fail-open`).
    pub exemption_labels_removed: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "zastava_operator_reconciliations_total",
                "Reconciliations by resource kind and result",
            ),
            &["kind", "result"],
        )
        .expect("valid metric");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "zastava_operator_reconcile_duration_seconds",
                "Time spent in one reconciliation",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["kind"],
        )
        .expect("valid metric");
        let policy_rejections = IntCounterVec::new(
            Opts::new(
                "zastava_operator_policy_rejections_total",
                "ZastavaPolicy reconciliations that found the policy unusable, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "zastava_operator_leader",
            "1 while this replica holds the leader Lease",
        )
        .expect("valid metric");
        let certificate_issuance = IntCounterVec::new(
            Opts::new(
                "zastava_operator_certificate_issuance_total",
                "Webhook serving-certificate requests by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let certificate_renewals = IntCounterVec::new(
            Opts::new(
                "zastava_operator_certificate_renewals_total",
                "Webhook certificates renewed, by certificate and reason",
            ),
            &["certificate", "reason"],
        )
        .expect("valid metric");
        let certificate_expiry = GaugeVec::new(
            Opts::new(
                "zastava_operator_certificate_expiry_seconds",
                "Seconds until the webhook certificate expires",
            ),
            &["certificate"],
        )
        .expect("valid metric");
        let webhook_config_applies = IntCounterVec::new(
            Opts::new(
                "zastava_operator_webhook_config_applies_total",
                "Writes of the ValidatingWebhookConfiguration by change",
            ),
            &["change"],
        )
        .expect("valid metric");
        let exemption_labels_removed = IntCounterVec::new(
            Opts::new(
                "zastava_operator_exemption_labels_removed_total",
                "Exemption labels removed from namespaces Zastava had not granted them to, by label",
            ),
            &["label"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(reconciliations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(policy_rejections.clone()),
            Box::new(leader.clone()),
            Box::new(certificate_issuance.clone()),
            Box::new(certificate_renewals.clone()),
            Box::new(certificate_expiry.clone()),
            Box::new(webhook_config_applies.clone()),
            Box::new(exemption_labels_removed.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self {
            registry,
            reconciliations,
            reconcile_duration,
            policy_rejections,
            leader,
            certificate_issuance,
            certificate_renewals,
            certificate_expiry,
            webhook_config_applies,
            exemption_labels_removed,
        }
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        zastava_process::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
