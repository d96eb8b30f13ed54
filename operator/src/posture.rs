//! The `RuntimePosture` reconciler: the observers write one `status.nodes[]` entry each; the
//! operator drops the entries of nodes that are gone and folds what remains into the summary
//! the printer columns show (`observedContainers`, `driftFindings`) and the kstatus
//! conditions `Ready`, `Drifted` and `Compliant`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use zastava_crds::conditions::{settle, DesiredCondition};
use zastava_crds::posture::{ImagePosture, NodeObservation, RuntimePostureStatus, Verdict};
use zastava_crds::RuntimePosture;

use crate::reconcile::Context;
use crate::{Error, FIELD_MANAGER};

const KIND: &str = "RuntimePosture";
/// Nodes come and go without touching the posture: look again now and then.
const RESYNC: Duration = Duration::from_secs(60);
const RETRY_ERROR: Duration = Duration::from_secs(10);

/// What the operator writes into a posture's status.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub observed_containers: u32,
    pub drift_findings: u32,
    pub conditions: Vec<DesiredCondition>,
    /// The images the observed containers run, one per reference (sorted).
    pub images: Vec<ImagePosture>,
    /// Indexes into `status.nodes` of entries whose node no longer exists.
    pub stale_nodes: Vec<usize>,
}

/// Folds the per-node observations of `status` into the summary; `live_nodes` are the nodes
/// that exist now.
pub fn summarize(status: &RuntimePostureStatus, live_nodes: &BTreeSet<String>) -> Summary {
    let stale_nodes: Vec<usize> = status
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| !live_nodes.contains(&n.node))
        .map(|(i, _)| i)
        .collect();
    let live: Vec<_> = status
        .nodes
        .iter()
        .filter(|n| live_nodes.contains(&n.node))
        .collect();
    let observed_containers = live.iter().map(|n| n.containers.len() as u32).sum();
    let drift: Vec<_> = live.iter().flat_map(|n| n.drift.iter()).collect();
    // The verifier's verdicts (webhook/src/verifier.rs) on what runs today.
    let violations: Vec<String> = status
        .images
        .iter()
        .filter(|i| i.verdict == Some(Verdict::Fail) && !i.admitted_fail_open)
        .map(|i| {
            let reasons = i.reasons.iter().take(3).cloned().collect::<Vec<_>>();
            format!("{} ({})", i.reference, reasons.join("; "))
        })
        .collect();
    let unverified: Vec<&str> = status
        .images
        .iter()
        .filter(|i| i.admitted_fail_open)
        .map(|i| i.reference.as_str())
        .collect();
    let ready = if live.is_empty() {
        DesiredCondition::new(
            "Ready",
            false,
            "AwaitingObservation",
            "no node observer has reported this workload yet",
        )
    } else {
        let nodes: Vec<&str> = live.iter().map(|n| n.node.as_str()).collect();
        DesiredCondition::new(
            "Ready",
            true,
            "Observed",
            format!(
                "{observed_containers} container(s) observed on {}",
                nodes.join(", ")
            ),
        )
    };
    let drifted = if drift.is_empty() {
        DesiredCondition::new(
            "Drifted",
            false,
            "NoDrift",
            "what runs matches the baseline",
        )
    } else {
        let first: Vec<String> = drift
            .iter()
            .take(3)
            .map(|d| {
                format!(
                    "{} {} in {}/{}",
                    d.kind.as_str(),
                    d.subject,
                    d.pod,
                    d.container
                )
            })
            .collect();
        let more = drift.len().saturating_sub(first.len());
        DesiredCondition::new(
            "Drifted",
            true,
            "DriftDetected",
            format!(
                "{} finding(s): {}{}",
                drift.len(),
                first.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ),
        )
    };
    // A policy violation first (it is what to act on), then an admission nobody could verify
    // yet, then drift.
    let compliant = if !violations.is_empty() {
        DesiredCondition::new(
            "Compliant",
            false,
            "PolicyViolation",
            format!("images failing today's policies: {}", violations.join("; ")),
        )
    } else if !unverified.is_empty() {
        DesiredCondition::new(
            "Compliant",
            false,
            "AdmittedFailOpen",
            format!(
                "admitted in a fail-open namespace and not verified yet (the registry or backend has not answered since): {}",
                unverified.join(", ")
            ),
        )
    } else if !drift.is_empty() {
        DesiredCondition::new(
            "Compliant",
            false,
            "Drifted",
            "runtime drift detected (see Drifted)",
        )
    } else {
        DesiredCondition::new(
            "Compliant",
            true,
            "Compliant",
            "no drift and no image failing policy",
        )
    };
    Summary {
        observed_containers,
        drift_findings: drift.len() as u32,
        conditions: vec![ready, drifted, compliant],
        images: running_images(&live),
        stale_nodes,
    }
}

/// One entry per image reference the containers of `nodes` run, with its digest; a reference
/// running as several digests (a tag moved during a rollout) has none, and says which.
fn running_images(nodes: &[&NodeObservation]) -> Vec<ImagePosture> {
    let mut digests: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in nodes.iter().flat_map(|n| &n.containers) {
        let seen = digests.entry(c.image_ref.as_str()).or_default();
        if let Some(d) = &c.image_digest {
            seen.insert(d.as_str());
        }
    }
    digests
        .into_iter()
        .map(|(reference, digests)| {
            let mut image = ImagePosture {
                reference: reference.to_string(),
                ..ImagePosture::default()
            };
            match digests.len() {
                0 => {}
                1 => image.digest = digests.first().map(|d| d.to_string()),
                _ => image.digests = digests.into_iter().map(String::from).collect(),
            }
            image
        })
        .collect()
}

pub async fn reconcile(posture: Arc<RuntimePosture>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let name = posture.name_any();
    let namespace = posture.namespace().unwrap_or_default();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let live_nodes: BTreeSet<String> = nodes
        .list_metadata(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let status = posture.status.clone().unwrap_or_default();
    let summary = summarize(&status, &live_nodes);
    let api: Api<RuntimePosture> = Api::namespaced(ctx.client.clone(), &namespace);

    // An observer owns its node's entry; when its node is gone nobody else will remove it, so
    // the operator writes the list without it, guarded by the resourceVersion it read (a
    // concurrent observer write makes this a conflict and the reconcile is retried).
    if !summary.stale_nodes.is_empty() {
        let remaining: Vec<_> = status
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !summary.stale_nodes.contains(i))
            .map(|(_, n)| n)
            .collect();
        let patch = json!({
            "metadata": {"resourceVersion": posture.resource_version()},
            "status": {"nodes": remaining},
        });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!(posture = %name, %namespace, removed = summary.stale_nodes.len(), "dropped observations of nodes that are gone");
    }

    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = posture.metadata.generation;
    let patch = json!({
        "apiVersion": RuntimePosture::api_version(&()),
        "kind": KIND,
        "status": {
            "observedGeneration": generation,
            "observedContainers": summary.observed_containers,
            "driftFindings": summary.drift_findings,
            "images": summary.images,
            "conditions": settle(&status.conditions, &summary.conditions, generation, &now),
        },
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics
        .reconciliations
        .with_label_values(&[KIND, "ok"])
        .inc();
    ctx.metrics
        .reconcile_duration
        .with_label_values(&[KIND])
        .observe(started.elapsed().as_secs_f64());
    Ok(Action::requeue(RESYNC))
}

pub fn error_policy(posture: Arc<RuntimePosture>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(posture = %posture.name_any(), %error, "posture reconcile failed; retrying");
    ctx.metrics
        .reconciliations
        .with_label_values(&[KIND, "error"])
        .inc();
    Action::requeue(RETRY_ERROR)
}

/// Runs the posture controller until `shutdown` resolves.
pub async fn run_posture_controller(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<RuntimePosture> = Api::all(ctx.client.clone());
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!(error = %e, "posture controller");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use zastava_crds::posture::{DriftFinding, DriftKind, Evidence, ObservedContainer};

    fn container(pod: &str) -> ObservedContainer {
        ObservedContainer {
            pod: pod.into(),
            container: "app".into(),
            container_id: format!("containerd://{pod}"),
            image_ref: "127.0.0.1:5000/app:1".into(),
            ..ObservedContainer::default()
        }
    }

    fn drift(subject: &str) -> DriftFinding {
        DriftFinding {
            kind: DriftKind::Process,
            pod: "web-1".into(),
            container: "app".into(),
            subject: subject.into(),
            sha256: None,
            evidence: vec![Evidence {
                signal: "procfs.exe".into(),
                value: subject.into(),
            }],
            first_seen: None,
        }
    }

    fn node(name: &str, containers: usize, findings: &[&str]) -> NodeObservation {
        NodeObservation {
            node: name.into(),
            observed_at: None,
            inventory: None,
            containers: (0..containers)
                .map(|i| container(&format!("web-{i}")))
                .collect(),
            drift: findings.iter().map(|s| drift(s)).collect(),
            processes: Vec::new(),
        }
    }

    fn live(nodes: &[&str]) -> BTreeSet<String> {
        nodes.iter().map(|s| s.to_string()).collect()
    }

    fn condition<'a>(s: &'a Summary, type_: &str) -> &'a DesiredCondition {
        s.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn nothing_observed_is_not_ready_yet() {
        let s = summarize(&RuntimePostureStatus::default(), &live(&["n1"]));
        assert_eq!((s.observed_containers, s.drift_findings), (0, 0));
        let ready = condition(&s, "Ready");
        assert!(!ready.status);
        assert_eq!(ready.reason, "AwaitingObservation");
        assert!(condition(&s, "Compliant").status);
    }

    #[test]
    fn nodes_are_summed_and_gone_nodes_dropped() {
        let status = RuntimePostureStatus {
            nodes: vec![
                node("n1", 2, &[]),
                node("gone", 5, &["/tmp/x"]),
                node("n2", 1, &[]),
            ],
            ..RuntimePostureStatus::default()
        };
        let s = summarize(&status, &live(&["n1", "n2"]));
        assert_eq!(s.stale_nodes, [1]);
        assert_eq!((s.observed_containers, s.drift_findings), (3, 0));
        assert_eq!(
            condition(&s, "Ready").message,
            "3 container(s) observed on n1, n2"
        );
        assert!(!condition(&s, "Drifted").status);
        assert!(condition(&s, "Compliant").status);
        // The images of the live nodes only.
        assert_eq!(
            s.images,
            [ImagePosture {
                reference: "127.0.0.1:5000/app:1".into(),
                ..ImagePosture::default()
            }]
        );
    }

    #[test]
    fn images_by_reference_with_their_digest() {
        let with = |reference: &str, digest: &str| ObservedContainer {
            image_ref: reference.into(),
            image_digest: Some(digest.into()),
            ..container("w")
        };
        let mut n1 = node("n1", 0, &[]);
        n1.containers = vec![with("r/app:1", "sha256:a"), with("r/side:2", "sha256:s")];
        let mut n2 = node("n2", 0, &[]);
        n2.containers = vec![with("r/app:1", "sha256:b"), with("r/side:2", "sha256:s")];
        let status = RuntimePostureStatus {
            nodes: vec![n1, n2],
            ..RuntimePostureStatus::default()
        };
        let images = summarize(&status, &live(&["n1", "n2"])).images;
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].reference, "r/app:1");
        assert_eq!(images[0].digest, None);
        assert_eq!(images[0].digests, ["sha256:a", "sha256:b"]);
        assert_eq!(images[1].reference, "r/side:2");
        assert_eq!(images[1].digest.as_deref(), Some("sha256:s"));
        assert!(images[1].digests.is_empty());
        // The operator writes what runs, never a verdict (the verifier's fields).
        assert!(images
            .iter()
            .all(|i| i.verdict.is_none() && i.reasons.is_empty()));
    }

    #[test]
    fn drift_makes_the_workload_drifted_and_not_compliant() {
        let status = RuntimePostureStatus {
            nodes: vec![node("n1", 1, &["/tmp/a", "/tmp/b", "/tmp/c", "/tmp/d"])],
            ..RuntimePostureStatus::default()
        };
        let s = summarize(&status, &live(&["n1"]));
        assert_eq!(s.drift_findings, 4);
        let drifted = condition(&s, "Drifted");
        assert!(drifted.status);
        assert_eq!(drifted.reason, "DriftDetected");
        assert_eq!(
            drifted.message,
            "4 finding(s): process /tmp/a in web-1/app; process /tmp/b in web-1/app; process /tmp/c in web-1/app; and 1 more"
        );
        let compliant = condition(&s, "Compliant");
        assert!(!compliant.status);
        assert_eq!(compliant.reason, "Drifted");
    }

    #[test]
    fn a_policy_violation_outranks_a_fail_open_admission_which_outranks_drift() {
        let image = |reference: &str, verdict: Option<Verdict>, fail_open: bool| ImagePosture {
            reference: reference.into(),
            verdict,
            reasons: vec![format!("p: {reference} reason")],
            admitted_fail_open: fail_open,
            ..ImagePosture::default()
        };
        let compliant = |images: Vec<ImagePosture>, drift: usize| {
            let status = RuntimePostureStatus {
                nodes: vec![node("n1", 1, &["/tmp/x"; 1][..drift])],
                images,
                ..RuntimePostureStatus::default()
            };
            condition(&summarize(&status, &live(&["n1"])), "Compliant").clone()
        };
        let failing = image("r/bad:1", Some(Verdict::Fail), false);
        let unverified = image("r/open:1", None, true);
        let passing = image("r/good:1", Some(Verdict::Pass), false);

        let c = compliant(
            vec![failing.clone(), unverified.clone(), passing.clone()],
            1,
        );
        assert!(!c.status);
        assert_eq!(c.reason, "PolicyViolation");
        assert_eq!(
            c.message,
            "images failing today's policies: r/bad:1 (p: r/bad:1 reason)"
        );
        let c = compliant(vec![unverified, passing.clone()], 1);
        assert_eq!(c.reason, "AdmittedFailOpen");
        assert!(c.message.ends_with(": r/open:1"), "{}", c.message);
        assert_eq!(compliant(vec![passing.clone()], 1).reason, "Drifted");
        let c = compliant(vec![passing], 0);
        assert!(c.status);
        assert_eq!(c.reason, "Compliant");
    }
}
