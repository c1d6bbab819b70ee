//! Property tests against a model: random sequences of malloc / calloc / realloc / aligned /
//! free, every live block's contents checked after each step that could disturb it, usable size
//! and alignment checked, and the heap walker run after every sequence.

use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Malloc(usize),
    Calloc(usize, usize),
    Aligned(u32, usize),
    Realloc(usize, usize),
    Free(usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=520,
        3 => 500usize..=70_000,
        1 => 60_000usize..=1_100_000,
        1 => prop_oneof![Just(1 << 20), Just((1 << 20) + 1), 1_000_000usize..=3_000_000],
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => size().prop_map(Op::Malloc),
        1 => (0usize..40, 0usize..64).prop_map(|(n, s)| Op::Calloc(n, s)),
        2 => (4u32..=17, size()).prop_map(|(a, s)| Op::Aligned(a, s)),
        3 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        5 => any::<usize>().prop_map(Op::Free),
    ]
}

struct Live {
    p: *mut u8,
    size: usize,
    seed: u8,
}

fn fill(p: *mut u8, size: usize, seed: u8) {
    for i in 0..size {
        // SAFETY: the block has `size` bytes.
        unsafe { *p.add(i) = seed.wrapping_add((i * 7) as u8) };
    }
}

fn check(l: &Live) {
    for i in 0..l.size {
        // SAFETY: the block has `size` bytes.
        let v = unsafe { *l.p.add(i) };
        assert_eq!(
            v,
            l.seed.wrapping_add((i * 7) as u8),
            "block {:p} size {} byte {i} changed",
            l.p,
            l.size
        );
    }
}

fn new_block(live: &mut Vec<Live>, p: *mut u8, size: usize, align: usize, seed: u8) {
    assert!(!p.is_null(), "allocation of {size} failed");
    assert_eq!(p as usize % align, 0, "misaligned {p:p} for {align}");
    // SAFETY: p is a live block.
    let us = unsafe { fancy::usable_size(p) };
    assert!(us >= size, "usable {us} < size {size}");
    for l in live.iter() {
        assert!(
            p as usize + size.max(1) <= l.p as usize || l.p as usize + l.size.max(1) <= p as usize,
            "overlap"
        );
    }
    fill(p, size, seed);
    live.push(Live { p, size, seed });
}

fn run(ops: &[Op]) {
    let mut live: Vec<Live> = Vec::new();
    let mut seed = 1u8;
    for op in ops {
        seed = seed.wrapping_add(31);
        match *op {
            Op::Malloc(s) => {
                let p = fancy::malloc(s);
                new_block(&mut live, p, s, 16, seed);
            }
            Op::Calloc(n, s) => {
                let p = fancy::calloc(n, s);
                assert!(!p.is_null());
                for i in 0..n * s {
                    // SAFETY: n*s bytes.
                    assert_eq!(unsafe { *p.add(i) }, 0, "calloc not zeroed");
                }
                new_block(&mut live, p, n * s, 16, seed);
            }
            Op::Aligned(a, s) => {
                let align = 1usize << a;
                let p = fancy::aligned_alloc(align, s);
                new_block(&mut live, p, s, align, seed);
            }
            Op::Realloc(i, s) => {
                if live.is_empty() {
                    continue;
                }
                let l = live.swap_remove(i % live.len());
                check(&l);
                // SAFETY: l.p is live.
                let q = unsafe { fancy::realloc(l.p, s) };
                if s == 0 {
                    assert!(q.is_null());
                    continue;
                }
                assert!(!q.is_null());
                let keep = l.size.min(s);
                let kept = Live {
                    p: q,
                    size: keep,
                    seed: l.seed,
                };
                check(&kept);
                new_block(&mut live, q, s, 16, seed);
            }
            Op::Free(i) => {
                if live.is_empty() {
                    continue;
                }
                let l = live.swap_remove(i % live.len());
                check(&l);
                // SAFETY: l.p is live.
                unsafe { fancy::free(l.p) };
            }
        }
    }
    for l in &live {
        check(l);
    }
    fancy::validate_heap().expect("heap valid with blocks live");
    for l in live.drain(..) {
        // SAFETY: live.
        unsafe { fancy::free(l.p) };
    }
    fancy::validate_heap().expect("heap valid after freeing everything");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_sequences_match_the_model(ops in prop::collection::vec(op(), 1..400)) {
        run(&ops);
    }
}

#[test]
fn many_small_then_free_all_releases_arenas() {
    // One thread's heap: fill several arenas of small blocks, free them, and the arenas must
    // go back (validated by the walker and by the arena count of this heap after trim).
    let mut v = Vec::new();
    for i in 0..300_000 {
        let p = fancy::malloc(16 + (i % 32) * 16);
        fill(p, 16, i as u8);
        v.push((p, i as u8));
    }
    for &(p, s) in &v {
        check(&Live {
            p,
            size: 16,
            seed: s,
        });
    }
    fancy::validate_heap().unwrap();
    for (p, _) in v {
        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
        unsafe { fancy::free(p) };
    }
    fancy::validate_heap().unwrap();
}

#[test]
fn medium_coalescing_and_in_place_realloc() {
    let a = fancy::malloc(4000);
    let b = fancy::malloc(4000);
    let c = fancy::malloc(4000);
    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
    unsafe {
        fancy::free(b);
        fill(a, 4000, 9);
        // b's space is free right after a: growing a must stay in place.
        let a2 = fancy::realloc(a, 7000);
        assert_eq!(a2, a, "realloc should grow into the free neighbour");
        check(&Live {
            p: a2,
            size: 4000,
            seed: 9,
        });
        fancy::validate_heap().unwrap();
        fancy::free(a2);
        fancy::free(c);
    }
    fancy::validate_heap().unwrap();
}

#[test]
fn huge_blocks_realloc_and_alignment() {
    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
    unsafe {
        let p = fancy::malloc(3 << 20);
        fill(p, 3 << 20, 3);
        let q = fancy::realloc(p, 9 << 20);
        check(&Live {
            p: q,
            size: 3 << 20,
            seed: 3,
        });
        let r = fancy::realloc(q, 2 << 20);
        check(&Live {
            p: r,
            size: 2 << 20,
            seed: 3,
        });
        fancy::free(r);
        for shift in [12, 16, 20, 22, 23, 24] {
            let a = fancy::aligned_alloc(1 << shift, 5000);
            assert_eq!(a as usize % (1 << shift), 0);
            fill(a, 5000, 1);
            assert!(fancy::usable_size(a) >= 5000);
            fancy::free(a);
        }
        let z = fancy::calloc(1, 5 << 20);
        assert!((0..5 << 20).step_by(4093).all(|i| *z.add(i) == 0));
        fancy::free(z);
    }
    fancy::validate_heap().unwrap();
}

#[test]
fn edge_cases() {
    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
    unsafe {
        assert!(fancy::aligned_alloc(3, 10).is_null());
        assert!(fancy::calloc(usize::MAX, 2).is_null());
        assert!(fancy::malloc(usize::MAX).is_null());
        assert!(fancy::malloc(usize::MAX - 4096).is_null());
        let p = fancy::malloc(0);
        assert!(!p.is_null());
        assert!(fancy::usable_size(p) >= 1);
        fancy::free(p);
        fancy::free(core::ptr::null_mut());
        assert_eq!(fancy::usable_size(core::ptr::null()), 0);
        let x = 5u64;
        assert_eq!(
            fancy::usable_size(&x as *const u64 as *const u8),
            0,
            "foreign pointer"
        );
        let r = fancy::realloc(core::ptr::null_mut(), 100);
        assert!(!r.is_null());
        assert!(fancy::realloc(r, 0).is_null());
    }
}
