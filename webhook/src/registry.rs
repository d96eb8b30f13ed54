//! What the registry says about an image, fetched over the OCI distribution API: the digest a
//! tag resolves to, the cosign signatures attached to that digest (the `sha256-<hex>.sig` tag
//! and OCI 1.1 referrers), the SBOMs attached to it (referrers — the API, or the
//! `sha256-<hex>` referrers tag on registries without it — and cosign's `.sbom`/`.att` tags),
//! and the base-image annotation.
//!
//! The facts are independent of any policy; [`RegistryFacts::signed_by`] and
//! [`RegistryFacts::has_sbom`] answer one policy's question from them, so one registry round
//! trip serves every policy and the result can be cached per digest.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sigstore::crypto::{CosignVerificationKey, Signature};
use zastava_crds::image::ImageReference;

use crate::metrics::Metrics;

pub const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
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
/// Signature payloads are small JSON documents; anything larger is not one.
const MAX_PAYLOAD_BYTES: i64 = 64 * 1024;
/// Referrers looked at per image: bounds the work an image with thousands of referrers costs.
const MAX_REFERRERS: usize = 32;
/// SBOM documents read (CycloneDX JSON of a large image is a few MB).
pub const MAX_SBOM_BYTES: i64 = 32 * 1024 * 1024;

/// The registry could not answer (unreachable, timeout, 5xx, 429, refused credentials, or
/// the image is unknown to it). Never cached.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("registry {registry}: {message}")]
pub struct Unavailable {
    pub registry: String,
    pub message: String,
}

/// One cosign signature found for an image: the signed payload and its base64 signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPayload {
    pub payload: Vec<u8>,
    pub signature: String,
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
    /// Verdicts of [`signed_by`](Self::signed_by) by key-set id: an ECDSA verification costs
    /// more than the rest of a warm decision, and the answer cannot change for this digest.
    pub verified: VerifiedMemo,
}

/// A memo that is not part of the value: clones start empty, and it never affects equality.
#[derive(Debug, Default)]
pub struct VerifiedMemo(Mutex<HashMap<u64, bool>>);

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
        let memo = |m: &Mutex<HashMap<u64, bool>>| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key_set)
                .copied()
        };
        if let Some(known) = memo(&self.verified.0) {
            return known;
        }
        let verified = self.verify(keys);
        self.verified
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key_set, verified);
        verified
    }

    fn verify(&self, keys: &[CosignVerificationKey]) -> bool {
        self.signatures.iter().any(|s| {
            payload_digest(&s.payload).as_deref() == Some(self.digest.as_str())
                && keys.iter().any(|k| {
                    k.verify_signature(Signature::Base64Encoded(s.signature.as_bytes()), &s.payload)
                        .is_ok()
                })
        })
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

/// Talks to registries. One `oci_client::Client` per registry and credential, reused across
/// requests so connections and bearer tokens are kept.
pub struct Registry {
    insecure: Vec<String>,
    timeout: Duration,
    clients: Mutex<HashMap<(String, u64), Arc<Client>>>,
    /// Registries that answered `GET /v2/` without asking for credentials.
    open: Mutex<HashMap<String, bool>>,
    http: reqwest::Client,
    metrics: Metrics,
}

impl Registry {
    /// `insecure` lists the registries (`host:port`) spoken to over plain HTTP.
    pub fn new(insecure: Vec<String>, timeout: Duration, metrics: Metrics) -> Self {
        Self {
            insecure,
            timeout,
            clients: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            metrics,
        }
    }

    /// The credentials to present to `registry`. oci-client asks `GET /v2/` for a challenge
    /// before every anonymous call it has no token for, and a registry that needs no
    /// credentials never gives one, so every call there costs two round trips. Such a
    /// registry, asked once here, is spoken to with an empty bearer token instead, which
    /// oci-client sends without asking and the registry ignores. Registries that challenge
    /// (every public one) keep the anonymous token flow, whose tokens oci-client caches.
    async fn effective_auth(&self, registry: &str, auth: &RegistryAuth) -> RegistryAuth {
        if *auth != RegistryAuth::Anonymous {
            return auth.clone();
        }
        let known = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(registry)
            .copied();
        let open = match known {
            Some(open) => open,
            None => {
                let scheme = if self.insecure.iter().any(|r| r == registry) {
                    "http"
                } else {
                    "https"
                };
                let host = if registry == "docker.io" {
                    "index.docker.io"
                } else {
                    registry
                };
                let open = match self.http.get(format!("{scheme}://{host}/v2/")).send().await {
                    Ok(r) => {
                        r.status().is_success()
                            && !r.headers().contains_key(reqwest::header::WWW_AUTHENTICATE)
                    }
                    // Unreachable now: decide next time; the call itself will report it.
                    Err(_) => return auth.clone(),
                };
                self.open
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(registry.to_string(), open);
                open
            }
        };
        if open {
            RegistryAuth::Bearer(String::new())
        } else {
            auth.clone()
        }
    }

    fn client(&self, registry: &str, auth: &RegistryAuth) -> Arc<Client> {
        let key = (registry.to_string(), auth_fingerprint(auth));
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Client::new(ClientConfig {
                    protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
                    connect_timeout: Some(self.timeout),
                    read_timeout: Some(self.timeout),
                    ..ClientConfig::default()
                }))
            })
            .clone()
    }

    /// The digest `image` (by tag) points to.
    pub async fn resolve(
        &self,
        image: &ImageReference,
        auth: &RegistryAuth,
    ) -> Result<String, Unavailable> {
        if let Some(digest) = &image.digest {
            return Ok(digest.clone());
        }
        let reference = Reference::with_tag(
            image.registry.clone(),
            image.repository.clone(),
            image.tag.clone().unwrap_or_else(|| "latest".to_string()),
        );
        let auth = &self.effective_auth(&image.registry, auth).await;
        let client = self.client(&image.registry, auth);
        self.timed("resolve", &image.registry, async {
            client.fetch_manifest_digest(&reference, auth).await
        })
        .await
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
    pub async fn facts(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        auth: &RegistryAuth,
    ) -> Result<RegistryFacts, Unavailable> {
        let auth = &self.effective_auth(registry, auth).await;
        let client = self.client(registry, auth);
        let at = |tag_or_digest: String| reference_at(registry, repository, tag_or_digest);
        let subject = at(digest.to_string());
        let tag_prefix = digest.replace(':', "-");
        let sig = at(format!("{tag_prefix}.sig"));
        let sbom = at(format!("{tag_prefix}.sbom"));
        let att = at(format!("{tag_prefix}.att"));
        let index_tag = at(tag_prefix);
        // Independent branches run concurrently; each signature branch fetches its payloads
        // as soon as its manifest arrives, so the slowest branch alone sets the latency.
        let (manifest, tag_signatures, sbom_tag, att_tag, referrers) = tokio::join!(
            self.manifest(&client, &subject, auth, registry, "manifest"),
            async {
                match self
                    .optional_manifest(&client, &sig, auth, registry)
                    .await?
                {
                    Some(m) => self.signatures(&client, &sig, &m, registry).await,
                    None => Ok(Vec::new()),
                }
            },
            self.optional_manifest(&client, &sbom, auth, registry),
            self.optional_manifest(&client, &att, auth, registry),
            self.referrers(&client, &subject, &index_tag, auth, registry, &at),
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
        client: &Client,
        reference: &Reference,
        manifest: &Value,
        registry: &str,
    ) -> Result<Vec<SignedPayload>, Unavailable> {
        let layers = simplesigning_layers(manifest);
        let payloads = futures::future::join_all(
            layers
                .iter()
                .map(|(descriptor, _)| self.blob(client, reference, descriptor, registry)),
        )
        .await;
        layers
            .into_iter()
            .zip(payloads)
            .map(|((_, signature), payload)| {
                Ok(SignedPayload {
                    payload: payload?,
                    signature,
                })
            })
            .collect()
    }

    async fn manifest(
        &self,
        client: &Client,
        reference: &Reference,
        auth: &RegistryAuth,
        registry: &str,
        operation: &'static str,
    ) -> Result<Value, Unavailable> {
        let (bytes, _) = self
            .timed(operation, registry, async {
                client
                    .pull_manifest_raw(reference, auth, &MANIFEST_TYPES)
                    .await
            })
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| Unavailable {
            registry: registry.to_string(),
            message: format!("manifest {reference} is not JSON: {e}"),
        })
    }

    /// A manifest that may legitimately not exist (an unsigned image has no `.sig` tag).
    async fn optional_manifest(
        &self,
        client: &Client,
        reference: &Reference,
        auth: &RegistryAuth,
        registry: &str,
    ) -> Result<Option<Value>, Unavailable> {
        let started = Instant::now();
        let result = client
            .pull_manifest_raw(reference, auth, &MANIFEST_TYPES)
            .await;
        self.observe("attachment", started);
        match result {
            Ok((bytes, _)) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(self.unavailable(registry, e)),
        }
    }

    /// The signatures and SBOM artifact types among the referrers of `subject`. Registries
    /// without the referrers API keep the referrers index under the `sha256-<hex>` tag: it is
    /// read directly (one request, artifact types included), and the API asked only when that
    /// tag does not exist.
    async fn referrers(
        &self,
        client: &Client,
        subject: &Reference,
        index_tag: &Reference,
        auth: &RegistryAuth,
        registry: &str,
        at: &(impl Fn(String) -> Reference + Sync),
    ) -> Result<(Vec<SignedPayload>, BTreeSet<String>), Unavailable> {
        let entries = self
            .referrer_entries(client, subject, index_tag, auth, registry)
            .await?;
        let mut signatures = Vec::new();
        let mut types = BTreeSet::new();
        for (digest, known_type) in entries.into_iter().take(MAX_REFERRERS) {
            let reference = at(digest);
            let is_other = known_type
                .as_deref()
                .is_some_and(|t| t != COSIGN_SIGNATURE_ARTIFACT);
            if is_other {
                types.extend(known_type.filter(|t| t != EMPTY_ARTIFACT));
                continue;
            }
            // A signature, or an entry whose type only its manifest tells.
            let manifest = self
                .manifest(client, &reference, auth, registry, "referrer")
                .await?;
            match artifact_type(&manifest).as_str() {
                COSIGN_SIGNATURE_ARTIFACT => signatures.extend(
                    self.signatures(client, &reference, &manifest, registry)
                        .await?,
                ),
                "" => {}
                other => {
                    types.insert(other.to_string());
                }
            }
        }
        Ok((signatures, types))
    }

    /// The referrers of `subject` as (digest, artifact type when the listing gives it).
    async fn referrer_entries(
        &self,
        client: &Client,
        subject: &Reference,
        index_tag: &Reference,
        auth: &RegistryAuth,
        registry: &str,
    ) -> Result<Vec<(String, Option<String>)>, Unavailable> {
        Ok(
            match self
                .optional_manifest(client, index_tag, auth, registry)
                .await?
            {
                Some(index) => index["manifests"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| {
                        let digest = m["digest"].as_str()?.to_string();
                        Some((digest, m["artifactType"].as_str().map(String::from)))
                    })
                    .collect(),
                None => {
                    client.store_auth_if_needed(registry, auth).await;
                    self.timed("referrers", registry, async {
                        client.pull_referrers(subject, None).await
                    })
                    .await?
                    .manifests
                    .into_iter()
                    .map(|m| (m.digest, m.artifact_type))
                    .collect()
                }
            },
        )
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
        let auth = &self.effective_auth(registry, auth).await;
        let client = self.client(registry, auth);
        let at = |tag_or_digest: String| reference_at(registry, repository, tag_or_digest);
        let tag_prefix = digest.replace(':', "-");
        let entries = self
            .referrer_entries(
                &client,
                &at(digest.to_string()),
                &at(tag_prefix.clone()),
                auth,
                registry,
            )
            .await?;
        for (referrer, known_type) in entries.into_iter().take(MAX_REFERRERS) {
            if known_type.as_deref().is_some_and(|t| !is_cyclonedx(t)) {
                continue;
            }
            let reference = at(referrer);
            let manifest = self
                .manifest(&client, &reference, auth, registry, "referrer")
                .await?;
            if !is_cyclonedx(&artifact_type(&manifest)) {
                continue;
            }
            if let Some(layer) = sbom_layer(&manifest, true) {
                return self
                    .sbom_blob(&client, &reference, &layer, registry)
                    .await
                    .map(Some);
            }
        }
        let cosign = at(format!("{tag_prefix}.sbom"));
        if let Some(manifest) = self
            .optional_manifest(&client, &cosign, auth, registry)
            .await?
        {
            if let Some(layer) = sbom_layer(&manifest, false) {
                return self
                    .sbom_blob(&client, &cosign, &layer, registry)
                    .await
                    .map(Some);
            }
        }
        Ok(None)
    }

    async fn sbom_blob(
        &self,
        client: &Client,
        reference: &Reference,
        layer: &OciDescriptor,
        registry: &str,
    ) -> Result<Vec<u8>, Unavailable> {
        if layer.size > MAX_SBOM_BYTES {
            return Err(Unavailable {
                registry: registry.to_string(),
                message: format!(
                    "the SBOM of {reference} has {} bytes, more than the {MAX_SBOM_BYTES} read",
                    layer.size
                ),
            });
        }
        self.blob(client, reference, layer, registry).await
    }

    async fn blob(
        &self,
        client: &Client,
        reference: &Reference,
        descriptor: &OciDescriptor,
        registry: &str,
    ) -> Result<Vec<u8>, Unavailable> {
        let mut out = Vec::new();
        self.timed("blob", registry, async {
            client.pull_blob(reference, descriptor, &mut out).await
        })
        .await?;
        Ok(out)
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        registry: &str,
        call: impl std::future::Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<T, Unavailable> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, call).await;
        self.observe(operation, started);
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.unavailable(registry, e)),
            Err(_) => {
                self.metrics
                    .registry_failures
                    .with_label_values(&["timeout"])
                    .inc();
                Err(Unavailable {
                    registry: registry.to_string(),
                    message: format!("{operation} timed out after {:?}", self.timeout),
                })
            }
        }
    }

    fn observe(&self, operation: &str, started: Instant) {
        self.metrics
            .registry_latency
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
    }

    fn unavailable(&self, registry: &str, error: OciDistributionError) -> Unavailable {
        let kind = match &error {
            OciDistributionError::RequestError(_) => "unreachable",
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => "unauthorized",
            OciDistributionError::ServerError { code, .. } if *code == 429 => "throttled",
            OciDistributionError::ServerError { code, .. } if *code >= 500 => "server_error",
            _ if is_absent(&error) => "not_found",
            _ => "protocol",
        };
        self.metrics
            .registry_failures
            .with_label_values(&[kind])
            .inc();
        Unavailable {
            registry: registry.to_string(),
            message: error.to_string(),
        }
    }
}

/// A 404 of the distribution API: the manifest or repository does not exist.
fn is_absent(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().all(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
            )
        }),
        _ => false,
    }
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

/// `registry/repository` at a tag, or at a digest (`sha256:...`).
fn reference_at(registry: &str, repository: &str, tag_or_digest: String) -> Reference {
    if tag_or_digest.starts_with("sha256:") {
        Reference::with_digest(registry.to_string(), repository.to_string(), tag_or_digest)
    } else {
        Reference::with_tag(registry.to_string(), repository.to_string(), tag_or_digest)
    }
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

/// The simple-signing layers of a cosign signature manifest, with their base64 signatures.
pub fn simplesigning_layers(manifest: &Value) -> Vec<(OciDescriptor, String)> {
    manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["mediaType"] == COSIGN_SIMPLESIGNING)
        .filter_map(|l| {
            let signature = l["annotations"][COSIGN_SIGNATURE_ANNOTATION].as_str()?;
            let size = l["size"].as_i64()?;
            if !(0..=MAX_PAYLOAD_BYTES).contains(&size) {
                return None;
            }
            let descriptor = OciDescriptor {
                media_type: COSIGN_SIMPLESIGNING.to_string(),
                digest: l["digest"].as_str()?.to_string(),
                size,
                ..OciDescriptor::default()
            };
            Some((descriptor, signature.to_string()))
        })
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
        (SignedPayload { payload, signature }, key.public_key_pem())
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
        facts.signatures.push(SignedPayload {
            payload: vec![],
            signature: String::new(),
        });
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
            (layers[0].0.digest.as_str(), layers[0].1.as_str()),
            ("sha256:aa", "MEUCIQ==")
        );

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

    #[test]
    fn a_missing_manifest_is_absence_not_an_outage() {
        let absent = OciDistributionError::ServerError {
            code: 404,
            url: "u".into(),
            message: String::new(),
        };
        assert!(is_absent(&absent));
        let down = OciDistributionError::ServerError {
            code: 503,
            url: "u".into(),
            message: String::new(),
        };
        assert!(!is_absent(&down));
    }
}
