//! wg-policy `PolicyReport`s (`wgpolicyk8s.io/v1alpha2`): what the verifier found, in the shape
//! Policy Reporter and other report UIs read, next to Kyverno's and Falco's findings.
//!
//! One report named [`REPORT_NAME`] per namespace with governed workloads, rebuilt from the
//! RuntimePostures (the verifier's verdicts and the observers' drift): one result per Pod,
//! policy and image (`rule: verify-image`), and one per drift finding (`policy:
//! runtime-drift`). Written by the verifier's replica with server-side apply when its content
//! changes; removed when nothing in the namespace is governed any more. `--policy-reports auto`
//! writes them only where the API exists (Kyverno's or Policy Reporter's CRD): Zastava never
//! installs another project's CRD.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use zastava_crds::policy::PolicyMode;
use zastava_crds::posture::{ImagePosture, Verdict};
use zastava_crds::RuntimePosture;

/// The name of Zastava's report in each namespace.
pub const REPORT_NAME: &str = "zastava";
pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
/// Results kept per report: a report is one object, and etcd caps objects at 1.5 MiB.
pub const MAX_RESULTS: usize = 1000;
/// The drift findings' pseudo-policy.
pub const DRIFT_POLICY: &str = "runtime-drift";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportMode {
    /// Where the PolicyReport API exists (checked every minute).
    Auto,
    On,
    Off,
}

/// The report of `namespace` from its `postures`, under `policies` (name and mode of every
/// policy governing the namespace). `None` when there is nothing to report (no policy
/// governs it, or no pod has been seen).
pub fn report(
    namespace: &str,
    postures: &[&RuntimePosture],
    policies: &BTreeMap<String, PolicyMode>,
) -> Option<Value> {
    if policies.is_empty() {
        return None;
    }
    let mut results = Vec::new();
    for posture in postures {
        let Some(status) = &posture.status else {
            continue;
        };
        let pods: BTreeSet<&str> = status
            .nodes
            .iter()
            .flat_map(|n| &n.containers)
            .map(|c| c.pod.as_str())
            .collect();
        for image in status.images.iter().filter(|i| i.checked_at.is_some()) {
            for (policy, mode) in policies {
                let (result, message) = image_result(image, policy, *mode);
                for pod in &pods {
                    let mut properties = json!({"image": image.reference});
                    if let Some(digest) = &image.digest {
                        properties["digest"] = json!(digest);
                    }
                    results.push(json!({
                        "policy": policy,
                        "rule": "verify-image",
                        "category": "Image verification",
                        "result": result,
                        "message": message,
                        "resources": [pod_reference(namespace, pod)],
                        "properties": properties,
                        "source": "zastava",
                        "timestamp": timestamp(image),
                    }));
                }
            }
        }
        for node in &status.nodes {
            for finding in &node.drift {
                let mut properties = json!({"container": finding.container, "node": node.node});
                if let Some(sha256) = &finding.sha256 {
                    properties["sha256"] = json!(sha256);
                }
                results.push(json!({
                    "policy": DRIFT_POLICY,
                    "rule": finding.kind.as_str(),
                    "category": "Runtime drift",
                    "result": "fail",
                    "message": format!("{} drift: {}", finding.kind.as_str(), finding.subject),
                    "resources": [pod_reference(namespace, &finding.pod)],
                    "properties": properties,
                    "source": "zastava",
                }));
            }
        }
    }
    if results.is_empty() {
        return None;
    }
    results.truncate(MAX_RESULTS);
    let count = |what: &str| results.iter().filter(|r| r["result"] == what).count();
    let summary = json!({
        "pass": count("pass"), "fail": count("fail"), "warn": count("warn"),
        "error": count("error"), "skip": 0,
    });
    Some(json!({
        "apiVersion": API_VERSION,
        "kind": "PolicyReport",
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "zastava"},
        },
        "summary": summary,
        "results": results,
    }))
}

/// What `policy` says of `image`: its reasons (without the policy's prefix) and the result
/// they make. A reason is the policy's when it starts with `<policy>: `.
pub fn image_result(
    image: &ImagePosture,
    policy: &str,
    mode: PolicyMode,
) -> (&'static str, String) {
    let prefix = format!("{policy}: ");
    let own: Vec<&str> = image
        .reasons
        .iter()
        .filter_map(|r| r.strip_prefix(&prefix))
        .collect();
    if own.is_empty() {
        return ("pass", "verified: nothing against it".to_string());
    }
    let message = own.join("; ");
    let unverified = own.iter().any(|r| r.starts_with("verification failed"));
    let result = if image.admitted_fail_open || (unverified && image.verdict != Some(Verdict::Fail))
    {
        // Could not be evaluated: the registry or backend did not answer.
        "error"
    } else if mode == PolicyMode::Enforce && image.verdict == Some(Verdict::Fail) {
        "fail"
    } else {
        "warn"
    };
    (result, message)
}

fn pod_reference(namespace: &str, pod: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": pod})
}

fn timestamp(image: &ImagePosture) -> Value {
    let seconds = image.checked_at.as_ref().map_or(0, |t| t.0.as_second());
    json!({"seconds": seconds, "nanos": 0})
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use zastava_crds::posture::{
        DriftFinding, DriftKind, NodeObservation, ObservedContainer, RuntimePostureStatus,
    };

    fn posture(
        images: Vec<ImagePosture>,
        pods: &[&str],
        drift: Vec<DriftFinding>,
    ) -> RuntimePosture {
        let mut p = RuntimePosture::new("deployment-web", Default::default());
        p.status = Some(RuntimePostureStatus {
            images,
            nodes: vec![NodeObservation {
                node: "node1".into(),
                containers: pods
                    .iter()
                    .map(|pod| ObservedContainer {
                        pod: pod.to_string(),
                        container: "app".into(),
                        ..ObservedContainer::default()
                    })
                    .collect(),
                drift,
                ..NodeObservation::default()
            }],
            ..RuntimePostureStatus::default()
        });
        p
    }

    fn image(verdict: Option<Verdict>, reasons: &[&str], fail_open: bool) -> ImagePosture {
        ImagePosture {
            reference: "r/app:1".into(),
            digest: Some("sha256:a".into()),
            verdict,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            checked_at: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            )),
            admitted_fail_open: fail_open,
            ..ImagePosture::default()
        }
    }

    #[test]
    fn each_policy_says_pass_fail_warn_or_error_of_each_image() {
        let failing = image(
            Some(Verdict::Fail),
            &[
                "strict: tag `1` is banned",
                "audit: no SBOM referrer (Audit: admitted)",
            ],
            false,
        );
        assert_eq!(
            image_result(&failing, "strict", PolicyMode::Enforce),
            ("fail", "tag `1` is banned".to_string())
        );
        assert_eq!(image_result(&failing, "audit", PolicyMode::Audit).0, "warn");
        assert_eq!(
            image_result(&failing, "other", PolicyMode::Enforce).0,
            "pass"
        );
        let open = image(
            None,
            &["strict: verification failed: registry r: unreachable (fail-open namespace: admitted)"],
            true,
        );
        assert_eq!(
            image_result(&open, "strict", PolicyMode::Enforce).0,
            "error"
        );
    }

    #[test]
    fn one_result_per_pod_policy_and_image_and_per_drift_finding() {
        let drift = DriftFinding {
            kind: DriftKind::Process,
            pod: "web-1".into(),
            container: "app".into(),
            subject: "/tmp/evil".into(),
            sha256: None,
            evidence: Vec::new(),
            first_seen: None,
        };
        let p = posture(
            vec![image(
                Some(Verdict::Fail),
                &["strict: tag `1` is banned"],
                false,
            )],
            &["web-1", "web-2"],
            vec![drift],
        );
        let policies = BTreeMap::from([
            ("audit".to_string(), PolicyMode::Audit),
            ("strict".to_string(), PolicyMode::Enforce),
        ]);
        let written = report("shop", &[&p], &policies).unwrap();
        let results = written["results"].as_array().unwrap();
        assert_eq!(results.len(), 2 * 2 + 1);
        let strict: Vec<&Value> = results.iter().filter(|r| r["policy"] == "strict").collect();
        assert_eq!(strict.len(), 2);
        assert_eq!(strict[0]["result"], "fail");
        assert_eq!(strict[0]["message"], "tag `1` is banned");
        assert_eq!(strict[0]["properties"]["image"], "r/app:1");
        assert_eq!(strict[0]["resources"][0]["name"], "web-1");
        assert_eq!(strict[0]["timestamp"]["seconds"], 1_800_000_000);
        let drift: Vec<&Value> = results
            .iter()
            .filter(|r| r["policy"] == DRIFT_POLICY)
            .collect();
        assert_eq!(drift[0]["rule"], "process");
        assert_eq!(drift[0]["message"], "process drift: /tmp/evil");
        assert_eq!(
            written["summary"],
            json!({"pass": 2, "fail": 3, "warn": 0, "error": 0, "skip": 0})
        );
        assert_eq!(written["metadata"]["name"], REPORT_NAME);

        // Nothing governs it, or nothing was verified: no report.
        assert!(report_of_nothing(&p).is_none());
        let unchecked = posture(vec![ImagePosture::default()], &["web-1"], Vec::new());
        assert!(report("shop", &[&unchecked], &policies).is_none());
    }

    fn report_of_nothing(p: &RuntimePosture) -> Option<Value> {
        report("shop", &[p], &BTreeMap::new())
    }
}
