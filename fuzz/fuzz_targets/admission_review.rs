//! AdmissionReview decoding: any body decodes to a request or a precise error, never a panic;
//! whatever is decided is a review the apiserver could have sent (a JSON object naming its
//! uid and a namespace that the object, if it names one, agrees with).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;
use zastava_crds::canonical::canonical_digest;
use zastava_webhook::admission::{decode, Request};

fuzz_target!(|body: &[u8]| {
    let Ok(Request::Decide(review)) = decode(body) else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        // serde_json skips the fields a decision does not read without checking that a
        // `\u` escape is a whole surrogate pair; what it skips must still be JSON to it.
        assert!(serde_json::from_slice::<IgnoredAny>(body).is_ok());
        return;
    };
    let request = value
        .get("request")
        .expect("a decided review is an object with a request");
    assert_eq!(request["uid"].as_str(), Some(review.uid.as_str()));
    assert!(!review.uid.is_empty());
    assert_eq!(request["namespace"].as_str(), Some(review.namespace.as_str()));
    assert!(matches!(review.operation.as_str(), "CREATE" | "UPDATE"));
    if let Some(namespace) = &review.workload.namespace {
        assert_eq!(namespace, &review.namespace);
    }
    // The digest of the pod spec read from the body's text is that of its JSON value.
    if review.workload.kind == "Pod" {
        let spec = &request["object"]["spec"];
        assert_eq!(
            review.workload.pod_spec_digest,
            canonical_digest(spec).unwrap()
        );
    }
});
