//! An RFC 3161 timestamp (`dev.sigstore.cosign/rfc3161timestamp`, what `cosign sign
//! --timestamp-server-url` attaches) as proof of signing time, verified offline against the
//! TSA chains a policy gives. The sigstore crate has no RFC 3161 verification; the CMS and
//! TSTInfo structures are RustCrypto's (`cms`, `x509-tsp`), the signature and path checks
//! rustls-webpki's.
//!
//! cosign timestamps the raw bytes of the signature, so a timestamp proves the signature
//! existed at its `genTime`.

use base64::Engine;
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384, Sha512};
use webpki::{EndEntityCert, KeyUsage};
use x509_cert::der::asn1::{ObjectIdentifier, OctetString};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::Certificate;
use x509_tsp::{TimeStampResp, TstInfo};

const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-kp-timeStamping (1.3.6.1.5.5.7.3.8), DER contents.
const TIME_STAMPING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];
const TIME_STAMPING_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
/// Certificates a timestamp may carry that are looked at.
const MAX_EMBEDDED_CERTIFICATES: usize = 8;

/// The timestamp's `genTime` (seconds since the epoch) once the timestamp in `annotation`
/// verifies, is over `signature` and its TSA chains to `anchors` (through `certificates` or
/// those the timestamp carries). The error is a reason of Zastava's own words.
pub fn verify(
    annotation: &str,
    signature: &[u8],
    anchors: &[TrustAnchor<'_>],
    certificates: &[CertificateDer<'_>],
) -> Result<u64, String> {
    let value: Value =
        serde_json::from_str(annotation).map_err(|_| "the timestamp annotation is not JSON")?;
    let der = value["SignedRFC3161Timestamp"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or("the timestamp annotation has no SignedRFC3161Timestamp")?;
    let token = token(&der)?;
    if token.content_type != SIGNED_DATA {
        return Err("the timestamp token is not CMS SignedData".to_string());
    }
    let signed: SignedData = token
        .content
        .decode_as()
        .map_err(|_| "the timestamp token is not CMS SignedData")?;
    if signed.encap_content_info.econtent_type != TST_INFO {
        return Err("the timestamp token does not hold a TSTInfo".to_string());
    }
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .and_then(|any| any.decode_as::<OctetString>().ok())
        .ok_or("the timestamp token has no TSTInfo")?;
    let content = content.as_bytes();
    let info = TstInfo::from_der(content).map_err(|_| "the timestamp's TSTInfo is malformed")?;

    let imprint = &info.message_imprint;
    let hashed = digest(&imprint.hash_algorithm.oid, signature)
        .ok_or("the timestamp's message imprint uses an unsupported hash")?;
    if hashed.as_slice() != imprint.hashed_message.as_bytes() {
        return Err("the timestamp is over something other than this signature".to_string());
    }

    let [signer] = signed.signer_infos.0.as_slice() else {
        return Err("the timestamp token does not have exactly one signer".to_string());
    };
    let attributes = signer
        .signed_attrs
        .as_ref()
        .ok_or("the timestamp's signer has no signed attributes")?;
    let attribute = |oid: ObjectIdentifier| {
        attributes
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| match a.values.as_slice() {
                [one] => Some(one),
                _ => None,
            })
    };
    let content_type = attribute(CONTENT_TYPE).and_then(|v| v.decode_as::<ObjectIdentifier>().ok());
    if content_type != Some(TST_INFO) {
        return Err("the timestamp's signed content type is not TSTInfo".to_string());
    }
    let message_digest = attribute(MESSAGE_DIGEST)
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .ok_or("the timestamp's signer has no message digest")?;
    let content_digest = digest(&signer.digest_alg.oid, content)
        .ok_or("the timestamp's signer uses an unsupported hash")?;
    if content_digest.as_slice() != message_digest.as_bytes() {
        return Err("the timestamp's message digest is not its TSTInfo's".to_string());
    }

    // The TSA's certificate: among those the token carries and those the policy lists.
    let embedded: Vec<CertificateDer<'static>> = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .take(MAX_EMBEDDED_CERTIFICATES)
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(c) => c.to_der().ok().map(CertificateDer::from),
            CertificateChoices::Other(_) => None,
        })
        .collect();
    let candidates: Vec<&CertificateDer<'_>> = embedded.iter().chain(certificates).collect();
    let tsa = candidates
        .iter()
        .find(|der| identifies(&signer.sid, der))
        .ok_or(
            "the timestamp's signing certificate is neither in it nor in timestampAuthorities",
        )?;
    let for_time_stamping = Certificate::from_der(tsa)
        .is_ok_and(|c| super::certificate::has_usage(&c, TIME_STAMPING_OID));
    if !for_time_stamping {
        return Err("its TSA certificate is not for time stamping (extendedKeyUsage)".to_string());
    }
    let tsa = EndEntityCert::try_from(*tsa).map_err(|_| "the TSA certificate is malformed")?;

    let signed_attributes = attributes
        .to_der()
        .map_err(|_| "the timestamp's signed attributes are malformed")?;
    let algorithms = algorithms(&signer.signature_algorithm.oid, &signer.digest_alg.oid);
    if algorithms.is_empty() {
        return Err("the timestamp is signed with an unsupported algorithm".to_string());
    }
    let signature_ok = algorithms.iter().any(|alg| {
        tsa.verify_signature(*alg, &signed_attributes, signer.signature.as_bytes())
            .is_ok()
    });
    if !signature_ok {
        return Err(
            "the timestamp's signature does not verify with its TSA certificate".to_string(),
        );
    }

    let gen_time = info.gen_time.to_unix_duration();
    let intermediates: Vec<CertificateDer<'_>> = candidates.into_iter().cloned().collect();
    tsa.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        anchors,
        &intermediates,
        UnixTime::since_unix_epoch(gen_time),
        KeyUsage::required_if_present(TIME_STAMPING),
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::UnknownIssuer => {
            "its TSA does not chain to the policy's timestampAuthorities".to_string()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) | webpki::Error::EmptyEkuExtension => {
            "its TSA certificate is not for time stamping (extendedKeyUsage)".to_string()
        }
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            "its TSA chain was not valid at the timestamp's time".to_string()
        }
        other => format!("its TSA chain is not valid: {other:?}"),
    })?;
    Ok(gen_time.as_secs())
}

/// The token of a `TimeStampResp` (what cosign stores), or the bare token.
fn token(der: &[u8]) -> Result<ContentInfo, String> {
    match TimeStampResp::from_der(der) {
        Ok(response) => {
            use cmpv2::status::PkiStatus;
            if !matches!(
                response.status.status,
                PkiStatus::Accepted | PkiStatus::GrantedWithMods
            ) {
                return Err("the TSA did not grant the timestamp".to_string());
            }
            response
                .time_stamp_token
                .ok_or_else(|| "the timestamp response holds no token".to_string())
        }
        Err(_) => ContentInfo::from_der(der)
            .map_err(|_| "the timestamp is not an RFC 3161 response or token".to_string()),
    }
}

fn digest(algorithm: &ObjectIdentifier, data: &[u8]) -> Option<Vec<u8>> {
    match *algorithm {
        SHA256 => Some(Sha256::digest(data).to_vec()),
        SHA384 => Some(Sha384::digest(data).to_vec()),
        SHA512 => Some(Sha512::digest(data).to_vec()),
        _ => None,
    }
}

/// The webpki algorithms a CMS signer's signature algorithm (and digest) may stand for.
fn algorithms(
    signature: &ObjectIdentifier,
    digest: &ObjectIdentifier,
) -> Vec<&'static dyn SignatureVerificationAlgorithm> {
    use webpki::ring as alg;
    let by_digest = |sha256, sha384, sha512| match *digest {
        SHA256 => vec![sha256],
        SHA384 => vec![sha384],
        SHA512 => vec![sha512],
        _ => vec![],
    };
    match *signature {
        ECDSA_SHA256 => vec![alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256],
        ECDSA_SHA384 => vec![alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384],
        // ring has no P-256/P-384 with SHA-512.
        ECDSA_SHA512 => vec![],
        EC_PUBLIC_KEY => match *digest {
            SHA256 => vec![alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256],
            SHA384 => vec![alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384],
            _ => vec![],
        },
        RSA_SHA256 => vec![alg::RSA_PKCS1_2048_8192_SHA256],
        RSA_SHA384 => vec![alg::RSA_PKCS1_2048_8192_SHA384],
        RSA_SHA512 => vec![alg::RSA_PKCS1_2048_8192_SHA512],
        RSA => by_digest(
            alg::RSA_PKCS1_2048_8192_SHA256,
            alg::RSA_PKCS1_2048_8192_SHA384,
            alg::RSA_PKCS1_2048_8192_SHA512,
        ),
        ED25519 => vec![alg::ED25519],
        _ => vec![],
    }
}

/// Whether `der` is the certificate a CMS signer identifier names.
fn identifies(sid: &SignerIdentifier, der: &CertificateDer<'_>) -> bool {
    let Ok(certificate) = Certificate::from_der(der) else {
        return false;
    };
    let tbs = &certificate.tbs_certificate;
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => {
            tbs.issuer == id.issuer && tbs.serial_number == id.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(id) => tbs
            .get::<SubjectKeyIdentifier>()
            .ok()
            .flatten()
            .is_some_and(|(_, ski)| ski == *id),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{timestamp_annotation, Ca, Tsa};
    use super::*;

    #[test]
    fn a_timestamp_over_the_signature_gives_its_time() {
        let root = Ca::new("TSA Root");
        let tsa = Tsa::new(&root);
        let anchors = [root.anchor()];
        let annotation = timestamp_annotation(&tsa, b"the signature", 1_700_000_000, true);
        assert_eq!(
            verify(&annotation, b"the signature", &anchors, &[]),
            Ok(1_700_000_000)
        );
        // Without its certificate in the token, the policy's list supplies it.
        let bare = timestamp_annotation(&tsa, b"the signature", 1_700_000_000, false);
        let e = verify(&bare, b"the signature", &anchors, &[]).unwrap_err();
        assert!(
            e.contains("neither in it nor in timestampAuthorities"),
            "{e}"
        );
        assert_eq!(
            verify(&bare, b"the signature", &anchors, &[tsa.der()]),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn a_timestamp_of_something_else_or_from_elsewhere_is_refused() {
        let root = Ca::new("TSA Root");
        let tsa = Tsa::new(&root);
        let annotation = timestamp_annotation(&tsa, b"the signature", 1_700_000_000, true);
        let e = verify(&annotation, b"another signature", &[root.anchor()], &[]).unwrap_err();
        assert_eq!(
            e,
            "the timestamp is over something other than this signature"
        );
        let stranger = Ca::new("Other Root");
        let e = verify(&annotation, b"the signature", &[stranger.anchor()], &[]).unwrap_err();
        assert_eq!(
            e,
            "its TSA does not chain to the policy's timestampAuthorities"
        );
        // The time is signed: changing it breaks the signature.
        let mut value: Value = serde_json::from_str(&annotation).unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(value["SignedRFC3161Timestamp"].as_str().unwrap())
            .unwrap();
        let at = der
            .windows(b"20231114".len())
            .position(|w| w == b"20231114")
            .expect("genTime in the DER");
        let mut tampered = der.clone();
        tampered[at + 3] = b'1';
        value["SignedRFC3161Timestamp"] = base64::engine::general_purpose::STANDARD
            .encode(&tampered)
            .into();
        let e = verify(&value.to_string(), b"the signature", &[root.anchor()], &[]).unwrap_err();
        assert_eq!(e, "the timestamp's message digest is not its TSTInfo's");
        for garbage in ["", "{}", r#"{"SignedRFC3161Timestamp": "aGVsbG8="}"#] {
            assert!(verify(garbage, b"the signature", &[root.anchor()], &[]).is_err());
        }
    }
}
