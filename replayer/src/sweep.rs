//! A sweep: one trace, preprocessed once, replayed by every allocator × repetition in child
//! processes of their own, interleaved (a b c a b c …) so that drift of a shared machine hits
//! every allocator alike (docs/DESIGN.md, contract 6).
//!
//! Each run is one untimed pass (throughput, RSS over time, memory figures) and, unless
//! latency is turned off, one timed pass (every call timed), each in a fresh child: the
//! allocator starts cold in both, and the timing code never touches the memory figures. A
//! child that crashes, fails or runs past the timeout is recorded as such; the sweep goes on,
//! and with `--out` the Parquet files are rewritten after every run, so an interrupted sweep
//! keeps what it measured.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::adapter::{AllocSpec, options_in_env};
use crate::child::{ChildReply, ChildRequest};
use crate::engine::{PassOptions, Thp, Touch};
use crate::env::{Environment, build_info};
use crate::error::ReplayError;
use crate::mem::Mapping;
use crate::plan::{Order, PlanMeta};
use crate::prep::{PrepOptions, preprocess};
use crate::results::{Outcome, Results, RunRow, Status, SweepInfo, TraceInfo, Workload};

/// Everything a sweep is asked to do.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// The trace.
    pub trace: PathBuf,
    /// Allocators, in the order results are reported (ratios are to the first).
    pub allocators: Vec<AllocSpec>,
    /// Repetitions of each allocator (with `until_stable`: at least these).
    pub repeat: u32,
    /// Repeat each allocator until the 95 % confidence interval of its median ops/s lies
    /// within ± this fraction of the median (or `max_repeat` is reached).
    pub until_stable: Option<f64>,
    /// The cap of repetitions with `until_stable`.
    pub max_repeat: u32,
    /// Transparent huge pages in the children.
    pub thp: Thp,
    /// Replay threads to fold the traced threads onto (`None`: one per traced thread).
    pub threads: Option<u32>,
    pub touch: Touch,
    /// Honour the trace's timing.
    pub pace: bool,
    /// How the trace's interleaving is kept (`--order`).
    pub order: Order,
    /// Pin replay threads to CPUs.
    pub pin: bool,
    /// Run the timed (latency) pass too.
    pub latency: bool,
    /// Sampler period, ms.
    pub sample_ms: u64,
    /// Period of the allocator's own statistics, ms (0: none).
    pub introspect_ms: u64,
    /// Seconds to keep reading retained RSS after the last op (0.1, 1 and 5 s points that fit).
    pub retained_wait: f64,
    /// Per child.
    pub timeout: Duration,
    /// Sweep name in the results (default: the output directory's name, else `replay`).
    pub sweep: Option<String>,
    /// Where the Parquet files go.
    pub out: Option<PathBuf>,
    /// Memory the replay may use, bytes (default: what the machine has available).
    pub max_memory: Option<u64>,
    /// Progress bars on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// One line per run on stderr.
    pub verbose: bool,
    /// The `replay` executable children run (default: this process's own).
    pub exe: Option<PathBuf>,
    /// Write the heap maps of one more, untimed pass per allocator into this directory
    /// ([`crate::addrmap`], `results_schema::heapmap`).
    pub heap_map: Option<PathBuf>,
    /// Period of the heap-map pass's mapping snapshots, ms.
    pub heap_map_ms: u64,
}

impl SweepOptions {
    /// Defaults: `system` once, latency on, touch pages, 10 ms samples, 1 s retained wait,
    /// 10 min timeout.
    pub fn new(trace: impl Into<PathBuf>) -> SweepOptions {
        SweepOptions {
            trace: trace.into(),
            allocators: vec![AllocSpec::System],
            repeat: 1,
            until_stable: None,
            max_repeat: 20,
            thp: Thp::System,
            threads: None,
            touch: Touch::Pages,
            pace: false,
            order: Order::Deps,
            pin: false,
            latency: true,
            sample_ms: 10,
            introspect_ms: crate::engine::DEFAULT_INTROSPECT_MS,
            retained_wait: 1.0,
            timeout: Duration::from_secs(600),
            sweep: None,
            out: None,
            max_memory: None,
            progress: true,
            verbose: true,
            exe: None,
            heap_map: None,
            heap_map_ms: DEFAULT_HEAP_MAP_MS,
        }
    }
}

/// The default period of the heap-map pass's mapping snapshots, ms.
pub const DEFAULT_HEAP_MAP_MS: u64 = 2;

/// Bytes the heap-map pass logs per op ([`crate::addrmap::OpRec`]).
const HEAP_MAP_BYTES_PER_OP: u64 = std::mem::size_of::<crate::addrmap::OpRec>() as u64;

/// A trace preprocessed and ready to replay.
pub struct Sweep {
    opts: SweepOptions,
    trace: TraceInfo,
    info: SweepInfo,
    plan_fd: OwnedFd,
    exe: PathBuf,
    /// The touch policy the passes use (`--touch recorded` without samples: `pages`), and its
    /// fraction for `recorded`.
    touch: Touch,
    touch_fraction: f64,
}

/// The trace's short name: its file name without `.zst` and `.trace`.
pub fn trace_name(path: &Path) -> String {
    let f = path
        .file_name()
        .map_or_else(|| "trace".to_string(), |f| f.to_string_lossy().into_owned());
    let f = f.strip_suffix(".zst").unwrap_or(&f);
    let f = f.strip_suffix(".trace").unwrap_or(f);
    f.to_string()
}

/// The workload of a synthetic trace (`synth.workload`), else the program it recorded.
pub fn workload_of(h: &traces::Header) -> Workload {
    if let Some(w) = h.extra("synth.workload") {
        return Workload::Synthetic(w.to_string());
    }
    let prog = h
        .command_line
        .first()
        .map(|c| c.rsplit('/').next().unwrap_or(c).to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    Workload::Recorded(prog)
}

/// The parameters that made a trace (`trace_params`): a synthetic trace's `synth.*` header
/// entries as `key=value` (without the prefix), space separated, in header order; empty for a
/// recorded trace (its program is in the workload, its identity in the hash).
pub fn params_of(h: &traces::Header) -> String {
    h.extra
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("synth.")?, v)))
        .map(|(k, v)| format!("{k}={}", v.replace(char::is_whitespace, "_")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `trace_hash`: XXH64 of the file's bytes, as hex (results-schema's definition).
pub use results_schema::trace_hash_of_file as hash_file;

fn bar(progress: bool, len: u64, template: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    b.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

/// A progress page: a one-page memfd a child's sampler writes its ops done into.
fn progress_page() -> std::io::Result<(OwnedFd, Mapping)> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a static name; the descriptor is owned below. No CLOEXEC: the
    // child inherits it.
    let fd = unsafe { libc::memfd_create(c"alloclab-progress".as_ptr(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    std::fs::File::from(owned.try_clone()?).set_len(4096)?;
    let m = Mapping::file_rw(owned.as_raw_fd(), 4096)?;
    Ok((owned, m))
}

fn signal_name(sig: i32) -> String {
    // SAFETY: strsignal returns a static (or thread-local) NUL-terminated string.
    let s = unsafe { libc::strsignal(sig) };
    if s.is_null() {
        return format!("signal {sig}");
    }
    // SAFETY: as above.
    let name = unsafe { std::ffi::CStr::from_ptr(s) }.to_string_lossy();
    format!("signal {sig} ({name})")
}

/// Keeps the last few lines a child wrote on stderr.
fn tail(lines: &[String]) -> String {
    let t: Vec<&str> = lines.iter().rev().take(3).map(String::as_str).collect();
    t.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The touch policy to replay with, its fraction, and its name in the results:
/// `recorded` becomes `recorded(F)` with the fraction the trace's RSS samples give (see
/// [`crate::touch`]), or `pages` — said on stderr and in the name — when the trace has none.
fn resolve_touch(opts: &SweepOptions) -> Result<(Touch, f64, String), ReplayError> {
    if opts.touch != Touch::Recorded {
        return Ok((opts.touch, 1.0, opts.touch.name().to_string()));
    }
    match crate::touch::estimate(&opts.trace)? {
        Some(e) => {
            if opts.verbose {
                eprintln!(
                    "replay: touch recorded: the program's RSS rose {} above its start; with {} \
                     live in blocks under a page at its peak live, it made {:.1} % of its {} in \
                     larger blocks resident: each large block gets that fraction of its pages \
                     touched",
                    crate::human::bytes(e.rss.heap_peak_bytes()),
                    crate::human::bytes(e.small_live_at_peak),
                    e.fraction * 100.0,
                    crate::human::bytes(e.large_live_at_peak),
                );
            }
            Ok((
                Touch::Recorded,
                e.fraction,
                format!("recorded({:.4})", e.fraction),
            ))
        }
        None => {
            eprintln!(
                "replay: note: {}: --touch recorded needs the RSS samples of a recorded trace \
                 (format 1.1); this trace has none, so every page of every block is touched \
                 (--touch pages)",
                opts.trace.display()
            );
            Ok((Touch::Pages, 1.0, "pages (recorded: no RSS samples)".into()))
        }
    }
}

impl Sweep {
    /// Checks the allocators, reads and preprocesses the trace, and checks that its replay fits
    /// in memory.
    pub fn prepare(opts: SweepOptions) -> Result<Sweep, ReplayError> {
        if opts.allocators.is_empty() {
            return Err(ReplayError::BadInput("no allocator given (--alloc)".into()));
        }
        if opts.repeat == 0 {
            return Err(ReplayError::BadInput("--repeat must be at least 1".into()));
        }
        if let Some(t) = opts.until_stable
            && !(t > 0.0 && t < 1.0)
        {
            return Err(ReplayError::BadInput(
                "--until-stable must be a percentage above 0 and below 100, as 5%".into(),
            ));
        }
        if opts.until_stable.is_some() && opts.max_repeat < opts.repeat.max(2) {
            return Err(ReplayError::BadInput(format!(
                "--max-repeat {} must be at least --repeat and 2 (a median's interval needs runs to compare)",
                opts.max_repeat
            )));
        }
        check_thp(opts.thp)?;
        if opts.threads == Some(0) {
            return Err(ReplayError::BadInput("--threads must be at least 1".into()));
        }
        if opts.timeout.is_zero() {
            return Err(ReplayError::BadInput(
                "--timeout must be more than 0 seconds (every run would be killed at once)".into(),
            ));
        }
        if let Some(dir) = &opts.out {
            check_writable_dir("-o", dir)?;
        }
        if let Some(dir) = &opts.heap_map {
            check_writable_dir("--heap-map", dir)?;
        }
        for a in &opts.allocators {
            a.check_available()?;
        }
        let exe = match &opts.exe {
            Some(e) => e.clone(),
            None => std::env::current_exe()
                .map_err(|e| ReplayError::io("finding the replay executable", e))?,
        };
        for a in &opts.allocators {
            if let AllocSpec::Preload(lib) = a {
                check_preload(&exe, a, lib)?;
            }
        }
        let available = opts.max_memory.or_else(crate::env::mem_available);
        let path = opts.trace.display().to_string();
        let reader = traces::MergedReader::open(&opts.trace)?;
        for w in reader.warnings() {
            eprintln!("replay: warning: {}", w.describe(&path));
        }
        let header = reader.header().clone();
        let total = reader.total_events();
        let pb = bar(
            opts.progress,
            total,
            "preprocessing {bar:30} {percent:>3}% {human_pos}/{human_len} events, ETA {eta}",
        );
        let mut plan = preprocess(
            reader,
            &PrepOptions {
                threads: opts.threads,
                pace: opts.pace,
                max_memory: available,
                order: opts.order,
            },
            &mut |n| pb.set_position(n),
        )?;
        pb.finish_and_clear();
        if plan.meta.total_ops() == 0 {
            return Err(ReplayError::BadInput(format!(
                "{path}: the trace holds no allocator call to replay"
            )));
        }
        if let Some(avail) = available {
            // The replay child needs the plan mapped, the slot table and the trace's peak live
            // bytes (touched, unless --touch none) at once.
            let need = plan.meta.state_bytes()
                + if opts.touch == Touch::None {
                    0
                } else {
                    plan.meta.peak_live_bytes
                };
            if need > avail {
                return Err(ReplayError::TooBig {
                    what: format!(
                        "{path}: replaying needs the trace's peak live bytes ({}) plus the replay state ({})",
                        crate::human::bytes(plan.meta.peak_live_bytes),
                        crate::human::bytes(plan.meta.state_bytes())
                    ),
                    needed: need,
                    available: avail,
                });
            }
            // The heap-map pass also holds its op logs (and the snapshot buffers).
            let logs = plan.meta.total_ops() * HEAP_MAP_BYTES_PER_OP + (64 << 20);
            if opts.heap_map.is_some() && need + logs > avail {
                return Err(ReplayError::TooBig {
                    what: format!(
                        "{path}: --heap-map logs {HEAP_MAP_BYTES_PER_OP} B per op ({} for its {} ops) besides the replay's {}; leave --heap-map out or cut the trace",
                        crate::human::bytes(logs),
                        plan.meta.total_ops(),
                        crate::human::bytes(need)
                    ),
                    needed: need + logs,
                    available: avail,
                });
            }
        }
        let (touch, touch_fraction, touch_name) = resolve_touch(&opts)?;
        let plan_fd = plan
            .write_memfd()
            .map_err(|e| ReplayError::io("writing the replay plan into a memfd", e))?;
        let sweep = opts.sweep.clone().unwrap_or_else(|| {
            opts.out.as_ref().and_then(|o| o.file_name()).map_or_else(
                || "replay".to_string(),
                |f| f.to_string_lossy().into_owned(),
            )
        });
        let hash = hash_file(&opts.trace)
            .map_err(|e| ReplayError::io(format!("reading {path} to hash it"), e))?;
        let trace = TraceInfo {
            hash,
            params: params_of(&header),
            path,
            name: trace_name(&opts.trace),
            workload: workload_of(&header),
            plan: plan.meta,
        };
        let info = SweepInfo {
            sweep,
            touch: touch_name,
            paced: opts.pace,
            order: opts.order.name(),
            pinned_requested: opts.pin,
            thp: opts.thp.name().to_string(),
            environment: Environment::detect(),
            build: build_info(),
        };
        Ok(Sweep {
            opts,
            trace,
            info,
            plan_fd,
            exe,
            touch,
            touch_fraction,
        })
    }

    /// The preprocessed trace.
    pub fn trace(&self) -> &TraceInfo {
        &self.trace
    }

    /// The plan's counts.
    pub fn plan(&self) -> &PlanMeta {
        &self.trace.plan
    }

    /// Repetitions at most: `--repeat`, or the cap with `--until-stable`.
    fn max_reps(&self) -> u32 {
        match self.opts.until_stable {
            Some(_) => self.opts.max_repeat.max(self.opts.repeat),
            None => self.opts.repeat,
        }
    }

    /// Ops this sweep will replay at most, all passes of all runs together (the progress
    /// unit; a sweep that stabilises early does less).
    pub fn total_ops(&self) -> u64 {
        let passes = if self.opts.latency { 2 } else { 1 };
        let maps = u64::from(self.opts.heap_map.is_some());
        self.trace.plan.total_ops()
            * (passes * self.max_reps() as u64 + maps)
            * self.opts.allocators.len() as u64
    }

    /// Runs every allocator × repetition (interleaved) and returns the results (with
    /// [`Results::unwritten`] set if `--out` could not be written).
    pub fn run(&self) -> Result<Results, ReplayError> {
        let pb = bar(
            self.opts.progress,
            self.total_ops(),
            "{msg:24} {bar:30} {percent:>3}% ops {human_pos}/{human_len}, ETA {eta}",
        );
        let r = self.run_all(&pb, "");
        pb.finish_and_clear();
        r
    }

    /// Like [`Sweep::run`], advancing `pb` (from where it is) by [`Sweep::total_ops`] and
    /// prefixing its messages with `label`: for a caller with one bar over many sweeps.
    pub fn run_with(&self, pb: &ProgressBar, label: &str) -> Result<Results, ReplayError> {
        let r = self.run_all(pb, label)?;
        match &r.unwritten {
            Some(e) => Err(ReplayError::io(
                e,
                std::io::Error::other("writing the results"),
            )),
            None => Ok(r),
        }
    }

    /// The sweep; results that could not be written to `--out` say why in
    /// [`Results::unwritten`] (the caller still has them to print).
    fn run_all(&self, pb: &ProgressBar, label: &str) -> Result<Results, ReplayError> {
        let o = &self.opts;
        let ops = self.trace.plan.total_ops();
        let mut results = Results::default();
        let mut done_ops = pb.position();
        // A write that fails mid-sweep (a full disk) is said once; the sweep goes on and the
        // files are written again after the last run, which must succeed.
        let mut write_failed = false;
        let reps = self.max_reps();
        // Allocators still repeated (all of them without --until-stable).
        let mut going = vec![true; o.allocators.len()];
        for rep in 0..reps {
            for (ai, spec) in o.allocators.iter().enumerate() {
                if !going[ai] {
                    continue;
                }
                let mut opts_env = options_in_env(spec.option_prefixes());
                for (k, v) in spec.child_env() {
                    if !opts_env.contains(&format!("{k}=")) {
                        opts_env = format!("{opts_env} {k}={v}").trim().to_string();
                    }
                }
                pb.set_message(format!("{label}{} r{}/{}", spec.name(), rep + 1, reps));
                let untimed = self.child(spec, self.pass(false), pb, done_ops);
                done_ops += ops;
                pb.set_position(done_ops);
                let timed = o.latency.then(|| {
                    let t = self.child(spec, self.pass(true), pb, done_ops);
                    done_ops += ops;
                    pb.set_position(done_ops);
                    t
                });
                let row = results.add_run(
                    &self.info,
                    &self.trace,
                    spec,
                    &opts_env,
                    rep,
                    &untimed,
                    timed.as_ref(),
                );
                if o.verbose {
                    pb.suspend(|| eprintln!("replay: {}", run_line(row)));
                }
                if let Some(dir) = &o.out
                    && let Err(e) = crate::parquet::write_dir(dir, &results)
                    && !write_failed
                {
                    write_failed = true;
                    pb.suspend(|| {
                        eprintln!(
                            "replay: warning: {e}; the sweep goes on and tries again at its end"
                        )
                    });
                }
            }
            if let Some(tol) = o.until_stable {
                if rep + 1 >= o.repeat {
                    for (ai, spec) in o.allocators.iter().enumerate() {
                        let v = ok_rates(&results.runs, &spec.name());
                        if going[ai] && crate::table::median_ci(&v).is_some_and(|c| c.within(tol)) {
                            going[ai] = false;
                        }
                    }
                }
                if !going.contains(&true) {
                    break;
                }
            }
        }
        if let Some(dir) = &o.heap_map {
            for spec in &o.allocators {
                pb.set_message(format!("{label}{} heap map", spec.name()));
                let r = self.heap_map_pass(dir, spec, pb, done_ops);
                done_ops += ops;
                pb.set_position(done_ops);
                if o.verbose || r.error.is_some() {
                    let line = match (&r.trace, &r.error) {
                        (_, Some(e)) => format!("{} heap map: failed: {e}", r.allocator),
                        (Some(t), None) => format!("{} heap map: {t}", r.allocator),
                        (None, None) => String::new(),
                    };
                    pb.suspend(|| eprintln!("replay: {line}"));
                }
                results.heap_maps.push(r);
            }
        }
        if o.until_stable.is_some() {
            // A cell still going when the cap was reached did not stabilise.
            for r in &mut results.runs {
                if let Some(ai) = o.allocators.iter().position(|s| s.name() == r.allocator) {
                    r.stable = Some(!going[ai]);
                }
            }
            if let Some(dir) = &o.out
                && let Err(e) = crate::parquet::write_dir(dir, &results)
            {
                write_failed = true;
                pb.suspend(|| eprintln!("replay: warning: {e}; trying again"));
            }
        }
        if let Some(dir) = &o.out
            && write_failed
            && let Err(e) = crate::parquet::write_dir(dir, &results)
        {
            results.unwritten = Some(e.to_string());
        }
        Ok(results)
    }

    /// The options of a measured pass: the untimed one samples and waits for retained memory;
    /// the timed one only times the calls.
    fn pass(&self, timed: bool) -> PassOptions {
        let o = &self.opts;
        PassOptions {
            touch: self.touch,
            touch_fraction: self.touch_fraction,
            pace: o.pace,
            pin: o.pin,
            order: o.order,
            timed,
            thp: o.thp,
            sample_ms: if timed { 0 } else { o.sample_ms },
            introspect_ms: o.introspect_ms,
            retained_wait: if timed { 0.0 } else { o.retained_wait },
            heap_map: None,
        }
    }

    /// The heap-map pass of `spec`: one untimed child that logs every op and snapshots the
    /// mappings, then writes both under `dir` ([`crate::addrmap`]).
    fn heap_map_pass(
        &self,
        dir: &Path,
        spec: &AllocSpec,
        pb: &ProgressBar,
        base: u64,
    ) -> crate::results::HeapMapOutcome {
        let o = &self.opts;
        let hm = crate::addrmap::HeapMapPass {
            dir: dir.to_path_buf(),
            allocator: spec.name(),
            trace_name: self.trace.name.clone(),
            trace_hash: self.trace.hash.clone(),
            snapshot_ms: o.heap_map_ms.max(1),
        };
        let pass = PassOptions {
            sample_ms: hm.snapshot_ms,
            introspect_ms: 0,
            retained_wait: 0.0,
            heap_map: Some(hm.clone()),
            ..self.pass(false)
        };
        let file = results_schema::heapmap::trace_file(dir, &hm.trace_name, &hm.allocator);
        let error = match self.child(spec, pass, pb, base) {
            Outcome::Done(r) => crate::results::verify(&self.trace.plan, &r),
            Outcome::NotDone { status, error } => Some(format!("{status}: {error}")),
        };
        crate::results::HeapMapOutcome {
            allocator: hm.allocator,
            trace: error.is_none().then(|| file.display().to_string()),
            error,
        }
    }

    /// One child: one pass of `spec`.
    fn child(&self, spec: &AllocSpec, pass: PassOptions, pb: &ProgressBar, base: u64) -> Outcome {
        match self.try_child(spec, pass, pb, base) {
            Ok(o) => o,
            Err(e) => Outcome::NotDone {
                status: Status::Failed,
                error: e.to_string(),
            },
        }
    }

    fn try_child(
        &self,
        spec: &AllocSpec,
        pass: PassOptions,
        pb: &ProgressBar,
        base: u64,
    ) -> Result<Outcome, ReplayError> {
        let (progress_fd, progress) =
            progress_page().map_err(|e| ReplayError::io("making the progress page", e))?;
        let req = ChildRequest {
            spec: spec.clone(),
            meta: self.trace.plan.clone(),
            plan_fd: self.plan_fd.as_raw_fd(),
            progress_fd: Some(progress_fd.as_raw_fd()),
            pass,
        };
        let text = serde_json::to_string(&req)
            .map_err(|e| ReplayError::BadInput(format!("encoding the child request: {e}")))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--child")
            .envs(spec.child_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| ReplayError::io(format!("starting {} --child", self.exe.display()), e))?;
        let started = Instant::now();
        if let Some(mut stdin) = child.stdin.take() {
            // A child that dies at once closes its end; its exit status tells why.
            let _ = stdin.write_all(text.as_bytes());
        }
        let mut stdout = child.stdout.take().expect("piped");
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let stderr = child.stderr.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let err_reader = {
            let lines = Arc::clone(&lines);
            let pb = pb.clone();
            let name = spec.name();
            std::thread::spawn(move || {
                for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                    pb.suspend(|| eprintln!("[{name}] {l}"));
                    let mut v = lines.lock().unwrap_or_else(|e| e.into_inner());
                    if v.len() >= 64 {
                        v.remove(0);
                    }
                    v.push(l);
                }
            })
        };
        let counter = progress.counter();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Ok(s),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if started.elapsed() > self.opts.timeout {
                let _ = child.kill();
                let _ = child.wait();
                let _ = out_reader.join();
                let _ = err_reader.join();
                return Ok(Outcome::NotDone {
                    status: Status::Timeout,
                    error: format!(
                        "ran past the {:.0} s timeout (--timeout) and was killed",
                        self.opts.timeout.as_secs_f64()
                    ),
                });
            }
            pb.set_position(base + counter.load(std::sync::atomic::Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(20));
        }
        .map_err(|e| ReplayError::io("waiting for a replay child", e))?;
        let out = out_reader.join().unwrap_or_default();
        let _ = err_reader.join();
        let said = tail(&lines.lock().unwrap_or_else(|e| e.into_inner()));
        let reply: Option<ChildReply> = serde_json::from_str(&out).ok();
        Ok(match (status.signal(), reply) {
            (Some(sig), _) => Outcome::NotDone {
                status: Status::Crashed,
                error: format!(
                    "killed by {}{}",
                    signal_name(sig),
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(": {said}")
                    }
                ),
            },
            (None, Some(ChildReply::Done(r))) if status.success() => Outcome::Done(r),
            (None, Some(ChildReply::Failed { message, .. })) => Outcome::NotDone {
                status: Status::Failed,
                error: message,
            },
            (None, _) => Outcome::NotDone {
                status: Status::Failed,
                error: format!(
                    "exited with {} without a result{}",
                    status,
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(": {said}")
                    }
                ),
            },
        })
    }
}

/// ops/s of the ok runs of `allocator`.
fn ok_rates(runs: &[RunRow], allocator: &str) -> Vec<f64> {
    runs.iter()
        .filter(|r| r.allocator == allocator && r.status.is_ok())
        .filter_map(|r| r.ops_per_sec)
        .collect()
}

/// `--thp madvise|always` only describe what the system setting must be (a process can turn
/// huge pages off for itself, never on): refused unless the system is set so.
fn check_thp(thp: Thp) -> Result<(), ReplayError> {
    if matches!(thp, Thp::System | Thp::Never) {
        return Ok(());
    }
    let sys = Environment::detect().thp_enabled;
    if sys == thp.name() {
        return Ok(());
    }
    Err(ReplayError::BadInput(format!(
        "--thp {}: the system's transparent huge pages are `{sys}`, and a process cannot change that for itself; as root, `echo {} > /sys/kernel/mm/transparent_hugepage/enabled`, or use --thp never or system",
        thp.name(),
        thp.name()
    )))
}

/// Checks, before anything runs, that the directory given to `flag` (`-o`, `--heap-map`) can
/// be written (made if missing): a file is created there and removed.
fn check_writable_dir(flag: &str, dir: &Path) -> Result<(), ReplayError> {
    let bad = |what: &str, e: std::io::Error| {
        ReplayError::BadInput(format!("{flag} {}: {what}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| bad("cannot create the output directory", e))?;
    let probe = dir.join(format!(".replay-write-check-{}", std::process::id()));
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(b"alloclab")?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| bad("cannot write there", e))
}

/// Checks that the preloaded library `lib` really serves `malloc`: `exe --check-preload`
/// runs under it and looks where `malloc` resolves. A library that does not replace malloc
/// would measure glibc under its name.
fn check_preload(exe: &Path, spec: &AllocSpec, lib: &Path) -> Result<(), ReplayError> {
    let o = Command::new(exe)
        .arg("--check-preload")
        .arg(lib)
        .envs(spec.child_env())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ReplayError::io(format!("starting {} --check-preload", exe.display()), e))?;
    if o.status.code() == Some(2) {
        let msg = String::from_utf8_lossy(&o.stderr);
        let line = msg
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(ReplayError::BadInput(
            line.trim_start_matches("replay: ").to_string(),
        ));
    }
    // Anything else (a library that crashes as it loads) is left to the runs, which report it.
    Ok(())
}

/// One line about a finished run, for stderr.
pub fn run_line(r: &RunRow) -> String {
    use crate::human;
    if !r.status.is_ok() {
        return format!(
            "{} r{}: {}: {}",
            r.allocator,
            r.repetition,
            r.status,
            r.error.as_deref().unwrap_or("")
        );
    }
    let mut s = format!(
        "{} r{}: {} ops in {}",
        r.allocator,
        r.repetition,
        r.ops,
        human::ns(r.wall_ns.unwrap_or(0) as f64)
    );
    if let Some(v) = r.ops_per_sec {
        s += &format!(" ({} ops/s)", human::rate(v));
    }
    if let Some(h) = r.peak_heap_rss_bytes {
        s += &format!(", peak heap RSS {}", human::bytes(h));
    }
    if let Some(f) = r.frag_ratio_at_peak {
        s += &format!(", frag {f:.2}×");
    }
    if let Some(o) = r.overhead_ratio {
        s += &format!(", usable/requested {o:.3}×");
    }
    if let Some(m) = r
        .measured_peak_live_bytes
        .filter(|m| *m > r.peak_live_bytes)
    {
        s += &format!(
            ", measured peak live {} above the trace's {} (--order {})",
            human::bytes(m),
            human::bytes(r.peak_live_bytes),
            r.order
        );
    }
    s
}
