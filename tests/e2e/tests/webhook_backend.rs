//! The backend contract on the real cluster: a Scanner-like backend over HTTPS with a CA of
//! its own (given to the policy as `caBundle`) that answers only callers presenting a bearer
//! token, read by the webhook from a Secret in Zastava's namespace. Pods created through the
//! real apiserver, of images pushed by tag to the real registry: the backend is asked about
//! the digests the registry resolved the tags to, its `fail` denies with its reasons, its
//! Rekor entry is kept in the decision record, a token rotated in the Secret is used without
//! a restart, and the operator reports a missing credential Secret on the policy.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use zastava_e2e::webhook::{logged_decisions, pod};
use zastava_e2e::{
    apply_policy, client, condition, create_namespace, delete_namespace, delete_policy, env,
    kubectl_apply_args, unique, wait_for, wait_ready, TestImage,
};

mod scanner;

use scanner::{backend, token_secret, REASON};

/// Creates `name` in the namespace by server-side dry run; the apiserver's message on denial.
fn dry_run(ns: &str, name: &str, image: &str) -> Result<String, String> {
    kubectl_apply_args(&pod(ns, name, image), &["--dry-run=server"])
}

// Multi-threaded: the backend runs in this process and must answer while the test blocks on
// kubectl, whose request waits for the webhook, which waits for the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_https_backend_with_a_token_decides_on_resolved_digests() {
    let client = client().await;
    let ns = unique("e2e-backend");
    create_namespace(&client, &ns, json!({})).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &env("ZASTAVA_NAMESPACE"));
    let secret = unique("e2e-scanner-token");
    secrets
        .create(
            &PostParams::default(),
            &token_secret(&secret, "first-token\n"),
        )
        .await
        .unwrap();
    let scanner = backend("127.0.0.1".parse().unwrap(), "first-token").await;
    let policy = unique("e2e-backend");
    apply_policy(
        &client,
        &policy,
        json!({"namespaces": [ns], "verify": {"backend": {
            "url": scanner.url, "required": true, "caBundle": scanner.ca_pem,
            "minTlsVersion": "1.3",
            "auth": {"bearerTokenSecretRef": {"name": secret}}}}}),
    )
    .await;
    wait_ready(&client, &policy, "True").await;

    // Denied by the backend's verdict, with its reason: once the webhook has the policy.
    let denied = TestImage::push(&unique("backend-denied"), "v1");
    let message = wait_for(
        "the backend's verdict to deny a Pod",
        Duration::from_secs(60),
        || {
            let outcome = dry_run(&ns, "denied", &denied.by_tag());
            async move { outcome.err().filter(|m| m.contains("backend verdict fail")) }
        },
    )
    .await;
    assert!(message.contains(REASON), "{message}");

    // Admitted: asked about the digest the tag resolved to, with the token.
    let good = TestImage::push(&unique("backend-good"), "v1");
    dry_run(&ns, "good", &good.by_tag()).expect("admitted on the backend's pass");
    let asked = scanner.asked.lock().unwrap().clone();
    assert!(
        asked.contains(&("Bearer first-token".to_string(), json!([good.by_digest()]))),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .all(|(_, images)| images[0].as_str().unwrap_or_default().contains("@sha256:")),
        "only resolved digests are sent: {asked:?}"
    );
    // The decision record keeps the backend's Rekor entry and the resolved reference.
    let decisions = logged_decisions(&ns, &good.repository);
    let image = &decisions.last().expect("a decision line")["decision"]["images"][0];
    assert_eq!(image["rekor"]["uuid"], "e2".repeat(32), "{image}");
    assert_eq!(image["resolved"], good.by_digest(), "{image}");

    // The token rotates: the backend takes only the new one, the Secret gets it, and the
    // webhook uses it within its refresh (30 s) without a restart. An image never asked
    // about, so no cached verdict answers.
    *scanner.token.lock().unwrap() = "second-token".to_string();
    let rotated = TestImage::push(&unique("backend-rotated"), "v1");
    let stale = dry_run(&ns, "rotated", &rotated.by_tag()).unwrap_err();
    assert!(stale.contains("HTTP 401 Unauthorized"), "{stale}");
    secrets
        .patch(
            &secret,
            &PatchParams::apply("zastava-e2e").force(),
            &Patch::Apply(token_secret(&secret, "second-token")),
        )
        .await
        .unwrap();
    wait_for(
        "the rotated token to be used",
        Duration::from_secs(75),
        || {
            let admitted = dry_run(&ns, "rotated", &rotated.by_tag()).is_ok();
            async move { admitted.then_some(()) }
        },
    )
    .await;

    // The Secret goes: the operator says so on the policy.
    secrets
        .delete(&secret, &DeleteParams::default())
        .await
        .unwrap();
    let rejected = wait_ready(&client, &policy, "False").await;
    let ready = condition(&rejected, "Ready").unwrap();
    assert_eq!(ready.reason, "SecretNotFound", "{ready:?}");
    assert!(ready.message.contains(&secret), "{ready:?}");

    delete_policy(&client, &policy).await;
    delete_namespace(&client, &ns).await;
}
