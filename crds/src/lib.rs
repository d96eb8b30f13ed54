//! Zastava's custom resources and what their fields mean.
//!
//! The types here are the single definition of the `ZastavaPolicy` and `RuntimePosture` CRDs;
//! `make crds` writes their YAML next to this crate and a test keeps it in sync.

// kube-derive takes one `printcolumn(...)` per column; clippy reads their repeated
// `type_ = ...` items as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod conditions;
pub mod contracts;
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
            let yaml = serde_yaml_ng::to_string(&crd).expect("a CRD always serializes to YAML");
            (name, yaml)
        })
        .collect()
}
