//! What the CRD schema cannot check about a `ZastavaPolicy`, as a pure function of the spec and
//! the Secrets it references.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use regex::Regex;
use zastava_crds::certificates::{parse_certificates, Usage};
use zastava_crds::credentials;
use zastava_crds::image::RegistryPattern;
use zastava_crds::keys::{canonical_public_key, parse_public_key};
use zastava_crds::policy::{
    CosignKey, KeylessIdentity, PublishedCertificates, PublishedKey, ResolvedCertificates,
    SignatureVerification, TimeProof, TrustedCertificates, ZastavaPolicySpec,
};

/// The data of a Secret the policy references, or `None` when it does not exist.
pub type SecretData = Option<BTreeMap<String, Vec<u8>>>;

/// Why a policy cannot be used; the `PascalCase` name is the condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    InvalidKey,
    InvalidCertificate,
    SecretNotFound,
    SecretKeyNotFound,
    InvalidPattern,
    InvalidRegistry,
    InvalidSelector,
    InvalidSpec,
    InvalidCredential,
    SecretNotReadable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidKey => "InvalidKey",
            Reason::InvalidCertificate => "InvalidCertificate",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretKeyNotFound => "SecretKeyNotFound",
            Reason::InvalidPattern => "InvalidPattern",
            Reason::InvalidRegistry => "InvalidRegistry",
            Reason::InvalidSelector => "InvalidSelector",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::InvalidCredential => "InvalidCredential",
            Reason::SecretNotReadable => "SecretNotReadable",
        }
    }
}

/// One thing wrong with a policy, naming the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub reason: Reason,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The outcome of checking a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assessment {
    pub problems: Vec<Problem>,
    /// Public keys that parsed, inline and from Secrets.
    pub resolved_keys: u32,
    /// The keys from Secrets that parsed, for the status (where the webhook reads them):
    /// cosign keys and Rekor keys.
    pub secret_keys: Vec<PublishedKey>,
    /// Keyless identities that parsed.
    pub resolved_identities: u32,
    /// Trust roots and TSA chains that parsed, inline and from Secrets.
    pub resolved_certificates: Vec<ResolvedCertificates>,
    /// The certificates from Secrets that parsed, for the status.
    pub secret_certificates: Vec<PublishedCertificates>,
}

impl Assessment {
    pub fn accepted(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, field: impl Into<String>, reason: Reason, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            reason,
            message: message.into(),
        });
    }
}

/// The names of the Secrets (in Zastava's namespace) the policy's keys, its certificates and
/// its backend's credentials are read from.
pub fn referenced_secrets(spec: &ZastavaPolicySpec) -> BTreeSet<String> {
    let signature = &spec.verify.signature;
    let keys = (signature.keys.iter())
        .chain(&signature.signing_time.rekor_keys)
        .filter_map(|k| k.secret_ref.as_ref().map(|r| r.name.clone()));
    let certificates = (signature.trust_roots.iter())
        .chain(&signature.signing_time.timestamp_authorities)
        .filter_map(|c| c.secret_ref.as_ref().map(|r| r.name.clone()));
    let backend = spec.verify.backend.iter().flat_map(|b| b.secret_names());
    keys.chain(certificates).chain(backend).collect()
}

/// Checks the backend's connection settings: its CA bundle parses, its credential Secrets
/// exist and hold a usable token or certificate and key, and the webhook may read them
/// (`webhook_readable`: the Secrets the webhook's Role names, when known). Messages name the
/// Secret and key, never their bytes.
pub fn assess_backend(
    spec: &ZastavaPolicySpec,
    secrets: &BTreeMap<String, SecretData>,
    webhook_readable: Option<&BTreeSet<String>>,
) -> Vec<Problem> {
    let mut out = Assessment::default();
    let Some(backend) = &spec.verify.backend else {
        return Vec::new();
    };
    let https = backend.url.starts_with("https://");
    if backend.auth.is_some() && !https {
        out.problem(
            "spec.verify.backend.auth",
            Reason::InvalidSpec,
            "credentials are sent over https only: auth needs an https:// url",
        );
    }
    if backend.ca_bundle.is_some() && !https {
        out.problem(
            "spec.verify.backend.caBundle",
            Reason::InvalidSpec,
            "caBundle is for an https:// url",
        );
    }
    if backend.auth.as_ref().is_some_and(|a| {
        a.bearer_token_secret_ref.is_none() && a.client_certificate_secret_ref.is_none()
    }) {
        out.problem(
            "spec.verify.backend.auth",
            Reason::InvalidSpec,
            "set bearerTokenSecretRef, clientCertificateSecretRef or both",
        );
    }
    if let Some(bundle) = &backend.ca_bundle {
        if let Err(e) = credentials::certificate_bundle(bundle.as_bytes()) {
            out.problem(
                "spec.verify.backend.caBundle",
                Reason::InvalidCredential,
                e.to_string(),
            );
        }
    }
    let auth = backend.auth.as_ref();
    let secret = |out: &mut Assessment,
                  field: &str,
                  name: &str|
     -> Option<BTreeMap<String, Vec<u8>>> {
        if let Some(readable) = webhook_readable {
            if !readable.contains(name) {
                out.problem(
                    field,
                    Reason::SecretNotReadable,
                    format!(
                        "the webhook may not read Secret `{name}`: add it to the chart value webhook.backendSecrets"
                    ),
                );
            }
        }
        match secrets.get(name) {
            Some(Some(data)) => Some(data.clone()),
            _ => {
                out.problem(
                    field,
                    Reason::SecretNotFound,
                    format!("Secret `{name}` not found"),
                );
                None
            }
        }
    };
    if let Some(r) = auth.and_then(|a| a.bearer_token_secret_ref.as_ref()) {
        let field = "spec.verify.backend.auth.bearerTokenSecretRef";
        if let Some(data) = secret(&mut out, field, &r.name) {
            match data.get(&r.key) {
                None => out.problem(
                    field,
                    Reason::SecretKeyNotFound,
                    format!("Secret `{}` has no key `{}`", r.name, r.key),
                ),
                Some(value) => {
                    if let Err(e) = credentials::bearer_token(value) {
                        out.problem(
                            field,
                            Reason::InvalidCredential,
                            format!("Secret `{}` key `{}`: {e}", r.name, r.key),
                        );
                    }
                }
            }
        }
    }
    if let Some(r) = auth.and_then(|a| a.client_certificate_secret_ref.as_ref()) {
        let field = "spec.verify.backend.auth.clientCertificateSecretRef";
        if let Some(data) = secret(&mut out, field, &r.name) {
            match (data.get("tls.crt"), data.get("tls.key")) {
                (Some(crt), Some(key)) => {
                    if let Err(e) = credentials::client_certificate(crt, key) {
                        out.problem(
                            field,
                            Reason::InvalidCredential,
                            format!("Secret `{}`: {e}", r.name),
                        );
                    }
                }
                _ => out.problem(
                    field,
                    Reason::SecretKeyNotFound,
                    format!("Secret `{}` needs keys `tls.crt` and `tls.key`", r.name),
                ),
            }
        }
    }
    out.problems
}

/// Checks everything the schema cannot: keys parse, patterns compile, referenced Secrets and
/// their keys exist, and the settings agree with each other. `secrets` holds the lookup result
/// of every name `referenced_secrets` returned.
pub fn assess(spec: &ZastavaPolicySpec, secrets: &BTreeMap<String, SecretData>) -> Assessment {
    let mut out = Assessment::default();
    if let Some(selector) = &spec.namespace_selector {
        check_selector(&mut out, "spec.namespaceSelector", selector);
    }
    check_registries(&mut out, spec);
    out.resolved_keys = check_keys(
        &mut out,
        "spec.verify.signature.keys",
        &spec.verify.signature.keys,
        secrets,
    );
    for (i, identity) in spec.verify.signature.keyless.iter().enumerate() {
        if check_keyless(
            &mut out,
            &format!("spec.verify.signature.keyless[{i}]"),
            identity,
        ) {
            out.resolved_identities += 1;
        }
    }
    check_certificate_identities(&mut out, &spec.verify.signature, secrets);
    let signature = &spec.verify.signature;
    if signature.required && signature.keys.is_empty() && signature.keyless.is_empty() {
        out.problem(
            "spec.verify.signature",
            Reason::InvalidSpec,
            "required is true but neither keys nor keyless identities are given, so nothing could ever verify",
        );
    }
    let sbom = &spec.verify.sbom_referrer;
    if sbom.required && sbom.artifact_types.is_empty() {
        out.problem(
            "spec.verify.sbomReferrer.artifactTypes",
            Reason::InvalidSpec,
            "required is true but no artifact type is accepted",
        );
    }
    for (i, media_type) in sbom.artifact_types.iter().enumerate() {
        if !is_media_type(media_type) {
            out.problem(
                format!("spec.verify.sbomReferrer.artifactTypes[{i}]"),
                Reason::InvalidSpec,
                format!("`{media_type}` is not a media type (type/subtype)"),
            );
        }
    }
    if spec.cache.negative_ttl_seconds > spec.cache.ttl_seconds {
        out.problem(
            "spec.cache.negativeTtlSeconds",
            Reason::InvalidSpec,
            format!(
                "{} exceeds ttlSeconds {}: a deny must not be cached longer than an allow",
                spec.cache.negative_ttl_seconds, spec.cache.ttl_seconds
            ),
        );
    }
    out
}

fn check_selector(out: &mut Assessment, field: &str, selector: &LabelSelector) {
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let field = format!("{field}.matchExpressions[{i}]");
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => out.problem(
                field,
                Reason::InvalidSelector,
                format!("operator {} needs at least one value", expr.operator),
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => out.problem(
                field,
                Reason::InvalidSelector,
                format!("operator {} takes no values", expr.operator),
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => out.problem(
                field,
                Reason::InvalidSelector,
                format!("unknown operator `{other}` (In, NotIn, Exists, DoesNotExist)"),
            ),
        }
    }
}

fn check_registries(out: &mut Assessment, spec: &ZastavaPolicySpec) {
    let lists = [
        ("allowedRegistries", &spec.images.allowed_registries),
        ("deniedRegistries", &spec.images.denied_registries),
    ];
    for (name, entries) in lists {
        for (i, entry) in entries.iter().enumerate() {
            if let Err(e) = RegistryPattern::parse(entry) {
                out.problem(
                    format!("spec.images.{name}[{i}]"),
                    Reason::InvalidRegistry,
                    format!("`{entry}`: {e}"),
                );
            }
        }
    }
    for (i, entry) in spec.images.denied_registries.iter().enumerate() {
        if spec.images.allowed_registries.contains(entry) {
            out.problem(
                format!("spec.images.deniedRegistries[{i}]"),
                Reason::InvalidRegistry,
                format!("`{entry}` is listed as both allowed and denied"),
            );
        }
    }
}

/// Checks the keys at `path` (a list field); returns how many parsed.
fn check_keys(
    out: &mut Assessment,
    path: &str,
    keys: &[CosignKey],
    secrets: &BTreeMap<String, SecretData>,
) -> u32 {
    let mut resolved = 0;
    let mut names = BTreeSet::new();
    for (i, key) in keys.iter().enumerate() {
        let field = format!("{path}[{i}]");
        if !names.insert(key.name.as_str()) {
            out.problem(
                format!("{field}.name"),
                Reason::InvalidSpec,
                format!("duplicate key name `{}`", key.name),
            );
        }
        match (&key.pem, &key.secret_ref) {
            (Some(pem), None) => match parse_public_key(pem) {
                Ok(_) => resolved += 1,
                Err(e) => out.problem(format!("{field}.pem"), Reason::InvalidKey, e.to_string()),
            },
            (None, Some(secret_ref)) => {
                let field = format!("{field}.secretRef");
                let Some(bytes) =
                    secret_value(out, &field, secrets, &secret_ref.name, &secret_ref.key)
                else {
                    continue;
                };
                match std::str::from_utf8(bytes)
                    .map_err(|_| "not UTF-8 text".to_string())
                    .and_then(|text| canonical_public_key(text).map_err(|e| e.to_string()))
                {
                    Ok((_, pem)) => {
                        resolved += 1;
                        out.secret_keys.push(PublishedKey {
                            name: key.name.clone(),
                            secret_ref: secret_ref.clone(),
                            pem,
                        });
                    }
                    Err(e) => out.problem(
                        field,
                        Reason::InvalidKey,
                        format!("Secret `{}` key `{}`: {e}", secret_ref.name, secret_ref.key),
                    ),
                }
            }
            _ => out.problem(
                field,
                Reason::InvalidSpec,
                "set exactly one of pem and secretRef",
            ),
        }
    }
    resolved
}

/// The value of `key` in Secret `name`, or a problem at `field` saying what is missing.
fn secret_value<'a>(
    out: &mut Assessment,
    field: &str,
    secrets: &'a BTreeMap<String, SecretData>,
    name: &str,
    key: &str,
) -> Option<&'a Vec<u8>> {
    let Some(Some(data)) = secrets.get(name) else {
        out.problem(
            field,
            Reason::SecretNotFound,
            format!("Secret `{name}` not found"),
        );
        return None;
    };
    let value = data.get(key);
    if value.is_none() {
        out.problem(
            field,
            Reason::SecretKeyNotFound,
            format!("Secret `{name}` has no key `{key}`"),
        );
    }
    value
}

/// Trust roots, the proof of signing time and its keys or TSA chains, and whether they fit
/// the keyless identities.
fn check_certificate_identities(
    out: &mut Assessment,
    signature: &SignatureVerification,
    secrets: &BTreeMap<String, SecretData>,
) {
    let path = "spec.verify.signature";
    check_certificates(
        out,
        &format!("{path}.trustRoots"),
        "trustRoots",
        &signature.trust_roots,
        Usage::TrustRoots,
        secrets,
    );
    match (signature.keyless.is_empty(), signature.trust_roots.is_empty()) {
        (false, true) => out.problem(
            format!("{path}.trustRoots"),
            Reason::InvalidSpec,
            "keyless identities are given but no trustRoots: certificates are verified offline against the roots the policy names (no public Fulcio)",
        ),
        (true, false) => out.problem(
            format!("{path}.keyless"),
            Reason::InvalidSpec,
            "trustRoots are given but no keyless identities: name the identities to accept (subjectRegExp `.*` accepts any)",
        ),
        _ => {}
    }
    let time = &signature.signing_time;
    let time_path = format!("{path}.signingTime");
    check_keys(
        out,
        &format!("{time_path}.rekorKeys"),
        &time.rekor_keys,
        secrets,
    );
    check_certificates(
        out,
        &format!("{time_path}.timestampAuthorities"),
        "timestampAuthorities",
        &time.timestamp_authorities,
        Usage::TimestampAuthority,
        secrets,
    );
    let (wants_rekor, wants_tsa) = match time.proof {
        TimeProof::None => (false, false),
        TimeProof::RekorBundle => (true, false),
        TimeProof::Rfc3161Timestamp => (false, true),
    };
    if wants_rekor && time.rekor_keys.is_empty() {
        out.problem(
            format!("{time_path}.rekorKeys"),
            Reason::InvalidSpec,
            "proof RekorBundle needs the public key of at least one Rekor log",
        );
    }
    if !wants_rekor && !time.rekor_keys.is_empty() {
        out.problem(
            format!("{time_path}.rekorKeys"),
            Reason::InvalidSpec,
            "rekorKeys are only used with proof RekorBundle",
        );
    }
    if wants_tsa && time.timestamp_authorities.is_empty() {
        out.problem(
            format!("{time_path}.timestampAuthorities"),
            Reason::InvalidSpec,
            "proof RFC3161Timestamp needs the certificate chain of at least one timestamp authority",
        );
    }
    if !wants_tsa && !time.timestamp_authorities.is_empty() {
        out.problem(
            format!("{time_path}.timestampAuthorities"),
            Reason::InvalidSpec,
            "timestampAuthorities are only used with proof RFC3161Timestamp",
        );
    }
    if time.proof != TimeProof::None && signature.keyless.is_empty() {
        out.problem(
            format!("{time_path}.proof"),
            Reason::InvalidSpec,
            "a proof of signing time applies to keyless signatures, and no keyless identity is given",
        );
    }
}

/// Checks the certificate entries at `path` (a list field), recording what parsed.
fn check_certificates(
    out: &mut Assessment,
    path: &str,
    usage_name: &str,
    entries: &[TrustedCertificates],
    usage: Usage,
    secrets: &BTreeMap<String, SecretData>,
) {
    let mut names = BTreeSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let field = format!("{path}[{i}]");
        if !names.insert(entry.name.as_str()) {
            out.problem(
                format!("{field}.name"),
                Reason::InvalidSpec,
                format!("duplicate name `{}`", entry.name),
            );
        }
        let (field, text, source) = match (&entry.pem, &entry.secret_ref) {
            (Some(pem), None) => (format!("{field}.pem"), Ok(pem.as_str()), None),
            (None, Some(secret_ref)) => {
                let field = format!("{field}.secretRef");
                let Some(bytes) =
                    secret_value(out, &field, secrets, &secret_ref.name, &secret_ref.key)
                else {
                    continue;
                };
                let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string());
                (field, text, Some(secret_ref))
            }
            _ => {
                out.problem(
                    field,
                    Reason::InvalidSpec,
                    "set exactly one of pem and secretRef",
                );
                continue;
            }
        };
        match text.and_then(|t| parse_certificates(t, usage).map_err(|e| e.to_string())) {
            Ok(parsed) => {
                out.resolved_certificates.push(ResolvedCertificates {
                    usage: usage_name.to_string(),
                    name: entry.name.clone(),
                    subjects: parsed.subjects(),
                    not_after: parsed.not_after(),
                });
                if let Some(secret_ref) = source {
                    out.secret_certificates.push(PublishedCertificates {
                        name: entry.name.clone(),
                        secret_ref: secret_ref.clone(),
                        pem: parsed.canonical_pem,
                    });
                }
            }
            Err(e) => {
                let message = match source {
                    Some(r) => format!("Secret `{}` key `{}`: {e}", r.name, r.key),
                    None => e,
                };
                out.problem(field, Reason::InvalidCertificate, message);
            }
        }
    }
}

/// Whether the identity is usable; its problems are recorded.
fn check_keyless(out: &mut Assessment, field: &str, identity: &KeylessIdentity) -> bool {
    let before = out.problems.len();
    let fields = [
        ("issuer", &identity.issuer, false),
        ("issuerRegExp", &identity.issuer_reg_exp, true),
        ("subject", &identity.subject, false),
        ("subjectRegExp", &identity.subject_reg_exp, true),
    ];
    if fields.iter().all(|(_, value, _)| value.is_none()) {
        out.problem(
            field,
            Reason::InvalidSpec,
            "set at least one of issuer, issuerRegExp, subject, subjectRegExp",
        );
    }
    for (name, value, is_pattern) in fields {
        if let (Some(pattern), true) = (value, is_pattern) {
            if let Err(e) = Regex::new(pattern) {
                out.problem(
                    format!("{field}.{name}"),
                    Reason::InvalidPattern,
                    // The regex error spans lines; keep the condition message on one.
                    e.to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
        }
    }
    out.problems.len() == before
}

fn is_media_type(value: &str) -> bool {
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    matches!(value.split_once('/'), Some((kind, subtype)) if valid(kind) && valid(subtype))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use zastava_crds::policy::SecretKeyRef;

    const PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdfx0Gr7yAA7tY07E/1zlkDuAm+jk
fOiGRu7TTLAPU9l8RVZbryn7JNloxNT3HktJoGaW/X3rsKYfric26JUhDQ==
-----END PUBLIC KEY-----
";

    fn inline_key(name: &str, pem: &str) -> CosignKey {
        CosignKey {
            name: name.into(),
            pem: Some(pem.into()),
            secret_ref: None,
        }
    }

    fn secret_key(name: &str, secret: &str) -> CosignKey {
        CosignKey {
            name: name.into(),
            pem: None,
            secret_ref: Some(SecretKeyRef {
                name: secret.into(),
                key: "cosign.pub".into(),
            }),
        }
    }

    fn fields(a: &Assessment) -> Vec<(&str, Reason)> {
        a.problems
            .iter()
            .map(|p| (p.field.as_str(), p.reason))
            .collect()
    }

    #[test]
    fn empty_policy_is_accepted() {
        let a = assess(&ZastavaPolicySpec::default(), &BTreeMap::new());
        assert!(a.accepted(), "{a:?}");
        assert_eq!(a.resolved_keys, 0);
    }

    #[test]
    fn valid_inline_key_resolves() {
        let mut spec = ZastavaPolicySpec::default();
        spec.verify.signature.required = true;
        spec.verify.signature.keys = vec![inline_key("release", PUB)];
        let a = assess(&spec, &BTreeMap::new());
        assert!(a.accepted(), "{a:?}");
        assert_eq!(a.resolved_keys, 1);
    }

    #[test]
    fn malformed_pem_names_the_field() {
        let mut spec = ZastavaPolicySpec::default();
        spec.verify.signature.keys = vec![
            inline_key("good", PUB),
            inline_key(
                "bad",
                "-----BEGIN PUBLIC KEY-----\nZm9v\n-----END PUBLIC KEY-----\n",
            ),
        ];
        let a = assess(&spec, &BTreeMap::new());
        assert_eq!(
            fields(&a),
            vec![("spec.verify.signature.keys[1].pem", Reason::InvalidKey)]
        );
        assert_eq!(a.resolved_keys, 1);
        assert!(a.problems[0]
            .to_string()
            .starts_with("spec.verify.signature.keys[1].pem: "));
    }

    #[test]
    fn secret_keys_are_resolved_or_reported() {
        let mut spec = ZastavaPolicySpec::default();
        spec.verify.signature.keys = vec![
            secret_key("present", "keys"),
            secret_key("absent", "nowhere"),
            secret_key("wrong-key", "other"),
            secret_key("garbage", "junk"),
        ];
        let secrets = BTreeMap::from([
            (
                "keys".to_string(),
                Some(BTreeMap::from([(
                    "cosign.pub".to_string(),
                    format!("text around the key is not published\n{PUB}").into_bytes(),
                )])),
            ),
            ("nowhere".to_string(), None),
            (
                "other".to_string(),
                Some(BTreeMap::from([(
                    "tls.crt".to_string(),
                    PUB.as_bytes().to_vec(),
                )])),
            ),
            (
                "junk".to_string(),
                Some(BTreeMap::from([(
                    "cosign.pub".to_string(),
                    vec![0xff, 0xfe],
                )])),
            ),
        ]);
        let a = assess(&spec, &secrets);
        assert_eq!(a.resolved_keys, 1);
        // Only what parsed is published, and only as its PEM block.
        assert_eq!(
            a.secret_keys,
            vec![PublishedKey {
                name: "present".into(),
                secret_ref: spec.verify.signature.keys[0].secret_ref.clone().unwrap(),
                pem: PUB.to_string(),
            }]
        );
        assert_eq!(
            fields(&a),
            vec![
                (
                    "spec.verify.signature.keys[1].secretRef",
                    Reason::SecretNotFound
                ),
                (
                    "spec.verify.signature.keys[2].secretRef",
                    Reason::SecretKeyNotFound
                ),
                (
                    "spec.verify.signature.keys[3].secretRef",
                    Reason::InvalidKey
                ),
            ]
        );
        assert_eq!(
            referenced_secrets(&spec).into_iter().collect::<Vec<_>>(),
            vec!["junk", "keys", "nowhere", "other"]
        );
    }

    #[test]
    fn key_needs_exactly_one_source_and_a_unique_name() {
        let mut spec = ZastavaPolicySpec::default();
        let mut both = inline_key("k", PUB);
        both.secret_ref = secret_key("k2", "s").secret_ref;
        let neither = CosignKey {
            name: "k".into(),
            pem: None,
            secret_ref: None,
        };
        spec.verify.signature.keys = vec![both, neither];
        let secrets = BTreeMap::from([("s".to_string(), None)]);
        let a = assess(&spec, &secrets);
        assert_eq!(
            fields(&a),
            vec![
                ("spec.verify.signature.keys[0]", Reason::InvalidSpec),
                ("spec.verify.signature.keys[1].name", Reason::InvalidSpec),
                ("spec.verify.signature.keys[1]", Reason::InvalidSpec),
            ]
        );
    }

    #[test]
    fn keyless_patterns_must_compile_and_something_must_be_set() {
        let mut spec = ZastavaPolicySpec::default();
        spec.verify.signature.keyless = vec![
            KeylessIdentity {
                issuer: Some("https://token.actions.githubusercontent.com".into()),
                subject_reg_exp: Some("^https://github.com/acme/.*$".into()),
                ..Default::default()
            },
            KeylessIdentity {
                subject_reg_exp: Some("([unclosed".into()),
                ..Default::default()
            },
            KeylessIdentity::default(),
        ];
        let a = assess(&spec, &BTreeMap::new());
        assert_eq!(
            fields(&a),
            vec![
                (
                    "spec.verify.signature.keyless[1].subjectRegExp",
                    Reason::InvalidPattern
                ),
                ("spec.verify.signature.keyless[2]", Reason::InvalidSpec),
                // Identities need roots to chain to.
                ("spec.verify.signature.trustRoots", Reason::InvalidSpec),
            ]
        );
        assert!(!a.problems[0].message.contains('\n'));
        assert_eq!(a.resolved_identities, 1);
    }

    fn ca_pem(name: &str) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn roots(name: &str, pem: Option<&str>, secret: Option<&str>) -> TrustedCertificates {
        TrustedCertificates {
            name: name.into(),
            pem: pem.map(String::from),
            secret_ref: secret.map(|s| zastava_crds::policy::CertificateSecretRef {
                name: s.into(),
                key: "ca.crt".into(),
            }),
        }
    }

    fn keyless_spec() -> ZastavaPolicySpec {
        let mut spec = ZastavaPolicySpec::default();
        spec.verify.signature.required = true;
        spec.verify.signature.keyless = vec![KeylessIdentity {
            subject: Some("alice@example.com".into()),
            issuer: Some("https://idp.example.com".into()),
            ..Default::default()
        }];
        spec
    }

    #[test]
    fn trust_roots_resolve_inline_and_from_secrets_and_are_reported() {
        let (inline, stored) = (ca_pem("Inline Root"), ca_pem("Stored Root"));
        let mut spec = keyless_spec();
        spec.verify.signature.trust_roots = vec![
            roots("inline", Some(&inline), None),
            roots("stored", None, Some("corp-ca")),
        ];
        let secrets = BTreeMap::from([(
            "corp-ca".to_string(),
            Some(BTreeMap::from([(
                "ca.crt".to_string(),
                format!("# the corporate root\n{stored}").into_bytes(),
            )])),
        )]);
        assert_eq!(
            referenced_secrets(&spec).into_iter().collect::<Vec<_>>(),
            ["corp-ca"]
        );
        let a = assess(&spec, &secrets);
        assert!(a.accepted(), "{a:?}");
        assert_eq!(a.resolved_identities, 1);
        let resolved: Vec<(&str, &str, Vec<String>)> = a
            .resolved_certificates
            .iter()
            .map(|c| (c.usage.as_str(), c.name.as_str(), c.subjects.clone()))
            .collect();
        assert_eq!(
            resolved,
            [
                ("trustRoots", "inline", vec!["CN=Inline Root".to_string()]),
                ("trustRoots", "stored", vec!["CN=Stored Root".to_string()]),
            ]
        );
        // Only the Secret's certificates are published, as bare PEM blocks.
        assert_eq!(a.secret_certificates.len(), 1);
        assert_eq!(a.secret_certificates[0].pem, stored);
    }

    #[test]
    fn unusable_roots_and_proofs_name_their_field() {
        let mut spec = keyless_spec();
        spec.verify.signature.trust_roots = vec![
            roots("garbage", Some("not a certificate"), None),
            roots("missing", None, Some("nowhere")),
            roots("key", Some(PUB), None),
        ];
        spec.verify.signature.signing_time.proof = TimeProof::RekorBundle;
        spec.verify.signature.signing_time.timestamp_authorities =
            vec![roots("tsa", Some(&ca_pem("TSA Root")), None)];
        let secrets = BTreeMap::from([("nowhere".to_string(), None)]);
        let a = assess(&spec, &secrets);
        assert_eq!(
            fields(&a),
            vec![
                (
                    "spec.verify.signature.trustRoots[0].pem",
                    Reason::InvalidCertificate
                ),
                (
                    "spec.verify.signature.trustRoots[1].secretRef",
                    Reason::SecretNotFound
                ),
                (
                    "spec.verify.signature.trustRoots[2].pem",
                    Reason::InvalidCertificate
                ),
                (
                    "spec.verify.signature.signingTime.rekorKeys",
                    Reason::InvalidSpec
                ),
                (
                    "spec.verify.signature.signingTime.timestampAuthorities",
                    Reason::InvalidSpec
                ),
            ]
        );
        assert!(a.problems[2].message.contains("PUBLIC KEY"), "{a:?}");

        // Roots without identities accept nobody in particular: refused.
        let mut spec = ZastavaPolicySpec::default();
        spec.verify.signature.trust_roots = vec![roots("r", Some(&ca_pem("R")), None)];
        assert_eq!(
            fields(&assess(&spec, &BTreeMap::new())),
            vec![("spec.verify.signature.keyless", Reason::InvalidSpec)]
        );
    }

    #[test]
    fn a_proof_of_signing_time_resolves_its_keys_and_chains() {
        let mut spec = keyless_spec();
        spec.verify.signature.trust_roots = vec![roots("r", Some(&ca_pem("R")), None)];
        spec.verify.signature.signing_time.proof = TimeProof::RekorBundle;
        spec.verify.signature.signing_time.rekor_keys =
            vec![inline_key("rekor", PUB), secret_key("rekor-2", "rekor")];
        let secrets = BTreeMap::from([(
            "rekor".to_string(),
            Some(BTreeMap::from([(
                "cosign.pub".to_string(),
                PUB.as_bytes().to_vec(),
            )])),
        )]);
        let a = assess(&spec, &secrets);
        assert!(a.accepted(), "{a:?}");
        // Rekor keys are published for the webhook like cosign keys, but not counted as such.
        assert_eq!(a.resolved_keys, 0);
        assert_eq!(a.secret_keys.len(), 1);

        spec.verify.signature.signing_time = Default::default();
        spec.verify.signature.signing_time.proof = TimeProof::Rfc3161Timestamp;
        spec.verify.signature.signing_time.timestamp_authorities =
            vec![roots("tsa", Some(&ca_pem("TSA Root")), None)];
        let a = assess(&spec, &BTreeMap::new());
        assert!(a.accepted(), "{a:?}");
        assert_eq!(a.resolved_certificates[1].usage, "timestampAuthorities");
    }

    #[test]
    fn required_signature_without_any_verifier_is_rejected() {
        let mut spec = ZastavaPolicySpec::default();
        spec.verify.signature.required = true;
        let a = assess(&spec, &BTreeMap::new());
        assert_eq!(
            fields(&a),
            vec![("spec.verify.signature", Reason::InvalidSpec)]
        );
    }

    #[test]
    fn registries_are_parsed_and_must_not_be_both_allowed_and_denied() {
        let mut spec = ZastavaPolicySpec::default();
        spec.images.allowed_registries = vec!["localhost:5000".into(), "ghcr.io/Acme".into()];
        spec.images.denied_registries = vec!["localhost:5000".into()];
        let a = assess(&spec, &BTreeMap::new());
        assert_eq!(
            fields(&a),
            vec![
                ("spec.images.allowedRegistries[1]", Reason::InvalidRegistry),
                ("spec.images.deniedRegistries[0]", Reason::InvalidRegistry),
            ]
        );
    }

    #[test]
    fn selector_operators_and_values_are_checked() {
        let req = |op: &str, values: Option<Vec<&str>>| LabelSelectorRequirement {
            key: "team".into(),
            operator: op.into(),
            values: values.map(|v| v.into_iter().map(String::from).collect()),
        };
        let spec = ZastavaPolicySpec {
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![
                    req("In", Some(vec!["a"])),
                    req("In", None),
                    req("Exists", Some(vec!["x"])),
                    req("Near", None),
                ]),
                match_labels: None,
            }),
            ..Default::default()
        };
        let a = assess(&spec, &BTreeMap::new());
        assert_eq!(
            fields(&a),
            vec![
                (
                    "spec.namespaceSelector.matchExpressions[1]",
                    Reason::InvalidSelector
                ),
                (
                    "spec.namespaceSelector.matchExpressions[2]",
                    Reason::InvalidSelector
                ),
                (
                    "spec.namespaceSelector.matchExpressions[3]",
                    Reason::InvalidSelector
                ),
            ]
        );
    }

    #[test]
    fn sbom_types_and_cache_ttls_are_consistent() {
        let mut spec = ZastavaPolicySpec::default();
        spec.verify.sbom_referrer.required = true;
        spec.verify.sbom_referrer.artifact_types = vec!["cyclonedx".into()];
        spec.cache.ttl_seconds = 10;
        spec.cache.negative_ttl_seconds = 60;
        let a = assess(&spec, &BTreeMap::new());
        assert_eq!(
            fields(&a),
            vec![
                (
                    "spec.verify.sbomReferrer.artifactTypes[0]",
                    Reason::InvalidSpec
                ),
                ("spec.cache.negativeTtlSeconds", Reason::InvalidSpec),
            ]
        );
    }

    #[test]
    fn backend_credentials_are_checked_without_quoting_them() {
        let spec: ZastavaPolicySpec = serde_json::from_value(serde_json::json!({"verify": {
            "backend": {"url": "https://scanner", "caBundle": "garbage",
                "auth": {"bearerTokenSecretRef": {"name": "token"},
                         "clientCertificateSecretRef": {"name": "client"}}}}}))
        .unwrap();
        assert_eq!(
            referenced_secrets(&spec),
            BTreeSet::from(["client".to_string(), "token".to_string()])
        );
        let secret = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            )
        };
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let problems = |secrets: &BTreeMap<String, SecretData>, readable: Option<&[&str]>| {
            let readable: Option<BTreeSet<String>> =
                readable.map(|r| r.iter().map(|s| s.to_string()).collect());
            assess_backend(&spec, secrets, readable.as_ref())
                .into_iter()
                .map(|p| (p.field, p.reason, p.message))
                .collect::<Vec<_>>()
        };
        let backend = |f: &str| format!("spec.verify.backend.{f}");
        let missing = BTreeMap::from([("token".to_string(), None), ("client".to_string(), None)]);
        assert_eq!(
            problems(&missing, Some(&["token"])),
            [
                (backend("caBundle"), Reason::InvalidCredential, "no `CERTIFICATE` PEM block".to_string()),
                (backend("auth.bearerTokenSecretRef"), Reason::SecretNotFound, "Secret `token` not found".to_string()),
                (
                    backend("auth.clientCertificateSecretRef"),
                    Reason::SecretNotReadable,
                    "the webhook may not read Secret `client`: add it to the chart value webhook.backendSecrets".to_string()
                ),
                (backend("auth.clientCertificateSecretRef"), Reason::SecretNotFound, "Secret `client` not found".to_string()),
            ]
        );
        let bad = BTreeMap::from([
            ("token".to_string(), secret(&[("token", "hunter2 hunter2")])),
            ("client".to_string(), secret(&[("tls.crt", cert)])),
        ]);
        let found = problems(&bad, None);
        assert_eq!(found[1].1, Reason::InvalidCredential);
        assert!(!found[1].2.contains("hunter2"), "{}", found[1].2);
        assert_eq!(
            found[2].2,
            "Secret `client` needs keys `tls.crt` and `tls.key`"
        );
        let good = BTreeMap::from([
            ("token".to_string(), secret(&[("token", "hunter2\n")])),
            (
                "client".to_string(),
                secret(&[("tls.crt", cert), ("tls.key", key)]),
            ),
        ]);
        assert_eq!(
            problems(&good, Some(&["token", "client"])).len(),
            1,
            "only the caBundle"
        );
    }
}
