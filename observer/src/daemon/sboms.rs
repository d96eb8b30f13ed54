//! The CycloneDX SBOMs of the images running on the node: the baseline of library drift.
//! Each image digest's SBOM is fetched once, in the background, from the image's registry
//! with the registry client the webhook uses too ([`zastava_registry`]: referrers, the
//! `sha256-<hex>` referrers tag, cosign's `.sbom` tag). Until it is known, and for images
//! without one, library drift stays silent; an image without an SBOM is asked again after
//! [`RECHECK_ABSENT`] (one may be attached later), a registry that could not answer after
//! [`RETRY_FAILED`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use zastava_crds::image::ImageReference;
use zastava_registry::metrics::RegistryMetrics;
use zastava_registry::Registry;

use crate::drift::{parse_cyclonedx, SbomIndex};
use crate::metrics::Metrics;

pub const RECHECK_ABSENT: Duration = Duration::from_secs(300);
pub const RETRY_FAILED: Duration = Duration::from_secs(30);

enum State {
    Fetching,
    /// `None`: the image has no (usable) CycloneDX SBOM.
    Known(Option<Arc<SbomIndex>>, Instant),
    Failed(Instant),
}

#[derive(Clone)]
pub struct Sboms {
    registry: Arc<Registry>,
    states: Arc<Mutex<HashMap<String, State>>>,
    metrics: Metrics,
}

impl Sboms {
    /// `insecure`: registries (`host:port`) spoken to over plain HTTP.
    pub fn new(insecure: Vec<String>, timeout: Duration, metrics: Metrics) -> Self {
        Self {
            // The registry client's metrics are registered nowhere: the observer's /metrics
            // counts SBOM fetches by result (`zastava_observer_sbom_fetches_total`) instead.
            registry: Arc::new(Registry::new(insecure, timeout, RegistryMetrics::new())),
            states: Arc::default(),
            metrics,
        }
    }

    /// The SBOM of `image` (a reference as the pod spec or the runtime names it) at
    /// `digest`, when it is known; otherwise starts fetching it (at most one fetch per
    /// digest at a time) and returns `None`.
    pub fn get(&self, image: &str, digest: &str) -> Option<Arc<SbomIndex>> {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let due = match states.get(digest) {
            Some(State::Fetching) => false,
            Some(State::Known(Some(index), _)) => return Some(index.clone()),
            Some(State::Known(None, at)) => at.elapsed() >= RECHECK_ABSENT,
            Some(State::Failed(at)) => at.elapsed() >= RETRY_FAILED,
            None => true,
        };
        if !due {
            return None;
        }
        let reference = match ImageReference::parse(image) {
            Ok(reference) => reference,
            // E.g. the runtime's image id before the Pod (and its spec's reference) is known:
            // asked again with the next reference.
            Err(e) => {
                tracing::debug!(image, error = %e, "no registry reference to look the SBOM up with");
                return None;
            }
        };
        states.insert(digest.to_string(), State::Fetching);
        let this = self.clone();
        let digest = digest.to_string();
        tokio::spawn(async move {
            let state = this.fetch(&reference, &digest).await;
            this.states
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(digest, state);
        });
        None
    }

    async fn fetch(&self, image: &ImageReference, digest: &str) -> State {
        // Anonymous: the observer holds no pull secrets (it would need to read every
        // namespace's Secrets); images in private registries get no library drift.
        let fetched = self
            .registry
            .cyclonedx_sbom(
                &image.registry,
                &image.repository,
                digest,
                &RegistryAuth::Anonymous,
            )
            .await;
        let (result, state) = match fetched {
            Ok(Some(bytes)) => match parse_cyclonedx(&String::from_utf8_lossy(&bytes)) {
                Ok(index) => {
                    tracing::info!(image = %image, digest, components = index.components(), "SBOM of the image read: library drift is checked against it");
                    ("found", State::Known(Some(Arc::new(index)), Instant::now()))
                }
                Err(e) => {
                    tracing::warn!(image = %image, digest, error = %e, "the image's SBOM is unusable: no library drift for it");
                    ("invalid", State::Known(None, Instant::now()))
                }
            },
            Ok(None) => ("absent", State::Known(None, Instant::now())),
            Err(e) => {
                tracing::warn!(image = %image, digest, error = %e, "cannot fetch the image's SBOM; retrying later");
                ("error", State::Failed(Instant::now()))
            }
        };
        self.metrics.sbom_fetches.with_label_values(&[result]).inc();
        state
    }

    /// Forgets the digests no tracked container runs any more.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|digest, _| keep(digest));
    }
}
