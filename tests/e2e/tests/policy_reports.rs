//! PolicyReports on the real cluster: once the wg-policy PolicyReport CRD is installed (the
//! test's copy, `tests/e2e/crds/`, whose header says where it comes from), the verifier finds
//! the API by itself (`--policy-reports auto`) and writes the namespace's report, which lists
//! the verdicts the RuntimePosture holds: one result per Pod, policy and image. (A test binary
//! of its own: it installs and removes a CRD.)

use std::process::Command;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{json, Value};
use zastava_crds::posture::Verdict;
use zastava_crds::RuntimePosture;
use zastava_e2e::observer::{deploy_image, running_pod};
use zastava_e2e::webhook::{strict_policy, Governed};
use zastava_e2e::{apply_policy, client, unique, wait_for, TestImage};

const CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/wgpolicyk8s.io_policyreports.yaml"
);

fn kubectl(args: &[&str]) {
    let out = Command::new("kubectl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The CRD, removed again (with every report) when the test ends, passed or not.
struct Crd;

impl Drop for Crd {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "-f", CRD, "--ignore-not-found", "--wait=false"])
            .output();
    }
}

#[tokio::test]
async fn the_namespace_report_lists_the_verifiers_results() {
    kubectl(&["apply", "-f", CRD]);
    let _crd = Crd;
    kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/policyreports.wgpolicyk8s.io",
    ]);

    let client = client().await;
    let governed = Governed::new("e2e-polr", "Enforce").await;
    let ns = governed.ns.clone();
    let image = TestImage::push(&unique("polr"), "v1");
    governed.keys.sign(&image.by_digest());
    image.attach_sbom();
    deploy_image(&client, &ns, "web", &image.by_tag(), &["sleep", "3600"]).await;
    let pod = running_pod(&client, &ns, "web").await;
    let pod = pod.metadata.name.unwrap();
    // Today's policy bans the tag it runs: a failing result.
    let mut spec = strict_policy(&ns, &[&governed.keys.public_pem], "Enforce");
    spec["images"]["bannedTags"] = json!(["latest", "v1"]);
    apply_policy(&client, &governed.policy, spec).await;

    let postures: Api<RuntimePosture> = Api::namespaced(client.clone(), &ns);
    let entry = wait_for(
        "the posture's verdict under the changed policy",
        Duration::from_secs(120),
        || async {
            let p = postures.get_opt("deployment-web").await.ok()??;
            let image = p.status?.images.into_iter().next()?;
            (image.verdict == Some(Verdict::Fail)).then_some(image)
        },
    )
    .await;

    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        "policyreports",
    );
    let reports: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let policy = governed.policy.clone();
    // Found within the verifier's check of the API (every minute) and its rebuild interval.
    let result: Value = wait_for(
        "the namespace's PolicyReport to list the failing result",
        Duration::from_secs(120),
        || async {
            let report = reports.get_opt("zastava").await.ok()??;
            let results = report.data["results"].as_array()?.clone();
            results.into_iter().find(|r| {
                r["policy"] == policy.as_str()
                    && r["result"] == "fail"
                    && r["resources"][0]["name"] == pod.as_str()
            })
        },
    )
    .await;
    // The same verdict and reasons as the posture (the report's message has no policy prefix).
    let prefix = format!("{}: ", governed.policy);
    let reasons: Vec<&str> = entry
        .reasons
        .iter()
        .filter_map(|r| r.strip_prefix(&prefix))
        .collect();
    assert_eq!(result["message"], reasons.join("; "), "{result}");
    assert_eq!(result["message"], "tag `v1` is banned");
    assert_eq!(result["rule"], "verify-image");
    assert_eq!(result["source"], "zastava");
    assert_eq!(result["properties"]["image"], image.by_tag());
    assert_eq!(result["properties"]["digest"], image.digest.as_str());
    assert_eq!(result["resources"][0]["kind"], "Pod");
    let report = reports.get("zastava").await.unwrap();
    assert!(
        report.data["summary"]["fail"].as_u64().unwrap() >= 1,
        "{:?}",
        report.data["summary"]
    );

    governed.remove().await;
}
