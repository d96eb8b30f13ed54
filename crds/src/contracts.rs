//! The payloads Zastava exchanges with logs and backends (DESIGN.md "Contracts"). Field names
//! follow the product documents; every payload carries `schemaVersion`.

use serde::{Deserialize, Serialize};

use crate::posture::Verdict;

/// v1.1 adds `images[].rekor`: the transparency-log entry the backend named for the image
/// (issue 13), an optional field a v1.0 reader ignores, hence a minor version.
///
/// The decision record's other additions of issue 13 (the object's name and controlling owner,
/// the fail mode, the backend latency, the cache status per image) are fields of the
/// webhook's log line next to this payload (webhook/src/decision_log.rs `Fields`), not members
/// of it. They describe one replica's work on a review (its cache, its round trip to the
/// backend), which differs between replicas deciding the same pod spec, whereas this payload
/// is the same everywhere and hashed in its canonical JSON; `check` prints it as before.
pub const ADMISSION_DECISION_SCHEMA: &str = "zastava.admission.decision@v1.1";

/// One admission decision, as logged per AdmissionReview UID and printed by `check`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionDecision {
    pub schema_version: String,
    pub admission_id: String,
    pub namespace: String,
    /// `sha256:<hex>` of the canonical JSON of the pod spec decided on.
    pub pod_spec_digest: String,
    pub images: Vec<ImageDecision>,
    pub decision: Decision,
    /// How long the decision may be cached.
    pub ttl_seconds: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageDecision {
    /// The image as the pod spec gives it.
    pub name: String,
    /// `repo@sha256:...` once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_sbom_referrers: Option<bool>,
    pub policy_verdict: Verdict,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The Rekor entry the backend gave for the resolved digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekor: Option<RekorEntry>,
}

/// A transparency-log entry, as the backend contract names it (`rekor{uuid}`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RekorEntry {
    pub uuid: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_uses_the_contract_field_names() {
        let decision = AdmissionDecision {
            schema_version: ADMISSION_DECISION_SCHEMA.into(),
            admission_id: "uid-1".into(),
            namespace: "team-a".into(),
            pod_spec_digest: "sha256:00".into(),
            images: vec![ImageDecision {
                name: "busybox".into(),
                resolved: None,
                signed: Some(false),
                has_sbom_referrers: None,
                policy_verdict: Verdict::Fail,
                reasons: vec!["unsigned".into()],
                rekor: Some(RekorEntry {
                    uuid: "24296fb2".into(),
                }),
            }],
            decision: Decision::Deny,
            ttl_seconds: 30,
        };
        let v = serde_json::to_value(&decision).unwrap();
        assert_eq!(v["schemaVersion"], "zastava.admission.decision@v1.1");
        assert_eq!(v["admissionId"], "uid-1");
        assert_eq!(v["podSpecDigest"], "sha256:00");
        assert_eq!(v["images"][0]["policyVerdict"], "fail");
        assert_eq!(v["images"][0]["signed"], false);
        assert!(v["images"][0].get("hasSbomReferrers").is_none());
        assert_eq!(v["images"][0]["rekor"]["uuid"], "24296fb2");
        assert_eq!(v["decision"], "Deny");
        assert_eq!(v["ttlSeconds"], 30);
    }
}
