//! Continuous verification: the images running workloads run, judged again under today's
//! policies, registry and backend, by the same code admission uses ([`App::judge`]: the same
//! evaluation, registry facts, backend calls and caches).
//!
//! - Runs in the webhook replica that holds the verifier Lease, so it shares that replica's
//!   verdict cache (a digest admission looked up a moment ago costs no registry call) and its
//!   credentials (pull Secrets, backend tokens); the other replicas stand by.
//! - What runs comes from the RuntimePostures: the operator lists each workload's images with
//!   the digest the observers saw (`status.images[].reference`, `digest`). The verifier writes
//!   its verdict into the same entries with a field manager of its own ([`FIELD_MANAGER`]),
//!   and the operator folds the verdicts into the `Compliant` condition.
//! - Level-triggered: a workload is verified again when what it is judged on changed (its
//!   images and digests, the name and generation of every policy governing its namespace:
//!   a new digest seen by an observer, a policy edited, created or deleted), every
//!   `--verifier-retry-seconds` while the registry or backend does not answer (a fail-open
//!   admission is verified within that time of the registry's return), and otherwise after
//!   the shortest `runtime.reverifyIntervalSeconds` of its policies. At most
//!   `--verifier-rate` workloads per second; one digest costs one lookup through the cache.
//! - It reports; it never evicts. A verdict that changes is an Event on the workload.
//!
//! The record of a fail-open admission is the posture's `admittedFailOpen`, written by the
//! verifier itself when it cannot verify a running image in a fail-open namespace: it is in
//! the API (it survives any webhook restart) and admission writes nothing, so the webhook
//! configuration's `sideEffects: None` stays true.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use zastava_crds::contracts::ImageDecision;
use zastava_crds::image::ImageReference;
use zastava_crds::policy::PolicyMode;
use zastava_crds::posture::{ImagePosture, Verdict};
use zastava_crds::RuntimePosture;
use zastava_process::events::EventPublisher;

use crate::evaluate::{governing, Evaluation, FailMode, Governing};
use crate::policy_reports::{self, ReportMode, REPORT_NAME};
use crate::server::App;
use crate::workload::Workload;

/// The field manager of the verdicts in a posture's `status.images`.
pub const FIELD_MANAGER: &str = "zastava-webhook-verifier";

#[derive(Clone, Debug, clap::Args)]
pub struct VerifierArgs {
    /// The Lease (in Zastava's namespace) the webhook replicas compete for: its holder
    /// verifies running workloads. Empty: no replica does.
    #[arg(
        long = "verifier-lease",
        env = "ZASTAVA_VERIFIER_LEASE",
        default_value = "zastava-verifier"
    )]
    pub lease: String,
    /// This replica's identity in the Lease (the pod name in a cluster).
    #[arg(long = "verifier-identity", env = "POD_NAME", default_value_t = default_identity())]
    pub identity: String,
    /// Workloads verified per second at most.
    #[arg(long = "verifier-rate", env = "ZASTAVA_VERIFIER_RATE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rate: u32,
    /// Whether the verifier writes wg-policy PolicyReports (crate::policy_reports): `auto`
    /// where the API exists (checked every minute).
    #[arg(
        long = "policy-reports",
        env = "ZASTAVA_POLICY_REPORTS",
        value_enum,
        default_value = "auto"
    )]
    pub policy_reports: ReportMode,
    /// Seconds between attempts on a workload whose images the registry or backend could not
    /// answer for.
    #[arg(long = "verifier-retry-seconds", env = "ZASTAVA_VERIFIER_RETRY_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub retry_seconds: u64,
}

/// No Lease: a server that verifies no running workload (tests and benchmarks).
impl Default for VerifierArgs {
    fn default() -> Self {
        Self {
            lease: String::new(),
            identity: default_identity(),
            rate: 20,
            policy_reports: ReportMode::Off,
            retry_seconds: 15,
        }
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// What a workload is judged on: its images (reference, running digest) and the policies
/// governing its namespace (`name@generation`). Verified again when it changes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Inputs {
    pub images: Vec<(String, String)>,
    pub policies: Vec<String>,
}

/// The last verification of one workload.
#[derive(Clone, Debug)]
pub struct Verified {
    pub inputs: Inputs,
    pub at: Instant,
    /// Some image could not be verified (registry or backend down): try again soon.
    pub incomplete: bool,
}

/// Why a workload is verified now (the `trigger` label of the metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Not verified by this replica yet (new, or this replica just took the Lease).
    New,
    /// A policy governing its namespace changed, appeared or went.
    Policy,
    /// It runs another image or digest.
    Digest,
    /// The last attempt could not reach the registry or backend.
    Retry,
    /// The reverify interval passed.
    Period,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::New => "new",
            Trigger::Policy => "policy",
            Trigger::Digest => "digest",
            Trigger::Retry => "retry",
            Trigger::Period => "period",
        }
    }
}

/// Whether (and why) a workload judged on `inputs` is due at `now`. `period` may be
/// `Duration::MAX` (no policy governs it: never due by time).
pub fn due(
    last: Option<&Verified>,
    inputs: &Inputs,
    now: Instant,
    retry: Duration,
    period: Duration,
) -> Option<Trigger> {
    let Some(last) = last else {
        return Some(Trigger::New);
    };
    if last.inputs.policies != inputs.policies {
        Some(Trigger::Policy)
    } else if last.inputs.images != inputs.images {
        Some(Trigger::Digest)
    } else if last.incomplete && last.at.checked_add(retry).is_some_and(|t| now >= t) {
        Some(Trigger::Retry)
    } else if last.at.checked_add(period).is_some_and(|t| now >= t) {
        Some(Trigger::Period)
    } else {
        None
    }
}

/// `reference` pinned to the digest that runs, keeping its tag (`repo:tag@sha256:...`): the
/// registry is asked about what runs, and tag rules still see the tag the pod spec names.
pub fn running(reference: &str, digest: &str) -> Option<String> {
    let parsed = ImageReference::parse(reference).ok()?;
    if parsed.digest.is_some() {
        return Some(reference.to_string());
    }
    let tag = parsed.tag.as_deref().unwrap_or("latest");
    Some(format!(
        "{}/{}:{tag}@{digest}",
        parsed.registry, parsed.repository
    ))
}

/// The entries the verifier writes for `images` (reference, the string judged) from
/// `evaluation`, given the entries as they are (`previous`).
///
/// - An image judged: its verdict, reasons and facts, `checkedAt` now.
/// - An image an Enforce policy could not verify (registry or backend down): in a fail-open
///   namespace, never verified before, it is `admittedFailOpen` (with the reasons why); one
///   verified before keeps its last verdict (an outage says nothing new about it); the same
///   in a fail-closed namespace, where only workloads admitted before the policy can be.
pub fn entries(
    images: &[(String, String)],
    evaluation: &Evaluation,
    previous: &[ImagePosture],
    now: &Time,
) -> Vec<ImagePosture> {
    let decisions: HashMap<&str, &ImageDecision> = evaluation
        .decision
        .images
        .iter()
        .map(|d| (d.name.as_str(), d))
        .collect();
    images
        .iter()
        .filter_map(|(reference, judged)| {
            let decision = decisions.get(judged.as_str())?;
            let before = previous.iter().find(|p| &p.reference == reference);
            let verified_before =
                before.is_some_and(|b| b.verdict.is_some() && !b.admitted_fail_open);
            let entry = match evaluation.unverified.get(judged) {
                None => ImagePosture {
                    reference: reference.clone(),
                    signed: decision.signed,
                    sbom_present: decision.has_sbom_referrers,
                    verdict: Some(decision.policy_verdict),
                    reasons: decision.reasons.clone(),
                    checked_at: Some(now.clone()),
                    ..ImagePosture::default()
                },
                Some(_) if verified_before => verdict_fields(before?),
                Some(FailMode::FailOpen) => ImagePosture {
                    reference: reference.clone(),
                    reasons: decision.reasons.clone(),
                    checked_at: Some(now.clone()),
                    admitted_fail_open: true,
                    ..ImagePosture::default()
                },
                // Fail-closed and never verified: nothing to say yet but why.
                Some(_) => ImagePosture {
                    reference: reference.clone(),
                    reasons: decision.reasons.clone(),
                    checked_at: Some(now.clone()),
                    ..ImagePosture::default()
                },
            };
            Some(entry)
        })
        .collect()
}

/// The verifier's own fields of `entry` (what its apply must repeat to keep them).
fn verdict_fields(entry: &ImagePosture) -> ImagePosture {
    ImagePosture {
        reference: entry.reference.clone(),
        signed: entry.signed,
        sbom_present: entry.sbom_present,
        verdict: entry.verdict,
        reasons: entry.reasons.clone(),
        checked_at: entry.checked_at.clone(),
        admitted_fail_open: entry.admitted_fail_open,
        ..ImagePosture::default()
    }
}

/// An Event worth filing when an image's verdict goes from `before` to `after`: (warning,
/// reason, note).
pub fn verdict_event(
    before: Option<&ImagePosture>,
    after: &ImagePosture,
) -> Option<(bool, &'static str, String)> {
    let was = before.map(|b| (b.verdict, b.admitted_fail_open));
    let now = (after.verdict, after.admitted_fail_open);
    if was == Some(now) {
        return None;
    }
    let reasons = after.reasons.join("; ");
    match now {
        (_, true) => Some((
            true,
            "AdmittedFailOpen",
            format!(
                "{} runs unverified in a fail-open namespace: {reasons}",
                after.reference
            ),
        )),
        (Some(Verdict::Fail), _) => Some((
            true,
            "PolicyViolation",
            format!("{} fails today's policies: {reasons}", after.reference),
        )),
        // A first verdict that passes is no news; a change to one is.
        (Some(verdict), _) if was.is_some_and(|(v, open)| v.is_some() || open) => Some((
            false,
            "ImageVerified",
            format!(
                "{} now {}{}",
                after.reference,
                match verdict {
                    Verdict::Pass => "passes today's policies",
                    _ => "passes today's Enforce policies, with warnings",
                },
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {reasons}")
                }
            ),
        )),
        _ => None,
    }
}

/// The object an Event about the workload of `posture` regards: the workload itself when it is
/// of a built-in kind (its API version known), else the posture (a custom resource owning
/// Pods: its API version is not recorded, and a wrong one would file the Event about nothing).
pub fn event_subject(posture: &RuntimePosture) -> ObjectReference {
    let namespace = posture.namespace().unwrap_or_default();
    let workload = &posture.spec.workload;
    let api_version = match workload.kind.as_str() {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => Some("apps/v1"),
        "Job" | "CronJob" => Some("batch/v1"),
        "Pod" | "ReplicationController" => Some("v1"),
        _ => None,
    };
    match api_version {
        Some(api_version) => ObjectReference {
            api_version: Some(api_version.to_string()),
            kind: Some(workload.kind.clone()),
            name: Some(workload.name.clone()),
            namespace: Some(namespace),
            uid: workload.uid.clone(),
            ..Default::default()
        },
        None => posture.object_ref(&()),
    }
}

/// Runs the verifier until `stop`: stands by until this replica holds the Lease, verifies
/// while it does.
pub async fn run(
    client: Client,
    app: Arc<App>,
    postures: Store<RuntimePosture>,
    namespace: String,
    args: VerifierArgs,
    mut stop: watch::Receiver<bool>,
) {
    if args.lease.is_empty() {
        tracing::info!("no verifier Lease: running workloads are not verified again");
        return;
    }
    let lease = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &args.lease)
            .with_namespace(&namespace)
            .with_identity(&args.identity)
            .with_duration(15)
            .with_grace(5)
            .with_field_manager(format!("{FIELD_MANAGER}-lease"))
            .build()
            .await;
        match built {
            Ok(lease) => break lease,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up the verifier Lease; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    };
    let (mut leader, lease_task) = lease.watch().await;
    let events = EventPublisher::new(client.clone(), FIELD_MANAGER, args.identity.clone());
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            became = leader.wait_for(|l| *l) => if became.is_err() { break },
        }
        tracing::info!(identity = %args.identity, "holding the verifier Lease: verifying running workloads");
        app.metrics.verifier_leader.set(1);
        let mut lost = leader.clone();
        tokio::select! {
            _ = verify_while_leading(&client, &app, &postures, &events, &args) => {}
            _ = lost.wait_for(|l| !*l) => tracing::warn!("lost the verifier Lease; standing by"),
            _ = stop.wait_for(|s| *s) => {}
        }
        app.metrics.verifier_leader.set(0);
        if *stop.borrow() {
            break;
        }
    }
    // Dropping the receiver makes the lease task release the Lease for a standby.
    drop(leader);
    let _ = lease_task.await;
}

async fn verify_while_leading(
    client: &Client,
    app: &App,
    postures: &Store<RuntimePosture>,
    events: &EventPublisher,
    args: &VerifierArgs,
) {
    let retry = Duration::from_secs(args.retry_seconds);
    let pace = Duration::from_secs(1) / args.rate;
    // What this replica verified, by posture; a new leader starts empty (one pass over every
    // workload, through the shared cache).
    let mut verified: HashMap<ObjectRef<RuntimePosture>, Verified> = HashMap::new();
    let mut reports = Reports::new(args.policy_reports);
    loop {
        let now = Instant::now();
        let set = app.policies.load_full();
        let all: Vec<Governing<'_>> = set.policies.iter().map(|p| p.governing()).collect();
        let mut next_due: Option<Instant> = None;
        let mut work = Vec::new();
        let current = postures.state();
        let live: std::collections::HashSet<_> = current
            .iter()
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect();
        verified.retain(|key, _| live.contains(key));
        for posture in current {
            let ns = posture.namespace().unwrap_or_default();
            let labels = app.namespace_labels(&ns).await;
            let applying = governing(&all, &ns, labels.as_ref(), &app.zastava_namespace);
            let inputs = Inputs {
                images: posture
                    .status
                    .iter()
                    .flat_map(|s| &s.images)
                    .filter_map(|i| Some((i.reference.clone(), i.digest.clone()?)))
                    .collect(),
                policies: applying
                    .iter()
                    .map(|p| {
                        let generation = set.get(p.name).map_or(0, |a| a.generation);
                        format!("{}@{generation}", p.name)
                    })
                    .collect(),
            };
            let period = applying
                .iter()
                .map(|p| p.spec.runtime.reverify_interval_seconds)
                .min()
                .map_or(Duration::MAX, |s| Duration::from_secs(s.into()));
            let key = ObjectRef::from_obj(posture.as_ref());
            let last = verified.get(&key);
            match due(last, &inputs, now, retry, period) {
                Some(trigger) => work.push((posture, inputs, trigger, applying.is_empty())),
                None => {
                    // When it falls due by time (never, for an ungoverned one).
                    let at = last.and_then(|last| {
                        last.at
                            .checked_add(if last.incomplete { retry } else { period })
                    });
                    if let Some(at) = at {
                        next_due = Some(next_due.map_or(at, |n| n.min(at)));
                    }
                }
            }
        }
        drop(all);
        // Workloads running the same images one after another: their lookups share one cache
        // entry, even one that lives only the short negative TTL (an unsigned image).
        work.sort_by(|a, b| a.1.images.cmp(&b.1.images));
        for (posture, inputs, trigger, ungoverned) in work {
            let key = ObjectRef::from_obj(posture.as_ref());
            let incomplete = if ungoverned || inputs.images.is_empty() {
                // Nothing governs it (or nothing runs yet): no verdicts to give.
                false
            } else {
                let started = std::time::Instant::now();
                let outcome = verify(client, app, &posture, &inputs, events).await;
                app.metrics
                    .reverification_duration
                    .observe(started.elapsed().as_secs_f64());
                app.metrics
                    .reverifications
                    .with_label_values(&[trigger.as_str(), outcome.as_str()])
                    .inc();
                tracing::debug!(posture = %key, trigger = trigger.as_str(), result = outcome.as_str(), "verified");
                tokio::time::sleep(pace.saturating_sub(started.elapsed())).await;
                outcome != Outcome::Verified
            };
            let at = Instant::now();
            if let Some(again) = at.checked_add(retry).filter(|_| incomplete) {
                next_due = Some(next_due.map_or(again, |n| n.min(again)));
            }
            verified.insert(
                key,
                Verified {
                    inputs,
                    at,
                    incomplete,
                },
            );
        }
        let reports_due = reports.sync(client, app, postures).await;
        if let Some(at) = reports_due {
            next_due = Some(next_due.map_or(at, |n| n.min(at)));
        }
        app.metrics.runtime_policy_violations.set(
            postures
                .state()
                .iter()
                .flat_map(|p| p.status.iter().flat_map(|s| &s.images))
                .filter(|i| i.verdict == Some(Verdict::Fail) && !i.admitted_fail_open)
                .count() as i64,
        );
        // Woken by a policy or posture change, or when the next workload is due.
        let wait = next_due.map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            _ = app.verifier_wake.notified() => {
                // Observers write their postures often: a pass over every workload per change
                // would be work for nothing; changes of the next moment come with this one.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ = tokio::time::sleep(wait.max(Duration::from_millis(100))) => {}
        }
    }
}

/// The PolicyReports this replica writes: whether the API exists, and a fingerprint of what
/// was last written per namespace (a report is written again only when it changes).
struct Reports {
    mode: ReportMode,
    /// Whether the API exists, and when that was last asked.
    available: Option<(bool, Instant)>,
    written: HashMap<String, u64>,
    last_sync: Option<Instant>,
}

/// How often `auto` asks whether the PolicyReport API exists.
const REPORT_API_RECHECK: Duration = Duration::from_secs(60);
/// Reports are rebuilt at most this often (each is a pass over every posture).
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

impl Reports {
    fn new(mode: ReportMode) -> Self {
        Self {
            mode,
            available: None,
            written: HashMap::new(),
            last_sync: None,
        }
    }

    /// Writes the reports that changed; returns when to come back (a rebuild held back by
    /// [`REPORT_INTERVAL`], or the next check of the API).
    async fn sync(
        &mut self,
        client: &Client,
        app: &App,
        postures: &Store<RuntimePosture>,
    ) -> Option<Instant> {
        let now = Instant::now();
        let enabled = match self.mode {
            ReportMode::Off => return None,
            ReportMode::On => true,
            ReportMode::Auto => match self.available {
                Some((known, at)) if now < at + REPORT_API_RECHECK => known,
                _ => {
                    let known = client
                        .list_api_group_resources(policy_reports::API_VERSION)
                        .await
                        .is_ok_and(|list| list.resources.iter().any(|r| r.name == "policyreports"));
                    if self.available.map(|(k, _)| k) != Some(known) {
                        tracing::info!(available = known, "the wg-policy PolicyReport API");
                    }
                    self.available = Some((known, now));
                    known
                }
            },
        };
        let recheck = (self.mode == ReportMode::Auto).then(|| now + REPORT_API_RECHECK);
        if !enabled {
            return recheck;
        }
        if let Some(last) = self.last_sync.filter(|last| now < *last + REPORT_INTERVAL) {
            return Some(last + REPORT_INTERVAL);
        }
        self.last_sync = Some(now);
        let set = app.policies.load_full();
        let all: Vec<Governing<'_>> = set.policies.iter().map(|p| p.governing()).collect();
        let state = postures.state();
        let mut by_namespace: BTreeMap<String, Vec<&RuntimePosture>> = BTreeMap::new();
        for posture in &state {
            by_namespace
                .entry(posture.namespace().unwrap_or_default())
                .or_default()
                .push(posture.as_ref());
        }
        let resource = kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
            "policyreports",
        );
        let mut seen = BTreeSet::new();
        for (ns, in_namespace) in &by_namespace {
            let labels = app.namespace_labels(ns).await;
            let policies: BTreeMap<String, PolicyMode> =
                governing(&all, ns, labels.as_ref(), &app.zastava_namespace)
                    .iter()
                    .map(|p| (p.name.to_string(), p.spec.mode))
                    .collect();
            let Some(report) = policy_reports::report(ns, in_namespace, &policies) else {
                continue;
            };
            seen.insert(ns.clone());
            let fingerprint = {
                let mut hasher = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(&report.to_string(), &mut hasher);
                std::hash::Hasher::finish(&hasher)
            };
            if self.written.get(ns) == Some(&fingerprint) {
                continue;
            }
            let api: Api<kube::api::DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &resource);
            match api
                .patch(
                    REPORT_NAME,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&report),
                )
                .await
            {
                Ok(_) => {
                    self.written.insert(ns.clone(), fingerprint);
                }
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "cannot write the PolicyReport")
                }
            }
        }
        // A namespace nothing governs any more (or whose workloads are gone) loses its report.
        let gone: Vec<String> = self
            .written
            .keys()
            .filter(|ns| !seen.contains(*ns))
            .cloned()
            .collect();
        for ns in gone {
            let api: Api<kube::api::DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &resource);
            match api.delete(REPORT_NAME, &Default::default()).await {
                Ok(_) => {
                    self.written.remove(&ns);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.written.remove(&ns);
                }
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "cannot remove the PolicyReport")
                }
            }
        }
        recheck
    }
}

/// How one verification went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Every image judged.
    Verified,
    /// Some image could not be (registry or backend down).
    Incomplete,
    /// The API refused the status write or the workload could not be built.
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::Incomplete => "incomplete",
            Outcome::Error => "error",
        }
    }
}

async fn verify(
    client: &Client,
    app: &App,
    posture: &RuntimePosture,
    inputs: &Inputs,
    events: &EventPublisher,
) -> Outcome {
    let ns = posture.namespace().unwrap_or_default();
    let name = posture.name_any();
    let status = posture.status.clone().unwrap_or_default();
    // The pull Secrets of one of its pods: the registry is asked with the credentials the
    // kubelet pulled with.
    let pod = status
        .nodes
        .iter()
        .flat_map(|n| &n.containers)
        .map(|c| c.pod.clone())
        .next();
    let pull_secrets: Vec<serde_json::Value> = match &pod {
        Some(pod) => match Api::<Pod>::namespaced(client.clone(), &ns)
            .get_opt(pod)
            .await
        {
            Ok(Some(pod)) => pod
                .spec
                .and_then(|s| s.image_pull_secrets)
                .unwrap_or_default()
                .into_iter()
                .map(|s| json!({"name": s.name}))
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(posture = %name, namespace = %ns, error = %e, "cannot read a pod of the workload for its pull Secrets; verifying anonymously");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let judged: Vec<(String, String)> = inputs
        .images
        .iter()
        .filter_map(|(reference, digest)| Some((reference.clone(), running(reference, digest)?)))
        .collect();
    let containers: Vec<serde_json::Value> = judged
        .iter()
        .enumerate()
        .map(|(i, (_, image))| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    let object = json!({
        "kind": "Pod",
        "metadata": {"name": pod.unwrap_or_else(|| name.clone()), "namespace": ns},
        "spec": {"containers": containers, "imagePullSecrets": pull_secrets},
    });
    let mut workload = match Workload::from_object(object) {
        Ok(workload) => workload,
        Err(e) => {
            tracing::warn!(posture = %name, namespace = %ns, error = %e, "cannot judge the workload's images");
            return Outcome::Error;
        }
    };
    workload.pinned_for_lookup = judged
        .iter()
        .filter(|(reference, image)| reference != image)
        .map(|(_, image)| image.clone())
        .collect();
    let deadline = Instant::now() + app.decision_deadline;
    let judgement = app
        .judge(&format!("verify/{ns}/{name}"), &ns, &workload, deadline)
        .await;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let written = entries(&judged, &judgement.evaluation, &status.images, &now);
    let outcome = if judgement.evaluation.unverified.is_empty() {
        Outcome::Verified
    } else {
        Outcome::Incomplete
    };
    // Only what changed is written: a retry that learns nothing new leaves the posture alone.
    let unchanged = written.iter().all(|w| {
        status
            .images
            .iter()
            .find(|p| p.reference == w.reference)
            .is_some_and(|p| {
                ImagePosture {
                    checked_at: None,
                    ..verdict_fields(p)
                } == ImagePosture {
                    checked_at: None,
                    ..w.clone()
                }
            })
    });
    if unchanged && outcome == Outcome::Incomplete {
        return outcome;
    }
    let api: Api<RuntimePosture> = Api::namespaced(client.clone(), &ns);
    let patch = json!({
        "apiVersion": RuntimePosture::api_version(&()),
        "kind": "RuntimePosture",
        "status": {"images": written},
    });
    if let Err(e) = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        tracing::warn!(posture = %name, namespace = %ns, error = %e, "cannot write the verdicts");
        return Outcome::Error;
    }
    for entry in &written {
        let before = status
            .images
            .iter()
            .find(|p| p.reference == entry.reference);
        if let Some((warning, reason, note)) = verdict_event(before, entry) {
            let regarding = event_subject(posture);
            if let Err(e) = events
                .publish(regarding, warning, reason, "Verify", &note)
                .await
            {
                tracing::warn!(posture = %name, namespace = %ns, error = %e, "could not record Event");
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use zastava_crds::contracts::{AdmissionDecision, Decision};
    use zastava_crds::posture::WorkloadRef;

    fn inputs(images: &[(&str, &str)], policies: &[&str]) -> Inputs {
        Inputs {
            images: images
                .iter()
                .map(|(r, d)| (r.to_string(), d.to_string()))
                .collect(),
            policies: policies.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_workload_is_due_when_what_it_is_judged_on_changes_or_its_time_comes() {
        let t0 = Instant::now();
        let retry = Duration::from_secs(15);
        let period = Duration::from_secs(3600);
        let base = inputs(&[("r/app:1", "sha256:a")], &["p@1"]);
        assert_eq!(due(None, &base, t0, retry, period), Some(Trigger::New));
        let last = Verified {
            inputs: base.clone(),
            at: t0,
            incomplete: false,
        };
        assert_eq!(due(Some(&last), &base, t0 + retry, retry, period), None);
        assert_eq!(
            due(
                Some(&last),
                &inputs(&[("r/app:1", "sha256:a")], &["p@2"]),
                t0,
                retry,
                period
            ),
            Some(Trigger::Policy)
        );
        assert_eq!(
            due(
                Some(&last),
                &inputs(&[("r/app:1", "sha256:a")], &["p@1", "q@1"]),
                t0,
                retry,
                period
            ),
            Some(Trigger::Policy)
        );
        assert_eq!(
            due(
                Some(&last),
                &inputs(&[("r/app:1", "sha256:b")], &["p@1"]),
                t0,
                retry,
                period
            ),
            Some(Trigger::Digest)
        );
        assert_eq!(
            due(Some(&last), &base, t0 + period, retry, period),
            Some(Trigger::Period)
        );
        // Ungoverned: never due by time, whatever the clock says.
        assert_eq!(
            due(Some(&last), &base, t0 + period, retry, Duration::MAX),
            None
        );
        let incomplete = Verified {
            incomplete: true,
            ..last
        };
        assert_eq!(
            due(
                Some(&incomplete),
                &base,
                t0 + Duration::from_secs(14),
                retry,
                period
            ),
            None
        );
        assert_eq!(
            due(Some(&incomplete), &base, t0 + retry, retry, period),
            Some(Trigger::Retry)
        );
    }

    #[test]
    fn the_running_digest_is_judged_under_the_tag_the_spec_names() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            running("10.0.0.1:5000/app:v1", &digest).unwrap(),
            format!("10.0.0.1:5000/app:v1@{digest}")
        );
        // No tag is `latest`, as the runtime pulls it (a banned `latest` still applies).
        assert_eq!(
            running("busybox", &digest).unwrap(),
            format!("docker.io/library/busybox:latest@{digest}")
        );
        let pinned = format!("r.io/app@sha256:{}", "b".repeat(64));
        assert_eq!(running(&pinned, &digest).unwrap(), pinned);
        assert_eq!(running("UPPER CASE", &digest), None);
    }

    fn decision(name: &str, verdict: Verdict, reasons: &[&str]) -> ImageDecision {
        ImageDecision {
            name: name.into(),
            resolved: None,
            signed: Some(verdict == Verdict::Pass),
            has_sbom_referrers: Some(true),
            policy_verdict: verdict,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            rekor: None,
        }
    }

    fn evaluation(images: Vec<ImageDecision>, unverified: &[(&str, FailMode)]) -> Evaluation {
        Evaluation {
            decision: AdmissionDecision {
                schema_version: String::new(),
                admission_id: String::new(),
                namespace: "team".into(),
                pod_spec_digest: String::new(),
                images,
                decision: Decision::Allow,
                ttl_seconds: 0,
            },
            warnings: Vec::new(),
            fail_open: false,
            fail_closed: false,
            not_checked: Vec::new(),
            unverified: unverified
                .iter()
                .map(|(i, m)| (i.to_string(), *m))
                .collect(),
        }
    }

    #[test]
    fn verdicts_are_written_and_an_outage_never_erases_a_real_one() {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let images = vec![
            ("r/good:1".to_string(), "r/good:1@sha256:g".to_string()),
            ("r/bad:1".to_string(), "r/bad:1@sha256:b".to_string()),
        ];
        let judged = evaluation(
            vec![
                decision("r/good:1@sha256:g", Verdict::Pass, &[]),
                decision("r/bad:1@sha256:b", Verdict::Fail, &["p: tag `1` is banned"]),
            ],
            &[],
        );
        let written = entries(&images, &judged, &[], &now);
        assert_eq!(written[0].verdict, Some(Verdict::Pass));
        assert_eq!(written[0].signed, Some(true));
        assert_eq!(written[1].verdict, Some(Verdict::Fail));
        assert_eq!(written[1].reasons, ["p: tag `1` is banned"]);
        assert!(written
            .iter()
            .all(|w| w.checked_at.is_some() && w.digest.is_none()));

        // The registry goes away in a fail-open namespace: a verdict known stays; an image
        // never verified is admitted fail-open, with why.
        let down = evaluation(
            vec![
                decision("r/good:1@sha256:g", Verdict::Warn, &["p: verification failed: registry r: unreachable (fail-open namespace: admitted)"]),
                decision("r/bad:1@sha256:b", Verdict::Warn, &["p: verification failed: registry r: unreachable (fail-open namespace: admitted)"]),
            ],
            &[("r/good:1@sha256:g", FailMode::FailOpen), ("r/bad:1@sha256:b", FailMode::FailOpen)],
        );
        let kept = entries(&images, &down, &written[..1], &now);
        assert_eq!(kept[0], verdict_fields(&written[0]));
        assert!(kept[1].admitted_fail_open);
        assert_eq!(kept[1].verdict, None);
        assert!(
            kept[1].reasons[0].contains("unreachable"),
            "{:?}",
            kept[1].reasons
        );
        // Fail-closed and never verified: no verdict, the reason, not fail-open.
        let closed = evaluation(
            down.decision.images.clone(),
            &[("r/bad:1@sha256:b", FailMode::FailClosed)],
        );
        let entry = &entries(&images[1..], &closed, &[], &now)[0];
        assert!(!entry.admitted_fail_open && entry.verdict.is_none());
    }

    #[test]
    fn events_name_what_changed() {
        let entry = |verdict: Option<Verdict>, open: bool| ImagePosture {
            reference: "r/app:1".into(),
            verdict,
            reasons: vec!["p: why".into()],
            admitted_fail_open: open,
            ..ImagePosture::default()
        };
        let pass = entry(Some(Verdict::Pass), false);
        let fail = entry(Some(Verdict::Fail), false);
        let open = entry(None, true);
        assert_eq!(verdict_event(None, &pass), None);
        assert_eq!(verdict_event(Some(&pass), &pass), None);
        let (warning, reason, note) = verdict_event(Some(&pass), &fail).unwrap();
        assert!(warning);
        assert_eq!(reason, "PolicyViolation");
        assert_eq!(note, "r/app:1 fails today's policies: p: why");
        assert_eq!(verdict_event(None, &open).unwrap().1, "AdmittedFailOpen");
        let (warning, reason, _) = verdict_event(Some(&open), &pass).unwrap();
        assert!(!warning);
        assert_eq!(reason, "ImageVerified");
        assert_eq!(
            verdict_event(Some(&fail), &pass).unwrap().1,
            "ImageVerified"
        );
    }

    #[test]
    fn events_regard_the_workload_with_its_api_version_or_else_the_posture() {
        let posture = |kind: &str| {
            let mut p = RuntimePosture::new(
                "deployment-web",
                zastava_crds::RuntimePostureSpec {
                    workload: WorkloadRef {
                        kind: kind.into(),
                        name: "web".into(),
                        uid: Some("u1".into()),
                    },
                },
            );
            p.metadata.namespace = Some("team".into());
            p
        };
        let reference = event_subject(&posture("Deployment"));
        assert_eq!(reference.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(reference.kind.as_deref(), Some("Deployment"));
        assert_eq!(reference.namespace.as_deref(), Some("team"));
        assert_eq!(reference.uid.as_deref(), Some("u1"));
        assert_eq!(
            event_subject(&posture("CronJob")).api_version.as_deref(),
            Some("batch/v1")
        );
        let custom = event_subject(&posture("Rollout"));
        assert_eq!(custom.kind.as_deref(), Some("RuntimePosture"));
        assert_eq!(custom.name.as_deref(), Some("deployment-web"));
        assert_eq!(custom.namespace.as_deref(), Some("team"));
    }
}
