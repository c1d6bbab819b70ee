//! The lock and replenishment counts that tell the variants apart, checked against a count made
//! by hand: 10 000 blocks of 300 B (the 512 B segregated class, 528 B with its header, so 124
//! blocks per 64 KiB piece) allocated then freed through a `Pool` of each variant.

use mempool::{LockCounts, Pool, Strategy, Variant};

const N: u64 = 10_000;
const PER_PIECE: u64 = 65_520 / 528; // a piece is 64 KiB; percls's first 16 B hold its chunk link

fn run(v: Variant) -> LockCounts {
    let pool = Pool::new(Strategy::Segregated, v);
    let blocks: Vec<*mut u8> = (0..N).map(|_| pool.alloc(300)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    for p in blocks {
        // SAFETY: each is a live block of `pool`, freed once.
        unsafe { pool.free(p) };
    }
    pool.lock_counts()
}

#[test]
fn each_variant_counts_its_locks_and_replenishments() {
    assert_eq!(PER_PIECE, 124);
    let pieces = N.div_ceil(PER_PIECE);
    // An allocation finds the class list empty (one lock), then takes a batch of one (a second
    // lock); a free takes the lock once.
    let class_ops = 2 * N + N;

    let b = run(Variant::Baseline);
    assert_eq!(b.replenishes, pieces, "{b:?}");
    assert_eq!((b.class_locks, b.global_locks), (0, class_ops), "{b:?}");

    // Sharded: a replenishment drops the class lock, takes the global one, retakes the class one.
    let s = run(Variant::Sharded);
    assert_eq!(s.replenishes, pieces, "{s:?}");
    assert_eq!(
        (s.class_locks, s.global_locks),
        (class_ops + pieces, pieces),
        "{s:?}"
    );

    // Percls: the class carves its own chunks; the global lock is never taken.
    let p = run(Variant::Percls);
    assert_eq!(p.replenishes, pieces, "{p:?}");
    assert_eq!((p.class_locks, p.global_locks), (class_ops, 0), "{p:?}");

    // One thread: nobody ever found a lock taken.
    for c in [b, s, p] {
        assert_eq!((c.class_contended, c.global_contended), (0, 0), "{c:?}");
    }
}

#[test]
fn two_threads_on_one_class_lock_are_counted_as_contention_only_when_it_happens() {
    // Two threads hammer the same class of a sharded pool; whatever the schedule, a contended
    // acquisition is one of the acquisitions, and the total is exact.
    let pool = Pool::new(Strategy::Segregated, Variant::Sharded);
    let rounds = 200_000u64;
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| {
                for _ in 0..rounds {
                    let p = pool.alloc(300);
                    assert!(!p.is_null());
                    // SAFETY: a live block of `pool`, freed once.
                    unsafe { pool.free(p) };
                }
            });
        }
    });
    let c = pool.lock_counts();
    // Each allocation takes the class lock once when the list has a block, twice (plus the
    // replenishment's retake) when it is empty; each free once.
    assert!(c.class_locks >= 2 * 2 * rounds, "{c:?}");
    assert!(c.class_contended <= c.class_locks, "{c:?}");
    assert_eq!(c.global_locks, c.replenishes, "{c:?}");
}
