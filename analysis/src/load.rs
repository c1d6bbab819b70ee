//! Finding result directories and reading their Parquet files into frames of one known shape.
//!
//! Each file is opened on its own (a lazy scan; only its footer is read here) so that one bad
//! file costs only itself: a file that is not Parquet, lacks an identifying column or comes from
//! an unknown schema version is reported as a [`Problem`] and the rest is still read. Every
//! file's frame is then `select`ed into the columns of [`crate::schema`], in order, cast to the
//! schema's types, with nulls for the columns it lacks and a `source` column (the index of its
//! directory), so that the frames of all directories can be concatenated.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, PolarsContext};
use crate::schema::{self, FileKind, SCHEMA_VERSION, SOURCE};

/// Something wrong with the input that did not stop the analysis. Listed in the report and
/// printed on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file or directory concerned, when there is one.
    pub path: Option<PathBuf>,
    /// What is wrong and what was done about it.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<Option<PathBuf>>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The inputs, read.
pub struct Loaded {
    /// The result directories, indexed by the `source` column.
    pub sources: Vec<PathBuf>,
    /// Every run of every directory (small: one row per run), collected.
    pub runs: DataFrame,
    /// Latency rows of all directories that have them, lazily.
    pub latency: Option<LazyFrame>,
    /// Time-series rows of all directories that have them, lazily.
    pub timeseries: Option<LazyFrame>,
    /// The same, one frame per file (the streaming engine reads a few files at a time).
    pub timeseries_files: Vec<LazyFrame>,
    /// What was wrong on the way.
    pub problems: Vec<Problem>,
}

const MAX_DEPTH: usize = 32;

fn is_result_file(name: &str) -> bool {
    FileKind::ALL.iter().any(|k| k.file_name() == name)
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Finds the result directories named by the arguments: directories (searched recursively for
/// the three result files), result files (their directory), or glob patterns of either.
pub fn discover(args: &[String], problems: &mut Vec<Problem>) -> Result<Vec<PathBuf>, Error> {
    let mut dirs = BTreeSet::new();
    for arg in args {
        let literal = Path::new(arg);
        let paths: Vec<PathBuf> = if literal.exists() || !has_glob_chars(arg) {
            vec![literal.to_path_buf()]
        } else {
            let matches = glob::glob(arg).map_err(|e| Error::BadArgument {
                arg: arg.clone(),
                reason: e.to_string(),
            })?;
            let found: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
            if found.is_empty() {
                problems.push(Problem::new(
                    None,
                    format!("{arg}: no file or directory matches this pattern"),
                ));
            }
            found
        };
        for path in paths {
            let before = dirs.len();
            if path.is_dir() {
                walk(&path, 0, &mut dirs);
                if dirs.len() == before {
                    problems.push(Problem::new(
                        path,
                        "no runs.parquet, latency.parquet or timeseries.parquet in this directory \
                         or below it (an empty or unfinished sweep?)",
                    ));
                }
            } else if path.is_file() {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if is_result_file(name) {
                    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                    dirs.insert(if dir.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        dir
                    });
                } else {
                    problems.push(Problem::new(
                        path,
                        "not a result file (expected a directory, runs.parquet, latency.parquet \
                         or timeseries.parquet)",
                    ));
                }
            } else {
                problems.push(Problem::new(path, "no such file or directory"));
            }
        }
    }
    Ok(dirs.into_iter().collect())
}

fn walk(dir: &Path, depth: usize, out: &mut BTreeSet<PathBuf>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut is_result_dir = false;
    let mut subdirs = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            subdirs.push(entry.path());
        } else if is_result_file(&name) {
            is_result_dir = true;
        }
    }
    if is_result_dir {
        out.insert(dir.to_path_buf());
    }
    subdirs.sort();
    for sub in subdirs {
        walk(&sub, depth + 1, out);
    }
}

/// Opens one file lazily and conforms it to the schema; `None` (with a problem) when it cannot
/// be used.
pub(crate) fn conform(
    path: &Path,
    kind: FileKind,
    source: u32,
    problems: &mut Vec<Problem>,
) -> Option<LazyFrame> {
    let path_str = path.to_string_lossy();
    let args = ScanArgsParquet {
        glob: false,
        ..Default::default()
    };
    let mut lf = match LazyFrame::scan_parquet(PlRefPath::from(path_str.as_ref()), args) {
        Ok(lf) => lf,
        Err(e) => {
            problems.push(Problem::new(
                path.to_path_buf(),
                format!("cannot be read as Parquet ({e}): skipped"),
            ));
            return None;
        }
    };
    let file_schema = match lf.collect_schema() {
        Ok(s) => s,
        Err(e) => {
            problems.push(Problem::new(
                path.to_path_buf(),
                format!("cannot be read as Parquet ({e}): skipped"),
            ));
            return None;
        }
    };
    let cols = schema::columns(kind);
    let missing_required: Vec<&str> = cols
        .iter()
        .filter(|c| schema::required(kind, c.name) && file_schema.get(c.name).is_none())
        .map(|c| c.name)
        .collect();
    if !missing_required.is_empty() {
        problems.push(Problem::new(
            path.to_path_buf(),
            format!(
                "lacks the column(s) {} that {} needs (not replay output, or a schema older \
                 than version {SCHEMA_VERSION}): skipped",
                missing_required.join(", "),
                kind.file_name()
            ),
        ));
        return None;
    }
    let mut missing = Vec::new();
    let mut recast = Vec::new();
    let mut exprs = Vec::with_capacity(cols.len() + 1);
    for c in cols {
        let want = schema::dtype(c.ty);
        match file_schema.get(c.name) {
            Some(have) if *have == want => exprs.push(col(c.name)),
            Some(have) => {
                recast.push(format!("{} ({have})", c.name));
                exprs.push(col(c.name).cast(want));
            }
            None => {
                missing.push(c.name);
                exprs.push(lit(NULL).cast(want).alias(c.name));
            }
        }
    }
    exprs.push(lit(source).alias(SOURCE));
    if !missing.is_empty() {
        let hint = if missing.contains(&"schema_version") {
            " — no schema_version: written before schema version 1?"
        } else {
            " (an older schema?)"
        };
        problems.push(Problem::new(
            path.to_path_buf(),
            format!(
                "missing column(s) read as null: {}{hint}",
                missing.join(", ")
            ),
        ));
    }
    if !recast.is_empty() {
        problems.push(Problem::new(
            path.to_path_buf(),
            format!(
                "column(s) of another type than the schema's, cast (unconvertible values become \
                 null): {}",
                recast.join(", ")
            ),
        ));
    }
    Some(lf.select(exprs))
}

fn concat_all(frames: Vec<LazyFrame>) -> Result<Option<LazyFrame>, Error> {
    if frames.is_empty() {
        return Ok(None);
    }
    if frames.len() == 1 {
        return Ok(frames.into_iter().next());
    }
    concat(frames, UnionArgs::default())
        .ctx("concatenating result files")
        .map(Some)
}

/// Reads the result directories. Fails only when no directory has a usable `runs.parquet`.
pub fn load(dirs: &[PathBuf], mut problems: Vec<Problem>) -> Result<Loaded, Error> {
    let mut sources = Vec::new();
    let mut runs = Vec::new();
    let mut latency = Vec::new();
    let mut timeseries = Vec::new();
    for dir in dirs {
        let runs_path = dir.join(FileKind::Runs.file_name());
        if !runs_path.is_file() {
            problems.push(Problem::new(
                dir.clone(),
                "has latency or time-series files but no runs.parquet (an unfinished or \
                 partly copied result?): skipped",
            ));
            continue;
        }
        let source = sources.len() as u32;
        let Some(lf) = conform(&runs_path, FileKind::Runs, source, &mut problems) else {
            continue;
        };
        // The runs file is small: read it now, so a file that is broken past its footer is
        // caught here and costs only its own directory.
        let df = match lf.collect() {
            Ok(df) => df,
            Err(e) => {
                problems.push(Problem::new(
                    runs_path,
                    format!("unreadable ({e}): skipped"),
                ));
                continue;
            }
        };
        if df.height() == 0 {
            problems.push(Problem::new(runs_path, "has no runs: skipped"));
            continue;
        }
        check_version(&df, &runs_path, &mut problems);
        sources.push(dir.clone());
        runs.push(df);
        for (kind, out) in [
            (FileKind::Latency, &mut latency),
            (FileKind::Timeseries, &mut timeseries),
        ] {
            let path = dir.join(kind.file_name());
            if !path.is_file() {
                problems.push(Problem::new(
                    dir.clone(),
                    format!(
                        "no {}: its runs are missing from the {} tables and plots",
                        kind.file_name(),
                        if kind == FileKind::Latency {
                            "latency"
                        } else {
                            "over-time"
                        }
                    ),
                ));
                continue;
            }
            if let Some(lf) = conform(&path, kind, source, &mut problems) {
                out.push(lf);
            }
        }
    }
    if runs.is_empty() {
        return Err(Error::NoRuns { problems });
    }
    let runs = concat_all(runs.into_iter().map(IntoLazy::lazy).collect())?
        .expect("at least one frame")
        .collect()
        .ctx("reading runs")?;
    Ok(Loaded {
        sources,
        runs,
        latency: concat_all(latency)?,
        timeseries: concat_all(timeseries.clone())?,
        timeseries_files: timeseries,
        problems,
    })
}

fn check_version(df: &DataFrame, path: &Path, problems: &mut Vec<Problem>) {
    let Ok(c) = df.column("schema_version") else {
        return;
    };
    let Ok(v) = c.u32() else { return };
    let other: BTreeSet<u32> = v
        .iter()
        .flatten()
        .filter(|&v| v != SCHEMA_VERSION)
        .collect();
    if !other.is_empty() {
        let list: Vec<String> = other.iter().map(u32::to_string).collect();
        problems.push(Problem::new(
            path.to_path_buf(),
            format!(
                "schema_version {} (this analyze reads version {SCHEMA_VERSION}): the columns it \
                 knows are read, by name",
                list.join(", ")
            ),
        ));
    }
}
