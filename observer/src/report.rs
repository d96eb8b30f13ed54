//! Reporting what a node saw: this node's entry of each workload's `RuntimePosture` status,
//! Kubernetes Events for drift, and runtime events (the `zastava.runtime.event@v1.0`
//! envelope) in the logs.
//!
//! Pure: building a [`NodeObservation`], deciding whether it changed, keeping drift findings
//! and their `firstSeen` across observations, the apply bodies and the event texts. The shell
//! ([`Reporter`]) only sends them: every write is a server-side apply, the posture's spec with
//! the field manager [`FIELD_MANAGER`] and this node's status entry with a manager of its own
//! ([`status_field_manager`]), so nodes never overwrite each other.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::{json, Value};
use zastava_crds::canonical::canonical_digest;
use zastava_crds::posture::{
    DriftFinding, DriftKind, EntryTraceStep, Evidence, Inventory, LoadedLibrary, NodeObservation,
    ObservedContainer, ObservedFile, ProcessPosture,
};
use zastava_crds::RuntimePosture;
use zastava_process::events::{truncate, EventPublisher, MAX_NOTE_BYTES};

use crate::daemon::workload::Workload;
use crate::entrytrace::{EntryTrace, TraceStep};
use crate::sample::ProcessSample;

/// The field manager of the posture objects the observers create (the same on every node:
/// they all apply the same spec).
pub const FIELD_MANAGER: &str = "zastava-observer";
/// `apiVersion` of the Zastava resources.
const API_VERSION: &str = "zastava.stellaops.io/v1alpha1";

/// The field manager of this node's entry of `status.nodes`.
pub fn status_field_manager(node: &str) -> String {
    format!("{FIELD_MANAGER}-{node}")
}

/// Now, to the second: what the API server keeps of a `Time`, so a time read back compares
/// equal to the one written.
pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A CRI time (nanoseconds since the epoch) to the second.
pub fn time_from_nanos(nanos: i64) -> Option<Time> {
    Timestamp::from_second(nanos.div_euclid(1_000_000_000))
        .ok()
        .map(Time)
}

/// One container's part of a node's observation.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerReport {
    pub observed: ObservedContainer,
    pub drift: Vec<DriftFinding>,
    /// The latest sample of its main process, when one succeeded.
    pub process: Option<ProcessPosture>,
}

/// What a sample of a container's main process and the trace of its entrypoint say, for the
/// status: at most `max_libs` libraries (their total is given when there are more: a posture
/// is one object, and the API server caps objects at about 1.5 MB).
pub fn process_posture(
    observed: &ObservedContainer,
    sample: &ProcessSample,
    trace: &EntryTrace,
    max_libs: usize,
) -> ProcessPosture {
    let libs = &sample.loaded_libs;
    ProcessPosture {
        pod: observed.pod.clone(),
        container: observed.container.clone(),
        container_id: observed.container_id.clone(),
        image_digest: observed.image_digest.clone(),
        pid: sample.pid,
        executable: sample.executable.as_ref().map(|e| ObservedFile {
            path: e.path.clone(),
            sha256: e.sha256.clone(),
            build_id: e.build_id.clone(),
        }),
        entry_trace: trace
            .steps
            .iter()
            .map(|s| EntryTraceStep {
                file: s.file.clone(),
                line: s.line,
                op: s.op.clone(),
                target: s.target.clone(),
            })
            .collect(),
        terminals: trace.terminals.clone(),
        loaded_libs: libs
            .iter()
            .take(max_libs)
            .map(|l| LoadedLibrary {
                path: l.path.clone(),
                inode: l.inode,
                sha256: l.sha256.clone(),
                build_id: l.build_id.clone(),
            })
            .collect(),
        loaded_libs_total: (libs.len() > max_libs).then_some(libs.len() as u32),
        partial: sample.partial
            || trace.truncated
            || sample
                .executable
                .as_ref()
                .is_some_and(|e| e.capped.is_some())
            || libs.iter().any(|l| l.capped.is_some()),
    }
}

fn kind_order(kind: DriftKind) -> u8 {
    match kind {
        DriftKind::Process => 0,
        DriftKind::Library => 1,
        DriftKind::Filesystem => 2,
        DriftKind::Network => 3,
    }
}

fn finding_order(f: &DriftFinding) -> (&str, &str, u8, &str) {
    (&f.pod, &f.container, kind_order(f.kind), &f.subject)
}

/// This node's entry of a posture's `status.nodes` (without `observedAt`, which the writer
/// sets): containers and findings in a stable order, so the same observation is the same
/// entry.
pub fn node_observation(
    node: &str,
    inventory: Inventory,
    reports: &[ContainerReport],
) -> NodeObservation {
    let mut containers: Vec<ObservedContainer> =
        reports.iter().map(|r| r.observed.clone()).collect();
    containers.sort_by(|a, b| {
        (&a.pod, &a.container, &a.container_id).cmp(&(&b.pod, &b.container, &b.container_id))
    });
    let mut drift: Vec<DriftFinding> = reports.iter().flat_map(|r| r.drift.clone()).collect();
    drift.sort_by(|a, b| finding_order(a).cmp(&finding_order(b)));
    // One process per container name and image digest: the first container (in the order
    // above) that has a sample stands for its replicas on this node.
    let mut processes: Vec<ProcessPosture> = Vec::new();
    for c in &containers {
        let Some(p) = reports
            .iter()
            .find(|r| r.observed.container_id == c.container_id)
            .and_then(|r| r.process.as_ref())
        else {
            continue;
        };
        if !processes
            .iter()
            .any(|q| q.container == p.container && q.image_digest == p.image_digest)
        {
            processes.push(p.clone());
        }
    }
    NodeObservation {
        node: node.to_string(),
        observed_at: None,
        inventory: Some(inventory),
        containers,
        drift,
        processes,
    }
}

/// Whether `next` says something `last` (what was written) does not; `observedAt` aside.
pub fn changed(last: Option<&NodeObservation>, next: &NodeObservation) -> bool {
    let Some(last) = last else {
        return true;
    };
    let strip = |o: &NodeObservation| NodeObservation {
        observed_at: None,
        ..o.clone()
    };
    strip(last) != strip(next)
}

/// The findings of one container after a new detection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Merged {
    pub findings: Vec<DriftFinding>,
    /// Findings seen for the first time (to file as Events).
    pub new: Vec<DriftFinding>,
}

/// Keeps a container's drift for as long as it runs: a program that ran once and exited,
/// or a listener that closed, has still drifted the container. A finding detected again
/// takes the new evidence and keeps its `firstSeen`; a new one gets `now`.
pub fn merge_findings(
    previous: &[DriftFinding],
    detected: Vec<DriftFinding>,
    now: &Time,
) -> Merged {
    let key = |f: &DriftFinding| (kind_order(f.kind), f.subject.clone());
    let mut findings: BTreeMap<(u8, String), DriftFinding> =
        previous.iter().map(|f| (key(f), f.clone())).collect();
    let mut new = Vec::new();
    for mut f in detected {
        match findings.get(&key(&f)) {
            Some(old) => f.first_seen = old.first_seen.clone(),
            None => {
                f.first_seen = Some(now.clone());
                new.push(f.clone());
            }
        }
        findings.insert(key(&f), f);
    }
    Merged {
        findings: findings.into_values().collect(),
        new,
    }
}

/// The posture object the observer creates for `workload`: owned by it (so it goes when the
/// workload goes), named after it.
pub fn posture_object(workload: &Workload) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "RuntimePosture",
        "metadata": {
            "name": workload.posture_name(),
            "namespace": workload.namespace,
            "ownerReferences": [{
                "apiVersion": workload.api_version,
                "kind": workload.kind,
                "name": workload.name,
                "uid": workload.uid,
            }],
        },
        "spec": { "workload": workload.to_ref() },
    })
}

/// The status apply body of one node: its entry of `nodes`. Nothing else of the status is
/// touched.
pub fn status_patch(name: &str, namespace: &str, observation: &NodeObservation) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "RuntimePosture",
        "metadata": { "name": name, "namespace": namespace },
        "status": { "nodes": [observation] },
    })
}

/// A merge patch removing `node`'s entry from the posture's status, guarded by the
/// `resourceVersion` read (a concurrent write makes it a conflict, tried again later); `None`
/// when there is no such entry.
///
/// Not an apply: Kubernetes 1.20 leaves `nodes: null` where an apply removes the last item
/// of a list, which the schema (an array) rejects.
pub fn removal_patch(posture: &RuntimePosture, node: &str) -> Option<Value> {
    let nodes = &posture.status.as_ref()?.nodes;
    if !nodes.iter().any(|n| n.node == node) {
        return None;
    }
    let remaining: Vec<&NodeObservation> = nodes.iter().filter(|n| n.node != node).collect();
    Some(json!({
        "metadata": { "resourceVersion": posture.metadata.resource_version },
        "status": { "nodes": remaining },
    }))
}

/// The note of a drift Event: what drifted, in which container, and the evidence.
pub fn drift_note(finding: &DriftFinding) -> String {
    let evidence: Vec<String> = finding
        .evidence
        .iter()
        .map(|e| format!("{}={}", e.signal, e.value))
        .collect();
    let mut note = format!(
        "{} drift in container {}: {}",
        finding.kind.as_str(),
        finding.container,
        finding.subject
    );
    if let Some(sha) = &finding.sha256 {
        note.push_str(&format!(" (sha256 {sha})"));
    }
    if !evidence.is_empty() {
        note.push_str(&format!("; evidence: {}", evidence.join(", ")));
    }
    truncate(&note, MAX_NOTE_BYTES)
}

// ---------------------------------------------------------------------------------------------
// The runtime event envelope (DESIGN.md "Contracts")
// ---------------------------------------------------------------------------------------------

pub const RUNTIME_EVENT_SCHEMA: &str = "zastava.runtime.event@v1.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    ContainerStart,
    ContainerStop,
    Drift,
}

impl EventKind {
    /// The `kind` label of `zastava_runtime_events_total`.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::ContainerStart => "CONTAINER_START",
            EventKind::ContainerStop => "CONTAINER_STOP",
            EventKind::Drift => "DRIFT",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeEvent {
    pub schema_version: &'static str,
    /// `sha256:` of the canonical JSON of the rest of the event.
    pub event_id: String,
    pub when: String,
    pub kind: EventKind,
    pub node: String,
    pub runtime: EventRuntime,
    pub workload: EventWorkload,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<EventProcess>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loaded_libs: Vec<EventLib>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<EventDelta>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventRuntime {
    pub engine: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventWorkload {
    pub platform: &'static str,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub container_id: String,
    pub image_ref: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<EventOwner>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventOwner {
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventProcess {
    pub pid: u32,
    /// Redacted: arguments can hold secrets (the sample's command line only with
    /// `show_args`, which the daemon never sets).
    pub entrypoint: Vec<String>,
    pub entry_trace: Vec<TraceStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventLib {
    pub path: String,
    pub inode: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_image_digest: Option<String>,
    pub changed_files: Vec<String>,
    pub new_binaries: Vec<EventBinary>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventBinary {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl RuntimeEvent {
    /// An event with its id computed from its content.
    pub fn new(
        kind: EventKind,
        when: &Time,
        node: &str,
        runtime: EventRuntime,
        workload: EventWorkload,
    ) -> Self {
        RuntimeEvent {
            schema_version: RUNTIME_EVENT_SCHEMA,
            event_id: String::new(),
            when: when.0.to_string(),
            kind,
            node: node.to_string(),
            runtime,
            workload,
            process: None,
            loaded_libs: Vec::new(),
            delta: None,
            evidence: Vec::new(),
        }
    }

    /// Adds what a sample of the main process found, and the trace of the entrypoint the
    /// container was started with.
    pub fn with_sample(mut self, sample: &ProcessSample, trace: &EntryTrace) -> Self {
        self.process = Some(EventProcess {
            pid: sample.pid,
            entrypoint: sample.entrypoint.clone().unwrap_or_default(),
            entry_trace: trace.steps.clone(),
            build_id: sample.executable.as_ref().and_then(|e| e.build_id.clone()),
        });
        self.loaded_libs = sample
            .loaded_libs
            .iter()
            .map(|l| EventLib {
                path: l.path.clone(),
                inode: l.inode,
                sha256: l.sha256.clone(),
            })
            .collect();
        self
    }

    /// Adds drift findings: files and programs as the delta, all evidence.
    pub fn with_drift(mut self, image_digest: Option<String>, findings: &[DriftFinding]) -> Self {
        let mut delta = EventDelta {
            baseline_image_digest: image_digest,
            changed_files: Vec::new(),
            new_binaries: Vec::new(),
        };
        for f in findings {
            match f.kind {
                DriftKind::Filesystem => delta.changed_files.push(f.subject.clone()),
                DriftKind::Process | DriftKind::Library => delta.new_binaries.push(EventBinary {
                    path: f.subject.clone(),
                    sha256: f.sha256.clone(),
                }),
                DriftKind::Network => {}
            }
            self.evidence.extend(f.evidence.iter().cloned());
        }
        self.delta = Some(delta);
        self
    }

    /// The event as one canonical JSON line, its id filled in.
    pub fn to_json(&self) -> String {
        let mut event = self.clone();
        event.event_id = String::new();
        event.event_id = canonical_digest(&event).unwrap_or_default();
        zastava_crds::canonical::canonical_json(&event).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// The shell
// ---------------------------------------------------------------------------------------------

/// Writes postures and Events for one node.
#[derive(Clone)]
pub struct Reporter {
    client: Client,
    node: String,
    events: EventPublisher,
}

impl Reporter {
    pub fn new(client: Client, node: &str) -> Self {
        Reporter {
            events: EventPublisher::new(client.clone(), FIELD_MANAGER, status_field_manager(node)),
            client,
            node: node.to_string(),
        }
    }

    /// Creates the workload's posture if it is missing (an apply of the same spec is a
    /// no-op otherwise).
    pub async fn ensure_posture(&self, workload: &Workload) -> Result<(), kube::Error> {
        let api: Api<RuntimePosture> = Api::namespaced(self.client.clone(), &workload.namespace);
        api.patch(
            &workload.posture_name(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(posture_object(workload)),
        )
        .await
        .map(|_| ())
    }

    /// Applies this node's entry of the posture's status, stamped `observedAt`.
    pub async fn write_status(
        &self,
        namespace: &str,
        name: &str,
        observation: &NodeObservation,
    ) -> Result<(), kube::Error> {
        let api: Api<RuntimePosture> = Api::namespaced(self.client.clone(), namespace);
        let stamped = NodeObservation {
            observed_at: Some(now()),
            ..observation.clone()
        };
        api.patch_status(
            name,
            &PatchParams::apply(&status_field_manager(&self.node)).force(),
            &Patch::Apply(status_patch(name, namespace, &stamped)),
        )
        .await
        .map(|_| ())
    }

    /// Removes this node's entry from the posture's status (a posture that is gone has none).
    pub async fn remove_status(&self, namespace: &str, name: &str) -> Result<(), kube::Error> {
        let api: Api<RuntimePosture> = Api::namespaced(self.client.clone(), namespace);
        let Some(posture) = api.get_opt(name).await? else {
            return Ok(());
        };
        let Some(patch) = removal_patch(&posture, &self.node) else {
            return Ok(());
        };
        let params = PatchParams {
            field_manager: Some(status_field_manager(&self.node)),
            ..PatchParams::default()
        };
        api.patch_status(name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// This node's entries in the postures of the cluster, as (namespace, name, entry): what
    /// an earlier run wrote, so entries of workloads gone meanwhile get removed.
    pub async fn written_before(
        &self,
    ) -> Result<Vec<(String, String, NodeObservation)>, kube::Error> {
        let api: Api<RuntimePosture> = Api::all(self.client.clone());
        let list = api.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|p| {
                let entry = p.status?.nodes.into_iter().find(|n| n.node == self.node)?;
                Some((p.metadata.namespace?, p.metadata.name?, entry))
            })
            .collect())
    }

    /// Files a Warning Event about a drift finding on its Pod.
    pub async fn drift_event(
        &self,
        namespace: &str,
        pod_uid: &str,
        finding: &DriftFinding,
    ) -> Result<(), kube::Error> {
        let pod = ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            name: Some(finding.pod.clone()),
            namespace: Some(namespace.to_string()),
            uid: Some(pod_uid.to_string()),
            ..Default::default()
        };
        self.events
            .publish(pod, true, "Drift", "Observed", &drift_note(finding))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(pod: &str, name: &str, id: &str) -> ObservedContainer {
        ObservedContainer {
            pod: pod.into(),
            container: name.into(),
            container_id: id.into(),
            image_ref: "busybox:1.36".into(),
            image_digest: Some(format!("sha256:{}", "a".repeat(64))),
            pid: Some(42),
            started_at: time_from_nanos(1_700_000_000_999_999_999),
        }
    }

    fn finding(pod: &str, kind: DriftKind, subject: &str, pid: &str) -> DriftFinding {
        DriftFinding {
            kind,
            pod: pod.into(),
            container: "app".into(),
            subject: subject.into(),
            sha256: None,
            evidence: vec![Evidence {
                signal: "procfs.pid".into(),
                value: pid.into(),
            }],
            first_seen: None,
        }
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn cri_times_to_the_second() {
        assert_eq!(
            time_from_nanos(1_700_000_000_999_999_999),
            Some(at(1_700_000_000))
        );
        assert_eq!(
            serde_json::to_value(now()).unwrap().as_str().unwrap().len(),
            "2024-01-01T00:00:00Z".len()
        );
    }

    #[test]
    fn node_observation_is_sorted_and_stable() {
        let reports = vec![
            ContainerReport {
                observed: container("web-2", "app", "c2"),
                drift: vec![
                    finding("web-2", DriftKind::Network, "tcp/4444", "1"),
                    finding("web-2", DriftKind::Process, "/tmp/x", "1"),
                ],
                process: None,
            },
            ContainerReport {
                observed: container("web-1", "app", "c1"),
                drift: vec![finding("web-1", DriftKind::Filesystem, "/tmp/y", "2")],
                process: None,
            },
        ];
        let obs = node_observation("node1", Inventory::Cri, &reports);
        assert_eq!(obs.node, "node1");
        assert_eq!(obs.observed_at, None);
        let ids: Vec<&str> = obs
            .containers
            .iter()
            .map(|c| c.container_id.as_str())
            .collect();
        assert_eq!(ids, ["c1", "c2"]);
        let subjects: Vec<&str> = obs.drift.iter().map(|f| f.subject.as_str()).collect();
        assert_eq!(subjects, ["/tmp/y", "/tmp/x", "tcp/4444"]);
        let mut reversed = reports.clone();
        reversed.reverse();
        assert_eq!(node_observation("node1", Inventory::Cri, &reversed), obs);
    }

    fn sample_of(pid: u32, libs: usize) -> ProcessSample {
        ProcessSample {
            pid,
            executable: Some(crate::sample::Executable {
                path: "/usr/bin/sleep".into(),
                sha256: Some("ab".repeat(32)),
                build_id: Some("0123abcd".into()),
                deleted: false,
                capped: None,
            }),
            loaded_libs: (0..libs)
                .map(|i| crate::sample::LoadedLib {
                    path: format!("/lib/lib{i}.so"),
                    inode: 100 + i as u64,
                    sha256: Some(format!("{i:064x}")),
                    build_id: None,
                    deleted: false,
                    capped: None,
                })
                .collect(),
            entrypoint: None,
            entry_trace: None,
            hashed_bytes: 0,
            partial: false,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn processes_are_listed_once_per_container_and_image_and_capped() {
        let trace = EntryTrace {
            steps: vec![TraceStep {
                file: "argv".into(),
                line: 0,
                op: "exec".into(),
                target: "/usr/bin/sleep".into(),
            }],
            terminals: vec!["/usr/bin/sleep".into()],
            depth: 0,
            truncated: false,
            warnings: Vec::new(),
        };
        let report = |pod: &str, id: &str, pid: u32, digest: &str| {
            let mut observed = container(pod, "app", id);
            observed.image_digest = Some(digest.to_string());
            let process = process_posture(&observed, &sample_of(pid, 3), &trace, 2);
            ContainerReport {
                observed,
                drift: Vec::new(),
                process: Some(process),
            }
        };
        let obs = node_observation(
            "node1",
            Inventory::Cri,
            &[
                report("web-2", "c2", 12, "sha256:1"),
                report("web-1", "c1", 11, "sha256:1"),
                report("web-3", "c3", 13, "sha256:2"),
            ],
        );
        let sampled: Vec<(&str, u32)> = obs
            .processes
            .iter()
            .map(|p| (p.pod.as_str(), p.pid))
            .collect();
        assert_eq!(
            sampled,
            [("web-1", 11), ("web-3", 13)],
            "replicas share one entry"
        );
        let p = &obs.processes[0];
        assert_eq!(p.container_id, "c1");
        assert_eq!(p.image_digest.as_deref(), Some("sha256:1"));
        assert_eq!(
            p.executable.as_ref().unwrap().build_id.as_deref(),
            Some("0123abcd")
        );
        assert_eq!(p.entry_trace[0].target, "/usr/bin/sleep");
        assert_eq!(p.terminals, ["/usr/bin/sleep"]);
        let libs: Vec<(&str, u64)> = p
            .loaded_libs
            .iter()
            .map(|l| (l.path.as_str(), l.inode))
            .collect();
        assert_eq!(libs, [("/lib/lib0.so", 100), ("/lib/lib1.so", 101)]);
        assert_eq!(
            p.loaded_libs_total,
            Some(3),
            "the cap says how many there are"
        );
        assert!(!p.partial);

        let uncapped = process_posture(&container("w", "app", "c"), &sample_of(1, 2), &trace, 2);
        assert_eq!(uncapped.loaded_libs_total, None);
        let mut partial = sample_of(1, 1);
        partial.partial = true;
        assert!(process_posture(&container("w", "app", "c"), &partial, &trace, 2).partial);
        // A trace a cap cut short makes the posture partial too.
        let truncated = EntryTrace {
            truncated: true,
            ..trace.clone()
        };
        assert!(
            process_posture(&container("w", "app", "c"), &sample_of(1, 1), &truncated, 2).partial
        );
    }

    #[test]
    fn only_real_changes_count() {
        let obs = node_observation(
            "node1",
            Inventory::Cri,
            &[ContainerReport {
                observed: container("web-1", "app", "c1"),
                drift: Vec::new(),
                process: None,
            }],
        );
        assert!(changed(None, &obs));
        let written = NodeObservation {
            observed_at: Some(at(5)),
            ..obs.clone()
        };
        assert!(
            !changed(Some(&written), &obs),
            "observedAt alone is no change"
        );
        let mut other = obs.clone();
        other.containers[0].pid = Some(43);
        assert!(changed(Some(&written), &other));
    }

    #[test]
    fn findings_stay_and_keep_when_they_were_first_seen() {
        let first = merge_findings(
            &[],
            vec![finding("p", DriftKind::Process, "/tmp/evil", "7")],
            &at(100),
        );
        assert_eq!(first.new.len(), 1);
        assert_eq!(first.findings[0].first_seen, Some(at(100)));

        // Seen again with other evidence, plus a new one.
        let second = merge_findings(
            &first.findings,
            vec![
                finding("p", DriftKind::Process, "/tmp/evil", "8"),
                finding("p", DriftKind::Network, "tcp/4444", "8"),
            ],
            &at(200),
        );
        assert_eq!(second.new.len(), 1);
        assert_eq!(second.new[0].subject, "tcp/4444");
        assert_eq!(second.findings.len(), 2);
        assert_eq!(second.findings[0].first_seen, Some(at(100)));
        assert_eq!(second.findings[0].evidence[0].value, "8");
        assert_eq!(second.findings[1].first_seen, Some(at(200)));

        // The program exited: the finding stays.
        let third = merge_findings(&second.findings, Vec::new(), &at(300));
        assert!(third.new.is_empty());
        assert_eq!(third.findings, second.findings);

        // Same subject, another kind: another finding.
        let fourth = merge_findings(
            &third.findings,
            vec![finding("p", DriftKind::Filesystem, "/tmp/evil", "8")],
            &at(400),
        );
        assert_eq!(fourth.new.len(), 1);
        assert_eq!(fourth.findings.len(), 3);
    }

    #[test]
    fn apply_bodies() {
        let workload = Workload {
            namespace: "team-a".into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            uid: "uid-1".into(),
        };
        let object = posture_object(&workload);
        assert_eq!(object["metadata"]["name"], "deployment-web");
        assert_eq!(object["metadata"]["namespace"], "team-a");
        assert_eq!(
            object["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-1"}])
        );
        assert_eq!(
            object["spec"],
            json!({"workload": {"kind": "Deployment", "name": "web", "uid": "uid-1"}})
        );
        assert!(object.get("status").is_none());

        let obs = node_observation("node1", Inventory::Cri, &[]);
        let patch = status_patch("deployment-web", "team-a", &obs);
        assert_eq!(
            patch["status"],
            json!({"nodes": [{"node": "node1", "inventory": "CRI"}]})
        );
        assert_eq!(
            patch["metadata"],
            json!({"name": "deployment-web", "namespace": "team-a"})
        );
        assert_eq!(status_field_manager("node1"), "zastava-observer-node1");
    }

    #[test]
    fn removal_keeps_the_other_nodes_and_checks_the_version() {
        let mut posture = RuntimePosture::new("deployment-web", Default::default());
        posture.metadata.resource_version = Some("42".into());
        assert_eq!(removal_patch(&posture, "node1"), None, "no status");
        posture.status = Some(zastava_crds::RuntimePostureStatus {
            nodes: vec![
                node_observation("node1", Inventory::Cri, &[]),
                node_observation("node2", Inventory::Cri, &[]),
            ],
            ..Default::default()
        });
        assert_eq!(
            removal_patch(&posture, "node1"),
            Some(json!({
                "metadata": {"resourceVersion": "42"},
                "status": {"nodes": [{"node": "node2", "inventory": "CRI"}]},
            }))
        );
        assert_eq!(removal_patch(&posture, "node3"), None);
        posture.status.as_mut().unwrap().nodes.remove(1);
        assert_eq!(
            removal_patch(&posture, "node1").unwrap()["status"],
            json!({"nodes": []}),
            "the last entry leaves an empty list"
        );
    }

    #[test]
    fn drift_notes() {
        let mut f = finding("p", DriftKind::Process, "/tmp/evil", "7");
        f.sha256 = Some("ab".repeat(32));
        let note = drift_note(&f);
        assert!(note.starts_with("process drift in container app: /tmp/evil (sha256 abab"));
        assert!(note.ends_with("evidence: procfs.pid=7"));
        f.evidence = vec![
            Evidence {
                signal: "x".into(),
                value: "é".repeat(600),
            };
            2
        ];
        let long = drift_note(&f);
        assert!(long.len() <= MAX_NOTE_BYTES && long.ends_with('…'));
    }

    #[test]
    fn runtime_events_follow_the_contract() {
        let workload = EventWorkload {
            platform: "kubernetes",
            namespace: "team-a".into(),
            pod: "web-1".into(),
            container: "app".into(),
            container_id: "c1".into(),
            image_ref: "busybox:1.36".into(),
            owner: Some(EventOwner {
                kind: "Deployment".into(),
                name: "web".into(),
            }),
        };
        let runtime = EventRuntime {
            engine: "containerd".into(),
            version: "v1.6.20".into(),
        };
        let event = RuntimeEvent::new(EventKind::Drift, &at(0), "node1", runtime, workload)
            .with_drift(
                Some("sha256:00".into()),
                &[
                    finding("web-1", DriftKind::Process, "/tmp/evil", "7"),
                    finding("web-1", DriftKind::Filesystem, "/tmp/evil", "7"),
                ],
            );
        let json: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(json["schemaVersion"], "zastava.runtime.event@v1.0");
        assert_eq!(json["kind"], "DRIFT");
        assert_eq!(json["when"], "1970-01-01T00:00:00Z");
        assert_eq!(json["workload"]["containerId"], "c1");
        assert_eq!(json["workload"]["owner"]["kind"], "Deployment");
        assert_eq!(json["delta"]["baselineImageDigest"], "sha256:00");
        assert_eq!(json["delta"]["changedFiles"], json!(["/tmp/evil"]));
        assert_eq!(json["delta"]["newBinaries"], json!([{"path": "/tmp/evil"}]));
        assert_eq!(json["evidence"].as_array().unwrap().len(), 2);
        let id = json["eventId"].as_str().unwrap();
        assert!(id.starts_with("sha256:"));
        assert_eq!(
            serde_json::from_str::<Value>(&event.to_json()).unwrap()["eventId"],
            id,
            "the id depends on the content only"
        );
        assert_eq!(EventKind::ContainerStart.label(), "CONTAINER_START");
        assert_eq!(
            serde_json::to_value(EventKind::ContainerStop).unwrap(),
            "CONTAINER_STOP"
        );
    }
}
