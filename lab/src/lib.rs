//! `lab`: the top of alloclab. It drives the other parts: `traces` writes the synthetic suite
//! (in process), `record` records real programs, the `replayer` library sweeps every trace
//! through every allocator (its children are the `replay` binary), and `analyze` turns the
//! results into a report. `lab fidelity` runs real programs under each allocator and sets the
//! measurements beside their replays.
//!
//! - [`suite`]: the lab itself (`lab`, `lab --quick`, `lab --record -- CMD…`).
//! - [`fidelity`]: `lab fidelity -- CMD…` and `lab fidelity --default-set`.
//! - [`shard`]: the sweep as a manifest (`lab --plan-only`), run in shards (`lab run`), and
//!   what is done (`lab status`).
//! - [`slurm`]: `lab slurm`, the shards as a Slurm job array.
//! - [`tools`]: where `record`, `replay`, `analyze` and `libfancy_preload.so` are, and `record
//!   --json` read back.
//! - [`error`]: one error kind and exit code per step that can fail.

pub mod error;
pub mod fidelity;
pub mod programs;
pub mod shard;
pub mod slurm;
pub mod suite;
pub mod tools;

pub use error::LabError;
