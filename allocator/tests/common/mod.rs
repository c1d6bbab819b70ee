//! The stress body shared by `stress.rs` and `stress_reclaim.rs` (see stress.rs).
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

pub static SERIAL: Mutex<()> = Mutex::new(());

pub trait Alloc: Sync {
    fn malloc(&self, n: usize) -> *mut u8;
    fn aligned(&self, align: usize, n: usize) -> *mut u8;
    unsafe fn realloc(&self, p: *mut u8, n: usize) -> *mut u8;
    unsafe fn free(&self, p: *mut u8);
}

pub struct Fancy;
impl Alloc for Fancy {
    fn malloc(&self, n: usize) -> *mut u8 {
        fancy::malloc(n)
    }
    fn aligned(&self, align: usize, n: usize) -> *mut u8 {
        fancy::aligned_alloc(align, n)
    }
    unsafe fn realloc(&self, p: *mut u8, n: usize) -> *mut u8 {
        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
        unsafe { fancy::realloc(p, n) }
    }
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
        unsafe { fancy::free(p) }
    }
}

pub struct System;
impl Alloc for System {
    fn malloc(&self, n: usize) -> *mut u8 {
        // SAFETY: plain libc allocation calls on pointers this test got from the same allocator.
        unsafe { libc::malloc(n).cast() }
    }
    fn aligned(&self, align: usize, n: usize) -> *mut u8 {
        let mut p = core::ptr::null_mut();
        // SAFETY: plain libc allocation calls on pointers this test got from the same allocator.
        if unsafe { libc::posix_memalign(&mut p, align, n) } != 0 {
            return core::ptr::null_mut();
        }
        p.cast()
    }
    unsafe fn realloc(&self, p: *mut u8, n: usize) -> *mut u8 {
        // SAFETY: plain libc allocation calls on pointers this test got from the same allocator.
        unsafe { libc::realloc(p.cast(), n).cast() }
    }
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: plain libc allocation calls on pointers this test got from the same allocator.
        unsafe { libc::free(p.cast()) }
    }
}

/// Block header: size and cookie; the rest is filled from the cookie.
pub const HDR: usize = 16;

pub unsafe fn stamp(p: *mut u8, size: usize, cookie: u64) {
    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
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
pub unsafe fn verify(p: *mut u8) -> usize {
    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
    unsafe {
        let size = (p as *const u64).read() as usize;
        let cookie = (p as *const u64).add(1).read();
        assert!(
            (HDR..64 << 20).contains(&size),
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

pub fn pick_size(r: &mut Xoshiro256PlusPlus) -> usize {
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

pub fn worker<A: Alloc>(a: &A, transfer: &[AtomicPtr<u8>], seed: u64, iters: usize) {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut local: Vec<*mut u8> = Vec::with_capacity(1024);
    let mut cookie = 0x00C0_FFEE_0000_0000u64 | (seed & 0xFFFF) << 16;
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
                // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
                unsafe { stamp(p, n, cookie) };
                local.push(p);
            }
            45..=74 => {
                if !local.is_empty() {
                    let i = r.random_range(0..local.len());
                    let p = local.swap_remove(i);
                    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
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
                        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
                        let old = unsafe { verify(p) };
                        let n = if r.random_bool(0.7) {
                            old + old / 2 + 1
                        } else {
                            (old / 2).max(HDR)
                        };
                        let n = n.min(4 << 20);
                        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
                        p = unsafe { a.realloc(p, n) };
                        assert!(!p.is_null());
                        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
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
                        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
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
        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
        unsafe {
            verify(p);
            a.free(p);
        }
    }
}

pub fn stress<A: Alloc>(a: &A, threads: usize, rounds: usize, iters: usize) {
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
            // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
            unsafe {
                verify(p);
                a.free(p);
            }
        }
    }
}

pub fn fancy_quiet_and_empty() {
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
