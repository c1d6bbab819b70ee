//! AllocatorBench's RL/inference workloads (seeds: the AllocatorBench report and its pool):
//! `rl_small`, `rl_medium`, `fragmentation_mix`, `alignment64`. Every thread runs the same
//! pattern on its own objects; nothing crosses threads.

use rand::RngCore;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Obj, prob, share, start_all};
use crate::event::{AlignedFn, ThreadId};
use crate::synth::Config;
use crate::synth::out::Ctx;
use crate::synth::sched::{Sched, Step};
use crate::synth::sizes::{Sizes, below};

/// Live objects per thread in `rl_small`.
pub(crate) const RL_SMALL_LIVE: usize = 4096;
/// Live objects per thread in `rl_medium`.
pub(crate) const RL_MEDIUM_LIVE: usize = 2048;

/// Churn on a bounded live set: each op allocates with probability `p_alloc` (unless the set
/// is full) and otherwise frees a uniformly chosen live object.
struct Churn {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    live: Vec<Obj>,
    cap: usize,
    p_alloc: u64,
    left: u64,
}

fn churn(cfg: &Config, ctx: &mut Ctx, sizes: Sizes, cap: usize, p_alloc: f64) {
    let n = cfg.threads;
    start_all(ctx, n);
    let mut states: Vec<Churn> = (0..n)
        .map(|t| Churn {
            t,
            rng: cfg.rng(t as u64),
            live: Vec::with_capacity(cap),
            cap,
            p_alloc: prob(p_alloc),
            left: share(cfg.total_ops(), n, t),
        })
        .collect();
    Sched::new(cfg.seed, 32).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            for o in s.live.drain(..) {
                ctx.free(s.t, o.ptr, o.size);
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        s.left -= 1;
        let r = s.rng.next_u64();
        if s.live.is_empty() || (r < s.p_alloc && s.live.len() < s.cap) {
            let size = sizes.sample(s.rng.next_u64());
            let ptr = ctx.malloc(s.t, size);
            s.live.push(Obj { ptr, size });
        } else {
            let i = below(s.rng.next_u64(), s.live.len() as u64) as usize;
            let o = s.live.swap_remove(i);
            ctx.free(s.t, o.ptr, o.size);
        }
        Step::Ran
    });
}

pub(crate) fn rl_small(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("rl_small has a size range");
    churn(
        cfg,
        ctx,
        Sizes::weighted_pow2(lo, hi, 0.7),
        RL_SMALL_LIVE,
        0.65,
    );
}

pub(crate) fn rl_medium(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("rl_medium has a size range");
    churn(cfg, ctx, Sizes::uniform(lo, hi), RL_MEDIUM_LIVE, 0.55);
}

/// Short-lived objects in `fragmentation_mix`: a FIFO of this many.
pub(crate) const FRAG_SHORT: usize = 64;
/// Long-lived objects in `fragmentation_mix`: a pool of this many, replaced at random.
pub(crate) const FRAG_LONG: usize = 2048;
/// Share of `fragmentation_mix` allocations that are long-lived.
pub(crate) const FRAG_P_LONG: f64 = 0.25;

struct Mix {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    short: Vec<Obj>,
    next_short: usize,
    long: Vec<Obj>,
    left: u64,
}

pub(crate) fn fragmentation_mix(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("fragmentation_mix has a size range");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    start_all(ctx, n);
    let p_long = prob(FRAG_P_LONG);
    let mut states: Vec<Mix> = (0..n)
        .map(|t| Mix {
            t,
            rng: cfg.rng(t as u64),
            short: vec![Obj::NONE; FRAG_SHORT],
            next_short: 0,
            long: vec![Obj::NONE; FRAG_LONG],
            left: share(cfg.total_ops(), n, t),
        })
        .collect();
    Sched::new(cfg.seed, 32).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            for o in s.short.iter().chain(s.long.iter()).filter(|o| o.ptr != 0) {
                ctx.free(s.t, o.ptr, o.size);
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        let slot = if s.rng.next_u64() < p_long {
            &mut s.long[below(s.rng.next_u64(), FRAG_LONG as u64) as usize]
        } else {
            let i = s.next_short;
            s.next_short = (i + 1) % FRAG_SHORT;
            &mut s.short[i]
        };
        if slot.ptr != 0 {
            ctx.free(s.t, slot.ptr, slot.size);
            s.left = s.left.saturating_sub(1);
        }
        let size = sizes.sample(s.rng.next_u64());
        *slot = Obj {
            ptr: ctx.malloc(s.t, size),
            size,
        };
        s.left = s.left.saturating_sub(1);
        Step::Ran
    });
}

/// Long-lived aligned buffers ("weights") per thread in `alignment64`.
pub(crate) const ALIGN_WEIGHTS: usize = 256;

struct Kernel {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    weights: Vec<Obj>,
    scratch: Vec<Obj>,
    left: u64,
}

pub(crate) fn alignment64(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("alignment64 has a size range");
    let align = cfg.align.expect("alignment64 has an alignment");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    start_all(ctx, n);
    // One aligned allocation: posix_memalign three times in four, else aligned_alloc with the
    // size rounded up to a multiple of the alignment (as C11 requires).
    let alloc = move |ctx: &mut Ctx, t: ThreadId, rng: &mut Xoshiro256PlusPlus| {
        let r = rng.next_u64();
        let size = sizes.sample(rng.next_u64());
        if r & 3 == 0 {
            let size = size.next_multiple_of(align);
            let ptr = ctx.aligned(t, AlignedFn::AlignedAlloc, align, size);
            Obj { ptr, size }
        } else {
            let ptr = ctx.aligned(t, AlignedFn::PosixMemalign, align, size);
            Obj { ptr, size }
        }
    };
    let mut states: Vec<Kernel> = (0..n)
        .map(|t| Kernel {
            t,
            rng: cfg.rng(t as u64),
            weights: Vec::with_capacity(ALIGN_WEIGHTS),
            scratch: Vec::with_capacity(8),
            left: share(cfg.total_ops(), n, t),
        })
        .collect();
    Sched::new(cfg.seed, 8).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            for o in s.weights.drain(..) {
                ctx.free_aligned(s.t, o.ptr, o.size, align);
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        if s.weights.len() < ALIGN_WEIGHTS {
            // Model load: the weight buffers, once.
            let o = alloc(ctx, s.t, &mut s.rng);
            s.weights.push(o);
            s.left -= 1;
            return Step::Ran;
        }
        // One kernel: 2–6 scratch buffers, freed in LIFO order; one kernel in 16 also
        // replaces a weight buffer.
        let k = 2 + below(s.rng.next_u64(), 5);
        for _ in 0..k {
            let o = alloc(ctx, s.t, &mut s.rng);
            s.scratch.push(o);
        }
        while let Some(o) = s.scratch.pop() {
            ctx.free_aligned(s.t, o.ptr, o.size, align);
        }
        let mut ops = 2 * k;
        if s.rng.next_u64() & 15 == 0 {
            let i = below(s.rng.next_u64(), ALIGN_WEIGHTS as u64) as usize;
            let old = s.weights[i];
            ctx.free_aligned(s.t, old.ptr, old.size, align);
            s.weights[i] = alloc(ctx, s.t, &mut s.rng);
            ops += 2;
        }
        s.left = s.left.saturating_sub(ops);
        Step::Ran
    });
}
