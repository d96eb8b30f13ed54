//! Helpers of the webhook's end-to-end tests: manifests, and a namespace governed by a strict
//! policy of its own.

use std::time::Duration;

use kube::Client;
use serde_json::{json, Value};

use crate::{
    apply_policy, client, create_namespace, delete_namespace, delete_policy, env,
    kubectl_apply_args, unique, wait_for, wait_ready, CosignKeys,
};

/// A Pod running `image` (pulled every time, so the registry is asked).
pub fn pod(namespace: &str, name: &str, image: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [{"name": "app", "image": image, "command": ["sleep", "3600"],
                            "imagePullPolicy": "Always"}],
            "terminationGracePeriodSeconds": 0,
        },
    })
    .to_string()
}

/// A one-replica Deployment of `image`.
pub fn deployment(namespace: &str, name: &str, image: &str) -> String {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image,
                                         "command": ["sleep", "3600"]}],
                         "terminationGracePeriodSeconds": 0},
            },
        },
    })
    .to_string()
}

/// Signature (one key), CycloneDX SBOM and no `latest`, governing `namespace` only.
pub fn strict_policy(namespace: &str, keys: &[&str], mode: &str) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, pem)| json!({"name": format!("key{i}"), "pem": pem}))
        .collect();
    json!({
        "mode": mode,
        "namespaces": [namespace],
        "images": {"bannedTags": ["latest"]},
        "verify": {
            "signature": {"required": true, "keys": keys},
            "sbomReferrer": {"required": true},
        },
    })
}

/// A namespace of its own, governed by a strict policy of its own trusting a fresh key.
pub struct Governed {
    client: Client,
    pub ns: String,
    pub keys: CosignKeys,
    pub policy: String,
}

impl Governed {
    pub async fn new(prefix: &str, mode: &str) -> Self {
        let client = client().await;
        let ns = unique(prefix);
        create_namespace(&client, &ns, json!({})).await;
        let keys = CosignKeys::generate();
        let policy = unique(prefix);
        apply_policy(
            &client,
            &policy,
            strict_policy(&ns, &[&keys.public_pem], mode),
        )
        .await;
        wait_ready(&client, &policy, "True").await;
        wait_in_force(&ns).await;
        Self {
            client,
            ns,
            keys,
            policy,
        }
    }

    pub async fn remove(self) {
        delete_policy(&self.client, &self.policy).await;
        delete_namespace(&self.client, &self.ns).await;
    }
}

/// Waits until admission in `namespace` goes through the webhook under its policy: the
/// ValidatingWebhookConfiguration has no webhooks while no policy exists (a test binary whose
/// tests run alone starts from there), and the operator, the apiserver and the webhook pick a
/// new policy up a moment after it is Ready. Probes with a server-side dry run of a Pod whose `latest` tag the
/// strict policy bans (decided before any registry call), in a repository no test uses.
pub async fn wait_in_force(namespace: &str) {
    let repository = format!("{}/e2e/in-force-probe", env("ZASTAVA_REGISTRY"));
    let probe = pod(namespace, "in-force-probe", &format!("{repository}:latest"));
    wait_for(
        "the webhook deciding under the namespace's policy",
        Duration::from_secs(60),
        || {
            // Denied (Enforce) or admitted with warnings (Audit): the decision is logged.
            let _ = kubectl_apply_args(&probe, &["--dry-run=server"]);
            let in_force = logged_decisions(namespace, &repository).iter().any(|d| {
                d["decision"]["images"][0]["reasons"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            });
            async move { in_force.then_some(()) }
        },
    )
    .await;
}

/// The webhook's decision lines so far on images of `repository` in `namespace`, oldest
/// first.
pub fn logged_decisions(namespace: &str, repository: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(env("ZASTAVA_WEBHOOK_LOG")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "admission decision" && l["namespace"] == namespace)
        .filter(|l| {
            l["decision"]["images"][0]["name"]
                .as_str()
                .is_some_and(|d| d.contains(repository))
        })
        .collect()
}
