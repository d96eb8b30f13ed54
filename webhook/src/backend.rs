//! The optional external verdict: Scanner.WebService's runtime policy endpoint
//! (`POST /api/v1/scanner/policy/runtime`, DESIGN.md "Contracts").
//!
//! - One call per resolved image digest (`registry/repository@sha256:...`), so each verdict is
//!   cached on its own, for the shorter of the policy's TTL and the answer's `ttlSeconds`.
//! - Each backend a policy names gets its own HTTPS client: its CA bundle (the only roots
//!   trusted for it when given), its oldest TLS version, its client certificate; its bearer
//!   token goes with every request. Credentials come from Secrets the caller reads
//!   ([`BackendSecrets`]); a backend whose credentials are missing or unusable is never called
//!   without them: its verdict is unavailable, with the reason.
//! - Three attempts on transient failures (timeouts, 5xx, 429) with backoff, all inside the
//!   decision's deadline; no redirect is followed.
//! - Everything the backend sends is hostile: the body is capped while it streams, reasons
//!   are cut to a few printable lines, a Rekor UUID that is not one is dropped.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use zastava_crds::contracts::RekorEntry;
use zastava_crds::credentials;
use zastava_crds::policy::{BackendVerdict, TlsVersion};
use zastava_crds::posture::Verdict;
use zastava_registry::distribution::read_capped;

use crate::cache::{Lifetime, TtlCache};
use crate::limits::{
    DEADLINE_REASON, MAX_BACKEND_BODY_BYTES, MAX_BACKEND_REASONS, MAX_BACKEND_REASON_CHARS,
};
use crate::metrics::Metrics;

/// The backend's answers by (backend key, image as the pod spec gives it); an error names why
/// there is none.
pub type Answers = HashMap<(String, String), Result<ImageResult, String>>;

/// What the caller read of the Secrets backends name, by Secret name: its data, `None` when
/// the Secret does not exist, or why it could not be read.
pub type BackendSecrets = BTreeMap<String, Result<Option<BTreeMap<String, Vec<u8>>>, String>>;

/// The key of a backend: its URL, and a fingerprint of the settings that shape its connection
/// when there are any (two policies naming one URL with different credentials are two
/// backends).
pub fn backend_key(settings: &BackendVerdict) -> String {
    if settings.ca_bundle.is_none()
        && settings.auth.is_none()
        && settings.min_tls_version == TlsVersion::Tls12
    {
        return settings.url.clone();
    }
    let mut hasher = DefaultHasher::new();
    settings.ca_bundle.hash(&mut hasher);
    (settings.min_tls_version == TlsVersion::Tls13).hash(&mut hasher);
    if let Some(auth) = &settings.auth {
        auth.bearer_token_secret_ref.hash(&mut hasher);
        auth.client_certificate_secret_ref.hash(&mut hasher);
    }
    format!("{}#{:016x}", settings.url, hasher.finish())
}

/// One backend the decisions of a review ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendCall {
    pub key: String,
    pub url: String,
    /// The shortest `timeoutSeconds` of the policies naming it.
    pub timeout: Duration,
}

/// A backend's client, made from its settings and credentials.
struct Connection {
    http: reqwest::Client,
    /// `Bearer <token>`, marked sensitive (never in debug output).
    authorization: Option<HeaderValue>,
    /// Identifies the settings and credential bytes it was made from: a connection is made
    /// again only when they change (a rotated token or certificate).
    material: u64,
}

type CacheKey = (String, String, u64);

/// Calls the backends policies name; the server passes a verdict cache, the `check` CLI none.
pub struct Backend {
    /// By backend key: the connection, or why there is none.
    connections: ArcSwap<HashMap<String, Arc<Result<Connection, String>>>>,
    /// (backend key, resolved image, fingerprint of namespace and labels) → verdict: the
    /// request names the namespace and its labels, so an answer holds only for them.
    cache: Option<TtlCache<CacheKey, ImageResult>>,
    metrics: Metrics,
    /// The problems of the last `configure`, logged when they change.
    problems: std::sync::Mutex<Vec<String>>,
}

impl Backend {
    pub fn new(cache: Option<TtlCache<CacheKey, ImageResult>>, metrics: Metrics) -> Self {
        Self {
            connections: ArcSwap::default(),
            cache,
            metrics,
            problems: Default::default(),
        }
    }

    pub fn invalidate_all(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    /// Makes the connections of `backends` (by key) from `secrets`, keeping each existing one
    /// whose settings and credentials did not change. Returns the problems, as
    /// `backend url: problem`.
    pub fn configure(
        &self,
        backends: &BTreeMap<String, BackendVerdict>,
        secrets: &BackendSecrets,
    ) -> Vec<String> {
        let old = self.connections.load();
        let mut next = HashMap::with_capacity(backends.len());
        let mut problems = Vec::new();
        for (key, settings) in backends {
            let connection = match Material::read(settings, secrets) {
                Err(e) => Arc::new(Err(e)),
                Ok(material) => match old.get(key) {
                    Some(kept) if matches!(kept.as_ref(), Ok(c) if c.material == material.fingerprint) => {
                        kept.clone()
                    }
                    _ => Arc::new(material.connect(settings)),
                },
            };
            if let Err(e) = connection.as_ref() {
                problems.push(format!("backend {}: {e}", settings.url));
            }
            next.insert(key.clone(), connection);
        }
        self.metrics
            .backend_connections_unusable
            .set(problems.len() as i64);
        self.connections.store(Arc::new(next));
        let mut last = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        if *last != problems {
            for problem in &problems {
                tracing::warn!(%problem, "backend not asked until this is fixed");
            }
            last.clone_from(&problems);
        }
        problems
    }

    /// The verdicts of every backend in `calls` on one image: `image` as the pod spec gives it
    /// (the key of the answers), `resolved` its digest reference (what the backend is asked
    /// about) or why it is unknown. Returns the answers and whether a backend was called
    /// (`false` when every answer came from the cache or none could be asked).
    #[allow(clippy::too_many_arguments)]
    pub async fn verdicts(
        &self,
        calls: &[BackendCall],
        namespace: &str,
        labels: &BTreeMap<String, String>,
        scope: u64,
        image: &str,
        resolved: Result<&str, &str>,
        deadline: Option<tokio::time::Instant>,
    ) -> (Vec<((String, String), Result<ImageResult, String>)>, bool) {
        let called = &AtomicBool::new(false);
        let connections = self.connections.load();
        let asks = calls.iter().map(|call| {
            let connection = connections.get(&call.key).cloned();
            async move {
                let result = async {
                    let resolved = resolved.map_err(|why| {
                        format!(
                            "backend {} not asked: the image's digest is unknown ({why})",
                            call.url
                        )
                    })?;
                    let connection = connection
                        .ok_or_else(|| format!("backend {}: no connection made yet", call.url))?;
                    let connection = connection.as_ref().as_ref().map_err(Clone::clone)?;
                    let load = || async {
                        called.store(true, Ordering::Relaxed);
                        let one = [resolved.to_string()];
                        let request = PolicyRequest {
                            namespace,
                            labels,
                            images: &one,
                        };
                        let until = tokio::time::Instant::now() + call.timeout;
                        let answer = policy(
                            connection,
                            &call.url,
                            until,
                            deadline,
                            &request,
                            &self.metrics,
                        )
                        .await?;
                        answer.verdict(resolved).ok_or_else(|| {
                            format!("backend {} gave no verdict for {resolved}", call.url)
                        })
                    };
                    match &self.cache {
                        Some(cache) => cache
                            .get_or_load(
                                (call.key.clone(), resolved.to_string(), scope),
                                |r: &ImageResult| Lifetime {
                                    negative: r.policy_verdict != Verdict::Pass,
                                    until: r
                                        .ttl_seconds
                                        .map(|s| Instant::now() + Duration::from_secs(s.into())),
                                },
                                load,
                            )
                            .await
                            .map(|cached| cached.value)
                            .map_err(|e| e.as_ref().clone()),
                        None => load().await,
                    }
                };
                let result = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, result)
                        .await
                        .unwrap_or_else(|_| Err(DEADLINE_REASON.to_string())),
                    None => result.await,
                };
                ((call.key.clone(), image.to_string()), result)
            }
        });
        let answers = futures::future::join_all(asks).await;
        (answers, called.load(Ordering::Relaxed))
    }
}

/// Identifies a namespace and its labels, for the cache key of a verdict.
pub fn scope(namespace: &str, labels: &BTreeMap<String, String>) -> u64 {
    let mut hasher = DefaultHasher::new();
    namespace.hash(&mut hasher);
    labels.hash(&mut hasher);
    hasher.finish()
}

/// The credentials of one backend, read from the Secrets.
struct Material {
    token: Option<String>,
    /// `tls.crt` then `tls.key`, as reqwest reads an identity.
    identity: Option<Vec<u8>>,
    fingerprint: u64,
}

impl Material {
    fn read(settings: &BackendVerdict, secrets: &BackendSecrets) -> Result<Self, String> {
        let data = |name: &str| -> Result<&BTreeMap<String, Vec<u8>>, String> {
            match secrets.get(name) {
                Some(Ok(Some(data))) => Ok(data),
                Some(Ok(None)) => Err(format!("Secret {name} not found")),
                Some(Err(e)) => Err(format!("Secret {name} could not be read: {e}")),
                None => Err(format!("Secret {name} not read")),
            }
        };
        let mut hasher = DefaultHasher::new();
        backend_key(settings).hash(&mut hasher);
        let auth = settings.auth.as_ref();
        let token = match auth.and_then(|a| a.bearer_token_secret_ref.as_ref()) {
            None => None,
            Some(r) => {
                let value = data(&r.name)?
                    .get(&r.key)
                    .ok_or_else(|| format!("Secret {} has no key {}", r.name, r.key))?;
                let token = credentials::bearer_token(value)
                    .map_err(|e| format!("Secret {} key {}: bearer token: {e}", r.name, r.key))?;
                token.hash(&mut hasher);
                Some(token.to_string())
            }
        };
        let identity = match auth.and_then(|a| a.client_certificate_secret_ref.as_ref()) {
            None => None,
            Some(r) => {
                let data = data(&r.name)?;
                let part = |key: &str| {
                    data.get(key)
                        .ok_or_else(|| format!("Secret {} has no key {key}", r.name))
                };
                let (crt, key) = (part("tls.crt")?, part("tls.key")?);
                credentials::client_certificate(crt, key)
                    .map_err(|e| format!("Secret {}: client certificate: {e}", r.name))?;
                let mut pem = crt.clone();
                pem.push(b'\n');
                pem.extend_from_slice(key);
                pem.hash(&mut hasher);
                Some(pem)
            }
        };
        Ok(Self {
            token,
            identity,
            fingerprint: hasher.finish(),
        })
    }

    fn connect(self, settings: &BackendVerdict) -> Result<Connection, String> {
        // Redirects are not followed: the verdict comes from the URL the policy names, never
        // from wherever its answer points the webhook (an internal service, which would also
        // decide the verdict, and would receive the token). A redirect fails the call like any
        // other non-2xx answer.
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_version_min(match settings.min_tls_version {
                TlsVersion::Tls12 => reqwest::tls::Version::TLS_1_2,
                TlsVersion::Tls13 => reqwest::tls::Version::TLS_1_3,
            });
        if let Some(bundle) = &settings.ca_bundle {
            credentials::certificate_bundle(bundle.as_bytes())
                .map_err(|e| format!("caBundle: {e}"))?;
            let roots = reqwest::Certificate::from_pem_bundle(bundle.as_bytes())
                .map_err(|e| format!("caBundle: {e}"))?;
            builder = builder.tls_certs_only(roots);
        }
        if let Some(pem) = &self.identity {
            let identity = reqwest::Identity::from_pem(pem)
                // reqwest's message describes the parse, not the key.
                .map_err(|e| format!("client certificate: {e}"))?;
            builder = builder.identity(identity);
        }
        if self.token.is_some() || self.identity.is_some() {
            // Credentials never travel in clear, whatever the URL (the CRD refuses http://
            // with auth; this holds for the check CLI's files too).
            builder = builder.https_only(true);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot make an HTTPS client: {e}"))?;
        let authorization = match &self.token {
            None => None,
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| "bearer token: not a header value".to_string())?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Connection {
            http,
            authorization,
            material: self.fingerprint,
        })
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

impl PolicyResponse {
    /// The verdict on `image`, cut to what may be shown and carrying the answer's TTL.
    fn verdict(mut self, image: &str) -> Option<ImageResult> {
        let mut result = self.results.remove(image)?;
        result.ttl_seconds = self.ttl_seconds;
        result.reasons = result
            .reasons
            .iter()
            .take(MAX_BACKEND_REASONS)
            .map(|r| printable(r, MAX_BACKEND_REASON_CHARS))
            .collect();
        if result
            .rekor
            .as_ref()
            .is_some_and(|r| !is_rekor_uuid(&r.uuid))
        {
            tracing::warn!(%image, "backend gave a Rekor entry that is not a UUID; dropped");
            result.rekor = None;
        }
        Some(result)
    }
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
    #[serde(default)]
    pub rekor: Option<RekorEntry>,
    /// The answer's `ttlSeconds`: the verdict is not kept longer.
    #[serde(skip)]
    pub ttl_seconds: Option<u32>,
}

/// `text` with control characters replaced and cut to `max` characters: a backend's reason
/// ends up in deny messages and logs.
fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A Rekor entry UUID: hex, 64 characters, or 80 with the tree ID in front.
fn is_rekor_uuid(uuid: &str) -> bool {
    matches!(uuid.len(), 64 | 80) && uuid.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Asks the backend at `base_url` about `request.images` until `until` (the policy's
/// timeout). A retry starts only if its backoff ends before both `until` and the decision's
/// `deadline` (which the caller enforces, naming it as the reason). Errors are the failures
/// that survived the retries, described for a deny message.
async fn policy(
    connection: &Connection,
    base_url: &str,
    until: tokio::time::Instant,
    deadline: Option<tokio::time::Instant>,
    request: &PolicyRequest<'_>,
    metrics: &Metrics,
) -> Result<PolicyResponse, String> {
    let url = format!("{}{POLICY_PATH}", base_url.trim_end_matches('/'));
    let last_start = deadline.map_or(until, |d| d.min(until));
    let mut last_error = format!("backend {url}: no answer within timeoutSeconds");
    for attempt in 0..ATTEMPTS {
        let remaining = until.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            break;
        }
        let started = Instant::now();
        let mut post = connection.http.post(&url).json(request).timeout(remaining);
        if let Some(authorization) = &connection.authorization {
            post = post.header(reqwest::header::AUTHORIZATION, authorization.clone());
        }
        let sent = post.send().await;
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
                // reqwest's error chain names the cause (refused, timed out, certificate not
                // trusted), never the answer's text.
                last_error = format!("backend {url}: {}", error_chain(&e));
                true
            }
        };
        metrics.backend_failures.inc();
        if !transient || attempt + 1 == ATTEMPTS {
            break;
        }
        let backoff = Duration::from_millis(100 * 3u64.pow(attempt));
        // A retry that cannot start before the timeout or the deadline is not waited for.
        if tokio::time::Instant::now() + backoff >= last_start {
            break;
        }
        tokio::time::sleep(backoff).await;
    }
    Err(last_error)
}

/// An error and its causes, `: `-separated (reqwest's own message says only "error sending
/// request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
