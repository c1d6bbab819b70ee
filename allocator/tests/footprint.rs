//! Footprint: the policies that keep fancy's resident memory near what the program uses. One
//! test function (this file is its own process, and the checks read process-wide counters), each
//! scenario on a fresh thread whose heap starts empty:
//!
//! - medium: under churn the heap touches new memory only when freed chunks (parked in the front
//!   cache or coalesced in the bins) cannot serve a request — touched stays near the live peak;
//! - small: freed blocks of a class are reused before new memory is carved;
//! - cross-thread: a thread that frees another thread's small blocks reuses them itself;
//! - hand-over: the last thread with a heap that exits with everything freed gives the memory
//!   back to the OS;
//! - rounds: allocating the same set again after freeing it all touches no new memory (the
//!   resident pages of cached arenas come before the untouched rest of a partly used one).

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::HashSet;

fn on_fresh_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(move || {
        let r = f();
        fancy::validate_heap().expect("heap valid");
        fancy::thread_detach();
        r
    })
    .join()
    .unwrap()
}

/// Random medium churn with a bounded live set: the memory touched by medium chunks must stay
/// within 15 % (plus the front cache's fixed budget) of the most live medium bytes.
fn medium_churn_stays_near_live_peak() {
    let (touched, peak_live) = on_fresh_thread(|| {
        let before = fancy::stats().medium_bytes_touched;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut live: Vec<(*mut u8, usize)> = Vec::new();
        let (mut bytes, mut peak) = (0usize, 0usize);
        for round in 0..40 {
            let target = 600 + (round % 5) * 150;
            while live.len() < target {
                let n = rng.random_range(513..=4096);
                let p = fancy::malloc(n);
                assert!(!p.is_null());
                // SAFETY: `p` is a fresh block of `n` bytes.
                unsafe { p.write_bytes(round as u8, n) };
                bytes += n;
                live.push((p, n));
            }
            peak = peak.max(bytes);
            for _ in 0..live.len() / 2 {
                let (p, n) = live.swap_remove(rng.random_range(0..live.len()));
                bytes -= n;
                // SAFETY: a live block of this test, freed once.
                unsafe { fancy::free(p) };
            }
        }
        fancy::validate_heap().unwrap();
        let touched = fancy::stats().medium_bytes_touched - before;
        for (p, _) in live {
            // SAFETY: as above.
            unsafe { fancy::free(p) };
        }
        (touched as usize, peak)
    });
    let limit = peak_live + peak_live * 15 / 100 + fancy_tc_budget();
    eprintln!("medium churn: touched {touched} B, live peak {peak_live} B, limit {limit}");
    assert!(
        touched <= limit,
        "medium memory touched {touched} B for a live peak of {peak_live} B (limit {limit})"
    );
}

/// The front cache may hold this much on a heap this small (`medium::TC_MIN_BUDGET`).
fn fancy_tc_budget() -> usize {
    64 * 1024
}

/// Fill several pages of one class, free every other block, allocate as many again: no new
/// memory is carved.
fn small_holes_are_reused_before_new_memory() {
    on_fresh_thread(|| {
        let before = fancy::stats().small_bytes_carved;
        let v: Vec<*mut u8> = (0..20_000).map(|_| fancy::malloc(48)).collect();
        let carved = fancy::stats().small_bytes_carved;
        assert!(carved - before >= 20_000 * 48);
        let mut kept = Vec::new();
        for (i, p) in v.into_iter().enumerate() {
            if i % 2 == 0 {
                // SAFETY: a live block of this test, freed once.
                unsafe { fancy::free(p) };
            } else {
                kept.push(p);
            }
        }
        kept.extend((0..10_000).map(|_| fancy::malloc(48)));
        assert_eq!(
            fancy::stats().small_bytes_carved,
            carved,
            "freed blocks were not reused before new memory was carved"
        );
        for p in kept {
            // SAFETY: as above.
            unsafe { fancy::free(p) };
        }
    });
}

/// Thread A allocates and exits; this thread frees A's blocks and allocates the same class:
/// it gets A's blocks back, and at the end nothing is live or pending.
fn freed_foreign_blocks_are_reused_by_the_freeing_thread() {
    let theirs: Vec<usize> =
        on_fresh_thread(|| (0..1000).map(|_| fancy::malloc(64) as usize).collect());
    on_fresh_thread(move || {
        let set: HashSet<usize> = theirs.iter().copied().collect();
        for &p in &theirs {
            // SAFETY: blocks the other thread allocated and nobody freed; freed once here.
            unsafe { fancy::free(p as *mut u8) };
        }
        let mine: Vec<*mut u8> = (0..100).map(|_| fancy::malloc(64)).collect();
        let reused = mine
            .iter()
            .filter(|p| set.contains(&(**p as usize)))
            .count();
        assert_eq!(
            reused, 100,
            "the freeing thread did not reuse the blocks it freed"
        );
        fancy::validate_heap().unwrap();
        for p in mine {
            // SAFETY: live blocks of this thread, freed once.
            unsafe { fancy::free(p) };
        }
    });
    fancy::collect();
    fancy::validate_heap().unwrap();
    let s = fancy::stats();
    assert_eq!(s.live_blocks(), 0, "blocks leaked: {s:?}");
    assert_eq!(s.cross_thread_frees_pending, 0);
}

/// With no other thread holding a heap, a thread that frees everything and exits returns its
/// arenas' memory to the OS (they stay mapped, in the cache).
fn last_thread_out_gives_memory_back() {
    fancy::thread_detach();
    let before = fancy::stats().bytes_returned;
    on_fresh_thread(|| {
        let v: Vec<*mut u8> = (0..2000).map(|i| fancy::malloc(100 + i % 3000)).collect();
        for p in v {
            // SAFETY: live blocks of this thread, freed once.
            unsafe { fancy::free(p) };
        }
    });
    let s = fancy::stats();
    assert!(
        s.bytes_returned - before >= 2 * (4 << 20) - 2 * 4096,
        "the small and the medium arena were not given back ({} bytes)",
        s.bytes_returned - before
    );
    assert_eq!(s.arenas, 0);
    fancy::validate_heap().unwrap();
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The `small` workload's shape: 200 000 blocks of 8–64 B, freed in random order, twice. The
/// second round must fit in the memory the first one faulted in.
fn a_second_round_touches_no_new_memory() {
    on_fresh_thread(|| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let mut v: Vec<*mut u8> = Vec::with_capacity(200_000);
        let mut after = [0usize; 2];
        for round in after.iter_mut() {
            for _ in 0..200_000 {
                let n = rng.random_range(8..=64);
                let p = fancy::malloc(n);
                assert!(!p.is_null());
                // SAFETY: a fresh block of at least one byte.
                unsafe { p.write(1) };
                v.push(p);
            }
            *round = rss_bytes();
            while !v.is_empty() {
                let p = v.swap_remove(rng.random_range(0..v.len()));
                // SAFETY: a live block of this test, freed once.
                unsafe { fancy::free(p) };
            }
        }
        eprintln!(
            "rounds: RSS after the first {} B, after the second {} B",
            after[0], after[1]
        );
        assert!(
            after[1] <= after[0] + 512 * 1024,
            "the second round faulted in {} B more than the first",
            after[1] - after[0]
        );
    });
}

#[test]
fn footprint_policies() {
    a_second_round_touches_no_new_memory();
    medium_churn_stays_near_live_peak();
    small_holes_are_reused_before_new_memory();
    freed_foreign_blocks_are_reused_by_the_freeing_thread();
    last_thread_out_gives_memory_back();
}
