//! Runtime events to a backend while it is down: the observer (restarted with a backend URL)
//! keeps the events of a container's start and drift in its disk buffer, is killed with
//! SIGKILL, started again, and once the backend is up every one of those events arrives —
//! gzip-compressed NDJSON batches on `POST /api/v1/scanner/runtime/events`. (A test binary of
//! its own: it restarts the observer the other tests use.)

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use zastava_e2e::observer::{
    deploy, observer_ctl, run_dropped_program, running_pod, RestoreObserver,
};
use zastava_e2e::{
    client, create_namespace, delete_namespace, env, http_get, metric, unique, wait_for,
};

/// The events of `namespace` the observer logged (the log has every runtime event, one
/// canonical JSON document per line, as it was queued for the backend).
fn logged_events(namespace: &str) -> Vec<Value> {
    let log = std::fs::read_to_string(env("ZASTAVA_OBSERVER_LOG")).unwrap();
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| serde_json::from_str::<Value>(line["runtime_event"].as_str()?).ok())
        .filter(|event| event["workload"]["namespace"] == namespace)
        .collect()
}

#[derive(Default)]
struct Received {
    events: Vec<Value>,
    bad_requests: Vec<String>,
}

async fn receive(received: Arc<Mutex<Received>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let mut text = String::new();
    let decoded = flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text);
    let mut received = received.lock().unwrap();
    if header("content-encoding") != "gzip"
        || header("content-type") != "application/x-ndjson"
        || decoded.is_err()
    {
        received
            .bad_requests
            .push(format!("{headers:?} {decoded:?}"));
        return StatusCode::BAD_REQUEST;
    }
    for line in text.lines() {
        match serde_json::from_str(line) {
            Ok(event) => received.events.push(event),
            Err(e) => received.bad_requests.push(format!("{line}: {e}")),
        }
    }
    StatusCode::ACCEPTED
}

#[tokio::test]
async fn buffered_events_survive_a_sigkill_and_reach_the_backend() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A port nothing listens on yet: the backend is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = format!("http://127.0.0.1:{port}");
    let _restore = RestoreObserver;
    observer_ctl("stop", &[]);
    observer_ctl(
        "start",
        &[("ZASTAVA_OBSERVER_BACKEND_URL", backend.as_str())],
    );

    let client = client().await;
    let ns = unique("e2e-obs-outbox");
    create_namespace(&client, &ns, json!({})).await;
    deploy(&client, &ns, "sleeper", &["sleep", "3600"]).await;
    let pod = running_pod(&client, &ns, "sleeper").await;
    let pod_name = pod.metadata.name.clone().unwrap();
    run_dropped_program(&client, &ns, &pod_name, "deployment-sleeper", "/tmp/sleep").await;
    // The start and the drift are queued, not delivered.
    let url = env("ZASTAVA_OBSERVER_URL");
    let (_, metrics) = http_get(&format!("{url}/metrics")).await.unwrap();
    assert!(
        metric(&metrics, "zastava_observer_buffered_events").is_some_and(|v| v >= 2.0),
        "{metrics}"
    );
    let queued = logged_events(&ns);
    let kinds: BTreeSet<&str> = queued.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(
        kinds.contains("CONTAINER_START") && kinds.contains("DRIFT"),
        "{queued:?}"
    );

    // No goodbye: whatever was queued is only on disk now.
    observer_ctl("kill", &[]);
    let received = Arc::new(Mutex::new(Received::default()));
    let app = Router::new().route(
        "/api/v1/scanner/runtime/events",
        post({
            let received = received.clone();
            move |headers, body| receive(received.clone(), headers, body)
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    observer_ctl(
        "start",
        &[("ZASTAVA_OBSERVER_BACKEND_URL", backend.as_str())],
    );

    let wanted: BTreeSet<String> = queued
        .iter()
        .filter_map(|e| e["eventId"].as_str().map(String::from))
        .collect();
    wait_for(
        "every event queued before the SIGKILL at the backend",
        Duration::from_secs(60),
        || async {
            let received = received.lock().unwrap();
            let got: BTreeSet<String> = received
                .events
                .iter()
                .filter_map(|e| e["eventId"].as_str().map(String::from))
                .collect();
            wanted.is_subset(&got).then_some(())
        },
    )
    .await;
    {
        let received = received.lock().unwrap();
        assert!(
            received.bad_requests.is_empty(),
            "{:?}",
            received.bad_requests
        );
        let drift = received
            .events
            .iter()
            .find(|e| e["kind"] == "DRIFT" && e["workload"]["namespace"] == ns.as_str())
            .unwrap();
        assert_eq!(drift["schemaVersion"], "zastava.runtime.event@v1.0");
        assert_eq!(drift["workload"]["pod"], pod_name.as_str());
    }

    delete_namespace(&client, &ns).await;
}
