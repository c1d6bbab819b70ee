//! The lab's sweep as a manifest, run in shards anywhere (`lab --plan-only`, `lab run`,
//! `lab status`; `lab slurm` in src/slurm.rs submits the shards as a Slurm job array).
//!
//! # The manifest
//!
//! `lab --plan-only` makes the traces as the local lab does, then writes `manifest.jsonl` into
//! the output directory: JSON lines, the first a [`ManifestHeader`] (`manifest_version`, the
//! lab's parameters), then one [`RunSpec`] per run, in the order the local lab makes them
//! (trace by trace; within a trace repetition by repetition, the allocators interleaved
//! a b c a b c). JSON lines because a manifest is small (5 000 runs are ~3 MB), read by
//! serde without Arrow, readable with `jq`/`grep`, and a damaged line is named by its number;
//! Parquet would be the lab's only Parquet that people edit or inspect by hand.
//!
//! Trace paths are relative to the manifest's directory, so the directory moves (to a shared
//! file system) as a whole; each row carries the trace's content hash (`trace_hash`, XXH64 as
//! in runs.parquet), checked before a shard replays it.
//!
//! # Results
//!
//! `lab run --manifest M --shard i/N` writes under `<root>/shards/<i>-of-<N>/` (root: the
//! manifest's directory unless `--out`), one directory per run at the row's `output`
//! (`<sweep dir>/<allocator>-r<repetition>`), holding runs/latency/timeseries.parquet and
//! `run.json`. A run is written into `.partial/` first (`analyze` skips dot directories) and
//! renamed into place once all four files are complete, so a directory at `output` is always a
//! finished run; a killed task leaves only `.partial/`, cleared when the shard starts again.
//! A run whose directory exists under any `shards/*/` is skipped: a requeued task, or the same
//! manifest run with another N, redoes nothing.
//!
//! # Shards
//!
//! Runs are assigned in groups of one trace × one repetition (all its allocators, so they stay
//! interleaved and share one preprocessing of the trace), each group to the shard with the
//! least work so far (events × runs, largest groups first): [`shard_of`].

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use replayer::adapter::{AllocSpec, options_in_env};
use replayer::results::Results;
use replayer::sweep::Sweep;

use crate::error::{LabError, bad};
use crate::suite::{self, LabOptions, LabParams, ReplayFlags};
use crate::tools::Tools;

/// The manifest format's version; a manifest of a newer one is refused.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name in the lab's output directory.
pub const MANIFEST_FILE: &str = "manifest.jsonl";
/// A finished run's own record, in its result directory.
pub const RUN_FILE: &str = "run.json";

/// The manifest's first line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ManifestHeader {
    pub manifest_version: u32,
    /// The lab's parameters (as in its `lab.json`).
    pub lab: LabParams,
    /// Rows that follow.
    pub runs: usize,
}

/// One run of the sweep: one allocator replaying one trace once.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunSpec {
    /// `<sweep dir>/<allocator>/r<repetition>`: unique in the manifest.
    pub id: String,
    /// The trace, relative to the manifest's directory (or absolute).
    pub trace: String,
    /// XXH64 of the trace file (runs.parquet's `trace_hash`).
    pub trace_hash: String,
    /// Events in the trace (the shard balance's unit).
    pub events: u64,
    /// The local lab's sweep directory under runs/: `<workload>-t<N>` or the program's name.
    pub job: String,
    /// Threads the synthetic trace was made with (null: a recorded program's own).
    pub trace_threads: Option<u32>,
    /// The allocator, as `replay --alloc` names it.
    pub allocator: String,
    /// The allocator's options from the environment when planned (as runs.parquet's
    /// `allocator_options`); a shard run in another environment is refused.
    pub allocator_options: String,
    /// 0-based.
    pub repetition: u32,
    /// How it is replayed.
    #[serde(flatten)]
    pub flags: ReplayFlags,
    /// The run's result directory, relative to a shard's directory.
    pub output: String,
    /// A `preload:PATH` allocator's library as `lab slurm` staged it beside the manifest
    /// (relative to its directory): loaded instead of PATH, which a node need not have. The
    /// allocator keeps its planned name in the results, so the runs are the local lab's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_lib: Option<String>,
}

/// A manifest read back.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub path: PathBuf,
    pub header: ManifestHeader,
    pub runs: Vec<RunSpec>,
}

/// `run.json`: what a finished run's directory holds, in short.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunDone {
    pub id: String,
    /// `ok`, `crashed`, `timeout` or `failed` (runs.parquet's `status`).
    pub status: String,
    pub error: Option<String>,
    /// `i/N`.
    pub shard: String,
    pub host: String,
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LabError {
    LabError::io(what)
}

impl Manifest {
    /// Reads `path`; every problem names the file and line.
    pub fn read(path: &Path) -> Result<Manifest, LabError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(format!(
                "--manifest {}: cannot read it: {e} (write one with `lab --plan-only`)",
                path.display()
            ))
        })?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, first)) = lines.next() else {
            return Err(bad(format!("{}: empty manifest", path.display())));
        };
        #[derive(Deserialize)]
        struct Version {
            manifest_version: u32,
        }
        let v: Version = serde_json::from_str(first).map_err(|e| {
            bad(format!(
                "{}:1: not a lab manifest (no manifest_version): {e}",
                path.display()
            ))
        })?;
        if v.manifest_version != MANIFEST_VERSION {
            return Err(bad(format!(
                "{}: manifest version {} but this lab reads version {MANIFEST_VERSION}: plan it \
                 again with this lab (`lab --plan-only`)",
                path.display(),
                v.manifest_version
            )));
        }
        let header: ManifestHeader = serde_json::from_str(first)
            .map_err(|e| bad(format!("{}:1: bad manifest header: {e}", path.display())))?;
        let mut runs = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (n, l) in lines {
            let r: RunSpec = serde_json::from_str(l)
                .map_err(|e| bad(format!("{}:{}: bad run row: {e}", path.display(), n + 1)))?;
            if !ids.insert(r.id.clone()) {
                return Err(bad(format!(
                    "{}:{}: run {} is listed twice",
                    path.display(),
                    n + 1,
                    r.id
                )));
            }
            if !safe_relative(&r.output) {
                return Err(bad(format!(
                    "{}:{}: output {:?} must be a relative path without `..`",
                    path.display(),
                    n + 1,
                    r.output
                )));
            }
            runs.push(r);
        }
        if runs.len() != header.runs {
            return Err(bad(format!(
                "{}: the header promises {} runs but {} follow (a cut file?): plan it again",
                path.display(),
                header.runs,
                runs.len()
            )));
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            header,
            runs,
        })
    }

    /// The manifest's directory (trace paths are relative to it).
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// The trace file of `r`.
    pub fn trace_path(&self, r: &RunSpec) -> PathBuf {
        self.dir().join(&r.trace)
    }

    /// The allocator a run loads: its planned one, or `preload:` its staged library.
    pub fn alloc_spec(&self, r: &RunSpec) -> String {
        match &r.staged_lib {
            Some(lib) => format!("preload:{}", self.dir().join(lib).display()),
            None => r.allocator.clone(),
        }
    }

    /// The manifest's text: JSON lines, the header first.
    pub fn text(header: &ManifestHeader, runs: &[RunSpec]) -> String {
        let mut text = serde_json::to_string(header).expect("plain data");
        text.push('\n');
        for r in runs {
            text += &serde_json::to_string(r).expect("plain data");
            text.push('\n');
        }
        text
    }

    /// Writes the manifest to `path` (through a temporary name).
    pub fn write(path: &Path, header: &ManifestHeader, runs: &[RunSpec]) -> Result<(), LabError> {
        let tmp = path.with_extension("jsonl.tmp");
        let text = Self::text(header, runs);
        std::fs::write(&tmp, text).map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))
    }
}

fn safe_relative(p: &str) -> bool {
    let p = Path::new(p);
    !p.as_os_str().is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// `lab --plan-only`: makes the traces and writes the manifest; returns its path and rows.
pub fn plan(opts: &LabOptions) -> Result<(PathBuf, Manifest, Vec<String>), LabError> {
    let pb = indicatif::ProgressBar::hidden();
    let p = suite::prepare(opts, &pb)?;
    let flags = ReplayFlags {
        pin: opts.pin,
        ..ReplayFlags::of(&p.plan, None, opts.timeout)
    };
    let mut runs = Vec::new();
    for job in &p.jobs {
        let rel = job
            .trace
            .strip_prefix(&p.out)
            .map_err(|_| {
                bad(format!(
                    "{} is not under {}",
                    job.trace.display(),
                    p.out.display()
                ))
            })?
            .to_string_lossy()
            .into_owned();
        let hash = replayer::sweep::hash_file(&job.trace)
            .map_err(io(format!("reading {} to hash it", job.trace.display())))?;
        let events = suite::trace_events(&job.trace);
        for rep in 0..p.plan.repeat {
            for a in &p.allocators {
                let name = a.name();
                runs.push(RunSpec {
                    id: format!("{}/{name}/r{rep}", job.name),
                    trace: rel.clone(),
                    trace_hash: hash.clone(),
                    events,
                    job: job.name.clone(),
                    trace_threads: job.trace_threads,
                    allocator: name.clone(),
                    allocator_options: options_in_env(a.option_prefixes()),
                    repetition: rep,
                    flags: ReplayFlags {
                        threads: job.threads,
                        ..flags.clone()
                    },
                    output: format!("{}/{}-r{rep}", job.name, suite::file_stem_safe(&name)),
                    staged_lib: None,
                });
            }
        }
    }
    let header = ManifestHeader {
        manifest_version: MANIFEST_VERSION,
        lab: p.plan,
        runs: runs.len(),
    };
    let path = p.out.join(MANIFEST_FILE);
    Manifest::write(&path, &header, &runs)?;
    let m = Manifest {
        path: path.clone(),
        header,
        runs,
    };
    Ok((path, m, p.unavailable))
}

/// `i/N` (0 ≤ i < N).
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("--shard {s:?}: write it as I/N, as 0/4 (0-based)"))?;
    let i: usize = i
        .trim()
        .parse()
        .map_err(|_| format!("--shard {s:?}: {i:?} is not a shard number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("--shard {s:?}: {n:?} is not a shard count"))?;
    if n == 0 || i >= n {
        return Err(format!(
            "--shard {s:?}: the shard must be 0 to N-1 and N at least 1 (Slurm's \
             --array=0-{} with $SLURM_ARRAY_TASK_ID)",
            n.max(1) - 1
        ));
    }
    Ok((i, n))
}

/// Consecutive rows of one trace × repetition: `(first, end)` index ranges.
fn groups(runs: &[RunSpec]) -> Vec<(usize, usize)> {
    let mut g = Vec::new();
    let mut start = 0;
    for k in 1..=runs.len() {
        if k == runs.len()
            || runs[k].job != runs[start].job
            || runs[k].repetition != runs[start].repetition
        {
            g.push((start, k));
            start = k;
        }
    }
    g
}

/// The shard (0..n) of every row: groups of one trace × repetition, largest first, each to
/// the shard with the least work so far (ties: the lowest shard). Deterministic.
pub fn shard_of(runs: &[RunSpec], n: usize) -> Vec<usize> {
    let n = n.max(1);
    let g = groups(runs);
    let cost = |&(a, b): &(usize, usize)| runs[a].events.max(1) * (b - a) as u64;
    let mut order: Vec<usize> = (0..g.len()).collect();
    order.sort_by_key(|&k| (std::cmp::Reverse(cost(&g[k])), k));
    let mut load = vec![0u64; n];
    let mut of = vec![0; runs.len()];
    for k in order {
        let s = (0..n).min_by_key(|&s| (load[s], s)).expect("n ≥ 1");
        load[s] += cost(&g[k]);
        for r in &mut of[g[k].0..g[k].1] {
            *r = s;
        }
    }
    of
}

/// The rows of shard `i` of `n`, in manifest order.
pub fn shard_rows(runs: &[RunSpec], i: usize, n: usize) -> Vec<usize> {
    shard_of(runs, n)
        .into_iter()
        .enumerate()
        .filter(|&(_, s)| s == i)
        .map(|(k, _)| k)
        .collect()
}

/// The directory of shard `i` of `n` under `root`.
pub fn shard_dir(root: &Path, i: usize, n: usize) -> PathBuf {
    root.join("shards").join(format!("{i}-of-{n}"))
}

/// Finished runs under `root/shards/*/`: row index → its record and directory.
pub fn completed(root: &Path, runs: &[RunSpec]) -> HashMap<usize, (RunDone, PathBuf)> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir(root.join("shards")) else {
        return found;
    };
    let mut shards: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    shards.sort();
    for (k, r) in runs.iter().enumerate() {
        for s in &shards {
            let d = s.join(&r.output);
            if let Some(done) = read_done(&d, &r.id) {
                found.insert(k, (done, d));
                break;
            }
        }
    }
    found
}

/// The `run.json` of run `id` in `dir`, if `dir` is that run finished.
fn read_done(dir: &Path, id: &str) -> Option<RunDone> {
    let text = std::fs::read_to_string(dir.join(RUN_FILE)).ok()?;
    serde_json::from_str::<RunDone>(&text)
        .ok()
        .filter(|d| d.id == id)
}

fn finished(dir: &Path, id: &str) -> bool {
    read_done(dir, id).is_some()
}

/// What `lab run` is asked to do.
#[derive(Clone, Debug)]
pub struct ShardOptions {
    pub manifest: PathBuf,
    pub shard: (usize, usize),
    /// Results root (default: the manifest's directory).
    pub out: Option<PathBuf>,
    pub tools: Tools,
    /// One line per run on stderr.
    pub verbose: bool,
}

/// What a shard did.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    /// Rows of this shard.
    pub rows: usize,
    /// Found finished (any shard's directory).
    pub skipped: usize,
    /// Replayed now.
    pub ran: usize,
    /// Replayed now and not ok: `id: status: error`.
    pub failed: Vec<String>,
    pub dir: PathBuf,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `lab run --manifest M --shard i/N`.
pub fn run_shard(o: &ShardOptions) -> Result<ShardReport, LabError> {
    let m = Manifest::read(&o.manifest)?;
    let root = o.out.clone().unwrap_or_else(|| m.dir());
    let (i, n) = o.shard;
    let dir = shard_dir(&root, i, n);
    let partial = dir.join(".partial");
    // What a killed task of this shard left: never a finished run.
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(format!("clearing {}", partial.display())))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(format!("creating {}", partial.display())))?;
    let rows = shard_rows(&m.runs, i, n);
    let done = completed(&root, &m.runs);
    let pending: Vec<usize> = rows
        .iter()
        .copied()
        .filter(|k| !done.contains_key(k))
        .collect();
    let mut report = ShardReport {
        rows: rows.len(),
        skipped: rows.len() - pending.len(),
        dir: dir.clone(),
        ..ShardReport::default()
    };
    let replay = o.tools.replay()?.to_path_buf();
    // Every allocator and trace is checked before the first run.
    let mut specs: HashMap<String, AllocSpec> = HashMap::new();
    let mut hashes: HashMap<PathBuf, String> = HashMap::new();
    for &k in &pending {
        let r = &m.runs[k];
        if !specs.contains_key(&r.allocator) {
            let s = AllocSpec::parse(&m.alloc_spec(r)).map_err(|e| {
                bad(format!(
                    "{}: run {}: allocator: {e}",
                    m.path.display(),
                    r.id
                ))
            })?;
            s.check_available()?;
            let here = options_in_env(s.option_prefixes());
            if here != r.allocator_options {
                return Err(bad(format!(
                    "run {}: the manifest was planned with {} options {:?} but this \
                     environment has {:?}: export the same variables (sbatch passes the \
                     submitting environment on)",
                    r.id, r.allocator, r.allocator_options, here
                )));
            }
            specs.insert(r.allocator.clone(), s);
        }
        let t = m.trace_path(r);
        if !hashes.contains_key(&t) {
            let h = replayer::sweep::hash_file(&t).map_err(|e| {
                bad(format!(
                    "{}: cannot read the trace of run {}: {e} (stage the manifest's directory \
                     with its traces/)",
                    t.display(),
                    r.id
                ))
            })?;
            hashes.insert(t.clone(), h);
        }
        if hashes[&t] != r.trace_hash {
            return Err(bad(format!(
                "{}: its content hash is {} but the manifest says {}: not the trace that was \
                 planned (plan again, or stage the right file)",
                t.display(),
                hashes[&t],
                r.trace_hash
            )));
        }
    }
    let host = hostname();
    let shard = format!("{i}/{n}");
    // Pending rows, in groups of one trace × repetition (allocators interleaved as planned).
    let mut k = 0;
    while k < pending.len() {
        let first = &m.runs[pending[k]];
        let mut end = k + 1;
        while end < pending.len()
            && m.runs[pending[end]].job == first.job
            && m.runs[pending[end]].repetition == first.repetition
            && m.runs[pending[end]].flags == first.flags
        {
            end += 1;
        }
        let group: Vec<&RunSpec> = pending[k..end].iter().map(|&x| &m.runs[x]).collect();
        k = end;
        let allocators: Vec<AllocSpec> =
            group.iter().map(|r| specs[&r.allocator].clone()).collect();
        let sweep = Sweep::prepare(first.flags.sweep_options(
            &m.trace_path(first),
            allocators,
            1,
            &replay,
        ))?;
        let results = sweep.run()?;
        for (r, row) in group.iter().zip(results.runs.iter()) {
            let mut row = row.clone();
            let loaded = specs[&r.allocator].name();
            if row.allocator != loaded {
                return Err(bad(format!(
                    "run {}: the sweep reported allocator {} where {loaded} was expected",
                    r.id, row.allocator
                )));
            }
            // A staged library's runs keep the planned allocator name (the local lab's rows).
            row.allocator = r.allocator.clone();
            let old = row.run_id.clone();
            row.repetition = r.repetition;
            row.run_id = format!(
                "{}/{}/t{}/r{}",
                row.trace_name, row.allocator, row.replay_threads, r.repetition
            );
            let mut one = Results {
                timer_overhead_ns: results.timer_overhead_ns,
                runs: Vec::new(),
                latency: Vec::new(),
                samples: Vec::new(),
                introspection: Vec::new(),
                heap_maps: Vec::new(),
                unwritten: None,
            };
            for l in results.latency.iter().filter(|l| l.run_id == old) {
                let mut l = l.clone();
                l.run_id = row.run_id.clone();
                l.allocator = row.allocator.clone();
                l.repetition = r.repetition;
                one.latency.push(l);
            }
            for s in results.samples.iter().filter(|s| s.run_id == old) {
                let mut s = s.clone();
                s.run_id = row.run_id.clone();
                s.allocator = row.allocator.clone();
                s.repetition = r.repetition;
                one.samples.push(s);
            }
            for p in results.introspection.iter().filter(|p| p.run_id == old) {
                let mut p = p.clone();
                p.run_id = row.run_id.clone();
                p.repetition = r.repetition;
                one.introspection.push(p);
            }
            let rd = RunDone {
                id: r.id.clone(),
                status: row.status.name().to_string(),
                error: row.error.clone(),
                shard: shard.clone(),
                host: host.clone(),
            };
            if !row.status.is_ok() {
                report.failed.push(format!(
                    "{}: {}: {}",
                    r.id,
                    rd.status,
                    rd.error.as_deref().unwrap_or("")
                ));
            }
            if o.verbose {
                eprintln!("lab: {} {}", r.id, replayer::sweep::run_line(&row));
            }
            one.runs.push(row);
            commit(&partial, &dir, r, &one, &rd)?;
            report.ran += 1;
        }
    }
    let _ = std::fs::remove_dir(&partial);
    Ok(report)
}

/// Writes one run into `.partial/` and renames it to its place under the shard's directory.
fn commit(
    partial: &Path,
    dir: &Path,
    r: &RunSpec,
    one: &Results,
    rd: &RunDone,
) -> Result<(), LabError> {
    let tmp = partial.join(suite::file_stem_safe(&r.id));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(format!("clearing {}", tmp.display())))?;
    }
    replayer::parquet::write_dir(&tmp, one)?;
    let runfile = tmp.join(RUN_FILE);
    let mut f =
        std::fs::File::create(&runfile).map_err(io(format!("writing {}", runfile.display())))?;
    f.write_all(
        serde_json::to_string_pretty(rd)
            .expect("plain data")
            .as_bytes(),
    )
    .and_then(|()| f.sync_all())
    .map_err(io(format!("writing {}", runfile.display())))?;
    let dest = dir.join(&r.output);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    if finished(&dest, &r.id) {
        // Finished meanwhile by another task: keep the first.
        std::fs::remove_dir_all(&tmp).map_err(io(format!("clearing {}", tmp.display())))?;
        return Ok(());
    }
    if dest.exists() {
        // Not made by a rename from .partial (a cut copy, a hand edit): not a finished run.
        std::fs::remove_dir_all(&dest).map_err(io(format!("clearing {}", dest.display())))?;
    }
    std::fs::rename(&tmp, &dest).map_err(io(format!("moving {} into place", dest.display())))
}

/// What `lab status` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub total: usize,
    pub ok: usize,
    /// Finished but not ok: `id: status: error`.
    pub failed: Vec<String>,
    pub pending: Vec<String>,
    /// Finished runs per host.
    pub hosts: BTreeMap<String, usize>,
}

/// `lab status`: done, failed and pending runs of a manifest from the results under `root`
/// (default: the manifest's directory).
pub fn status(manifest: &Path, root: Option<&Path>) -> Result<Status, LabError> {
    let m = Manifest::read(manifest)?;
    let root = root.map_or_else(|| m.dir(), Path::to_path_buf);
    let done = completed(&root, &m.runs);
    let mut s = Status {
        total: m.runs.len(),
        ..Status::default()
    };
    for (k, r) in m.runs.iter().enumerate() {
        match done.get(&k) {
            Some((d, _)) => {
                *s.hosts.entry(d.host.clone()).or_default() += 1;
                if d.status == "ok" {
                    s.ok += 1;
                } else {
                    s.failed.push(format!(
                        "{}: {}: {}",
                        r.id,
                        d.status,
                        d.error.as_deref().unwrap_or("")
                    ));
                }
            }
            None => s.pending.push(r.id.clone()),
        }
    }
    Ok(s)
}

/// Seconds a run may take at most: its passes × the per-child timeout.
pub fn run_limit(r: &RunSpec) -> Duration {
    let passes = if r.flags.latency { 2.0 } else { 1.0 };
    Duration::from_secs_f64(r.flags.timeout_s * passes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(jobs: &[(&str, u64)], reps: u32, allocs: &[&str]) -> Vec<RunSpec> {
        let mut v = Vec::new();
        for (job, events) in jobs {
            for rep in 0..reps {
                for a in allocs {
                    v.push(RunSpec {
                        id: format!("{job}/{a}/r{rep}"),
                        trace: format!("traces/{job}.trace.zst"),
                        trace_hash: "0".repeat(16),
                        events: *events,
                        job: job.to_string(),
                        trace_threads: Some(1),
                        allocator: a.to_string(),
                        allocator_options: String::new(),
                        repetition: rep,
                        flags: ReplayFlags {
                            sweep: "lab-quick".into(),
                            threads: None,
                            latency: true,
                            sample_ms: 10,
                            retained_wait: 0.0,
                            timeout_s: 300.0,
                            pin: false,
                        },
                        output: format!("{job}/{a}-r{rep}"),
                        staged_lib: None,
                    });
                }
            }
        }
        v
    }

    #[test]
    fn every_run_is_in_exactly_one_shard_for_any_count() {
        let runs = rows(
            &[("a-t1", 10), ("b-t1", 5000), ("c-t2", 7), ("d-t4", 300)],
            3,
            &["system", "jemalloc", "fancy"],
        );
        for n in 1..=40 {
            let mut seen = vec![0; runs.len()];
            for i in 0..n {
                let mine = shard_rows(&runs, i, n);
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "manifest order");
                for k in mine {
                    seen[k] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "n={n}: {seen:?}");
        }
    }

    #[test]
    fn a_trace_repetition_stays_together_and_work_spreads() {
        let runs = rows(&[("a", 100), ("b", 100), ("c", 100)], 2, &["x", "y"]);
        let of = shard_of(&runs, 3);
        for g in groups(&runs) {
            assert!(of[g.0..g.1].iter().all(|&s| s == of[g.0]), "{g:?} split");
        }
        let per: Vec<usize> = (0..3)
            .map(|i| of.iter().filter(|&&s| s == i).count())
            .collect();
        assert_eq!(per, vec![4, 4, 4]);
    }

    #[test]
    fn shard_arguments_are_checked() {
        assert_eq!(parse_shard("2/5"), Ok((2, 5)));
        assert_eq!(parse_shard("0/1"), Ok((0, 1)));
        for bad in ["5/5", "1", "x/2", "0/0", "-1/3"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn outputs_must_stay_inside_the_shard() {
        assert!(safe_relative("a-t1/system-r0"));
        for bad in ["", "/etc", "../x", "a/../../b"] {
            assert!(!safe_relative(bad), "{bad}");
        }
    }
}
