//! The workload table and what the generators share.
//!
//! One file per family of workloads: `allocbench.rs` (AllocatorBench), `suite.rs` (the
//! benchmark-suite milestones 1–3), `apps.rs` and `json.rs` (its milestone 4), `stress.rs`
//! (mimalloc-bench's stress patterns), `expiry.rs` (objects freed by age: the FancyAllocator
//! seed's ring buffer and the arena seed's time-to-live scenario).

pub(crate) mod allocbench;
pub(crate) mod apps;
pub(crate) mod expiry;
pub(crate) mod json;
pub(crate) mod stress;
pub(crate) mod suite;

use super::Workload;
use super::out::Ctx;
use crate::event::ThreadId;

/// A live object as generators keep it: address and requested size (`ptr == 0`: empty slot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Obj {
    pub(crate) ptr: u64,
    pub(crate) size: u64,
}

impl Obj {
    pub(crate) const NONE: Obj = Obj { ptr: 0, size: 0 };
}

/// The threshold a uniform `u64` falls below with probability `p`.
pub(crate) fn prob(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * 18_446_744_073_709_551_616.0).min(u64::MAX as f64) as u64
}

/// Thread `i`'s share of `total` split over `n` threads.
pub(crate) fn share(total: u64, n: u32, i: u32) -> u64 {
    total / n as u64 + ((i as u64) < total % n as u64) as u64
}

/// Asks the CPU to bring `r` into the cache: generators that touch big tables at random draw
/// their indices a few steps ahead and prefetch, so the generator is not bound by memory latency.
#[inline(always)]
pub(crate) fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint and cannot fault; `r` is a valid reference anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // Both ends: a small struct may straddle two cache lines.
        let p = (r as *const T).cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(p);
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(size_of::<T>().saturating_sub(1)));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Starts threads `0..n`, 10 µs apart (thread creation).
pub(crate) fn start_all(ctx: &mut Ctx, n: u32) {
    for t in 0..n as ThreadId {
        if t > 0 {
            ctx.out.pause(10_000);
        }
        ctx.start(t);
    }
}

const NO_CROSS: &str = "none";

/// Every workload, in `synth --list` order.
pub static WORKLOADS: &[Workload] = &[
    Workload {
        name: "web-server",
        models: "HTTP workers: per request a read buffer, many small header strings, a zeroed \
                 context, a response grown by realloc, all freed at request end; long-lived \
                 caches (benchmark-suite seed, milestone 4)",
        sizes: "request 8 or 16 KiB; headers 2 strings each (4–32 B, log-normal median 24 B); \
                context calloc 384 B; response 512 B doubled by realloc to a log-normal body \
                (median 2 KiB, σ 1.5, 64 B–2 MiB); 256 cache entries 1–64 KiB",
        lifetimes: "request objects: one request (~50 ops); caches: whole run, one request in 32 \
                    replaces a random entry",
        threads: "thread 0 = main (caches, shutdown), 1..=N workers, 0–20 µs idle between requests",
        cross_thread: "cache replacements of entries made by main or another worker; main's \
                       shutdown frees of workers' entries",
        peak_live: "≈ 10.7 MB (caches ≈ 8.5 MB, plus requests in flight and big responses)",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: None,
        align: None,
        run: apps::web_server,
    },
    Workload {
        name: "kv-store",
        models: "key-value store: main loads half the key space, clients insert/update \
                 (realloc)/delete/read random keys; every 250k ops a compaction frees 5 % of \
                 the key space in one burst (benchmark-suite seed, milestone 4)",
        sizes: "keys 16–64 B uniform; values log-normal median 200 B, σ 1.0, 8 B–64 KiB; reads \
                copy a value into a temporary",
        lifetimes: "long: a key lives until deleted (30 % of hits) or compacted; reads' \
                    temporaries: one op",
        threads: "thread 0 = main (load, shutdown), 1..=N clients on one shared store",
        cross_thread: "deletes, updates and compactions of entries another thread made \
                       (≈ (N−1)/N of them, plus all of main's shutdown)",
        peak_live: "≈ 57 MB (200k keys × ~77 % present × ~370 B)",
        scales: "key space (200k)",
        default_threads: 2,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: None,
        align: None,
        run: apps::kv_store,
    },
    Workload {
        name: "json-tree",
        models: "JSON parsing: documents built in parse order (48 B nodes, strings, keys, child \
                 vectors grown by realloc), 128 live per thread; a new one replaces a random old \
                 one, or (30 %) a random subtree is freed and a new one parsed (benchmark-suite \
                 seed, milestone 4)",
        sizes: "nodes 48 B; strings log-normal median 12 B (1 B–4 KiB); keys median 8 B \
                (2–64 B); child vectors 4, 8, 16… entries of 16 B (objects) or 8 B (arrays)",
        lifetimes: "documents ≈ 128 documents' parses; subtrees freed as units, children before \
                    parents",
        threads: "0..N, each with its own documents",
        cross_thread: NO_CROSS,
        peak_live: "≈ 2.7 MB per thread",
        scales: "nothing else",
        default_threads: 1,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: None,
        align: None,
        run: json::json_tree,
    },
    Workload {
        name: "rl_small",
        models: "RL/inference small tensors: high churn, each op allocates with probability \
                 0.65 (live set capped at 4096 per thread) else frees a random live object \
                 (AllocatorBench report)",
        sizes: "16–512 B weighted: power-of-two buckets [16,32], (32,64], …, each 0.7× as likely \
                as the one below, uniform inside (mean 95 B)",
        lifetimes: "random (uniform choice among live objects), live set ≈ 4096",
        threads: "0..N, independent",
        cross_thread: NO_CROSS,
        peak_live: "≈ 4096 × 95 B × N = 1.6 MB at N = 4",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 16_000_000,
        size_range: Some((16, 512)),
        align: None,
        run: allocbench::rl_small,
    },
    Workload {
        name: "rl_medium",
        models: "RL/inference activations: moderate churn, allocation probability 0.55, live \
                 set capped at 2048 per thread (AllocatorBench report)",
        sizes: "128–4096 B uniform",
        lifetimes: "random, live set ≈ 2048",
        threads: "0..N, independent",
        cross_thread: NO_CROSS,
        peak_live: "≈ 2048 × 2112 B × N = 17 MB at N = 4",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: Some((128, 4096)),
        align: None,
        run: allocbench::rl_medium,
    },
    Workload {
        name: "fragmentation_mix",
        models: "fragmentation stress with mixed lifetimes: 75 % of allocations short-lived \
                 (a 64-slot FIFO), 25 % long-lived (a 2048-slot pool replaced at random) \
                 (AllocatorBench report)",
        sizes: "16–4096 B uniform",
        lifetimes: "short: 64 short allocations (~85 ops); long: geometric, mean 8192 allocations",
        threads: "0..N, independent",
        cross_thread: NO_CROSS,
        peak_live: "≈ 2112 × 2056 B × N = 17 MB at N = 4",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: Some((16, 4096)),
        align: None,
        run: allocbench::fragmentation_mix,
    },
    Workload {
        name: "alignment64",
        models: "SIMD vector kernels: 256 long-lived aligned weight buffers per thread, then \
                 kernels of 2–6 aligned scratch buffers freed LIFO; one kernel in 16 replaces a \
                 weight (AllocatorBench report)",
        sizes: "64–1024 B uniform, aligned to 64 B: posix_memalign 3/4, aligned_alloc 1/4 \
                (size rounded up to the alignment)",
        lifetimes: "scratch: one kernel (4–12 ops); weights: whole run",
        threads: "0..N, independent",
        cross_thread: NO_CROSS,
        peak_live: "≈ 262 × 544 B × N = 0.6 MB at N = 4",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: Some((64, 1024)),
        align: Some(64),
        run: allocbench::alignment64,
    },
    Workload {
        name: "small",
        models: "millions of small objects: allocate 1M, free them in random order, repeat \
                 (benchmark-suite seed, milestone 1)",
        sizes: "8–64 B uniform",
        lifetimes: "one round: all allocated, then all freed in random order",
        threads: "0..N, each with 1M/N objects",
        cross_thread: NO_CROSS,
        peak_live: "≈ 1M × 36 B = 38 MB",
        scales: "objects per round (1M)",
        default_threads: 1,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: Some((8, 64)),
        align: None,
        run: suite::small,
    },
    Workload {
        name: "medium",
        models: "thousands of medium objects: allocate 4096, free in random order, repeat \
                 (benchmark-suite seed, milestone 1)",
        sizes: "1–64 KiB uniform",
        lifetimes: "one round",
        threads: "0..N, each with 4096/N objects",
        cross_thread: NO_CROSS,
        peak_live: "≈ 4096 × 32.5 KiB = 136 MB",
        scales: "objects per round (4096)",
        default_threads: 1,
        min_threads: 1,
        default_ops: 2_000_000,
        size_range: Some((1024, 64 << 10)),
        align: None,
        run: suite::medium,
    },
    Workload {
        name: "large",
        models: "hundreds of big blocks: allocate 128, free in random order, repeat \
                 (benchmark-suite seed, milestone 1)",
        sizes: "1–4 MiB uniform (page-aligned big blocks)",
        lifetimes: "one round",
        threads: "0..N, each with 128/N objects",
        cross_thread: NO_CROSS,
        peak_live: "≈ 360 MB (a round holds 128 × 2.5 MiB = 336 MB on average)",
        scales: "objects per round (128)",
        default_threads: 1,
        min_threads: 1,
        default_ops: 20_000,
        size_range: Some((1 << 20, 4 << 20)),
        align: None,
        run: suite::large,
    },
    Workload {
        name: "mixed",
        models: "a realistic size mix: random replacement in a 16384-slot table \
                 (benchmark-suite seed, milestone 1)",
        sizes: "log-normal, median 64 B, σ 1.5, truncated to 8 B–64 KiB (mean ≈ 214 B)",
        lifetimes: "geometric, mean 16384 allocations",
        threads: "0..N, independent",
        cross_thread: NO_CROSS,
        peak_live: "≈ 4 MB per thread (16384 × 214 B = 3.5 MB on average; the heavy tail lifts the peak)",
        scales: "nothing else",
        default_threads: 1,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: Some((8, 64 << 10)),
        align: None,
        run: suite::mixed,
    },
    Workload {
        name: "churn",
        models: "allocate N, free a random 25–75 % of them, allocate back to N, repeat \
                 (benchmark-suite seed, milestone 1)",
        sizes: "16–4096 B uniform",
        lifetimes: "random: each round frees a random subset",
        threads: "0..N, each with 32768/N objects",
        cross_thread: NO_CROSS,
        peak_live: "≈ 32768 × 2056 B = 67 MB",
        scales: "live objects (32768)",
        default_threads: 1,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: Some((16, 4096)),
        align: None,
        run: suite::churn,
    },
    Workload {
        name: "fragmentation-holes",
        models: "allocate N = 0.4 × ops objects, free every other one, allocate N/4 objects \
                 bigger than any hole, free all (benchmark-suite seed, milestone 3)",
        sizes: "holes: 16–128 B uniform (--min-size/--max-size); then (max, 4 × max] uniform",
        lifetimes: "phases: half the small objects live to the end",
        threads: "0..N, each with N/threads objects",
        cross_thread: NO_CROSS,
        peak_live: "≈ N × (36 + 80) B = 116 MB (N = 1M)",
        scales: "objects (through ops)",
        default_threads: 1,
        min_threads: 1,
        default_ops: 2_500_000,
        size_range: Some((16, 128)),
        align: None,
        run: suite::fragmentation_holes,
    },
    Workload {
        name: "thread-local",
        models: "scalability baseline: each thread allocates and frees its own memory \
                 (random replacement in a 1024-slot table) (benchmark-suite seed, milestone 2)",
        sizes: "16–1024 B uniform",
        lifetimes: "geometric, mean 1024 allocations",
        threads: "0..N, independent",
        cross_thread: NO_CROSS,
        peak_live: "≈ 1024 × 520 B × N = 2.1 MB at N = 4",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 16_000_000,
        size_range: Some((16, 1024)),
        align: None,
        run: suite::thread_local,
    },
    Workload {
        name: "producer-consumer",
        models: "threads 0..⌈N/2⌉ allocate and queue objects (queue of 1024 per consumer, \
                 producers wait when full), the others dequeue and free them (benchmark-suite \
                 seed, milestone 2)",
        sizes: "16–1024 B uniform",
        lifetimes: "queue residence: up to 1024 objects",
        threads: "⌈N/2⌉ producers, ⌊N/2⌋ consumers (N ≥ 2)",
        cross_thread: "every free",
        peak_live: "≈ 1024 × 520 B × consumers plus objects being queued ≈ 1.1 MB at N = 4",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 2,
        default_ops: 8_000_000,
        size_range: Some((16, 1024)),
        align: None,
        run: suite::producer_consumer,
    },
    Workload {
        name: "shared-pool",
        models: "all threads replace objects at random slots of one shared 16384-slot table; \
                 the last thread out empties it (benchmark-suite seed, milestone 2)",
        sizes: "16–1024 B uniform",
        lifetimes: "geometric, mean 16384 allocations (all threads)",
        threads: "0..N on one table",
        cross_thread: "≈ (N−1)/N of frees",
        peak_live: "≈ 16384 × 520 B = 8.5 MB",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: Some((16, 1024)),
        align: None,
        run: suite::shared_pool,
    },
    Workload {
        name: "larson",
        models: "Larson server: each of N workers keeps 1000 objects and replaces random ones; \
                 every 10000 replacements its thread exits and a new thread inherits the \
                 objects (mimalloc-bench larson)",
        sizes: "8–1000 B uniform",
        lifetimes: "geometric, mean 1000 replacements of the worker",
        threads: "N workers at a time; thread ids keep growing as threads are replaced",
        cross_thread: "frees by a new thread of objects its predecessors made",
        peak_live: "≈ 1000 × 504 B × N = 2 MB at N = 4",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: Some((8, 1000)),
        align: None,
        run: stress::larson,
    },
    Workload {
        name: "xmalloc",
        models: "allocate-only threads fill batches of 64 objects into one shared queue (64 \
                 batches, then they wait); free-only threads take batches and free them \
                 (mimalloc-bench xmalloc-test)",
        sizes: "8–1024 B uniform",
        lifetimes: "batch residence in the queue",
        threads: "⌈N/2⌉ allocating, ⌊N/2⌋ freeing (N ≥ 2)",
        cross_thread: "every free",
        peak_live: "≈ 2.3 MB at N = 4 (queue full: 68 batches × 64 × 516 B)",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 2,
        default_ops: 8_000_000,
        size_range: Some((8, 1024)),
        align: None,
        run: stress::xmalloc,
    },
    Workload {
        name: "sh6bench",
        models: "rounds of 500–2000 allocations freed all at once, in reverse (LIFO) order in \
                 even rounds and in allocation order in odd ones (mimalloc-bench sh6bench)",
        sizes: "1–1000 B uniform",
        lifetimes: "one round",
        threads: "0..N, independent",
        cross_thread: NO_CROSS,
        peak_live: "≤ 2000 × 500 B × N = 4 MB at N = 4",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: Some((1, 1000)),
        align: None,
        run: stress::sh6bench,
    },
    Workload {
        name: "mstress",
        models: "mimalloc's test-stress: phases of N fresh threads (20k ops each) churning \
                 up to 500 local objects and swapping objects through a shared 1000-slot \
                 transfer array; 1 object in 10 outlives its thread and is freed in the next \
                 phase (mimalloc-bench mstress)",
        sizes: "95 % 8–320 B, 4.5 % 1–32 KiB, 0.5 % 64 KiB–1 MiB",
        lifetimes: "local: random; transferred: until replaced (any thread, any phase); \
                    retained: one phase",
        threads: "thread 0 = main (final frees); N workers per phase, new ids each phase",
        cross_thread: "transfer-array replacements, next-phase frees of retained objects, \
                       main's final frees",
        peak_live: "≈ 13 MB at N = 4",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: None,
        align: None,
        run: stress::mstress,
    },
    Workload {
        name: "mleak",
        models: "phases of N threads that churn up to 200 objects for 10k ops each, then exit \
                 holding 50 live objects that are never freed (mimalloc-bench mleak)",
        sizes: "16–1024 B uniform",
        lifetimes: "random; 50 per thread leak to the end of the trace",
        threads: "N per phase, new ids each phase",
        cross_thread: NO_CROSS,
        peak_live: "≈ leaked 100 phases × N × 50 × 520 B = 10 MB at N = 4 (all live at the end)",
        scales: "nothing else",
        default_threads: 4,
        min_threads: 1,
        default_ops: 4_000_000,
        size_range: Some((16, 1024)),
        align: None,
        run: stress::mleak,
    },
    Workload {
        name: "malloc-large",
        models: "big buffers: replace a random one of 20 slots with a new block, at most 20 \
                 live (mimalloc-bench malloc-large)",
        sizes: "5–25 MiB uniform (page-aligned big blocks)",
        lifetimes: "geometric, mean 20 allocations",
        threads: "0..N, independent",
        cross_thread: NO_CROSS,
        peak_live: "≈ 400 MB (20 × 15 MiB = 315 MB on average, at most 20 × 25 MiB)",
        scales: "nothing else",
        default_threads: 1,
        min_threads: 1,
        default_ops: 4_000,
        size_range: Some((5 << 20, 25 << 20)),
        align: None,
        run: stress::malloc_large,
    },
    Workload {
        name: "ring-buffer",
        models: "per-thread ring of 100 000 slots written in order, each write freeing the \
                 slot's previous object (FancyAllocator seed's benchmark: 250 000 allocations \
                 per thread at the defaults)",
        sizes: "60 % 16–256 B, 30 % 512–2048 B, 10 % 4096–32768 B (mean 2309 B)",
        lifetimes: "exactly 100 000 allocations of the thread (FIFO)",
        threads: "0..N, independent",
        cross_thread: NO_CROSS,
        peak_live: "≈ 100 000 × 2309 B × N = 924 MB at N = 4",
        scales: "ring slots (100 000)",
        default_threads: 4,
        min_threads: 1,
        default_ops: 1_600_000,
        size_range: None,
        align: None,
        run: expiry::ring_buffer,
    },
    Workload {
        name: "ephemeral-ttl",
        models: "HPC ephemeral objects: each tick allocates one object with a random \
                 time-to-live and frees those whose time is up (arena seed's HPC scenario)",
        sizes: "16–1024 B uniform",
        lifetimes: "uniform 1 to 99 999 ticks (a tick = one allocation of the thread)",
        threads: "0..N, independent",
        cross_thread: NO_CROSS,
        peak_live: "≈ 50 000 × 520 B × N = 104 MB at N = 4",
        scales: "longest time-to-live (100 000 ticks)",
        default_threads: 4,
        min_threads: 1,
        default_ops: 8_000_000,
        size_range: Some((16, 1024)),
        align: None,
        run: expiry::ephemeral_ttl,
    },
];
