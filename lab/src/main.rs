//! `lab`: the whole lab in one command (see lab/src/suite.rs and lab/README.md). `scripts/lab`
//! builds what it needs and runs this.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};

use lab::error::{EXIT_CODES, LabError, bad};
use lab::fidelity::{FidelityOptions, Program};
use lab::suite::{LabOptions, Profile};
use lab::tools::Tools;
use replayer::adapter::parse_list;

/// Generates the synthetic suite, records python3 (and your program), replays every available
/// allocator × trace × thread count × repetition, and writes a report. `lab fidelity` compares
/// real programs with their replays.
#[derive(Parser, Debug)]
#[command(
    name = "lab",
    version,
    args_conflicts_with_subcommands = true,
    after_help = format!("Resumable: run it again and finished sweeps are skipped. {EXIT_CODES}")
)]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    suite: SuiteArgs,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Runs real programs under each allocator (LD_PRELOAD) and their recorded traces under the
    /// same libraries (replay `preload:`), and tables real against replayed time and heap RSS.
    #[command(after_help = EXIT_CODES)]
    Fidelity(FidelityArgs),
}

#[derive(ClapArgs, Debug)]
struct FidelityArgs {
    /// The default real-program set (python3 ×2, perl, sqlite3, gcc, git, two threaded C
    /// programs); with a command after `--`, that one too.
    #[arg(long)]
    default_set: bool,
    /// Repetitions per side and allocator (at least 5).
    #[arg(short, long, default_value_t = 5)]
    repeat: u32,
    /// Output directory: per program `fidelity.parquet` and `summary.json`, and `fidelity.md`.
    #[arg(short, long, default_value = "results/fidelity")]
    out: PathBuf,
    /// Allocators: `system` and `preload:PATH`, comma-separated (default: glibc, Debian's
    /// jemalloc, mimalloc and tcmalloc, libfancymalloc.so).
    #[arg(short, long)]
    alloc: Option<String>,
    /// The name of the program after `--` in the tables (default: its file name).
    #[arg(long)]
    name: Option<String>,
    /// Seconds a real run or a replay child may take.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    tools: ToolArgs,
    /// The program: `lab fidelity -- CMD ARGS…`.
    #[arg(last = true)]
    cmd: Vec<String>,
}

#[derive(ClapArgs, Debug)]
struct SuiteArgs {
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
    /// Pin each replay thread to one CPU (thread i on CPU i mod CPUs), as `replay --pin`.
    #[arg(long)]
    pin: bool,
    /// Record this program (after `--`) and add its trace to the sweep.
    #[arg(long)]
    record: bool,
    /// The program to record: `lab --record -- CMD ARGS…`.
    #[arg(last = true)]
    cmd: Vec<String>,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    tools: ToolArgs,
}

/// Where the programs the lab runs are.
#[derive(ClapArgs, Debug)]
struct ToolArgs {
    /// The `record` binary (default: beside this one).
    #[arg(long, env = "ALLOCLAB_RECORD_BIN", value_name = "PATH")]
    record_bin: Option<PathBuf>,
    /// The `replay` binary (default: beside this one).
    #[arg(long, env = "ALLOCLAB_REPLAY_BIN", value_name = "PATH")]
    replay_bin: Option<PathBuf>,
    /// The `analyze` binary (default: ../analysis/analyze from this one's directory, where
    /// `cargo build --profile analysis -p analysis` puts it).
    #[arg(long, env = "ALLOCLAB_ANALYZE", value_name = "PATH")]
    analyze: Option<PathBuf>,
    /// libfancymalloc.so (default: beside this binary).
    #[arg(long, env = "ALLOCLAB_FANCY_LIB", value_name = "PATH")]
    fancy_lib: Option<PathBuf>,
}

impl ToolArgs {
    fn locate(self) -> Result<Tools, LabError> {
        Tools::locate(
            self.record_bin,
            self.replay_bin,
            self.analyze,
            self.fancy_lib,
        )
    }
}

fn fidelity(a: FidelityArgs) -> Result<(), LabError> {
    if !a.default_set && a.cmd.is_empty() {
        return Err(bad(
            "fidelity needs a program after `--` (as in `lab fidelity -- /usr/bin/perl -e '…'`) \
             or --default-set",
        ));
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(bad("--timeout must be a positive number of seconds"));
    }
    let tools = a.tools.locate()?;
    let libraries = match &a.alloc {
        Some(s) => lab::fidelity::parse_libraries(s)?,
        None => lab::fidelity::default_libraries(&tools)?,
    };
    let mut programs = Vec::new();
    if a.default_set {
        programs = lab::programs::default_set(&a.out.join("programs"))?;
    }
    if !a.cmd.is_empty() {
        let name = a.name.unwrap_or_else(|| {
            std::path::Path::new(&a.cmd[0])
                .file_name()
                .map_or_else(|| "program".into(), |f| f.to_string_lossy().into_owned())
        });
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            || name.starts_with('.')
        {
            return Err(bad(format!(
                "--name {name:?}: use letters, digits, '-', '_' and '.' (it names a directory)"
            )));
        }
        programs.push(Program {
            name,
            cmd: a.cmd,
            env: Vec::new(),
            cwd: None,
        });
    }
    let opts = FidelityOptions {
        programs,
        libraries,
        repeat: a.repeat,
        out: a.out.clone(),
        tools,
        timeout: Duration::from_secs_f64(a.timeout),
        verbose: !a.quiet,
    };
    let s = lab::fidelity::run(&opts)?;
    println!("{}", lab::fidelity::render(&s));
    eprintln!(
        "lab: fidelity tables in {}/fidelity.md, rows in {}/<program>/fidelity.parquet",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

fn suite(a: SuiteArgs) -> Result<(), LabError> {
    if a.record && a.cmd.is_empty() {
        return Err(bad(
            "--record needs a program after `--`, as in `lab --record -- sqlite3 db.sqlite 'select 1'`",
        ));
    }
    if !a.record && !a.cmd.is_empty() {
        return Err(bad(format!(
            "`{}` after `--`: say what to do with it (--record)",
            a.cmd.join(" ")
        )));
    }
    let allocators = a
        .alloc
        .as_deref()
        .map(parse_list)
        .transpose()
        .map_err(|e| bad(format!("--alloc: {e}")))?;
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(bad("--timeout must be a positive number of seconds"));
    }
    let profile = if a.quick {
        Profile::Quick
    } else if a.full {
        Profile::Full
    } else {
        Profile::Default
    };
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
        progress: !a.quiet,
        pin: a.pin,
        ..LabOptions::new(profile, a.tools.locate()?)
    };
    let r = lab::suite::run(&opts)?;
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
    Ok(())
}

fn main() -> ExitCode {
    let a = Args::parse();
    let r = match a.command {
        Some(Sub::Fidelity(f)) => fidelity(f),
        None => suite(a.suite),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
