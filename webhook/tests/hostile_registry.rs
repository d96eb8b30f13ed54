//! A hostile registry on 127.0.0.1: redirects to internal services, token realms pointing at
//! internal addresses, bodies declared small that stream 128 MB, and answers dripping one
//! byte a second. Every decision ends inside the deadline, reads no more than its caps, and
//! no internal service's text reaches a message the pod author reads. Over TLS:
//! `hostile_registry_tls.rs`.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use oci_client::secrets::RegistryAuth;
use serde_json::json;

use common::*;

/// The fixed reason of a redirect or realm not followed (not any "refused" a server's answer
/// may lead to, such as "credentials refused").
const REFUSED: &str = "redirect or token realm refused";

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
    assert!(error.message.contains(REFUSED), "{error}");
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
    assert!(error.message.contains(REFUSED), "{error}");
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
