//! zastava-webhook: admission decisions driven by ZastavaPolicy objects.
//!
//! The decision is a pure function ([`evaluate::evaluate`]) of the policies, the workload and
//! what the registry says about each image; the server and the `check` CLI only fetch and call.

pub mod check;
pub mod evaluate;
pub mod workload;
