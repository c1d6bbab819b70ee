//! `lab fidelity`: does the replay predict the real program?
//!
//! For each program: record it once with the real recorder; run it for real under each
//! allocator library through `LD_PRELOAD` (glibc: no preload), allocators interleaved
//! (a b c … a b c …), `repeat` times, measuring wall time, minor faults (`wait4`'s `ru_minflt`,
//! which covers the program's reaped child processes too), and the RSS before `main` and the
//! peak RSS (VmHWM at exit) of every process it runs; then replay its trace(s) under the very same library files through the
//! replayer's `preload:` allocators. Per program it writes `fidelity.parquet` (one row per
//! side × allocator × repetition) and `summary.json`, and the whole run a markdown table
//! ([`render`]).
//!
//! Heap RSS, real side: peak RSS (VmHWM at exit) minus the RSS the process had before `main`,
//! read by a tiny preloaded library (`programs/premain_rss.c`, compiled with gcc on first use:
//! a constructor reads `/proc/self/statm`, a destructor VmHWM; `wait4`'s `ru_maxrss` cannot be
//! used, Linux carries the forking parent's high-water mark over `exec` into it). For a program that runs several processes (gcc runs cc1 and as) the
//! largest pre-`main` RSS is taken, since the peak is the largest process's. Library and
//! interpreter pages touched after `main` count as heap: the figure is an upper bound of the
//! heap's RSS. Replay side: the replayer's `peak_heap_rss_bytes` (RSS above the replay child's
//! own baseline).
//!
//! A program that runs several processes has one trace per process; each is replayed, and a
//! repetition's replay time, ops and faults are their sums, its peaks their maximum.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use replayer::adapter::AllocSpec;
use replayer::engine::Touch;
use replayer::plan::Order;
use replayer::sweep::{Sweep, SweepOptions};

use crate::error::{LabError, bad};
use crate::tools::{self, Tools};

/// The pre-`main` RSS probe, compiled on first use.
const PREMAIN_RSS_C: &str = include_str!("../programs/premain_rss.c");

/// An allocator as a library file (`None`: glibc, nothing preloaded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Library {
    /// Its name in the tables.
    pub name: String,
    pub path: Option<PathBuf>,
}

impl Library {
    /// The replayer's allocator for the same library: `system` or `preload:PATH`.
    pub fn spec(&self) -> AllocSpec {
        match &self.path {
            None => AllocSpec::System,
            Some(p) => AllocSpec::Preload(p.clone()),
        }
    }

    /// A library file named after itself: `libjemalloc.so.2` is `jemalloc`.
    pub fn from_path(path: PathBuf) -> Library {
        let file = path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        let stem = file.split('.').next().unwrap_or(&file);
        let name = stem.strip_prefix("lib").unwrap_or(stem);
        let name = match name {
            "tcmalloc_minimal" => "tcmalloc",
            "fancy_preload" => "fancy",
            n => n,
        };
        Library {
            name: name.to_string(),
            path: Some(path),
        }
    }
}

/// Debian's allocator libraries the default comparison uses (package in brackets).
pub const DEBIAN_LIBRARIES: &[(&str, &str)] = &[
    ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "libjemalloc2"),
    (
        "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
        "libmimalloc2.0",
    ),
    (
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "libtcmalloc-minimal4",
    ),
];

/// glibc, Debian's jemalloc, mimalloc and tcmalloc, and our libfancy_preload.so; a missing one is
/// an error saying what to install or build.
pub fn default_libraries(tools: &Tools) -> Result<Vec<Library>, LabError> {
    let mut v = vec![Library {
        name: "glibc".into(),
        path: None,
    }];
    for (p, pkg) in DEBIAN_LIBRARIES {
        if !Path::new(p).is_file() {
            return Err(bad(format!(
                "{p} is missing: `apt-get install {pkg}`, or choose the allocators with --alloc"
            )));
        }
        v.push(Library::from_path(PathBuf::from(p)));
    }
    let fancy = std::fs::canonicalize(tools.fancy_lib()?).map_err(LabError::io(format!(
        "resolving {}",
        tools.fancy_lib.display()
    )))?;
    v.push(Library::from_path(fancy));
    Ok(v)
}

/// `--alloc system,preload:PATH,…` as libraries (the real side can only preload libraries).
/// Each entry is parsed as the replayer's `--alloc` is ([`AllocSpec::parse`]); `glibc` is
/// accepted for `system`.
pub fn parse_libraries(s: &str) -> Result<Vec<Library>, LabError> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let spec = if part == "glibc" {
            Ok(AllocSpec::System)
        } else {
            AllocSpec::parse(part)
        };
        match spec {
            Ok(AllocSpec::System) => v.push(Library {
                name: "glibc".into(),
                path: None,
            }),
            Ok(AllocSpec::Preload(p)) if p.as_os_str().is_empty() => {
                return Err(bad("--alloc: preload: needs a library path, as in \
                     preload:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"));
            }
            Ok(AllocSpec::Preload(p)) => {
                if !p.is_file() {
                    return Err(bad(format!("--alloc: {} is not a file", p.display())));
                }
                v.push(Library::from_path(p));
            }
            _ => {
                return Err(bad(format!(
                    "--alloc: '{part}': fidelity compares libraries, give `system` or `preload:PATH`"
                )));
            }
        }
    }
    if v.is_empty() {
        return Err(bad("--alloc: no allocator given"));
    }
    Ok(v)
}

/// A real program to compare.
#[derive(Clone, Debug)]
pub struct Program {
    /// Its name in the tables and the output directory.
    pub name: String,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory (default: the lab's).
    pub cwd: Option<PathBuf>,
}

/// Everything `lab fidelity` is asked to do.
#[derive(Clone, Debug)]
pub struct FidelityOptions {
    pub programs: Vec<Program>,
    pub libraries: Vec<Library>,
    /// Repetitions per side and allocator (at least 5).
    pub repeat: u32,
    pub out: PathBuf,
    pub tools: Tools,
    /// Per real run and per replay child.
    pub timeout: Duration,
    /// One line per step on stderr.
    pub verbose: bool,
    /// The replay side's touch policy and interleaving (`replay --touch`, `--order`): what
    /// fidelity compares, so that the defaults can be chosen by what predicts best.
    pub touch: Touch,
    pub order: Order,
}

/// One measured run, real or replayed: a row of `fidelity.parquet`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub program: String,
    pub allocator: String,
    /// `real` or `replay`.
    pub side: String,
    pub repetition: u32,
    /// `ok`, or the replayer's status of a run that did not finish ok.
    pub status: String,
    pub wall_s: f64,
    pub peak_rss_bytes: Option<u64>,
    /// Real: RSS before `main`; replay: the child's RSS before the replay.
    pub baseline_rss_bytes: Option<u64>,
    pub heap_rss_bytes: Option<u64>,
    pub minflt: Option<u64>,
    /// Replay: ops replayed and verified; real: the trace's ops (from inspect).
    pub ops: u64,
    /// Replay: as the replayer reports it; real: the trace's (from inspect).
    pub peak_live_bytes: u64,
}

pub use results_schema::fidelity::{AllocSummary, ProgramSummary};

/// Kendall's τ-b of two equally long samples (`None` when either is constant or they are
/// shorter than 2).
pub fn kendall_tau(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len());
    let (mut c, mut d, mut tx, mut ty) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let a = (x[i] - x[j]).partial_cmp(&0.0)? as i32;
            let b = (y[i] - y[j]).partial_cmp(&0.0)? as i32;
            match (a, b) {
                (0, 0) => {}
                (0, _) => tx += 1.0,
                (_, 0) => ty += 1.0,
                _ if a == b => c += 1.0,
                _ => d += 1.0,
            }
        }
    }
    let den = ((c + d + tx) * (c + d + ty)).sqrt();
    (den > 0.0).then(|| (c - d) / den)
}

/// The median (`NaN` for none).
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    results_schema::summary::median(&mut v).unwrap_or(f64::NAN)
}

/// What one real run measured.
struct Real {
    wall_s: f64,
    peak_rss: u64,
    baseline: Option<u64>,
    minflt: u64,
}

/// Compiles the RSS probe into `dir` (a fraction of a second, so every time: never stale).
fn premain_lib(dir: &Path) -> Result<PathBuf, LabError> {
    let lib = dir.join("libpremain_rss.so");
    std::fs::create_dir_all(dir).map_err(LabError::io(format!("creating {}", dir.display())))?;
    let src = dir.join("premain_rss.c");
    std::fs::write(&src, PREMAIN_RSS_C)
        .map_err(LabError::io(format!("writing {}", src.display())))?;
    gcc(&["-O2", "-shared", "-fPIC"], &src, &lib)?;
    Ok(lib)
}

/// `gcc FLAGS -o out src`, an error naming gcc's complaint.
pub fn gcc(flags: &[&str], src: &Path, out: &Path) -> Result<(), LabError> {
    let tmp = out.with_extension("tmp");
    let o = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&tmp)
        .arg(src)
        .output()
        .map_err(|e| {
            bad(format!(
                "cannot run gcc ({e}): `apt-get install gcc` (the lab compiles {} with it)",
                src.display()
            ))
        })?;
    if !o.status.success() {
        return Err(bad(format!(
            "gcc failed on {}: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    std::fs::rename(&tmp, out).map_err(LabError::io(format!("writing {}", out.display())))
}

/// Runs `p` once for real with `lib` preloaded (and the probe), waits with `wait4`.
fn real_run(
    p: &Program,
    lib: &Library,
    premain: &Path,
    scratch: &Path,
    timeout: Duration,
) -> Result<Real, LabError> {
    let rss_file = scratch.join("premain_rss.txt");
    let err_file = scratch.join("stderr.txt");
    let _ = std::fs::remove_file(&rss_file);
    let err = File::create(&err_file)
        .map_err(LabError::io(format!("creating {}", err_file.display())))?;
    let preload = match &lib.path {
        Some(l) => format!("{} {}", l.display(), premain.display()),
        None => premain.display().to_string(),
    };
    let mut c = Command::new(&p.cmd[0]);
    c.args(&p.cmd[1..])
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .env("LD_PRELOAD", &preload)
        .env("ALLOCLAB_PREMAIN_RSS", &rss_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err));
    if let Some(d) = &p.cwd {
        c.current_dir(d);
    }
    let command = p.cmd.join(" ");
    let start = Instant::now();
    let child = c
        .spawn()
        .map_err(LabError::io(format!("running `{command}`")))?;
    let pid = child.id() as libc::pid_t;
    // A watchdog kills a program that runs past the timeout.
    let done = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let dog = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let (m, cv) = &*done;
            let g = m.lock().unwrap_or_else(|e| e.into_inner());
            let (g, t) = cv
                .wait_timeout_while(g, timeout, |d| !*d)
                .unwrap_or_else(|e| e.into_inner());
            if t.timed_out() && !*g {
                // SAFETY: kill has no memory preconditions; the pid is our unreaped child
                // (reaping waits for this thread's verdict below), so it names no other process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return true;
            }
            false
        })
    };
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid pointers to a status and a rusage.
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall_s = start.elapsed().as_secs_f64();
    {
        let (m, cv) = &*done;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
    let killed = dog.join().unwrap_or(false);
    drop(child);
    if r < 0 {
        return Err(LabError::io(format!("waiting for `{command}`"))(
            std::io::Error::last_os_error(),
        ));
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let how = if killed {
            format!("killed after the {:.0} s timeout", timeout.as_secs_f64())
        } else if libc::WIFEXITED(status) {
            format!("exit code {}", libc::WEXITSTATUS(status))
        } else {
            format!("signal {}", libc::WTERMSIG(status))
        };
        let text = std::fs::read_to_string(&err_file).unwrap_or_default();
        let tail: Vec<&str> = text.trim().lines().rev().take(3).collect();
        return Err(LabError::RealRun {
            command,
            allocator: lib.name.clone(),
            status: how,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }
    // "<pid> pre|hwm <bytes>" lines, one or two per process.
    let text = std::fs::read_to_string(&rss_file).unwrap_or_default();
    let max_of = |tag: &str| {
        text.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace().skip(1);
                (f.next()? == tag).then_some(())?;
                f.next()?.parse::<u64>().ok()
            })
            .max()
    };
    let baseline = max_of("pre");
    // ru_maxrss carries the forking parent's high-water mark over exec: only a fallback.
    let peak_rss = max_of("hwm").unwrap_or(ru.ru_maxrss as u64 * 1024);
    Ok(Real {
        wall_s,
        peak_rss,
        baseline,
        minflt: ru.ru_minflt as u64,
    })
}

/// Ops, events and peak live bytes of the trace files, by inspect's rules.
fn inspect(files: &[PathBuf]) -> Result<(u64, u64, u64), LabError> {
    let (mut ops, mut events, mut peak) = (0, 0, 0);
    for f in files {
        let mut r = traces::MergedReader::open(f).map_err(replayer::ReplayError::from)?;
        let mut insp = traces::inspect::Inspector::new();
        while let Some(rec) = r.next_record().map_err(replayer::ReplayError::from)? {
            insp.feed(&rec);
        }
        let rep = insp.report();
        ops += rep.ops;
        events += rep.events;
        peak = peak.max(rep.peak_live_bytes);
    }
    Ok((ops, events, peak))
}

fn say(verbose: bool, s: impl std::fmt::Display) {
    if verbose {
        eprintln!("fidelity: {s}");
    }
}

/// Runs fidelity over every program; returns one summary per program (also written beside
/// the Parquet tables) and writes `<out>/fidelity.md`.
pub fn run(opts: &FidelityOptions) -> Result<Vec<ProgramSummary>, LabError> {
    if opts.repeat < 5 {
        return Err(bad(
            "--repeat must be at least 5 (medians of fewer real runs do not hold still)",
        ));
    }
    if opts.libraries.is_empty() {
        return Err(bad("no allocator to compare"));
    }
    let replay = opts.tools.replay()?.to_path_buf();
    opts.tools.record()?;
    for l in &opts.libraries {
        l.spec().check_available()?;
    }
    std::fs::create_dir_all(&opts.out)
        .map_err(LabError::io(format!("creating {}", opts.out.display())))?;
    let out = std::fs::canonicalize(&opts.out)
        .map_err(LabError::io(format!("resolving {}", opts.out.display())))?;
    let premain = premain_lib(&out.join("probe"))?;
    let mut summaries = Vec::new();
    for p in &opts.programs {
        if p.cmd.is_empty() {
            return Err(bad(format!("{}: no command", p.name)));
        }
        let dir = out.join(&p.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(LabError::io(format!("creating {}", dir.display())))?;
        let command = p.cmd.join(" ");

        // 1. Record once.
        let trace = dir.join(format!("{}.trace.zst", p.name));
        let rec = tools::record(&opts.tools, &p.cmd, &p.env, p.cwd.as_deref(), &trace)?;
        say(
            opts.verbose,
            format!("{}: recorded {}", p.name, rec.summary()),
        );
        let files = rec.files;
        let (trace_ops, trace_events, trace_peak) = inspect(&files)?;

        // 2. Real runs, interleaved.
        let mut rows = Vec::new();
        for rep in 0..opts.repeat {
            for lib in &opts.libraries {
                let r = real_run(p, lib, &premain, &dir, opts.timeout)?;
                rows.push(Row {
                    program: p.name.clone(),
                    allocator: lib.name.clone(),
                    side: "real".into(),
                    repetition: rep,
                    status: "ok".into(),
                    wall_s: r.wall_s,
                    peak_rss_bytes: Some(r.peak_rss),
                    baseline_rss_bytes: r.baseline,
                    heap_rss_bytes: r.baseline.map(|b| r.peak_rss.saturating_sub(b)),
                    minflt: Some(r.minflt),
                    ops: trace_ops,
                    peak_live_bytes: trace_peak,
                });
            }
        }
        say(
            opts.verbose,
            format!("{}: {} real runs", p.name, rows.len()),
        );

        // 3. Replays of every trace file, same libraries.
        // (allocator, repetition) -> the replay row summed over the trace files.
        let mut rep_rows: BTreeMap<(usize, u32), Row> = BTreeMap::new();
        for (fi, f) in files.iter().enumerate() {
            let sweep = Sweep::prepare(SweepOptions {
                allocators: opts.libraries.iter().map(Library::spec).collect(),
                repeat: opts.repeat,
                latency: false,
                retained_wait: 0.0,
                timeout: opts.timeout,
                sweep: Some(format!("fidelity-{}", p.name)),
                out: Some(dir.join(format!("replay-{fi}"))),
                progress: false,
                verbose: false,
                exe: Some(replay.clone()),
                touch: opts.touch,
                order: opts.order,
                ..SweepOptions::new(f)
            })?;
            let results = sweep.run()?;
            for r in &results.runs {
                let Some(ai) = opts
                    .libraries
                    .iter()
                    .position(|l| l.spec().name() == r.allocator)
                else {
                    continue;
                };
                let e = rep_rows.entry((ai, r.repetition)).or_insert_with(|| Row {
                    program: p.name.clone(),
                    allocator: opts.libraries[ai].name.clone(),
                    side: "replay".into(),
                    repetition: r.repetition,
                    status: "ok".into(),
                    wall_s: 0.0,
                    peak_rss_bytes: Some(0),
                    baseline_rss_bytes: Some(0),
                    heap_rss_bytes: Some(0),
                    minflt: Some(0),
                    ops: 0,
                    peak_live_bytes: 0,
                });
                if !r.status.is_ok() {
                    e.status = r.status.name().to_string();
                }
                e.wall_s += r.wall_ns.unwrap_or(0) as f64 / 1e9;
                e.ops += r.ops;
                e.peak_live_bytes = e.peak_live_bytes.max(r.peak_live_bytes);
                let max = |a: Option<u64>, b: Option<u64>| match (a, b) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                e.peak_rss_bytes = max(e.peak_rss_bytes, r.peak_rss_bytes);
                e.baseline_rss_bytes = max(e.baseline_rss_bytes, r.baseline_rss_bytes);
                e.heap_rss_bytes = max(e.heap_rss_bytes, r.peak_heap_rss_bytes);
                e.minflt = match (e.minflt, r.minor_faults) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
            }
        }
        rows.extend(rep_rows.into_values());
        say(opts.verbose, format!("{}: replayed", p.name));

        let s = summarise(
            p,
            &command,
            opts,
            &rows,
            files.len(),
            trace_events,
            trace_ops,
            trace_peak,
        );
        write_parquet(&dir.join("fidelity.parquet"), &rows)?;
        let json = dir.join("summary.json");
        std::fs::write(&json, serde_json::to_string_pretty(&s).expect("plain data"))
            .map_err(LabError::io(format!("writing {}", json.display())))?;
        summaries.push(s);
    }
    // By program name, the order `analyze --fidelity` reads the program directories in, so
    // both write the same fidelity.md.
    summaries.sort_by(|a, b| a.program.cmp(&b.program));
    let md = out.join("fidelity.md");
    std::fs::write(&md, render(&summaries))
        .map_err(LabError::io(format!("writing {}", md.display())))?;
    Ok(summaries)
}

#[allow(clippy::too_many_arguments)]
fn summarise(
    p: &Program,
    command: &str,
    opts: &FidelityOptions,
    rows: &[Row],
    trace_files: usize,
    trace_events: u64,
    trace_ops: u64,
    trace_peak: u64,
) -> ProgramSummary {
    let pick = |alloc: &str, side: &str, f: &dyn Fn(&Row) -> Option<f64>| {
        let v: Vec<f64> = rows
            .iter()
            .filter(|r| r.allocator == alloc && r.side == side && r.status == "ok")
            .filter_map(f)
            .collect();
        median(&v)
    };
    let mut allocs = Vec::new();
    for l in &opts.libraries {
        let a = l.name.as_str();
        let replay_ok: Vec<&Row> = rows
            .iter()
            .filter(|r| r.allocator == a && r.side == "replay")
            .collect();
        let failed = replay_ok.iter().filter(|r| r.status != "ok").count() as u32;
        let mut ops: Vec<u64> = replay_ok
            .iter()
            .filter(|r| r.status == "ok")
            .map(|r| r.ops)
            .collect();
        ops.dedup();
        allocs.push(AllocSummary {
            allocator: a.to_string(),
            real_wall_s: pick(a, "real", &|r| Some(r.wall_s)),
            replay_wall_s: pick(a, "replay", &|r| Some(r.wall_s)),
            real_heap_rss_bytes: pick(a, "real", &|r| r.heap_rss_bytes.map(|x| x as f64)),
            replay_heap_rss_bytes: pick(a, "replay", &|r| r.heap_rss_bytes.map(|x| x as f64)),
            real_minflt: pick(a, "real", &|r| r.minflt.map(|x| x as f64)),
            replay_minflt: pick(a, "replay", &|r| r.minflt.map(|x| x as f64)),
            real_saving_s: 0.0,
            predicted_saving_s: 0.0,
            replay_failed: failed,
            replay_ops: (ops.len() == 1).then(|| ops[0]),
            replay_peak_live_bytes: replay_ok
                .iter()
                .map(|r| r.peak_live_bytes)
                .max()
                .unwrap_or(0),
        });
    }
    let (g_real, g_replay) = (allocs[0].real_wall_s, allocs[0].replay_wall_s);
    for a in &mut allocs {
        a.real_saving_s = g_real - a.real_wall_s;
        a.predicted_saving_s = g_replay - a.replay_wall_s;
    }
    let col = |f: fn(&AllocSummary) -> f64| allocs.iter().map(f).collect::<Vec<f64>>();
    let tau_time = kendall_tau(&col(|a| a.real_wall_s), &col(|a| a.replay_wall_s));
    // Pairs the real runs tell apart: medians further apart than 3× the larger of the two
    // allocators' spreads (half their min–max range); and how many the replay orders alike.
    let spread = |alloc: &str| {
        let v: Vec<f64> = rows
            .iter()
            .filter(|r| r.allocator == alloc && r.side == "real" && r.status == "ok")
            .map(|r| r.wall_s)
            .collect();
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        (hi - lo) / 2.0
    };
    let spreads: Vec<f64> = allocs.iter().map(|a| spread(&a.allocator)).collect();
    let (mut separated_pairs, mut separated_pairs_ordered) = (0u32, 0u32);
    for i in 0..allocs.len() {
        for j in i + 1..allocs.len() {
            let (a, b) = (&allocs[i], &allocs[j]);
            let gap = a.real_wall_s - b.real_wall_s;
            if gap.abs() > 3.0 * spreads[i].max(spreads[j]) {
                separated_pairs += 1;
                let predicted = a.replay_wall_s - b.replay_wall_s;
                if predicted != 0.0 && predicted.signum() == gap.signum() {
                    separated_pairs_ordered += 1;
                }
            }
        }
    }
    let tau_heap_rss = kendall_tau(
        &col(|a| a.real_heap_rss_bytes),
        &col(|a| a.replay_heap_rss_bytes),
    );
    ProgramSummary {
        program: p.name.clone(),
        command: command.to_string(),
        repeat: opts.repeat,
        trace_files,
        trace_events,
        trace_ops,
        trace_peak_live_bytes: trace_peak,
        tau_time,
        tau_heap_rss,
        events_per_real_s: trace_events as f64 / g_real,
        replay_fraction: g_replay / g_real,
        allocators: allocs,
        separated_pairs,
        separated_pairs_ordered,
        replay_touch: opts.touch.name().to_string(),
        replay_order: opts.order.name(),
    }
}

/// The markdown tables (`fidelity.md`): the content is results-schema's (`analyze` puts the
/// same tables in its report).
pub fn render(s: &[ProgramSummary]) -> String {
    results_schema::fidelity::markdown(s)
}

/// Writes `rows` as `fidelity.parquet`.
fn write_parquet(path: &Path, rows: &[Row]) -> Result<(), LabError> {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
    use arrow_schema::{DataType, Field, Schema};
    let s = |f: fn(&Row) -> &str| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let u = |f: fn(&Row) -> Option<u64>| -> ArrayRef {
        Arc::new(UInt64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let schema = Schema::new(vec![
        Field::new("program", DataType::Utf8, false),
        Field::new("allocator", DataType::Utf8, false),
        Field::new("side", DataType::Utf8, false),
        Field::new("repetition", DataType::UInt32, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("wall_s", DataType::Float64, false),
        Field::new("peak_rss_bytes", DataType::UInt64, true),
        Field::new("baseline_rss_bytes", DataType::UInt64, true),
        Field::new("heap_rss_bytes", DataType::UInt64, true),
        Field::new("minflt", DataType::UInt64, true),
        Field::new("ops", DataType::UInt64, false),
        Field::new("peak_live_bytes", DataType::UInt64, false),
    ]);
    let cols: Vec<ArrayRef> = vec![
        s(|r| &r.program),
        s(|r| &r.allocator),
        s(|r| &r.side),
        Arc::new(UInt32Array::from(
            rows.iter().map(|r| r.repetition).collect::<Vec<_>>(),
        )),
        s(|r| &r.status),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.wall_s).collect::<Vec<_>>(),
        )),
        u(|r| r.peak_rss_bytes),
        u(|r| r.baseline_rss_bytes),
        u(|r| r.heap_rss_bytes),
        u(|r| r.minflt),
        u(|r| Some(r.ops)),
        u(|r| Some(r.peak_live_bytes)),
    ];
    let pq = |e: parquet::errors::ParquetError| {
        LabError::io(format!("writing {}", path.display()))(std::io::Error::other(e))
    };
    let batch = RecordBatch::try_new(Arc::new(schema), cols)
        .map_err(|e| pq(parquet::errors::ParquetError::External(Box::new(e))))?;
    let f = File::create(path).map_err(LabError::io(format!("creating {}", path.display())))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(
            parquet::basic::ZstdLevel::try_new(3).map_err(pq)?,
        ))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).map_err(pq)?;
    w.write(&batch).map_err(pq)?;
    w.close().map_err(pq)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kendall_tau_b_of_known_rankings() {
        assert_eq!(kendall_tau(&[1., 2., 3.], &[10., 20., 30.]), Some(1.0));
        assert_eq!(kendall_tau(&[1., 2., 3.], &[30., 20., 10.]), Some(-1.0));
        // One discordant pair of 3: (2 - 1) / 3.
        let t = kendall_tau(&[1., 2., 3.], &[1., 3., 2.]).unwrap();
        assert!((t - 1.0 / 3.0).abs() < 1e-12);
        // Ties: x = (1, 1, 2), y = (1, 2, 3): C = 2, D = 0, ties in x 1: 2 / sqrt(2 * 3).
        let t = kendall_tau(&[1., 1., 2.], &[1., 2., 3.]).unwrap();
        assert!((t - 2.0 / 6f64.sqrt()).abs() < 1e-12);
        assert_eq!(kendall_tau(&[1., 1.], &[1., 2.]), None);
        assert_eq!(kendall_tau(&[1.], &[1.]), None);
    }

    #[test]
    fn library_names_come_from_their_files() {
        let n = |p: &str| Library::from_path(PathBuf::from(p)).name;
        assert_eq!(n("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"), "jemalloc");
        assert_eq!(
            n("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"),
            "tcmalloc"
        );
        assert_eq!(n("/x/libfancy_preload.so"), "fancy");
        assert_eq!(median(&[3., 1., 2.]), 2.0);
        assert_eq!(median(&[4., 1., 2., 3.]), 2.5);
    }

    #[test]
    fn alloc_entries_are_parsed_as_the_replayer_parses_them() {
        // glibc's own library: a real file on every machine this runs on.
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        let v = parse_libraries(&format!(" system, glibc ,preload:{libc},")).unwrap();
        let names: Vec<_> = v.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["glibc", "glibc", "c"]);
        assert_eq!(v[0].path, None);
        assert_eq!(v[2].path.as_deref(), Some(Path::new(libc)));
        assert_eq!(v[2].spec(), AllocSpec::Preload(PathBuf::from(libc)));
        let err = |s: &str| parse_libraries(s).unwrap_err().to_string();
        // A replayer allocator that is no library, and a name nobody knows.
        for s in ["jemalloc", "fancy", "nonsense"] {
            let e = err(&format!("system,{s}"));
            assert!(
                e.contains(&format!("'{s}': fidelity compares libraries")),
                "{e}"
            );
        }
        let e = err("preload:/nonexistent/libx.so");
        assert_eq!(e, "--alloc: /nonexistent/libx.so is not a file");
        assert!(
            err("preload:").contains("needs a library path"),
            "{}",
            err("preload:")
        );
        assert_eq!(err(" , "), "--alloc: no allocator given");
    }
}
