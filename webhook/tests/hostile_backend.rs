//! A hostile policy backend (`verify.backend`) on 127.0.0.1: an answer that streams 128 MB,
//! one that arrives a byte a second, and redirects to an internal service. Every decision ends
//! inside the decision deadline, as the policy's `required` and the namespace's fail mode say
//! (a required backend that gave no usable answer denies, except in a fail-open namespace; an
//! optional one warns), reads no more of the answer than `MAX_BACKEND_BODY_BYTES`, and nothing
//! the backend or the internal service sent reaches a message.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use zastava_webhook::backend::POLICY_PATH;
use zastava_webhook::limits::{DEADLINE_REASON, MAX_BACKEND_BODY_BYTES};

use common::*;

/// Pinned: backends are asked about digests, and a tag would need ghcr.io to resolve it.
const IMAGE: &str =
    "ghcr.io/acme/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DEADLINE: Duration = Duration::from_millis(1500);
/// What a decision may take past the deadline (the evaluation and the answer itself).
const MARGIN: Duration = Duration::from_millis(500);

/// A backend at `url` that policies ask, with a policy timeout longer than the deadline:
/// (required, in an enforced and a fail-open namespace; optional).
fn apps(
    url: &str,
) -> (
    Arc<zastava_webhook::server::App>,
    Arc<zastava_webhook::server::App>,
) {
    let deadline = DEADLINE.as_millis().to_string();
    let flags = ["--decision-deadline-ms", deadline.as_str()];
    let backend = |required: bool| json!({"url": url, "required": required, "timeoutSeconds": 10});
    (
        app(
            &flags,
            json!({"failOpenNamespaces": ["lenient"], "verify": {"backend": backend(true)}}),
        ),
        app(&flags, json!({"verify": {"backend": backend(false)}})),
    )
}

/// Decides on a Pod of [`IMAGE`] in `namespace`, checking that it took no longer than the
/// deadline and that nothing the backend or an internal service sent is in the answer.
async fn decided(
    app: &zastava_webhook::server::App,
    namespace: &str,
) -> (bool, String, Value, Value) {
    let started = Instant::now();
    let answer = decide(app, namespace, &[IMAGE]).await;
    let took = started.elapsed();
    assert!(took < DEADLINE + MARGIN, "{namespace}: took {took:?}");
    let (_, message, warnings, annotations) = &answer;
    for text in [
        message.clone(),
        warnings.to_string(),
        annotations.to_string(),
    ] {
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("backend says"), "{text}");
    }
    answer
}

/// The three outcomes for a backend that gave no usable answer, `reason` being why.
async fn fail_modes(url: &str, reason: &str) {
    let (required, optional) = apps(url);

    let (allowed, message, ..) = decided(&required, "team").await;
    assert!(!allowed, "a required backend without an answer denies");
    assert!(
        message.contains(&format!("base: verification failed: {reason}")),
        "{message}"
    );

    let (allowed, _, warnings, annotations) = decided(&required, "lenient").await;
    assert!(allowed, "a fail-open namespace admits");
    let warnings = warnings.to_string();
    assert!(warnings.contains(reason), "{warnings}");
    assert!(
        warnings.contains("fail-open namespace: admitted"),
        "{warnings}"
    );
    assert_eq!(annotations["zastava.stellaops.io/fail-open"], "true");

    let (allowed, _, warnings, _) = decided(&optional, "team").await;
    assert!(allowed, "an optional backend without an answer only warns");
    let warnings = warnings.to_string();
    assert!(
        warnings.contains(&format!(
            "backend verdict unavailable (not required): {reason}"
        )),
        "{warnings}"
    );
}

/// A backend at `http://host:port` whose every answer is `answer()`; counts its requests.
async fn backend(
    answer: impl Fn() -> Response + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let (host, hits) = hostile(move |_| answer()).await;
    (format!("http://{host}"), hits)
}

#[tokio::test]
async fn a_backend_answer_that_streams_128_mb_is_cut_at_the_cap() {
    let streamed = Arc::new(AtomicUsize::new(0));
    let counter = streamed.clone();
    let (url, hits) = backend(move || {
        // A verdict that never closes, quoting a secret, then spaces without end in sight.
        let start = format!(
            r#"{{"results": {{"{IMAGE}": {{"policyVerdict": "fail", "reasons": ["backend says {SECRET}"#
        );
        let chunk = Bytes::from(vec![b' '; 1024 * 1024]);
        let counter = counter.clone();
        let body = futures::stream::iter(std::iter::once(Bytes::from(start)).chain(
            (0..HUGE / chunk.len()).map(move |_| chunk.clone()),
        ))
        .map(move |bytes| {
            counter.fetch_add(bytes.len(), Ordering::SeqCst);
            Ok::<_, std::io::Error>(bytes)
        });
        ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response()
    })
    .await;
    fail_modes(
        &url,
        &format!("backend {url}{POLICY_PATH}: unusable answer"),
    )
    .await;
    // Three decisions, one call each (an unusable answer is not retried).
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // What the backend got to send: the cap, and no more than what the sockets buffer
    // before the webhook hangs up.
    let sent = streamed.load(Ordering::SeqCst);
    assert!(
        sent <= 3 * (MAX_BACKEND_BODY_BYTES + 16 * 1024 * 1024),
        "the backend streamed {sent} bytes"
    );
}

#[tokio::test]
async fn a_backend_answering_a_byte_a_second_meets_the_deadline() {
    let (url, _) =
        backend(|| ([(header::CONTENT_TYPE, "application/json")], drip()).into_response()).await;
    fail_modes(&url, DEADLINE_REASON).await;
}

#[tokio::test]
async fn a_backend_that_redirects_to_an_internal_service_is_not_followed() {
    let (internal, internal_hits) = hostile(|_| {
        // What an internal service would answer, were it asked: the secret, or a verdict
        // that lets the image in.
        let pass = json!({"results": {IMAGE: {"policyVerdict": "pass",
                                              "reasons": [format!("backend says {SECRET}")]}}});
        json_response(pass)
    })
    .await;
    for status in [StatusCode::TEMPORARY_REDIRECT, StatusCode::FOUND] {
        let to = format!("http://{internal}{POLICY_PATH}");
        let (url, hits) = backend(move || {
            (
                status,
                [(header::LOCATION, to.clone())],
                format!("backend says {SECRET}"),
            )
                .into_response()
        })
        .await;
        fail_modes(&url, &format!("backend {url}{POLICY_PATH}: HTTP {status}")).await;
        assert_eq!(hits.load(Ordering::SeqCst), 3, "one call per decision");
    }
    assert_eq!(
        internal_hits.load(Ordering::SeqCst),
        0,
        "the internal service was contacted"
    );
}
