//! A fail-open admission closed once the registry is back: with the registry stopped, a signed
//! and an unsigned workload are admitted in a fail-open namespace (their images are on the
//! node already) and their postures say `AdmittedFailOpen`; the registry started again,
//! within 60 s the unsigned one says `PolicyViolation` (with an Event) and the signed one is
//! `Compliant`. (A test binary of its own: stopping the registry would disturb tests running
//! beside it.)

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::Api;
use serde_json::json;
use zastava_crds::posture::Verdict;
use zastava_e2e::observer::{compliant_when, deploy_image, running_pod};
use zastava_e2e::{
    apply_policy, client, create_namespace, delete_namespace, delete_policy, unique, wait_ready,
    CosignKeys, RegistryDown, TestImage,
};

#[tokio::test]
async fn a_fail_open_admission_is_verified_once_the_registry_is_back() {
    let client = client().await;
    let keys = CosignKeys::generate();
    let signed = TestImage::push(&unique("vo-signed"), "v1");
    keys.sign(&signed.by_digest());
    let unsigned = TestImage::push(&unique("vo-unsigned"), "v1");

    // Both images pulled onto the node first, where no policy governs: their pods can start
    // while the registry is down (IfNotPresent, a `v1` tag).
    let pull = unique("e2e-vo-pull");
    create_namespace(&client, &pull, json!({})).await;
    deploy_image(
        &client,
        &pull,
        "signed",
        &signed.by_tag(),
        &["sleep", "3600"],
    )
    .await;
    deploy_image(
        &client,
        &pull,
        "unsigned",
        &unsigned.by_tag(),
        &["sleep", "3600"],
    )
    .await;
    running_pod(&client, &pull, "signed").await;
    running_pod(&client, &pull, "unsigned").await;
    delete_namespace(&client, &pull).await;

    let ns = unique("e2e-vo");
    create_namespace(&client, &ns, json!({})).await;
    let policy = unique("e2e-vo");
    apply_policy(
        &client,
        &policy,
        json!({"namespaces": [ns], "failOpenNamespaces": [ns],
               "verify": {"signature": {"required": true,
                          "keys": [{"name": "release", "pem": keys.public_pem}]}}}),
    )
    .await;
    wait_ready(&client, &policy, "True").await;

    let down = RegistryDown::stop();
    deploy_image(&client, &ns, "signed", &signed.by_tag(), &["sleep", "3600"]).await;
    deploy_image(
        &client,
        &ns,
        "unsigned",
        &unsigned.by_tag(),
        &["sleep", "3600"],
    )
    .await;
    running_pod(&client, &ns, "signed").await;
    running_pod(&client, &ns, "unsigned").await;
    for workload in ["deployment-signed", "deployment-unsigned"] {
        let posture = compliant_when(
            &client,
            &ns,
            workload,
            "admitted fail-open",
            Duration::from_secs(180),
            |_, status, reason| status == "False" && reason == "AdmittedFailOpen",
        )
        .await;
        let entry = &posture.status.as_ref().unwrap().images[0];
        assert!(entry.admitted_fail_open, "{entry:?}");
        assert_eq!(entry.verdict, None, "{entry:?}");
        assert!(
            entry
                .reasons
                .iter()
                .any(|r| r.contains("verification failed")),
            "{entry:?}"
        );
    }

    drop(down);
    let back = Instant::now();
    let violation = compliant_when(
        &client,
        &ns,
        "deployment-unsigned",
        "PolicyViolation once the registry is back",
        Duration::from_secs(60),
        |_, status, reason| status == "False" && reason == "PolicyViolation",
    )
    .await;
    println!(
        "registry back: the unsigned workload's PolicyViolation after {:.1} s",
        back.elapsed().as_secs_f64()
    );
    let entry = &violation.status.as_ref().unwrap().images[0];
    assert_eq!(entry.verdict, Some(Verdict::Fail));
    assert!(!entry.admitted_fail_open);
    assert_eq!(entry.signed, Some(false));
    let fine = compliant_when(
        &client,
        &ns,
        "deployment-signed",
        "Compliant once the registry is back",
        Duration::from_secs(60),
        |_, status, _| status == "True",
    )
    .await;
    println!(
        "registry back: the signed workload Compliant after {:.1} s",
        back.elapsed().as_secs_f64()
    );
    let entry = &fine.status.as_ref().unwrap().images[0];
    assert_eq!(entry.verdict, Some(Verdict::Pass));
    assert_eq!(entry.signed, Some(true));

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<(String, String)> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| {
            let name = e.regarding?.name?;
            Some((name, e.reason?))
        })
        .collect();
    for expected in [
        ("unsigned", "AdmittedFailOpen"),
        ("unsigned", "PolicyViolation"),
        ("signed", "AdmittedFailOpen"),
        ("signed", "ImageVerified"),
    ] {
        assert!(
            reasons
                .iter()
                .any(|(n, r)| n == expected.0 && r == expected.1),
            "{expected:?} not among {reasons:?}"
        );
    }

    delete_policy(&client, &policy).await;
    delete_namespace(&client, &ns).await;
}
