//! What a registry said with one namespace's pull Secrets stays that namespace's: the verdict
//! cache shares anonymous lookups across namespaces, never credentialed ones.

mod common;

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{json, Value};

use common::*;

/// Decides a Pod of `image` in `namespace` with `pull_secrets`; whether it was allowed.
async fn decide_with(
    app: &zastava_webhook::server::App,
    namespace: &str,
    image: &str,
    pull_secrets: &[&str],
) -> bool {
    let secrets: Vec<Value> = pull_secrets.iter().map(|s| json!({"name": s})).collect();
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "operation": "CREATE", "namespace": namespace,
            "object": {"kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": image}],
                         "imagePullSecrets": secrets}}}});
    let (status, body) = app.handle(review.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["response"]["allowed"]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn credentialed_lookups_are_cached_per_namespace_anonymous_ones_shared() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec();
    let digest = sha256(&manifest);
    let served = manifest.clone();
    let (host, requests) = hostile(move |path| {
        if path.contains("/manifests/sha256:") && !path.contains(".sig") {
            manifest_response(served.clone())
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    })
    .await;
    let app = app(
        &["--insecure-registries", &host],
        // The image has no SBOM: denied, and that answer is cached (for the negative TTL).
        json!({"verify": {"sbomReferrer": {"required": true}}}),
    );
    let image = format!("{host}/private/app@{digest}");
    let asked = || requests.load(Ordering::SeqCst);

    // With team-a's pull Secret: looked up, then cached for team-a.
    assert!(!decide_with(&app, "team-a", &image, &["registry-creds"]).await);
    let first = asked();
    assert!(first > 0);
    assert!(!decide_with(&app, "team-a", &image, &["registry-creds"]).await);
    assert_eq!(
        asked(),
        first,
        "team-a's second decision asked the registry"
    );
    // Another namespace, without credentials: what team-a's lookup found is not reused.
    assert!(!decide_with(&app, "team-b", &image, &[]).await);
    let anonymous = asked();
    assert!(
        anonymous > first,
        "team-b was answered from team-a's credentialed lookup"
    );
    // Anonymous lookups are shared: a third namespace without credentials asks nothing.
    assert!(!decide_with(&app, "team-c", &image, &[]).await);
    assert_eq!(asked(), anonymous);
}
