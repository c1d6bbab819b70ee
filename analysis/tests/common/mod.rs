//! Test fixtures: result directories built from `results_schema`'s own row structs (so they
//! have exactly the replayer's columns, types and order) with values the test chooses, written
//! as Parquet through `analysis::summary::frame`. Also used by the benchmark's data generator
//! (`examples/synthetic_sweep.rs`).

#![allow(dead_code)]

use std::path::Path;

use analysis::summary::{frame, write_parquet};
use polars::prelude::DataFrame;
use results_schema::{LatencyRow, QUANTILES, RunRow, SCHEMA_VERSION, SampleRow, Status, Workload};

/// Machine and build facts, the same for every run of a [`Results`].
#[derive(Debug, Clone)]
pub struct Machine {
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

impl Default for Machine {
    fn default() -> Self {
        Machine {
            host: "fixture-host".into(),
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.1.0-fixture".into(),
            cpu_model: "Fixture CPU @ 3.0GHz".into(),
            cpus: 2,
            thp_enabled: "madvise".into(),
            glibc_version: "2.36".into(),
            rustc_version: "rustc 1.95.0".into(),
            build_profile: "release".into(),
            alloclab_version: "0.1.0".into(),
            alloclab_commit: "0000000".into(),
        }
    }
}

/// A stable stand-in for a trace's hash: FNV-1a of its name (one name, one trace, unless a
/// test sets another).
pub fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Builders of runs.parquet rows.
pub trait Run {
    /// An `ok` run with this throughput (ops = 1 000 000, wall time to match) and memory
    /// figures derived from `peak_live_bytes` = 1 MiB and a fragmentation ratio of 1.25.
    fn ok(trace: &str, allocator: &str, threads: u32, repetition: u32, ops_per_sec: f64) -> RunRow;
    /// A run that crashed: no figures.
    fn crashed(trace: &str, allocator: &str, threads: u32, repetition: u32, error: &str) -> RunRow;
}

impl Run for RunRow {
    fn ok(trace: &str, allocator: &str, threads: u32, repetition: u32, tp: f64) -> RunRow {
        let ops = 1_000_000u64;
        let peak_live = 1u64 << 20;
        let heap_at_peak = peak_live + peak_live / 4;
        let m = Machine::default();
        RunRow {
            schema_version: SCHEMA_VERSION,
            run_id: format!("{trace}/{allocator}/t{threads}/r{repetition}"),
            sweep: String::new(),
            trace_path: format!("traces/{trace}.trace.zst"),
            trace_name: trace.into(),
            trace_hash: format!("{:016x}", name_hash(trace)),
            trace_params: String::new(),
            workload: Workload::parse(trace),
            trace_threads: threads,
            trace_peak_threads: threads,
            replay_threads: threads,
            peak_replay_threads: Some(threads),
            allocator: allocator.into(),
            allocator_version: format!("{allocator}-1.0"),
            allocator_options: String::new(),
            repetition,
            status: Status::Ok,
            error: None,
            ops,
            ops_malloc: ops / 2,
            ops_calloc: 0,
            ops_realloc: 0,
            ops_free: ops - ops / 2,
            ops_aligned: 0,
            failed_allocations: 0,
            skipped_inconsistent: 0,
            inversions_resolved: 0,
            wall_ns: Some((ops as f64 / tp * 1e9).round() as u64),
            ops_per_sec: Some(tp),
            timed_wall_ns: None,
            preprocess_ns: 1_000_000,
            replay_state_bytes: ops * 12,
            peak_live_bytes: peak_live,
            final_live_bytes: 0,
            measured_peak_live_bytes: Some(peak_live),
            baseline_rss_bytes: Some(8 << 20),
            peak_rss_bytes: None,
            peak_heap_rss_bytes: Some(heap_at_peak + 4096),
            heap_rss_at_peak_live_bytes: Some(heap_at_peak),
            frag_ratio_at_peak: Some(heap_at_peak as f64 / peak_live as f64),
            usable_bytes_at_peak: Some(peak_live + peak_live / 16),
            requested_bytes_at_peak: Some(peak_live),
            overhead_ratio: Some(1.0625),
            retained_heap_rss_bytes: Some(peak_live / 2),
            retained_heap_rss_100ms_bytes: None,
            retained_heap_rss_1s_bytes: Some(peak_live / 4),
            retained_heap_rss_5s_bytes: None,
            minor_faults: Some(300),
            major_faults: Some(0),
            voluntary_ctx_switches: Some(3),
            involuntary_ctx_switches: Some(1),
            user_cpu_ns: None,
            sys_cpu_ns: None,
            smaps_rss_at_peak_bytes: None,
            smaps_pss_at_peak_bytes: None,
            smaps_anonymous_at_peak_bytes: None,
            anon_huge_pages_at_peak_bytes: None,
            smaps_rss_end_bytes: None,
            smaps_pss_end_bytes: None,
            smaps_anonymous_end_bytes: None,
            anon_huge_pages_end_bytes: None,
            rss_sources_disagree: None,
            replay_thread_cpus: None,
            cpu_changes_seen: None,
            perf_page_faults: Some(12),
            perf_context_switches: Some(3),
            perf_cpu_migrations: Some(0),
            perf_instructions: None,
            perf_cycles: None,
            perf_cache_misses: None,
            perf_dtlb_load_misses: None,
            perf_unavailable: Some("instructions: No such file or directory (os error 2)".into()),
            kernel_mmap_calls: None,
            kernel_munmap_calls: None,
            kernel_mremap_calls: None,
            kernel_brk_calls: None,
            kernel_madvise_calls: None,
            os_mmap_calls: Some(1),
            os_mmap_bytes: Some(4096),
            os_mmap_ns: Some(1000),
            os_munmap_calls: Some(1),
            os_munmap_bytes: Some(4096),
            os_munmap_ns: Some(1000),
            os_mremap_calls: Some(1),
            os_mremap_bytes: Some(4096),
            os_mremap_ns: Some(1000),
            os_brk_calls: Some(1),
            os_brk_bytes: Some(4096),
            os_brk_ns: Some(1000),
            os_madvise_calls: Some(1),
            os_madvise_bytes: Some(4096),
            os_madvise_ns: Some(1000),
            os_madvise_advice: Some("dontneed=1/4096".into()),
            os_calls_failed: Some(0),
            os_net_mapped_bytes: Some(4096),
            cpu_governor: None,
            cpu_boost: None,
            alloc_allocated_bytes: Some(0),
            alloc_resident_bytes: None,
            alloc_stats_json: Some("{}".into()),
            touch: "pages".into(),
            paced: false,
            order: "deps".into(),
            pinned: false,
            thp: "system".into(),
            stable: None,
            started_unix_ns: 0,
            host: m.host,
            os: m.os,
            kernel: m.kernel,
            cpu_model: m.cpu_model,
            cpus: m.cpus,
            thp_enabled: m.thp_enabled,
            glibc_version: m.glibc_version,
            rustc_version: m.rustc_version,
            build_profile: m.build_profile,
            alloclab_version: m.alloclab_version,
            alloclab_commit: m.alloclab_commit,
        }
    }

    fn crashed(trace: &str, allocator: &str, threads: u32, repetition: u32, error: &str) -> RunRow {
        RunRow {
            status: Status::Crashed,
            error: Some(error.into()),
            wall_ns: None,
            ops_per_sec: None,
            baseline_rss_bytes: None,
            peak_heap_rss_bytes: None,
            heap_rss_at_peak_live_bytes: None,
            frag_ratio_at_peak: None,
            retained_heap_rss_bytes: None,
            retained_heap_rss_1s_bytes: None,
            minor_faults: None,
            major_faults: None,
            voluntary_ctx_switches: None,
            involuntary_ctx_switches: None,
            alloc_allocated_bytes: None,
            alloc_stats_json: None,
            ..RunRow::ok(trace, allocator, threads, repetition, 1.0)
        }
    }
}

/// One time-series sample of a run, by index into [`Results::runs`].
#[derive(Debug, Clone)]
pub struct Sample {
    pub run: u32,
    pub after: bool,
    pub t_ns: u64,
    pub ops_done: u64,
    pub live_bytes: u64,
    pub rss_bytes: u64,
    pub heap_rss_bytes: i64,
}

/// Time-series samples, by run index.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Appends one sample.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        run: u32,
        after: bool,
        t_ns: u64,
        ops_done: u64,
        live_bytes: u64,
        rss_bytes: u64,
        heap_rss_bytes: i64,
    ) {
        self.0.push(Sample {
            run,
            after,
            t_ns,
            ops_done,
            live_bytes,
            rss_bytes,
            heap_rss_bytes,
        });
    }
}

/// The contents of one result directory. Latency rows name their run by index (filled in with
/// the run's identity when written), like the samples.
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub sweep: String,
    pub machine: Machine,
    pub runs: Vec<RunRow>,
    /// (run index, op, count, mean, quantile, latency)
    pub latency: Vec<(usize, String, u64, f64, f64, u64)>,
    pub samples: Samples,
}

impl Results {
    /// Adds the full quantile grid for one run and op, latency at quantile q = `f(q)`.
    pub fn add_latency(&mut self, run: usize, op: &str, count: u64, f: impl Fn(f64) -> u64) {
        let mean = QUANTILES.iter().map(|&q| f(q) as f64).sum::<f64>() / QUANTILES.len() as f64;
        for q in QUANTILES {
            self.latency
                .push((run, op.to_owned(), count, mean, q, f(q)));
        }
    }

    /// The rows of the three files, with the figures a replay derives from others filled in
    /// (peak RSS, the timed pass, CPU time, the 0.1 s retained point) and the sweep and machine
    /// facts of this directory.
    pub fn rows(&self) -> (Vec<RunRow>, Vec<LatencyRow>, Vec<SampleRow>) {
        let m = &self.machine;
        let runs: Vec<RunRow> = self
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let ok = r.status.is_ok();
                RunRow {
                    sweep: self.sweep.clone(),
                    run_id: format!(
                        "{}/{}/t{}/r{}",
                        r.trace_name, r.allocator, r.replay_threads, r.repetition
                    ),
                    peak_rss_bytes: r
                        .baseline_rss_bytes
                        .zip(r.peak_heap_rss_bytes)
                        .map(|(a, b)| a + b),
                    timed_wall_ns: r.wall_ns.map(|w| w * 2),
                    user_cpu_ns: r.wall_ns,
                    sys_cpu_ns: r.wall_ns.map(|w| w / 10),
                    retained_heap_rss_100ms_bytes: r.retained_heap_rss_bytes,
                    voluntary_ctx_switches: ok.then_some(3),
                    involuntary_ctx_switches: ok.then_some(1),
                    alloc_allocated_bytes: ok.then_some(0),
                    alloc_stats_json: ok.then(|| "{}".to_owned()),
                    started_unix_ns: 1_760_000_000_000_000_000 + i as i64,
                    host: m.host.clone(),
                    os: m.os.clone(),
                    kernel: m.kernel.clone(),
                    cpu_model: m.cpu_model.clone(),
                    cpus: m.cpus,
                    thp_enabled: m.thp_enabled.clone(),
                    glibc_version: m.glibc_version.clone(),
                    rustc_version: m.rustc_version.clone(),
                    build_profile: m.build_profile.clone(),
                    alloclab_version: m.alloclab_version.clone(),
                    alloclab_commit: m.alloclab_commit.clone(),
                    ..r.clone()
                }
            })
            .collect();
        let latency = self
            .latency
            .iter()
            .map(|(i, op, count, mean, q, ns)| {
                let r = &runs[*i];
                LatencyRow {
                    schema_version: SCHEMA_VERSION,
                    run_id: r.run_id.clone(),
                    allocator: r.allocator.clone(),
                    trace_name: r.trace_name.clone(),
                    workload: r.workload.clone(),
                    replay_threads: r.replay_threads,
                    repetition: r.repetition,
                    op: op.clone(),
                    count: *count,
                    mean_ns: *mean,
                    quantile: *q,
                    latency_ns: *ns,
                }
            })
            .collect();
        let samples = self
            .samples
            .0
            .iter()
            .map(|s| {
                let r = &runs[s.run as usize];
                SampleRow {
                    schema_version: SCHEMA_VERSION,
                    run_id: r.run_id.clone(),
                    allocator: r.allocator.clone(),
                    trace_name: r.trace_name.clone(),
                    workload: r.workload.clone(),
                    replay_threads: r.replay_threads,
                    repetition: r.repetition,
                    phase: if s.after { "after" } else { "replay" }.into(),
                    t_ns: s.t_ns,
                    ops_done: s.ops_done,
                    live_bytes: s.live_bytes,
                    rss_bytes: s.rss_bytes,
                    heap_rss_bytes: s.heap_rss_bytes,
                    frag_ratio: (s.live_bytes > 0)
                        .then(|| s.heap_rss_bytes as f64 / s.live_bytes as f64),
                    os_calls: 0,
                    os_net_mapped_bytes: 0,
                    os_advised_bytes: 0,
                }
            })
            .collect();
        (runs, latency, samples)
    }
}

/// The three frames (runs, latency, timeseries) with exactly the schema's columns and types.
pub fn frames(r: &Results) -> [DataFrame; 3] {
    let (runs, latency, samples) = r.rows();
    [
        frame(&runs).unwrap(),
        frame(&latency).unwrap(),
        frame(&samples).unwrap(),
    ]
}

/// Writes one frame as Parquet.
pub fn write_frame(path: &Path, df: &mut DataFrame) {
    write_parquet(path, df).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Writes `dir/{runs,latency,timeseries}.parquet`.
pub fn write(dir: &Path, r: &Results) {
    std::fs::create_dir_all(dir).unwrap();
    let [mut a, mut b, mut c] = frames(r);
    write_frame(&dir.join("runs.parquet"), &mut a);
    write_frame(&dir.join("latency.parquet"), &mut b);
    write_frame(&dir.join("timeseries.parquet"), &mut c);
}

/// A synthetic sweep: traces × allocators × threads × repetitions, spread over directories.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    /// `(trace_name, workload)`.
    pub traces: Vec<(String, String)>,
    pub allocators: Vec<String>,
    pub threads: Vec<u32>,
    pub repetitions: u32,
    /// Time-series samples per run (replay phase; 3 `after` samples are added).
    pub samples_per_run: u32,
    /// Result directories the runs are spread over (round robin by repetition; by run when
    /// there are more directories than repetitions). Each is written before the next is made,
    /// so memory is one directory's rows.
    pub dirs: u32,
    /// Every n-th run crashed (0: none).
    pub crash_every: u32,
}

impl SynthSpec {
    /// Runs in the sweep.
    pub fn runs(&self) -> u64 {
        (self.traces.len() * self.allocators.len() * self.threads.len()) as u64
            * self.repetitions as u64
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Writes a synthetic sweep under `root` (`root/d000`, `root/d001`, …). Deterministic.
pub fn write_synthetic(root: &Path, spec: &SynthSpec) {
    let dirs = spec.dirs.max(1);
    for d in 0..dirs {
        let mut res = Results {
            sweep: "synthetic".into(),
            ..Default::default()
        };
        let mut i = 0u64;
        for (trace, workload) in &spec.traces {
            for alloc in &spec.allocators {
                for &threads in &spec.threads {
                    for rep in 0..spec.repetitions {
                        i += 1;
                        // By repetition; by run when there are more directories than
                        // repetitions (many small shards).
                        let slot = if dirs <= spec.repetitions {
                            rep % dirs
                        } else {
                            ((i - 1) % dirs as u64) as u32
                        };
                        if slot != d {
                            continue;
                        }
                        let h = mix(name_hash(trace)
                            ^ mix(name_hash(alloc))
                            ^ ((threads as u64) << 32)
                            ^ rep as u64);
                        if spec.crash_every > 0 && i.is_multiple_of(spec.crash_every as u64) {
                            let mut r = RunRow::crashed(
                                trace,
                                alloc,
                                threads,
                                rep,
                                "killed by signal 11 (SIGSEGV)",
                            );
                            r.workload = Workload::parse(workload);
                            res.runs.push(r);
                            continue;
                        }
                        let speed = 0.5 + 1.5 * unit(mix(name_hash(alloc)));
                        let scaling =
                            (threads as f64).powf(0.3 + 0.6 * unit(mix(name_hash(alloc) ^ 7)));
                        let tp = 8e6 * speed * scaling * (0.95 + 0.1 * unit(h));
                        let mut r = RunRow::ok(trace, alloc, threads, rep, tp);
                        r.workload = Workload::parse(workload);
                        let frag = 1.05 + 0.6 * unit(mix(name_hash(alloc) ^ name_hash(trace)));
                        let live = (1u64 << 20) * threads as u64 * (1 + name_hash(trace) % 8);
                        r.peak_live_bytes = live;
                        let heap = (live as f64 * frag) as u64;
                        r.heap_rss_at_peak_live_bytes = Some(heap);
                        r.peak_heap_rss_bytes = Some(heap + 4096);
                        r.frag_ratio_at_peak = Some(heap as f64 / live as f64);
                        let run = res.runs.len();
                        res.runs.push(r.clone());
                        let base = 40.0 / speed;
                        for op in ["malloc", "free"] {
                            res.add_latency(run, op, r.ops / 2, |q| {
                                (base
                                    * (1.0 + 20.0 * q.powi(8))
                                    * if q >= 1.0 { 50.0 } else { 1.0 })
                                    as u64
                            });
                        }
                        let dur = r.wall_ns.unwrap_or(1);
                        let n = spec.samples_per_run.max(1) as u64;
                        let baseline = r.baseline_rss_bytes.unwrap_or(0);
                        for k in 0..n {
                            let t = dur * k / n;
                            let x = k as f64 / n as f64;
                            let shape = if x < 0.25 {
                                x * 4.0
                            } else if x > 0.9 {
                                (1.0 - x) * 10.0
                            } else {
                                1.0
                            };
                            let l = (live as f64 * shape) as u64;
                            let hp = (l as f64 * frag) as i64 + 65_536;
                            res.samples.push(
                                run as u32,
                                false,
                                t,
                                r.ops * k / n,
                                l,
                                baseline + hp as u64,
                                hp,
                            );
                        }
                        for (k, after_ns) in [100_000_000u64, 1_000_000_000, 5_000_000_000]
                            .iter()
                            .enumerate()
                        {
                            let hp = (live / (2 << k)) as i64;
                            res.samples.push(
                                run as u32,
                                true,
                                dur + after_ns,
                                r.ops,
                                0,
                                baseline + hp as u64,
                                hp,
                            );
                        }
                    }
                }
            }
        }
        write(&root.join(format!("d{d:03}")), &res);
    }
}
