//! The node daemon (`zastava-observer run`): inventories the node's containers through the
//! runtime's CRI socket, samples each one that starts, watches it for drift against its
//! baseline, and reports into the workloads' `RuntimePosture` status.
//!
//! One loop, every `--interval-ms`: list the running containers and diff the list with
//! what is tracked ([`inventory`]); sample and trace each new one; resolve the workloads
//! ([`workload`]); every `--drift-interval-ms`, observe every container ([`observe`]) and
//! detect drift ([`crate::drift`]) under the rules of the policies governing its namespace
//! ([`rules`]); then write each posture whose entry for this node changed ([`crate::report`]).
//! The decisions are the pure functions of those modules; this file only fetches, calls and
//! writes.

pub mod fallback;
pub mod inventory;
pub mod netns;
pub mod observe;
pub mod rules;
pub mod sboms;
pub mod workload;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;
use zastava_crds::posture::{
    DriftFinding, Inventory, NodeObservation, ObservedContainer, ProcessPosture,
};
use zastava_crds::ZastavaPolicy;
use zastava_process::probes::{self, Flag, Heartbeat, Probes};

use crate::cri::{
    self, ContainerDetails, CriClient, ImageDetails, RuntimeContainer, RuntimeVersion,
};
use crate::drift::{self, Baseline, ContainerRef};
use crate::entrytrace::{self, EntryTrace};
use crate::error::{Error, Result};
use crate::hashing::{HashCache, Limits, DEFAULT_MAX_HASH_BYTES_PER_CONTAINER, DEFAULT_MAX_LIBS};
use crate::limits::CONTAINER_TIME_LIMIT;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, OutboxConfig, OutboxHandle, TokenBucket};
use crate::report::{
    self, ContainerReport, EventKind, EventOwner, EventRuntime, EventWorkload, Reporter,
    RuntimeEvent,
};
use crate::sample::{self, SampleOptions, DEFAULT_MAX_DEPTH};
use workload::{Resolution, Workload};

/// How the daemon runs (`zastava-observer run`); every flag is also an environment variable.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// The node this observer runs on (the DaemonSet passes `spec.nodeName`).
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// The container runtime's CRI socket.
    #[arg(
        long,
        env = "ZASTAVA_CRI_SOCKET",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub cri_socket: PathBuf,
    /// Where the host's procfs is mounted (the DaemonSet mounts it at /host/proc).
    #[arg(long, env = "ZASTAVA_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Where the host's filesystem is mounted, for the containers' writable layers (overlay
    /// upper dirs are host paths; the DaemonSet mounts the runtime's state under /host).
    #[arg(long, env = "ZASTAVA_HOST_ROOT", default_value = "/")]
    pub host_root: PathBuf,
    /// `/metrics`, `/healthz`, `/readyz`.
    #[arg(long, env = "ZASTAVA_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Zastava's own namespace: its containers are never reported.
    #[arg(long, env = "ZASTAVA_NAMESPACE", default_value = "zastava-system")]
    pub namespace: String,
    /// How often the running containers are listed (starts and stops are seen this fast).
    #[arg(long, env = "ZASTAVA_INTERVAL_MS", default_value_t = 1000)]
    pub interval_ms: u64,
    /// How often every container is observed for drift.
    #[arg(long, env = "ZASTAVA_DRIFT_INTERVAL_MS", default_value_t = 5000)]
    pub drift_interval_ms: u64,
    /// Libraries hashed per container and sample.
    #[arg(long, env = "ZASTAVA_MAX_LIBS", default_value_t = DEFAULT_MAX_LIBS)]
    pub max_libs: usize,
    /// Bytes hashed per container and sample or observation.
    #[arg(long, env = "ZASTAVA_MAX_HASH_BYTES", default_value_t = DEFAULT_MAX_HASH_BYTES_PER_CONTAINER)]
    pub max_hash_bytes: u64,
    /// Shell/wrapper depth of entry traces.
    #[arg(long, env = "ZASTAVA_MAX_DEPTH", default_value_t = DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
    /// Loaded libraries listed per process in a RuntimePosture's status (the runtime events
    /// carry them all): keeps a posture of a many-node workload under the API server's
    /// object size limit.
    #[arg(long, env = "ZASTAVA_STATUS_MAX_LIBS", default_value_t = 64)]
    pub status_max_libs: usize,
    /// Registries (`host:port`) spoken to over plain HTTP when images' SBOMs are fetched,
    /// comma-separated.
    #[arg(long, env = "ZASTAVA_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// Timeout of each registry call.
    #[arg(long, env = "ZASTAVA_REGISTRY_TIMEOUT_MS", default_value_t = 5000)]
    pub registry_timeout_ms: u64,
    /// The Scanner.WebService base URL runtime events are sent to in batches
    /// (`POST /api/v1/scanner/runtime/events`); none (or empty): events only in the logs.
    #[arg(long, env = "ZASTAVA_BACKEND_URL")]
    pub backend_url: Option<String>,
    /// Where events wait for the backend: a writable volume (the DaemonSet's emptyDir), so
    /// they survive a restart of the observer.
    #[arg(
        long,
        env = "ZASTAVA_BUFFER_DIR",
        default_value = "/var/lib/zastava-observer/events"
    )]
    pub buffer_dir: PathBuf,
    /// Bytes of events kept while the backend is unreachable; the oldest go first.
    #[arg(long, env = "ZASTAVA_BUFFER_MAX_BYTES", default_value_t = 50_000_000)]
    pub buffer_max_bytes: u64,
    /// Events kept while the backend is unreachable (DESIGN.md `limits.perNodeQueue`).
    #[arg(long, env = "ZASTAVA_BUFFER_MAX_EVENTS", default_value_t = 10_000)]
    pub buffer_max_events: usize,
    /// A batch leaves once this many events wait (or after `--batch-interval-ms`).
    #[arg(long, env = "ZASTAVA_BATCH_EVENTS", default_value_t = 100)]
    pub batch_events: usize,
    #[arg(long, env = "ZASTAVA_BATCH_INTERVAL_MS", default_value_t = 2000)]
    pub batch_interval_ms: u64,
    /// How many events per second leave the node, to the backend and as Kubernetes Events
    /// (DESIGN.md `limits.eventsPerSecond`); the rest waits in the buffer (backend) or stays
    /// in the posture's status only (Kubernetes Events).
    #[arg(long, env = "ZASTAVA_EVENTS_PER_SECOND", default_value_t = 50.0)]
    pub events_per_second: f64,
    /// Events allowed at once above that rate (DESIGN.md `limits.burst`).
    #[arg(long, env = "ZASTAVA_EVENTS_BURST", default_value_t = 200)]
    pub events_burst: u32,
    /// Log format.
    #[arg(long, env = "ZASTAVA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

impl Config {
    fn limits(&self) -> Limits {
        Limits {
            max_libs: self.max_libs,
            max_hash_bytes_per_container: self.max_hash_bytes,
        }
    }
}

/// A loop that has not finished a round for this long is stuck, and `/healthz` fails (a round
/// is bounded by the CRI and API call timeouts, far below this).
const STUCK_AFTER: Duration = Duration::from_secs(120);
/// A posture is written at most this often.
const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// A container the observer tracks.
struct Tracked {
    rc: RuntimeContainer,
    details: ContainerDetails,
    image: Arc<ImageDetails>,
    pid: u32,
    /// The image as the pod spec names it (the runtime may report another name of the
    /// same image), once the Pod is known.
    spec_image: Option<String>,
    /// The trace of the argv the container was started with; its terminals are the programs
    /// the container is expected to run.
    trace: EntryTrace,
    /// The latest sample of the main process, for the status.
    process: Option<ProcessPosture>,
    workload: Option<Workload>,
    /// Drift found so far (kept while the container runs).
    findings: Vec<DriftFinding>,
    /// Where its writable layer is, once an observation read it.
    layer: Option<observe::WritableLayer>,
}

impl Tracked {
    fn container_ref(&self) -> ContainerRef {
        ContainerRef {
            pod: self.rc.pod.clone(),
            container: self.rc.container.clone(),
        }
    }

    fn observed(&self) -> ObservedContainer {
        ObservedContainer {
            pod: self.rc.pod.clone(),
            container: self.rc.container.clone(),
            container_id: self.rc.id.clone(),
            image_ref: self
                .spec_image
                .clone()
                .unwrap_or_else(|| self.details.image_ref.clone()),
            image_digest: self
                .details
                .image_digest
                .clone()
                .or_else(|| self.image.digest.clone()),
            pid: Some(self.pid),
            started_at: self.details.started_at.and_then(report::time_from_nanos),
        }
    }
}

/// What this node last wrote into one posture.
#[derive(Default)]
struct Written {
    last: Option<NodeObservation>,
    /// When it was last written or tried.
    at: Option<Instant>,
    /// Writes that failed in a row.
    failures: u32,
    /// The posture object is known to exist.
    exists: bool,
}

impl Written {
    /// Whether a write is allowed now: at most once per [`MIN_WRITE_INTERVAL`], backing off
    /// exponentially (to about a minute) while writes fail, e.g. in a namespace being deleted.
    fn due(&self) -> bool {
        self.at
            .is_none_or(|at| at.elapsed() >= MIN_WRITE_INTERVAL * (1 << self.failures.min(6)))
    }

    fn tried(&mut self, ok: bool) {
        self.at = Some(Instant::now());
        self.failures = if ok { 0 } else { self.failures + 1 };
    }
}

/// Where the running containers are listed from.
enum Source {
    Cri(CriClient),
    /// The CRI socket could not be reached: the Pods of the API ([`fallback`]); the socket
    /// is tried again at `retry_cri`.
    Api {
        retry_cri: Instant,
    },
}

/// The CRI socket is tried again this often while the inventory comes from the API.
const CRI_RETRY: Duration = Duration::from_secs(30);
/// Failed listings in a row after which the daemon stops waiting for the runtime and
/// inventories through the API.
const CRI_FAILURES_BEFORE_FALLBACK: u32 = 3;

struct Daemon {
    config: Config,
    source: Source,
    /// Listings through the CRI that failed in a row.
    cri_failures: u32,
    runtime: RuntimeVersion,
    client: Client,
    reporter: Reporter,
    pods: Store<Pod>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    policies: Store<ZastavaPolicy>,
    cache: Arc<HashCache>,
    /// The network namespaces' socket tables, kept between drift rounds.
    nets: Arc<netns::NetNamespaces>,
    sboms: sboms::Sboms,
    metrics: Metrics,
    tracked: BTreeMap<String, Tracked>,
    /// Image details by image id, while a tracked container uses the image.
    images: HashMap<String, Arc<ImageDetails>>,
    /// Postures this node wrote into, by (namespace, name).
    written: BTreeMap<(String, String), Written>,
    last_drift: Option<Instant>,
    /// The node's processes by cgroup as the last drift round found them.
    processes: Arc<observe::ProcessTable>,
    /// Something the reports are built from changed (a container started, stopped, got its
    /// workload or was observed, or the inventory source changed), or a write is still owed:
    /// the next round builds the reports again. Building them every second for a full node
    /// cloned every container's status only to find it unchanged.
    report_pending: bool,
    hash_bytes_counted: u64,
    /// Where runtime events go besides the logs, when a backend is configured.
    outbox: Option<OutboxHandle>,
    /// Drift filed as Kubernetes Events, at most `--events-per-second`.
    event_rate: TokenBucket,
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<()> {
    let metrics = Metrics::new();
    let runtime_answers = Flag::default();
    let heartbeat = Heartbeat::new(STUCK_AFTER);
    let probes = Probes::new({
        let metrics = metrics.clone();
        move || metrics.render()
    })
    .live_when({
        let heartbeat = heartbeat.clone();
        move || {
            (!heartbeat.is_stuck())
                .then_some(())
                .ok_or("the observation loop is stuck")
        }
    })
    .ready_when({
        let runtime_answers = runtime_answers.clone();
        move || {
            runtime_answers
                .is_set()
                .then_some(())
                .ok_or("not ready: the container runtime or the Kubernetes API does not answer yet")
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

    let outbox = match config.backend_url.as_deref().filter(|u| !u.is_empty()) {
        None => None,
        Some(url) => {
            let url = url.parse().map_err(|e| {
                Error::OutboxConfig(format!("--backend-url {url:?} is not a URL: {e}"))
            })?;
            let outbox = OutboxConfig {
                max_bytes: config.buffer_max_bytes,
                max_events: config.buffer_max_events,
                batch_events: config.batch_events,
                batch_interval: Duration::from_millis(config.batch_interval_ms),
                events_per_second: config.events_per_second,
                burst: config.events_burst,
                ..OutboxConfig::new(&config.buffer_dir, url)
            };
            Some(Outbox::spawn(outbox, metrics.clone(), stop_rx.clone())?)
        }
    };

    let client = Client::try_default().await?;
    let pods = reflect(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={}", config.node)),
        "Pod",
    );
    let namespaces = reflect(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
        "Namespace",
    );
    let policies = reflect(
        Api::<ZastavaPolicy>::all(client.clone()),
        watcher::Config::default(),
        "ZastavaPolicy",
    );
    let (source, runtime) = match connect(&config).await {
        Ok((cri, runtime)) => (Source::Cri(cri), runtime),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "the container runtime's CRI socket cannot be reached: the node's containers \
                 are inventoried from the Kubernetes API and /proc (no image configuration); \
                 the socket is tried again every {}s",
                CRI_RETRY.as_secs()
            );
            (
                Source::Api {
                    retry_cri: Instant::now() + CRI_RETRY,
                },
                api_runtime(None),
            )
        }
    };
    let mut stop = stop_rx.clone();
    tokio::select! {
        synced = async {
            pods.wait_until_ready().await.is_ok()
                && namespaces.wait_until_ready().await.is_ok()
                && policies.wait_until_ready().await.is_ok()
        } => if !synced {
            tracing::error!("Kubernetes watches stopped before syncing");
            return finish(server).await;
        },
        _ = stop.wait_for(|s| *s) => return finish(server).await,
    }

    let reporter = Reporter::new(client.clone(), &config.node);
    let mut daemon = Daemon {
        source,
        cri_failures: 0,
        runtime,
        client,
        reporter,
        pods,
        namespaces,
        policies,
        cache: Arc::new(HashCache::default()),
        nets: Arc::new(netns::NetNamespaces::new()),
        sboms: sboms::Sboms::new(
            config.insecure_registries.clone(),
            Duration::from_millis(config.registry_timeout_ms),
            metrics.clone(),
        ),
        metrics,
        tracked: BTreeMap::new(),
        images: HashMap::new(),
        written: BTreeMap::new(),
        last_drift: None,
        processes: Arc::default(),
        report_pending: true,
        hash_bytes_counted: 0,
        outbox,
        event_rate: TokenBucket::new(config.events_per_second, config.events_burst),
        config,
    };
    daemon
        .metrics
        .inventory_fallback
        .set(i64::from(matches!(daemon.source, Source::Api { .. })));
    daemon.load_written().await;
    tracing::info!(
        node = %daemon.config.node,
        runtime = %daemon.runtime.name,
        version = %daemon.runtime.version,
        "observing the node's containers"
    );

    // Below 100 ms the listing alone would keep the runtime busy; no one needs it faster.
    let mut ticks =
        tokio::time::interval(Duration::from_millis(daemon.config.interval_ms.max(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let ready = match daemon.round().await {
            Ok(()) => true,
            Err(e) => {
                daemon.metrics.cri_errors.inc();
                tracing::warn!(error = %e, "cannot list the node's containers");
                false
            }
        };
        runtime_answers.set(ready);
        heartbeat.beat();
    }
    if let Some(outbox) = daemon.outbox.take() {
        // Its last flush; what it cannot send stays on disk for the next start.
        outbox.join().await;
    }
    finish(server).await
}

async fn finish(server: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<()> {
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(cause)) => Err(Error::Io {
            path: PathBuf::from("probe server"),
            cause,
        }),
        Err(e) => {
            tracing::error!(error = %e, "probe server task failed");
            Ok(())
        }
    }
}

/// Connects to the runtime and asks its version.
async fn connect(config: &Config) -> Result<(CriClient, RuntimeVersion)> {
    let cri = CriClient::connect(&config.cri_socket).await?;
    let version = cri.version().await?;
    Ok((cri, version))
}

/// The runtime as the API names it (`containerd` of `containerd://<id>`): no version
/// without the runtime itself.
fn api_runtime(engine: Option<&str>) -> RuntimeVersion {
    RuntimeVersion {
        name: engine.unwrap_or("unknown").to_string(),
        version: "unknown (no CRI socket)".to_string(),
    }
}

/// A reflector store kept in sync in the background.
fn reflect<K>(api: Api<K>, config: watcher::Config, what: &'static str) -> Store<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(stream.for_each(move |event| async move {
        if let Err(e) = event {
            tracing::warn!(error = %e, resource = what, "watch");
        }
    }));
    store
}

impl Daemon {
    /// One round: inventory, samples of new containers, workloads, drift, reports. Only a
    /// failed listing is an error; everything else is logged and retried next round.
    async fn round(&mut self) -> Result<()> {
        self.retry_cri().await;
        let (running, from_api) = match &self.source {
            Source::Cri(cri) => match cri.running_containers().await {
                Ok(running) => {
                    self.cri_failures = 0;
                    (running, BTreeMap::new())
                }
                Err(e) => {
                    self.cri_failures += 1;
                    if self.cri_failures >= CRI_FAILURES_BEFORE_FALLBACK {
                        tracing::warn!(error = %e, "the container runtime stopped answering: inventorying from the Kubernetes API until it is back");
                        self.report_pending = true;
                        self.source = Source::Api {
                            retry_cri: Instant::now() + CRI_RETRY,
                        };
                        self.metrics.inventory_fallback.set(1);
                    }
                    return Err(e);
                }
            },
            Source::Api { .. } => {
                let pods = self.pods.state();
                let listed = fallback::running_containers(pods.iter().map(|p| p.as_ref()));
                let running = listed
                    .iter()
                    .map(|(id, c)| (id.clone(), c.container.clone()))
                    .collect();
                (running, listed)
            }
        };
        let changes = inventory::diff(self.tracked.keys(), &running, &self.config.namespace);
        for id in &changes.stopped {
            self.stopped(id);
        }
        let pids = if from_api.is_empty() || changes.started.is_empty() {
            HashMap::new()
        } else {
            let processes = fallback::scan(&self.config.proc_root);
            fallback::main_pids(changes.started.iter().map(String::as_str), &processes)
        };
        for id in &changes.started {
            let listed = from_api.get(id).map(|c| {
                if self.runtime.name == "unknown" {
                    self.runtime = api_runtime(Some(&c.engine));
                }
                ContainerDetails {
                    pid: pids.get(id).copied(),
                    ..c.details.clone()
                }
            });
            if let Err(e) = self.started(&running[id], listed).await {
                self.metrics.cri_errors.inc();
                tracing::warn!(error = %e, container_id = %id, "cannot inspect a new container; retrying");
            }
        }
        self.images
            .retain(|id, _| self.tracked.values().any(|t| &t.details.image_id == id));
        self.sboms.retain(|digest| {
            self.tracked
                .values()
                .any(|t| t.observed().image_digest.as_deref() == Some(digest))
        });
        self.resolve_workloads().await;
        let drift_due = self
            .last_drift
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(self.config.drift_interval_ms));
        if drift_due {
            let started = Instant::now();
            let cpu = process_cpu_seconds();
            self.last_drift = Some(started);
            self.detect_drift().await;
            self.metrics
                .drift_round_seconds
                .observe(started.elapsed().as_secs_f64());
            if let (Some(before), Some(after)) = (cpu, process_cpu_seconds()) {
                self.metrics
                    .drift_round_cpu_seconds
                    .inc_by((after - before).max(0.0));
            }
        }
        self.report().await;
        self.metrics.containers.set(self.tracked.len() as i64);
        let hashed = self.cache.bytes_hashed();
        self.metrics
            .hash_bytes
            .inc_by(hashed.saturating_sub(self.hash_bytes_counted));
        self.hash_bytes_counted = hashed;
        Ok(())
    }

    fn pod(&self, rc: &RuntimeContainer) -> Option<Arc<Pod>> {
        self.pods
            .get(&ObjectRef::new(&rc.pod).within(&rc.namespace))
            .filter(|p| p.metadata.uid.as_deref() == Some(rc.pod_uid.as_str()))
    }

    async fn image(&mut self, image_id: &str) -> Arc<ImageDetails> {
        if let Some(image) = self.images.get(image_id) {
            return image.clone();
        }
        let Source::Cri(cri) = &self.source else {
            // Without the runtime, only the digest is known.
            return Arc::new(ImageDetails {
                digest: cri::digest_of(image_id),
                ..ImageDetails::default()
            });
        };
        let image = match cri.image_details(image_id).await {
            Ok(image) => Arc::new(image),
            Err(e) => {
                // Without it there is no image creation time (filesystem drift then only
                // sees the writable layer) and no fallback entrypoint; try again next time.
                tracing::warn!(error = %e, image = image_id, "image status");
                return Arc::new(ImageDetails::default());
            }
        };
        self.images.insert(image_id.to_string(), image.clone());
        image
    }

    /// A container started: its details, its image, a sample of its main process, and the
    /// trace of the argv it was started with (the baseline of process drift).
    ///
    /// `listed`: what the API listing said about the container, when the inventory comes
    /// from there.
    async fn started(
        &mut self,
        rc: &RuntimeContainer,
        listed: Option<ContainerDetails>,
    ) -> Result<()> {
        let details = match (&self.source, listed) {
            (_, Some(details)) => details,
            (Source::Cri(cri), None) => cri.container_details(&rc.id).await?,
            (Source::Api { .. }, None) => return Ok(()),
        };
        let Some(pid) = details.pid else {
            return Err(match self.source {
                Source::Cri(_) => Error::Cri {
                    socket: self.config.cri_socket.clone(),
                    method: "ContainerStatus",
                    cause: format!("no pid reported for running container {}", rc.id),
                },
                Source::Api { .. } => Error::Io {
                    path: self.config.proc_root.clone(),
                    cause: std::io::Error::other(format!(
                        "no process in the cgroup of container {} yet",
                        rc.id
                    )),
                },
            });
        };
        let image = self.image(&details.image_id).await;
        let argv = if details.args.is_empty() {
            let pod = self.pod(rc);
            let spec = pod
                .as_ref()
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.containers.iter().find(|c| c.name == rc.container));
            cri::effective_argv(
                &image.entrypoint,
                &image.cmd,
                spec.and_then(|c| c.command.as_deref()),
                spec.and_then(|c| c.args.as_deref()),
            )
        } else {
            details.args.clone()
        };
        // Without the runtime (no image entrypoint) and no command in the pod spec, what the
        // process was started with is the best baseline left.
        let argv = if argv.is_empty() {
            std::fs::read(self.config.proc_root.join(pid.to_string()).join("cmdline"))
                .map(|raw| sample::split_cmdline(&raw))
                .unwrap_or_default()
        } else {
            argv
        };
        let opts = SampleOptions {
            proc_root: self.config.proc_root.clone(),
            limits: self.config.limits(),
            // The trace that matters is of the argv the container was started with (below),
            // not of whatever the process's command line says now.
            entry_trace_depth: None,
            show_args: false,
        };
        let cache = self.cache.clone();
        let max_depth = self.config.max_depth;
        // Off the loop, and waited for at most CONTAINER_TIME_LIMIT: a container whose sample
        // or trace takes longer is tracked without them (both end by their own budgets).
        let work = tokio::task::spawn_blocking(move || {
            let sampled = sample::sample(pid, &opts, &cache);
            let root = opts.proc_root.join(pid.to_string()).join("root");
            (sampled, entrytrace::trace(&root, &argv, None, max_depth))
        });
        let (sampled, trace) = match tokio::time::timeout(CONTAINER_TIME_LIMIT, work).await {
            Ok(done) => done.map_err(|e| Error::Io {
                path: self.config.proc_root.join(pid.to_string()),
                cause: std::io::Error::other(e),
            })?,
            Err(_) => {
                self.metrics
                    .partial_results
                    .with_label_values(&["timeout"])
                    .inc();
                let what = format!("sample and entry trace of pid {pid}");
                tracing::warn!(container_id = %rc.id, pid, limit = ?CONTAINER_TIME_LIMIT, "{what}: not done in time: the container is tracked without them");
                let trace = EntryTrace {
                    truncated: true,
                    warnings: vec![format!("{what}: not done within {CONTAINER_TIME_LIMIT:?}")],
                    ..EntryTrace::default()
                };
                (
                    Err(Error::TimedOut {
                        what,
                        limit: CONTAINER_TIME_LIMIT,
                    }),
                    trace,
                )
            }
        };
        if trace.truncated {
            self.metrics
                .partial_results
                .with_label_values(&["trace"])
                .inc();
        }
        self.count_sample(&sampled);
        if let Err(e) = &sampled {
            tracing::warn!(error = %e, container_id = %rc.id, pid, "cannot sample the container's main process");
        }
        if !trace.warnings.is_empty() {
            tracing::debug!(container_id = %rc.id, warnings = ?trace.warnings, "entry trace");
        }
        self.metrics.entrytrace_depth.observe(trace.depth as f64);
        let mut tracked = Tracked {
            rc: rc.clone(),
            details,
            image,
            pid,
            spec_image: None,
            trace,
            process: None,
            workload: None,
            findings: self.written_findings(rc),
            layer: None,
        };
        if let Ok(s) = &sampled {
            tracked.process = Some(report::process_posture(
                &tracked.observed(),
                s,
                &tracked.trace,
                self.config.status_max_libs,
            ));
        }
        self.runtime_event(EventKind::ContainerStart, &tracked, |e| match &sampled {
            Ok(s) => e.with_sample(s, &tracked.trace),
            Err(_) => e,
        });
        tracing::info!(
            namespace = %rc.namespace, pod = %rc.pod, container = %rc.container,
            container_id = %rc.id, pid, terminals = ?tracked.trace.terminals, "container started"
        );
        self.tracked.insert(rc.id.clone(), tracked);
        self.report_pending = true;
        Ok(())
    }

    /// While the inventory comes from the API, tries the CRI socket again every
    /// [`CRI_RETRY`]; the container ids are the same either way, so tracking goes on.
    async fn retry_cri(&mut self) {
        let Source::Api { retry_cri } = &mut self.source else {
            return;
        };
        if Instant::now() < *retry_cri {
            return;
        }
        *retry_cri = Instant::now() + CRI_RETRY;
        match connect(&self.config).await {
            Ok((cri, runtime)) => {
                tracing::info!(runtime = %runtime.name, version = %runtime.version, "the container runtime's CRI socket answers again: inventorying through it");
                self.report_pending = true;
                self.source = Source::Cri(cri);
                self.runtime = runtime;
                self.cri_failures = 0;
                self.metrics.inventory_fallback.set(0);
            }
            Err(e) => tracing::debug!(error = %e, "CRI socket still unreachable"),
        }
    }

    fn inventory(&self) -> Inventory {
        match self.source {
            Source::Cri(_) => Inventory::Cri,
            Source::Api { .. } => Inventory::KubernetesApi,
        }
    }

    fn count_sample(&self, sampled: &Result<sample::ProcessSample>) {
        let result = match sampled {
            Ok(s) if s.partial => "partial",
            Ok(_) => "ok",
            Err(Error::NoSuchProcess { .. } | Error::ProcessExited { .. }) => "gone",
            Err(Error::TimedOut { .. }) => "timeout",
            Err(_) => "error",
        };
        if matches!(sampled, Ok(s) if s.partial) {
            self.metrics
                .partial_results
                .with_label_values(&["sample"])
                .inc();
        }
        self.metrics
            .proc_maps_samples
            .with_label_values(&[result])
            .inc();
    }

    /// The findings already written for this container (by an earlier run of the observer):
    /// they keep their `firstSeen` and are not filed as Events again.
    fn written_findings(&self, rc: &RuntimeContainer) -> Vec<DriftFinding> {
        self.written
            .values()
            .filter_map(|w| w.last.as_ref())
            .find(|entry| entry.containers.iter().any(|c| c.container_id == rc.id))
            .map(|entry| {
                entry
                    .drift
                    .iter()
                    .filter(|f| f.pod == rc.pod && f.container == rc.container)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn stopped(&mut self, id: &str) {
        if let Some(t) = self.tracked.remove(id) {
            self.report_pending = true;
            self.runtime_event(EventKind::ContainerStop, &t, |e| e);
            tracing::info!(
                namespace = %t.rc.namespace, pod = %t.rc.pod, container = %t.rc.container,
                container_id = %id, "container stopped"
            );
        }
    }

    /// Logs a runtime event (the contract's envelope, one canonical JSON line) and counts it.
    fn runtime_event(
        &self,
        kind: EventKind,
        t: &Tracked,
        fill: impl FnOnce(RuntimeEvent) -> RuntimeEvent,
    ) {
        let event = fill(RuntimeEvent::new(
            kind,
            &report::now(),
            &self.config.node,
            EventRuntime {
                engine: self.runtime.name.clone(),
                version: self.runtime.version.clone(),
            },
            EventWorkload {
                platform: "kubernetes",
                namespace: t.rc.namespace.clone(),
                pod: t.rc.pod.clone(),
                container: t.rc.container.clone(),
                container_id: t.rc.id.clone(),
                image_ref: t.details.image_ref.clone(),
                owner: t.workload.as_ref().map(|w| EventOwner {
                    kind: w.kind.clone(),
                    name: w.name.clone(),
                }),
            },
        ));
        self.metrics
            .runtime_events
            .with_label_values(&[kind.label()])
            .inc();
        let line = event.to_json();
        tracing::info!(runtime_event = %line, kind = kind.label(), "runtime event");
        if let Some(outbox) = &self.outbox {
            outbox.push(line);
        }
    }

    /// Finds the workload of each tracked container that has none yet (its Pod may not be in
    /// the cache yet, or an owner could not be read: tried again next round).
    async fn resolve_workloads(&mut self) {
        let pending: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, t)| t.workload.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        if pending.is_empty() {
            return;
        }
        let mut known: HashMap<String, Workload> = self
            .tracked
            .values()
            .filter_map(|t| Some((t.rc.pod_uid.clone(), t.workload.clone()?)))
            .collect();
        for id in pending {
            let rc = self.tracked[&id].rc.clone();
            let Some(pod) = self.pod(&rc) else { continue };
            let workload = match known.get(&rc.pod_uid) {
                Some(w) => Some(w.clone()),
                None => self.resolve(&pod.metadata).await,
            };
            let spec_image = pod
                .spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == rc.container)
                .and_then(|c| c.image.clone());
            if let (Some(w), Some(t)) = (workload, self.tracked.get_mut(&id)) {
                known.insert(rc.pod_uid.clone(), w.clone());
                t.workload = Some(w);
                t.spec_image = spec_image;
                self.report_pending = true;
            }
        }
    }

    async fn resolve(&self, pod: &ObjectMeta) -> Option<Workload> {
        let mut owners = Vec::new();
        loop {
            match workload::resolve(pod, &owners) {
                Resolution::Workload(w) => return Some(w),
                Resolution::Fetch(owner) => {
                    let (group, version) = owner
                        .api_version
                        .split_once('/')
                        .unwrap_or(("", &owner.api_version));
                    let resource =
                        ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &owner.kind));
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(self.client.clone(), &owner.namespace, &resource);
                    match api.get_metadata(&owner.name).await {
                        Ok(meta) => owners.push(meta.metadata),
                        Err(e) => {
                            tracing::warn!(error = %e, kind = %owner.kind, name = %owner.name, "cannot read a pod's owner; retrying");
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Observes every tracked container and records what drifted from its baseline.
    async fn detect_drift(&mut self) {
        struct Job {
            id: String,
            pid: u32,
            container: ContainerRef,
            kinds: zastava_crds::policy::DriftKinds,
            baseline: Baseline,
            layer: Option<observe::WritableLayer>,
        }
        let policies = self.policies.state();
        let jobs: Vec<Job> = self
            .tracked
            .iter()
            .map(|(id, t)| {
                let labels = self
                    .namespaces
                    .get(&ObjectRef::new(&t.rc.namespace))
                    .and_then(|ns| ns.metadata.labels.clone())
                    .unwrap_or_default();
                let rules = rules::runtime_rules(
                    policies.iter().map(|p| &p.spec),
                    &t.rc.namespace,
                    &labels,
                    &self.config.namespace,
                );
                // Fetched (in the background) only for containers whose rules ask for
                // library drift.
                let observed = t.observed();
                let sbom = match (rules.kinds.library, &observed.image_digest) {
                    (true, Some(digest)) => self.sboms.get(&observed.image_ref, digest),
                    _ => None,
                };
                let container_ports = self
                    .pod(&t.rc)
                    .and_then(|p| p.spec.as_ref().map(rules::container_ports))
                    .unwrap_or_default();
                Job {
                    id: id.clone(),
                    pid: t.pid,
                    container: t.container_ref(),
                    kinds: rules.kinds,
                    layer: t.layer.clone(),
                    baseline: Baseline {
                        terminals: t.trace.terminals.clone(),
                        allowed_programs: Vec::new(),
                        sbom,
                        image_created: t.image.created,
                        container_ports,
                        allowed_listening_ports: rules.allowed_listening_ports,
                    },
                }
            })
            .collect();
        if jobs.is_empty() {
            return;
        }
        let proc_root = self.config.proc_root.clone();
        let host_root = self.config.host_root.clone();
        let cache = self.cache.clone();
        let nets = self.nets.clone();
        nets.begin_round();
        let limits = self.config.limits();
        let sample_opts = SampleOptions {
            proc_root: proc_root.clone(),
            limits,
            entry_trace_depth: None,
            show_args: false,
        };
        let scan = {
            let proc_root = proc_root.clone();
            let previous = self.processes.clone();
            tokio::task::spawn_blocking(move || previous.rescan(&proc_root))
        };
        let table = match tokio::time::timeout(CONTAINER_TIME_LIMIT, scan).await {
            Ok(Ok(Ok(table))) => {
                let table = Arc::new(table);
                self.processes = table.clone();
                table
            }
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, proc_root = %proc_root.display(), "cannot list processes");
                return;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "process listing task failed");
                return;
            }
            Err(_) => {
                tracing::warn!(proc_root = %proc_root.display(), limit = ?CONTAINER_TIME_LIMIT, "listing the node's processes took too long");
                return;
            }
        };
        // One container at a time, each off the loop and waited for at most
        // CONTAINER_TIME_LIMIT: a container whose observation takes longer is skipped this
        // round (and counted), the others are observed.
        let mut detected = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = job.id.clone();
            let (proc_root, host_root, cache, nets, table, sample_opts) = (
                proc_root.clone(),
                host_root.clone(),
                cache.clone(),
                nets.clone(),
                table.clone(),
                sample_opts.clone(),
            );
            let work = tokio::task::spawn_blocking(move || {
                let collect = observe::Collect {
                    proc_root: &proc_root,
                    host_root: &host_root,
                    cache: &cache,
                    nets: &nets,
                    limits,
                };
                let pids = table.members(job.pid);
                let found =
                    observe::observe(&collect, job.pid, &pids, &job.kinds, job.layer.as_ref());
                if !found.warnings.is_empty() {
                    tracing::debug!(container_id = %job.id, warnings = ?found.warnings, "observation");
                }
                let findings =
                    drift::detect(&job.container, &job.kinds, &job.baseline, &found.observed);
                // The main process again, for the status: a shell that has exec'd its
                // program since the container started now shows that program (the hash
                // cache makes this cheap).
                let resampled = match found.samples.into_iter().find(|s| s.pid == job.pid) {
                    Some(s) => Ok(s),
                    None => sample::sample(job.pid, &sample_opts, &cache),
                };
                (job.id, findings, resampled, found.partial, found.layer)
            });
            match tokio::time::timeout(CONTAINER_TIME_LIMIT, work).await {
                Ok(Ok((id, findings, resampled, partial, layer))) => {
                    if partial {
                        self.metrics
                            .partial_results
                            .with_label_values(&["observation"])
                            .inc();
                    }
                    detected.push((id, findings, resampled, layer));
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, container_id = %id, "drift observation task failed");
                }
                Err(_) => {
                    self.metrics
                        .partial_results
                        .with_label_values(&["timeout"])
                        .inc();
                    tracing::warn!(container_id = %id, limit = ?CONTAINER_TIME_LIMIT, "observing the container took too long: skipped this round");
                }
            }
        }

        let now = report::now();
        for (id, findings, resampled, layer) in detected {
            self.count_sample(&resampled);
            let Some(t) = self.tracked.get_mut(&id) else {
                continue;
            };
            self.report_pending = true;
            if layer.is_some() {
                t.layer = layer;
            }
            if let Ok(s) = &resampled {
                t.process = Some(report::process_posture(
                    &t.observed(),
                    s,
                    &t.trace,
                    self.config.status_max_libs,
                ));
            }
            let merged = report::merge_findings(&t.findings, findings, &now);
            t.findings = merged.findings;
            let namespace = t.rc.namespace.clone();
            let pod_uid = t.rc.pod_uid.clone();
            for finding in &merged.new {
                tracing::warn!(
                    namespace = %namespace, pod = %finding.pod, container = %finding.container,
                    subject = %finding.subject, kind = ?finding.kind, "drift"
                );
                let t = &self.tracked[&id];
                let digest = t.observed().image_digest;
                self.runtime_event(EventKind::Drift, t, |e| {
                    e.with_drift(digest, std::slice::from_ref(finding))
                });
                if !self.event_rate.try_take(Instant::now()) {
                    // Still in the status and the runtime events; counted.
                    self.metrics
                        .api_writes
                        .with_label_values(&["event", "rate_limited"])
                        .inc();
                    continue;
                }
                let filed = self
                    .reporter
                    .drift_event(&namespace, &pod_uid, finding)
                    .await;
                self.metrics.api_write("event", &filed);
                if let Err(e) = filed {
                    tracing::warn!(error = %e, pod = %finding.pod, "cannot file the drift Event");
                }
            }
        }
    }

    /// Reads what an earlier run of this node wrote, so entries of workloads that are gone
    /// now get removed.
    async fn load_written(&mut self) {
        match self.reporter.written_before().await {
            Ok(entries) => {
                for (namespace, name, entry) in entries {
                    self.written.insert(
                        (namespace, name),
                        Written {
                            last: Some(entry),
                            exists: true,
                            ..Written::default()
                        },
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list RuntimePostures; stale entries of this node stay")
            }
        }
    }

    /// Writes this node's entry of every posture whose entry changed.
    async fn report(&mut self) {
        if !self.report_pending {
            return;
        }
        // Cleared only when every posture is as it should be: a write not yet due or failed
        // keeps it set, so the next round tries again.
        let mut settled = true;
        let inventory = self.inventory();
        let mut current: BTreeMap<(String, String), (Workload, Vec<ContainerReport>)> =
            BTreeMap::new();
        for t in self.tracked.values() {
            let Some(w) = &t.workload else { continue };
            current
                .entry((w.namespace.clone(), w.posture_name()))
                .or_insert_with(|| (w.clone(), Vec::new()))
                .1
                .push(ContainerReport {
                    observed: t.observed(),
                    drift: t.findings.clone(),
                    process: t.process.clone(),
                });
        }
        let mut keys: Vec<(String, String)> = current.keys().cloned().collect();
        keys.extend(
            self.written
                .keys()
                .filter(|k| !current.contains_key(*k))
                .cloned(),
        );
        for key in keys {
            let next = current.get(&key).map(|(w, reports)| {
                (
                    w,
                    report::node_observation(&self.config.node, inventory, reports),
                )
            });
            let written = self.written.entry(key.clone()).or_default();
            if !written.due() {
                settled = false;
                continue;
            }
            let (namespace, name) = &key;
            match next {
                Some((workload, observation)) => {
                    if !report::changed(written.last.as_ref(), &observation) {
                        continue;
                    }
                    if !written.exists {
                        let created = self.reporter.ensure_posture(workload).await;
                        self.metrics.api_write("posture", &created);
                        if let Err(e) = created {
                            settled = false;
                            written.tried(false);
                            tracing::warn!(error = %e, namespace, name, "cannot create the RuntimePosture");
                            continue;
                        }
                        written.exists = true;
                    }
                    let result = self
                        .reporter
                        .write_status(namespace, name, &observation)
                        .await;
                    self.metrics.api_write("status", &result);
                    written.tried(result.is_ok());
                    settled &= result.is_ok();
                    match result {
                        Ok(()) => written.last = Some(observation),
                        Err(e) => {
                            if is_not_found(&e) {
                                // Deleted meanwhile: create it again next round.
                                written.exists = false;
                            }
                            tracing::warn!(error = %e, namespace, name, "cannot write the RuntimePosture status");
                        }
                    }
                }
                None => {
                    let result = self.reporter.remove_status(namespace, name).await;
                    self.metrics.api_write("status", &result);
                    written.tried(result.is_ok());
                    settled &= result.is_ok();
                    match result {
                        Ok(()) => {
                            self.written.remove(&key);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, namespace, name, "cannot remove this node's entry");
                        }
                    }
                }
            }
        }
        self.report_pending = !settled;
    }
}

/// User and system CPU time of this process so far (`/proc/self/stat`), or `None` when it
/// cannot be read (the drift round's CPU metric is then left alone).
fn process_cpu_seconds() -> Option<f64> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.is_not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_back_off_while_they_fail() {
        let mut w = Written::default();
        assert!(w.due(), "never written");
        w.tried(true);
        assert!(!w.due(), "at most once per second");
        w.at = Some(Instant::now() - MIN_WRITE_INTERVAL);
        assert!(w.due());
        for _ in 0..3 {
            w.tried(false);
        }
        w.at = Some(Instant::now() - MIN_WRITE_INTERVAL * 7);
        assert!(!w.due(), "8 s after three failures");
        w.at = Some(Instant::now() - MIN_WRITE_INTERVAL * 8);
        assert!(w.due());
        for _ in 0..20 {
            w.tried(false);
        }
        w.at = Some(Instant::now() - MIN_WRITE_INTERVAL * 64);
        assert!(w.due(), "capped at about a minute");
        w.tried(true);
        assert_eq!(w.failures, 0);
    }
}
