//! The synthetic workload generators, checked on their own output read back through the
//! `traces` reader: determinism, ordering and consistency (every object freed at most once and
//! never before its allocation), each workload's sizes, alignment, cross-thread frees and peak
//! live bytes, and the errors of bad input.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use traces::inspect::{Inspector, Report};
use traces::synth::{self, Config, Params, SynthError, WORKLOADS};
use traces::{Event, Kind, MergedReader, ThreadId};

/// Generates `name` with `params` into memory.
fn generate(name: &str, params: &Params) -> Vec<u8> {
    let cfg = Config::new(name, params).unwrap();
    let (s, bytes) = synth::generate(&cfg, Vec::new(), name).unwrap();
    assert_eq!(s.bytes, bytes.len() as u64);
    bytes
}

fn params(threads: Option<u32>, ops: Option<u64>, scale: f64) -> Params {
    Params {
        threads,
        ops,
        scale,
        ..Params::default()
    }
}

#[derive(Clone, Copy)]
struct LiveObj {
    thread: ThreadId,
    size: u64,
    ts: u64,
}

/// One free (or moving realloc) of an object: who made it, who freed it, and whether the
/// maker had exited by then.
#[derive(Clone, Copy, Debug)]
struct FreeFact {
    alloc_thread: ThreadId,
    free_thread: ThreadId,
    size: u64,
    maker_exited: bool,
}

/// Everything the tests look at in one trace.
struct Facts {
    report: Report,
    header_extra: Vec<(String, String)>,
    /// Requested sizes of malloc, calloc and aligned allocations, in order.
    sizes: Vec<u64>,
    /// Allocation sizes per thread, in order.
    sizes_by_thread: HashMap<ThreadId, Vec<u64>>,
    /// (align, ptr, size, func is aligned_alloc) of aligned allocations.
    aligned: Vec<(u64, u64, u64, bool)>,
    /// (ptr, size) of every successful allocation (malloc, calloc, realloc).
    plain: Vec<(u64, u64)>,
    frees: Vec<FreeFact>,
    reallocs: u64,
    threads_started: u64,
    /// The most objects live at once (which need not be at the peak of live bytes).
    max_live: u64,
}

impl Facts {
    fn cross(&self) -> impl Iterator<Item = &FreeFact> {
        self.frees
            .iter()
            .filter(|f| f.alloc_thread != f.free_thread)
    }

    fn mean_size(&self) -> f64 {
        self.sizes.iter().sum::<u64>() as f64 / self.sizes.len() as f64
    }

    fn fraction(&self, pred: impl Fn(u64) -> bool) -> f64 {
        self.sizes.iter().filter(|&&s| pred(s)).count() as f64 / self.sizes.len() as f64
    }

    fn extra(&self, key: &str) -> &str {
        &self
            .header_extra
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("header has no {key}"))
            .1
    }
}

/// Reads `bytes` in global order and checks what holds for every synthetic trace: timestamps
/// unique and increasing per thread, each thread framed by ThreadStart/ThreadExit, no event of
/// a thread outside that frame, no inconsistency (double free, free of an unknown pointer,
/// allocation of a live address), 16-byte aligned small objects, page-aligned big blocks.
fn read(bytes: &[u8]) -> Facts {
    let reader = MergedReader::new(Cursor::new(bytes), "mem").unwrap();
    let header_extra = reader.header().extra.clone();
    assert!(reader.trailer().is_some(), "the trace is finished");
    let mut ins = Inspector::new();
    let mut live: HashMap<u64, LiveObj> = HashMap::new();
    let mut state: HashMap<ThreadId, (bool, bool, u64)> = HashMap::new(); // started, exited, last ts
    let mut exited_at: HashMap<ThreadId, u64> = HashMap::new();
    let mut f = Facts {
        report: Inspector::new().report(),
        header_extra,
        sizes: Vec::new(),
        sizes_by_thread: HashMap::new(),
        aligned: Vec::new(),
        plain: Vec::new(),
        frees: Vec::new(),
        reallocs: 0,
        threads_started: 0,
        max_live: 0,
    };
    let mut prev_ts = 0u64;
    for rec in reader {
        let r = rec.unwrap();
        ins.feed(&r);
        assert!(
            r.ts > prev_ts,
            "timestamps are unique and increasing: {} after {prev_ts}",
            r.ts
        );
        prev_ts = r.ts;
        let st = state.entry(r.thread).or_insert((false, false, 0));
        assert!(
            !st.1,
            "thread {} has an event after its ThreadExit",
            r.thread
        );
        if let Event::ThreadStart { os_tid } = r.event {
            assert!(!st.0, "thread {} started twice", r.thread);
            assert!(os_tid > 0);
            st.0 = true;
            f.threads_started += 1;
        } else {
            assert!(st.0, "thread {}'s first event is not ThreadStart", r.thread);
        }
        st.2 = r.ts;
        let mut release = |ptr: u64, thread: ThreadId, f: &mut Facts| {
            let o = live.remove(&ptr).expect("freed objects are live");
            assert!(o.ts < r.ts);
            f.frees.push(FreeFact {
                alloc_thread: o.thread,
                free_thread: thread,
                size: o.size,
                maker_exited: exited_at.get(&o.thread).is_some_and(|&t| t < r.ts),
            });
        };
        match r.event {
            Event::ThreadExit => {
                st.1 = true;
                exited_at.insert(r.thread, r.ts);
            }
            Event::Malloc { size, ptr } | Event::Calloc { size, ptr, .. } => {
                let size = if let Event::Calloc { nmemb, .. } = r.event {
                    nmemb * size
                } else {
                    size
                };
                assert_ne!(ptr, 0);
                f.sizes.push(size);
                f.sizes_by_thread.entry(r.thread).or_default().push(size);
                f.plain.push((ptr, size));
                live.insert(
                    ptr,
                    LiveObj {
                        thread: r.thread,
                        size,
                        ts: r.ts,
                    },
                );
            }
            Event::Aligned {
                func,
                align,
                size,
                ptr,
            } => {
                f.sizes.push(size);
                f.sizes_by_thread.entry(r.thread).or_default().push(size);
                f.aligned
                    .push((align, ptr, size, func == traces::AlignedFn::AlignedAlloc));
                live.insert(
                    ptr,
                    LiveObj {
                        thread: r.thread,
                        size,
                        ts: r.ts,
                    },
                );
            }
            Event::Realloc { old_ptr, size, ptr } => {
                f.reallocs += 1;
                assert!(old_ptr != 0 && ptr != 0 && size > 0);
                if ptr == old_ptr {
                    live.get_mut(&ptr).expect("resized objects are live").size = size;
                } else {
                    let o = live.remove(&old_ptr).expect("reallocated objects are live");
                    if o.thread != r.thread {
                        f.frees.push(FreeFact {
                            alloc_thread: o.thread,
                            free_thread: r.thread,
                            size: o.size,
                            maker_exited: false,
                        });
                    }
                    live.insert(
                        ptr,
                        LiveObj {
                            thread: r.thread,
                            size,
                            ts: r.ts,
                        },
                    );
                }
                f.plain.push((ptr, size));
            }
            Event::Free { ptr } => {
                assert_ne!(ptr, 0);
                release(ptr, r.thread, &mut f);
            }
            Event::Fork { .. } | Event::ThreadStart { .. } => {}
            Event::Os { .. } => panic!("synth never emits OS calls: {r:?}"),
        }
        f.max_live = f.max_live.max(live.len() as u64);
    }
    for (t, (started, exited, _)) in &state {
        assert!(*started && *exited, "thread {t} is started and exits");
    }
    f.report = ins.report();
    let bad = &f.report.inconsistencies;
    assert_eq!(bad.total(), 0, "no inconsistencies: {bad:?}");
    assert_eq!(f.report.failed_allocations, 0);
    assert_eq!(
        f.report.cross_thread_frees,
        f.cross().count() as u64,
        "the inspector and this test agree on cross-thread frees"
    );
    for &(ptr, size) in &f.plain {
        assert_eq!(ptr % 16, 0, "malloc results are 16-byte aligned");
        if size > 256 << 10 {
            assert_eq!(ptr % 4096, 0, "big blocks are page-aligned");
        }
    }
    f
}

fn within(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual / expected - 1.0).abs() <= tolerance,
        "{what}: {actual:.1}, expected {expected:.1} ± {:.0} %",
        tolerance * 100.0
    );
}

fn all_in(f: &Facts, lo: u64, hi: u64) {
    let (min, max) = (
        *f.sizes.iter().min().unwrap(),
        *f.sizes.iter().max().unwrap(),
    );
    assert!(
        lo <= min && max <= hi,
        "sizes {min}..={max} within {lo}..={hi}"
    );
}

fn no_cross(f: &Facts) {
    assert_eq!(f.report.cross_thread_frees, 0, "no cross-thread frees");
}

/// Mean, median and standard deviation of the log of a log-normal(median, sigma) truncated to
/// lo..=hi, by numeric integration on the log scale.
fn truncated_log_normal(median: f64, sigma: f64, lo: f64, hi: f64) -> (f64, f64, f64) {
    let (a, b) = (lo.ln(), hi.ln());
    let steps = 100_000;
    let y = |i: usize| a + (b - a) * (i as f64 + 0.5) / steps as f64;
    let pdf = |y: f64| (-((y - median.ln()) / sigma).powi(2) / 2.0).exp();
    let mass: f64 = (0..steps).map(|i| pdf(y(i))).sum();
    let mean = (0..steps).map(|i| pdf(y(i)) * y(i).exp()).sum::<f64>() / mass;
    let log_mean = (0..steps).map(|i| pdf(y(i)) * y(i)).sum::<f64>() / mass;
    let log_var = (0..steps)
        .map(|i| pdf(y(i)) * (y(i) - log_mean).powi(2))
        .sum::<f64>()
        / mass;
    let mut acc = 0.0;
    let mut med = hi;
    for i in 0..steps {
        acc += pdf(y(i));
        if acc >= mass / 2.0 {
            med = y(i).exp();
            break;
        }
    }
    (mean, med, log_var.sqrt())
}

// ---------------------------------------------------------------------------------------------
// Properties every workload has

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for w in WORKLOADS {
        let p = params(None, Some(20_000), 0.01);
        let a = generate(w.name, &p);
        let b = generate(w.name, &p);
        assert!(a == b, "{}: same seed, same bytes", w.name);
        let c = generate(w.name, &Params { seed: 2, ..p });
        assert!(a != c, "{}: another seed, other bytes", w.name);
    }
}

#[test]
fn the_number_of_encoder_threads_does_not_change_the_bytes() {
    // Many frames (64 Ki events each) from several threads, encoded out of order.
    for w in ["thread-local", "larson"] {
        let cfg = Config::new(w, &params(Some(5), Some(800_000), 1.0)).unwrap();
        let one = synth::generate_with_encoders(&cfg, Vec::new(), w, 1)
            .unwrap()
            .1;
        let three = synth::generate_with_encoders(&cfg, Vec::new(), w, 3)
            .unwrap()
            .1;
        assert!(one == three, "{w}: 1 and 3 encoders write the same bytes");
        let f = read(&one);
        assert!(f.report.events > 800_000);
    }
}

#[test]
fn every_workload_is_consistent_with_default_threads() {
    for w in WORKLOADS {
        // 600 ops of the main phase (large and malloc-large have fewer by default).
        let bytes = generate(w.name, &params(None, Some(30_000), 0.02));
        let f = read(&bytes);
        assert!(f.report.ops >= 600, "{}: {} ops", w.name, f.report.ops);
        assert_eq!(f.extra("synth.workload"), w.name);
        assert!(f.threads_started >= w.default_threads as u64, "{}", w.name);
    }
}

#[test]
fn every_workload_is_consistent_with_one_and_many_threads() {
    for w in WORKLOADS {
        for threads in [w.min_threads, 7] {
            let bytes = generate(w.name, &params(Some(threads), Some(20_000), 0.01));
            let f = read(&bytes);
            assert_eq!(f.extra("synth.threads"), threads.to_string(), "{}", w.name);
        }
    }
}

#[test]
fn header_is_deterministic_and_names_every_parameter() {
    let cfg = Config::new(
        "alignment64",
        &Params {
            threads: Some(3),
            ops: Some(1000),
            scale: 0.5,
            seed: 9,
            min_size: Some(100),
            max_size: Some(200),
            align: Some(128),
        },
    )
    .unwrap();
    let h = cfg.header();
    assert_eq!(h.clock, traces::Clock::Synthetic);
    assert_eq!((h.pid, h.start_unix_ns, h.host.as_str()), (0, 0, ""));
    assert!(h.writer.starts_with("alloclab-synth "));
    assert_eq!(
        h.command_line.join(" "),
        "synth alignment64 --threads 3 --ops 1000 --scale 0.5 --seed 9 --min-size 100 \
         --max-size 200 --align 128"
    );
    for (k, v) in [
        ("synth.workload", "alignment64"),
        ("synth.seed", "9"),
        ("synth.threads", "3"),
        ("synth.ops", "1000"),
        ("synth.scale", "0.5"),
        ("synth.total_ops", "500"),
        ("synth.align", "128"),
        ("synth.min_size", "100"),
        ("synth.max_size", "200"),
    ] {
        assert_eq!(h.extra(k), Some(v), "{k}");
    }
}

#[test]
fn ops_and_scale_set_the_amount_of_work() {
    for w in ["rl_small", "thread-local", "larson", "sh6bench"] {
        let a = read(&generate(w, &params(None, Some(100_000), 1.0)))
            .report
            .ops;
        let b = read(&generate(w, &params(None, Some(100_000), 2.0)))
            .report
            .ops;
        // Within a few % of the asked ops (setup and final frees come on top).
        assert!(
            (100_000..150_000).contains(&a),
            "{w}: {a} ops for --ops 100000"
        );
        within(b as f64 / a as f64, 2.0, 0.2, w);
    }
}

// ---------------------------------------------------------------------------------------------
// AllocatorBench

#[test]
fn rl_small_weighted_sizes_and_live_set() {
    let f = read(&generate("rl_small", &params(Some(4), Some(400_000), 1.0)));
    all_in(&f, 16, 512);
    no_cross(&f);
    // Each power-of-two bucket is 0.7 times as likely as the one below.
    let b1 = f.fraction(|s| s <= 32);
    let b2 = f.fraction(|s| s > 32 && s <= 64);
    let b5 = f.fraction(|s| s > 256);
    within(b2 / b1, 0.7, 0.05, "bucket ratio");
    within(b5 / b1, 0.7f64.powi(4), 0.1, "top bucket ratio");
    within(f.mean_size(), 95.05, 0.03, "mean size");
    // 65 % alloc probability fills the 4096-object live set of each thread.
    assert_eq!(f.max_live, 4 * 4096);
    within(
        f.report.peak_live_bytes as f64,
        4.0 * 4096.0 * 95.05,
        0.05,
        "peak live",
    );
}

#[test]
fn rl_medium_and_fragmentation_mix() {
    let f = read(&generate("rl_medium", &params(Some(2), Some(200_000), 1.0)));
    all_in(&f, 128, 4096);
    within(f.mean_size(), 2112.0, 0.02, "rl_medium mean");
    assert_eq!(f.max_live, 2 * 2048);
    within(
        f.report.peak_live_bytes as f64,
        2.0 * 2048.0 * 2112.0,
        0.05,
        "rl_medium peak",
    );
    no_cross(&f);

    let f = read(&generate(
        "fragmentation_mix",
        &params(Some(2), Some(200_000), 1.0),
    ));
    all_in(&f, 16, 4096);
    within(f.mean_size(), 2056.0, 0.02, "fragmentation_mix mean");
    within(
        f.report.peak_live_bytes as f64,
        2.0 * 2112.0 * 2056.0,
        0.06,
        "fragmentation_mix peak",
    );
    no_cross(&f);
}

#[test]
fn alignment64_is_aligned() {
    let f = read(&generate(
        "alignment64",
        &params(Some(2), Some(100_000), 1.0),
    ));
    assert_eq!(
        f.aligned.len(),
        f.sizes.len(),
        "every allocation is aligned"
    );
    assert!(f.plain.is_empty());
    let mut aa = 0;
    for &(align, ptr, size, aligned_alloc) in &f.aligned {
        assert_eq!(align, 64);
        assert_eq!(ptr % 64, 0, "{ptr:#x} is 64-byte aligned");
        assert!((64..=1024).contains(&size));
        if aligned_alloc {
            assert_eq!(
                size % 64,
                0,
                "aligned_alloc sizes are multiples of the alignment"
            );
            aa += 1;
        }
    }
    within(
        aa as f64 / f.aligned.len() as f64,
        0.25,
        0.06,
        "aligned_alloc share",
    );
    no_cross(&f);
    // Other alignments, including above a page.
    for align in [16u64, 256, 8192] {
        let p = Params {
            align: Some(align),
            ..params(Some(1), Some(5000), 1.0)
        };
        let f = read(&generate("alignment64", &p));
        assert!(
            f.aligned.iter().all(|a| a.0 == align && a.1 % align == 0),
            "{align}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmark-suite seed

#[test]
fn small_medium_large_batches() {
    // small at scale 0.05: 52429 objects per round, 8–64 B.
    let f = read(&generate("small", &params(None, None, 0.05)));
    all_in(&f, 8, 64);
    within(f.mean_size(), 36.0, 0.01, "small mean");
    assert_eq!(f.report.peak_live_objects, 52429);
    within(
        f.report.peak_live_bytes as f64,
        52429.0 * 36.0,
        0.01,
        "small peak",
    );
    no_cross(&f);

    let f = read(&generate("medium", &params(None, Some(100_000), 1.0)));
    all_in(&f, 1024, 65536);
    assert_eq!(f.report.peak_live_objects, 4096);
    within(
        f.report.peak_live_bytes as f64,
        4096.0 * 33280.0,
        0.03,
        "medium peak",
    );

    let f = read(&generate("large", &params(None, None, 1.0)));
    all_in(&f, 1 << 20, 4 << 20);
    assert_eq!(f.report.peak_live_objects, 128);
    within(
        f.report.peak_live_bytes as f64,
        128.0 * 2.5 * 1048576.0,
        0.12,
        "large peak",
    );
    assert!(f.plain.iter().all(|p| p.0 % 4096 == 0));
}

#[test]
fn mixed_is_log_normal() {
    let f = read(&generate("mixed", &params(None, Some(300_000), 1.0)));
    all_in(&f, 8, 65536);
    let mut s = f.sizes.clone();
    s.sort_unstable();
    let median = s[s.len() / 2] as f64;
    // Truncation at 8 B removes 8 % of the law's mass from below: the median moves to ~75 B.
    let (mean, expected_median, log_sd) = truncated_log_normal(64.0, 1.5, 8.0, 65536.0);
    within(median, expected_median, 0.03, "median");
    within(f.mean_size(), mean, 0.05, "mean");
    // The spread on the log scale: sigma, narrowed by the truncation.
    let logs: Vec<f64> = f.sizes.iter().map(|&x| (x as f64).ln()).collect();
    let m = logs.iter().sum::<f64>() / logs.len() as f64;
    let sd = (logs.iter().map(|l| (l - m).powi(2)).sum::<f64>() / logs.len() as f64).sqrt();
    within(sd, log_sd, 0.02, "log-sd");
    assert_eq!(f.report.peak_live_objects, 16384);
    within(
        f.report.peak_live_bytes as f64,
        16384.0 * mean,
        0.08,
        "peak",
    );
}

#[test]
fn churn_keeps_n_live() {
    let f = read(&generate("churn", &params(None, Some(400_000), 0.25)));
    all_in(&f, 16, 4096);
    assert_eq!(f.report.peak_live_objects, 8192);
    within(
        f.report.peak_live_bytes as f64,
        8192.0 * 2056.0,
        0.05,
        "peak",
    );
    // Subsets are random: not LIFO, not FIFO — many frees hit objects of earlier rounds.
    no_cross(&f);
}

#[test]
fn fragmentation_holes_phases() {
    let f = read(&generate(
        "fragmentation-holes",
        &params(None, Some(250_000), 1.0),
    ));
    let n = 100_000usize;
    let (holes, big) = f.sizes.split_at(n);
    assert!(holes.iter().all(|s| (16..=128).contains(s)));
    assert_eq!(big.len(), n / 4);
    assert!(
        big.iter().all(|s| (129..=512).contains(s)),
        "bigger than any hole"
    );
    // Every other small object is freed before the big ones come.
    within(
        f.report.peak_live_bytes as f64,
        n as f64 / 2.0 * 72.0 + n as f64 / 4.0 * 320.5,
        0.03,
        "peak",
    );
    assert_eq!(f.report.final_live_bytes, 0);
}

#[test]
fn thread_local_shared_pool_producer_consumer() {
    let f = read(&generate(
        "thread-local",
        &params(Some(4), Some(200_000), 1.0),
    ));
    no_cross(&f);
    within(
        f.report.peak_live_bytes as f64,
        4.0 * 1024.0 * 520.0,
        0.06,
        "thread-local peak",
    );

    let f = read(&generate(
        "shared-pool",
        &params(Some(4), Some(400_000), 1.0),
    ));
    let frees = f.frees.len() as f64;
    // Slots are taken by any thread: 3/4 of frees cross threads (the last thread out empties
    // the pool, which adds a few).
    within(
        f.report.cross_thread_frees as f64 / frees,
        0.75,
        0.04,
        "cross share",
    );
    within(
        f.report.peak_live_bytes as f64,
        16384.0 * 520.0,
        0.05,
        "shared-pool peak",
    );

    let f = read(&generate(
        "producer-consumer",
        &params(Some(5), Some(100_000), 1.0),
    ));
    // 3 producers (0, 1, 2), 2 consumers (3, 4); producer p feeds consumer 3 + p % 2.
    assert_eq!(
        f.report.cross_thread_frees,
        f.frees.len() as u64,
        "every free crosses"
    );
    for fr in &f.frees {
        assert!(
            fr.alloc_thread < 3 && fr.free_thread == 3 + fr.alloc_thread % 2,
            "{fr:?}"
        );
    }
    assert!(f.report.peak_live_bytes <= 2 * 1024 * 1024);
    assert_eq!(f.report.final_live_bytes, 0);
}

// ---------------------------------------------------------------------------------------------
// Application-like

#[test]
fn web_server_requests_and_caches() {
    let f = read(&generate(
        "web-server",
        &params(Some(3), Some(100_000), 1.0),
    ));
    let r = &f.report;
    assert!(r.by_kind["realloc"] > 0 && r.by_kind["calloc"] > 0);
    // The caches are made by main; the only cross-thread frees are of cache entries.
    let main = &f.sizes_by_thread[&0];
    let caches: u64 = main[..256].iter().sum();
    assert!(main[..256].iter().all(|s| (1024..=65536).contains(s)));
    assert!(f.report.cross_thread_frees > 0);
    for fr in f.cross() {
        assert!(
            (1024..=65536).contains(&fr.size),
            "only cache entries cross: {fr:?}"
        );
    }
    assert!(r.peak_live_bytes >= caches);
    assert!(
        r.peak_live_bytes <= caches + 3 * (16384 + 48 * 4096 + 384 + (4 << 20)) + (64 << 10) * 8
    );
    assert_eq!(r.final_live_bytes, 0);
    // Requests: many small strings.
    assert!(f.fraction(|s| s <= 64) > 0.6);
}

#[test]
fn kv_store_log_normal_values_and_compaction() {
    let f = read(&generate("kv-store", &params(Some(2), Some(600_000), 0.25)));
    let r = &f.report;
    assert!(r.by_kind["realloc"] > 0);
    // Clients delete and update what main and the other client made.
    let cross = r.cross_thread_frees as f64 / f.frees.len() as f64;
    assert!(cross > 0.4, "cross share {cross}");
    // ~77 % of 50k keys present at ~ (40 + value mean) bytes each.
    let value_mean = truncated_log_normal(200.0, 1.0, 8.0, 65536.0).0;
    let expected = 50_000.0 * (1.0 / 1.3) * (40.0 + value_mean);
    within(r.peak_live_bytes as f64, expected, 0.12, "peak");
    assert_eq!(r.final_live_bytes, 0);
}

#[test]
fn json_tree_frees_subtrees_as_units() {
    let f = read(&generate("json-tree", &params(Some(1), Some(300_000), 1.0)));
    no_cross(&f);
    let r = &f.report;
    assert!(r.by_kind["realloc"] > 0, "child vectors grow by realloc");
    let nodes = f.sizes.iter().filter(|&&s| s == 48).count() as f64;
    assert!(
        nodes / f.sizes.len() as f64 > 0.4,
        "nodes are the commonest allocation"
    );
    assert!(
        r.peak_live_bytes > 1 << 20 && r.peak_live_bytes < 16 << 20,
        "{}",
        r.peak_live_bytes
    );
    assert_eq!(r.final_live_bytes, 0);
}

// ---------------------------------------------------------------------------------------------
// mimalloc-bench stress patterns

#[test]
fn larson_crosses_only_from_replaced_threads() {
    let f = read(&generate("larson", &params(Some(3), Some(200_000), 1.0)));
    assert!(f.threads_started > 3, "threads are replaced");
    assert!(f.report.cross_thread_frees > 1000);
    for fr in f.cross() {
        assert!(
            fr.maker_exited,
            "a cross-thread free is of a predecessor's object: {fr:?}"
        );
    }
    all_in(&f, 8, 1000);
    within(
        f.report.peak_live_bytes as f64,
        3.0 * 1000.0 * 504.0,
        0.06,
        "peak",
    );
}

#[test]
fn xmalloc_allocating_threads_feed_freeing_threads() {
    let f = read(&generate("xmalloc", &params(Some(4), Some(100_000), 1.0)));
    assert_eq!(f.report.cross_thread_frees, f.frees.len() as u64);
    for fr in &f.frees {
        assert!(fr.alloc_thread < 2 && fr.free_thread >= 2, "{fr:?}");
    }
    assert!(f.report.peak_live_bytes <= (64 + 4) * 64 * 1024);
}

#[test]
fn sh6bench_lifo_and_fifo_rounds() {
    let bytes = generate("sh6bench", &params(Some(1), Some(20_000), 1.0));
    // Reconstruct the rounds: runs of allocations then runs of frees, checking the order.
    let mut allocs: Vec<u64> = Vec::new();
    let mut frees: Vec<u64> = Vec::new();
    let mut rounds = [0, 0];
    let mut check = |allocs: &mut Vec<u64>, frees: &mut Vec<u64>| {
        if frees.is_empty() {
            return;
        }
        assert_eq!(allocs.len(), frees.len());
        if *frees == *allocs {
            rounds[1] += 1;
        } else {
            allocs.reverse();
            assert_eq!(allocs, frees, "frees are FIFO or LIFO");
            rounds[0] += 1;
        }
        allocs.clear();
        frees.clear();
    };
    for rec in MergedReader::new(Cursor::new(&bytes[..]), "mem").unwrap() {
        match rec.unwrap().event {
            Event::Malloc { ptr, .. } => {
                if !frees.is_empty() {
                    check(&mut allocs, &mut frees);
                }
                allocs.push(ptr);
            }
            Event::Free { ptr } => frees.push(ptr),
            _ => {}
        }
    }
    check(&mut allocs, &mut frees);
    assert!(rounds[0] >= 4 && rounds[1] >= 4, "{rounds:?}");
    read(&bytes);
}

#[test]
fn mstress_threads_recreated_objects_survive() {
    let f = read(&generate("mstress", &params(Some(4), Some(400_000), 1.0)));
    // 5 phases of 4 workers, plus main.
    assert_eq!(f.threads_started, 21);
    let from_dead = f.cross().filter(|fr| fr.maker_exited).count();
    let from_live = f.cross().filter(|fr| !fr.maker_exited).count();
    assert!(
        from_dead > 100,
        "objects outlive their threads: {from_dead}"
    );
    assert!(
        from_live > 100,
        "transfers between running threads: {from_live}"
    );
    assert!(f.fraction(|s| s > 256 << 10) > 0.0, "rare big blocks");
    assert_eq!(f.report.final_live_bytes, 0);
}

#[test]
fn mleak_threads_exit_holding_objects() {
    let f = read(&generate("mleak", &params(Some(3), Some(120_000), 1.0)));
    // 4 phases of 3 threads, each leaving 50 objects.
    assert_eq!(f.threads_started, 12);
    assert_eq!(f.report.final_live_objects, 12 * 50);
    no_cross(&f);
}

#[test]
fn malloc_large_keeps_at_most_20() {
    let f = read(&generate("malloc-large", &params(None, Some(2000), 1.0)));
    all_in(&f, 5 << 20, 25 << 20);
    assert_eq!(f.report.peak_live_objects, 20);
    // The peak is the largest of many sums of 20 sizes: above their mean (20 × 15 MiB), below
    // 20 × 25 MiB, and about 3 standard deviations (26 MiB) above the mean.
    let peak = f.report.peak_live_bytes as f64 / 1048576.0;
    assert!(
        (300.0..=500.0).contains(&peak) && peak > 20.0 * 15.0,
        "peak {peak} MiB"
    );
    assert!(f.plain.iter().all(|p| p.0 % 4096 == 0));
}

// ---------------------------------------------------------------------------------------------
// FancyAllocator and arena seeds

#[test]
fn ring_buffer_size_mix_and_ring() {
    // Scale 0.1: rings of 10 000 slots, 4 threads, 25 000 allocations each.
    let f = read(&generate("ring-buffer", &params(None, None, 0.1)));
    assert_eq!(f.sizes.len(), 100_000);
    within(
        f.fraction(|s| (16..=256).contains(&s)),
        0.6,
        0.02,
        "small share",
    );
    within(
        f.fraction(|s| (512..=2048).contains(&s)),
        0.3,
        0.03,
        "medium share",
    );
    within(
        f.fraction(|s| (4096..=32768).contains(&s)),
        0.1,
        0.05,
        "large share",
    );
    all_in(&f, 16, 32768);
    assert_eq!(f.report.peak_live_objects, 40_000);
    within(
        f.report.peak_live_bytes as f64,
        40_000.0 * 2308.8,
        0.03,
        "peak",
    );
    no_cross(&f);
}

#[test]
fn ephemeral_ttl_lives_half_the_wheel() {
    let f = read(&generate(
        "ephemeral-ttl",
        &params(Some(2), Some(400_000), 0.1),
    ));
    all_in(&f, 16, 1024);
    // TTL uniform in 1..10 000 ticks: about 5 000 objects live per thread.
    within(
        f.report.peak_live_objects as f64,
        2.0 * 5000.0,
        0.05,
        "live objects",
    );
    within(
        f.report.peak_live_bytes as f64,
        2.0 * 5000.0 * 520.0,
        0.06,
        "peak",
    );
    no_cross(&f);
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn bad_parameters_say_what_is_valid() {
    let err = |name: &str, p: Params| match Config::new(name, &p) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{name} {p:?} is accepted"),
    };
    let e = err("nope", Params::default());
    assert!(
        e.contains("unknown workload 'nope'") && e.contains("larson"),
        "{e}"
    );
    let e = err("rl_small", params(Some(0), None, 1.0));
    assert!(
        e.starts_with("--threads 0") && e.contains("1..=1024"),
        "{e}"
    );
    let e = err("producer-consumer", params(Some(1), None, 1.0));
    assert!(e.starts_with("--threads 1") && e.contains("2..="), "{e}");
    let e = err(
        "rl_small",
        Params {
            min_size: Some(600),
            ..Params::default()
        },
    );
    assert!(e.starts_with("--min-size 600") && e.contains("max"), "{e}");
    let e = err(
        "alignment64",
        Params {
            align: Some(48),
            ..Params::default()
        },
    );
    assert!(
        e.starts_with("--align 48") && e.contains("power of two"),
        "{e}"
    );
    let e = err(
        "rl_small",
        Params {
            align: Some(64),
            ..Params::default()
        },
    );
    assert!(e.contains("applies to: alignment64"), "{e}");
    let e = err(
        "ring-buffer",
        Params {
            max_size: Some(64),
            ..Params::default()
        },
    );
    assert!(
        e.starts_with("--max-size 64") && e.contains("apply to:"),
        "{e}"
    );
    let e = err("small", params(None, Some(0), 1.0));
    assert!(e.starts_with("--ops 0"), "{e}");
    let e = err("small", params(None, None, 0.0));
    assert!(e.starts_with("--scale 0"), "{e}");
    assert!(matches!(
        Config::new("x", &Params::default()),
        Err(SynthError::UnknownWorkload { .. })
    ));
    // Names are forgiving about case and - versus _.
    assert_eq!(
        Config::new("RL-Small", &Params::default())
            .unwrap()
            .workload
            .name,
        "rl_small"
    );
}

fn synth(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_synth"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_writes_lists_and_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, err) = synth(&["nope"], d);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("valid: all, web-server"), "{err}");
    for args in [
        &["rl_small", "--threads", "0"][..],
        &["rl_small", "--min-size", "600", "--max-size", "100"],
        &["alignment64", "--align", "100"],
        &["all", "--ops", "5", "--out", "x"],
        &["all"],
    ] {
        let (code, _, err) = synth(args, d);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    }
    let (code, _, _) = synth(&["rl_small", "--threads", "x"], d);
    assert_eq!(code, 2, "clap's own errors exit with 2 too");

    let (code, out, _) = synth(&["--list"], d);
    assert_eq!(code, 0);
    for w in WORKLOADS {
        assert!(
            out.contains(&format!("{}\n    models:", w.name)),
            "{}",
            w.name
        );
    }
    let (code, _, err) = synth(&["larson", "--ops", "5000", "--seed", "3", "-q"], d);
    assert_eq!((code, err.as_str()), (0, ""));
    let bytes = std::fs::read(d.join("larson.trace.zst")).unwrap();
    let f = read(&bytes);
    assert_eq!(f.extra("synth.seed"), "3");
    // The file is the library's output, byte for byte.
    let same = generate(
        "larson",
        &Params {
            ops: Some(5000),
            seed: 3,
            ..Params::default()
        },
    );
    assert!(bytes == same);

    let (code, _, _) = synth(&["all", "--out", "suite", "--scale", "0.001", "-q"], d);
    assert_eq!(code, 0);
    for w in WORKLOADS {
        let p = d.join("suite").join(format!("{}.trace.zst", w.name));
        let f = read(&std::fs::read(&p).unwrap());
        assert_eq!(f.extra("synth.scale"), "0.001");
    }
}

#[test]
fn readme_table_matches_the_workload_table() {
    let readme = include_str!("../src/synth/README.md");
    assert!(
        readme.contains(&synth::markdown_table()),
        "src/synth/README.md's table is out of date: paste `synth --list --markdown`"
    );
}

#[test]
fn kinds_used_are_what_the_workloads_say() {
    // Only web-server, kv-store and json-tree realloc; only web-server callocs; only
    // alignment64 makes aligned allocations.
    for w in WORKLOADS {
        let f = read(&generate(w.name, &params(None, Some(20_000), 0.01)));
        let k = &f.report.by_kind;
        let has = |kind: Kind| k.get(kind.name()).copied().unwrap_or(0) > 0;
        assert_eq!(
            has(Kind::Realloc),
            ["web-server", "kv-store", "json-tree"].contains(&w.name),
            "{}",
            w.name
        );
        assert_eq!(has(Kind::Calloc), w.name == "web-server", "{}", w.name);
        assert_eq!(
            has(Kind::PosixMemalign),
            w.name == "alignment64",
            "{}",
            w.name
        );
    }
}

/// The README's workload table states each workload's peak live bytes at its defaults; this
/// checks every row on a trace generated at the defaults (`ops`, `threads`, `scale` 1, seed
/// 1). "≈" rows must be within 12 %, "≤" rows at most the bound.
#[test]
fn peak_live_bytes_at_the_defaults_are_the_readme_table() {
    const MB: f64 = 1e6;
    // (workload, README figure in bytes, whether the README gives an upper bound).
    let table: &[(&str, f64, bool)] = &[
        ("web-server", 10.7 * MB, false),
        ("kv-store", 57.0 * MB, false),
        ("json-tree", 2.7 * MB, false),
        ("rl_small", 1.6 * MB, false),
        ("rl_medium", 17.0 * MB, false),
        ("fragmentation_mix", 17.0 * MB, false),
        ("alignment64", 0.6 * MB, false),
        ("small", 38.0 * MB, false),
        ("medium", 136.0 * MB, false),
        ("large", 360.0 * MB, false),
        ("mixed", 4.0 * MB, false),
        ("churn", 67.0 * MB, false),
        ("fragmentation-holes", 116.0 * MB, false),
        ("thread-local", 2.1 * MB, false),
        ("producer-consumer", 1.1 * MB, false),
        ("shared-pool", 8.5 * MB, false),
        ("larson", 2.0 * MB, false),
        ("xmalloc", 2.3 * MB, false),
        ("sh6bench", 4.0 * MB, true),
        ("mstress", 13.0 * MB, false),
        ("mleak", 10.0 * MB, false),
        ("malloc-large", 400.0 * MB, false),
        ("ring-buffer", 924.0 * MB, false),
        ("ephemeral-ttl", 104.0 * MB, false),
    ];
    let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
    let mut covered: Vec<&str> = table.iter().map(|t| t.0).collect();
    covered.sort_unstable();
    let mut all = names.clone();
    all.sort_unstable();
    assert_eq!(covered, all, "one row per workload");
    let mut failures = Vec::new();
    for &(name, expected, at_most) in table {
        let t = std::time::Instant::now();
        let bytes = generate(name, &Params::default());
        let gen_s = t.elapsed().as_secs_f64();
        let mut ins = Inspector::new();
        for r in MergedReader::new(Cursor::new(&bytes[..]), name).unwrap() {
            ins.feed(&r.unwrap());
        }
        let peak = ins.report().peak_live_bytes as f64;
        eprintln!(
            "{name:<20} peak live {:>8.2} MB (README {:.1} MB); generated in {gen_s:.2} s, read in \
             {:.2} s",
            peak / MB,
            expected / MB,
            t.elapsed().as_secs_f64() - gen_s
        );
        let ok = if at_most {
            peak <= expected && peak > expected / 4.0
        } else {
            (peak - expected).abs() <= 0.12 * expected
        };
        if !ok {
            failures.push(format!(
                "{name}: {:.2} MB, README {:.1} MB",
                peak / MB,
                expected / MB
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
