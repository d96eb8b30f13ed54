//! The pod spec inside an admitted object, and the images it runs.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use zastava_crds::canonical::CanonicalValue;
use zastava_crds::image::{ImageRefError, ImageReference};

/// The part of a pod spec a decision reads: the containers' names and images and the pull
/// secrets. The rest is the API server's to validate (it has, before any webhook is called);
/// reading the whole `PodSpec` cost more than the decision itself on a warm cache.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
    pub ephemeral_containers: Option<Vec<Container>>,
    pub image_pull_secrets: Option<Vec<SecretName>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
}

/// A `LocalObjectReference` to a Secret of the pod's namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecretName {
    pub name: String,
}

impl PodSpec {
    /// Reads the fields above out of a pod spec; a field of the wrong type is an error that
    /// names it (`initContainers[0].image: expected a string, got a number`).
    fn read(spec: &CanonicalValue) -> Result<Self, String> {
        let containers = |field: &str| -> Result<Option<Vec<Container>>, String> {
            list(spec, field, |at, c| {
                Ok(Container {
                    name: text(c, "name")
                        .map_err(|e| format!("{field}[{at}].{e}"))?
                        .ok_or_else(|| format!("{field}[{at}]: has no name"))?,
                    image: text(c, "image").map_err(|e| format!("{field}[{at}].{e}"))?,
                })
            })
        };
        Ok(Self {
            containers: containers("containers")?.unwrap_or_default(),
            init_containers: containers("initContainers")?,
            ephemeral_containers: containers("ephemeralContainers")?,
            image_pull_secrets: list(spec, "imagePullSecrets", |at, s| {
                Ok(SecretName {
                    name: text(s, "name")
                        .map_err(|e| format!("imagePullSecrets[{at}].{e}"))?
                        .unwrap_or_default(),
                })
            })?,
        })
    }
}

/// The list `field` of `object`, each item an object read by `item`; `None` when absent.
fn list<T>(
    object: &CanonicalValue,
    field: &str,
    item: impl Fn(usize, &CanonicalValue) -> Result<T, String>,
) -> Result<Option<Vec<T>>, String> {
    let Some(value) = object.get(field) else {
        return Ok(None);
    };
    let items = value
        .as_array()
        .ok_or_else(|| format!("{field}: expected a list, got {}", value.kind()))?;
    items
        .iter()
        .enumerate()
        .map(|(at, value)| {
            if value.is_object() {
                item(at, value)
            } else {
                Err(format!(
                    "{field}[{at}]: expected an object, got {}",
                    value.kind()
                ))
            }
        })
        .collect::<Result<Vec<T>, String>>()
        .map(Some)
}

/// The string `field` of `object`; `None` when absent.
fn text(object: &CanonicalValue, field: &str) -> Result<Option<String>, String> {
    match object.get(field) {
        None => Ok(None),
        Some(value) => value
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| format!("{field}: expected a string, got {}", value.kind())),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkloadError {
    #[error("object has no `kind`")]
    NoKind,
    #[error("kind `{0}` is not a Pod or a workload with a pod template (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob)")]
    UnsupportedKind(String),
    #[error("{kind} has no pod spec at `{path}`")]
    NoPodSpec { kind: String, path: &'static str },
    #[error("{kind} pod spec is malformed: {error}")]
    Malformed { kind: String, error: String },
    #[error("{0} has no containers")]
    NoContainers(String),
}

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

/// The pod spec of an admitted object, with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub kind: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub spec: PodSpec,
    /// `sha256:<hex>` of the pod spec's canonical JSON: the decision's `podSpecDigest`.
    pub pod_spec_digest: String,
    /// Each image once (sorted), parsed: the lookups and the evaluation read them.
    pub references: BTreeMap<String, Result<ImageReference, ImageRefError>>,
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
        // Any `Value` reads as one.
        let spec = object
            .get("spec")
            .and_then(|spec| CanonicalValue::deserialize(spec).ok());
        Self::from_parts(kind.as_deref(), name, namespace, spec.as_ref())
    }

    /// The same as [`Workload::from_object`], from the parts of the object it reads: its
    /// `kind`, `metadata.name`, `metadata.namespace` and `spec` (the admission path reads the
    /// spec out of the request body straight into a [`CanonicalValue`]).
    pub fn from_parts(
        kind: Option<&str>,
        name: Option<String>,
        namespace: Option<String>,
        spec: Option<&CanonicalValue>,
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
            .fold(spec, |object, name| object.and_then(|o| o.get(name)))
            .filter(|spec| spec.is_object())
            .ok_or_else(|| WorkloadError::NoPodSpec {
                kind: kind.to_string(),
                path,
            })?;
        let spec = PodSpec::read(pod_spec).map_err(|error| WorkloadError::Malformed {
            kind: kind.to_string(),
            error,
        })?;
        if spec.containers.is_empty() {
            return Err(WorkloadError::NoContainers(kind.to_string()));
        }
        let mut workload = Self {
            kind: kind.to_string(),
            name,
            namespace,
            spec,
            pod_spec_digest: pod_spec.digest(),
            references: BTreeMap::new(),
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
                error: "containers[1].image: expected a string, got a number".into()
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
