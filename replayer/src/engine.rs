//! The replay engine: one pass of a plan through one allocator, in the calling process.
//!
//! One replay thread per plan thread; all start together from a barrier. Each walks its op
//! array: an op that depends on another thread (WAIT flag) spins until its slot shows the
//! generation it expects (Acquire; `spin_loop`, then `yield` after 128 tries), then calls the
//! allocator, writes the new block as the touch policy says, and publishes the slot's new
//! pointer and generation (Release) — touching before publishing, so no other thread can free
//! a block still being written. No locks, no harness allocation, no system call in the loop:
//! every checkpoint period (1–1024 ops, the plan's) the thread stores its progress (a relaxed store), which the sampler
//! thread turns into live bytes through the plan's checkpoints.
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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::adapter::{AllocStats, Allocator};
use crate::error::ReplayError;
use crate::mem::{self, Mapping};
use crate::plan::{BIG, ClassCounts, Op, OpClass, PlanView, ThreadView, op};
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
    /// Time every call (the latency pass).
    pub timed: bool,
    /// Sampler period, ms (0: no samples).
    pub sample_ms: u64,
    /// Seconds to keep reading retained RSS after the last op (points at 0.1, 1 and 5 s that
    /// fit are read).
    pub retained_wait: f64,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            touch: Touch::Pages,
            touch_fraction: 1.0,
            pace: false,
            pin: false,
            timed: false,
            sample_ms: 10,
            retained_wait: 0.0,
        }
    }
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

/// The quantile grid of latency.parquet.
pub const QUANTILES: [f64; 17] = [
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

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
struct ThreadOut {
    counts: [u64; op::KINDS as usize],
    failed: u64,
    waits: u64,
    pinned: bool,
}

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
    start: std::sync::OnceLock<Instant>,
    statm: Statm,
    touch: Policy,
    /// Where external progress goes (the parent's bar), updated by the sampler.
    external: Option<&'a AtomicU64>,
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
/// `PACE`, `hist` the thread's histograms with `TIMED`.
///
/// # Safety
/// Every op's slot is inside `slots` ([`PlanView::check`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn run_ops<A: Allocator, const TIMED: bool, const PACE: bool>(
    a: &A,
    ops: &[Op],
    ts: &[u64],
    big: &[u64],
    next_big: &mut usize,
    sh: &Shared<'_>,
    out: &mut ThreadOut,
    hist: &mut [Histogram<u64>],
    start: Instant,
) {
    let how = sh.touch;
    for (j, o) in ops.iter().enumerate() {
        if PACE && ts[j] > start.elapsed().as_nanos() as u64 {
            pace_until(start, ts[j]);
        }
        let kind = o.kind & op::KIND_MASK;
        if kind == op::FREE_NULL {
            let t0 = if TIMED { sys::ticks() } else { 0 };
            // SAFETY: free(NULL) is always valid.
            unsafe { a.free(std::ptr::null_mut()) };
            if TIMED {
                hist[OpClass::Free as usize].saturating_record(sys::ticks() - t0);
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
                touch(p, size, how);
                p as u64
            }
        } else {
            0
        };
        slot.store(new | next, Ordering::Release);
    }
}

/// One replay thread: its whole array, in checkpoint-period chunks, with the peak mark.
///
/// # Safety
/// As [`run_ops`].
#[allow(clippy::too_many_arguments)]
unsafe fn replay_thread<A: Allocator, const TIMED: bool, const PACE: bool>(
    a: &A,
    view: ThreadView<'_>,
    mark: Option<usize>,
    plan: &PlanView<'_>,
    sh: &Shared<'_>,
    me: usize,
    out: &mut ThreadOut,
    hist: &mut [Histogram<u64>],
) {
    let start = *sh.start.get().expect("set before go");
    let (ops, ts, big) = (view.ops, view.ts, view.big);
    let every = plan.meta.checkpoint.max(1) as usize;
    let mut next_big = 0;
    let len = ops.len();
    let mut i = 0;
    while i < len {
        let mut end = ((i / every + 1) * every).min(len);
        if let Some(m) = mark
            && i < m
            && m < end
        {
            end = m;
        }
        let t = ts.map_or(&[][..], |t| &t[i..end]);
        // SAFETY: forwarded.
        unsafe {
            run_ops::<A, TIMED, PACE>(a, &ops[i..end], t, big, &mut next_big, sh, out, hist, start)
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
        }
        if i.is_multiple_of(every) || i == len {
            sh.progress[me].0.store(i as u64, Ordering::Relaxed);
        }
    }
    // Counted here, not in the loop (a counter per op costs the loop a store-forwarding
    // stall): the loop has no way out but the array's end, so it ran exactly these ops.
    for o in ops {
        out.counts[(o.kind & op::KIND_MASK) as usize] += 1;
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

/// The sampler: every `period`, RSS, progress and live bytes, into a buffer sized up front
/// (when it fills, every other sample is dropped and the period doubles: no allocation).
fn sampler(plan: &PlanView<'_>, sh: &Shared<'_>, mut period: Duration, buf: &mut Vec<Sample>) {
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
    buf.push(Sample {
        phase: Phase::Replay,
        t_ns: start.elapsed().as_nanos() as u64,
        ops_done: 0,
        live_bytes: 0,
        rss_bytes: sh.statm.rss_bytes(),
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
        });
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
    plan.check().map_err(ReplayError::BadInput)?;
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
        start: std::sync::OnceLock::new(),
        statm,
        touch: Policy::new(opts.touch, opts.touch_fraction),
        external,
    };
    let mut hists: Vec<Vec<Histogram<u64>>> = if opts.timed {
        (0..n).map(|_| new_histograms()).collect()
    } else {
        (0..n).map(|_| Vec::new()).collect()
    };
    let mut samples: Vec<Sample> =
        Vec::with_capacity(if opts.sample_ms > 0 { SAMPLE_CAP } else { 1 });
    let mark = plan.meta.peak_at;
    let ncpu = sys::cpus();

    let mut result = PassResult {
        ns_per_tick,
        timer_overhead_ns: overhead,
        ..Default::default()
    };
    let (usage0, outs) = std::thread::scope(|s| {
        let sh = &sh;
        let mut handles = Vec::with_capacity(n);
        for (me, hist) in hists.iter_mut().enumerate() {
            let t = plan.threads[me];
            let my_mark = mark.filter(|m| m.0 as usize == me).map(|m| m.1 as usize);
            let timed = opts.timed;
            let pace = opts.pace;
            let pin = opts.pin;
            let h = std::thread::Builder::new()
                .name(format!("replay-{me}"))
                .spawn_scoped(s, move || {
                    let mut out = ThreadOut {
                        counts: [0; op::KINDS as usize],
                        failed: 0,
                        waits: 0,
                        pinned: !pin || sys::pin_to(me % ncpu),
                    };
                    a.thread_attach();
                    sh.arrived.fetch_add(1, Ordering::AcqRel);
                    let mut spins = 0u32;
                    while !sh.go.load(Ordering::Acquire) {
                        if sh.abort.load(Ordering::Acquire) {
                            return out;
                        }
                        spins += 1;
                        if spins < 64 {
                            std::hint::spin_loop();
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    // SAFETY: the plan was checked above.
                    unsafe {
                        match (timed, pace) {
                            (false, false) => replay_thread::<A, false, false>(
                                a, t, my_mark, plan, sh, me, &mut out, hist,
                            ),
                            (true, false) => replay_thread::<A, true, false>(
                                a, t, my_mark, plan, sh, me, &mut out, hist,
                            ),
                            (false, true) => replay_thread::<A, false, true>(
                                a, t, my_mark, plan, sh, me, &mut out, hist,
                            ),
                            (true, true) => replay_thread::<A, true, true>(
                                a, t, my_mark, plan, sh, me, &mut out, hist,
                            ),
                        }
                    }
                    // The count is monotonic: the largest snapshot is the latest loop end's.
                    sh.allocs_at_end
                        .fetch_max(mem::process_allocs(), Ordering::AcqRel);
                    let end = sh.start.get().expect("set before go").elapsed();
                    sh.end_ns.fetch_max(end.as_nanos() as u64, Ordering::AcqRel);
                    sh.finished.fetch_add(1, Ordering::AcqRel);
                    a.thread_detach();
                    out
                })
                .map_err(|e| ReplayError::io("starting a replay thread", e));
            handles.push(h);
        }
        let sampler_h = (opts.sample_ms > 0).then(|| {
            let samples = &mut samples;
            let period = Duration::from_millis(opts.sample_ms);
            s.spawn(move || sampler(plan, sh, period, samples))
        });
        // Sized now: nothing on this thread may allocate once the replay runs.
        let mut outs: Vec<ThreadOut> = Vec::with_capacity(n);
        let handles: Vec<_> = match handles.into_iter().collect::<Result<_, _>>() {
            Ok(h) => h,
            Err(e) => {
                // Let the threads that did start leave the barrier without replaying.
                sh.abort.store(true, Ordering::Release);
                return Err(e);
            }
        };
        let arrivals = n + usize::from(sampler_h.is_some());
        while sh.arrived.load(Ordering::Acquire) < arrivals {
            std::thread::sleep(Duration::from_micros(100));
        }
        // Baseline: everything the harness needs is in place; no op has run.
        let baseline = sh.statm.rss_bytes();
        sys::reset_peak_rss();
        let usage0 = Usage::now();
        result.started_unix_ns = sys::unix_now_ns();
        result.baseline_rss_bytes = baseline;
        sh.allocs_at_go
            .store(mem::process_allocs(), Ordering::Relaxed);
        sh.start.set(Instant::now()).expect("set once");
        sh.go.store(true, Ordering::Release);
        for h in handles {
            outs.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        if let Some(h) = sampler_h {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
        Ok::<_, ReplayError>((usage0, outs))
    })?;
    let start = *sh.start.get().expect("set before go");
    // Every replay thread is gone (joined): what the allocator keeps now is retained.
    let after_ns = start.elapsed().as_nanos() as u64;
    let rss_after = sh.statm.rss_bytes();
    let usage = Usage::now().since(&usage0);
    let baseline = result.baseline_rss_bytes;
    let heap = |rss: u64| rss as i64 - baseline as i64;
    let (ops_done, live) = live_at(plan, &sh.progress);
    samples.push(Sample {
        phase: Phase::After,
        t_ns: after_ns,
        ops_done,
        live_bytes: live,
        rss_bytes: rss_after,
    });
    result.retained_heap_rss_bytes[0] = Some(heap(rss_after));
    result.wall_ns = sh.end_ns.load(Ordering::Acquire);
    result.usage = usage;
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
    let end_ns = result.wall_ns;
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
        });
        result.retained_heap_rss_bytes[i + 1] = Some(heap(rss));
    }
    result.harness_allocs_in_loop = sh
        .allocs_at_end
        .load(Ordering::Relaxed)
        .saturating_sub(sh.allocs_at_go.load(Ordering::Relaxed));
    result.pinned = opts.pin && outs.iter().all(|o| o.pinned);
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
    drop(table);
    Ok(result)
}
