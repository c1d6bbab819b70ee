//! The replay result schema as `analyze` reads it: the columns of `results_schema` (the one
//! definition, replayer/SCHEMA.md), their polars types, and which ones a file must have.
//!
//! Reading is tolerant by design: unknown extra columns are ignored; a missing column that is
//! not required is filled with nulls (and reported); a column of another type is cast (values
//! that do not convert become null). Only a file without its identifying columns is skipped.

use polars::prelude::DataType;
pub use results_schema::File as FileKind;
pub use results_schema::{Col, SCHEMA_VERSION, Ty};

/// The polars type of a schema type.
pub fn dtype(ty: Ty) -> DataType {
    match ty {
        Ty::Str => DataType::String,
        Ty::U32 => DataType::UInt32,
        Ty::U64 => DataType::UInt64,
        Ty::I64 => DataType::Int64,
        Ty::F64 => DataType::Float64,
        Ty::Bool => DataType::Boolean,
    }
}

/// Columns latency.parquet and timeseries.parquet repeat from runs.parquet; `analyze` takes them
/// from the run (joined on the directory and `run_id`), so it does not read them twice.
const FROM_THE_RUN: [&str; 5] = [
    "allocator",
    "trace_name",
    "workload",
    "replay_threads",
    "repetition",
];

/// The columns `analyze` reads from a file, in the file's order.
pub fn columns(kind: FileKind) -> Vec<&'static Col> {
    kind.columns()
        .iter()
        .filter(|c| kind == FileKind::Runs || !FROM_THE_RUN.contains(&c.name))
        .collect()
}

/// Whether a file without column `name` cannot be used.
pub fn required(kind: FileKind, name: &str) -> bool {
    kind.required().contains(&name)
}

/// The column added to every frame: index of the result directory the row came from (run ids
/// are unique only within one directory).
pub const SOURCE: &str = "source";
