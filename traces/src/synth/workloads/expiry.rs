//! Objects freed by age: the FancyAllocator seed's benchmark (`ring-buffer`, first in first
//! out) and the arena seed's HPC ephemeral scenario (`ephemeral-ttl`, each object freed when its
//! time-to-live is up).

use rand::RngCore;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Obj, prefetch, share, start_all};
use crate::event::ThreadId;
use crate::synth::Config;
use crate::synth::out::Ctx;
use crate::synth::sched::{Sched, Step};
use crate::synth::sizes::{Sizes, below};

/// Ring slots per thread of `ring-buffer` at scale 1 (the seed's 100 000).
pub(crate) const RING_SLOTS: u64 = 100_000;

/// The seed's size mix: 60 % 16–256 B, 30 % 512–2048 B, 10 % 4096–32768 B.
pub(crate) fn ring_sizes() -> Sizes {
    Sizes::mixture(&[(0.6, 16, 256), (0.3, 512, 2048), (0.1, 4096, 32768)])
}

struct Ring {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    slots: Vec<Obj>,
    next: usize,
    left: u64,
}

pub(crate) fn ring_buffer(cfg: &Config, ctx: &mut Ctx) {
    let sizes = ring_sizes();
    let n = cfg.threads;
    let slots = cfg.scaled(RING_SLOTS) as usize;
    start_all(ctx, n);
    let mut states: Vec<Ring> = (0..n)
        .map(|t| Ring {
            t,
            rng: cfg.rng(t as u64),
            slots: vec![Obj::NONE; slots],
            next: 0,
            left: share(cfg.total_ops(), n, t),
        })
        .collect();
    Sched::new(cfg.seed, 32).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            // Free what is still in the ring, oldest first.
            let (a, b) = s.slots.split_at(s.next);
            for o in b.iter().chain(a.iter()).filter(|o| o.ptr != 0) {
                ctx.free(s.t, o.ptr, o.size);
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        let o = s.slots[s.next];
        if o.ptr != 0 {
            ctx.free(s.t, o.ptr, o.size);
            s.left = s.left.saturating_sub(1);
        }
        let size = sizes.sample(s.rng.next_u64());
        s.slots[s.next] = Obj {
            ptr: ctx.malloc(s.t, size),
            size,
        };
        s.left = s.left.saturating_sub(1);
        s.next += 1;
        if s.next == s.slots.len() {
            s.next = 0;
        }
        Step::Ran
    });
}

/// Timing-wheel length (the longest time-to-live, in ticks) per thread of `ephemeral-ttl` at
/// scale 1.
pub(crate) const TTL_TICKS: u64 = 100_000;

const NIL: u32 = u32::MAX;

/// Each tick allocates one object with a random time-to-live, uniform in 1..=ticks, then frees
/// the objects whose time is up. Objects wait on a timing wheel (intrusive lists in a slab).
/// Times-to-live drawn ahead of use (to prefetch their wheel slots).
const TTL_AHEAD: usize = 8;

struct Wheel {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    /// The times-to-live of the next `TTL_AHEAD` ticks.
    ahead: [usize; TTL_AHEAD],
    heads: Vec<u32>,
    slab: Vec<(Obj, u32)>,
    free_slab: Vec<u32>,
    tick: usize,
    left: u64,
}

pub(crate) fn ephemeral_ttl(cfg: &Config, ctx: &mut Ctx) {
    let (lo, hi) = cfg.size_range.expect("ephemeral-ttl has a size range");
    let sizes = Sizes::uniform(lo, hi);
    let n = cfg.threads;
    let ticks = cfg.scaled(TTL_TICKS).max(2) as usize;
    start_all(ctx, n);
    let mut states: Vec<Wheel> = (0..n)
        .map(|t| Wheel {
            t,
            rng: cfg.rng(t as u64),
            ahead: [0; TTL_AHEAD],
            heads: vec![NIL; ticks],
            slab: Vec::new(),
            free_slab: Vec::new(),
            tick: 0,
            left: share(cfg.total_ops(), n, t),
        })
        .collect();
    Sched::new(cfg.seed, 16).run(ctx, &mut states, |ctx, s| {
        let w = s.heads.len();
        if s.left == 0 {
            // Shut down: free what is still waiting, soonest expiry first.
            for k in 0..w {
                let mut i = std::mem::replace(&mut s.heads[(s.tick + k) % w], NIL);
                while i != NIL {
                    let (o, next) = s.slab[i as usize];
                    ctx.free(s.t, o.ptr, o.size);
                    i = next;
                }
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        let size = sizes.sample(s.rng.next_u64());
        let o = Obj {
            ptr: ctx.malloc(s.t, size),
            size,
        };
        s.left -= 1;
        // The TTL drawn TTL_AHEAD ticks ago (0 during the first ticks: draw it now); draw the
        // one of TTL_AHEAD ticks ahead and prefetch its slot, and the first object due soon.
        let slot = s.tick % TTL_AHEAD;
        let draw = |rng: &mut Xoshiro256PlusPlus| 1 + below(rng.next_u64(), w as u64 - 1) as usize;
        let ttl = match s.ahead[slot] {
            0 => draw(&mut s.rng),
            d => d,
        };
        let later = draw(&mut s.rng);
        s.ahead[slot] = later;
        prefetch(&s.heads[(s.tick + TTL_AHEAD + later) % w]);
        let soon = s.heads[(s.tick + 4) % w];
        if soon != NIL {
            prefetch(&s.slab[soon as usize]);
        }
        // Two ticks later that first object is in cache: prefetch the one chained after it.
        let near = s.heads[(s.tick + 2) % w];
        if near != NIL {
            let next = s.slab[near as usize].1;
            if next != NIL {
                prefetch(&s.slab[next as usize]);
            }
        }
        let at = (s.tick + ttl) % w;
        let cell = (o, s.heads[at]);
        let idx = match s.free_slab.pop() {
            Some(i) => {
                s.slab[i as usize] = cell;
                i
            }
            None => {
                s.slab.push(cell);
                (s.slab.len() - 1) as u32
            }
        };
        s.heads[at] = idx;
        // The clock moves on one tick: free everything due now.
        s.tick = (s.tick + 1) % w;
        let mut i = std::mem::replace(&mut s.heads[s.tick], NIL);
        while i != NIL {
            let (o, next) = s.slab[i as usize];
            ctx.free(s.t, o.ptr, o.size);
            s.left = s.left.saturating_sub(1);
            s.free_slab.push(i);
            i = next;
        }
        Step::Ran
    });
}
