//! The backend contract over real TLS on 127.0.0.1, with a private CA the policy names in
//! `caBundle`: the bearer token and the client certificate from Secrets, the oldest TLS
//! version, the resolved digest in the request, the answer's `ttlSeconds` bounding the cache,
//! its `rekor` kept, and retries that stay inside the decision's deadline. Credentials that are
//! missing or unusable mean the backend is not called at all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use zastava_crds::policy::BackendVerdict;
use zastava_crds::posture::Verdict;
use zastava_webhook::backend::{
    backend_key, scope, Backend, BackendCall, BackendSecrets, ImageResult, POLICY_PATH,
};
use zastava_webhook::cache::{TtlCache, Ttls};
use zastava_webhook::metrics::Metrics;

const IMAGE: &str = "registry.example/app:1";
const TOKEN: &str = "s3cret-token.v1";

fn resolved() -> String {
    format!("registry.example/app@sha256:{}", "b".repeat(64))
}

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A certificate for 127.0.0.1 (or a client named `name`) and its key.
    fn issue(&self, name: Option<&str>) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        match name {
            Some(name) => params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name),
            None => params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())),
        }
        let issuer = rcgen::Issuer::from_ca_cert_der(self.cert.der(), &self.key).unwrap();
        (params.signed_by(&key, &issuer).unwrap(), key)
    }
}

/// What the backend saw.
#[derive(Default)]
struct Seen {
    hits: AtomicUsize,
    authorization: Mutex<Vec<String>>,
    images: Mutex<Vec<Value>>,
}

struct Server {
    url: String,
    seen: Arc<Seen>,
}

/// A backend over TLS (a certificate from `ca`), speaking only `versions`, requiring client
/// certificates from `client_ca` when given, answering with `answer(request, authorization)`.
async fn serve(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_ca: Option<&Ca>,
    answer: impl Fn(&Value, &str) -> (StatusCode, String) + Clone + Send + Sync + 'static,
) -> Server {
    let (cert, key) = ca.issue(None);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(client_ca.cert.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let seen = Arc::new(Seen::default());
    let recorded = seen.clone();
    let router = Router::new().route(
        POLICY_PATH,
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (seen, answer) = (recorded.clone(), answer.clone());
            async move {
                seen.hits.fetch_add(1, Ordering::SeqCst);
                let authorization = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                seen.authorization
                    .lock()
                    .unwrap()
                    .push(authorization.clone());
                let request: Value = serde_json::from_slice(&body).unwrap();
                seen.images.lock().unwrap().push(request["images"].clone());
                answer(&request, &authorization).into_response()
            }
        }),
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        url: format!("https://{addr}"),
        seen,
    }
}

/// A verdict on every image asked about, for callers presenting [`TOKEN`] (401 otherwise).
fn verdict(ttl: u32) -> impl Fn(&Value, &str) -> (StatusCode, String) + Clone {
    move |request, authorization| {
        if authorization != format!("Bearer {TOKEN}") {
            return (StatusCode::UNAUTHORIZED, "who are you".to_string());
        }
        let image = request["images"][0].as_str().unwrap().to_string();
        let mut reasons = vec!["CVE-2026-0001 high\u{1b}[31m\nforged line".to_string()];
        reasons.extend((0..40).map(|i| format!("reason {i}")));
        let answer = json!({"ttlSeconds": ttl, "results": {image: {
            "signed": true, "hasSbom": true, "policyVerdict": "warn", "reasons": reasons,
            "rekor": {"uuid": "c".repeat(80)}}}});
        (StatusCode::OK, answer.to_string())
    }
}

fn settings(value: Value) -> BackendVerdict {
    serde_json::from_value(value).unwrap()
}

/// A Secret's name and its data.
type SecretEntry<'a> = (&'a str, &'a [(&'a str, &'a [u8])]);

fn secrets(entries: &[SecretEntry<'_>]) -> BackendSecrets {
    entries
        .iter()
        .map(|(name, data)| {
            let data = data
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect::<BTreeMap<_, _>>();
            (name.to_string(), Ok(Some(data)))
        })
        .collect()
}

fn token_secret(token: &str) -> BackendSecrets {
    secrets(&[(
        "scanner-token",
        &[("token", format!("{token}\n").as_bytes())],
    )])
}

/// Asks `backend` (configured with `settings` and `secrets`) about [`IMAGE`] resolved, within
/// `deadline`.
async fn ask(
    backend: &Backend,
    settings: &BackendVerdict,
    secrets: &BackendSecrets,
    deadline: Duration,
) -> (Result<ImageResult, String>, Vec<String>) {
    let key = backend_key(settings);
    let problems = backend.configure(&BTreeMap::from([(key.clone(), settings.clone())]), secrets);
    let call = BackendCall {
        key: key.clone(),
        url: settings.url.clone(),
        timeout: Duration::from_secs(settings.timeout_seconds.into()),
    };
    let labels = BTreeMap::new();
    let resolved = resolved();
    let (mut answers, _) = backend
        .verdicts(
            &[call],
            "team",
            &labels,
            scope("team", &labels),
            IMAGE,
            Ok(&resolved),
            Some(tokio::time::Instant::now() + deadline),
        )
        .await;
    assert_eq!(answers.len(), 1);
    let ((answered_key, image), result) = answers.remove(0);
    assert_eq!(
        (answered_key.as_str(), image.as_str()),
        (key.as_str(), IMAGE)
    );
    (result, problems)
}

fn uncached() -> Backend {
    Backend::new(None, Metrics::new())
}

#[tokio::test]
async fn a_private_ca_and_a_token_get_the_verdict_on_the_resolved_digest() {
    let ca = Ca::new("scanner CA");
    let server = serve(&ca, &[&rustls::version::TLS13], None, verdict(60)).await;
    let with_token = settings(json!({"url": server.url, "caBundle": ca.cert.pem(),
        "auth": {"bearerTokenSecretRef": {"name": "scanner-token"}}}));

    let (result, problems) = ask(
        &uncached(),
        &with_token,
        &token_secret(TOKEN),
        Duration::from_secs(5),
    )
    .await;
    assert!(problems.is_empty(), "{problems:?}");
    let result = result.unwrap();
    assert_eq!(result.policy_verdict, Verdict::Warn);
    assert_eq!(result.ttl_seconds, Some(60));
    assert_eq!(result.rekor.unwrap().uuid, "c".repeat(80));
    // What the backend says is cut to printable lines before it can reach a deny message.
    assert_eq!(result.reasons.len(), 16);
    assert_eq!(result.reasons[0], "CVE-2026-0001 high [31m forged line");
    assert_eq!(*server.seen.images.lock().unwrap(), [json!([resolved()])]);
    assert_eq!(
        *server.seen.authorization.lock().unwrap(),
        [format!("Bearer {TOKEN}")]
    );

    // A wrong token: refused, and a 401 is not retried.
    let (result, _) = ask(
        &uncached(),
        &with_token,
        &token_secret("stale"),
        Duration::from_secs(5),
    )
    .await;
    let error = result.unwrap_err();
    assert!(error.ends_with("HTTP 401 Unauthorized"), "{error}");
    assert!(!error.contains("who are you"), "{error}");
    assert_eq!(server.seen.hits.load(Ordering::SeqCst), 2);

    // No Secret, or a token a header cannot carry: the backend is not called without it.
    for (secrets, why) in [
        (BackendSecrets::new(), "Secret scanner-token not read"),
        (
            BTreeMap::from([("scanner-token".to_string(), Ok(None))]),
            "Secret scanner-token not found",
        ),
        (
            secrets(&[("scanner-token", &[("other", b"x")])]),
            "Secret scanner-token has no key token",
        ),
        (
            token_secret("two words"),
            "Secret scanner-token key token: bearer token: the token holds a character that cannot be sent in an HTTP header (byte 3)",
        ),
    ] {
        let (result, problems) = ask(&uncached(), &with_token, &secrets, Duration::from_secs(5)).await;
        assert_eq!(problems, [format!("backend {}: {why}", server.url)]);
        assert_eq!(result.unwrap_err(), why);
    }
    assert_eq!(server.seen.hits.load(Ordering::SeqCst), 2);

    // Without the private CA the backend's certificate is not trusted: no request is sent.
    let system_roots = settings(json!({"url": server.url,
        "auth": {"bearerTokenSecretRef": {"name": "scanner-token"}}}));
    let (result, _) = ask(
        &uncached(),
        &system_roots,
        &token_secret(TOKEN),
        Duration::from_secs(5),
    )
    .await;
    let error = result.unwrap_err();
    assert!(error.contains("certificate"), "{error}");
    let other_ca = Ca::new("another CA");
    let wrong_ca = settings(json!({"url": server.url, "caBundle": other_ca.cert.pem(),
        "auth": {"bearerTokenSecretRef": {"name": "scanner-token"}}}));
    let (result, _) = ask(
        &uncached(),
        &wrong_ca,
        &token_secret(TOKEN),
        Duration::from_secs(5),
    )
    .await;
    assert!(result.unwrap_err().contains("certificate"));
    assert_eq!(server.seen.hits.load(Ordering::SeqCst), 2);

    // A caBundle that is not PEM certificates is a problem of the connection, named.
    let garbage = settings(json!({"url": server.url, "caBundle": "not a certificate"}));
    let (result, problems) = ask(
        &uncached(),
        &garbage,
        &BackendSecrets::new(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(result.unwrap_err(), "caBundle: no `CERTIFICATE` PEM block");
    assert_eq!(problems.len(), 1);
}

#[tokio::test]
async fn tls_1_3_only_refuses_a_tls_1_2_backend() {
    let ca = Ca::new("scanner CA");
    let server = serve(&ca, &[&rustls::version::TLS12], None, verdict(60)).await;
    let at = |min: &str| {
        settings(
            json!({"url": server.url, "caBundle": ca.cert.pem(), "minTlsVersion": min,
            "auth": {"bearerTokenSecretRef": {"name": "scanner-token"}}}),
        )
    };
    let (result, _) = ask(
        &uncached(),
        &at("1.2"),
        &token_secret(TOKEN),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(result.unwrap().policy_verdict, Verdict::Warn);
    let (result, _) = ask(
        &uncached(),
        &at("1.3"),
        &token_secret(TOKEN),
        Duration::from_secs(5),
    )
    .await;
    let error = result.unwrap_err();
    assert!(
        error.starts_with(&format!("backend {}{POLICY_PATH}: ", server.url)),
        "{error}"
    );
    assert_eq!(server.seen.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_client_certificate_from_a_secret_is_presented() {
    let ca = Ca::new("scanner CA");
    let clients = Ca::new("scanner clients CA");
    let server = serve(
        &ca,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some(&clients),
        // Authenticated by the certificate alone.
        |request, _| {
            let image = request["images"][0].as_str().unwrap().to_string();
            let answer = json!({"results": {image: {"policyVerdict": "pass"}}});
            (StatusCode::OK, answer.to_string())
        },
    )
    .await;
    let mtls = settings(json!({"url": server.url, "caBundle": ca.cert.pem(),
        "auth": {"clientCertificateSecretRef": {"name": "zastava-scanner-client"}}}));
    let (cert, key) = clients.issue(Some("zastava-webhook"));
    let pair = secrets(&[(
        "zastava-scanner-client",
        &[
            ("tls.crt", cert.pem().as_bytes()),
            ("tls.key", key.serialize_pem().as_bytes()),
        ],
    )]);
    let (result, problems) = ask(&uncached(), &mtls, &pair, Duration::from_secs(5)).await;
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(result.unwrap().policy_verdict, Verdict::Pass);

    // A certificate of another CA is refused by the backend during the handshake.
    let (stranger, stranger_key) = Ca::new("stranger").issue(Some("zastava-webhook"));
    let foreign = secrets(&[(
        "zastava-scanner-client",
        &[
            ("tls.crt", stranger.pem().as_bytes()),
            ("tls.key", stranger_key.serialize_pem().as_bytes()),
        ],
    )]);
    let (result, _) = ask(&uncached(), &mtls, &foreign, Duration::from_secs(5)).await;
    assert!(result.is_err());
    // The key and certificate swapped: a problem of the Secret, named without its bytes.
    let swapped = secrets(&[(
        "zastava-scanner-client",
        &[
            ("tls.crt", key.serialize_pem().as_bytes()),
            ("tls.key", cert.pem().as_bytes()),
        ],
    )]);
    let (result, _) = ask(&uncached(), &mtls, &swapped, Duration::from_secs(5)).await;
    assert_eq!(
        result.unwrap_err(),
        "Secret zastava-scanner-client: client certificate: PEM block `PRIVATE KEY` where only `CERTIFICATE` blocks belong"
    );
    assert_eq!(server.seen.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_answers_ttl_bounds_the_cache_and_a_rotated_token_is_used() {
    let ca = Ca::new("scanner CA");
    let server = serve(&ca, &[&rustls::version::TLS13], None, verdict(1)).await;
    let with_token = settings(json!({"url": server.url, "caBundle": ca.cert.pem(),
        "auth": {"bearerTokenSecretRef": {"name": "scanner-token"}}}));
    let cached = |positive: u64| {
        let ttls = Arc::new(Ttls::new(
            Duration::from_secs(positive),
            Duration::from_secs(positive),
        ));
        Backend::new(Some(TtlCache::new(100, ttls)), Metrics::new())
    };
    let hits = || server.seen.hits.load(Ordering::SeqCst);
    let backend = cached(300);
    for _ in 0..3 {
        ask(
            &backend,
            &with_token,
            &token_secret(TOKEN),
            Duration::from_secs(5),
        )
        .await
        .0
        .unwrap();
    }
    assert_eq!(
        hits(),
        1,
        "answered from the cache within the answer's ttlSeconds"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ask(
        &backend,
        &with_token,
        &token_secret(TOKEN),
        Duration::from_secs(5),
    )
    .await
    .0
    .unwrap();
    assert_eq!(hits(), 2, "asked again once the answer's ttlSeconds passed");

    // A token rotated in its Secret makes a new connection; the old one is refused.
    let rotated = "rotated-token";
    let server = serve(
        &ca,
        &[&rustls::version::TLS13],
        None,
        move |request: &Value, authorization: &str| {
            if authorization != format!("Bearer {rotated}") {
                return (StatusCode::UNAUTHORIZED, String::new());
            }
            let image = request["images"][0].as_str().unwrap().to_string();
            (
                StatusCode::OK,
                json!({"results": {image: {"policyVerdict": "pass"}}}).to_string(),
            )
        },
    )
    .await;
    let settings = settings(json!({"url": server.url, "caBundle": ca.cert.pem(),
        "auth": {"bearerTokenSecretRef": {"name": "scanner-token"}}}));
    let backend = uncached();
    let (result, _) = ask(
        &backend,
        &settings,
        &token_secret(TOKEN),
        Duration::from_secs(5),
    )
    .await;
    assert!(result.unwrap_err().ends_with("HTTP 401 Unauthorized"));
    let (result, _) = ask(
        &backend,
        &settings,
        &token_secret(rotated),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(result.unwrap().policy_verdict, Verdict::Pass);
}

#[tokio::test]
async fn a_long_answer_ttl_never_outlives_the_policys() {
    let ca = Ca::new("scanner CA");
    let server = serve(&ca, &[&rustls::version::TLS13], None, verdict(3600)).await;
    let with_token = settings(json!({"url": server.url, "caBundle": ca.cert.pem(),
        "auth": {"bearerTokenSecretRef": {"name": "scanner-token"}}}));
    let ttls = Arc::new(Ttls::new(Duration::from_secs(1), Duration::from_secs(1)));
    let backend = Backend::new(Some(TtlCache::new(100, ttls)), Metrics::new());
    ask(
        &backend,
        &with_token,
        &token_secret(TOKEN),
        Duration::from_secs(5),
    )
    .await
    .0
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ask(
        &backend,
        &with_token,
        &token_secret(TOKEN),
        Duration::from_secs(5),
    )
    .await
    .0
    .unwrap();
    assert_eq!(server.seen.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retries_back_off_inside_the_decision_deadline() {
    let ca = Ca::new("scanner CA");
    let server = serve(&ca, &[&rustls::version::TLS13], None, |_, _| {
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded".to_string())
    })
    .await;
    let flaky =
        settings(json!({"url": server.url, "caBundle": ca.cert.pem(), "timeoutSeconds": 10}));
    let metrics = Metrics::new();
    let backend = Backend::new(None, metrics.clone());
    // Three attempts (backoff 100 ms, then 300 ms) when the deadline leaves room for them.
    let (result, _) = ask(
        &backend,
        &flaky,
        &BackendSecrets::new(),
        Duration::from_secs(3),
    )
    .await;
    assert!(result
        .unwrap_err()
        .ends_with("HTTP 503 Service Unavailable"));
    assert_eq!(server.seen.hits.load(Ordering::SeqCst), 3);
    assert_eq!(metrics.backend_failures.get(), 3);
    // A deadline of 250 ms: the second attempt starts after 100 ms, a third could not start
    // before the deadline, so it is not waited for.
    let started = std::time::Instant::now();
    let (result, _) = ask(
        &backend,
        &flaky,
        &BackendSecrets::new(),
        Duration::from_millis(250),
    )
    .await;
    assert!(result
        .unwrap_err()
        .ends_with("HTTP 503 Service Unavailable"));
    assert_eq!(server.seen.hits.load(Ordering::SeqCst), 5);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}
