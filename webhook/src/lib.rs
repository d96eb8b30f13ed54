//! zastava-webhook: admission decisions driven by ZastavaPolicy objects.
//!
//! The decision is a pure function ([`evaluate::evaluate`]) of the policies, the workload and
//! what the registry says about each image; the server ([`server`]) and the `check` CLI only
//! fetch and call.

pub mod admission;
pub mod backend;
pub mod cache;
pub mod cert_health;
pub mod check;
pub mod decision_log;
pub mod evaluate;
pub mod limits;
pub mod metrics;
pub mod policies;
pub mod policy_reports;
pub mod server;
pub mod tls;
pub mod transport;
pub mod verifier;
pub mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use decision_log::DecisionLog;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use zastava_crds::{RuntimePosture, ZastavaPolicy};
use zastava_process::probes::{self, Probes};
use zastava_registry::Registry;

use crate::backend::{Backend, BackendSecrets};
use crate::cache::{TtlCache, Ttls};
use crate::cert_health::CertHealth;
use crate::metrics::Metrics;
use crate::policies::{drifted_digests, PolicySet};
use crate::server::App;
use crate::tls::{certified_key, CertStore, ClientRoots, TlsError};
use zastava_crds::policy::BackendVerdict;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("probe server: {0}")]
    Probes(std::io::Error),
    #[error("--client-ca-file {path}: {error}")]
    ClientCa { path: PathBuf, error: String },
}

#[derive(Clone, Debug, clap::Args)]
pub struct ServeConfig {
    /// Zastava's own namespace: the TLS Secret and key Secrets live here; never governed.
    #[arg(long, env = "ZASTAVA_NAMESPACE", default_value = "zastava-system")]
    pub namespace: String,
    /// HTTPS address of `POST /validate`.
    #[arg(long, env = "ZASTAVA_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// Plain-HTTP address of /metrics, /healthz and /readyz.
    #[arg(long, env = "ZASTAVA_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// The `kubernetes.io/tls` Secret (in `namespace`) holding the serving certificate; reloaded
    /// whenever it changes.
    #[arg(
        long,
        env = "ZASTAVA_WEBHOOK_TLS_SECRET",
        default_value = "zastava-webhook-tls"
    )]
    pub tls_secret: String,
    /// Seconds between direct reads (GET) of the TLS Secret, besides its watch: liveness fails
    /// when the served certificate is past its renewal time and the Secret holds a newer one
    /// (this replica's watch is stuck; see cert_health.rs).
    #[arg(long, env = "ZASTAVA_TLS_SECRET_CHECK_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_secret_check_seconds: u64,
    /// PEM bundle of the CAs of the apiserver's client certificate (its admission
    /// configuration's kubeconfig); when given, `/validate` answers only clients presenting a
    /// certificate they signed. Use a CA that signs nothing else: any holder of one of its
    /// certificates can send reviews naming any namespace's pull Secrets.
    #[arg(long, env = "ZASTAVA_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// Registries (`host:port`) spoken to over plain HTTP, comma-separated.
    #[arg(long, env = "ZASTAVA_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// Timeout of each registry call, in milliseconds.
    #[arg(long, env = "ZASTAVA_REGISTRY_TIMEOUT_MS", default_value_t = 3000)]
    pub registry_timeout_ms: u64,
    /// Milliseconds after a review arrives by which every registry and backend call of its
    /// decision must have answered; then Zastava decides with the namespace's fail mode.
    /// Keep it below the webhook configuration's timeoutSeconds (the chart sets it to
    /// timeoutSeconds less 1 s), so the apiserver's failurePolicy never decides instead.
    #[arg(long, env = "ZASTAVA_DECISION_DEADLINE_MS", default_value_t = limits::DEFAULT_DECISION_DEADLINE.as_millis() as u64)]
    pub decision_deadline_ms: u64,
    /// Let registry redirects and token realms lead to loopback, link-local and private
    /// addresses even when the registry itself is not on such a network.
    #[arg(long, env = "ZASTAVA_REGISTRY_ALLOW_INTERNAL_TARGETS")]
    pub registry_allow_internal_targets: bool,
    /// Image digests (and tag resolutions) kept in the verdict cache.
    #[arg(long, env = "ZASTAVA_CACHE_CAPACITY", default_value_t = 10_000)]
    pub cache_capacity: u64,
    /// Seconds the webhook keeps accepting after SIGTERM, unready and closing every connection
    /// after its answer, so the Service's endpoints drop the pod (kube-proxy and the
    /// apiserver's connections catch up) before it stops accepting. 0 outside a cluster.
    #[arg(long, env = "ZASTAVA_SHUTDOWN_DELAY_SECONDS", default_value_t = 5)]
    pub shutdown_delay_seconds: u64,
    /// Seconds open connections get to finish once it stopped accepting.
    #[arg(long, env = "ZASTAVA_DRAIN_SECONDS", default_value_t = 10)]
    pub drain_seconds: u64,
    /// Log format; the level comes from RUST_LOG (default info). With `json`, each admission
    /// decision is one line with the contract as a nested object.
    #[arg(long, env = "ZASTAVA_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub limits: transport::Limits,
    #[command(flatten)]
    pub verifier: verifier::VerifierArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// The shared state of the servers; `client` and `namespaces` are `None` only in tests and
/// benchmarks, which install policies themselves.
pub fn app(
    config: &ServeConfig,
    client: Option<Client>,
    namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
) -> Arc<App> {
    let metrics = Metrics::new();
    let set = PolicySet::default();
    let (positive, negative) = set.ttls();
    let ttls = Arc::new(Ttls::new(positive, negative));
    Arc::new(App {
        policies: arc_swap::ArcSwap::from_pointee(set),
        drifted: arc_swap::ArcSwap::default(),
        registry: Registry::new(
            config.insecure_registries.clone(),
            Duration::from_millis(config.registry_timeout_ms),
            metrics.registry_calls.clone(),
        )
        .allow_internal_targets(config.registry_allow_internal_targets),
        by_tag: TtlCache::new(config.cache_capacity, ttls.clone()),
        facts: TtlCache::new(config.cache_capacity, ttls.clone()),
        backend: Backend::new(
            Some(TtlCache::new(config.cache_capacity, ttls.clone())),
            metrics.clone(),
        ),
        backend_secrets: Default::default(),
        ttls,
        metrics,
        namespaces,
        client,
        zastava_namespace: config.namespace.clone(),
        ready: Default::default(),
        closing: Default::default(),
        certs: Arc::new(CertStore::default()),
        decision_log: match config.log_format {
            LogFormat::Json => DecisionLog::Json(Arc::new(std::io::stdout())),
            LogFormat::Text => DecisionLog::Tracing,
        },
        decision_deadline: Duration::from_millis(config.decision_deadline_ms),
        verifier_wake: Default::default(),
    })
}

/// Runs the webhook until SIGTERM/SIGINT.
pub async fn serve(config: ServeConfig) -> Result<(), Error> {
    // Read before anything else: a broken bundle stops the webhook rather than leaving
    // `/validate` open to every caller.
    let clients = match &config.client_ca_file {
        Some(path) => {
            let roots = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|pem| ClientRoots::from_pem(&pem).map_err(|e| e.to_string()))
                .map_err(|error| Error::ClientCa {
                    path: path.clone(),
                    error,
                })?;
            tracing::info!(path = %path.display(), cas = roots.count, "client certificates required");
            Some(roots)
        }
        None => None,
    };
    let client = Client::try_default().await?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let (ns_store, ns_writer) = reflector::store();
    let namespaces = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    tokio::spawn(
        reflector::reflector(ns_writer, namespaces).for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(error = %e, "namespace watch");
            }
        }),
    );
    let app = app(&config, Some(client.clone()), Some(ns_store));
    let delay = Duration::from_secs(config.shutdown_delay_seconds);
    let closing = app.clone();
    tokio::spawn(async move {
        zastava_process::shutdown_signal().await;
        closing.closing.store(true, Ordering::Relaxed);
        tracing::info!(
            ?delay,
            "shutdown requested; serving unready until the endpoints drop this pod"
        );
        tokio::time::sleep(delay).await;
        tracing::info!("draining");
        let _ = stop_tx.send(true);
    });

    let probes = Probes::new({
        let app = app.clone();
        move || {
            certificate_gauges(&app, cert_health::unix_now());
            app.metrics.render()
        }
    })
    // The serving certificate expired, or a renewal this replica has not loaded: a restart
    // helps (cert_health.rs says why a renewal merely overdue does not fail it).
    .live_when({
        let app = app.clone();
        move || app.certs.health(cert_health::unix_now()).liveness()
    })
    .ready_when({
        let app = app.clone();
        move || {
            (!app.closing.load(Ordering::Relaxed))
                .then_some(())
                .ok_or("shutting down")
        }
    })
    .ready_when({
        let app = app.clone();
        move || {
            app.ready
                .load(Ordering::Relaxed)
                .then_some(())
                .ok_or("policies not synced or no serving certificate yet")
        }
    });
    let probe_listener = probes::bind(config.http_addr)
        .await
        .map_err(|error| Error::Listen {
            addr: config.http_addr,
            error,
        })?;
    let probe_server = tokio::spawn(probes::serve(probe_listener, probes, stop_rx.clone()));

    tokio::spawn(sync_policies(client.clone(), config.clone(), app.clone()));
    let (postures, posture_writer) = reflector::store::<RuntimePosture>();
    tokio::spawn(sync_postures(client.clone(), app.clone(), posture_writer));
    tokio::spawn({
        let (client, app, config, stop) =
            (client.clone(), app.clone(), config.clone(), stop_rx.clone());
        async move {
            // A verifier that failed (a bug, not an outage: those it retries itself) is
            // started again rather than leaving running workloads unverified until a restart.
            loop {
                let run = tokio::spawn(verifier::run(
                    client.clone(),
                    app.clone(),
                    postures.clone(),
                    config.namespace.clone(),
                    config.verifier.clone(),
                    stop.clone(),
                ));
                match run.await {
                    Ok(()) => break,
                    Err(e) => {
                        app.metrics.verifier_leader.set(0);
                        tracing::error!(error = %e, "the verifier failed; starting it again in 10 s");
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                }
            }
        }
    });
    tokio::spawn(refresh_backend_secrets(
        client.clone(),
        config.clone(),
        app.clone(),
    ));
    tokio::spawn(check_tls_secret(
        client.clone(),
        config.clone(),
        app.clone(),
    ));

    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|error| Error::Listen {
            addr: config.addr,
            error,
        })?;
    tracing::info!(addr = %config.addr, http = %config.http_addr, "serving admission reviews");
    transport::serve_tls(
        listener,
        app.certs.server_config(clients.as_ref()),
        server::admission_router(app.clone()),
        stop_rx,
        Duration::from_secs(config.drain_seconds),
        config.limits.clone(),
        app.metrics.clone(),
    )
    .await;
    match probe_server.await {
        Ok(result) => result.map_err(Error::Probes),
        Err(e) => {
            tracing::error!(error = %e, "probe server task failed");
            Ok(())
        }
    }
}

/// Keeps the policy set and the serving certificate in step with the cluster: reflectors on
/// the ZastavaPolicy objects and on the TLS Secret (by name: the webhook's RBAC allows no
/// other Secret of Zastava's namespace), and a rebuild after every change. Marks the app ready
/// once both have synced and a certificate is loaded.
async fn sync_policies(client: Client, config: ServeConfig, app: Arc<App>) {
    let changed = Arc::new(Notify::new());
    let (policy_store, policy_writer) = reflector::store::<ZastavaPolicy>();
    let (secret_store, secret_writer) = reflector::store::<Secret>();
    let notify = changed.clone();
    let policies = reflector::reflector(
        policy_writer,
        watcher(
            Api::<ZastavaPolicy>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    // Every event, deletions included, changes what is in force.
    .map_ok(move |_| notify.notify_one());
    let notify = changed.clone();
    let secrets = reflector::reflector(
        secret_writer,
        watcher(
            Api::<Secret>::namespaced(client.clone(), &config.namespace),
            watcher::Config::default().fields(&format!("metadata.name={}", config.tls_secret)),
        )
        .default_backoff(),
    )
    // Every event, deletions included, changes what is in force.
    .map_ok(move |_| notify.notify_one());
    tokio::spawn(policies.for_each(|r| async move {
        if let Err(e) = r {
            tracing::warn!(error = %e, "ZastavaPolicy watch");
        }
    }));
    tokio::spawn(secrets.for_each(|r| async move {
        if let Err(e) = r {
            tracing::warn!(error = %e, "Secret watch");
        }
    }));
    if policy_store.wait_until_ready().await.is_err()
        || secret_store.wait_until_ready().await.is_err()
    {
        tracing::error!("reflectors stopped before syncing");
        return;
    }

    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let mut last_problems = Vec::new();
    let mut last_tls = None;
    loop {
        let set = PolicySet::build(&policy_store.state());
        if set.problems != last_problems {
            for problem in &set.problems {
                tracing::warn!(%problem, "policy key not used");
            }
            last_problems = set.problems.clone();
        }
        tracing::info!(policies = %set.fingerprint(), "policies in force");
        // The credentials first: the new policies' backends are asked with them at once.
        let previous = app.backend_secrets.load_full();
        app.backend_secrets.store(Arc::new(
            read_backend_secrets(&secrets_api, &set, &previous).await,
        ));
        app.set_policies(set);

        let tls = secret_store
            .get(&reflector::ObjectRef::new(&config.tls_secret).within(&config.namespace));
        let version = tls
            .as_ref()
            .and_then(|s| s.metadata.resource_version.clone());
        if version != last_tls {
            match tls.as_deref().map(load_tls_secret) {
                Some(Ok(key)) => {
                    app.certs.set(key);
                    app.metrics.tls_reloads.with_label_values(&["loaded"]).inc();
                    tracing::info!(secret = %config.tls_secret, resource_version = ?version, "serving certificate loaded");
                }
                Some(Err(e)) => {
                    app.metrics
                        .tls_reloads
                        .with_label_values(&["invalid"])
                        .inc();
                    tracing::error!(secret = %config.tls_secret, error = %e, "TLS Secret unusable; keeping the previous certificate");
                }
                None => {
                    tracing::warn!(secret = %config.tls_secret, namespace = %config.namespace, "TLS Secret not found yet; waiting for it")
                }
            }
            last_tls = version;
        }
        app.ready.store(app.certs.is_loaded(), Ordering::Relaxed);
        changed.notified().await;
    }
}

/// How often the backends' credential Secrets are read again, so a rotated token or client
/// certificate is used within this time (the webhook's Role allows `get` of them by name, not
/// a watch of the namespace's Secrets).
const BACKEND_SECRETS_REFRESH: Duration = Duration::from_secs(30);

/// Reads the Secrets the backends of `set` name. A Secret that cannot be read (apiserver
/// outage) keeps what `previous` held of it: an outage must not take a working backend away.
async fn read_backend_secrets(
    secrets: &Api<Secret>,
    set: &PolicySet,
    previous: &BackendSecrets,
) -> BackendSecrets {
    let names: std::collections::BTreeSet<String> = set
        .backend_settings()
        .values()
        .flat_map(BackendVerdict::secret_names)
        .collect();
    let mut read = BackendSecrets::new();
    for name in names {
        let data = match secrets.get_opt(&name).await {
            Ok(secret) => Ok(secret.map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            })),
            Err(kube::Error::Api(status)) if status.code == 403 => Err(
                "forbidden: the webhook reads only the Secrets the chart lists in webhook.backendSecrets"
                    .to_string(),
            ),
            Err(e) => match previous.get(&name) {
                Some(kept @ Ok(Some(_))) => {
                    tracing::warn!(secret = %name, error = %e, "cannot read a backend's Secret; keeping what was read before");
                    kept.clone()
                }
                _ => Err(e.to_string()),
            },
        };
        read.insert(name, data);
    }
    read
}

/// Reads the backends' credential Secrets every [`BACKEND_SECRETS_REFRESH`].
async fn refresh_backend_secrets(client: Client, config: ServeConfig, app: Arc<App>) {
    let secrets: Api<Secret> = Api::namespaced(client, &config.namespace);
    let mut every = tokio::time::interval(BACKEND_SECRETS_REFRESH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let set = app.policies.load_full();
        if set.backend_settings().is_empty() {
            continue;
        }
        let previous = app.backend_secrets.load_full();
        let read = read_backend_secrets(&secrets, &set, &previous).await;
        if read != *previous {
            app.set_backend_secrets(read);
        }
    }
}

/// Keeps the set of drifted digests in step with the RuntimePostures the observers write, and
/// wakes the verifier on every change of one.
async fn sync_postures(
    client: Client,
    app: Arc<App>,
    writer: reflector::store::Writer<RuntimePosture>,
) {
    let store = writer.as_reader();
    reflector::reflector(
        writer,
        watcher(
            Api::<RuntimePosture>::all(client),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .for_each(|event| {
        match event {
            Ok(_) => {
                app.set_drifted(drifted_digests(&store.state()));
                app.verifier_wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "RuntimePosture watch"),
        }
        async {}
    })
    .await;
}

/// Sets the certificate gauges from the served certificate at `now` (Unix seconds).
fn certificate_gauges(app: &App, now: i64) -> cert_health::CertHealth {
    let health = app.certs.health(now);
    let served = app.certs.served();
    app.metrics
        .certificate_expiry
        .set(served.map_or(0, |v| v.not_after - now));
    let overdue = matches!(
        health,
        CertHealth::RenewalOverdue | CertHealth::RenewalNotLoaded | CertHealth::Expired
    );
    app.metrics
        .certificate_renewal_overdue
        .set(i64::from(overdue));
    health
}

/// Reads the TLS Secret straight from the API every `--tls-secret-check-seconds` (a GET, not
/// the watch that reloads it): what it holds is what the served certificate is compared with
/// for liveness. Says in the log when the served certificate is past its renewal time: a
/// warning while the Secret has nothing newer (the operator has not renewed; liveness stays
/// OK), an error while it has (liveness fails, the kubelet restarts this replica). Repeated
/// every ten minutes while it lasts.
async fn check_tls_secret(client: Client, config: ServeConfig, app: Arc<App>) {
    const REPEAT: Duration = Duration::from_secs(600);
    let secrets: Api<Secret> = Api::namespaced(client, &config.namespace);
    let mut every = tokio::time::interval(Duration::from_secs(config.tls_secret_check_seconds));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(CertHealth, tokio::time::Instant)> = None;
    loop {
        every.tick().await;
        match secrets.get_opt(&config.tls_secret).await {
            Ok(secret) => {
                let usable = secret.as_ref().and_then(|s| load_tls_secret(s).ok());
                let validity = usable
                    .as_ref()
                    .and_then(|key| key.cert.first())
                    .and_then(|der| cert_health::Validity::of_der(der).ok());
                app.certs.set_in_secret(validity);
            }
            // The last read stands: an apiserver outage says nothing about the certificate.
            Err(e) => {
                tracing::warn!(secret = %config.tls_secret, error = %e, "cannot read the TLS Secret")
            }
        }
        let now = cert_health::unix_now();
        let health = certificate_gauges(&app, now);
        let repeat = match last {
            Some((before, at)) => before != health || at.elapsed() >= REPEAT,
            None => true,
        };
        if !repeat {
            continue;
        }
        let not_after = app.certs.served().map(|v| v.not_after);
        match health {
            CertHealth::RenewalOverdue => tracing::warn!(
                secret = %config.tls_secret,
                ?not_after,
                "serving certificate past its renewal time and the TLS Secret holds nothing newer: not renewed yet (the operator renews it); liveness stays OK until it expires"
            ),
            CertHealth::RenewalNotLoaded => tracing::error!(
                secret = %config.tls_secret,
                ?not_after,
                "serving certificate past its renewal time and the TLS Secret holds a newer one this replica has not loaded; liveness fails so that a restart loads it"
            ),
            CertHealth::Expired => tracing::error!(
                secret = %config.tls_secret,
                ?not_after,
                "serving certificate expired; liveness fails"
            ),
            CertHealth::NotLoaded | CertHealth::Fresh => {}
        }
        last = Some((health, tokio::time::Instant::now()));
    }
}

fn load_tls_secret(secret: &Secret) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let data = secret.data.as_ref();
    let entry = |key: &'static str| {
        data.and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .ok_or(TlsError::MissingEntry(key))
    };
    certified_key(entry("tls.crt")?, entry("tls.key")?)
}
