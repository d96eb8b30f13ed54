//! `/metrics`, `/healthz` and `/readyz` on a plain-HTTP port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// A loop that has not finished a round for this long is stuck (a round is bounded by the
/// CRI and API call timeouts, far below this).
const STUCK_AFTER_SECONDS: i64 = 120;

#[derive(Clone)]
pub struct Probes {
    pub metrics: Metrics,
    /// Set while the runtime answers and the Kubernetes caches are synced.
    pub ready: Arc<AtomicBool>,
    /// Unix seconds at the end of the last round of the observation loop.
    pub last_round: Arc<AtomicI64>,
}

impl Probes {
    pub fn new(metrics: Metrics) -> Self {
        Probes {
            metrics,
            ready: Arc::default(),
            last_round: Arc::new(AtomicI64::new(unix_now())),
        }
    }

    pub fn round_done(&self) {
        self.last_round.store(unix_now(), Ordering::Relaxed);
    }
}

fn unix_now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probes)
}

async fn metrics(State(probes): State<Probes>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4")],
        probes.metrics.render(),
    )
}

async fn healthz(State(probes): State<Probes>) -> (StatusCode, &'static str) {
    if unix_now() - probes.last_round.load(Ordering::Relaxed) > STUCK_AFTER_SECONDS {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the observation loop is stuck",
        )
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, &'static str) {
    if probes.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the container runtime or the Kubernetes API does not answer yet",
        )
    }
}

/// Binds `addr` (so a port in use fails the start, not a background task).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|cause| Error::Listen { addr, cause })
}

/// Serves the probes until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    probes: Probes,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(probes))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status(probes: &Probes, path: &str) -> StatusCode {
        router(probes.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn probes_follow_the_loop() {
        let probes = Probes::new(Metrics::new());
        assert_eq!(status(&probes, "/healthz").await, StatusCode::OK);
        assert_eq!(
            status(&probes, "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        probes.ready.store(true, Ordering::Relaxed);
        assert_eq!(status(&probes, "/readyz").await, StatusCode::OK);
        probes
            .last_round
            .store(unix_now() - STUCK_AFTER_SECONDS - 1, Ordering::Relaxed);
        assert_eq!(
            status(&probes, "/healthz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&probes, "/metrics").await, StatusCode::OK);
    }
}
