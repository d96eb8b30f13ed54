//! The admission server in-process, over real TLS on loopback: bad input, decisions from
//! installed policies, and a certificate swap that fails no request.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use zastava_crds::ZastavaPolicy;
use zastava_webhook::policies::PolicySet;
use zastava_webhook::server::{admission_router, App, MAX_BODY_BYTES};
use zastava_webhook::tls::{certified_key, ClientCaError, ClientRoots};
use zastava_webhook::transport::{serve_tls, Limits};
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
    serve_with(Limits::default(), 500, None).await
}

async fn serve_with(
    limits: Limits,
    registry_timeout_ms: u64,
    clients: Option<ClientRoots>,
) -> Served {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = ServeConfig {
        namespace: "zastava-system".into(),
        addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        tls_secret: "unused".into(),
        tls_secret_check_seconds: 30,
        client_ca_file: None,
        insecure_registries: vec![],
        registry_timeout_ms,
        decision_deadline_ms: 4000,
        registry_allow_internal_targets: false,
        cache_capacity: 100,
        shutdown_delay_seconds: 0,
        drain_seconds: 5,
        // Decisions through tracing: a test's stdout is the harness's.
        log_format: zastava_webhook::LogFormat::Text,
        limits,
        // No Lease: these servers verify no running workload.
        verifier: Default::default(),
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
        app.certs.server_config(clients.as_ref()),
        admission_router(app.clone()),
        stop_rx,
        Duration::from_secs(5),
        config.limits.clone(),
        app.metrics.clone(),
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
    app.set_policies(PolicySet::build(&[Arc::new(policy)]));
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

/// A TLS connection to the server, as a raw stream (to send what a client library would not).
async fn tls_stream(served: &Served) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(served.ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let address = served.url.trim_start_matches("https://");
    let address = address.split('/').next().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

fn rejected(app: &App, reason: &str) -> u64 {
    app.metrics
        .admission_rejected
        .with_label_values(&[reason])
        .get()
}

/// A client that sends its headers a byte at a time is cut off at the header read timeout
/// (it was 30 s, fixed); one that sends headers but not the body is answered 408 at the body
/// read timeout (there was none: it held its connection and task for as long as it liked).
#[tokio::test]
async fn slow_headers_and_bodies_are_cut_off_at_their_timeouts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = Limits {
        header_read_timeout_ms: 300,
        body_read_timeout_ms: 300,
        ..Limits::default()
    };
    let served = serve_with(limits, 500, None).await;

    let mut slow = tls_stream(&served).await;
    let started = std::time::Instant::now();
    // Valid so far however far it gets: a header value that never ends.
    let mut request = b"POST /validate HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".to_vec();
    request.extend([b'a'; 200]);
    let mut cut_off = false;
    for byte in &request {
        if slow.write_all(&[*byte]).await.is_err() || slow.flush().await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut buf = [0u8; 256];
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            // An answer (408 from hyper) or the end of the stream: either way, cut off.
            let _ = read;
            cut_off = true;
            break;
        }
    }
    assert!(
        cut_off,
        "a client sending a byte every 20 ms was never cut off"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let mut no_body = tls_stream(&served).await;
    no_body
        .write_all(
            b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"apiVersion\":",
        )
        .await
        .unwrap();
    no_body.flush().await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), no_body.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "no answer within 3 s to a body that never arrives"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("request body not received within"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(rejected(&served.app, "body_timeout"), 1);

    // A well-behaved client is served as before.
    let r = http(&served.ca)
        .post(&served.url)
        .json(&review(pod("busybox:1.36")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = served.stop.send(true);
}

/// Past the cap on decisions under way, a review is answered 429 at once with a clear message
/// (and counted), rather than queued behind decisions that wait on a registry.
#[tokio::test]
async fn past_the_decision_cap_a_review_is_answered_429_at_once() {
    // A registry that accepts connections and never answers: each decision waits on it.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = silent.local_addr().unwrap().to_string();
    let limits = Limits {
        max_concurrent_decisions: 2,
        ..Limits::default()
    };
    let served = serve_with(limits, 3_000, None).await;
    install(
        &served.app,
        json!({"verify": {"sbomReferrer": {"required": true}}}),
    );
    let client = http(&served.ca);
    let image = format!("{registry}/app:1");
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let request = client.post(&served.url).json(&review(pod(&image)));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = std::time::Instant::now();
    let r = client
        .post(&served.url)
        .json(&review(pod(&image)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        r.text().await.unwrap(),
        "zastava: 2 admission decisions are under way, the most this replica takes at once; \
         retry\n"
    );
    assert_eq!(rejected(&served.app, "decisions"), 1);
    let metrics = served.app.metrics.render();
    assert!(
        metrics.contains("zastava_admission_rejected_total{reason=\"decisions\"} 1"),
        "{metrics}"
    );
    // The decisions under way end (denied: the registry timed out) and free their slots.
    for w in waiting {
        assert_eq!(w.await.unwrap().unwrap(), 200);
    }
    let r = client
        .post(&served.url)
        .json(&review(pod("busybox:1.36")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(silent);
    let _ = served.stop.send(true);
}

/// The exemption labels are the webhook configuration's business (which namespaces the
/// apiserver calls the webhook for); a decision never reads them. A namespace a tenant
/// labelled `ignore` and `fail-open` is still decided, and fails closed unless a policy lists
/// it in `failOpenNamespaces`.
#[tokio::test]
async fn exemption_labels_on_a_namespace_change_no_decision() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::PartialObjectMeta;
    use kube::runtime::{reflector, watcher};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (store, mut writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let namespace: PartialObjectMeta<Namespace> = serde_json::from_value(json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": "team", "labels": {
            "zastava.stellaops.io/ignore": "true", "zastava.stellaops.io/fail-open": "true"}},
    }))
    .unwrap();
    writer.apply_watcher_event(&watcher::Event::Apply(namespace));
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
        drain_seconds: 5,
        log_format: zastava_webhook::LogFormat::Text,
        limits: Limits::default(),
        // No Lease: these servers verify no running workload.
        verifier: Default::default(),
    };
    let app = zastava_webhook::app(&config, None, Some(store));
    let decide = |image: &str| {
        let body = serde_json::to_vec(&review(pod(image))).unwrap();
        let app = app.clone();
        async move {
            let (status, text) = app.handle(&body).await;
            assert_eq!(status, 200);
            serde_json::from_str::<Value>(&text).unwrap()
        }
    };
    install(
        &app,
        json!({"images": {"bannedTags": ["latest"]},
                         "verify": {"sbomReferrer": {"required": true}}}),
    );
    let r = decide("busybox").await;
    assert_eq!(r["response"]["allowed"], false, "{r}");
    // An unreachable registry fails closed: the label grants no fail-open.
    let r = decide("127.0.0.1:9/app:1").await;
    assert_eq!(r["response"]["allowed"], false, "{r}");
    assert!(r["response"]["auditAnnotations"]
        .get("zastava.stellaops.io/fail-open")
        .is_none());
    // Listed in failOpenNamespaces, it fails open.
    install(
        &app,
        json!({"failOpenNamespaces": ["team"],
                         "verify": {"sbomReferrer": {"required": true}}}),
    );
    let r = decide("127.0.0.1:9/app:1").await;
    assert_eq!(r["response"]["allowed"], true, "{r}");
}

fn ca() -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    (params.self_signed(&key).unwrap(), key)
}

/// A client certificate for `CN=kube-apiserver-webhook-client`, as cert+key PEM.
fn client_identity(ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair) -> reqwest::Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver-webhook-client");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.der(), ca_key).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    reqwest::Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes())
        .unwrap()
}

#[tokio::test]
async fn with_a_client_ca_only_its_certificates_may_send_reviews() {
    let (client_ca, client_ca_key) = ca();
    let roots = ClientRoots::from_pem(client_ca.pem().as_bytes()).unwrap();
    let served = serve_with(Limits::default(), 500, Some(roots)).await;
    install(&served.app, json!({"images": {"bannedTags": ["latest"]}}));
    let body = serde_json::to_vec(&review(pod("busybox:latest"))).unwrap();
    let trusting = |identity: Option<reqwest::Identity>| {
        let builder = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(served.ca.pem().as_bytes()).unwrap()]);
        match identity {
            Some(identity) => builder.identity(identity),
            None => builder,
        }
        .build()
        .unwrap()
    };

    // The apiserver's certificate: decided.
    let apiserver = trusting(Some(client_identity(&client_ca, &client_ca_key)));
    let answer: Value = apiserver
        .post(&served.url)
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    // No certificate, or one of another CA (here the serving CA): the handshake fails, no
    // review is read.
    let denied = served.app.metrics.denied.get();
    assert_eq!(denied, 1);
    for (who, client) in [
        ("no certificate", trusting(None)),
        (
            "another CA's certificate",
            trusting(Some(client_identity(&served.ca, &served.ca_key))),
        ),
    ] {
        let refused = client.post(&served.url).body(body.clone()).send().await;
        assert!(refused.is_err(), "{who}: {refused:?}");
    }
    assert_eq!(served.app.metrics.denied.get(), denied);
    let refused = served
        .app
        .metrics
        .admission_rejected
        .with_label_values(&["client_certificate"])
        .get();
    assert_eq!(refused, 2);
    let _ = served.stop.send(true);
}

#[test]
fn a_client_ca_bundle_that_is_not_pem_is_refused_by_name() {
    assert_eq!(
        ClientRoots::from_pem(b"hello").unwrap_err(),
        ClientCaError::Empty
    );
    let truncated = "-----BEGIN CERTIFICATE-----\nMIIB!!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        ClientRoots::from_pem(truncated.as_bytes()),
        Err(ClientCaError::NotPem(_) | ClientCaError::BadCertificate(_))
    ));
}

/// A namespace the reflector does not know yet is read from the API; an API that never
/// answers must not hold the decision past its deadline, and with the labels unknown every
/// policy that selects namespaces by label applies (an outage adds checks, never removes one).
#[tokio::test]
async fn an_api_that_never_answers_the_namespace_labels_meets_the_deadline() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let client = kube::Client::try_from(kube::Config::new(api_url.parse().unwrap())).unwrap();
    let config = ServeConfig {
        namespace: "zastava-system".into(),
        addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        tls_secret: "unused".into(),
        tls_secret_check_seconds: 30,
        client_ca_file: None,
        insecure_registries: vec![],
        registry_timeout_ms: 500,
        decision_deadline_ms: 1000,
        registry_allow_internal_targets: false,
        cache_capacity: 100,
        shutdown_delay_seconds: 0,
        drain_seconds: 5,
        log_format: zastava_webhook::LogFormat::Text,
        limits: Limits::default(),
        // No Lease: these servers verify no running workload.
        verifier: Default::default(),
    };
    let app = zastava_webhook::app(&config, Some(client), None);
    install(
        &app,
        json!({"namespaceSelector": {"matchLabels": {"tier": "prod"}},
               "images": {"bannedTags": ["latest"]}}),
    );
    let body = serde_json::to_vec(&review(pod("busybox:latest"))).unwrap();
    let started = std::time::Instant::now();
    let (status, text) = tokio::time::timeout(Duration::from_secs(10), app.handle(&body))
        .await
        .expect("the decision outlived its deadline");
    let took = started.elapsed();
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert!(
        took < Duration::from_millis(1800),
        "decided after {took:?}, deadline 1 s"
    );
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let warnings = answer["response"]["warnings"].to_string();
    assert!(
        warnings.contains("the labels of namespace team could not be read"),
        "{answer}"
    );
}
