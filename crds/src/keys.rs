//! cosign public keys: what a policy's PEM must hold to be usable.

use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The key algorithms cosign signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Rsa,
    Ed25519,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not PEM: {0}")]
    NotPem(String),
    #[error("expected exactly one PEM block, found {0}")]
    BlockCount(usize),
    #[error(
        "PEM block is `{0}`, expected `PUBLIC KEY` (the cosign.pub file, not the private key)"
    )]
    WrongLabel(String),
    #[error("PUBLIC KEY block is not a DER SubjectPublicKeyInfo: {0}")]
    NotSpki(String),
    #[error("unsupported key algorithm {0} (cosign keys are ECDSA P-256/P-384, RSA or Ed25519)")]
    Unsupported(String),
}

/// Parses a PEM-encoded public key as cosign writes it and names its algorithm.
pub fn parse_public_key(pem_text: &str) -> Result<KeyAlgorithm, KeyError> {
    canonical_public_key(pem_text).map(|(algorithm, _)| algorithm)
}

/// Parses a PEM-encoded public key and encodes it afresh: one `PUBLIC KEY` block of the
/// parsed DER and nothing else, so no other text of where it came from (a Secret's value may
/// hold anything) travels with it.
pub fn canonical_public_key(pem_text: &str) -> Result<(KeyAlgorithm, String), KeyError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| KeyError::NotPem(e.to_string()))?;
    let block = match blocks.as_slice() {
        [one] => one,
        // `parse_many` silently skips non-PEM text, so no block at all means garbage.
        [] => {
            return Err(KeyError::NotPem(
                "no `-----BEGIN ...-----` block".to_string(),
            ))
        }
        many => return Err(KeyError::BlockCount(many.len())),
    };
    if block.tag() != "PUBLIC KEY" {
        return Err(KeyError::WrongLabel(block.tag().to_string()));
    }
    let spki = SubjectPublicKeyInfoRef::try_from(block.contents())
        .map_err(|e| KeyError::NotSpki(e.to_string()))?;
    let algorithm = match spki.algorithm.oid {
        EC_PUBLIC_KEY => match spki.algorithm.parameters_oid() {
            Ok(P256) => Ok(KeyAlgorithm::EcdsaP256),
            Ok(P384) => Ok(KeyAlgorithm::EcdsaP384),
            Ok(curve) => Err(KeyError::Unsupported(format!("ECDSA on curve {curve}"))),
            Err(e) => Err(KeyError::NotSpki(format!(
                "EC key without a named curve: {e}"
            ))),
        },
        RSA => Ok(KeyAlgorithm::Rsa),
        ED25519 => Ok(KeyAlgorithm::Ed25519),
        other => Err(KeyError::Unsupported(other.to_string())),
    }?;
    let canonical = pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", block.contents()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok((algorithm, canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ECDSA P-256 public key, the kind `cosign generate-key-pair` writes.
    const COSIGN_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdfx0Gr7yAA7tY07E/1zlkDuAm+jk
fOiGRu7TTLAPU9l8RVZbryn7JNloxNT3HktJoGaW/X3rsKYfric26JUhDQ==
-----END PUBLIC KEY-----
";

    #[test]
    fn cosign_public_key_parses_as_p256() {
        assert_eq!(parse_public_key(COSIGN_PUB), Ok(KeyAlgorithm::EcdsaP256));
    }

    #[test]
    fn the_canonical_form_is_the_key_block_alone() {
        let wrapped = format!(
            "comment: not a key\r\n{}\ntrailing text\n",
            COSIGN_PUB.replace('\n', "\r\n")
        );
        let (algorithm, canonical) = canonical_public_key(&wrapped).unwrap();
        assert_eq!(algorithm, KeyAlgorithm::EcdsaP256);
        assert_eq!(canonical, COSIGN_PUB);
    }

    #[test]
    fn garbage_is_not_pem() {
        assert!(matches!(
            parse_public_key("hello, I am not a key"),
            Err(KeyError::NotPem(_))
        ));
    }

    #[test]
    fn truncated_base64_is_rejected() {
        let broken =
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYI!!!\n-----END PUBLIC KEY-----\n";
        assert!(matches!(parse_public_key(broken), Err(KeyError::NotPem(_))));
    }

    #[test]
    fn valid_base64_that_is_not_spki_is_rejected() {
        let not_der = "-----BEGIN PUBLIC KEY-----\naGVsbG8gd29ybGQ=\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            parse_public_key(not_der),
            Err(KeyError::NotSpki(_))
        ));
    }

    #[test]
    fn private_key_label_is_named() {
        let private = COSIGN_PUB.replace("PUBLIC KEY", "ENCRYPTED SIGSTORE PRIVATE KEY");
        assert_eq!(
            parse_public_key(&private),
            Err(KeyError::WrongLabel(
                "ENCRYPTED SIGSTORE PRIVATE KEY".to_string()
            ))
        );
    }

    #[test]
    fn two_keys_in_one_field_are_rejected() {
        let two = format!("{COSIGN_PUB}{COSIGN_PUB}");
        assert_eq!(parse_public_key(&two), Err(KeyError::BlockCount(2)));
    }
}
