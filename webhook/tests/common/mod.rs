//! What the hostile-registry and hostile-backend suites share: small servers on ephemeral
//! ports that count what reaches them, hostile answers, and the admission server's state with
//! one policy installed.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use clap::Parser;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use zastava_crds::image::ImageReference;
use zastava_crds::ZastavaPolicy;
use zastava_registry::metrics::RegistryMetrics;
use zastava_registry::Registry;
use zastava_webhook::policies::PolicySet;
use zastava_webhook::server::App;
use zastava_webhook::ServeConfig;

/// What an internal service holds; must never appear in a message.
pub const SECRET: &str = "hunter2-internal-password";
pub const HUGE: usize = 128 * 1024 * 1024;

/// Serves `router` on a fresh port of 127.0.0.1 and returns `host:port`.
pub async fn listen(router: Router) -> String {
    listen_on("127.0.0.1".parse().unwrap(), router).await
}

/// Serves `router` on a fresh port of `ip` and returns `host:port`.
pub async fn listen_on(ip: IpAddr, router: Router) -> String {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr.to_string()
}

/// A router whose every answer is `answer(path)`, counting the requests it gets.
pub fn counting(
    answer: impl Fn(&str) -> Response + Clone + Send + Sync + 'static,
) -> (Router, Arc<AtomicUsize>) {
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
    (router, hits)
}

/// A registry on 127.0.0.1 whose every answer is `answer(path)`; counts the requests it gets.
pub async fn hostile(
    answer: impl Fn(&str) -> Response + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    hostile_on("127.0.0.1".parse().unwrap(), answer).await
}

/// The same on `ip`.
pub async fn hostile_on(
    ip: IpAddr,
    answer: impl Fn(&str) -> Response + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let (router, hits) = counting(answer);
    (listen_on(ip, router).await, hits)
}

/// What an internal service answers: the secret.
pub fn secret_answer(_: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("db password={SECRET}"),
    )
        .into_response()
}

/// An internal service on 127.0.0.1 whose every answer carries the secret.
pub async fn internal_service() -> String {
    hostile(secret_answer).await.0
}

/// An internal service on `ip` whose every answer carries the secret; counts its requests.
pub async fn internal_service_on(ip: IpAddr) -> (String, Arc<AtomicUsize>) {
    hostile_on(ip, secret_answer).await
}

pub fn redirect(to: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// A body of `total` bytes in 1 MiB chunks, without a Content-Length.
pub fn stream_of(total: usize) -> Body {
    let chunk = Bytes::from(vec![b' '; 1024 * 1024]);
    let chunks = total / chunk.len();
    Body::from_stream(futures::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    ))
}

/// One byte a second, forever.
pub fn drip() -> Body {
    Body::from_stream(futures::stream::unfold((), |_| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"{")), ()))
    }))
}

pub fn manifest_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/vnd.oci.image.manifest.v1+json",
        )],
        body,
    )
        .into_response()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn reference(text: &str) -> ImageReference {
    ImageReference::parse(text).unwrap()
}

/// The webhook's registry client, speaking plain HTTP to `insecure` only.
pub fn client(insecure: &str, timeout: Duration) -> Registry {
    Registry::new(vec![insecure.to_string()], timeout, RegistryMetrics::new())
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: ServeConfig,
}

/// The policy set of one policy named `base` with `spec` (the one place a suite builds one).
pub fn policy_set(spec: Value) -> PolicySet {
    let policy: ZastavaPolicy = serde_json::from_value(json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "base", "generation": 1}, "spec": spec,
    }))
    .unwrap();
    PolicySet::build(&[Arc::new(policy)])
}

/// The admission server's state, with `flags` (and decisions logged through tracing).
pub fn app(flags: &[&str], spec: Value) -> Arc<App> {
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
    app.set_policies(policy_set(spec));
    app
}

/// Decides on a Pod of `images` in `namespace`: (allowed, message, warnings, annotations).
pub async fn decide(app: &App, namespace: &str, images: &[&str]) -> (bool, String, Value, Value) {
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

/// `value` as an `application/json` answer.
pub fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}
