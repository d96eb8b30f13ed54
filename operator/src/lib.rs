//! zastava-operator: reconciles `ZastavaPolicy` objects, one active replica at a time.

mod error;
pub mod metrics;
pub mod posture;
pub mod pull_secrets;
pub mod reconcile;
pub mod status;
pub mod tls;
pub mod validate;
pub mod webhook_config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::api::ListParams;
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use zastava_crds::ZastavaPolicy;
use zastava_process::probes::{self, Flag, Probes};

pub use error::Error;
pub use metrics::Metrics;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "zastava-operator";

#[derive(Clone, Debug, clap::Parser)]
#[command(name = "zastava-operator", version, about)]
pub struct Config {
    /// Zastava's own namespace: the leader Lease and key Secrets live here.
    #[arg(long, env = "ZASTAVA_NAMESPACE", default_value = "zastava-system")]
    pub namespace: String,
    /// Address of the plain-HTTP /metrics, /healthz and /readyz server.
    #[arg(long, env = "ZASTAVA_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// This replica's identity in the leader Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME", default_value_t = default_identity())]
    pub identity: String,
    /// The Secrets (in Zastava's namespace) the webhook's Role lets it read for backend
    /// credentials, comma-separated (the chart's webhook.backendSecrets): a policy naming
    /// another gets a SecretNotReadable condition. Not given: not checked (a webhook running
    /// outside the cluster with broader credentials).
    #[arg(long, env = "ZASTAVA_WEBHOOK_BACKEND_SECRETS", value_delimiter = ',')]
    pub webhook_backend_secrets: Option<Vec<String>>,
    /// The Lease (in `namespace`) the replicas of one operator compete for.
    #[arg(long, env = "ZASTAVA_LEASE_NAME", default_value = "zastava-operator")]
    pub lease_name: String,
    /// Seconds a leader's Lease stays valid without renewal.
    #[arg(long, env = "ZASTAVA_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(5..=300))]
    pub lease_duration_seconds: u64,
    /// Log format.
    #[arg(long, env = "ZASTAVA_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// The webhook's TLS and ValidatingWebhookConfiguration.
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// Keep the webhook's TLS Secret, CA and ValidatingWebhookConfiguration (`false` leaves
    /// them entirely to someone else).
    #[arg(long = "manage-webhook", env = "ZASTAVA_MANAGE_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage: bool,
    /// The webhook's Service in Zastava's namespace; not used with --webhook-url.
    #[arg(
        long = "webhook-service",
        env = "ZASTAVA_WEBHOOK_SERVICE",
        default_value = "zastava-webhook"
    )]
    pub service: String,
    /// The port of that Service the webhook is called on.
    #[arg(
        long = "webhook-service-port",
        env = "ZASTAVA_WEBHOOK_SERVICE_PORT",
        default_value_t = 443
    )]
    pub service_port: u16,
    /// Call the webhook at this https URL instead of through its Service (for clusters that
    /// do not route Services); the serving certificate then names the URL's host.
    #[arg(long = "webhook-url", env = "ZASTAVA_WEBHOOK_URL", value_parser = parse_webhook_url)]
    pub url: Option<String>,
    /// The webhook's `kubernetes.io/tls` Secret in Zastava's namespace.
    #[arg(
        long = "webhook-tls-secret",
        env = "ZASTAVA_WEBHOOK_TLS_SECRET",
        default_value = "zastava-webhook-tls"
    )]
    pub tls_secret: String,
    /// The Secret in Zastava's namespace holding the operator's CA (and, during a rotation,
    /// the previous one).
    #[arg(
        long = "webhook-ca-secret",
        env = "ZASTAVA_WEBHOOK_CA_SECRET",
        default_value = "zastava-webhook-ca"
    )]
    pub ca_secret: String,
    /// Use the TLS Secret as someone else (e.g. cert-manager) keeps it instead of issuing the
    /// certificate through a CSR; `caBundle` comes from its `ca.crt`.
    #[arg(
        long = "webhook-existing-secret",
        env = "ZASTAVA_WEBHOOK_EXISTING_SECRET"
    )]
    pub existing_secret: bool,
    /// With --webhook-existing-secret: the cert-manager Certificate (`namespace/name`) whose CA
    /// cert-manager's CA injector writes into `caBundle`.
    #[arg(long = "webhook-cert-manager-certificate", env = "ZASTAVA_WEBHOOK_CERT_MANAGER_CERTIFICATE", requires = "existing_secret", value_parser = parse_namespaced_name)]
    pub cert_manager_certificate: Option<String>,
    /// The ValidatingWebhookConfiguration's name.
    #[arg(
        long = "webhook-config-name",
        env = "ZASTAVA_WEBHOOK_CONFIG_NAME",
        default_value = "zastava-webhook"
    )]
    pub config_name: String,
    /// The ClusterRole (the operator's own, as installed) whose deletion deletes the
    /// ValidatingWebhookConfiguration through the garbage collector; while it does not exist
    /// the configuration is not written.
    #[arg(
        long = "webhook-config-owner-cluster-role",
        env = "ZASTAVA_WEBHOOK_CONFIG_OWNER_CLUSTER_ROLE"
    )]
    pub owner_cluster_role: Option<String>,
    /// A ClusterRole of `get secrets` the operator binds the webhook's ServiceAccount to in
    /// every namespace but its own and kube-system (RoleBindings owned by that ClusterRole),
    /// so the webhook reads pods' imagePullSecrets and never the Secrets of Zastava's
    /// namespace. Unset: not managed (the webhook then reads no pull Secret unless granted).
    #[arg(
        long = "webhook-pull-secrets-cluster-role",
        env = "ZASTAVA_WEBHOOK_PULL_SECRETS_CLUSTER_ROLE"
    )]
    pub pull_secrets_cluster_role: Option<String>,
    /// The webhook's ServiceAccount (in Zastava's namespace) those RoleBindings name.
    #[arg(
        long = "webhook-service-account",
        env = "ZASTAVA_WEBHOOK_SERVICE_ACCOUNT",
        default_value = "zastava-webhook"
    )]
    pub service_account: String,
    /// How long the API server waits for the webhook before its failure policy applies.
    #[arg(long = "webhook-timeout-seconds", env = "ZASTAVA_WEBHOOK_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30))]
    pub timeout_seconds: i32,
    /// Validity of serving certificates; renewed two thirds into it. Fractions are allowed
    /// (tests shorten it to force rotations).
    #[arg(long = "cert-validity-hours", env = "ZASTAVA_CERT_VALIDITY_HOURS", default_value_t = 720.0, value_parser = parse_hours)]
    pub cert_validity_hours: f64,
    /// Validity of the operator's CA; rotated two thirds into it.
    #[arg(long = "ca-validity-hours", env = "ZASTAVA_CA_VALIDITY_HOURS", default_value_t = 87600.0, value_parser = parse_hours)]
    pub ca_validity_hours: f64,
}

impl WebhookArgs {
    fn settings(&self, namespace: &str) -> webhook_config::Settings {
        webhook_config::Settings {
            name: self.config_name.clone(),
            target: match &self.url {
                Some(url) => webhook_config::Target::Url(url.clone()),
                None => webhook_config::Target::Service {
                    namespace: namespace.to_string(),
                    name: self.service.clone(),
                    port: i32::from(self.service_port),
                },
            },
            timeout_seconds: self.timeout_seconds,
            owner_cluster_role: self.owner_cluster_role.clone(),
            pull_secrets: self.pull_secrets_cluster_role.clone().map(|cluster_role| {
                crate::pull_secrets::Grant {
                    cluster_role,
                    service_account: self.service_account.clone(),
                }
            }),
        }
    }

    fn provisioning(&self) -> tls::Provisioning {
        let hours = |h: f64| time::Duration::seconds_f64(h * 3600.0);
        if self.existing_secret {
            tls::Provisioning::Existing {
                cert_manager_certificate: self.cert_manager_certificate.clone(),
            }
        } else {
            tls::Provisioning::Csr {
                ca_secret: self.ca_secret.clone(),
                validity: hours(self.cert_validity_hours),
                ca_validity: hours(self.ca_validity_hours),
            }
        }
    }
}

fn parse_webhook_url(url: &str) -> Result<String, String> {
    webhook_config::url_host(url).map(|_| url.to_string())
}

fn parse_namespaced_name(value: &str) -> Result<String, String> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(value.to_string())
        }
        _ => Err("expected NAMESPACE/NAME".into()),
    }
}

/// At least a minute: a certificate must outlive the pass that issues it by far.
fn parse_hours(value: &str) -> Result<f64, String> {
    let hours: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (1.0 / 60.0..=24.0 * 365.0 * 100.0).contains(&hours) {
        Ok(hours)
    } else {
        Err("expected hours between 1/60 (a minute) and 876000 (100 years)".into())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "zastava".to_string());
    format!("{host}-{}", std::process::id())
}

/// Runs until SIGTERM or SIGINT: probes right away, the reconcilers only while this replica
/// holds the leader Lease. Loses nothing on shutdown: in-flight reconciliations finish and the
/// Lease is released so a standby takes over at once.
pub async fn run(config: Config) -> Result<(), Error> {
    let metrics = Metrics::new();
    let api_answers = Flag::default();
    let probes = Probes::new({
        let metrics = metrics.clone();
        move || metrics.render()
    })
    .ready_when({
        let api_answers = api_answers.clone();
        move || {
            api_answers
                .is_set()
                .then_some(())
                .ok_or("not ready: API server or CRDs not reachable yet")
        }
    });
    let listener = probes::bind(config.http_addr)
        .await
        .map_err(|cause| Error::Listen {
            addr: config.http_addr,
            cause,
        })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        zastava_process::shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let server = tokio::spawn(probes::serve(listener, probes, stop_rx.clone()));

    let client = Client::try_default().await?;
    if !wait_for_api(&client, &api_answers, stop_rx.clone()).await {
        return finish(server).await;
    }

    let lease = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(config.lease_duration_seconds)
            .with_grace(config.lease_duration_seconds / 3)
            .with_field_manager(format!("{FIELD_MANAGER}-lease"))
            .build()
            .await;
        match built {
            Ok(lease) => break lease,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up the leader Lease; retrying");
                if stopped_within(stop_rx.clone(), Duration::from_secs(5)).await {
                    return finish(server).await;
                }
            }
        }
    };
    let (mut leader, lease_task) = lease.watch().await;
    let ctx = Arc::new(reconcile::Context::new(
        client.clone(),
        config.namespace.clone(),
        config.identity.clone(),
        metrics.clone(),
        config
            .webhook_backend_secrets
            .as_ref()
            .map(|names| names.iter().filter(|n| !n.is_empty()).cloned().collect()),
    ));
    let webhook_ctx = config.webhook.manage.then(|| {
        Arc::new(tls::Context::new(
            client.clone(),
            config.namespace.clone(),
            config.identity.clone(),
            config.webhook.settings(&config.namespace),
            config.webhook.tls_secret.clone(),
            config.webhook.provisioning(),
            metrics.clone(),
        ))
    });

    loop {
        let mut stop = stop_rx.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            became = leader.wait_for(|l| *l) => if became.is_err() {
                tracing::error!("leader election stopped");
                break;
            },
        }
        tracing::info!(identity = %config.identity, "became leader; reconciling");
        metrics.leader.set(1);
        let mut lost = leader.clone();
        let mut stop = stop_rx.clone();
        // Every controller stops on the same signal: losing the Lease or a shutdown.
        let stepping_down = async move {
            tokio::select! {
                _ = lost.wait_for(|l| !*l) => tracing::warn!("lost the leader Lease; standing by"),
                _ = stop.wait_for(|s| *s) => {},
            }
        }
        .shared();
        let policies = reconcile::run_policy_controller(ctx.clone(), stepping_down.clone());
        let postures = posture::run_posture_controller(ctx.clone(), stepping_down.clone());
        match &webhook_ctx {
            Some(webhook_ctx) => {
                tokio::join!(
                    policies,
                    postures,
                    tls::run(webhook_ctx.clone(), stepping_down)
                );
            }
            None => {
                tokio::join!(policies, postures);
            }
        }
        metrics.leader.set(0);
        if *stop_rx.borrow() {
            break;
        }
    }

    // Closing the channel makes the lease task release the Lease for a standby.
    drop(leader);
    match lease_task.await {
        Ok(Ok(_)) => tracing::info!("released the leader Lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader Lease"),
        Err(e) => tracing::warn!(error = %e, "lease task panicked"),
    }
    finish(server).await
}

/// Waits until the API server answers and serves the ZastavaPolicy CRD; false when asked to
/// stop first.
async fn wait_for_api(client: &Client, ready: &Flag, stop: watch::Receiver<bool>) -> bool {
    let api: Api<ZastavaPolicy> = Api::all(client.clone());
    loop {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => {
                ready.set(true);
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "API server or ZastavaPolicy CRD not reachable yet");
                if stopped_within(stop.clone(), Duration::from_secs(3)).await {
                    return false;
                }
            }
        }
    }
}

/// Sleeps for `period`; true when a stop was requested meanwhile.
async fn stopped_within(mut stop: watch::Receiver<bool>, period: Duration) -> bool {
    tokio::time::timeout(period, stop.wait_for(|s| *s))
        .await
        .is_ok()
}

async fn finish(server: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<(), Error> {
    match server.await {
        Ok(result) => result.map_err(Error::Probes),
        Err(e) => {
            tracing::error!(error = %e, "probe server task failed");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("zastava-operator").chain(args.iter().copied()))
    }

    #[test]
    fn flags_are_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn by_default_the_csr_flow_serves_the_webhook_service() {
        let config = parse(&[]).unwrap();
        assert!(config.webhook.manage);
        let settings = config.webhook.settings("zastava-system");
        assert_eq!(settings.name, "zastava-webhook");
        assert_eq!(settings.timeout_seconds, 5);
        assert_eq!(
            settings.target,
            webhook_config::Target::Service {
                namespace: "zastava-system".into(),
                name: "zastava-webhook".into(),
                port: 443,
            }
        );
        assert_eq!(config.webhook.tls_secret, "zastava-webhook-tls");
        assert_eq!(
            config.webhook.provisioning(),
            tls::Provisioning::Csr {
                ca_secret: "zastava-webhook-ca".into(),
                validity: time::Duration::hours(720),
                ca_validity: time::Duration::hours(87600),
            }
        );
    }

    #[test]
    fn a_url_replaces_the_service_and_must_be_https() {
        let config = parse(&[
            "--webhook-url",
            "https://127.0.0.1:9443/validate",
            "--cert-validity-hours",
            "0.05",
        ])
        .unwrap();
        assert_eq!(
            config.webhook.settings("zastava-system").target,
            webhook_config::Target::Url("https://127.0.0.1:9443/validate".into())
        );
        assert!(matches!(
            config.webhook.provisioning(),
            tls::Provisioning::Csr { validity, .. } if validity == time::Duration::minutes(3)
        ));
        assert!(parse(&["--webhook-url", "http://127.0.0.1:9443/validate"]).is_err());
        assert!(parse(&["--cert-validity-hours", "0"]).is_err());
        assert!(parse(&["--cert-validity-hours", "NaN"]).is_err());
        assert!(parse(&["--webhook-timeout-seconds", "31"]).is_err());
    }

    #[test]
    fn cert_manager_needs_an_existing_secret() {
        assert!(parse(&[
            "--webhook-cert-manager-certificate",
            "zastava-system/webhook"
        ])
        .is_err());
        let config = parse(&[
            "--webhook-existing-secret",
            "--webhook-cert-manager-certificate",
            "zastava-system/webhook",
        ])
        .unwrap();
        assert_eq!(
            config.webhook.provisioning(),
            tls::Provisioning::Existing {
                cert_manager_certificate: Some("zastava-system/webhook".into())
            }
        );
        assert!(parse(&[
            "--webhook-existing-secret",
            "--webhook-cert-manager-certificate",
            "webhook"
        ])
        .is_err());
        let off = parse(&["--manage-webhook", "false"]).unwrap();
        assert!(!off.webhook.manage);
    }
}
