//! The admission server in-process, over real TLS on loopback: bad input, decisions from
//! installed policies, and a certificate swap that fails no request.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use zastava_crds::ZastavaPolicy;
use zastava_webhook::policies::PolicySet;
use zastava_webhook::server::{admission_router, serve_tls, App, MAX_BODY_BYTES};
use zastava_webhook::tls::certified_key;
use zastava_webhook::ServeConfig;

struct Served {
    app: Arc<App>,
    url: String,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    stop: watch::Sender<bool>,
}

fn issue(ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.der(), ca_key).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn serve() -> Served {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = ServeConfig {
        namespace: "zastava-system".into(),
        addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        tls_secret: "unused".into(),
        insecure_registries: vec![],
        registry_timeout_ms: 500,
        decision_deadline_ms: 4000,
        registry_allow_internal_targets: false,
        cache_capacity: 100,
        shutdown_delay_seconds: 0,
        drain_seconds: 5,
        // Decisions through tracing: a test's stdout is the harness's.
        log_format: zastava_webhook::LogFormat::Text,
    };
    let app = zastava_webhook::app(&config, None, None);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let (cert, key) = issue(&ca, &ca_key);
    app.certs
        .set(certified_key(cert.as_bytes(), key.as_bytes()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/validate",
        listener.local_addr().unwrap().port()
    );
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(serve_tls(
        listener,
        app.certs.clone(),
        admission_router(app.clone()),
        stop_rx,
        Duration::from_secs(5),
    ));
    Served {
        app,
        url,
        ca,
        ca_key,
        stop,
    }
}

fn http(ca: &rcgen::Certificate) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .build()
        .unwrap()
}

fn review(object: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
           "request": {"uid": "uid-7", "operation": "CREATE", "namespace": "team", "object": object}})
}

fn pod(image: &str) -> Value {
    json!({"kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": image}]}})
}

fn install(app: &App, spec: Value) {
    let policy: ZastavaPolicy = serde_json::from_value(json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "base", "generation": 1}, "spec": spec,
    }))
    .unwrap();
    app.set_policies(PolicySet::build(&[Arc::new(policy)], &[]));
}

#[tokio::test]
async fn bad_bodies_get_400_or_413_and_never_a_panic() {
    let served = serve().await;
    let client = http(&served.ca);
    let post = |body: Vec<u8>| client.post(&served.url).body(body).send();

    let r = post(b"{not json".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("body is not JSON"));

    let r = post(br#"{"apiVersion": "v1", "kind": "Pod"}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("kind AdmissionReview"));

    let r = post(vec![b' '; MAX_BODY_BYTES + 1]).await.unwrap();
    assert_eq!(r.status(), 413);

    // A decodable review of an undecidable object is an explicit deny.
    let body = review(json!({"kind": "Pod", "spec": {"containers": []}}));
    let r: Value = client
        .post(&served.url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["response"]["uid"], "uid-7");
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(
        r["response"]["status"]["message"],
        "zastava denied: Pod has no containers"
    );
    let _ = served.stop.send(true);
}

#[tokio::test]
async fn policies_installed_at_run_time_decide() {
    let served = serve().await;
    let client = http(&served.ca);
    let decide = |image: &str| {
        let body = review(pod(image));
        let request = client.post(&served.url).json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(decide("busybox").await["response"]["allowed"], true);

    install(&served.app, json!({"images": {"bannedTags": ["latest"]}}));
    let r = decide("busybox").await;
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(
        r["response"]["status"]["message"],
        "zastava denied: busybox: base: tag `latest` is banned"
    );

    install(
        &served.app,
        json!({"mode": "Audit", "images": {"bannedTags": ["latest"]}}),
    );
    let r = decide("busybox").await;
    assert_eq!(r["response"]["allowed"], true);
    assert_eq!(
        r["response"]["warnings"][0],
        "busybox: base: tag `latest` is banned (Audit: admitted)"
    );
    assert!(
        r["response"]["auditAnnotations"]["zastava.stellaops.io/audit"]
            .as_str()
            .unwrap()
            .contains("tag `latest` is banned")
    );

    // An unreachable registry: verification fails closed, or open where the policy says.
    install(
        &served.app,
        json!({"failOpenNamespaces": ["team"], "verify": {"sbomReferrer": {"required": true}}}),
    );
    let r = decide("127.0.0.1:9/app:1").await;
    assert_eq!(r["response"]["allowed"], true, "{r}");
    assert_eq!(
        r["response"]["auditAnnotations"]["zastava.stellaops.io/fail-open"],
        "true"
    );
    install(
        &served.app,
        json!({"verify": {"sbomReferrer": {"required": true}}}),
    );
    let r = decide("127.0.0.1:9/app:1").await;
    assert_eq!(r["response"]["allowed"], false);
    assert!(r["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("base: verification failed: registry 127.0.0.1:9"));
    let _ = served.stop.send(true);
}

#[tokio::test]
async fn a_certificate_swap_fails_no_request() {
    let served = serve().await;
    let client = http(&served.ca);
    let body = review(pod("busybox:1.36"));
    let requests = {
        let client = client.clone();
        let url = served.url.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            for _ in 0..200 {
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == 200 => {}
                    _ => failures += 1,
                }
            }
            failures
        })
    };
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (cert, key) = issue(&served.ca, &served.ca_key);
        served
            .app
            .certs
            .set(certified_key(cert.as_bytes(), key.as_bytes()).unwrap());
    }
    assert_eq!(requests.await.unwrap(), 0);
    // A fresh client (new handshake) is served with the newest certificate and still trusts it.
    let r = http(&served.ca)
        .post(&served.url)
        .json(&review(pod("busybox:1.36")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = served.stop.send(true);
}
