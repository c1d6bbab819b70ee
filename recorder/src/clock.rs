//! The event clock: CLOCK_MONOTONIC in ns (through the vDSO: no syscall), the clock the trace
//! header declares. With the `tsc` clocksource the vDSO reads the TSC with a serialising
//! `rdtscp`/`lfence`, so a stamp taken after an allocator call cannot be read before the call's
//! loads completed (contract 3).

/// CLOCK_MONOTONIC now, in ns.
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
