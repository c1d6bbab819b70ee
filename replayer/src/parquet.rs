//! Writes the result files of replayer/SCHEMA.md (`runs.parquet`, `latency.parquet`,
//! `timeseries.parquet`, `introspection.parquet`) with the `parquet` crate (arrow arrays, zstd pages) — polars stays out
//! of the replayer's build.
//!
//! The columns are the row structs' own (`results_schema::Row`: name, type, nullability, in
//! SCHEMA.md's order); each row hands its values over as typed cells, so a column and a field
//! cannot drift apart. Files are written to a temporary name and renamed, so a reader never sees
//! half a file.

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
use results_schema::{Cell, Col, Row, Ty};

use crate::error::ReplayError;
use crate::results::Results;

/// The arrow type of a schema type.
pub fn arrow_type(ty: Ty) -> DataType {
    match ty {
        Ty::U32 => DataType::UInt32,
        Ty::U64 => DataType::UInt64,
        Ty::I64 => DataType::Int64,
        Ty::F64 => DataType::Float64,
        Ty::Str => DataType::Utf8,
        Ty::Bool => DataType::Boolean,
    }
}

/// The arrow schema of a column table.
pub fn schema(cols: &[Col]) -> Schema {
    Schema::new(
        cols.iter()
            .map(|c| Field::new(c.name, arrow_type(c.ty), c.nullable))
            .collect::<Vec<_>>(),
    )
}

fn bad(col: &str, row: usize, what: &str) -> ReplayError {
    ReplayError::BadInput(format!(
        "result row {row}: column {col} {what} (a bug in replay: please report it)"
    ))
}

/// Builds column `i` of the rows' cells.
fn column(cells: &[Vec<Cell<'_>>], i: usize, c: &Col) -> Result<ArrayRef, ReplayError> {
    let n = cells.len();
    macro_rules! build {
        ($builder:expr, $variant:ident) => {{
            let mut b = $builder;
            for (r, row) in cells.iter().enumerate() {
                match &row[i] {
                    Cell::Null if c.nullable => b.append_null(),
                    Cell::Null => return Err(bad(c.name, r, "is null but not nullable")),
                    Cell::$variant(v) => b.append_value(v.clone()),
                    _ => return Err(bad(c.name, r, "has the wrong type")),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match c.ty {
        Ty::U32 => build!(UInt32Builder::with_capacity(n), U32),
        Ty::U64 => build!(UInt64Builder::with_capacity(n), U64),
        Ty::I64 => build!(Int64Builder::with_capacity(n), I64),
        Ty::F64 => build!(Float64Builder::with_capacity(n), F64),
        Ty::Bool => build!(BooleanBuilder::with_capacity(n), Bool),
        Ty::Str => build!(StringBuilder::with_capacity(n, n * 16), Str),
    })
}

/// The rows as one record batch with their columns.
pub fn batch<T: Row>(rows: &[T]) -> Result<RecordBatch, ReplayError> {
    let cols = T::COLUMNS;
    let cells: Vec<Vec<Cell<'_>>> = rows.iter().map(Row::cells).collect();
    let arrays = cols
        .iter()
        .enumerate()
        .map(|(i, c)| column(&cells, i, c))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::new(schema(cols)), arrays)
        .map_err(|e| ReplayError::BadInput(format!("building a result batch: {e}")))
}

/// Writes `rows` as a Parquet file at `path` (through a temporary file and a rename).
pub fn write_file<T: Row>(path: &Path, rows: &[T]) -> Result<(), ReplayError> {
    let b = batch(rows)?;
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

/// Writes runs.parquet, latency.parquet, timeseries.parquet and introspection.parquet into
/// `dir` (created).
pub fn write_dir(dir: &Path, r: &Results) -> Result<(), ReplayError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ReplayError::io(format!("creating {}", dir.display()), e))?;
    write_file(&dir.join("runs.parquet"), &r.runs)?;
    write_file(&dir.join("latency.parquet"), &r.latency)?;
    write_file(&dir.join("timeseries.parquet"), &r.samples)?;
    write_file(&dir.join("introspection.parquet"), &r.introspection)?;
    Ok(())
}
