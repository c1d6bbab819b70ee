//! The rows of replayer/SCHEMA.md: what the children measured, turned into one [`RunRow`] per
//! run, [`LatencyRow`]s (per op kind and quantile) and [`SampleRow`]s (over time). The same rows
//! feed the text table, `--json` and the Parquet files, so the three never disagree.

use serde::{Deserialize, Serialize};

pub use results_schema::{
    IntrospectionRow, LatencyRow, RunRow, SCHEMA_VERSION, SampleRow, Status, Workload,
};

use crate::adapter::AllocSpec;
use crate::engine::{PassResult, Phase};
use crate::env::{BuildInfo, Environment};
use crate::oscalls::Call;
use crate::plan::{OpClass, PlanMeta};

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
    /// XXH64 of the trace file's bytes (`trace_hash`).
    pub hash: String,
    /// The parameters that made it (`trace_params`).
    pub params: String,
    /// What made it.
    pub workload: Workload,
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
    /// `--thp`: `system`, `never`, `madvise` or `always`.
    pub thp: String,
    pub environment: Environment,
    pub build: BuildInfo,
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
    /// The allocators' own statistics over time (untimed pass).
    #[serde(default)]
    pub introspection: Vec<IntrospectionRow>,
    /// The heap-map passes (`--heap-map`), one per allocator.
    #[serde(default)]
    pub heap_maps: Vec<HeapMapOutcome>,
    /// Why the results could not be written to `--out`, if they could not.
    #[serde(skip)]
    pub unwritten: Option<String>,
}

/// What one heap-map pass left: its address trace, or why there is none.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HeapMapOutcome {
    /// The allocator's name.
    pub allocator: String,
    /// The address trace written (the mappings file is beside it).
    pub trace: Option<String>,
    /// Why the pass failed.
    pub error: Option<String>,
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
        let perf = |name: &str| {
            u.and_then(|r| r.counters.as_ref())
                .and_then(|c| c.get(name))
        };
        let os = u.and_then(|r| r.os_calls.as_ref());
        let row = RunRow {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.clone(),
            sweep: sweep.sweep.clone(),
            trace_path: trace.path.clone(),
            trace_name: trace.name.clone(),
            trace_hash: trace.hash.clone(),
            trace_params: trace.params.clone(),
            workload: trace.workload.clone(),
            trace_threads: plan.trace_threads,
            trace_peak_threads: plan.trace_peak_threads,
            replay_threads,
            peak_replay_threads: u.map(|r| r.peak_replay_threads),
            allocator: allocator.clone(),
            allocator_version: any.map_or_else(|| spec.name(), |r| r.allocator_version.clone()),
            allocator_options: allocator_options.to_string(),
            repetition,
            status,
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
            smaps_rss_at_peak_bytes: u.and_then(|r| r.smaps_at_peak).map(|m| m.rss),
            smaps_pss_at_peak_bytes: u.and_then(|r| r.smaps_at_peak).map(|m| m.pss),
            smaps_anonymous_at_peak_bytes: u.and_then(|r| r.smaps_at_peak).map(|m| m.anonymous),
            anon_huge_pages_at_peak_bytes: u
                .and_then(|r| r.smaps_at_peak)
                .map(|m| m.anon_huge_pages),
            smaps_rss_end_bytes: u.and_then(|r| r.smaps_end).map(|m| m.rss),
            smaps_pss_end_bytes: u.and_then(|r| r.smaps_end).map(|m| m.pss),
            smaps_anonymous_end_bytes: u.and_then(|r| r.smaps_end).map(|m| m.anonymous),
            anon_huge_pages_end_bytes: u.and_then(|r| r.smaps_end).map(|m| m.anon_huge_pages),
            rss_sources_disagree: u.and_then(|r| {
                let end = r.smaps_end.map(|m| m.disagrees_with(r.statm_end_bytes));
                let peak = r.smaps_at_peak.zip(r.statm_at_peak_bytes).map(|(m, s)| {
                    m.disagrees_with_range(s, r.statm_after_peak_smaps_bytes.unwrap_or(s))
                });
                match (peak, end) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
                }
            }),
            replay_thread_cpus: u.filter(|r| !r.thread_cpus.is_empty()).map(|r| {
                r.thread_cpus
                    .iter()
                    .map(|c| {
                        c.iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            cpu_changes_seen: u.map(|r| r.cpu_changes_seen),
            perf_page_faults: perf("page_faults"),
            perf_context_switches: perf("context_switches"),
            perf_cpu_migrations: perf("cpu_migrations"),
            perf_instructions: perf("instructions"),
            perf_cycles: perf("cycles"),
            perf_cache_misses: perf("cache_misses"),
            perf_dtlb_load_misses: perf("dtlb_load_misses"),
            perf_unavailable: u
                .and_then(|r| r.counters.as_ref())
                .and_then(|c| c.unavailable_text()),
            kernel_mmap_calls: perf("sys_mmap"),
            kernel_munmap_calls: perf("sys_munmap"),
            kernel_mremap_calls: perf("sys_mremap"),
            kernel_brk_calls: perf("sys_brk"),
            kernel_madvise_calls: perf("sys_madvise"),
            os_mmap_calls: os.map(|o| o.get(Call::Mmap).calls),
            os_mmap_bytes: os.map(|o| o.get(Call::Mmap).bytes),
            os_mmap_ns: os.map(|o| o.get(Call::Mmap).ns),
            os_munmap_calls: os.map(|o| o.get(Call::Munmap).calls),
            os_munmap_bytes: os.map(|o| o.get(Call::Munmap).bytes),
            os_munmap_ns: os.map(|o| o.get(Call::Munmap).ns),
            os_mremap_calls: os.map(|o| o.get(Call::Mremap).calls),
            os_mremap_bytes: os.map(|o| o.get(Call::Mremap).bytes),
            os_mremap_ns: os.map(|o| o.get(Call::Mremap).ns),
            os_brk_calls: os.map(|o| o.get(Call::Brk).calls),
            os_brk_bytes: os.map(|o| o.get(Call::Brk).bytes),
            os_brk_ns: os.map(|o| o.get(Call::Brk).ns),
            os_madvise_calls: os.map(|o| o.get(Call::Madvise).calls),
            os_madvise_bytes: os.map(|o| o.get(Call::Madvise).bytes),
            os_madvise_ns: os.map(|o| o.get(Call::Madvise).ns),
            os_madvise_advice: os.map(|o| o.advice_text()),
            os_calls_failed: os.map(|o| o.failed),
            os_net_mapped_bytes: os.map(|o| o.net_mapped_bytes),
            cpu_governor: crate::counters::cpu_governor(),
            cpu_boost: crate::counters::cpu_boost(),
            alloc_allocated_bytes: stats.and_then(|s| s.allocated),
            alloc_resident_bytes: stats.and_then(|s| s.resident),
            alloc_stats_json: stats
                .filter(|s| !s.all.is_empty())
                .map(|s| serde_json::Value::Object(s.all.clone()).to_string()),
            touch: sweep.touch.clone(),
            paced: sweep.paced,
            order: sweep.order.clone(),
            pinned: u.is_some_and(|r| r.pinned),
            thp: sweep.thp.clone(),
            stable: None,
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
                    os_calls: s.os.calls,
                    os_net_mapped_bytes: s.os.net_mapped_bytes,
                    os_advised_bytes: s.os.advised_bytes,
                });
            }
        }
        if let Some(u) = u {
            for p in &u.introspection {
                self.introspection.push(IntrospectionRow {
                    schema_version: SCHEMA_VERSION,
                    run_id: run_id.clone(),
                    allocator: allocator.clone(),
                    trace_name: trace.name.clone(),
                    workload: trace.workload.clone(),
                    replay_threads,
                    repetition,
                    phase: match p.phase {
                        Phase::Replay => "replay",
                        Phase::After => "after",
                    }
                    .to_string(),
                    sample: p.sample,
                    t_ns: p.t_ns,
                    metric: p.metric.clone(),
                    key: p.key.map(i64::from),
                    value: p.value,
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
        self.introspection.extend(other.introspection);
    }
}
