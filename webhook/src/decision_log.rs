//! Where each admission decision is recorded: the audit trail of the contract
//! (`zastava.admission.decision@v1.0`), one line per AdmissionReview, keyed by its UID.
//!
//! With JSON logs the line is written here rather than through `tracing`: its `decision` is
//! the contract as a nested JSON object (log pipelines index it as is; through `tracing` it
//! could only be an escaped string), and the escaping of a ~1 KB string on every request was
//! the largest cost of a warm decision after the decision itself (`make bench-webhook`). The
//! line has the fields of the `tracing` JSON lines around it (`timestamp`, `level`,
//! `message`, `target`). With text logs it goes through `tracing` like everything else.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use zastava_crds::contracts::{AdmissionDecision, Decision, ImageDecision};
use zastava_crds::posture::Verdict;

/// Writes whole lines; each call is one line (one `write` of the locked stdout), so lines of
/// concurrent requests and of `tracing` never interleave.
pub trait LineSink: Send + Sync {
    fn write_line(&self, line: &[u8]);
}

impl LineSink for std::io::Stdout {
    fn write_line(&self, line: &[u8]) {
        // A closed stdout loses the audit line, as it would lose any log line; nothing to
        // report it to.
        let _ = self.lock().write_all(line);
    }
}

/// Discards the lines (benchmarks: the line is still built).
pub struct Discard;

impl LineSink for Discard {
    fn write_line(&self, line: &[u8]) {
        std::hint::black_box(line);
    }
}

#[derive(Clone)]
pub enum DecisionLog {
    /// One JSON line per decision written to the sink.
    Json(Arc<dyn LineSink>),
    /// An `info` event through `tracing`, the decision as a string field.
    Tracing,
}

/// What a decision line says besides the decision.
#[derive(Serialize)]
pub struct Fields<'a> {
    pub uid: &'a str,
    pub namespace: &'a str,
    pub operation: &'a str,
    pub kind: &'a str,
    pub cache_hits: u32,
    pub cache_misses: u32,
}

impl DecisionLog {
    /// Records a decision as the contract's canonical JSON.
    pub fn record(&self, fields: &Fields, decision: &AdmissionDecision) {
        match self {
            DecisionLog::Json(sink) => match json_line(Timestamp::now(), fields, decision) {
                Ok(line) => sink.write_line(&line),
                Err(e) => {
                    tracing::error!(uid = fields.uid, error = %e, "cannot serialize decision")
                }
            },
            DecisionLog::Tracing => {
                let mut json = Vec::new();
                let written = write_decision(&mut json, decision)
                    // serde_json writes nothing but UTF-8.
                    .and_then(|()| String::from_utf8(json).map_err(serde::ser::Error::custom));
                match written {
                    Ok(decision) => tracing::info!(
                        uid = fields.uid,
                        namespace = fields.namespace,
                        operation = fields.operation,
                        kind = fields.kind,
                        cache_hits = fields.cache_hits,
                        cache_misses = fields.cache_misses,
                        decision,
                        "admission decision"
                    ),
                    Err(e) => {
                        tracing::error!(uid = fields.uid, error = %e, "cannot serialize decision")
                    }
                }
            }
        }
    }
}

/// `{"timestamp":…,"level":"INFO","message":"admission decision","target":…,<fields>,
/// "decision":<decision>}` and a newline, written in one buffer (the decision is not
/// serialized on its own and copied in).
pub fn json_line(
    timestamp: impl fmt::Display,
    fields: &Fields,
    decision: &AdmissionDecision,
) -> serde_json::Result<Vec<u8>> {
    // Sized for a decision on a few images: grown a piece at a time it is reallocated (and
    // copied) several times per decision.
    let mut line = Vec::with_capacity(1024);
    // An RFC 3339 timestamp has nothing to escape.
    let _ = write!(line, "{{\"timestamp\":\"{timestamp}\"");
    line.extend_from_slice(
        b",\"level\":\"INFO\",\"message\":\"admission decision\",\"target\":\"zastava_webhook::decision_log\",",
    );
    let fields_at = line.len();
    serde_json::to_writer(&mut line, fields)?;
    // Their members go on in this object: drop the braces of theirs.
    line.remove(fields_at);
    line.pop();
    line.extend_from_slice(b",\"decision\":");
    write_decision(&mut line, decision)?;
    line.extend_from_slice(b"}\n");
    Ok(line)
}

/// Writes the canonical JSON of `decision`, as [`zastava_crds::canonical::canonical_json`]
/// makes it, to `out`: straight from the decision with the keys in sorted order,
/// where canonical_json builds a JSON tree of it, copies that sorted, and writes the copy (a
/// good part of a warm decision's time). The contract types are destructured, so a field added
/// to them fails to compile here; a test holds the output equal to canonical_json.
fn write_decision(out: &mut Vec<u8>, decision: &AdmissionDecision) -> serde_json::Result<()> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Sorted<'a> {
        admission_id: &'a str,
        decision: &'a Decision,
        images: SortedImages<'a>,
        namespace: &'a str,
        pod_spec_digest: &'a str,
        schema_version: &'a str,
        ttl_seconds: u32,
    }
    struct SortedImages<'a>(&'a [ImageDecision]);
    impl Serialize for SortedImages<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.0.iter().map(SortedImage::from))
        }
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SortedImage<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        has_sbom_referrers: Option<bool>,
        name: &'a str,
        policy_verdict: &'a Verdict,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        reasons: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        resolved: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        signed: Option<bool>,
    }
    impl<'a> From<&'a ImageDecision> for SortedImage<'a> {
        fn from(image: &'a ImageDecision) -> Self {
            let ImageDecision {
                name,
                resolved,
                signed,
                has_sbom_referrers,
                policy_verdict,
                reasons,
            } = image;
            Self {
                has_sbom_referrers: *has_sbom_referrers,
                name,
                policy_verdict,
                reasons,
                resolved: resolved.as_deref(),
                signed: *signed,
            }
        }
    }
    let AdmissionDecision {
        schema_version,
        admission_id,
        namespace,
        pod_spec_digest,
        images,
        decision,
        ttl_seconds,
    } = decision;
    serde_json::to_writer(
        out,
        &Sorted {
            admission_id,
            decision,
            images: SortedImages(images),
            namespace,
            pod_spec_digest,
            schema_version,
            ttl_seconds: *ttl_seconds,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use zastava_crds::canonical::canonical_json;
    use zastava_crds::contracts::ADMISSION_DECISION_SCHEMA;

    #[test]
    fn a_decision_line_is_one_json_object_with_the_decision_nested() {
        let fields = Fields {
            uid: "a\"b",
            namespace: "team",
            operation: "CREATE",
            kind: "Pod",
            cache_hits: 2,
            cache_misses: 1,
        };
        let decision = AdmissionDecision {
            schema_version: ADMISSION_DECISION_SCHEMA.into(),
            admission_id: "a\"b".into(),
            namespace: "team".into(),
            pod_spec_digest: "sha256:00".into(),
            images: Vec::new(),
            decision: Decision::Allow,
            ttl_seconds: 300,
        };
        let timestamp: Timestamp = "2026-11-22T10:00:00.123456789Z".parse().unwrap();
        let line = json_line(timestamp, &fields, &decision).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            value,
            json!({
                "timestamp": "2026-11-22T10:00:00.123456789Z",
                "level": "INFO",
                "message": "admission decision",
                "target": "zastava_webhook::decision_log",
                "uid": "a\"b",
                "namespace": "team",
                "operation": "CREATE",
                "kind": "Pod",
                "cache_hits": 2,
                "cache_misses": 1,
                "decision": serde_json::from_str::<Value>(&decision_json(&decision)).unwrap(),
            })
        );
    }

    fn decision_json(decision: &AdmissionDecision) -> String {
        let mut json = Vec::new();
        write_decision(&mut json, decision).unwrap();
        String::from_utf8(json).unwrap()
    }

    #[test]
    fn the_logged_decision_is_its_canonical_json() {
        let decision = AdmissionDecision {
            schema_version: ADMISSION_DECISION_SCHEMA.into(),
            admission_id: "uid-1".into(),
            namespace: "team-a".into(),
            pod_spec_digest: "sha256:00".into(),
            images: vec![
                ImageDecision {
                    name: "registry.local/app:1".into(),
                    resolved: Some("registry.local/app@sha256:11".into()),
                    signed: Some(true),
                    has_sbom_referrers: Some(false),
                    policy_verdict: Verdict::Fail,
                    reasons: vec!["p: no SBOM referrer \"quoted\"".into()],
                },
                ImageDecision {
                    name: "busybox".into(),
                    resolved: None,
                    signed: None,
                    has_sbom_referrers: None,
                    policy_verdict: Verdict::Warn,
                    reasons: Vec::new(),
                },
            ],
            decision: Decision::Deny,
            ttl_seconds: 30,
        };
        assert_eq!(decision_json(&decision), canonical_json(&decision).unwrap());
        let allowed = AdmissionDecision {
            decision: Decision::Allow,
            images: Vec::new(),
            ..decision
        };
        assert_eq!(decision_json(&allowed), canonical_json(&allowed).unwrap());
    }
}
