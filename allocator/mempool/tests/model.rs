//! Each strategy and variant of a `Pool` against a model: random sequences of allocations
//! (plain and aligned, from 1 B to huge), frees, reallocs, nested scopes and resets. After every
//! step: no two live blocks overlap, every block is aligned and at least as large as asked
//! (`usable_size` too), every live block still holds what was written into it, and the pool's
//! live count is the model's — so a scope's end freed exactly its own blocks.

use mempool::{Pool, Strategy as Strat, Variant};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, align: usize },
    Free(usize),
    Realloc(usize, usize),
    Begin,
    End,
    Reset,
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..=300,
        4 => 257usize..=4200,
        2 => 4000usize..=70_000,
        1 => (mempool::HUGE_MIN - 64)..=(mempool::HUGE_MIN + 200_000),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (size(), prop::sample::select(vec![16usize, 16, 16, 32, 64, 256, 4096]))
            .prop_map(|(size, align)| Op::Alloc { size, align }),
        6 => any::<usize>().prop_map(Op::Free),
        3 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        1 => Just(Op::Begin),
        1 => Just(Op::End),
        1 => Just(Op::Reset),
    ]
}

struct Block {
    p: *mut u8,
    size: usize,
    fill: u8,
    depth: usize,
}

struct Model {
    live: Vec<Block>,
    depth: usize,
    next_fill: u8,
}

impl Model {
    fn fill(&mut self, p: *mut u8, size: usize) -> u8 {
        self.next_fill = self.next_fill.wrapping_add(37) | 1;
        // SAFETY: `p` is a live block of at least `size` bytes.
        unsafe { std::ptr::write_bytes(p, self.next_fill, size) };
        self.next_fill
    }

    fn check_contents(b: &Block) {
        // SAFETY: a live block of at least `size` bytes.
        let s = unsafe { std::slice::from_raw_parts(b.p, b.size) };
        if let Some(i) = s.iter().position(|x| *x != b.fill) {
            panic!(
                "block {:p} ({} B) changed at byte {i}: {:#x} instead of {:#x}",
                b.p, b.size, s[i], b.fill
            );
        }
    }

    fn check_new(&self, pool: &Pool, p: *mut u8, size: usize, align: usize, skip: Option<usize>) {
        assert!(!p.is_null(), "allocation of {size} B failed");
        assert_eq!(p as usize % align, 0, "{p:p} not aligned to {align}");
        // SAFETY: `p` is a live block of `pool`.
        let us = unsafe { pool.usable_size(p) };
        assert!(us >= size.max(1), "usable {us} < {size}");
        let (a, e) = (p as usize, p as usize + size.max(1));
        for (i, b) in self.live.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            let (c, f) = (b.p as usize, b.p as usize + b.size.max(1));
            assert!(
                e <= c || f <= a,
                "new block [{a:#x}, {e:#x}) overlaps live block [{c:#x}, {f:#x})"
            );
        }
    }
}

fn run(strategy: Strat, variant: Variant, ops: &[Op]) {
    let mut pool = Pool::new(strategy, variant);
    let mut m = Model {
        live: Vec::new(),
        depth: 0,
        next_fill: 0,
    };
    for op in ops {
        match *op {
            Op::Alloc { size, align } => {
                let p = pool.alloc_aligned(size, align);
                m.check_new(&pool, p, size, align, None);
                let fill = m.fill(p, size);
                m.live.push(Block {
                    p,
                    size,
                    fill,
                    depth: m.depth,
                });
            }
            Op::Free(i) if !m.live.is_empty() => {
                let b = m.live.swap_remove(i % m.live.len());
                Model::check_contents(&b);
                // SAFETY: a live block of the pool.
                unsafe { pool.free(b.p) };
            }
            Op::Realloc(i, size) if !m.live.is_empty() => {
                let i = i % m.live.len();
                Model::check_contents(&m.live[i]);
                let old = m.live[i].p;
                let keep = m.live[i].size.min(size);
                // SAFETY: a live block of the pool.
                let q = unsafe { pool.realloc(old, size.max(1)) };
                m.check_new(&pool, q, size.max(1), 16, Some(i));
                // SAFETY: `q` holds at least `keep` bytes.
                let kept = unsafe { std::slice::from_raw_parts(q, keep) };
                assert!(
                    kept.iter().all(|x| *x == m.live[i].fill),
                    "realloc lost contents"
                );
                let fill = m.fill(q, size);
                let b = &mut m.live[i];
                if q != old {
                    // A moved block belongs to the scope open when it moved.
                    b.depth = m.depth;
                }
                b.p = q;
                b.size = size;
                b.fill = fill;
            }
            Op::Begin => {
                m.depth += 1;
                assert_eq!(pool.begin_scope(), m.depth);
            }
            Op::End => {
                if m.depth == 0 {
                    assert_eq!(pool.end_scope(), None);
                } else {
                    let (gone, kept): (Vec<Block>, Vec<Block>) =
                        m.live.drain(..).partition(|b| b.depth == m.depth);
                    gone.iter().for_each(Model::check_contents);
                    m.live = kept;
                    assert_eq!(pool.end_scope(), Some(gone.len()));
                    m.depth -= 1;
                }
            }
            Op::Reset => {
                m.live.iter().for_each(Model::check_contents);
                pool.reset();
                m.live.clear();
                m.depth = 0;
            }
            _ => {}
        }
        assert_eq!(pool.stats().live(), m.live.len() as u64, "after {op:?}");
    }
    m.live.iter().for_each(Model::check_contents);
    for b in m.live.drain(..) {
        // SAFETY: a live block of the pool.
        unsafe { pool.free(b.p) };
    }
    assert_eq!(pool.stats().live(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_strategy_and_variant_agrees_with_the_model(
        ops in prop::collection::vec(op(), 1..400),
    ) {
        for s in Strat::ALL {
            for v in Variant::ALL {
                run(s, v, &ops);
            }
        }
    }
}

#[test]
fn a_scope_frees_its_blocks_for_reuse_and_leaves_outer_ones() {
    for s in Strat::ALL {
        let pool = Pool::new(s, Variant::Percls);
        let outer = pool.alloc(100);
        pool.begin_scope();
        let inner: Vec<*mut u8> = (0..1000).map(|i| pool.alloc(16 + i % 3000)).collect();
        assert!(inner.iter().all(|p| !p.is_null()));
        // One freed explicitly inside the scope is not freed again by its end.
        // SAFETY: a live block of the pool.
        unsafe { pool.free(inner[7]) };
        assert_eq!(pool.end_scope(), Some(999), "{s:?}");
        assert_eq!(pool.stats().live(), 1);
        assert_eq!(pool.end_scope(), None);
        // SAFETY: `outer` is still live.
        unsafe { pool.free(outer) };
    }
}
