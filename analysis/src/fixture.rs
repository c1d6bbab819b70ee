//! Writing result directories that follow replayer/SCHEMA.md exactly (every column, in order,
//! with its type), from values the caller chooses — for tests with hand-computed answers, the
//! benchmark's synthetic sweep (`analyze-fixture`), and the notebook before a real replay exists.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, PolarsContext};
use crate::schema::SCHEMA_VERSION;

/// The quantile grid of latency.parquet.
pub const QUANTILE_GRID: [f64; 17] = [
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

/// Machine and build facts, the same for every run of a [`Results`].
#[derive(Debug, Clone)]
pub struct Machine {
    /// Host name.
    pub host: String,
    /// The distribution.
    pub os: String,
    /// `uname -r`.
    pub kernel: String,
    /// CPU model.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: u32,
    /// THP mode.
    pub thp_enabled: String,
    /// glibc version.
    pub glibc_version: String,
    /// rustc version.
    pub rustc_version: String,
    /// Build profile.
    pub build_profile: String,
    /// alloclab version.
    pub alloclab_version: String,
    /// alloclab commit.
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

/// One run (one row of runs.parquet). Columns not here are derived (see [`frames`]).
#[derive(Debug, Clone)]
pub struct Run {
    /// Trace short name.
    pub trace_name: String,
    /// Workload.
    pub workload: String,
    /// Allocator.
    pub allocator: String,
    /// Replay threads.
    pub replay_threads: u32,
    /// Repetition.
    pub repetition: u32,
    /// `ok`, `crashed`, `timeout`, `failed`.
    pub status: String,
    /// Error of a run that is not ok.
    pub error: Option<String>,
    /// Ops replayed.
    pub ops: u64,
    /// Wall time of the untimed pass.
    pub wall_ns: Option<u64>,
    /// Ops/s.
    pub ops_per_sec: Option<f64>,
    /// Peak live bytes.
    pub peak_live_bytes: u64,
    /// RSS before the first op.
    pub baseline_rss_bytes: Option<u64>,
    /// Peak heap RSS.
    pub peak_heap_rss_bytes: Option<u64>,
    /// Heap RSS at peak live.
    pub heap_rss_at_peak_live_bytes: Option<u64>,
    /// Fragmentation ratio at peak.
    pub frag_ratio_at_peak: Option<f64>,
    /// Retained heap RSS after the last op.
    pub retained_heap_rss_bytes: Option<u64>,
    /// Retained heap RSS 1 s later.
    pub retained_heap_rss_1s_bytes: Option<u64>,
    /// Minor faults.
    pub minor_faults: Option<u64>,
    /// Major faults.
    pub major_faults: Option<u64>,
}

impl Run {
    /// An `ok` run with this throughput (ops = 1 000 000, wall time to match) and memory
    /// figures derived from `peak_live_bytes` = 1 MiB and a fragmentation ratio of 1.25.
    pub fn ok(
        trace: &str,
        allocator: &str,
        threads: u32,
        repetition: u32,
        ops_per_sec: f64,
    ) -> Run {
        let ops = 1_000_000u64;
        let peak_live = 1u64 << 20;
        let heap_at_peak = peak_live + peak_live / 4;
        Run {
            trace_name: trace.into(),
            workload: trace.into(),
            allocator: allocator.into(),
            replay_threads: threads,
            repetition,
            status: "ok".into(),
            error: None,
            ops,
            wall_ns: Some((ops as f64 / ops_per_sec * 1e9).round() as u64),
            ops_per_sec: Some(ops_per_sec),
            peak_live_bytes: peak_live,
            baseline_rss_bytes: Some(8 << 20),
            peak_heap_rss_bytes: Some(heap_at_peak + 4096),
            heap_rss_at_peak_live_bytes: Some(heap_at_peak),
            frag_ratio_at_peak: Some(heap_at_peak as f64 / peak_live as f64),
            retained_heap_rss_bytes: Some(peak_live / 2),
            retained_heap_rss_1s_bytes: Some(peak_live / 4),
            minor_faults: Some(300),
            major_faults: Some(0),
        }
    }

    /// A run that crashed: no figures.
    pub fn crashed(
        trace: &str,
        allocator: &str,
        threads: u32,
        repetition: u32,
        error: &str,
    ) -> Run {
        Run {
            status: "crashed".into(),
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
            ..Run::ok(trace, allocator, threads, repetition, 1.0)
        }
    }

    /// `<trace_name>/<allocator>/t<replay_threads>/r<repetition>`.
    pub fn run_id(&self) -> String {
        format!(
            "{}/{}/t{}/r{}",
            self.trace_name, self.allocator, self.replay_threads, self.repetition
        )
    }
}

/// One row of latency.parquet.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Index into [`Results::runs`].
    pub run: usize,
    /// Op kind.
    pub op: String,
    /// Ops of this kind timed.
    pub count: u64,
    /// Mean latency.
    pub mean_ns: f64,
    /// Quantile.
    pub quantile: f64,
    /// Latency at the quantile.
    pub latency_ns: u64,
}

/// timeseries.parquet, by column.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Index into [`Results::runs`].
    pub run: Vec<u32>,
    /// `after` phase (else `replay`).
    pub after: Vec<bool>,
    /// Time since the first op.
    pub t_ns: Vec<u64>,
    /// Ops done.
    pub ops_done: Vec<u64>,
    /// Live bytes.
    pub live_bytes: Vec<u64>,
    /// RSS.
    pub rss_bytes: Vec<u64>,
    /// Heap RSS.
    pub heap_rss_bytes: Vec<i64>,
    /// Fragmentation ratio.
    pub frag_ratio: Vec<Option<f64>>,
}

impl Samples {
    /// Appends one sample.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        run: u32,
        after: bool,
        t_ns: u64,
        ops_done: u64,
        live: u64,
        rss: u64,
        heap: i64,
    ) {
        self.run.push(run);
        self.after.push(after);
        self.t_ns.push(t_ns);
        self.ops_done.push(ops_done);
        self.live_bytes.push(live);
        self.rss_bytes.push(rss);
        self.heap_rss_bytes.push(heap);
        self.frag_ratio
            .push((live > 0).then(|| heap as f64 / live as f64));
    }
}

/// The contents of one result directory.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Sweep name.
    pub sweep: String,
    /// Machine facts.
    pub machine: Machine,
    /// Runs.
    pub runs: Vec<Run>,
    /// Latency rows.
    pub latency: Vec<Latency>,
    /// Time-series samples.
    pub samples: Samples,
}

impl Results {
    /// Adds the full quantile grid for one run and op, latency at quantile q = `f(q)`.
    pub fn add_latency(&mut self, run: usize, op: &str, count: u64, f: impl Fn(f64) -> u64) {
        let mean =
            QUANTILE_GRID.iter().map(|&q| f(q) as f64).sum::<f64>() / QUANTILE_GRID.len() as f64;
        for q in QUANTILE_GRID {
            self.latency.push(Latency {
                run,
                op: op.into(),
                count,
                mean_ns: mean,
                quantile: q,
                latency_ns: f(q),
            });
        }
    }
}

fn s(name: &str, v: Vec<String>) -> Column {
    Column::new(name.into(), v)
}

/// The three frames (runs, latency, timeseries) with exactly the schema's columns and types.
pub fn frames(r: &Results) -> Result<[DataFrame; 3], Error> {
    let runs = &r.runs;
    let m = &r.machine;
    let n = runs.len();
    let rep_s = |v: &str| vec![v.to_owned(); n];
    let map_s = |f: &dyn Fn(&Run) -> String| runs.iter().map(f).collect::<Vec<String>>();
    let map_u64 = |f: &dyn Fn(&Run) -> u64| runs.iter().map(f).collect::<Vec<u64>>();
    let map_ou64 =
        |f: &dyn Fn(&Run) -> Option<u64>| runs.iter().map(f).collect::<Vec<Option<u64>>>();
    let map_u32 = |f: &dyn Fn(&Run) -> u32| runs.iter().map(f).collect::<Vec<u32>>();
    let ok = |r: &Run| r.status == "ok";
    let runs_df = DataFrame::new_infer_height(vec![
        Column::new("schema_version".into(), vec![SCHEMA_VERSION; n]),
        s("run_id", map_s(&|r| r.run_id())),
        s("sweep", rep_s(&r.sweep)),
        s(
            "trace_path",
            map_s(&|r| format!("traces/{}.trace.zst", r.trace_name)),
        ),
        s("trace_name", map_s(&|r| r.trace_name.clone())),
        s("workload", map_s(&|r| r.workload.clone())),
        Column::new("trace_threads".into(), map_u32(&|r| r.replay_threads)),
        Column::new("replay_threads".into(), map_u32(&|r| r.replay_threads)),
        s("allocator", map_s(&|r| r.allocator.clone())),
        s(
            "allocator_version",
            map_s(&|r| format!("{}-1.0", r.allocator)),
        ),
        s("allocator_options", map_s(&|_| String::new())),
        Column::new("repetition".into(), map_u32(&|r| r.repetition)),
        s("status", map_s(&|r| r.status.clone())),
        Column::new(
            "error".into(),
            runs.iter()
                .map(|r| r.error.clone())
                .collect::<Vec<Option<String>>>(),
        ),
        Column::new("ops".into(), map_u64(&|r| r.ops)),
        Column::new("ops_malloc".into(), map_u64(&|r| r.ops / 2)),
        Column::new("ops_calloc".into(), map_u64(&|_| 0)),
        Column::new("ops_realloc".into(), map_u64(&|_| 0)),
        Column::new("ops_free".into(), map_u64(&|r| r.ops - r.ops / 2)),
        Column::new("ops_aligned".into(), map_u64(&|_| 0)),
        Column::new("failed_allocations".into(), map_u64(&|_| 0)),
        Column::new("skipped_inconsistent".into(), map_u64(&|_| 0)),
        Column::new("inversions_resolved".into(), map_u64(&|_| 0)),
        Column::new("wall_ns".into(), map_ou64(&|r| r.wall_ns)),
        Column::new(
            "ops_per_sec".into(),
            runs.iter()
                .map(|r| r.ops_per_sec)
                .collect::<Vec<Option<f64>>>(),
        ),
        Column::new(
            "timed_wall_ns".into(),
            map_ou64(&|r| r.wall_ns.map(|w| w * 2)),
        ),
        Column::new("preprocess_ns".into(), map_u64(&|_| 1_000_000)),
        Column::new("replay_state_bytes".into(), map_u64(&|r| r.ops * 12)),
        Column::new("peak_live_bytes".into(), map_u64(&|r| r.peak_live_bytes)),
        Column::new("final_live_bytes".into(), map_u64(&|_| 0)),
        Column::new(
            "baseline_rss_bytes".into(),
            map_ou64(&|r| r.baseline_rss_bytes),
        ),
        Column::new(
            "peak_rss_bytes".into(),
            map_ou64(&|r| Some(r.baseline_rss_bytes? + r.peak_heap_rss_bytes?)),
        ),
        Column::new(
            "peak_heap_rss_bytes".into(),
            map_ou64(&|r| r.peak_heap_rss_bytes),
        ),
        Column::new(
            "heap_rss_at_peak_live_bytes".into(),
            map_ou64(&|r| r.heap_rss_at_peak_live_bytes),
        ),
        Column::new(
            "frag_ratio_at_peak".into(),
            runs.iter()
                .map(|r| r.frag_ratio_at_peak)
                .collect::<Vec<Option<f64>>>(),
        ),
        Column::new(
            "retained_heap_rss_bytes".into(),
            map_ou64(&|r| r.retained_heap_rss_bytes),
        ),
        Column::new(
            "retained_heap_rss_100ms_bytes".into(),
            map_ou64(&|r| r.retained_heap_rss_bytes),
        ),
        Column::new(
            "retained_heap_rss_1s_bytes".into(),
            map_ou64(&|r| r.retained_heap_rss_1s_bytes),
        ),
        Column::new("retained_heap_rss_5s_bytes".into(), map_ou64(&|_| None)),
        Column::new("minor_faults".into(), map_ou64(&|r| r.minor_faults)),
        Column::new("major_faults".into(), map_ou64(&|r| r.major_faults)),
        Column::new(
            "voluntary_ctx_switches".into(),
            map_ou64(&|r| ok(r).then_some(3)),
        ),
        Column::new(
            "involuntary_ctx_switches".into(),
            map_ou64(&|r| ok(r).then_some(1)),
        ),
        Column::new("user_cpu_ns".into(), map_ou64(&|r| r.wall_ns)),
        Column::new(
            "sys_cpu_ns".into(),
            map_ou64(&|r| r.wall_ns.map(|w| w / 10)),
        ),
        Column::new(
            "alloc_allocated_bytes".into(),
            map_ou64(&|r| ok(r).then_some(0)),
        ),
        Column::new("alloc_resident_bytes".into(), map_ou64(&|_| None)),
        Column::new(
            "alloc_stats_json".into(),
            runs.iter()
                .map(|r| ok(r).then(|| "{}".to_owned()))
                .collect::<Vec<Option<String>>>(),
        ),
        s("touch", rep_s("pages")),
        Column::new("paced".into(), vec![false; n]),
        Column::new("pinned".into(), vec![false; n]),
        Column::new(
            "started_unix_ns".into(),
            (0..n as i64)
                .map(|i| 1_760_000_000_000_000_000 + i)
                .collect::<Vec<i64>>(),
        ),
        s("host", rep_s(&m.host)),
        s("os", rep_s(&m.os)),
        s("kernel", rep_s(&m.kernel)),
        s("cpu_model", rep_s(&m.cpu_model)),
        Column::new("cpus".into(), vec![m.cpus; n]),
        s("thp_enabled", rep_s(&m.thp_enabled)),
        s("glibc_version", rep_s(&m.glibc_version)),
        s("rustc_version", rep_s(&m.rustc_version)),
        s("build_profile", rep_s(&m.build_profile)),
        s("alloclab_version", rep_s(&m.alloclab_version)),
        s("alloclab_commit", rep_s(&m.alloclab_commit)),
    ])
    .ctx("fixture runs frame")?;

    let ident = |idx: &mut dyn Iterator<Item = usize>| -> Vec<Column> {
        let idx: Vec<usize> = idx.collect();
        let k = idx.len();
        vec![
            Column::new("schema_version".into(), vec![SCHEMA_VERSION; k]),
            s("run_id", idx.iter().map(|&i| runs[i].run_id()).collect()),
            s(
                "allocator",
                idx.iter().map(|&i| runs[i].allocator.clone()).collect(),
            ),
            s(
                "trace_name",
                idx.iter().map(|&i| runs[i].trace_name.clone()).collect(),
            ),
            s(
                "workload",
                idx.iter().map(|&i| runs[i].workload.clone()).collect(),
            ),
            Column::new(
                "replay_threads".into(),
                idx.iter()
                    .map(|&i| runs[i].replay_threads)
                    .collect::<Vec<u32>>(),
            ),
            Column::new(
                "repetition".into(),
                idx.iter()
                    .map(|&i| runs[i].repetition)
                    .collect::<Vec<u32>>(),
            ),
        ]
    };

    let l = &r.latency;
    let mut cols = ident(&mut l.iter().map(|x| x.run));
    cols.extend([
        s("op", l.iter().map(|x| x.op.clone()).collect()),
        Column::new(
            "count".into(),
            l.iter().map(|x| x.count).collect::<Vec<u64>>(),
        ),
        Column::new(
            "mean_ns".into(),
            l.iter().map(|x| x.mean_ns).collect::<Vec<f64>>(),
        ),
        Column::new(
            "quantile".into(),
            l.iter().map(|x| x.quantile).collect::<Vec<f64>>(),
        ),
        Column::new(
            "latency_ns".into(),
            l.iter().map(|x| x.latency_ns).collect::<Vec<u64>>(),
        ),
    ]);
    let lat_df = DataFrame::new_infer_height(cols).ctx("fixture latency frame")?;

    let t = &r.samples;
    let mut cols = ident(&mut t.run.iter().map(|&i| i as usize));
    cols.extend([
        s(
            "phase",
            t.after
                .iter()
                .map(|&a| if a { "after" } else { "replay" }.to_owned())
                .collect(),
        ),
        Column::new("t_ns".into(), t.t_ns.clone()),
        Column::new("ops_done".into(), t.ops_done.clone()),
        Column::new("live_bytes".into(), t.live_bytes.clone()),
        Column::new("rss_bytes".into(), t.rss_bytes.clone()),
        Column::new("heap_rss_bytes".into(), t.heap_rss_bytes.clone()),
        Column::new("frag_ratio".into(), t.frag_ratio.clone()),
    ]);
    let ts_df = DataFrame::new_infer_height(cols).ctx("fixture time-series frame")?;
    Ok([runs_df, lat_df, ts_df])
}

/// Writes one frame as Parquet (zstd, like the replayer).
pub fn write_frame(path: &Path, df: &mut DataFrame) -> Result<(), Error> {
    let f = File::create(path).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetWriter::new(f)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)
        .ctx(format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes `dir/{runs,latency,timeseries}.parquet`.
pub fn write(dir: &Path, r: &Results) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let [mut a, mut b, mut c] = frames(r)?;
    write_frame(&dir.join("runs.parquet"), &mut a)?;
    write_frame(&dir.join("latency.parquet"), &mut b)?;
    write_frame(&dir.join("timeseries.parquet"), &mut c)?;
    Ok(())
}

/// A synthetic sweep: traces × allocators × threads × repetitions, spread over directories.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    /// `(trace_name, workload)`.
    pub traces: Vec<(String, String)>,
    /// Allocators.
    pub allocators: Vec<String>,
    /// Thread counts.
    pub threads: Vec<u32>,
    /// Repetitions.
    pub repetitions: u32,
    /// Time-series samples per run (replay phase; 3 `after` samples are added).
    pub samples_per_run: u32,
    /// Result directories the runs are spread over (round robin by repetition).
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

fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Writes a synthetic sweep under `root` (`root/d000`, `root/d001`, …). Deterministic.
pub fn write_synthetic(root: &Path, spec: &SynthSpec) -> Result<(), Error> {
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
                        if rep % dirs != d {
                            continue;
                        }
                        let h = mix(name_hash(trace)
                            ^ mix(name_hash(alloc))
                            ^ ((threads as u64) << 32)
                            ^ rep as u64);
                        if spec.crash_every > 0 && i.is_multiple_of(spec.crash_every as u64) {
                            let mut r = Run::crashed(
                                trace,
                                alloc,
                                threads,
                                rep,
                                "killed by signal 11 (SIGSEGV)",
                            );
                            r.workload = workload.clone();
                            res.runs.push(r);
                            continue;
                        }
                        let speed = 0.5 + 1.5 * unit(mix(name_hash(alloc)));
                        let scaling =
                            (threads as f64).powf(0.3 + 0.6 * unit(mix(name_hash(alloc) ^ 7)));
                        let tp = 8e6 * speed * scaling * (0.95 + 0.1 * unit(h));
                        let mut r = Run::ok(trace, alloc, threads, rep, tp);
                        r.workload = workload.clone();
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
        write(&root.join(format!("d{d:03}")), &res)?;
    }
    Ok(())
}
