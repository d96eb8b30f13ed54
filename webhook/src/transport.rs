//! The admission server's transport, and every limit it puts on clients: TLS over TCP with a
//! cap on open connections, a handshake timeout, header and body read timeouts, and a cap on
//! decisions under way. A flood of slow or idle clients holds at most `max_connections`
//! sockets, each for at most a timeout, and never a decision slot; the apiserver's
//! kept-alive connections go on being served. A review past the decision cap is answered
//! 429 at once (the apiserver then applies the namespace's `failurePolicy`), so a backlog
//! of decisions never outlives the apiserver's timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::server::MAX_BODY_BYTES;
#[cfg(doc)]
use crate::tls::CertStore;

/// The admission port's limits (flags and environment variables of `serve`).
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct Limits {
    /// Milliseconds a client gets to complete the TLS handshake (the apiserver needs a few).
    #[arg(long, env = "ZASTAVA_TLS_HANDSHAKE_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_handshake_timeout_ms: u64,
    /// Milliseconds a client gets to send a request's headers; also how long a kept-alive
    /// connection may sit idle.
    #[arg(long, env = "ZASTAVA_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// Milliseconds a client gets to send a request's body once its headers came.
    #[arg(long, env = "ZASTAVA_BODY_READ_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: u64,
    /// Connections open at once (handshaking, idle or busy); past it new ones wait in the
    /// listen backlog until one closes.
    #[arg(long, env = "ZASTAVA_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Admission decisions under way at once; past it a review is answered 429 at once.
    #[arg(long, env = "ZASTAVA_MAX_CONCURRENT_DECISIONS", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_decisions: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            tls_handshake_timeout_ms: 5_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 5_000,
            max_connections: 512,
            max_concurrent_decisions: 128,
        }
    }
}

/// `zastava_admission_rejected_total{reason}` values.
pub mod reason {
    /// The decision cap was reached: answered 429.
    pub const DECISIONS: &str = "decisions";
    /// The body did not arrive within the body read timeout: answered 408.
    pub const BODY_TIMEOUT: &str = "body_timeout";
    /// The TLS handshake did not complete within its timeout: closed.
    pub const HANDSHAKE_TIMEOUT: &str = "handshake_timeout";
    /// With `--client-ca-file`, the client presented no certificate or one no given CA
    /// signed: the handshake failed.
    pub const CLIENT_CERTIFICATE: &str = "client_certificate";
}

/// What each request on the admission port goes through before its handler.
struct Gate {
    body_timeout: Duration,
    decisions: Semaphore,
    max_decisions: u32,
    metrics: Metrics,
}

/// Reads the whole body within the body timeout (and [`MAX_BODY_BYTES`]), then takes a
/// decision slot for the handler, or answers at once without one.
async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        gate.body_timeout,
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await;
    let bytes: Bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return closing(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("zastava: request body larger than {MAX_BODY_BYTES} bytes\n"),
            );
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "request body unreadable");
            return closing(
                StatusCode::BAD_REQUEST,
                "zastava: request body unreadable\n".into(),
            );
        }
        Err(_) => {
            gate.metrics
                .admission_rejected
                .with_label_values(&[reason::BODY_TIMEOUT])
                .inc();
            return closing(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "zastava: request body not received within {:?}\n",
                    gate.body_timeout
                ),
            );
        }
    };
    let Ok(_permit) = gate.decisions.try_acquire() else {
        gate.metrics
            .admission_rejected
            .with_label_values(&[reason::DECISIONS])
            .inc();
        tracing::warn!(
            limit = gate.max_decisions,
            "decision cap reached; answering 429"
        );
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "zastava: {} admission decisions are under way, the most this replica takes at \
                 once; retry\n",
                gate.max_decisions
            ),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// An error answer after which the connection is closed (its request may be half read).
fn closing(status: StatusCode, text: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CONNECTION, "close"),
        ],
        text,
    )
        .into_response()
}

/// Serves `router` over TLS (`tls`: [`CertStore::server_config`]) within `limits` until
/// `stop` turns true, then lets open connections finish their requests (up to `drain`).
pub async fn serve_tls(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    router: Router,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
    limits: Limits,
    metrics: Metrics,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let handshake_timeout = Duration::from_millis(limits.tls_handshake_timeout_ms);
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let router = router.layer(middleware::from_fn_with_state(
        Arc::new(Gate {
            body_timeout: Duration::from_millis(limits.body_read_timeout_ms),
            decisions: Semaphore::new(limits.max_concurrent_decisions as usize),
            max_decisions: limits.max_concurrent_decisions,
            metrics: metrics.clone(),
        }),
        gate,
    ));
    let connections = Arc::new(Semaphore::new(limits.max_connections as usize));
    loop {
        // A slot first: at the cap, new connections wait in the kernel's backlog (holding
        // no descriptor of this process) until a connection closes.
        let slot = tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            slot = connections.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            // The guard `wait_for` returns is not Send; drop it inside.
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let metrics = metrics.clone();
        metrics.connections.inc();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    metrics.handshakes.inc();
                    Some(tls)
                }
                Ok(Err(e)) => {
                    let tls_error = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
                    if let Some(
                        rustls::Error::NoCertificatesPresented
                        | rustls::Error::InvalidCertificate(_),
                    ) = tls_error
                    {
                        metrics
                            .admission_rejected
                            .with_label_values(&[reason::CLIENT_CERTIFICATE])
                            .inc();
                        tracing::info!(%peer, error = %e, "client certificate refused");
                    } else {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    None
                }
                Err(_) => {
                    metrics
                        .admission_rejected
                        .with_label_values(&[reason::HANDSHAKE_TIMEOUT])
                        .inc();
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            };
            if let Some(tls) = tls {
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(connection).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            metrics.connections.dec();
        });
    }
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {drain:?}; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: Limits,
    }

    #[test]
    fn the_flags_default_to_the_documented_limits_and_refuse_zero() {
        let flags = Flags::try_parse_from(["serve"]).unwrap();
        assert_eq!(flags.limits, Limits::default());
        let flags = Flags::try_parse_from(["serve", "--max-connections=8"]).unwrap();
        assert_eq!(flags.limits.max_connections, 8);
        for zero in [
            "--max-connections=0",
            "--max-concurrent-decisions=0",
            "--tls-handshake-timeout-ms=0",
            "--header-read-timeout-ms=0",
            "--body-read-timeout-ms=0",
        ] {
            assert!(Flags::try_parse_from(["serve", zero]).is_err(), "{zero}");
        }
    }
}
