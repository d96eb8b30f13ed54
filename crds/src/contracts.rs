//! The payloads Zastava exchanges with logs and backends (DESIGN.md "Contracts"). Field names
//! follow the product documents; every payload carries `schemaVersion`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::posture::Verdict;

pub const ADMISSION_DECISION_SCHEMA: &str = "zastava.admission.decision@v1.0";

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
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

/// Canonical JSON: object keys sorted at every level, no insignificant whitespace, so the same
/// payload hashes the same everywhere.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    fn sort(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    serde_json::to_string(&sort(serde_json::to_value(value)?))
}

/// `sha256:<hex>` of the canonical JSON of `value`.
pub fn canonical_digest<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let json = canonical_json(value)?;
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(json.as_bytes()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": null}});
        assert_eq!(
            canonical_json(&a).unwrap(),
            r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn digest_ignores_key_order_but_not_values() {
        let one = json!({"containers": [{"name": "a", "image": "x"}]});
        let same = json!({"containers": [{"image": "x", "name": "a"}]});
        let other = json!({"containers": [{"image": "y", "name": "a"}]});
        assert_eq!(
            canonical_digest(&one).unwrap(),
            canonical_digest(&same).unwrap()
        );
        assert_ne!(
            canonical_digest(&one).unwrap(),
            canonical_digest(&other).unwrap()
        );
        assert!(canonical_digest(&one).unwrap().starts_with("sha256:"));
    }

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
            }],
            decision: Decision::Deny,
            ttl_seconds: 30,
        };
        let v = serde_json::to_value(&decision).unwrap();
        assert_eq!(v["schemaVersion"], "zastava.admission.decision@v1.0");
        assert_eq!(v["admissionId"], "uid-1");
        assert_eq!(v["podSpecDigest"], "sha256:00");
        assert_eq!(v["images"][0]["policyVerdict"], "fail");
        assert_eq!(v["images"][0]["signed"], false);
        assert!(v["images"][0].get("hasSbomReferrers").is_none());
        assert_eq!(v["decision"], "Deny");
        assert_eq!(v["ttlSeconds"], 30);
    }
}
