//! Every cap and budget the webhook applies to what registries and backends send it, in one
//! place. Bodies are counted while they stream: a declared size (`Content-Length`, a
//! descriptor's `size`) is never trusted, only the bytes that arrived.

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

/// One image manifest, image index or referrers index. The distribution specification has
/// registries accept manifests up to 4 MiB; anything larger is not one.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// One cosign simple-signing payload: a JSON document of a few hundred bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Simple-signing layers read from one signature manifest (each costs a blob fetch).
pub const MAX_SIGNATURE_LAYERS: usize = 16;

/// Referrers looked at per image: bounds the work an image with thousands of referrers costs.
pub const MAX_REFERRERS: usize = 32;

/// One SBOM document (CycloneDX JSON of a large image is a few MB).
pub const MAX_SBOM_BYTES: usize = 32 * 1024 * 1024;

/// A token endpoint's answer (`{"token": ...}`; a JWT is a few KB).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// What is kept of an error answer's body, for the log line only (never a message).
pub const MAX_ERROR_BODY_BYTES: usize = 2 * 1024;

/// Redirects followed per registry request (blob storage usually takes one).
pub const MAX_REDIRECTS: usize = 5;

/// One backend policy answer (verdicts and reasons for one image).
pub const MAX_BACKEND_BODY_BYTES: usize = 1024 * 1024;
