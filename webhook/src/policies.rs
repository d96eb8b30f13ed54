//! The policies in force, as the webhook sees them: every `ZastavaPolicy` object with its
//! cosign keys and keyless settings resolved (inline PEM, and the keys and certificates of
//! Secrets as the operator publishes them in the policy's status: the webhook reads no Secret
//! but its own serving certificate's). Built by a pure function from what the reflector holds;
//! the server swaps the whole set atomically.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use sha2::{Digest, Sha256};
use sigstore::crypto::CosignVerificationKey;
use zastava_crds::certificates::{parse_certificates, Usage};
use zastava_crds::policy::{
    BackendVerdict, CacheSettings, CosignKey, TimeProof as ProofKind, TrustedCertificates,
    ZastavaPolicySpec,
};
use zastava_crds::{RuntimePosture, ZastavaPolicy, ZastavaPolicyStatus};
use zastava_registry::keyless::{IdentityRule, KeylessVerifier, RekorKey, TimeProof};
use zastava_registry::{RegistryFacts, Unavailable};

use crate::backend::{backend_key, Answers, BackendCall};
use crate::evaluate::{Check, Governing, ImageFacts, RegistryRules};

/// Image digests a node observer reported drifting, with where (for the deny reason).
pub type DriftedDigests = BTreeMap<String, String>;

/// Everything `evaluate` may ask about the images of one review.
pub struct Evidence<'a> {
    pub registry: &'a Lookups,
    pub backend: &'a Answers,
    /// `None` where the RuntimePostures cannot be read (the `check` CLI).
    pub drifted: Option<&'a DriftedDigests>,
}

/// The digests with drift findings in the RuntimePostures: a finding names a pod and
/// container, whose observed image digest is the one that drifted.
pub fn drifted_digests(postures: &[Arc<RuntimePosture>]) -> DriftedDigests {
    let mut drifted = DriftedDigests::new();
    for posture in postures {
        for node in posture.status.iter().flat_map(|s| s.nodes.iter()) {
            for finding in &node.drift {
                let digest = node
                    .containers
                    .iter()
                    .find(|c| c.pod == finding.pod && c.container == finding.container)
                    .and_then(|c| c.image_digest.clone());
                if let Some(digest) = digest {
                    drifted.entry(digest).or_insert_with(|| {
                        format!(
                            "{}/{} on {}: {} {}",
                            finding.pod,
                            finding.container,
                            node.node,
                            finding.kind.as_str(),
                            finding.subject
                        )
                    });
                }
            }
        }
    }
    drifted
}

/// What the registry said about each image of a workload, by the image as the pod spec gives
/// it; images without an entry were not looked up.
pub type Lookups = std::collections::HashMap<String, Result<Arc<RegistryFacts>, Unavailable>>;

/// One policy with the keys that parsed.
pub struct ActivePolicy {
    pub name: String,
    pub generation: i64,
    pub spec: ZastavaPolicySpec,
    pub registries: RegistryRules,
    pub keys: Vec<CosignVerificationKey>,
    /// The keyless settings, when the policy has keyless identities and they are usable.
    pub keyless: Option<KeylessVerifier>,
    /// Identifies the key material in `keys` and the keyless settings, for memoized
    /// verifications.
    pub key_set: u64,
    /// The key of `spec.verify.backend` ([`backend_key`]), computed once.
    pub backend: Option<String>,
}

impl ActivePolicy {
    pub fn governing(&self) -> Governing<'_> {
        Governing {
            name: &self.name,
            spec: &self.spec,
            registries: &self.registries,
        }
    }

    /// The answers to this policy's questions about `image`, from what the registry and the
    /// backend said (no entry: not asked). Signatures are checked against this policy's keys
    /// only.
    pub fn facts(&self, image: &str, evidence: &Evidence<'_>) -> ImageFacts {
        let backend = match &self.spec.verify.backend {
            None => Check::NotChecked,
            Some(_) => match self
                .backend
                .as_ref()
                .and_then(|key| evidence.backend.get(&(key.clone(), image.to_string())))
            {
                Some(Ok(result)) => Check::Known(result.clone()),
                Some(Err(e)) => Check::Unavailable(e.clone()),
                None => Check::NotChecked,
            },
        };
        let registry = match evidence.registry.get(image) {
            None => ImageFacts::not_checked(),
            Some(Err(e)) => ImageFacts::unavailable(&e.to_string()),
            Some(Ok(f)) => {
                let verifies = self.spec.verify.signature.required
                    || !self.keys.is_empty()
                    || self.keyless.is_some();
                let verdict = verifies.then(|| {
                    f.verify_signatures(self.key_set, &self.keys, self.keyless.as_ref(), unix_now())
                });
                ImageFacts {
                    digest: Check::Known(f.digest.clone()),
                    signed: match &verdict {
                        Some(v) => Check::Known(v.verified),
                        None => Check::NotChecked,
                    },
                    keyless_rejections: verdict.map(|v| v.rejections.clone()).unwrap_or_default(),
                    sbom: Check::Known(f.has_sbom(&self.spec.verify.sbom_referrer.artifact_types)),
                    base_digest: Check::Known(f.base_digest.clone()),
                    backend: Check::NotChecked,
                    drifted: match evidence.drifted {
                        Some(drifted) => Check::Known(drifted.get(&f.digest).cloned()),
                        None => Check::NotChecked,
                    },
                }
            }
        };
        ImageFacts {
            backend,
            ..registry
        }
    }

    /// Whether deciding under this policy needs what the registry says about an image.
    pub fn needs_registry(&self) -> bool {
        let verify = &self.spec.verify;
        verify.signature.required
            || verify.sbom_referrer.required
            || !self.spec.images.allowed_base_images.is_empty()
            // The digest must be known to compare it with the drifted ones.
            || self.spec.runtime.deny_drifted_images
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The PEM of a key: inline, or as the operator published it from its Secret (used only while
/// the spec still names the Secret key it came from).
fn key_pem(key: &CosignKey, status: Option<&ZastavaPolicyStatus>) -> Result<String, String> {
    match (&key.pem, &key.secret_ref) {
        (Some(pem), _) => Ok(pem.clone()),
        (None, Some(r)) => status
            .iter()
            .flat_map(|s| &s.secret_keys)
            .find(|k| k.name == key.name && &k.secret_ref == r)
            .map(|k| k.pem.clone())
            .ok_or_else(|| {
                format!(
                    "Secret {} key {} not published by the operator (see the policy's Ready condition)",
                    r.name, r.key
                )
            }),
        (None, None) => Err("neither pem nor secretRef".to_string()),
    }
}

/// The DER certificates of a `trustRoots` or `timestampAuthorities` entry: inline, or as the
/// operator published them from their Secret.
fn certificates_der(
    entry: &TrustedCertificates,
    usage: Usage,
    status: Option<&ZastavaPolicyStatus>,
    material: &mut Sha256,
) -> Result<Vec<Vec<u8>>, String> {
    let pem = match (&entry.pem, &entry.secret_ref) {
        (Some(pem), _) => pem.clone(),
        (None, Some(r)) => status
            .iter()
            .flat_map(|s| &s.secret_certificates)
            .find(|c| c.name == entry.name && &c.secret_ref == r)
            .map(|c| c.pem.clone())
            .ok_or_else(|| {
                format!(
                    "Secret {} key {} not published by the operator (see the policy's Ready condition)",
                    r.name, r.key
                )
            })?,
        (None, None) => return Err("neither pem nor secretRef".to_string()),
    };
    let parsed = parse_certificates(&pem, usage).map_err(|e| e.to_string())?;
    material.update(parsed.canonical_pem.as_bytes());
    material.update([0]);
    Ok(parsed.certificates.into_iter().map(|c| c.der).collect())
}

/// The policy's keyless settings, ready to verify (`None` without keyless identities), and
/// what of them cannot be used (the operator reports the same on the status). As for keys,
/// the entries that parsed are enforced: an unusable root, identity, Rekor key or TSA chain
/// only makes fewer signatures acceptable. Without any usable root or TSA root, no keyless
/// signature is.
fn keyless_verifier(
    spec: &ZastavaPolicySpec,
    status: Option<&ZastavaPolicyStatus>,
    material: &mut Sha256,
) -> (Option<KeylessVerifier>, Vec<String>) {
    let signature = &spec.verify.signature;
    if signature.keyless.is_empty() {
        return (None, Vec::new());
    }
    let mut problems = Vec::new();
    let mut roots = Vec::new();
    for (index, entry) in signature.trust_roots.iter().enumerate() {
        match certificates_der(entry, Usage::TrustRoots, status, material) {
            Ok(der) => roots.extend(der),
            Err(e) => problems.push(format!(
                "spec.verify.signature.trustRoots[{index}] ({}): {e}",
                entry.name
            )),
        }
    }
    let mut identities = Vec::new();
    for (index, identity) in signature.keyless.iter().enumerate() {
        let compile = |pattern: &Option<String>| pattern.as_deref().map(Regex::new).transpose();
        match (
            compile(&identity.subject_reg_exp),
            compile(&identity.issuer_reg_exp),
        ) {
            (Ok(subject_pattern), Ok(issuer_pattern)) => {
                material.update(format!("{identity:?}").as_bytes());
                identities.push(IdentityRule {
                    subject: identity.subject.clone(),
                    subject_pattern,
                    issuer: identity.issuer.clone(),
                    issuer_pattern,
                });
            }
            (Err(e), _) | (_, Err(e)) => problems.push(format!(
                "spec.verify.signature.keyless[{index}]: {}",
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        }
    }
    let time = &signature.signing_time;
    material.update(format!("{:?}", time.proof).as_bytes());
    let proof = match time.proof {
        ProofKind::None => TimeProof::None,
        ProofKind::RekorBundle => {
            let mut keys = Vec::new();
            for (index, key) in time.rekor_keys.iter().enumerate() {
                match key_pem(key, status).and_then(|pem| {
                    material.update(pem.as_bytes());
                    RekorKey::from_pem(&key.name, &pem)
                }) {
                    Ok(k) => keys.push(k),
                    Err(e) => problems.push(format!(
                        "spec.verify.signature.signingTime.rekorKeys[{index}] ({}): {e}",
                        key.name
                    )),
                }
            }
            TimeProof::RekorBundle(keys)
        }
        ProofKind::Rfc3161Timestamp => {
            let mut certificates = Vec::new();
            for (index, entry) in time.timestamp_authorities.iter().enumerate() {
                match certificates_der(entry, Usage::TimestampAuthority, status, material) {
                    Ok(der) => certificates.extend(der),
                    Err(e) => problems.push(format!(
                        "spec.verify.signature.signingTime.timestampAuthorities[{index}] ({}): {e}",
                        entry.name
                    )),
                }
            }
            match TimeProof::rfc3161(certificates) {
                Ok(proof) => proof,
                Err(e) => {
                    problems.push(format!(
                        "spec.verify.signature.signingTime.timestampAuthorities: {e}"
                    ));
                    return (None, problems);
                }
            }
        }
    };
    if roots.is_empty() {
        problems.push(
            "spec.verify.signature.trustRoots: no usable trust root, so no keyless signature is accepted".to_string(),
        );
        return (None, problems);
    }
    match KeylessVerifier::new(&roots, identities, proof) {
        Ok(verifier) => (Some(verifier), problems),
        Err(e) => {
            problems.push(format!("spec.verify.signature.trustRoots: {e}"));
            (None, problems)
        }
    }
}

/// Every policy in force, sorted by name.
#[derive(Default)]
pub struct PolicySet {
    pub policies: Vec<ActivePolicy>,
    /// Problems met while resolving keys, as `policy: problem` (the operator reports the same
    /// on the policy's status; the webhook logs them and enforces the keys that parsed).
    pub problems: Vec<String>,
}

impl PolicySet {
    /// Builds the set from the policy objects.
    pub fn build(policies: &[Arc<ZastavaPolicy>]) -> Self {
        let mut problems = Vec::new();
        let mut active: Vec<ActivePolicy> = policies
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let name = p.metadata.name.clone().unwrap_or_default();
                let mut keys = Vec::new();
                let mut key_material = Sha256::new();
                for (index, key) in p.spec.verify.signature.keys.iter().enumerate() {
                    match key_pem(key, p.status.as_ref()).and_then(|pem| {
                        let key = CosignVerificationKey::try_from_pem(pem.as_bytes())
                            .map_err(|e| e.to_string())?;
                        key_material.update(pem.as_bytes());
                        key_material.update([0]);
                        Ok(key)
                    }) {
                        Ok(k) => keys.push(k),
                        Err(e) => problems.push(format!(
                            "{name}: spec.verify.signature.keys[{index}] ({}): {e}",
                            key.name
                        )),
                    }
                }
                let (keyless, unusable) =
                    keyless_verifier(&p.spec, p.status.as_ref(), &mut key_material);
                problems.extend(unusable.into_iter().map(|e| format!("{name}: {e}")));
                let digest = key_material.finalize();
                ActivePolicy {
                    name,
                    generation: p.metadata.generation.unwrap_or_default(),
                    spec: p.spec.clone(),
                    registries: RegistryRules::of(&p.spec),
                    keys,
                    keyless,
                    key_set: u64::from_be_bytes(digest[..8].try_into().expect("32-byte digest")),
                    backend: p.spec.verify.backend.as_ref().map(backend_key),
                }
            })
            .collect();
        active.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            policies: active,
            problems,
        }
    }

    /// `name@generation,...`: changes exactly when some policy's spec changes.
    pub fn fingerprint(&self) -> String {
        self.policies
            .iter()
            .map(|p| format!("{}@{}", p.name, p.generation))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The cache TTLs: the shortest any policy asks for (defaults without policies).
    pub fn ttls(&self) -> (Duration, Duration) {
        let defaults = CacheSettings::default();
        let positive = self
            .policies
            .iter()
            .map(|p| p.spec.cache.ttl_seconds)
            .min()
            .unwrap_or(defaults.ttl_seconds);
        let negative = self
            .policies
            .iter()
            .map(|p| p.spec.cache.negative_ttl_seconds)
            .min()
            .unwrap_or(defaults.negative_ttl_seconds);
        (
            Duration::from_secs(positive.into()),
            Duration::from_secs(negative.into()),
        )
    }

    /// The ImageFacts `evaluate` asks for, answered from `evidence`.
    pub fn facts<'a>(
        &'a self,
        evidence: &'a Evidence<'a>,
    ) -> impl Fn(&str, &Governing<'_>) -> ImageFacts + 'a {
        move |image, policy| match self.get(policy.name) {
            Some(active) => active.facts(image, evidence),
            None => ImageFacts::not_checked(),
        }
    }

    /// The backends `policies` ask, with the shortest timeout any of them sets.
    pub fn backends(&self, policies: &[Governing<'_>]) -> Vec<BackendCall> {
        let mut calls: BTreeMap<&str, BackendCall> = BTreeMap::new();
        for policy in policies {
            let (Some(settings), Some(key)) = (
                policy.spec.verify.backend.as_ref(),
                self.get(policy.name).and_then(|p| p.backend.as_deref()),
            ) else {
                continue;
            };
            let timeout = Duration::from_secs(settings.timeout_seconds.into());
            calls
                .entry(key)
                .and_modify(|c| c.timeout = c.timeout.min(timeout))
                .or_insert_with(|| BackendCall {
                    key: key.to_string(),
                    url: settings.url.clone(),
                    timeout,
                });
        }
        calls.into_values().collect()
    }

    /// Every backend some policy names, by key, with its settings.
    pub fn backend_settings(&self) -> BTreeMap<String, BackendVerdict> {
        self.policies
            .iter()
            .filter_map(|p| Some((p.backend.clone()?, p.spec.verify.backend.clone()?)))
            .collect()
    }

    /// Whether any of `policies` needs the registry.
    pub fn needs_registry(&self, policies: &[Governing<'_>]) -> bool {
        policies
            .iter()
            .filter_map(|g| self.get(g.name))
            .any(|p| p.needs_registry())
    }

    pub fn get(&self, name: &str) -> Option<&ActivePolicy> {
        self.policies
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.policies[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A P-256 public key PEM, the kind `cosign generate-key-pair` writes.
    fn pem() -> String {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .public_key_pem()
    }

    fn policy(name: &str, generation: i64, spec: serde_json::Value) -> Arc<ZastavaPolicy> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "ZastavaPolicy",
                "metadata": {"name": name, "generation": generation}, "spec": spec
            }))
            .unwrap(),
        )
    }

    #[test]
    fn keys_resolve_inline_and_from_the_status_and_bad_ones_are_named() {
        let stored = pem();
        let mut p = policy(
            "p",
            3,
            json!({"verify": {"signature": {"required": true, "keys": [
                {"name": "inline", "pem": pem()},
                {"name": "stored", "secretRef": {"name": "k"}},
                {"name": "broken", "pem": "garbage"},
                {"name": "missing", "secretRef": {"name": "nope"}},
                {"name": "moved", "secretRef": {"name": "k", "key": "new.pub"}},
            ]}}}),
        );
        // The operator published "stored", and "moved" as it was before its spec changed.
        Arc::make_mut(&mut p).status = Some(
            serde_json::from_value(json!({"secretKeys": [
                {"name": "stored", "secretRef": {"name": "k", "key": "cosign.pub"}, "pem": stored},
                {"name": "moved", "secretRef": {"name": "k", "key": "cosign.pub"}, "pem": pem()},
            ]}))
            .unwrap(),
        );
        let set = PolicySet::build(&[p]);
        let active = set.get("p").unwrap();
        assert_eq!(active.keys.len(), 2);
        assert!(active.needs_registry());
        assert_eq!(set.problems.len(), 3, "{:?}", set.problems);
        assert!(set.problems[0].starts_with("p: spec.verify.signature.keys[2] (broken): "));
        assert_eq!(
            set.problems[1],
            "p: spec.verify.signature.keys[3] (missing): Secret nope key cosign.pub not published by the operator (see the policy's Ready condition)"
        );
        assert!(set.problems[2].starts_with(
            "p: spec.verify.signature.keys[4] (moved): Secret k key new.pub not published"
        ));
    }

    /// A CA and a signature by a certificate it issued to `email` (issuer extension set),
    /// over a payload naming `digest`.
    fn keyless_signature(digest: &str, email: &str) -> (String, zastava_registry::SignedPayload) {
        use base64::Engine;
        use rcgen::SigningKey;
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Corp Root");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(email.try_into().unwrap())];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        let issuer = "https://idp.example.com";
        let mut value = vec![0x0c, u8::try_from(issuer.len()).unwrap()];
        value.extend_from_slice(issuer.as_bytes());
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
                value,
            ));
        let leaf = params.signed_by(&key, &ca).unwrap();
        let payload = json!({"critical": {"image": {"docker-manifest-digest": digest}}})
            .to_string()
            .into_bytes();
        let signature =
            base64::engine::general_purpose::STANDARD.encode(key.sign(&payload).unwrap());
        (
            ca.pem(),
            zastava_registry::SignedPayload {
                payload,
                signature,
                certificate: Some(leaf.pem()),
                ..Default::default()
            },
        )
    }

    #[test]
    fn keyless_identities_verify_against_the_policy_roots_and_say_why_not() {
        let digest = format!("sha256:{}", "c".repeat(64));
        let (root, signature) = keyless_signature(&digest, "mallory@example.com");
        let spec = |root: &str| {
            json!({"verify": {"signature": {"required": true,
                "keyless": [{"subject": "alice@example.com", "issuer": "https://idp.example.com"}],
                "trustRoots": [{"name": "corp", "pem": root},
                               {"name": "stored", "secretRef": {"name": "corp-ca"}}]}}})
        };
        let set = PolicySet::build(&[policy("p", 1, spec(&root))]);
        let active = set.get("p").unwrap();
        assert!(active.keyless.is_some());
        // The Secret's root was not published: named, and the inline root still counts.
        assert_eq!(set.problems.len(), 1, "{:?}", set.problems);
        assert!(set.problems[0].starts_with("p: spec.verify.signature.trustRoots[1] (stored): Secret corp-ca key ca.crt not published"));

        let facts = Arc::new(RegistryFacts {
            digest: digest.clone(),
            signatures: vec![signature.clone()],
            ..RegistryFacts::default()
        });
        let lookups = Lookups::from([("r/app:1".to_string(), Ok(facts))]);
        let evidence = Evidence {
            registry: &lookups,
            backend: &Answers::new(),
            drifted: None,
        };
        let found = active.facts("r/app:1", &evidence);
        assert_eq!(found.signed, Check::Known(false));
        assert_eq!(found.keyless_rejections.len(), 1);
        assert!(
            found.keyless_rejections[0].starts_with("signed by mallory@example.com (issuer https://idp.example.com), which is not an allowed identity [subject alice@example.com, issuer https://idp.example.com]"),
            "{:?}",
            found.keyless_rejections
        );

        // Another policy whose identity matches admits the same signature.
        let alice = spec(&root).to_string().replace("alice@", "mallory@");
        let set = PolicySet::build(&[policy("q", 1, serde_json::from_str(&alice).unwrap())]);
        let found = set.get("q").unwrap().facts("r/app:1", &evidence);
        assert_eq!(found.signed, Check::Known(true));
        assert!(found.keyless_rejections.is_empty());
        // Keyless material is part of the memo key: the two policies do not share verdicts.
        assert_ne!(set.get("q").unwrap().key_set, active.key_set);
    }

    #[test]
    fn drifted_digests_come_from_findings_and_the_container_they_name() {
        let posture: RuntimePosture = serde_json::from_value(json!({
            "apiVersion": "zastava.stellaops.io/v1alpha1", "kind": "RuntimePosture",
            "metadata": {"name": "deployment-web", "namespace": "team"},
            "spec": {"workload": {"kind": "Deployment", "name": "web"}},
            "status": {"nodes": [{"node": "node1",
                "containers": [
                    {"pod": "web-1", "container": "app", "containerId": "c1", "imageRef": "r/web:1", "imageDigest": "sha256:aa"},
                    {"pod": "web-1", "container": "side", "containerId": "c2", "imageRef": "r/side:1", "imageDigest": "sha256:bb"},
                ],
                "drift": [{"kind": "process", "pod": "web-1", "container": "app", "subject": "/tmp/evil"}],
            }]},
        }))
        .unwrap();
        let drifted = drifted_digests(&[Arc::new(posture)]);
        assert_eq!(drifted.len(), 1);
        assert_eq!(
            drifted["sha256:aa"],
            "web-1/app on node1: process /tmp/evil"
        );
    }

    #[test]
    fn fingerprint_and_ttls_follow_the_policies() {
        let a = policy(
            "a",
            1,
            json!({"cache": {"ttlSeconds": 60, "negativeTtlSeconds": 5}}),
        );
        let b = policy("b", 2, json!({"images": {"bannedTags": ["latest"]}}));
        let set = PolicySet::build(&[b.clone(), a]);
        assert_eq!(set.fingerprint(), "a@1,b@2");
        assert_eq!(
            set.ttls(),
            (Duration::from_secs(60), Duration::from_secs(5))
        );
        assert!(!set.get("b").unwrap().needs_registry());
        assert_eq!(
            PolicySet::build(&[b]).ttls(),
            (Duration::from_secs(300), Duration::from_secs(30))
        );
    }
}
