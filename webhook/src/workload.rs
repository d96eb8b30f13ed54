//! The pod spec inside an admitted object, and the images it runs.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use zastava_crds::canonical::canonical_json_digest;
use zastava_crds::image::{ImageRefError, ImageReference};

/// The part of a pod spec a decision reads: the containers' names and images and the pull
/// secrets. The rest is the API server's to validate (it has, before any webhook is called);
/// reading the whole `PodSpec` cost more than the decision itself on a warm cache.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Option<Vec<Container>>,
    #[serde(default)]
    pub ephemeral_containers: Option<Vec<Container>>,
    #[serde(default)]
    pub image_pull_secrets: Option<Vec<SecretName>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
}

/// A `LocalObjectReference` to a Secret of the pod's namespace.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SecretName {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkloadError {
    #[error("object has no `kind`")]
    NoKind,
    #[error("kind `{0}` is not a Pod, a workload with a pod template (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob) or EphemeralContainers")]
    UnsupportedKind(String),
    #[error("{kind} has no pod spec at `{path}`")]
    NoPodSpec { kind: String, path: &'static str },
    #[error("{kind} pod spec is malformed: {error}")]
    Malformed { kind: String, error: String },
    #[error("{0} has no containers")]
    NoContainers(String),
    #[error("EphemeralContainers has no list at `ephemeralContainers`")]
    NoEphemeralContainers,
}

/// The kind of the object of a `pods/ephemeralcontainers` review on Kubernetes 1.20 and 1.21:
/// the Pod's `ephemeralContainers` list with the Pod's metadata. From 1.22 the subresource's
/// object is the Pod itself, its new containers in `spec.ephemeralContainers`.
pub const EPHEMERAL_CONTAINERS_KIND: &str = "EphemeralContainers";

/// Which list of the pod spec a container is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerKind {
    Init,
    App,
    Ephemeral,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerImage {
    pub kind: ContainerKind,
    pub container: String,
    pub image: String,
}

/// The controlling owner of an object: its kind and name, kept in one string (one allocation
/// per review that has an owner, on the decision path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `kind` then `name`.
    text: String,
    kind_len: usize,
}

impl Owner {
    pub fn new(kind: &str, name: &str) -> Self {
        let mut text = String::with_capacity(kind.len() + name.len());
        text.push_str(kind);
        text.push_str(name);
        Self {
            text,
            kind_len: kind.len(),
        }
    }

    pub fn kind(&self) -> &str {
        &self.text[..self.kind_len]
    }

    pub fn name(&self) -> &str {
        &self.text[self.kind_len..]
    }

    /// The controlling owner among `metadata.ownerReferences` of a JSON object's metadata:
    /// the first entry with `controller: true` and a kind and a name (the apiserver allows
    /// only one).
    pub fn of_metadata(metadata: Option<&Value>) -> Option<Self> {
        let references = metadata?.get("ownerReferences")?.as_array()?;
        references.iter().find_map(|reference| {
            let controller = reference.get("controller").and_then(Value::as_bool);
            let text = |key| reference.get(key).and_then(Value::as_str);
            match (controller, text("kind"), text("name")) {
                (Some(true), Some(kind), Some(name)) => Some(Self::new(kind, name)),
                _ => None,
            }
        })
    }
}

/// The pod spec of an admitted object, with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub kind: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// The controlling owner reference (`controller: true`) of the object's metadata, if any:
    /// what a Pod made from a template (a ReplicaSet's, a Job's) is known by, its own name
    /// being generated (`generateName` and a random suffix).
    pub owner: Option<Owner>,
    pub spec: PodSpec,
    /// `sha256:<hex>` of the pod spec's canonical JSON: the decision's `podSpecDigest`.
    pub pod_spec_digest: String,
    /// Each image once (sorted), parsed: the lookups and the evaluation read them.
    pub references: BTreeMap<String, Result<ImageReference, ImageRefError>>,
    /// Images whose digest the pod spec does not name: the verifier added the digest that
    /// runs (`repo:tag@sha256:...`) so that the registry is asked about it. `requireDigest`
    /// judges them as the spec wrote them, by tag.
    pub pinned_for_lookup: BTreeSet<String>,
}

impl Workload {
    /// Reads the pod spec out of a Pod or a workload object.
    pub fn from_object(object: Value) -> Result<Self, WorkloadError> {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(String::from)
        };
        let (kind, name, namespace) = (
            text("/kind"),
            text("/metadata/name"),
            text("/metadata/namespace"),
        );
        // Writing out a `Value` cannot fail: its keys are strings.
        let raw = |member: &str| {
            object
                .get(member)
                .and_then(|value| serde_json::value::to_raw_value(value).ok())
        };
        let owner = Owner::of_metadata(object.get("metadata"));
        let mut workload = if kind.as_deref() == Some(EPHEMERAL_CONTAINERS_KIND) {
            let list = raw("ephemeralContainers");
            Self::from_ephemeral_containers(name, namespace, list.as_deref())?
        } else {
            Self::from_parts(kind.as_deref(), name, namespace, raw("spec").as_deref())?
        };
        workload.owner = owner;
        Ok(workload)
    }

    /// The object of a `pods/ephemeralcontainers` review of Kubernetes 1.20/1.21 (kind
    /// [`EPHEMERAL_CONTAINERS_KIND`]): its `ephemeralContainers` list, as JSON text, decided
    /// as the ephemeral containers of a pod spec that has no others. The decision's
    /// `podSpecDigest` is that of `{"ephemeralContainers": [...]}`.
    pub fn from_ephemeral_containers(
        name: Option<String>,
        namespace: Option<String>,
        list: Option<&RawValue>,
    ) -> Result<Self, WorkloadError> {
        let kind = EPHEMERAL_CONTAINERS_KIND;
        let list = list
            .filter(|l| l.get().starts_with('['))
            .ok_or(WorkloadError::NoEphemeralContainers)?;
        let malformed = |error: serde_json::Error| WorkloadError::Malformed {
            kind: kind.to_string(),
            error: error.to_string(),
        };
        let containers: Vec<Container> = serde_json::from_str(list.get()).map_err(malformed)?;
        let as_spec = format!("{{\"ephemeralContainers\":{}}}", list.get());
        let mut workload = Self {
            kind: kind.to_string(),
            name,
            namespace,
            owner: None,
            spec: PodSpec {
                ephemeral_containers: Some(containers),
                ..PodSpec::default()
            },
            pod_spec_digest: canonical_json_digest(&as_spec).map_err(malformed)?,
            references: BTreeMap::new(),
            pinned_for_lookup: BTreeSet::new(),
        };
        workload.references = workload
            .image_names()
            .map(|image| (image.to_string(), ImageReference::parse(image)))
            .collect();
        Ok(workload)
    }

    /// The same as [`Workload::from_object`], from the parts of the object it reads: its
    /// `kind`, `metadata.name`, `metadata.namespace` and `spec`, as JSON text (the admission
    /// path borrows it from the request body: the pod spec is read, never built as a tree).
    pub fn from_parts(
        kind: Option<&str>,
        name: Option<String>,
        namespace: Option<String>,
        spec: Option<&RawValue>,
    ) -> Result<Self, WorkloadError> {
        let kind = kind.ok_or(WorkloadError::NoKind)?;
        let (path, members): (&'static str, &[&str]) = match kind {
            "Pod" => ("/spec", &[]),
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
                ("/spec/template/spec", &["template", "spec"])
            }
            "CronJob" => (
                "/spec/jobTemplate/spec/template/spec",
                &["jobTemplate", "spec", "template", "spec"],
            ),
            other => return Err(WorkloadError::UnsupportedKind(other.to_string())),
        };
        let pod_spec = members
            .iter()
            .fold(spec, |object, name| object.and_then(|o| member(o, name)))
            .filter(|spec| is_object(spec))
            .ok_or_else(|| WorkloadError::NoPodSpec {
                kind: kind.to_string(),
                path,
            })?;
        let malformed = |error: serde_json::Error| WorkloadError::Malformed {
            kind: kind.to_string(),
            error: error.to_string(),
        };
        let spec: PodSpec = serde_json::from_str(pod_spec.get()).map_err(malformed)?;
        if spec.containers.is_empty() {
            return Err(WorkloadError::NoContainers(kind.to_string()));
        }
        let mut workload = Self {
            kind: kind.to_string(),
            name,
            namespace,
            owner: None,
            spec,
            // Text serde_json has read as JSON: it has a canonical form.
            pod_spec_digest: canonical_json_digest(pod_spec.get()).map_err(malformed)?,
            references: BTreeMap::new(),
            pinned_for_lookup: BTreeSet::new(),
        };
        workload.references = workload
            .image_names()
            .map(|image| (image.to_string(), ImageReference::parse(image)))
            .collect();
        Ok(workload)
    }

    /// Each image once, sorted: what the registry and backend are asked about.
    pub fn distinct_images(&self) -> Vec<String> {
        self.references.keys().cloned().collect()
    }

    /// `image` parsed: one of the workload's as parsed when it was read, any other now.
    /// Whether the pod spec names `image` by digest (`repo@sha256:...`, `repo:tag@sha256:...`).
    pub fn names_digest(&self, image: &str) -> bool {
        !self.pinned_for_lookup.contains(image)
            && matches!(self.reference(image).as_ref(), Ok(r) if r.digest.is_some())
    }

    pub fn reference(&self, image: &str) -> Cow<'_, Result<ImageReference, ImageRefError>> {
        match self.references.get(image) {
            Some(parsed) => Cow::Borrowed(parsed),
            None => Cow::Owned(ImageReference::parse(image)),
        }
    }

    /// Every container's image in the order of [`Workload::images`], borrowed: the decision
    /// path reads them on every review and needs no copies.
    pub fn image_names(&self) -> impl Iterator<Item = &str> {
        let init = self.spec.init_containers.iter().flatten();
        let ephemeral = self.spec.ephemeral_containers.iter().flatten();
        init.map(|c| c.image.as_deref().unwrap_or_default())
            .chain(
                self.spec
                    .containers
                    .iter()
                    .map(|c| c.image.as_deref().unwrap_or_default()),
            )
            .chain(ephemeral.map(|c| c.image.as_deref().unwrap_or_default()))
    }

    /// Every container's image: init, app, then ephemeral containers.
    pub fn images(&self) -> Vec<ContainerImage> {
        let init = self
            .spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| ContainerImage {
                kind: ContainerKind::Init,
                container: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
            });
        let app = self.spec.containers.iter().map(|c| ContainerImage {
            kind: ContainerKind::App,
            container: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
        });
        let ephemeral = self
            .spec
            .ephemeral_containers
            .iter()
            .flatten()
            .map(|c| ContainerImage {
                kind: ContainerKind::Ephemeral,
                container: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
            });
        init.chain(app).chain(ephemeral).collect()
    }
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

/// The member `name` of the JSON object `object`, borrowed; `None` when `object` is not an
/// object or has no such member, or has it as `null`.
fn member<'a>(object: &'a RawValue, name: &str) -> Option<&'a RawValue> {
    /// The members a path to a pod spec goes through.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Members<'a> {
        #[serde(borrow, default)]
        template: Option<&'a RawValue>,
        #[serde(borrow, default)]
        spec: Option<&'a RawValue>,
        #[serde(borrow, default)]
        job_template: Option<&'a RawValue>,
    }
    if !is_object(object) {
        return None;
    }
    // Text serde_json has read as JSON: only a repeated member fails here, and such an
    // object has no one member of the name either.
    let members: Members<'a> = serde_json::from_str(object.get()).ok()?;
    match name {
        "template" => members.template,
        "spec" => members.spec,
        "jobTemplate" => members.job_template,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str) -> Value {
        json!({"spec": {"containers": [{"name": "app", "image": image}]}})
    }

    #[test]
    fn every_supported_kind_yields_its_pod_spec() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"initContainers": [{"name": "init", "image": "init:1"}],
                     "containers": [{"name": "app", "image": "app:1"}],
                     "ephemeralContainers": [{"name": "debug", "image": "debug:1"}]}});
        let w = Workload::from_object(pod).unwrap();
        assert_eq!(w.namespace.as_deref(), Some("ns"));
        let images: Vec<_> = w.images().into_iter().map(|i| (i.kind, i.image)).collect();
        assert!(w
            .image_names()
            .eq(["init:1", "app:1", "debug:1"].into_iter()));
        assert_eq!(
            images,
            vec![
                (ContainerKind::Init, "init:1".to_string()),
                (ContainerKind::App, "app:1".to_string()),
                (ContainerKind::Ephemeral, "debug:1".to_string()),
            ]
        );

        for kind in [
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
        ] {
            let o = json!({"kind": kind, "spec": {"template": template("x:1")}});
            assert_eq!(
                Workload::from_object(o).unwrap().images()[0].image,
                "x:1",
                "{kind}"
            );
        }
        let cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": template("c:1")}}}});
        assert_eq!(
            Workload::from_object(cron).unwrap().images()[0].image,
            "c:1"
        );
    }

    #[test]
    fn the_controlling_owner_is_read_from_the_metadata() {
        let job_pod = json!({"kind": "Pod", "metadata": {"generateName": "nightly-",
            "ownerReferences": [{"kind": "Job", "name": "nightly-28", "controller": false},
                                {"kind": "Job", "name": "nightly-29", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "a:1"}]}});
        let owner = Workload::from_object(job_pod).unwrap().owner.unwrap();
        assert_eq!((owner.kind(), owner.name()), ("Job", "nightly-29"));
        let deployment = json!({"kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": template("x:1")}});
        let w = Workload::from_object(deployment).unwrap();
        assert_eq!((w.name.as_deref(), w.owner), (Some("web"), None));
    }

    #[test]
    fn an_ephemeral_containers_object_yields_its_containers_as_ephemeral() {
        // The object of a `pods/ephemeralcontainers` review on Kubernetes 1.20/1.21 (and what
        // `check` reads from such a review).
        let object = json!({"kind": "EphemeralContainers", "apiVersion": "v1",
            "metadata": {"name": "p", "namespace": "ns"},
            "ephemeralContainers": [{"name": "debugger", "image": "debug:1"}]});
        let w = Workload::from_object(object).unwrap();
        assert_eq!(
            (w.kind.as_str(), w.name.as_deref()),
            ("EphemeralContainers", Some("p"))
        );
        assert_eq!(
            w.images(),
            vec![ContainerImage {
                kind: ContainerKind::Ephemeral,
                container: "debugger".into(),
                image: "debug:1".into(),
            }]
        );
        assert_eq!(
            w.pod_spec_digest,
            canonical_json_digest(
                r#"{"ephemeralContainers":[{"name":"debugger","image":"debug:1"}]}"#
            )
            .unwrap()
        );
        assert_eq!(
            Workload::from_object(json!({"kind": "EphemeralContainers"})),
            Err(WorkloadError::NoEphemeralContainers)
        );
        assert!(matches!(
            Workload::from_object(json!({"kind": "EphemeralContainers",
                                         "ephemeralContainers": [{"name": "d", "image": 7}]})),
            Err(WorkloadError::Malformed { .. })
        ));
    }

    #[test]
    fn bad_objects_get_precise_errors() {
        assert_eq!(
            Workload::from_object(json!({"spec": {}})),
            Err(WorkloadError::NoKind)
        );
        assert_eq!(
            Workload::from_object(json!({"kind": "Service"})),
            Err(WorkloadError::UnsupportedKind("Service".into()))
        );
        assert!(matches!(
            Workload::from_object(json!({"kind": "Deployment", "spec": {}})),
            Err(WorkloadError::NoPodSpec { .. })
        ));
        assert_eq!(
            Workload::from_object(json!({"kind": "Pod", "spec": {"containers": []}})),
            Err(WorkloadError::NoContainers("Pod".into()))
        );
        assert_eq!(
            Workload::from_object(json!({"kind": "Deployment", "spec": {"template": {"spec":
                {"containers": [{"name": "app", "image": "a:1"}, {"name": "b", "image": 7}]}}}})),
            Err(WorkloadError::Malformed {
                kind: "Deployment".into(),
                error: "invalid type: integer `7`, expected a string at line 1 column 54".into()
            })
        );
        for malformed in [
            json!({"containers": "nope"}),
            json!({"containers": [{"image": "x:1"}]}),
            json!({"containers": [{"name": "app", "image": 7}]}),
            json!({"containers": [{"name": "app"}], "initContainers": {}}),
            json!({"containers": [{"name": "app"}], "imagePullSecrets": [{"name": []}]}),
        ] {
            assert!(
                matches!(
                    Workload::from_object(json!({"kind": "Pod", "spec": malformed})),
                    Err(WorkloadError::Malformed { .. })
                ),
                "{malformed}"
            );
        }
    }
}
