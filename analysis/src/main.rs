//! `analyze DIR_OR_GLOB… [-o REPORT_DIR]`: tables, plots and an HTML report from replay
//! results. Exit status 0 when a report was written (input problems are listed in it and on
//! stderr), 2 for bad input (no usable runs, bad arguments), 1 when writing failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

/// Tables (Markdown, CSV), plots (PNG, SVG) and one HTML report from replay results.
#[derive(Parser, Debug)]
#[command(name = "analyze", version)]
struct Args {
    /// Result directories (searched recursively for runs.parquet, latency.parquet,
    /// timeseries.parquet), result files, or glob patterns of them (quote the pattern).
    #[arg(required_unless_present = "heap_map", value_name = "DIR_OR_GLOB")]
    inputs: Vec<String>,
    /// Where to write report.html, tables.md, tables/ and plots/.
    #[arg(short, long, value_name = "REPORT_DIR", default_value = "report")]
    out: PathBuf,
    /// Workload of AllocatorBench's scaling table.
    #[arg(long, default_value = "rl_small")]
    scaling_workload: String,
    /// Workload of FancyAllocator's tables.
    #[arg(long, default_value = "ring-buffer")]
    fancy_workload: String,
    /// Most (trace, threads) pairs drawn over time and as latency curves; when there are more,
    /// each trace's largest thread count is drawn.
    #[arg(long, default_value_t = 12)]
    max_series: usize,
    /// Most progress buckets of the over-time plots (fewer when no run has that many samples).
    #[arg(long, default_value_t = 200)]
    time_buckets: u32,
    /// Engine of the time-series and latency aggregations: `streaming` reads the files in
    /// batches (memory bounded by what is aggregated, not by the rows read), `in-memory`
    /// collects the plotted runs' samples whole.
    #[arg(long, default_value = "streaming", value_name = "streaming|in-memory")]
    engine: analysis::compute::Engine,
    /// Value axis of the overview bar charts (throughput, overhead, p99 by workload): `auto`
    /// is log when the values span more than 30×, else linear.
    #[arg(long, default_value = "auto", value_name = "auto|linear|log")]
    bar_scale: analysis::figures::BarScale,
    /// Tables and HTML only, no plots.
    #[arg(long)]
    no_plots: bool,
    /// Threads drawing plots (default: CPUs).
    #[arg(long)]
    plot_threads: Option<usize>,
    /// Print timings (reading and aggregating, drawing) on stderr.
    #[arg(long)]
    timings: bool,
    /// A `lab fidelity` output directory: its tables (real programs against their replays)
    /// join the report.
    #[arg(long, value_name = "DIR")]
    fidelity: Option<PathBuf>,
    /// Only draw a heap map (address × time, coloured by allocation state) and the size
    /// classes of this trace into REPORT_DIR (no result directories needed). A directory:
    /// every address trace (`*.heapmap.zst`, from `replay --heap-map`) under it, each with its
    /// OS mappings overlaid when its `.maps.parquet` is beside it.
    #[arg(long, value_name = "TRACE|DIR")]
    heap_map: Option<PathBuf>,
    /// The heap map's time axis: `ops` (allocator calls in order) or `time` (the trace's
    /// timestamps).
    #[arg(long, default_value = "ops", value_name = "ops|time")]
    heap_map_time: analysis::heapmap::TimeAxis,
    /// Directories where the report looks for the traces the runs replayed (by file name and
    /// content hash), besides each run's `trace_path`.
    #[arg(long, value_name = "DIR")]
    traces: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("analyze: {e:#}");
            let bad_input = e
                .downcast_ref::<analysis::Error>()
                .is_some_and(analysis::Error::is_bad_input);
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

/// One printed line per heap map drawn.
fn heap_map_line(
    trace: &std::path::Path,
    map: &analysis::heapmap::HeapMap,
    files: &[PathBuf],
) -> String {
    let overlay = match &map.overlay {
        Some(o) => format!(
            ", {} mapping snapshots{}",
            o.snapshots,
            o.retained_bytes.map_or(String::new(), |r| format!(
                ", {r} B resident with nothing live at the last (by rows)"
            ))
        ),
        None => String::new(),
    };
    let who = match &map.address {
        Some(a) => format!(" ({} under {})", a.trace, a.allocator),
        None => String::new(),
    };
    format!(
        "{}{who}: {} ops, {} address segment{}, 1 row = {} B, peak live {} B{overlay}; wrote {}",
        trace.display(),
        map.ops,
        map.axis.segments.len(),
        if map.axis.segments.len() == 1 {
            ""
        } else {
            "s"
        },
        map.axis.bytes_per_row,
        map.peak_live_bytes,
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.heap_map {
        let opts = analysis::heapmap::HeapMapOptions {
            time: args.heap_map_time,
        };
        if path.is_dir() {
            analysis::heapmap::write_for_dir(path, &args.out, &opts, |trace, map, files| {
                println!("{}", heap_map_line(trace, map, files))
            })?;
        } else {
            let (map, files) = analysis::heapmap::write_for_trace(path, &args.out, &opts)?;
            println!("{}", heap_map_line(path, &map, &files));
        }
        return Ok(());
    }
    let mut opts = analysis::Options::new(args.inputs, &args.out);
    opts.seeds.scaling_workload = args.scaling_workload;
    opts.seeds.fancy_workload = args.fancy_workload;
    opts.compute.max_series_groups = args.max_series;
    opts.compute.time_buckets = args.time_buckets;
    opts.compute.engine = args.engine;
    opts.plots = !args.no_plots;
    opts.bar_scale = args.bar_scale;
    opts.fidelity = args.fidelity;
    opts.trace_dirs = args.traces;
    opts.heap_map_time = args.heap_map_time;
    if let Some(n) = args.plot_threads {
        opts.plot_threads = n;
    }
    let t = std::time::Instant::now();
    let report = match analysis::run(&opts) {
        Ok(r) => r,
        Err(e @ analysis::Error::NoRuns { .. }) => return Err(e.into()),
        Err(e) => return Err(e).with_context(|| format!("report in {}", args.out.display())),
    };
    for p in &report.problems {
        eprintln!("analyze: warning: {p}");
    }
    println!(
        "{}: {} runs ({} ok, {} not ok), {} tables, {} plots{}",
        report.written.html.display(),
        report.runs_total,
        report.runs_ok,
        report.runs_failed,
        report.written.tables.len(),
        report.written.plots.len(),
        if report.problems.is_empty() {
            String::new()
        } else {
            format!(
                "; {} input problems, listed in the report",
                report.problems.len()
            )
        }
    );
    if args.timings {
        eprintln!(
            "analyze: timings: read+aggregate {:.3} s, plots {:.3} s, total {:.3} s",
            report.compute_time.as_secs_f64(),
            report.plot_time.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
