//! The admission server: decodes the review, gathers what the registry says about each image
//! (through the caches), lets [`evaluate`](crate::evaluate::evaluate) decide, and answers.
//! [`crate::transport`] serves it, within its limits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::post;
use axum::Router;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use oci_client::secrets::RegistryAuth;
use zastava_crds::contracts::Decision;
use zastava_crds::image::ImageReference;
use zastava_registry::{docker_config_auth, Registry, RegistryFacts, Unavailable};

use crate::admission::{self, Request, Response, Review, AUDIT_ANNOTATION, FAIL_OPEN_ANNOTATION};
use crate::backend::{self, Answers, Backend, BackendSecrets};
use crate::cache::{Cached, Lifetime, Lookup, TtlCache, Ttls};
use crate::decision_log::{CacheStatus, DecisionLog, Fields, ImageCache, OwnerRef};
use crate::evaluate::{
    denied_before_lookup, deny_message, evaluate, governing, Evaluation, Governing,
};
use crate::limits::DEADLINE_REASON;
use crate::metrics::Metrics;
use crate::policies::{DriftedDigests, Evidence, Lookups, PolicySet};
use crate::tls::CertStore;
use crate::workload::Workload;

/// A workload judged under the policies in force, and how (for the decision record).
pub struct Judgement<'w> {
    pub evaluation: Evaluation,
    /// The namespace's labels could not be read: every policy selecting by label applied.
    pub labels_unknown: bool,
    /// Each image of the workload once, sorted, with its cache status.
    pub cache: Vec<ImageCache<'w>>,
    pub cache_hits: u32,
    pub cache_misses: u32,
    /// How long asking the backends took, when one was called.
    pub backend_latency: Option<Duration>,
}

/// Everything a decision needs, shared by all connections.
pub struct App {
    /// Read on every decision by both runtime threads: an `ArcSwap` load takes no lock and
    /// leaves the shared reference count alone (a `RwLock<Arc<_>>` read is two atomic writes
    /// to a shared cache line each time, and showed in profiles of concurrent decisions).
    pub policies: ArcSwap<PolicySet>,
    /// Digests the node observers reported drifting (for `runtime.denyDriftedImages`).
    pub drifted: ArcSwap<DriftedDigests>,
    pub registry: Registry,
    /// `registry/repository@digest` → what the registry says about it: the per-digest cache.
    pub facts: TtlCache<String, Arc<RegistryFacts>>,
    /// `registry/repository:tag` → the facts of the digest the tag resolved to, so that a warm
    /// lookup of a tag is one cache read (two, resolution then facts, were the largest cost of
    /// a warm decision under load). Filled through `facts`, so lookups of one digest under
    /// several tags share its registry fetch; an entry never outlives the `facts` entry it
    /// was taken from.
    pub by_tag: TtlCache<String, Cached<Arc<RegistryFacts>>>,
    pub backend: Backend,
    /// The Secrets the policies' backends read credentials from, as last read.
    pub backend_secrets: ArcSwap<BackendSecrets>,
    pub ttls: Arc<Ttls>,
    pub metrics: Metrics,
    pub namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    pub client: Option<Client>,
    pub zastava_namespace: String,
    /// Policies and Secrets synced and a certificate loaded.
    pub ready: AtomicBool,
    /// SIGTERM came: unready, and every answer closes its connection, so the apiserver opens
    /// its next ones through the Service to the replicas that stay.
    pub closing: AtomicBool,
    pub certs: Arc<CertStore>,
    /// Where each decision is recorded.
    pub decision_log: DecisionLog,
    /// How long after a review arrived every registry and backend call of its decision must
    /// have answered (see [`crate::limits::DEFAULT_DECISION_DEADLINE`]).
    pub decision_deadline: Duration,
    /// Wakes the verifier (crate::verifier): a policy or a RuntimePosture changed.
    pub verifier_wake: tokio::sync::Notify,
}

impl App {
    pub fn policy_set(&self) -> Guard<Arc<PolicySet>> {
        self.policies.load()
    }

    pub fn drifted(&self) -> Guard<Arc<DriftedDigests>> {
        self.drifted.load()
    }

    pub fn set_drifted(&self, drifted: DriftedDigests) {
        self.drifted.store(Arc::new(drifted));
    }

    /// Installs a new policy set; drops every cached fact when a policy changed.
    pub fn set_policies(&self, set: PolicySet) {
        let (positive, negative) = set.ttls();
        self.ttls.set(positive, negative);
        self.metrics.policies.set(set.policies.len() as i64);
        let changed = self.policy_set().fingerprint() != set.fingerprint();
        self.backend
            .configure(&set.backend_settings(), &self.backend_secrets.load());
        self.policies.store(Arc::new(set));
        if changed {
            self.by_tag.invalidate_all();
            self.facts.invalidate_all();
            self.backend.invalidate_all();
            self.verifier_wake.notify_one();
        }
    }

    /// Installs what was read of the backends' Secrets and remakes the connections whose
    /// credentials changed (a rotated token or certificate).
    pub fn set_backend_secrets(&self, secrets: BackendSecrets) {
        self.backend_secrets.store(Arc::new(secrets));
        self.backend.configure(
            &self.policy_set().backend_settings(),
            &self.backend_secrets.load(),
        );
    }

    /// Answers one AdmissionReview body: the HTTP status and the JSON (or error text) to send.
    pub async fn handle(&self, body: &[u8]) -> (StatusCode, String) {
        let started = Instant::now();
        let request = match admission::decode(body) {
            Ok(request) => request,
            Err(e) => {
                self.metrics.decode_errors.inc();
                tracing::warn!(error = %e, "unusable AdmissionReview");
                return (StatusCode::BAD_REQUEST, format!("zastava: {e}\n"));
            }
        };
        let response = match request {
            Request::Skip { uid, why } => {
                tracing::debug!(%uid, why, "admitted without a decision");
                Response::allow(&uid)
            }
            Request::Reject { uid, message } => {
                tracing::info!(%uid, %message, "denied an undecidable object");
                Response::deny(&uid, message)
            }
            Request::Decide(review) => {
                let deadline = tokio::time::Instant::from_std(started) + self.decision_deadline;
                self.decide(*review, deadline).await
            }
        };
        if response.allowed {
            self.metrics.allowed.inc();
        } else {
            self.metrics.denied.inc();
        }
        self.metrics
            .decision_latency
            .observe(started.elapsed().as_secs_f64());
        let json = serde_json::to_string(&response.review());
        match json {
            Ok(json) => (StatusCode::OK, json),
            Err(e) => {
                tracing::error!(uid = %response.uid, error = %e, "cannot serialize the response");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("zastava: cannot serialize the response: {e}\n"),
                )
            }
        }
    }

    /// Judges `workload` in `namespace` under the policies in force, through the same caches,
    /// registry and backend calls whether it is an admission review or a running workload
    /// checked again (crate::verifier): one decision code for both moments.
    pub async fn judge<'w>(
        &self,
        uid: &str,
        namespace: &str,
        workload: &'w Workload,
        deadline: tokio::time::Instant,
    ) -> Judgement<'w> {
        let set = self.policy_set();
        // Within the deadline too: a slow API read must not leave the decision to the
        // apiserver's timeout.
        let labels = tokio::time::timeout_at(deadline, self.namespace_labels(namespace))
            .await
            .ok()
            .flatten();
        let all: Vec<Governing<'_>> = set.policies.iter().map(|p| p.governing()).collect();
        let applying = governing(&all, namespace, labels.as_ref(), &self.zastava_namespace);
        let labels_unknown = labels.is_none();
        let labels = labels.unwrap_or_default();

        // Images a registry-independent gate denies are never looked up: the pod author
        // chooses the registry, and a denied one must not be contacted at all.
        let images: Vec<String> = workload
            .distinct_images()
            .into_iter()
            .filter(|image| match workload.reference(image).as_ref() {
                Ok(reference) => !denied_before_lookup(&applying, reference),
                Err(_) => false,
            })
            .collect();
        let mut lookups = Lookups::new();
        let (mut hits, mut misses) = (0u32, 0u32);
        let calls = set.backends(&applying);
        let scope = backend::scope(namespace, &labels);
        // Each image is looked up, and asked of the backends about its digest, on its own:
        // the images of a workload run at once, within one deadline.
        let per_image = async {
            let needs_registry = set.needs_registry(&applying);
            if !needs_registry && calls.is_empty() {
                return Vec::new();
            }
            let pull_secrets: Vec<String> = workload
                .spec
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|s| s.name.clone())
                .collect();
            futures::future::join_all(images.iter().map(|image| async {
                let parsed = workload.reference(image);
                let reference = parsed.as_ref().as_ref().ok()?;
                // Backends are asked about digests: a tag is resolved even where no policy
                // needs the registry otherwise.
                let lookup = async {
                    if !needs_registry && reference.digest.is_some() {
                        return None;
                    }
                    let lookup = self.lookup_reference(reference, namespace, &pull_secrets);
                    Some(
                        tokio::time::timeout_at(deadline, lookup)
                            .await
                            .unwrap_or_else(|_| {
                                Err(Unavailable {
                                    registry: reference.registry.clone(),
                                    message: DEADLINE_REASON.to_string(),
                                })
                            }),
                    )
                };
                let ask = |resolved: Result<String, String>| {
                    self.ask_backends(&calls, namespace, &labels, scope, image, resolved, deadline)
                };
                Some(match &reference.digest {
                    // Pinned: the backend is asked while the registry is.
                    Some(digest) => tokio::join!(lookup, ask(Ok(reference.pinned(digest)))),
                    // By tag: the backend is asked about the digest the registry resolved.
                    None => {
                        let found = lookup.await;
                        let resolved = match &found {
                            Some(Ok((facts, _))) => Ok(reference.pinned(&facts.digest)),
                            Some(Err(e)) => Err(e.to_string()),
                            None => Err("not looked up".to_string()),
                        };
                        let asked = ask(resolved).await;
                        (found, asked)
                    }
                })
            }))
            .await
        };
        let found = per_image.await;
        let mut answers = Answers::new();
        let mut backend_latency: Option<Duration> = None;
        let found: Vec<_> = found
            .into_iter()
            .map(|one| {
                one.and_then(|(found, (asked, latency))| {
                    answers.extend(asked);
                    backend_latency = backend_latency.max(latency);
                    found
                })
            })
            .collect();
        // Every image of the workload once, sorted, with its lookup (for the decision record).
        // `images` is a subsequence of them (the ones looked up), in the same order.
        let mut all = workload.references.keys();
        let mut cache = Vec::with_capacity(workload.references.len());
        for (image, result) in images.iter().zip(found) {
            // The workload's own key for `image`, which the record borrows.
            let mut listed = None;
            for other in all.by_ref() {
                if other == image {
                    listed = Some(other.as_str());
                    break;
                }
                cache.push(ImageCache {
                    image: other,
                    status: CacheStatus::Skipped,
                });
            }
            let (status, result) = match result {
                Some(Ok((facts, Lookup::Hit))) => {
                    hits += 1;
                    (CacheStatus::Hit, Some(Ok(facts)))
                }
                Some(Ok((facts, Lookup::Miss))) => {
                    misses += 1;
                    (CacheStatus::Miss, Some(Ok(facts)))
                }
                Some(Err(e)) => (CacheStatus::Error, Some(Err(e))),
                None => (CacheStatus::Skipped, None),
            };
            if let Some(image) = listed {
                cache.push(ImageCache { image, status });
            }
            if let Some(result) = result {
                lookups.insert(image.clone(), result);
            }
        }
        cache.extend(all.map(|image| ImageCache {
            image,
            status: CacheStatus::Skipped,
        }));
        let drifted = self.drifted();
        let evidence = Evidence {
            registry: &lookups,
            backend: &answers,
            drifted: Some(&drifted),
        };
        let facts = set.facts(&evidence);
        let evaluation = evaluate(uid, namespace, workload, &applying, &facts);

        Judgement {
            evaluation,
            labels_unknown,
            cache,
            cache_hits: hits,
            cache_misses: misses,
            backend_latency,
        }
    }

    async fn decide(&self, review: Review, deadline: tokio::time::Instant) -> Response {
        let Judgement {
            evaluation,
            labels_unknown,
            cache,
            cache_hits,
            cache_misses,
            backend_latency,
        } = self
            .judge(&review.uid, &review.namespace, &review.workload, deadline)
            .await;
        let decision = &evaluation.decision;
        self.decision_log.record(
            &Fields {
                uid: &review.uid,
                namespace: &review.namespace,
                operation: &review.operation,
                kind: &review.workload.kind,
                name: review.workload.name.as_deref(),
                owner: review.workload.owner.as_ref().map(OwnerRef::from),
                fail_mode: evaluation.fail_mode(),
                // Microseconds as fractional milliseconds.
                backend_latency_ms: backend_latency.map(|d| d.as_micros() as f64 / 1000.0),
                cache_hits,
                cache_misses,
                cache: &cache,
            },
            decision,
        );

        let mut response = match decision.decision {
            Decision::Allow => Response::allow(&review.uid),
            Decision::Deny => Response::deny(&review.uid, deny_message(decision)),
        };
        response.warnings = evaluation.warnings.clone();
        if labels_unknown {
            response.warnings.push(format!(
                "zastava: the labels of namespace {} could not be read; every policy selecting namespaces by label was applied",
                review.namespace
            ));
        }
        response.warnings.extend(
            evaluation
                .not_checked
                .iter()
                .map(|gate| format!("not checked: {gate}")),
        );
        if evaluation.fail_open && decision.decision == Decision::Allow {
            self.metrics.fail_open.inc();
            response
                .audit_annotations
                .insert(FAIL_OPEN_ANNOTATION.to_string(), "true".to_string());
        }
        let audit: Vec<&String> = evaluation
            .warnings
            .iter()
            .filter(|w| w.ends_with("(Audit: admitted)"))
            .collect();
        if !audit.is_empty() {
            response.audit_annotations.insert(
                AUDIT_ANNOTATION.to_string(),
                audit
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        response
    }

    /// The verdicts of the backends in `calls` on one image, and how long asking took when a
    /// backend was called (not when every answer came from the cache).
    #[allow(clippy::too_many_arguments)]
    async fn ask_backends(
        &self,
        calls: &[backend::BackendCall],
        namespace: &str,
        labels: &BTreeMap<String, String>,
        scope: u64,
        image: &str,
        resolved: Result<String, String>,
        deadline: tokio::time::Instant,
    ) -> (
        Vec<((String, String), Result<backend::ImageResult, String>)>,
        Option<Duration>,
    ) {
        if calls.is_empty() {
            return (Vec::new(), None);
        }
        let started = Instant::now();
        // Boxed for the same reason as the namespace lookup: only some policies ask a backend.
        let (answers, called) = Box::pin(self.backend.verdicts(
            calls,
            namespace,
            labels,
            scope,
            image,
            resolved.as_deref().map_err(String::as_str),
            Some(deadline),
        ))
        .await;
        (answers, called.then(|| started.elapsed()))
    }

    /// What the registry says about `reference`, through the caches. A hit is an answer that
    /// asked the registry nothing.
    async fn lookup_reference(
        &self,
        reference: &ImageReference,
        namespace: &str,
        pull_secrets: &[String],
    ) -> Result<(Arc<RegistryFacts>, Lookup), Unavailable> {
        let cached = match &reference.digest {
            Some(digest) => {
                self.pinned_facts(reference, digest, namespace, pull_secrets, None)
                    .await?
            }
            None => {
                let tagged = self
                    .by_tag
                    .get_or_load(
                        credential_scoped(reference.tagged(), namespace, pull_secrets),
                        // With the `facts` entry it came from.
                        |pinned: &Cached<_>| Lifetime {
                            until: Some(pinned.expires),
                            ..facts_lifetime(&pinned.value)
                        },
                        || async {
                            let auth = self
                                .auth(namespace, pull_secrets, &reference.registry)
                                .await;
                            let digest = self.registry.resolve(reference, &auth).await?;
                            // The digest's facts need the digest: they cannot start before
                            // the tag is resolved (cosign's tags and the referrers are named
                            // after it).
                            self.pinned_facts(
                                reference,
                                &digest,
                                namespace,
                                pull_secrets,
                                Some(auth),
                            )
                            .await
                        },
                    )
                    .await
                    .map_err(|e| e.as_ref().clone())?;
                Cached {
                    value: tagged.value.value,
                    // A miss here asked the registry for the tag at least.
                    lookup: tagged.lookup,
                    expires: tagged.expires,
                }
            }
        };
        match cached.lookup {
            Lookup::Hit => self.metrics.cache_hits.inc(),
            Lookup::Miss => self.metrics.cache_misses.inc(),
        }
        Ok((cached.value, cached.lookup))
    }

    /// The facts of `reference` pinned to `digest`, through the per-digest cache. `auth`: the
    /// credentials when the caller has read them already (read on a miss otherwise).
    async fn pinned_facts(
        &self,
        reference: &ImageReference,
        digest: &str,
        namespace: &str,
        pull_secrets: &[String],
        auth: Option<RegistryAuth>,
    ) -> Result<Cached<Arc<RegistryFacts>>, Unavailable> {
        self.facts
            .get_or_load(
                credential_scoped(reference.pinned(digest), namespace, pull_secrets),
                facts_lifetime,
                || async {
                    let auth = match auth {
                        Some(auth) => auth,
                        None => {
                            self.auth(namespace, pull_secrets, &reference.registry)
                                .await
                        }
                    };
                    self.registry
                        .facts(&reference.registry, &reference.repository, digest, &auth)
                        .await
                        .map(Arc::new)
                },
            )
            .await
            .map_err(|e| e.as_ref().clone())
    }

    /// Credentials for `registry` from the pod's `imagePullSecrets` (dockerconfigjson), else
    /// anonymous. Read only on a cache miss.
    async fn auth(&self, namespace: &str, pull_secrets: &[String], registry: &str) -> RegistryAuth {
        let Some(client) = &self.client else {
            return RegistryAuth::Anonymous;
        };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for name in pull_secrets {
            match secrets.get_opt(name).await {
                Ok(Some(secret)) => {
                    let config = secret
                        .data
                        .as_ref()
                        .and_then(|d| d.get(".dockerconfigjson"))
                        .map(|b| b.0.as_slice());
                    if let Some(auth) = config.and_then(|c| docker_config_auth(c, registry)) {
                        return auth;
                    }
                }
                Ok(None) => tracing::warn!(%namespace, secret = %name, "imagePullSecret not found"),
                Err(e) => {
                    tracing::warn!(%namespace, secret = %name, error = %e, "cannot read imagePullSecret")
                }
            }
        }
        RegistryAuth::Anonymous
    }

    /// The labels of `namespace`, for policies with a namespaceSelector: from the namespace
    /// reflector, else (a namespace created a moment ago) straight from the API; `None` when
    /// the API could not answer.
    pub async fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        if let Some(store) = &self.namespaces {
            if let Some(ns) = store.get(&ObjectRef::new(namespace)) {
                return Some(ns.metadata.labels.clone().unwrap_or_default());
            }
        }
        let Some(client) = &self.client else {
            return Some(BTreeMap::new());
        };
        // Boxed: the API call's state is several KB, and carried inline it would be copied
        // with every decision's future although the reflector almost always answers.
        Box::pin(labels_from_api(client, namespace)).await
    }
}

/// The cache key of a lookup: what a registry said with a namespace's pull Secrets is that
/// namespace's alone (another namespace could otherwise learn of a private image it has no
/// credentials for); anonymous lookups, the common case, are shared by every namespace.
fn credential_scoped(key: String, namespace: &str, pull_secrets: &[String]) -> String {
    if pull_secrets.is_empty() {
        return key;
    }
    // '\n' is in no image reference, namespace or Secret name.
    format!("{key}\n{namespace}/{}", pull_secrets.join(","))
}

/// Facts that would lead to a deny (no signature or no SBOM) are kept for the short negative
/// TTL, so a freshly signed image is admitted soon.
fn facts_lifetime(facts: &Arc<RegistryFacts>) -> Lifetime {
    Lifetime::negative_if(facts.is_negative())
}

async fn labels_from_api(client: &Client, namespace: &str) -> Option<BTreeMap<String, String>> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.get_metadata_opt(namespace).await {
        Ok(Some(ns)) => Some(ns.metadata.labels.unwrap_or_default()),
        Ok(None) => Some(BTreeMap::new()),
        Err(e) => {
            tracing::warn!(%namespace, error = %e, "cannot read namespace labels");
            None
        }
    }
}

/// Request bodies larger than this are refused with 413: a Pod or workload is far smaller.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

async fn validate(State(app): State<Arc<App>>, body: Bytes) -> HttpResponse {
    let (status, body) = app.handle(&body).await;
    let content_type = if status == StatusCode::OK {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    if app.closing.load(Ordering::Relaxed) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

pub fn admission_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}
