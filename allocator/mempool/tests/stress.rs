//! The process-wide pools under threads: four threads allocate (slab, segregated, best-fit,
//! huge and aligned sizes), hand half of their blocks to the next thread, which checks and frees
//! them. Every block handed out is checked against all live ones (a shared interval map: no
//! overlap, never twice), carries its owner's stamp until freed, and at the end every variant's
//! merged statistics balance.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc;

use mempool::{Variant, global};

static LIVE: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

fn claim(p: *mut u8, size: usize) {
    let (a, e) = (p as usize, p as usize + size.max(1));
    let mut m = LIVE.lock().unwrap();
    if let Some((&c, &f)) = m.range(..e).next_back() {
        assert!(
            f <= a,
            "block [{a:#x}, {e:#x}) overlaps live [{c:#x}, {f:#x})"
        );
    }
    m.insert(a, e);
}

fn release(p: *mut u8) {
    assert!(
        LIVE.lock().unwrap().remove(&(p as usize)).is_some(),
        "{p:p} freed but not live"
    );
}

struct Sent {
    p: usize,
    size: usize,
    stamp: u64,
}

fn stamp_of(p: *mut u8, size: usize, stamp: u64) {
    // SAFETY: `p` holds `size` bytes; stamps go at both ends (unaligned writes).
    unsafe {
        std::ptr::write_bytes(p, stamp as u8, size.min(64));
        if size >= 16 {
            p.cast::<u64>().write_unaligned(stamp);
            p.add(size - 8).cast::<u64>().write_unaligned(stamp);
        }
    }
}

fn check(p: *mut u8, size: usize, stamp: u64) {
    if size >= 16 {
        // SAFETY: `p` holds `size` bytes.
        let (a, b) = unsafe {
            (
                p.cast::<u64>().read_unaligned(),
                p.add(size - 8).cast::<u64>().read_unaligned(),
            )
        };
        assert_eq!(
            (a, b),
            (stamp, stamp),
            "block {p:p} ({size} B) was overwritten"
        );
    }
}

fn stress(v: Variant) {
    const THREADS: usize = 4;
    const OPS: u64 = 30_000;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Sent>()).unzip();
    let mut rxs: Vec<Option<mpsc::Receiver<Sent>>> = rxs.into_iter().map(Some).collect();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let tx = txs[(t + 1) % THREADS].clone();
            let rx = rxs[t].take().unwrap();
            s.spawn(move || {
                let mut rng = (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut mine: Vec<(*mut u8, usize, u64)> = Vec::new();
                for i in 0..OPS {
                    let r = next();
                    let size = match r % 100 {
                        0..=59 => (r >> 8) as usize % 257,
                        60..=84 => 257 + (r >> 8) as usize % 3840,
                        85..=98 => 4097 + (r >> 8) as usize % 60_000,
                        _ => mempool::HUGE_MIN + (r >> 8) as usize % 100_000,
                    };
                    let align = [16, 16, 16, 64, 4096][(r >> 40) as usize % 5];
                    let p = if r >> 50 & 1 == 1 {
                        global::aligned_alloc(v, align, size)
                    } else {
                        global::malloc(v, size)
                    };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % 16, 0);
                    claim(p, size);
                    let stamp = (t as u64) << 48 | i;
                    stamp_of(p, size, stamp);
                    if r >> 45 & 1 == 1 {
                        tx.send(Sent {
                            p: p as usize,
                            size,
                            stamp,
                        })
                        .unwrap();
                    } else {
                        mine.push((p, size, stamp));
                    }
                    if (mine.len() > 200 || (r >> 20) % 3 == 0) && !mine.is_empty() {
                        let (p, size, stamp) = mine.swap_remove((r >> 24) as usize % mine.len());
                        check(p, size, stamp);
                        release(p);
                        // SAFETY: a live block of variant `v`, freed once.
                        unsafe { global::free(v, p) };
                    }
                    while let Ok(b) = rx.try_recv() {
                        let p = b.p as *mut u8;
                        check(p, b.size, b.stamp);
                        release(p);
                        // SAFETY: a live block handed over by its owner, freed once.
                        unsafe { global::free(v, p) };
                    }
                }
                drop(tx);
                for (p, size, stamp) in mine {
                    check(p, size, stamp);
                    release(p);
                    // SAFETY: as above.
                    unsafe { global::free(v, p) };
                }
                // The last blocks from the previous thread (it may still be sending).
                for b in rx.iter() {
                    let p = b.p as *mut u8;
                    check(p, b.size, b.stamp);
                    release(p);
                    // SAFETY: as above.
                    unsafe { global::free(v, p) };
                }
                global::thread_detach();
            });
        }
        drop(txs);
    });
    let st = global::stats(v);
    assert!(st.allocs >= THREADS as u64 * OPS, "{st:?}");
    assert_eq!(st.live(), 0, "{st:?}");
}

// One test per variant; LIVE is shared (the variants share one address range, so their blocks
// must not overlap either).
#[test]
fn baseline_under_threads_with_cross_thread_frees() {
    stress(Variant::Baseline);
}

#[test]
fn sharded_under_threads_with_cross_thread_frees() {
    stress(Variant::Sharded);
}

#[test]
fn percls_under_threads_with_cross_thread_frees() {
    stress(Variant::Percls);
}
