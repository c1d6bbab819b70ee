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
use replayer::engine::Touch;
use replayer::plan::Order;

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
    /// Runs shard I of N of a manifest (`lab --plan-only`): its runs not yet done anywhere under
    /// `<out>/shards/`, into `<out>/shards/<I>-of-<N>/` (lab/README.md, "Beyond one machine").
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Done, failed and pending runs of a manifest, from the results present.
    #[command(after_help = EXIT_CODES)]
    Status(StatusArgs),
    /// Stages a manifest's traces and the programs on a shared path and submits its shards as a
    /// Slurm job array (`sbatch --array`), then a dependent job running `analyze` over them.
    #[command(after_help = EXIT_CODES)]
    Slurm(SlurmArgs),
}

#[derive(ClapArgs, Debug)]
struct RunArgs {
    /// The manifest (`manifest.jsonl` of `lab --plan-only`).
    #[arg(short, long)]
    manifest: PathBuf,
    /// Which share: I/N, 0-based (a Slurm array task: `$SLURM_ARRAY_TASK_ID/N`).
    #[arg(short, long, default_value = "0/1")]
    shard: String,
    /// Results root (default: the manifest's directory); the shard writes into
    /// `<out>/shards/<I>-of-<N>/`.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// No line per run.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    tools: ToolArgs,
}

#[derive(ClapArgs, Debug)]
struct StatusArgs {
    /// The manifest.
    #[arg(short, long)]
    manifest: PathBuf,
    /// Results root (default: the manifest's directory).
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// List the pending runs too (failed ones are always listed).
    #[arg(short, long)]
    list: bool,
}

#[derive(ClapArgs, Debug)]
struct SlurmArgs {
    /// The manifest (`manifest.jsonl` of `lab --plan-only`).
    #[arg(short, long)]
    manifest: PathBuf,
    /// A directory every node sees at the same path: traces, programs, results and logs go
    /// there.
    #[arg(long)]
    shared: PathBuf,
    /// Array tasks (shards).
    #[arg(short = 'n', long, default_value_t = 4)]
    shards: usize,
    /// sbatch --partition.
    #[arg(short, long)]
    partition: Option<String>,
    /// sbatch --account.
    #[arg(short = 'A', long)]
    account: Option<String>,
    /// sbatch --constraint (node features: one CPU model per array, for instance).
    #[arg(short = 'C', long)]
    constraint: Option<String>,
    /// Share nodes with other jobs (default: --exclusive, a benchmark shares nothing).
    #[arg(long)]
    shared_nodes: bool,
    /// The array's time limit in minutes (default: the largest shard's runs × passes × timeout,
    /// + 10 % + 5 min).
    #[arg(long)]
    time: Option<u64>,
    /// When the analysis job may start.
    #[arg(long, value_enum, default_value = "afterany")]
    after: lab::slurm::After,
    /// Submit the shards only (no `analyze` job, no `analyze` needed).
    #[arg(long)]
    no_analyze: bool,
    /// Another sbatch argument for both jobs (repeatable), as `--sbatch-arg=--qos=long`.
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// The sbatch program.
    #[arg(long, default_value = "sbatch")]
    sbatch: PathBuf,
    #[command(flatten)]
    tools: ToolArgs,
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
    /// jemalloc, mimalloc and tcmalloc, libfancy_preload.so).
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
    /// The replay side's touch policy (as `replay --touch`).
    #[arg(long, value_enum, default_value_t = Touch::default())]
    touch: Touch,
    /// The replay side's interleaving (as `replay --order`: deps, window:K, strict).
    #[arg(long, default_value = "deps", value_parser = Order::parse)]
    order: Order,
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
    /// Also draw heap maps for these sweeps (comma-separated workloads, as
    /// fragmentation-holes, or sweep names, as larson-t2): one more untimed replay per allocator
    /// writes runs/<sweep>/heapmaps (replay --heap-map), which the report's "Why the allocators
    /// differ" page shows. Local labs only.
    #[arg(long, value_delimiter = ',', conflicts_with = "plan_only")]
    heap_maps: Vec<String>,
    /// Record this program (after `--`) and add its trace to the sweep.
    #[arg(long)]
    record: bool,
    /// The program to record: `lab --record -- CMD ARGS…`.
    #[arg(last = true)]
    cmd: Vec<String>,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    /// Leave out the fidelity step (real programs against their replays), which the default
    /// and full profiles run (`--quick` never does).
    #[arg(long, conflicts_with = "fidelity")]
    no_fidelity: bool,
    /// Run the fidelity step in any profile (`--quick` included).
    #[arg(long)]
    fidelity: bool,
    /// Make the traces and write the sweep as `<out>/manifest.jsonl` (one row per run) instead
    /// of running it: for `lab run --shard` and `lab slurm`.
    #[arg(long)]
    plan_only: bool,
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
    /// libfancy_preload.so (default: beside this binary).
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
        touch: a.touch,
        order: a.order,
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
        heap_maps: a.heap_maps,
        ..LabOptions::new(profile, a.tools.locate()?)
    };
    let opts = LabOptions {
        fidelity: (opts.fidelity || a.fidelity) && !a.no_fidelity,
        ..opts
    };
    if a.plan_only {
        let (path, m, unavailable) = lab::shard::plan(&opts)?;
        for u in &unavailable {
            eprintln!("lab: left out {u}");
        }
        eprintln!(
            "lab: {} runs planned; run them with `lab run --manifest {} --shard I/N` or `lab \
             slurm --manifest {} --shared DIR`",
            m.runs.len(),
            path.display(),
            path.display()
        );
        println!("manifest: {}", path.display());
        return Ok(());
    }
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

fn run_shard(a: RunArgs) -> Result<(), LabError> {
    let shard = lab::shard::parse_shard(&a.shard).map_err(bad)?;
    let r = lab::shard::run_shard(&lab::shard::ShardOptions {
        manifest: a.manifest,
        shard,
        out: a.out,
        tools: a.tools.locate()?,
        verbose: !a.quiet,
    })?;
    for f in &r.failed {
        eprintln!("lab: not ok: {f}");
    }
    eprintln!(
        "lab: shard {}/{}: {} runs, {} already done, {} replayed now ({} not ok), in {}",
        shard.0,
        shard.1,
        r.rows,
        r.skipped,
        r.ran,
        r.failed.len(),
        r.dir.display()
    );
    Ok(())
}

fn status(a: StatusArgs) -> Result<(), LabError> {
    let s = lab::shard::status(&a.manifest, a.out.as_deref())?;
    let hosts: Vec<String> = s.hosts.iter().map(|(h, n)| format!("{h} {n}")).collect();
    println!(
        "{} runs: {} done ({} ok, {} not ok), {} pending{}",
        s.total,
        s.ok + s.failed.len(),
        s.ok,
        s.failed.len(),
        s.pending.len(),
        if hosts.is_empty() {
            String::new()
        } else {
            format!("; finished on: {}", hosts.join(", "))
        }
    );
    for f in &s.failed {
        println!("not ok: {f}");
    }
    if a.list {
        for p in &s.pending {
            println!("pending: {p}");
        }
    }
    Ok(())
}

fn slurm(a: SlurmArgs) -> Result<(), LabError> {
    let s = lab::slurm::submit(&lab::slurm::SlurmOptions {
        manifest: a.manifest,
        shared: a.shared,
        shards: a.shards,
        partition: a.partition,
        account: a.account,
        constraint: a.constraint,
        exclusive: !a.shared_nodes,
        time_minutes: a.time,
        after: a.after,
        sbatch_args: a.sbatch_args,
        sbatch: a.sbatch,
        analyze: !a.no_analyze,
        tools: a.tools.locate()?,
    })?;
    println!(
        "array job: {} ({} tasks, time limit {} min)",
        s.array_job, s.shards, s.time_minutes
    );
    if let Some(j) = &s.analyze_job {
        println!("analysis job: {j} (after the array)");
    }
    let dir = s.manifest.parent().unwrap_or(std::path::Path::new("."));
    let jobs = match &s.analyze_job {
        Some(j) => format!("{},{j}", s.array_job),
        None => s.array_job.clone(),
    };
    println!("follow: squeue -j {jobs}");
    println!("runs:   lab status --manifest {}", s.manifest.display());
    println!("logs:   {}/slurm/logs/", dir.display());
    if s.analyze_job.is_some() {
        println!("report: {}/report/report.html", dir.display());
    }
    eprintln!("lab: staged and submitted in {:.1} s", s.seconds);
    Ok(())
}

fn main() -> ExitCode {
    let a = Args::parse();
    let r = match a.command {
        Some(Sub::Fidelity(f)) => fidelity(f),
        Some(Sub::Run(r)) => run_shard(r),
        Some(Sub::Status(s)) => status(s),
        Some(Sub::Slurm(s)) => slurm(s),
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
