//! Program-like workloads of the benchmark-suite seed's milestone 4: `web-server` and
//! `kv-store` (`json-tree` is in `json.rs`).

use rand::RngCore;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Obj, prefetch, prob, share};
use crate::event::ThreadId;
use crate::synth::Config;
use crate::synth::out::Ctx;
use crate::synth::sched::{Sched, Step};
use crate::synth::sizes::{Sizes, below};

/// Long-lived cache entries the main thread makes before the workers start.
pub(crate) const WEB_CACHE: usize = 256;
/// Cache entry sizes.
pub(crate) const WEB_CACHE_SIZES: (u64, u64) = (1024, 64 << 10);
/// One request in this many replaces a cache entry.
pub(crate) const WEB_CACHE_UPDATE_EVERY: u64 = 32;
/// Request context: `calloc(1, WEB_CONTEXT)`.
pub(crate) const WEB_CONTEXT: u64 = 384;
/// Headers per request: uniform in this range (two strings each).
pub(crate) const WEB_HEADERS: (u64, u64) = (8, 24);
/// First response buffer, doubled by realloc until the body fits.
pub(crate) const WEB_RESPONSE_START: u64 = 512;
/// Response bodies: log-normal, median and sigma, truncated to the range.
pub(crate) const WEB_BODY: (f64, f64, u64, u64) = (2048.0, 1.5, 64, 2 << 20);
/// Idle time between a worker's requests: uniform up to this many ns.
pub(crate) const WEB_IDLE_NS: u64 = 20_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Web {
    /// Waiting for a request: reads it into a buffer.
    Accept,
    /// Parsing headers: two small strings per header.
    Headers,
    /// Routing: a zeroed context, sometimes a cache update.
    Route,
    /// Building the response by growing one buffer.
    Respond,
    /// Freeing everything of the request.
    Finish,
}

struct Worker {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    phase: Web,
    request: Obj,
    headers: Vec<Obj>,
    header_count: usize,
    context: Obj,
    response: Obj,
    body: u64,
    left: u64,
}

pub(crate) fn web_server(cfg: &Config, ctx: &mut Ctx) {
    let cache_sizes = Sizes::uniform(WEB_CACHE_SIZES.0, WEB_CACHE_SIZES.1);
    let name_sizes = Sizes::uniform(4, 32);
    let value_sizes = Sizes::log_normal(24.0, 1.0, 1, 4096);
    let body_sizes = Sizes::log_normal(WEB_BODY.0, WEB_BODY.1, WEB_BODY.2, WEB_BODY.3);
    let n = cfg.threads;
    let main: ThreadId = 0;
    let mut rng = cfg.rng(0);
    ctx.start(main);
    let mut cache: Vec<Obj> = (0..WEB_CACHE)
        .map(|_| {
            let size = cache_sizes.sample(rng.next_u64());
            Obj {
                ptr: ctx.malloc(main, size),
                size,
            }
        })
        .collect();
    let mut states: Vec<Worker> = (1..=n)
        .map(|t| Worker {
            t,
            rng: cfg.rng(t as u64),
            phase: Web::Accept,
            request: Obj::NONE,
            headers: Vec::with_capacity(2 * WEB_HEADERS.1 as usize),
            header_count: 0,
            context: Obj::NONE,
            response: Obj::NONE,
            body: 0,
            left: share(cfg.total_ops(), n, t - 1),
        })
        .collect();
    for s in &states {
        ctx.out.pause(10_000);
        ctx.start(s.t);
    }
    Sched::new(cfg.seed, 6).run(ctx, &mut states, |ctx, s| {
        let before = ctx.out.events();
        let step = match s.phase {
            Web::Accept => {
                if s.left == 0 {
                    ctx.exit(s.t);
                    return Step::Done;
                }
                let size = if s.rng.next_u64() & 7 == 0 {
                    16384
                } else {
                    8192
                };
                s.request = Obj {
                    ptr: ctx.malloc(s.t, size),
                    size,
                };
                s.header_count = (WEB_HEADERS.0
                    + below(s.rng.next_u64(), WEB_HEADERS.1 - WEB_HEADERS.0 + 1))
                    as usize;
                s.phase = Web::Headers;
                Step::Ran
            }
            Web::Headers => {
                for sizes in [&name_sizes, &value_sizes] {
                    let size = sizes.sample(s.rng.next_u64());
                    let ptr = ctx.malloc(s.t, size);
                    s.headers.push(Obj { ptr, size });
                }
                if s.headers.len() >= 2 * s.header_count {
                    s.phase = Web::Route;
                }
                Step::Ran
            }
            Web::Route => {
                s.context = Obj {
                    ptr: ctx.calloc(s.t, 1, WEB_CONTEXT),
                    size: WEB_CONTEXT,
                };
                if s.rng.next_u64() % WEB_CACHE_UPDATE_EVERY == 0 {
                    // Replace a cache entry: often one another thread made.
                    let i = below(s.rng.next_u64(), WEB_CACHE as u64) as usize;
                    let old = cache[i];
                    ctx.free(s.t, old.ptr, old.size);
                    let size = cache_sizes.sample(s.rng.next_u64());
                    cache[i] = Obj {
                        ptr: ctx.malloc(s.t, size),
                        size,
                    };
                }
                s.body = body_sizes.sample(s.rng.next_u64());
                let size = WEB_RESPONSE_START.min(s.body);
                s.response = Obj {
                    ptr: ctx.malloc(s.t, size),
                    size,
                };
                s.phase = Web::Respond;
                Step::Ran
            }
            Web::Respond => {
                if s.response.size < s.body {
                    let size = (s.response.size * 2).min(s.body);
                    s.response.ptr = ctx.realloc(s.t, s.response.ptr, s.response.size, size);
                    s.response.size = size;
                } else {
                    s.phase = Web::Finish;
                }
                Step::Ran
            }
            Web::Finish => {
                let r = s.response;
                ctx.free(s.t, r.ptr, r.size);
                while let Some(h) = s.headers.pop() {
                    ctx.free(s.t, h.ptr, h.size);
                }
                ctx.free(s.t, s.context.ptr, s.context.size);
                ctx.free(s.t, s.request.ptr, s.request.size);
                s.phase = Web::Accept;
                Step::Sleep(below(s.rng.next_u64(), WEB_IDLE_NS + 1))
            }
        };
        s.left = s.left.saturating_sub(ctx.out.events() - before);
        step
    });
    // Shutdown: the main thread drops the caches.
    ctx.out.pause(50_000);
    for o in cache.drain(..) {
        ctx.free(main, o.ptr, o.size);
    }
    ctx.exit(main);
}

/// Keys of the `kv-store` key space at scale 1.
pub(crate) const KV_KEYS: u64 = 200_000;
/// Key string sizes.
pub(crate) const KV_KEY_SIZES: (u64, u64) = (16, 64);
/// Value sizes: log-normal median and sigma, truncated to the range.
pub(crate) const KV_VALUE: (f64, f64, u64, u64) = (200.0, 1.0, 8, 64 << 10);
/// Ops between compactions (all threads together).
pub(crate) const KV_COMPACT_EVERY: u64 = 250_000;
/// Share of the key space a compaction drops.
pub(crate) const KV_COMPACT_SHARE: f64 = 0.05;

#[derive(Clone, Copy)]
struct Entry {
    key: Obj,
    value: Obj,
}

/// Keys a client draws ahead of use (to prefetch their entries).
const KV_AHEAD: usize = 8;

struct Client {
    t: ThreadId,
    rng: Xoshiro256PlusPlus,
    /// The keys of the next `KV_AHEAD` requests, from their own stream.
    key_rng: Xoshiro256PlusPlus,
    ahead: [usize; KV_AHEAD],
    next: usize,
    left: u64,
}

pub(crate) fn kv_store(cfg: &Config, ctx: &mut Ctx) {
    let key_sizes = Sizes::uniform(KV_KEY_SIZES.0, KV_KEY_SIZES.1);
    let value_sizes = Sizes::log_normal(KV_VALUE.0, KV_VALUE.1, KV_VALUE.2, KV_VALUE.3);
    let n = cfg.threads;
    let keys = cfg.scaled(KV_KEYS).max(20) as usize;
    let main: ThreadId = 0;
    let mut rng = cfg.rng(0);
    ctx.start(main);
    let none = Entry {
        key: Obj::NONE,
        value: Obj::NONE,
    };
    let mut store = vec![none; keys];
    // Load: the main thread inserts half the key space.
    for e in store.iter_mut() {
        if rng.next_u64() & 1 == 0 {
            let ks = key_sizes.sample(rng.next_u64());
            let vs = value_sizes.sample(rng.next_u64());
            e.key = Obj {
                ptr: ctx.malloc(main, ks),
                size: ks,
            };
            e.value = Obj {
                ptr: ctx.malloc(main, vs),
                size: vs,
            };
        }
    }
    let mut states: Vec<Client> = (1..=n)
        .map(|t| {
            let mut key_rng = cfg.rng(t as u64 + (1 << 32));
            let ahead = std::array::from_fn(|_| below(key_rng.next_u64(), keys as u64) as usize);
            Client {
                t,
                rng: cfg.rng(t as u64),
                key_rng,
                ahead,
                next: 0,
                left: share(cfg.total_ops(), n, t - 1),
            }
        })
        .collect();
    for s in &states {
        ctx.out.pause(10_000);
        ctx.start(s.t);
    }
    let (p_update, p_delete) = (prob(0.6), prob(0.9));
    let compact_len = ((keys as f64 * KV_COMPACT_SHARE) as usize).max(1);
    let mut since_compaction = 0u64;
    Sched::new(cfg.seed, 16).run(ctx, &mut states, |ctx, s| {
        if s.left == 0 {
            ctx.exit(s.t);
            return Step::Done;
        }
        let before = ctx.out.events();
        if since_compaction >= KV_COMPACT_EVERY {
            // Compaction: drop a contiguous key range in one burst.
            since_compaction = 0;
            let start = below(s.rng.next_u64(), keys as u64) as usize;
            for k in 0..compact_len {
                let e = &mut store[(start + k) % keys];
                if e.key.ptr != 0 {
                    ctx.free(s.t, e.value.ptr, e.value.size);
                    ctx.free(s.t, e.key.ptr, e.key.size);
                    *e = none;
                }
            }
        } else {
            let key = s.ahead[s.next];
            let later = below(s.key_rng.next_u64(), keys as u64) as usize;
            prefetch(&store[later]);
            s.ahead[s.next] = later;
            s.next = (s.next + 1) % KV_AHEAD;
            let e = &mut store[key];
            if e.key.ptr == 0 {
                let ks = key_sizes.sample(s.rng.next_u64());
                let vs = value_sizes.sample(s.rng.next_u64());
                e.key = Obj {
                    ptr: ctx.malloc(s.t, ks),
                    size: ks,
                };
                e.value = Obj {
                    ptr: ctx.malloc(s.t, vs),
                    size: vs,
                };
            } else {
                let r = s.rng.next_u64();
                if r < p_update {
                    let vs = value_sizes.sample(s.rng.next_u64());
                    e.value.ptr = ctx.realloc(s.t, e.value.ptr, e.value.size, vs);
                    e.value.size = vs;
                } else if r < p_delete {
                    ctx.free(s.t, e.value.ptr, e.value.size);
                    ctx.free(s.t, e.key.ptr, e.key.size);
                    *e = none;
                } else {
                    // A read copies the value out into a temporary buffer.
                    let size = e.value.size;
                    let tmp = ctx.malloc(s.t, size);
                    ctx.free(s.t, tmp, size);
                }
            }
        }
        let ops = ctx.out.events() - before;
        since_compaction += ops;
        s.left = s.left.saturating_sub(ops);
        Step::Ran
    });
    // Shutdown: the main thread frees the store.
    ctx.out.pause(50_000);
    for e in store.iter().filter(|e| e.key.ptr != 0) {
        ctx.free(main, e.value.ptr, e.value.size);
        ctx.free(main, e.key.ptr, e.key.size);
    }
    ctx.exit(main);
}
