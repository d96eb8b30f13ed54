//! With the registry down, verification cannot complete: a fail-open namespace admits with a
//! warning, every other namespace is denied with a message that says so.
//! (A test binary of its own: stopping the registry would disturb tests running beside it.)

use std::time::Duration;

use serde_json::json;
use zastava_e2e::webhook::logged_decisions;
use zastava_e2e::{
    apply_policy, client, create_namespace, delete_namespace, delete_policy, env, http_get,
    kubectl_apply, kubectl_apply_args, metric, unique, wait_for, wait_ready, CosignKeys,
    RegistryDown, TestImage,
};

fn pod(namespace: &str, image: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "outage", "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": image, "command": ["sleep", "60"]}]},
    })
    .to_string()
}

async fn fail_open_admissions() -> f64 {
    let (_, body) = http_get(&env("ZASTAVA_WEBHOOK_METRICS_URL"))
        .await
        .expect("webhook metrics");
    metric(&body, "zastava_admission_fail_open_total").unwrap_or(0.0)
}

#[tokio::test]
async fn registry_down_fails_open_only_where_the_policy_says() {
    let client = client().await;
    let open = unique("e2e-open");
    let closed = unique("e2e-closed");
    create_namespace(&client, &open, json!({})).await;
    create_namespace(&client, &closed, json!({})).await;
    let keys = CosignKeys::generate();
    let policy = unique("e2e-outage");
    apply_policy(
        &client,
        &policy,
        json!({
            "namespaces": [open, closed],
            "failOpenNamespaces": [open],
            "verify": {"signature": {"required": true, "keys": [{"name": "k", "pem": keys.public_pem}]}},
        }),
    )
    .await;
    wait_ready(&client, &policy, "True").await;

    // The policy is in force in both namespaces (an unsigned image is denied in each).
    let unsigned = TestImage::push(&unique("outage-unsigned"), "v1");
    for ns in [&open, &closed] {
        wait_for(
            &format!("the policy in force in {ns}"),
            Duration::from_secs(60),
            || {
                let result =
                    kubectl_apply_args(&pod(ns, &unsigned.by_tag()), &["--dry-run=server"]);
                async move {
                    matches!(result, Err(e) if e.contains("no cosign signature verifies"))
                        .then_some(())
                }
            },
        )
        .await;
    }

    // An image the webhook has never looked up, so no cached verdict can answer for it.
    let fresh = TestImage::push(&unique("outage-fresh"), "v1");
    keys.sign(&fresh.by_digest());
    let before = fail_open_admissions().await;
    {
        let _down = RegistryDown::stop();
        let denied = kubectl_apply(&pod(&closed, &fresh.by_tag()))
            .expect_err("a fail-closed namespace must deny when the registry is down");
        assert!(
            denied.contains("verification failed") && denied.contains(&fresh.by_tag()),
            "{denied}"
        );

        let warnings = kubectl_apply(&pod(&open, &fresh.by_tag()))
            .expect("a fail-open namespace admits when the registry is down");
        assert!(
            warnings.contains("Warning:") && warnings.contains("fail-open namespace: admitted"),
            "{warnings}"
        );
        assert_eq!(fail_open_admissions().await, before + 1.0);
    }

    // The decision records say which fail mode decided, and that the lookup failed.
    for (ns, decision, fail_mode) in [
        (&closed, "Deny", "failClosed"),
        (&open, "Allow", "failOpen"),
    ] {
        let lines = logged_decisions(ns, &fresh.repository);
        let line = lines.last().expect("a decision line on the fresh image");
        assert_eq!(line["decision"]["decision"], decision, "{line}");
        assert_eq!(line["fail_mode"], fail_mode, "{line}");
        assert_eq!(
            (&line["kind"], &line["name"]),
            (&json!("Pod"), &json!("outage")),
            "{line}"
        );
        assert_eq!(
            line["cache"],
            json!([{"image": fresh.by_tag(), "status": "error"}]),
            "{line}"
        );
    }

    // Registry back: the signed image is admitted in the fail-closed namespace too.
    wait_for(
        "the signed image admitted once the registry is back",
        Duration::from_secs(60),
        || {
            let result = kubectl_apply_args(&pod(&closed, &fresh.by_tag()), &["--dry-run=server"]);
            async move { result.is_ok().then_some(()) }
        },
    )
    .await;

    delete_policy(&client, &policy).await;
    delete_namespace(&client, &open).await;
    delete_namespace(&client, &closed).await;
}
