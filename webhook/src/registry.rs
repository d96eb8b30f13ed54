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
/// Signature payloads are small JSON documents; anything larger is not one.
const MAX_PAYLOAD_BYTES: i64 = 64 * 1024;
/// Referrers looked at per image: bounds the work an image with thousands of referrers costs.
const MAX_REFERRERS: usize = 32;

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
}

impl RegistryFacts {
    /// Whether a signature over this digest verifies against any of `keys`. A payload that
    /// names another digest does not count: a signature cannot be moved between images.
    pub fn signed_by(&self, keys: &[CosignVerificationKey]) -> bool {
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
    metrics: Metrics,
}

impl Registry {
    /// `insecure` lists the registries (`host:port`) spoken to over plain HTTP.
    pub fn new(insecure: Vec<String>, timeout: Duration, metrics: Metrics) -> Self {
        Self {
            insecure,
            timeout,
            clients: Mutex::new(HashMap::new()),
            metrics,
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
        let client = self.client(registry, auth);
        let at = |tag_or_digest: String| {
            if tag_or_digest.starts_with("sha256:") {
                Reference::with_digest(registry.to_string(), repository.to_string(), tag_or_digest)
            } else {
                Reference::with_tag(registry.to_string(), repository.to_string(), tag_or_digest)
            }
        };
        let subject = at(digest.to_string());
        let tag_prefix = digest.replace(':', "-");
        let sig = at(format!("{tag_prefix}.sig"));
        let sbom = at(format!("{tag_prefix}.sbom"));
        let att = at(format!("{tag_prefix}.att"));
        let (manifest, sig_tag, sbom_tag, att_tag, referrers) = tokio::join!(
            self.manifest(&client, &subject, auth, registry, "manifest"),
            self.optional_manifest(&client, &sig, auth, registry),
            self.optional_manifest(&client, &sbom, auth, registry),
            self.optional_manifest(&client, &att, auth, registry),
            self.referrers(&client, &subject, auth, registry),
        );
        let manifest = manifest?;
        let mut facts = RegistryFacts {
            digest: digest.to_string(),
            base_digest: manifest["annotations"][BASE_DIGEST_ANNOTATION]
                .as_str()
                .map(String::from),
            ..RegistryFacts::default()
        };
        let mut signature_manifests = Vec::new();
        if let Some(m) = sig_tag? {
            signature_manifests.push((sig, m));
        }
        if let Some(m) = sbom_tag? {
            facts.sbom_types.extend(layer_types(&m));
        }
        if let Some(m) = att_tag? {
            facts.sbom_types.extend(attestation_sbom_types(&m));
        }
        for (referrer_digest, referrer) in referrers? {
            let artifact_type = artifact_type(&referrer);
            if artifact_type == COSIGN_SIGNATURE_ARTIFACT {
                signature_manifests.push((at(referrer_digest), referrer));
            } else if !artifact_type.is_empty() {
                facts.sbom_types.insert(artifact_type);
            }
        }
        for (reference, manifest) in signature_manifests {
            for layer in simplesigning_layers(&manifest) {
                let payload = self.blob(&client, &reference, &layer.0, registry).await?;
                facts.signatures.push(SignedPayload {
                    payload,
                    signature: layer.1,
                });
            }
        }
        Ok(facts)
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

    /// The referrers of `subject` with their manifests, through the referrers API or the
    /// `sha256-<hex>` tag on registries without it.
    async fn referrers(
        &self,
        client: &Client,
        subject: &Reference,
        auth: &RegistryAuth,
        registry: &str,
    ) -> Result<Vec<(String, Value)>, Unavailable> {
        client.store_auth_if_needed(registry, auth).await;
        let index = self
            .timed("referrers", registry, async {
                client.pull_referrers(subject, None).await
            })
            .await?;
        let mut out = Vec::new();
        for entry in index.manifests.iter().take(MAX_REFERRERS) {
            let reference = Reference::with_digest(
                registry.to_string(),
                subject.repository().to_string(),
                entry.digest.clone(),
            );
            let manifest = self
                .manifest(client, &reference, auth, registry, "referrer")
                .await?;
            out.push((entry.digest.clone(), manifest));
        }
        Ok(out)
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

/// The artifact type of a referrer manifest: `artifactType`, else its config's media type
/// (how artifacts were typed before OCI 1.1).
pub fn artifact_type(manifest: &Value) -> String {
    manifest["artifactType"]
        .as_str()
        .or_else(|| manifest["config"]["mediaType"].as_str())
        .filter(|t| *t != "application/vnd.oci.empty.v1+json")
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
