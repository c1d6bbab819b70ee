//! The lab's suite: from nothing to a report in one command. Generates the synthetic suite, records a real
//! program (Debian's python3, every object through malloc, and any program the user adds),
//! replays every available allocator × trace × thread count × repetition through [`Sweep`]s,
//! then runs `analyze` over the results.
//!
//! Layout of the output directory (`results/lab-<profile>` by default):
//!
//! ```text
//! lab.json                the parameters (a rerun with other ones is refused: use --out)
//! traces/t<N>/<w>.trace.zst  synthetic traces, one per workload and thread count (the file
//!                         stem is the trace name, so a workload's thread counts line up)
//! traces/recorded/<name>.trace.zst   recorded traces
//! runs/<w>-t<N>/, runs/<name>/   one sweep each (runs, latency, timeseries .parquet) + `done`
//! report/report.html      what `analyze` made of runs/
//! ```
//!
//! Resumable: a trace that exists is not made again, a sweep whose `done` marker exists is not
//! replayed again; an interrupted lab loses at most the sweep it was in. A run that crashes or
//! times out is recorded as such (its sweep goes on) and listed at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use replayer::adapter::AllocSpec;
use replayer::sweep::{Sweep, SweepOptions};

use crate::error::{LabError, bad};
use crate::tools::{self, Tools};

/// How big a lab is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Minutes at most: every workload at a tiny scale, 1 and 2 threads, one repetition (CI).
    Quick,
    /// Under half an hour on 2 cores: scale 0.2, 1 to 2× CPUs threads, 3 repetitions.
    Default,
    /// The suite at full scale, 5 repetitions: hours.
    Full,
}

impl Profile {
    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Default => "default",
            Profile::Full => "full",
        }
    }
}

/// Everything the lab is asked to do; `None` fields take the profile's value.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub profile: Profile,
    /// Output directory (default `results/lab-<profile>`).
    pub out: Option<PathBuf>,
    pub allocators: Option<Vec<AllocSpec>>,
    pub workloads: Option<Vec<String>>,
    pub threads: Option<Vec<u32>>,
    pub repeat: Option<u32>,
    pub scale: Option<f64>,
    /// Per replay child.
    pub timeout: Duration,
    /// Record Debian's python3 (default on).
    pub python: bool,
    /// A program of the user's to record and add to the sweep.
    pub record: Vec<String>,
    /// Where `record`, `replay` and `analyze` are.
    pub tools: Tools,
    /// Progress bar on stderr.
    pub progress: bool,
    /// Run `lab fidelity --default-set` into `<out>/fidelity` and put its tables in the report
    /// (default and full profiles; a finished one, with its `fidelity.md`, is not run again).
    pub fidelity: bool,
    /// Pin replay thread i to CPU i mod CPUs (`replay --pin`).
    pub pin: bool,
    /// Sweeps (by workload, as `fragmentation-holes`, or by sweep name, as `larson-t2`) whose
    /// replays also write heap maps (`replay --heap-map`) into `runs/<sweep>/heapmaps`.
    pub heap_maps: Vec<String>,
}

/// The resolved parameters of a lab, kept in `lab.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LabParams {
    pub profile: Profile,
    pub scale: f64,
    pub seed: u64,
    pub threads: Vec<u32>,
    pub repeat: u32,
    pub retained_wait: f64,
    pub workloads: Vec<String>,
    pub allocators: Vec<String>,
    pub python_entries: u64,
    pub record: Vec<String>,
}

/// What a lab did.
#[derive(Clone, Debug, Default)]
pub struct LabReport {
    /// Sweeps replayed now, and sweeps found done from an earlier run.
    pub sweeps_run: usize,
    pub sweeps_skipped: usize,
    pub runs: usize,
    /// Runs that did not finish ok: `trace allocator rN: status: error`.
    pub failed: Vec<String>,
    /// The report, when `analyze` ran.
    pub report: Option<PathBuf>,
    /// Allocators left out (not installed here), with why.
    pub unavailable: Vec<String>,
    pub seconds: f64,
}

/// Thread counts: 1, then powers of two, up to 2× the CPUs (oversubscribed beyond the CPUs,
/// which shows contention).
pub fn default_threads(cpus: usize) -> Vec<u32> {
    let top = (2 * cpus.max(1)) as u32;
    let mut v = vec![1];
    let mut n = 2;
    while n < top {
        v.push(n);
        n *= 2;
    }
    if *v.last().expect("non-empty") != top {
        v.push(top);
    }
    v
}

/// The allocators a lab compares by default (`bump` and `check` are tools, not allocators).
pub const DEFAULT_ALLOCATORS: &[AllocSpec] = &[
    AllocSpec::System,
    AllocSpec::Jemalloc,
    AllocSpec::Mimalloc,
    AllocSpec::Tcmalloc,
    AllocSpec::Fancy,
    AllocSpec::FancyReclaim,
];

/// An allocation-heavy python3 job on two threads: dicts of small objects, JSON out and back,
/// a counter over its words, a sort. `N` is its size.
const PY_JOB: &str = r#"
import json, threading, collections, sys
N = int(sys.argv[1])
def work(seed, out):
    d = {}
    for i in range(N):
        d["key%d" % (i * 7 + seed)] = {"id": i, "tags": ["t%d" % (i % 13), "x" * (i % 40)]}
    text = json.dumps(d)
    back = json.loads(text)
    words = collections.Counter(text.split(","))
    out.append((len(back), len(words), sorted(back)[:3]))
out = []
ts = [threading.Thread(target=work, args=(s, out)) for s in range(2)]
for t in ts: t.start()
for t in ts: t.join()
print(sorted(x[0] for x in out))
"#;

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LabError {
    LabError::io(what)
}

impl LabOptions {
    /// The options of `profile`, everything else default.
    pub fn new(profile: Profile, tools: Tools) -> LabOptions {
        LabOptions {
            profile,
            out: None,
            allocators: None,
            workloads: None,
            threads: None,
            repeat: None,
            scale: None,
            timeout: Duration::from_secs(300),
            python: true,
            record: Vec::new(),
            tools,
            progress: true,
            fidelity: profile != Profile::Quick,
            pin: false,
            heap_maps: Vec::new(),
        }
    }

    fn resolve(&self, allocators: &[AllocSpec]) -> Result<LabParams, LabError> {
        let p = self.profile;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let all: Vec<String> = traces::synth::WORKLOADS
            .iter()
            .map(|w| w.name.to_string())
            .collect();
        let workloads = match &self.workloads {
            Some(w) => {
                for name in w {
                    traces::synth::find(name).map_err(|e| bad(e.to_string()))?;
                }
                w.clone()
            }
            None => all,
        };
        let threads = self.threads.clone().unwrap_or_else(|| match p {
            Profile::Quick => vec![1, 2],
            _ => default_threads(cpus),
        });
        if threads.is_empty() || threads.contains(&0) {
            return Err(bad("--threads: thread counts must be at least 1"));
        }
        let repeat = self.repeat.unwrap_or(match p {
            Profile::Quick => 1,
            Profile::Default => 3,
            Profile::Full => 5,
        });
        if repeat == 0 {
            return Err(bad("--repeat must be at least 1"));
        }
        let scale = self.scale.unwrap_or(match p {
            Profile::Quick => 0.002,
            Profile::Default => 0.2,
            Profile::Full => 1.0,
        });
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(bad("--scale must be a number above 0"));
        }
        Ok(LabParams {
            profile: p,
            scale,
            seed: 1,
            threads,
            repeat,
            retained_wait: match p {
                Profile::Quick => 0.0,
                Profile::Default => 0.1,
                Profile::Full => 1.0,
            },
            workloads,
            allocators: allocators.iter().map(AllocSpec::name).collect(),
            python_entries: if self.python {
                match p {
                    Profile::Quick => 3_000,
                    Profile::Default => 60_000,
                    Profile::Full => 400_000,
                }
            } else {
                0
            },
            record: self.record.clone(),
        })
    }
}

/// One sweep of the lab: a trace replayed at one thread count.
pub(crate) struct Job {
    pub trace: PathBuf,
    /// `<workload>-t<N>` or the recorded program's name: the sweep's directory under runs/.
    pub name: String,
    /// Fold onto this many replay threads (recorded traces replay at their own count).
    pub threads: Option<u32>,
    /// The thread count the synthetic trace was made with (`None`: a recorded program's).
    pub trace_threads: Option<u32>,
}

/// Writes the trace of `workload` with `threads` at `path` (through a temporary name).
fn synth(plan: &LabParams, workload: &str, threads: u32, path: &Path) -> Result<(), LabError> {
    let cfg = traces::synth::Config::new(
        workload,
        &traces::synth::Params {
            threads: Some(threads),
            scale: plan.scale,
            seed: plan.seed,
            ..Default::default()
        },
    )
    .map_err(|e| bad(e.to_string()))?;
    let tmp = path.with_extension("zst.tmp");
    traces::synth::generate_file(&cfg, &tmp).map_err(|e| bad(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))
}

/// Records `cmd` with `record` into `path` (through a temporary name); returns record's summary.
fn record(
    tools: &Tools,
    cmd: &[String],
    env: &[(&str, &str)],
    path: &Path,
) -> Result<String, LabError> {
    let tmp = path.with_extension("zst.tmp");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = tools::record(tools, cmd, &env, None, &tmp)?;
    std::fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))?;
    Ok(format!("{} in {}", r.summary(), path.display()))
}

/// Events in a trace, from its frame index (0 if it cannot be read: the sweep will say why).
pub(crate) fn trace_events(t: &Path) -> u64 {
    std::fs::File::open(t)
        .ok()
        .and_then(|f| {
            traces::MergedReader::new(std::io::BufReader::new(f), t.display().to_string()).ok()
        })
        .map_or(0, |r| r.total_events())
}

pub(crate) fn file_stem_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A lab's traces made and its parameters fixed: what the local lab sweeps and what
/// `lab --plan-only` writes into a manifest.
pub(crate) struct Prepared {
    pub plan: LabParams,
    pub out: PathBuf,
    pub allocators: Vec<AllocSpec>,
    pub jobs: Vec<Job>,
    /// Allocators left out (not installed here), with why.
    pub unavailable: Vec<String>,
}

/// How the lab replays: the same for every run of a lab, kept in each manifest row. The local
/// lab and a manifest's shard (src/shard.rs) both replay through [`ReplayFlags::sweep_options`],
/// so both make the same rows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReplayFlags {
    /// The sweep's name in the results: `lab-<profile>`.
    pub sweep: String,
    /// Replay threads to fold the trace's onto (null: one per traced thread).
    pub threads: Option<u32>,
    /// A timed (latency) pass after the untimed one.
    pub latency: bool,
    pub sample_ms: u64,
    pub retained_wait: f64,
    /// Seconds one replay child may run.
    pub timeout_s: f64,
    /// Replay thread i pinned to CPU i mod CPUs (`replay --pin`).
    #[serde(default)]
    pub pin: bool,
}

impl ReplayFlags {
    /// The lab's flags for a trace folded onto `threads`.
    pub fn of(plan: &LabParams, threads: Option<u32>, timeout: Duration) -> ReplayFlags {
        ReplayFlags {
            sweep: format!("lab-{}", plan.profile.name()),
            threads,
            latency: true,
            sample_ms: 10,
            retained_wait: plan.retained_wait,
            timeout_s: timeout.as_secs_f64(),
            pin: false,
        }
    }

    /// The sweep of `allocators` × `repeat` on `trace` (no output directory).
    pub fn sweep_options(
        &self,
        trace: &Path,
        allocators: Vec<AllocSpec>,
        repeat: u32,
        replay: &Path,
    ) -> SweepOptions {
        SweepOptions {
            allocators,
            repeat,
            threads: self.threads,
            latency: self.latency,
            sample_ms: self.sample_ms,
            retained_wait: self.retained_wait,
            timeout: Duration::from_secs_f64(self.timeout_s),
            sweep: Some(self.sweep.clone()),
            progress: false,
            verbose: false,
            exe: Some(replay.to_path_buf()),
            pin: self.pin,
            ..SweepOptions::new(trace)
        }
    }
}

/// Checks the allocators, fixes the parameters (refusing an output directory made with other
/// ones) and makes every trace that is missing.
pub(crate) fn prepare(opts: &LabOptions, pb: &ProgressBar) -> Result<Prepared, LabError> {
    let mut unavailable = Vec::new();
    if !opts.record.is_empty() || opts.python {
        opts.tools.record()?;
    }
    let wanted = opts
        .allocators
        .clone()
        .unwrap_or_else(|| DEFAULT_ALLOCATORS.to_vec());
    let mut allocators = Vec::new();
    for a in wanted {
        match a.check_available() {
            Ok(()) => allocators.push(a),
            Err(e) => unavailable.push(e.to_string()),
        }
    }
    if allocators.is_empty() {
        return Err(bad("none of the allocators asked for is available here"));
    }
    let plan = opts.resolve(&allocators)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("results/lab-{}", plan.profile.name())));
    let traces_dir = out.join("traces");
    std::fs::create_dir_all(&traces_dir)
        .map_err(io(format!("creating {}", traces_dir.display())))?;
    let manifest = out.join("lab.json");
    let text = serde_json::to_string_pretty(&plan).expect("plain data");
    if let Ok(old) = std::fs::read_to_string(&manifest) {
        let same = serde_json::from_str::<LabParams>(&old).is_ok_and(|p| p == plan);
        if !same {
            return Err(bad(format!(
                "{} holds a lab made with other parameters ({}): give another --out, or delete \
                 the directory to start over",
                out.display(),
                manifest.display()
            )));
        }
    } else {
        std::fs::write(&manifest, &text).map_err(io(format!("writing {}", manifest.display())))?;
    }
    let say = |pb: &ProgressBar, s: String| pb.suspend(|| eprintln!("lab: {s}"));
    // 1. Traces.
    let mut jobs = Vec::new();
    for w in &plan.workloads {
        let wl = traces::synth::find(w).map_err(|e| bad(e.to_string()))?;
        for &n in &plan.threads {
            if n < wl.min_threads {
                continue;
            }
            let name = format!("{w}-t{n}");
            let dir = traces_dir.join(format!("t{n}"));
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            let path = dir.join(format!("{w}.trace.zst"));
            if !path.is_file() {
                pb.set_message(format!("synth {name}"));
                synth(&plan, w, n, &path)?;
            }
            jobs.push(Job {
                trace: path,
                name,
                threads: None,
                trace_threads: Some(n),
            });
        }
    }
    // (trace name, command line, environment)
    type Recording = (String, Vec<String>, Vec<(&'static str, &'static str)>);
    let mut recordings: Vec<Recording> = Vec::new();
    if plan.python_entries > 0 {
        let py = "/usr/bin/python3";
        if !Path::new(py).is_file() {
            return Err(bad(
                "/usr/bin/python3 is missing: install Debian's python3 (`apt-get install python3`), \
                 or pass --no-python",
            ));
        }
        recordings.push((
            "python3-json".into(),
            vec![
                py.into(),
                "-c".into(),
                PY_JOB.into(),
                plan.python_entries.to_string(),
            ],
            vec![("PYTHONMALLOC", "malloc")],
        ));
    }
    if !plan.record.is_empty() {
        let prog = Path::new(&plan.record[0])
            .file_name()
            .map_or("program".into(), |f| f.to_string_lossy().into_owned());
        recordings.push((
            format!("recorded-{}", file_stem_safe(&prog)),
            plan.record.clone(),
            Vec::new(),
        ));
    }
    let rec_dir = traces_dir.join("recorded");
    std::fs::create_dir_all(&rec_dir).map_err(io(format!("creating {}", rec_dir.display())))?;
    for (name, cmd, env) in &recordings {
        let path = rec_dir.join(format!("{name}.trace.zst"));
        if !path.is_file() {
            pb.set_message(format!("record {name}"));
            let summary = record(&opts.tools, cmd, env, &path)?;
            say(pb, format!("recorded {name}: {summary}"));
        }
        jobs.push(Job {
            trace: path,
            name: name.clone(),
            threads: None,
            trace_threads: None,
        });
    }

    Ok(Prepared {
        plan,
        out,
        allocators,
        jobs,
        unavailable,
    })
}

/// Runs the lab.
pub fn run(opts: &LabOptions) -> Result<LabReport, LabError> {
    let start = Instant::now();
    let mut report = LabReport::default();
    let replay = opts.tools.replay()?.to_path_buf();
    // Checked before hours of replay, not after.
    let analyze = opts.tools.analyze()?.to_path_buf();
    let pb = if opts.progress {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "lab {bar:30} {percent:>3}% [{elapsed_precise}, ETA {eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let say = |pb: &ProgressBar, s: String| pb.suspend(|| eprintln!("lab: {s}"));
    let Prepared {
        plan,
        out,
        allocators,
        jobs,
        unavailable,
    } = prepare(opts, &pb)?;
    report.unavailable = unavailable;
    let runs_dir = out.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(io(format!("creating {}", runs_dir.display())))?;

    // Heap maps: every name must pick a sweep.
    // A name picks a sweep by its name, or by its workload (`<workload>-t<N>`).
    let picks = |job: &Job, w: &str| {
        job.name == w
            || job
                .name
                .strip_prefix(w)
                .is_some_and(|t| t.starts_with("-t"))
    };
    let mapped = |job: &Job| opts.heap_maps.iter().any(|w| picks(job, w));
    for w in &opts.heap_maps {
        if !jobs.iter().any(|j| picks(j, w)) {
            return Err(bad(format!(
                "--heap-maps {w}: no sweep of this lab is that workload or sweep (its sweeps: {})",
                jobs.iter()
                    .map(|j| j.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }

    // 2. Work, for the bar: every op of every pass of every run (from the traces' indexes).
    let passes = 2u64;
    let per_trace = trace_events;
    let unit = passes * plan.repeat as u64 * allocators.len() as u64;
    let total: u64 = jobs.iter().map(|j| per_trace(&j.trace) * unit).sum();
    pb.set_length(total.max(1));

    // 3. Sweeps.
    for (i, job) in jobs.iter().enumerate() {
        let dir = runs_dir.join(&job.name);
        let done = dir.join("done");
        let events = per_trace(&job.trace) * unit;
        if done.is_file() {
            report.sweeps_skipped += 1;
            pb.inc(events);
            continue;
        }
        let label = format!("[{}/{}] {} ", i + 1, jobs.len(), job.name);
        pb.set_message(format!("{label}preprocessing"));
        let sweep = Sweep::prepare(SweepOptions {
            out: Some(dir.clone()),
            heap_map: mapped(job).then(|| dir.join(results_schema::heapmap::DIR_NAME)),
            ..ReplayFlags {
                pin: opts.pin,
                ..ReplayFlags::of(&plan, job.threads, opts.timeout)
            }
            .sweep_options(&job.trace, allocators.clone(), plan.repeat, &replay)
        })?;
        // The bar counted events; the sweep counts ops (a few events are markers).
        let before = pb.position();
        let results = sweep.run_with(&pb, &label)?;
        pb.set_position(before + events);
        for r in &results.runs {
            report.runs += 1;
            if !r.status.is_ok() {
                let line = format!(
                    "{} {} r{}: {}: {}",
                    job.name,
                    r.allocator,
                    r.repetition,
                    r.status,
                    r.error.as_deref().unwrap_or("")
                );
                say(&pb, line.clone());
                report.failed.push(line);
            }
        }
        std::fs::write(&done, format!("{} runs\n", results.runs.len()))
            .map_err(io(format!("writing {}", done.display())))?;
        report.sweeps_run += 1;
    }
    pb.finish_and_clear();

    // 4. Real programs against their replays (lab fidelity's default set).
    let fidelity_dir = out.join("fidelity");
    if opts.fidelity {
        if fidelity_dir.join("fidelity.md").is_file() {
            eprintln!(
                "lab: fidelity: done before ({}), not run again",
                fidelity_dir.display()
            );
        } else {
            let f = crate::fidelity::FidelityOptions {
                programs: crate::programs::default_set(&fidelity_dir.join("programs"))?,
                libraries: crate::fidelity::default_libraries(&opts.tools)?,
                repeat: 5,
                out: fidelity_dir.clone(),
                tools: opts.tools.clone(),
                timeout: opts.timeout,
                verbose: opts.progress,
                touch: Default::default(),
                order: Default::default(),
            };
            crate::fidelity::run(&f)?;
        }
    }

    // 5. The report.
    let report_dir = out.join("report");
    let mut analyze_cmd = Command::new(&analyze);
    analyze_cmd.arg(&runs_dir).arg("-o").arg(&report_dir);
    if opts.fidelity {
        analyze_cmd.arg("--fidelity").arg(&fidelity_dir);
    }
    let o = analyze_cmd
        .output()
        .map_err(io(format!("running {}", analyze.display())))?;
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        return Err(LabError::Analyze {
            status: o.status.to_string(),
            stderr: err.trim().to_string(),
            runs: runs_dir,
        });
    }
    for l in err.lines().filter(|l| !l.trim().is_empty()) {
        eprintln!("{l}");
    }
    report.report = Some(report_dir.join("report.html"));
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn threads_go_up_to_twice_the_cpus() {
        assert_eq!(super::default_threads(2), vec![1, 2, 4]);
        assert_eq!(super::default_threads(1), vec![1, 2]);
        assert_eq!(super::default_threads(3), vec![1, 2, 4, 6]);
        assert_eq!(super::default_threads(8), vec![1, 2, 4, 8, 16]);
    }
}
