//! `json-tree`: parse-like building of document trees (benchmark-suite seed, milestone 4).
//!
//! A document is built in parse order: each value gets a node; a string value its bytes; an
//! object or array a child vector grown by realloc (capacity 4, doubling) as children arrive,
//! and an object a key string per member. Documents live in a bounded set: a new one replaces
//! a random old one, which is freed as a unit (children before parents); sometimes a random
//! subtree of a live document is freed and a new subtree parsed into it.
//!
//! Each document keeps its allocations in creation order, and each node the range of those
//! that belong to its subtree, so a subtree is one contiguous range.

use rand::RngCore;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Obj, prob, share, start_all};
use crate::event::ThreadId;
use crate::synth::Config;
use crate::synth::out::Ctx;
use crate::synth::sched::{Sched, Step};
use crate::synth::sizes::{Sizes, below};

/// Live documents per thread.
pub(crate) const JSON_DOCS: usize = 128;
/// Node struct size (every value).
pub(crate) const JSON_NODE: u64 = 48;
/// Bytes per child-vector entry: object members (key, value) and array elements.
pub(crate) const JSON_MEMBER: u64 = 16;
pub(crate) const JSON_ELEMENT: u64 = 8;
/// Deepest nesting.
pub(crate) const JSON_DEPTH: u32 = 12;
/// Share of steps that mutate a live document instead of replacing one.
pub(crate) const JSON_P_MUTATE: f64 = 0.3;

#[derive(Default)]
struct Doc {
    objs: Vec<Obj>,
    /// Per node: the range of `objs` of its subtree.
    nodes: Vec<(u32, u32)>,
}

struct Parser<'a> {
    strings: &'a Sizes,
    keys: &'a Sizes,
    children: &'a Sizes,
}

impl Parser<'_> {
    /// Parses one value of at most `*budget` nodes into `doc`.
    fn value(
        &self,
        ctx: &mut Ctx,
        t: ThreadId,
        rng: &mut Xoshiro256PlusPlus,
        doc: &mut Doc,
        budget: &mut u64,
        depth: u32,
    ) {
        let start = doc.objs.len() as u32;
        *budget = budget.saturating_sub(1);
        let r = below(rng.next_u64(), 100);
        let container = *budget > 0 && depth < JSON_DEPTH;
        let ptr = ctx.malloc(t, JSON_NODE);
        doc.objs.push(Obj {
            ptr,
            size: JSON_NODE,
        });
        match r {
            0..40 if container => {
                let object = r < 25;
                let entry = if object { JSON_MEMBER } else { JSON_ELEMENT };
                let want = self.children.sample(rng.next_u64()).min(*budget);
                let mut vec_at = usize::MAX;
                let mut cap = 0u64;
                for len in 0..want {
                    if *budget == 0 {
                        break;
                    }
                    if len == cap {
                        let new = (cap * 2).max(4);
                        if vec_at == usize::MAX {
                            let size = new * entry;
                            vec_at = doc.objs.len();
                            let ptr = ctx.malloc(t, size);
                            doc.objs.push(Obj { ptr, size });
                        } else {
                            let o = &mut doc.objs[vec_at];
                            let size = new * entry;
                            o.ptr = ctx.realloc(t, o.ptr, o.size, size);
                            o.size = size;
                        }
                        cap = new;
                    }
                    if object {
                        let size = self.keys.sample(rng.next_u64());
                        let ptr = ctx.malloc(t, size);
                        doc.objs.push(Obj { ptr, size });
                    }
                    self.value(ctx, t, rng, doc, budget, depth + 1);
                }
            }
            0..75 => {
                let size = self.strings.sample(rng.next_u64());
                let ptr = ctx.malloc(t, size);
                doc.objs.push(Obj { ptr, size });
            }
            _ => {} // number, true, false, null: the node alone
        }
        doc.nodes.push((start, doc.objs.len() as u32));
    }
}

struct JsonThread {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    docs: Vec<Doc>,
    spare: Vec<Doc>,
    left: u64,
}

/// Frees the live allocations of `doc.objs[a..b]`, last first (children before parents).
fn free_range(ctx: &mut Ctx, t: ThreadId, doc: &mut Doc, a: usize, b: usize) {
    for o in doc.objs[a..b].iter_mut().rev() {
        if o.ptr != 0 {
            ctx.free(t, o.ptr, o.size);
            *o = Obj::NONE;
        }
    }
}

pub(crate) fn json_tree(cfg: &Config, ctx: &mut Ctx) {
    let doc_nodes = Sizes::log_normal(200.0, 1.0, 4, 20_000);
    let subtree_nodes = Sizes::log_normal(16.0, 1.0, 1, 1000);
    let strings = Sizes::log_normal(12.0, 1.2, 1, 4096);
    let keys = Sizes::log_normal(8.0, 0.6, 2, 64);
    let children = Sizes::log_normal(5.0, 0.8, 1, 1000);
    let parser = Parser {
        strings: &strings,
        keys: &keys,
        children: &children,
    };
    let n = cfg.threads;
    start_all(ctx, n);
    let p_mutate = prob(JSON_P_MUTATE);
    let mut states: Vec<JsonThread> = (0..n)
        .map(|t| JsonThread {
            t,
            rng: cfg.rng(t as u64),
            docs: Vec::with_capacity(JSON_DOCS),
            spare: Vec::new(),
            left: share(cfg.total_ops(), n, t),
        })
        .collect();
    Sched::new(cfg.seed, 2).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            for mut d in s.docs.drain(..) {
                let len = d.objs.len();
                free_range(ctx, s.t, &mut d, 0, len);
            }
            ctx.exit(s.t);
            return Step::Done;
        }
        let before = ctx.out.events();
        if s.docs.len() == JSON_DOCS && s.rng.next_u64() < p_mutate {
            // Mutate: free a random subtree (not the root) and parse a new one in its place.
            let d = below(s.rng.next_u64(), JSON_DOCS as u64) as usize;
            let doc = &mut s.docs[d];
            if doc.nodes.len() > 1 {
                let k = below(s.rng.next_u64(), doc.nodes.len() as u64 - 1) as usize;
                let (a, b) = doc.nodes[k];
                if doc.objs[a as usize].ptr != 0 {
                    free_range(ctx, s.t, doc, a as usize, b as usize);
                }
            }
            let mut budget = subtree_nodes.sample(s.rng.next_u64());
            parser.value(ctx, s.t, &mut s.rng, doc, &mut budget, 1);
        } else {
            if s.docs.len() == JSON_DOCS {
                // Replace a random document: the old one is freed as a unit.
                let i = below(s.rng.next_u64(), JSON_DOCS as u64) as usize;
                let mut old = s.docs.swap_remove(i);
                let len = old.objs.len();
                free_range(ctx, s.t, &mut old, 0, len);
                old.objs.clear();
                old.nodes.clear();
                s.spare.push(old);
            }
            let mut doc = s.spare.pop().unwrap_or_default();
            let mut budget = doc_nodes.sample(s.rng.next_u64());
            parser.value(ctx, s.t, &mut s.rng, &mut doc, &mut budget, 0);
            s.docs.push(doc);
        }
        s.left = s.left.saturating_sub(ctx.out.events() - before);
        Step::Ran
    });
}
