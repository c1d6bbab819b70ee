//! The rows of replayer/SCHEMA.md: what the children measured, turned into one [`RunRow`] per
//! run, [`LatencyRow`]s (per op kind and quantile) and [`SampleRow`]s (over time). The same rows
//! feed the text table, `--json` and the Parquet files, so the three never disagree.

use serde::{Deserialize, Serialize};

use crate::adapter::AllocSpec;
use crate::engine::{PassResult, Phase};
use crate::env::{BuildInfo, Environment};
use crate::plan::{OpClass, PlanMeta};

/// The schema version the rows follow (replayer/SCHEMA.md).
pub const SCHEMA_VERSION: u32 = 1;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every pass ran and its counts verified.
    Ok,
    /// A child died of a signal.
    Crashed,
    /// A child ran past `--timeout`.
    Timeout,
    /// A child could not run, or what it replayed does not match the plan.
    Failed,
}

impl Status {
    /// The name in runs.parquet.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Crashed => "crashed",
            Status::Timeout => "timeout",
            Status::Failed => "failed",
        }
    }
}

/// What became of one pass (one child).
#[derive(Clone, Debug)]
pub enum Outcome {
    /// It ran.
    Done(Box<PassResult>),
    /// It did not: how, and what happened.
    NotDone { status: Status, error: String },
}

impl Outcome {
    fn result(&self) -> Option<&PassResult> {
        match self {
            Outcome::Done(r) => Some(r),
            Outcome::NotDone { .. } => None,
        }
    }
}

/// What is the same for every run of one trace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TraceInfo {
    /// The trace file as given.
    pub path: String,
    /// Its short name (the file stem, without `.trace` and `.zst`).
    pub name: String,
    /// `synth.workload` of a synthetic trace, else `recorded:<program>`.
    pub workload: String,
    /// The plan's counts.
    pub plan: PlanMeta,
}

/// What is the same for every run of one sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepInfo {
    pub sweep: String,
    pub touch: String,
    pub paced: bool,
    /// `--order`: `deps`, `window:K` or `strict`.
    pub order: String,
    pub pinned_requested: bool,
    pub environment: Environment,
    pub build: BuildInfo,
}

/// One row of runs.parquet (see SCHEMA.md for each column).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunRow {
    pub schema_version: u32,
    pub run_id: String,
    pub sweep: String,
    pub trace_path: String,
    pub trace_name: String,
    pub workload: String,
    pub trace_threads: u32,
    pub trace_peak_threads: u32,
    pub replay_threads: u32,
    pub peak_replay_threads: Option<u32>,
    pub allocator: String,
    pub allocator_version: String,
    pub allocator_options: String,
    pub repetition: u32,
    pub status: String,
    pub error: Option<String>,
    pub ops: u64,
    pub ops_malloc: u64,
    pub ops_calloc: u64,
    pub ops_realloc: u64,
    pub ops_free: u64,
    pub ops_aligned: u64,
    pub failed_allocations: u64,
    pub skipped_inconsistent: u64,
    pub inversions_resolved: u64,
    pub wall_ns: Option<u64>,
    pub ops_per_sec: Option<f64>,
    pub timed_wall_ns: Option<u64>,
    pub preprocess_ns: u64,
    pub replay_state_bytes: u64,
    pub peak_live_bytes: u64,
    pub final_live_bytes: u64,
    pub measured_peak_live_bytes: Option<u64>,
    pub baseline_rss_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
    pub peak_heap_rss_bytes: Option<u64>,
    pub heap_rss_at_peak_live_bytes: Option<u64>,
    pub frag_ratio_at_peak: Option<f64>,
    pub usable_bytes_at_peak: Option<u64>,
    pub requested_bytes_at_peak: Option<u64>,
    pub overhead_ratio: Option<f64>,
    pub retained_heap_rss_bytes: Option<u64>,
    pub retained_heap_rss_100ms_bytes: Option<u64>,
    pub retained_heap_rss_1s_bytes: Option<u64>,
    pub retained_heap_rss_5s_bytes: Option<u64>,
    pub minor_faults: Option<u64>,
    pub major_faults: Option<u64>,
    pub voluntary_ctx_switches: Option<u64>,
    pub involuntary_ctx_switches: Option<u64>,
    pub user_cpu_ns: Option<u64>,
    pub sys_cpu_ns: Option<u64>,
    pub alloc_allocated_bytes: Option<u64>,
    pub alloc_resident_bytes: Option<u64>,
    pub alloc_stats_json: Option<String>,
    pub touch: String,
    pub paced: bool,
    pub order: String,
    pub pinned: bool,
    pub started_unix_ns: i64,
    pub host: String,
    pub os: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: u32,
    pub thp_enabled: String,
    pub glibc_version: String,
    pub rustc_version: String,
    pub build_profile: String,
    pub alloclab_version: String,
    pub alloclab_commit: String,
}

/// One row of latency.parquet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LatencyRow {
    pub schema_version: u32,
    pub run_id: String,
    pub allocator: String,
    pub trace_name: String,
    pub workload: String,
    pub replay_threads: u32,
    pub repetition: u32,
    pub op: String,
    pub count: u64,
    pub mean_ns: f64,
    pub quantile: f64,
    pub latency_ns: u64,
}

/// One row of timeseries.parquet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampleRow {
    pub schema_version: u32,
    pub run_id: String,
    pub allocator: String,
    pub trace_name: String,
    pub workload: String,
    pub replay_threads: u32,
    pub repetition: u32,
    pub phase: String,
    pub t_ns: u64,
    pub ops_done: u64,
    pub live_bytes: u64,
    pub rss_bytes: u64,
    pub heap_rss_bytes: i64,
    pub frag_ratio: Option<f64>,
}

/// Everything a sweep produced, in the order the runs were made.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// Cost of one timer reading pair in the timed passes, ns (median; included in every
    /// latency figure).
    pub timer_overhead_ns: Option<f64>,
    pub runs: Vec<RunRow>,
    pub latency: Vec<LatencyRow>,
    pub samples: Vec<SampleRow>,
    /// Why the results could not be written to `--out`, if they could not.
    #[serde(skip)]
    pub unwritten: Option<String>,
}

fn nonneg(v: i64) -> u64 {
    v.max(0) as u64
}

/// Why a pass that ran does not count: what it replayed differs from the plan, or the harness
/// allocated inside the loop.
pub fn verify(plan: &PlanMeta, r: &PassResult) -> Option<String> {
    let got = r.ops_by_class();
    if got != plan.ops_by_class {
        return Some(format!(
            "replayed ops per kind {got:?} differ from the plan's {:?} (malloc, calloc, realloc, free, aligned)",
            plan.ops_by_class
        ));
    }
    if r.harness_allocs_in_loop > 0 {
        return Some(format!(
            "the harness allocated {} times during the replay loop (its figures would include them)",
            r.harness_allocs_in_loop
        ));
    }
    None
}

impl Results {
    /// Adds one run: its untimed pass and, when latency was measured, its timed pass.
    #[allow(clippy::too_many_arguments)]
    pub fn add_run(
        &mut self,
        sweep: &SweepInfo,
        trace: &TraceInfo,
        spec: &AllocSpec,
        allocator_options: &str,
        repetition: u32,
        untimed: &Outcome,
        timed: Option<&Outcome>,
    ) -> &RunRow {
        let plan = &trace.plan;
        let replay_threads = plan.threads.len() as u32;
        let allocator = spec.name();
        let run_id = format!(
            "{}/{}/t{}/r{}",
            trace.name, allocator, replay_threads, repetition
        );
        // The first pass that did not run decides the status.
        let mut status = Status::Ok;
        let mut errors = Vec::new();
        for (what, o) in [("replay", Some(untimed)), ("timed replay", timed)] {
            let Some(o) = o else { continue };
            match o {
                Outcome::NotDone { status: s, error } => {
                    if status == Status::Ok {
                        status = *s;
                    }
                    errors.push(format!("{what}: {error}"));
                }
                Outcome::Done(r) => {
                    if let Some(why) = verify(plan, r) {
                        if status == Status::Ok {
                            status = Status::Failed;
                        }
                        errors.push(format!("{what}: {why}"));
                    }
                }
            }
        }
        let u = untimed.result();
        let t = timed.and_then(Outcome::result);
        let any = u.or(t);
        let counts = any.map(|r| r.ops_by_class()).unwrap_or_default();
        let ops = any.map_or(0, |r| r.ops());
        let wall_ns = u.map(|r| r.wall_ns);
        let baseline = u.map(|r| r.baseline_rss_bytes);
        let stats = any.map(|r| &r.alloc_stats);
        let env = &sweep.environment;
        let row = RunRow {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.clone(),
            sweep: sweep.sweep.clone(),
            trace_path: trace.path.clone(),
            trace_name: trace.name.clone(),
            workload: trace.workload.clone(),
            trace_threads: plan.trace_threads,
            trace_peak_threads: plan.trace_peak_threads,
            replay_threads,
            peak_replay_threads: u.map(|r| r.peak_replay_threads),
            allocator: allocator.clone(),
            allocator_version: any.map_or_else(|| spec.name(), |r| r.allocator_version.clone()),
            allocator_options: allocator_options.to_string(),
            repetition,
            status: status.name().to_string(),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            ops,
            ops_malloc: counts[OpClass::Malloc as usize],
            ops_calloc: counts[OpClass::Calloc as usize],
            ops_realloc: counts[OpClass::Realloc as usize],
            ops_free: counts[OpClass::Free as usize],
            ops_aligned: counts[OpClass::Aligned as usize],
            failed_allocations: any.map_or(0, |r| r.failed_allocations),
            skipped_inconsistent: plan.skipped_inconsistent(),
            inversions_resolved: plan.inversions,
            wall_ns,
            ops_per_sec: u
                .filter(|r| r.wall_ns > 0)
                .map(|r| r.ops() as f64 / r.wall_ns as f64 * 1e9),
            timed_wall_ns: t.map(|r| r.wall_ns),
            preprocess_ns: plan.preprocess_ns,
            replay_state_bytes: plan.state_bytes(),
            peak_live_bytes: plan.peak_live_bytes,
            final_live_bytes: plan.final_live_bytes,
            measured_peak_live_bytes: u.map(|r| r.measured_peak_live_bytes),
            baseline_rss_bytes: baseline,
            peak_rss_bytes: u.map(|r| r.peak_rss_bytes),
            peak_heap_rss_bytes: u.map(|r| r.peak_rss_bytes.saturating_sub(r.baseline_rss_bytes)),
            heap_rss_at_peak_live_bytes: u.and_then(|r| r.heap_rss_at_peak_live_bytes).map(nonneg),
            frag_ratio_at_peak: u.and_then(|r| {
                let live = r.live_bytes_at_peak_mark.unwrap_or(plan.peak_live_bytes);
                r.heap_rss_at_peak_live_bytes
                    .filter(|_| live > 0)
                    .map(|h| nonneg(h) as f64 / live as f64)
            }),
            usable_bytes_at_peak: u
                .and_then(|r| r.overhead_at_peak)
                .and_then(|o| o.usable_bytes),
            requested_bytes_at_peak: u
                .and_then(|r| r.overhead_at_peak)
                .map(|o| o.requested_bytes),
            overhead_ratio: u.and_then(|r| r.overhead_at_peak).and_then(|o| {
                o.usable_bytes
                    .filter(|_| o.requested_bytes > 0)
                    .map(|b| b as f64 / o.requested_bytes as f64)
            }),
            retained_heap_rss_bytes: u.and_then(|r| r.retained_heap_rss_bytes[0]).map(nonneg),
            retained_heap_rss_100ms_bytes: u.and_then(|r| r.retained_heap_rss_bytes[1]).map(nonneg),
            retained_heap_rss_1s_bytes: u.and_then(|r| r.retained_heap_rss_bytes[2]).map(nonneg),
            retained_heap_rss_5s_bytes: u.and_then(|r| r.retained_heap_rss_bytes[3]).map(nonneg),
            minor_faults: u.map(|r| r.usage.minor_faults),
            major_faults: u.map(|r| r.usage.major_faults),
            voluntary_ctx_switches: u.map(|r| r.usage.voluntary_ctx_switches),
            involuntary_ctx_switches: u.map(|r| r.usage.involuntary_ctx_switches),
            user_cpu_ns: u.map(|r| r.usage.user_cpu_ns),
            sys_cpu_ns: u.map(|r| r.usage.sys_cpu_ns),
            alloc_allocated_bytes: stats.and_then(|s| s.allocated),
            alloc_resident_bytes: stats.and_then(|s| s.resident),
            alloc_stats_json: stats
                .filter(|s| !s.all.is_empty())
                .map(|s| serde_json::Value::Object(s.all.clone()).to_string()),
            touch: sweep.touch.clone(),
            paced: sweep.paced,
            order: sweep.order.clone(),
            pinned: u.is_some_and(|r| r.pinned),
            started_unix_ns: any.map_or(0, |r| r.started_unix_ns),
            host: env.host.clone(),
            os: env.os.clone(),
            kernel: env.kernel.clone(),
            cpu_model: env.cpu_model.clone(),
            cpus: env.cpus,
            thp_enabled: env.thp_enabled.clone(),
            glibc_version: env.glibc_version.clone(),
            rustc_version: sweep.build.rustc.clone(),
            build_profile: sweep.build.profile.clone(),
            alloclab_version: sweep.build.version.clone(),
            alloclab_commit: sweep.build.commit.clone(),
        };
        let ident = |op: String| LatencyRow {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.clone(),
            allocator: allocator.clone(),
            trace_name: trace.name.clone(),
            workload: trace.workload.clone(),
            replay_threads,
            repetition,
            op,
            count: 0,
            mean_ns: 0.0,
            quantile: 0.0,
            latency_ns: 0,
        };
        if let Some(t) = t {
            if self.timer_overhead_ns.is_none() {
                self.timer_overhead_ns = t.timer_overhead_ns;
            }
            for l in &t.latency {
                for &(q, ns) in &l.quantiles {
                    self.latency.push(LatencyRow {
                        count: l.count,
                        mean_ns: l.mean_ns,
                        quantile: q,
                        latency_ns: ns,
                        ..ident(l.op.name().to_string())
                    });
                }
            }
        }
        if let (Some(u), Some(base)) = (u, baseline) {
            for s in &u.samples {
                let heap = s.rss_bytes as i64 - base as i64;
                self.samples.push(SampleRow {
                    schema_version: SCHEMA_VERSION,
                    run_id: run_id.clone(),
                    allocator: allocator.clone(),
                    trace_name: trace.name.clone(),
                    workload: trace.workload.clone(),
                    replay_threads,
                    repetition,
                    phase: match s.phase {
                        Phase::Replay => "replay",
                        Phase::After => "after",
                    }
                    .to_string(),
                    t_ns: s.t_ns,
                    ops_done: s.ops_done,
                    live_bytes: s.live_bytes,
                    rss_bytes: s.rss_bytes,
                    heap_rss_bytes: heap,
                    frag_ratio: (s.live_bytes > 0).then(|| heap as f64 / s.live_bytes as f64),
                });
            }
        }
        self.runs.push(row);
        self.runs.last().expect("just pushed")
    }

    /// Appends another sweep's results.
    pub fn extend(&mut self, other: Results) {
        self.runs.extend(other.runs);
        self.latency.extend(other.latency);
        self.samples.extend(other.samples);
    }
}
