//! The stress patterns people know from mimalloc-bench, as traces: `larson`, `xmalloc`,
//! `sh6bench`, `mstress`, `mleak`, `malloc-large`. These follow the published programs'
//! structure (what is allocated where and freed by whom), not their exact code.

use std::collections::VecDeque;

use rand::RngCore;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Obj, prob, share, start_all};
use crate::event::ThreadId;
use crate::synth::Config;
use crate::synth::out::Ctx;
use crate::synth::sched::{Sched, Step};
use crate::synth::sizes::{Sizes, below};

/// Objects each `larson` worker keeps.
pub(crate) const LARSON_SLOTS: usize = 1000;
/// Replacements a `larson` thread makes before it exits and a new thread takes its objects.
pub(crate) const LARSON_ROUND: u64 = 10 * LARSON_SLOTS as u64;

/// One larson worker: a server connection whose thread is replaced every round; the new thread
/// inherits the old one's objects and frees them as it replaces them.
struct Larson {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    slots: Vec<Obj>,
    round_left: u64,
    left: u64,
}

pub(crate) fn larson(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("larson has a size range");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    start_all(ctx, n);
    let mut next_thread = n;
    let mut states: Vec<Larson> = (0..n)
        .map(|t| Larson {
            t,
            rng: cfg.rng(t as u64),
            slots: Vec::with_capacity(LARSON_SLOTS),
            round_left: LARSON_ROUND,
            left: share(cfg.total_ops(), n, t),
        })
        .collect();
    Sched::new(cfg.seed, 32).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            for o in s.slots.drain(..) {
                ctx.free(s.t, o.ptr, o.size);
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        if s.slots.len() < LARSON_SLOTS {
            let size = sizes.sample(s.rng.next_u64());
            let ptr = ctx.malloc(s.t, size);
            s.slots.push(Obj { ptr, size });
            s.left -= 1;
            return Step::Ran;
        }
        if s.round_left == 0 {
            ctx.exit(s.t);
            s.t = next_thread;
            next_thread += 1;
            ctx.out.pause(2_000);
            ctx.start(s.t);
            s.round_left = LARSON_ROUND;
        }
        let i = below(s.rng.next_u64(), LARSON_SLOTS as u64) as usize;
        let o = s.slots[i];
        ctx.free(s.t, o.ptr, o.size);
        let size = sizes.sample(s.rng.next_u64());
        s.slots[i] = Obj {
            ptr: ctx.malloc(s.t, size),
            size,
        };
        s.round_left -= 1;
        s.left = s.left.saturating_sub(2);
        Step::Ran
    });
}

/// Objects per batch handed from an allocating to a freeing `xmalloc` thread.
pub(crate) const XMALLOC_BATCH: usize = 64;
/// Batches the shared queue holds before allocating threads wait.
pub(crate) const XMALLOC_QUEUE: usize = 64;

enum XRole {
    Alloc { batch: Vec<Obj>, left: u64 },
    Free { batch: Vec<Obj> },
}

struct XThread {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    role: XRole,
}

pub(crate) fn xmalloc(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("xmalloc has a size range");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    let allocators = n.div_ceil(2);
    start_all(ctx, n);
    let mut queue: VecDeque<Vec<Obj>> = VecDeque::with_capacity(XMALLOC_QUEUE);
    let mut allocating = allocators;
    let allocs = cfg.total_ops().div_ceil(2);
    let mut states: Vec<XThread> = (0..n)
        .map(|t| XThread {
            t,
            rng: cfg.rng(t as u64),
            role: if t < allocators {
                XRole::Alloc {
                    batch: Vec::with_capacity(XMALLOC_BATCH),
                    left: share(allocs, allocators, t),
                }
            } else {
                XRole::Free { batch: Vec::new() }
            },
        })
        .collect();
    Sched::new(cfg.seed, 32).run(ctx, &mut states, |ctx, s| match &mut s.role {
        XRole::Alloc { batch, left } => {
            if batch.len() == XMALLOC_BATCH || (*left == 0 && !batch.is_empty()) {
                if queue.len() >= XMALLOC_QUEUE {
                    return Step::Blocked;
                }
                queue.push_back(std::mem::replace(batch, Vec::with_capacity(XMALLOC_BATCH)));
                return Step::Ran;
            }
            if *left == 0 {
                allocating -= 1;
                ctx.exit(s.t);
                return Step::Done;
            }
            let size = sizes.sample(s.rng.next_u64());
            let ptr = ctx.malloc(s.t, size);
            batch.push(Obj { ptr, size });
            *left -= 1;
            Step::Ran
        }
        XRole::Free { batch } => {
            if batch.is_empty() {
                match queue.pop_front() {
                    Some(b) => *batch = b,
                    None if allocating == 0 => {
                        ctx.exit(s.t);
                        return Step::Done;
                    }
                    None => return Step::Blocked,
                }
            }
            let o = batch.pop().expect("non-empty batch");
            ctx.free(s.t, o.ptr, o.size);
            Step::Ran
        }
    });
}

/// Objects per `sh6bench` round: uniform in this range.
pub(crate) const SH6_ROUND: (u64, u64) = (500, 2000);

/// Allocate a round of objects, then free them all: LIFO (reverse order) in even rounds, in
/// allocation order in odd ones.
struct Sh6 {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    objs: Vec<Obj>,
    target: usize,
    round: u64,
    freeing: bool,
    next: usize,
    left: u64,
}

pub(crate) fn sh6bench(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("sh6bench has a size range");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    start_all(ctx, n);
    let round_len = |rng: &mut Xoshiro256PlusPlus| {
        (SH6_ROUND.0 + below(rng.next_u64(), SH6_ROUND.1 - SH6_ROUND.0 + 1)) as usize
    };
    let mut states: Vec<Sh6> = (0..n)
        .map(|t| {
            let mut rng = cfg.rng(t as u64);
            let target = round_len(&mut rng);
            Sh6 {
                t,
                rng,
                objs: Vec::with_capacity(SH6_ROUND.1 as usize),
                target,
                round: 0,
                freeing: false,
                next: 0,
                left: share(cfg.total_ops(), n, t),
            }
        })
        .collect();
    Sched::new(cfg.seed, 64).run(ctx, &mut states, |ctx, s| {
        if s.freeing {
            let o = if s.round % 2 == 0 {
                s.objs.pop()
            } else {
                let o = s.objs.get(s.next).copied();
                s.next += 1;
                o
            };
            if let Some(o) = o {
                ctx.free(s.t, o.ptr, o.size);
                s.left = s.left.saturating_sub(1);
                return Step::Ran;
            }
            s.objs.clear();
            s.freeing = false;
            s.round += 1;
            s.next = 0;
            if s.left == 0 {
                ctx.exit(s.t);
                return Step::Done;
            }
            s.target = round_len(&mut s.rng).min((s.left / 2).max(1) as usize);
        }
        let size = sizes.sample(s.rng.next_u64());
        let ptr = ctx.malloc(s.t, size);
        s.objs.push(Obj { ptr, size });
        s.left = s.left.saturating_sub(1);
        if s.objs.len() >= s.target {
            s.freeing = true;
        }
        Step::Ran
    });
}

/// Ops each `mstress` worker makes in its phase.
pub(crate) const MSTRESS_PHASE_OPS: u64 = 20_000;
/// Objects a `mstress` worker keeps at most.
pub(crate) const MSTRESS_LOCAL: usize = 500;
/// Slots of the transfer array shared by all `mstress` threads.
pub(crate) const MSTRESS_TRANSFER: usize = 1000;
/// One object in this many survives its thread's exit (freed in the next phase).
pub(crate) const MSTRESS_RETAIN_EVERY: usize = 10;

/// `mstress` sizes (mimalloc's test-stress): mostly small, some medium, rarely big.
pub(crate) fn mstress_sizes() -> Sizes {
    Sizes::mixture(&[
        (0.95, 8, 320),
        (0.045, 1024, 32768),
        (0.005, 65536, 1 << 20),
    ])
}

struct MWorker {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    local: Vec<Obj>,
    inherited: Vec<Obj>,
    left: u64,
}

pub(crate) fn mstress(cfg: &Config, ctx: &mut Ctx) {
    let sizes = mstress_sizes();
    let n = cfg.threads;
    let main: ThreadId = 0;
    ctx.start(main);
    let mut transfer = vec![Obj::NONE; MSTRESS_TRANSFER];
    let mut retained: Vec<Obj> = Vec::new();
    let phases = cfg
        .total_ops()
        .div_ceil(n as u64 * MSTRESS_PHASE_OPS)
        .max(1);
    let (p_alloc, p_free) = (prob(0.5), prob(0.85));
    let mut next_thread: ThreadId = 1;
    let mut sched = Sched::new(cfg.seed, 32);
    let mut left_total = cfg.total_ops();
    for phase in 0..phases {
        // This phase's threads, each inheriting a share of the objects the last phase's
        // threads left behind.
        let mut states: Vec<MWorker> = (0..n)
            .map(|i| {
                let t = next_thread + i;
                let take = retained.len().div_ceil((n - i) as usize);
                let inherited = retained.split_off(retained.len() - take);
                let left = share(left_total.min(n as u64 * MSTRESS_PHASE_OPS), n, i);
                MWorker {
                    t,
                    rng: cfg.rng(phase * MAX_PER_PHASE + i as u64 + 1),
                    local: Vec::with_capacity(MSTRESS_LOCAL),
                    inherited,
                    left,
                }
            })
            .collect();
        left_total = left_total.saturating_sub(n as u64 * MSTRESS_PHASE_OPS);
        next_thread += n;
        ctx.out.pause(20_000);
        for s in &states {
            ctx.start(s.t);
        }
        sched.run(ctx, &mut states, |ctx, s| {
            if let Some(o) = s.inherited.pop() {
                ctx.free(s.t, o.ptr, o.size);
                return Step::Ran;
            }
            if s.left == 0 {
                for (k, o) in s.local.drain(..).enumerate() {
                    if k % MSTRESS_RETAIN_EVERY == 0 {
                        retained.push(o);
                    } else {
                        ctx.free(s.t, o.ptr, o.size);
                    }
                }
                ctx.exit(s.t);
                return Step::Done;
            }
            let r = s.rng.next_u64();
            if s.local.is_empty() || (r < p_alloc && s.local.len() < MSTRESS_LOCAL) {
                let size = sizes.sample(s.rng.next_u64());
                let ptr = ctx.malloc(s.t, size);
                s.local.push(Obj { ptr, size });
                s.left -= 1;
            } else if r < p_free {
                let i = below(s.rng.next_u64(), s.local.len() as u64) as usize;
                let o = s.local.swap_remove(i);
                ctx.free(s.t, o.ptr, o.size);
                s.left -= 1;
            } else {
                // Hand a local object to the transfer array; whatever was there (any thread's,
                // maybe from an earlier phase) is freed here.
                let i = below(s.rng.next_u64(), s.local.len() as u64) as usize;
                let o = s.local.swap_remove(i);
                let slot = below(s.rng.next_u64(), MSTRESS_TRANSFER as u64) as usize;
                let old = std::mem::replace(&mut transfer[slot], o);
                if old.ptr != 0 {
                    ctx.free(s.t, old.ptr, old.size);
                    s.left -= 1;
                }
            }
            Step::Ran
        });
    }
    // The main thread frees what the last threads left and the transfer array.
    ctx.out.pause(20_000);
    for o in retained
        .iter()
        .chain(transfer.iter())
        .filter(|o| o.ptr != 0)
    {
        ctx.free(main, o.ptr, o.size);
    }
    ctx.exit(main);
}

/// Random streams reserved per phase (thread `i` of phase `p` uses stream
/// `p * MAX_PER_PHASE + i + 1`).
const MAX_PER_PHASE: u64 = crate::synth::MAX_THREADS as u64 + 1;

/// Ops each `mleak` thread makes before it exits.
pub(crate) const MLEAK_THREAD_OPS: u64 = 10_000;
/// Objects an `mleak` thread keeps at most.
pub(crate) const MLEAK_LOCAL: usize = 200;
/// Objects an `mleak` thread still holds when it exits (never freed).
pub(crate) const MLEAK_LEAK: usize = 50;

struct Leaker {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    local: Vec<Obj>,
    left: u64,
}

pub(crate) fn mleak(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("mleak has a size range");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    let phases = cfg.total_ops().div_ceil(n as u64 * MLEAK_THREAD_OPS).max(1);
    let p_alloc = prob(0.6);
    let mut sched = Sched::new(cfg.seed, 32);
    let mut left_total = cfg.total_ops();
    for phase in 0..phases {
        let mut states: Vec<Leaker> = (0..n)
            .map(|i| Leaker {
                t: phase as ThreadId * n + i,
                rng: cfg.rng(phase * MAX_PER_PHASE + i as u64),
                local: Vec::with_capacity(MLEAK_LOCAL),
                left: share(left_total.min(n as u64 * MLEAK_THREAD_OPS), n, i),
            })
            .collect();
        left_total = left_total.saturating_sub(n as u64 * MLEAK_THREAD_OPS);
        ctx.out.pause(20_000);
        for s in &states {
            ctx.start(s.t);
        }
        sched.run(ctx, &mut states, |ctx, s| {
            if s.left == 0 {
                // Exit holding MLEAK_LEAK objects: allocate up to that many, free the rest.
                while s.local.len() < MLEAK_LEAK {
                    let size = sizes.sample(s.rng.next_u64());
                    let ptr = ctx.malloc(s.t, size);
                    s.local.push(Obj { ptr, size });
                }
                for o in s.local.drain(MLEAK_LEAK..) {
                    ctx.free(s.t, o.ptr, o.size);
                }
                ctx.exit(s.t);
                return Step::Done;
            }
            s.left -= 1;
            if s.local.is_empty() || (s.rng.next_u64() < p_alloc && s.local.len() < MLEAK_LOCAL) {
                let size = sizes.sample(s.rng.next_u64());
                let ptr = ctx.malloc(s.t, size);
                s.local.push(Obj { ptr, size });
            } else {
                let i = below(s.rng.next_u64(), s.local.len() as u64) as usize;
                let o = s.local.swap_remove(i);
                ctx.free(s.t, o.ptr, o.size);
            }
            Step::Ran
        });
    }
}

/// Most `malloc-large` blocks live at once (per thread).
pub(crate) const LARGE_LIVE: usize = 20;

struct Big {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    slots: Vec<Obj>,
    left: u64,
}

pub(crate) fn malloc_large(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("malloc-large has a size range");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    start_all(ctx, n);
    let mut states: Vec<Big> = (0..n)
        .map(|t| Big {
            t,
            rng: cfg.rng(t as u64),
            slots: vec![Obj::NONE; LARGE_LIVE],
            left: share(cfg.total_ops(), n, t),
        })
        .collect();
    Sched::new(cfg.seed, 4).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            for o in s.slots.iter().filter(|o| o.ptr != 0) {
                ctx.free(s.t, o.ptr, o.size);
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        let i = below(s.rng.next_u64(), LARGE_LIVE as u64) as usize;
        let o = s.slots[i];
        if o.ptr != 0 {
            ctx.free(s.t, o.ptr, o.size);
            s.left = s.left.saturating_sub(1);
        }
        let size = sizes.sample(s.rng.next_u64());
        s.slots[i] = Obj {
            ptr: ctx.malloc(s.t, size),
            size,
        };
        s.left = s.left.saturating_sub(1);
        // Filling 5–25 MiB takes a while: a few µs of virtual time per block.
        ctx.out.pause(2_000 + size / 4096);
        Step::Ran
    });
}
