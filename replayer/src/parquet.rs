//! Writes the three result files of replayer/SCHEMA.md (`runs.parquet`, `latency.parquet`,
//! `timeseries.parquet`) with the `parquet` crate (arrow arrays, zstd pages) — polars stays out
//! of the replayer's build.
//!
//! Each file's columns are one table here ([`RUNS`], [`LATENCY`], [`TIMESERIES`]: name, type,
//! nullable), in SCHEMA.md's order; a test checks the tables against SCHEMA.md and the row
//! structs. Rows are turned into columns through their serde form, so a column of the table
//! and a field of the row struct cannot drift apart silently: a missing field is an error.
//! Files are written to a temporary name and renamed, so a reader never sees half a file.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ReplayError;
use crate::results::Results;

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    U32,
    U64,
    I64,
    F64,
    Str,
    Bool,
}

impl Ty {
    /// The arrow type.
    pub fn arrow(self) -> DataType {
        match self {
            Ty::U32 => DataType::UInt32,
            Ty::U64 => DataType::UInt64,
            Ty::I64 => DataType::Int64,
            Ty::F64 => DataType::Float64,
            Ty::Str => DataType::Utf8,
            Ty::Bool => DataType::Boolean,
        }
    }

    /// The name SCHEMA.md uses.
    pub fn schema_name(self) -> &'static str {
        match self {
            Ty::U32 => "UInt32",
            Ty::U64 => "UInt64",
            Ty::I64 => "Int64",
            Ty::F64 => "Float64",
            Ty::Str => "Utf8",
            Ty::Bool => "Boolean",
        }
    }
}

/// One column: name, type, nullable.
pub type Col = (&'static str, Ty, bool);

use Ty::*;

/// runs.parquet.
pub const RUNS: &[Col] = &[
    ("schema_version", U32, false),
    ("run_id", Str, false),
    ("sweep", Str, false),
    ("trace_path", Str, false),
    ("trace_name", Str, false),
    ("workload", Str, false),
    ("trace_threads", U32, false),
    ("trace_peak_threads", U32, false),
    ("replay_threads", U32, false),
    ("peak_replay_threads", U32, true),
    ("allocator", Str, false),
    ("allocator_version", Str, false),
    ("allocator_options", Str, false),
    ("repetition", U32, false),
    ("status", Str, false),
    ("error", Str, true),
    ("ops", U64, false),
    ("ops_malloc", U64, false),
    ("ops_calloc", U64, false),
    ("ops_realloc", U64, false),
    ("ops_free", U64, false),
    ("ops_aligned", U64, false),
    ("failed_allocations", U64, false),
    ("skipped_inconsistent", U64, false),
    ("inversions_resolved", U64, false),
    ("wall_ns", U64, true),
    ("ops_per_sec", F64, true),
    ("timed_wall_ns", U64, true),
    ("preprocess_ns", U64, false),
    ("replay_state_bytes", U64, false),
    ("peak_live_bytes", U64, false),
    ("final_live_bytes", U64, false),
    ("measured_peak_live_bytes", U64, true),
    ("baseline_rss_bytes", U64, true),
    ("peak_rss_bytes", U64, true),
    ("peak_heap_rss_bytes", U64, true),
    ("heap_rss_at_peak_live_bytes", U64, true),
    ("frag_ratio_at_peak", F64, true),
    ("usable_bytes_at_peak", U64, true),
    ("requested_bytes_at_peak", U64, true),
    ("overhead_ratio", F64, true),
    ("retained_heap_rss_bytes", U64, true),
    ("retained_heap_rss_100ms_bytes", U64, true),
    ("retained_heap_rss_1s_bytes", U64, true),
    ("retained_heap_rss_5s_bytes", U64, true),
    ("minor_faults", U64, true),
    ("major_faults", U64, true),
    ("voluntary_ctx_switches", U64, true),
    ("involuntary_ctx_switches", U64, true),
    ("user_cpu_ns", U64, true),
    ("sys_cpu_ns", U64, true),
    ("alloc_allocated_bytes", U64, true),
    ("alloc_resident_bytes", U64, true),
    ("alloc_stats_json", Str, true),
    ("touch", Str, false),
    ("paced", Bool, false),
    ("order", Str, false),
    ("pinned", Bool, false),
    ("started_unix_ns", I64, false),
    ("host", Str, false),
    ("os", Str, false),
    ("kernel", Str, false),
    ("cpu_model", Str, false),
    ("cpus", U32, false),
    ("thp_enabled", Str, false),
    ("glibc_version", Str, false),
    ("rustc_version", Str, false),
    ("build_profile", Str, false),
    ("alloclab_version", Str, false),
    ("alloclab_commit", Str, false),
];

/// latency.parquet.
pub const LATENCY: &[Col] = &[
    ("schema_version", U32, false),
    ("run_id", Str, false),
    ("allocator", Str, false),
    ("trace_name", Str, false),
    ("workload", Str, false),
    ("replay_threads", U32, false),
    ("repetition", U32, false),
    ("op", Str, false),
    ("count", U64, false),
    ("mean_ns", F64, false),
    ("quantile", F64, false),
    ("latency_ns", U64, false),
];

/// timeseries.parquet.
pub const TIMESERIES: &[Col] = &[
    ("schema_version", U32, false),
    ("run_id", Str, false),
    ("allocator", Str, false),
    ("trace_name", Str, false),
    ("workload", Str, false),
    ("replay_threads", U32, false),
    ("repetition", U32, false),
    ("phase", Str, false),
    ("t_ns", U64, false),
    ("ops_done", U64, false),
    ("live_bytes", U64, false),
    ("rss_bytes", U64, false),
    ("heap_rss_bytes", I64, false),
    ("frag_ratio", F64, true),
];

/// The arrow schema of a column table.
pub fn schema(cols: &[Col]) -> Schema {
    Schema::new(
        cols.iter()
            .map(|&(n, t, nullable)| Field::new(n, t.arrow(), nullable))
            .collect::<Vec<_>>(),
    )
}

fn bad(col: &str, row: usize, what: &str) -> ReplayError {
    ReplayError::BadInput(format!(
        "result row {row}: column {col} {what} (a bug in replay: please report it)"
    ))
}

/// Builds one column from the rows' serde objects.
fn column(
    objs: &[Map<String, Value>],
    &(name, ty, nullable): &Col,
) -> Result<ArrayRef, ReplayError> {
    let n = objs.len();
    let get = |i: usize| -> Result<Option<&Value>, ReplayError> {
        match objs[i].get(name) {
            None => Err(bad(name, i, "is missing")),
            Some(Value::Null) if nullable => Ok(None),
            Some(Value::Null) => Err(bad(name, i, "is null but not nullable")),
            Some(v) => Ok(Some(v)),
        }
    };
    macro_rules! build {
        ($builder:ident, $conv:expr) => {{
            let mut b = $builder::with_capacity(n);
            for i in 0..n {
                match get(i)? {
                    None => b.append_null(),
                    Some(v) => {
                        b.append_value($conv(v).ok_or_else(|| bad(name, i, "has the wrong type"))?)
                    }
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match ty {
        U32 => build!(UInt32Builder, |v: &Value| v
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())),
        U64 => build!(UInt64Builder, |v: &Value| v.as_u64()),
        I64 => build!(Int64Builder, |v: &Value| v.as_i64()),
        F64 => build!(Float64Builder, |v: &Value| v.as_f64()),
        Bool => build!(BooleanBuilder, |v: &Value| v.as_bool()),
        Str => {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            for i in 0..n {
                match get(i)? {
                    None => b.append_null(),
                    Some(Value::String(s)) => b.append_value(s),
                    Some(_) => return Err(bad(name, i, "has the wrong type")),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }
    })
}

/// The rows as one record batch with the columns of `cols`.
pub fn batch<T: Serialize>(rows: &[T], cols: &[Col]) -> Result<RecordBatch, ReplayError> {
    let objs: Vec<Map<String, Value>> = rows
        .iter()
        .map(|r| match serde_json::to_value(r) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(ReplayError::BadInput(
                "a result row is not an object".into(),
            )),
        })
        .collect::<Result<_, _>>()?;
    let arrays = cols
        .iter()
        .map(|c| column(&objs, c))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::new(schema(cols)), arrays)
        .map_err(|e| ReplayError::BadInput(format!("building a result batch: {e}")))
}

/// Writes `rows` as a Parquet file at `path` (through a temporary file and a rename).
pub fn write_file<T: Serialize>(path: &Path, rows: &[T], cols: &[Col]) -> Result<(), ReplayError> {
    let b = batch(rows, cols)?;
    let io = |e: std::io::Error| ReplayError::io(format!("writing {}", path.display()), e);
    let pq = |e: parquet::errors::ParquetError| {
        ReplayError::io(
            format!("writing {}", path.display()),
            std::io::Error::other(e.to_string()),
        )
    };
    let tmp = path.with_extension("parquet.tmp");
    let written = (|| {
        let f = File::create(&tmp).map_err(io)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(pq)?))
            .set_created_by(format!("alloclab replay {}", env!("CARGO_PKG_VERSION")))
            .build();
        let mut w = ArrowWriter::try_new(f, b.schema(), Some(props)).map_err(pq)?;
        w.write(&b).map_err(pq)?;
        w.into_inner().map_err(pq)?.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    })();
    if written.is_err() {
        // No partial file is left behind (a full disk, a vanished directory).
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes runs.parquet, latency.parquet and timeseries.parquet into `dir` (created).
pub fn write_dir(dir: &Path, r: &Results) -> Result<(), ReplayError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ReplayError::io(format!("creating {}", dir.display()), e))?;
    write_file(&dir.join("runs.parquet"), &r.runs, RUNS)?;
    write_file(&dir.join("latency.parquet"), &r.latency, LATENCY)?;
    write_file(&dir.join("timeseries.parquet"), &r.samples, TIMESERIES)?;
    Ok(())
}
