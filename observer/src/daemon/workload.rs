//! Which workload a Pod belongs to: its top-most controller, found through `ownerReferences`
//! (Pod → ReplicaSet → Deployment, Pod → Job → CronJob); a bare Pod is its own workload.
//!
//! Pure: [`resolve`] says either what the workload is or which owner to fetch next; the
//! shell fetches it and asks again.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};
use zastava_crds::posture::WorkloadRef;

/// Longest Kubernetes object name (DNS subdomain).
const MAX_NAME: usize = 253;

/// A workload: what a `RuntimePosture` describes and is owned by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

impl Workload {
    fn owner(namespace: &str, owner: &OwnerReference) -> Self {
        Workload {
            namespace: namespace.to_string(),
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        }
    }

    /// The name of its `RuntimePosture`: `<kind-lowercase>-<name>`, shortened with a hash
    /// suffix when that exceeds what Kubernetes accepts.
    pub fn posture_name(&self) -> String {
        let name = format!("{}-{}", self.kind.to_ascii_lowercase(), self.name);
        if name.len() <= MAX_NAME {
            return name;
        }
        let hash = hex::encode(&Sha256::digest(name.as_bytes())[..4]);
        let mut cut = MAX_NAME - hash.len() - 1;
        // Names are ASCII, but stay on a char boundary whatever comes in; and a name may
        // not have a `-` or `.` right before the suffix's `-`.
        while !name.is_char_boundary(cut) || name[..cut].ends_with(['-', '.']) {
            cut -= 1;
        }
        format!("{}-{hash}", &name[..cut])
    }

    pub fn to_ref(&self) -> WorkloadRef {
        WorkloadRef {
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: Some(self.uid.clone()),
        }
    }
}

/// The next step of a resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The workload is known.
    Workload(Workload),
    /// This owner's own `ownerReferences` are needed: fetch its metadata and call
    /// [`resolve`] again with it appended to `owners`.
    Fetch(Workload),
}

/// Owners whose own controller is looked for: a ReplicaSet is usually a Deployment's, a Job
/// a CronJob's. Other controllers (Deployment, StatefulSet, DaemonSet, CronJob, custom
/// resources) are taken as the workload, so the observer needs no access to them.
fn has_parent_controller(owner: &OwnerReference) -> bool {
    let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
    matches!(
        (group, owner.kind.as_str()),
        ("apps", "ReplicaSet") | ("batch", "Job")
    )
}

fn controller(refs: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs?.iter().find(|r| r.controller == Some(true))
}

/// Resolves the workload of `pod` given the metadata of the owners fetched so far, in the
/// order [`Resolution::Fetch`] asked for them. An owner fetched with another uid than the
/// reference names was replaced by a namesake: the chain ends at the reference.
pub fn resolve(pod: &ObjectMeta, owners: &[ObjectMeta]) -> Resolution {
    let namespace = pod.namespace.as_deref().unwrap_or_default();
    let mut workload = Workload {
        namespace: namespace.to_string(),
        api_version: "v1".to_string(),
        kind: "Pod".to_string(),
        name: pod.name.clone().unwrap_or_default(),
        uid: pod.uid.clone().unwrap_or_default(),
    };
    let mut refs = pod.owner_references.as_ref();
    let mut fetched = owners.iter();
    while let Some(owner) = controller(refs) {
        workload = Workload::owner(namespace, owner);
        if !has_parent_controller(owner) {
            break;
        }
        match fetched.next() {
            None => return Resolution::Fetch(workload),
            Some(meta) if meta.uid.as_deref() == Some(owner.uid.as_str()) => {
                refs = meta.owner_references.as_ref();
            }
            Some(_) => break,
        }
    }
    Resolution::Workload(workload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(api_version: &str, kind: &str, name: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    fn meta(name: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("team-a".into()),
            uid: Some(format!("uid-{name}")),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..Default::default()
        }
    }

    fn workload(api_version: &str, kind: &str, name: &str) -> Workload {
        Workload {
            namespace: "team-a".into(),
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    #[test]
    fn a_bare_pod_is_its_own_workload() {
        assert_eq!(
            resolve(&meta("debug", vec![]), &[]),
            Resolution::Workload(workload("v1", "Pod", "debug"))
        );
    }

    #[test]
    fn deployment_through_its_replicaset() {
        let pod = meta(
            "web-7c9f-x",
            vec![owner("apps/v1", "ReplicaSet", "web-7c9f", true)],
        );
        let rs = workload("apps/v1", "ReplicaSet", "web-7c9f");
        assert_eq!(resolve(&pod, &[]), Resolution::Fetch(rs.clone()));
        let rs_meta = meta(
            "web-7c9f",
            vec![owner("apps/v1", "Deployment", "web", true)],
        );
        assert_eq!(
            resolve(&pod, &[rs_meta]),
            Resolution::Workload(workload("apps/v1", "Deployment", "web"))
        );
        // A ReplicaSet nobody controls is the workload.
        assert_eq!(
            resolve(&pod, &[meta("web-7c9f", vec![])]),
            Resolution::Workload(rs.clone())
        );
        // Replaced by a namesake since: the chain ends at the reference.
        let mut namesake = meta("web-7c9f", vec![owner("apps/v1", "Deployment", "x", true)]);
        namesake.uid = Some("another".into());
        assert_eq!(resolve(&pod, &[namesake]), Resolution::Workload(rs));
    }

    #[test]
    fn cronjob_through_its_job() {
        let pod = meta(
            "backup-1-x",
            vec![owner("batch/v1", "Job", "backup-1", true)],
        );
        let job = meta(
            "backup-1",
            vec![owner("batch/v1beta1", "CronJob", "backup", true)],
        );
        assert_eq!(
            resolve(&pod, &[]),
            Resolution::Fetch(workload("batch/v1", "Job", "backup-1"))
        );
        assert_eq!(
            resolve(&pod, &[job]),
            Resolution::Workload(workload("batch/v1beta1", "CronJob", "backup"))
        );
    }

    #[test]
    fn other_controllers_are_the_workload_and_only_controllers_count() {
        for (api, kind) in [
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "DaemonSet"),
            ("example.com/v1", "ReplicaSet"),
        ] {
            let pod = meta("p", vec![owner(api, kind, "w", true)]);
            assert_eq!(
                resolve(&pod, &[]),
                Resolution::Workload(workload(api, kind, "w"))
            );
        }
        let pod = meta(
            "p",
            vec![
                owner("v1", "ConfigMap", "not-a-controller", false),
                owner("apps/v1", "StatefulSet", "db", true),
            ],
        );
        assert_eq!(
            resolve(&pod, &[]),
            Resolution::Workload(workload("apps/v1", "StatefulSet", "db"))
        );
        let adopted_by_nobody = meta("p", vec![owner("apps/v1", "ReplicaSet", "rs", false)]);
        assert_eq!(
            resolve(&adopted_by_nobody, &[]),
            Resolution::Workload(workload("v1", "Pod", "p"))
        );
    }

    #[test]
    fn posture_names() {
        assert_eq!(
            workload("apps/v1", "Deployment", "web").posture_name(),
            "deployment-web"
        );
        let long = workload("apps/v1", "StatefulSet", &"a".repeat(253));
        let name = long.posture_name();
        assert_eq!(name.len(), 253);
        assert!(name.starts_with("statefulset-aaa"));
        let other = workload("apps/v1", "StatefulSet", &format!("{}b", "a".repeat(252)));
        assert_ne!(other.posture_name(), name, "the hash tells them apart");
        let dashes = workload("apps/v1", "StatefulSet", &"a-".repeat(126)).posture_name();
        assert!(!dashes.contains("--"), "{dashes}");
        assert!(dashes.len() <= 253);
    }
}
