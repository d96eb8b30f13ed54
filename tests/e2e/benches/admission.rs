//! `make bench-admission` (tests/e2e/bench-admission.sh): admission as the apiserver sees it.
//!
//! Zastava installed from `charts/zastava` (two webhook replicas behind the Service, the images
//! `images/make.sh` built), one namespace held to an Enforce policy that requires a signature
//! and an SBOM, and N concurrent clients creating Pods of Zastava's own signed image through
//! the real apiserver, N = 10, 100, 500, each creating back to back (a closed loop, which
//! saturates these two cores from 10 creators on). Then 100 creators paced together at 100,
//! 200 and 400 creates a second, each create timed from when it was due: what a create costs
//! on an apiserver with cores to spare, the condition peers publish their figures under. The
//! Pods are created with `dryRun=All`: admission runs in full, nothing is stored, so neither
//! etcd nor the node is the limit. Two more runs create real Pods (stored; a node selector no
//! node has keeps them Pending, so the kubelet does not start 1 000 containers).
//! BENCH_RUNS picks groups of runs (`closed,paced,real,single`), BENCH_SECONDS their length.
//!
//! Every run is made twice, with Zastava's ValidatingWebhookConfiguration and without it,
//! alternating which goes first. The operator is scaled to 0 for the measurement so that it
//! does not put the configuration back; the webhook replicas keep serving (they read the
//! policies themselves). Printed, per run:
//! - end-to-end create latency p50/p95/p99 with and without Zastava, the ratio and the
//!   difference (what Zastava costs a user);
//! - the apiserver's own `apiserver_admission_webhook_admission_duration_seconds` for
//!   Zastava's webhooks, from its `/metrics` before and after. Kubernetes 1.20 has buckets at
//!   5, 25, 100, 500 ms and 2.5 s: the share of calls under 5 ms is exact, the quantiles are
//!   interpolated inside their bucket as Prometheus' `histogram_quantile` does;
//! - admissions per second per webhook replica (each replica's
//!   `zastava_admission_decisions_total`) and webhook CPU per 1 000 admissions (the replicas'
//!   processes, read from the node's /proc);
//! - TLS handshakes per admission (`zastava_webhook_tls_handshakes_total`): the apiserver
//!   keeps 25 idle connections to a webhook, so past ~25 reviews in flight it opens new ones,
//!   each a handshake it signs with its client key;
//! - the CPU each create costs the apiserver, etcd, the webhook, this client and the whole
//!   machine, with and without Zastava: where a webhook's cost goes.
//!
//! Nothing is asserted here: the figures are what the README compares with peers'. The clients,
//! the apiserver, etcd and the webhook share this machine's cores; the load average is printed
//! with each run.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use zastava_e2e::histogram::{self, Buckets};
use zastava_e2e::install::{
    admit, helm, image, image_signing_key, install, pods_gone, remove_leftover_release,
    wait_all_ready, webhook_configured, Admission, NAMESPACE, RELEASE, WEBHOOK_CONFIG,
};
use zastava_e2e::webhook::strict_policy;
use zastava_e2e::{
    apply_policy, client, create_namespace, env, unique, wait_for, wait_ready, FIELD_MANAGER,
};

const CHART: &str = "charts/zastava";
/// The names of Zastava's webhooks in the configuration all end with this.
const WEBHOOK_NAME_SUFFIX: &str = ".zastava.stellaops.io";
const DURATION_METRIC: &str = "apiserver_admission_webhook_admission_duration_seconds";
const CREATORS: [usize; 3] = [10, 100, 500];
/// Paced runs: this many creators, each sending on a fixed schedule, together at these rates
/// (dry-run creates per second). A closed loop saturates this 2-core machine from 10 creators
/// on, with or without a webhook, and then measures the queue for the cores; at a rate the
/// machine carries, what a create takes is what a user of a cluster with cores to spare sees.
const PACED_CREATORS: usize = 100;
const PACED_RATES: [u32; 3] = [100, 200, 400];
/// Creates each paced measurement makes at least (it runs longer than BENCH_SECONDS at low
/// rates): its p99 is then the 60th slowest, not the 20th.
const PACED_CREATES: u32 = 6_000;
/// Real (stored) Pods: (creators, Pods each). 100 x 10 is the first row of Kyverno's published
/// scale test (100 virtual users, 1 000 iterations, real creates).
const REAL_RUNS: [(usize, usize); 2] = [(10, 20), (100, 10)];

/// Seconds each dry-run measurement lasts (BENCH_SECONDS, default 20); a warm-up of a
/// quarter of it, not counted, goes before each.
fn run_length() -> Duration {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20u64);
    Duration::from_secs(seconds.max(4))
}

/// Which groups of runs to make (BENCH_RUNS, a comma-separated subset of
/// `closed,paced,real,single`; default all of them).
fn selected(group: &str) -> bool {
    std::env::var("BENCH_RUNS").map_or(true, |runs| runs.split(',').any(|r| r.trim() == group))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let client = client().await;
    remove_leftover_release(&client).await;
    let signed = image("webhook");
    let unsigned = env("ZASTAVA_TEST_IMAGE");
    let ns = unique("bench-admission");
    let policy = unique("bench-admission");
    let key_secret = unique("bench-admission-key");
    let _cleanup = Cleanup {
        ns: ns.clone(),
        policy: policy.clone(),
    };
    create_namespace(&client, &ns, json!({})).await;

    println!("installing {CHART} (2 webhook replicas) ...");
    install(CHART, json!({}));
    wait_all_ready(&client, Duration::from_secs(300)).await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let key: Secret = serde_json::from_value(json!({
        "metadata": {"name": key_secret},
        "stringData": {"cosign.pub": image_signing_key()},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &key).await.unwrap();
    let mut spec = strict_policy(&ns, &[], "Enforce");
    spec["verify"]["signature"]["keys"] =
        json!([{"name": "release", "secretRef": {"name": key_secret}}]);
    apply_policy(&client, &policy, spec).await;
    wait_ready(&client, &policy, "True").await;
    let configuration = webhook_configured(&client).await;
    enforcing(&client, &ns, &signed, &unsigned, true).await;

    // The operator owns the configuration and would put it back; it is not on the admission
    // path, so it sits the measurement out.
    scale(&client, "operator", 0).await;
    let toggle = Toggle {
        client: client.clone(),
        configuration,
        ns: ns.clone(),
        signed: signed.clone(),
        unsigned,
    };

    let run = run_length();
    println!(
        "dry-run creates of {signed} in {ns}; {} s per run after a {} s warm-up; the \
         apiserver's webhook client key: {}",
        run.as_secs(),
        run.as_secs() / 4,
        std::env::var("ZASTAVA_WEBHOOK_CLIENT_KEY").unwrap_or_else(|_| "?".into())
    );
    let mut rows = Vec::new();
    let closed: &[usize] = if selected("closed") { &CREATORS } else { &[] };
    for (i, &n) in closed.iter().enumerate() {
        let mut pair = BTreeMap::new();
        for with_zastava in alternating(i) {
            toggle.set(with_zastava).await;
            pair.insert(with_zastava, dry_run(&client, &ns, &signed, n, run).await);
        }
        rows.push((format!("dry-run, {n} creators"), pair));
    }

    let paced: &[u32] = if selected("paced") { &PACED_RATES } else { &[] };
    for (i, &rate) in paced.iter().enumerate() {
        let run = run.max(Duration::from_secs(u64::from(PACED_CREATES / rate)));
        let mut pair = BTreeMap::new();
        // Continues the closed runs' alternation.
        for with_zastava in alternating(closed.len() + i) {
            toggle.set(with_zastava).await;
            let warm_up = Load::Paced {
                duration: run / 4,
                rate,
            };
            measure(&client, &ns, &signed, PACED_CREATORS, &warm_up).await;
            let load = Load::Paced {
                duration: run,
                rate,
            };
            pair.insert(
                with_zastava,
                measure(&client, &ns, &signed, PACED_CREATORS, &load).await,
            );
        }
        rows.push((
            format!("dry-run, {PACED_CREATORS} creators paced at {rate}/s"),
            pair,
        ));
    }

    let real: &[(usize, usize)] = if selected("real") { &REAL_RUNS } else { &[] };
    for &(creators, each) in real {
        let mut pair = BTreeMap::new();
        for with_zastava in [true, false] {
            toggle.set(with_zastava).await;
            let load = Load::Real { each };
            pair.insert(
                with_zastava,
                measure(&client, &ns, &signed, creators, &load).await,
            );
            delete_pods(&client, &ns).await;
        }
        rows.push((format!("real Pods, {creators} creators x {each}"), pair));
    }
    // One replica alone: what a replica sustains when the apiserver sends it every review.
    toggle.set(true).await;
    let single: &[usize] = if selected("single") { &[10, 100] } else { &[] };
    if !single.is_empty() {
        scale(&client, "webhook", 1).await;
    }
    for &n in single {
        let figures = dry_run(&client, &ns, &signed, n, run).await;
        rows.push((
            format!("dry-run, {n} creators, 1 webhook replica"),
            BTreeMap::from([(true, figures)]),
        ));
    }
    scale(&client, "operator", 2).await;
    report(&rows);
}

/// The order of the i-th pair of runs, without and with Zastava: alternating, so neither always
/// runs on a machine the other warmed up.
fn alternating(i: usize) -> [bool; 2] {
    if i.is_multiple_of(2) {
        [false, true]
    } else {
        [true, false]
    }
}

/// When the bench ends, finished or not: the release uninstalled (no webhook configuration is
/// left to refuse the next pods), the namespace and policy deleted.
struct Cleanup {
    ns: String,
    policy: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", RELEASE, "-n", NAMESPACE, "--wait"]);
        // The release's own configuration is gone with it; one this bench put back while the
        // operator was scaled down is not Helm's and goes here.
        let _ = Command::new("kubectl")
            .args(["delete", "--ignore-not-found", "--wait=false"])
            .arg(format!("validatingwebhookconfiguration/{WEBHOOK_CONFIG}"))
            .arg(format!("zastavapolicy/{}", self.policy))
            .arg(format!("namespace/{}", self.ns))
            .output();
    }
}

/// Scales Zastava's `component` Deployment and waits until exactly `replicas` of its Pods are
/// left (the others gone, not terminating).
async fn scale(client: &Client, component: &str, replicas: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    deployments
        .patch(
            &format!("zastava-{component}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap_or_else(|e| panic!("scaling the {component}: {e}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let selector =
        ListParams::default().labels(&format!("app.kubernetes.io/name=zastava-{component}"));
    wait_for(
        &format!("{replicas} {component} pods"),
        Duration::from_secs(120),
        || async {
            let list = pods.list(&selector).await.ok()?;
            (list.items.len() == replicas as usize).then_some(())
        },
    )
    .await;
}

/// Waits until admission in `ns` denies `unsigned` (Zastava's configuration in place) or
/// allows it (no configuration), `signed` being allowed either way.
async fn enforcing(client: &Client, ns: &str, signed: &str, unsigned: &str, on: bool) {
    let what = if on {
        "the apiserver to call Zastava (the unsigned image denied)"
    } else {
        "the apiserver to stop calling Zastava (the unsigned image allowed)"
    };
    wait_for(what, Duration::from_secs(90), || async {
        let denied = matches!(admit(client, ns, unsigned).await, Admission::Denied(_));
        (denied == on && admit(client, ns, signed).await == Admission::Allowed).then_some(())
    })
    .await;
}

/// Puts Zastava's webhook configuration in place or removes it.
struct Toggle {
    client: Client,
    configuration: ValidatingWebhookConfiguration,
    ns: String,
    signed: String,
    unsigned: String,
}

impl Toggle {
    async fn set(&self, with_zastava: bool) {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let present = api.get_opt(WEBHOOK_CONFIG).await.unwrap().is_some();
        if with_zastava && !present {
            let mut copy = self.configuration.clone();
            copy.metadata = kube::api::ObjectMeta {
                name: copy.metadata.name.clone(),
                labels: copy.metadata.labels.clone(),
                ..Default::default()
            };
            api.create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &copy,
            )
            .await
            .expect("putting the webhook configuration back");
        } else if !with_zastava && present {
            api.delete(WEBHOOK_CONFIG, &DeleteParams::default())
                .await
                .expect("removing the webhook configuration");
        }
        enforcing(
            &self.client,
            &self.ns,
            &self.signed,
            &self.unsigned,
            with_zastava,
        )
        .await;
    }
}

enum Load {
    /// Each creator makes dry-run creates back to back for this long.
    DryRun { duration: Duration },
    /// Each creator makes this many real creates.
    Real { each: usize },
    /// The creators together make `rate` dry-run creates a second for this long, each on its
    /// own fixed schedule (offset from the others'). A create is timed from when it was due,
    /// so one that waits for the creator's previous create counts its wait too.
    Paced { duration: Duration, rate: u32 },
}

/// What one run measured.
struct Figures {
    latencies: Vec<Duration>,
    /// Creates that did not succeed: how many, and the first error.
    failed: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// Cumulative bucket counts of the apiserver's webhook admission duration for Zastava's
    /// webhooks, over the run: (upper bound in seconds, count).
    apiserver_buckets: Buckets,
    /// Decisions each webhook replica made over the run.
    decisions_per_replica: Vec<f64>,
    /// Requests the replicas turned away over the run (zastava_admission_rejected_total).
    rejected: f64,
    /// TLS handshakes the replicas completed over the run
    /// (zastava_webhook_tls_handshakes_total): new connections from the apiserver.
    handshakes: f64,
    /// CPU seconds used over the run: by the processes of `MEASURED_PROCESSES`, this
    /// process (`client`) and the whole machine (`machine`).
    cpu: BTreeMap<&'static str, f64>,
    load_average: String,
}

/// `creators` making dry-run creates for `run`, after a warm-up of a quarter of it that is not
/// counted (connections opened, the webhook's cache and the apiserver's clients warm).
async fn dry_run(
    client: &Client,
    ns: &str,
    image: &str,
    creators: usize,
    run: Duration,
) -> Figures {
    let warm_up = Load::DryRun { duration: run / 4 };
    measure(client, ns, image, creators, &warm_up).await;
    measure(client, ns, image, creators, &Load::DryRun { duration: run }).await
}

async fn measure(client: &Client, ns: &str, image: &str, creators: usize, load: &Load) -> Figures {
    let apiserver_before = apiserver_buckets();
    let replicas_before = replica_metrics(client).await;
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let deadline = match load {
        Load::DryRun { duration } | Load::Paced { duration, .. } => Some(start + *duration),
        Load::Real { .. } => None,
    };
    let (dry_run, count) = match load {
        Load::DryRun { .. } | Load::Paced { .. } => (true, usize::MAX),
        Load::Real { each } => (false, *each),
    };
    // Paced: each creator's period, and its first create's offset from the others'.
    let schedule = |i: usize| match load {
        Load::Paced { rate, .. } => {
            let period = Duration::from_secs_f64(creators as f64 / f64::from(*rate));
            Some((period, period.mul_f64(i as f64 / creators as f64)))
        }
        _ => None,
    };
    let tasks: Vec<_> = (0..creators)
        .map(|i| {
            let schedule = schedule(i);
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let pod = bench_pod(image);
            tokio::spawn(async move {
                let params = PostParams {
                    dry_run,
                    ..Default::default()
                };
                let mut latencies = Vec::new();
                let mut failed = 0;
                let mut first_error = None;
                for k in 0..count {
                    let sent = match schedule {
                        Some((period, offset)) => {
                            let due = start + offset + period.mul_f64(k as f64);
                            tokio::time::sleep_until(due.into()).await;
                            due
                        }
                        None => Instant::now(),
                    };
                    if deadline.is_some_and(|d| sent >= d) {
                        break;
                    }
                    match pods.create(&params, &pod).await {
                        Ok(_) => latencies.push(sent.elapsed()),
                        Err(e) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (latencies, failed, first_error)
            })
        })
        .collect();
    let mut figures = Figures {
        latencies: Vec::new(),
        failed: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        apiserver_buckets: Vec::new(),
        decisions_per_replica: Vec::new(),
        rejected: 0.0,
        handshakes: 0.0,
        cpu: BTreeMap::new(),
        load_average: String::new(),
    };
    for task in tasks {
        let (latencies, failed, first_error) = task.await.expect("a creator panicked");
        figures.latencies.extend(latencies);
        figures.failed += failed;
        if figures.first_error.is_none() {
            figures.first_error = first_error;
        }
    }
    figures.elapsed = start.elapsed();
    figures.cpu = cpu_seconds()
        .into_iter()
        .map(|(name, after)| (name, after - cpu_before.get(name).copied().unwrap_or(0.0)))
        .collect();
    figures.apiserver_buckets = histogram::subtract(&apiserver_buckets(), &apiserver_before);
    let replicas_after = replica_metrics(client).await;
    for (pod, after) in &replicas_after {
        let before = replicas_before.get(pod).copied().unwrap_or_default();
        figures
            .decisions_per_replica
            .push(after.decisions - before.decisions);
        figures.rejected += after.rejected - before.rejected;
        figures.handshakes += after.handshakes - before.handshakes;
    }
    figures.latencies.sort();
    figures.load_average = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string();
    figures
}

/// A Pod of `image` that no node will run (its node selector matches none): a real create
/// stores it, and it stays Pending until the run's Pods are deleted.
fn bench_pod(image: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"generateName": "bench-", "labels": {"zastava-bench": "admission"}},
        "spec": {
            "nodeSelector": {"zastava.stellaops.io/bench": "nowhere"},
            "containers": [{"name": "app", "image": image}],
        },
    }))
    .unwrap()
}

async fn delete_pods(client: &Client, ns: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels("zastava-bench=admission");
    pods.delete_collection(&DeleteParams::default(), &selector)
        .await
        .expect("deleting the bench's Pods");
    pods_gone(client, ns, &selector, "the bench's Pods").await;
}

/// The apiserver's duration buckets for Zastava's webhooks so far, summed over their series
/// (webhook, operation, rejected).
fn apiserver_buckets() -> Buckets {
    let output = Command::new("kubectl")
        .args(["get", "--raw", "/metrics"])
        .output()
        .expect("running kubectl");
    assert!(
        output.status.success(),
        "kubectl get --raw /metrics: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    histogram::buckets(
        &String::from_utf8_lossy(&output.stdout),
        DURATION_METRIC,
        |labels| histogram::label(labels, "name").is_some_and(|n| n.ends_with(WEBHOOK_NAME_SUFFIX)),
    )
}

/// A webhook replica's counters so far, from its /metrics.
#[derive(Clone, Copy, Default)]
struct ReplicaCounters {
    decisions: f64,
    rejected: f64,
    handshakes: f64,
}

async fn replica_metrics(client: &Client) -> BTreeMap<String, ReplicaCounters> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=zastava-webhook"))
        .await
        .expect("listing the webhook pods");
    let mut figures = BTreeMap::new();
    for pod in list.items {
        let (Some(name), Some(ip)) = (pod.metadata.name.clone(), pod.status.and_then(|s| s.pod_ip))
        else {
            continue;
        };
        let Some((200, text)) = zastava_e2e::http_get(&format!("http://{ip}:8080/metrics")).await
        else {
            panic!("the metrics of webhook pod {name} ({ip}:8080) did not answer");
        };
        figures.insert(
            name,
            ReplicaCounters {
                decisions: histogram::sum_series(&text, "zastava_admission_decisions_total"),
                rejected: histogram::sum_series(&text, "zastava_admission_rejected_total"),
                handshakes: histogram::sum_series(&text, "zastava_webhook_tls_handshakes_total"),
            },
        );
    }
    figures
}

/// The processes whose CPU a run reports, by their command name (`/proc/<pid>/comm`).
const MEASURED_PROCESSES: [&str; 3] = ["kube-apiserver", "etcd", "zastava-webhook"];

/// CPU seconds used so far by every process of `MEASURED_PROCESSES` (summed per name), by
/// this process (`client`) and by the machine (`machine`: every core's busy time).
fn cpu_seconds() -> BTreeMap<&'static str, f64> {
    // USER_HZ on Linux.
    const TICKS: f64 = 100.0;
    // utime + stime of a /proc/<pid>/stat: the 12th and 13th fields after the command.
    let process_ticks = |stat: &str| -> Option<(String, f64)> {
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_string();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some((comm, ticks))
    };
    let mut seconds: BTreeMap<&'static str, f64> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // gone since the listing
        };
        if let Some((comm, ticks)) = process_ticks(&stat) {
            if let Some(name) = MEASURED_PROCESSES.iter().find(|n| **n == comm) {
                *seconds.entry(name).or_default() += ticks / TICKS;
            }
        }
    }
    if let Some((_, ticks)) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(process_ticks)
    {
        seconds.insert("client", ticks / TICKS);
    }
    // The first line of /proc/stat: user nice system idle iowait irq softirq steal ...
    let machine: f64 = std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum();
    seconds.insert("machine", machine / TICKS);
    seconds
}

fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Some(sorted[index])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
}

fn seconds_as_ms(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{:.1}", s * 1000.0))
}

fn report(rows: &[(String, BTreeMap<bool, Figures>)]) {
    println!();
    println!("## End-to-end create latency (ms), with and without Zastava's webhook configuration");
    println!(
        "| run | creates/s without | mean / p50 / p95 / p99 / max without | creates/s with | mean / p50 / p95 / p99 / max with | p99 ratio | p99 added | failed (without / with) | load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, pair) in rows {
        let (Some(without), Some(with)) = (pair.get(&false), pair.get(&true)) else {
            continue;
        };
        let rate = |f: &Figures| f.latencies.len() as f64 / f.elapsed.as_secs_f64();
        // The mean and the maximum too: Kyverno publishes those.
        let triple = |f: &Figures| {
            let mean = (!f.latencies.is_empty())
                .then(|| f.latencies.iter().sum::<Duration>() / f.latencies.len() as u32);
            format!(
                "{} / {} / {} / {} / {}",
                ms(mean),
                ms(percentile(&f.latencies, 0.5)),
                ms(percentile(&f.latencies, 0.95)),
                ms(percentile(&f.latencies, 0.99)),
                ms(f.latencies.last().copied())
            )
        };
        let p99 = |f: &Figures| percentile(&f.latencies, 0.99).map(|d| d.as_secs_f64() * 1000.0);
        let (ratio, added) = match (p99(without), p99(with)) {
            (Some(a), Some(b)) if a > 0.0 => (format!("{:.2}", b / a), format!("{:.1}", b - a)),
            _ => ("-".into(), "-".into()),
        };
        println!(
            "| {name} | {:.0} | {} | {:.0} | {} | {ratio} | {added} | {} / {} | {} / {} |",
            rate(without),
            triple(without),
            rate(with),
            triple(with),
            without.failed,
            with.failed,
            without.load_average,
            with.load_average,
        );
    }
    println!();
    println!("## With Zastava: the apiserver's webhook admission duration, the webhook replicas");
    println!(
        "| run | webhook calls | under 5 ms | p50 / p95 / p99 (ms, interpolated) | admissions/s per replica | rejected by the webhook | TLS handshakes per admission | webhook CPU per 1000 admissions |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, pair) in rows {
        let Some(with) = pair.get(&true) else {
            continue;
        };
        let buckets = &with.apiserver_buckets;
        let calls = buckets.last().map_or(0.0, |b| b.1);
        let under = histogram::share_under(buckets, 0.005)
            .map_or("-".into(), |s| format!("{:.2} %", s * 100.0));
        let per_replica: Vec<String> = with
            .decisions_per_replica
            .iter()
            .map(|d| format!("{:.0}", d / with.elapsed.as_secs_f64()))
            .collect();
        let decisions: f64 = with.decisions_per_replica.iter().sum();
        let webhook_cpu = with.cpu.get("zastava-webhook").copied().unwrap_or(0.0);
        let (cpu, handshakes) = if decisions > 0.0 {
            (
                format!("{:.2} s", webhook_cpu / decisions * 1000.0),
                format!("{:.2}", with.handshakes / decisions),
            )
        } else {
            ("-".into(), "-".into())
        };
        println!(
            "| {name} | {calls:.0} | {under} | {} / {} / {} | {} | {:.0} | {handshakes} | {cpu} |",
            seconds_as_ms(histogram::quantile(buckets, 0.5)),
            seconds_as_ms(histogram::quantile(buckets, 0.95)),
            seconds_as_ms(histogram::quantile(buckets, 0.99)),
            per_replica.join(" + "),
            with.rejected,
        );
    }
    println!();
    println!("## CPU per create (ms of one core), without / with Zastava");
    println!("| run | kube-apiserver | etcd | zastava-webhook | client | machine |");
    println!("|---|---|---|---|---|---|");
    for (name, pair) in rows {
        let (Some(without), Some(with)) = (pair.get(&false), pair.get(&true)) else {
            continue;
        };
        let per_create = |f: &Figures, process: &str| {
            let creates = f.latencies.len().max(1) as f64;
            f.cpu.get(process).copied().unwrap_or(0.0) / creates * 1000.0
        };
        let cells: Vec<String> = [
            "kube-apiserver",
            "etcd",
            "zastava-webhook",
            "client",
            "machine",
        ]
        .iter()
        .map(|p| format!("{:.2} / {:.2}", per_create(without, p), per_create(with, p)))
        .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    for (name, pair) in rows {
        for (with_zastava, figures) in pair {
            if let Some(error) = &figures.first_error {
                println!(
                    "{name}, {}: {} failed, the first: {error}",
                    if *with_zastava { "with" } else { "without" },
                    figures.failed
                );
            }
        }
    }
}
