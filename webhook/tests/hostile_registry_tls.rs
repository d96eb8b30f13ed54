//! A hostile registry over real TLS on 127.0.0.1, with a certificate from a test CA the
//! webhook trusts the way a deployment trusts a private registry's CA: through the system
//! trust store, here `SSL_CERT_FILE` (which is why these cases are a test binary of their
//! own). A redirect or a token realm from HTTPS to plain HTTP is refused before connecting,
//! whatever the address, with a fixed reason and nothing the registry said in the message.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use oci_client::secrets::RegistryAuth;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::net::TcpListener;

use common::*;

const DOWNGRADE: &str = "from HTTPS to plain HTTP";

/// The test CA, made once per process and put in `SSL_CERT_FILE` before any test goes on (the
/// first caller sets the variable while every other test waits here, so no thread reads the
/// environment while it changes).
struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "zastava hostile-registry test CA",
        );
        let cert = params.self_signed(&key).unwrap();
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "zastava-hostile-registry-ca-{}.pem",
            std::process::id()
        ));
        std::fs::write(&path, cert.pem()).unwrap();
        std::env::set_var("SSL_CERT_FILE", &path);
        TestCa { cert, key }
    })
}

/// Serves `router` over TLS on a fresh port of 127.0.0.1 (a certificate for that address from
/// the test CA) and returns `host:port`.
async fn listen_tls(router: Router) -> String {
    let ca = test_ca();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.cert.der(), &ca.key).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
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
    addr.to_string()
}

/// An HTTPS registry whose every answer is `answer(method, path, headers)`, counting the
/// requests it gets.
async fn hostile_tls(
    answer: impl Fn(&Method, &str, &HeaderMap) -> Response + Clone + Send + Sync + 'static,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    let router = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let (answer, counted) = (answer.clone(), counted.clone());
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            answer(&method, uri.path(), &headers)
        }
    });
    (listen_tls(router).await, hits)
}

fn digest_answer(digest: &str) -> Response {
    ([("docker-content-digest", digest.to_string())], "").into_response()
}

/// The webhook's registry client with no plain-HTTP registry.
fn https_client() -> zastava_registry::Registry {
    client("none", Duration::from_secs(3))
}

/// Resolves `image` and expects the downgrade refusal, quickly and without what the registry
/// or the plain-HTTP service said.
async fn downgrade_refused(image: &str) {
    let started = Instant::now();
    let error = https_client()
        .resolve(&reference(image), &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "{error}");
    assert!(error.message.contains(DOWNGRADE), "{image}: {error}");
    assert!(!error.message.contains(SECRET), "{error}");
}

/// Decides on a Pod of `image` under a signature-requiring policy, no registry listed for
/// plain HTTP: denied with the fixed reason, nothing the registry or service said in it.
async fn denied_with_the_fixed_reason(image: &str) {
    let app = app(&[], json!({"verify": {"signature": {"required": true}}}));
    let (allowed, message, warnings, annotations) = decide(&app, "team", &[image]).await;
    assert!(!allowed, "{image}");
    assert!(
        message.contains(&format!("redirect or token realm refused: {DOWNGRADE}")),
        "{message}"
    );
    for text in [message, warnings.to_string(), annotations.to_string()] {
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("registry says"), "{text}");
    }
}

#[tokio::test]
async fn an_https_registry_may_not_redirect_the_webhook_to_plain_http() {
    // On loopback like the registry: only the downgrade rule keeps the webhook from it.
    let (plain, plain_hits) = hostile(secret_answer).await;
    let digest = format!("sha256:{}", "a".repeat(64));
    let served = digest.clone();
    let own = Arc::new(OnceLock::<String>::new());
    let me = own.clone();
    let (host, hits) = hostile_tls(move |_, path, _| {
        let me = me.get().unwrap();
        match path {
            // HTTPS onwards to HTTPS is followed: the TLS set-up works, and so do redirects.
            "/v2/ok/manifests/y" => redirect(format!("https://{me}/v2/ok/manifests/stored")),
            "/v2/ok/manifests/stored" => digest_answer(&served),
            "/v2/x/manifests/y" => (
                StatusCode::FOUND,
                [(header::LOCATION, format!("http://{plain}{path}"))],
                format!("registry says {SECRET}"),
            )
                .into_response(),
            // One HTTPS hop first: every hop is checked, not only the first.
            "/v2/chain/manifests/y" => redirect(format!("https://{me}/v2/x/manifests/y")),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    })
    .await;
    own.set(host.clone()).unwrap();

    let resolved = https_client()
        .resolve(
            &reference(&format!("{host}/ok:y")),
            &RegistryAuth::Anonymous,
        )
        .await
        .unwrap();
    assert_eq!(resolved, digest);
    let before = hits.load(Ordering::SeqCst);
    for image in [format!("{host}/x:y"), format!("{host}/chain:y")] {
        downgrade_refused(&image).await;
        denied_with_the_fixed_reason(&image).await;
    }
    assert!(
        hits.load(Ordering::SeqCst) > before,
        "the registry was asked"
    );
    assert_eq!(
        plain_hits.load(Ordering::SeqCst),
        0,
        "the plain-HTTP target was contacted"
    );
}

#[tokio::test]
async fn an_https_registry_may_not_send_the_webhook_to_a_plain_http_token_realm() {
    let (plain, plain_hits) = hostile(secret_answer).await;
    let digest = format!("sha256:{}", "b".repeat(64));
    let served = digest.clone();
    let own = Arc::new(OnceLock::<String>::new());
    let me = own.clone();
    let (host, _) = hostile_tls(move |method, path, headers| {
        let me = me.get().unwrap();
        if path == "/token" {
            return json_response(json!({"token": "t0ken"}));
        }
        let authorized = headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v == "Bearer t0ken");
        if authorized && method == Method::HEAD && path == "/v2/ok/manifests/y" {
            return digest_answer(&served);
        }
        // A realm over HTTPS is used (and so proves the token flow works); over HTTP not.
        let realm = if path.starts_with("/v2/ok/") {
            format!("https://{me}/token")
        } else {
            format!("http://{plain}/token")
        };
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!(r#"Bearer realm="{realm}",service="r""#),
            )],
            format!("registry says {SECRET}"),
        )
            .into_response()
    })
    .await;
    own.set(host.clone()).unwrap();

    let resolved = https_client()
        .resolve(
            &reference(&format!("{host}/ok:y")),
            &RegistryAuth::Anonymous,
        )
        .await
        .unwrap();
    assert_eq!(resolved, digest);
    let image = format!("{host}/x:y");
    downgrade_refused(&image).await;
    denied_with_the_fixed_reason(&image).await;
    assert_eq!(
        plain_hits.load(Ordering::SeqCst),
        0,
        "the plain-HTTP realm was contacted"
    );
}
