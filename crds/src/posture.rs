//! `RuntimePosture`: what one workload's containers really run, as the observers saw it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The runtime posture of one workload (its owner kind and name). The operator creates one per
/// workload, owned by it; each node's observer writes its own entry of `status.nodes` with a
/// field manager of its own, so nodes never overwrite each other.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "zastava.stellaops.io",
    version = "v1alpha1",
    kind = "RuntimePosture",
    plural = "runtimepostures",
    shortname = "rp",
    category = "zastava",
    namespaced,
    doc = "What one workload's containers really run, as Zastava's node observers saw it",
    status = "RuntimePostureStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.workload.kind"),
    printcolumn(name = "Workload", type_ = "string", json_path = ".spec.workload.name"),
    printcolumn(
        name = "Containers",
        type_ = "integer",
        json_path = ".status.observedContainers"
    ),
    printcolumn(name = "Drift", type_ = "integer", json_path = ".status.driftFindings"),
    printcolumn(
        name = "Compliant",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Compliant\")].status"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePostureSpec {
    pub workload: WorkloadRef,
}

/// The workload a posture describes: the top-most owner of its Pods (a Deployment rather than
/// its ReplicaSet), or the Pod itself when it has no owner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePostureStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Drifted` and `Compliant`, kstatus style.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Containers observed across all nodes (summary for the printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_containers: Option<u32>,
    /// Drift findings across all nodes (summary for the printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_findings: Option<u32>,
    /// The images the workload runs, with their admission posture.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["reference"]))]
    pub images: Vec<ImagePosture>,
    /// One entry per node, written by that node's observer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<NodeObservation>,
}

/// One image a workload runs. Two writers share each entry, each with a field manager of its
/// own: the operator (`reference`, `digest`, `digests`: what the observers saw running) and
/// the webhook's verifier (the rest: the verdict of today's policies on that digest, from the
/// same evaluation admission uses).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImagePosture {
    /// The reference as the pod spec gives it.
    pub reference: String,
    /// The `sha256:` digest the containers run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Every digest the reference runs as, when several do (a tag moved during a rollout);
    /// `digest` is then absent and nothing is verified until one remains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom_present: Option<bool>,
    /// Today's Enforce and Audit policies on the running digest: `fail` when an Enforce
    /// policy would deny it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Why, each prefixed with the policy's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// When the verifier last evaluated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Time>,
    /// Running in a fail-open namespace and never verified: the registry or backend has not
    /// answered since (the verifier retries every few seconds until it does).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admitted_fail_open: bool,
}

/// A policy verdict on one image, as in the admission decision contract.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeObservation {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
    /// Where the observer learned which containers run on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ObservedContainer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftFinding>,
    /// What the containers' main processes run, read from `/proc`: one entry per container
    /// name and image digest (the replicas of a workload on one node run the same files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessPosture>,
}

/// Where a node's observer learned which containers run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Inventory {
    /// The container runtime's CRI socket.
    #[serde(rename = "CRI")]
    Cri,
    /// No CRI socket: the node's Pods from the Kubernetes API, their processes found through
    /// `/proc/<pid>/cgroup`. Without the runtime there is no image configuration: entry
    /// traces start from the pod spec's command or the process's command line, and
    /// filesystem drift does not compare with the image's creation time.
    #[serde(rename = "KubernetesAPI")]
    KubernetesApi,
}

/// The main process of one container: its executable, the libraries it maps and the trace of
/// the entrypoint it was started with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProcessPosture {
    /// The pod and container it was sampled in.
    pub pod: String,
    pub container: String,
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<ObservedFile>,
    /// The entrypoint and command followed through scripts, wrappers and interpreters inside
    /// the image (never executed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_trace: Vec<EntryTraceStep>,
    /// The program(s) the entry trace ends in: the baseline of process drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terminals: Vec<String>,
    /// Mapped shared objects, in address order; at most the observer's status cap (the full
    /// list goes to the runtime events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loaded_libs: Vec<LoadedLibrary>,
    /// How many shared objects the process maps, when more than `loadedLibs` lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_libs_total: Option<u32>,
    /// The process went away (or a cap was reached) while it was sampled: what is listed is
    /// what was read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// A file as the process sees it, inside the container's root.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObservedFile {
    pub path: String,
    /// Absent when a hashing cap was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The ELF GNU build-id (`NT_GNU_BUILD_ID`), lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
}

/// `loadedLibs[{path,inode,sha256}]` of the runtime event contract, plus the build-id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoadedLibrary {
    pub path: String,
    pub inode: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
}

/// `entryTrace[{file,line,op,target}]` of the runtime event contract.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
pub struct EntryTraceStep {
    /// The script the step was read from, or `argv` for the container's own command.
    pub file: String,
    pub line: u32,
    /// `exec`, `path-lookup`, `shebang`, `wrapper`, `interpreter`, `source`, ...
    pub op: String,
    pub target: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObservedContainer {
    pub pod: String,
    pub container: String,
    pub container_id: String,
    pub image_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftFinding {
    pub kind: DriftKind,
    pub pod: String,
    pub container: String,
    /// What drifted: a program or library path, or `proto/port` for a listening socket.
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DriftKind {
    Process,
    Library,
    Filesystem,
    Network,
}

impl DriftKind {
    /// The kind as it is serialized, for messages and notes.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Process => "process",
            DriftKind::Library => "library",
            DriftKind::Filesystem => "filesystem",
            DriftKind::Network => "network",
        }
    }
}

/// One observed signal behind a finding, e.g. `{signal: "procfs.maps", value: "/tmp/x.so"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Evidence {
    pub signal: String,
    pub value: String,
}
