use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    #[error("probe server: {0}")]
    Probes(std::io::Error),
    #[error("webhook certificate: {0}")]
    Cert(#[from] CertError),
}

/// Why certificate material could not be used or made. Every variant is a value the TLS
/// controller turns into a re-issue, an Event and a metric: bad input never panics.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CertError {
    #[error("no PEM {0} block")]
    NoPem(&'static str),
    #[error("malformed PEM: {0}")]
    Pem(String),
    #[error("malformed X.509 certificate: {0}")]
    X509(String),
    #[error("malformed private key: {0}")]
    Key(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("the certificate is not a CA certificate")]
    NotCa,
    #[error("malformed certificate signing request: {0}")]
    Csr(String),
    #[error("the CSR was not made with the key the operator generated for it")]
    CsrKeyMismatch,
    #[error("the CSR asks for a CA certificate")]
    CsrAsksForCa,
    #[error("the CSR asks for the names [{asked}], expected [{expected}]")]
    UnexpectedSans { asked: String, expected: String },
    #[error("cannot make a certificate: {0}")]
    Generate(String),
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError::Generate(e.to_string())
    }
}
