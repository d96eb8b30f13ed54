//! Every cap and budget the registry client applies to what registries send it, in one
//! place. Bodies are counted while they stream: a declared size (`Content-Length`, a
//! descriptor's `size`) is never trusted, only the bytes that arrived.

/// One image manifest, image index or referrers index. The distribution specification has
/// registries accept manifests up to 4 MiB; anything larger is not one.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// One cosign simple-signing payload: a JSON document of a few hundred bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Simple-signing layers read from one signature manifest (each costs a blob fetch).
pub const MAX_SIGNATURE_LAYERS: usize = 16;

/// One keyless annotation of a signature layer (certificate, chain, Rekor bundle, RFC 3161
/// timestamp): each is a few KB; a larger one is left out.
pub const MAX_KEYLESS_ANNOTATION_BYTES: usize = 64 * 1024;

/// Distinct reasons kept for why an image's keyless signatures were not accepted (each
/// becomes part of a deny message).
pub const MAX_REJECTIONS_KEPT: usize = 3;

/// Referrers looked at per image: bounds the work an image with thousands of referrers costs.
pub const MAX_REFERRERS: usize = 32;

/// Requests of one image lookup in flight at once (tags, referrers, referrer manifests,
/// signature payloads run concurrently): the connections one lookup may hold to a registry.
pub const MAX_FETCHES_IN_FLIGHT: usize = 16;

/// One SBOM document (CycloneDX JSON of a large image is a few MB).
pub const MAX_SBOM_BYTES: usize = 32 * 1024 * 1024;

/// A token endpoint's answer (`{"token": ...}`; a JWT is a few KB).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// What is kept of an error answer's body, for the log line only (never a message).
pub const MAX_ERROR_BODY_BYTES: usize = 2 * 1024;

/// Redirects followed per registry request (blob storage usually takes one).
pub const MAX_REDIRECTS: usize = 5;
