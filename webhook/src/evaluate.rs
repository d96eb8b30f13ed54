//! The admission decision as a pure function of the governing policies, the workload and what
//! is known about each image.
//!
//! Policies combine this way: every `Enforce` policy that governs the namespace must pass for
//! the workload to be admitted; an `Audit` policy's failures become warnings. A gate that could
//! not be answered (registry or backend down) denies, except in a policy's
//! `failOpenNamespaces`, where it admits with a warning and the fail-open audit annotation.

use std::collections::BTreeMap;

use zastava_crds::contracts::{
    AdmissionDecision, Decision, ImageDecision, ADMISSION_DECISION_SCHEMA,
};
use zastava_crds::governs::NEVER_GOVERNED;
use zastava_crds::image::{ImageReference, RegistryPattern};
use zastava_crds::policy::{CacheSettings, PolicyMode, ZastavaPolicySpec};
use zastava_crds::posture::Verdict;

use crate::backend::ImageResult;
use crate::workload::Workload;

/// The answer to one registry or backend question about an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check<T> {
    Known(T),
    /// The registry or backend could not answer (timeout, 5xx, 429, unreachable).
    Unavailable(String),
    /// Not asked: `--offline`, or no lookup wired for this gate.
    NotChecked,
}

/// What the registry (and backend) said about one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFacts {
    /// The `sha256:` digest the reference resolves to.
    pub digest: Check<String>,
    /// Whether a cosign signature verifies against the policy's keys or keyless settings.
    pub signed: Check<bool>,
    /// Why the image's keyless signatures were not accepted (empty when one was, or when the
    /// policy has no keyless settings): the deny reason names them.
    pub keyless_rejections: Vec<String>,
    /// Whether an SBOM of an accepted artifact type is attached.
    pub sbom: Check<bool>,
    /// The `org.opencontainers.image.base.digest` annotation, if any.
    pub base_digest: Check<Option<String>>,
    /// The external backend's verdict (policies with `verify.backend`).
    pub backend: Check<ImageResult>,
    /// Where this digest was seen drifting at runtime, if a node reported it.
    pub drifted: Check<Option<String>>,
}

impl ImageFacts {
    /// The registry (or backend) could not answer any question about the image.
    pub fn unavailable(message: &str) -> Self {
        Self {
            digest: Check::Unavailable(message.to_string()),
            signed: Check::Unavailable(message.to_string()),
            keyless_rejections: Vec::new(),
            sbom: Check::Unavailable(message.to_string()),
            base_digest: Check::Unavailable(message.to_string()),
            backend: Check::NotChecked,
            drifted: Check::Unavailable(message.to_string()),
        }
    }

    pub fn not_checked() -> Self {
        Self {
            digest: Check::NotChecked,
            signed: Check::NotChecked,
            keyless_rejections: Vec::new(),
            sbom: Check::NotChecked,
            base_digest: Check::NotChecked,
            backend: Check::NotChecked,
            drifted: Check::NotChecked,
        }
    }
}

/// A policy as the evaluation sees it.
#[derive(Clone, Copy, Debug)]
pub struct Governing<'a> {
    pub name: &'a str,
    pub spec: &'a ZastavaPolicySpec,
    /// The spec's registry lists, parsed.
    pub registries: &'a RegistryRules,
}

/// A policy's `deniedRegistries` and `allowedRegistries`, parsed once when the policy set is
/// built rather than for every image of every review. An entry that does not parse matches
/// nothing (the operator reports it on the policy's status).
#[derive(Clone, Debug, Default)]
pub struct RegistryRules {
    /// Each with the entry as written, for the deny reason.
    denied: Vec<(String, RegistryPattern)>,
    allowed: Vec<RegistryPattern>,
}

impl RegistryRules {
    pub fn of(spec: &ZastavaPolicySpec) -> Self {
        let images = &spec.images;
        Self {
            denied: (images.denied_registries.iter())
                .filter_map(|e| Some((e.clone(), RegistryPattern::parse(e).ok()?)))
                .collect(),
            allowed: (images.allowed_registries.iter())
                .filter_map(|e| RegistryPattern::parse(e).ok())
                .collect(),
        }
    }
}

/// The decision plus what goes into the AdmissionReview response besides it.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub decision: AdmissionDecision,
    /// Shown to the user by kubectl (Audit findings, fail-open admissions, unchecked gates).
    pub warnings: Vec<String>,
    /// A verification could not complete and a fail-open namespace admitted anyway.
    pub fail_open: bool,
    /// A verification could not complete and that denied (the namespace is not fail-open).
    pub fail_closed: bool,
    /// Gates that were not checked, as `image: gate`.
    pub not_checked: Vec<String>,
    /// Images (as the pod spec gives them) an Enforce policy could not verify, the registry
    /// or backend not answering, with the fail mode that decided (fail-closed wins when
    /// policies differ): their verdict says what was known, not what is true.
    pub unverified: BTreeMap<String, FailMode>,
}

/// Which fail mode a decision applied: what happened to the gates that could not be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum FailMode {
    /// Every gate was answered (or none needed the registry or a backend).
    #[serde(rename = "none")]
    None,
    /// A gate could not be answered and a fail-open namespace admitted past it.
    #[serde(rename = "failOpen")]
    FailOpen,
    /// A gate could not be answered and that denied.
    #[serde(rename = "failClosed")]
    FailClosed,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::None => "none",
            FailMode::FailOpen => "failOpen",
            FailMode::FailClosed => "failClosed",
        }
    }
}

impl Evaluation {
    /// The fail mode applied; fail-closed wins when policies disagree (it decided: the
    /// workload is denied).
    pub fn fail_mode(&self) -> FailMode {
        if self.fail_closed {
            FailMode::FailClosed
        } else if self.fail_open {
            FailMode::FailOpen
        } else {
            FailMode::None
        }
    }
}

/// What one gate concluded about one image under one policy.
enum Finding {
    Violation(String),
    Unverifiable(String),
    /// Worth a warning, never a deny (an optional backend that did not answer).
    Advisory(String),
    NotChecked(&'static str),
}

/// Decides on `workload` in `namespace` under `policies`, the policies that govern the
/// namespace (see [`governing`]). `facts` answers the registry questions for one image
/// reference under one policy (signatures are checked against that policy's keys).
pub fn evaluate(
    admission_id: &str,
    namespace: &str,
    workload: &Workload,
    policies: &[Governing<'_>],
    facts: &dyn Fn(&str, &Governing<'_>) -> ImageFacts,
) -> Evaluation {
    let mut warnings = Vec::new();
    let mut not_checked = Vec::new();
    let mut fail_open = false;
    let mut fail_closed = false;
    let mut unverified = BTreeMap::new();
    let mut denied = false;
    let mut images: BTreeMap<&str, ImageDecision> = BTreeMap::new();
    // The shortest `ttlSeconds` a backend answered with: the decision holds no longer.
    let mut backend_ttl: Option<u32> = None;

    for image in workload.image_names() {
        if images.contains_key(image) {
            continue;
        }
        let parsed = workload.reference(image);
        let parsed = parsed.as_ref().as_ref();
        let mut entry = ImageDecision {
            name: image.to_string(),
            resolved: parsed
                .ok()
                .and_then(|r| r.digest.as_ref().map(|d| r.pinned(d))),
            signed: None,
            has_sbom_referrers: None,
            policy_verdict: Verdict::Pass,
            reasons: Vec::new(),
            rekor: None,
        };
        for policy in policies {
            let image_facts = facts(image, policy);
            if let Check::Known(answer) = &image_facts.backend {
                entry.rekor = entry.rekor.take().or_else(|| answer.rekor.clone());
                if let Some(ttl) = answer.ttl_seconds {
                    backend_ttl = Some(backend_ttl.map_or(ttl, |shortest| shortest.min(ttl)));
                }
            }
            if let (Ok(r), Check::Known(d)) = (&parsed, &image_facts.digest) {
                entry.resolved = Some(r.pinned(d));
            }
            // Each policy verifies against its own keys; the image counts as signed (or as
            // having an SBOM) only when every policy that asked agrees.
            merge_known(&mut entry.signed, &image_facts.signed);
            merge_known(&mut entry.has_sbom_referrers, &image_facts.sbom);
            let findings = match &parsed {
                Ok(reference) => gates(
                    policy,
                    reference,
                    workload.names_digest(image),
                    &image_facts,
                ),
                Err(e) => vec![Finding::Violation(format!("invalid image reference: {e}"))],
            };
            for finding in findings {
                let enforce = policy.spec.mode == PolicyMode::Enforce;
                match finding {
                    Finding::Violation(reason) if enforce => {
                        entry.reasons.push(format!("{}: {reason}", policy.name));
                        entry.policy_verdict = Verdict::Fail;
                        denied = true;
                    }
                    Finding::Violation(reason) => {
                        let text = format!("{}: {reason} (Audit: admitted)", policy.name);
                        warnings.push(format!("{image}: {text}"));
                        entry.reasons.push(text);
                        worsen(&mut entry.policy_verdict, Verdict::Warn);
                    }
                    Finding::Unverifiable(reason)
                        if enforce && !policy.spec.fails_open(namespace) =>
                    {
                        entry
                            .reasons
                            .push(format!("{}: verification failed: {reason}", policy.name));
                        entry.policy_verdict = Verdict::Fail;
                        denied = true;
                        fail_closed = true;
                        unverified.insert(image.to_string(), FailMode::FailClosed);
                    }
                    Finding::Unverifiable(reason) => {
                        let text = format!(
                            "{}: verification failed: {reason} (fail-open namespace: admitted)",
                            policy.name
                        );
                        fail_open = true;
                        if enforce {
                            unverified
                                .entry(image.to_string())
                                .or_insert(FailMode::FailOpen);
                        }
                        warnings.push(format!("{image}: {text}"));
                        entry.reasons.push(text);
                        worsen(&mut entry.policy_verdict, Verdict::Warn);
                    }
                    Finding::Advisory(text) => {
                        let text = format!("{}: {text}", policy.name);
                        warnings.push(format!("{image}: {text}"));
                        entry.reasons.push(text);
                        worsen(&mut entry.policy_verdict, Verdict::Warn);
                    }
                    Finding::NotChecked(gate) => {
                        let item = format!("{image}: {gate}");
                        if !not_checked.contains(&item) {
                            not_checked.push(item);
                        }
                        worsen(&mut entry.policy_verdict, Verdict::Warn);
                    }
                }
            }
        }
        images.insert(image, entry);
    }

    let caches: Vec<&CacheSettings> = policies.iter().map(|p| &p.spec.cache).collect();
    let defaults = CacheSettings::default();
    let ttl_seconds = if denied {
        caches
            .iter()
            .map(|c| c.negative_ttl_seconds)
            .min()
            .unwrap_or(defaults.negative_ttl_seconds)
    } else {
        caches
            .iter()
            .map(|c| c.ttl_seconds)
            .min()
            .unwrap_or(defaults.ttl_seconds)
    };
    let ttl_seconds = backend_ttl.map_or(ttl_seconds, |t| t.min(ttl_seconds));
    let pod_spec_digest = workload.pod_spec_digest.clone();
    Evaluation {
        decision: AdmissionDecision {
            schema_version: ADMISSION_DECISION_SCHEMA.to_string(),
            admission_id: admission_id.to_string(),
            namespace: namespace.to_string(),
            pod_spec_digest,
            images: images.into_values().collect(),
            decision: if denied {
                Decision::Deny
            } else {
                Decision::Allow
            },
            ttl_seconds,
        },
        warnings,
        fail_open,
        fail_closed,
        not_checked,
        unverified,
    }
}

/// Whether a registry-independent gate (`deniedRegistries`, `allowedRegistries`,
/// `bannedTags`, `requireDigest`) of an `Enforce` policy among `policies` denies `image`:
/// known before any registry call, so such an image is never fetched.
pub fn denied_before_lookup(policies: &[Governing<'_>], image: &ImageReference) -> bool {
    let unknown = ImageFacts::not_checked();
    policies.iter().any(|policy| {
        policy.spec.mode == PolicyMode::Enforce
            && gates(policy, image, image.digest.is_some(), &unknown)
                .iter()
                .any(|f| matches!(f, Finding::Violation(_)))
    })
}

/// The policies among `all` that govern `namespace`. With its labels unknown (`None`: they
/// could not be read in time), every policy selecting namespaces by label is taken to govern
/// it: an outage adds checks, it never removes one.
pub fn governing<'a>(
    all: &[Governing<'a>],
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    zastava_namespace: &str,
) -> Vec<Governing<'a>> {
    let none = BTreeMap::new();
    all.iter()
        .filter(|p| {
            p.spec
                .governs(namespace, labels.unwrap_or(&none), zastava_namespace)
                || (labels.is_none()
                    && p.spec.namespace_selector.is_some()
                    && namespace != zastava_namespace
                    && !NEVER_GOVERNED.contains(&namespace))
        })
        .copied()
        .collect()
}

/// A one-line deny message listing each offending image and each reason.
pub fn deny_message(decision: &AdmissionDecision) -> String {
    let parts: Vec<String> = decision
        .images
        .iter()
        .filter(|i| i.policy_verdict == Verdict::Fail)
        .map(|i| {
            let reasons: Vec<&str> = i
                .reasons
                .iter()
                .map(String::as_str)
                .filter(|r| !r.ends_with("admitted)"))
                .collect();
            format!("{}: {}", i.name, reasons.join("; "))
        })
        .collect();
    format!("zastava denied: {}", parts.join(" | "))
}

fn merge_known(merged: &mut Option<bool>, check: &Check<bool>) {
    if let Check::Known(value) = check {
        *merged = Some(merged.unwrap_or(true) && *value);
    }
}

fn worsen(verdict: &mut Verdict, to: Verdict) {
    let rank = |v: Verdict| match v {
        Verdict::Pass => 0,
        Verdict::Warn => 1,
        Verdict::Fail => 2,
    };
    if rank(to) > rank(*verdict) {
        *verdict = to;
    }
}

/// The findings of `policy` about `image`; `names_digest`: whether the pod spec named its
/// digest (the verifier pins running images to their digest for the lookup alone).
fn gates(
    policy: &Governing<'_>,
    image: &ImageReference,
    names_digest: bool,
    facts: &ImageFacts,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let spec = policy.spec;
    let rules = &spec.images;
    let location = || format!("{}/{}", image.registry, image.repository);
    if let Some((entry, _)) = (policy.registries.denied.iter()).find(|(_, p)| p.matches(image)) {
        out.push(Finding::Violation(format!(
            "{} is in deniedRegistries (`{entry}`)",
            location()
        )));
    }
    // A list of entries none of which parses still allows nothing.
    if !rules.allowed_registries.is_empty()
        && !policy.registries.allowed.iter().any(|p| p.matches(image))
    {
        out.push(Finding::Violation(format!(
            "{} is not in allowedRegistries {:?}",
            location(),
            rules.allowed_registries
        )));
    }
    if let Some(tag) = image.tag.as_ref().filter(|t| rules.banned_tags.contains(t)) {
        out.push(Finding::Violation(format!("tag `{tag}` is banned")));
    }
    if rules.require_digest && !names_digest {
        out.push(Finding::Violation(
            "a digest is required (reference the image as repo@sha256:...)".to_string(),
        ));
    }
    let verify = &spec.verify;
    if verify.signature.required {
        out.extend(boolean_gate(&facts.signed, "signature", || {
            let base =
                "no cosign signature verifies against the policy's keys or keyless identities";
            match facts.keyless_rejections.as_slice() {
                [] => base.to_string(),
                why => format!("{base}: {}", why.join("; ")),
            }
        }));
    }
    if verify.sbom_referrer.required {
        out.extend(boolean_gate(&facts.sbom, "sbomReferrer", || {
            format!(
                "no SBOM referrer of an accepted type {:?}",
                verify.sbom_referrer.artifact_types
            )
        }));
    }
    if !rules.allowed_base_images.is_empty() {
        match &facts.base_digest {
            Check::Known(Some(base)) if rules.allowed_base_images.contains(base) => {}
            Check::Known(Some(base)) => out.push(Finding::Violation(format!(
                "base image {base} is not in allowedBaseImages"
            ))),
            Check::Known(None) => out.push(Finding::Violation(
                "no org.opencontainers.image.base.digest annotation to check against allowedBaseImages"
                    .to_string(),
            )),
            Check::Unavailable(e) => out.push(Finding::Unverifiable(e.clone())),
            Check::NotChecked => out.push(Finding::NotChecked("allowedBaseImages")),
        }
    }
    if spec.runtime.deny_drifted_images {
        match &facts.drifted {
            Check::Known(None) => {}
            Check::Known(Some(seen)) => out.push(Finding::Violation(format!(
                "the image digest drifted at runtime ({seen}) and runtime.denyDriftedImages is set"
            ))),
            Check::Unavailable(e) => out.push(Finding::Unverifiable(e.clone())),
            Check::NotChecked => out.push(Finding::NotChecked("denyDriftedImages")),
        }
    }
    if let Some(backend) = &verify.backend {
        match &facts.backend {
            Check::Known(result) => {
                let verdict = result.policy_verdict;
                if verdict == Verdict::Fail || (verdict == Verdict::Warn && !backend.allow_warn) {
                    let reasons = if result.reasons.is_empty() {
                        "no reasons given".to_string()
                    } else {
                        result.reasons.join(", ")
                    };
                    out.push(Finding::Violation(format!(
                        "backend verdict {}: {reasons}",
                        serde_json::to_value(verdict)
                            .unwrap_or_default()
                            .as_str()
                            .unwrap_or("?")
                    )));
                }
            }
            Check::Unavailable(e) if backend.required => out.push(Finding::Unverifiable(e.clone())),
            Check::Unavailable(e) => out.push(Finding::Advisory(format!(
                "backend verdict unavailable (not required): {e}"
            ))),
            Check::NotChecked if backend.required => out.push(Finding::NotChecked("backend")),
            Check::NotChecked => {}
        }
    }
    out
}

/// `violation` is only called when the gate fails: a passing decision formats no message.
fn boolean_gate(
    check: &Check<bool>,
    gate: &'static str,
    violation: impl FnOnce() -> String,
) -> Option<Finding> {
    match check {
        Check::Known(true) => None,
        Check::Known(false) => Some(Finding::Violation(violation())),
        Check::Unavailable(e) => Some(Finding::Unverifiable(e.clone())),
        Check::NotChecked => Some(Finding::NotChecked(gate)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use zastava_crds::contracts::RekorEntry;

    fn pod(images: &[&str]) -> Workload {
        let containers: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
            .collect();
        Workload::from_object(json!({"kind": "Pod", "spec": {"containers": containers}})).unwrap()
    }

    fn spec(value: Value) -> ZastavaPolicySpec {
        serde_json::from_value(value).unwrap()
    }

    fn decide(
        workload: &Workload,
        policies: &[(&str, &ZastavaPolicySpec)],
        facts: ImageFacts,
    ) -> Evaluation {
        let registries: Vec<RegistryRules> = policies
            .iter()
            .map(|(_, spec)| RegistryRules::of(spec))
            .collect();
        let governing: Vec<Governing<'_>> = policies
            .iter()
            .zip(&registries)
            .map(|((name, spec), registries)| Governing {
                name,
                spec,
                registries,
            })
            .collect();
        evaluate("uid-1", "team-a", workload, &governing, &|_, _| {
            facts.clone()
        })
    }

    fn facts(signed: Check<bool>, sbom: Check<bool>) -> ImageFacts {
        ImageFacts {
            signed,
            sbom,
            ..ImageFacts::not_checked()
        }
    }

    #[test]
    fn no_policy_admits() {
        let e = decide(&pod(&["busybox:1.36"]), &[], ImageFacts::not_checked());
        assert_eq!(e.decision.decision, Decision::Allow);
        assert_eq!(e.decision.ttl_seconds, 300);
        assert_eq!(e.decision.images[0].policy_verdict, Verdict::Pass);
    }

    #[test]
    fn latest_and_untagged_images_are_denied_by_banned_tags() {
        let p = spec(json!({"images": {"bannedTags": ["latest"]}}));
        for image in ["busybox", "busybox:latest"] {
            let e = decide(&pod(&[image]), &[("base", &p)], ImageFacts::not_checked());
            assert_eq!(e.decision.decision, Decision::Deny, "{image}");
            assert_eq!(
                e.decision.images[0].reasons,
                ["base: tag `latest` is banned"]
            );
            assert_eq!(e.decision.ttl_seconds, 30);
        }
        let ok = decide(
            &pod(&["busybox:1.36"]),
            &[("base", &p)],
            ImageFacts::not_checked(),
        );
        assert_eq!(ok.decision.decision, Decision::Allow);
    }

    #[test]
    fn registry_lists_and_digest_requirement() {
        let p = spec(json!({"images": {
            "allowedRegistries": ["127.0.0.1:5000", "ghcr.io/acme"],
            "deniedRegistries": ["ghcr.io/acme/legacy"],
            "requireDigest": true,
        }}));
        let digest = format!("sha256:{}", "a".repeat(64));
        let allowed = format!("127.0.0.1:5000/zastava/busybox@{digest}");
        let e = decide(&pod(&[&allowed]), &[("p", &p)], ImageFacts::not_checked());
        assert_eq!(e.decision.decision, Decision::Allow, "{:?}", e.decision);
        assert_eq!(
            e.decision.images[0].resolved.as_deref(),
            Some(format!("127.0.0.1:5000/zastava/busybox@{digest}").as_str())
        );

        let e = decide(
            &pod(&["docker.io/library/nginx:1", "ghcr.io/acme/legacy/app:2"]),
            &[("p", &p)],
            ImageFacts::not_checked(),
        );
        assert_eq!(e.decision.decision, Decision::Deny);
        let message = deny_message(&e.decision);
        assert!(
            message.contains(
                "docker.io/library/nginx:1: p: docker.io/library/nginx is not in allowedRegistries"
            ),
            "{message}"
        );
        assert!(message.contains("p: a digest is required"), "{message}");
        assert!(message.contains("ghcr.io/acme/legacy/app:2: p: ghcr.io/acme/legacy/app is in deniedRegistries (`ghcr.io/acme/legacy`)"), "{message}");
    }

    #[test]
    fn registry_entries_that_do_not_parse_match_nothing() {
        let p = spec(json!({"images": {
            "allowedRegistries": ["not a host"],
            "deniedRegistries": ["ghcr.io/Upper", "ghcr.io"],
        }}));
        let e = decide(
            &pod(&["ghcr.io/acme/app:1"]),
            &[("p", &p)],
            ImageFacts::not_checked(),
        );
        let reasons = &e.decision.images[0].reasons;
        assert_eq!(
            reasons,
            &vec![
                "p: ghcr.io/acme/app is in deniedRegistries (`ghcr.io`)".to_string(),
                "p: ghcr.io/acme/app is not in allowedRegistries [\"not a host\"]".to_string(),
            ]
        );
    }

    #[test]
    fn invalid_reference_is_denied_with_the_parse_error() {
        let p = ZastavaPolicySpec::default();
        let e = decide(
            &pod(&["Bad/UPPER:1"]),
            &[("p", &p)],
            ImageFacts::not_checked(),
        );
        assert_eq!(e.decision.decision, Decision::Deny);
        assert!(e.decision.images[0].reasons[0].contains("invalid image reference"));
    }

    #[test]
    fn signature_and_sbom_gates_use_the_facts() {
        let p = spec(json!({"verify": {
            "signature": {"required": true, "keys": [{"name": "k", "pem": "x"}]},
            "sbomReferrer": {"required": true},
        }}));
        let w = pod(&["127.0.0.1:5000/app:1"]);
        let pass = decide(
            &w,
            &[("p", &p)],
            facts(Check::Known(true), Check::Known(true)),
        );
        assert_eq!(pass.decision.decision, Decision::Allow);
        assert_eq!(pass.decision.images[0].signed, Some(true));
        assert_eq!(pass.decision.images[0].has_sbom_referrers, Some(true));

        let unsigned = decide(
            &w,
            &[("p", &p)],
            facts(Check::Known(false), Check::Known(true)),
        );
        assert_eq!(unsigned.decision.decision, Decision::Deny);
        assert_eq!(
            unsigned.decision.images[0].reasons[0],
            "p: no cosign signature verifies against the policy's keys or keyless identities"
        );

        // Keyless signatures that were not accepted say why.
        let keyless = decide(
            &w,
            &[("p", &p)],
            ImageFacts {
                keyless_rejections: vec![
                    "a signing certificate does not chain to any of the policy's trustRoots".into(),
                    "signed by m@example.com (issuer x), which is not an allowed identity [subject a@example.com]".into(),
                ],
                ..facts(Check::Known(false), Check::Known(true))
            },
        );
        assert_eq!(
            keyless.decision.images[0].reasons[0],
            "p: no cosign signature verifies against the policy's keys or keyless identities: \
             a signing certificate does not chain to any of the policy's trustRoots; \
             signed by m@example.com (issuer x), which is not an allowed identity [subject a@example.com]"
        );

        let no_sbom = decide(
            &w,
            &[("p", &p)],
            facts(Check::Known(true), Check::Known(false)),
        );
        assert!(no_sbom.decision.images[0].reasons[0].contains("no SBOM referrer"));
    }

    #[test]
    fn unavailable_registry_denies_except_in_fail_open_namespaces() {
        let closed = spec(
            json!({"verify": {"signature": {"required": true, "keys": [{"name": "k", "pem": "x"}]}}}),
        );
        let open = spec(json!({"failOpenNamespaces": ["team-a"],
            "verify": {"signature": {"required": true, "keys": [{"name": "k", "pem": "x"}]}}}));
        let w = pod(&["127.0.0.1:5000/app:1"]);
        let down = facts(
            Check::Unavailable("registry timeout".into()),
            Check::NotChecked,
        );

        let e = decide(&w, &[("closed", &closed)], down.clone());
        assert_eq!(e.decision.decision, Decision::Deny);
        assert_eq!(
            e.decision.images[0].reasons,
            ["closed: verification failed: registry timeout"]
        );
        assert!(!e.fail_open);
        assert_eq!(e.fail_mode(), FailMode::FailClosed);

        let e = decide(&w, &[("open", &open)], down.clone());
        assert_eq!(e.decision.decision, Decision::Allow);
        assert!(e.fail_open);
        assert_eq!(e.fail_mode(), FailMode::FailOpen);
        assert_eq!(e.decision.images[0].policy_verdict, Verdict::Warn);
        assert!(e.warnings[0].contains("fail-open namespace: admitted"));

        // Fail-closed wins: it decided.
        let e = decide(&w, &[("open", &open), ("closed", &closed)], down);
        assert_eq!(e.decision.decision, Decision::Deny);
        assert_eq!(e.fail_mode(), FailMode::FailClosed);
        let up = facts(Check::Known(true), Check::NotChecked);
        assert_eq!(
            decide(&w, &[("closed", &closed)], up).fail_mode(),
            FailMode::None
        );
    }

    #[test]
    fn audit_policies_warn_and_every_enforce_policy_must_pass() {
        let audit = spec(json!({"mode": "Audit", "images": {"bannedTags": ["latest"]}}));
        let enforce = spec(json!({"images": {"requireDigest": true}}));
        let w = pod(&["busybox"]);
        let e = decide(&w, &[("audit", &audit)], ImageFacts::not_checked());
        assert_eq!(e.decision.decision, Decision::Allow);
        assert_eq!(e.decision.images[0].policy_verdict, Verdict::Warn);
        assert_eq!(
            e.warnings,
            ["busybox: audit: tag `latest` is banned (Audit: admitted)"]
        );

        let e = decide(
            &w,
            &[("audit", &audit), ("enforce", &enforce)],
            ImageFacts::not_checked(),
        );
        assert_eq!(e.decision.decision, Decision::Deny);
        let message = deny_message(&e.decision);
        assert!(
            message.contains("enforce: a digest is required"),
            "{message}"
        );
        assert!(!message.contains("Audit: admitted"), "{message}");
    }

    #[test]
    fn require_digest_judges_what_the_pod_spec_names() {
        let enforce = spec(json!({"images": {"requireDigest": true}}));
        let digest = format!("sha256:{}", "c".repeat(64));
        let pinned = format!("127.0.0.1:5000/app:1@{digest}");
        // Named by digest in the spec: allowed.
        let w = pod(&[pinned.as_str()]);
        let e = decide(&w, &[("enforce", &enforce)], ImageFacts::not_checked());
        assert_eq!(e.decision.decision, Decision::Allow);
        // The same string, the digest added by the verifier to what the spec named by tag:
        // denied, as admission denied `127.0.0.1:5000/app:1`.
        let mut w = pod(&[pinned.as_str()]);
        w.pinned_for_lookup.insert(pinned.clone());
        let e = decide(&w, &[("enforce", &enforce)], ImageFacts::not_checked());
        assert_eq!(e.decision.decision, Decision::Deny);
        assert_eq!(
            e.decision.images[0].reasons,
            ["enforce: a digest is required (reference the image as repo@sha256:...)"]
        );
    }

    #[test]
    fn unchecked_gates_are_named_and_warn() {
        let p = spec(
            json!({"images": {"allowedBaseImages": [format!("sha256:{}", "b".repeat(64))]},
            "verify": {"sbomReferrer": {"required": true}}}),
        );
        let e = decide(
            &pod(&["127.0.0.1:5000/app:1"]),
            &[("p", &p)],
            ImageFacts::not_checked(),
        );
        assert_eq!(e.decision.decision, Decision::Allow);
        assert_eq!(
            e.not_checked,
            [
                "127.0.0.1:5000/app:1: sbomReferrer",
                "127.0.0.1:5000/app:1: allowedBaseImages"
            ]
        );
        assert_eq!(e.decision.images[0].policy_verdict, Verdict::Warn);
    }

    #[test]
    fn the_pod_spec_digest_is_the_canonical_digest() {
        // Keys out of order at every level, as a client may send them.
        let spec: Value = serde_json::from_str(
            r#"{"containers": [{"name": "c", "image": "a:1", "env": [{"value": "1", "name": "X"}]}],
                "volumes": [], "dnsPolicy": "None", "automountServiceAccountToken": false}"#,
        )
        .unwrap();
        let workload = Workload::from_object(json!({"kind": "Pod", "spec": spec})).unwrap();
        assert_eq!(
            decide(&workload, &[], ImageFacts::not_checked())
                .decision
                .pod_spec_digest,
            zastava_crds::canonical::canonical_digest(&spec).unwrap()
        );
    }

    #[test]
    fn one_entry_per_distinct_image_and_a_stable_pod_spec_digest() {
        let w = pod(&["a:1", "a:1", "b:1"]);
        let e = decide(&w, &[], ImageFacts::not_checked());
        assert_eq!(e.decision.images.len(), 2);
        let again = decide(&w, &[], ImageFacts::not_checked());
        assert_eq!(e.decision.pod_spec_digest, again.decision.pod_spec_digest);
        assert_ne!(
            e.decision.pod_spec_digest,
            decide(&pod(&["a:2"]), &[], ImageFacts::not_checked())
                .decision
                .pod_spec_digest
        );
    }

    #[test]
    fn backend_verdicts_deny_warn_and_fail_open_as_configured() {
        let required =
            spec(json!({"verify": {"backend": {"url": "http://scanner", "required": true}}}));
        let lenient =
            spec(json!({"verify": {"backend": {"url": "http://scanner", "allowWarn": true}}}));
        let w = pod(&["127.0.0.1:5000/app:1"]);
        let answer = |verdict: Verdict| ImageFacts {
            backend: Check::Known(ImageResult {
                signed: Some(true),
                has_sbom: Some(true),
                policy_verdict: verdict,
                reasons: vec!["CVE-1 critical".into()],
                rekor: Some(RekorEntry {
                    uuid: "ab".repeat(32),
                }),
                ttl_seconds: Some(42),
            }),
            ..ImageFacts::not_checked()
        };
        let e = decide(&w, &[("r", &required)], answer(Verdict::Fail));
        assert_eq!(e.decision.decision, Decision::Deny);
        assert_eq!(
            e.decision.images[0].reasons,
            ["r: backend verdict fail: CVE-1 critical"]
        );
        // The backend's Rekor entry is kept; its TTL bounds the decision's (negative TTL 30).
        assert_eq!(
            e.decision.images[0].rekor.as_ref().unwrap().uuid,
            "ab".repeat(32)
        );
        assert_eq!(e.decision.ttl_seconds, 30);
        let e = decide(&w, &[("r", &required)], answer(Verdict::Pass));
        assert_eq!(e.decision.ttl_seconds, 42);
        assert_eq!(
            decide(&w, &[("r", &required)], answer(Verdict::Warn))
                .decision
                .decision,
            Decision::Deny
        );
        assert_eq!(
            decide(&w, &[("l", &lenient)], answer(Verdict::Warn))
                .decision
                .decision,
            Decision::Allow
        );
        assert_eq!(
            decide(&w, &[("r", &required)], answer(Verdict::Pass))
                .decision
                .decision,
            Decision::Allow
        );

        let down = ImageFacts {
            backend: Check::Unavailable("backend timeout".into()),
            ..ImageFacts::not_checked()
        };
        let e = decide(&w, &[("r", &required)], down.clone());
        assert_eq!(e.decision.decision, Decision::Deny);
        assert_eq!(
            e.decision.images[0].reasons,
            ["r: verification failed: backend timeout"]
        );
        let e = decide(&w, &[("l", &lenient)], down);
        assert_eq!(e.decision.decision, Decision::Allow);
        assert_eq!(
            e.warnings,
            ["127.0.0.1:5000/app:1: l: backend verdict unavailable (not required): backend timeout"]
        );
    }

    #[test]
    fn drifted_digests_are_denied_only_where_the_policy_asks() {
        let deny = spec(json!({"runtime": {"denyDriftedImages": true}}));
        let allow = spec(json!({}));
        let w = pod(&["127.0.0.1:5000/app:1"]);
        let drifted = ImageFacts {
            drifted: Check::Known(Some("web-1/app on node1: process /tmp/evil".into())),
            ..ImageFacts::not_checked()
        };
        let e = decide(&w, &[("d", &deny)], drifted.clone());
        assert_eq!(e.decision.decision, Decision::Deny);
        assert_eq!(
            e.decision.images[0].reasons,
            ["d: the image digest drifted at runtime (web-1/app on node1: process /tmp/evil) and runtime.denyDriftedImages is set"]
        );
        assert_eq!(
            decide(&w, &[("a", &allow)], drifted).decision.decision,
            Decision::Allow
        );
        let clean = ImageFacts {
            drifted: Check::Known(None),
            ..ImageFacts::not_checked()
        };
        assert_eq!(
            decide(&w, &[("d", &deny)], clean).decision.decision,
            Decision::Allow
        );
    }

    #[test]
    fn only_policies_governing_the_namespace_apply() {
        let named = spec(json!({"namespaces": ["team-b"], "images": {"bannedTags": ["latest"]}}));
        let all = [Governing {
            name: "named",
            spec: &named,
            registries: &RegistryRules::default(),
        }];
        let labels = BTreeMap::new();
        assert!(governing(&all, "team-a", Some(&labels), "zastava-system").is_empty());
        assert_eq!(
            governing(&all, "team-b", Some(&labels), "zastava-system").len(),
            1
        );
    }

    #[test]
    fn unknown_labels_let_every_selecting_policy_govern() {
        let selecting = spec(json!({"namespaceSelector": {"matchLabels": {"tier": "prod"}}}));
        let named = spec(json!({"namespaces": ["team-b"]}));
        let rules = RegistryRules::default();
        let all = [
            Governing {
                name: "selecting",
                spec: &selecting,
                registries: &rules,
            },
            Governing {
                name: "named",
                spec: &named,
                registries: &rules,
            },
        ];
        let names = |labels: Option<&BTreeMap<String, String>>, namespace: &str| {
            governing(&all, namespace, labels, "zastava-system")
                .iter()
                .map(|g| g.name)
                .collect::<Vec<_>>()
        };
        let dev = BTreeMap::from([("tier".to_string(), "dev".to_string())]);
        assert_eq!(names(Some(&dev), "team-a"), Vec::<&str>::new());
        assert_eq!(names(None, "team-a"), ["selecting"]);
        assert_eq!(names(None, "team-b"), ["selecting", "named"]);
        // Never Zastava's own namespace, nor kube-system.
        assert_eq!(names(None, "zastava-system"), Vec::<&str>::new());
        assert_eq!(names(None, "kube-system"), Vec::<&str>::new());
    }
}
