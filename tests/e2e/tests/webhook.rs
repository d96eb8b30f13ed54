//! The admission webhook on the real cluster: the apiserver calls it (registered by the
//! operator with the CSR-issued caBundle) and it verifies real cosign signatures and SBOM
//! referrers in the local registry.
//!
//! Every test works in namespaces of its own, with policies that govern only those, so the
//! tests can run side by side.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::{json, Value};
use zastava_e2e::webhook::{deployment, logged_decisions, pod, strict_policy, Governed};
use zastava_e2e::{
    apply_policy, client, create_namespace, delete_namespace, delete_policy, env, kubectl_apply,
    kubectl_apply_args, unique, wait_for, CosignKeys, TestImage,
};

/// Polls a server-side dry run of `manifest` (the apiserver calls the webhook for it) until
/// `accept` holds for its outcome: the webhook may need a moment to see a new policy, and the
/// operator to extend its configuration to it.
async fn outcome(what: &str, manifest: &str, accept: impl Fn(&Result<String, String>) -> bool) {
    let dry_run = manifest.to_string();
    wait_for(what, Duration::from_secs(60), || {
        let result = kubectl_dry_run(&dry_run);
        let ok = accept(&result);
        async move { ok.then_some(()) }
    })
    .await;
}

fn kubectl_dry_run(manifest: &str) -> Result<String, String> {
    kubectl_apply_args(manifest, &["--dry-run=server"])
}

fn denied_with(result: &Result<String, String>, needle: &str) -> bool {
    matches!(result, Err(e) if e.contains("denied the request") && e.contains(needle))
}

async fn wait_running(namespace: &str, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client().await, namespace);
    wait_for(
        &format!("pod {namespace}/{name} Running"),
        Duration::from_secs(120),
        || async {
            let pod = pods.get_opt(name).await.ok()??;
            (pod.status?.phase.as_deref() == Some("Running")).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn only_signed_images_with_an_sbom_and_no_latest_tag_are_admitted() {
    let governed = Governed::new("e2e-wh-gates", "Enforce").await;
    let ns = governed.ns.clone();

    let unsigned = TestImage::push(&unique("unsigned"), "v1");
    outcome(
        "an unsigned image to be denied naming the image and the reason",
        &pod(&ns, "unsigned", &unsigned.by_tag()),
        |r| {
            denied_with(r, &unsigned.by_tag())
                && denied_with(r, "no cosign signature verifies against the policy's keys")
        },
    )
    .await;

    let signed_only = TestImage::push(&unique("nosbom"), "v1");
    governed.keys.sign(&signed_only.by_digest());
    let result = kubectl_apply(&pod(&ns, "nosbom", &signed_only.by_tag()));
    assert!(
        denied_with(&result, "no SBOM referrer of an accepted type"),
        "{result:?}"
    );
    assert!(!denied_with(&result, "no cosign signature"), "{result:?}");

    let good_name = unique("good");
    let good = TestImage::push(&good_name, "v1");
    governed.keys.sign(&good.by_digest());
    good.attach_sbom();
    // The same signed digest, by the banned tag.
    let latest = TestImage::push(&good_name, "latest");
    let result = kubectl_apply(&pod(&ns, "latest", &latest.by_tag()));
    assert!(denied_with(&result, "tag `latest` is banned"), "{result:?}");

    kubectl_apply(&pod(&ns, "good", &good.by_tag())).expect("signed image with an SBOM admitted");
    wait_running(&ns, "good").await;

    // The decision records (issue 13) of a deny and an allow: the object by kind, namespace
    // and name, no fail mode (every gate was answered), each image's cache status.
    let denied = logged_decisions(&ns, &unsigned.repository);
    let denied = denied
        .iter()
        .rfind(|l| l["decision"]["decision"] == "Deny")
        .expect("a decision line denying the unsigned image");
    let allowed = logged_decisions(&ns, &good.repository);
    let allowed = allowed
        .iter()
        .rfind(|l| l["name"] == "good" && l["decision"]["decision"] == "Allow")
        .expect("a decision line admitting pod good");
    for (line, name, image) in [
        (denied, "unsigned", unsigned.by_tag()),
        (allowed, "good", good.by_tag()),
    ] {
        assert_eq!(
            (&line["kind"], &line["name"], &line["namespace"]),
            (&json!("Pod"), &json!(name), &json!(ns)),
            "{line}"
        );
        assert_eq!(line["fail_mode"], "none", "{line}");
        assert!(line.get("owner").is_none(), "{line}");
        assert!(line.get("backend_latency_ms").is_none(), "{line}");
        let cache = line["cache"].as_array().expect("cache statuses");
        assert_eq!(cache.len(), 1, "{line}");
        assert_eq!(cache[0]["image"], image.as_str(), "{line}");
        assert!(
            cache[0]["status"] == "hit" || cache[0]["status"] == "miss",
            "{line}"
        );
    }

    governed.remove().await;
}

#[tokio::test]
async fn a_deployment_template_is_verified_before_its_pods() {
    let governed = Governed::new("e2e-wh-deploy", "Enforce").await;
    let ns = governed.ns.clone();

    let unsigned = TestImage::push(&unique("deploy-unsigned"), "v1");
    outcome(
        "a Deployment of an unsigned image to be denied",
        &deployment(&ns, "bad", &unsigned.by_tag()),
        |r| denied_with(r, "no cosign signature verifies"),
    )
    .await;

    let good = TestImage::push(&unique("deploy-good"), "v1");
    governed.keys.sign(&good.by_digest());
    good.attach_sbom();
    kubectl_apply(&deployment(&ns, "good", &good.by_tag())).expect("Deployment admitted");

    // Both were decided (the verdict cache's part is in webhook_cache.rs).
    let (deployment_decision, pod_decision) = wait_for(
        "the webhook's decisions on the Deployment and its Pod",
        Duration::from_secs(120),
        || async {
            let mine = logged_decisions(&ns, &good.repository);
            let deployment = mine.iter().find(|l| l["kind"] == "Deployment")?.clone();
            let pod = mine.iter().find(|l| l["kind"] == "Pod")?.clone();
            Some((deployment, pod))
        },
    )
    .await;
    // The Deployment is named by itself; its Pod, whose name is generated, also by the
    // ReplicaSet that controls it.
    assert_eq!(deployment_decision["name"], "good", "{deployment_decision}");
    assert!(
        deployment_decision.get("owner").is_none(),
        "{deployment_decision}"
    );
    assert!(
        pod_decision["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("good-")),
        "{pod_decision}"
    );
    assert_eq!(
        pod_decision["owner"]["kind"], "ReplicaSet",
        "{pod_decision}"
    );
    let replica_set = pod_decision["owner"]["name"].as_str().unwrap_or_default();
    assert!(replica_set.starts_with("good-"), "{pod_decision}");
    assert!(
        pod_decision["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(&format!("{replica_set}-"))),
        "{pod_decision}"
    );
    assert_eq!(pod_decision["fail_mode"], "none");
    // The contract, nested in the line as an object.
    let contract = &pod_decision["decision"];
    assert_eq!(contract["schemaVersion"], "zastava.admission.decision@v1.1");
    assert_eq!(contract["decision"], "Allow");
    assert_eq!(contract["images"][0]["signed"], true);
    assert_eq!(contract["images"][0]["hasSbomReferrers"], true);
    assert_eq!(
        contract["images"][0]["resolved"],
        good.by_digest().as_str(),
        "{contract}"
    );

    governed.remove().await;
}

#[tokio::test]
async fn audit_mode_admits_with_warnings() {
    let governed = Governed::new("e2e-wh-audit", "Audit").await;
    let ns = governed.ns.clone();

    let unsigned = TestImage::push(&unique("audit"), "v1");
    let manifest = pod(&ns, "audited", &unsigned.by_tag());
    outcome(
        "an Audit warning for an unsigned image",
        &manifest,
        |r| matches!(r, Ok(warnings) if warnings.contains("(Audit: admitted)")),
    )
    .await;
    let warnings = kubectl_apply(&manifest).expect("Audit mode admits");
    assert!(
        warnings.contains("Warning:") && warnings.contains("no cosign signature verifies"),
        "{warnings}"
    );

    governed.remove().await;
}

#[tokio::test]
async fn editing_the_policy_keys_flips_the_decision_without_a_restart() {
    let client = client().await;
    let ns = unique("e2e-wh-keys");
    create_namespace(&client, &ns, json!({})).await;
    let old_key = CosignKeys::generate();
    let new_key = CosignKeys::generate();
    let image = TestImage::push(&unique("rekeyed"), "v1");
    new_key.sign(&image.by_digest());
    image.attach_sbom();
    let webhook_pid = std::fs::read_to_string(env("ZASTAVA_WEBHOOK_PID")).unwrap();

    let policy = unique("e2e-wh-keys");
    apply_policy(
        &client,
        &policy,
        strict_policy(&ns, &[&old_key.public_pem], "Enforce"),
    )
    .await;
    let manifest = pod(&ns, "rekeyed", &image.by_tag());
    outcome("denied under the old key", &manifest, |r| {
        denied_with(r, "no cosign signature verifies")
    })
    .await;

    apply_policy(
        &client,
        &policy,
        strict_policy(&ns, &[&new_key.public_pem], "Enforce"),
    )
    .await;
    outcome("admitted under the new key", &manifest, |r| r.is_ok()).await;
    assert_eq!(
        std::fs::read_to_string(env("ZASTAVA_WEBHOOK_PID")).unwrap(),
        webhook_pid,
        "the webhook was restarted"
    );

    delete_policy(&client, &policy).await;
    delete_namespace(&client, &ns).await;
}

/// `zastava-webhook check` as CI runs it before a policy is applied: live lookups against the
/// real registry decide on the real signature.
#[tokio::test]
async fn the_check_cli_verifies_against_the_live_registry() {
    let keys = CosignKeys::generate();
    let signed = TestImage::push(&unique("check-signed"), "v1");
    keys.sign(&signed.by_digest());
    let unsigned = TestImage::push(&unique("check-unsigned"), "v1");
    let dir = std::env::temp_dir().join(unique("check"));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": "signed-only"},
        "spec": {"verify": {"signature": {"required": true,
                                          "keys": [{"name": "release", "pem": keys.public_pem}]}}},
    });
    std::fs::write(dir.join("policy.json"), policy.to_string()).unwrap();
    // The decision the CLI prints for a pod of `image`, once its exit code is the expected one.
    let check = |image: &str, exit: i32| -> Value {
        std::fs::write(dir.join("pod.json"), pod("team", "p", image)).unwrap();
        let out = std::process::Command::new(env("ZASTAVA_WEBHOOK_BIN"))
            .args(["check", "--policy"])
            .arg(dir.join("policy.json"))
            .arg("--object")
            .arg(dir.join("pod.json"))
            .args(["--insecure-registries", &env("ZASTAVA_REGISTRY")])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(exit),
            "{image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let decision = check(&signed.by_tag(), 0);
    assert_eq!(decision["images"][0]["signed"], true);
    assert_eq!(
        decision["images"][0]["resolved"],
        signed.by_digest().as_str()
    );

    // A signature stored as an OCI 1.1 referrer (no `.sig` tag) verifies the same.
    let referred = TestImage::push(&unique("check-referrer"), "v1");
    keys.sign_as_referrer(&referred.by_digest());
    let tags = reqwest::get(format!(
        "http://{}/v2/{}/tags/list",
        env("ZASTAVA_REGISTRY"),
        referred.repository.split_once('/').unwrap().1
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(!tags.contains(".sig"), "cosign wrote a .sig tag: {tags}");
    let decision = check(&referred.by_tag(), 0);
    assert_eq!(decision["images"][0]["signed"], true);

    let decision = check(&unsigned.by_tag(), 1);
    assert_eq!(decision["decision"], "Deny");
    assert_eq!(decision["images"][0]["signed"], false);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A digest a node observer reported drifting is refused where `runtime.denyDriftedImages` is
/// set; deleting the policy lifts it at once.
#[tokio::test]
async fn drifted_digests_are_denied_until_the_policy_is_deleted() {
    let client = client().await;
    let ns = unique("e2e-wh-drift");
    create_namespace(&client, &ns, json!({})).await;
    let image = TestImage::push(&unique("drifted"), "v1");
    // What the node observer reports: the container running this digest drifted.
    let postures: Api<zastava_crds::RuntimePosture> = Api::namespaced(client.clone(), &ns);
    let spec = json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "RuntimePosture",
        "metadata": {"name": "deployment-web"},
        "spec": {"workload": {"kind": "Deployment", "name": "web"}},
    });
    let apply = |manager: &str| kube::api::PatchParams::apply(manager).force();
    postures
        .patch(
            "deployment-web",
            &apply("zastava-observer"),
            &kube::api::Patch::Apply(&spec),
        )
        .await
        .unwrap();
    let node = env("ZASTAVA_NODE");
    let observation = json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "RuntimePosture",
        "status": {"nodes": [{"node": node,
            "containers": [{"pod": "web-1", "container": "app", "containerId": "containerd://1",
                            "imageRef": image.by_tag(), "imageDigest": image.digest}],
            "drift": [{"kind": "process", "pod": "web-1", "container": "app", "subject": "/tmp/evil",
                       "evidence": [{"signal": "procfs.exe", "value": "/tmp/evil"}]}]}]},
    });
    postures
        .patch_status(
            "deployment-web",
            &apply(&format!("zastava-observer-{node}")),
            &kube::api::Patch::Apply(&observation),
        )
        .await
        .unwrap();

    let policy = unique("e2e-wh-drift");
    apply_policy(
        &client,
        &policy,
        json!({"namespaces": [ns], "runtime": {"denyDriftedImages": true}}),
    )
    .await;
    let manifest = pod(&ns, "again", &image.by_tag());
    outcome("the drifted digest denied", &manifest, |r| {
        denied_with(r, "drifted at runtime (web-1/app on")
    })
    .await;

    delete_policy(&client, &policy).await;
    outcome("admitted once the policy is gone", &manifest, |r| r.is_ok()).await;
    delete_namespace(&client, &ns).await;
}
