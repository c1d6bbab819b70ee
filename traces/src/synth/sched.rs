//! Interleaving simulated threads on the one virtual clock.
//!
//! A workload keeps one state per simulated thread and a `step` function that makes that
//! thread do one small unit of work (usually one or two allocator calls). The scheduler picks a
//! runnable thread at random and lets it run a quantum of 1..=`max_quantum` steps, so threads
//! interleave finely and irregularly, as threads on real cores do. A step may report that the
//! thread must wait for another thread (a consumer with an empty queue), sleep for a while in
//! virtual time (a server waiting for its next request), or has ended.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::out::Ctx;
use super::sizes::below;

/// What one step of a simulated thread did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// It did some work and can go on.
    Ran,
    /// It can do nothing until another thread makes progress.
    Blocked,
    /// It did some work and now sleeps this many ns of virtual time.
    Sleep(u64),
    /// It has ended (and emitted its `ThreadExit`).
    Done,
}

/// Picks which simulated thread runs next.
pub(crate) struct Sched {
    rng: Xoshiro256PlusPlus,
    max_quantum: u64,
}

impl Sched {
    pub(crate) fn new(seed: u64, max_quantum: u64) -> Sched {
        Sched {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5c4e_d5c4_ed5c_4ed5),
            max_quantum: max_quantum.max(1),
        }
    }

    /// Runs every state's `step` until all are done.
    pub(crate) fn run<S>(
        &mut self,
        ctx: &mut Ctx,
        states: &mut [S],
        mut step: impl FnMut(&mut Ctx, &mut S) -> Step,
    ) {
        let mut active: Vec<usize> = (0..states.len()).collect();
        let mut blocked: Vec<usize> = Vec::new();
        let mut sleeping: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
        loop {
            while let Some(&Reverse((wake, i))) = sleeping.peek() {
                if wake > ctx.out.now() {
                    break;
                }
                sleeping.pop();
                active.push(i);
            }
            if active.is_empty() {
                match sleeping.pop() {
                    Some(Reverse((wake, i))) => {
                        ctx.out.advance_to(wake);
                        active.push(i);
                    }
                    None if blocked.is_empty() => return,
                    None => panic!(
                        "synth: every simulated thread waits for another ({} blocked): a \
                         generator bug",
                        blocked.len()
                    ),
                }
            }
            let k = below(self.rng.next_u64(), active.len() as u64) as usize;
            let i = active[k];
            let quantum = 1 + below(self.rng.next_u64(), self.max_quantum);
            let mut progressed = false;
            for _ in 0..quantum {
                match step(ctx, &mut states[i]) {
                    Step::Ran => progressed = true,
                    Step::Blocked => {
                        active.swap_remove(k);
                        blocked.push(i);
                        break;
                    }
                    Step::Sleep(ns) => {
                        progressed = true;
                        active.swap_remove(k);
                        sleeping.push(Reverse((ctx.out.now() + ns, i)));
                        break;
                    }
                    Step::Done => {
                        progressed = true;
                        active.swap_remove(k);
                        break;
                    }
                }
            }
            if progressed && !blocked.is_empty() {
                active.append(&mut blocked);
            }
            if !ctx.out.ok() {
                return;
            }
        }
    }
}
