//! The signing certificate of a keyless signature: its identity, issuer, validity and key, and
//! its path to a trust root.

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_cert::der::asn1::{ObjectIdentifier, Utf8StringRef};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;

use super::{rfc3339, unix, Rejection, MAX_CHAIN_CERTIFICATES};

/// Fulcio's OIDC issuer extension (raw UTF-8 bytes as the value, deprecated).
const ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
/// Fulcio's OIDC issuer extension (a DER UTF8String), which wins when both are present.
const ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER contents.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const CODE_SIGNING_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// The most subject alternative names looked at.
const MAX_NAMES: usize = 16;

/// A parsed signing certificate.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub der: Vec<u8>,
    /// Email, URI and DNS subject alternative names, in order.
    pub names: Vec<String>,
    /// The Fulcio OIDC issuer extension.
    pub issuer: Option<String>,
    /// Its extendedKeyUsage lists code signing.
    pub code_signing: bool,
    /// Validity, seconds since the epoch.
    pub not_before: u64,
    pub not_after: u64,
    pub spki: SubjectPublicKeyInfoOwned,
}

impl Leaf {
    /// The first `CERTIFICATE` block of a certificate annotation.
    pub fn from_pem(text: &str) -> Result<Self, Rejection> {
        let block = pem::parse(text).map_err(|_| Rejection::BadCertificate("not PEM"))?;
        if block.tag() != "CERTIFICATE" {
            return Err(Rejection::BadCertificate("not a CERTIFICATE block"));
        }
        Self::from_der(block.contents())
    }

    pub fn from_der(der: &[u8]) -> Result<Self, Rejection> {
        let certificate =
            Certificate::from_der(der).map_err(|_| Rejection::BadCertificate("not X.509 DER"))?;
        let tbs = &certificate.tbs_certificate;
        let names = match tbs.get::<SubjectAltName>() {
            Ok(Some((_, SubjectAltName(names)))) => names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::Rfc822Name(n)
                    | GeneralName::UniformResourceIdentifier(n)
                    | GeneralName::DnsName(n) => Some(n.as_str().to_string()),
                    _ => None,
                })
                .take(MAX_NAMES)
                .collect(),
            Ok(None) => Vec::new(),
            Err(_) => return Err(Rejection::BadCertificate("malformed subjectAltName")),
        };
        let extension = |oid: &str| {
            tbs.extensions
                .iter()
                .flatten()
                .find(|e| e.extn_id.to_string() == oid)
                .map(|e| e.extn_value.as_bytes())
        };
        let issuer = match (extension(ISSUER_V2), extension(ISSUER_V1)) {
            (Some(der), _) => Some(
                Utf8StringRef::from_der(der)
                    .map_err(|_| Rejection::BadCertificate("malformed OIDC issuer extension"))?
                    .as_str()
                    .to_string(),
            ),
            (None, Some(raw)) => Some(
                std::str::from_utf8(raw)
                    .map_err(|_| Rejection::BadCertificate("malformed OIDC issuer extension"))?
                    .to_string(),
            ),
            (None, None) => None,
        };
        let code_signing = has_usage(&certificate, CODE_SIGNING_OID);
        // Re-encoding must give back the bytes: no trailing data, one text per certificate.
        if certificate.to_der().map_or(true, |again| again != der) {
            return Err(Rejection::BadCertificate("not X.509 DER"));
        }
        Ok(Self {
            der: der.to_vec(),
            names,
            issuer,
            code_signing,
            not_before: unix(tbs.validity.not_before.to_system_time()),
            not_after: unix(tbs.validity.not_after.to_system_time()),
            spki: tbs.subject_public_key_info.clone(),
        })
    }

    /// Whether the certificate was valid at `signed_at`, proven by `proof`.
    pub fn valid_at(&self, signed_at: u64, proof: &'static str) -> Result<(), Rejection> {
        if signed_at < self.not_before {
            return Err(Rejection::NotYetValid {
                signed_at: rfc3339(signed_at),
                not_before: rfc3339(self.not_before),
                proof,
            });
        }
        if signed_at > self.not_after {
            return Err(Rejection::Expired {
                signed_at: rfc3339(signed_at),
                not_after: rfc3339(self.not_after),
                proof,
            });
        }
        Ok(())
    }

    /// Whether a path leads from the certificate through `intermediates` to one of `anchors`,
    /// every certificate of it valid at `at`, for code signing: the certificate must list the
    /// usage, a CA of the path that restricts its usages must include it (as Go's x509 and
    /// cosign have it; an enterprise CA seldom lists any).
    pub fn chains_to(
        &self,
        anchors: &[TrustAnchor<'_>],
        intermediates: &[CertificateDer<'_>],
        at: u64,
    ) -> Result<(), Rejection> {
        if !self.code_signing {
            return Err(not_for_code_signing());
        }
        let der = CertificateDer::from(self.der.as_slice());
        let leaf = EndEntityCert::try_from(&der)
            .map_err(|e| Rejection::InvalidChain(format!("the certificate: {e:?}")))?;
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            anchors,
            intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at)),
            KeyUsage::required_if_present(CODE_SIGNING),
            None,
            None,
        )
        .map(|_| ())
        .map_err(path_rejection)
    }
}

fn path_rejection(error: webpki::Error) -> Rejection {
    match error {
        // No certificate of the path names a root as its issuer, or the one that does was
        // not signed by it (a CA of the same name).
        webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
            Rejection::UntrustedChain
        }
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            Rejection::InvalidChain("a CA certificate of the path was not valid then".to_string())
        }
        webpki::Error::RequiredEkuNotFoundContext(_) | webpki::Error::EmptyEkuExtension => {
            not_for_code_signing()
        }
        webpki::Error::CaUsedAsEndEntity => {
            Rejection::InvalidChain("the signing certificate is a CA certificate".to_string())
        }
        other => Rejection::InvalidChain(format!("{other:?}")),
    }
}

fn not_for_code_signing() -> Rejection {
    Rejection::InvalidChain(
        "the certificate is not for code signing (extendedKeyUsage)".to_string(),
    )
}

/// Whether a certificate's extendedKeyUsage lists `usage`.
pub fn has_usage(certificate: &Certificate, usage: ObjectIdentifier) -> bool {
    matches!(
        certificate.tbs_certificate.get::<ExtendedKeyUsage>(),
        Ok(Some((_, ExtendedKeyUsage(usages)))) if usages.contains(&usage)
    )
}

/// The DER certificates of a chain annotation (intermediates, then usually the root).
pub fn chain(text: Option<&str>) -> Result<Vec<CertificateDer<'static>>, Rejection> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let blocks = pem::parse_many(text).map_err(|_| Rejection::BadChain("not PEM"))?;
    if blocks.len() > MAX_CHAIN_CERTIFICATES {
        return Err(Rejection::BadChain("too many certificates"));
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() == "CERTIFICATE" {
                Ok(CertificateDer::from(block.into_contents()))
            } else {
                Err(Rejection::BadChain("not a CERTIFICATE block"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Ca, LeafSpec};
    use super::*;

    #[test]
    fn identity_issuer_and_validity_are_read() {
        let ca = Ca::new("Corp Root");
        let leaf = ca.leaf(&LeafSpec::email(
            "alice@example.com",
            "https://idp.example.com",
        ));
        let parsed = Leaf::from_pem(&leaf.pem).unwrap();
        assert_eq!(parsed.names, ["alice@example.com"]);
        assert_eq!(parsed.issuer.as_deref(), Some("https://idp.example.com"));
        assert!(parsed.not_before < parsed.not_after);

        // The older issuer extension holds the bare text; the newer wins when both are there.
        let mut spec = LeafSpec::email("bob@example.com", "https://old.example.com");
        spec.issuer_v2 = None;
        let old = Leaf::from_pem(&ca.leaf(&spec).pem).unwrap();
        assert_eq!(old.issuer.as_deref(), Some("https://old.example.com"));
        spec.issuer_v2 = Some("https://new.example.com".into());
        let both = Leaf::from_pem(&ca.leaf(&spec).pem).unwrap();
        assert_eq!(both.issuer.as_deref(), Some("https://new.example.com"));
    }

    #[test]
    fn garbage_is_refused_without_a_panic() {
        for text in [
            "",
            "garbage",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
            "-----BEGIN PUBLIC KEY-----\naGVsbG8=\n-----END PUBLIC KEY-----\n",
        ] {
            assert!(
                matches!(Leaf::from_pem(text), Err(Rejection::BadCertificate(_))),
                "{text}"
            );
        }
        assert!(chain(Some("garbage")).unwrap().is_empty());
        let ca = Ca::new("Root");
        assert!(matches!(
            chain(Some(&ca.pem().repeat(MAX_CHAIN_CERTIFICATES + 1))),
            Err(Rejection::BadChain(_))
        ));
        assert!(matches!(
            chain(Some(
                "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n"
            )),
            Err(Rejection::BadChain(_))
        ));
    }
}
