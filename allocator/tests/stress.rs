//! Multithreaded stress in the manner of mimalloc's test-stress: many threads (more than the 2
//! cores here: oversubscribed on purpose), random sizes and alignments, realloc chains, blocks
//! handed to other threads through a shared transfer array and freed there, and threads that exit
//! while others still hold and free their blocks. Every block carries a header and a fill pattern
//! checked when it is freed.
//!
//! The same body runs over glibc's malloc (`system_*` tests), so a failure that shows up there
//! too is a test bug, not an allocator bug.

mod common;

use common::*;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::atomic::Ordering;

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
                // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
                unsafe { stamp(p, n, 0x00C0_FFEE_0000_0000 | (i as u64 & 0xFFFF)) };
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
                        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
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
                    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
                    unsafe { stamp(p, n, 0x00C0_FFEE_0000_0000 | t) };
                    v.push(p);
                    if v.len() > 500 {
                        for p in v.drain(..) {
                            // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
                            unsafe {
                                verify(p);
                                fancy::free(p);
                            }
                        }
                    }
                }
                for p in v {
                    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
                    unsafe { fancy::free(p) };
                }
            });
        }
        for _ in 0..40 {
            // SAFETY: the child only calls async-signal-safe-enough code: our allocator (which
            // fork makes consistent through its atfork handlers) and _exit.
            // SAFETY: fork/waitpid/_exit with valid arguments; the child only allocates and exits.
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
                    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
                    unsafe { stamp(p, n, 0x00C0_FFEE_0000_0000 | 7) };
                    v.push(p);
                }
                for p in v {
                    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
                    unsafe {
                        verify(p);
                        fancy::free(p);
                    }
                }
                let big = fancy::malloc(5 << 20);
                ok &= !big.is_null();
                // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
                unsafe { fancy::free(big) };
                ok &= fancy::validate_heap().is_ok();
                // SAFETY: fork/waitpid/_exit with valid arguments; the child only allocates and exits.
                unsafe { libc::_exit(if ok { 0 } else { 3 }) };
            }
            let mut status = 0;
            // SAFETY: fork/waitpid/_exit with valid arguments; the child only allocates and exits.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child failed: status {status:#x}"
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
}
