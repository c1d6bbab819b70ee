//! `replay`: feeds an allocation trace into an allocator and measures it.
//!
//! The flow, one module per step: [`prep`] turns a trace into a [`plan`] (compact per-thread
//! op arrays over object slots) once, in the parent; [`sweep`] starts one child process per
//! allocator × repetition × pass, interleaved, each of which maps the plan and runs the
//! [`engine`] over one [`adapter`]; [`results`] turns what the children measured into the rows
//! of replayer/SCHEMA.md, which [`table`] prints and [`parquet`] writes. [`mem`] keeps the
//! harness's own memory away from every allocator under test.
//!
//! ```no_run
//! use replayer::{adapter::AllocSpec, sweep::{Sweep, SweepOptions}};
//! let opts = SweepOptions {
//!     allocators: vec![AllocSpec::System, AllocSpec::Fancy],
//!     repeat: 3,
//!     ..SweepOptions::new("trace.zst")
//! };
//! let results = Sweep::prepare(opts)?.run()?;
//! println!("{}", replayer::table::render(&results));
//! # Ok::<(), replayer::error::ReplayError>(())
//! ```

pub mod adapter;
pub mod addrmap;
pub mod child;
pub mod counters;
pub mod engine;
pub mod env;
pub mod error;
pub mod human;
pub mod inside;
pub mod introspect;
pub mod mem;
pub mod oscalls;
pub mod parquet;
pub mod plan;
pub mod prep;
pub mod results;
pub mod sweep;
pub mod sys;
pub mod table;
pub mod touch;

pub use error::ReplayError;
