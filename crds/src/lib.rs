//! Zastava's custom resources and what their fields mean.
//!
//! The types here are the single definition of the `ZastavaPolicy` and `RuntimePosture` CRDs;
//! `make crds` writes their YAML next to this crate and a test keeps it in sync.

// kube-derive takes one `printcolumn(...)` per column; clippy reads their repeated
// `type_ = ...` items as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod canonical;
pub mod certificates;
pub mod conditions;
pub mod contracts;
pub mod credentials;
pub mod governs;
pub mod image;
pub mod keys;
pub mod policy;
pub mod posture;

use kube::CustomResourceExt;

pub use policy::{ZastavaPolicy, ZastavaPolicySpec, ZastavaPolicyStatus};
pub use posture::{RuntimePosture, RuntimePostureSpec, RuntimePostureStatus};

/// The API group of every Zastava resource.
pub const GROUP: &str = "zastava.stellaops.io";

/// The generated CRD manifests, each with the file name it is committed under.
pub fn crd_manifests() -> Vec<(String, String)> {
    [ZastavaPolicy::crd(), RuntimePosture::crd()]
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default());
            let mut value = serde_json::to_value(&crd).expect("a CRD always serializes");
            drop_null_from_nullable_enums(&mut value);
            let yaml = serde_yaml_ng::to_string(&value).expect("a CRD always serializes to YAML");
            (name, yaml)
        })
        .collect()
}

/// schemars lists `null` among the values of an optional enum; `nullable: true` already says
/// so, and Kubernetes 1.20 cannot compare such a schema with itself (it rejects the CRD with
/// "per-version schemas may not all be set to identical values").
fn drop_null_from_nullable_enums(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("nullable") == Some(&serde_json::Value::Bool(true)) {
                if let Some(serde_json::Value::Array(values)) = map.get_mut("enum") {
                    values.retain(|v| !v.is_null());
                }
            }
            map.values_mut().for_each(drop_null_from_nullable_enums);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_from_nullable_enums),
        _ => {}
    }
}
