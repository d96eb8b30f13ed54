//! A flood of slow clients does not stop admissions: connections that never finish (or never
//! start) the TLS handshake are closed at the handshake timeout, and no more than
//! `max_connections` of them hold a socket at once, so the process never runs out of file
//! descriptors and a well-behaved client (the apiserver) is served throughout.
//!
//! The process's descriptor limit is lowered to what a webhook pod might have left, so this
//! test has a binary (a process) of its own: the limit would starve the tests beside it.

use std::time::{Duration, Instant};

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use zastava_webhook::server::admission_router;
use zastava_webhook::tls::certified_key;
use zastava_webhook::transport::{reason, serve_tls, Limits};
use zastava_webhook::ServeConfig;

/// Clients of the flood, each holding one descriptor of this process.
const FLOOD: usize = 120;
/// The server's connection cap: the flood is larger.
const MAX_CONNECTIONS: u32 = 24;
/// Descriptors this process may open beyond those open when the test starts: enough for the
/// flood, the server's capped connections and the good client, not for the flood twice over
/// (its client ends and the server's ends, when nothing closes them).
const HEADROOM: u64 = 180;

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_clients_does_not_stop_admissions() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = ServeConfig {
        namespace: "zastava-system".into(),
        addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        tls_secret: "unused".into(),
        tls_secret_check_seconds: 30,
        client_ca_file: None,
        insecure_registries: vec![],
        registry_timeout_ms: 500,
        decision_deadline_ms: 4000,
        registry_allow_internal_targets: false,
        cache_capacity: 100,
        shutdown_delay_seconds: 0,
        drain_seconds: 1,
        log_format: zastava_webhook::LogFormat::Text,
        limits: Limits {
            tls_handshake_timeout_ms: 200,
            header_read_timeout_ms: 500,
            body_read_timeout_ms: 500,
            max_connections: MAX_CONNECTIONS,
            max_concurrent_decisions: 16,
        },
        verifier: Default::default(),
    };
    let app = zastava_webhook::app(&config, None, None);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.der(), &ca_key).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    app.certs
        .set(certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let url = format!("https://{address}/validate");
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(serve_tls(
        listener,
        app.certs.server_config(None),
        admission_router(app.clone()),
        stop_rx,
        Duration::from_secs(1),
        config.limits.clone(),
        app.metrics.clone(),
    ));
    // A connection of its own for every call, as an apiserver that just started (or whose
    // kept-alive connections were closed) opens them.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "operation": "CREATE", "namespace": "team",
            "object": {"kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}});
    let admit = || {
        let request = client.post(&url).json(&body);
        async move {
            let response = request.send().await.map_err(|e| format!("{e:?}"))?;
            let status = response.status();
            let review: Value = response.json().await.map_err(|e| e.to_string())?;
            (status == 200 && review["response"]["allowed"] == true)
                .then_some(())
                .ok_or(format!("{status}: {review}"))
        }
    };
    admit().await.expect("served before the flood");

    let limit = open_descriptors() + HEADROOM;
    let previous = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(limit),
            maximum: previous.maximum,
        },
    )
    .unwrap();

    // The flood: connections that never start the handshake, and ones that send a byte of
    // it now and then and never finish.
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        if let Ok(stream) = TcpStream::connect(address).await {
            flood.push((i, stream));
        }
    }
    let trickle = tokio::spawn(async move {
        for round in 0..40u8 {
            for (i, stream) in flood.iter_mut() {
                if *i % 2 == 0 {
                    let _ = stream.write_all(&[0x16 + round % 2]).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        flood
    });

    // The apiserver's calls go on being answered, each within its 5 s.
    let started = Instant::now();
    for i in 0..5 {
        let result = admit().await;
        assert!(
            result.is_ok(),
            "admission {i} during the flood failed after {:?}: {result:?}",
            started.elapsed()
        );
    }
    let flood = trickle.await.unwrap();
    assert!(
        flood.len() >= FLOOD / 2,
        "only {} flood connections",
        flood.len()
    );
    let closed = app
        .metrics
        .admission_rejected
        .with_label_values(&[reason::HANDSHAKE_TIMEOUT])
        .get();
    assert!(
        closed >= MAX_CONNECTIONS as u64,
        "{closed} handshakes timed out"
    );
    assert!(app.metrics.connections.get() <= MAX_CONNECTIONS as i64);
    // One handshake per admission (a new connection each), none for the flood's.
    assert_eq!(app.metrics.handshakes.get(), 6);
    drop(flood);
    setrlimit(Resource::Nofile, previous).unwrap();
    let _ = stop.send(true);
}
