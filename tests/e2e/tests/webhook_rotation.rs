//! Rotating the webhook's serving certificate while pods are being admitted in a loop loses no
//! admission request: the operator re-issues through a CSR, the webhook swaps the certificate
//! from the Secret without a restart, and the apiserver keeps trusting it through the
//! reconciled caBundle. (A test binary of its own: it replaces the shared TLS Secret.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;
use zastava_e2e::{
    apply_policy, client, create_namespace, delete_namespace, delete_policy, env, http_get, metric,
    unique, wait_for, wait_ready,
};

async fn tls_reloads() -> f64 {
    let url = env("ZASTAVA_WEBHOOK_METRICS_URL");
    let (_, body) = http_get(&url).await.expect("webhook metrics");
    metric(
        &body,
        r#"zastava_webhook_tls_reloads_total{result="loaded"}"#,
    )
    .unwrap_or(0.0)
}

fn pod(image: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"generateName": "rotation-"},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }))
    .unwrap()
}

#[tokio::test]
async fn serving_certificate_rotation_under_load_loses_no_admission() {
    let client = client().await;
    let ns = unique("e2e-rotation");
    create_namespace(&client, &ns, json!({})).await;
    let policy = unique("e2e-rotation");
    apply_policy(
        &client,
        &policy,
        json!({"namespaces": [ns], "images": {"bannedTags": ["latest"]}}),
    )
    .await;
    wait_ready(&client, &policy, "True").await;

    // The policy is in force: `latest` is refused by the webhook (fail-closed namespace).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    wait_for("the policy in force", Duration::from_secs(60), || async {
        match pods.create(&dry_run, &pod("busybox:latest")).await {
            Err(kube::Error::Api(e)) if e.message.contains("tag `latest` is banned") => Some(()),
            _ => None,
        }
    })
    .await;

    // Admissions in a loop, each a real call from the apiserver to the webhook.
    let stop = Arc::new(AtomicBool::new(false));
    let admitted = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let image = env("ZASTAVA_TEST_IMAGE");
    let load = {
        let (pods, stop, admitted, failures) = (
            pods.clone(),
            stop.clone(),
            admitted.clone(),
            failures.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match pods.create(&dry_run, &pod(&image)).await {
                    Ok(_) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        })
    };

    // Two rotations: the TLS Secret goes away, the operator issues a new certificate through
    // a new CSR, and the webhook loads it.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &env("ZASTAVA_NAMESPACE"));
    let tls_secret = std::env::var("ZASTAVA_WEBHOOK_TLS_SECRET")
        .unwrap_or_else(|_| "zastava-webhook-tls".to_string());
    for round in 0..2 {
        let before = secrets.get(&tls_secret).await.unwrap();
        let old_cert = before.data.unwrap()["tls.crt"].0.clone();
        let reloads = tls_reloads().await;
        secrets
            .delete(&tls_secret, &DeleteParams::default())
            .await
            .unwrap();
        wait_for(
            &format!("rotation {round}: a new certificate served by the webhook"),
            Duration::from_secs(60),
            || async {
                let secret = secrets.get_opt(&tls_secret).await.ok()??;
                let cert = secret.data?.get("tls.crt")?.0.clone();
                (cert != old_cert && tls_reloads().await > reloads).then_some(())
            },
        )
        .await;
        // Let admissions run on the new certificate for a while.
        let count = admitted.load(Ordering::Relaxed);
        wait_for(
            "admissions after the rotation",
            Duration::from_secs(30),
            || {
                let done = admitted.load(Ordering::Relaxed) >= count + 20;
                async move { done.then_some(()) }
            },
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} admissions failed during rotation, first: {:?}",
        failures.len(),
        failures.len() + admitted.load(Ordering::Relaxed),
        failures.first()
    );
    assert!(admitted.load(Ordering::Relaxed) >= 40);

    delete_policy(&client, &policy).await;
    delete_namespace(&client, &ns).await;
}
