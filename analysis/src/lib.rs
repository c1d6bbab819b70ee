//! `analyze`: Polars over the replay result Parquet (replayer/SCHEMA.md) — tables (Markdown,
//! CSV), plots (PNG, SVG) and one HTML report.
//!
//! The pipeline is one way, one module per step:
//! [`load`] finds result directories and conforms each file to the schema (bad files become
//! [`Problem`]s, not errors) → [`compute`] aggregates with Polars into plain rows →
//! [`tables`] and [`figures`] turn the rows into tables and charts → [`plots`] draws the charts
//! → [`report`] writes every file, and [`summary`] the aggregated rows as Parquet
//! (`summary.parquet`, `summary_latency.parquet`). The generic tables are in [`tables`], the
//! seed documents' own in [`reference`]. The schema is `results_schema`'s ([`schema`]).
//! [`introspection`] reads the allocators' own statistics beside the runs and adds its table
//! and plots to the report.

#![deny(missing_docs)]

pub mod compute;
pub mod error;
pub mod explain;
pub mod fidelity;
pub mod figures;
pub mod heapmap;
pub mod introspection;
pub mod load;
pub mod plots;
pub mod reference;
pub mod report;
pub mod schema;
pub mod summary;
pub mod tables;

use std::path::PathBuf;

pub use error::Error;
pub use load::Problem;

/// Options of one analysis.
#[derive(Debug, Clone)]
pub struct Options {
    /// Result directories, result files, or glob patterns of them.
    pub inputs: Vec<String>,
    /// Where the report goes.
    pub out_dir: PathBuf,
    /// Aggregation options.
    pub compute: compute::ComputeOptions,
    /// The seed tables' workloads.
    pub seeds: reference::SeedOptions,
    /// Draw plots (off: tables and HTML only).
    pub plots: bool,
    /// Value axis of the overview bar charts (auto: log when values span more than 30×).
    pub bar_scale: figures::BarScale,
    /// Threads drawing plots.
    pub plot_threads: usize,
    /// A `lab fidelity` output directory whose tables join the report.
    pub fidelity: Option<PathBuf>,
    /// Where the explanation page looks for trace files, besides each run's `trace_path`.
    pub trace_dirs: Vec<PathBuf>,
    /// The heap maps' time axis.
    pub heap_map_time: heapmap::TimeAxis,
}

impl Options {
    /// Defaults for these inputs and output directory.
    pub fn new(inputs: Vec<String>, out_dir: impl Into<PathBuf>) -> Self {
        Options {
            inputs,
            out_dir: out_dir.into(),
            compute: Default::default(),
            seeds: Default::default(),
            plots: true,
            bar_scale: Default::default(),
            plot_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            fidelity: None,
            trace_dirs: Vec::new(),
            heap_map_time: Default::default(),
        }
    }
}

/// What an analysis produced.
#[derive(Debug)]
pub struct Report {
    /// Files written.
    pub written: report::Written,
    /// Runs read.
    pub runs_total: usize,
    /// Runs `ok`.
    pub runs_ok: usize,
    /// Runs not `ok`.
    pub runs_failed: usize,
    /// What was wrong with the input.
    pub problems: Vec<Problem>,
    /// Time spent reading and aggregating (the Polars part).
    pub compute_time: std::time::Duration,
    /// Time spent drawing plots.
    pub plot_time: std::time::Duration,
}

/// Runs the whole analysis: read, aggregate, write tables, plots and the report.
pub fn run(opts: &Options) -> Result<Report, Error> {
    let t0 = std::time::Instant::now();
    let mut problems = Vec::new();
    let dirs = load::discover(&opts.inputs, &mut problems)?;
    let loaded = load::load(&dirs, problems)?;
    let explain_facts = explain::facts(&loaded)?;
    let mut intro = introspection::load(&loaded);
    let mut analysis = compute::compute(loaded, &opts.compute)?;
    analysis.problems.append(&mut intro.problems);
    let fidelity = match &opts.fidelity {
        Some(d) => fidelity::load(d, &mut analysis.problems)?,
        None => Vec::new(),
    };
    let compute_time = t0.elapsed();
    let mut tables = tables::all_tables(&analysis, &opts.seeds);
    tables.extend(introspection::table(&intro));
    let mut figs = if opts.plots {
        let fopts = figures::FigureOptions {
            max_series_groups: opts.compute.max_series_groups,
            bar_scale: opts.bar_scale,
        };
        figures::figures(&analysis, &fopts)
    } else {
        Default::default()
    };
    if opts.plots {
        let colors = figures::allocator_colors(&analysis);
        figs.figs.extend(introspection::figures(&intro, &colors));
    }
    let t1 = std::time::Instant::now();
    let rendered = report::render_all(
        &figs.figs,
        &opts.out_dir.join("plots"),
        opts.plot_threads,
        &mut analysis.problems,
    )?;
    let explain_opts = explain::ExplainOptions {
        trace_dirs: opts.trace_dirs.clone(),
        time: opts.heap_map_time,
        plots: opts.plots,
    };
    let explained = explain::page(
        &explain_facts,
        &explain_opts,
        &opts.out_dir.join("plots"),
        &mut analysis.problems,
    )?;
    let plot_time = t1.elapsed();
    let mut written = report::write_all(
        &opts.out_dir,
        &analysis,
        &tables,
        &figs,
        &rendered,
        &fidelity,
        &explained,
    )?;
    written.plots.extend(explained.rendered());
    Ok(Report {
        written,
        runs_total: analysis.runs_total,
        runs_ok: analysis.runs_ok,
        runs_failed: analysis.failed.len(),
        problems: analysis.problems,
        compute_time,
        plot_time,
    })
}
