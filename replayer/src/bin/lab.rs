//! `lab`: the whole lab in one command (see `replayer/src/lab.rs`). `scripts/lab` builds what it
//! needs and runs this.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use replayer::adapter::parse_list;
use replayer::lab::{LabOptions, Profile};

/// Generates the synthetic suite, records python3 (and your program), replays every available
/// allocator × trace × thread count × repetition, and writes a report.
#[derive(Parser, Debug)]
#[command(
    name = "lab",
    version,
    after_help = "Resumable: run it again and finished sweeps are \
    skipped. Exit status: 0 with a report (failed runs are listed in it), 2 for bad input, 1 for \
    other errors."
)]
struct Args {
    /// Minutes at most: every workload at a tiny scale, 1 and 2 threads, one repetition.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// The suite at full scale, 5 repetitions (hours).
    #[arg(long)]
    full: bool,
    /// Output directory (default results/lab-<profile>).
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Allocators, comma-separated (default: system, jemalloc, mimalloc, tcmalloc, fancy,
    /// fancy-reclaim; those not installed are left out with a note).
    #[arg(short, long)]
    alloc: Option<String>,
    /// Workloads, comma-separated (default: all of `synth --list`).
    #[arg(short, long, value_delimiter = ',')]
    workloads: Option<Vec<String>>,
    /// Thread counts, comma-separated (default: 1, 2, 4, … up to 2× the CPUs; quick: 1,2).
    #[arg(short, long, value_delimiter = ',')]
    threads: Option<Vec<u32>>,
    /// Repetitions (default: quick 1, default 3, full 5).
    #[arg(short, long)]
    repeat: Option<u32>,
    /// Scale of the synthetic suite (default: quick 0.002, default 0.2, full 1).
    #[arg(long)]
    scale: Option<f64>,
    /// Seconds one replay child may run before it is killed and reported as timed out.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// Do not record python3.
    #[arg(long)]
    no_python: bool,
    /// The `analyze` binary (default: ../analysis/analyze beside this one).
    #[arg(long)]
    analyze: Option<PathBuf>,
    /// Record this program (after `--`) and add its trace to the sweep.
    #[arg(long)]
    record: bool,
    /// The program to record: `lab --record -- CMD ARGS…`.
    #[arg(last = true)]
    cmd: Vec<String>,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.record && a.cmd.is_empty() {
        eprintln!(
            "lab: --record needs a program after `--`, as in `lab --record -- sqlite3 db.sqlite 'select 1'`"
        );
        return ExitCode::from(2);
    }
    let allocators = match a.alloc.as_deref().map(parse_list).transpose() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lab: --alloc: {e}");
            return ExitCode::from(2);
        }
    };
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        eprintln!("lab: --timeout must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let opts = LabOptions {
        out: a.out,
        allocators,
        workloads: a.workloads,
        threads: a.threads,
        repeat: a.repeat,
        scale: a.scale,
        timeout: Duration::from_secs_f64(a.timeout),
        python: !a.no_python,
        record: a.cmd,
        analyze: a.analyze,
        progress: !a.quiet,
        ..LabOptions::new(if a.quick {
            Profile::Quick
        } else if a.full {
            Profile::Full
        } else {
            Profile::Default
        })
    };
    match replayer::lab::run(&opts) {
        Ok(r) => {
            for u in &r.unavailable {
                eprintln!("lab: left out {u}");
            }
            eprintln!(
                "lab: {} sweeps replayed, {} already done; {} runs, {} not ok; {:.0} s",
                r.sweeps_run,
                r.sweeps_skipped,
                r.runs,
                r.failed.len(),
                r.seconds
            );
            if let Some(p) = r.report {
                println!("report: {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lab: {e}");
            ExitCode::from(if e.is_bad_input() { 2 } else { 1 })
        }
    }
}
