//! `zastava-webhook check`: evaluate ZastavaPolicy documents against a manifest without a
//! cluster, as people do in CI before they apply a policy.

use std::collections::BTreeMap;
use std::sync::Arc;

use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use serde_json::Value;
use zastava_crds::ZastavaPolicy;
use zastava_registry::{Registry, Unavailable};

use crate::backend::{self, Answers, Backend, BackendSecrets};
use crate::evaluate::{denied_before_lookup, evaluate, governing, Evaluation, Governing};
use crate::limits::{DEADLINE_REASON, DEFAULT_DECISION_DEADLINE};
use crate::metrics::Metrics;
use crate::policies::{Evidence, Lookups, PolicySet};
use crate::workload::Workload;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{file}: {error}")]
    Yaml { file: String, error: String },
    #[error("{file}: document {index} is a ZastavaPolicy that does not match the CRD: {error}")]
    Policy {
        file: String,
        index: usize,
        error: String,
    },
    #[error("{0}: no ZastavaPolicy documents")]
    NoPolicies(String),
    #[error("{file}: {error}")]
    Object { file: String, error: String },
}

/// Every ZastavaPolicy in a multi-document YAML (other kinds, e.g. Secrets, are skipped).
pub fn load_policies(file: &str, text: &str) -> Result<Vec<ZastavaPolicy>, CheckError> {
    let mut policies = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| CheckError::Yaml {
            file: file.to_string(),
            error: e.to_string(),
        })?;
        if value["kind"] != "ZastavaPolicy" {
            continue;
        }
        let policy = serde_json::from_value(value).map_err(|e| CheckError::Policy {
            file: file.to_string(),
            index: index + 1,
            error: e.to_string(),
        })?;
        policies.push(policy);
    }
    if policies.is_empty() {
        return Err(CheckError::NoPolicies(file.to_string()));
    }
    Ok(policies)
}

/// The object to decide on: a Pod, a workload, or an AdmissionReview carrying one.
#[derive(Debug)]
pub struct Subject {
    pub workload: Workload,
    pub admission_id: String,
    pub namespace: Option<String>,
}

pub fn load_subject(file: &str, text: &str) -> Result<Subject, CheckError> {
    let object_error = |error: String| CheckError::Object {
        file: file.to_string(),
        error,
    };
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| object_error(e.to_string()))?;
    let (object, admission_id, namespace) = if value["kind"] == "AdmissionReview" {
        let request = value
            .get("request")
            .ok_or_else(|| object_error("AdmissionReview has no request".to_string()))?;
        let object = request
            .get("object")
            .ok_or_else(|| object_error("AdmissionReview request has no object".to_string()))?;
        (
            object.clone(),
            request["uid"].as_str().unwrap_or("check").to_string(),
            request["namespace"].as_str().map(String::from),
        )
    } else {
        (value, "check".to_string(), None)
    };
    let workload = Workload::from_object(object).map_err(|e| object_error(e.to_string()))?;
    let namespace = namespace.or_else(|| workload.namespace.clone());
    Ok(Subject {
        workload,
        admission_id,
        namespace,
    })
}

/// What `check` concluded, with what it could not use.
pub struct Checked {
    pub evaluation: Evaluation,
    /// Keys that could not be used (e.g. a `secretRef`, which needs the cluster).
    pub problems: Vec<String>,
}

/// Evaluates `subject` in `namespace` (with `labels`) under `policies`. With a `registry`,
/// images are looked up live (anonymously) where a governing policy needs it; without one
/// (`--offline`) those gates are listed as not checked.
pub async fn check(
    policies: &[ZastavaPolicy],
    subject: &Subject,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    zastava_namespace: &str,
    registry: Option<&Registry>,
) -> Checked {
    let objects: Vec<Arc<ZastavaPolicy>> = policies.iter().cloned().map(Arc::new).collect();
    let set = PolicySet::build(&objects);
    let all: Vec<Governing<'_>> = set.policies.iter().map(|p| p.governing()).collect();
    let applying = governing(&all, namespace, Some(labels), zastava_namespace);
    // The deadline admission has by default: what the webhook could not verify in that time
    // it could not verify at admission either.
    let deadline = tokio::time::Instant::now() + DEFAULT_DECISION_DEADLINE;
    let mut lookups = Lookups::new();
    let calls = set.backends(&applying);
    // Backends are asked about digests: tags are resolved for them too.
    if let Some(registry) = registry.filter(|_| set.needs_registry(&applying) || !calls.is_empty())
    {
        for (image, parsed) in &subject.workload.references {
            if let Ok(reference) = parsed {
                // A registry-independent gate denies it: never contacted.
                if denied_before_lookup(&applying, reference) {
                    continue;
                }
                let lookup = registry.lookup(reference, &RegistryAuth::Anonymous);
                let found = tokio::time::timeout_at(deadline, lookup)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Unavailable {
                            registry: reference.registry.clone(),
                            message: DEADLINE_REASON.to_string(),
                        })
                    });
                lookups.insert(image.clone(), found.map(Arc::new));
            }
        }
    }
    let mut answers = Answers::new();
    let mut problems = set.problems.clone();
    if registry.is_some() && !calls.is_empty() {
        let backend = Backend::new(None, Metrics::new());
        // `check` reads no Secret: a backend that needs credentials from one answers with
        // why it was not asked, and the problem is listed.
        problems.extend(backend.configure(&set.backend_settings(), &BackendSecrets::new()));
        let scope = backend::scope(namespace, labels);
        for (image, parsed) in &subject.workload.references {
            let resolved = match (parsed, lookups.get(image)) {
                (Ok(reference), Some(Ok(facts))) => Ok(reference.pinned(&facts.digest)),
                (Ok(reference), found) => match (&reference.digest, found) {
                    (Some(digest), _) => Ok(reference.pinned(digest)),
                    (None, Some(Err(e))) => Err(e.to_string()),
                    (None, _) => Err("not looked up".to_string()),
                },
                (Err(e), _) => Err(e.to_string()),
            };
            let (asked, _) = backend
                .verdicts(
                    &calls,
                    namespace,
                    labels,
                    scope,
                    image,
                    resolved.as_deref().map_err(String::as_str),
                    Some(deadline),
                )
                .await;
            answers.extend(asked);
        }
    }
    let evaluation = evaluate(
        &subject.admission_id,
        namespace,
        &subject.workload,
        &applying,
        &set.facts(&Evidence {
            registry: &lookups,
            backend: &answers,
            drifted: None,
        }),
    );
    Checked {
        evaluation,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zastava_crds::contracts::Decision;
    use zastava_registry::metrics::RegistryMetrics;

    const POLICIES: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: ignored}
---
apiVersion: zastava.stellaops.io/v1alpha1
kind: ZastavaPolicy
metadata: {name: no-latest}
spec:
  images: {bannedTags: [latest]}
---
apiVersion: zastava.stellaops.io/v1alpha1
kind: ZastavaPolicy
metadata: {name: sbom}
spec:
  namespaces: [payments]
  verify: {sbomReferrer: {required: true}}
"#;

    const REVIEW: &str = r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
      "request": {"uid": "abc-123", "namespace": "payments",
        "object": {"kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "a", "image": "busybox"}]}}}}"#;

    #[tokio::test]
    async fn admission_review_is_decided_with_its_uid_and_namespace() {
        let policies = load_policies("p.yaml", POLICIES).unwrap();
        assert_eq!(policies.len(), 2);
        let subject = load_subject("r.json", REVIEW).unwrap();
        assert_eq!(subject.admission_id, "abc-123");
        let ns = subject.namespace.clone().unwrap();
        let e = check(
            &policies,
            &subject,
            &ns,
            &BTreeMap::new(),
            "zastava-system",
            None,
        )
        .await
        .evaluation;
        assert_eq!(e.decision.decision, Decision::Deny);
        assert_eq!(e.decision.admission_id, "abc-123");
        assert_eq!(e.not_checked, ["busybox: sbomReferrer"]);
    }

    #[tokio::test]
    async fn live_lookups_that_fail_are_verification_failures_not_skips() {
        let policies = load_policies("p.yaml", POLICIES).unwrap();
        let review = REVIEW.replace("busybox", "127.0.0.1:9/app:1");
        let subject = load_subject("r.json", &review).unwrap();
        let registry = Registry::new(
            vec!["127.0.0.1:9".into()],
            std::time::Duration::from_millis(500),
            RegistryMetrics::new(),
        );
        let checked = check(
            &policies,
            &subject,
            "payments",
            &BTreeMap::new(),
            "z",
            Some(&registry),
        )
        .await;
        let e = checked.evaluation;
        assert_eq!(e.decision.decision, Decision::Deny);
        assert!(e.not_checked.is_empty(), "{:?}", e.not_checked);
        assert!(
            e.decision.images[0].reasons[0]
                .starts_with("sbom: verification failed: registry 127.0.0.1:9"),
            "{:?}",
            e.decision.images[0].reasons
        );
        // Outside `payments` only registry-free gates apply, so nothing is looked up.
        let other = check(
            &policies,
            &subject,
            "other",
            &BTreeMap::new(),
            "z",
            Some(&registry),
        )
        .await
        .evaluation;
        assert_eq!(other.decision.decision, Decision::Allow);
    }

    #[tokio::test]
    async fn a_registry_that_never_answers_meets_the_admission_deadline() {
        // Accepts connections and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let policies = load_policies("p.yaml", POLICIES).unwrap();
        let review = REVIEW.replace("busybox", &format!("{addr}/app:1"));
        let subject = load_subject("r.json", &review).unwrap();
        // Each call may take a minute; the whole check may not.
        let registry = Registry::new(
            vec![addr.clone()],
            std::time::Duration::from_secs(60),
            RegistryMetrics::new(),
        );
        let started = std::time::Instant::now();
        let checked = check(
            &policies,
            &subject,
            "payments",
            &BTreeMap::new(),
            "z",
            Some(&registry),
        )
        .await;
        let took = started.elapsed();
        assert!(
            took < DEFAULT_DECISION_DEADLINE + std::time::Duration::from_secs(1),
            "{took:?}"
        );
        let e = checked.evaluation;
        assert_eq!(e.decision.decision, Decision::Deny);
        assert!(
            e.decision.images[0].reasons[0].contains(DEADLINE_REASON),
            "{:?}",
            e.decision.images[0].reasons
        );
    }

    #[test]
    fn unusable_input_is_named() {
        assert!(matches!(
            load_policies("p.yaml", "kind: Secret\n"),
            Err(CheckError::NoPolicies(_))
        ));
        let bad = "kind: ZastavaPolicy\nmetadata: {name: x}\nspec: {mode: Sometimes}\n";
        let err = load_policies("p.yaml", bad).unwrap_err();
        assert!(err.to_string().contains("document 1"), "{err}");
        assert!(load_policies("p.yaml", "a: [unclosed").is_err());
        let err = load_subject("o.yaml", "kind: Service\n").unwrap_err();
        assert!(err.to_string().contains("Service"), "{err}");
        assert!(load_subject("o.json", r#"{"kind": "AdmissionReview"}"#).is_err());
    }
}
