//! `admission.k8s.io/v1` AdmissionReview in and out, as plain data: what the server decodes
//! before deciding, and the response it sends back.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use serde_json::value::RawValue;

use crate::workload::{Owner, Workload, WorkloadError, EPHEMERAL_CONTAINERS_KIND};

/// The audit annotation set when a verification could not complete and a fail-open namespace
/// admitted the workload anyway (the apiserver prefixes it with the webhook's name).
pub const FAIL_OPEN_ANNOTATION: &str = "zastava.stellaops.io/fail-open";
/// Audit annotation naming what an `Audit` policy would have denied.
pub const AUDIT_ANNOTATION: &str = "zastava.stellaops.io/audit";

/// Why a request body is not a usable AdmissionReview: answered with HTTP 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("AdmissionReview is malformed: {0}")]
    Malformed(String),
    #[error(
        "expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got {api_version} {kind}"
    )]
    WrongKind { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

/// What a review asks, once decoded.
#[derive(Debug)]
pub enum Request {
    /// Decide on the workload.
    Decide(Box<Review>),
    /// Nothing to decide (DELETE/CONNECT, or an UPDATE that changes no image): allow.
    Skip { uid: String, why: &'static str },
    /// The object cannot be decided on (wrong kind, no containers, malformed pod spec):
    /// denied with this message.
    Reject { uid: String, message: String },
}

#[derive(Debug)]
pub struct Review {
    pub uid: String,
    pub namespace: String,
    pub operation: String,
    pub workload: Workload,
}

/// Decodes an AdmissionReview body.
///
/// The body is read into the few fields a decision uses; everything else (userInfo, options,
/// the object's metadata besides its name and namespace, managedFields above all) is skipped
/// by the parser instead of being built into a JSON tree and dropped. Fields read leniently
/// (a missing or mistyped field is treated as absent) just as a lookup in a JSON tree would.
pub fn decode(body: &[u8]) -> Result<Request, ReviewError> {
    // Read through `Lenient`: a derived struct would also take a JSON array, its fields by
    // position (found by fuzzing: `["admission.k8s.io/v1","AdmissionReview",{…}]` was decided).
    // JSON is UTF-8 throughout; serde_json checks only the strings it reads, so invalid bytes
    // in a skipped field passed (found by fuzzing). Checked once here, the text then is `str`.
    let body = std::str::from_utf8(body)
        .map_err(|e| ReviewError::NotJson(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let review: Lenient<ReviewBody<'_>> =
        serde_json::from_str(body).map_err(|e| match e.classify() {
            Category::Data => ReviewError::Malformed(e.to_string()),
            Category::Io | Category::Syntax | Category::Eof => ReviewError::NotJson(e.to_string()),
        })?;
    let Lenient::Object(review) = review else {
        return Err(ReviewError::Malformed(
            "an AdmissionReview is a JSON object".to_string(),
        ));
    };
    let api_version = review.api_version.as_str().unwrap_or_default();
    let kind = review.kind.as_str().unwrap_or_default();
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(ReviewError::WrongKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        });
    }
    let request = match review.request {
        Lenient::Missing => return Err(ReviewError::NoRequest),
        Lenient::Other => RequestBody::default(),
        Lenient::Object(request) => request,
    };
    let uid = match request.uid.as_str() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => return Err(ReviewError::NoUid),
    };
    let operation = request.operation.as_str().unwrap_or_default().to_string();
    if operation != "CREATE" && operation != "UPDATE" {
        return Ok(Request::Skip {
            uid,
            why: "only CREATE and UPDATE are decided",
        });
    }
    let Lenient::Object(object) = request.object else {
        return Ok(Request::Reject {
            uid,
            message: format!("zastava denied: the {operation} request carries no object"),
        });
    };
    let workload = match object.into_workload() {
        Ok(w) => w,
        Err(e) => {
            return Ok(Request::Reject {
                uid,
                message: format!("zastava denied: {e}"),
            })
        }
    };
    // An UPDATE that leaves every image as it was (labels, replicas, status) was decided when
    // the images were set; re-deciding it could block scaling a running workload.
    if operation == "UPDATE" {
        if let Some(old) = request
            .old_object
            .into_object()
            .and_then(|o| o.into_workload().ok())
        {
            if old.image_names().eq(workload.image_names()) {
                return Ok(Request::Skip {
                    uid,
                    why: "UPDATE leaves every image unchanged",
                });
            }
        }
    }
    // The namespace the apiserver names decides which policies govern and whose pull Secrets
    // are read; the object's own field is what its author wrote. The apiserver always sends
    // one for the namespaced kinds Zastava intercepts, and an object naming another namespace
    // never passes its validation, so either is a review the apiserver did not send.
    let Some(namespace) = request.namespace.as_str().filter(|n| !n.is_empty()) else {
        return Ok(Request::Reject {
            uid,
            message: "zastava denied: the review names no namespace".to_string(),
        });
    };
    if let Some(other) = workload.namespace.as_deref().filter(|n| *n != namespace) {
        return Ok(Request::Reject {
            uid,
            message: format!(
                "zastava denied: the object's namespace `{other}` is not the review's `{namespace}`"
            ),
        });
    }
    let namespace = namespace.to_string();
    Ok(Request::Decide(Box::new(Review {
        uid,
        namespace,
        operation,
        workload,
    })))
}

/// What [`decode`] reads of a review.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewBody<'a> {
    #[serde(borrow, default)]
    api_version: Text<'a>,
    #[serde(borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    request: Lenient<RequestBody<'a>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestBody<'a> {
    #[serde(borrow, default)]
    uid: Text<'a>,
    #[serde(borrow, default)]
    operation: Text<'a>,
    #[serde(borrow, default)]
    namespace: Text<'a>,
    #[serde(borrow, default)]
    object: Lenient<ObjectBody<'a>>,
    #[serde(borrow, default)]
    old_object: Lenient<ObjectBody<'a>>,
}

#[derive(Deserialize)]
struct ObjectBody<'a> {
    #[serde(borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    metadata: Lenient<MetadataBody<'a>>,
    /// Borrowed from the body as JSON text: the workload reads the pod spec's containers
    /// and its canonical digest out of it.
    #[serde(borrow, default)]
    spec: Option<&'a RawValue>,
    /// The list an `EphemeralContainers` object (the `pods/ephemeralcontainers` subresource
    /// of Kubernetes 1.20/1.21) carries instead of a spec.
    #[serde(borrow, default, rename = "ephemeralContainers")]
    ephemeral_containers: Option<&'a RawValue>,
}

impl ObjectBody<'_> {
    fn into_workload(self) -> Result<Workload, WorkloadError> {
        let (name, namespace, owner) = match self.metadata {
            Lenient::Object(m) => (
                m.name.into_string(),
                m.namespace.into_string(),
                m.owner_references.0,
            ),
            Lenient::Missing | Lenient::Other => (None, None, None),
        };
        let mut workload = if self.kind.as_str() == Some(EPHEMERAL_CONTAINERS_KIND) {
            Workload::from_ephemeral_containers(name, namespace, self.ephemeral_containers)?
        } else {
            Workload::from_parts(self.kind.as_str(), name, namespace, self.spec)?
        };
        workload.owner = owner;
        Ok(workload)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataBody<'a> {
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    namespace: Text<'a>,
    #[serde(default)]
    owner_references: Controller,
}

/// `metadata.ownerReferences`, read for the controlling owner only (the decision record names
/// it): the first entry with `controller: true` and a kind and a name. Anything else there
/// (another type, entries lacking a field) is skipped, as [`Text`] skips a mistyped string.
#[derive(Default)]
struct Controller(Option<Owner>);

/// One entry of `ownerReferences`, its strings borrowed from the body.
#[derive(Deserialize)]
struct OwnerReferenceBody<'a> {
    #[serde(borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(default)]
    controller: Truth,
}

/// A field that should hold a boolean: `true` only when it holds `true`.
#[derive(Default)]
struct Truth(bool);

impl<'de> Deserialize<'de> for Truth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Truth;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Truth(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Truth(false))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Truth(false))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Truth(false))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Truth(false))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Truth(false))
            }

            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Truth(false))
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Truth(false))
            }

            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Truth(false))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

impl<'de> Deserialize<'de> for Controller {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Controller;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(entry) = seq.next_element::<Lenient<OwnerReferenceBody<'de>>>()? {
                    let Lenient::Object(entry) = entry else {
                        continue;
                    };
                    if found.is_some() || !entry.controller.0 {
                        continue;
                    }
                    if let (Some(kind), Some(name)) = (entry.kind.as_str(), entry.name.as_str()) {
                        found = Some(Owner::new(kind, name));
                    }
                }
                Ok(Controller(found))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Controller(None))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Controller(None))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Controller(None))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Controller(None))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Controller(None))
            }

            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Controller(None))
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Controller(None))
            }

            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Controller(None))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// A field that should hold a string: the string, borrowed from the body unless it has
/// escapes, or nothing when the field is absent or holds something else. (Read as a `Value`,
/// each of a review's small string fields was a copy of its own.)
#[derive(Default)]
struct Text<'a>(Option<Cow<'a, str>>);

impl Text<'_> {
    fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }

    fn into_string(self) -> Option<String> {
        self.0.map(Cow::into_owned)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Visit<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text(None))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }

            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
        }
        deserializer.deserialize_any(Visit(PhantomData))
    }
}

/// A field that should hold a JSON object: absent, something else (null, a string ...), or
/// the object read as `T`.
#[derive(Default)]
enum Lenient<T> {
    #[default]
    Missing,
    Other,
    Object(T),
}

impl<T> Lenient<T> {
    fn into_object(self) -> Option<T> {
        match self {
            Lenient::Object(t) => Some(t),
            Lenient::Missing | Lenient::Other => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Visit<T> {
            type Value = Lenient<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Lenient::Object)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient::Other)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }

            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }

            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
        }
        deserializer.deserialize_any(Visit(PhantomData))
    }
}

/// The answer to one review.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    /// Shown to the user when denied.
    pub message: Option<String>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

impl Response {
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_string(),
            allowed: true,
            ..Self::default()
        }
    }

    pub fn deny(uid: &str, message: String) -> Self {
        Self {
            uid: uid.to_string(),
            allowed: false,
            message: Some(message),
            ..Self::default()
        }
    }

    /// The AdmissionReview the apiserver expects back, ready to serialize (straight from the
    /// response's fields, without building a JSON tree first).
    pub fn review(&self) -> impl Serialize + '_ {
        ReviewOut {
            api_version: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: ResponseOut {
                uid: &self.uid,
                allowed: self.allowed,
                status: self.message.as_deref().map(|message| StatusOut {
                    code: 403,
                    reason: "Forbidden",
                    message,
                }),
                // kubectl prints each warning; the apiserver truncates long ones, so keep them
                // short.
                warnings: &self.warnings,
                audit_annotations: &self.audit_annotations,
            },
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    code: u16,
    reason: &'static str,
    message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::ContainerKind;
    use serde_json::{json, Value};

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request
        }))
        .unwrap()
    }

    fn pod(image: &str) -> Value {
        json!({"kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    #[test]
    fn a_review_with_bytes_that_are_not_utf8_is_not_json() {
        let mut body = review(
            json!({"uid": "u1", "operation": "CREATE", "namespace": "team",
                                     "subResource": "status", "object": pod("busybox:1")}),
        );
        let at = body.windows(6).position(|w| w == b"status").unwrap();
        body[at + 1] = 0xed;
        assert_eq!(
            decode(&body).unwrap_err(),
            ReviewError::NotJson(format!("not UTF-8 at byte {}", at + 1))
        );
    }

    #[test]
    fn a_review_that_is_not_a_json_object_is_malformed() {
        let request = json!({"uid": "u1", "operation": "CREATE", "namespace": "team",
                             "object": pod("busybox:1")});
        let array = serde_json::to_vec(&json!(["admission.k8s.io/v1", "AdmissionReview", request]))
            .unwrap();
        for body in [array, b"\"AdmissionReview\"".to_vec(), b"null".to_vec()] {
            assert_eq!(
                decode(&body).unwrap_err(),
                ReviewError::Malformed("an AdmissionReview is a JSON object".to_string()),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn a_pod_create_is_decided_in_its_namespace() {
        let body = review(
            json!({"uid": "u1", "operation": "CREATE", "namespace": "team",
                                 "object": pod("busybox:1")}),
        );
        let Request::Decide(r) = decode(&body).unwrap() else {
            panic!("not decided")
        };
        assert_eq!((r.uid.as_str(), r.namespace.as_str()), ("u1", "team"));
        assert_eq!(r.workload.images()[0].image, "busybox:1");
    }

    #[test]
    fn a_pod_made_from_a_template_is_known_by_its_controlling_owner() {
        let decided = |metadata: Value| {
            let object = json!({"kind": "Pod", "metadata": metadata,
                                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}});
            let body = review(
                json!({"uid": "u1", "operation": "CREATE", "namespace": "team",
                                     "object": object}),
            );
            let Request::Decide(r) = decode(&body).unwrap() else {
                panic!("not decided")
            };
            let owner = r.workload.owner.as_ref();
            (
                r.workload.name.clone(),
                owner.map(|o| (o.kind().to_string(), o.name().to_string())),
            )
        };
        // A ReplicaSet's pod as a mutating webhook sees it (the apiserver generates the name
        // after mutating admission, before validating): no name, a generateName and its
        // controller.
        assert_eq!(
            decided(json!({"generateName": "web-5d8f-", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-controller", "uid": "1"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f",
                 "uid": "2", "controller": true, "blockOwnerDeletion": true}]})),
            (None, Some(("ReplicaSet".into(), "web-5d8f".into())))
        );
        assert_eq!(
            decided(json!({"name": "web-0", "ownerReferences": [
                {"kind": "StatefulSet", "name": "w\"eb", "controller": true}]})),
            (
                Some("web-0".into()),
                Some(("StatefulSet".into(), "w\"eb".into()))
            )
        );
        // Owners that do not control, and whatever else is there, are no owner; never an
        // error.
        for references in [
            json!([{"kind": "ReplicaSet", "name": "rs"}]),
            json!([{"kind": "ReplicaSet", "name": "rs", "controller": "true"}]),
            json!([{"kind": "ReplicaSet", "controller": true}]),
            json!([{"kind": 7, "name": "rs", "controller": true}, "x", 3, null, []]),
            json!({"kind": "ReplicaSet", "name": "rs", "controller": true}),
            json!("ReplicaSet/rs"),
            json!(null),
        ] {
            assert_eq!(
                decided(json!({"name": "p", "ownerReferences": references})),
                (Some("p".into()), None),
                "{references}"
            );
        }
    }

    #[test]
    fn unusable_bodies_are_errors_with_their_cause() {
        assert!(matches!(decode(b"{not json"), Err(ReviewError::NotJson(_))));
        let err = decode(br#"{"apiVersion": "v1", "kind": "Pod"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got v1 Pod"
        );
        assert_eq!(
            decode(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#)
                .unwrap_err(),
            ReviewError::NoRequest
        );
        assert_eq!(
            decode(&review(json!({"operation": "CREATE"}))).unwrap_err(),
            ReviewError::NoUid
        );
    }

    #[test]
    fn fields_of_the_wrong_type_read_as_absent() {
        let not_object =
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": "x"}"#;
        assert_eq!(decode(not_object).unwrap_err(), ReviewError::NoUid);
        assert_eq!(
            decode(&review(json!({"uid": 5, "operation": "CREATE"}))).unwrap_err(),
            ReviewError::NoUid
        );
        let odd = review(json!({"uid": "u", "operation": "CREATE", "object": ["Pod"]}));
        assert!(matches!(decode(&odd).unwrap(), Request::Reject { .. }));
        let no_kind = review(json!({"uid": "u", "operation": "CREATE",
                                    "object": {"kind": 5, "spec": {}}}));
        let Request::Reject { message, .. } = decode(&no_kind).unwrap() else {
            panic!("not rejected")
        };
        assert_eq!(message, "zastava denied: object has no `kind`");
        // What is not read (managedFields, userInfo) is skipped.
        let full = review(
            json!({"uid": "u", "operation": "CREATE", "namespace": "from-object",
            "userInfo": {"username": "u", "groups": ["g"]}, "dryRun": false,
            "object": {"kind": "Pod", "metadata": {"name": "p", "namespace": "from-object",
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
                "spec": {"containers": [{"name": "c", "image": "a:1"}]}}}),
        );
        let Request::Decide(r) = decode(&full).unwrap() else {
            panic!("not decided")
        };
        assert_eq!(r.namespace, "from-object");
        assert_eq!(r.workload.name.as_deref(), Some("p"));
        assert!(matches!(
            decode(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"object": 1, "object": 2}}"#),
            Err(ReviewError::Malformed(_))
        ));
    }

    #[test]
    fn only_the_namespace_the_apiserver_names_is_decided_in() {
        let pod = |namespace: Value| {
            json!({"kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
                   "spec": {"containers": [{"name": "c", "image": "a:1"}],
                            "imagePullSecrets": [{"name": "their-registry"}]}})
        };
        // The object's namespace is not taken for the review's: pull Secrets are read where
        // the apiserver says the object is.
        for (request_namespace, object_namespace, why) in [
            (
                json!(null),
                json!("victim"),
                "the review names no namespace",
            ),
            (json!(""), json!("victim"), "the review names no namespace"),
            (
                json!("attacker"),
                json!("victim"),
                "the object's namespace `victim` is not the review's `attacker`",
            ),
        ] {
            let body = review(json!({"uid": "u", "operation": "CREATE",
                "namespace": request_namespace, "object": pod(object_namespace)}));
            let Request::Reject { message, .. } = decode(&body).unwrap() else {
                panic!("decided: {why}")
            };
            assert_eq!(message, format!("zastava denied: {why}"));
        }
        // The apiserver's own shape: the object without a namespace, or with the same one.
        for object_namespace in [json!(null), json!("team")] {
            let body = review(json!({"uid": "u", "operation": "CREATE",
                "namespace": "team", "object": pod(object_namespace)}));
            let Request::Decide(r) = decode(&body).unwrap() else {
                panic!("not decided")
            };
            assert_eq!(r.namespace, "team");
        }
    }

    #[test]
    fn wrong_kinds_and_empty_pods_are_denied_with_a_message() {
        let service = review(json!({"uid": "u", "operation": "CREATE",
                                    "object": {"kind": "Service", "spec": {}}}));
        let Request::Reject { message, .. } = decode(&service).unwrap() else {
            panic!("not rejected")
        };
        assert!(message.contains("kind `Service` is not a Pod"), "{message}");

        let empty = review(json!({"uid": "u", "operation": "CREATE",
                                  "object": {"kind": "Pod", "spec": {"containers": []}}}));
        let Request::Reject { message, .. } = decode(&empty).unwrap() else {
            panic!("not rejected")
        };
        assert_eq!(message, "zastava denied: Pod has no containers");

        let none = review(json!({"uid": "u", "operation": "CREATE"}));
        assert!(matches!(decode(&none).unwrap(), Request::Reject { .. }));
    }

    #[test]
    fn deletes_and_image_preserving_updates_are_skipped() {
        let delete = review(json!({"uid": "u", "operation": "DELETE", "oldObject": pod("a:1")}));
        assert!(matches!(decode(&delete).unwrap(), Request::Skip { .. }));
        let relabel = review(json!({"uid": "u", "operation": "UPDATE",
                                    "object": pod("a:1"), "oldObject": pod("a:1")}));
        assert!(matches!(decode(&relabel).unwrap(), Request::Skip { .. }));
        let new_image = review(
            json!({"uid": "u", "operation": "UPDATE", "namespace": "team",
                                      "object": pod("a:2"), "oldObject": pod("a:1")}),
        );
        assert!(matches!(decode(&new_image).unwrap(), Request::Decide(_)));
    }

    /// `kubectl debug --image=...`: an UPDATE of the `pods/ephemeralcontainers` subresource.
    fn ephemeral_review(object: Value, old_object: Value) -> Vec<u8> {
        review(
            json!({"uid": "u", "operation": "UPDATE", "namespace": "team",
            "kind": {"group": "", "version": "v1", "kind": object["kind"]},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": "ephemeralcontainers",
            "object": object, "oldObject": old_object}),
        )
    }

    #[test]
    fn ephemeral_containers_of_kubernetes_1_20_are_decided() {
        // Kubernetes 1.20/1.21: the subresource's object is an `EphemeralContainers`.
        let list = |images: &[&str]| {
            let containers: Vec<Value> = images
                .iter()
                .enumerate()
                .map(|(i, image)| {
                    json!({"name": format!("debugger-{i}"), "image": image,
                    "imagePullPolicy": "IfNotPresent", "terminationMessagePolicy": "File"})
                })
                .collect();
            json!({"kind": "EphemeralContainers", "apiVersion": "v1",
                   "metadata": {"name": "p", "namespace": "team"},
                   "ephemeralContainers": containers})
        };
        let body = ephemeral_review(list(&["busybox:1", "evil:1"]), list(&["busybox:1"]));
        let Request::Decide(r) = decode(&body).unwrap() else {
            panic!("not decided")
        };
        assert_eq!(r.namespace, "team");
        assert_eq!(r.workload.kind, "EphemeralContainers");
        assert_eq!(r.workload.name.as_deref(), Some("p"));
        let images: Vec<_> = r
            .workload
            .images()
            .into_iter()
            .map(|i| (i.kind, i.container, i.image))
            .collect();
        assert_eq!(
            images,
            vec![
                (
                    ContainerKind::Ephemeral,
                    "debugger-0".into(),
                    "busybox:1".into()
                ),
                (
                    ContainerKind::Ephemeral,
                    "debugger-1".into(),
                    "evil:1".into()
                ),
            ]
        );
        assert_eq!(r.workload.distinct_images(), vec!["busybox:1", "evil:1"]);
        assert!(r.workload.pod_spec_digest.starts_with("sha256:"));
        // The first one added to a Pod that had none, too.
        let first = ephemeral_review(list(&["evil:1"]), list(&[]));
        assert!(matches!(decode(&first).unwrap(), Request::Decide(_)));
        // The same list again changes no image.
        let same = ephemeral_review(list(&["evil:1"]), list(&["evil:1"]));
        assert!(matches!(decode(&same).unwrap(), Request::Skip { .. }));
        // No list, or a malformed one, is denied rather than admitted unseen.
        for bad in [
            json!({"kind": "EphemeralContainers", "metadata": {"name": "p"}}),
            json!({"kind": "EphemeralContainers", "ephemeralContainers": [{"image": "x:1"}]}),
        ] {
            let body = ephemeral_review(bad, list(&[]));
            assert!(
                matches!(decode(&body).unwrap(), Request::Reject { .. }),
                "not rejected"
            );
        }
    }

    #[test]
    fn ephemeral_containers_of_kubernetes_1_22_are_decided() {
        // From 1.22: the subresource's object is the Pod, the new container in
        // `spec.ephemeralContainers`.
        let pod = |ephemeral: Value| {
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "team"},
                "spec": {"initContainers": [{"name": "init", "image": "init:1"}],
                         "containers": [{"name": "c", "image": "app:1"}],
                         "ephemeralContainers": ephemeral}})
        };
        let body = ephemeral_review(
            pod(json!([{"name": "debugger", "image": "evil:1", "targetContainerName": "c"}])),
            pod(json!([])),
        );
        let Request::Decide(r) = decode(&body).unwrap() else {
            panic!("not decided")
        };
        let images: Vec<_> = r
            .workload
            .images()
            .into_iter()
            .map(|i| (i.kind, i.image))
            .collect();
        assert_eq!(
            images,
            vec![
                (ContainerKind::Init, "init:1".into()),
                (ContainerKind::App, "app:1".into()),
                (ContainerKind::Ephemeral, "evil:1".into()),
            ]
        );
    }

    #[test]
    fn the_response_carries_status_warnings_and_annotations() {
        let mut r = Response::deny("u9", "zastava denied: x".into());
        r.warnings.push("w".into());
        r.audit_annotations
            .insert(FAIL_OPEN_ANNOTATION.into(), "true".into());
        let v = serde_json::to_value(r.review()).unwrap();
        assert_eq!(v["response"]["uid"], "u9");
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["code"], 403);
        assert_eq!(v["response"]["status"]["message"], "zastava denied: x");
        assert_eq!(v["response"]["warnings"][0], "w");
        assert_eq!(
            v["response"]["auditAnnotations"][FAIL_OPEN_ANNOTATION],
            "true"
        );
        let ok = serde_json::to_value(Response::allow("u").review()).unwrap();
        assert!(ok["response"].get("status").is_none());
    }
}
