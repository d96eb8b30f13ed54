//! The decision record (issue 13): the JSON line the admission server writes for each decision
//! says which fail mode it applied and how long the backend took, read here for each path
//! (allow, deny, fail-open, fail-closed) with a real policy backend on 127.0.0.1. The same
//! lines on the real cluster and registry, with owners of templated pods and cache statuses,
//! are read by tests/e2e/tests/webhook.rs and webhook_outage.rs.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use zastava_webhook::backend::POLICY_PATH;
use zastava_webhook::decision_log::{DecisionLog, LineSink};
use zastava_webhook::server::App;

use common::*;

/// Pinned: backends are asked about digests, and a tag would need ghcr.io to resolve it.
const IMAGE: &str =
    "ghcr.io/acme/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// What the backend takes to answer.
const BACKEND_DELAY: Duration = Duration::from_millis(60);

/// Keeps every line written.
#[derive(Default)]
struct Lines(Mutex<Vec<Vec<u8>>>);

impl LineSink for Lines {
    fn write_line(&self, line: &[u8]) {
        self.0.lock().unwrap().push(line.to_vec());
    }
}

impl Lines {
    /// The last line, as JSON.
    fn last(&self) -> Value {
        let lines = self.0.lock().unwrap();
        let line = lines.last().expect("a decision line");
        serde_json::from_slice(line).expect("one JSON object per line")
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A backend answering `verdict` for [`IMAGE`] after [`BACKEND_DELAY`], or 503 for `None`.
async fn backend(verdict: Option<&'static str>) -> String {
    let router = Router::new().route(
        POLICY_PATH,
        post(move || async move {
            tokio::time::sleep(BACKEND_DELAY).await;
            match verdict {
                Some(verdict) => json_response(json!({"ttlSeconds": 60, "results":
                    {IMAGE: {"policyVerdict": verdict, "reasons": [format!("backend: {verdict}")]}}})),
                None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }),
    );
    format!("http://{}", listen(router).await)
}

/// An app whose policy asks the backend at `url` (required; namespace `lenient` fails open),
/// with its decision lines kept.
fn app_logging(url: &str) -> (Arc<App>, Arc<Lines>) {
    let mut app = app(
        &["--decision-deadline-ms", "3000"],
        json!({"failOpenNamespaces": ["lenient"],
               "verify": {"backend": {"url": url, "required": true, "timeoutSeconds": 2}}}),
    );
    let lines = Arc::new(Lines::default());
    Arc::get_mut(&mut app)
        .expect("no other reference yet")
        .decision_log = DecisionLog::Json(lines.clone());
    (app, lines)
}

fn latency_ms(line: &Value) -> f64 {
    line["backend_latency_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no backend_latency_ms in {line}"))
}

#[tokio::test]
async fn allowed_and_denied_lines_say_the_backend_latency_and_no_fail_mode() {
    let (app, lines) = app_logging(&backend(Some("pass")).await);
    let (allowed, ..) = decide(&app, "team", &[IMAGE]).await;
    assert!(allowed);
    let line = lines.last();
    assert_eq!(line["decision"]["decision"], "Allow");
    assert_eq!(line["fail_mode"], "none");
    assert_eq!((&line["kind"], &line["name"]), (&json!("Pod"), &json!("p")));
    let latency = latency_ms(&line);
    assert!(
        latency >= BACKEND_DELAY.as_millis() as f64 && latency < 2000.0,
        "{line}"
    );
    // No policy needs the registry: the image was not looked up there.
    assert_eq!(
        line["cache"],
        json!([{"image": IMAGE, "status": "skipped"}])
    );

    // The verdict is cached now: the backend is not called, and the line has no latency.
    decide(&app, "team", &[IMAGE]).await;
    assert_eq!(lines.count(), 2);
    let line = lines.last();
    assert!(line.get("backend_latency_ms").is_none(), "{line}");

    let (app, lines) = app_logging(&backend(Some("fail")).await);
    let (allowed, message, ..) = decide(&app, "team", &[IMAGE]).await;
    assert!(!allowed, "{message}");
    let line = lines.last();
    assert_eq!(line["decision"]["decision"], "Deny");
    assert_eq!(line["fail_mode"], "none", "a verdict, not a failure");
    assert!(latency_ms(&line) >= BACKEND_DELAY.as_millis() as f64);
}

#[tokio::test]
async fn a_backend_that_fails_is_recorded_as_fail_open_or_fail_closed() {
    let (app, lines) = app_logging(&backend(None).await);

    let (allowed, ..) = decide(&app, "team", &[IMAGE]).await;
    assert!(!allowed);
    let line = lines.last();
    assert_eq!(line["decision"]["decision"], "Deny");
    assert_eq!(line["fail_mode"], "failClosed");
    assert_eq!(line["namespace"], "team");
    // Three attempts with backoff between them: at least the three delays.
    assert!(latency_ms(&line) >= 3.0 * BACKEND_DELAY.as_millis() as f64);

    let (allowed, _, _, annotations) = decide(&app, "lenient", &[IMAGE]).await;
    assert!(allowed);
    assert_eq!(annotations["zastava.stellaops.io/fail-open"], "true");
    let line = lines.last();
    assert_eq!(line["decision"]["decision"], "Allow");
    assert_eq!(line["fail_mode"], "failOpen");
    assert_eq!(line["namespace"], "lenient");
    // Failures are never cached: the backend was called again.
    assert!(latency_ms(&line) >= BACKEND_DELAY.as_millis() as f64);
}

#[tokio::test]
async fn a_pod_of_a_replica_set_is_recorded_with_its_owner() {
    // As a review can carry it: no name yet (the apiserver generates it before validating
    // webhooks; tests/e2e/tests/webhook.rs reads the line of a real one).
    let (app, lines) = app_logging(&backend(Some("pass")).await);
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "operation": "CREATE", "namespace": "team",
            "object": {"kind": "Pod", "metadata": {"generateName": "web-5d8f-",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-5d8f", "uid": "x", "controller": true}]},
                "spec": {"containers": [{"name": "app", "image": IMAGE}]}}}});
    let (status, body) = app.handle(review.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let line = lines.last();
    assert!(line.get("name").is_none(), "{line}");
    assert_eq!(
        line["owner"],
        json!({"kind": "ReplicaSet", "name": "web-5d8f"})
    );
}
