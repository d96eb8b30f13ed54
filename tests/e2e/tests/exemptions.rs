//! Exemptions a tenant cannot grant itself: the labels the webhook configuration selects on
//! (`zastava.stellaops.io/ignore`, `zastava.stellaops.io/fail-open`) are the operator's. On a
//! governed namespace someone else labels, the operator removes them at once (an Event on the
//! namespace, a metric), and admission through the real apiserver keeps denying.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::Api;
use zastava_e2e::webhook::{pod, Governed};
use zastava_e2e::{client, env, http_get, kubectl, kubectl_apply, kubectl_apply_args, metric};
use zastava_e2e::{unique, wait_for, TestImage};

const IGNORE: &str = "zastava.stellaops.io/ignore";
const FAIL_OPEN: &str = "zastava.stellaops.io/fail-open";

fn denied_unsigned(result: &Result<String, String>) -> bool {
    matches!(result, Err(e) if e.contains("denied the request")
        && e.contains("no cosign signature verifies against the policy's keys"))
}

async fn removed_count(label: &str) -> f64 {
    let url = env("ZASTAVA_OPERATOR_URL");
    let Some((200, body)) = http_get(&format!("{url}/metrics")).await else {
        return 0.0;
    };
    metric(
        &body,
        &format!("zastava_operator_exemption_labels_removed_total{{label=\"{label}\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn exemption_labels_set_by_a_tenant_are_removed_and_admission_still_denies() {
    let governed = Governed::new("e2e-exempt", "Enforce").await;
    let ns = governed.ns.clone();
    let client = client().await;
    let unsigned = TestImage::push(&unique("exempt-unsigned"), "v1");
    let manifest = pod(&ns, "unsigned", &unsigned.by_tag());
    // The policy is in force for the namespace.
    let dry_run = manifest.clone();
    wait_for(
        "the unsigned image denied before any label",
        Duration::from_secs(60),
        || {
            let denied = denied_unsigned(&kubectl_apply_args(&dry_run, &["--dry-run=server"]));
            async move { denied.then_some(()) }
        },
    )
    .await;
    let before = (removed_count(IGNORE).await, removed_count(FAIL_OPEN).await);

    // The tenant (anyone with `patch namespaces`) exempts its own namespace.
    kubectl(&[
        "label",
        "namespace",
        &ns,
        &format!("{IGNORE}=true"),
        &format!("{FAIL_OPEN}=true"),
        "--overwrite",
    ]);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait_for(
        "the operator to remove both exemption labels",
        Duration::from_secs(30),
        || async {
            // No label left at all is `None`.
            let labels = namespaces
                .get(&ns)
                .await
                .ok()?
                .metadata
                .labels
                .unwrap_or_default();
            (!labels.contains_key(IGNORE) && !labels.contains_key(FAIL_OPEN)).then_some(())
        },
    )
    .await;
    let labels = namespaces.get(&ns).await.unwrap().metadata.labels;
    let labels = labels.unwrap_or_default();
    assert!(!labels.contains_key(IGNORE), "{labels:?}");
    assert!(!labels.contains_key(FAIL_OPEN), "{labels:?}");

    // One Event per label, on the namespace (cluster-scoped: filed in kube-system).
    let uid = namespaces.get(&ns).await.unwrap().metadata.uid.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "kube-system");
    let notes = wait_for("the removal Events", Duration::from_secs(30), || async {
        let notes: Vec<String> = events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.as_ref()) == Some(&uid))
            .filter(|e| e.reason.as_deref() == Some("ExemptionLabelRemoved"))
            .inspect(|e| assert_eq!(e.type_.as_deref(), Some("Warning")))
            .filter_map(|e| e.note)
            .collect();
        let both = [IGNORE, FAIL_OPEN]
            .iter()
            .all(|label| notes.iter().any(|n| n.contains(&format!("{label}=true"))));
        both.then_some(notes)
    })
    .await;
    assert!(
        notes.iter().all(|n| n.starts_with("removed label ")),
        "{notes:?}"
    );
    assert!(removed_count(IGNORE).await > before.0);
    assert!(removed_count(FAIL_OPEN).await > before.1);

    // Admission is what it was: the apiserver calls the fail-closed webhook again (its view
    // of the namespace's labels may lag a moment), and a real create is denied.
    let dry_run = manifest.clone();
    wait_for(
        "the unsigned image denied after the labels were removed",
        Duration::from_secs(10),
        || {
            let denied = denied_unsigned(&kubectl_apply_args(&dry_run, &["--dry-run=server"]));
            async move { denied.then_some(()) }
        },
    )
    .await;
    let result = kubectl_apply(&manifest);
    assert!(denied_unsigned(&result), "{result:?}");

    governed.remove().await;
}
