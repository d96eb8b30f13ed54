//! A Rekor bundle (`dev.sigstore.cosign/bundle`) as proof of signing time: its signed entry
//! timestamp (SET) verified offline with a Rekor public key the policy gives, and its entry
//! held to be about this signature, payload and certificate (else any SET from the log would
//! date any signature).

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sigstore::crypto::{CosignVerificationKey, Signature};

use super::Leaf;

/// A Rekor log's public key and the log ID (hex SHA-256 of the key's DER) its bundles name.
#[derive(Clone, Debug)]
pub struct RekorKey {
    pub name: String,
    pub log_id: String,
    key: CosignVerificationKey,
}

impl RekorKey {
    /// From a `PUBLIC KEY` PEM, as Rekor serves it (`/api/v1/log/publicKey`).
    pub fn from_pem(name: &str, pem_text: &str) -> Result<Self, String> {
        let block = pem::parse(pem_text).map_err(|e| e.to_string())?;
        if block.tag() != "PUBLIC KEY" {
            return Err(format!(
                "PEM block is `{}`, expected `PUBLIC KEY`",
                block.tag()
            ));
        }
        let key =
            CosignVerificationKey::try_from_der(block.contents()).map_err(|e| e.to_string())?;
        Ok(Self {
            name: name.to_string(),
            log_id: hex::encode(Sha256::digest(block.contents())),
            key,
        })
    }
}

/// The entry's integrated time (seconds since the epoch) once the bundle verifies with one
/// of `keys` and its entry is about `payload`, `signature` and `leaf`. The error is a reason
/// of Zastava's own words.
pub fn verify(
    bundle: &str,
    keys: &[RekorKey],
    payload: &[u8],
    signature: &[u8],
    leaf: &Leaf,
) -> Result<u64, String> {
    let bundle: Value = serde_json::from_str(bundle).map_err(|_| "the bundle is not JSON")?;
    let set = bundle["SignedEntryTimestamp"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or("the bundle has no SignedEntryTimestamp")?;
    let entry = &bundle["Payload"];
    let body = entry["body"]
        .as_str()
        .filter(|b| {
            b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        })
        .ok_or("the bundle's entry has no base64 body")?;
    let integrated_time = entry["integratedTime"]
        .as_u64()
        .ok_or("the bundle's entry has no integratedTime")?;
    let log_index = entry["logIndex"]
        .as_u64()
        .ok_or("the bundle's entry has no logIndex")?;
    let log_id = entry["logID"]
        .as_str()
        .filter(|id| id.len() == 64 && id.bytes().all(|c| c.is_ascii_hexdigit()))
        .ok_or("the bundle's entry has no logID")?;
    let key = keys
        .iter()
        .find(|k| k.log_id.eq_ignore_ascii_case(log_id))
        .ok_or_else(|| {
            format!(
                "it comes from Rekor log {} whose key is not among the policy's rekorKeys",
                log_id.to_ascii_lowercase()
            )
        })?;
    // What Rekor signs: the entry as canonical JSON (keys sorted, no whitespace). Every value
    // was checked above to need no escaping, so the text is written out directly.
    let canonical = format!(
        r#"{{"body":"{body}","integratedTime":{integrated_time},"logID":"{log_id}","logIndex":{log_index}}}"#
    );
    key.key
        .verify_signature(Signature::Raw(&set), canonical.as_bytes())
        .map_err(|_| {
            format!(
                "its signed entry timestamp does not verify with Rekor key {}",
                key.name
            )
        })?;
    entry_is_about(body, payload, signature, leaf)?;
    Ok(integrated_time)
}

/// Whether a `hashedrekord` or `rekord` entry names this payload, signature and certificate.
fn entry_is_about(body: &str, payload: &[u8], signature: &[u8], leaf: &Leaf) -> Result<(), String> {
    let base64 = base64::engine::general_purpose::STANDARD;
    let body: Value = base64
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the entry's body is not JSON")?;
    if !matches!(body["kind"].as_str(), Some("hashedrekord" | "rekord")) {
        return Err("the entry is not a hashedrekord or rekord entry".to_string());
    }
    let spec = &body["spec"];
    let hash = &spec["data"]["hash"];
    let payload_hash = hex::encode(Sha256::digest(payload));
    if hash["algorithm"] != "sha256" || hash["value"].as_str() != Some(payload_hash.as_str()) {
        return Err("the entry is about another payload".to_string());
    }
    let entry_signature = spec["signature"]["content"]
        .as_str()
        .and_then(|s| base64.decode(s).ok());
    if entry_signature.as_deref() != Some(signature) {
        return Err("the entry is about another signature".to_string());
    }
    let named = spec["signature"]["publicKey"]["content"]
        .as_str()
        .and_then(|s| base64.decode(s).ok())
        .and_then(|pem_bytes| pem::parse(pem_bytes).ok());
    let same = match &named {
        Some(block) if block.tag() == "CERTIFICATE" => block.contents() == leaf.der.as_slice(),
        Some(block) if block.tag() == "PUBLIC KEY" => {
            use x509_cert::der::Encode;
            leaf.spki.to_der().is_ok_and(|der| der == block.contents())
        }
        _ => false,
    };
    if !same {
        return Err("the entry names another signing certificate".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{rekor_bundle, Ca, LeafSpec, RekorLog};
    use super::*;

    #[test]
    fn a_bundle_of_this_signature_gives_its_integrated_time() {
        let ca = Ca::new("Root");
        let leaf = ca.leaf(&LeafSpec::email("a@example.com", "https://idp"));
        let signed = leaf.sign(b"payload");
        let log = RekorLog::new();
        let parsed = Leaf::from_pem(&leaf.pem).unwrap();
        let bundle = rekor_bundle(&log, &signed, &leaf.pem, 1_700_000_000);
        let keys = [log.key("rekor")];
        assert_eq!(
            verify(&bundle, &keys, b"payload", &signed.raw_signature, &parsed),
            Ok(1_700_000_000)
        );

        // Another log's key, another payload, another signature, a forged time.
        let other = [RekorLog::new().key("other")];
        let e = verify(&bundle, &other, b"payload", &signed.raw_signature, &parsed).unwrap_err();
        assert!(
            e.contains("whose key is not among the policy's rekorKeys"),
            "{e}"
        );
        let e = verify(&bundle, &keys, b"other", &signed.raw_signature, &parsed).unwrap_err();
        assert_eq!(e, "the entry is about another payload");
        let e = verify(&bundle, &keys, b"payload", b"other", &parsed).unwrap_err();
        assert_eq!(e, "the entry is about another signature");
        let forged = bundle.replace("1700000000", "1600000000");
        let e = verify(&forged, &keys, b"payload", &signed.raw_signature, &parsed).unwrap_err();
        assert_eq!(
            e,
            "its signed entry timestamp does not verify with Rekor key rekor"
        );
        // An entry naming another certificate does not date this one.
        let stranger =
            Leaf::from_pem(&ca.leaf(&LeafSpec::email("b@example.com", "x")).pem).unwrap();
        let e = verify(&bundle, &keys, b"payload", &signed.raw_signature, &stranger).unwrap_err();
        assert_eq!(e, "the entry names another signing certificate");
        for garbage in ["", "{}", "[1]", r#"{"SignedEntryTimestamp": "!!"}"#] {
            assert!(verify(garbage, &keys, b"payload", &signed.raw_signature, &parsed).is_err());
        }
    }

    #[test]
    fn rekor_keys_must_be_public_keys() {
        assert!(RekorKey::from_pem("k", "garbage").is_err());
        let log = RekorLog::new();
        let key = log.key("k");
        assert_eq!(key.log_id.len(), 64);
    }
}
