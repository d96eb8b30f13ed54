//! Backend credentials (`spec.verify.backend.auth`, `caBundle`): what a Secret's value or a
//! policy's PEM must hold to be usable. The operator reports these errors in the policy's
//! status; the webhook refuses to call a backend whose credentials fail them. No error quotes
//! the value it rejects: a Secret's bytes never reach a status, an Event or a log.

/// A bearer token longer than this is refused (an HTTP header of that size is a mistake).
pub const MAX_TOKEN_BYTES: usize = 8192;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("the token is empty")]
    EmptyToken,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TokenTooLong,
    #[error("the token holds a character that cannot be sent in an HTTP header (byte {0})")]
    TokenCharacter(usize),
    #[error("not PEM: {0}")]
    NotPem(String),
    #[error("no `CERTIFICATE` PEM block")]
    NoCertificate,
    #[error("PEM block `{0}` where only `CERTIFICATE` blocks belong")]
    UnexpectedBlock(String),
    #[error("expected exactly one private key PEM block, found {0}")]
    KeyCount(usize),
}

/// The token a Secret's value holds: its bytes without surrounding whitespace (a file written
/// with `echo` ends in a newline), printable ASCII without spaces as RFC 6750 allows.
pub fn bearer_token(value: &[u8]) -> Result<&str, CredentialError> {
    let token = value.trim_ascii();
    if token.is_empty() {
        return Err(CredentialError::EmptyToken);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(CredentialError::TokenTooLong);
    }
    if let Some(at) = token.iter().position(|b| !b.is_ascii_graphic()) {
        return Err(CredentialError::TokenCharacter(at));
    }
    // Printable ASCII is UTF-8.
    std::str::from_utf8(token).map_err(|_| CredentialError::TokenCharacter(0))
}

/// Checks a bundle of CA certificates: one or more `CERTIFICATE` blocks and nothing else.
/// Returns how many there are.
pub fn certificate_bundle(pem_text: &[u8]) -> Result<usize, CredentialError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| CredentialError::NotPem(e.to_string()))?;
    if let Some(other) = blocks.iter().find(|b| b.tag() != "CERTIFICATE") {
        return Err(CredentialError::UnexpectedBlock(other.tag().to_string()));
    }
    match blocks.len() {
        0 => Err(CredentialError::NoCertificate),
        n => Ok(n),
    }
}

/// Checks a `kubernetes.io/tls` pair: `tls.crt` holds the certificate (and its chain) and
/// `tls.key` exactly one private key.
pub fn client_certificate(crt: &[u8], key: &[u8]) -> Result<(), CredentialError> {
    certificate_bundle(crt)?;
    let keys = pem::parse_many(key).map_err(|e| CredentialError::NotPem(e.to_string()))?;
    let private = keys
        .iter()
        .filter(|b| b.tag().ends_with("PRIVATE KEY"))
        .count();
    if private != 1 || keys.len() != 1 {
        return Err(CredentialError::KeyCount(private));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

    #[test]
    fn tokens_lose_surrounding_whitespace_and_refuse_what_a_header_cannot_carry() {
        assert_eq!(bearer_token(b"  abc.DEF-1_~+/=\n"), Ok("abc.DEF-1_~+/="));
        assert_eq!(bearer_token(b"\n \t"), Err(CredentialError::EmptyToken));
        assert_eq!(
            bearer_token(b"ab c"),
            Err(CredentialError::TokenCharacter(2))
        );
        assert_eq!(
            bearer_token(b"ab\r\nX-Injected: 1"),
            Err(CredentialError::TokenCharacter(2))
        );
        assert_eq!(
            bearer_token("töken".as_bytes()),
            Err(CredentialError::TokenCharacter(1))
        );
        assert_eq!(
            bearer_token(&vec![b'a'; MAX_TOKEN_BYTES + 1]),
            Err(CredentialError::TokenTooLong)
        );
        // The message names the position, never the token.
        let message = bearer_token(b"secret value").unwrap_err().to_string();
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn bundles_hold_certificates_only() {
        assert_eq!(
            certificate_bundle(format!("{CERT}{CERT}").as_bytes()),
            Ok(2)
        );
        assert_eq!(
            certificate_bundle(b"garbage"),
            Err(CredentialError::NoCertificate)
        );
        assert_eq!(
            certificate_bundle(format!("{CERT}{KEY}").as_bytes()),
            Err(CredentialError::UnexpectedBlock("PRIVATE KEY".into()))
        );
        assert!(matches!(
            certificate_bundle(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"),
            Err(CredentialError::NotPem(_))
        ));
    }

    #[test]
    fn a_client_certificate_has_one_key() {
        assert_eq!(client_certificate(CERT.as_bytes(), KEY.as_bytes()), Ok(()));
        assert_eq!(
            client_certificate(CERT.as_bytes(), format!("{KEY}{KEY}").as_bytes()),
            Err(CredentialError::KeyCount(2))
        );
        assert_eq!(
            client_certificate(CERT.as_bytes(), CERT.as_bytes()),
            Err(CredentialError::KeyCount(0))
        );
        assert_eq!(
            client_certificate(b"", KEY.as_bytes()),
            Err(CredentialError::NoCertificate)
        );
    }
}
