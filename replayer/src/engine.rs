//! The replay engine: one pass of a plan through one allocator, in the calling process.
//!
//! One replay thread per plan thread. Those the trace had from its start begin together from
//! a barrier; one whose traced thread started later is created (a new OS thread,
//! `pthread_create`) by the controlling thread when the plan's [`StartAfter`] holds: the op
//! before its start in the trace is done and the threads that had ended by then are joined —
//! so their allocator per-thread state is torn down as in the program, and no more threads
//! are alive than the trace had. Each walks its op
//! array: an op that depends on another thread (WAIT flag) spins until its slot shows the
//! generation it expects (Acquire; `spin_loop`, then `yield` after 128 tries), then calls the
//! allocator, writes the new block as the touch policy says, and publishes the slot's new
//! pointer and generation (Release) — touching before publishing, so no other thread can free
//! a block still being written. No locks, no harness allocation, no system call in the loop:
//! every checkpoint period (1–1024 ops, the plan's) the thread stores its progress (a relaxed store), which the sampler
//! thread turns into live bytes through the plan's checkpoints. At each checkpoint a thread also
//! adds its period's live-bytes change to one shared counter and raises the shared peak by
//! the period's largest rise (from the plan): the peak live bytes the replay really reached,
//! exact when the plan checkpoints every op (`--order strict`) or the trace has one thread,
//! otherwise to within one checkpoint period of each thread.
//!
//! In an ordered replay ([`Order`]) each op also carries its position in the trace's global
//! order; a thread runs op `g` only once at least `g − K` ops are done (the shared `done`
//! counter, which threads add to at checkpoints and before any wait): at most `K` earlier ops
//! of the trace are still pending when an op runs (`K` = 0: the trace's order exactly).
//!
//! The untimed pass measures wall time from the barrier to the last thread's last op, RSS over
//! time (sampler every `sample_ms`), RSS when the op reaching the trace's peak live bytes is
//! done (read by the thread that does it), peak RSS (VmHWM, reset at the baseline), page faults
//! and CPU time (getrusage), allocator statistics, then retained RSS right after and 0.1, 1 and
//! 5 s later. The timed pass reads the time-stamp counter around each call into per-thread,
//! pre-sized HdrHistograms (one per op kind), merged at the end.
//!
//! The baseline RSS is read with the plan mapped, the slot table, histograms and sample buffer
//! allocated and prefaulted, and every replay thread waiting at the barrier.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::adapter::{AllocStats, Allocator};
use crate::addrmap::{Capture, OpLog, OpRec, Snapshots};
use crate::error::ReplayError;
use crate::introspect::{Probe, Readings};
use crate::mem::{self, Mapping};
#[cfg(doc)]
use crate::plan::StartAfter;
use crate::plan::{BIG, ClassCounts, Op, OpClass, Order, PlanView, ThreadView, op};
use crate::sys::{self, Statm, Usage};
use crate::touch::{Policy, touch};

/// How much of each new block the replay writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Touch {
    /// Nothing.
    None,
    /// The first byte.
    First,
    /// One byte in every page the block covers (the default: RSS reflects memory a program
    /// would use).
    #[default]
    Pages,
    /// Every byte.
    Full,
    /// As much of each block as the recorded program made resident, inferred from the trace's
    /// RSS samples (see [`crate::touch`]); `pages` for a trace without samples.
    Recorded,
}

impl Touch {
    /// The policy's name.
    pub fn name(self) -> &'static str {
        match self {
            Touch::None => "none",
            Touch::First => "first",
            Touch::Pages => "pages",
            Touch::Full => "full",
            Touch::Recorded => "recorded",
        }
    }
}

/// Transparent huge pages for the replay child (`--thp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Thp {
    /// Whatever the system setting gives (/sys/kernel/mm/transparent_hugepage/enabled).
    #[default]
    System,
    /// None, whatever the allocator asks for (prctl PR_SET_THP_DISABLE in the child).
    Never,
    /// Only where the allocator asks (MADV_HUGEPAGE): needs the system setting `madvise`.
    Madvise,
    /// Wherever the kernel can: needs the system setting `always` (a process cannot turn
    /// it on for itself).
    Always,
}

impl Thp {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Thp::System => "system",
            Thp::Never => "never",
            Thp::Madvise => "madvise",
            Thp::Always => "always",
        }
    }
}

/// What one pass does besides replaying.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PassOptions {
    pub touch: Touch,
    /// For [`Touch::Recorded`]: the fraction of each large block's bytes to touch (0..=1).
    #[serde(default)]
    pub touch_fraction: f64,
    /// Honour the trace's timing (the plan must have timestamps).
    pub pace: bool,
    /// Pin replay thread i to CPU i mod CPUs.
    pub pin: bool,
    /// How the trace's interleaving is kept (the plan must have been made for it).
    #[serde(default)]
    pub order: Order,
    /// Time every call (the latency pass).
    pub timed: bool,
    /// Transparent huge pages (applied by the child before the allocator starts).
    #[serde(default)]
    pub thp: Thp,
    /// Sampler period, ms (0: no samples).
    pub sample_ms: u64,
    /// Period of the allocator's own statistics (introspection.parquet), ms: read by the
    /// sampler after its first RSS sample at least this long after the last reading (0, or
    /// `sample_ms` 0: none; see [`crate::introspect`]).
    #[serde(default = "default_introspect_ms")]
    pub introspect_ms: u64,
    /// Seconds to keep reading retained RSS after the last op (points at 0.1, 1 and 5 s that
    /// fit are read).
    pub retained_wait: f64,
    /// The heap-map pass ([`crate::addrmap`]): log every op and snapshot the mappings every
    /// `sample_ms`; the child writes the files after the pass. Never with `timed`.
    #[serde(default)]
    pub heap_map: Option<crate::addrmap::HeapMapPass>,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            touch: Touch::Pages,
            touch_fraction: 1.0,
            pace: false,
            pin: false,
            order: Order::Deps,
            timed: false,
            thp: Thp::System,
            sample_ms: 10,
            introspect_ms: DEFAULT_INTROSPECT_MS,
            retained_wait: 0.0,
            heap_map: None,
        }
    }
}

/// The default period of the allocator's statistics, ms.
pub const DEFAULT_INTROSPECT_MS: u64 = 100;

fn default_introspect_ms() -> u64 {
    DEFAULT_INTROSPECT_MS
}

/// When a sample was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// While ops ran.
    Replay,
    /// After the last op (retained RSS).
    After,
}

/// One sample of the sampler (or of a retained-RSS point).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub phase: Phase,
    /// ns since the first op.
    pub t_ns: u64,
    pub ops_done: u64,
    pub live_bytes: u64,
    pub rss_bytes: u64,
    /// The OS memory calls so far (zero outside a `replay` child).
    #[serde(default)]
    pub os: crate::oscalls::Point,
}

/// Latency of one op kind in the timed pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub op: OpClass,
    pub count: u64,
    pub mean_ns: f64,
    /// (quantile, ns) on [`QUANTILES`].
    pub quantiles: Vec<(f64, u64)>,
}

impl Latency {
    /// The latency at quantile `q` (which must be on the grid).
    pub fn at(&self, q: f64) -> Option<u64> {
        self.quantiles
            .iter()
            .find(|(x, _)| (x - q).abs() < 1e-9)
            .map(|x| x.1)
    }
}

pub use results_schema::QUANTILES;

/// Delays after the last op at which retained RSS is read, s.
pub const RETAINED_AT: [f64; 3] = [0.1, 1.0, 5.0];

/// What one pass measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PassResult {
    pub started_unix_ns: i64,
    /// Barrier release to the last thread's last op.
    pub wall_ns: u64,
    /// Ops the loop executed, by kind (`op::*` codes).
    pub ops_by_kind: [u64; op::KINDS as usize],
    /// Allocation calls that returned NULL.
    pub failed_allocations: u64,
    /// Ops that found the object they depend on not ready yet and waited.
    pub waits: u64,
    /// Harness allocations anywhere in the process between the barrier and the last op
    /// (must be 0).
    pub harness_allocs_in_loop: u64,
    pub baseline_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// RSS − baseline when the op reaching the trace's peak live bytes was done.
    pub heap_rss_at_peak_live_bytes: Option<i64>,
    /// The replay's live bytes at that moment: the trace's peak when the trace has one thread;
    /// with several, the other threads may be ahead or behind where they were in the trace.
    pub live_bytes_at_peak_mark: Option<u64>,
    /// Untimed pass, at the same moment: the allocator's usable size summed over every block
    /// in the slot table, and the requested bytes of those blocks (see [`PeakOverhead`]).
    pub overhead_at_peak: Option<PeakOverhead>,
    /// Heap RSS right after the last op, then at [`RETAINED_AT`] (None beyond the wait).
    pub retained_heap_rss_bytes: [Option<i64>; 4],
    pub usage: Usage,
    pub alloc_stats: AllocStats,
    pub allocator_version: String,
    pub samples: Vec<Sample>,
    pub latency: Vec<Latency>,
    /// Timed pass: ns per counter tick and the counter's read overhead.
    pub ns_per_tick: Option<f64>,
    pub timer_overhead_ns: Option<f64>,
    /// Replay threads pinned as asked.
    pub pinned: bool,
    /// The largest live bytes (requested sizes) the replay reached, from the threads'
    /// checkpoint updates of one shared counter (see the module documentation).
    pub measured_peak_live_bytes: u64,
    /// Most replay threads alive (created and not yet joined) at once.
    pub peak_replay_threads: u32,
    /// /proc/self/smaps_rollup when the op reaching the trace's peak live bytes was done, and
    /// the statm RSS read just before it.
    pub smaps_at_peak: Option<sys::Smaps>,
    pub statm_at_peak_bytes: Option<u64>,
    /// statm read again just after that smaps_rollup (other threads run meanwhile).
    pub statm_after_peak_smaps_bytes: Option<u64>,
    /// smaps_rollup right after the last op (every replay thread joined), and statm then.
    pub smaps_end: Option<sys::Smaps>,
    pub statm_end_bytes: u64,
    /// For each replay thread, the CPUs it was seen on (sched_getcpu at its start, its end
    /// and at checkpoints at least 1024 ops apart), lowest first; CPUs above 63 count as 63.
    pub thread_cpus: Vec<Vec<u32>>,
    /// Changes of CPU between two such readings, all replay threads together (a lower
    /// bound of the migrations).
    pub cpu_changes_seen: u64,
    /// Transparent huge pages were turned off for this child (`--thp never`).
    pub thp_disabled: bool,
    /// perf counters of the loop (set by the child: [`crate::inside`]).
    #[serde(default)]
    pub counters: Option<crate::counters::Readings>,
    /// The allocator's OS memory calls during the loop (set by the child).
    #[serde(default)]
    pub os_calls: Option<crate::oscalls::Totals>,
    /// The allocator's own statistics over time ([`crate::introspect`]): readings while the
    /// ops ran and one after the last op (empty: the allocator has none, or it was off).
    #[serde(default)]
    pub introspection: Vec<crate::introspect::Point>,
    /// Introspection points that did not fit the buffer.
    #[serde(default)]
    pub introspection_dropped: u64,
}

/// The allocator's space overhead at the trace's peak live op, measured in the untimed pass.
///
/// Which blocks: every block in the slot table (a non-null pointer) when the op that reaches
/// the trace's peak live bytes is done, in a one-thread replay: then the slot table is exactly
/// the trace's live blocks at its peak and `requested_bytes` (the plan's live bytes at that
/// op) is exactly their requested sizes. With several replay threads nothing is measured
/// (None): the others' share of the plan's live bytes is known only at their checkpoints, not
/// at the op each stopped at, so the requested figure would not be the walked blocks' (and a
/// walk while they run would race with their frees).
///
/// Cost: one `usable_size` call per live block plus a read of every slot, on the thread that
/// reached the peak, after its RSS read; the time it takes (`walk_ns`) is subtracted from the
/// pass's wall time. Nothing is allocated.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PeakOverhead {
    /// Σ `usable_size(p)` over the live blocks; None when the allocator has no usable-size
    /// query (a preloaded library that does not export `malloc_usable_size`).
    pub usable_bytes: Option<u64>,
    /// Σ requested sizes of the same blocks.
    pub requested_bytes: u64,
    /// Live blocks walked.
    pub blocks: u64,
    /// How long the walk took.
    pub walk_ns: u64,
}

impl PassResult {
    /// Ops executed by class.
    pub fn ops_by_class(&self) -> ClassCounts {
        let mut c = [0; 5];
        for (k, n) in self.ops_by_kind.iter().enumerate() {
            c[OpClass::of(k as u8) as usize] += n;
        }
        c
    }

    /// All ops executed.
    pub fn ops(&self) -> u64 {
        self.ops_by_kind.iter().sum()
    }
}

/// A cache line of its own for each thread's progress counter.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// What a replay thread hands back.
#[derive(Default)]
struct ThreadOut {
    counts: [u64; op::KINDS as usize],
    failed: u64,
    waits: u64,
    pinned: bool,
    /// CPUs seen (bit per CPU, 63 for any above), the last one, changes seen.
    cpus: u64,
    last_cpu: Option<u32>,
    cpu_changes: u64,
}

impl ThreadOut {
    /// Notes the CPU this thread runs on now.
    #[inline]
    fn see_cpu(&mut self) {
        if let Some(c) = sys::current_cpu() {
            if self.last_cpu.is_some_and(|l| l != c) {
                self.cpu_changes += 1;
            }
            self.last_cpu = Some(c);
            self.cpus |= 1u64 << c.min(63);
        }
    }
}

/// A replay thread reads which CPU it is on at checkpoints at least this many ops apart.
const CPU_CHECK_OPS: usize = 1024;

/// Shared by all threads of a pass.
struct Shared<'a> {
    slots: &'a [AtomicU64],
    progress: Vec<Padded>,
    arrived: AtomicUsize,
    go: AtomicBool,
    /// Set instead of `go` when the pass cannot start: waiting threads leave.
    abort: AtomicBool,
    finished: AtomicUsize,
    /// ns from the barrier to the last op, written by the last thread to finish.
    end_ns: AtomicU64,
    /// Harness allocations counted at the barrier and when the last thread finished.
    allocs_at_go: AtomicU64,
    allocs_at_end: AtomicU64,
    /// RSS at the peak-live op (0: not reached).
    rss_at_peak: AtomicU64,
    live_at_peak: AtomicU64,
    /// smaps_rollup at the peak-live op (rss, pss, anonymous, anon huge; set once).
    smaps_at_peak: [AtomicU64; 4],
    smaps_at_peak_set: AtomicBool,
    rss_after_peak_smaps: AtomicU64,
    /// Untimed pass: replay threads between their first and last op (so the peak walk knows
    /// whether it is alone), the walk in progress (a thread starting then waits), its result.
    running: AtomicUsize,
    walking: AtomicBool,
    overhead: Mutex<Option<PeakOverhead>>,
    /// Live bytes as of every thread's last checkpoint, and the largest value reached.
    live: PaddedI64,
    live_peak: PaddedI64,
    /// Ordered replays: ops done and published (the gate), and the window.
    done: Padded,
    window: u64,
    start: std::sync::OnceLock<Instant>,
    statm: Statm,
    touch: Policy,
    /// Where external progress goes (the parent's bar), updated by the sampler.
    external: Option<&'a AtomicU64>,
}

/// A cache line of its own for a shared signed counter.
#[repr(align(128))]
#[derive(Default)]
struct PaddedI64(AtomicI64);

/// What an ordered thread keeps about the gate: ops done but not yet added to `done`, and
/// the largest op position it may run without looking at `done` again.
#[derive(Clone, Copy, Debug)]
struct Gate {
    unpublished: u64,
    limit: u64,
}

impl Gate {
    /// Adds the ops done so far to the shared count (before any wait, and at checkpoints).
    #[inline(always)]
    fn publish(&mut self, done: &AtomicU64) {
        if self.unpublished > 0 {
            done.fetch_add(self.unpublished, Ordering::AcqRel);
            self.unpublished = 0;
        }
    }
}

/// Waits until the op at global position `g` may run: `g − window` ops are done.
#[cold]
#[inline(never)]
fn gate_wait(sh: &Shared<'_>, g: u64, gate: &mut Gate) {
    gate.publish(&sh.done.0);
    let mut spins = 0u32;
    loop {
        let d = sh.done.0.load(Ordering::Acquire);
        if g <= d + sh.window {
            gate.limit = d + sh.window;
            return;
        }
        spins += 1;
        if spins < 128 {
            std::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

const PTR_MASK: u64 = (1 << 48) - 1;

/// Largest value the latency histograms hold, in ticks (≈ 6 min at 3 GHz); larger ones are
/// recorded as this.
const HIST_MAX: u64 = 1 << 40;

#[cold]
#[inline(never)]
fn wait_for(slot: &AtomicU64, generation: u16) -> u64 {
    let mut spins = 0u32;
    loop {
        let w = slot.load(Ordering::Acquire);
        if (w >> 48) as u16 == generation {
            return w;
        }
        spins += 1;
        if spins < 128 {
            std::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

#[cold]
#[inline(never)]
fn pointer_too_wide(p: *mut u8) -> ! {
    // The slot word keeps 48 bits of pointer; x86-64 user space (4-level paging) fits.
    eprintln!("replay: allocator returned {p:p}, beyond the 48 bits a slot holds");
    std::process::abort()
}

/// The size of a request of 4 GiB or more: the thread's next big size.
#[cold]
#[inline(never)]
fn big_size(big: &[u64], next: &mut usize) -> usize {
    let s = big[*next] as usize;
    *next += 1;
    s
}

#[cold]
#[inline(never)]
fn pace_until(start: Instant, target_ns: u64) {
    loop {
        let now = start.elapsed().as_nanos() as u64;
        if now >= target_ns {
            return;
        }
        let left = target_ns - now;
        if left > 200_000 {
            std::thread::sleep(Duration::from_nanos(left - 100_000));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The loop over `ops` (a chunk of one thread's array); `ts` are their timestamps with
/// `PACE`, `seq` their global positions with `ORDER`, `hist` the thread's histograms with
/// `TIMED`.
///
/// # Safety
/// Every op's slot is inside `slots` ([`PlanView::check`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn run_ops<
    A: Allocator,
    const TIMED: bool,
    const PACE: bool,
    const ORDER: bool,
    const MAP: bool,
>(
    a: &A,
    ops: &[Op],
    ts: &[u64],
    seq: &[u64],
    big: &[u64],
    next_big: &mut usize,
    sh: &Shared<'_>,
    out: &mut ThreadOut,
    hist: &mut [Histogram<u64>],
    start: Instant,
    gate: &mut Gate,
    log: &mut OpLog,
) {
    let how = sh.touch;
    for (j, o) in ops.iter().enumerate() {
        if PACE && ts[j] > start.elapsed().as_nanos() as u64 {
            pace_until(start, ts[j]);
        }
        if ORDER && seq[j] > gate.limit {
            gate_wait(sh, seq[j], gate);
        }
        let kind = o.kind & op::KIND_MASK;
        if kind == op::FREE_NULL {
            let t0 = if TIMED { sys::ticks() } else { 0 };
            // SAFETY: free(NULL) is always valid.
            unsafe { a.free(std::ptr::null_mut()) };
            if TIMED {
                hist[OpClass::Free as usize].saturating_record(sys::ticks() - t0);
            }
            if MAP {
                log.push(OpRec {
                    t_ns: start.elapsed().as_nanos() as u64,
                    old: 0,
                    new: 0,
                    word: OpRec::word(kind, 0, 0),
                });
            }
            if ORDER {
                gate.unpublished += 1;
            }
            continue;
        }
        // SAFETY: the caller guarantees the slot index is in bounds.
        let slot = unsafe { sh.slots.get_unchecked(o.slot as usize) };
        let word = if o.kind & op::WAIT != 0 {
            let w = slot.load(Ordering::Acquire);
            if (w >> 48) as u16 == o.generation {
                w
            } else {
                out.waits += 1;
                if ORDER {
                    // The op waited for may be held back by the ops this thread has done.
                    gate.publish(&sh.done.0);
                }
                wait_for(slot, o.generation)
            }
        } else {
            slot.load(Ordering::Relaxed)
        };
        let next = (o.generation.wrapping_add(1) as u64) << 48;
        let size = if o.size != BIG {
            o.size as usize
        } else {
            big_size(big, next_big)
        };
        let t0 = if TIMED { sys::ticks() } else { 0 };
        // The heap-map pass stamps a free before the call and an allocation after it, so that
        // a block freed by one thread and handed out again to another is freed first in the
        // address trace's time order too.
        let before = if MAP && kind >= op::FREE {
            start.elapsed().as_nanos() as u64
        } else {
            0
        };
        // SAFETY: the slot holds the live block this op works on (or NULL), per the plan's
        // generations; sizes and alignments come from the trace.
        let p = unsafe {
            match kind {
                op::MALLOC => a.malloc(size),
                op::CALLOC => a.calloc(size),
                op::ALIGNED => a.aligned(1usize << o.align_log2, size),
                op::REALLOC => a.realloc((word & PTR_MASK) as *mut u8, size),
                _ => {
                    a.free((word & PTR_MASK) as *mut u8);
                    std::ptr::null_mut()
                }
            }
        };
        if TIMED {
            let dt = sys::ticks() - t0;
            hist[OpClass::of(kind) as usize].saturating_record(dt);
        }
        let new = if kind <= op::REALLOC {
            if p.is_null() {
                out.failed += 1;
                // A failed realloc leaves the old block live.
                if kind == op::REALLOC {
                    word & PTR_MASK
                } else {
                    0
                }
            } else {
                if (p as u64) > PTR_MASK {
                    pointer_too_wide(p);
                }
                // SAFETY: `p` is the block of `size` bytes the allocator just returned, not
                // yet published to any other thread.
                unsafe { touch(p, size, how) };
                p as u64
            }
        } else {
            0
        };
        if MAP {
            log.push(OpRec {
                t_ns: if kind >= op::FREE {
                    before
                } else {
                    start.elapsed().as_nanos() as u64
                },
                old: if kind >= op::REALLOC {
                    word & PTR_MASK
                } else {
                    0
                },
                new: if kind <= op::REALLOC { p as u64 } else { 0 },
                word: OpRec::word(kind, o.align_log2, size),
            });
        }
        slot.store(new | next, Ordering::Release);
        if ORDER {
            gate.unpublished += 1;
        }
    }
}

/// One replay thread: its whole array, in checkpoint-period chunks, with the peak mark and
/// the marks where another thread's start waits for its progress.
///
/// # Safety
/// As [`run_ops`].
#[allow(clippy::too_many_arguments)]
unsafe fn replay_thread<
    A: Allocator,
    const TIMED: bool,
    const PACE: bool,
    const ORDER: bool,
    const MAP: bool,
>(
    a: &A,
    view: ThreadView<'_>,
    mark: Option<usize>,
    marks: &[u64],
    plan: &PlanView<'_>,
    sh: &Shared<'_>,
    me: usize,
    out: &mut ThreadOut,
    hist: &mut [Histogram<u64>],
    log: &mut OpLog,
) {
    let start = *sh.start.get().expect("set before go");
    let (ops, ts, big, seq) = (view.ops, view.ts, view.big, view.seq);
    let every = plan.meta.checkpoint.max(1) as usize;
    let mut next_big = 0;
    let mut gate = Gate {
        unpublished: 0,
        limit: sh.window,
    };
    let mut marks = marks.iter().map(|&m| m as usize).peekable();
    let len = ops.len();
    let mut i = 0;
    let mut next_cpu_check = CPU_CHECK_OPS;
    while i < len {
        let mut end = ((i / every + 1) * every).min(len);
        if let Some(m) = mark
            && i < m
            && m < end
        {
            end = m;
        }
        while marks.next_if(|&m| m <= i).is_some() {}
        if let Some(&m) = marks.peek()
            && m < end
        {
            end = m;
        }
        let t = ts.map_or(&[][..], |t| &t[i..end]);
        let g = seq.map_or(&[][..], |g| &g[i..end]);
        // SAFETY: forwarded.
        unsafe {
            run_ops::<A, TIMED, PACE, ORDER, MAP>(
                a,
                &ops[i..end],
                t,
                g,
                big,
                &mut next_big,
                sh,
                out,
                hist,
                start,
                &mut gate,
                log,
            )
        };
        i = end;
        if mark == Some(i) {
            // This thread is exactly where the trace peaked; the others are wherever their
            // last checkpoint says.
            let rss = sh.statm.rss_bytes();
            let mut live = plan.meta.peak_at_cum;
            for (j, (t, p)) in plan.threads.iter().zip(&sh.progress).enumerate() {
                if j != me {
                    let done = p.0.load(Ordering::Relaxed) as usize;
                    live += t
                        .checkpoints
                        .get(done.div_ceil(every))
                        .copied()
                        .unwrap_or(0);
                }
            }
            sh.live_at_peak.store(live.max(0) as u64, Ordering::Relaxed);
            sh.rss_at_peak.store(rss, Ordering::Relaxed);
            if let Some(m) = sys::Smaps::read() {
                for (a, v) in
                    sh.smaps_at_peak
                        .iter()
                        .zip([m.rss, m.pss, m.anonymous, m.anon_huge_pages])
                {
                    a.store(v, Ordering::Relaxed);
                }
                sh.rss_after_peak_smaps
                    .store(sh.statm.rss_bytes(), Ordering::Relaxed);
                sh.smaps_at_peak_set.store(true, Ordering::Release);
            }
            // One replay thread only: with several, `live` counts the others at their
            // checkpoints (a parked thread's progress rounded up to the next one), which is not
            // what the slot table holds — the lab measured "ratios" of 0.27–0.57 that way.
            if !TIMED && plan.threads.len() == 1 {
                // SAFETY: called on a replay thread at the peak mark, as it requires.
                unsafe { overhead_walk(a, sh, live.max(0) as u64) };
            }
        }
        if i.is_multiple_of(every) || i == len {
            // The period's change goes into the shared live bytes; the period's largest rise
            // on top of what the counter held is a peak candidate.
            let k = i.div_ceil(every);
            let d = view.checkpoints[k] - view.checkpoints[k - 1];
            let before = sh.live.0.fetch_add(d, Ordering::AcqRel);
            sh.live_peak
                .0
                .fetch_max(before + view.rise[k], Ordering::AcqRel);
            if ORDER {
                gate.publish(&sh.done.0);
            }
            sh.progress[me].0.store(i as u64, Ordering::Release);
            if i >= next_cpu_check {
                next_cpu_check = i + CPU_CHECK_OPS;
                out.see_cpu();
            }
        } else if marks.peek() == Some(&i) {
            sh.progress[me].0.store(i as u64, Ordering::Release);
        }
    }
    if ORDER {
        gate.publish(&sh.done.0);
    }
    // Counted here, not in the loop (a counter per op costs the loop a store-forwarding
    // stall): the loop has no way out but the array's end, so it ran exactly these ops.
    for o in ops {
        out.counts[(o.kind & op::KIND_MASK) as usize] += 1;
    }
}

/// The peak walk ([`PeakOverhead`]): if this is the only replay thread running ops, sums
/// `usable_size` over the slot table into `sh.overhead`.
///
/// # Safety
/// Called by a replay thread between its ops (`requested`: the plan's live bytes now).
#[cold]
unsafe fn overhead_walk<A: Allocator>(a: &A, sh: &Shared<'_>, requested: u64) {
    // Dekker with `body`: a thread starts by counting itself running, then checks `walking`;
    // here `walking` is raised before `running` is read (both SeqCst), so either the walk
    // sees that thread or that thread sees the walk and waits for it.
    sh.walking.store(true, Ordering::SeqCst);
    if sh.running.load(Ordering::SeqCst) == 1 {
        let t0 = Instant::now();
        let known = a.has_usable_size();
        let (mut usable, mut blocks) = (0u64, 0u64);
        for s in sh.slots {
            let p = (s.load(Ordering::Acquire) & PTR_MASK) as *mut u8;
            if !p.is_null() {
                blocks += 1;
                if known {
                    // SAFETY: no other thread runs ops, so every pointer in the table is a
                    // live block of `a` and stays so during the walk.
                    usable += unsafe { a.usable_size(p) } as u64;
                }
            }
        }
        let o = PeakOverhead {
            usable_bytes: known.then_some(usable),
            requested_bytes: requested,
            blocks,
            walk_ns: t0.elapsed().as_nanos() as u64,
        };
        // Uncontended (one walk per pass); a Mutex lock does not allocate.
        *sh.overhead.lock().unwrap_or_else(|e| e.into_inner()) = Some(o);
    }
    sh.walking.store(false, Ordering::SeqCst);
}

/// Waits until a replay thread's published progress reaches `k` ops.
#[cold]
fn wait_progress(p: &AtomicU64, k: u64) {
    let mut spins = 0u32;
    while p.load(Ordering::Acquire) < k {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else if spins < 1024 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// Replay threads as OS threads of their own, created and joined without the harness
/// allocating (`pthread_create` on a launch record made before the replay started), so that a
/// thread created or ended during the replay costs what it cost the program: the allocator
/// sees a new thread, and a joined one has run its thread teardown.
mod os_thread {
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What a new thread runs: `f(me, set)`.
    pub struct Launch<'a, F> {
        f: &'a F,
        me: usize,
        set: AtomicUsize,
    }

    impl<'a, F: Fn(usize, usize) + Sync> Launch<'a, F> {
        pub fn new(f: &'a F, me: usize) -> Self {
            Launch {
                f,
                me,
                set: AtomicUsize::new(0),
            }
        }

        /// The histogram set the thread uses (set before it is created).
        pub fn set(&self, set: usize) {
            self.set.store(set, Ordering::Relaxed);
        }
    }

    extern "C" fn entry<F: Fn(usize, usize) + Sync>(arg: *mut c_void) -> *mut c_void {
        // SAFETY: `arg` is the `Launch<F>` given to `Threads::spawn`; the engine drops its
        // `Threads` (which joins every thread it created) before the launches.
        let l = unsafe { &*(arg as *const Launch<'_, F>) };
        (l.f)(l.me, l.set.load(Ordering::Relaxed));
        std::ptr::null_mut()
    }

    /// The threads created, by replay thread; every one is joined at the latest on drop.
    pub struct Threads {
        ids: Vec<Option<libc::pthread_t>>,
    }

    impl Threads {
        pub fn new(n: usize) -> Threads {
            Threads { ids: vec![None; n] }
        }

        /// Creates replay thread `me`, running `l`, which must outlive this `Threads`.
        pub fn spawn<F: Fn(usize, usize) + Sync>(
            &mut self,
            me: usize,
            l: &Launch<'_, F>,
        ) -> std::io::Result<()> {
            let mut id: libc::pthread_t = 0;
            // SAFETY: `entry::<F>` has the start routine's signature and reads `l` as the
            // `Launch<F>` it is; `l` outlives the thread (the caller's promise, kept by the
            // engine: see `entry`); default attributes (as a program's threads).
            let rc = unsafe {
                libc::pthread_create(
                    &mut id,
                    std::ptr::null(),
                    entry::<F>,
                    l as *const Launch<'_, F> as *mut c_void,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            self.ids[me] = Some(id);
            Ok(())
        }

        /// Waits for replay thread `me` to end; false if it was not (or no longer) running.
        pub fn join(&mut self, me: usize) -> bool {
            match self.ids[me].take() {
                Some(id) => {
                    // SAFETY: `id` is a joinable thread this value created and has not joined.
                    unsafe { libc::pthread_join(id, std::ptr::null_mut()) };
                    true
                }
                None => false,
            }
        }

        /// Joins every thread still running.
        pub fn join_all(&mut self) {
            for me in 0..self.ids.len() {
                self.join(me);
            }
        }
    }

    impl Drop for Threads {
        fn drop(&mut self) {
            self.join_all();
        }
    }

    /// The replay cannot go on (other threads may wait for the one that failed): one line and
    /// abort, which the parent reports as a crash.
    pub fn fatal(what: &str) -> ! {
        eprintln!("replay: {what}: {}", std::io::Error::last_os_error());
        std::process::abort()
    }
}

fn new_histograms() -> Vec<Histogram<u64>> {
    (0..5)
        .map(|_| {
            let mut h =
                Histogram::<u64>::new_with_bounds(1, HIST_MAX, 3).expect("valid histogram bounds");
            // Fault the counts in now, not in the loop.
            h.record(1).expect("in range");
            h.reset();
            h
        })
        .collect()
}

fn live_at(plan: &PlanView<'_>, progress: &[Padded]) -> (u64, u64) {
    let mut ops = 0u64;
    let mut live = 0i64;
    for (t, p) in plan.threads.iter().zip(progress) {
        let done = p.0.load(Ordering::Relaxed);
        ops += done;
        let k = (done as usize).div_ceil(plan.meta.checkpoint.max(1) as usize);
        live += t.checkpoints.get(k).copied().unwrap_or(0);
    }
    (ops, live.max(0) as u64)
}

/// The allocator's statistics the sampler reads ([`crate::introspect`]): the probe, the
/// buffer, the period.
struct Introspection<'a> {
    probe: &'a mut dyn Probe,
    readings: &'a mut Readings,
    period: Duration,
}

/// The sampler: every `period`, RSS, progress and live bytes, into a buffer sized up front
/// (when it fills, every other sample is dropped and the period doubles: no allocation); after
/// a sample, the allocator's statistics if `intro.period` has passed since the last reading
/// (the same rule for its own buffer).
fn sampler(
    plan: &PlanView<'_>,
    sh: &Shared<'_>,
    mut period: Duration,
    buf: &mut Vec<Sample>,
    mut intro: Option<Introspection<'_>>,
    mut maps: Option<&mut Snapshots>,
) {
    crate::oscalls::harness_thread();
    // Counted with the replay threads: the go is given once this thread has started, so what
    // its start allocates is never counted against the loop.
    sh.arrived.fetch_add(1, Ordering::AcqRel);
    while !sh.go.load(Ordering::Acquire) {
        if sh.abort.load(Ordering::Acquire) {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let start = *sh.start.get().expect("set before go");
    let n = plan.threads.len();
    let mut last_reading = Duration::ZERO;
    if let Some(m) = maps.as_deref_mut() {
        m.take(start.elapsed().as_nanos() as u64);
    }
    buf.push(Sample {
        phase: Phase::Replay,
        t_ns: start.elapsed().as_nanos() as u64,
        ops_done: 0,
        live_bytes: 0,
        rss_bytes: sh.statm.rss_bytes(),
        os: crate::oscalls::point(),
    });
    while sh.finished.load(Ordering::Acquire) < n {
        std::thread::sleep(period);
        let (ops, live) = live_at(plan, &sh.progress);
        if let Some(e) = sh.external {
            e.store(ops, Ordering::Relaxed);
        }
        if sh.finished.load(Ordering::Acquire) >= n {
            break;
        }
        if buf.len() == buf.capacity() {
            let half = buf.len() / 2;
            for i in 0..half {
                buf[i] = buf[2 * i + 1];
            }
            buf.truncate(half);
            period *= 2;
        }
        buf.push(Sample {
            phase: Phase::Replay,
            t_ns: start.elapsed().as_nanos() as u64,
            ops_done: ops,
            live_bytes: live,
            rss_bytes: sh.statm.rss_bytes(),
            os: crate::oscalls::point(),
        });
        if let Some(m) = maps.as_deref_mut() {
            if m.nearly_full() {
                m.thin();
                period *= 2;
            }
            m.take(start.elapsed().as_nanos() as u64);
        }
        if let Some(i) = intro.as_mut() {
            let now = start.elapsed();
            if now.saturating_sub(last_reading) >= i.period {
                if i.readings.nearly_full() {
                    i.readings.thin();
                    i.period *= 2;
                }
                last_reading = now;
                i.readings
                    .read(i.probe, Phase::Replay, now.as_nanos() as u64);
            }
        }
    }
}

/// Samples the sampler buffer holds.
const SAMPLE_CAP: usize = 1 << 16;

/// Replays `plan` once through `a`. `external`, if given, receives the ops done so far.
pub fn run<A: Allocator>(
    a: &A,
    plan: &PlanView<'_>,
    opts: &PassOptions,
    external: Option<&AtomicU64>,
) -> Result<PassResult, ReplayError> {
    run_capture(a, plan, opts, external, None)
}

/// [`run`], and with `capture` the heap-map pass: every op into the capture's logs (one per
/// plan thread, sized to its ops), a mapping snapshot at each sample, one as the ops start
/// (the sampler's first act after the barrier) and one after the last op.
pub fn run_capture<A: Allocator>(
    a: &A,
    plan: &PlanView<'_>,
    opts: &PassOptions,
    external: Option<&AtomicU64>,
    mut capture: Option<&mut Capture>,
) -> Result<PassResult, ReplayError> {
    plan.check().map_err(ReplayError::BadInput)?;
    if capture.is_some() && opts.timed {
        return Err(ReplayError::BadInput(
            "the heap-map pass cannot be the timed pass (a bug in replay)".into(),
        ));
    }
    if opts.pace && plan.threads.iter().any(|t| t.ts.is_none()) {
        return Err(ReplayError::BadInput(
            "--pace needs a plan made with timestamps".into(),
        ));
    }
    let n = plan.threads.len();
    let table = Mapping::anon(plan.meta.slots as usize * 8)
        .map_err(|e| ReplayError::io("mapping the slot table", e))?;
    // SAFETY: the mapping is zeroed, 8-aligned and `slots × 8` bytes long; AtomicU64 has the
    // layout of u64 and zero is a valid value; it outlives the pass.
    let slots: &[AtomicU64] =
        unsafe { std::slice::from_raw_parts(table.as_ptr().cast(), plan.meta.slots as usize) };
    let statm = Statm::open().map_err(|e| ReplayError::io("opening /proc/self/statm", e))?;
    let (ns_per_tick, overhead) = if opts.timed {
        let (a, b) = sys::calibrate(Duration::from_millis(50));
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    if opts.order != plan.meta.order {
        return Err(ReplayError::BadInput(format!(
            "the pass asks for --order {} but the plan was made for {}",
            opts.order.name(),
            plan.meta.order.name()
        )));
    }
    let sh = Shared {
        slots,
        progress: (0..n).map(|_| Padded::default()).collect(),
        arrived: AtomicUsize::new(0),
        go: AtomicBool::new(false),
        abort: AtomicBool::new(false),
        finished: AtomicUsize::new(0),
        end_ns: AtomicU64::new(0),
        allocs_at_go: AtomicU64::new(0),
        allocs_at_end: AtomicU64::new(0),
        rss_at_peak: AtomicU64::new(0),
        live_at_peak: AtomicU64::new(0),
        smaps_at_peak: Default::default(),
        smaps_at_peak_set: AtomicBool::new(false),
        rss_after_peak_smaps: AtomicU64::new(0),
        running: AtomicUsize::new(0),
        walking: AtomicBool::new(false),
        overhead: Mutex::new(None),
        live: PaddedI64::default(),
        live_peak: PaddedI64::default(),
        done: Padded::default(),
        window: plan.meta.order.window().unwrap_or(0),
        start: std::sync::OnceLock::new(),
        statm,
        touch: Policy::new(opts.touch, opts.touch_fraction),
        external,
    };
    let meta = plan.meta;
    let initial: Vec<usize> = (0..n)
        .filter(|&i| meta.threads[i].start.is_none())
        .collect();
    // One set of histograms per replay thread alive at once (a thread created later takes
    // the set of one that was joined).
    let sets = (meta.replay_peak_threads as usize)
        .max(initial.len())
        .clamp(1, n.max(1));
    let hists: Vec<Mutex<Vec<Histogram<u64>>>> = (0..sets)
        .map(|_| {
            Mutex::new(if opts.timed {
                new_histograms()
            } else {
                Vec::new()
            })
        })
        .collect();
    let outs: Vec<Mutex<ThreadOut>> = (0..n).map(|_| Mutex::default()).collect();
    // The heap-map pass's logs, one per plan thread (empty, unallocated otherwise).
    let logs: Vec<Mutex<OpLog>> = match capture.as_deref_mut() {
        Some(c) => {
            c.logs = (0..n)
                .map(|i| OpLog::with_capacity(plan.threads[i].ops.len()))
                .collect();
            std::mem::take(&mut c.logs)
                .into_iter()
                .map(Mutex::new)
                .collect()
        }
        None => (0..n).map(|_| Mutex::default()).collect(),
    };
    let mut snapshots = capture.as_deref_mut().map(|c| &mut c.snapshots);
    let map = snapshots.is_some();
    let mut samples: Vec<Sample> =
        Vec::with_capacity(if opts.sample_ms > 0 { SAMPLE_CAP } else { 1 });
    // Made now, so nothing is set up (or allocated) once the replay runs.
    let mut probe = if opts.sample_ms > 0 && opts.introspect_ms > 0 {
        a.probe()
    } else {
        None
    };
    let mut readings = Readings::with_capacity(if probe.is_some() {
        crate::introspect::POINTS_CAP
    } else {
        0
    });
    let mark = meta.peak_at;
    let ncpu = sys::cpus();
    let (timed, pace, ordered, pin) = (opts.timed, opts.pace, opts.order != Order::Deps, opts.pin);

    let mut result = PassResult {
        ns_per_tick,
        timer_overhead_ns: overhead,
        ..Default::default()
    };
    let sh = &sh;
    // What every replay thread runs (replay thread `me`, histogram set `set`).
    let body = |me: usize, set: usize| {
        let t = plan.threads[me];
        let mut out = ThreadOut {
            pinned: !pin || sys::pin_to(me % ncpu),
            ..ThreadOut::default()
        };
        a.thread_attach();
        out.see_cpu();
        if meta.threads[me].start.is_none() {
            sh.arrived.fetch_add(1, Ordering::AcqRel);
            let mut spins = 0u32;
            while !sh.go.load(Ordering::Acquire) {
                if sh.abort.load(Ordering::Acquire) {
                    *outs[me].lock().unwrap_or_else(|e| e.into_inner()) = out;
                    return;
                }
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        sh.running.fetch_add(1, Ordering::SeqCst);
        while sh.walking.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        let my_mark = mark.filter(|m| m.0 as usize == me).map(|m| m.1 as usize);
        let marks = &meta.threads[me].marks[..];
        let mut hist = hists[set].lock().unwrap_or_else(|e| e.into_inner());
        let hist = &mut hist[..];
        let mut log = logs[me].lock().unwrap_or_else(|e| e.into_inner());
        let log = &mut *log;
        macro_rules! go {
            ($t:literal, $p:literal, $o:literal, $m:literal) => {
                replay_thread::<A, $t, $p, $o, $m>(
                    a, t, my_mark, marks, plan, sh, me, &mut out, hist, log,
                )
            };
        }
        // SAFETY: the plan was checked above; `map` never comes with `timed` (checked too).
        unsafe {
            match (timed, pace, ordered, map) {
                (false, false, false, false) => go!(false, false, false, false),
                (true, false, false, _) => go!(true, false, false, false),
                (false, true, false, false) => go!(false, true, false, false),
                (true, true, false, _) => go!(true, true, false, false),
                (false, false, true, false) => go!(false, false, true, false),
                (true, false, true, _) => go!(true, false, true, false),
                (false, true, true, false) => go!(false, true, true, false),
                (true, true, true, _) => go!(true, true, true, false),
                (false, false, false, true) => go!(false, false, false, true),
                (false, true, false, true) => go!(false, true, false, true),
                (false, false, true, true) => go!(false, false, true, true),
                (false, true, true, true) => go!(false, true, true, true),
            }
        }
        sh.running.fetch_sub(1, Ordering::SeqCst);
        // The count is monotonic: the largest snapshot is the latest loop end's.
        sh.allocs_at_end
            .fetch_max(mem::process_allocs(), Ordering::AcqRel);
        let end = sh.start.get().expect("set before go").elapsed();
        sh.end_ns.fetch_max(end.as_nanos() as u64, Ordering::AcqRel);
        out.see_cpu();
        sh.finished.fetch_add(1, Ordering::AcqRel);
        a.thread_detach();
        *outs[me].lock().unwrap_or_else(|e| e.into_inner()) = out;
    };
    let launches: Vec<os_thread::Launch<'_, _>> =
        (0..n).map(|me| os_thread::Launch::new(&body, me)).collect();
    // Declared after what the threads borrow, so dropped (every thread joined) first.
    let mut threads = os_thread::Threads::new(n);
    // Sized now: nothing on this thread may allocate once the replay runs.
    let mut set_of = vec![0usize; n];
    let mut free_sets: Vec<usize> = Vec::with_capacity(sets);
    let usage0 = std::thread::scope(|s| {
        let sampler_h = (opts.sample_ms > 0).then(|| {
            let samples = &mut samples;
            let period = Duration::from_millis(opts.sample_ms);
            let intro = probe.as_deref_mut().map(|probe| Introspection {
                probe,
                readings: &mut readings,
                period: Duration::from_millis(opts.introspect_ms),
            });
            let maps = snapshots.as_deref_mut();
            s.spawn(move || sampler(plan, sh, period, samples, intro, maps))
        });
        for (k, &me) in initial.iter().enumerate() {
            set_of[me] = k;
            launches[me].set(k);
            if let Err(e) = threads.spawn(me, &launches[me]) {
                // Let the threads that did start leave the barrier without replaying.
                sh.abort.store(true, Ordering::Release);
                threads.join_all();
                return Err(ReplayError::io("starting a replay thread", e));
            }
        }
        let arrivals = initial.len() + usize::from(sampler_h.is_some());
        while sh.arrived.load(Ordering::Acquire) < arrivals {
            std::thread::sleep(Duration::from_micros(100));
        }
        // Baseline: everything the harness needs is in place; no op has run.
        let baseline = sh.statm.rss_bytes();
        sys::reset_peak_rss();
        let usage0 = Usage::now();
        result.started_unix_ns = sys::unix_now_ns();
        result.baseline_rss_bytes = baseline;
        crate::inside::loop_start();
        sh.allocs_at_go
            .store(mem::process_allocs(), Ordering::Relaxed);
        sh.start.set(Instant::now()).expect("set once");
        sh.go.store(true, Ordering::Release);
        // Threads the trace started later: each once the op before its start is done and the
        // threads that had ended by then are joined (torn down).
        let (mut live, mut joined, mut next_set) = (initial.len() as u32, 0usize, initial.len());
        let mut peak = live;
        for &i in &meta.spawn_order {
            let i = i as usize;
            let st = meta.threads[i].start.unwrap_or_default();
            while joined < st.exits as usize {
                let j = meta.exit_order[joined] as usize;
                if threads.join(j) {
                    live -= 1;
                    free_sets.push(set_of[j]);
                }
                joined += 1;
            }
            if let Some((c, k)) = st.after {
                wait_progress(&sh.progress[c as usize].0, k);
            }
            let set = free_sets.pop().unwrap_or_else(|| {
                next_set += 1;
                next_set - 1
            });
            if set >= sets {
                os_thread::fatal("the plan's thread bound is wrong (a bug in replay)");
            }
            set_of[i] = set;
            launches[i].set(set);
            if threads.spawn(i, &launches[i]).is_err() {
                os_thread::fatal("could not start a replay thread during the replay");
            }
            live += 1;
            peak = peak.max(live);
        }
        threads.join_all();
        crate::inside::loop_end();
        result.peak_replay_threads = peak;
        if let Some(h) = sampler_h {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
        Ok::<_, ReplayError>(usage0)
    })?;
    drop(threads);
    drop(launches);
    let outs: Vec<ThreadOut> = outs
        .into_iter()
        .map(|o| o.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    let hists: Vec<Vec<Histogram<u64>>> = hists
        .into_iter()
        .map(|h| h.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    result.measured_peak_live_bytes = sh.live_peak.0.load(Ordering::Acquire).max(0) as u64;
    let start = *sh.start.get().expect("set before go");
    // Every replay thread is gone (joined): what the allocator keeps now is retained.
    let after_ns = start.elapsed().as_nanos() as u64;
    let rss_after = sh.statm.rss_bytes();
    let usage = Usage::now().since(&usage0);
    result.smaps_end = sys::Smaps::read();
    result.statm_end_bytes = rss_after;
    let baseline = result.baseline_rss_bytes;
    let heap = |rss: u64| rss as i64 - baseline as i64;
    let (ops_done, live) = live_at(plan, &sh.progress);
    samples.push(Sample {
        phase: Phase::After,
        t_ns: after_ns,
        ops_done,
        live_bytes: live,
        rss_bytes: rss_after,
        os: crate::oscalls::point(),
    });
    result.retained_heap_rss_bytes[0] = Some(heap(rss_after));
    if let Some(m) = snapshots {
        if m.nearly_full() {
            m.thin();
        }
        m.take(after_ns);
    }
    let overhead = *sh.overhead.lock().unwrap_or_else(|e| e.into_inner());
    // The walk happened inside the pass; its time is not the allocator's.
    result.wall_ns = sh
        .end_ns
        .load(Ordering::Acquire)
        .saturating_sub(overhead.map_or(0, |o| o.walk_ns));
    result.overhead_at_peak = overhead;
    result.usage = usage;
    if let Some(p) = probe.as_deref_mut() {
        readings.read(p, Phase::After, start.elapsed().as_nanos() as u64);
    }
    result.introspection = readings.points();
    result.introspection_dropped = readings.dropped;
    drop(probe);
    result.alloc_stats = a.stats();
    let peak_sampled = samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0);
    let at_peak = sh.rss_at_peak.load(Ordering::Relaxed);
    result.peak_rss_bytes = sys::peak_rss_bytes()
        .unwrap_or(0)
        .max(peak_sampled)
        .max(at_peak);
    result.heap_rss_at_peak_live_bytes = (at_peak > 0).then(|| heap(at_peak));
    result.live_bytes_at_peak_mark = (at_peak > 0).then(|| sh.live_at_peak.load(Ordering::Relaxed));
    // Asked only now: a version query may initialise the allocator (jemalloc's mallctl does),
    // which belongs to the replay, not to the baseline.
    result.allocator_version = a.version();
    let end_ns = sh.end_ns.load(Ordering::Acquire);
    for (i, delay) in RETAINED_AT.iter().enumerate() {
        if *delay > opts.retained_wait + 1e-9 {
            break;
        }
        let due = Duration::from_nanos(end_ns) + Duration::from_secs_f64(*delay);
        if let Some(left) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
        let rss = sh.statm.rss_bytes();
        samples.push(Sample {
            phase: Phase::After,
            t_ns: start.elapsed().as_nanos() as u64,
            ops_done,
            live_bytes: live,
            rss_bytes: rss,
            os: crate::oscalls::point(),
        });
        result.retained_heap_rss_bytes[i + 1] = Some(heap(rss));
    }
    result.harness_allocs_in_loop = sh
        .allocs_at_end
        .load(Ordering::Relaxed)
        .saturating_sub(sh.allocs_at_go.load(Ordering::Relaxed));
    result.pinned = opts.pin && outs.iter().all(|o| o.pinned);
    if sh.smaps_at_peak_set.load(Ordering::Acquire) {
        let v = |k: usize| sh.smaps_at_peak[k].load(Ordering::Relaxed);
        result.smaps_at_peak = Some(sys::Smaps {
            rss: v(0),
            pss: v(1),
            anonymous: v(2),
            anon_huge_pages: v(3),
        });
        result.statm_at_peak_bytes = Some(at_peak);
        result.statm_after_peak_smaps_bytes = Some(sh.rss_after_peak_smaps.load(Ordering::Relaxed));
    }
    result.thread_cpus = outs
        .iter()
        .map(|o| (0..64).filter(|c| o.cpus & (1u64 << c) != 0).collect())
        .collect();
    result.cpu_changes_seen = outs.iter().map(|o| o.cpu_changes).sum();
    for o in &outs {
        for (k, c) in o.counts.iter().enumerate() {
            result.ops_by_kind[k] += c;
        }
        result.failed_allocations += o.failed;
        result.waits += o.waits;
    }
    result.samples = samples;
    if opts.timed {
        let tick = ns_per_tick.unwrap_or(1.0);
        let mut merged = new_histograms();
        for hs in &hists {
            for (m, h) in merged.iter_mut().zip(hs) {
                m.add(h).expect("same bounds");
            }
        }
        for c in OpClass::ALL {
            let h = &merged[c as usize];
            if h.is_empty() {
                continue;
            }
            let ns = |t: u64| (t as f64 * tick).round() as u64;
            result.latency.push(Latency {
                op: c,
                count: h.len(),
                mean_ns: h.mean() * tick,
                quantiles: QUANTILES
                    .iter()
                    .map(|&q| {
                        let v = if q == 0.0 {
                            h.min()
                        } else if q == 1.0 {
                            h.max()
                        } else {
                            h.value_at_quantile(q)
                        };
                        (q, ns(v))
                    })
                    .collect(),
            });
        }
    }
    if let Some(c) = capture {
        c.logs = logs
            .into_iter()
            .map(|l| l.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect();
    }
    drop(table);
    Ok(result)
}
