//! The serving certificate, swapped in place when the TLS Secret changes: handshakes after the
//! swap get the new certificate, connections already open keep theirs, so a rotation fails no
//! request in flight.

use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::cert_health::{assess, CertHealth, Validity};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsError {
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.crt is not PEM: {0}")]
    BadCertificate(String),
    #[error("tls.key holds no PEM private key")]
    NoKey,
    #[error("tls.key is not a usable private key: {0}")]
    BadKey(String),
    #[error("tls.key does not belong to the certificate in tls.crt")]
    Mismatch,
    #[error("Secret lacks {0}")]
    MissingEntry(&'static str),
}

/// The certificate chain and key from PEM, checked to belong together.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    // Its validity is what liveness is judged by (crate::cert_health).
    Validity::of_der(&chain[0]).map_err(TlsError::BadCertificate)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| TlsError::BadKey(e.to_string()))?
        .ok_or(TlsError::NoKey)?;
    let signing_key = any_supported_type(&key).map_err(|e| TlsError::BadKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch),
        // The key type cannot say (no SPKI): trust the pairing, the handshake will tell.
        Err(_) => Ok(certified),
    }
}

/// Holds the current certificate; rustls asks it on every handshake.
#[derive(Debug, Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// The validity of `current`'s certificate, read once when it was set.
    served: Mutex<Option<Validity>>,
    /// The validity of the usable certificate the TLS Secret held when last read directly
    /// (not through the watch); `None` before the first read or while it holds none.
    in_secret: Mutex<Option<Validity>>,
}

impl CertStore {
    pub fn set(&self, key: CertifiedKey) {
        // `certified_key` has read it already; a key made otherwise without a readable
        // certificate is served, and judged as no certificate.
        let validity = key.cert.first().and_then(|c| Validity::of_der(c).ok());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(key));
        *self.served.lock().unwrap_or_else(|e| e.into_inner()) = validity;
    }

    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The validity of the certificate served now.
    pub fn served(&self) -> Option<Validity> {
        *self.served.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a direct read of the TLS Secret found: its usable certificate's validity.
    pub fn set_in_secret(&self, validity: Option<Validity>) {
        *self.in_secret.lock().unwrap_or_else(|e| e.into_inner()) = validity;
    }

    /// The state of the served certificate at `now` (Unix seconds).
    pub fn health(&self, now: i64) -> CertHealth {
        let in_secret = *self.in_secret.lock().unwrap_or_else(|e| e.into_inner());
        assess(now, self.served(), in_secret)
    }

    /// A TLS 1.2 + 1.3 server config whose certificate comes from this store.
    /// The server's TLS configuration; with `clients`, a client must present a certificate
    /// that chains to one of them or the handshake fails.
    pub fn server_config(self: &Arc<Self>, clients: Option<&ClientRoots>) -> ServerConfig {
        let builder =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .expect("ring supports TLS 1.2 and 1.3");
        let builder = match clients {
            Some(roots) => builder.with_client_cert_verifier(roots.verifier.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        // HTTP/1.1 only. The apiserver's webhook client asks for nothing else (it pins
        // `http/1.1` so concurrent reviews spread over the Service's replicas, kubernetes
        // issue 75791); offering h2 as well was tried and `make bench-admission` measured no
        // change at all, so HTTP/2 would only be code to secure that no caller uses.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

/// The CAs whose client certificates may call the webhook: the apiserver's, given to it in
/// its admission configuration's kubeconfig. Without them anyone who reaches the port can send
/// a review, naming any namespace and its pull Secrets.
#[derive(Clone, Debug)]
pub struct ClientRoots {
    verifier: Arc<dyn ClientCertVerifier>,
    /// How many CA certificates the bundle held.
    pub count: usize,
}

impl ClientRoots {
    pub fn from_pem(bundle: &[u8]) -> Result<Self, ClientCaError> {
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &bundle[..]) {
            let cert = cert.map_err(|e| ClientCaError::NotPem(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ClientCaError::BadCertificate(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ClientCaError::Empty);
        }
        let count = roots.len();
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| ClientCaError::BadCertificate(e.to_string()))?;
        Ok(Self { verifier, count })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientCaError {
    #[error("client CA bundle is not PEM: {0}")]
    NotPem(String),
    #[error("client CA bundle holds no PEM certificate")]
    Empty,
    #[error("client CA certificate unusable: {0}")]
    BadCertificate(String),
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["zastava-webhook.zastava-system.svc".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_loads_and_garbage_is_named() {
        let (cert, key) = pair();
        assert!(certified_key(cert.as_bytes(), key.as_bytes()).is_ok());
        assert_eq!(
            certified_key(b"garbage", key.as_bytes()).unwrap_err(),
            TlsError::NoCertificate
        );
        assert_eq!(
            certified_key(cert.as_bytes(), b"").unwrap_err(),
            TlsError::NoKey
        );
        let (_, other_key) = pair();
        assert_eq!(
            certified_key(cert.as_bytes(), other_key.as_bytes()).unwrap_err(),
            TlsError::Mismatch
        );
    }

    #[test]
    fn the_store_serves_the_latest_certificate() {
        let store = Arc::new(CertStore::default());
        assert!(!store.is_loaded());
        let (cert, key) = pair();
        store.set(certified_key(cert.as_bytes(), key.as_bytes()).unwrap());
        assert!(store.is_loaded());
        let first = store.current.read().unwrap().clone().unwrap();
        let (cert2, key2) = pair();
        store.set(certified_key(cert2.as_bytes(), key2.as_bytes()).unwrap());
        let second = store.current.read().unwrap().clone().unwrap();
        assert_ne!(first.cert[0], second.cert[0]);
        // The validity of what is served, read once at set.
        let served = store.served().unwrap();
        assert!(served.not_before < served.not_after);
        assert_eq!(
            store.health(served.not_after),
            crate::cert_health::CertHealth::Expired
        );
        // Building a server config from the store works (TLS 1.2 and 1.3 enabled).
        let config = store.server_config(None);
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
