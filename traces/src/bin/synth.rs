//! `synth`: writes synthetic allocation traces (see `traces/src/synth/README.md`).
//!
//! ```text
//! synth WORKLOAD [-o FILE] [--threads N] [--ops N] [--scale X] [--seed S]
//!                [--min-size B] [--max-size B] [--align A]
//! synth all --out DIR [--threads N] [--scale X] [--seed S]
//! synth --list [--markdown]
//! ```
//! Exit status: 0 done, 1 the trace could not be written, 2 bad arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use traces::synth::{self, Config, Params, SynthError, WORKLOADS};

#[derive(Parser, Debug)]
#[command(
    name = "synth",
    version,
    about = "Write a synthetic allocation trace (deterministic for a given seed).",
    after_help = "Workloads: see `synth --list`. `synth all --out DIR` writes the whole suite."
)]
struct Args {
    /// The workload (see --list), or `all` for the whole suite.
    #[arg(required_unless_present = "list")]
    workload: Option<String>,
    /// Output file (default WORKLOAD.trace.zst); with `all`, the output directory.
    #[arg(short = 'o', long = "out", value_name = "PATH")]
    out: Option<PathBuf>,
    /// Simulated threads (the workload's default if not given).
    #[arg(long, value_name = "N")]
    threads: Option<u32>,
    /// Allocator calls of the main phase, all threads together (the workload's default if
    /// not given).
    #[arg(long, value_name = "N")]
    ops: Option<u64>,
    /// Multiplies the ops and the object counts the pattern defines.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    scale: f64,
    /// Seed of every random choice.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Smallest request size, for workloads whose sizes are one range.
    #[arg(long, value_name = "BYTES")]
    min_size: Option<u64>,
    /// Largest request size, for workloads whose sizes are one range.
    #[arg(long, value_name = "BYTES")]
    max_size: Option<u64>,
    /// Alignment of aligned allocations (alignment64): a power of two, 8 to 1 MiB.
    #[arg(long, value_name = "BYTES")]
    align: Option<u64>,
    /// Describe every workload and its parameters, then exit.
    #[arg(long)]
    list: bool,
    /// With --list: print the README's Markdown table instead.
    #[arg(long, requires = "list")]
    markdown: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
}

/// Bad arguments: one line, exit status 2.
fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("synth: error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        if args.markdown {
            print!("{}", synth::markdown_table());
        } else {
            print!("{}", synth::list_text());
        }
        return ExitCode::SUCCESS;
    }
    let workload = args.workload.clone().expect("clap requires it");
    let params = Params {
        threads: args.threads,
        ops: args.ops,
        scale: args.scale,
        seed: args.seed,
        min_size: args.min_size,
        max_size: args.max_size,
        align: args.align,
    };
    if workload == "all" {
        return all(&args, &params);
    }
    let cfg = match Config::new(&workload, &params) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.trace.zst", cfg.workload.name)));
    match write(&cfg, &path, args.quiet) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synth: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `synth all --out DIR`: every workload at the given scale, seed and (optionally) threads.
fn all(args: &Args, params: &Params) -> ExitCode {
    for (arg, given) in [
        ("--ops", args.ops.is_some()),
        ("--min-size", args.min_size.is_some()),
        ("--max-size", args.max_size.is_some()),
        ("--align", args.align.is_some()),
    ] {
        if given {
            return usage_error(format!(
                "{arg} applies to one workload, not to `all` (which takes --out, --threads, \
                 --scale, --seed)"
            ));
        }
    }
    let Some(dir) = &args.out else {
        return usage_error("all: needs --out DIR, the directory to write the suite into");
    };
    // Check every workload's parameters before writing anything.
    let mut cfgs = Vec::new();
    for w in WORKLOADS {
        match Config::new(w.name, params) {
            Ok(c) => cfgs.push(c),
            Err(e) => return usage_error(format!("{}: {e}", w.name)),
        }
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("synth: {}: cannot create the directory: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let start = Instant::now();
    let mut events = 0u64;
    for cfg in &cfgs {
        let path = dir.join(format!("{}.trace.zst", cfg.workload.name));
        match write(cfg, &path, args.quiet) {
            Ok(n) => events += n,
            Err(e) => {
                eprintln!("synth: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if !args.quiet {
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "synth: wrote {} traces ({events} events) to {} in {secs:.1} s ({:.1} M events/s)",
            cfgs.len(),
            dir.display(),
            events as f64 / secs / 1e6
        );
    }
    ExitCode::SUCCESS
}

/// Writes one trace; returns its event count.
fn write(cfg: &Config, path: &Path, quiet: bool) -> Result<u64, SynthError> {
    let start = Instant::now();
    let s = synth::generate_file(cfg, path)?;
    if !quiet {
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{}: {} events, {:.1} MB, {:.2} s ({:.1} M events/s) -> {}",
            cfg.workload.name,
            s.events,
            s.bytes as f64 / 1e6,
            secs,
            s.events as f64 / secs / 1e6,
            path.display()
        );
    }
    Ok(s.events)
}
