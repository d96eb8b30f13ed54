//! Every cap and budget the webhook applies to what registries and backends send it, in one
//! place: the webhook's own below, the registry client's in [`zastava_registry::limits`]
//! (manifests, signature payloads, referrers, SBOMs, tokens, redirects). Bodies are counted
//! while they stream: a declared size (`Content-Length`, a descriptor's `size`) is never
//! trusted, only the bytes that arrived.

use std::time::Duration;

/// The decision deadline when `--decision-deadline-ms` is not given: the webhook
/// configuration's default `timeoutSeconds` (5 s) less a 1 s margin for what happens outside
/// the decision (the apiserver's TLS connection and request, decoding the review, writing
/// and sending the answer, a busy runtime under load). Inside the margin Zastava still answers
/// itself, with the namespace's fail mode, before the apiserver gives up and applies its own
/// `failurePolicy`.
pub const DEFAULT_DECISION_DEADLINE: Duration = Duration::from_millis(4000);

/// The denial (or, in a fail-open namespace, the warning) when the deadline expires before the
/// registry and backend calls finished.
pub const DEADLINE_REASON: &str = "verification did not finish within the deadline";

/// One backend policy answer (verdicts and reasons for one image).
pub const MAX_BACKEND_BODY_BYTES: usize = 1024 * 1024;
/// Reasons of one backend verdict kept: they end up in deny messages, which the apiserver shows
/// the user and logs.
pub const MAX_BACKEND_REASONS: usize = 16;
/// Characters of one backend reason kept.
pub const MAX_BACKEND_REASON_CHARS: usize = 256;
