//! `ZastavaPolicy`: the cluster-scoped object every admission and runtime rule is read from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// DNS-1123 label: what Kubernetes accepts as a namespace name.
pub const NAMESPACE_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A registry host (with its port, if any) and an optional repository path prefix,
/// e.g. `registry.example.com`, `localhost:5000`, `ghcr.io/acme`.
pub const REGISTRY_PATTERN: &str =
    r"^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._/-][a-z0-9]+)*)?$";
/// An OCI tag.
pub const TAG_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";
/// A sha256 content digest.
pub const DIGEST_PATTERN: &str = r"^sha256:[a-f0-9]{64}$";
/// The artifact type `oras attach`/`cosign attach sbom` give a CycloneDX JSON SBOM.
pub const CYCLONEDX_JSON: &str = "application/vnd.cyclonedx+json";

/// Admission and runtime rules for the namespaces a policy governs.
///
/// A policy governs a namespace listed in `namespaces` or matched by `namespaceSelector`; with
/// neither set it governs every namespace. Zastava's own namespace and `kube-system` are never
/// governed (the webhook configuration excludes them). Every `Enforce` policy that governs a
/// namespace must pass for a workload to be admitted there; `Audit` policies only warn.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "zastava.stellaops.io",
    version = "v1alpha1",
    kind = "ZastavaPolicy",
    plural = "zastavapolicies",
    shortname = "zp",
    category = "zastava",
    doc = "Admission and runtime rules for the namespaces a policy governs",
    status = "ZastavaPolicyStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Keys",
        type_ = "integer",
        description = "cosign public keys resolved",
        json_path = ".status.resolvedKeys"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ZastavaPolicySpec {
    /// `Enforce` denies what fails; `Audit` admits it with warnings and audit annotations.
    #[serde(default)]
    pub mode: PolicyMode,
    /// Namespaces whose labels match are governed by this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Namespaces governed by this policy, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(max = 63), pattern(NAMESPACE_PATTERN)))]
    pub namespaces: Vec<String>,
    /// Namespaces where a verification that cannot complete (registry or backend down) admits
    /// the workload with a warning instead of denying it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(max = 63), pattern(NAMESPACE_PATTERN)))]
    pub fail_open_namespaces: Vec<String>,
    #[serde(default)]
    pub images: ImageRules,
    #[serde(default)]
    pub verify: Verification,
    #[serde(default)]
    pub cache: CacheSettings,
    #[serde(default)]
    pub runtime: RuntimeSettings,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum PolicyMode {
    #[default]
    Enforce,
    Audit,
}

/// Rules on the image reference itself. A registry entry matches the host (with its port, if
/// any) and optional path prefix of the reference as the container runtime normalizes it:
/// `busybox` is `docker.io/library/busybox:latest`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageRules {
    /// When set, only images from these registries (or repository prefixes) are admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(max = 253), pattern(REGISTRY_PATTERN)))]
    pub allowed_registries: Vec<String>,
    /// Images from these registries (or repository prefixes) are denied; wins over allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(max = 253), pattern(REGISTRY_PATTERN)))]
    pub denied_registries: Vec<String>,
    /// Tags that are never admitted, e.g. `latest`. An image with no tag counts as `latest`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(TAG_PATTERN)))]
    pub banned_tags: Vec<String>,
    /// Every image must be referenced by digest (`repo@sha256:...`).
    #[serde(default)]
    pub require_digest: bool,
    /// When set, an image's `org.opencontainers.image.base.digest` annotation must be one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(DIGEST_PATTERN)))]
    pub allowed_base_images: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    #[serde(default)]
    pub signature: SignatureVerification,
    #[serde(default)]
    pub sbom_referrer: SbomReferrer,
    /// Optional external verdict (the Scanner.WebService runtime policy endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendVerdict>,
}

/// cosign signature verification. With `required`, an image passes when a signature verifies
/// against any one of `keys` or matches any one of `keyless`.
///
/// A keyless signature carries its signing certificate (cosign's `--certificate` and
/// `--certificate-chain`, or a Fulcio certificate). It matches when the certificate chains to
/// one of `trustRoots`, the signature verifies with the certificate's key, the certificate's
/// identity and OIDC issuer match one of `keyless`, and the certificate was valid when the
/// image was signed, as `signingTime` proves it. Everything is verified offline: no Fulcio,
/// Rekor or TUF is asked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SignatureVerification {
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<CosignKey>,
    /// The signer identities accepted from certificates that chain to `trustRoots`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyless: Vec<KeylessIdentity>,
    /// CA certificates (a private Fulcio's, an enterprise CA's) that keyless signing
    /// certificates must chain to, through the intermediates the signature carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_roots: Vec<TrustedCertificates>,
    /// What proves when a keyless signature was made.
    #[serde(default, skip_serializing_if = "SigningTime::is_default")]
    pub signing_time: SigningTime,
}

/// PEM certificates, inline or from a Secret: exactly one of `pem` and `secretRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.pem) != has(self.secretRef)",
    "message": "exactly one of pem and secretRef must be set"
}]))]
pub struct TrustedCertificates {
    /// A name for the certificates, used in verdict reasons and status messages.
    #[schemars(length(min = 1, max = 63), pattern(NAMESPACE_PATTERN))]
    pub name: String,
    /// One or more PEM-encoded certificates (`-----BEGIN CERTIFICATE-----`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub pem: Option<String>,
    /// A Secret in Zastava's namespace holding the PEM-encoded certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<CertificateSecretRef>,
}

/// A key of a Secret in Zastava's own namespace holding PEM certificates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The data key holding the PEM (`ca.crt`, as cert-manager and `kubernetes.io/tls`
    /// Secrets name it).
    #[serde(default = "default_certificate_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_certificate_key() -> String {
    "ca.crt".to_string()
}

/// What proves the time a keyless signature was made, so that a signing certificate is
/// checked against that time rather than against the time of admission.
///
/// That `RekorBundle` needs `rekorKeys` and `RFC3161Timestamp` needs `timestampAuthorities`
/// is checked by the operator, not by a CEL rule: kubectl 1.20 refuses
/// `x-kubernetes-validations` on an object that is not an array item.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SigningTime {
    #[serde(default)]
    pub proof: TimeProof,
    /// Public keys of the Rekor logs whose signed entry timestamps are accepted
    /// (`proof: RekorBundle`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rekor_keys: Vec<CosignKey>,
    /// The certificate chains of the time-stamping authorities whose RFC 3161 timestamps are
    /// accepted (`proof: RFC3161Timestamp`): each with its self-signed root and, optionally,
    /// intermediates and the TSA's own certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timestamp_authorities: Vec<TrustedCertificates>,
}

impl SigningTime {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// The proof of signing time a keyless signature must carry.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TimeProof {
    /// No proof: the signing certificate (and its chain) must be valid at admission. Suits
    /// long-lived certificates of an enterprise CA; a Fulcio certificate, valid for ten
    /// minutes, needs one of the two proofs.
    #[default]
    None,
    /// The signed entry timestamp of a Rekor bundle (`dev.sigstore.cosign/bundle`), verified
    /// with one of `rekorKeys`: the certificate must have been valid at the entry's
    /// integrated time.
    RekorBundle,
    /// An RFC 3161 timestamp over the signature (`dev.sigstore.cosign/rfc3161timestamp`,
    /// `cosign sign --timestamp-server-url`), chaining to one of `timestampAuthorities`: the
    /// certificate must have been valid at the timestamp's time.
    #[serde(rename = "RFC3161Timestamp")]
    Rfc3161Timestamp,
}

/// A cosign public key, inline or from a Secret: exactly one of `pem` and `secretRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.pem) != has(self.secretRef)",
    "message": "exactly one of pem and secretRef must be set"
}]))]
pub struct CosignKey {
    /// A name for the key, used in verdict reasons and status messages.
    #[schemars(length(min = 1, max = 63), pattern(NAMESPACE_PATTERN))]
    pub name: String,
    /// PEM-encoded public key (`-----BEGIN PUBLIC KEY-----`), as `cosign generate-key-pair` writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub pem: Option<String>,
    /// A Secret in Zastava's namespace holding the PEM-encoded public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in Zastava's own namespace (so the operator's RBAC stays namespaced).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The data key holding the PEM.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_secret_key() -> String {
    "cosign.pub".to_string()
}

/// A keyless (certificate) signer: each identity and issuer is given exactly or as a regular
/// expression; at least one of the four is set, and all that are set must match.
///
/// The subject is matched against the certificate's subject alternative names (email, URI or
/// DNS name); the issuer against its Fulcio OIDC-issuer extension (OID 1.3.6.1.4.1.57264.1.8,
/// else the older 1.3.6.1.4.1.57264.1.1). Regular expressions match anywhere in the value, as
/// cosign's `--certificate-identity-regexp` does: anchor them (`^...$`) to match it whole.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.issuer) || has(self.issuerRegExp) || has(self.subject) || has(self.subjectRegExp)",
    "message": "set at least one of issuer, issuerRegExp, subject, subjectRegExp"
}]))]
pub struct KeylessIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_reg_exp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_reg_exp: Option<String>,
}

/// SBOM referrers: an SBOM attached to the image digest (OCI referrers, the `sha256-<hex>`
/// fallback tag, or cosign's `.sbom` tag).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SbomReferrer {
    #[serde(default)]
    pub required: bool,
    /// Artifact types accepted as an SBOM.
    #[serde(default = "default_artifact_types")]
    #[schemars(inner(length(min = 1, max = 255)))]
    pub artifact_types: Vec<String>,
}

impl Default for SbomReferrer {
    fn default() -> Self {
        Self {
            required: false,
            artifact_types: default_artifact_types(),
        }
    }
}

fn default_artifact_types() -> Vec<String> {
    vec![CYCLONEDX_JSON.to_string()]
}

/// The external verdict of a Scanner.WebService (`POST /api/v1/scanner/policy/runtime`), asked
/// once per resolved image digest and cached per digest for the shorter of the backend's
/// `ttlSeconds` and the policy's cache TTL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendVerdict {
    /// Base URL of the backend; `/api/v1/scanner/policy/runtime` is called below it.
    #[schemars(length(max = 2048), pattern(r"^https?://[^\s]+$"))]
    pub url: String,
    /// PEM certificates of the CAs that sign the backend's serving certificate; when set, they
    /// are the only roots trusted for it (a private CA), otherwise the system's roots are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,
    /// The oldest TLS version spoken to the backend.
    #[serde(default)]
    pub min_tls_version: TlsVersion,
    /// How the webhook authenticates to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BackendAuth>,
    /// Deny (outside fail-open namespaces) when the backend cannot answer.
    #[serde(default)]
    pub required: bool,
    /// Admit images the backend rates `warn`.
    #[serde(default)]
    pub allow_warn: bool,
    #[serde(default = "default_backend_timeout")]
    #[schemars(range(min = 1, max = 30))]
    pub timeout_seconds: u32,
}

fn default_backend_timeout() -> u32 {
    5
}

impl BackendVerdict {
    /// The Secrets (in Zastava's namespace) the backend's credentials are read from.
    pub fn secret_names(&self) -> std::collections::BTreeSet<String> {
        let auth = self.auth.iter();
        auth.clone()
            .filter_map(|a| a.bearer_token_secret_ref.as_ref().map(|r| r.name.clone()))
            .chain(auth.filter_map(|a| {
                a.client_certificate_secret_ref
                    .as_ref()
                    .map(|r| r.name.clone())
            }))
            .collect()
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// Credentials for the backend, read by the webhook from Secrets in Zastava's namespace. The
/// webhook may read only the Secrets the chart lists in `webhook.backendSecrets` (its Role
/// names them), so a policy cannot make it read any other Secret of that namespace. Sent over
/// `https://` URLs only. (These rules are the operator's, not CEL rules of the schema:
/// Kubernetes 1.20, which Zastava supports, has no `x-kubernetes-validations` on objects.)
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendAuth {
    /// A Secret key holding the token sent as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<TokenSecretRef>,
    /// A `kubernetes.io/tls` Secret (`tls.crt` with its chain, `tls.key`) presented as the
    /// client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_secret_ref: Option<SecretRef>,
}

/// A key of a Secret in Zastava's own namespace holding a bearer token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TokenSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_token_key() -> String {
    "token".to_string()
}

/// A Secret in Zastava's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// How long admission verdicts are cached per image digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheSettings {
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl_seconds: u32,
    /// TTL of a verdict that denies; short so a freshly signed image is admitted soon.
    #[serde(default = "default_negative_ttl")]
    #[schemars(range(min = 0, max = 3600))]
    pub negative_ttl_seconds: u32,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl_seconds: default_ttl(),
            negative_ttl_seconds: default_negative_ttl(),
        }
    }
}

fn default_ttl() -> u32 {
    300
}

fn default_negative_ttl() -> u32 {
    30
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSettings {
    #[serde(default)]
    pub drift: DriftKinds,
    /// Listening ports allowed besides the pod's declared `containerPorts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(range(min = 1, max = 65535)))]
    pub allowed_listening_ports: Vec<u16>,
    /// Deny admission of image digests a node has reported as drifted.
    #[serde(default)]
    pub deny_drifted_images: bool,
    /// How often the images of running workloads in governed namespaces are verified again
    /// when nothing else triggers it (a policy change, a new digest, a registry back after a
    /// fail-open admission do at once).
    #[serde(default = "default_reverify_interval")]
    #[schemars(range(min = 60, max = 604800))]
    pub reverify_interval_seconds: u32,
}

fn default_reverify_interval() -> u32 {
    3 * 3600
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            drift: DriftKinds::default(),
            allowed_listening_ports: Vec::new(),
            deny_drifted_images: false,
            reverify_interval_seconds: default_reverify_interval(),
        }
    }
}

/// Which drift kinds the observers report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftKinds {
    #[serde(default = "yes")]
    pub process: bool,
    #[serde(default = "yes")]
    pub library: bool,
    #[serde(default = "yes")]
    pub filesystem: bool,
    #[serde(default = "yes")]
    pub network: bool,
}

impl Default for DriftKinds {
    fn default() -> Self {
        Self {
            process: true,
            library: true,
            filesystem: true,
            network: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ZastavaPolicyStatus {
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (the spec is usable) and `Ready` (the policy is in force), kstatus style;
    /// `Stalled` while the spec cannot be used.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// How many cosign public keys parsed (inline and from Secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_keys: Option<u32>,
    /// The public keys of `spec.verify.signature.keys[].secretRef` that parsed, as the operator
    /// read them from their Secrets: the webhook takes them from here and reads no Secret but
    /// its serving certificate's. Written by the operator only; always written, `[]` too
    /// (a list the apply leaves out is nulled by Kubernetes 1.20's server-side apply, which
    /// the schema then refuses).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub secret_keys: Vec<PublishedKey>,
    /// How many keyless identities parsed (their regular expressions compile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_identities: Option<u32>,
    /// The trust roots and time-stamping authority certificates that parsed, inline and from
    /// Secrets: which certificates each name stands for.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub resolved_certificates: Vec<ResolvedCertificates>,
    /// The certificates of `trustRoots[].secretRef` and `timestampAuthorities[].secretRef`
    /// that parsed, as the operator read them from their Secrets (the webhook takes them from
    /// here, as it does `secretKeys`). Always written, `[]` too.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub secret_certificates: Vec<PublishedCertificates>,
}

/// What a policy's `trustRoots` or `timestampAuthorities` entry resolved to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedCertificates {
    /// `trustRoots` or `timestampAuthorities`.
    pub usage: String,
    /// The entry's `name`.
    pub name: String,
    /// The subject of each certificate, in order (RFC 4514).
    pub subjects: Vec<String>,
    /// The earliest `notAfter` among them (RFC 3339): when this entry stops verifying.
    pub not_after: String,
}

/// Certificates read from a Secret, re-encoded as `CERTIFICATE` PEM blocks only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PublishedCertificates {
    /// The `name` of the entry in `trustRoots` or `timestampAuthorities`.
    pub name: String,
    /// Where they were read from; used only while the spec still names this Secret key.
    pub secret_ref: CertificateSecretRef,
    pub pem: String,
}

/// A public key read from a Secret, re-encoded as one `PUBLIC KEY` PEM block.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PublishedKey {
    /// The `name` of the key in `spec.verify.signature.keys`.
    pub name: String,
    /// Where it was read from; a key is used only while the spec still names this Secret key.
    pub secret_ref: SecretKeyRef,
    pub pem: String,
}
