//! `/metrics`, `/healthz` and `/readyz` on a plain-HTTP port: the one probe server of the
//! operator, the webhook and the observer. Each binary says what makes it live and ready by
//! handing in checks; the server itself knows nothing of them.
//!
//! A probe answers `200 ok` when all its checks pass, else `503` with the first failing
//! check's reason, so `kubectl describe pod` shows why a probe fails.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One condition of a probe: `Err(reason)` while it does not hold.
pub type Check = Arc<dyn Fn() -> Result<(), &'static str> + Send + Sync>;

/// What the probe server answers with: the metrics text and the checks of each probe.
#[derive(Clone)]
pub struct Probes {
    metrics: Arc<dyn Fn() -> String + Send + Sync>,
    liveness: Vec<Check>,
    readiness: Vec<Check>,
}

impl Probes {
    /// Probes that are live and ready until checks say otherwise; `/metrics` serves what
    /// `metrics` renders (the Prometheus text format).
    pub fn new(metrics: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Probes {
            metrics: Arc::new(metrics),
            liveness: Vec::new(),
            readiness: Vec::new(),
        }
    }

    /// `/healthz` fails (and the kubelet restarts the container) while `check` fails.
    pub fn live_when(
        mut self,
        check: impl Fn() -> Result<(), &'static str> + Send + Sync + 'static,
    ) -> Self {
        self.liveness.push(Arc::new(check));
        self
    }

    /// `/readyz` fails (and the Service sends no traffic here) while `check` fails.
    pub fn ready_when(
        mut self,
        check: impl Fn() -> Result<(), &'static str> + Send + Sync + 'static,
    ) -> Self {
        self.readiness.push(Arc::new(check));
        self
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self)
    }
}

async fn metrics(
    State(probes): State<Probes>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        (probes.metrics)(),
    )
}

async fn healthz(State(probes): State<Probes>) -> (StatusCode, String) {
    answer(&probes.liveness)
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, String) {
    answer(&probes.readiness)
}

fn answer(checks: &[Check]) -> (StatusCode, String) {
    match checks.iter().try_for_each(|check| check()) {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

/// Binds `addr`, so that a port in use fails the start rather than a background task.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the probes until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    probes: Probes,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    axum::serve(listener, probes.router())
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

/// A switch a binary turns on once it can do its work (and off when it no longer can).
#[derive(Clone, Default)]
pub struct Flag(Arc<AtomicBool>);

impl Flag {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The pulse of a loop that must come round: stuck once no beat came for `stuck_after`.
/// Starts beating at creation, so a loop has `stuck_after` for its first round.
#[derive(Clone)]
pub struct Heartbeat {
    last_beat: Arc<AtomicI64>,
    stuck_after: Duration,
}

impl Heartbeat {
    pub fn new(stuck_after: Duration) -> Self {
        Heartbeat {
            last_beat: Arc::new(AtomicI64::new(unix_now())),
            stuck_after,
        }
    }

    pub fn beat(&self) {
        self.last_beat.store(unix_now(), Ordering::Relaxed);
    }

    pub fn is_stuck(&self) -> bool {
        let silent = unix_now().saturating_sub(self.last_beat.load(Ordering::Relaxed));
        silent > i64::try_from(self.stuck_after.as_secs()).unwrap_or(i64::MAX)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(probes: &Probes, path: &str) -> (StatusCode, String) {
        let response = probes
            .clone()
            .router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn each_probe_fails_with_the_reason_of_its_first_failing_check() {
        let started = Flag::default();
        let closing = Flag::default();
        let probes = Probes::new(|| "zastava_up 1\n".to_owned())
            .ready_when({
                let started = started.clone();
                move || started.is_set().then_some(()).ok_or("not started yet")
            })
            .ready_when({
                let closing = closing.clone();
                move || (!closing.is_set()).then_some(()).ok_or("shutting down")
            });

        assert_eq!(
            get(&probes, "/healthz").await,
            (StatusCode::OK, "ok\n".into())
        );
        assert_eq!(
            get(&probes, "/readyz").await,
            (StatusCode::SERVICE_UNAVAILABLE, "not started yet\n".into())
        );
        started.set(true);
        assert_eq!(
            get(&probes, "/readyz").await,
            (StatusCode::OK, "ok\n".into())
        );
        closing.set(true);
        assert_eq!(
            get(&probes, "/readyz").await,
            (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
        );
        // Liveness has checks of its own: readiness failing does not restart anything.
        assert_eq!(get(&probes, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&probes, "/metrics").await,
            (StatusCode::OK, "zastava_up 1\n".into())
        );
        assert_eq!(get(&probes, "/validate").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_loop_that_stops_beating_fails_liveness() {
        let heartbeat = Heartbeat::new(Duration::from_secs(120));
        let probes = Probes::new(String::new).live_when({
            let heartbeat = heartbeat.clone();
            move || {
                (!heartbeat.is_stuck())
                    .then_some(())
                    .ok_or("the loop is stuck")
            }
        });
        assert_eq!(get(&probes, "/healthz").await.0, StatusCode::OK);
        heartbeat
            .last_beat
            .store(unix_now() - 121, Ordering::Relaxed);
        assert!(heartbeat.is_stuck());
        assert_eq!(
            get(&probes, "/healthz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the loop is stuck\n".into()
            )
        );
        heartbeat.beat();
        assert_eq!(get(&probes, "/healthz").await.0, StatusCode::OK);
    }
}
