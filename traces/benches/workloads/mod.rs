//! What `benches/codec.rs` and `examples/codec_profile.rs` share: their traces (real glibc
//! malloc/free calls stamped with CLOCK_MONOTONIC, as the recorder stamps them), the sequential
//! decode they time, and the thread CPU clock they time it with.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::hint::black_box;
use std::io::Cursor;
use traces::{AlignedFn, Event, Frame, Timed, TraceReader};

/// Decodes every frame of an in-memory trace in file order; returns the events read. Not
/// inlined, so a profile shows the decode as one function.
#[inline(never)]
pub fn decode_sequential(bytes: &[u8]) -> u64 {
    let mut r = TraceReader::new(Cursor::new(bytes), "mem").unwrap();
    let mut f = Frame::default();
    let mut n = 0u64;
    while r.next_frame(&mut f).unwrap() {
        n += f.events.len() as u64;
        black_box(&f.events);
    }
    n
}

/// CPU time of this thread, in seconds: unlike wall time, it does not count the time other
/// processes on this shared machine take the core away.
pub fn cpu_now() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

pub fn now() -> u64 {
    traces::monotonic_now_ns()
}

/// Real glibc calls, stamped as the recorder does: frees before, allocations after the call.
struct Rec {
    start: u64,
    out: Vec<Timed>,
}

impl Rec {
    /// Appends `event`, stamped now.
    fn stamp(&mut self, event: Event) {
        let ts = now() - self.start;
        self.out.push(Timed { ts, event });
    }
    fn malloc(&mut self, size: usize) -> *mut libc::c_void {
        // SAFETY: plain libc malloc; the result is only used as an opaque pointer or freed.
        let p = unsafe { libc::malloc(size) };
        self.stamp(Event::Malloc {
            size: size as u64,
            ptr: p as u64,
        });
        p
    }
    fn calloc(&mut self, n: usize, size: usize) -> *mut libc::c_void {
        // SAFETY: as above.
        let p = unsafe { libc::calloc(n, size) };
        self.stamp(Event::Calloc {
            nmemb: n as u64,
            size: size as u64,
            ptr: p as u64,
        });
        p
    }
    fn memalign(&mut self, align: usize, size: usize) -> *mut libc::c_void {
        let mut p = std::ptr::null_mut();
        // SAFETY: `p` is a valid out-pointer; align is a power of two multiple of sizeof(void*).
        unsafe { libc::posix_memalign(&mut p, align, size) };
        self.stamp(Event::Aligned {
            func: AlignedFn::PosixMemalign,
            align: align as u64,
            size: size as u64,
            ptr: p as u64,
        });
        p
    }
    fn realloc(&mut self, old: *mut libc::c_void, size: usize) -> *mut libc::c_void {
        // SAFETY: `old` came from this allocator and is live (or null).
        let p = unsafe { libc::realloc(old, size) };
        self.stamp(Event::Realloc {
            old_ptr: old as u64,
            size: size as u64,
            ptr: p as u64,
        });
        p
    }
    fn free(&mut self, p: *mut libc::c_void) {
        self.stamp(Event::Free { ptr: p as u64 });
        // SAFETY: `p` came from this allocator and is live.
        unsafe { libc::free(p) };
    }
}

pub fn churn(events: usize, start: u64) -> Vec<Timed> {
    let mut r = Rec {
        start,
        out: Vec::with_capacity(events + 8),
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut slots: Vec<*mut libc::c_void> = vec![std::ptr::null_mut(); 4096];
    while r.out.len() < events {
        let i = rng.random_range(0..slots.len());
        if !slots[i].is_null() {
            r.free(slots[i]);
        }
        slots[i] = r.malloc(rng.random_range(8..=32 * 1024));
    }
    for p in slots.into_iter().filter(|p| !p.is_null()) {
        r.free(p);
    }
    r.out
}

pub fn program(events: usize, start: u64) -> Vec<Timed> {
    let mut r = Rec {
        start,
        out: Vec::with_capacity(events + 8),
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let mut stack: Vec<*mut libc::c_void> = Vec::new();
    let mut long_lived: Vec<*mut libc::c_void> = Vec::new();
    let small = [
        16usize, 24, 32, 32, 48, 48, 56, 64, 64, 72, 96, 128, 136, 192, 256,
    ];
    while r.out.len() < events {
        let roll = rng.random_range(0..1000);
        if roll < 470 || stack.is_empty() {
            let p = match rng.random_range(0..64) {
                0 => r.memalign(64, small[rng.random_range(0..small.len())]),
                1..=4 => r.calloc(rng.random_range(1..8), 16),
                _ => r.malloc(small[rng.random_range(0..small.len())]),
            };
            stack.push(p);
        } else if roll < 940 {
            // LIFO-ish: mostly the newest objects die first.
            let back = (rng.random_range(0..8usize)).min(stack.len() - 1);
            let idx = stack.len() - 1 - back;
            let p = stack.swap_remove(idx);
            r.free(p);
        } else if roll < 990 {
            // A growing buffer: a few reallocs, then freed.
            let mut size = 64;
            let mut p = r.malloc(size);
            for _ in 0..rng.random_range(1..6) {
                size *= 2;
                p = r.realloc(p, size);
            }
            r.free(p);
        } else if long_lived.len() < 20_000 {
            long_lived.push(r.malloc(rng.random_range(32..4096)));
        }
        if stack.len() > 50_000 {
            let p = stack.swap_remove(0);
            r.free(p);
        }
    }
    for p in stack.into_iter().chain(long_lived) {
        r.free(p);
    }
    r.out
}
