//! The allocator's own OS memory calls during the replay loop: `mmap`, `munmap`, `mremap`,
//! `brk`/`sbrk` and `madvise` (by advice), counted, sized and timed.
//!
//! How: the `replay` binary defines those libc functions itself (src/interpose.rs) and exports
//! them (build.rs), so every call an allocator makes through the dynamic symbol lands here
//! first: jemalloc and mimalloc (linked into `replay`), fancy, tcmalloc (dlopened) and any
//! `preload:` library. Each wrapper does the system call and, while [`ACTIVE`] (from the
//! barrier to the last replay thread joined, see [`crate::inside`]), adds to the atomics
//! below. No system call, lock or allocation is added: two clock reads and a few relaxed
//! atomic adds per OS call, which costs microseconds anyway.
//!
//! What it cannot see: glibc's malloc calls its internal `__mmap`/`__sbrk`/`__madvise` (never
//! through the exported symbols), so the `system` allocator's calls are invisible here. The
//! kernel's syscall tracepoints ([`crate::counters`], the `kernel_*_calls` columns) count
//! every allocator's calls, glibc's included, where perf is permitted; these wrappers add
//! what the tracepoints cannot give cheaply: bytes, time, the advice. Why not seccomp or
//! ptrace: a trap per call (ptrace: two context switches to a tracer) costs more than the
//! call itself and would change what the allocator's time means.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The calls counted, in [`Totals`]' order: the trace format's own list (the recorder records
/// the same calls into traces).
pub use traces::OsCall as Call;

/// Advice values counted one by one (`MADV_*` up to 31); any other lands in the last bucket.
const ADVICE_BUCKETS: usize = 32;

/// Whether calls are being counted now.
pub static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Counts per [`Call`]: calls, bytes, ns.
static CALLS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
static BYTES: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
static NANOS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
static FAILED: AtomicU64 = AtomicU64::new(0);
/// madvise calls and bytes by advice.
static ADVICE_CALLS: [AtomicU64; ADVICE_BUCKETS] = [const { AtomicU64::new(0) }; ADVICE_BUCKETS];
static ADVICE_BYTES: [AtomicU64; ADVICE_BUCKETS] = [const { AtomicU64::new(0) }; ADVICE_BUCKETS];
/// Bytes mapped (mmap, mremap growth, brk growth) minus bytes unmapped (munmap, mremap and brk
/// shrinking), since counting started.
static NET_MAPPED: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// Set on the harness's own threads (the sampler): their calls (a thread's exit unmaps
    /// its signal stack) are not the allocator's.
    static HARNESS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as the harness's: its OS calls are never counted.
pub fn harness_thread() {
    HARNESS.with(|h| h.set(true));
}

/// Where a wrapper's measurement starts: None when not counting (nothing to do after).
#[inline]
pub fn begin() -> Option<Instant> {
    (ACTIVE.load(Ordering::Relaxed) && !HARNESS.with(|h| h.get())).then(Instant::now)
}

/// Adds one call that started at `t0` (from [`begin`]); `bytes` is what it maps, unmaps or
/// advises, `net` its change to the mapped bytes, `ok` whether it succeeded.
#[inline]
pub fn end(t0: Option<Instant>, call: Call, bytes: u64, net: i64, ok: bool) {
    let Some(t0) = t0 else { return };
    let ns = t0.elapsed().as_nanos() as u64;
    let k = call as usize;
    CALLS[k].fetch_add(1, Ordering::Relaxed);
    NANOS[k].fetch_add(ns, Ordering::Relaxed);
    if ok {
        BYTES[k].fetch_add(bytes, Ordering::Relaxed);
        NET_MAPPED.fetch_add(net, Ordering::Relaxed);
    } else {
        FAILED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Adds a madvise's advice (called besides [`end`]).
#[inline]
pub fn advice(t0: Option<Instant>, advice: i32, bytes: u64) {
    if t0.is_none() {
        return;
    }
    let b = (advice.max(0) as usize).min(ADVICE_BUCKETS - 1);
    ADVICE_CALLS[b].fetch_add(1, Ordering::Relaxed);
    ADVICE_BYTES[b].fetch_add(bytes, Ordering::Relaxed);
}

/// Zeroes every count and starts counting.
pub fn start() {
    for a in CALLS
        .iter()
        .chain(&BYTES)
        .chain(&NANOS)
        .chain(&ADVICE_CALLS)
    {
        a.store(0, Ordering::Relaxed);
    }
    for a in &ADVICE_BYTES {
        a.store(0, Ordering::Relaxed);
    }
    FAILED.store(0, Ordering::Relaxed);
    NET_MAPPED.store(0, Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Release);
}

/// Stops counting and returns the totals.
pub fn stop() -> Totals {
    ACTIVE.store(false, Ordering::Release);
    totals()
}

/// One call's figures.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallCount {
    pub calls: u64,
    /// mmap: bytes mapped; munmap: unmapped; mremap: the new sizes; brk: |change|; madvise:
    /// advised.
    pub bytes: u64,
    /// Time inside the calls, all threads together.
    pub ns: u64,
}

/// What the replay loop asked of the OS.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    /// Per [`Call::ALL`].
    pub calls: [CallCount; 5],
    /// Calls that failed (counted in `calls`, not in bytes).
    pub failed: u64,
    /// madvise by advice: (advice number, calls, bytes), advice with calls only.
    pub advice: Vec<(u32, u64, u64)>,
    /// Mapped minus unmapped bytes over the loop.
    pub net_mapped_bytes: i64,
}

impl Totals {
    /// The figures of `c`.
    pub fn get(&self, c: Call) -> CallCount {
        self.calls[c as usize]
    }

    /// Every call together.
    pub fn all_calls(&self) -> u64 {
        self.calls.iter().map(|c| c.calls).sum()
    }

    /// The advice column: `dontneed=3/12288 free=1/4096` (calls/bytes), by advice number.
    pub fn advice_text(&self) -> String {
        self.advice
            .iter()
            .map(|(a, c, b)| format!("{}={c}/{b}", advice_name(*a)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The name of an `MADV_*` value, lowercase without the prefix, as the trace format names it
/// (`advice31+` for the last bucket).
pub fn advice_name(a: u32) -> String {
    if a as usize >= ADVICE_BUCKETS - 1 {
        format!("advice{}+", ADVICE_BUCKETS - 1)
    } else {
        traces::advice_name(a)
    }
}

/// The counts so far (while counting: a snapshot, each figure read once, relaxed).
pub fn totals() -> Totals {
    let mut t = Totals::default();
    for c in Call::ALL {
        let k = c as usize;
        t.calls[k] = CallCount {
            calls: CALLS[k].load(Ordering::Relaxed),
            bytes: BYTES[k].load(Ordering::Relaxed),
            ns: NANOS[k].load(Ordering::Relaxed),
        };
    }
    t.failed = FAILED.load(Ordering::Relaxed);
    for a in 0..ADVICE_BUCKETS {
        let n = ADVICE_CALLS[a].load(Ordering::Relaxed);
        if n > 0 {
            t.advice
                .push((a as u32, n, ADVICE_BYTES[a].load(Ordering::Relaxed)));
        }
    }
    t.net_mapped_bytes = NET_MAPPED.load(Ordering::Relaxed);
    t
}

/// What the sampler stores with each sample (no allocation).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Point {
    /// All OS memory calls so far.
    pub calls: u64,
    /// Mapped minus unmapped bytes so far.
    pub net_mapped_bytes: i64,
    /// Bytes advised so far (every advice).
    pub advised_bytes: u64,
}

/// The running figures for a time-series sample.
pub fn point() -> Point {
    Point {
        calls: CALLS.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
        net_mapped_bytes: NET_MAPPED.load(Ordering::Relaxed),
        advised_bytes: BYTES[Call::Madvise as usize].load(Ordering::Relaxed),
    }
}
