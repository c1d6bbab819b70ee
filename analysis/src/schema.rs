//! The replay result schema (replayer/SCHEMA.md, version 1) as this crate reads it: for each
//! file, the columns `analyze` uses, their types and whether a file without them can be used.
//!
//! Reading is tolerant by design: unknown extra columns are ignored; a missing column that is
//! not `required` is filled with nulls (and reported); a column of another type is cast (values
//! that do not convert become null). Only a file without its identifying columns is skipped.

use polars::prelude::DataType;

/// The schema version this crate was written against.
pub const SCHEMA_VERSION: u32 = 1;

/// The three files of a result directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `runs.parquet`: one row per run.
    Runs,
    /// `latency.parquet`: per run, op kind and quantile.
    Latency,
    /// `timeseries.parquet`: samples over time.
    Timeseries,
}

impl FileKind {
    /// All kinds, in the order they are read.
    pub const ALL: [FileKind; 3] = [FileKind::Runs, FileKind::Latency, FileKind::Timeseries];

    /// The file name inside a result directory.
    pub fn file_name(self) -> &'static str {
        match self {
            FileKind::Runs => "runs.parquet",
            FileKind::Latency => "latency.parquet",
            FileKind::Timeseries => "timeseries.parquet",
        }
    }

    /// The columns read from this file.
    pub fn columns(self) -> &'static [Col] {
        match self {
            FileKind::Runs => RUNS,
            FileKind::Latency => LATENCY,
            FileKind::Timeseries => TIMESERIES,
        }
    }
}

/// A column's type as the schema gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Utf8.
    Str,
    /// UInt32.
    U32,
    /// UInt64.
    U64,
    /// Int64.
    I64,
    /// Float64.
    F64,
    /// Boolean.
    Bool,
}

impl Ty {
    /// The polars type.
    pub fn dtype(self) -> DataType {
        match self {
            Ty::Str => DataType::String,
            Ty::U32 => DataType::UInt32,
            Ty::U64 => DataType::UInt64,
            Ty::I64 => DataType::Int64,
            Ty::F64 => DataType::Float64,
            Ty::Bool => DataType::Boolean,
        }
    }
}

/// One column: its name, type, and whether a file lacking it is skipped.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    /// Column name.
    pub name: &'static str,
    /// Type (others are cast to it).
    pub ty: Ty,
    /// A file without this column cannot be used.
    pub required: bool,
}

const fn req(name: &'static str, ty: Ty) -> Col {
    Col {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: Ty) -> Col {
    Col {
        name,
        ty,
        required: false,
    }
}

use Ty::*;

/// Columns of `runs.parquet` read by `analyze`.
pub const RUNS: &[Col] = &[
    opt("schema_version", U32),
    req("run_id", Str),
    opt("sweep", Str),
    opt("trace_path", Str),
    req("trace_name", Str),
    opt("workload", Str),
    opt("trace_threads", U32),
    req("replay_threads", U32),
    req("allocator", Str),
    opt("allocator_version", Str),
    opt("allocator_options", Str),
    opt("repetition", U32),
    req("status", Str),
    opt("error", Str),
    opt("ops", U64),
    opt("ops_malloc", U64),
    opt("ops_calloc", U64),
    opt("ops_realloc", U64),
    opt("ops_free", U64),
    opt("ops_aligned", U64),
    opt("failed_allocations", U64),
    opt("skipped_inconsistent", U64),
    opt("wall_ns", U64),
    opt("ops_per_sec", F64),
    opt("timed_wall_ns", U64),
    opt("peak_live_bytes", U64),
    opt("final_live_bytes", U64),
    opt("baseline_rss_bytes", U64),
    opt("peak_rss_bytes", U64),
    opt("peak_heap_rss_bytes", U64),
    opt("heap_rss_at_peak_live_bytes", U64),
    opt("frag_ratio_at_peak", F64),
    opt("retained_heap_rss_bytes", U64),
    opt("retained_heap_rss_100ms_bytes", U64),
    opt("retained_heap_rss_1s_bytes", U64),
    opt("minor_faults", U64),
    opt("major_faults", U64),
    opt("user_cpu_ns", U64),
    opt("sys_cpu_ns", U64),
    opt("alloc_allocated_bytes", U64),
    opt("alloc_resident_bytes", U64),
    opt("touch", Str),
    opt("paced", Bool),
    opt("pinned", Bool),
    opt("host", Str),
    opt("os", Str),
    opt("kernel", Str),
    opt("cpu_model", Str),
    opt("cpus", U32),
    opt("thp_enabled", Str),
    opt("glibc_version", Str),
    opt("rustc_version", Str),
    opt("build_profile", Str),
    opt("alloclab_version", Str),
    opt("alloclab_commit", Str),
];

/// Columns of `latency.parquet` read by `analyze` (identity comes from the run, via `run_id`).
pub const LATENCY: &[Col] = &[
    opt("schema_version", U32),
    req("run_id", Str),
    req("op", Str),
    opt("count", U64),
    opt("mean_ns", F64),
    req("quantile", F64),
    req("latency_ns", U64),
];

/// Columns of `timeseries.parquet` read by `analyze`.
pub const TIMESERIES: &[Col] = &[
    opt("schema_version", U32),
    req("run_id", Str),
    opt("phase", Str),
    req("t_ns", U64),
    opt("ops_done", U64),
    opt("live_bytes", U64),
    opt("rss_bytes", U64),
    opt("heap_rss_bytes", I64),
    opt("frag_ratio", F64),
];

/// The column added to every frame: index of the result directory the row came from (run ids
/// are unique only within one directory).
pub const SOURCE: &str = "source";
