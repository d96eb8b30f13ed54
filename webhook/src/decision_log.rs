//! Where each admission decision is recorded: the audit trail of the contract
//! (`zastava.admission.decision@v1.1`), one line per AdmissionReview, keyed by its UID.
//!
//! With JSON logs the line is written here rather than through `tracing`: its `decision` is
//! the contract as a nested JSON object (log pipelines index it as is; through `tracing` it
//! could only be an escaped string), and the escaping of a ~1 KB string on every request was
//! the largest cost of a warm decision after the decision itself (`make bench-webhook`). The
//! line has the fields of the `tracing` JSON lines around it (`timestamp`, `level`,
//! `message`, `target`), then [`Fields`]: who asked about what (the object's kind, namespace,
//! name and controlling owner) and how the answer came about (the fail mode applied, the
//! backend latency, each image's cache status). With text logs it goes through `tracing` like
//! everything else.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use zastava_crds::contracts::{AdmissionDecision, Decision, ImageDecision, RekorEntry};
use zastava_crds::posture::Verdict;

use crate::evaluate::FailMode;
use crate::workload::Owner;

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

/// What a decision line says besides the decision: who asked about what, and how the webhook
/// came to its answer. These are fields of the log line, next to the contract's payload
/// (`decision`), not members of it: they describe this replica's work on the review (its cache,
/// its backend round trip), which differs between replicas deciding the same pod spec, while
/// the payload stays the same everywhere (its canonical JSON is hashed). So the contract and
/// its `schemaVersion` (`zastava.admission.decision@v1.1`) are unchanged by them.
#[derive(Serialize)]
pub struct Fields<'a> {
    pub uid: &'a str,
    pub namespace: &'a str,
    pub operation: &'a str,
    /// The kind of the object reviewed (Pod, Deployment, ...).
    pub kind: &'a str,
    /// Its name, when the review carries one. A Pod made from a template has a generated one
    /// (its `generateName` and a random suffix, given before validating webhooks are
    /// called): its `owner` says which workload it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// Its controlling owner reference (a ReplicaSet's, a Job's pods); a workload reviewed
    /// itself (a Deployment) is named by `kind` and `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerRef<'a>>,
    /// What happened to gates the registry or a backend could not answer.
    pub fail_mode: FailMode,
    /// Milliseconds the backend calls of the decision took, when a backend was called (not
    /// when every verdict came from its cache, nor when no policy names a backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_latency_ms: Option<f64>,
    pub cache_hits: u32,
    pub cache_misses: u32,
    /// Each image of the object once (sorted), with what the verdict cache did for it.
    pub cache: &'a [ImageCache<'a>],
}

/// The controlling owner of the object reviewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OwnerRef<'a> {
    pub kind: &'a str,
    pub name: &'a str,
}

impl<'a> From<&'a Owner> for OwnerRef<'a> {
    fn from(owner: &'a Owner) -> Self {
        Self {
            kind: owner.kind(),
            name: owner.name(),
        }
    }
}

/// One image of a decision and how its registry lookup went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ImageCache<'a> {
    pub image: &'a str,
    pub status: CacheStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CacheStatus {
    /// Answered from the verdict cache: the registry was asked nothing.
    Hit,
    /// Looked up in the registry (and cached).
    Miss,
    /// The lookup failed (registry unavailable, deadline): nothing cached.
    Error,
    /// Not looked up: denied before any lookup (a registry rule, a banned tag), not a valid
    /// reference, or no policy needs the registry.
    Skipped,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Error => "error",
            CacheStatus::Skipped => "skipped",
        }
    }
}

/// `image=status` pairs separated by spaces: the `cache` field of a text line.
struct CacheText<'a>(&'a [ImageCache<'a>]);

impl fmt::Display for CacheText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, entry) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", entry.image, entry.status.as_str())?;
        }
        Ok(())
    }
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
                        name = fields.name,
                        owner_kind = fields.owner.map(|o| o.kind),
                        owner_name = fields.owner.map(|o| o.name),
                        fail_mode = fields.fail_mode.as_str(),
                        backend_latency_ms = fields.backend_latency_ms,
                        cache_hits = fields.cache_hits,
                        cache_misses = fields.cache_misses,
                        cache = %CacheText(fields.cache),
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
        rekor: Option<&'a RekorEntry>,
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
                rekor,
            } = image;
            Self {
                has_sbom_referrers: *has_sbom_referrers,
                name,
                policy_verdict,
                reasons,
                rekor: rekor.as_ref(),
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

    fn decision(decision: Decision) -> AdmissionDecision {
        AdmissionDecision {
            schema_version: ADMISSION_DECISION_SCHEMA.into(),
            admission_id: "a\"b".into(),
            namespace: "team".into(),
            pod_spec_digest: "sha256:00".into(),
            images: Vec::new(),
            decision,
            ttl_seconds: 300,
        }
    }

    fn line(fields: &Fields, decision: &AdmissionDecision) -> Value {
        let timestamp: Timestamp = "2026-11-22T10:00:00.123456789Z".parse().unwrap();
        let line = json_line(timestamp, fields, decision).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&line).unwrap()
    }

    #[test]
    fn a_decision_line_is_one_json_object_with_the_decision_nested() {
        let cache = [
            ImageCache {
                image: "registry.local/app:1",
                status: CacheStatus::Hit,
            },
            ImageCache {
                image: "registry.local/side@sha256:11",
                status: CacheStatus::Miss,
            },
            ImageCache {
                image: "registry.local/x:latest",
                status: CacheStatus::Skipped,
            },
            ImageCache {
                image: "down.local/y:1",
                status: CacheStatus::Error,
            },
        ];
        let owner = Owner::new("ReplicaSet", "web-5d8f");
        let fields = Fields {
            uid: "a\"b",
            namespace: "team",
            operation: "CREATE",
            kind: "Pod",
            name: None,
            owner: Some(OwnerRef::from(&owner)),
            fail_mode: FailMode::FailOpen,
            backend_latency_ms: Some(12.345),
            cache_hits: 1,
            cache_misses: 1,
            cache: &cache,
        };
        let decision = decision(Decision::Allow);
        assert_eq!(
            line(&fields, &decision),
            json!({
                "timestamp": "2026-11-22T10:00:00.123456789Z",
                "level": "INFO",
                "message": "admission decision",
                "target": "zastava_webhook::decision_log",
                "uid": "a\"b",
                "namespace": "team",
                "operation": "CREATE",
                "kind": "Pod",
                "owner": {"kind": "ReplicaSet", "name": "web-5d8f"},
                "fail_mode": "failOpen",
                "backend_latency_ms": 12.345,
                "cache_hits": 1,
                "cache_misses": 1,
                "cache": [
                    {"image": "registry.local/app:1", "status": "hit"},
                    {"image": "registry.local/side@sha256:11", "status": "miss"},
                    {"image": "registry.local/x:latest", "status": "skipped"},
                    {"image": "down.local/y:1", "status": "error"},
                ],
                "decision": serde_json::from_str::<Value>(&decision_json(&decision)).unwrap(),
            })
        );
    }

    #[test]
    fn a_line_without_name_owner_or_backend_leaves_them_out_and_says_its_fail_mode() {
        let fields = |fail_mode| Fields {
            uid: "u",
            namespace: "team",
            operation: "CREATE",
            kind: "Deployment",
            name: Some("web"),
            owner: None,
            fail_mode,
            backend_latency_ms: None,
            cache_hits: 0,
            cache_misses: 0,
            cache: &[],
        };
        let value = line(&fields(FailMode::None), &decision(Decision::Allow));
        assert_eq!(
            (&value["kind"], &value["name"]),
            (&json!("Deployment"), &json!("web"))
        );
        assert_eq!(value["fail_mode"], "none");
        assert_eq!(value["cache"], json!([]));
        for absent in ["owner", "backend_latency_ms"] {
            assert!(value.get(absent).is_none(), "{absent}: {value}");
        }
        let value = line(&fields(FailMode::FailClosed), &decision(Decision::Deny));
        assert_eq!(value["fail_mode"], "failClosed");
        assert_eq!(value["decision"]["decision"], "Deny");
        // The contract's payload is unchanged by the fields around it.
        assert_eq!(
            value["decision"]["schemaVersion"],
            "zastava.admission.decision@v1.1"
        );
    }

    #[test]
    fn the_text_form_of_the_cache_lists_each_image_with_its_status() {
        let cache = [
            ImageCache {
                image: "a:1",
                status: CacheStatus::Hit,
            },
            ImageCache {
                image: "b:2",
                status: CacheStatus::Error,
            },
        ];
        assert_eq!(CacheText(&cache).to_string(), "a:1=hit b:2=error");
        assert_eq!(CacheText(&[]).to_string(), "");
        for status in [
            CacheStatus::Hit,
            CacheStatus::Miss,
            CacheStatus::Error,
            CacheStatus::Skipped,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for mode in [FailMode::None, FailMode::FailOpen, FailMode::FailClosed] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
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
                    rekor: Some(RekorEntry {
                        uuid: "ab".repeat(32),
                    }),
                },
                ImageDecision {
                    name: "busybox".into(),
                    resolved: None,
                    signed: None,
                    has_sbom_referrers: None,
                    policy_verdict: Verdict::Warn,
                    reasons: Vec::new(),
                    rekor: None,
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
