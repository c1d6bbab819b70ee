//! The event clock. The trace's timestamps are CLOCK_MONOTONIC ns since time 0 (what the header
//! declares); how they are taken is one of two ways, chosen once per process
//! (`ALLOCLAB_CLOCK`, default `auto`):
//!
//! * **tsc** (when `/proc/cpuinfo` has `constant_tsc`, `nonstop_tsc` and `rdtscp` and the
//!   kernel's clocksource is `tsc`, i.e. the kernel itself trusts the TSC to be synchronised
//!   across CPUs): a hook stores the raw time-stamp counter in its ring, and the writer thread
//!   turns ticks into ns when it encodes a frame, with **one linear map per process**:
//!   `ns = anchor_ns + (tick − anchor_tick) × rate`. The anchor is a (tick, CLOCK_MONOTONIC)
//!   pair taken at time 0; the rate is measured once, against a second pair, when the first
//!   frame is written (so nothing delays the program's start), and never changes after. The
//!   map is increasing, so the order of stamps (per thread, and across threads) is the order of
//!   the ticks: exact. Its only error is the rate's (pair uncertainty ÷ calibration time), a
//!   slow drift against CLOCK_MONOTONIC that the trailer reports (`recorder.clock.drift_ns`).
//!   A forked child keeps its parent's map (same time 0, same rate); an exec'd program starts
//!   its own.
//! * **monotonic**: a vDSO `clock_gettime(CLOCK_MONOTONIC)` per event (no syscall).
//!
//! Contract 3 (an object's free is stamped after its allocation and before the next allocation
//! that returns its address, whichever threads made them) needs, once a second thread records,
//! every stamp to be ordered with the thread's own memory accesses: it is read with `rdtscp`,
//! which waits until every older instruction has completed (the loads that found the block, or
//! that gave the thread the pointer it frees) and cannot pass a younger store (the free that
//! hands the block back). A plain `rdtsc` is not enough, even before a free: it may execute
//! before the thread has loaded the pointer, i.e. before another thread's allocation of it —
//! measured on a producer/consumer handoff (`tests/c/handoff.c`): up to dozens of allocation
//! and free pairs per million on the wrong side of each other, by 15–35 ns. The vDSO reads the TSC with
//! `rdtscp` (or `lfence; rdtsc`) too.
//!
//! While a process has recorded on one thread only, the order of its events is the file order
//! and no other thread's stamp can be compared with them: stamps are then a plain `rdtsc`
//! (half the cost of a waiting `rdtscp` here). The first event of a second thread switches
//! every thread to `rdtscp` for good, before that thread's first stamp; a thread can only
//! receive a block or a pointer from the second thread after that thread's switch became
//! visible (x86 stores are seen in order), and its next stamp reads the switch after those loads
//! (loads are not reordered; a stamp speculated on the old value is thrown away with the
//! mispredicted branch). A fork child (one thread) starts again with `rdtsc`.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Stamps keep 60 bits (a ring slot's first word holds the kind in its top 4 bits).
pub const STAMP_BITS: u32 = 60;
const STAMP_MASK: u64 = (1 << STAMP_BITS) - 1;

/// Clock modes (also the values of `ALLOCLAB_CLOCK`, parsed in [`crate::options`]).
pub const AUTO: u8 = 0;
pub const MONOTONIC: u8 = 1;
pub const TSC: u8 = 2;

/// The hot path's switch: [`VDSO`], [`TSC_ONE_THREAD`] or [`TSC_ORDERED`].
static HOT: AtomicU8 = AtomicU8::new(VDSO);
const VDSO: u8 = 0;
const TSC_ONE_THREAD: u8 = 1;
const TSC_ORDERED: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(MONOTONIC);
/// [`init`]'s progress: 0 not begun, 1 under way, 2 done.
static INIT: AtomicU8 = AtomicU8::new(0);
/// Time 0: the stamp (tick or ns) and its CLOCK_MONOTONIC ns.
static ANCHOR_STAMP: AtomicU64 = AtomicU64::new(0);
static ANCHOR_NS: AtomicU64 = AtomicU64::new(0);
/// ns per stamp unit in 32.32 fixed point; 0 until the TSC rate is measured.
static MULT: AtomicU64 = AtomicU64::new(0);
/// The calibration: ticks and ns between the anchor and the second pair.
static CAL_TICKS: AtomicU64 = AtomicU64::new(0);
static CAL_NS: AtomicU64 = AtomicU64::new(0);
/// Why the TSC is not used (index into [`WHY`]), for the header.
static WHY_NOT: AtomicU8 = AtomicU8::new(0);
/// Stamps the writer raised to their thread's previous one (a TSC read out of order, or a
/// thread moved to a CPU whose counter lags): reported in the trailer, expected 0.
pub static CLAMPED: AtomicU64 = AtomicU64::new(0);

const WHY: [&str; 5] = [
    "",
    "ALLOCLAB_CLOCK=monotonic",
    "/proc/cpuinfo lacks constant_tsc, nonstop_tsc or rdtscp",
    "the kernel's clocksource is not tsc",
    "not an x86_64 build",
];

/// A calibration is at least this long (ns); a program that ends sooner waits the difference
/// once, at its end.
const MIN_CALIBRATION_NS: u64 = 200_000;

/// CLOCK_MONOTONIC now, in ns (vDSO).
#[inline(always)]
pub fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: t is a live, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64).wrapping_mul(1_000_000_000) + t.tv_nsec as u64
}

/// The stamp of an event, in the process's clock (TSC ticks or CLOCK_MONOTONIC ns), ordered
/// with the calling thread's memory accesses once several threads record (see the module doc).
#[inline(always)]
pub fn stamp() -> u64 {
    #[cfg(target_arch = "x86_64")]
    match HOT.load(Ordering::Relaxed) {
        TSC_ORDERED => return rdtscp(),
        TSC_ONE_THREAD => return rdtsc(),
        _ => {}
    }
    now_ns()
}

/// A stamp that is always ordered (thread start and exit: off the hot path).
pub fn ordered_stamp() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if HOT.load(Ordering::Relaxed) != VDSO {
        return rdtscp();
    }
    now_ns()
}

/// A second thread is about to record: from now on every stamp is ordered. Called before the
/// thread's first stamp.
pub fn several_threads() {
    if HOT.load(Ordering::Relaxed) == TSC_ONE_THREAD {
        HOT.store(TSC_ORDERED, Ordering::SeqCst);
    }
}

/// In a fork child (one thread again).
pub fn after_fork_child() {
    // A fork while another thread was in `init`: that thread does not exist here.
    let _ = INIT.compare_exchange(1, 0, Ordering::AcqRel, Ordering::Relaxed);
    if HOT.load(Ordering::Relaxed) == TSC_ORDERED {
        HOT.store(TSC_ONE_THREAD, Ordering::SeqCst);
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions (HOT selects it only where the TSC is usable).
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rdtscp() -> u64 {
    let mut aux = 0u32;
    // SAFETY: rdtscp writes the TSC_AUX value to `aux`, a live local; the CPU has rdtscp
    // (checked before HOT selects the TSC).
    unsafe { core::arch::x86_64::__rdtscp(&mut aux) }
}

/// Chooses the clock and takes time 0's anchor, once per process (at the first event, or at
/// load). Reads two small files; never allocates through the hooks (callers hold the guard).
pub fn init() {
    if INIT.load(Ordering::Acquire) == 2 {
        return;
    }
    if INIT
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Acquire)
        .is_err()
    {
        // Another thread is choosing: wait for it (a few µs).
        while INIT.load(Ordering::Acquire) != 2 {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        return;
    }
    {
        let want = crate::options::get().clock;
        let why = if want == MONOTONIC { 1 } else { tsc_unusable() };
        WHY_NOT.store(why, Ordering::Relaxed);
        if why != 0 && want == TSC {
            crate::diag::say(&format_args!(
                "ALLOCLAB_CLOCK=tsc, but {}: using clock_gettime",
                WHY[why as usize]
            ));
        }
        if why == 0 {
            #[cfg(target_arch = "x86_64")]
            {
                let (tick, ns) = tsc_pair();
                ANCHOR_STAMP.store(tick, Ordering::Relaxed);
                ANCHOR_NS.store(ns, Ordering::Relaxed);
                MODE.store(TSC, Ordering::Relaxed);
                HOT.store(TSC_ONE_THREAD, Ordering::Release);
            }
        } else {
            let ns = now_ns();
            ANCHOR_STAMP.store(ns, Ordering::Relaxed);
            ANCHOR_NS.store(ns, Ordering::Relaxed);
            MULT.store(1 << 32, Ordering::Relaxed);
            MODE.store(MONOTONIC, Ordering::Relaxed);
        }
    }
    INIT.store(2, Ordering::Release);
}

/// Whether [`init`] chose the TSC.
pub fn is_tsc() -> bool {
    MODE.load(Ordering::Relaxed) == TSC
}

/// CLOCK_MONOTONIC ns of time 0 (after [`init`]).
pub fn anchor_ns() -> u64 {
    ANCHOR_NS.load(Ordering::Relaxed)
}

/// 0 if the TSC may be used, else the index of the reason in [`WHY`].
fn tsc_unusable() -> u8 {
    #[cfg(not(target_arch = "x86_64"))]
    return 4;
    #[cfg(target_arch = "x86_64")]
    {
        let flags_ok = read_head("/proc/cpuinfo", 64 << 10)
            .as_deref()
            .and_then(cpu_flags)
            .is_some_and(|f| {
                ["constant_tsc", "nonstop_tsc", "rdtscp"]
                    .iter()
                    .all(|want| f.split_ascii_whitespace().any(|x| x == *want))
            });
        if !flags_ok {
            return 2;
        }
        let source = read_head(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            256,
        );
        if source.as_deref().map(str::trim) != Some("tsc") {
            return 3;
        }
        0
    }
}

/// The start of a (proc/sys) file, at most `max` bytes, up to the first `flags` line's end.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn read_head(path: &str, max: usize) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; max];
    let mut len = 0;
    while len < max {
        // Small reads: the kernel formats /proc/cpuinfo as it is read.
        let n = f.read(&mut buf[len..(len + 4096).min(max)]).ok()?;
        if n == 0 {
            break;
        }
        len += n;
        // /proc/cpuinfo: the first CPU's block is enough (later ones cost the kernel work).
        if cpu_flags(&String::from_utf8_lossy(&buf[..len])).is_some() {
            break;
        }
    }
    buf.truncate(len);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The value of the first complete `flags` line of /proc/cpuinfo text.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn cpu_flags(text: &str) -> Option<&str> {
    let at = text
        .match_indices("flags")
        .find(|(i, _)| *i == 0 || text.as_bytes()[i - 1] == b'\n')?
        .0;
    let line = &text[at..];
    let end = line.find('\n')?;
    let (key, value) = line[..end].split_once(':')?;
    (key.trim() == "flags").then_some(value)
}

/// A (tick, CLOCK_MONOTONIC ns) pair: the tightest of a few `rdtscp; clock_gettime; rdtscp`
/// brackets, the tick taken as the bracket's middle.
#[cfg(target_arch = "x86_64")]
fn tsc_pair() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..7 {
        let t1 = rdtscp();
        let ns = now_ns();
        let t2 = rdtscp();
        let w = t2.wrapping_sub(t1);
        if w < best.0 {
            best = (w, t1 + w / 2, ns);
        }
    }
    (best.1, best.2)
}

/// Stamps to trace ns: `ts = (stamp − anchor) × rate`, the process's one map.
#[derive(Clone, Copy, Debug)]
pub struct Map {
    anchor: u64,
    mult: u64,
}

impl Map {
    /// A stamp relative to time 0, in stamp units (ticks or ns). A stamp a little before the
    /// anchor (a counter read on another CPU just at time 0) counts as 0.
    #[inline]
    pub fn rel(&self, stamp: u64) -> u64 {
        let d = stamp.wrapping_sub(self.anchor) & STAMP_MASK;
        if d > STAMP_MASK / 2 { 0 } else { d }
    }

    /// A relative stamp in ns since time 0.
    #[inline]
    pub fn ns(&self, rel: u64) -> u64 {
        ((rel as u128 * self.mult as u128) >> 32) as u64
    }
}

/// The anchor (known from time 0), for relative stamps; the rate may not be known yet.
pub fn anchor_map() -> Map {
    Map {
        anchor: ANCHOR_STAMP.load(Ordering::Relaxed),
        mult: MULT.load(Ordering::Acquire),
    }
}

/// The process's map, measuring the TSC rate first if this is the first frame. Only the
/// consumer (the holder of a session's sink lock) calls this.
pub fn map() -> Map {
    if MULT.load(Ordering::Acquire) == 0 {
        calibrate();
    }
    anchor_map()
}

#[cold]
fn calibrate() {
    #[cfg(target_arch = "x86_64")]
    {
        let (t0, n0) = (
            ANCHOR_STAMP.load(Ordering::Relaxed),
            ANCHOR_NS.load(Ordering::Relaxed),
        );
        let (mut t1, mut n1) = tsc_pair();
        while n1.saturating_sub(n0) < MIN_CALIBRATION_NS || t1.wrapping_sub(t0) == 0 {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
            (t1, n1) = tsc_pair();
        }
        let (dt, dn) = (t1.wrapping_sub(t0), n1 - n0);
        let mult = ((dn as u128) << 32) / dt as u128;
        CAL_TICKS.store(dt, Ordering::Relaxed);
        CAL_NS.store(dn, Ordering::Relaxed);
        // A concurrent consumer (there is none: one sink per process) would compute the same.
        let _ = MULT.compare_exchange(0, (mult as u64).max(1), Ordering::AcqRel, Ordering::Acquire);
    }
    #[cfg(not(target_arch = "x86_64"))]
    MULT.store(1 << 32, Ordering::Release);
}

/// The header's description of the clock.
pub fn describe() -> String {
    if is_tsc() {
        "tsc: rdtsc (rdtscp once a second thread records) ticks, turned into CLOCK_MONOTONIC \
         ns by one linear map per process (anchored at time 0, rate measured once at the first \
         frame: recorder.clock.* in the trailer)"
            .into()
    } else {
        let why = WHY[WHY_NOT.load(Ordering::Relaxed) as usize];
        format!("clock_gettime(CLOCK_MONOTONIC) ({why})")
    }
}

/// The trailer's facts about the clock: the TSC map and how far it drifted from
/// CLOCK_MONOTONIC by the end (map(now) − CLOCK_MONOTONIC now, ns).
pub fn facts() -> Vec<(String, String)> {
    let mut v = vec![(
        "recorder.clock".to_string(),
        if is_tsc() { "tsc" } else { "monotonic" }.to_string(),
    )];
    #[cfg(target_arch = "x86_64")]
    if is_tsc() {
        let m = map();
        let (tick, ns) = tsc_pair();
        let mapped = anchor_ns() + m.ns(m.rel(tick));
        let (dt, dn) = (
            CAL_TICKS.load(Ordering::Relaxed),
            CAL_NS.load(Ordering::Relaxed),
        );
        v.push((
            "recorder.clock.tsc_hz".into(),
            format!("{:.0}", dt as f64 * 1e9 / dn.max(1) as f64),
        ));
        v.push(("recorder.clock.calibration_ns".into(), dn.to_string()));
        v.push((
            "recorder.clock.drift_ns".into(),
            (mapped as i64 - ns as i64).to_string(),
        ));
    }
    if is_tsc() {
        v.push((
            "recorder.clock.ordered".into(),
            (HOT.load(Ordering::Relaxed) == TSC_ORDERED).to_string(),
        ));
    }
    v.push((
        "recorder.clock.clamped".into(),
        CLAMPED.load(Ordering::Relaxed).to_string(),
    ));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_of_the_first_cpu() {
        let text = "processor\t: 0\nflags\t\t: fpu tsc rdtscp constant_tsc nonstop_tsc\n\
                    bugs\t\t:\n\nprocessor\t: 1\nflags\t\t: fpu\n";
        let f = cpu_flags(text).unwrap();
        assert!(f.split_ascii_whitespace().any(|x| x == "nonstop_tsc"));
        // A cut-off line is not a line yet.
        assert_eq!(cpu_flags("processor\t: 0\nflags\t\t: fpu tsc"), None);
        assert_eq!(cpu_flags("vmx flags\t: ept\n"), None);
    }

    #[test]
    fn the_map_is_increasing_and_wraps_at_60_bits() {
        // 2.5 GHz: 0.4 ns per tick.
        let m = Map {
            anchor: STAMP_MASK - 10,
            mult: (4u64 << 32) / 10,
        };
        assert_eq!(m.rel(STAMP_MASK - 10), 0);
        assert_eq!(m.rel(5), 16); // past the 60-bit wrap
        assert_eq!(m.rel(STAMP_MASK - 20), 0); // just before the anchor
        let mut prev = 0;
        for t in (0..10_000_000u64).step_by(7) {
            let ns = m.ns(t);
            assert!(ns >= prev);
            prev = ns;
        }
        assert_eq!(m.ns(2_500_000_000), 999_999_999); // 1 s, rounded down
        let id = Map {
            anchor: 100,
            mult: 1 << 32,
        };
        assert_eq!(id.ns(id.rel(1_000_100)), 1_000_000);
    }
}
