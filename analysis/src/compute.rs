//! The aggregations: Polars group-bys over the loaded frames, turned into plain rows.
//!
//! A *configuration* is one trace (by identity: `trace_name` and `trace_hash`) replayed by one
//! allocator with one thread count; its runs are the repetitions. Every figure of a
//! configuration is the **median over its `ok` runs** (for latency: the median over runs of each
//! run's quantile), with the spread (min, max, coefficient of variation) beside it. Runs whose
//! status is not `ok` are left out of every figure and listed on their own. This is the rule of
//! `results_schema::summary`, computed here with Polars (the tests hold the two equal); the
//! ratios are that module's own function.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use polars::prelude::*;
pub use results_schema::BASELINE_ALLOCATOR;
use results_schema::summary::{self, SummaryRow, median};
use results_schema::{Status, TraceId, Workload};

use crate::error::{Error, PolarsContext};
use crate::load::{Loaded, Problem};
use crate::schema::SOURCE;

/// The quantiles of the latency table, as integer hundred-thousandths (0.5 → 50 000).
pub const TABLE_QUANTILES: [u32; 7] = [0, 50_000, 90_000, 95_000, 99_000, 99_900, 100_000];

/// Identifies a configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigKey {
    /// The machine type the runs were made on ([`MACHINE`]): figures of different machine
    /// types are never pooled nor divided by each other.
    pub machine: String,
    /// The trace's label: its short name, with what tells it apart when several traces (by
    /// hash) share that name (`results_schema::summary::labels`).
    pub trace: String,
    /// Replay threads.
    pub threads: u32,
    /// Allocator adapter name.
    pub allocator: String,
}

impl ConfigKey {
    /// The configuration of a summary row.
    pub fn of(r: &SummaryRow) -> ConfigKey {
        ConfigKey {
            machine: r.machine.clone(),
            trace: r.trace_label.clone(),
            threads: r.replay_threads,
            allocator: r.allocator.clone(),
        }
    }
}

/// Latency of one op kind in one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    /// Which configuration.
    pub key: ConfigKey,
    /// Op kind.
    pub op: String,
    /// Runs that timed this op kind.
    pub runs: u32,
    /// Median over runs of the ops of this kind timed.
    pub count: Option<f64>,
    /// Median over runs of the mean latency (ns).
    pub mean_ns: Option<f64>,
    /// Quantile (hundred-thousandths) → median over runs of the latency at it (ns).
    pub quantiles: BTreeMap<u32, f64>,
}

/// One point of a configuration's memory over time (median over its runs within a time bucket).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    /// Middle of the time bucket, ms since the first op.
    pub t_ms: f64,
    /// Heap RSS (bytes).
    pub heap_rss_bytes: Option<f64>,
    /// Live bytes.
    pub live_bytes: Option<f64>,
    /// Fragmentation ratio.
    pub frag_ratio: Option<f64>,
}

/// A configuration's memory over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Which configuration.
    pub key: ConfigKey,
    /// Points in time order.
    pub points: Vec<SeriesPoint>,
}

/// A run that did not finish `ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRun {
    /// Result directory.
    pub source: String,
    /// Run id.
    pub run_id: String,
    /// Allocator.
    pub allocator: String,
    /// Trace.
    pub trace: String,
    /// Replay threads.
    pub threads: Option<u32>,
    /// Repetition.
    pub repetition: Option<u32>,
    /// `crashed`, `timeout`, `failed`, or whatever was written.
    pub status: String,
    /// What happened.
    pub error: String,
}

/// An `ok` run whose measured peak live bytes exceed the trace's: its threads ran ahead of the
/// trace's interleaving (`--order deps`), so its memory figures are of a larger live set than
/// the program ever had.
#[derive(Debug, Clone, PartialEq)]
pub struct BeyondPeak {
    /// Run id.
    pub run_id: String,
    /// Allocator.
    pub allocator: String,
    /// Trace.
    pub trace: String,
    /// Replay threads.
    pub threads: Option<u32>,
    /// The replay's `--order`.
    pub order: String,
    /// The live bytes the replay reached.
    pub measured: u64,
    /// The trace's peak live bytes.
    pub trace_peak: u64,
}

/// One distinct machine and build, as the runs recorded them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Machine {
    /// `(label, value)` pairs, in a fixed order.
    pub facts: Vec<(&'static str, String)>,
    /// Runs recorded with exactly these facts.
    pub runs: u32,
}

/// One distinct allocator build and options.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AllocatorFacts {
    /// Adapter name.
    pub allocator: String,
    /// Library version.
    pub version: String,
    /// Options in effect.
    pub options: String,
    /// Runs.
    pub runs: u32,
}

/// Everything the tables, plots and report are made of.
pub struct Analysis {
    /// The result directories read.
    pub sources: Vec<String>,
    /// Runs read (all statuses).
    pub runs_total: usize,
    /// Runs with status `ok`.
    pub runs_ok: usize,
    /// Throughput and memory per configuration (`summary.parquet`'s rows), sorted by
    /// [`ConfigKey`].
    pub configs: Vec<SummaryRow>,
    /// Latency per configuration and op kind, sorted.
    pub latency: Vec<LatencyRow>,
    /// Memory over time per configuration, for the configurations chosen for plots.
    pub series: Vec<Series>,
    /// Runs that were not `ok`.
    pub failed: Vec<FailedRun>,
    /// `ok` runs that reached more live bytes than the trace's peak.
    pub beyond_peak: Vec<BeyondPeak>,
    /// Machines and builds.
    pub machines: Vec<Machine>,
    /// Allocator versions and options.
    pub allocators: Vec<AllocatorFacts>,
    /// Input problems.
    pub problems: Vec<Problem>,
}

/// How the large tables (time series, latency) are aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// Polars' streaming engine: the files are read in batches, so memory is bounded by what
    /// the aggregations keep (the plotted runs' samples, narrowed to their bucket and three
    /// values), not by the rows read. The time series are read twice (each run's length and
    /// sample count first, then the buckets).
    #[default]
    Streaming,
    /// Polars' in-memory engine: the plotted runs' samples are collected once, whole.
    InMemory,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "streaming" => Ok(Engine::Streaming),
            "in-memory" => Ok(Engine::InMemory),
            _ => Err(format!("{s:?}: expected streaming or in-memory")),
        }
    }
}

impl Engine {
    /// Runs `lf` on this engine.
    fn collect(self, lf: LazyFrame, what: &str) -> Result<DataFrame, Error> {
        let engine = match self {
            Engine::Streaming => polars::prelude::Engine::Streaming,
            Engine::InMemory => polars::prelude::Engine::InMemory,
        };
        lf.collect_with_engine(engine)
            .map(|r| r.unwrap_single())
            .ctx(what)
    }
}

/// Options of the aggregation.
#[derive(Debug, Clone)]
pub struct ComputeOptions {
    /// Most progress buckets per over-time series (fewer when no run of the (trace, threads)
    /// group has that many samples).
    pub time_buckets: u32,
    /// Most (trace, threads) pairs given over-time series.
    pub max_series_groups: usize,
    /// The engine of the time-series and latency aggregations.
    pub engine: Engine,
    /// Streaming engine: most time-series samples whose medians are taken in one group-by
    /// (a batch of configurations; one configuration is never split).
    pub median_batch_rows: u64,
    /// Streaming engine: time-series files read at once.
    pub files_at_once: usize,
}

impl Default for ComputeOptions {
    fn default() -> Self {
        ComputeOptions {
            time_buckets: 200,
            max_series_groups: 12,
            engine: Engine::default(),
            median_batch_rows: 2_000_000,
            files_at_once: 4,
        }
    }
}

// ---- reading columns out of a collected frame ------------------------------------------------

pub(crate) fn strs(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, Error> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::String))
        .ctx(format!("column {name}"))?;
    let ca = c.str().ctx(format!("column {name}"))?;
    Ok(ca.iter().map(|v| v.map(str::to_owned)).collect())
}

pub(crate) fn f64s(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, Error> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::Float64))
        .ctx(format!("column {name}"))?;
    let ca = c.f64().ctx(format!("column {name}"))?;
    Ok(ca.iter().collect())
}

pub(crate) fn u32s(df: &DataFrame, name: &str) -> Result<Vec<Option<u32>>, Error> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::UInt32))
        .ctx(format!("column {name}"))?;
    let ca = c.u32().ctx(format!("column {name}"))?;
    Ok(ca.iter().collect())
}

fn u64s(df: &DataFrame, name: &str) -> Result<Vec<Option<u64>>, Error> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::UInt64))
        .ctx(format!("column {name}"))?;
    let ca = c.u64().ctx(format!("column {name}"))?;
    Ok(ca.iter().collect())
}

fn f64col(name: &str) -> Expr {
    col(name).cast(DataType::Float64)
}

/// Throughput of a run: `ops_per_sec`, or `ops / wall_ns` when only those were written.
fn throughput_expr() -> Expr {
    col("ops_per_sec").fill_null(f64col("ops") / f64col("wall_ns") * lit(1e9))
}

fn is_ok() -> Expr {
    col("status").eq(lit(Status::Ok.name()))
}

/// The `ok` runs (with a workload that falls back to the trace name), lazily.
fn ok_runs(runs: &DataFrame) -> LazyFrame {
    runs.clone()
        .lazy()
        .filter(is_ok())
        .with_columns([col("workload").fill_null(col("trace_name"))])
}

/// A configuration's columns: the trace (name and hash), threads, allocator.
const KEY: [&str; 5] = [
    MACHINE,
    "trace_name",
    "trace_hash",
    "replay_threads",
    "allocator",
];

/// The machine-type column the analysis adds to the runs
/// (`results_schema::summary::machine_type`: CPU model and CPU count).
pub const MACHINE: &str = "machine";

/// `runs` with the [`MACHINE`] column (`results_schema::summary::machine_type`).
fn with_machine(mut runs: DataFrame) -> Result<DataFrame, Error> {
    let cpu = strs(&runs, "cpu_model")?;
    let n = u32s(&runs, "cpus")?;
    let v: Vec<String> = cpu
        .iter()
        .zip(&n)
        .map(|(c, n)| summary::machine_type(c.as_deref(), *n))
        .collect();
    runs.with_column(Column::new(MACHINE.into(), v))
        .ctx("adding the machine type")?;
    Ok(runs)
}

/// The label of each trace (by name and hash) of the runs.
pub struct Labels(HashMap<(String, Option<String>), String>);

impl Labels {
    /// The labels of the traces of `runs` (`results_schema::summary::labels`).
    pub fn of(runs: &DataFrame) -> Result<Labels, Error> {
        let (name, hash, params, threads) = (
            strs(runs, "trace_name")?,
            strs(runs, "trace_hash")?,
            strs(runs, "trace_params")?,
            u32s(runs, "replay_threads")?,
        );
        let ids: Vec<(TraceId, String, u32)> = (0..runs.height())
            .map(|i| {
                let id = TraceId {
                    name: name[i].clone().unwrap_or_default(),
                    hash: hash[i].clone(),
                };
                (
                    id,
                    params[i].clone().unwrap_or_default(),
                    threads[i].unwrap_or(0),
                )
            })
            .collect();
        let labels = summary::labels(ids.iter().map(|(id, p, t)| (id, p.as_str(), *t)));
        Ok(Labels(
            labels
                .into_iter()
                .map(|(id, l)| ((id.name, id.hash), l))
                .collect(),
        ))
    }

    /// The label of the trace `name` with `hash`.
    pub fn get(&self, name: &Option<String>, hash: &Option<String>) -> String {
        let name = name.clone().unwrap_or_default();
        self.0
            .get(&(name.clone(), hash.clone()))
            .cloned()
            .unwrap_or(name)
    }
}

/// The key columns of a collected frame.
struct Keys {
    mc: Vec<Option<String>>,
    tr: Vec<Option<String>>,
    hs: Vec<Option<String>>,
    th: Vec<Option<u32>>,
    al: Vec<Option<String>>,
}

impl Keys {
    fn of(df: &DataFrame) -> Result<Keys, Error> {
        Ok(Keys {
            mc: strs(df, MACHINE)?,
            tr: strs(df, "trace_name")?,
            hs: strs(df, "trace_hash")?,
            th: u32s(df, "replay_threads")?,
            al: strs(df, "allocator")?,
        })
    }

    fn at(&self, labels: &Labels, i: usize) -> ConfigKey {
        ConfigKey {
            machine: self.mc[i].clone().unwrap_or_default(),
            trace: labels.get(&self.tr[i], &self.hs[i]),
            threads: self.th[i].unwrap_or(0),
            allocator: self.al[i].clone().unwrap_or_default(),
        }
    }
}

/// Runs every aggregation.
pub fn compute(loaded: Loaded, opts: &ComputeOptions) -> Result<Analysis, Error> {
    let Loaded {
        sources,
        runs,
        latency,
        timeseries: _,
        timeseries_files,
        mut problems,
    } = loaded;
    let runs = with_machine(runs)?;
    let status = strs(&runs, "status")?;
    let runs_ok = status
        .iter()
        .filter(|s| {
            s.as_deref()
                .and_then(Status::parse)
                .is_some_and(Status::is_ok)
        })
        .count();
    let labels = Labels::of(&runs)?;
    let failed = failed_runs(&runs, &sources, &labels)?;
    let beyond_peak = beyond_peak(&runs, &labels)?;
    let configs = configs(&runs, &labels)?;
    let (groups, left_out) = series_groups(&configs, opts.max_series_groups);
    if left_out > 0 {
        problems.push(Problem::new(
            None,
            format!(
                "{left_out} (trace, threads) pairs have no per-trace latency and over-time plots \
                 (at most {} are drawn: each trace at its largest thread count, recorded traces \
                 first; see --max-series); the overview plots cover every trace",
                opts.max_series_groups
            ),
        ));
    }
    let latency = match latency {
        Some(lf) => match latency_rows(&runs, lf, &labels, opts.engine) {
            Ok(rows) => rows,
            Err(e) => {
                problems.push(Problem::new(
                    None,
                    format!("latency files could not be aggregated, no latency table: {e}"),
                ));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let series = match (!timeseries_files.is_empty()).then_some(timeseries_files) {
        Some(parts) => match series(&runs, parts, &groups, opts, &labels) {
            Ok(s) => s,
            Err(e) => {
                problems.push(Problem::new(
                    None,
                    format!("time-series files could not be aggregated, no over-time plots: {e}"),
                ));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let (machines, allocators) = facts(&runs)?;
    Ok(Analysis {
        sources: sources.iter().map(|p| p.display().to_string()).collect(),
        runs_total: runs.height(),
        runs_ok,
        configs,
        latency,
        series,
        failed,
        beyond_peak,
        machines,
        allocators,
        problems,
    })
}

fn configs(runs: &DataFrame, labels: &Labels) -> Result<Vec<SummaryRow>, Error> {
    let tp = throughput_expr();
    let med = |name: &str| f64col(name).median().alias(name);
    let df = ok_runs(runs)
        .with_columns([tp.alias("tp")])
        .group_by(KEY)
        .agg([
            col("workload").first().alias("workload"),
            col("trace_params").first().alias("trace_params"),
            col("run_id").len().alias("runs_ok"),
            col("tp").count().alias("runs_tp"),
            col("tp").median().alias("tp_median"),
            col("tp").min().alias("tp_min"),
            col("tp").max().alias("tp_max"),
            col("tp").mean().alias("tp_mean"),
            col("tp").std(1).alias("tp_std"),
            med("peak_live_bytes"),
            med("peak_heap_rss_bytes"),
            med("peak_rss_bytes"),
            med("heap_rss_at_peak_live_bytes"),
            med("frag_ratio_at_peak"),
            col("frag_ratio_at_peak").min().alias("frag_min"),
            col("frag_ratio_at_peak").max().alias("frag_max"),
            med("overhead_ratio"),
            med("retained_heap_rss_bytes"),
            med("retained_heap_rss_100ms_bytes"),
            med("retained_heap_rss_1s_bytes"),
            med("minor_faults"),
            med("major_faults"),
        ])
        .collect()
        .ctx("throughput and memory per configuration")?;

    let keys = Keys::of(&df)?;
    let workload = strs(&df, "workload")?;
    let params = strs(&df, "trace_params")?;
    let runs_ok = u32s(&df, "runs_ok")?;
    let runs_tp = u32s(&df, "runs_tp")?;
    let f = |n: &str| f64s(&df, n);
    let (tp_median, tp_min, tp_max, tp_mean, tp_std) = (
        f("tp_median")?,
        f("tp_min")?,
        f("tp_max")?,
        f("tp_mean")?,
        f("tp_std")?,
    );
    let (peak_live, peak_heap, peak_rss, heap_at_peak, frag, frag_min, frag_max) = (
        f("peak_live_bytes")?,
        f("peak_heap_rss_bytes")?,
        f("peak_rss_bytes")?,
        f("heap_rss_at_peak_live_bytes")?,
        f("frag_ratio_at_peak")?,
        f("frag_min")?,
        f("frag_max")?,
    );
    let overhead = f("overhead_ratio")?;
    let (retained, retained_100ms, retained_1s, minor, major) = (
        f("retained_heap_rss_bytes")?,
        f("retained_heap_rss_100ms_bytes")?,
        f("retained_heap_rss_1s_bytes")?,
        f("minor_faults")?,
        f("major_faults")?,
    );
    let mut rows: Vec<SummaryRow> = (0..df.height())
        .map(|i| {
            let n = runs_tp[i].unwrap_or(0);
            let cv = match (tp_mean[i], tp_std[i]) {
                (Some(m), Some(s)) if n >= 2 && m != 0.0 => Some(s / m),
                _ => None,
            };
            let key = keys.at(labels, i);
            SummaryRow {
                machine: key.machine,
                trace_name: keys.tr[i].clone().unwrap_or_default(),
                trace_hash: keys.hs[i].clone(),
                trace_label: key.trace,
                trace_params: params[i].clone(),
                workload: Workload::parse(workload[i].as_deref().unwrap_or_default()),
                replay_threads: key.threads,
                allocator: key.allocator,
                runs_ok: runs_ok[i].unwrap_or(0),
                runs_throughput: n,
                ops_per_sec_median: tp_median[i],
                ops_per_sec_min: tp_min[i],
                ops_per_sec_max: tp_max[i],
                ops_per_sec_cv: cv,
                ratio_to_system: None,
                ratio_to_best: None,
                peak_live_bytes: peak_live[i],
                peak_heap_rss_bytes: peak_heap[i],
                peak_rss_bytes: peak_rss[i],
                heap_rss_at_peak_live_bytes: heap_at_peak[i],
                frag_ratio_at_peak: frag[i],
                frag_ratio_at_peak_min: frag_min[i],
                frag_ratio_at_peak_max: frag_max[i],
                overhead_ratio: overhead[i],
                retained_heap_rss_bytes: retained[i],
                retained_heap_rss_100ms_bytes: retained_100ms[i],
                retained_heap_rss_1s_bytes: retained_1s[i],
                minor_faults: minor[i],
                major_faults: major[i],
            }
        })
        .collect();
    rows.sort_by_cached_key(ConfigKey::of);

    // Ratios within each (machine type, trace, threads): the summary rule's own function.
    type Group<'a> = (&'a str, &'a str, u32);
    let groups: Vec<(Group, &str, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                (r.machine.as_str(), r.trace_label.as_str(), r.replay_threads),
                r.allocator.as_str(),
                r.ops_per_sec_median,
            )
        })
        .collect();
    let ratios = summary::ratios(&groups);
    for (r, x) in rows.iter_mut().zip(ratios) {
        r.ratio_to_system = x.vs_system;
        r.ratio_to_best = x.vs_best;
    }
    Ok(rows)
}

/// The frames, concatenated.
fn concat_lazy(frames: Vec<LazyFrame>) -> Result<LazyFrame, Error> {
    if frames.len() == 1 {
        return Ok(frames.into_iter().next().expect("one"));
    }
    concat(frames, UnionArgs::default()).ctx("concatenating result files")
}

/// An inner join whose right side is the small one (the runs): the streaming engine builds its
/// hash table from it at once, instead of buffering the large side while it samples both to
/// choose (7.5M of 10M time-series rows buffered on the benchmark).
fn small_right() -> JoinArgs {
    JoinArgs::new(JoinType::Inner).with_build_side(Some(JoinBuildSide::ForceRight))
}

/// The `ok` runs' identity, to join the latency and time-series rows to.
fn ok_identity(runs: &DataFrame) -> LazyFrame {
    ok_runs(runs).select([
        col(SOURCE),
        col("run_id"),
        col(MACHINE),
        col("trace_name"),
        col("trace_hash"),
        col("replay_threads"),
        col("allocator"),
    ])
}

fn latency_rows(
    runs: &DataFrame,
    lf: LazyFrame,
    labels: &Labels,
    engine: Engine,
) -> Result<Vec<LatencyRow>, Error> {
    let on = [col(SOURCE), col("run_id")];
    let lf = lf
        .select([
            col(SOURCE),
            col("run_id"),
            col("op"),
            col("count"),
            col("mean_ns"),
            col("quantile"),
            col("latency_ns"),
        ])
        .join(ok_identity(runs), on.clone(), on, small_right())
        .with_columns([(col("quantile") * lit(100_000.0) + lit(0.5))
            .cast(DataType::UInt32)
            .alias("q")])
        .group_by([
            col(MACHINE),
            col("trace_name"),
            col("trace_hash"),
            col("replay_threads"),
            col("allocator"),
            col("op"),
            col("q"),
        ])
        .agg([
            f64col("latency_ns").median().alias("latency_ns"),
            f64col("count").median().alias("count"),
            col("mean_ns").median().alias("mean_ns"),
            col("run_id").n_unique().alias("runs"),
        ]);
    let df = engine.collect(lf, "latency per configuration")?;
    let keys = Keys::of(&df)?;
    let op = strs(&df, "op")?;
    let q = u32s(&df, "q")?;
    let lat = f64s(&df, "latency_ns")?;
    let count = f64s(&df, "count")?;
    let mean = f64s(&df, "mean_ns")?;
    let nruns = u32s(&df, "runs")?;
    let mut by: BTreeMap<(ConfigKey, String), LatencyRow> = BTreeMap::new();
    for i in 0..df.height() {
        let key = keys.at(labels, i);
        let op = op[i].clone().unwrap_or_default();
        let row = by
            .entry((key.clone(), op.clone()))
            .or_insert_with(|| LatencyRow {
                key,
                op,
                runs: 0,
                count: None,
                mean_ns: None,
                quantiles: BTreeMap::new(),
            });
        row.runs = row.runs.max(nruns[i].unwrap_or(0));
        row.count = row.count.or(count[i]);
        row.mean_ns = row.mean_ns.or(mean[i]);
        if let (Some(q), Some(l)) = (q[i], lat[i]) {
            row.quantiles.insert(q, l);
        }
    }
    let mut rows: Vec<LatencyRow> = by.into_values().collect();
    rows.sort_by(|a, b| (&a.key, op_rank(&a.op)).cmp(&(&b.key, op_rank(&b.op))));
    Ok(rows)
}

/// Op kinds in the schema's order, unknown ones after.
pub fn op_rank(op: &str) -> (usize, String) {
    let order = results_schema::OPS;
    (
        order.iter().position(|o| *o == op).unwrap_or(order.len()),
        op.to_owned(),
    )
}

/// Chooses the (trace, threads) pairs that get per-trace plots (latency curves, over time):
/// all of them when there are few, else each trace's largest thread count, up to the limit —
/// recorded traces (workload `recorded:…`, real programs) first, then by name.
pub fn series_groups(
    configs: &[SummaryRow],
    max: usize,
) -> (Vec<(String, u32)>, usize /* left out */) {
    let all: BTreeSet<(String, u32)> = configs
        .iter()
        .map(|c| (c.trace_label.clone(), c.replay_threads))
        .collect();
    if all.len() <= max {
        return (all.into_iter().collect(), 0);
    }
    let mut top: BTreeMap<String, (bool, u32)> = BTreeMap::new();
    for c in configs {
        let synthetic = !c.workload.is_recorded();
        let e = top
            .entry(c.trace_label.clone())
            .or_insert((synthetic, c.replay_threads));
        e.0 &= synthetic;
        e.1 = e.1.max(c.replay_threads);
    }
    let mut order: Vec<(bool, String, u32)> =
        top.into_iter().map(|(t, (syn, n))| (syn, t, n)).collect();
    order.sort();
    let mut chosen: Vec<(String, u32)> = order
        .into_iter()
        .take(max)
        .map(|(_, t, n)| (t, n))
        .collect();
    chosen.sort();
    let left = all.len() - chosen.len();
    (chosen, left)
}

/// Memory over time per configuration. Repetitions of one configuration seldom take the same
/// time (a noisy machine, a slow first run), so their samples are aligned by *progress*: a
/// sample at `t_ns` of a run whose untimed pass took `wall_ns` falls in bucket
/// `⌊t_ns / wall_ns · B⌋` of B, and the point drawn for a bucket is the median over the
/// repetitions' samples in it, at the time that bucket's middle has in the median-length run.
/// B is `time_buckets`, or fewer when no run of the (trace, threads) group has that many
/// samples (then each bucket holds about one sample per run, and sparse series do not jump
/// between repetitions).
///
/// The time-series files are scanned once: the rows of the chosen runs are joined to a small
/// integer run index (string keys are hashed only in that join) and collected; the per-run
/// sample counts and the buckets are then computed on that frame.
fn series(
    runs: &DataFrame,
    parts: Vec<LazyFrame>,
    groups: &[(String, u32)],
    opts: &ComputeOptions,
    labels: &Labels,
) -> Result<Vec<Series>, Error> {
    let wanted: BTreeSet<(String, u32)> = groups.iter().cloned().collect();

    // The ok runs of the chosen (trace, threads) groups, from the runs table.
    let ok = ok_runs(runs)
        .select([
            col(SOURCE),
            col("run_id"),
            col(MACHINE),
            col("trace_name"),
            col("trace_hash"),
            col("replay_threads"),
            col("allocator"),
            col("wall_ns"),
        ])
        .collect()
        .ctx("time-series runs")?;
    let src = u32s(&ok, SOURCE)?;
    let rid = strs(&ok, "run_id")?;
    let wall = u64s(&ok, "wall_ns")?;
    let run_keys = Keys::of(&ok)?;
    let mut keys: Vec<ConfigKey> = Vec::new();
    let mut key_index: HashMap<ConfigKey, u32> = HashMap::new();
    let mut run_key: Vec<u32> = Vec::new(); // run index → key index
    let mut run_wall: Vec<Option<u64>> = Vec::new();
    let (mut plan_src, mut plan_rid) = (Vec::new(), Vec::new());
    for i in 0..ok.height() {
        let key = run_keys.at(labels, i);
        if !wanted.contains(&(key.trace.clone(), key.threads)) {
            continue;
        }
        let next = keys.len() as u32;
        let k = *key_index.entry(key.clone()).or_insert_with(|| {
            keys.push(key);
            next
        });
        run_key.push(k);
        run_wall.push(wall[i].filter(|&w| w > 0));
        plan_src.push(src[i].unwrap_or(0));
        plan_rid.push(rid[i].clone().unwrap_or_default());
    }
    if run_key.is_empty() {
        return Ok(Vec::new());
    }
    let plan = DataFrame::new_infer_height(vec![
        Column::new(SOURCE.into(), plan_src),
        Column::new("run_id".into(), plan_rid),
        Column::new("ri".into(), (0..run_key.len() as u32).collect::<Vec<u32>>()),
    ])
    .ctx("time-series plan")?;

    // Replay-phase samples of those runs: collected once (in memory), or scanned twice by the
    // streaming engine, a few files at a time (it would open every file of a union at once,
    // each decoding a whole row group: 4.9 GB on 200 files of 500k rows).
    let on = [col(SOURCE), col("run_id")];
    let replay_phase = col("phase").is_null().or(col("phase").eq(lit("replay")));
    let scan = |lf: LazyFrame| {
        lf.filter(replay_phase.clone())
            .select([
                col(SOURCE),
                col("run_id"),
                col("t_ns"),
                col("live_bytes"),
                col("heap_rss_bytes"),
                col("frag_ratio"),
            ])
            .join(plan.clone().lazy(), on.clone(), on.clone(), small_right())
            .select([
                col("ri"),
                col("t_ns"),
                col("live_bytes"),
                col("heap_rss_bytes"),
                col("frag_ratio"),
            ])
    };
    let samples: Vec<LazyFrame> = match opts.engine {
        Engine::InMemory => {
            let all = concat_lazy(parts)?;
            vec![
                Engine::InMemory
                    .collect(scan(all), "time-series samples")?
                    .lazy(),
            ]
        }
        Engine::Streaming => parts
            .chunks(opts.files_at_once.max(1))
            .map(|c| Ok(scan(concat_lazy(c.to_vec())?)))
            .collect::<Result<_, Error>>()?,
    };
    // Rows of each part, collected and stacked (a run's rows are all in one file).
    let stacked = |f: &dyn Fn(LazyFrame) -> LazyFrame, what: &str| -> Result<DataFrame, Error> {
        let mut out: Option<DataFrame> = None;
        for part in &samples {
            let df = opts.engine.collect(f(part.clone()), what)?;
            match &mut out {
                Some(o) => {
                    o.vstack_mut(&df).ctx(what)?;
                }
                None => out = Some(df),
            }
        }
        Ok(out.unwrap_or_default())
    };

    // Each run's samples and last sample.
    let per_run = stacked(
        &|lf| {
            lf.group_by([col("ri")]).agg([
                col("t_ns").max().alias("t_max"),
                col("t_ns").count().alias("samples"),
            ])
        },
        "time-series per run",
    )?;
    let ri = u32s(&per_run, "ri")?;
    let tmax = u64s(&per_run, "t_max")?;
    let nsamples = u64s(&per_run, "samples")?;
    let mut group_samples: HashMap<(&str, u32), u64> = HashMap::new();
    let mut key_durations: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
    let mut run_dur: Vec<(u32, f64)> = Vec::new(); // (run index, duration)
    for i in 0..per_run.height() {
        let Some(r) = ri[i] else { continue };
        let key = &keys[run_key[r as usize] as usize];
        let g = group_samples
            .entry((key.trace.as_str(), key.threads))
            .or_insert(0);
        *g = (*g).max(nsamples[i].unwrap_or(0));
        // The untimed pass's wall time; the last sample's time when it was not recorded.
        let d = run_wall[r as usize].or(tmax[i]).unwrap_or(0).max(1) as f64;
        key_durations[run_key[r as usize] as usize].push(d);
        run_dur.push((r, d));
    }
    let max_buckets = opts.time_buckets.max(1) as u64;
    let buckets: Vec<u32> = keys
        .iter()
        .map(|key| {
            let n = group_samples
                .get(&(key.trace.as_str(), key.threads))
                .copied()
                .unwrap_or(1);
            n.clamp(1, max_buckets) as u32
        })
        .collect();
    let runs_plan = DataFrame::new_infer_height(vec![
        Column::new(
            "ri".into(),
            run_dur.iter().map(|r| r.0).collect::<Vec<u32>>(),
        ),
        Column::new(
            "k".into(),
            run_dur
                .iter()
                .map(|r| run_key[r.0 as usize])
                .collect::<Vec<u32>>(),
        ),
        Column::new(
            "dur".into(),
            run_dur.iter().map(|r| r.1).collect::<Vec<f64>>(),
        ),
        Column::new(
            "nb".into(),
            run_dur
                .iter()
                .map(|r| buckets[run_key[r.0 as usize] as usize])
                .collect::<Vec<u32>>(),
        ),
    ])
    .ctx("time-series buckets")?;

    // The median over each configuration's runs within each progress bucket. (The tiny
    // epsilon keeps a sample taken exactly at a bucket's start in that bucket despite rounding;
    // samples after the recorded wall time go to the last bucket.)
    let b = (col("t_ns").cast(DataType::Float64) / col("dur") * col("nb").cast(DataType::Float64)
        + lit(1e-6))
    .cast(DataType::UInt32);
    let narrow = |lf: LazyFrame| {
        lf.join(
            runs_plan.clone().lazy(),
            [col("ri")],
            [col("ri")],
            small_right(),
        )
        .with_columns([when(b.clone().gt_eq(col("nb")))
            .then(col("nb") - lit(1u32))
            .otherwise(b.clone())
            .alias("b")])
        .select([
            col("k"),
            col("b"),
            f64col("heap_rss_bytes").alias("heap"),
            f64col("live_bytes").alias("live"),
            col("frag_ratio").alias("frag"),
        ])
    };
    let medians = |lf: LazyFrame| {
        lf.group_by([col("k"), col("b")]).agg([
            col("heap").median(),
            col("live").median(),
            col("frag").median(),
        ])
    };
    let df = match opts.engine {
        Engine::InMemory => Engine::InMemory.collect(
            medians(narrow(samples[0].clone())),
            "time series per configuration",
        )?,
        // A median needs all of its group's values at once: the streaming engine collects
        // the narrowed rows (key, bucket, three values: 32 bytes a sample), and the medians
        // are taken a batch of configurations at a time, so the group-by's own memory is one
        // batch's, not every plotted sample's again.
        Engine::Streaming => {
            let narrow = stacked(&narrow, "time-series samples")?;
            let mut per_key = vec![0u64; keys.len()];
            for i in 0..per_run.height() {
                if let Some(r) = ri[i] {
                    per_key[run_key[r as usize] as usize] += nsamples[i].unwrap_or(0);
                }
            }
            let mut out: Option<DataFrame> = None;
            let mut lo = 0usize;
            while lo < keys.len() {
                let (mut hi, mut rows) = (lo, 0u64);
                while hi < keys.len() && (hi == lo || rows + per_key[hi] <= opts.median_batch_rows)
                {
                    rows += per_key[hi];
                    hi += 1;
                }
                let batch = narrow.clone().lazy().filter(
                    col("k")
                        .gt_eq(lit(lo as u32))
                        .and(col("k").lt(lit(hi as u32))),
                );
                let part =
                    Engine::InMemory.collect(medians(batch), "time series per configuration")?;
                match &mut out {
                    Some(o) => {
                        o.vstack_mut(&part).ctx("time series per configuration")?;
                    }
                    None => out = Some(part),
                }
                lo = hi;
            }
            out.expect("at least one configuration")
        }
    };
    let k = u32s(&df, "k")?;
    let b = u32s(&df, "b")?;
    let heap = f64s(&df, "heap")?;
    let live = f64s(&df, "live")?;
    let frag = f64s(&df, "frag")?;
    // ms per bucket of each configuration: its median run length over its buckets.
    let scale: Vec<f64> = (0..keys.len())
        .map(|i| median(&mut key_durations[i].clone()).unwrap_or(0.0) / buckets[i] as f64 / 1e6)
        .collect();
    let mut out: Vec<Series> = keys
        .iter()
        .map(|key| Series {
            key: key.clone(),
            points: Vec::new(),
        })
        .collect();
    for i in 0..df.height() {
        let (Some(k), Some(b)) = (k[i], b[i]) else {
            continue;
        };
        out[k as usize].points.push(SeriesPoint {
            t_ms: (b as f64 + 0.5) * scale[k as usize],
            heap_rss_bytes: heap[i],
            live_bytes: live[i],
            frag_ratio: frag[i],
        });
    }
    for s in &mut out {
        s.points.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    }
    out.retain(|s| !s.points.is_empty());
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn failed_runs(
    runs: &DataFrame,
    sources: &[std::path::PathBuf],
    labels: &Labels,
) -> Result<Vec<FailedRun>, Error> {
    let df = runs
        .clone()
        .lazy()
        .filter(is_ok().not().or(col("status").is_null()))
        .collect()
        .ctx("failed runs")?;
    let src = u32s(&df, SOURCE)?;
    let rid = strs(&df, "run_id")?;
    let al = strs(&df, "allocator")?;
    let tr = strs(&df, "trace_name")?;
    let hs = strs(&df, "trace_hash")?;
    let th = u32s(&df, "replay_threads")?;
    let rep = u32s(&df, "repetition")?;
    let st = strs(&df, "status")?;
    let er = strs(&df, "error")?;
    let mut out: Vec<FailedRun> = (0..df.height())
        .map(|i| FailedRun {
            source: src[i]
                .and_then(|s| sources.get(s as usize))
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            run_id: rid[i].clone().unwrap_or_default(),
            allocator: al[i].clone().unwrap_or_default(),
            trace: labels.get(&tr[i], &hs[i]),
            threads: th[i],
            repetition: rep[i],
            status: st[i].clone().unwrap_or_else(|| "(none)".into()),
            error: er[i].clone().unwrap_or_default(),
        })
        .collect();
    out.sort_by(|a, b| (&a.source, &a.run_id).cmp(&(&b.source, &b.run_id)));
    Ok(out)
}

fn beyond_peak(runs: &DataFrame, labels: &Labels) -> Result<Vec<BeyondPeak>, Error> {
    let df = runs
        .clone()
        .lazy()
        .filter(is_ok().and(col("measured_peak_live_bytes").gt(col("peak_live_bytes"))))
        .collect()
        .ctx("runs beyond the trace's peak")?;
    let rid = strs(&df, "run_id")?;
    let al = strs(&df, "allocator")?;
    let tr = strs(&df, "trace_name")?;
    let hs = strs(&df, "trace_hash")?;
    let th = u32s(&df, "replay_threads")?;
    let or = strs(&df, "order")?;
    let me = u64s(&df, "measured_peak_live_bytes")?;
    let pk = u64s(&df, "peak_live_bytes")?;
    let mut out: Vec<BeyondPeak> = (0..df.height())
        .map(|i| BeyondPeak {
            run_id: rid[i].clone().unwrap_or_default(),
            allocator: al[i].clone().unwrap_or_default(),
            trace: labels.get(&tr[i], &hs[i]),
            threads: th[i],
            order: or[i].clone().unwrap_or_default(),
            measured: me[i].unwrap_or(0),
            trace_peak: pk[i].unwrap_or(0),
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.trace, &a.allocator, &a.run_id).cmp(&(&b.trace, &b.allocator, &b.run_id))
    });
    Ok(out)
}

/// The machine and build facts, in the order shown.
pub const MACHINE_FACTS: [(&str, &str); 12] = [
    ("host", "host"),
    ("OS", "os"),
    ("kernel", "kernel"),
    ("CPU", "cpu_model"),
    ("CPUs", "cpus"),
    ("THP", "thp_enabled"),
    ("glibc", "glibc_version"),
    ("rustc", "rustc_version"),
    ("build", "build_profile"),
    ("alloclab", "alloclab_version"),
    ("commit", "alloclab_commit"),
    ("touch", "touch"),
];

fn facts(runs: &DataFrame) -> Result<(Vec<Machine>, Vec<AllocatorFacts>), Error> {
    let cols: Vec<Vec<Option<String>>> = MACHINE_FACTS
        .iter()
        .map(|(_, c)| strs(runs, c))
        .collect::<Result<_, _>>()?;
    let mut machines: BTreeMap<Vec<String>, u32> = BTreeMap::new();
    for i in 0..runs.height() {
        let v: Vec<String> = cols
            .iter()
            .map(|c| c[i].clone().unwrap_or_else(|| "unknown".into()))
            .collect();
        *machines.entry(v).or_default() += 1;
    }
    let machines = machines
        .into_iter()
        .map(|(v, runs)| Machine {
            facts: MACHINE_FACTS.iter().map(|(l, _)| *l).zip(v).collect(),
            runs,
        })
        .collect();
    let al = strs(runs, "allocator")?;
    let ver = strs(runs, "allocator_version")?;
    let opt = strs(runs, "allocator_options")?;
    let mut allocs: BTreeMap<(String, String, String), u32> = BTreeMap::new();
    for i in 0..runs.height() {
        let k = (
            al[i].clone().unwrap_or_default(),
            ver[i].clone().unwrap_or_else(|| "unknown".into()),
            opt[i].clone().unwrap_or_default(),
        );
        *allocs.entry(k).or_default() += 1;
    }
    let allocators = allocs
        .into_iter()
        .map(|((allocator, version, options), runs)| AllocatorFacts {
            allocator,
            version,
            options,
            runs,
        })
        .collect();
    Ok((machines, allocators))
}
