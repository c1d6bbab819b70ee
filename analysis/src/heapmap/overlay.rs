//! The OS mappings drawn over an address trace's heap map: its mappings file
//! (`<allocator>.maps.parquet`, `results_schema::heapmap::MappingRow`) read with polars, and
//! every cell with nothing live coloured by the OS state of its row's bytes.
//!
//! **Which snapshot a column shows**: the latest one taken at or before the column's end (on
//! the ops axis, the time of the last op painted in the column or an earlier one; on the time
//! axis, the last ns the column covers). The last column ends with the pass: it shows the last
//! snapshot (taken after the last op, when the final live set is what the map shows). A column
//! that ends before the first snapshot keeps the trace-only colours.
//!
//! **The rule** (per cell, row granularity): with `b` the row's bytes inside its shown segment,
//! `r` of them resident and `m` mapped (resident or not) at that snapshot: `2r ≥ b` →
//! [`Cell::Retained`] (resident, nothing live); else `2m ≥ b` → [`Cell::MappedNotResident`];
//! else [`Cell::NotMapped`]. Cells with live bytes stay blue.
//!
//! **Work and memory**: one small aggregation for the list of snapshots (number, time); then
//! only the rows of the snapshots some column shows (at most one per column) that overlap a
//! shown segment, with the five columns needed, sorted by snapshot and start. Each snapshot is
//! swept once, run by run over the rows it covers, into two per-row byte counts — never a
//! per-page or per-byte structure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use results_schema::Row as _;
use results_schema::heapmap::MappingRow;

use super::{COLS, Cell, HeapMap, ROWS};
use crate::error::Error;

/// The columns of a mappings file the overlay reads.
pub const NEEDED: [&str; 5] = ["snapshot", "t_ns", "start", "end", "resident"];

/// What the overlay drew, and its one figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The mappings file.
    pub maps: PathBuf,
    /// Snapshots in the file.
    pub snapshots: usize,
    /// Snapshots some column shows.
    pub drawn: usize,
    /// The first column with the overlay (`None`: every column ends before the first
    /// snapshot).
    pub first_col: Option<u32>,
    /// Time of the last snapshot (ns since the pass's first op).
    pub last_t_ns: Option<u64>,
    /// At the last snapshot: resident bytes in the shown address ranges.
    pub resident_bytes: Option<u64>,
    /// At the last snapshot: resident bytes in the rows of the shown ranges with nothing live
    /// at the end ("retained"; a row holding any live byte counts nothing, so this is row
    /// granularity).
    pub retained_bytes: Option<u64>,
}

fn err(path: &Path, reason: impl std::fmt::Display) -> Error {
    // Polars' messages can span lines; the error is one line.
    let mut reason = reason
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if reason.chars().count() > 300 {
        reason = format!("{}…", reason.chars().take(300).collect::<String>());
    }
    Error::Mappings {
        path: path.to_path_buf(),
        reason,
    }
}

/// The file, lazily, with the [`NEEDED`] columns checked against `MappingRow`'s names and
/// types.
fn scan(path: &Path) -> Result<LazyFrame, Error> {
    let args = ScanArgsParquet {
        glob: false,
        ..Default::default()
    };
    let what = "cannot be read as a mappings file (Parquet)";
    let path_str = path.to_string_lossy();
    let mut lf = LazyFrame::scan_parquet(PlRefPath::from(path_str.as_ref()), args)
        .map_err(|e| err(path, format!("{what}: {e}")))?;
    let schema = lf
        .collect_schema()
        .map_err(|e| err(path, format!("{what}: {e}")))?;
    let (mut missing, mut wrong) = (Vec::new(), Vec::new());
    for name in NEEDED {
        let c = MappingRow::COLUMNS
            .iter()
            .find(|c| c.name == name)
            .expect("NEEDED names MappingRow's columns");
        match schema.get(name) {
            None => missing.push(name),
            Some(t) if *t != crate::schema::dtype(c.ty) => {
                wrong.push(format!("{name} is {t}, not {}", c.ty.schema_name()))
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        return Err(err(
            path,
            format!(
                "lacks the column(s) {} of a mappings file (replayer/SCHEMA.md): not written by \
                 `replay --heap-map`, or damaged; run the heap-map pass again",
                missing.join(", ")
            ),
        ));
    }
    if !wrong.is_empty() {
        return Err(err(
            path,
            format!(
                "column types differ from a mappings file's (replayer/SCHEMA.md): {}",
                wrong.join("; ")
            ),
        ));
    }
    Ok(lf.select(NEEDED.map(col)))
}

fn values<T: PolarsNumericType>(
    path: &Path,
    ca: PolarsResult<&ChunkedArray<T>>,
    name: &str,
) -> Result<Vec<T::Native>, Error> {
    let ca = ca.map_err(|e| err(path, format!("column {name}: {e}")))?;
    ca.iter()
        .map(|v| v.ok_or_else(|| err(path, format!("a null in column {name}"))))
        .collect()
}

/// Reads the mappings file at `path` and colours `map`'s cells with nothing live; `col_end` is
/// each column's end time (ns on the address trace's clock, `None`: no overlay).
pub(super) fn apply(
    map: &mut HeapMap,
    path: &Path,
    col_end: &[Option<u64>],
) -> Result<Overlay, Error> {
    let lf = scan(path)?;
    let collect = |lf: LazyFrame| lf.collect().map_err(|e| err(path, e));
    // The snapshots, in time order (one row each: small).
    let snaps = collect(
        lf.clone()
            .group_by([col("snapshot")])
            .agg([col("t_ns").min()])
            .sort(["t_ns", "snapshot"], SortMultipleOptions::default()),
    )?;
    let ids = values(
        path,
        snaps.column("snapshot").and_then(|c| c.u32()),
        "snapshot",
    )?;
    let times = values(path, snaps.column("t_ns").and_then(|c| c.u64()), "t_ns")?;
    let snaps: Vec<(u32, u64)> = ids.into_iter().zip(times).collect();
    let mut overlay = Overlay {
        maps: path.to_path_buf(),
        snapshots: snaps.len(),
        drawn: 0,
        first_col: None,
        last_t_ns: snaps.last().map(|s| s.1),
        resident_bytes: None,
        retained_bytes: None,
    };
    // The snapshot each column shows (an index into `snaps`).
    let col_snap: Vec<Option<usize>> = col_end
        .iter()
        .map(|e| e.and_then(|e| snaps.partition_point(|s| s.1 <= e).checked_sub(1)))
        .collect();
    let mut needed: Vec<u32> = col_snap.iter().flatten().map(|&i| snaps[i].0).collect();
    needed.sort_unstable();
    needed.dedup();
    let segments = map.axis.segments.clone();
    if needed.is_empty() || segments.is_empty() {
        return Ok(overlay);
    }
    // Only the rows of those snapshots that overlap a shown segment.
    let shown = segments
        .iter()
        .map(|s| col("start").lt(lit(s.end)).and(col("end").gt(lit(s.start))))
        .reduce(|a, b| a.or(b))
        .expect("segments");
    let wanted = DataFrame::new_infer_height(vec![Column::new("snapshot".into(), needed)])
        .map_err(|e| err(path, e))?;
    let runs = collect(
        lf.filter(shown)
            .join(
                wanted.lazy(),
                [col("snapshot")],
                [col("snapshot")],
                JoinArgs::new(JoinType::Inner),
            )
            .sort(["snapshot", "start"], SortMultipleOptions::default()),
    )?;
    let snapshot = values(
        path,
        runs.column("snapshot").and_then(|c| c.u32()),
        "snapshot",
    )?;
    let start = values(path, runs.column("start").and_then(|c| c.u64()), "start")?;
    let end = values(path, runs.column("end").and_then(|c| c.u64()), "end")?;
    let resident: Vec<bool> = runs
        .column("resident")
        .and_then(|c| c.bool())
        .map_err(|e| err(path, format!("column resident: {e}")))?
        .iter()
        .map(|v| v.ok_or_else(|| err(path, "a null in column resident")))
        .collect::<Result<_, _>>()?;
    // Each snapshot's rows: a range of the sorted frame.
    let mut groups: HashMap<u32, std::ops::Range<usize>> = HashMap::new();
    for (k, &id) in snapshot.iter().enumerate() {
        if end[k] < start[k] {
            return Err(err(
                path,
                format!(
                    "a run of snapshot {id} ends ({:#x}) before it starts ({:#x}): damaged",
                    end[k], start[k]
                ),
            ));
        }
        groups.entry(id).or_insert(k..k).end = k + 1;
    }
    let bpr = map.axis.bytes_per_row;
    // Per row: bytes resident, bytes mapped (resident or not), at the snapshot being drawn.
    let (mut res, mut mapped) = (vec![0u64; ROWS as usize], vec![0u64; ROWS as usize]);
    let last = snaps.len() - 1;
    let mut c = 0usize;
    while c < COLS as usize {
        let Some(i) = col_snap[c] else {
            c += 1;
            continue;
        };
        let mut c1 = c;
        while c1 + 1 < COLS as usize && col_snap[c1 + 1] == Some(i) {
            c1 += 1;
        }
        res.fill(0);
        mapped.fill(0);
        for k in groups.get(&snaps[i].0).cloned().unwrap_or(0..0) {
            let (a, b) = (start[k], end[k]);
            if a == b {
                continue;
            }
            let mut si = segments.partition_point(|s| s.end <= a);
            while let Some(s) = segments.get(si).filter(|s| s.start < b) {
                let (lo, hi) = (a.max(s.start), b.min(s.end));
                let (r0, r1) = ((lo - s.start) / bpr, (hi - 1 - s.start) / bpr);
                for r in r0..=r1 {
                    let row_lo = s.start + r * bpr;
                    let row_hi = (row_lo + bpr).min(s.end);
                    let bytes = hi.min(row_hi) - lo.max(row_lo);
                    let row = (s.row0 as u64 + r) as usize;
                    mapped[row] = mapped[row].saturating_add(bytes);
                    if resident[k] {
                        res[row] = res[row].saturating_add(bytes);
                    }
                }
                si += 1;
            }
        }
        for s in &segments {
            for r in 0..s.rows {
                let row = s.row0 + r;
                let row_lo = s.start + r as u64 * bpr;
                let row_bytes = (row_lo + bpr).min(s.end).saturating_sub(row_lo);
                let state = os_state(res[row as usize], mapped[row as usize], row_bytes);
                for cc in c..=c1 {
                    let cell = &mut map.cells[(row * COLS) as usize + cc];
                    if !matches!(cell, Cell::Allocated(_)) {
                        *cell = state;
                    }
                }
            }
        }
        if i == last && c1 == COLS as usize - 1 {
            let (mut all, mut retained) = (0u64, 0u64);
            for s in &segments {
                for row in s.row0..s.row0 + s.rows {
                    let r = res[row as usize];
                    all += r;
                    if !matches!(map.cell(row, COLS - 1), Cell::Allocated(_)) {
                        retained += r;
                    }
                }
            }
            overlay.resident_bytes = Some(all);
            overlay.retained_bytes = Some(retained);
        }
        overlay.drawn += 1;
        overlay.first_col.get_or_insert(c as u32);
        c = c1 + 1;
    }
    Ok(overlay)
}

/// The OS state of a row with nothing live: `resident` and `mapped` of its `row_bytes` bytes
/// (the rule in the module's documentation).
pub fn os_state(resident: u64, mapped: u64, row_bytes: u64) -> Cell {
    if resident.saturating_mul(2) >= row_bytes {
        Cell::Retained
    } else if mapped.saturating_mul(2) >= row_bytes {
        Cell::MappedNotResident
    } else {
        Cell::NotMapped
    }
}
