//! zastava-observer: what a node's containers really run and load.
//!
//! Pure core, thin shell: [`maps`] parses `/proc/<pid>/maps`, [`elf`] reads GNU build-ids,
//! [`hashing`] streams sha256 with a node-wide cache and per-container caps, [`sample`] puts
//! them together for one process, [`confined`] opens every file inside a container's root
//! without ever leaving it, [`limits`] states every cap and budget, [`inspect`] does it for files given by path, and
//! [`entrytrace`] follows a container's entrypoint through its scripts, and [`drift`] compares
//! what runs with what was expected. The node daemon ([`daemon`]) puts them to work: it lists
//! the node's containers through the runtime's CRI socket ([`cri`]), samples and watches them,
//! and reports into `RuntimePosture` ([`report`]), with [`metrics`]. main.rs is the CLI.

pub mod confined;
pub mod cri;
pub mod daemon;
pub mod drift;
pub mod elf;
pub mod entrytrace;
pub mod error;
pub mod hashing;
pub mod inspect;
pub mod limits;
pub mod maps;
pub mod metrics;
pub mod outbox;
pub mod report;
pub mod sample;
#[cfg(test)]
mod testutil;

pub use error::{Error, Result};
