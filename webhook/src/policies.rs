//! The policies in force, as the webhook sees them: every `ZastavaPolicy` object with its
//! cosign keys resolved (inline PEM, and the keys of Secrets as the operator publishes them in
//! the policy's status: the webhook reads no Secret but its own serving certificate's). Built
//! by a pure function from what the reflector holds; the server swaps the whole set atomically.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sigstore::crypto::CosignVerificationKey;
use zastava_crds::policy::{BackendVerdict, CacheSettings, ZastavaPolicySpec};
use zastava_crds::{RuntimePosture, ZastavaPolicy};
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
    /// Identifies the key material in `keys`, for memoized verifications.
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
            Some(Ok(f)) => ImageFacts {
                digest: Check::Known(f.digest.clone()),
                signed: if self.spec.verify.signature.required || !self.keys.is_empty() {
                    Check::Known(f.signed_by(self.key_set, &self.keys))
                } else {
                    Check::NotChecked
                },
                sbom: Check::Known(f.has_sbom(&self.spec.verify.sbom_referrer.artifact_types)),
                base_digest: Check::Known(f.base_digest.clone()),
                backend: Check::NotChecked,
                drifted: match evidence.drifted {
                    Some(drifted) => Check::Known(drifted.get(&f.digest).cloned()),
                    None => Check::NotChecked,
                },
            },
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
                    let pem = match (&key.pem, &key.secret_ref) {
                        (Some(pem), _) => Ok(pem.as_bytes().to_vec()),
                        // Used only while the spec still names the Secret key it came from.
                        (None, Some(r)) => p
                            .status
                            .iter()
                            .flat_map(|s| &s.secret_keys)
                            .find(|k| k.name == key.name && &k.secret_ref == r)
                            .map(|k| k.pem.as_bytes().to_vec())
                            .ok_or_else(|| {
                                format!(
                                    "Secret {} key {} not published by the operator (see the policy's Ready condition)",
                                    r.name, r.key
                                )
                            }),
                        (None, None) => Err("neither pem nor secretRef".to_string()),
                    };
                    match pem.and_then(|pem| {
                        let key = CosignVerificationKey::try_from_pem(&pem).map_err(|e| e.to_string())?;
                        key_material.update(&pem);
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
                if !p.spec.verify.signature.keyless.is_empty() {
                    problems.push(format!(
                        "{name}: keyless identities are not verified by this webhook (no Fulcio/Rekor trust root); only keys count"
                    ));
                }
                let digest = key_material.finalize();
                ActivePolicy {
                    name,
                    generation: p.metadata.generation.unwrap_or_default(),
                    spec: p.spec.clone(),
                    registries: RegistryRules::of(&p.spec),
                    keys,
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
