//! zastava-operator: reconciles `ZastavaPolicy` objects, one active replica at a time.

mod error;
pub mod events;
pub mod http;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod validate;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use zastava_crds::ZastavaPolicy;

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
    /// The Lease (in `namespace`) the replicas of one operator compete for.
    #[arg(long, env = "ZASTAVA_LEASE_NAME", default_value = "zastava-operator")]
    pub lease_name: String,
    /// Seconds a leader's Lease stays valid without renewal.
    #[arg(long, env = "ZASTAVA_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(5..=300))]
    pub lease_duration_seconds: u64,
    /// Log format.
    #[arg(long, env = "ZASTAVA_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
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
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });

    let probes = http::Probes {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(http::serve(config.http_addr, probes, stop_rx.clone()));

    let client = Client::try_default().await?;
    if !wait_for_api(&client, &ready, stop_rx.clone()).await {
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
    ));

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
        reconcile::run_policy_controller(ctx.clone(), async move {
            tokio::select! {
                _ = lost.wait_for(|l| !*l) => tracing::warn!("lost the leader Lease; standing by"),
                _ = stop.wait_for(|s| *s) => {},
            }
        })
        .await;
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
async fn wait_for_api(client: &Client, ready: &AtomicBool, stop: watch::Receiver<bool>) -> bool {
    let api: Api<ZastavaPolicy> = Api::all(client.clone());
    loop {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => {
                ready.store(true, Ordering::Relaxed);
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
        Ok(result) => result.map_err(Error::from),
        Err(e) => {
            tracing::error!(error = %e, "probe server task failed");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the operator");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
