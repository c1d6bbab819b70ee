//! The replay results schema (replayer/SCHEMA.md), in one place: the schema version, the four
//! files' row structs and column tables (name, type, nullability, doc), the run [`Status`], the
//! [`Workload`] and trace identity ([`TraceId`]), the latency quantile grid, and the
//! [`summary`] rule (median per trace × threads × allocator and its ratios).
//!
//! `replay` writes its rows with it, `analyze` reads with its column tables, and the replay's
//! terminal table and `analyze`'s summary use the same rule. It depends on serde only: no
//! polars, no arrow.

#![deny(missing_docs)]

#[macro_use]
mod columns;
pub mod fidelity;
pub mod heapmap;
pub mod summary;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use columns::{Cell, Col, ColumnType, Row, Ty};

/// The schema version the rows follow (the `schema_version` column).
pub const SCHEMA_VERSION: u32 = 1;

/// The quantile grid of latency.parquet: each timed op kind has one row per quantile
/// (0 is the minimum, 1.0 the maximum).
pub const QUANTILES: [f64; 17] = [
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

/// The op kinds of latency.parquet's `op` column, in the schema's order.
pub const OPS: [&str; 5] = ["malloc", "calloc", "realloc", "free", "aligned"];

/// The allocator the ratios `vs system` are taken against (glibc's malloc).
pub const BASELINE_ALLOCATOR: &str = "system";

/// How a run ended (the `status` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// Every status, in the schema's order.
    pub const ALL: [Status; 4] = [Status::Ok, Status::Crashed, Status::Timeout, Status::Failed];

    /// The name in runs.parquet.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Crashed => "crashed",
            Status::Timeout => "timeout",
            Status::Failed => "failed",
        }
    }

    /// The status of a name in runs.parquet; `None` for anything else.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Whether the run's figures count.
    pub fn is_ok(self) -> bool {
        self == Status::Ok
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Status::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown status {s:?} (expected ok, crashed, timeout or failed)"
            ))
        })
    }
}

/// What made a trace: a synthetic workload or a recorded program (the `workload` column, written
/// as the workload's name or `recorded:<program>`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// A recorded program (the basename of its command).
    Recorded(String),
    /// A synthetic workload (`synth.workload` of the trace's header).
    Synthetic(String),
}

impl Workload {
    const RECORDED: &'static str = "recorded:";

    /// The workload a `workload` column value names.
    pub fn parse(s: &str) -> Workload {
        match s.strip_prefix(Self::RECORDED) {
            Some(p) => Workload::Recorded(p.to_owned()),
            None => Workload::Synthetic(s.to_owned()),
        }
    }

    /// Whether the trace was recorded from a real program.
    pub fn is_recorded(&self) -> bool {
        matches!(self, Workload::Recorded(_))
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Recorded(p) => write!(f, "{}{p}", Self::RECORDED),
            Workload::Synthetic(w) => f.write_str(w),
        }
    }
}

impl From<&str> for Workload {
    fn from(s: &str) -> Workload {
        Workload::parse(s)
    }
}

impl Serialize for Workload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Workload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Workload::parse(&String::deserialize(d)?))
    }
}

/// Which trace a run replayed: its short name and the hash of its bytes. Two traces with the
/// same name (the lab's `t1/larson.trace.zst` and `t2/larson.trace.zst`) are different traces
/// when their hashes differ, and their runs are never pooled.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceId {
    /// `trace_name`.
    pub name: String,
    /// `trace_hash`; `None` for results written before the column existed.
    pub hash: Option<String>,
}

/// The `trace_hash` of a trace file's bytes: XXH64 (seed 0), 16 lowercase hex digits.
pub fn trace_hash_hex(xxh64: u64) -> String {
    format!("{xxh64:016x}")
}

/// `trace_hash` of the file at `path`: XXH64 of its bytes, as [`trace_hash_hex`] (one
/// sequential read of the file).
pub fn trace_hash_of_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::hash::Hasher as _;
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut h = twox_hash::XxHash64::with_seed(0);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    Ok(trace_hash_hex(h.finish()))
}

/// The files of a result directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum File {
    /// `runs.parquet`: one row per run.
    Runs,
    /// `latency.parquet`: per run, op kind and quantile.
    Latency,
    /// `timeseries.parquet`: samples over time.
    Timeseries,
    /// `introspection.parquet`: the allocator's own statistics over time.
    Introspection,
}

impl File {
    /// All files, in the order they are read.
    pub const ALL: [File; 4] = [
        File::Runs,
        File::Latency,
        File::Timeseries,
        File::Introspection,
    ];

    /// The file name inside a result directory.
    pub fn file_name(self) -> &'static str {
        match self {
            File::Runs => "runs.parquet",
            File::Latency => "latency.parquet",
            File::Timeseries => "timeseries.parquet",
            File::Introspection => "introspection.parquet",
        }
    }

    /// The file's columns, in order.
    pub fn columns(self) -> &'static [Col] {
        match self {
            File::Runs => RunRow::COLUMNS,
            File::Latency => LatencyRow::COLUMNS,
            File::Timeseries => SampleRow::COLUMNS,
            File::Introspection => IntrospectionRow::COLUMNS,
        }
    }

    /// The columns without which a reader cannot use the file (they identify a row).
    pub fn required(self) -> &'static [&'static str] {
        match self {
            File::Runs => &[
                "run_id",
                "trace_name",
                "replay_threads",
                "allocator",
                "status",
            ],
            File::Latency => &["run_id", "op", "quantile", "latency_ns"],
            File::Timeseries => &["run_id", "t_ns"],
            File::Introspection => &["run_id", "t_ns", "metric", "value"],
        }
    }
}

rows! {
    /// One row of runs.parquet: one allocator replaying one trace once, in its own child.
    pub struct RunRow {
        /// 1
        pub schema_version: u32,
        /// unique within the sweep: `<trace_name>/<allocator>/t<replay_threads>/r<repetition>`
        pub run_id: String,
        /// name of the sweep
        pub sweep: String,
        /// the trace file as given
        pub trace_path: String,
        /// short name: the file stem
        pub trace_name: String,
        /// XXH64 of the trace file's bytes, 16 hex digits: what identifies the trace
        pub trace_hash: String,
        /// the parameters that made the trace, where known
        pub trace_params: String,
        /// the `synth.workload` of a synthetic trace, else `recorded:<program>`
        pub workload: Workload,
        /// threads in the trace
        pub trace_threads: u32,
        /// most traced threads alive at once
        pub trace_peak_threads: u32,
        /// replay threads used
        pub replay_threads: u32,
        /// most replay threads alive at once during the untimed pass
        pub peak_replay_threads: Option<u32>,
        /// adapter name
        pub allocator: String,
        /// version of the allocator library
        pub allocator_version: String,
        /// options in effect
        pub allocator_options: String,
        /// 0-based repetition number
        pub repetition: u32,
        /// `ok`, `crashed`, `timeout`, `failed`
        pub status: Status,
        /// for a run that is not `ok`: what happened
        pub error: Option<String>,
        /// ops replayed
        pub ops: u64,
        /// malloc ops replayed
        pub ops_malloc: u64,
        /// calloc ops replayed
        pub ops_calloc: u64,
        /// realloc ops replayed
        pub ops_realloc: u64,
        /// free ops replayed
        pub ops_free: u64,
        /// aligned allocation ops replayed
        pub ops_aligned: u64,
        /// allocation calls that returned NULL during the replay
        pub failed_allocations: u64,
        /// trace events skipped as inconsistent
        pub skipped_inconsistent: u64,
        /// address-reuse inversions resolved during preprocessing
        pub inversions_resolved: u64,
        /// wall time of the untimed pass
        pub wall_ns: Option<u64>,
        /// `ops / wall_ns × 1e9`
        pub ops_per_sec: Option<f64>,
        /// wall time of the timed pass
        pub timed_wall_ns: Option<u64>,
        /// time to turn the trace into op arrays
        pub preprocess_ns: u64,
        /// bytes of op arrays + slot table
        pub replay_state_bytes: u64,
        /// largest live bytes during the replay
        pub peak_live_bytes: u64,
        /// live bytes after the last op
        pub final_live_bytes: u64,
        /// largest live bytes the untimed pass really reached
        pub measured_peak_live_bytes: Option<u64>,
        /// RSS after preprocessing, before the first op
        pub baseline_rss_bytes: Option<u64>,
        /// largest RSS seen by the sampler
        pub peak_rss_bytes: Option<u64>,
        /// `peak_rss_bytes − baseline_rss_bytes`
        pub peak_heap_rss_bytes: Option<u64>,
        /// heap RSS sampled closest to the moment of peak live bytes
        pub heap_rss_at_peak_live_bytes: Option<u64>,
        /// heap RSS at peak live / live bytes at that moment
        pub frag_ratio_at_peak: Option<f64>,
        /// the allocator's usable size summed over the blocks live at the trace's peak op
        pub usable_bytes_at_peak: Option<u64>,
        /// the requested sizes of the same blocks
        pub requested_bytes_at_peak: Option<u64>,
        /// `usable_bytes_at_peak / requested_bytes_at_peak`
        pub overhead_ratio: Option<f64>,
        /// heap RSS right after the last op
        pub retained_heap_rss_bytes: Option<u64>,
        /// heap RSS 0.1 s after the last op
        pub retained_heap_rss_100ms_bytes: Option<u64>,
        /// heap RSS 1 s after the last op
        pub retained_heap_rss_1s_bytes: Option<u64>,
        /// heap RSS 5 s after the last op
        pub retained_heap_rss_5s_bytes: Option<u64>,
        /// minor page faults of the child during the replay
        pub minor_faults: Option<u64>,
        /// major page faults of the child during the replay
        pub major_faults: Option<u64>,
        /// voluntary context switches of the child
        pub voluntary_ctx_switches: Option<u64>,
        /// involuntary context switches of the child
        pub involuntary_ctx_switches: Option<u64>,
        /// user CPU time of the child
        pub user_cpu_ns: Option<u64>,
        /// system CPU time of the child
        pub sys_cpu_ns: Option<u64>,
        /// smaps_rollup Rss when the trace's peak-live op is done
        pub smaps_rss_at_peak_bytes: Option<u64>,
        /// smaps_rollup Pss at that moment
        pub smaps_pss_at_peak_bytes: Option<u64>,
        /// smaps_rollup Anonymous at that moment
        pub smaps_anonymous_at_peak_bytes: Option<u64>,
        /// smaps_rollup AnonHugePages at that moment
        pub anon_huge_pages_at_peak_bytes: Option<u64>,
        /// smaps_rollup Rss after the last thread is joined
        pub smaps_rss_end_bytes: Option<u64>,
        /// smaps_rollup Pss at the end
        pub smaps_pss_end_bytes: Option<u64>,
        /// smaps_rollup Anonymous at the end
        pub smaps_anonymous_end_bytes: Option<u64>,
        /// smaps_rollup AnonHugePages at the end
        pub anon_huge_pages_end_bytes: Option<u64>,
        /// smaps_rollup and statm differ by more than a page per MiB
        pub rss_sources_disagree: Option<bool>,
        /// per replay thread, the CPUs it was seen on
        pub replay_thread_cpus: Option<String>,
        /// changes of CPU seen, all replay threads
        pub cpu_changes_seen: Option<u64>,
        /// perf_event_open: page faults during the loop (all threads)
        pub perf_page_faults: Option<u64>,
        /// perf: context switches during the loop
        pub perf_context_switches: Option<u64>,
        /// perf: CPU migrations during the loop
        pub perf_cpu_migrations: Option<u64>,
        /// perf: instructions retired during the loop
        pub perf_instructions: Option<u64>,
        /// perf: CPU cycles during the loop
        pub perf_cycles: Option<u64>,
        /// perf: cache misses during the loop
        pub perf_cache_misses: Option<u64>,
        /// perf: dTLB load misses during the loop
        pub perf_dtlb_load_misses: Option<u64>,
        /// the counters that could not count, with the reason
        pub perf_unavailable: Option<String>,
        /// kernel syscall tracepoint: mmap calls during the loop
        pub kernel_mmap_calls: Option<u64>,
        /// kernel syscall tracepoint: munmap calls during the loop
        pub kernel_munmap_calls: Option<u64>,
        /// kernel syscall tracepoint: mremap calls during the loop
        pub kernel_mremap_calls: Option<u64>,
        /// kernel syscall tracepoint: brk calls during the loop
        pub kernel_brk_calls: Option<u64>,
        /// kernel syscall tracepoint: madvise calls during the loop
        pub kernel_madvise_calls: Option<u64>,
        /// mmap calls the allocator made through the exported symbol during the loop
        pub os_mmap_calls: Option<u64>,
        /// munmap calls the allocator made through the exported symbol during the loop
        pub os_munmap_calls: Option<u64>,
        /// mremap calls the allocator made through the exported symbol during the loop
        pub os_mremap_calls: Option<u64>,
        /// brk calls the allocator made through the exported symbol during the loop
        pub os_brk_calls: Option<u64>,
        /// madvise calls the allocator made through the exported symbol during the loop
        pub os_madvise_calls: Option<u64>,
        /// bytes of those mmap calls
        pub os_mmap_bytes: Option<u64>,
        /// bytes of those munmap calls
        pub os_munmap_bytes: Option<u64>,
        /// bytes of those mremap calls
        pub os_mremap_bytes: Option<u64>,
        /// bytes of those brk calls
        pub os_brk_bytes: Option<u64>,
        /// bytes of those madvise calls
        pub os_madvise_bytes: Option<u64>,
        /// time inside those mmap calls
        pub os_mmap_ns: Option<u64>,
        /// time inside those munmap calls
        pub os_munmap_ns: Option<u64>,
        /// time inside those mremap calls
        pub os_mremap_ns: Option<u64>,
        /// time inside those brk calls
        pub os_brk_ns: Option<u64>,
        /// time inside those madvise calls
        pub os_madvise_ns: Option<u64>,
        /// madvise by advice: `advice=calls/bytes`
        pub os_madvise_advice: Option<String>,
        /// OS memory calls that failed
        pub os_calls_failed: Option<u64>,
        /// bytes mapped minus bytes unmapped during the loop
        pub os_net_mapped_bytes: Option<i64>,
        /// CPU frequency governor
        pub cpu_governor: Option<String>,
        /// CPU boost (turbo) state
        pub cpu_boost: Option<String>,
        /// allocator-reported bytes in use at the end
        pub alloc_allocated_bytes: Option<u64>,
        /// allocator-reported resident bytes at the end
        pub alloc_resident_bytes: Option<u64>,
        /// all allocator-reported figures as a JSON object
        pub alloc_stats_json: Option<String>,
        /// touch policy
        pub touch: String,
        /// whether `--pace` honoured the trace's timing
        pub paced: bool,
        /// `--order`: `deps`, `window:K` or `strict`
        pub order: String,
        /// whether replay threads were pinned to CPUs
        pub pinned: bool,
        /// `--thp`: `system`, `never`, `madvise` or `always`
        pub thp: String,
        /// with `--until-stable`: whether this allocator's cell reached the target spread
        pub stable: Option<bool>,
        /// when the run started
        pub started_unix_ns: i64,
        /// host name
        pub host: String,
        /// the distribution
        pub os: String,
        /// `uname -r`
        pub kernel: String,
        /// CPU model
        pub cpu_model: String,
        /// online CPUs
        pub cpus: u32,
        /// transparent huge pages mode
        pub thp_enabled: String,
        /// glibc version
        pub glibc_version: String,
        /// compiler that built `replay`
        pub rustc_version: String,
        /// cargo profile and flags that built `replay`
        pub build_profile: String,
        /// crate version
        pub alloclab_version: String,
        /// git commit of the build
        pub alloclab_commit: String,
    }
}

impl RunRow {
    /// The trace this run replayed.
    pub fn trace_id(&self) -> TraceId {
        TraceId {
            name: self.trace_name.clone(),
            hash: Some(self.trace_hash.clone()),
        }
    }
}

rows! {
    /// One row of latency.parquet: one run's latency of one op kind at one quantile.
    pub struct LatencyRow {
        /// 1
        pub schema_version: u32,
        /// as in runs
        pub run_id: String,
        /// as in runs
        pub allocator: String,
        /// as in runs
        pub trace_name: String,
        /// as in runs
        pub workload: Workload,
        /// as in runs
        pub replay_threads: u32,
        /// as in runs
        pub repetition: u32,
        /// op kind
        pub op: String,
        /// ops of this kind timed
        pub count: u64,
        /// mean latency of this kind
        pub mean_ns: f64,
        /// the quantile
        pub quantile: f64,
        /// latency at that quantile
        pub latency_ns: u64,
    }
}

rows! {
    /// One row of timeseries.parquet: one sample of one run.
    pub struct SampleRow {
        /// 1
        pub schema_version: u32,
        /// as in runs
        pub run_id: String,
        /// as in runs
        pub allocator: String,
        /// as in runs
        pub trace_name: String,
        /// as in runs
        pub workload: Workload,
        /// as in runs
        pub replay_threads: u32,
        /// as in runs
        pub repetition: u32,
        /// `replay` during the ops, `after` once the last op is done
        pub phase: String,
        /// time since the first op
        pub t_ns: u64,
        /// ops completed by all threads so far
        pub ops_done: u64,
        /// live bytes at the sample
        pub live_bytes: u64,
        /// process RSS
        pub rss_bytes: u64,
        /// `rss_bytes − baseline_rss_bytes`
        pub heap_rss_bytes: i64,
        /// `heap_rss_bytes / live_bytes`
        pub frag_ratio: Option<f64>,
        /// OS memory calls the allocator made so far (0 where not seen)
        pub os_calls: u64,
        /// bytes mapped minus unmapped so far
        pub os_net_mapped_bytes: i64,
        /// bytes advised (madvise) so far
        pub os_advised_bytes: u64,
    }
}

rows! {
    /// One row of introspection.parquet: one figure of one reading of the allocator's own
    /// statistics (long format: allocators report different figures, and arenas or size classes
    /// come and go).
    pub struct IntrospectionRow {
        /// 1
        pub schema_version: u32,
        /// as in runs
        pub run_id: String,
        /// as in runs
        pub allocator: String,
        /// as in runs
        pub trace_name: String,
        /// as in runs
        pub workload: Workload,
        /// as in runs
        pub replay_threads: u32,
        /// as in runs
        pub repetition: u32,
        /// `replay` during the ops, `after` once the last op is done (every replay thread joined)
        pub phase: String,
        /// the reading's number within the run (0, 1, … in time order)
        pub sample: u32,
        /// time since the first op
        pub t_ns: u64,
        /// the figure's name, unit in the name (`_bytes`; plain counts otherwise)
        pub metric: String,
        /// what the figure is for: arena number, size-class block size or size bucket (see the metric); null for the whole allocator
        pub key: Option<i64>,
        /// the figure
        pub value: i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip_and_nothing_else_parses() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.name()), Some(s));
            let j = serde_json::to_string(&s).unwrap();
            assert_eq!(j, format!("\"{}\"", s.name()));
            assert_eq!(serde_json::from_str::<Status>(&j).unwrap(), s);
        }
        assert_eq!(Status::parse("OK"), None);
        assert!(serde_json::from_str::<Status>("\"fine\"").is_err());
    }

    #[test]
    fn workloads_round_trip_through_their_column_text() {
        for (text, w) in [
            ("rl_small", Workload::Synthetic("rl_small".into())),
            ("recorded:python3", Workload::Recorded("python3".into())),
            ("recorded:", Workload::Recorded(String::new())),
        ] {
            assert_eq!(Workload::parse(text), w);
            assert_eq!(w.to_string(), text);
            assert_eq!(w.is_recorded(), text.starts_with("recorded"));
            let j = serde_json::to_string(&w).unwrap();
            assert_eq!(serde_json::from_str::<Workload>(&j).unwrap(), w);
        }
    }

    /// Every row's cells have its columns' types, nulls only where the column is nullable.
    fn check<R: Row>(r: &R) {
        let cells = r.cells();
        assert_eq!(cells.len(), R::COLUMNS.len());
        for (c, v) in R::COLUMNS.iter().zip(&cells) {
            let ty = match v {
                Cell::Null => {
                    assert!(c.nullable, "{} is null but not nullable", c.name);
                    continue;
                }
                Cell::U32(_) => Ty::U32,
                Cell::U64(_) => Ty::U64,
                Cell::I64(_) => Ty::I64,
                Cell::F64(_) => Ty::F64,
                Cell::Bool(_) => Ty::Bool,
                Cell::Str(_) => Ty::Str,
            };
            assert_eq!(ty, c.ty, "{}", c.name);
            assert!(!c.doc.trim().is_empty(), "{} has no doc", c.name);
        }
    }

    #[test]
    fn cells_follow_the_column_tables() {
        let l = LatencyRow {
            schema_version: SCHEMA_VERSION,
            run_id: "t/system/t1/r0".into(),
            allocator: "system".into(),
            trace_name: "t".into(),
            workload: Workload::parse("recorded:ls"),
            replay_threads: 1,
            repetition: 0,
            op: "malloc".into(),
            count: 3,
            mean_ns: 1.5,
            quantile: 0.99,
            latency_ns: 7,
        };
        check(&l);
        assert_eq!(l.cells()[4], Cell::Str("recorded:ls".into()));
        let s = SampleRow {
            schema_version: SCHEMA_VERSION,
            run_id: l.run_id.clone(),
            allocator: "system".into(),
            trace_name: "t".into(),
            workload: Workload::parse("w"),
            replay_threads: 1,
            repetition: 0,
            phase: "replay".into(),
            t_ns: 1,
            ops_done: 2,
            live_bytes: 3,
            rss_bytes: 4,
            heap_rss_bytes: -5,
            frag_ratio: None,
            os_calls: 2,
            os_net_mapped_bytes: -4096,
            os_advised_bytes: 0,
        };
        check(&s);
        for f in File::ALL {
            let names: Vec<&str> = f.columns().iter().map(|c| c.name).collect();
            for r in f.required() {
                assert!(
                    names.contains(r),
                    "{r} is not a column of {}",
                    f.file_name()
                );
            }
            let mut uniq = names.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), names.len(), "{}", f.file_name());
        }
        assert_eq!(File::Runs.columns()[0].name, "schema_version");
        assert_eq!(
            File::Runs
                .columns()
                .iter()
                .find(|c| c.name == "status")
                .map(|c| (c.ty, c.nullable)),
            Some((Ty::Str, false))
        );
    }
}
