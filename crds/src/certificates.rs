//! PEM certificates of a policy (`trustRoots`, `timestampAuthorities`): what their text must
//! hold to be usable, shared by the operator (which reports it) and the webhook (which uses it).

use std::time::{Duration, UNIX_EPOCH};

use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::Certificate;

/// Certificates one entry may hold: a root and a few intermediates, never a bundle of
/// every CA of an operating system.
pub const MAX_CERTIFICATES_PER_ENTRY: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("not PEM: {0}")]
    NotPem(String),
    #[error("no `-----BEGIN CERTIFICATE-----` block")]
    NoCertificate,
    #[error("PEM block {index} is `{label}`, expected `CERTIFICATE`")]
    WrongLabel { index: usize, label: String },
    #[error("more than {MAX_CERTIFICATES_PER_ENTRY} certificates")]
    TooMany,
    #[error("certificate {index} is not a DER X.509 certificate: {cause}")]
    NotX509 { index: usize, cause: String },
    #[error(
        "certificate {index} ({subject}) is not a CA certificate (basicConstraints cA is not set)"
    )]
    NotCa { index: usize, subject: String },
    #[error("no self-signed root certificate among them (a chain must end with its root)")]
    NoRoot,
}

/// One parsed certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateSummary {
    pub der: Vec<u8>,
    /// RFC 4514.
    pub subject: String,
    pub not_after: std::time::SystemTime,
    pub is_ca: bool,
    /// Subject and issuer are the same name (a root, or an anchor of its own).
    pub self_signed: bool,
}

/// What an entry's PEM holds, parsed, and the same certificates encoded afresh: `CERTIFICATE`
/// blocks of the parsed DER and nothing else, so no other text of where they came from (a
/// Secret's value may hold anything) travels with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCertificates {
    pub certificates: Vec<CertificateSummary>,
    pub canonical_pem: String,
}

impl ParsedCertificates {
    /// The earliest `notAfter`, RFC 3339.
    pub fn not_after(&self) -> String {
        self.certificates
            .iter()
            .map(|c| c.not_after)
            .min()
            .map(rfc3339)
            .unwrap_or_default()
    }

    pub fn subjects(&self) -> Vec<String> {
        self.certificates
            .iter()
            .map(|c| c.subject.clone())
            .collect()
    }
}

/// How an entry's certificates are used, which decides what each must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// `trustRoots`: every certificate is an anchor keyless signing certificates chain to, and
    /// must be a CA certificate.
    TrustRoots,
    /// `timestampAuthorities`: a TSA's chain. Its self-signed certificates are the anchors;
    /// the others (intermediates, the TSA's own certificate) only help build the path.
    TimestampAuthority,
}

/// Parses PEM certificates as a policy entry gives them.
pub fn parse_certificates(
    pem_text: &str,
    usage: Usage,
) -> Result<ParsedCertificates, CertificateError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| CertificateError::NotPem(e.to_string()))?;
    // `parse_many` silently skips non-PEM text, so no block at all means garbage.
    if blocks.is_empty() {
        return Err(CertificateError::NoCertificate);
    }
    if blocks.len() > MAX_CERTIFICATES_PER_ENTRY {
        return Err(CertificateError::TooMany);
    }
    let mut certificates = Vec::with_capacity(blocks.len());
    let mut canonical_pem = String::new();
    for (index, block) in blocks.iter().enumerate() {
        if block.tag() != "CERTIFICATE" {
            return Err(CertificateError::WrongLabel {
                index,
                label: block.tag().to_string(),
            });
        }
        let summary = summarize(block.contents())
            .map_err(|cause| CertificateError::NotX509 { index, cause })?;
        if usage == Usage::TrustRoots && !summary.is_ca {
            return Err(CertificateError::NotCa {
                index,
                subject: summary.subject,
            });
        }
        canonical_pem.push_str(&pem::encode_config(
            &pem::Pem::new("CERTIFICATE", block.contents()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ));
        certificates.push(summary);
    }
    if usage == Usage::TimestampAuthority && !certificates.iter().any(|c| c.self_signed) {
        return Err(CertificateError::NoRoot);
    }
    Ok(ParsedCertificates {
        certificates,
        canonical_pem,
    })
}

/// A DER certificate's subject, validity end and CA flag.
pub fn summarize(der: &[u8]) -> Result<CertificateSummary, String> {
    let certificate = Certificate::from_der(der).map_err(|e| e.to_string())?;
    // Trailing bytes after the certificate would make two texts of one certificate.
    if certificate.to_der().map_err(|e| e.to_string())?.len() != der.len() {
        return Err("trailing data after the certificate".to_string());
    }
    let tbs = &certificate.tbs_certificate;
    let is_ca = tbs
        .get::<BasicConstraints>()
        .map_err(|e| format!("basicConstraints: {e}"))?
        .is_some_and(|(_, constraints)| constraints.ca);
    Ok(CertificateSummary {
        der: der.to_vec(),
        subject: tbs.subject.to_string(),
        not_after: tbs.validity.not_after.to_system_time(),
        is_ca,
        self_signed: tbs.subject == tbs.issuer,
    })
}

/// RFC 3339 in UTC, to the second.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    k8s_openapi::jiff::Timestamp::from_second(i64::try_from(seconds).unwrap_or(i64::MAX))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rcgen::CertifiedIssuer::self_signed(params, key).unwrap()
    }

    fn leaf(issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["tsa.example".to_string()]).unwrap();
        params.signed_by(&key, issuer).unwrap().pem()
    }

    #[test]
    fn a_ca_bundle_parses_and_is_reencoded_alone() {
        let (a, b) = (ca("Root A"), ca("Root B"));
        let text = format!(
            "# corp roots\n{}\nsome text\n{}",
            a.pem(),
            b.pem().replace('\n', "\r\n")
        );
        let parsed = parse_certificates(&text, Usage::TrustRoots).unwrap();
        assert_eq!(parsed.subjects(), ["CN=Root A", "CN=Root B"]);
        assert_eq!(
            parsed.canonical_pem,
            format!("{}{}", a.pem(), b.pem()).replace("\r\n", "\n")
        );
        assert!(parsed.certificates.iter().all(|c| c.is_ca && c.self_signed));
        assert!(parsed.not_after().ends_with('Z'), "{}", parsed.not_after());
    }

    #[test]
    fn what_is_not_a_usable_certificate_is_named() {
        assert_eq!(
            parse_certificates("hello", Usage::TrustRoots),
            Err(CertificateError::NoCertificate)
        );
        let key = "-----BEGIN PUBLIC KEY-----\naGVsbG8=\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            parse_certificates(key, Usage::TrustRoots),
            Err(CertificateError::WrongLabel { index: 0, .. })
        ));
        let garbage = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_certificates(garbage, Usage::TrustRoots),
            Err(CertificateError::NotX509 { index: 0, .. })
        ));
        let root = ca("Root");
        let not_ca = leaf(&root);
        assert!(matches!(
            parse_certificates(&not_ca, Usage::TrustRoots),
            Err(CertificateError::NotCa { index: 0, .. })
        ));
        // A TSA chain may hold the TSA's own certificate, but must end with a root.
        assert_eq!(
            parse_certificates(&not_ca, Usage::TimestampAuthority),
            Err(CertificateError::NoRoot)
        );
        let chain = format!("{not_ca}{}", root.pem());
        assert_eq!(
            parse_certificates(&chain, Usage::TimestampAuthority)
                .unwrap()
                .certificates
                .len(),
            2
        );
        let many = root.pem().repeat(MAX_CERTIFICATES_PER_ENTRY + 1);
        assert_eq!(
            parse_certificates(&many, Usage::TrustRoots),
            Err(CertificateError::TooMany)
        );
    }
}
