//! The operator reconciles ZastavaPolicy objects on the real cluster.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;
use zastava_crds::ZastavaPolicy;
use zastava_e2e::{
    apply_policy, client, condition, cosign_public_key, delete_policy, env, http_get, metric,
    unique, wait_for, wait_ready,
};

/// These tests are about the operator's verdict on the policy object; the policies govern a
/// namespace that does not exist, so the webhook tests' pods never meet them.
const UNGOVERNED: &str = "e2e-policy-objects-only";

fn key_spec(keys: serde_json::Value) -> serde_json::Value {
    json!({
        "mode": "Enforce",
        "namespaces": [UNGOVERNED],
        "images": {"bannedTags": ["latest"]},
        "verify": {"signature": {"required": true, "keys": keys}}
    })
}

#[tokio::test]
async fn valid_policy_with_inline_and_secret_keys_becomes_ready() {
    let client = client().await;
    let name = unique("e2e-valid");
    let secret_name = unique("e2e-key");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &env("ZASTAVA_NAMESPACE"));
    let stored_key = cosign_public_key();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": secret_name},
        "stringData": {"cosign.pub": stored_key},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let applied = apply_policy(
        &client,
        &name,
        key_spec(json!([
            {"name": "inline", "pem": cosign_public_key()},
            {"name": "from-secret", "secretRef": {"name": secret_name}},
        ])),
    )
    .await;
    let policy = wait_ready(&client, &name, "True").await;
    let status = policy.status.as_ref().unwrap();
    assert_eq!(status.resolved_keys, Some(2));
    assert_eq!(status.observed_generation, applied.metadata.generation);
    assert_eq!(condition(&policy, "Accepted").unwrap().status, "True");
    assert!(condition(&policy, "Stalled").is_none());
    // The Secret's key is published for the webhook (which reads no key Secret), re-encoded.
    assert_eq!(status.secret_keys.len(), 1, "{status:?}");
    assert_eq!(status.secret_keys[0].name, "from-secret");
    assert_eq!(status.secret_keys[0].pem, stored_key);

    // Deleted, its key leaves the status at once (the operator watches the Secrets; the
    // resync is 5 minutes away).
    secrets
        .delete(&secret_name, &DeleteParams::default())
        .await
        .unwrap();
    let api: Api<ZastavaPolicy> = Api::all(client.clone());
    let withdrawn = std::time::Instant::now();
    wait_for(
        "the deleted Secret's key to leave the policy's status",
        Duration::from_secs(30),
        || async {
            let p = api.get(&name).await.ok()?;
            let status = p.status?;
            (status.secret_keys.is_empty() && status.resolved_keys == Some(1)).then_some(())
        },
    )
    .await;
    println!(
        "key Secret deleted: withdrawn from the status after {:.1} s",
        withdrawn.elapsed().as_secs_f64()
    );

    delete_policy(&client, &name).await;
}

#[tokio::test]
async fn malformed_pem_is_rejected_naming_the_field_then_fixed() {
    let client = client().await;
    let name = unique("e2e-badpem");
    let applied = apply_policy(
        &client,
        &name,
        key_spec(json!([
            {"name": "good", "pem": cosign_public_key()},
            {"name": "bad", "pem": "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n"},
        ])),
    )
    .await;
    let policy = wait_ready(&client, &name, "False").await;
    let ready = condition(&policy, "Ready").unwrap();
    assert_eq!(ready.reason, "InvalidKey");
    assert!(
        ready
            .message
            .starts_with("spec.verify.signature.keys[1].pem: "),
        "message does not name the field: {}",
        ready.message
    );
    assert_eq!(condition(&policy, "Stalled").unwrap().status, "True");
    assert_eq!(policy.status.as_ref().unwrap().resolved_keys, Some(1));

    // The rejection is also an Event on the policy (cluster-scoped: filed in `kube-system`).
    let events: Api<Event> = Api::namespaced(client.clone(), "kube-system");
    let uid = applied.metadata.uid.clone().unwrap();
    let event = wait_for("the rejection Event", Duration::from_secs(30), || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.regarding.as_ref().and_then(|r| r.uid.as_ref()) == Some(&uid))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reason.as_deref(), Some("PolicyRejectedInvalidKey"));
    assert!(event
        .note
        .unwrap()
        .contains("spec.verify.signature.keys[1].pem"));

    // Fixing the key makes the same object Ready at its new generation.
    apply_policy(
        &client,
        &name,
        key_spec(json!([
            {"name": "good", "pem": cosign_public_key()},
            {"name": "bad", "pem": cosign_public_key()},
        ])),
    )
    .await;
    let fixed = wait_ready(&client, &name, "True").await;
    assert!(fixed.metadata.generation > applied.metadata.generation);
    assert!(condition(&fixed, "Stalled").is_none());
    assert_eq!(fixed.status.unwrap().resolved_keys, Some(2));

    delete_policy(&client, &name).await;
}

#[tokio::test]
async fn missing_secret_is_reported_until_it_appears() {
    let client = client().await;
    let name = unique("e2e-nosecret");
    let secret_name = unique("e2e-later");
    apply_policy(
        &client,
        &name,
        key_spec(json!([{"name": "later", "secretRef": {"name": secret_name}}])),
    )
    .await;
    let policy = wait_ready(&client, &name, "False").await;
    let ready = condition(&policy, "Ready").unwrap();
    assert_eq!(ready.reason, "SecretNotFound");
    assert!(ready.message.contains(&secret_name), "{}", ready.message);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &env("ZASTAVA_NAMESPACE"));
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": secret_name},
        "stringData": {"cosign.pub": cosign_public_key()},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // Picked up on the operator's retry of rejected policies (every 20 s).
    let api: Api<ZastavaPolicy> = Api::all(client.clone());
    wait_for(
        "the policy to turn Ready once its Secret exists",
        Duration::from_secs(60),
        || async {
            let p = api.get(&name).await.ok()?;
            (condition(&p, "Ready")?.status == "True").then_some(())
        },
    )
    .await;

    delete_policy(&client, &name).await;
    secrets
        .delete(&secret_name, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn deleting_and_reapplying_a_policy_works() {
    let client = client().await;
    let name = unique("e2e-reapply");
    let spec = key_spec(json!([{"name": "k", "pem": cosign_public_key()}]));
    let first = apply_policy(&client, &name, spec.clone()).await;
    wait_ready(&client, &name, "True").await;
    delete_policy(&client, &name).await;

    let second = apply_policy(&client, &name, spec).await;
    assert_ne!(first.metadata.uid, second.metadata.uid);
    let policy = wait_ready(&client, &name, "True").await;
    assert_eq!(policy.status.unwrap().resolved_keys, Some(1));
    delete_policy(&client, &name).await;
}

#[tokio::test]
async fn operator_exposes_reconcile_metrics_and_probes() {
    let client = client().await;
    let name = unique("e2e-metrics");
    apply_policy(
        &client,
        &name,
        json!({"namespaces": [UNGOVERNED], "images": {
            "allowedRegistries": ["ghcr.io/acme"],
            "deniedRegistries": ["ghcr.io/acme"],
        }}),
    )
    .await;
    // The schema admits each entry; the operator rejects the contradiction.
    let policy = wait_ready(&client, &name, "False").await;
    assert_eq!(
        condition(&policy, "Ready").unwrap().reason,
        "InvalidRegistry"
    );

    // The operator counts a reconciliation once it has written the status and filed the
    // Event, so the counter can trail the status the test just saw by a moment.
    let url = env("ZASTAVA_OPERATOR_URL");
    let body = wait_for(
        "the InvalidRegistry rejection to be counted",
        Duration::from_secs(30),
        || async {
            let (status, body) = http_get(&format!("{url}/metrics")).await?;
            let rejected = metric(
                &body,
                r#"zastava_operator_policy_rejections_total{reason="InvalidRegistry"}"#,
            )?;
            (status == 200 && rejected >= 1.0).then_some(body)
        },
    )
    .await;
    assert_eq!(metric(&body, "zastava_operator_leader"), Some(1.0));
    assert!(body.contains("zastava_operator_reconcile_duration_seconds_bucket"));
    assert_eq!(http_get(&format!("{url}/healthz")).await.unwrap().0, 200);
    assert_eq!(http_get(&format!("{url}/readyz")).await.unwrap().0, 200);

    delete_policy(&client, &name).await;
}
