//! The canonical digest written from JSON text (the admission path's) against serde_json:
//! for any text serde_json reads, the same digest as its value's canonical JSON; for any text
//! it refuses, an error. And the canonical form reads back as the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use zastava_crds::canonical::{canonical_digest, canonical_json, canonical_json_digest};

fuzz_target!(|text: &str| {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            assert_eq!(
                canonical_json_digest(text).expect("serde_json read it"),
                canonical_digest(&value).unwrap()
            );
            let canonical = canonical_json(&value).unwrap();
            let again: Value = serde_json::from_str(&canonical).unwrap();
            assert_eq!(again, value, "the canonical form reads back as the same value");
            assert_eq!(canonical_json(&again).unwrap(), canonical);
        }
        Err(_) => assert!(canonical_json_digest(text).is_err()),
    }
});
