//! The analyze benchmark's input (analysis/bench/run.sh): a synthetic, schema-conformant sweep
//! with deterministic values, written by the tests' fixture builders (tests/common).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use clap::Parser;

/// Writes a synthetic sweep: traces × allocators × threads × repetitions.
#[derive(Parser, Debug)]
#[command(name = "synthetic_sweep")]
struct Args {
    /// Output directory (result directories d000, d001, … are made in it).
    #[arg(short, long)]
    out: PathBuf,
    /// Workloads (each one trace of that name).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rl_small,ring-buffer,kv-store,larson,mixed"
    )]
    workloads: Vec<String>,
    /// Allocators.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "system,jemalloc,mimalloc,tcmalloc,fancy"
    )]
    allocators: Vec<String>,
    /// Replay thread counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    threads: Vec<u32>,
    /// Repetitions per configuration.
    #[arg(long, default_value_t = 5)]
    repetitions: u32,
    /// Time-series samples per run.
    #[arg(long, default_value_t = 100)]
    samples: u32,
    /// Result directories to spread the runs over.
    #[arg(long, default_value_t = 1)]
    dirs: u32,
    /// Every n-th run crashed (0: none).
    #[arg(long, default_value_t = 0)]
    crash_every: u32,
}

fn main() {
    let a = Args::parse();
    let spec = common::SynthSpec {
        traces: a.workloads.iter().map(|w| (w.clone(), w.clone())).collect(),
        allocators: a.allocators,
        threads: a.threads,
        repetitions: a.repetitions,
        samples_per_run: a.samples,
        dirs: a.dirs,
        crash_every: a.crash_every,
    };
    let t = std::time::Instant::now();
    common::write_synthetic(&a.out, &spec);
    println!(
        "{}: {} runs, {} time-series rows, in {} directories ({:.1} s)",
        a.out.display(),
        spec.runs(),
        spec.runs() * (spec.samples_per_run as u64 + 3),
        spec.dirs,
        t.elapsed().as_secs_f64()
    );
}
