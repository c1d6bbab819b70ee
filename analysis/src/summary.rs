//! The aggregated rows as Parquet, for programs that want the figures without redoing the
//! aggregation (`allocator/bench/lab_targets.py`, the notebook): `summary.parquet` (one row per
//! configuration) and `summary_latency.parquet` (per configuration, op kind and quantile). Their
//! columns are `results_schema::summary`'s row structs (documented in analysis/README.md).
//!
//! Rows of any `results_schema::Row` become a polars frame here ([`frame`]), with the schema's
//! column names, types and order.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use results_schema::summary::{SummaryLatencyRow, SummaryRow};
use results_schema::{Cell, Row, Ty};

use crate::compute::Analysis;
use crate::error::{Error, PolarsContext};

/// The file names, in the report directory.
pub const FILES: [&str; 2] = ["summary.parquet", "summary_latency.parquet"];

/// Every configuration's summary row, in the analysis's order.
pub fn summary_rows(a: &Analysis) -> Vec<SummaryRow> {
    a.configs.clone()
}

/// Every (configuration, op, quantile)'s latency row, in the analysis's order.
pub fn latency_rows(a: &Analysis) -> Vec<SummaryLatencyRow> {
    // A label and a thread count name one trace (crate::compute::Labels).
    let ids: HashMap<(&str, u32), (&str, Option<&String>)> = a
        .configs
        .iter()
        .map(|c| {
            (
                (c.trace_label.as_str(), c.replay_threads),
                (c.trace_name.as_str(), c.trace_hash.as_ref()),
            )
        })
        .collect();
    let mut out = Vec::new();
    for l in &a.latency {
        let (name, hash) = ids
            .get(&(l.key.trace.as_str(), l.key.threads))
            .copied()
            .unwrap_or((l.key.trace.as_str(), None));
        for (&q, &ns) in &l.quantiles {
            out.push(SummaryLatencyRow {
                machine: l.key.machine.clone(),
                trace_name: name.to_owned(),
                trace_hash: hash.cloned(),
                trace_label: l.key.trace.clone(),
                replay_threads: l.key.threads,
                allocator: l.key.allocator.clone(),
                op: l.op.clone(),
                runs: l.runs,
                count: l.count,
                mean_ns: l.mean_ns,
                quantile: q as f64 / 100_000.0,
                latency_ns: Some(ns),
            });
        }
    }
    out
}

/// The rows as a frame with their schema's columns, types and order.
pub fn frame<R: Row>(rows: &[R]) -> Result<DataFrame, Error> {
    let cells: Vec<Vec<Cell<'_>>> = rows.iter().map(Row::cells).collect();
    let mut cols = Vec::with_capacity(R::COLUMNS.len());
    for (i, c) in R::COLUMNS.iter().enumerate() {
        let name: PlSmallStr = c.name.into();
        macro_rules! col_of {
            ($t:ty, $v:ident) => {{
                let v: Vec<Option<$t>> = cells
                    .iter()
                    .map(|r| match &r[i] {
                        Cell::$v(x) => Some(x.clone().into()),
                        _ => None,
                    })
                    .collect();
                Column::new(name, v)
            }};
        }
        let col = match c.ty {
            Ty::U32 => col_of!(u32, U32),
            Ty::U64 => col_of!(u64, U64),
            Ty::I64 => col_of!(i64, I64),
            Ty::F64 => col_of!(f64, F64),
            Ty::Bool => col_of!(bool, Bool),
            Ty::Str => col_of!(String, Str),
        };
        cols.push(col);
    }
    DataFrame::new_infer_height(cols).ctx("building a frame of rows")
}

/// Writes a frame as Parquet (zstd, like the replayer).
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<(), Error> {
    let f = File::create(path).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetWriter::new(f)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)
        .ctx(format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes `summary.parquet` and `summary_latency.parquet` into `out` (which exists).
pub fn write(out: &Path, a: &Analysis) -> Result<Vec<PathBuf>, Error> {
    let paths: Vec<PathBuf> = FILES.iter().map(|f| out.join(f)).collect();
    write_parquet(&paths[0], &mut frame(&summary_rows(a))?)?;
    write_parquet(&paths[1], &mut frame(&latency_rows(a))?)?;
    Ok(paths)
}
