//! The benchmark-suite seed's workloads: `small`, `medium`, `large`, `mixed`, `churn`,
//! `fragmentation-holes` (milestones 1 and 3), and the scalability patterns `thread-local`,
//! `producer-consumer`, `shared-pool` (milestone 2).

use std::collections::VecDeque;

use rand::RngCore;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Obj, share, start_all};
use crate::event::ThreadId;
use crate::synth::Config;
use crate::synth::out::Ctx;
use crate::synth::sched::{Sched, Step};
use crate::synth::sizes::{Sizes, below};

/// Objects per batch in `small`, `medium`, `large` at scale 1 (all threads together).
pub(crate) const SMALL_OBJECTS: u64 = 1 << 20;
pub(crate) const MEDIUM_OBJECTS: u64 = 4096;
pub(crate) const LARGE_OBJECTS: u64 = 128;

/// Allocate a batch, free it in random order, again, until the ops are spent.
struct Batch {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    count: usize,
    objs: Vec<Obj>,
    freeing: bool,
    left: u64,
}

fn batches(cfg: &Config, ctx: &mut Ctx, sizes: Sizes, objects: u64) {
    let n = cfg.threads;
    start_all(ctx, n);
    let mut states: Vec<Batch> = (0..n)
        .map(|t| {
            let left = share(cfg.total_ops(), n, t);
            // A round is count allocations and count frees; at least one round.
            let count = share(cfg.scaled(objects), n, t).min(left / 2).max(1) as usize;
            Batch {
                t,
                rng: cfg.rng(t as u64),
                count,
                objs: Vec::with_capacity(count),
                freeing: false,
                left,
            }
        })
        .collect();
    Sched::new(cfg.seed, 64).run(ctx, &mut states, |ctx, s| {
        if s.freeing {
            match s.objs.pop() {
                Some(o) => {
                    ctx.free(s.t, o.ptr, o.size);
                    s.left = s.left.saturating_sub(1);
                    return Step::Ran;
                }
                None => s.freeing = false,
            }
            if s.left == 0 {
                ctx.exit(s.t);
                return Step::Done;
            }
        }
        let size = sizes.sample(s.rng.next_u64());
        let ptr = ctx.malloc(s.t, size);
        s.objs.push(Obj { ptr, size });
        s.left = s.left.saturating_sub(1);
        if s.objs.len() == s.count {
            // Free in random order: shuffle, then pop.
            for i in (1..s.objs.len()).rev() {
                let j = below(s.rng.next_u64(), i as u64 + 1) as usize;
                s.objs.swap(i, j);
            }
            s.freeing = true;
        }
        Step::Ran
    });
}

pub(crate) fn small(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("small has a size range");
    batches(cfg, ctx, Sizes::uniform(lo, hi), SMALL_OBJECTS);
}

pub(crate) fn medium(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("medium has a size range");
    batches(cfg, ctx, Sizes::uniform(lo, hi), MEDIUM_OBJECTS);
}

pub(crate) fn large(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("large has a size range");
    batches(cfg, ctx, Sizes::uniform(lo, hi), LARGE_OBJECTS);
}

/// Slots per thread of `mixed`.
pub(crate) const MIXED_SLOTS: usize = 16384;
/// Slots per thread of `thread-local`.
pub(crate) const LOCAL_SLOTS: usize = 1024;
/// Log-normal parameters of `mixed`.
pub(crate) const MIXED_MEDIAN: f64 = 64.0;
pub(crate) const MIXED_SIGMA: f64 = 1.5;

/// Random replacement in a table of slots: each step picks a slot, frees what is there and
/// allocates a new object into it.
struct Replace {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    slots: Vec<Obj>,
    left: u64,
}

fn replace(cfg: &Config, ctx: &mut Ctx, sizes: Sizes, slots: usize) {
    let n = cfg.threads;
    start_all(ctx, n);
    let mut states: Vec<Replace> = (0..n)
        .map(|t| Replace {
            t,
            rng: cfg.rng(t as u64),
            slots: vec![Obj::NONE; slots],
            left: share(cfg.total_ops(), n, t),
        })
        .collect();
    Sched::new(cfg.seed, 32).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            for o in s.slots.iter().filter(|o| o.ptr != 0) {
                ctx.free(s.t, o.ptr, o.size);
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        let i = below(s.rng.next_u64(), s.slots.len() as u64) as usize;
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
        Step::Ran
    });
}

pub(crate) fn mixed(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("mixed has a size range");
    let sizes = Sizes::log_normal(MIXED_MEDIAN, MIXED_SIGMA, lo, hi);
    replace(cfg, ctx, sizes, MIXED_SLOTS);
}

pub(crate) fn thread_local(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("thread-local has a size range");
    replace(cfg, ctx, Sizes::uniform(lo, hi), LOCAL_SLOTS);
}

/// Live objects of `churn` at scale 1 (all threads together).
pub(crate) const CHURN_OBJECTS: u64 = 32768;

/// Allocate N; then repeatedly free a random 25–75 % of them and allocate back up to N.
struct Churn {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    n: usize,
    live: Vec<Obj>,
    to_free: usize,
    left: u64,
}

pub(crate) fn churn(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("churn has a size range");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    start_all(ctx, n);
    let mut states: Vec<Churn> = (0..n)
        .map(|t| {
            let objects = share(cfg.scaled(CHURN_OBJECTS), n, t).max(4) as usize;
            Churn {
                t,
                rng: cfg.rng(t as u64),
                n: objects,
                live: Vec::with_capacity(objects),
                to_free: 0,
                left: share(cfg.total_ops(), n, t),
            }
        })
        .collect();
    Sched::new(cfg.seed, 64).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            for o in s.live.drain(..) {
                ctx.free(s.t, o.ptr, o.size);
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        s.left -= 1;
        if s.to_free > 0 {
            let i = below(s.rng.next_u64(), s.live.len() as u64) as usize;
            let o = s.live.swap_remove(i);
            ctx.free(s.t, o.ptr, o.size);
            s.to_free -= 1;
            return Step::Ran;
        }
        let size = sizes.sample(s.rng.next_u64());
        let ptr = ctx.malloc(s.t, size);
        s.live.push(Obj { ptr, size });
        if s.live.len() == s.n {
            s.to_free = s.n / 4 + below(s.rng.next_u64(), (s.n / 2 + 1) as u64) as usize;
        }
        Step::Ran
    });
}

/// `fragmentation-holes`: objects of the first phase per op of `--ops` (N = 0.4 × ops).
pub(crate) const HOLES_OBJECTS_PER_OP: f64 = 0.4;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Holes {
    /// Allocating the N small objects.
    Fill,
    /// Freeing every other one (odd indices).
    Punch,
    /// Allocating N/4 objects too big for any hole.
    Big,
    /// Freeing everything left.
    Drain,
}

struct HoleState {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    n: usize,
    phase: Holes,
    i: usize,
    small: Vec<Obj>,
    big: Vec<Obj>,
}

pub(crate) fn fragmentation_holes(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg
        .size_range
        .expect("fragmentation-holes has a size range");
    let small = Sizes::uniform(lo, hi);
    // "Larger than the holes": above the largest hole, up to four times it.
    let big = Sizes::uniform(hi + 1, hi.saturating_mul(4).max(hi + 1));
    let n = cfg.threads;
    start_all(ctx, n);
    let total = (cfg.total_ops() as f64 * HOLES_OBJECTS_PER_OP).round() as u64;
    let mut states: Vec<HoleState> = (0..n)
        .map(|t| {
            let objects = share(total, n, t).max(2) as usize;
            HoleState {
                t,
                rng: cfg.rng(t as u64),
                n: objects,
                phase: Holes::Fill,
                i: 0,
                small: Vec::with_capacity(objects),
                big: Vec::with_capacity(objects / 4),
            }
        })
        .collect();
    Sched::new(cfg.seed, 64).run(ctx, &mut states, |ctx, s| {
        match s.phase {
            Holes::Fill => {
                let size = small.sample(s.rng.next_u64());
                let ptr = ctx.malloc(s.t, size);
                s.small.push(Obj { ptr, size });
                if s.small.len() == s.n {
                    s.phase = Holes::Punch;
                    s.i = 1;
                }
            }
            Holes::Punch => {
                let o = std::mem::replace(&mut s.small[s.i], Obj::NONE);
                ctx.free(s.t, o.ptr, o.size);
                s.i += 2;
                if s.i >= s.n {
                    s.phase = Holes::Big;
                }
            }
            Holes::Big => {
                if s.big.len() < s.n / 4 {
                    let size = big.sample(s.rng.next_u64());
                    let ptr = ctx.malloc(s.t, size);
                    s.big.push(Obj { ptr, size });
                } else {
                    s.phase = Holes::Drain;
                    s.i = 0;
                }
            }
            Holes::Drain => {
                // The surviving small objects in order, then the big ones.
                if s.i < s.n {
                    let o = s.small[s.i];
                    ctx.free(s.t, o.ptr, o.size);
                    s.i += 2;
                } else if let Some(o) = s.big.pop() {
                    ctx.free(s.t, o.ptr, o.size);
                } else {
                    ctx.exit(s.t);
                    return Step::Done;
                }
            }
        }
        Step::Ran
    });
}

/// Queue capacity (objects) between a producer group and its consumer.
pub(crate) const PC_QUEUE: usize = 1024;

enum Role {
    Producer { queue: usize, left: u64 },
    Consumer { queue: usize },
}

struct PcThread {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    role: Role,
}

struct PcQueue {
    objs: VecDeque<Obj>,
    producers_left: u32,
}

pub(crate) fn producer_consumer(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("producer-consumer has a size range");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    let producers = n.div_ceil(2);
    let consumers = n - producers;
    start_all(ctx, n);
    let mut queues: Vec<PcQueue> = (0..consumers)
        .map(|_| PcQueue {
            objs: VecDeque::with_capacity(PC_QUEUE),
            producers_left: 0,
        })
        .collect();
    // Producers make the allocations (half of the ops); consumers free them all.
    let allocs = cfg.total_ops().div_ceil(2);
    let mut states: Vec<PcThread> = (0..n)
        .map(|t| {
            let role = if t < producers {
                let queue = (t % consumers) as usize;
                queues[queue].producers_left += 1;
                Role::Producer {
                    queue,
                    left: share(allocs, producers, t),
                }
            } else {
                Role::Consumer {
                    queue: (t - producers) as usize,
                }
            };
            PcThread {
                t,
                rng: cfg.rng(t as u64),
                role,
            }
        })
        .collect();
    Sched::new(cfg.seed, 32).run(ctx, &mut states, |ctx, s| match &mut s.role {
        Role::Producer { queue, left } => {
            let q = &mut queues[*queue];
            if *left == 0 {
                q.producers_left -= 1;
                ctx.exit(s.t);
                return Step::Done;
            }
            if q.objs.len() >= PC_QUEUE {
                return Step::Blocked;
            }
            let size = sizes.sample(s.rng.next_u64());
            let ptr = ctx.malloc(s.t, size);
            q.objs.push_back(Obj { ptr, size });
            *left -= 1;
            Step::Ran
        }
        Role::Consumer { queue } => {
            let q = &mut queues[*queue];
            match q.objs.pop_front() {
                Some(o) => {
                    ctx.free(s.t, o.ptr, o.size);
                    Step::Ran
                }
                None if q.producers_left == 0 => {
                    ctx.exit(s.t);
                    Step::Done
                }
                None => Step::Blocked,
            }
        }
    });
}

/// Slots of the table all `shared-pool` threads share.
pub(crate) const SHARED_SLOTS: usize = 16384;

struct Shared {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    left: u64,
}

pub(crate) fn shared_pool(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("shared-pool has a size range");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    start_all(ctx, n);
    let mut pool = vec![Obj::NONE; SHARED_SLOTS];
    let mut running = n;
    let mut states: Vec<Shared> = (0..n)
        .map(|t| Shared {
            t,
            rng: cfg.rng(t as u64),
            left: share(cfg.total_ops(), n, t),
        })
        .collect();
    Sched::new(cfg.seed, 32).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            running -= 1;
            if running == 0 {
                // The last thread out empties the pool.
                for o in pool.iter_mut().filter(|o| o.ptr != 0) {
                    ctx.free(s.t, o.ptr, o.size);
                    *o = Obj::NONE;
                }
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        let i = below(s.rng.next_u64(), SHARED_SLOTS as u64) as usize;
        let o = pool[i];
        if o.ptr != 0 {
            ctx.free(s.t, o.ptr, o.size);
            s.left = s.left.saturating_sub(1);
        }
        let size = sizes.sample(s.rng.next_u64());
        pool[i] = Obj {
            ptr: ctx.malloc(s.t, size),
            size,
        };
        s.left = s.left.saturating_sub(1);
        Step::Ran
    });
}
