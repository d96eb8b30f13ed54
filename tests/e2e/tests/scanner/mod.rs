//! A Scanner-like policy backend for the end-to-end tests (`mod scanner;` of a test binary):
//! HTTPS with a CA of its own, a bearer token required, verdicts by repository name.

// Each test binary including it uses a part of it.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use zastava_webhook::backend::POLICY_PATH;

/// The reason of every `fail` verdict.
pub const REASON: &str = "CVE-2026-1234 critical in libexample";

/// What the backend was asked: (Authorization header, images).
pub type Asked = Arc<Mutex<Vec<(String, Value)>>>;

pub struct Backend {
    pub url: String,
    pub ca_pem: String,
    pub asked: Asked,
    /// The token it accepts.
    pub token: Arc<Mutex<String>>,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// A backend on `ip` (127.0.0.1 for a webhook running as a host process, the host's address
/// on the pods' network for one in the cluster) serving over TLS with a certificate of a CA
/// made here: `fail` for repositories whose name contains `denied`, `pass` with a Rekor entry
/// otherwise; 401 without the current token.
pub async fn backend(ip: IpAddr, token: &str) -> Backend {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "e2e scanner CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.der(), &ca_key).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();

    let asked: Asked = Default::default();
    let token = Arc::new(Mutex::new(token.to_string()));
    let (seen, accepted) = (asked.clone(), token.clone());
    let router = Router::new().route(
        POLICY_PATH,
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (seen, accepted) = (seen.clone(), accepted.clone());
            async move {
                let authorization = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                let images = request["images"].clone();
                seen.lock()
                    .unwrap()
                    .push((authorization.clone(), images.clone()));
                if authorization != format!("Bearer {}", accepted.lock().unwrap()) {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                let image = images[0].as_str().unwrap_or_default().to_string();
                let verdict = if image.contains("denied") {
                    json!({"policyVerdict": "fail", "signed": false, "reasons": [REASON]})
                } else {
                    json!({"policyVerdict": "pass", "signed": true, "hasSbom": true,
                           "rekor": {"uuid": "e2".repeat(32)}})
                };
                let answer = json!({"ttlSeconds": 120, "results": {image: verdict}});
                (StatusCode::OK, answer.to_string())
            }
        }),
    );
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(zastava_webhook::transport::serve_tls(
        listener,
        tls,
        router,
        stopped,
        Duration::from_secs(1),
        Default::default(),
        zastava_webhook::metrics::Metrics::new(),
    ));
    Backend {
        url,
        ca_pem: ca.pem(),
        asked,
        token,
        _stop: stop,
    }
}

pub fn token_secret(name: &str, token: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"token": token},
    }))
    .unwrap()
}
