//! Multithreaded stress in the manner of mimalloc's test-stress: many threads (more than the 2
//! cores here: oversubscribed on purpose), random sizes and alignments, realloc chains, blocks
//! handed to other threads through a shared transfer array and freed there, and threads that exit
//! while others still hold and free their blocks. Every block carries a header and a fill pattern
//! checked when it is freed.
//!
//! The same body runs over glibc's malloc (`system_*` tests), so a failure that shows up there
//! too is a test bug, not an allocator bug.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

static SERIAL: Mutex<()> = Mutex::new(());

trait Alloc: Sync {
    fn malloc(&self, n: usize) -> *mut u8;
    fn aligned(&self, align: usize, n: usize) -> *mut u8;
    unsafe fn realloc(&self, p: *mut u8, n: usize) -> *mut u8;
    unsafe fn free(&self, p: *mut u8);
}

struct Fancy;
impl Alloc for Fancy {
    fn malloc(&self, n: usize) -> *mut u8 {
        fancy::malloc(n)
    }
    fn aligned(&self, align: usize, n: usize) -> *mut u8 {
        fancy::aligned_alloc(align, n)
    }
    unsafe fn realloc(&self, p: *mut u8, n: usize) -> *mut u8 {
        unsafe { fancy::realloc(p, n) }
    }
    unsafe fn free(&self, p: *mut u8) {
        unsafe { fancy::free(p) }
    }
}

struct System;
impl Alloc for System {
    fn malloc(&self, n: usize) -> *mut u8 {
        unsafe { libc::malloc(n).cast() }
    }
    fn aligned(&self, align: usize, n: usize) -> *mut u8 {
        let mut p = core::ptr::null_mut();
        if unsafe { libc::posix_memalign(&mut p, align, n) } != 0 {
            return core::ptr::null_mut();
        }
        p.cast()
    }
    unsafe fn realloc(&self, p: *mut u8, n: usize) -> *mut u8 {
        unsafe { libc::realloc(p.cast(), n).cast() }
    }
    unsafe fn free(&self, p: *mut u8) {
        unsafe { libc::free(p.cast()) }
    }
}

/// Block header: size and cookie; the rest is filled from the cookie.
const HDR: usize = 16;

unsafe fn stamp(p: *mut u8, size: usize, cookie: u64) {
    unsafe {
        (p as *mut u64).write(size as u64);
        (p as *mut u64).add(1).write(cookie);
        let body = size - HDR;
        // Fill at most 256 bytes at each end: big blocks stay cheap to check.
        for i in 0..body.min(256) {
            *p.add(HDR + i) = (cookie as u8).wrapping_add(i as u8);
        }
        for i in body.saturating_sub(256).max(256.min(body))..body {
            *p.add(HDR + i) = (cookie as u8).wrapping_add(i as u8);
        }
    }
}

/// Checks a block; returns its size.
unsafe fn verify(p: *mut u8) -> usize {
    unsafe {
        let size = (p as *const u64).read() as usize;
        let cookie = (p as *const u64).add(1).read();
        assert!(
            size >= HDR && size < 64 << 20,
            "corrupt header at {p:p}: size {size}"
        );
        assert_eq!(cookie >> 32, 0xC0FFEE, "corrupt cookie at {p:p}");
        let body = size - HDR;
        for i in (0..body.min(256)).chain(body.saturating_sub(256).max(256.min(body))..body) {
            assert_eq!(
                *p.add(HDR + i),
                (cookie as u8).wrapping_add(i as u8),
                "block {p:p} size {size} byte {i} corrupted"
            );
        }
        size
    }
}

fn pick_size(r: &mut Xoshiro256PlusPlus) -> usize {
    let x: u32 = r.random_range(0..1000);
    HDR + if x < 700 {
        r.random_range(0..500)
    } else if x < 950 {
        r.random_range(500..8192)
    } else if x < 998 {
        r.random_range(8192..300_000)
    } else {
        r.random_range(1 << 20..3 << 20)
    }
}

const TRANSFER: usize = 1000;

fn worker<A: Alloc>(a: &A, transfer: &[AtomicPtr<u8>], seed: u64, iters: usize) {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut local: Vec<*mut u8> = Vec::with_capacity(1024);
    let mut cookie = 0xC0FFEE_0000_0000u64 | (seed & 0xFFFF) << 16;
    for _ in 0..iters {
        cookie = (cookie & !0xFFFF) | ((cookie + 1) & 0xFFFF);
        match r.random_range(0..100) {
            0..=44 => {
                let n = pick_size(&mut r);
                let p = if r.random_range(0..10) == 0 {
                    let align = 1usize << r.random_range(4..=13);
                    let p = a.aligned(align, n);
                    assert_eq!(p as usize % align, 0);
                    p
                } else {
                    a.malloc(n)
                };
                assert!(!p.is_null(), "out of memory for {n}");
                unsafe { stamp(p, n, cookie) };
                local.push(p);
            }
            45..=74 => {
                if !local.is_empty() {
                    let i = r.random_range(0..local.len());
                    let p = local.swap_remove(i);
                    unsafe {
                        verify(p);
                        a.free(p);
                    }
                }
            }
            75..=84 => {
                // A realloc chain: grow (or shrink) one block a few times.
                if !local.is_empty() {
                    let i = r.random_range(0..local.len());
                    let mut p = local[i];
                    for _ in 0..r.random_range(1..5) {
                        let old = unsafe { verify(p) };
                        let n = if r.random_bool(0.7) {
                            old + old / 2 + 1
                        } else {
                            (old / 2).max(HDR)
                        };
                        let n = n.min(4 << 20);
                        p = unsafe { a.realloc(p, n) };
                        assert!(!p.is_null());
                        unsafe {
                            // The kept prefix must have survived the move; then re-stamp.
                            let keep = old.min(n);
                            let c = (p as *const u64).add(1).read();
                            assert_eq!(c >> 32, 0xC0FFEE, "realloc lost the header");
                            for k in 0..(keep - HDR).min(256) {
                                assert_eq!(
                                    *p.add(HDR + k),
                                    (c as u8).wrapping_add(k as u8),
                                    "realloc lost byte {k}"
                                );
                            }
                            stamp(p, n, cookie);
                        }
                    }
                    local[i] = p;
                }
            }
            _ => {
                // Hand a block to whoever comes next; free what was there (often another
                // thread's block, possibly of a thread that has exited).
                if !local.is_empty() {
                    let i = r.random_range(0..local.len());
                    let p = local.swap_remove(i);
                    let slot = &transfer[r.random_range(0..transfer.len())];
                    let old = slot.swap(p, Ordering::AcqRel);
                    if !old.is_null() {
                        unsafe {
                            verify(old);
                            a.free(old);
                        }
                    }
                }
            }
        }
    }
    // Exit with some blocks still in the transfer array (others will free them); free the rest.
    for p in local {
        unsafe {
            verify(p);
            a.free(p);
        }
    }
}

fn stress<A: Alloc>(a: &A, threads: usize, rounds: usize, iters: usize) {
    let transfer: Vec<AtomicPtr<u8>> = (0..TRANSFER)
        .map(|_| AtomicPtr::new(core::ptr::null_mut()))
        .collect();
    for round in 0..rounds {
        // Joined explicitly: a scope's implicit join returns before the threads' pthread key
        // destructors (which hand their heaps over) have run; pthread_join waits for them.
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let transfer = &transfer;
                    s.spawn(move || worker(a, transfer, (round * 1000 + t) as u64, iters))
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
    }
    for slot in &transfer {
        let p = slot.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            unsafe {
                verify(p);
                a.free(p);
            }
        }
    }
}

fn fancy_quiet_and_empty() {
    fancy::validate_heap().expect("heap valid after the stress");
    let s = fancy::stats();
    assert_eq!(s.live_blocks(), 0, "blocks leaked: {s:?}");
    assert_eq!(s.bytes_in_use, 0);
    assert_eq!(
        s.cross_thread_frees_pending, 0,
        "remote frees never collected"
    );
    assert!(
        s.cross_thread_frees_total > 0,
        "the stress made no cross-thread free"
    );
}

#[test]
fn fancy_stress_many_threads() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    stress(&Fancy, 8, 6, 20_000);
    fancy_quiet_and_empty();
}

#[test]
fn system_stress_many_threads() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    stress(&System, 8, 6, 20_000);
}

#[test]
fn fancy_stress_two_threads_long() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    stress(&Fancy, 2, 3, 150_000);
    fancy_quiet_and_empty();
}

#[test]
fn system_stress_two_threads_long() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    stress(&System, 2, 3, 150_000);
}

/// Producer/consumer: every block is freed by a thread that did not allocate it, and the
/// producer exits while the consumer still holds (and later frees) its blocks.
#[test]
fn fancy_producer_consumer_after_producer_exit() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let produced: Vec<usize> = std::thread::spawn(|| {
        (0..200_000usize)
            .map(|i| {
                let n = HDR + (i * 37) % 2000;
                let p = fancy::malloc(n);
                unsafe { stamp(p, n, 0xC0FFEE_0000_0000 | (i as u64 & 0xFFFF)) };
                p as usize
            })
            .collect()
    })
    .join()
    .unwrap();
    // The producer has exited: its heap is in the pool. Two consumers free everything.
    let (a, b) = produced.split_at(produced.len() / 2);
    std::thread::scope(|s| {
        let hs: Vec<_> = [a, b]
            .into_iter()
            .map(|part| {
                s.spawn(move || {
                    for &p in part {
                        unsafe {
                            verify(p as *mut u8);
                            fancy::free(p as *mut u8);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    fancy_quiet_and_empty();
}

#[test]
fn fancy_fork_while_threads_allocate() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2 {
            let stop = &stop;
            s.spawn(move || {
                let mut r = Xoshiro256PlusPlus::seed_from_u64(t);
                let mut v = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let n = pick_size(&mut r).min(100_000);
                    let p = fancy::malloc(n);
                    unsafe { stamp(p, n, 0xC0FFEE_0000_0000 | t) };
                    v.push(p);
                    if v.len() > 500 {
                        for p in v.drain(..) {
                            unsafe {
                                verify(p);
                                fancy::free(p);
                            }
                        }
                    }
                }
                for p in v {
                    unsafe { fancy::free(p) };
                }
            });
        }
        for _ in 0..40 {
            // SAFETY: the child only calls async-signal-safe-enough code: our allocator (which
            // fork makes consistent through its atfork handlers) and _exit.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                let mut ok = true;
                let mut v = Vec::new();
                for i in 0..20_000usize {
                    let n = HDR + (i * 131) % 5000;
                    let p = fancy::malloc(n);
                    if p.is_null() {
                        ok = false;
                        break;
                    }
                    unsafe { stamp(p, n, 0xC0FFEE_0000_0000 | 7) };
                    v.push(p);
                }
                for p in v {
                    unsafe {
                        verify(p);
                        fancy::free(p);
                    }
                }
                let big = fancy::malloc(5 << 20);
                ok &= !big.is_null();
                unsafe { fancy::free(big) };
                ok &= fancy::validate_heap().is_ok();
                unsafe { libc::_exit(if ok { 0 } else { 3 }) };
            }
            let mut status = 0;
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child failed: status {status:#x}"
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
}
