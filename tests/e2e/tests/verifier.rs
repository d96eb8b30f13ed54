//! Continuous verification on the real cluster: a signed workload running under its policy,
//! then the policy bans the tag the workload uses and requires a digest, which its pod spec
//! does not name. Within 60 s the workload's RuntimePosture says `PolicyViolation`, naming
//! the policy, the tag and the digest rule, an Event on the Deployment says so, and the
//! verdict in status is the one `zastava-webhook check` gives for the same image and policy
//! (the verifier looks up the digest that runs, but judges the reference as the spec wrote
//! it).

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::Api;
use serde_json::{json, Value};
use zastava_crds::posture::Verdict;
use zastava_e2e::observer::{compliant_when, deploy_image, running_pod};
use zastava_e2e::webhook::{pod, strict_policy, Governed};
use zastava_e2e::{apply_policy, client, env, unique, wait_for, wait_ready, TestImage};

#[tokio::test]
async fn a_running_workload_is_judged_again_when_its_policy_changes() {
    let client = client().await;
    let governed = Governed::new("e2e-verify", "Enforce").await;
    let ns = governed.ns.clone();
    let image = TestImage::push(&unique("verify"), "v1");
    governed.keys.sign(&image.by_digest());
    image.attach_sbom();
    deploy_image(&client, &ns, "web", &image.by_tag(), &["sleep", "3600"]).await;
    running_pod(&client, &ns, "web").await;

    // The verifier's first verdict on what runs: signed, with an SBOM, passing.
    let posture = compliant_when(
        &client,
        &ns,
        "deployment-web",
        "its image verified and Compliant",
        Duration::from_secs(180),
        |p, status, _| {
            status == "True"
                && p.status.as_ref().is_some_and(|s| {
                    s.images
                        .iter()
                        .any(|i| i.verdict == Some(Verdict::Pass) && i.checked_at.is_some())
                })
        },
    )
    .await;
    let entry = &posture.status.as_ref().unwrap().images[0];
    assert_eq!(entry.reference, image.by_tag());
    assert_eq!(entry.digest.as_deref(), Some(image.digest.as_str()));
    assert_eq!((entry.signed, entry.sbom_present), (Some(true), Some(true)));

    // Today's policy bans the tag it runs, and requires a digest.
    let mut spec = strict_policy(&ns, &[&governed.keys.public_pem], "Enforce");
    spec["images"]["bannedTags"] = json!(["latest", "v1"]);
    spec["images"]["requireDigest"] = json!(true);
    apply_policy(&client, &governed.policy, spec.clone()).await;
    let changed = Instant::now();
    let posture = compliant_when(
        &client,
        &ns,
        "deployment-web",
        "PolicyViolation after the policy banned its tag",
        Duration::from_secs(60),
        |_, status, reason| status == "False" && reason == "PolicyViolation",
    )
    .await;
    println!(
        "policy changed: PolicyViolation in the posture after {:.1} s",
        changed.elapsed().as_secs_f64()
    );
    wait_ready(&client, &governed.policy, "True").await;
    let status = posture.status.as_ref().unwrap();
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Compliant")
        .unwrap();
    let expected = [
        format!("{}: tag `v1` is banned", governed.policy),
        format!(
            "{}: a digest is required (reference the image as repo@sha256:...)",
            governed.policy
        ),
    ];
    for reason in &expected {
        assert!(condition.message.contains(reason), "{condition:?}");
    }
    let entry = &status.images[0];
    assert_eq!(entry.verdict, Some(Verdict::Fail));
    assert_eq!(entry.reasons, expected);

    // An Event on the Deployment.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let event = wait_for(
        "a PolicyViolation Event on the Deployment",
        Duration::from_secs(30),
        || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("PolicyViolation")
                        && e.regarding.as_ref().is_some_and(|r| {
                            r.kind.as_deref() == Some("Deployment")
                                && r.name.as_deref() == Some("web")
                        })
                })
        },
    )
    .await;
    let note = event.note.as_deref().unwrap_or_default();
    for reason in &expected {
        assert!(note.contains(reason), "{event:?}");
    }

    // `check`, as CI runs it, says the same of the same image under the same policy.
    let dir = std::env::temp_dir().join(unique("verify-check"));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "ZastavaPolicy",
        "metadata": {"name": governed.policy}, "spec": spec,
    });
    std::fs::write(dir.join("policy.json"), policy.to_string()).unwrap();
    std::fs::write(dir.join("pod.json"), pod(&ns, "web", &image.by_tag())).unwrap();
    let out = std::process::Command::new(env("ZASTAVA_WEBHOOK_BIN"))
        .args(["check", "--policy"])
        .arg(dir.join("policy.json"))
        .arg("--object")
        .arg(dir.join("pod.json"))
        .args(["--insecure-registries", &env("ZASTAVA_REGISTRY")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "check denies");
    let decision: Value = serde_json::from_slice(&out.stdout).unwrap();
    let checked = &decision["images"][0];
    assert_eq!(checked["policyVerdict"], "fail");
    assert_eq!(checked["reasons"], json!(entry.reasons));
    assert_eq!(checked["signed"], json!(entry.signed));
    assert_eq!(checked["hasSbomReferrers"], json!(entry.sbom_present));
    let _ = std::fs::remove_dir_all(&dir);

    governed.remove().await;
}
