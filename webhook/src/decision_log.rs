//! Where each admission decision is recorded: the audit trail of the contract
//! (`zastava.admission.decision@v1.0`), one line per AdmissionReview, keyed by its UID.
//!
//! With JSON logs the line is written here rather than through `tracing`: its `decision` is
//! the contract as a nested JSON object (log pipelines index it as is; through `tracing` it
//! could only be an escaped string), and the escaping of a ~1 KB string on every request was
//! the largest cost of a warm decision after the decision itself (`make bench-webhook`). The
//! line has the fields of the `tracing` JSON lines around it (`timestamp`, `level`,
//! `message`, `target`). With text logs it goes through `tracing` like everything else.

use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

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
    /// Records a decision; `decision` is the contract's canonical JSON.
    pub fn record(&self, fields: &Fields, decision: &str) {
        match self {
            DecisionLog::Json(sink) => sink.write_line(&json_line(
                &k8s_openapi::jiff::Timestamp::now().to_string(),
                fields,
                decision,
            )),
            DecisionLog::Tracing => tracing::info!(
                uid = fields.uid,
                namespace = fields.namespace,
                operation = fields.operation,
                kind = fields.kind,
                cache_hits = fields.cache_hits,
                cache_misses = fields.cache_misses,
                decision,
                "admission decision"
            ),
        }
    }
}

/// `{"timestamp":…,"level":"INFO","message":"admission decision","target":…,<fields>,
/// "decision":<decision>}` and a newline. `decision` is inserted as it is: it is JSON the
/// webhook serialized itself.
pub fn json_line(timestamp: &str, fields: &Fields, decision: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(320 + decision.len());
    line.extend_from_slice(b"{\"timestamp\":");
    // Serializing a &str or a struct of plain fields into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut line, timestamp);
    line.extend_from_slice(
        b",\"level\":\"INFO\",\"message\":\"admission decision\",\"target\":\"zastava_webhook::decision_log\",",
    );
    let fields_at = line.len();
    let _ = serde_json::to_writer(&mut line, fields);
    // Their members go on in this object: drop the braces of theirs.
    line.remove(fields_at);
    line.pop();
    line.extend_from_slice(b",\"decision\":");
    line.extend_from_slice(decision.as_bytes());
    line.extend_from_slice(b"}\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

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
        let decision = r#"{"decision":"Allow","images":[]}"#;
        let line = json_line("2026-11-22T10:00:00Z", &fields, decision);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            value,
            json!({
                "timestamp": "2026-11-22T10:00:00Z",
                "level": "INFO",
                "message": "admission decision",
                "target": "zastava_webhook::decision_log",
                "uid": "a\"b",
                "namespace": "team",
                "operation": "CREATE",
                "kind": "Pod",
                "cache_hits": 2,
                "cache_misses": 1,
                "decision": {"decision": "Allow", "images": []},
            })
        );
    }
}
