//! Keyless (certificate) cosign signatures, verified offline against the trust roots, the
//! identities and the proof of signing time a policy gives.
//!
//! A signature layer carries its signing certificate (`dev.sigstore.cosign/certificate`), the
//! certificates between it and a root (`dev.sigstore.cosign/chain`), and, when the signer
//! asked for one, a proof of when it signed: a Rekor bundle (`dev.sigstore.cosign/bundle`) or
//! an RFC 3161 timestamp (`dev.sigstore.cosign/rfc3161timestamp`). A signature is accepted when
//!
//! 1. the signing time is established: admission time without a proof, else the proof's time
//!    once the proof verifies and is about this very signature;
//! 2. the certificate was valid at that time;
//! 3. the certificate chains to one of the policy's trust roots at that time, for code
//!    signing (the path check is rustls-webpki's, as in sigstore's certificate pool);
//! 4. the signature over the simple-signing payload verifies with the certificate's key
//!    (sigstore's `CosignVerificationKey`);
//! 5. the certificate's identity (its subject alternative names) and OIDC issuer (Fulcio's
//!    extensions) match one of the policy's identities.
//!
//! The checks run in that order, so the identity a deny reason names comes from a
//! certificate one of the policy's roots vouches for. Every other reason is Zastava's own
//! text: nothing the registry sent is shown to the user. Nothing here reaches the network.
//!
//! sigstore's own cosign verification (`sigstore::cosign`) is not used: it fetches from the
//! registry itself, accepts a certificate only together with a Rekor bundle, ignores the
//! chain annotation and RFC 3161 timestamps, and pulls in Fulcio, Rekor and OAuth clients.

mod certificate;
mod rekor;
mod timestamp;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::fmt;

use regex::Regex;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use sigstore::crypto::{CosignVerificationKey, Signature};

use crate::SignedPayload;
pub use certificate::Leaf;
pub use rekor::RekorKey;

/// The most of a signature's chain annotation looked at (a Fulcio chain has two).
pub const MAX_CHAIN_CERTIFICATES: usize = 8;
/// The longest identity or issuer text a deny reason quotes.
const MAX_QUOTED: usize = 200;

/// Why a policy's keyless settings cannot be used (the operator reports the same on the
/// policy's status, field by field).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeylessError {
    #[error("trust root certificate {index} is unusable as an anchor: {cause}")]
    Root { index: usize, cause: String },
    #[error("timestamp authority certificate {index} is unusable: {cause}")]
    Tsa { index: usize, cause: String },
    #[error("no timestamp authority root (a self-signed certificate)")]
    NoTsaRoot,
    #[error("Rekor key {name}: {cause}")]
    RekorKey { name: String, cause: String },
}

/// One accepted signer: every part that is set must match.
#[derive(Clone, Debug)]
pub struct IdentityRule {
    pub subject: Option<String>,
    pub subject_pattern: Option<Regex>,
    pub issuer: Option<String>,
    pub issuer_pattern: Option<Regex>,
}

impl IdentityRule {
    fn matches(&self, names: &[String], issuer: Option<&str>) -> bool {
        let subject_ok = |name: &String| {
            self.subject.as_ref().is_none_or(|s| s == name)
                && self
                    .subject_pattern
                    .as_ref()
                    .is_none_or(|p| p.is_match(name))
        };
        let issuer_ok = match issuer {
            Some(found) => {
                self.issuer.as_ref().is_none_or(|i| i == found)
                    && self
                        .issuer_pattern
                        .as_ref()
                        .is_none_or(|p| p.is_match(found))
            }
            None => self.issuer.is_none() && self.issuer_pattern.is_none(),
        };
        issuer_ok && names.iter().any(subject_ok)
    }
}

impl fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(s) = &self.subject {
            parts.push(format!("subject {s}"));
        }
        if let Some(p) = &self.subject_pattern {
            parts.push(format!("subject ~ /{}/", p.as_str()));
        }
        if let Some(i) = &self.issuer {
            parts.push(format!("issuer {i}"));
        }
        if let Some(p) = &self.issuer_pattern {
            parts.push(format!("issuer ~ /{}/", p.as_str()));
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// What proves the signing time.
pub enum TimeProof {
    /// Nothing: the certificate must be valid at admission.
    None,
    /// A Rekor bundle whose signed entry timestamp one of these keys made.
    RekorBundle(Vec<RekorKey>),
    /// An RFC 3161 timestamp from a TSA chaining to these anchors.
    Rfc3161 {
        anchors: Vec<TrustAnchor<'static>>,
        /// Every certificate the policy lists for its TSAs: intermediates and TSA
        /// certificates that a timestamp may not carry itself.
        certificates: Vec<CertificateDer<'static>>,
    },
}

impl TimeProof {
    /// The RFC 3161 proof from the DER certificates of the policy's TSA chains: the
    /// self-signed ones are the anchors.
    pub fn rfc3161(certificates: Vec<Vec<u8>>) -> Result<Self, KeylessError> {
        let mut anchors = Vec::new();
        for (index, der) in certificates.iter().enumerate() {
            let summary = zastava_crds::certificates::summarize(der)
                .map_err(|cause| KeylessError::Tsa { index, cause })?;
            if summary.self_signed {
                let der = CertificateDer::from(der.as_slice());
                let anchor = webpki::anchor_from_trusted_cert(&der)
                    .map_err(|e| KeylessError::Tsa {
                        index,
                        cause: format!("{e:?}"),
                    })?
                    .to_owned();
                anchors.push(anchor);
            }
        }
        if anchors.is_empty() {
            return Err(KeylessError::NoTsaRoot);
        }
        Ok(TimeProof::Rfc3161 {
            anchors,
            certificates: certificates.into_iter().map(CertificateDer::from).collect(),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            TimeProof::None => "admission time",
            TimeProof::RekorBundle(_) => "Rekor bundle",
            TimeProof::Rfc3161 { .. } => "RFC 3161 timestamp",
        }
    }
}

/// A policy's keyless settings, ready to verify signatures.
pub struct KeylessVerifier {
    anchors: Vec<TrustAnchor<'static>>,
    identities: Vec<IdentityRule>,
    proof: TimeProof,
}

/// Who signed, and when, as an accepted signature shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// The subject alternative name that matched.
    pub identity: String,
    pub issuer: Option<String>,
    /// Seconds since the epoch.
    pub signed_at: u64,
    /// Until when the verdict holds (seconds since the epoch): without a proof of signing
    /// time, the end of the certificates' validity; with one, forever.
    pub holds_until: Option<u64>,
}

/// Why a keyless signature was not accepted. The text is a deny reason's.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("a signature carries no signing certificate")]
    NoCertificate,
    #[error("a signature's certificate is unreadable: {0}")]
    BadCertificate(&'static str),
    #[error("a signature's certificate chain annotation is unreadable: {0}")]
    BadChain(&'static str),
    #[error("a signature carries no {0} to prove when it was made")]
    MissingProof(&'static str),
    #[error("a signature's {proof} does not verify: {why}")]
    InvalidProof { proof: &'static str, why: String },
    #[error(
        "a signing certificate was not yet valid at signing time ({}; valid from {not_before})",
        when(signed_at, proof)
    )]
    NotYetValid {
        signed_at: String,
        not_before: String,
        proof: &'static str,
    },
    #[error(
        "a signing certificate had expired at signing time ({}; valid until {not_after})",
        when(signed_at, proof)
    )]
    Expired {
        signed_at: String,
        not_after: String,
        proof: &'static str,
    },
    #[error("a signing certificate does not chain to any of the policy's trustRoots")]
    UntrustedChain,
    #[error("a signing certificate's chain is not valid at signing time: {0}")]
    InvalidChain(String),
    #[error("a signature does not verify with its certificate's key")]
    BadSignature,
    #[error("signed by {found} (issuer {issuer}), which is not an allowed identity [{allowed}]")]
    IdentityNotAllowed {
        found: String,
        issuer: String,
        allowed: String,
    },
}

impl Rejection {
    /// Whether the same signature may be accepted later without anything changing but the
    /// clock (a certificate not valid yet, without a proof of signing time).
    pub fn may_change_with_time(&self) -> bool {
        matches!(self, Rejection::NotYetValid { proof, .. } if *proof == TimeProof::None.name())
    }
}

impl KeylessVerifier {
    /// `roots`: the DER trust root certificates (each an anchor).
    pub fn new(
        roots: &[Vec<u8>],
        identities: Vec<IdentityRule>,
        proof: TimeProof,
    ) -> Result<Self, KeylessError> {
        let anchors = roots
            .iter()
            .enumerate()
            .map(|(index, der)| {
                webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                    .map(|a| a.to_owned())
                    .map_err(|e| KeylessError::Root {
                        index,
                        cause: format!("{e:?}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            anchors,
            identities,
            proof,
        })
    }

    /// Verifies one signature layer at `now` (seconds since the epoch). The payload's digest
    /// is the caller's to check, as for keys.
    pub fn verify(&self, signature: &SignedPayload, now: u64) -> Result<Signer, Rejection> {
        let pem = signature
            .certificate
            .as_deref()
            .ok_or(Rejection::NoCertificate)?;
        let leaf = Leaf::from_pem(pem)?;
        let raw_signature = decode_base64(&signature.signature).ok_or(Rejection::BadSignature)?;

        let signed_at = match &self.proof {
            TimeProof::None => now,
            TimeProof::RekorBundle(keys) => {
                let bundle = signature
                    .bundle
                    .as_deref()
                    .ok_or(Rejection::MissingProof(self.proof.name()))?;
                rekor::verify(bundle, keys, &signature.payload, &raw_signature, &leaf).map_err(
                    |why| Rejection::InvalidProof {
                        proof: self.proof.name(),
                        why,
                    },
                )?
            }
            TimeProof::Rfc3161 {
                anchors,
                certificates,
            } => {
                let stamp = signature
                    .timestamp
                    .as_deref()
                    .ok_or(Rejection::MissingProof(self.proof.name()))?;
                timestamp::verify(stamp, &raw_signature, anchors, certificates).map_err(|why| {
                    Rejection::InvalidProof {
                        proof: self.proof.name(),
                        why,
                    }
                })?
            }
        };

        leaf.valid_at(signed_at, self.proof.name())?;
        let intermediates = certificate::chain(signature.chain.as_deref())?;
        leaf.chains_to(&self.anchors, &intermediates, signed_at)?;

        let key = CosignVerificationKey::try_from(&leaf.spki)
            .map_err(|_| Rejection::BadCertificate("unsupported public key"))?;
        key.verify_signature(Signature::Raw(&raw_signature), &signature.payload)
            .map_err(|_| Rejection::BadSignature)?;

        let issuer = leaf.issuer.clone();
        let Some(identity) = leaf.names.iter().find(|name| {
            self.identities
                .iter()
                .any(|rule| rule.matches(std::slice::from_ref(name), issuer.as_deref()))
        }) else {
            return Err(Rejection::IdentityNotAllowed {
                found: quote_list(&leaf.names),
                issuer: issuer.as_deref().map_or_else(|| "none".to_string(), quote),
                allowed: self
                    .identities
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        };
        let holds_until = match self.proof {
            TimeProof::None => Some(
                intermediates
                    .iter()
                    .filter_map(|der| zastava_crds::certificates::summarize(der).ok())
                    .map(|c| unix(c.not_after))
                    .fold(leaf.not_after, u64::min),
            ),
            _ => None,
        };
        Ok(Signer {
            identity: identity.clone(),
            issuer,
            signed_at,
            holds_until,
        })
    }
}

/// When a signature was made and what says so, for a rejection.
fn when(signed_at: &str, proof: &str) -> String {
    if proof == TimeProof::None.name() {
        format!("without a proof of signing time, admission time {signed_at}")
    } else {
        format!("signed {signed_at} by its {proof}")
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

fn unix(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rfc3339(seconds: u64) -> String {
    zastava_crds::certificates::rfc3339(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
    )
}

/// Certificate text for a deny reason: control characters escaped, length capped.
fn quote(text: &str) -> String {
    let escaped: String = text.escape_debug().collect();
    if escaped.chars().count() <= MAX_QUOTED {
        return escaped;
    }
    let cut: String = escaped.chars().take(MAX_QUOTED).collect();
    format!("{cut}…")
}

fn quote_list(names: &[String]) -> String {
    match names {
        [] => "no email, URI or DNS identity".to_string(),
        names => names
            .iter()
            .take(4)
            .map(|n| quote(n))
            .collect::<Vec<_>>()
            .join(", "),
    }
}
