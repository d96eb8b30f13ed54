//! zastava-registry: talking to OCI registries, for the webhook (tags, signatures, SBOM
//! referrers of the images it admits) and the observer (the SBOMs of the images it watches).
//!
//! The crate root is the registry client ([`Registry`]) and what it finds out; beneath it,
//! [`distribution`] speaks the HTTP side of the distribution API for one registry and
//! credential, [`destination`] holds the rules against server-side request forgery that every
//! redirect and token realm passes, [`limits`] every cap on what a registry sends, and
//! [`metrics`] the two metrics the client records.
//!
//! What the registry says about an image, fetched over the OCI distribution API: the digest a
//! tag resolves to, the cosign signatures attached to that digest (the `sha256-<hex>.sig` tag
//! and OCI 1.1 referrers), the SBOMs attached to it (referrers — the API, or the
//! `sha256-<hex>` referrers tag on registries without it — and cosign's `.sbom`/`.att` tags),
//! and the base-image annotation.
//!
//! The facts are independent of any policy; [`RegistryFacts::signed_by`] and
//! [`RegistryFacts::has_sbom`] answer one policy's question from them, so one registry round
//! trip serves every policy and the result can be cached per digest.

pub mod destination;
pub mod distribution;
pub mod keyless;
pub mod limits;
pub mod metrics;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sigstore::crypto::{CosignVerificationKey, Signature};
use zastava_crds::image::ImageReference;

use crate::distribution::{Endpoint, FetchError};
use crate::keyless::KeylessVerifier;
use crate::limits::{
    MAX_FETCHES_IN_FLIGHT, MAX_KEYLESS_ANNOTATION_BYTES, MAX_MANIFEST_BYTES, MAX_PAYLOAD_BYTES,
    MAX_REFERRERS, MAX_REJECTIONS_KEPT, MAX_SBOM_BYTES, MAX_SIGNATURE_LAYERS,
};
use crate::metrics::RegistryMetrics;

pub const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The signing certificate of a keyless signature (PEM).
pub const COSIGN_CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The certificates between the signing certificate and its root (PEM, intermediates first).
pub const COSIGN_CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// A Rekor bundle: the log's signed entry timestamp of the signature.
pub const COSIGN_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// An RFC 3161 timestamp of the signature.
pub const COSIGN_TIMESTAMP_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";
/// The artifact type cosign gives a signature stored as an OCI 1.1 referrer.
pub const COSIGN_SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";
/// in-toto predicate types of SBOM attestations (`cosign attest --type ...`), and the artifact
/// type each counts as.
const SBOM_PREDICATES: [(&str, &str); 2] = [
    (
        "https://cyclonedx.org/bom",
        "application/vnd.cyclonedx+json",
    ),
    ("https://spdx.dev/Document", "application/spdx+json"),
];
const MANIFEST_TYPES: [&str; 4] = [
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];
/// What OCI 1.1 artifacts without a config of their own carry as config media type.
const EMPTY_ARTIFACT: &str = "application/vnd.oci.empty.v1+json";
/// The registry could not answer (unreachable, timeout, 5xx, 429, refused credentials, or
/// the image is unknown to it). Never cached.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("registry {registry}: {message}")]
pub struct Unavailable {
    pub registry: String,
    pub message: String,
}

/// One cosign signature found for an image: the signed payload, its base64 signature and
/// what a keyless signature carries besides (each annotation only when present and no larger
/// than [`MAX_KEYLESS_ANNOTATION_BYTES`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignedPayload {
    pub payload: Vec<u8>,
    pub signature: String,
    /// `dev.sigstore.cosign/certificate`.
    pub certificate: Option<String>,
    /// `dev.sigstore.cosign/chain`.
    pub chain: Option<String>,
    /// `dev.sigstore.cosign/bundle`.
    pub bundle: Option<String>,
    /// `dev.sigstore.cosign/rfc3161timestamp`.
    pub timestamp: Option<String>,
}

/// What a signature layer's annotations say, before its payload is fetched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerAnnotations {
    pub signature: String,
    pub certificate: Option<String>,
    pub chain: Option<String>,
    pub bundle: Option<String>,
    pub timestamp: Option<String>,
}

/// Whether the signatures of an image verify under one policy, and if not, why its keyless
/// signatures were not accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureVerdict {
    pub verified: bool,
    /// One reason per distinct way keyless signatures failed (at most
    /// [`MAX_REJECTIONS_KEPT`]); empty when verified or when the policy has no keyless
    /// settings.
    pub rejections: Vec<String>,
    /// The verdict must be worked out again from this time on (seconds since the epoch): it
    /// rests on the clock (a certificate valid now, without a proof of signing time).
    pub recheck_at: Option<u64>,
}

/// Everything the registry says about one image digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryFacts {
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
    pub signatures: Vec<SignedPayload>,
    /// Artifact types of the SBOMs attached to the digest.
    pub sbom_types: BTreeSet<String>,
    /// The manifest's `org.opencontainers.image.base.digest` annotation.
    pub base_digest: Option<String>,
    /// Verdicts of [`verify_signatures`](Self::verify_signatures) by verifier-set id: an
    /// ECDSA verification costs more than the rest of a warm decision, and the answer cannot
    /// change for this digest (until its `recheck_at`, when it has one).
    pub verified: VerifiedMemo,
}

/// A memo that is not part of the value: clones start empty, and it never affects equality.
#[derive(Debug, Default)]
pub struct VerifiedMemo(Mutex<HashMap<u64, Arc<SignatureVerdict>>>);

impl Clone for VerifiedMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for VerifiedMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for VerifiedMemo {}

impl RegistryFacts {
    /// Whether a signature over this digest verifies against any of `keys` (whose set is
    /// identified by `key_set`). A payload that names another digest does not count: a
    /// signature cannot be moved between images.
    pub fn signed_by(&self, key_set: u64, keys: &[CosignVerificationKey]) -> bool {
        self.verify_signatures(key_set, keys, None, unix_now())
            .verified
    }

    /// Whether a signature over this digest verifies against any of `keys` or is a keyless
    /// signature `keyless` accepts, at `now` (seconds since the epoch). `set` identifies the
    /// keys and keyless settings together, for the memo.
    pub fn verify_signatures(
        &self,
        set: u64,
        keys: &[CosignVerificationKey],
        keyless: Option<&KeylessVerifier>,
        now: u64,
    ) -> Arc<SignatureVerdict> {
        let memo = |m: &Mutex<HashMap<u64, Arc<SignatureVerdict>>>| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&set)
                .filter(|v| v.recheck_at.is_none_or(|at| now < at))
                .cloned()
        };
        if let Some(known) = memo(&self.verified.0) {
            return known;
        }
        let verdict = Arc::new(self.verify(keys, keyless, now));
        self.verified
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(set, verdict.clone());
        verdict
    }

    fn verify(
        &self,
        keys: &[CosignVerificationKey],
        keyless: Option<&KeylessVerifier>,
        now: u64,
    ) -> SignatureVerdict {
        let mut verdict = SignatureVerdict::default();
        for s in &self.signatures {
            if payload_digest(&s.payload).as_deref() != Some(self.digest.as_str()) {
                continue;
            }
            let by_key = keys.iter().any(|k| {
                k.verify_signature(Signature::Base64Encoded(s.signature.as_bytes()), &s.payload)
                    .is_ok()
            });
            if by_key {
                return SignatureVerdict {
                    verified: true,
                    ..SignatureVerdict::default()
                };
            }
            let Some(keyless) = keyless else { continue };
            match keyless.verify(s, now) {
                Ok(signer) => {
                    return SignatureVerdict {
                        verified: true,
                        rejections: Vec::new(),
                        recheck_at: signer.holds_until,
                    }
                }
                Err(rejection) => {
                    if rejection.may_change_with_time() {
                        // Not valid yet: worth another look at the next decision.
                        verdict.recheck_at = Some(now);
                    }
                    let reason = rejection.to_string();
                    if !verdict.rejections.contains(&reason)
                        && verdict.rejections.len() < MAX_REJECTIONS_KEPT
                    {
                        verdict.rejections.push(reason);
                    }
                }
            }
        }
        verdict
    }

    /// Whether an SBOM of one of `accepted` artifact types is attached.
    pub fn has_sbom(&self, accepted: &[String]) -> bool {
        accepted.iter().any(|t| self.sbom_types.contains(t))
    }

    /// True when some policy would likely deny on these facts (no signature or no SBOM):
    /// such facts are cached for the short negative TTL so a freshly signed image is
    /// admitted soon.
    pub fn is_negative(&self) -> bool {
        self.signatures.is_empty() || self.sbom_types.is_empty()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `critical.image.docker-manifest-digest` of a cosign simple-signing payload.
pub fn payload_digest(payload: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    value
        .pointer("/critical/image/docker-manifest-digest")?
        .as_str()
        .map(String::from)
}

/// Credentials for one registry from a `kubernetes.io/dockerconfigjson` Secret: the `auths`
/// entry whose key names `registry` (with or without scheme and path).
pub fn docker_config_auth(config_json: &[u8], registry: &str) -> Option<RegistryAuth> {
    let value: Value = serde_json::from_slice(config_json).ok()?;
    let auths = value.get("auths")?.as_object()?;
    let (_, entry) = auths.iter().find(|(key, _)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        host == registry
            || (registry == "docker.io"
                && (host == "index.docker.io" || host == "registry-1.docker.io"))
    })?;
    if let (Some(user), Some(password)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Some(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str()?)
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(RegistryAuth::Basic(user.to_string(), password.to_string()))
}

/// An endpoint once it is set up; shared by the lookups waiting for it.
type EndpointCell = Arc<tokio::sync::OnceCell<Arc<Endpoint>>>;

/// Talks to registries. One [`Endpoint`] per registry and credential, reused across requests
/// so connections and bearer tokens are kept.
pub struct Registry {
    insecure: Vec<String>,
    allow_internal: bool,
    timeout: Duration,
    /// Each endpoint is set up once, and setting up one (a DNS lookup) holds up only the
    /// lookups of that registry, not those of every other image of the decision.
    endpoints: Mutex<HashMap<(String, u64), EndpointCell>>,
    metrics: RegistryMetrics,
}

impl Registry {
    /// `insecure` lists the registries (`host:port`) spoken to over plain HTTP; no other
    /// registry is, and no redirect or realm leads from HTTPS to HTTP. `timeout` bounds each
    /// registry operation (the decision's deadline bounds them all together).
    pub fn new(insecure: Vec<String>, timeout: Duration, metrics: RegistryMetrics) -> Self {
        Self {
            insecure,
            allow_internal: false,
            timeout,
            endpoints: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Lets redirects and token realms lead to loopback, link-local and private addresses
    /// whatever network the registry is on (`--registry-allow-internal-targets`).
    pub fn allow_internal_targets(mut self, allow: bool) -> Self {
        self.allow_internal = allow;
        self
    }

    async fn endpoint(
        &self,
        registry: &str,
        auth: &RegistryAuth,
    ) -> Result<Arc<Endpoint>, Unavailable> {
        let key = (registry.to_string(), auth_fingerprint(auth));
        let cell = self
            .endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let insecure = self.insecure.iter().any(|r| r == registry);
        let endpoint = cell
            .get_or_try_init(|| async {
                Endpoint::new(
                    registry,
                    insecure,
                    self.allow_internal,
                    self.timeout,
                    auth.clone(),
                )
                .await
                .map(Arc::new)
            })
            .await;
        match endpoint {
            Ok(endpoint) => Ok(endpoint.clone()),
            Err(e) => {
                // Only endpoints that could be set up are kept: names that lead nowhere
                // (a pod author chooses them) leave nothing behind.
                let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
                if endpoints.get(&key).is_some_and(|c| c.get().is_none()) {
                    endpoints.remove(&key);
                }
                Err(self.unavailable(registry, "connect", e))
            }
        }
    }

    /// The digest `image` (by tag) points to: the sha256 of the manifest the tag names.
    pub async fn resolve(
        &self,
        image: &ImageReference,
        auth: &RegistryAuth,
    ) -> Result<String, Unavailable> {
        if let Some(digest) = &image.digest {
            return Ok(digest.clone());
        }
        let tag = image.tag.clone().unwrap_or_else(|| "latest".to_string());
        let endpoint = self.endpoint(&image.registry, auth).await?;
        let head = self
            .timed("resolve", &image.registry, async {
                endpoint
                    .head_digest(
                        &image.repository,
                        &format!("manifests/{tag}"),
                        &MANIFEST_TYPES,
                    )
                    .await
                    // A registry that does not answer HEAD (405 ...) is asked with GET.
                    .or_else(|e| match e {
                        FetchError::Status(_) => Ok(None),
                        e => Err(e),
                    })
            })
            .await?;
        if let Some(digest) = head {
            return Ok(digest);
        }
        // No digest in the answer to HEAD: the manifest itself, hashed.
        let bytes = self
            .timed("resolve", &image.registry, async {
                endpoint
                    .get(
                        &image.repository,
                        &format!("manifests/{tag}"),
                        &MANIFEST_TYPES,
                        MAX_MANIFEST_BYTES,
                        "manifest",
                    )
                    .await
            })
            .await?;
        Ok(sha256_digest(&bytes))
    }

    /// Resolves `image` and fetches everything known about its digest, without caching (the
    /// `check` CLI; the server caches the two steps separately).
    pub async fn lookup(
        &self,
        image: &ImageReference,
        auth: &RegistryAuth,
    ) -> Result<RegistryFacts, Unavailable> {
        let digest = self.resolve(image, auth).await?;
        self.facts(&image.registry, &image.repository, &digest, auth)
            .await
    }

    /// Everything known about `registry/repository@digest`.
    ///
    /// Every fetch that needs only the digest starts at once: the manifest, the `.sig`,
    /// `.sbom` and `.att` tags, and the referrers (tag and API); what needs an answer first
    /// (signature payloads, referrer manifests) starts as soon as that answer arrives. A
    /// lookup is thus two round trips deep (a signature tag or a listed referrer, then its
    /// payload), three for a referrer whose listing does not give its type. At most
    /// [`MAX_FETCHES_IN_FLIGHT`] requests of one lookup are in flight at once.
    pub async fn facts(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        auth: &RegistryAuth,
    ) -> Result<RegistryFacts, Unavailable> {
        let at = Repo::new(self.endpoint(registry, auth).await?, registry, repository);
        let tag_prefix = digest.replace(':', "-");
        let sig = format!("{tag_prefix}.sig");
        let sbom = format!("{tag_prefix}.sbom");
        let att = format!("{tag_prefix}.att");
        // Independent branches run concurrently; each signature branch fetches its payloads
        // as soon as its manifest arrives, so the slowest branch alone sets the latency.
        let (manifest, tag_signatures, sbom_tag, att_tag, referrers) = tokio::join!(
            self.manifest(&at, digest, "manifest"),
            async {
                match self.optional_manifest(&at, &sig).await? {
                    Some(m) => self.signatures(&at, &m).await,
                    None => Ok(Vec::new()),
                }
            },
            self.optional_manifest(&at, &sbom),
            self.optional_manifest(&at, &att),
            self.referrers(&at, digest, &tag_prefix),
        );
        let manifest = manifest?;
        let (referrer_signatures, referrer_types) = referrers?;
        let mut facts = RegistryFacts {
            digest: digest.to_string(),
            base_digest: manifest["annotations"][BASE_DIGEST_ANNOTATION]
                .as_str()
                .map(String::from),
            signatures: tag_signatures?,
            sbom_types: referrer_types,
            ..RegistryFacts::default()
        };
        facts.signatures.extend(referrer_signatures);
        if let Some(m) = sbom_tag? {
            facts.sbom_types.extend(layer_types(&m));
        }
        if let Some(m) = att_tag? {
            facts.sbom_types.extend(attestation_sbom_types(&m));
        }
        Ok(facts)
    }

    /// The payloads of a cosign signature manifest's simple-signing layers.
    async fn signatures(
        &self,
        at: &Repo<'_>,
        manifest: &Value,
    ) -> Result<Vec<SignedPayload>, Unavailable> {
        let layers = simplesigning_layers(manifest);
        let payloads = futures::future::join_all(layers.iter().map(|(descriptor, _)| {
            self.blob(at, descriptor, MAX_PAYLOAD_BYTES, "signature payload")
        }))
        .await;
        layers
            .into_iter()
            .zip(payloads)
            .map(|((_, annotations), payload)| {
                Ok(SignedPayload {
                    payload: payload?,
                    signature: annotations.signature,
                    certificate: annotations.certificate,
                    chain: annotations.chain,
                    bundle: annotations.bundle,
                    timestamp: annotations.timestamp,
                })
            })
            .collect()
    }

    /// The manifest at `reference` (a tag, or a digest it must hash to).
    async fn manifest(
        &self,
        at: &Repo<'_>,
        reference: &str,
        operation: &'static str,
    ) -> Result<Value, Unavailable> {
        let bytes = self
            .timed(operation, at.registry, at.get_manifest(reference))
            .await?;
        self.parse_manifest(at, reference, &bytes)
    }

    fn parse_manifest(
        &self,
        at: &Repo<'_>,
        reference: &str,
        bytes: &[u8],
    ) -> Result<Value, Unavailable> {
        if reference.starts_with("sha256:") && sha256_digest(bytes) != reference {
            return Err(self.unavailable(
                at.registry,
                "manifest",
                FetchError::Protocol("manifest does not match its digest"),
            ));
        }
        serde_json::from_slice(bytes).map_err(|_| {
            self.unavailable(
                at.registry,
                "manifest",
                FetchError::Protocol("manifest is not JSON"),
            )
        })
    }

    /// A manifest that may legitimately not exist (an unsigned image has no `.sig` tag).
    async fn optional_manifest(
        &self,
        at: &Repo<'_>,
        tag: &str,
    ) -> Result<Option<Value>, Unavailable> {
        match self
            .timed("attachment", at.registry, at.get_manifest(tag))
            .await
        {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(Failed::Absent(_)) => Ok(None),
            Err(Failed::Other(e)) => Err(e),
        }
    }

    /// The signatures and SBOM artifact types among the referrers of `subject`. The manifests
    /// of the signatures and of the entries whose type the listing does not give are fetched
    /// at once (each signature's payloads as soon as its manifest arrives), in the listing's
    /// order.
    async fn referrers(
        &self,
        at: &Repo<'_>,
        subject: &str,
        index_tag: &str,
    ) -> Result<(Vec<SignedPayload>, BTreeSet<String>), Unavailable> {
        let entries = self.referrer_entries(at, subject, index_tag).await?;
        let mut types = BTreeSet::new();
        let mut to_fetch = Vec::new();
        for (digest, known_type) in entries.into_iter().take(MAX_REFERRERS) {
            match known_type {
                Some(t) if t != COSIGN_SIGNATURE_ARTIFACT => {
                    if t != EMPTY_ARTIFACT {
                        types.insert(t);
                    }
                }
                // A signature, or an entry whose type only its manifest tells.
                _ => to_fetch.push(digest),
            }
        }
        let fetched = futures::future::join_all(to_fetch.iter().map(|digest| async move {
            let manifest = self.manifest(at, digest, "referrer").await?;
            Ok::<_, Unavailable>(match artifact_type(&manifest).as_str() {
                COSIGN_SIGNATURE_ARTIFACT => (self.signatures(at, &manifest).await?, None),
                "" => (Vec::new(), None),
                other => (Vec::new(), Some(other.to_string())),
            })
        }))
        .await;
        let mut signatures = Vec::new();
        for result in fetched {
            let (found, artifact) = result?;
            signatures.extend(found);
            types.extend(artifact);
        }
        Ok((signatures, types))
    }

    /// The referrers of `subject` as (digest, artifact type when the listing gives it).
    /// Registries without the referrers API keep the referrers index under the
    /// `sha256-<hex>` tag: the tag and the API are asked at once (one round trip either way),
    /// and the API's answer is used when the tag does not exist. A registry that answered the
    /// API with 404 for a subject whose referrers tag exists has no such API (one that has it
    /// answers 200 even when nothing refers to the subject, and a client fell back to the
    /// tag): from then on only the tag is asked.
    async fn referrer_entries(
        &self,
        at: &Repo<'_>,
        subject: &str,
        index_tag: &str,
    ) -> Result<Vec<(String, Option<String>)>, Unavailable> {
        let path = format!("referrers/{subject}");
        let api = async {
            if at.endpoint.lacks_referrers_api() {
                return None;
            }
            let listed = self.timed(
                "referrers",
                at.registry,
                at.get(
                    &path,
                    &[oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE],
                    MAX_MANIFEST_BYTES,
                    "referrers index",
                ),
            );
            Some(listed.await)
        };
        let (tagged, listed) = tokio::join!(self.optional_manifest(at, index_tag), api);
        let tagged = tagged?;
        if tagged.is_some() && matches!(listed, Some(Err(Failed::Absent(_)))) {
            at.endpoint.set_lacks_referrers_api();
        }
        let index = match tagged {
            Some(index) => index,
            None => {
                match listed {
                    // Known to have no API.
                    None => return Ok(Vec::new()),
                    Some(Ok(bytes)) => serde_json::from_slice(&bytes).map_err(|_| {
                        self.unavailable(
                            at.registry,
                            "referrers",
                            FetchError::Protocol("referrers index is not JSON"),
                        )
                    })?,
                    // Neither the tag nor the API: nothing refers to the subject.
                    Some(Err(Failed::Absent(_))) => return Ok(Vec::new()),
                    Some(Err(Failed::Other(e))) => return Err(e),
                }
            }
        };
        Ok(index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let digest = m["digest"].as_str()?.to_string();
                Some((digest, m["artifactType"].as_str().map(String::from)))
            })
            .collect())
    }

    /// The CycloneDX JSON SBOM attached to `registry/repository@digest`, if any: a referrer
    /// of a CycloneDX artifact type (`oras attach`; the referrers API or the `sha256-<hex>`
    /// tag), else a CycloneDX layer of cosign's `.sbom` tag (`cosign attach sbom`). What the
    /// node observer compares loaded libraries with. Documents larger than
    /// [`MAX_SBOM_BYTES`] are refused rather than read.
    pub async fn cyclonedx_sbom(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        auth: &RegistryAuth,
    ) -> Result<Option<Vec<u8>>, Unavailable> {
        let at = Repo::new(self.endpoint(registry, auth).await?, registry, repository);
        let tag_prefix = digest.replace(':', "-");
        let entries = self.referrer_entries(&at, digest, &tag_prefix).await?;
        for (referrer, known_type) in entries.into_iter().take(MAX_REFERRERS) {
            if known_type.as_deref().is_some_and(|t| !is_cyclonedx(t)) {
                continue;
            }
            let manifest = self.manifest(&at, &referrer, "referrer").await?;
            if !is_cyclonedx(&artifact_type(&manifest)) {
                continue;
            }
            if let Some(layer) = sbom_layer(&manifest, true) {
                return self
                    .blob(&at, &layer, MAX_SBOM_BYTES, "SBOM")
                    .await
                    .map(Some);
            }
        }
        let cosign = format!("{tag_prefix}.sbom");
        if let Some(manifest) = self.optional_manifest(&at, &cosign).await? {
            if let Some(layer) = sbom_layer(&manifest, false) {
                return self
                    .blob(&at, &layer, MAX_SBOM_BYTES, "SBOM")
                    .await
                    .map(Some);
            }
        }
        Ok(None)
    }

    /// A blob read up to `cap` bytes while it streams (its declared size is not trusted), and
    /// checked against its digest.
    async fn blob(
        &self,
        at: &Repo<'_>,
        descriptor: &OciDescriptor,
        cap: usize,
        what: &'static str,
    ) -> Result<Vec<u8>, Unavailable> {
        if usize::try_from(descriptor.size).map_or(true, |size| size > cap) {
            return Err(self.unavailable(at.registry, "blob", FetchError::TooLarge { what, cap }));
        }
        let path = format!("blobs/{}", descriptor.digest);
        let bytes = self
            .timed("blob", at.registry, at.get(&path, &[], cap, what))
            .await
            .map_err(Failed::into_unavailable)?;
        if descriptor.digest.starts_with("sha256:") && sha256_digest(&bytes) != descriptor.digest {
            return Err(self.unavailable(
                at.registry,
                "blob",
                FetchError::Protocol("blob does not match its digest"),
            ));
        }
        Ok(bytes)
    }

    /// Runs one registry operation within the registry timeout, recording its latency; a 404
    /// is [`Failed::Absent`], any other failure is counted and becomes a fixed message.
    async fn timed<T>(
        &self,
        operation: &'static str,
        registry: &str,
        call: impl std::future::Future<Output = Result<T, FetchError>>,
    ) -> Result<T, Failed> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(FetchError::TimedOut));
        self.metrics
            .latency
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(value) => Ok(value),
            Err(FetchError::NotFound) => Err(Failed::Absent(Unavailable {
                registry: registry.to_string(),
                message: format!("{operation}: {}", FetchError::NotFound),
            })),
            Err(e) => Err(Failed::Other(self.unavailable(registry, operation, e))),
        }
    }

    fn unavailable(&self, registry: &str, operation: &str, error: FetchError) -> Unavailable {
        self.metrics
            .failures
            .with_label_values(&[error.kind()])
            .inc();
        tracing::info!(%registry, operation, %error, "registry gave no usable answer");
        Unavailable {
            registry: registry.to_string(),
            message: format!("{operation}: {error}"),
        }
    }
}

/// One repository of one registry, as the fetches of one lookup see it.
struct Repo<'a> {
    endpoint: Arc<Endpoint>,
    registry: &'a str,
    repository: &'a str,
    /// The lookup's requests in flight (each holds a connection to the registry).
    in_flight: tokio::sync::Semaphore,
}

impl<'a> Repo<'a> {
    fn new(endpoint: Arc<Endpoint>, registry: &'a str, repository: &'a str) -> Self {
        Self {
            endpoint,
            registry,
            repository,
            in_flight: tokio::sync::Semaphore::new(MAX_FETCHES_IN_FLIGHT),
        }
    }

    async fn get_manifest(&self, reference: &str) -> Result<Vec<u8>, FetchError> {
        self.get(
            &format!("manifests/{reference}"),
            &MANIFEST_TYPES,
            MAX_MANIFEST_BYTES,
            "manifest",
        )
        .await
    }

    /// `GET /v2/<repository>/<path>`, once one of the lookup's requests in flight is free.
    async fn get(
        &self,
        path: &str,
        accept: &[&str],
        cap: usize,
        what: &'static str,
    ) -> Result<Vec<u8>, FetchError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| FetchError::Protocol("lookup abandoned"))?;
        self.endpoint
            .get(self.repository, path, accept, cap, what)
            .await
    }
}

/// How a timed registry operation failed.
enum Failed {
    /// A 404: the manifest or blob does not exist.
    Absent(Unavailable),
    Other(Unavailable),
}

impl Failed {
    fn into_unavailable(self) -> Unavailable {
        match self {
            Failed::Absent(e) | Failed::Other(e) => e,
        }
    }
}

impl From<Failed> for Unavailable {
    fn from(failed: Failed) -> Self {
        failed.into_unavailable()
    }
}

/// `sha256:<hex>` of `bytes`.
fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn auth_fingerprint(auth: &RegistryAuth) -> u64 {
    let text = match auth {
        RegistryAuth::Anonymous => String::new(),
        RegistryAuth::Basic(user, password) => format!("basic\0{user}\0{password}"),
        RegistryAuth::Bearer(token) => format!("bearer\0{token}"),
    };
    let hash = Sha256::digest(text.as_bytes());
    u64::from_be_bytes(hash[..8].try_into().expect("sha256 has 32 bytes"))
}

/// Whether an artifact or media type is CycloneDX JSON (`application/vnd.cyclonedx+json`,
/// also with a `;version=` parameter).
fn is_cyclonedx(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.cyclonedx") && media_type.contains("json")
}

/// The layer holding the SBOM document of an SBOM manifest: the first CycloneDX layer, or —
/// for a referrer already typed as CycloneDX (`any_type`) — its only layer whatever its
/// media type (`oras attach` without `:type` gives it a generic one).
fn sbom_layer(manifest: &Value, any_type: bool) -> Option<OciDescriptor> {
    let layers: Vec<OciDescriptor> =
        serde_json::from_value(manifest["layers"].clone()).unwrap_or_default();
    let typed = layers.iter().find(|l| is_cyclonedx(&l.media_type)).cloned();
    match typed {
        Some(layer) => Some(layer),
        None if any_type && layers.len() == 1 => layers.into_iter().next(),
        None => None,
    }
}

/// The artifact type of a referrer manifest: `artifactType`, else its config's media type
/// (how artifacts were typed before OCI 1.1).
pub fn artifact_type(manifest: &Value) -> String {
    manifest["artifactType"]
        .as_str()
        .or_else(|| manifest["config"]["mediaType"].as_str())
        .filter(|t| *t != EMPTY_ARTIFACT)
        .unwrap_or_default()
        .to_string()
}

/// The media types of a manifest's layers (cosign's `.sbom` tag stores the SBOM as a layer).
pub fn layer_types(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["mediaType"].as_str().map(String::from))
        .collect()
}

/// SBOM artifact types vouched for by attestations (cosign's `.att` tag), from each layer's
/// `predicateType` annotation.
pub fn attestation_sbom_types(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["annotations"]["predicateType"].as_str())
        .filter_map(|p| {
            SBOM_PREDICATES
                .iter()
                .find(|(predicate, _)| *predicate == p)
                .map(|(_, artifact)| artifact.to_string())
        })
        .collect()
}

/// The simple-signing layers of a cosign signature manifest, with their base64 signatures
/// and keyless annotations. A keyless annotation larger than
/// [`MAX_KEYLESS_ANNOTATION_BYTES`] is left out (the signature then lacks it).
pub fn simplesigning_layers(manifest: &Value) -> Vec<(OciDescriptor, LayerAnnotations)> {
    manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["mediaType"] == COSIGN_SIMPLESIGNING)
        .filter_map(|l| {
            let annotations = &l["annotations"];
            let signature = annotations[COSIGN_SIGNATURE_ANNOTATION].as_str()?;
            let size = l["size"].as_i64()?;
            if !(0..=MAX_PAYLOAD_BYTES as i64).contains(&size) {
                return None;
            }
            let descriptor = OciDescriptor {
                media_type: COSIGN_SIMPLESIGNING.to_string(),
                digest: l["digest"].as_str()?.to_string(),
                size,
                ..OciDescriptor::default()
            };
            let keyless = |key: &str| {
                annotations[key]
                    .as_str()
                    .filter(|v| v.len() <= MAX_KEYLESS_ANNOTATION_BYTES)
                    .map(String::from)
            };
            let annotations = LayerAnnotations {
                signature: signature.to_string(),
                certificate: keyless(COSIGN_CERTIFICATE_ANNOTATION),
                chain: keyless(COSIGN_CHAIN_ANNOTATION),
                bundle: keyless(COSIGN_BUNDLE_ANNOTATION),
                timestamp: keyless(COSIGN_TIMESTAMP_ANNOTATION),
            };
            Some((descriptor, annotations))
        })
        .take(MAX_SIGNATURE_LAYERS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::SigningKey;
    use serde_json::json;

    const DIGEST: &str = "sha256:546ff503c91158fd220e5c466494023a2c9af6c91dee86e8f98ec76a1419d618";

    /// A cosign simple-signing payload for `digest`, signed (ECDSA P-256, SHA-256, as cosign
    /// does) with a fresh key; returns the payload and the key's public PEM.
    fn signed(digest: &str) -> (SignedPayload, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let payload = json!({"critical": {"identity": {"docker-reference": "r/app"},
            "image": {"docker-manifest-digest": digest}, "type": "cosign container image signature"},
            "optional": null})
        .to_string()
        .into_bytes();
        let signature =
            base64::engine::general_purpose::STANDARD.encode(key.sign(&payload).unwrap());
        (
            SignedPayload {
                payload,
                signature,
                ..SignedPayload::default()
            },
            key.public_key_pem(),
        )
    }

    fn key(pem: &str) -> CosignVerificationKey {
        CosignVerificationKey::try_from_pem(pem.as_bytes()).unwrap()
    }

    #[test]
    fn the_sbom_layer_of_an_sbom_manifest() {
        assert!(is_cyclonedx("application/vnd.cyclonedx+json"));
        assert!(is_cyclonedx("application/vnd.cyclonedx+json;version=1.5"));
        assert!(!is_cyclonedx("application/vnd.cyclonedx+xml"));
        assert!(!is_cyclonedx("application/spdx+json"));
        let layer = |media_type: &str, digest: &str| json!({"mediaType": media_type, "digest": digest, "size": 10});
        let typed = json!({"layers": [
            layer("application/spdx+json", "sha256:1"),
            layer("application/vnd.cyclonedx+json", "sha256:2"),
        ]});
        assert_eq!(sbom_layer(&typed, false).unwrap().digest, "sha256:2");
        // `oras attach --artifact-type application/vnd.cyclonedx+json sbom.json` types the
        // artifact, not its one layer.
        let oras = json!({"layers": [layer("application/octet-stream", "sha256:3")]});
        assert_eq!(sbom_layer(&oras, true).unwrap().digest, "sha256:3");
        assert!(sbom_layer(&oras, false).is_none());
        let two = json!({"layers": [
            layer("application/octet-stream", "sha256:4"),
            layer("text/plain", "sha256:5"),
        ]});
        assert!(
            sbom_layer(&two, true).is_none(),
            "which one would be a guess"
        );
        assert!(sbom_layer(&json!({"layers": "garbage"}), true).is_none());
        assert!(sbom_layer(&json!({}), true).is_none());
    }

    #[test]
    fn a_signature_verifies_only_with_its_key_and_for_its_digest() {
        let (payload, pem) = signed(DIGEST);
        let (_, other_pem) = signed(DIGEST);
        let facts = RegistryFacts {
            digest: DIGEST.to_string(),
            signatures: vec![payload.clone()],
            ..RegistryFacts::default()
        };
        assert!(facts.signed_by(1, &[key(&other_pem), key(&pem)]));
        assert!(!facts.signed_by(2, &[key(&other_pem)]));
        assert!(!facts.signed_by(3, &[]));
        // The memo answers per key set, without verifying again.
        assert!(facts.signed_by(1, &[]));
        assert!(!facts.signed_by(2, &[key(&pem)]));

        // The same signature presented for another image does not count.
        let moved = RegistryFacts {
            digest: format!("sha256:{}", "0".repeat(64)),
            signatures: vec![payload.clone()],
            ..RegistryFacts::default()
        };
        assert!(!moved.signed_by(1, &[key(&pem)]));

        // A tampered payload does not verify.
        let mut tampered = payload;
        tampered.payload.push(b' ');
        let facts = RegistryFacts {
            digest: DIGEST.to_string(),
            signatures: vec![tampered],
            ..RegistryFacts::default()
        };
        assert!(!facts.signed_by(1, &[key(&pem)]));
    }

    #[test]
    fn a_keyless_verdict_without_a_proof_is_kept_only_while_the_certificate_is_valid() {
        use crate::keyless::testing::{now, Ca, LeafSpec};
        use crate::keyless::{IdentityRule, KeylessVerifier, TimeProof};
        let root = Ca::new("Root");
        let leaf = root.leaf(&LeafSpec::email("alice@example.com", "https://idp"));
        let (payload, _) = signed(DIGEST);
        let signed = leaf.sign(&payload.payload);
        let facts = RegistryFacts {
            digest: DIGEST.to_string(),
            signatures: vec![SignedPayload {
                payload: signed.payload,
                signature: signed.signature,
                certificate: Some(leaf.pem.clone()),
                ..SignedPayload::default()
            }],
            ..RegistryFacts::default()
        };
        let rule = IdentityRule {
            subject: Some("alice@example.com".into()),
            subject_pattern: None,
            issuer: None,
            issuer_pattern: None,
        };
        let verifier = KeylessVerifier::new(&[root.der()], vec![rule], TimeProof::None).unwrap();
        let now = u64::try_from(now()).unwrap();
        let first = facts.verify_signatures(9, &[], Some(&verifier), now);
        assert!(first.verified);
        let until = first.recheck_at.expect("a verdict resting on the clock");
        // Memoized until then (the same Arc), worked out again after.
        assert!(Arc::ptr_eq(
            &first,
            &facts.verify_signatures(9, &[], Some(&verifier), until - 1)
        ));
        let later = facts.verify_signatures(9, &[], Some(&verifier), until + 1);
        assert!(!later.verified);
        assert!(
            later.rejections[0].starts_with("a signing certificate had expired at signing time"),
            "{later:?}"
        );
        // A keyless signature over another digest does not count, and says nothing.
        let moved = RegistryFacts {
            digest: format!("sha256:{}", "0".repeat(64)),
            signatures: facts.signatures.clone(),
            ..RegistryFacts::default()
        };
        let verdict = moved.verify_signatures(9, &[], Some(&verifier), now);
        assert!(!verdict.verified && verdict.rejections.is_empty());
    }

    #[test]
    fn sbom_types_and_negative_facts() {
        let mut facts = RegistryFacts::default();
        assert!(facts.is_negative());
        facts
            .sbom_types
            .insert("application/vnd.cyclonedx+json".into());
        assert!(facts.has_sbom(&[
            "application/spdx+json".into(),
            "application/vnd.cyclonedx+json".into()
        ]));
        assert!(!facts.has_sbom(&["application/spdx+json".into()]));
        assert!(facts.is_negative(), "no signature yet");
        facts.signatures.push(SignedPayload::default());
        assert!(!facts.is_negative());
    }

    #[test]
    fn cosign_and_oras_manifests_are_read() {
        let sig = json!({"layers": [
            {"mediaType": COSIGN_SIMPLESIGNING, "size": 250, "digest": "sha256:aa",
             "annotations": {COSIGN_SIGNATURE_ANNOTATION: "MEUCIQ=="}},
            {"mediaType": COSIGN_SIMPLESIGNING, "size": 10_000_000, "digest": "sha256:bb",
             "annotations": {COSIGN_SIGNATURE_ANNOTATION: "huge"}},
            {"mediaType": "application/octet-stream", "size": 1, "digest": "sha256:cc"},
        ]});
        let layers = simplesigning_layers(&sig);
        assert_eq!(layers.len(), 1, "oversized and foreign layers are skipped");
        assert_eq!(
            (layers[0].0.digest.as_str(), layers[0].1.signature.as_str()),
            ("sha256:aa", "MEUCIQ==")
        );
        assert_eq!(layers[0].1.certificate, None);

        // The keyless annotations travel with the signature; an oversized one is left out.
        let keyless = json!({"layers": [
            {"mediaType": COSIGN_SIMPLESIGNING, "size": 250, "digest": "sha256:aa",
             "annotations": {COSIGN_SIGNATURE_ANNOTATION: "MEUCIQ==",
                             COSIGN_CERTIFICATE_ANNOTATION: "leaf",
                             COSIGN_CHAIN_ANNOTATION: "x".repeat(MAX_KEYLESS_ANNOTATION_BYTES + 1),
                             COSIGN_TIMESTAMP_ANNOTATION: "{}"}},
        ]});
        let layers = simplesigning_layers(&keyless);
        let annotations = &layers[0].1;
        assert_eq!(annotations.certificate.as_deref(), Some("leaf"));
        assert_eq!(annotations.chain, None);
        assert_eq!(annotations.bundle, None);
        assert_eq!(annotations.timestamp.as_deref(), Some("{}"));

        let oras = json!({"artifactType": "application/vnd.cyclonedx+json",
                          "config": {"mediaType": "application/vnd.oci.empty.v1+json"}});
        assert_eq!(artifact_type(&oras), "application/vnd.cyclonedx+json");
        let legacy = json!({"config": {"mediaType": "application/spdx+json"}});
        assert_eq!(artifact_type(&legacy), "application/spdx+json");
        let empty = json!({"config": {"mediaType": "application/vnd.oci.empty.v1+json"}});
        assert_eq!(artifact_type(&empty), "");

        let sbom_tag = json!({"layers": [{"mediaType": "text/spdx+json"}]});
        assert_eq!(layer_types(&sbom_tag), ["text/spdx+json"]);
        let att = json!({"layers": [
            {"annotations": {"predicateType": "https://cyclonedx.org/bom"}},
            {"annotations": {"predicateType": "https://slsa.dev/provenance/v1"}},
        ]});
        assert_eq!(
            attestation_sbom_types(&att),
            ["application/vnd.cyclonedx+json"]
        );
        assert_eq!(payload_digest(b"not json"), None);
    }

    #[test]
    fn pull_secret_credentials_are_found_by_registry() {
        let config = json!({"auths": {
            "https://registry.example.com/v1/": {"auth": base64::engine::general_purpose::STANDARD.encode("alice:s3cret")},
            "127.0.0.1:5000": {"username": "bob", "password": "pw"},
            "https://index.docker.io/v1/": {"auth": base64::engine::general_purpose::STANDARD.encode("carol:x")},
        }})
        .to_string();
        let auth = |registry| docker_config_auth(config.as_bytes(), registry);
        assert_eq!(
            auth("registry.example.com"),
            Some(RegistryAuth::Basic("alice".into(), "s3cret".into()))
        );
        assert_eq!(
            auth("127.0.0.1:5000"),
            Some(RegistryAuth::Basic("bob".into(), "pw".into()))
        );
        assert_eq!(
            auth("docker.io"),
            Some(RegistryAuth::Basic("carol".into(), "x".into()))
        );
        assert_eq!(auth("ghcr.io"), None);
        assert_eq!(docker_config_auth(b"garbage", "ghcr.io"), None);
    }
}
