//! `admission.k8s.io/v1` AdmissionReview in and out, as plain data: what the server decodes
//! before deciding, and the response it sends back.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::workload::Workload;

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
pub fn decode(body: &[u8]) -> Result<Request, ReviewError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let kind = value["kind"].as_str().unwrap_or_default();
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(ReviewError::WrongKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        });
    }
    let request = value.get("request").ok_or(ReviewError::NoRequest)?;
    let uid = request["uid"]
        .as_str()
        .filter(|u| !u.is_empty())
        .ok_or(ReviewError::NoUid)?
        .to_string();
    let operation = request["operation"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if operation != "CREATE" && operation != "UPDATE" {
        return Ok(Request::Skip {
            uid,
            why: "only CREATE and UPDATE are decided",
        });
    }
    let Some(object) = request.get("object").filter(|o| o.is_object()) else {
        return Ok(Request::Reject {
            uid,
            message: format!("zastava denied: the {operation} request carries no object"),
        });
    };
    let workload = match Workload::from_object(object) {
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
            .get("oldObject")
            .and_then(|o| Workload::from_object(o).ok())
        {
            let images =
                |w: &Workload| -> Vec<String> { w.images().into_iter().map(|c| c.image).collect() };
            if images(&old) == images(&workload) {
                return Ok(Request::Skip {
                    uid,
                    why: "UPDATE leaves every image unchanged",
                });
            }
        }
    }
    let namespace = request["namespace"]
        .as_str()
        .map(String::from)
        .or_else(|| workload.namespace.clone())
        .unwrap_or_default();
    Ok(Request::Decide(Box::new(Review {
        uid,
        namespace,
        operation,
        workload,
    })))
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

    /// The AdmissionReview JSON the apiserver expects back.
    pub fn to_review(&self) -> Value {
        let mut response = json!({"uid": self.uid, "allowed": self.allowed});
        if let Some(message) = &self.message {
            response["status"] = json!({"code": 403, "reason": "Forbidden", "message": message});
        }
        if !self.warnings.is_empty() {
            // kubectl prints each warning; the apiserver truncates long ones, so keep them short.
            response["warnings"] = json!(self.warnings);
        }
        if !self.audit_annotations.is_empty() {
            response["auditAnnotations"] = json!(self.audit_annotations);
        }
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let new_image = review(json!({"uid": "u", "operation": "UPDATE",
                                      "object": pod("a:2"), "oldObject": pod("a:1")}));
        assert!(matches!(decode(&new_image).unwrap(), Request::Decide(_)));
    }

    #[test]
    fn the_response_carries_status_warnings_and_annotations() {
        let mut r = Response::deny("u9", "zastava denied: x".into());
        r.warnings.push("w".into());
        r.audit_annotations
            .insert(FAIL_OPEN_ANNOTATION.into(), "true".into());
        let v = r.to_review();
        assert_eq!(v["response"]["uid"], "u9");
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["code"], 403);
        assert_eq!(v["response"]["status"]["message"], "zastava denied: x");
        assert_eq!(v["response"]["warnings"][0], "w");
        assert_eq!(
            v["response"]["auditAnnotations"][FAIL_OPEN_ANNOTATION],
            "true"
        );
        let ok = Response::allow("u").to_review();
        assert!(ok["response"].get("status").is_none());
    }
}
