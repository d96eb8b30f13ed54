//! The optional external verdict: Scanner.WebService's runtime policy endpoint
//! (`POST /api/v1/scanner/policy/runtime`, DESIGN.md "Contracts"), with a timeout and retries
//! on transient failures (timeouts, 5xx, 429); no redirect is followed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zastava_crds::posture::Verdict;
use zastava_registry::distribution::read_capped;

use crate::cache::{Lifetime, TtlCache};
use crate::limits::{DEADLINE_REASON, MAX_BACKEND_BODY_BYTES};
use crate::metrics::Metrics;

/// The backend's answers by (backend URL, image); an error names why there is none.
pub type Answers = std::collections::HashMap<(String, String), Result<ImageResult, String>>;

/// Calls backends for the policies that name one, one image per call so each verdict can be
/// cached on its own (the server passes a cache; the `check` CLI does not).
pub struct Backend {
    http: reqwest::Client,
    cache: Option<TtlCache<(String, String), ImageResult>>,
    metrics: Metrics,
}

impl Backend {
    pub fn new(cache: Option<TtlCache<(String, String), ImageResult>>, metrics: Metrics) -> Self {
        Self {
            // Redirects are not followed: the verdict comes from the URL the policy names, never
            // from wherever its answer points the webhook (an internal service, which would
            // also decide the verdict). A redirect fails the call like any other non-2xx answer.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client builds as reqwest::Client::new() does"),
            cache,
            metrics,
        }
    }

    pub fn invalidate_all(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    /// Answers for every `(url, timeout)` and image, and whether a backend was called (`false`
    /// when every answer came from the cache).
    pub async fn answers(
        &self,
        backends: &[(String, Duration)],
        namespace: &str,
        labels: &BTreeMap<String, String>,
        images: &[String],
        deadline: Option<tokio::time::Instant>,
    ) -> (Answers, bool) {
        let called = &AtomicBool::new(false);
        let calls = backends.iter().flat_map(|(url, timeout)| {
            images.iter().map(move |image| async move {
                let load = || async {
                    called.store(true, Ordering::Relaxed);
                    let one = [image.clone()];
                    let request = PolicyRequest {
                        namespace,
                        labels,
                        images: &one,
                    };
                    let mut answer =
                        policy(&self.http, url, *timeout, &request, &self.metrics).await?;
                    answer
                        .results
                        .remove(image)
                        .ok_or_else(|| format!("backend {url} gave no verdict for {image}"))
                };
                let asked = async {
                    match &self.cache {
                        Some(cache) => cache
                            .get_or_load(
                                (url.clone(), image.clone()),
                                |r| Lifetime::negative_if(r.policy_verdict != Verdict::Pass),
                                load,
                            )
                            .await
                            .map(|cached| cached.value)
                            .map_err(|e| e.as_ref().clone()),
                        None => load().await,
                    }
                };
                let result = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, asked)
                        .await
                        .unwrap_or_else(|_| Err(DEADLINE_REASON.to_string())),
                    None => asked.await,
                };
                ((url.clone(), image.clone()), result)
            })
        });
        let answers = futures::future::join_all(calls).await.into_iter().collect();
        (answers, called.load(Ordering::Relaxed))
    }
}

pub const POLICY_PATH: &str = "/api/v1/scanner/policy/runtime";
/// Attempts per call: the first and two retries.
const ATTEMPTS: u32 = 3;

#[derive(Serialize, Debug)]
pub struct PolicyRequest<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub images: &'a [String],
}

#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResponse {
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    #[serde(default)]
    pub results: BTreeMap<String, ImageResult>,
}

/// The backend's verdict on one image.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageResult {
    #[serde(default)]
    pub signed: Option<bool>,
    #[serde(default)]
    pub has_sbom: Option<bool>,
    pub policy_verdict: Verdict,
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// Asks the backend at `base_url` about `images`. Errors are the failures that survived the
/// retries, described for a deny message.
pub async fn policy(
    http: &reqwest::Client,
    base_url: &str,
    timeout: Duration,
    request: &PolicyRequest<'_>,
    metrics: &Metrics,
) -> Result<PolicyResponse, String> {
    let url = format!("{}{POLICY_PATH}", base_url.trim_end_matches('/'));
    let deadline = Instant::now() + timeout;
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let started = Instant::now();
        let sent = http
            .post(&url)
            .json(request)
            .timeout(remaining)
            .send()
            .await;
        metrics
            .backend_latency
            .with_label_values(&["policy"])
            .observe(started.elapsed().as_secs_f64() * 1000.0);
        let transient = match sent {
            Ok(response) if response.status().is_success() => {
                let body = read_capped(response, MAX_BACKEND_BODY_BYTES, "backend answer").await;
                let answer = body.map_err(|e| e.to_string()).and_then(|body| {
                    serde_json::from_slice::<PolicyResponse>(&body).map_err(|e| e.to_string())
                });
                return answer.map_err(|detail| {
                    metrics.backend_failures.inc();
                    // The detail may quote the answer: logged, never shown.
                    tracing::warn!(%url, %detail, "unusable backend answer");
                    format!("backend {url}: unusable answer")
                });
            }
            Ok(response) => {
                let status = response.status();
                last_error = format!("backend {url}: HTTP {status}");
                status.is_server_error() || status.as_u16() == 429
            }
            Err(e) => {
                last_error = format!("backend {url}: {e}");
                true
            }
        };
        metrics.backend_failures.inc();
        if !transient {
            break;
        }
        if attempt + 1 < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(100 * 3u64.pow(attempt))).await;
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::Router;

    /// A backend on loopback that fails `failures` times with `status`, then answers.
    async fn backend(failures: u32, status: StatusCode) -> (String, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let app = Router::new().route(
            POLICY_PATH,
            post(move |body: axum::body::Bytes| {
                let counter = counter.clone();
                async move {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    if n < failures {
                        return (status, String::new());
                    }
                    let image = request["images"][0].as_str().unwrap().to_string();
                    let answer = serde_json::json!({"ttlSeconds": 60, "results": {
                        image: {"signed": true, "hasSbom": false, "policyVerdict": "warn",
                                "reasons": ["CVE-2024-0001 high"], "rekor": {"uuid": "x"}}}});
                    (StatusCode::OK, answer.to_string())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, calls)
    }

    fn request<'a>(
        labels: &'a BTreeMap<String, String>,
        images: &'a [String],
    ) -> PolicyRequest<'a> {
        PolicyRequest {
            namespace: "team",
            labels,
            images,
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_the_answer_parsed() {
        let (url, calls) = backend(2, StatusCode::SERVICE_UNAVAILABLE).await;
        let metrics = Metrics::new();
        let images = vec!["reg/app:1".to_string()];
        let labels = BTreeMap::new();
        let answer = policy(
            &reqwest::Client::new(),
            &url,
            Duration::from_secs(5),
            &request(&labels, &images),
            &metrics,
        )
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.backend_failures.get(), 2);
        let result = &answer.results["reg/app:1"];
        assert_eq!(result.policy_verdict, Verdict::Warn);
        assert_eq!(result.reasons, ["CVE-2024-0001 high"]);
        assert_eq!(answer.ttl_seconds, Some(60));
    }

    #[tokio::test]
    async fn client_errors_are_not_retried_and_outages_are_named() {
        let (url, calls) = backend(10, StatusCode::BAD_REQUEST).await;
        let metrics = Metrics::new();
        let images = vec!["reg/app:1".to_string()];
        let labels = BTreeMap::new();
        let err = policy(
            &reqwest::Client::new(),
            &url,
            Duration::from_secs(5),
            &request(&labels, &images),
            &metrics,
        )
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(err.ends_with("HTTP 400 Bad Request"), "{err}");

        let err = policy(
            &reqwest::Client::new(),
            "http://127.0.0.1:9",
            Duration::from_millis(800),
            &request(&labels, &images),
            &metrics,
        )
        .await
        .unwrap_err();
        assert!(
            err.starts_with("backend http://127.0.0.1:9/api/v1/scanner/policy/runtime"),
            "{err}"
        );
    }
}
