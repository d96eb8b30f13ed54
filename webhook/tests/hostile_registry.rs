//! A hostile registry on 127.0.0.1: redirects to internal services, token realms pointing at
//! internal addresses, bodies declared small that stream 128 MB, and answers dripping one
//! byte a second. Every decision ends inside the deadline, reads no more than its caps, and
//! no internal service's text reaches a message the pod author reads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use clap::Parser;
use oci_client::secrets::RegistryAuth;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use zastava_crds::image::ImageReference;
use zastava_crds::ZastavaPolicy;
use zastava_webhook::metrics::Metrics;
use zastava_webhook::policies::PolicySet;
use zastava_webhook::registry::Registry;
use zastava_webhook::server::App;
use zastava_webhook::ServeConfig;

/// What an internal service holds; must never appear in a message.
const SECRET: &str = "hunter2-internal-password";
const HUGE: usize = 128 * 1024 * 1024;

/// Serves `router` on a fresh port of 127.0.0.1 and returns `host:port`.
async fn listen(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr.to_string()
}

/// A registry whose every answer is `answer(path)`; counts the requests it gets.
async fn hostile(
    answer: impl Fn(&str) -> Response + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let router = Router::new().fallback(move |uri: Uri, _: HeaderMap| {
        let answer = answer.clone();
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            answer(uri.path())
        }
    });
    (listen(router).await, hits)
}

/// An internal service whose every answer carries the secret.
async fn internal_service() -> String {
    listen(Router::new().fallback(|| async {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("db password={SECRET}"),
        )
    }))
    .await
}

fn redirect(to: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// A body of `total` bytes in 1 MiB chunks, without a Content-Length.
fn stream_of(total: usize) -> Body {
    let chunk = Bytes::from(vec![b' '; 1024 * 1024]);
    let chunks = total / chunk.len();
    Body::from_stream(futures::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    ))
}

/// One byte a second, forever.
fn drip() -> Body {
    Body::from_stream(futures::stream::unfold((), |_| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"{")), ()))
    }))
}

fn manifest_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/vnd.oci.image.manifest.v1+json",
        )],
        body,
    )
        .into_response()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn reference(text: &str) -> ImageReference {
    ImageReference::parse(text).unwrap()
}

fn client(insecure: &str, timeout: Duration) -> Registry {
    Registry::new(vec![insecure.to_string()], timeout, Metrics::new())
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: ServeConfig,
}

/// The admission server's state, with `flags` (and decisions logged through tracing).
fn app(flags: &[&str], spec: Value) -> Arc<App> {
    let args = [
        "webhook",
        "--log-format",
        "text",
        "--shutdown-delay-seconds",
        "0",
    ]
    .iter()
    .chain(flags)
    .copied();
    let app = zastava_webhook::app(&Args::parse_from(args).config, None, None);
    let policy: ZastavaPolicy = serde_json::from_value(json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "base", "generation": 1}, "spec": spec,
    }))
    .unwrap();
    app.set_policies(PolicySet::build(&[Arc::new(policy)]));
    app
}

/// Decides on a Pod of `images` in `namespace`: (allowed, message, warnings, annotations).
async fn decide(app: &App, namespace: &str, images: &[&str]) -> (bool, String, Value, Value) {
    let containers: Vec<Value> = (images.iter().enumerate())
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "operation": "CREATE", "namespace": namespace,
            "object": {"kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": containers}}}});
    let (status, body) = app.handle(review.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let response = &answer["response"];
    (
        response["allowed"].as_bool().unwrap(),
        response["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        response["warnings"].clone(),
        response["auditAnnotations"].clone(),
    )
}

#[tokio::test]
async fn an_image_a_registry_independent_gate_denies_is_never_fetched() {
    let (host, hits) = hostile(|_| StatusCode::NOT_FOUND.into_response()).await;
    let app = app(
        &["--insecure-registries", &host],
        json!({"images": {"allowedRegistries": ["ghcr.io"], "bannedTags": ["latest"]},
               "verify": {"signature": {"required": true}}}),
    );
    for image in [format!("{host}/x:y"), "ghcr.io/acme/app:latest".to_string()] {
        let (allowed, message, ..) = decide(&app, "team", &[&image]).await;
        assert!(!allowed, "{image}");
        assert!(
            message.contains("allowedRegistries") || message.contains("banned"),
            "{message}"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the denied registry was contacted"
    );
}

#[tokio::test]
async fn a_redirect_to_an_internal_service_leaks_nothing_into_the_denial() {
    let internal = internal_service().await;
    let (host, _) = hostile(move |path| redirect(format!("http://{internal}{path}"))).await;
    let app = app(
        &["--insecure-registries", &host],
        json!({"verify": {"signature": {"required": true}}}),
    );
    let (allowed, message, warnings, _) = decide(&app, "team", &[&format!("{host}/x:y")]).await;
    assert!(!allowed);
    assert!(message.contains("verification failed"), "{message}");
    assert!(!message.contains(SECRET), "{message}");
    assert!(!warnings.to_string().contains(SECRET), "{warnings}");
}

#[tokio::test]
async fn a_token_realm_on_an_internal_service_leaks_nothing_into_the_denial() {
    let internal = internal_service().await;
    let (host, _) = hostile(move |_| {
        let challenge = format!(r#"Bearer realm="http://{internal}/token",service="r""#);
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            format!("registry says {SECRET}"),
        )
            .into_response()
    })
    .await;
    let app = app(
        &["--insecure-registries", &host],
        json!({"verify": {"signature": {"required": true}}}),
    );
    let (allowed, message, ..) = decide(&app, "team", &[&format!("{host}/x:y")]).await;
    assert!(!allowed);
    assert!(!message.contains(SECRET), "{message}");
}

#[tokio::test]
async fn a_redirect_to_another_address_class_is_refused_before_connecting() {
    // The registry is on loopback; link-local (cloud metadata) and private addresses are
    // another class, refused without a connection (which would hang or fail differently).
    let (host, _) = hostile(|path| {
        if path.contains("/manifests/") {
            redirect("http://169.254.169.254/latest/meta-data/".to_string())
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    })
    .await;
    let webhook = client(&host, Duration::from_secs(3));
    let started = Instant::now();
    let error = webhook
        .resolve(&reference(&format!("{host}/x:y")), &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(error.message.contains("refused"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_token_realm_on_another_address_class_is_refused_before_connecting() {
    let (host, _) = hostile(|_| {
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="http://10.255.255.1/token""#,
            )],
        )
            .into_response()
    })
    .await;
    let webhook = client(&host, Duration::from_secs(3));
    let started = Instant::now();
    let error = webhook
        .resolve(&reference(&format!("{host}/x:y")), &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(error.message.contains("refused"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_manifest_that_streams_128_mb_is_too_large() {
    let (host, _) = hostile(|_| {
        (
            [(
                header::CONTENT_TYPE,
                "application/vnd.oci.image.manifest.v1+json",
            )],
            stream_of(HUGE),
        )
            .into_response()
    })
    .await;
    let webhook = client(&host, Duration::from_secs(20));
    let error = webhook
        .resolve(&reference(&format!("{host}/x:y")), &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(error.message.contains("too large"), "{error}");
}

#[tokio::test]
async fn a_signature_layer_declared_small_that_streams_128_mb_is_too_large() {
    let subject = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#.to_vec();
    let digest = sha256(&subject);
    let tag = digest.replace(':', "-");
    let signature =
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": format!("sha256:{}", "a".repeat(64)), "size": 200,
                    "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}}]})
        .to_string()
        .into_bytes();
    let served_subject = subject.clone();
    let (host, _) = hostile(move |path| {
        if path.ends_with(&format!("/manifests/{digest}")) {
            manifest_response(served_subject.clone())
        } else if path.ends_with(&format!("/manifests/{tag}.sig")) {
            manifest_response(signature.clone())
        } else if path.contains("/blobs/") {
            stream_of(HUGE).into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    })
    .await;
    let webhook = client(&host, Duration::from_secs(20));
    let error = webhook
        .facts(&host, "x", &sha256(&subject), &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(error.message.contains("too large"), "{error}");
}

#[tokio::test]
async fn a_registry_answering_a_byte_a_second_meets_the_deadline_with_the_namespace_fail_mode() {
    let (host, _) = hostile(|_| drip().into_response()).await;
    let app = app(
        &[
            "--insecure-registries",
            &host,
            "--registry-timeout-ms",
            "3000",
            "--decision-deadline-ms",
            "1500",
        ],
        json!({"failOpenNamespaces": ["lenient"], "images": {"bannedTags": ["latest"]},
               "verify": {"signature": {"required": true}}}),
    );
    let slow = format!("{host}/x:y");

    let started = Instant::now();
    let (allowed, message, ..) = decide(&app, "team", &[&slow]).await;
    let took = started.elapsed();
    assert!(!allowed);
    assert!(
        message.contains("verification did not finish within the deadline"),
        "{message}"
    );
    assert!(took < Duration::from_millis(2000), "took {took:?}");

    let started = Instant::now();
    let (allowed, _, warnings, annotations) = decide(&app, "lenient", &[&slow]).await;
    assert!(allowed, "a fail-open namespace admits");
    assert!(started.elapsed() < Duration::from_millis(2000));
    assert!(
        warnings
            .to_string()
            .contains("did not finish within the deadline"),
        "{warnings}"
    );
    assert_eq!(annotations["zastava.stellaops.io/fail-open"], "true");

    // The registry-independent gates still decide, also in a fail-open namespace.
    let started = Instant::now();
    let (allowed, message, ..) = decide(&app, "lenient", &[&slow, "ghcr.io/acme/app:latest"]).await;
    assert!(!allowed);
    assert!(message.contains("banned"), "{message}");
    assert!(started.elapsed() < Duration::from_millis(2000));
}
