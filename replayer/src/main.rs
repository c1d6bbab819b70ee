//! `replay`: the command line over the replayer library (see lib.rs and README.md).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use replayer::adapter::{ALLOCATORS, AllocSpec, parse_list};
use replayer::engine::{Thp, Touch};
use replayer::error::ReplayError;
use replayer::mem::{Counting, HarnessAlloc};
use replayer::plan::Order;
use replayer::sweep::{Sweep, SweepOptions};

// The OS-call wrappers (mmap, munmap, …) that count the allocator's calls during a replay.
mod interpose;

// The harness never takes memory from malloc: in a replay child malloc is the allocator under
// test (see mem.rs). Every harness allocation is counted, so a replay can prove that none
// happened inside its loop.
#[global_allocator]
static GLOBAL: Counting<HarnessAlloc> = Counting(HarnessAlloc::new());

fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].to_ascii_lowercase();
            let m = match unit.trim_end_matches("ib").trim_end_matches('b') {
                "" => 1u64,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => return Err(format!("'{s}' is not a size (as in 512M or 4G)")),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (as in 512M or 4G)"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("'{s}' is not a size"));
    }
    Ok((v * mul as f64) as u64)
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("'{s}' is not a number of seconds"))
    }
}

/// `--repeat`: a count, or `auto` (repeat until stable).
#[derive(Clone, Copy, Debug)]
enum Repeat {
    Count(u32),
    Auto,
}

fn parse_repeat(s: &str) -> Result<Repeat, String> {
    if s.trim() == "auto" {
        return Ok(Repeat::Auto);
    }
    s.trim()
        .parse()
        .map(Repeat::Count)
        .map_err(|_| format!("'{s}' is neither a number of repetitions nor `auto`"))
}

/// `--until-stable`: a percentage (`5%` or `5`), as a fraction.
fn parse_pct(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage (as 5%)"))?;
    if v > 0.0 && v < 100.0 {
        Ok(v / 100.0)
    } else {
        Err(format!("'{s}' must be above 0 % and below 100 %"))
    }
}

/// Replays an allocation trace through one or more allocators and measures throughput,
/// latency percentiles, RSS and fragmentation. Each allocator × repetition runs in its own
/// child process, interleaved.
#[derive(Parser, Debug)]
#[command(name = "replay", version, after_help = after_help())]
struct Args {
    /// The trace (.zst, from `record` or `synth`).
    #[arg(required_unless_present_any = ["list_allocators", "child", "check_preload"])]
    trace: Option<PathBuf>,
    /// Allocators, comma-separated (see --list-allocators); ratios are to the first.
    #[arg(short, long, default_value = "system")]
    alloc: Vec<String>,
    /// Repetitions of each allocator (median and spread are reported); `auto`: repeat until
    /// stable (--until-stable, default 5%).
    #[arg(short, long, default_value = "1", value_parser = parse_repeat)]
    repeat: Repeat,
    /// Repeat each allocator (interleaved) until the 95 % confidence interval of its median
    /// ops/s (order statistics) is within ± this percentage, or --max-repeat runs; cells that
    /// do not get there are flagged. --repeat is then the least number of runs.
    #[arg(long, value_name = "PCT", value_parser = parse_pct)]
    until_stable: Option<f64>,
    /// The cap of repetitions with --until-stable or --repeat auto.
    #[arg(long, default_value_t = 20)]
    max_repeat: u32,
    /// Transparent huge pages in the replay children: system (as set), never (turned off for
    /// the child), madvise or always (only checked: they need that system setting).
    #[arg(long, value_enum, default_value_t = Thp::System)]
    thp: Thp,
    /// Fold the traced threads onto this many replay threads (default: one per traced thread).
    #[arg(short, long)]
    threads: Option<u32>,
    /// Pin replay thread i to CPU i mod CPUs.
    #[arg(long)]
    pin: bool,
    /// Honour the trace's timing instead of replaying as fast as possible.
    #[arg(long)]
    pace: bool,
    /// How the trace's interleaving is kept: deps (only its dependencies), window:K (at most
    /// K earlier ops of the trace pending when an op runs; `window` alone: the default K) or
    /// strict (the trace's global order).
    #[arg(long, default_value = "deps", value_parser = Order::parse)]
    order: Order,
    /// How much of each new block to write.
    #[arg(long, value_enum, default_value_t = Touch::Pages)]
    touch: Touch,
    /// Skip the timed (latency) pass.
    #[arg(long)]
    no_latency: bool,
    /// RSS sampler period in ms (0: no time series).
    #[arg(long, default_value_t = 10)]
    sample_ms: u64,
    /// Period of the allocator's own statistics in ms (introspection.parquet; 0: none). Each
    /// reading may hold the allocator's locks briefly (glibc's malloc_info walks its free lists).
    #[arg(long, default_value_t = replayer::engine::DEFAULT_INTROSPECT_MS)]
    introspect_ms: u64,
    /// Seconds to watch retained RSS after the last op (points at 0.1, 1 and 5 s).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    retained_wait: f64,
    /// Seconds one child may run before it is killed and its run reported as timed out.
    #[arg(long, default_value = "600", value_parser = parse_secs)]
    timeout: f64,
    /// Write runs.parquet, latency.parquet, timeseries.parquet and introspection.parquet here
    /// (SCHEMA.md).
    #[arg(short, long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Also draw where each allocator put the blocks: one more untimed pass per allocator logs
    /// every op's address and snapshots the process's mappings (resident or not), into
    /// DIR/<trace>/<allocator>.heapmap.zst and .maps.parquet (replayer/SCHEMA.md); `analyze
    /// --heap-map DIR` draws them. Without =DIR: OUT/heapmaps (needs -o).
    #[arg(long, value_name = "DIR", num_args = 0..=1, require_equals = true)]
    heap_map: Option<Option<PathBuf>>,
    /// Period of the heap-map pass's mapping snapshots, ms (each reads /proc/self/maps and
    /// asks mincore about every anonymous mapping).
    #[arg(long, default_value_t = replayer::sweep::DEFAULT_HEAP_MAP_MS, value_parser = clap::value_parser!(u64).range(1..))]
    heap_map_ms: u64,
    /// Sweep name in the results (default: the output directory's name).
    #[arg(long)]
    sweep: Option<String>,
    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Memory the replay may use (as in 8G; default: the machine's available memory).
    #[arg(long, value_parser = parse_bytes)]
    max_memory: Option<u64>,
    /// Leave out allocators that are not installed here (with a warning) instead of failing.
    #[arg(long)]
    skip_unavailable: bool,
    /// List the allocators and whether each is available here.
    #[arg(long)]
    list_allocators: bool,
    /// No progress bars and no per-run lines on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Internal: run one pass as a child (request on stdin).
    #[arg(long, hide = true)]
    child: bool,
    /// Internal: check that the LD_PRELOAD library given serves malloc (exit 2 if not).
    #[arg(long, hide = true, value_name = "LIB")]
    check_preload: Option<PathBuf>,
}

fn after_help() -> String {
    let mut s = String::from("Allocators:\n");
    for (n, about) in ALLOCATORS {
        s += &format!("  {n:22} {about}\n");
    }
    s += "\nExit status: 0 when every run is ok, 3 when some run crashed, failed or timed out \
          (the others are still reported and written), 2 for bad input, 1 for other errors.";
    s
}

fn list() -> String {
    let mut s = String::new();
    for (n, about) in ALLOCATORS {
        let state = match AllocSpec::parse(n) {
            Ok(spec) => match spec.check_available() {
                Ok(()) => "available".to_string(),
                Err(e) => format!("unavailable: {e}"),
            },
            Err(_) => "give a path".to_string(),
        };
        s += &format!("{n:22} {about}\n{:22} ({state})\n", "");
    }
    s
}

fn run(a: Args) -> Result<ExitCode, ReplayError> {
    let mut allocators: Vec<AllocSpec> = Vec::new();
    for list in &a.alloc {
        for s in
            parse_list(list).map_err(|e| ReplayError::BadInput(format!("--alloc {list}: {e}")))?
        {
            if !allocators.contains(&s) {
                allocators.push(s);
            }
        }
    }
    if a.skip_unavailable {
        allocators.retain(|s| match s.check_available() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("replay: leaving out {e}");
                false
            }
        });
        if allocators.is_empty() {
            return Err(ReplayError::BadInput(
                "none of the allocators asked for is available here".into(),
            ));
        }
    }
    let trace = a.trace.expect("clap requires it");
    let heap_map = match (a.heap_map, &a.out) {
        (Some(Some(d)), _) => Some(d),
        (Some(None), Some(out)) => Some(out.join(results_schema::heapmap::DIR_NAME)),
        (Some(None), None) => {
            return Err(ReplayError::BadInput(
                "--heap-map without a directory puts the maps under -o OUT (OUT/heapmaps): give -o, or --heap-map=DIR".into(),
            ));
        }
        (None, _) => None,
    };
    let (repeat, until_stable) = match a.repeat {
        Repeat::Count(n) => (n, a.until_stable),
        Repeat::Auto => (1, Some(a.until_stable.unwrap_or(0.05))),
    };
    let opts = SweepOptions {
        allocators,
        repeat,
        until_stable,
        max_repeat: a.max_repeat,
        thp: a.thp,
        threads: a.threads,
        touch: a.touch,
        pace: a.pace,
        order: a.order,
        pin: a.pin,
        latency: !a.no_latency,
        sample_ms: a.sample_ms,
        introspect_ms: a.introspect_ms,
        retained_wait: a.retained_wait,
        timeout: Duration::from_secs_f64(a.timeout),
        sweep: a.sweep,
        out: a.out,
        max_memory: a.max_memory,
        progress: !a.quiet,
        verbose: !a.quiet,
        exe: None,
        heap_map,
        heap_map_ms: a.heap_map_ms,
        ..SweepOptions::new(trace)
    };
    let sweep = Sweep::prepare(opts)?;
    if !a.quiet && !a.json {
        eprint!("{}", replayer::table::render_trace(sweep.trace()));
    }
    let results = sweep.run()?;
    let notes = peak_notes(&results.runs);
    let text = if a.json {
        let doc = serde_json::json!({
            "trace": sweep.trace(),
            "summary": replayer::table::summarize(&results),
            "timer_overhead_ns": results.timer_overhead_ns,
            "runs": results.runs,
            "latency": results.latency,
            "introspection": results.introspection,
            "heap_maps": results.heap_maps,
            "notes": notes,
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    } else {
        let mut t = format!(
            "{}\n{}",
            replayer::table::render_trace(sweep.trace()),
            replayer::table::render(&results)
        );
        for n in &notes {
            t += &format!("note: {n}\n");
        }
        t
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(ReplayError::io("writing to stdout", e));
    }
    if let Some(e) = &results.unwritten {
        // Printed above; nothing partial is left in the directory.
        eprintln!("replay: {e}");
        return Ok(ExitCode::from(1));
    }
    let failed = results.runs.iter().filter(|r| !r.status.is_ok()).count();
    let maps_failed = results
        .heap_maps
        .iter()
        .filter(|h| h.error.is_some())
        .count();
    if failed > 0 {
        eprintln!(
            "replay: {failed} of {} runs did not finish ok (see the table's last lines)",
            results.runs.len()
        );
    }
    if maps_failed > 0 {
        eprintln!(
            "replay: {maps_failed} of {} heap-map passes failed (the lines `… heap map: failed` above say why)",
            results.heap_maps.len()
        );
    }
    if failed + maps_failed > 0 {
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// What the results must say besides the table: runs whose measured peak live bytes exceed the
/// trace's, and replays with more threads alive at once than the trace had.
fn peak_notes(runs: &[replayer::results::RunRow]) -> Vec<String> {
    let mut notes = Vec::new();
    let over: Vec<&replayer::results::RunRow> = runs
        .iter()
        .filter(|r| {
            r.measured_peak_live_bytes
                .is_some_and(|m| m > r.peak_live_bytes)
        })
        .collect();
    if let Some(worst) = over
        .iter()
        .max_by_key(|r| r.measured_peak_live_bytes.unwrap_or(0))
    {
        notes.push(format!(
            "{} of {} runs reached more live bytes than the trace's peak ({}), up to {} ({}): with --order {} threads run ahead of the trace's interleaving (--order strict keeps it)",
            over.len(),
            runs.len(),
            replayer::human::bytes(worst.peak_live_bytes),
            replayer::human::bytes(worst.measured_peak_live_bytes.unwrap_or(0)),
            worst.run_id,
            worst.order
        ));
    }
    if let Some(r) = runs.iter().find(|r| {
        r.peak_replay_threads
            .is_some_and(|p| p > r.trace_peak_threads)
    }) {
        notes.push(format!(
            "{} had {} replay threads alive at once, the trace {} (threads folded with --threads, or without start/exit events, start together)",
            r.run_id,
            r.peak_replay_threads.unwrap_or(0),
            r.trace_peak_threads
        ));
    }
    notes
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Some(lib) = &a.check_preload {
        return match replayer::child::check_preload_serves_malloc(lib) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("replay: {e}");
                ExitCode::from(2)
            }
        };
    }
    if a.child {
        return ExitCode::from(replayer::child::main() as u8);
    }
    if a.list_allocators {
        print!("{}", list());
        return ExitCode::SUCCESS;
    }
    match run(a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("replay: {e}");
            ExitCode::from(if e.is_bad_input() { 2 } else { 1 })
        }
    }
}
