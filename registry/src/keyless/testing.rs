//! Real certificates, signatures, Rekor bundles and RFC 3161 timestamps for the unit tests:
//! a CA made with rcgen issues a signing certificate with an email identity and Fulcio's
//! OIDC-issuer extensions, as a private Fulcio or an enterprise CA would.

use base64::Engine;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SigningKey,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde_json::json;
use sha2::{Digest, Sha256};
use x509_cert::attr::Attribute;
use x509_cert::der::asn1::{GeneralizedTime, Int, ObjectIdentifier, OctetString, SetOfVec};
use x509_cert::der::{Any, Decode, Encode, Tag};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_tsp::{MessageImprint, TimeStampResp, TspVersion, TstInfo};

use super::rekor::RekorKey;

const ISSUER_V1: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 1];
const ISSUER_V2: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 8];

pub fn at(seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap()
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A CA certificate and its key.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        Self::with_validity(name, now() - 86_400, now() + 86_400 * 365)
    }

    pub fn with_validity(name: &str, not_before: i64, not_after: i64) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(not_before);
        params.not_after = at(not_after);
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// An intermediate CA this one issues.
    pub fn intermediate(&self, name: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.not_before = at(now() - 86_400);
        params.not_after = at(now() + 86_400 * 30);
        Self {
            issuer: CertifiedIssuer::signed_by(params, key, &self.issuer).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    pub fn anchor(&self) -> TrustAnchor<'static> {
        webpki::anchor_from_trusted_cert(self.issuer.der())
            .unwrap()
            .to_owned()
    }

    pub fn leaf(&self, spec: &LeafSpec) -> IssuedLeaf {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = spec
            .emails
            .iter()
            .map(|e| SanType::Rfc822Name(e.as_str().try_into().unwrap()))
            .chain(
                spec.uris
                    .iter()
                    .map(|u| SanType::URI(u.as_str().try_into().unwrap())),
            )
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if spec.code_signing {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        }
        params.not_before = at(spec.not_before);
        params.not_after = at(spec.not_after);
        if let Some(issuer) = &spec.issuer_v1 {
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    ISSUER_V1,
                    issuer.as_bytes().to_vec(),
                ));
        }
        if let Some(issuer) = &spec.issuer_v2 {
            let mut der = vec![0x0c, u8::try_from(issuer.len()).unwrap()];
            der.extend_from_slice(issuer.as_bytes());
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(ISSUER_V2, der));
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        IssuedLeaf {
            pem: cert.pem(),
            key,
        }
    }
}

/// What a signing certificate says.
#[derive(Clone)]
pub struct LeafSpec {
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    pub issuer_v1: Option<String>,
    pub issuer_v2: Option<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub code_signing: bool,
}

impl LeafSpec {
    /// A Fulcio-like certificate: an email identity, both issuer extensions, valid for ten
    /// minutes from a minute ago.
    pub fn email(email: &str, issuer: &str) -> Self {
        Self {
            emails: vec![email.to_string()],
            uris: Vec::new(),
            issuer_v1: Some(issuer.to_string()),
            issuer_v2: Some(issuer.to_string()),
            not_before: now() - 60,
            not_after: now() + 540,
            code_signing: true,
        }
    }
}

pub struct IssuedLeaf {
    pub pem: String,
    key: KeyPair,
}

/// A payload signed with a leaf's key.
pub struct Signed {
    pub payload: Vec<u8>,
    pub raw_signature: Vec<u8>,
    pub signature: String,
}

impl IssuedLeaf {
    pub fn sign(&self, payload: &[u8]) -> Signed {
        let raw_signature = self.key.sign(payload).unwrap();
        Signed {
            payload: payload.to_vec(),
            signature: base64::engine::general_purpose::STANDARD.encode(&raw_signature),
            raw_signature,
        }
    }
}

/// A stand-in Rekor log: its key signs entries as Rekor does.
pub struct RekorLog {
    key: KeyPair,
}

impl RekorLog {
    pub fn new() -> Self {
        Self {
            key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        }
    }

    pub fn key(&self, name: &str) -> RekorKey {
        RekorKey::from_pem(name, &self.key.public_key_pem()).unwrap()
    }
}

/// A cosign Rekor bundle (`dev.sigstore.cosign/bundle`) for a hashedrekord entry of
/// `signed` by the certificate `certificate_pem`, integrated at `integrated_time`.
pub fn rekor_bundle(
    log: &RekorLog,
    signed: &Signed,
    certificate_pem: &str,
    integrated_time: u64,
) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = json!({
        "apiVersion": "0.0.1", "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(&signed.payload))}},
            "signature": {"content": signed.signature, "publicKey": {"content": b64.encode(certificate_pem)}},
        },
    });
    let body = b64.encode(body.to_string());
    let log_id = hex::encode(Sha256::digest(
        pem::parse(log.key.public_key_pem()).unwrap().contents(),
    ));
    let canonical = format!(
        r#"{{"body":"{body}","integratedTime":{integrated_time},"logID":"{log_id}","logIndex":7}}"#
    );
    let set = log.key.sign(canonical.as_bytes()).unwrap();
    json!({
        "SignedEntryTimestamp": b64.encode(set),
        "Payload": {"body": body, "integratedTime": integrated_time, "logIndex": 7, "logID": log_id},
    })
    .to_string()
}

/// A time-stamping authority: a certificate for time stamping issued by a root.
pub struct Tsa {
    cert: Vec<u8>,
    key: KeyPair,
}

impl Tsa {
    pub fn new(root: &Ca) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Test TSA");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::TimeStamping];
        params.not_before = at(1_600_000_000);
        params.not_after = at(now() + 86_400 * 365);
        let cert = params.signed_by(&key, &root.issuer).unwrap();
        Self {
            cert: cert.der().to_vec(),
            key,
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert.clone())
    }
}

fn oid(text: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(text)
}

fn sha256_algorithm() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: oid("2.16.840.1.101.3.4.2.1"),
        parameters: None,
    }
}

/// The `dev.sigstore.cosign/rfc3161timestamp` annotation of an RFC 3161 response from `tsa`
/// over `signature` at `gen_time`, with the TSA's certificate in the token or not.
pub fn timestamp_annotation(
    tsa: &Tsa,
    signature: &[u8],
    gen_time: u64,
    with_certificate: bool,
) -> String {
    let info = TstInfo {
        version: TspVersion::V1,
        policy: oid("1.2.3.4.1"),
        message_imprint: MessageImprint {
            hash_algorithm: sha256_algorithm(),
            hashed_message: OctetString::new(Sha256::digest(signature).to_vec()).unwrap(),
        },
        serial_number: Int::new(&[1]).unwrap(),
        gen_time: GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(gen_time))
            .unwrap(),
        accuracy: None,
        ordering: false,
        nonce: None,
        tsa: None,
        extensions: None,
    };
    let content = info.to_der().unwrap();
    let attribute = |id: &str, value: Any| Attribute {
        oid: oid(id),
        values: SetOfVec::try_from(vec![value]).unwrap(),
    };
    let attributes = SetOfVec::try_from(vec![
        attribute(
            "1.2.840.113549.1.9.3",
            Any::encode_from(&oid("1.2.840.113549.1.9.16.1.4")).unwrap(),
        ),
        attribute(
            "1.2.840.113549.1.9.4",
            Any::encode_from(&OctetString::new(Sha256::digest(&content).to_vec()).unwrap())
                .unwrap(),
        ),
    ])
    .unwrap();
    let signature_value = tsa.key.sign(&attributes.to_der().unwrap()).unwrap();
    let certificate = Certificate::from_der(&tsa.cert).unwrap();
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: certificate.tbs_certificate.issuer.clone(),
            serial_number: certificate.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: sha256_algorithm(),
        signed_attrs: Some(attributes),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: oid("1.2.840.10045.4.3.2"),
            parameters: None,
        },
        signature: OctetString::new(signature_value).unwrap(),
        unsigned_attrs: None,
    };
    let signed = SignedData {
        version: CmsVersion::V3,
        digest_algorithms: SetOfVec::try_from(vec![sha256_algorithm()]).unwrap(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: oid("1.2.840.113549.1.9.16.1.4"),
            econtent: Some(Any::new(Tag::OctetString, content).unwrap()),
        },
        certificates: with_certificate.then(|| {
            CertificateSet(
                SetOfVec::try_from(vec![CertificateChoices::Certificate(certificate)]).unwrap(),
            )
        }),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).unwrap()),
    };
    let response = TimeStampResp {
        status: cmpv2::status::PkiStatusInfo {
            status: cmpv2::status::PkiStatus::Accepted,
            status_string: None,
            fail_info: None,
        },
        time_stamp_token: Some(ContentInfo {
            content_type: oid("1.2.840.113549.1.7.2"),
            content: Any::encode_from(&signed).unwrap(),
        }),
    };
    json!({"SignedRFC3161Timestamp":
        base64::engine::general_purpose::STANDARD.encode(response.to_der().unwrap())})
    .to_string()
}
