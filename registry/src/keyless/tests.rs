//! The whole keyless verification, one real signature at a time.

use regex::Regex;

use super::testing::{now, rekor_bundle, timestamp_annotation, Ca, LeafSpec, RekorLog, Tsa};
use super::*;

const PAYLOAD: &[u8] = br#"{"critical":{"image":{"docker-manifest-digest":"sha256:aa"}}}"#;
const ISSUER: &str = "https://idp.example.com";

fn alice() -> IdentityRule {
    IdentityRule {
        subject: Some("alice@example.com".into()),
        subject_pattern: None,
        issuer: Some(ISSUER.into()),
        issuer_pattern: None,
    }
}

fn verifier(root: &Ca, identities: Vec<IdentityRule>, proof: TimeProof) -> KeylessVerifier {
    KeylessVerifier::new(&[root.der()], identities, proof).unwrap()
}

/// A signature layer of `PAYLOAD` signed by a certificate `root` issues from `spec`.
fn layer(root: &Ca, spec: &LeafSpec) -> (SignedPayload, Vec<u8>) {
    let leaf = root.leaf(spec);
    let signed = leaf.sign(PAYLOAD);
    let layer = SignedPayload {
        payload: signed.payload.clone(),
        signature: signed.signature.clone(),
        certificate: Some(leaf.pem.clone()),
        chain: Some(root.pem()),
        ..SignedPayload::default()
    };
    (layer, signed.raw_signature)
}

fn now_u64() -> u64 {
    u64::try_from(now()).unwrap()
}

#[test]
fn a_matching_identity_from_the_root_is_accepted() {
    let root = Ca::new("Corp Root");
    let (signature, _) = layer(&root, &LeafSpec::email("alice@example.com", ISSUER));
    let signer = verifier(&root, vec![alice()], TimeProof::None)
        .verify(&signature, now_u64())
        .unwrap();
    assert_eq!(signer.identity, "alice@example.com");
    assert_eq!(signer.issuer.as_deref(), Some(ISSUER));
    // Without a proof the verdict holds until the certificate expires.
    assert!(signer.holds_until.unwrap() <= now_u64() + 540);

    // Patterns match too; any one rule is enough.
    let pattern = IdentityRule {
        subject: None,
        subject_pattern: Some(Regex::new(r"^[a-z]+@example\.com$").unwrap()),
        issuer: None,
        issuer_pattern: Some(Regex::new(r"^https://idp\.").unwrap()),
    };
    let bob = IdentityRule {
        subject: Some("bob@example.com".into()),
        ..alice()
    };
    assert!(verifier(&root, vec![bob, pattern], TimeProof::None)
        .verify(&signature, now_u64())
        .is_ok());
}

#[test]
fn another_identity_or_issuer_is_named_in_the_rejection() {
    let root = Ca::new("Corp Root");
    let (mallory, _) = layer(&root, &LeafSpec::email("mallory@example.com", ISSUER));
    let e = verifier(&root, vec![alice()], TimeProof::None)
        .verify(&mallory, now_u64())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "signed by mallory@example.com (issuer https://idp.example.com), which is not an allowed identity [subject alice@example.com, issuer https://idp.example.com]"
    );
    let (elsewhere, _) = layer(
        &root,
        &LeafSpec::email("alice@example.com", "https://evil.example"),
    );
    assert!(matches!(
        verifier(&root, vec![alice()], TimeProof::None).verify(&elsewhere, now_u64()),
        Err(Rejection::IdentityNotAllowed { .. })
    ));
    // A rule naming an issuer never matches a certificate without one.
    let mut spec = LeafSpec::email("alice@example.com", ISSUER);
    spec.issuer_v1 = None;
    spec.issuer_v2 = None;
    let (no_issuer, _) = layer(&root, &spec);
    let e = verifier(&root, vec![alice()], TimeProof::None)
        .verify(&no_issuer, now_u64())
        .unwrap_err();
    assert!(e.to_string().contains("(issuer none)"), "{e}");
}

#[test]
fn a_certificate_from_another_ca_does_not_chain() {
    let root = Ca::new("Corp Root");
    let stranger = Ca::new("Corp Root");
    let (signature, _) = layer(&stranger, &LeafSpec::email("alice@example.com", ISSUER));
    assert_eq!(
        verifier(&root, vec![alice()], TimeProof::None).verify(&signature, now_u64()),
        Err(Rejection::UntrustedChain)
    );
}

#[test]
fn an_intermediate_from_the_chain_annotation_leads_to_the_root() {
    let root = Ca::new("Corp Root");
    let intermediate = root.intermediate("Corp Signing CA");
    let leaf = intermediate.leaf(&LeafSpec::email("alice@example.com", ISSUER));
    let signed = leaf.sign(PAYLOAD);
    let mut signature = SignedPayload {
        payload: signed.payload,
        signature: signed.signature,
        certificate: Some(leaf.pem),
        chain: Some(format!("{}{}", intermediate.pem(), root.pem())),
        ..SignedPayload::default()
    };
    let v = verifier(&root, vec![alice()], TimeProof::None);
    let verified = v.verify(&signature, now_u64());
    assert!(verified.is_ok(), "{verified:?}");
    signature.chain = None;
    assert_eq!(
        v.verify(&signature, now_u64()),
        Err(Rejection::UntrustedChain)
    );
}

#[test]
fn validity_is_checked_at_admission_without_a_proof() {
    let root = Ca::new("Corp Root");
    let mut spec = LeafSpec::email("alice@example.com", ISSUER);
    spec.not_before = now() - 3600;
    spec.not_after = now() - 1800;
    let (expired, _) = layer(&root, &spec);
    let v = verifier(&root, vec![alice()], TimeProof::None);
    let e = v.verify(&expired, now_u64()).unwrap_err();
    assert!(matches!(e, Rejection::Expired { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("a signing certificate had expired at signing time ("),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("without a proof of signing time, admission time"),
        "{e}"
    );
    spec.not_before = now() + 600;
    spec.not_after = now() + 1200;
    let (early, _) = layer(&root, &spec);
    let e = v.verify(&early, now_u64()).unwrap_err();
    assert!(matches!(e, Rejection::NotYetValid { .. }), "{e}");
    assert!(e.may_change_with_time());
}

#[test]
fn tampered_signatures_garbage_and_wrong_usage_are_rejected() {
    let root = Ca::new("Corp Root");
    let v = verifier(&root, vec![alice()], TimeProof::None);
    let (mut signature, _) = layer(&root, &LeafSpec::email("alice@example.com", ISSUER));
    signature.payload.push(b' ');
    assert_eq!(
        v.verify(&signature, now_u64()),
        Err(Rejection::BadSignature)
    );

    let (good, _) = layer(&root, &LeafSpec::email("alice@example.com", ISSUER));
    let no_certificate = SignedPayload {
        certificate: None,
        ..good.clone()
    };
    assert_eq!(
        v.verify(&no_certificate, now_u64()),
        Err(Rejection::NoCertificate)
    );
    let garbage = SignedPayload {
        certificate: Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()),
        ..good.clone()
    };
    assert!(matches!(
        v.verify(&garbage, now_u64()),
        Err(Rejection::BadCertificate(_))
    ));
    let bad_chain = SignedPayload {
        chain: Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into()),
        ..good.clone()
    };
    assert!(matches!(
        v.verify(&bad_chain, now_u64()),
        Err(Rejection::BadChain(_))
    ));
    let not_base64 = SignedPayload {
        signature: "!!".into(),
        ..good
    };
    assert_eq!(
        v.verify(&not_base64, now_u64()),
        Err(Rejection::BadSignature)
    );

    let mut spec = LeafSpec::email("alice@example.com", ISSUER);
    spec.code_signing = false;
    let (not_code_signing, _) = layer(&root, &spec);
    let e = v.verify(&not_code_signing, now_u64()).unwrap_err();
    assert!(e.to_string().contains("not for code signing"), "{e}");
}

#[test]
fn a_rekor_bundle_dates_the_signature() {
    let root = Ca::new("Corp Root");
    let log = RekorLog::new();
    let v = verifier(
        &root,
        vec![alice()],
        TimeProof::RekorBundle(vec![log.key("rekor")]),
    );
    // A ten-minute certificate that expired long ago, logged while it was valid.
    let mut spec = LeafSpec::email("alice@example.com", ISSUER);
    spec.not_before = now() - 7200;
    spec.not_after = now() - 6600;
    let leaf = root.leaf(&spec);
    let signed = leaf.sign(PAYLOAD);
    let mut signature = SignedPayload {
        payload: signed.payload.clone(),
        signature: signed.signature.clone(),
        certificate: Some(leaf.pem.clone()),
        chain: Some(root.pem()),
        ..SignedPayload::default()
    };
    assert_eq!(
        v.verify(&signature, now_u64()),
        Err(Rejection::MissingProof("Rekor bundle"))
    );
    let logged_at = now_u64() - 7000;
    signature.bundle = Some(rekor_bundle(&log, &signed, &leaf.pem, logged_at));
    let signer = v.verify(&signature, now_u64()).unwrap();
    assert_eq!(signer.signed_at, logged_at);
    assert_eq!(signer.holds_until, None);

    // Logged after the certificate expired.
    signature.bundle = Some(rekor_bundle(&log, &signed, &leaf.pem, now_u64() - 6000));
    let e = v.verify(&signature, now_u64()).unwrap_err();
    assert!(e.to_string().contains("had expired at signing time"), "{e}");
    assert!(e.to_string().contains("by its Rekor bundle"), "{e}");

    // A bundle of another log.
    signature.bundle = Some(rekor_bundle(
        &RekorLog::new(),
        &signed,
        &leaf.pem,
        logged_at,
    ));
    assert!(matches!(
        v.verify(&signature, now_u64()),
        Err(Rejection::InvalidProof {
            proof: "Rekor bundle",
            ..
        })
    ));
}

#[test]
fn an_rfc3161_timestamp_dates_the_signature() {
    let root = Ca::new("Corp Root");
    let tsa_root = Ca::new("TSA Root");
    let tsa = Tsa::new(&tsa_root);
    let proof = TimeProof::rfc3161(vec![tsa_root.der()]).unwrap();
    let v = verifier(&root, vec![alice()], proof);
    let mut spec = LeafSpec::email("alice@example.com", ISSUER);
    spec.not_before = now() - 7200;
    spec.not_after = now() - 6600;
    let (mut signature, raw) = layer(&root, &spec);
    assert_eq!(
        v.verify(&signature, now_u64()),
        Err(Rejection::MissingProof("RFC 3161 timestamp"))
    );
    let stamped_at = now_u64() - 7000;
    signature.timestamp = Some(timestamp_annotation(&tsa, &raw, stamped_at, true));
    assert_eq!(
        v.verify(&signature, now_u64()).unwrap().signed_at,
        stamped_at
    );

    signature.timestamp = Some(timestamp_annotation(&tsa, &raw, now_u64() - 60, true));
    let e = v.verify(&signature, now_u64()).unwrap_err();
    assert!(e.to_string().contains("had expired at signing time"), "{e}");
    assert!(e.to_string().contains("by its RFC 3161 timestamp"), "{e}");

    // A timestamp of another signature proves nothing about this one.
    signature.timestamp = Some(timestamp_annotation(&tsa, b"other", stamped_at, true));
    assert!(matches!(
        v.verify(&signature, now_u64()),
        Err(Rejection::InvalidProof { .. })
    ));
    assert_eq!(
        TimeProof::rfc3161(vec![tsa.der().to_vec()]).err(),
        Some(KeylessError::NoTsaRoot)
    );
}

#[test]
fn identities_in_rejections_are_escaped_and_capped() {
    assert_eq!(quote("a\nb"), "a\\nb");
    assert_eq!(quote(&"x".repeat(500)).chars().count(), MAX_QUOTED + 1);
}

/// What cosign and OpenSSL really write verifies: a signature layer of `cosign sign
/// --certificate --certificate-chain --timestamp-server-url` against a TSA run by
/// `openssl ts -reply`, captured from a registry.
#[test]
fn a_real_cosign_signature_with_an_openssl_timestamp_verifies() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/cosign-openssl-tsa.json")).unwrap();
    let annotation = |key: &str| fixture["annotations"][key].as_str().map(String::from);
    let signature = SignedPayload {
        payload: fixture["payload"].as_str().unwrap().as_bytes().to_vec(),
        signature: annotation(crate::COSIGN_SIGNATURE_ANNOTATION).unwrap(),
        certificate: annotation(crate::COSIGN_CERTIFICATE_ANNOTATION),
        chain: annotation(crate::COSIGN_CHAIN_ANNOTATION),
        bundle: None,
        timestamp: annotation(crate::COSIGN_TIMESTAMP_ANNOTATION),
    };
    assert_eq!(
        crate::payload_digest(&signature.payload).as_deref(),
        fixture["digest"].as_str()
    );
    let der = |pem_text: &str| pem::parse(pem_text).unwrap().into_contents();
    let roots = [der(fixture["signingRoot"].as_str().unwrap())];
    let tsa = vec![der(fixture["tsaRoot"].as_str().unwrap())];
    let identity = IdentityRule {
        issuer: Some("https://idp.example.test".into()),
        ..alice()
    };
    let v = KeylessVerifier::new(
        &roots,
        vec![identity.clone()],
        TimeProof::rfc3161(tsa).unwrap(),
    )
    .unwrap();
    // Years after the one-day certificate expired, the timestamp still dates the signature.
    let later = 4_000_000_000;
    let signer = v.verify(&signature, later).unwrap();
    assert_eq!(signer.identity, "alice@example.com");
    assert_eq!(signer.issuer.as_deref(), Some("https://idp.example.test"));
    assert_eq!(rfc3339(signer.signed_at), "2026-12-06T08:35:31Z");
    // Without the proof, admission time decides, and the certificate has expired by then.
    let v = KeylessVerifier::new(&roots, vec![identity], TimeProof::None).unwrap();
    assert!(matches!(
        v.verify(&signature, later),
        Err(Rejection::Expired { .. })
    ));
}
