//! `make bench-webhook`: the admission path measured against a ceiling in the same run.
//!
//! - warm: `POST /validate` over TLS keep-alive at concurrency 64 with a real AdmissionReview
//!   of a signed image with an SBOM, every verdict in the cache, decisions logged as JSON;
//!   beside it, in alternating rounds, the same transport (hyper + rustls) answering a fixed
//!   AdmissionReview response: the ceiling. Prints decisions/s, client-side p50/p99 for both
//!   and the ratio, plus the server-side decision time (p50/p99 of `App::handle`, no
//!   transport).
//! - cold: the same review with the caches emptied before each request, so every decision
//!   resolves the tag, fetches the signature and lists the referrers in the real registry.
//! - cold, 20 ms away: the same through a TCP proxy in this process that delays every byte by
//!   10 ms each way (and the first bytes of a new connection by one more round trip, its
//!   handshake): a registry 20 ms away. The cold latency over 20 ms is the number of round
//!   trips one after another that a cold decision needs.
//!
//! Needs the local registry and an image signed and given an SBOM there
//! (tests/e2e/bench-webhook.sh prepares both and passes them in the environment).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use zastava_crds::ZastavaPolicy;
use zastava_webhook::decision_log::{DecisionLog, Discard};
use zastava_webhook::metrics::Metrics;
use zastava_webhook::policies::PolicySet;
use zastava_webhook::server::{admission_router, App, MAX_BODY_BYTES};
use zastava_webhook::tls::{certified_key, CertStore};
use zastava_webhook::transport::{serve_tls, Limits};
use zastava_webhook::ServeConfig;

/// The webhook binary's allocator (webhook/src/main.rs); the ceiling runs in this process too,
/// so both servers get it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONCURRENCY: usize = 64;
/// Per server; rounds of 10 000 requests (a round of a few thousand lasts ~0.1 s, short enough
/// for one scheduler hiccup on the shared machine to move the ratio by 0.05).
const WARM_REQUESTS: usize = 100_000;
const ROUNDS: usize = 10;
const COLD_REQUESTS: usize = 200;
/// The round trip the delaying proxy adds, and the cold decisions made through it.
const INJECTED_RTT: Duration = Duration::from_millis(20);
const DELAYED_REQUESTS: usize = 50;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the benchmark through `make bench-webhook`")
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Several rounds of one server: throughput per round, latencies pooled.
#[derive(Default)]
struct Run {
    per_second: Vec<f64>,
    latencies: Vec<Duration>,
}

impl Run {
    fn add(&mut self, (per_second, latencies): (f64, Vec<Duration>)) {
        self.per_second.push(per_second);
        self.latencies.extend(latencies);
    }

    fn median_per_second(&self) -> f64 {
        median(self.per_second.clone())
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort();
        percentile(&self.latencies, p)
    }
}

/// `total` POSTs of `body` to `url` from `CONCURRENCY` keep-alive connections: throughput and
/// every latency.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    total: usize,
) -> (f64, Vec<Duration>) {
    let body = bytes::Bytes::copy_from_slice(body);
    let started = Instant::now();
    let workers = (0..CONCURRENCY).map(|_| {
        let (client, url, body) = (client.clone(), url.to_string(), body.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total / CONCURRENCY + 1);
            for _ in 0..total / CONCURRENCY {
                let t = Instant::now();
                let response = client.post(&url).body(body.clone()).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let answer = response.bytes().await.unwrap();
                latencies.push(t.elapsed());
                assert!(answer.starts_with(b"{"));
            }
            latencies
        })
    });
    let latencies: Vec<Duration> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    let elapsed = started.elapsed();
    (latencies.len() as f64 / elapsed.as_secs_f64(), latencies)
}

async fn serve(certs: Arc<CertStore>, router: Router) -> (String, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/validate",
        listener.local_addr().unwrap().port()
    );
    let (stop, stop_rx) = watch::channel(false);
    // The shipped limits: the gate's cost is part of what is measured, for both servers.
    tokio::spawn(serve_tls(
        listener,
        certs.server_config(None),
        router,
        stop_rx,
        Duration::from_secs(1),
        Limits::default(),
        Metrics::new(),
    ));
    (url, stop)
}

/// A TCP proxy to `upstream` that makes it a registry `rtt` away: every chunk is passed on
/// `rtt / 2` after it arrived, each way, and what a client sends on a new connection not
/// before one more `rtt` (the handshake a new connection costs). Counts the connections.
async fn delaying_proxy(upstream: String, rtt: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            accepted.fetch_add(1, Ordering::Relaxed);
            let opened = tokio::time::Instant::now();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let server = TcpStream::connect(&upstream).await.unwrap();
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (from_client, to_client) = client.into_split();
                let (from_server, to_server) = server.into_split();
                tokio::join!(
                    delayed(from_client, to_server, opened + rtt, rtt / 2),
                    delayed(from_server, to_client, opened, rtt / 2),
                );
            });
        }
    });
    (addr, connections)
}

/// Copies `from` to `to`, each chunk `delay` after it arrived and not before `not_before`
/// (a latency, not a bandwidth limit: chunks in flight overlap).
async fn delayed(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    not_before: tokio::time::Instant,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            let at = tokio::time::Instant::now().max(not_before) + delay;
            let chunk = (n > 0).then(|| buf[..n].to_vec());
            if tx.send((at, chunk)).is_err() || n == 0 {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            let Some(bytes) = chunk else {
                let _ = to.shutdown().await;
                break;
            };
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(read, write);
}

/// `n` decisions of `body`, every cache emptied before each: their latencies, sorted.
async fn cold(app: &App, body: &[u8], n: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        app.by_tag.invalidate_all();
        app.facts.invalidate_all();
        let t = Instant::now();
        let (_, answer) = app.handle(body).await;
        latencies.push(t.elapsed());
        assert!(answer.contains("\"allowed\":true"), "{answer}");
    }
    latencies.sort();
    latencies
}

/// Registry calls by operation: mean latency and count.
fn registry_calls(app: &App) -> (Vec<String>, u64) {
    let mut breakdown = Vec::new();
    let mut total = 0;
    for family in app.metrics.registry.gather() {
        if family.name() != "zastava_registry_latency_seconds" {
            continue;
        }
        for m in family.get_metric() {
            let h = m.get_histogram();
            let op = m
                .get_label()
                .iter()
                .map(|l| l.value())
                .collect::<Vec<_>>()
                .join(",");
            total += h.get_sample_count();
            breakdown.push(format!(
                "{op} {:.2} ms x{}",
                h.get_sample_sum() * 1000.0 / h.get_sample_count().max(1) as f64,
                h.get_sample_count()
            ));
        }
    }
    (breakdown, total)
}

/// The mean latency of `app`'s registry calls, in ms.
fn cold_far_call_ms(app: &App) -> f64 {
    let (mut sum, mut count) = (0.0, 0);
    for family in app.metrics.registry.gather() {
        if family.name() == "zastava_registry_latency_seconds" {
            for m in family.get_metric() {
                sum += m.get_histogram().get_sample_sum();
                count += m.get_histogram().get_sample_count();
            }
        }
    }
    sum * 1000.0 / count.max(1) as f64
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The other log lines as in production (JSON), to a sink: formatting is part of the cost.
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(std::io::sink)
        .init();
    let image = env("BENCH_IMAGE");
    let config = ServeConfig {
        namespace: "zastava-system".into(),
        addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        tls_secret: "unused".into(),
        tls_secret_check_seconds: 30,
        client_ca_file: None,
        insecure_registries: vec![env("ZASTAVA_REGISTRY")],
        registry_timeout_ms: 5000,
        decision_deadline_ms: 4000,
        registry_allow_internal_targets: false,
        cache_capacity: 10_000,
        shutdown_delay_seconds: 0,
        drain_seconds: 1,
        log_format: zastava_webhook::LogFormat::Json,
        limits: Limits::default(),
        verifier: Default::default(),
    };
    let mut app: Arc<App> = zastava_webhook::app(&config, None, None);
    // Decision lines are built as in production (JSON), then discarded instead of written to
    // this process's stdout, where the figures go.
    Arc::get_mut(&mut app)
        .expect("no other reference yet")
        .decision_log = DecisionLog::Json(Arc::new(Discard));
    let policy: ZastavaPolicy = serde_json::from_value(json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "bench", "generation": 1},
        "spec": {"images": {"bannedTags": ["latest"]}, "verify": {
            "signature": {"required": true, "keys": [{"name": "bench", "pem": env("BENCH_PUBKEY")}]},
            "sbomReferrer": {"required": true}}},
    }))
    .unwrap();
    app.set_policies(PolicySet::build(&[Arc::new(policy.clone())]));

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    app.certs
        .set(certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap());

    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "bench", "operation": "CREATE", "namespace": "team",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "bench-7d9f", "namespace": "team", "labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "app", "image": image,
                    "ports": [{"containerPort": 8080}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}]}}}});
    let body = serde_json::to_vec(&review).unwrap();

    // The decision must be the real one: admitted on a verified signature and SBOM.
    let (status, answer) = app.handle(&body).await;
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");

    let fixed = app.handle(&body).await.1;
    // The ceiling receives the request as the webhook does (the body read under the same
    // limit) and answers without deciding.
    let ceiling = Router::new()
        .route(
            "/validate",
            post(move |body: axum::body::Bytes| {
                let fixed = fixed.clone();
                async move {
                    assert!(!body.is_empty());
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        fixed,
                    )
                }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    let client = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();

    let (webhook_url, stop_webhook) = serve(app.certs.clone(), admission_router(app.clone())).await;
    let (ceiling_url, stop_ceiling) = serve(app.certs.clone(), ceiling).await;
    // Warm-up: connections, caches, allocator.
    drive(&client, &webhook_url, &body, 2_000).await;
    drive(&client, &ceiling_url, &body, 2_000).await;
    // Alternating rounds, so a change in the machine's load during the run (it is shared)
    // weighs on both sides alike; throughput is the median round, the ratio is taken per pair.
    let (mut webhook, mut bare) = (Run::default(), Run::default());
    for _ in 0..ROUNDS {
        webhook.add(drive(&client, &webhook_url, &body, WARM_REQUESTS / ROUNDS).await);
        bare.add(drive(&client, &ceiling_url, &body, WARM_REQUESTS / ROUNDS).await);
    }

    // Server-side decision time, no transport: App::handle with a warm cache.
    let mut server_side = Vec::with_capacity(WARM_REQUESTS);
    for _ in 0..WARM_REQUESTS {
        let t = Instant::now();
        let _ = app.handle(&body).await;
        server_side.push(t.elapsed());
    }
    server_side.sort();
    // The same with CONCURRENCY tasks on the runtime's threads: decisions/s without transport.
    let started = Instant::now();
    let deciders = (0..CONCURRENCY).map(|_| {
        let (app, body) = (app.clone(), body.clone());
        tokio::spawn(async move {
            for _ in 0..WARM_REQUESTS / CONCURRENCY {
                let _ = app.handle(&body).await;
            }
        })
    });
    futures::future::join_all(deciders).await;
    let decisions_per_second =
        (WARM_REQUESTS / CONCURRENCY * CONCURRENCY) as f64 / started.elapsed().as_secs_f64();

    // Cold: every decision goes to the registry.
    let cold_local = cold(&app, &body, COLD_REQUESTS).await;
    let _ = stop_webhook.send(true);
    let _ = stop_ceiling.send(true);
    // Where the cold path spends its time: mean registry call latency by operation.
    let (breakdown, _) = registry_calls(&app);

    // Cold again, the registry 20 ms away: another webhook (its own caches, connections and
    // metrics) speaking to it through the delaying proxy.
    let registry = env("ZASTAVA_REGISTRY");
    let (proxy, connections) = delaying_proxy(registry.clone(), INJECTED_RTT).await;
    let mut far_app = zastava_webhook::app(
        &ServeConfig {
            insecure_registries: vec![proxy.clone()],
            ..config
        },
        None,
        None,
    );
    Arc::get_mut(&mut far_app)
        .expect("no other reference yet")
        .decision_log = DecisionLog::Json(Arc::new(Discard));
    far_app.set_policies(PolicySet::build(&[Arc::new(policy)]));
    let far_image = image.replacen(&registry, &proxy, 1);
    assert_ne!(far_image, image, "{image} is not in {registry}");
    let far_body = String::from_utf8(body.clone())
        .unwrap()
        .replace(&image, &far_image)
        .into_bytes();
    // One decision first: the connections a webhook keeps to its registry.
    cold(&far_app, &far_body, 1).await;
    let (_, calls_before) = registry_calls(&far_app);
    let connections_before = connections.load(Ordering::Relaxed);
    let cold_far = cold(&far_app, &far_body, DELAYED_REQUESTS).await;
    let (far_breakdown, calls_after) = registry_calls(&far_app);
    let per_decision = |n: u64| n as f64 / DELAYED_REQUESTS as f64;
    let far_calls = per_decision(calls_after - calls_before);
    let far_connections =
        per_decision((connections.load(Ordering::Relaxed) - connections_before) as u64);

    println!("zastava-webhook admission benchmark (concurrency {CONCURRENCY}, TLS keep-alive, {WARM_REQUESTS} requests each)");
    println!(
        "{:<34} {:>12} {:>10} {:>10}",
        "", "decisions/s", "p50 ms", "p99 ms"
    );
    for (name, run) in [
        ("webhook /validate (warm cache)", &mut webhook),
        ("bare axum+rustls fixed response", &mut bare),
    ] {
        println!(
            "{name:<34} {:>12.0} {:>10.3} {:>10.3}",
            run.median_per_second(),
            ms(run.percentile(0.50)),
            ms(run.percentile(0.99))
        );
    }
    // Each webhook round against the bare round that ran right after it. This shared VM
    // switches between a fast and a slow state (the ceiling at ~65 000/s or ~46 000/s) that
    // lasts seconds; a ratio of the two medians taken over rounds of both states moved by up
    // to 0.1 between runs, a ratio within one pair of rounds (~0.2 s each) does not.
    let ratios: Vec<f64> = (webhook.per_second.iter())
        .zip(&bare.per_second)
        .map(|(w, b)| w / b)
        .collect();
    let (lowest, highest) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "throughput ratio webhook/bare (median of {ROUNDS} pairs of adjacent rounds): {:.2} (pairs {lowest:.2}-{highest:.2}; target >= 0.70)",
        median(ratios)
    );
    println!(
        "server-side decision, warm cache: p50 {:.3} ms, p99 {:.3} ms (target p99 < 1 ms)",
        ms(percentile(&server_side, 0.50)),
        ms(percentile(&server_side, 0.99))
    );
    println!(
        "decisions without transport, {CONCURRENCY} concurrent tasks: {decisions_per_second:.0}/s"
    );
    println!(
        "cold path (resolve + signature + referrers against the local registry, {COLD_REQUESTS} decisions): p50 {:.3} ms, p95 {:.3} ms (target p95 < 8 ms)",
        ms(percentile(&cold_local, 0.50)),
        ms(percentile(&cold_local, 0.95))
    );
    println!("registry calls (mean per call): {}", breakdown.join("; "));
    let far_p50 = percentile(&cold_far, 0.50);
    // A call through the proxy takes the injected round trip plus the registry's own time
    // (and the timer's millisecond): the chain's length is the p50 over a call's mean.
    let far_call = cold_far_call_ms(&far_app);
    println!(
        "cold path, registry {} ms away ({DELAYED_REQUESTS} decisions): p50 {:.1} ms, p95 {:.1} ms: p50 / {} ms = {:.1}, p50 / mean call ({far_call:.1} ms) = {:.1} calls one after another (target <= 3); {far_calls:.1} registry calls and {far_connections:.1} new connections per decision",
        INJECTED_RTT.as_millis(),
        ms(far_p50),
        ms(percentile(&cold_far, 0.95)),
        INJECTED_RTT.as_millis(),
        far_p50.as_secs_f64() / INJECTED_RTT.as_secs_f64(),
        ms(far_p50) / far_call,
    );
    println!(
        "registry calls {} ms away (mean per call): {}",
        INJECTED_RTT.as_millis(),
        far_breakdown.join("; ")
    );
}
