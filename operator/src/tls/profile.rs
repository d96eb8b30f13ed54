//! The certificate profiles of the webhook's PKI as pure functions: the CA the operator keeps,
//! the key and CSR of a serving certificate, how that CA signs such a CSR, and reading
//! certificates back. Bad input is an error value, never a panic.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::CertError;

/// The `signerName` of the webhook's serving certificates: only the operator approves and
/// signs CSRs for it (RBAC grants `approve` and `sign` on exactly this name).
pub const SIGNER_NAME: &str = "zastava.stellaops.io/webhook-serving";
/// The CSR `usages` matching what [`Authority::sign_serving_csr`] puts in the certificate.
pub const CSR_USAGES: [&str; 3] = ["digital signature", "key encipherment", "server auth"];
/// The most `notBefore` is set before issuance, so a peer whose clock runs a little behind
/// accepts a fresh certificate (the Kubernetes signer backdates by the same).
pub const BACKDATE: Duration = Duration::minutes(5);

/// The backdate of a certificate valid for `validity`: [`BACKDATE`], but at most a tenth of
/// the validity, so that even a short-lived certificate falls due for renewal (two thirds into
/// its lifetime, counted from `notBefore`) well after it was issued.
pub fn backdate(validity: Duration) -> Duration {
    (validity / 10_i32).min(BACKDATE)
}

/// A subject alternative name of a serving certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    /// An IP address when `name` parses as one, otherwise a (lower-cased) DNS name.
    pub fn parse(name: &str) -> Self {
        match name.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(name.to_ascii_lowercase()),
        }
    }

    fn to_rcgen(&self) -> Result<SanType, CertError> {
        Ok(match self {
            San::Dns(name) => SanType::DnsName(
                name.as_str()
                    .try_into()
                    .map_err(|e: rcgen::Error| CertError::Generate(e.to_string()))?,
            ),
            San::Ip(ip) => SanType::IpAddress(*ip),
        })
    }

    fn from_rcgen(san: &SanType) -> Result<Self, CertError> {
        match san {
            SanType::DnsName(name) => Ok(San::Dns(name.as_str().to_ascii_lowercase())),
            SanType::IpAddress(ip) => Ok(San::Ip(*ip)),
            other => Err(CertError::Csr(format!(
                "unsupported subject alternative name {other:?}"
            ))),
        }
    }
}

/// A certificate time as RFC 3339, for messages.
pub fn display_time(t: OffsetDateTime) -> String {
    k8s_openapi::jiff::Timestamp::from_second(t.unix_timestamp())
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| t.to_string())
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// `DNS:a, IP:b` for messages.
pub fn display_sans(sans: &BTreeSet<San>) -> String {
    sans.iter()
        .map(San::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the operator needs to know about one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub sans: BTreeSet<San>,
    pub is_ca: bool,
    pub subject: String,
    /// The subject public key (the BIT STRING contents), to match private keys against.
    public_key: Vec<u8>,
}

impl CertInfo {
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let (rest, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| CertError::X509(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertError::X509(
                "trailing bytes after the certificate".into(),
            ));
        }
        let time = |t: x509_parser::time::ASN1Time| {
            OffsetDateTime::from_unix_timestamp(t.timestamp())
                .map_err(|e| CertError::X509(e.to_string()))
        };
        let mut sans = BTreeSet::new();
        let extension = cert
            .subject_alternative_name()
            .map_err(|e| CertError::X509(e.to_string()))?;
        for name in extension.iter().flat_map(|e| &e.value.general_names) {
            match name {
                GeneralName::DNSName(dns) => {
                    sans.insert(San::Dns(dns.to_ascii_lowercase()));
                }
                GeneralName::IPAddress(octets) => {
                    let ip = match octets.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*octets).expect("4 octets")),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*octets).expect("16 octets")),
                        n => return Err(CertError::X509(format!("IP SAN of {n} bytes"))),
                    };
                    sans.insert(San::Ip(ip));
                }
                // Other name forms play no part in serving the webhook.
                _ => {}
            }
        }
        Ok(Self {
            der: der.to_vec(),
            not_before: time(cert.validity().not_before)?,
            not_after: time(cert.validity().not_after)?,
            sans,
            is_ca: cert.is_ca(),
            subject: cert.subject().to_string(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// The certificate as PEM with `\n` line ends, as rcgen writes keys: what the operator
    /// stores is canonical, so comparing it with what it would store is a byte comparison.
    pub fn pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new("CERTIFICATE", self.der.clone()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    /// Whether `self` carries a valid signature of `issuer`'s key and names it as issuer.
    pub fn issued_by(&self, issuer: &CertInfo) -> bool {
        let (Ok((_, leaf)), Ok((_, ca))) = (
            x509_parser::parse_x509_certificate(&self.der),
            x509_parser::parse_x509_certificate(&issuer.der),
        ) else {
            return false;
        };
        leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// Whether `key_pem` is the private key of this certificate.
    pub fn matches_key(&self, key_pem: &str) -> Result<bool, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::Key(e.to_string()))?;
        Ok(key.der_bytes() == self.public_key.as_slice())
    }
}

/// Every `CERTIFICATE` block of `pem`, in order; an error when there is none or one is bad.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertInfo>, CertError> {
    let blocks = pem::parse_many(pem).map_err(|e| CertError::Pem(e.to_string()))?;
    let certs = blocks
        .iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertInfo::from_der(b.contents()))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(CertError::NoPem("CERTIFICATE"));
    }
    Ok(certs)
}

/// The certificates of a bundle concatenated as PEM, in the given order.
pub fn bundle_pem<'a>(certs: impl IntoIterator<Item = &'a CertInfo>) -> String {
    certs.into_iter().map(CertInfo::pem).collect()
}

/// A fresh ECDSA P-256 key; its PKCS#8 PEM is [`KeyPair::serialize_pem`].
pub fn generate_key() -> Result<KeyPair, CertError> {
    Ok(KeyPair::generate()?)
}

/// The PEM CSR a serving certificate is requested with: `key`'s public key and `sans`.
pub fn serving_csr_pem(key: &KeyPair, sans: &BTreeSet<San>) -> Result<String, CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(sans);
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    Ok(params.serialize_request(key)?.pem()?)
}

fn common_name(sans: &BTreeSet<San>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    let cn = sans
        .iter()
        .map(|san| match san {
            San::Dns(name) => name.clone(),
            San::Ip(ip) => ip.to_string(),
        })
        .next()
        .unwrap_or_else(|| "zastava-webhook".to_string());
    dn.push(DnType::CommonName, cn);
    dn
}

/// The operator's CA: its certificate and the key that signs serving certificates.
pub struct Authority {
    pub cert: CertInfo,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Authority")
            .field("subject", &self.cert.subject)
            .field("not_after", &self.cert.not_after)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A new self-signed CA valid from `now` (backdated) for `validity`, allowed to sign
    /// end-entity certificates only (path length 0).
    pub fn generate(now: OffsetDateTime, validity: Duration) -> Result<Self, CertError> {
        let key = generate_key()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "zastava");
        // The issuance time in the name tells a rotated CA from its predecessor at a glance.
        dn.push(
            DnType::CommonName,
            format!("zastava-webhook-ca-{}", now.unix_timestamp()),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - backdate(validity);
        params.not_after = now + validity;
        let cert = params.self_signed(&key)?;
        let info = CertInfo::from_der(cert.der())?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert: info,
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA stored as `cert_pem` (exactly one certificate) and `key_pem`.
    pub fn load(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CertError> {
        let mut certs = parse_certificates(cert_pem)?;
        if certs.len() != 1 {
            return Err(CertError::X509(format!(
                "expected one CA certificate, found {}",
                certs.len()
            )));
        }
        let cert = certs.remove(0);
        if !cert.is_ca {
            return Err(CertError::NotCa);
        }
        let key_pem = std::str::from_utf8(key_pem)
            .map_err(|_| CertError::Key("not UTF-8".into()))?
            .to_string();
        if !cert.matches_key(&key_pem)? {
            return Err(CertError::KeyMismatch);
        }
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::Key(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&cert.der.clone().into(), key)?;
        Ok(Self {
            cert,
            key_pem,
            issuer,
        })
    }

    /// The CA key as PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Signs the serving-certificate request `csr_pem` when it was made with `key` and asks
    /// for exactly `expected` names: a certificate for `digitalSignature` + `keyEncipherment`
    /// and `serverAuth` only, never a CA, valid from `now` (backdated) for `validity` but not
    /// past the CA itself. What else the CSR asks for is ignored: the profile is the signer's.
    pub fn sign_serving_csr(
        &self,
        csr_pem: &str,
        key: &KeyPair,
        expected: &BTreeSet<San>,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<String, CertError> {
        // Parsing checks the CSR's self-signature.
        let request = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CertError::Csr(e.to_string()))?;
        if request.public_key.der_bytes() != key.der_bytes() {
            return Err(CertError::CsrKeyMismatch);
        }
        if matches!(request.params.is_ca, IsCa::Ca(_)) {
            return Err(CertError::CsrAsksForCa);
        }
        let asked = request
            .params
            .subject_alt_names
            .iter()
            .map(San::from_rcgen)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if &asked != expected {
            return Err(CertError::UnexpectedSans {
                asked: display_sans(&asked),
                expected: display_sans(expected),
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(expected);
        params.subject_alt_names = expected
            .iter()
            .map(San::to_rcgen)
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - backdate(validity);
        params.not_after = (now + validity).min(self.cert.not_after);
        Ok(params.signed_by(&request.public_key, &self.issuer)?.pem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::X509Certificate;

    fn sans(names: &[&str]) -> BTreeSet<San> {
        names.iter().map(|n| San::parse(n)).collect()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn issue(ca: &Authority, names: &BTreeSet<San>, validity: Duration) -> (KeyPair, String) {
        let key = generate_key().unwrap();
        let csr = serving_csr_pem(&key, names).unwrap();
        let cert = ca
            .sign_serving_csr(&csr, &key, names, now(), validity)
            .unwrap();
        (key, cert)
    }

    #[test]
    fn sans_parse_ips_and_lower_case_dns_names() {
        assert_eq!(San::parse("127.0.0.1"), San::Ip([127, 0, 0, 1].into()));
        assert_eq!(
            San::parse("[::1]"),
            San::Ip(std::net::Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(
            San::parse("Webhook.Zastava.svc"),
            San::Dns("webhook.zastava.svc".into())
        );
    }

    #[test]
    fn ca_profile_is_a_path_length_zero_signing_ca() {
        let ca = Authority::generate(now(), Duration::days(3650)).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&ca.cert.der).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert_eq!(ca.cert.not_before, now() - BACKDATE);
        assert_eq!(ca.cert.not_after, now() + Duration::days(3650));
        assert!(ca.cert.issued_by(&ca.cert), "self-signed");
    }

    #[test]
    fn ca_round_trips_through_its_pem_and_rejects_a_foreign_key() {
        let ca = Authority::generate(now(), Duration::days(1)).unwrap();
        let loaded = Authority::load(ca.cert.pem().as_bytes(), ca.key_pem().as_bytes()).unwrap();
        assert_eq!(loaded.cert, ca.cert);
        // The reloaded CA still signs certificates that chain to the original.
        let names = sans(&["zastava-webhook.zastava-system.svc"]);
        let (_, cert) = issue(&loaded, &names, Duration::hours(1));
        assert!(parse_certificates(cert.as_bytes()).unwrap()[0].issued_by(&ca.cert));

        let other = generate_key().unwrap().serialize_pem();
        assert_eq!(
            Authority::load(ca.cert.pem().as_bytes(), other.as_bytes()).unwrap_err(),
            CertError::KeyMismatch
        );
    }

    #[test]
    fn a_serving_certificate_is_not_a_ca() {
        let ca = Authority::generate(now(), Duration::days(1)).unwrap();
        let names = sans(&["127.0.0.1"]);
        let (key, cert) = issue(&ca, &names, Duration::hours(1));
        assert_eq!(
            Authority::load(cert.as_bytes(), key.serialize_pem().as_bytes()).unwrap_err(),
            CertError::NotCa
        );
    }

    #[test]
    fn serving_profile_has_exact_sans_usages_and_validity() {
        let ca = Authority::generate(now(), Duration::days(3650)).unwrap();
        let names = sans(&[
            "zastava-webhook",
            "zastava-webhook.zastava-system",
            "zastava-webhook.zastava-system.svc",
        ]);
        let (key, pem) = issue(&ca, &names, Duration::hours(720));
        let info = &parse_certificates(pem.as_bytes()).unwrap()[0];
        assert_eq!(info.sans, names);
        assert!(!info.is_ca);
        assert_eq!(info.not_before, now() - BACKDATE);
        assert_eq!(info.not_after, now() + Duration::hours(720));
        assert!(info.issued_by(&ca.cert));
        assert!(info.matches_key(&key.serialize_pem()).unwrap());

        let (_, cert) = X509Certificate::from_der(&info.der).unwrap();
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment());
        assert!(!ku.key_cert_sign() && !ku.crl_sign() && !ku.non_repudiation());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth);
        assert!(!eku.client_auth && !eku.any && eku.other.is_empty());
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(!bc.ca);
        assert_eq!(cert.issuer().to_string(), ca.cert.subject);
    }

    #[test]
    fn short_lived_certificates_are_backdated_by_a_tenth_of_their_validity() {
        assert_eq!(backdate(Duration::days(30)), BACKDATE);
        assert_eq!(backdate(Duration::minutes(10)), Duration::minutes(1));
        let ca = Authority::generate(now(), Duration::days(1)).unwrap();
        let (_, pem) = issue(&ca, &sans(&["127.0.0.1"]), Duration::minutes(10));
        let info = &parse_certificates(pem.as_bytes()).unwrap()[0];
        assert_eq!(info.not_before, now() - Duration::minutes(1));
        assert_eq!(info.not_after, now() + Duration::minutes(10));
    }

    #[test]
    fn an_ip_san_is_an_ip_address_entry() {
        let ca = Authority::generate(now(), Duration::days(1)).unwrap();
        let names = sans(&["127.0.0.1"]);
        let (_, pem) = issue(&ca, &names, Duration::hours(1));
        let info = &parse_certificates(pem.as_bytes()).unwrap()[0];
        assert_eq!(info.sans, BTreeSet::from([San::Ip([127, 0, 0, 1].into())]));
    }

    #[test]
    fn serving_certificates_never_outlive_their_ca() {
        let ca = Authority::generate(now(), Duration::hours(2)).unwrap();
        let names = sans(&["127.0.0.1"]);
        let (_, pem) = issue(&ca, &names, Duration::hours(720));
        let info = &parse_certificates(pem.as_bytes()).unwrap()[0];
        assert_eq!(info.not_after, ca.cert.not_after);
    }

    #[test]
    fn a_csr_with_unexpected_sans_is_refused() {
        let ca = Authority::generate(now(), Duration::days(1)).unwrap();
        let key = generate_key().unwrap();
        let asked = sans(&["zastava-webhook.zastava-system.svc", "evil.example.com"]);
        let csr = serving_csr_pem(&key, &asked).unwrap();
        let expected = sans(&["zastava-webhook.zastava-system.svc"]);
        let err = ca
            .sign_serving_csr(&csr, &key, &expected, now(), Duration::hours(1))
            .unwrap_err();
        assert_eq!(
            err,
            CertError::UnexpectedSans {
                asked: "DNS:evil.example.com, DNS:zastava-webhook.zastava-system.svc".into(),
                expected: "DNS:zastava-webhook.zastava-system.svc".into(),
            }
        );
        // Fewer names than expected are refused as well.
        let fewer = serving_csr_pem(&key, &BTreeSet::new()).unwrap();
        assert!(matches!(
            ca.sign_serving_csr(&fewer, &key, &expected, now(), Duration::hours(1)),
            Err(CertError::UnexpectedSans { .. })
        ));
    }

    #[test]
    fn a_csr_for_another_key_or_for_a_ca_is_refused() {
        let ca = Authority::generate(now(), Duration::days(1)).unwrap();
        let names = sans(&["127.0.0.1"]);
        let key = generate_key().unwrap();
        let csr = serving_csr_pem(&key, &names).unwrap();
        let other = generate_key().unwrap();
        assert_eq!(
            ca.sign_serving_csr(&csr, &other, &names, now(), Duration::hours(1))
                .unwrap_err(),
            CertError::CsrKeyMismatch
        );

        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_csr = params.serialize_request(&key).unwrap().pem().unwrap();
        assert_eq!(
            ca.sign_serving_csr(&ca_csr, &key, &names, now(), Duration::hours(1))
                .unwrap_err(),
            CertError::CsrAsksForCa
        );
    }

    #[test]
    fn garbage_is_an_error_value() {
        for garbage in [
            &b""[..],
            b"not pem at all",
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(parse_certificates(garbage).is_err(), "{garbage:?}");
        }
        let ca = Authority::generate(now(), Duration::days(1)).unwrap();
        assert!(matches!(
            ca.cert.matches_key("garbage"),
            Err(CertError::Key(_))
        ));
        assert!(Authority::load(b"garbage", ca.key_pem().as_bytes()).is_err());
        assert!(matches!(
            ca.sign_serving_csr(
                "garbage",
                &generate_key().unwrap(),
                &BTreeSet::new(),
                now(),
                Duration::hours(1)
            ),
            Err(CertError::Csr(_))
        ));
    }

    #[test]
    fn bundles_keep_their_order() {
        let a = Authority::generate(now(), Duration::days(1)).unwrap();
        let b = Authority::generate(now() + Duration::seconds(1), Duration::days(1)).unwrap();
        let bundle = bundle_pem([&a.cert, &b.cert]);
        assert_eq!(
            parse_certificates(bundle.as_bytes()).unwrap(),
            vec![a.cert.clone(), b.cert.clone()]
        );
        let leaf = issue(&b, &sans(&["127.0.0.1"]), Duration::hours(1)).1;
        let leaf = &parse_certificates(leaf.as_bytes()).unwrap()[0];
        assert!(leaf.issued_by(&b.cert));
        assert!(!leaf.issued_by(&a.cert));
    }
}
