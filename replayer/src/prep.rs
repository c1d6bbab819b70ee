//! Preprocessing: a trace, read once in global order, becomes a [`Plan`] (see `plan.rs`).
//!
//! One pass over the merged records keeps a map from each address the trace used to its
//! object's slot (or "freed"; the object's requested size is kept per slot). The map is an
//! open-addressing table of its own ([`AddrMap`]) so that the records of a batch can prefetch
//! their buckets before any is looked up: with a large live set (a recorded program), each
//! lookup is otherwise a cache miss. Each allocator call becomes an [`Op`] on the array of the
//! replay thread its traced thread is folded into:
//!
//! * an allocation takes a slot: first from the replay thread's own free slots (LIFO: freed
//!   here, so already free in the replay and warm), then from a shared pool of the oldest slots
//!   other threads freed (FIFO: their free most likely already happened in the replay), else a
//!   new one. The slot table stays near the peak live object count;
//! * every op on a slot records the slot's generation and whether the previous transition was
//!   another replay thread's (then the op waits for it in the replay);
//! * what each event does to the live set is `traces::live`'s [`Transition`] (the definition
//!   `inspect` uses, so the plan's counts and peak equal `inspect`'s): inconsistent events are
//!   counted and skipped (a free of an address never returned, a double free; a realloc of
//!   such an address becomes `realloc(NULL, n)`, so the new object exists); an allocation
//!   returning an address that is still live (an *inversion*: the trace lost a free) first
//!   frees the old object (a DROP op), then takes a slot of its own;
//! * failed allocations of the trace are not replayed (counted); `free(NULL)` is.
//!
//! Thread lifetimes ([`Lifetimes`]): each traced thread's start (its `thread start`, else its
//! first event) and end (the last event of a thread that has a `thread exit`) in the global
//! order give the trace's most threads alive at once and, unless threads are folded, when each
//! replay thread is created and which threads must have ended before it (see `plan.rs`).

use std::collections::VecDeque;
use std::time::Instant;

use traces::live::{Addr, AddrTable, Gone, LiveSet, Transition};
use traces::{AlignedFn, Event, MergedReader, Record};

use crate::error::ReplayError;
use crate::plan::{
    BIG, Op, OpClass, Order, Plan, PlanMeta, StartAfter, ThreadArrays, ThreadLayout,
    checkpoint_for, op,
};

/// What preprocessing needs besides the trace.
#[derive(Clone, Debug, Default)]
pub struct PrepOptions {
    /// Replay threads to fold the traced threads onto (`None`: one per traced thread).
    pub threads: Option<u32>,
    /// Keep each op's timestamp (for `--pace`).
    pub pace: bool,
    /// Memory preprocessing may use, bytes (`None`: no check).
    pub max_memory: Option<u64>,
    /// How the replay keeps the trace's interleaving (anything but `Deps` keeps each op's
    /// global position; `Strict` checkpoints every op, so live bytes are measured exactly).
    pub order: Order,
}

/// Slot marker of an address whose object was freed (kept, so a second free of it is told
/// apart from a free of an address never seen).
const FREED: u32 = u32::MAX;

/// One bucket of [`AddrMap`]: an address (0: empty; NULL is never stored) and its slot.
#[derive(Clone, Copy, Default)]
#[repr(C, align(16))]
struct Bucket {
    addr: u64,
    slot: u32,
}

/// Hints the CPU to fetch `p`'s cache line.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and changes no state.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Address → slot, open addressing with linear probing over 16-byte buckets (four to a cache
/// line), Fibonacci hashing of the address, doubled at half full. Addresses are never
/// removed (a freed one keeps [`FREED`]): programs reuse addresses, so the table stays near
/// the number of distinct addresses, and double frees are recognised exactly as `inspect` does.
struct AddrMap {
    buckets: Vec<Bucket>,
    /// 64 − log2(buckets).
    shift: u32,
    len: usize,
}

impl AddrMap {
    fn with_capacity_log2(bits: u32) -> AddrMap {
        AddrMap {
            buckets: vec![Bucket::default(); 1 << bits],
            shift: 64 - bits,
            len: 0,
        }
    }

    #[inline(always)]
    fn home(&self, addr: u64) -> usize {
        (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Hints the CPU to fetch `addr`'s bucket now (it is looked up a few records later).
    #[inline(always)]
    fn prefetch(&self, addr: u64) {
        prefetch(self.buckets.as_ptr().wrapping_add(self.home(addr)));
    }

    #[inline(always)]
    fn find(&self, addr: u64) -> Result<usize, usize> {
        let mask = self.buckets.len() - 1;
        let mut i = self.home(addr);
        loop {
            let b = &self.buckets[i];
            if b.addr == addr {
                return Ok(i);
            }
            if b.addr == 0 {
                return Err(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The slot of `addr` (FREED if freed), if the address was ever seen.
    #[inline(always)]
    fn get_mut(&mut self, addr: u64) -> Option<&mut u32> {
        match self.find(addr) {
            Ok(i) => Some(&mut self.buckets[i].slot),
            Err(_) => None,
        }
    }

    /// Sets `addr`'s slot; returns the previous one.
    #[inline(always)]
    fn insert(&mut self, addr: u64, slot: u32) -> Option<u32> {
        debug_assert_ne!(addr, 0);
        match self.find(addr) {
            Ok(i) => Some(std::mem::replace(&mut self.buckets[i].slot, slot)),
            Err(i) => {
                self.buckets[i] = Bucket { addr, slot };
                self.len += 1;
                if self.len * 2 > self.buckets.len() {
                    self.grow();
                }
                None
            }
        }
    }

    #[cold]
    fn grow(&mut self) {
        let bits = 64 - self.shift + 1;
        let old = std::mem::replace(self, AddrMap::with_capacity_log2(bits));
        let mask = self.buckets.len() - 1;
        for b in old.buckets.into_iter().filter(|b| b.addr != 0) {
            let mut i = self.home(b.addr);
            while self.buckets[i].addr != 0 {
                i = (i + 1) & mask;
            }
            self.buckets[i] = b;
        }
        self.len = old.len;
    }
}

/// "No replay thread yet" in `last`.
const NONE: u16 = u16::MAX;
/// A replay thread keeps at most this many free slots; beyond, its oldest half goes to the pool.
const LOCAL_MAX: usize = 512;

#[derive(Clone, Copy)]
struct Obj {
    slot: u32,
    size: u64,
}

/// What preprocessing keeps per slot, in one 16-byte record so that an op touches one cache
/// line of it (a free's slot is old, so usually not in cache). (Prefetching the records of a
/// batch's frees, after a read-only lookup, moved the time from here to that lookup: no gain.)
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct SlotMeta {
    /// The requested size of the object in it.
    size: u64,
    /// Transitions so far (mod 2^16).
    generation: u16,
    /// The replay thread of the last transition ([`NONE`] before the first).
    last: u16,
}

/// Preprocessing's address table: the address map, the slots and their free lists. An object
/// is its slot (with its size, which is also in the slot's [`SlotMeta`]).
struct Slots {
    map: AddrMap,
    slots: Vec<SlotMeta>,
    local: Vec<Vec<u32>>,
    pool: VecDeque<u32>,
    /// The replay thread of the event being applied (the one a new object's slot comes from).
    t: usize,
}

impl Slots {
    #[inline(always)]
    fn take_slot(&mut self) -> u32 {
        if let Some(s) = self.local[self.t].pop() {
            return s;
        }
        if let Some(s) = self.pool.pop_front() {
            return s;
        }
        let s = self.slots.len() as u32;
        self.slots.push(SlotMeta {
            size: 0,
            generation: 0,
            last: NONE,
        });
        s
    }

    #[inline(always)]
    fn give_slot(&mut self, t: usize, slot: u32) {
        let l = &mut self.local[t];
        l.push(slot);
        if l.len() > LOCAL_MAX {
            self.pool.extend(l.drain(..LOCAL_MAX / 2));
        }
    }

    #[inline(always)]
    fn obj(&self, slot: u32) -> Obj {
        Obj {
            slot,
            size: self.slots[slot as usize].size,
        }
    }

    /// Points `addr` at `slot`; returns the object that was live there.
    #[inline(always)]
    fn place(&mut self, addr: u64, slot: u32, size: u64) -> (Obj, Option<Obj>) {
        let prev = self
            .map
            .insert(addr, slot)
            .filter(|p| *p != FREED)
            .map(|p| self.obj(p));
        self.slots[slot as usize].size = size;
        (Obj { slot, size }, prev)
    }
}

impl AddrTable for Slots {
    type Obj = Obj;

    #[inline(always)]
    fn size(&self, obj: &Obj) -> u64 {
        obj.size
    }

    #[inline(always)]
    fn get(&mut self, addr: u64) -> Addr<Obj> {
        match self.map.get_mut(addr) {
            Some(&mut FREED) => Addr::Freed,
            Some(&mut slot) => Addr::Live(self.obj(slot)),
            None => Addr::Unknown,
        }
    }

    #[inline(always)]
    fn free(&mut self, addr: u64) -> Addr<Obj> {
        match self.map.get_mut(addr) {
            Some(&mut FREED) => Addr::Freed,
            Some(slot) => {
                let s = std::mem::replace(slot, FREED);
                Addr::Live(self.obj(s))
            }
            None => Addr::Unknown,
        }
    }

    #[inline(always)]
    fn alloc(&mut self, addr: u64, size: u64) -> (Obj, Option<Obj>) {
        let slot = self.take_slot();
        self.place(addr, slot, size)
    }

    /// Moved: the object keeps its slot under its new address (the replay's realloc frees the
    /// old block and makes the new one in one transition).
    #[inline(always)]
    fn relocate(&mut self, obj: Obj, to: u64, size: u64) -> (Obj, Option<Obj>) {
        self.place(to, obj.slot, size)
    }

    #[inline(always)]
    fn resize(&mut self, _: u64, obj: Obj, size: u64) -> Obj {
        self.slots[obj.slot as usize].size = size;
        Obj { size, ..obj }
    }
}

struct Builder {
    table: Slots,
    live: LiveSet,
    arrays: Vec<ThreadArrays>,
    /// Per replay thread: cumulative live-bytes change.
    cum: Vec<i64>,
    /// Per replay thread: the largest `cum` since its last checkpoint.
    chunk_max: Vec<i64>,
    paced: bool,
    /// Keep each op's global position (ordered replays).
    ordered: bool,
    /// Ops emitted so far, all threads.
    seq: u64,
    /// The replay thread of the last op emitted.
    last_op: Option<usize>,
    /// Ops between checkpoints.
    every: usize,
    ts: u64,
    meta: PlanMeta,
}

impl Builder {
    /// Appends an op to replay thread `t`: a transition of `slot` (unless `free(NULL)`) that
    /// changes live bytes by `delta`.
    #[inline(always)]
    fn emit(&mut self, t: usize, kind: u8, slot: u32, size: u64, align_log2: u8, delta: i64) {
        let allocates = kind <= op::REALLOC;
        let mut o = Op {
            size: if !allocates {
                0
            } else if size >= BIG as u64 {
                self.arrays[t].big.push(size);
                BIG
            } else {
                size as u32
            },
            slot,
            kind,
            align_log2,
            generation: 0,
        };
        if kind != op::FREE_NULL {
            let s = slot as usize;
            let m = &mut self.table.slots[s];
            o.generation = m.generation;
            let last = m.last;
            if last != NONE && last as usize != t {
                o.kind |= op::WAIT;
                self.meta.waiting_ops += 1;
            }
            m.generation = o.generation.wrapping_add(1);
            m.last = t as u16;
        }
        self.meta.ops_by_class[OpClass::of(kind) as usize] += 1;
        if allocates {
            self.meta.max_request = self.meta.max_request.max(size);
        }
        self.cum[t] += delta;
        self.chunk_max[t] = self.chunk_max[t].max(self.cum[t]);
        self.last_op = Some(t);
        let a = &mut self.arrays[t];
        a.ops.push(o);
        if self.paced {
            a.ts.push(self.ts);
        }
        if self.ordered {
            a.seq.push(self.seq);
        }
        self.seq += 1;
        if a.ops.len().is_multiple_of(self.every) {
            self.checkpoint(t);
        }
    }

    /// Closes replay thread `t`'s checkpoint period: its cumulative live bytes and the
    /// period's largest rise above its start.
    fn checkpoint(&mut self, t: usize) {
        let a = &mut self.arrays[t];
        let prev = a.checkpoints.last().copied().unwrap_or(0);
        a.checkpoints.push(self.cum[t]);
        a.rise.push(self.chunk_max[t] - prev);
        self.chunk_max[t] = self.cum[t];
    }

    /// An object the trace lost the free of (an inversion) is freed first.
    #[inline(always)]
    fn drop_object(&mut self, t: usize, dropped: Option<Gone<Obj>>) {
        if let Some(p) = dropped {
            self.emit(t, op::DROP, p.obj.slot, p.size, 0, -(p.size as i64));
            self.table.give_slot(t, p.obj.slot);
        }
    }

    fn feed(&mut self, t: usize, r: &Record) {
        self.table.t = t;
        match self.live.apply(&mut self.table, &r.event, r.ts) {
            Transition::Marker => self.meta.markers += 1,
            // Counted in `live`; nothing to replay.
            Transition::Failed | Transition::Skipped(_) => {}
            Transition::FreeNull => self.emit(t, op::FREE_NULL, 0, 0, 0, 0),
            Transition::Free(g) => {
                let kind = match r.event {
                    Event::Realloc { .. } => op::REALLOC_FREE,
                    _ => op::FREE,
                };
                self.emit(t, kind, g.obj.slot, g.size, 0, -(g.size as i64));
                self.table.give_slot(t, g.obj.slot);
            }
            Transition::Alloc {
                obj, size, dropped, ..
            } => {
                self.drop_object(t, dropped);
                let (kind, call, align_log2) = match r.event {
                    Event::Calloc { .. } => (op::CALLOC, size, 0),
                    Event::Aligned { func, align, .. } => {
                        // glibc rounds a memalign alignment up to a power of two; valid
                        // requests of the other functions already are one.
                        let a = align.clamp(1, 1 << 40).next_power_of_two();
                        let call = if func == AlignedFn::Pvalloc {
                            size.max(1).div_ceil(a) * a
                        } else {
                            size
                        };
                        (op::ALIGNED, call, a.trailing_zeros() as u8)
                    }
                    Event::Realloc { .. } => (op::REALLOC, size, 0),
                    _ => (op::MALLOC, size, 0),
                };
                self.emit(t, kind, obj.slot, call, align_log2, size as i64);
            }
            Transition::Resize {
                obj,
                old_size,
                size,
            } => self.emit(
                t,
                op::REALLOC,
                obj.slot,
                size,
                0,
                size as i64 - old_size as i64,
            ),
            Transition::Move {
                old,
                obj,
                size,
                dropped,
            } => {
                self.drop_object(t, dropped);
                self.emit(
                    t,
                    op::REALLOC,
                    obj.slot,
                    size,
                    0,
                    size as i64 - old.size as i64,
                );
            }
        }
        if self.live.peaked() {
            self.meta.peak_at = Some((t as u32, self.arrays[t].ops.len() as u64));
            self.meta.peak_at_cum = self.cum[t];
        }
    }
}

/// Where each traced thread starts and ends in the trace's global order (event positions).
#[derive(Clone, Copy, Default)]
struct Life {
    /// Position of its first event (its `thread start` if it has one).
    first: Option<u64>,
    /// Position of its last event.
    last: u64,
    /// Its first event was a `thread start`: replay (op thread and count) of the op before.
    started: Option<Option<(u32, u64)>>,
    exited: bool,
}

/// Thread lifetimes as the trace shows them, by traced thread id.
struct Lifetimes {
    lives: Vec<Life>,
}

impl Lifetimes {
    /// Record `pos` of traced thread `x`; `before` is the op that precedes it.
    #[inline(always)]
    fn see(&mut self, pos: u64, x: usize, e: &Event, before: Option<(u32, u64)>) {
        let Some(l) = self.lives.get_mut(x) else {
            return;
        };
        if l.first.is_none() {
            l.first = Some(pos);
            if matches!(e, Event::ThreadStart { .. }) {
                l.started = Some(before);
            }
        }
        l.last = pos;
        if matches!(e, Event::ThreadExit) {
            l.exited = true;
        }
    }

    /// Most threads alive at once: a thread lives from its first event to its last if it
    /// exited, else to the end.
    fn peak(&self) -> u32 {
        let mut edges: Vec<(u64, i32)> = Vec::new();
        for l in &self.lives {
            if let Some(f) = l.first {
                edges.push((f, 1));
                if l.exited {
                    // Gone after its last event (positions are distinct, so no tie with a
                    // start).
                    edges.push((l.last, -1));
                }
            }
        }
        edges.sort_unstable();
        let (mut live, mut peak) = (0i32, 0i32);
        for (_, d) in edges {
            live += d;
            peak = peak.max(live);
        }
        peak as u32
    }

    /// Fills in the start conditions, exit order, marks and thread figures of `meta`, whose
    /// replay thread `i` replays traced thread `ids[i]` alone (no folding).
    fn apply(&self, meta: &mut PlanMeta, ids: &[u32]) {
        let life = |i: usize| self.lives.get(ids[i] as usize).copied().unwrap_or_default();
        let mut exits: Vec<(u64, u32)> = (0..ids.len())
            .filter(|&i| life(i).exited && life(i).first.is_some())
            .map(|i| (life(i).last, i as u32))
            .collect();
        exits.sort_unstable();
        let mut spawn: Vec<(u64, u32)> = Vec::new();
        for i in 0..ids.len() {
            let l = life(i);
            let (Some(first), Some(after)) = (l.first, l.started) else {
                continue;
            };
            let gone = exits.partition_point(|e| e.0 < first) as u32;
            if after.is_some() || gone > 0 {
                meta.threads[i].start = Some(StartAfter { after, exits: gone });
                spawn.push((first, i as u32));
                if let Some((c, k)) = after {
                    let m = &mut meta.threads[c as usize].marks;
                    if m.last() != Some(&k) {
                        m.push(k);
                    }
                }
            }
        }
        // A thread's marks come in the order of the threads that wait for them, not of its
        // ops; the replay publishes at the next mark only, so an unsorted list skips marks and
        // a thread then runs past one into an op that waits for the thread its mark starts:
        // a deadlock (found on a recorded program starting workers in rounds).
        for t in &mut meta.threads {
            t.marks.sort_unstable();
            t.marks.dedup();
        }
        spawn.sort_unstable();
        meta.exit_order = exits.into_iter().map(|e| e.1).collect();
        meta.spawn_order = spawn.into_iter().map(|e| e.1).collect();
        // The replay's threads: those started at once, then each later one after the
        // exits it waits for are joined.
        let mut live = (ids.len() - meta.spawn_order.len()) as u32;
        let (mut peak, mut joined) = (live, 0u32);
        for &i in &meta.spawn_order {
            let need = meta.threads[i as usize].start.map_or(0, |s| s.exits);
            if need > joined {
                live -= need - joined;
                joined = need;
            }
            live += 1;
            peak = peak.max(live);
        }
        meta.replay_peak_threads = peak;
    }
}

/// Assigns traced threads (with their event counts) to `n` replay threads: identity when
/// there are enough, else largest first onto the least loaded.
fn fold(threads: &[(u32, u64)], n: usize) -> Vec<Vec<u32>> {
    if n >= threads.len() {
        return threads.iter().map(|&(t, _)| vec![t]).collect();
    }
    let mut order: Vec<_> = threads.to_vec();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut groups: Vec<(u64, Vec<u32>)> = vec![(0, Vec::new()); n];
    for (t, events) in order {
        let g = groups
            .iter_mut()
            .min_by_key(|g| g.0)
            .expect("at least one replay thread");
        g.0 += events;
        g.1.push(t);
    }
    groups
        .into_iter()
        .map(|(_, mut v)| {
            v.sort_unstable();
            v
        })
        .collect()
}

/// Preprocesses the trace read by `reader` into a plan. `progress` is called with the number
/// of events read so far, every 2^16 events.
pub fn preprocess(
    mut reader: MergedReader,
    opts: &PrepOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Plan, ReplayError> {
    let start = Instant::now();
    let total = reader.total_events();
    let threads: Vec<(u32, u64)> = reader
        .threads()
        .iter()
        .map(|t| (t.thread, t.events))
        .collect();
    let state_per_event = size_of::<Op>() as u64
        + if opts.pace { 8 } else { 0 }
        + match opts.order {
            Order::Deps => 0,
            Order::Window(_) => 8,
            Order::Strict => 24,
        }
        + 8;
    if let Some(avail) = opts.max_memory {
        let need = total * state_per_event;
        if need > avail {
            return Err(ReplayError::TooBig {
                what: format!(
                    "preprocessing {total} events needs about {} of op arrays and slot table",
                    crate::human::bytes(need)
                ),
                needed: need,
                available: avail,
            });
        }
    }
    let n = opts
        .threads
        .map_or(threads.len(), |n| (n as usize).min(threads.len()))
        .max(1);
    if n > u16::MAX as usize - 1 {
        return Err(ReplayError::BadInput(format!(
            "{n} replay threads: at most {} are supported",
            u16::MAX - 1
        )));
    }
    let groups = fold(&threads, n);
    let every = if opts.order == Order::Strict {
        1
    } else {
        checkpoint_for(total, n)
    };
    let max_id = threads.last().map_or(0, |t| t.0) as usize;
    let mut to_replay = vec![0u32; max_id + 1];
    for (i, g) in groups.iter().enumerate() {
        for &t in g {
            to_replay[t as usize] = i as u32;
        }
    }
    let events_of = |g: &[u32]| -> u64 {
        g.iter()
            .map(|t| threads.iter().find(|x| x.0 == *t).map_or(0, |x| x.1))
            .sum()
    };
    let mut b = Builder {
        table: Slots {
            map: AddrMap::with_capacity_log2(12),
            slots: Vec::new(),
            local: vec![Vec::new(); n],
            pool: VecDeque::new(),
            t: 0,
        },
        live: LiveSet::new(),
        arrays: groups
            .iter()
            .map(|g| {
                let e = events_of(g) as usize;
                ThreadArrays {
                    ops: Vec::with_capacity(e + 16),
                    big: Vec::new(),
                    checkpoints: {
                        let mut c = Vec::with_capacity(e / every as usize + 2);
                        c.push(0);
                        c
                    },
                    rise: {
                        let mut c = Vec::with_capacity(e / every as usize + 2);
                        c.push(0);
                        c
                    },
                    ts: if opts.pace {
                        Vec::with_capacity(e + 16)
                    } else {
                        Vec::new()
                    },
                    seq: if opts.order != Order::Deps {
                        Vec::with_capacity(e + 16)
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect(),
        cum: vec![0; n],
        chunk_max: vec![0; n],
        paced: opts.pace,
        ordered: opts.order != Order::Deps,
        seq: 0,
        last_op: None,
        every: every as usize,
        ts: 0,
        meta: PlanMeta {
            threads: groups
                .iter()
                .map(|g| ThreadLayout {
                    trace_threads: g.clone(),
                    ..Default::default()
                })
                .collect(),
            trace_threads: threads.len() as u32,
            checkpoint: every,
            paced: opts.pace,
            order: opts.order,
            ..Default::default()
        },
    };
    let mut lifetimes = Lifetimes {
        lives: vec![Life::default(); max_id + 1],
    };
    let mut first_ts = None;
    let mut events = 0u64;
    // Records go through in batches: the buckets of a whole batch are prefetched before the
    // first of them is looked up.
    const BATCH: usize = 32;
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        while batch.len() < BATCH {
            match reader.next_record()? {
                Some(r) => batch.push(r),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        for r in &batch {
            match r.event {
                Event::Free { ptr } => b.table.map.prefetch(ptr),
                Event::Realloc { old_ptr, ptr, .. } => {
                    b.table.map.prefetch(old_ptr);
                    b.table.map.prefetch(ptr);
                }
                e => b.table.map.prefetch(e.result_ptr().unwrap_or(0)),
            }
        }
        for r in &batch {
            events += 1;
            if events & 0xffff == 0 {
                progress(events);
            }
            if opts.pace {
                b.ts = r.ts - *first_ts.get_or_insert(r.ts);
            }
            let t = match to_replay.get(r.thread as usize) {
                Some(&t) => t as usize,
                None => 0,
            };
            let before = match r.event {
                Event::ThreadStart { .. } => {
                    b.last_op.map(|c| (c as u32, b.arrays[c].ops.len() as u64))
                }
                _ => None,
            };
            lifetimes.see(events, r.thread as usize, &r.event, before);
            b.feed(t, r);
        }
    }
    progress(events);
    for (i, (a, l)) in b
        .arrays
        .iter_mut()
        .zip(b.meta.threads.iter_mut())
        .enumerate()
    {
        if !a.ops.len().is_multiple_of(b.every) {
            let prev = a.checkpoints.last().copied().unwrap_or(0);
            a.checkpoints.push(b.cum[i]);
            a.rise.push(b.chunk_max[i] - prev);
        }
        l.ops = a.ops.len() as u64;
    }
    b.meta.trace_peak_threads = lifetimes.peak();
    b.meta.replay_peak_threads = n as u32;
    if groups.iter().all(|g| g.len() == 1) {
        let ids: Vec<u32> = groups.iter().map(|g| g[0]).collect();
        lifetimes.apply(&mut b.meta, &ids);
    }
    b.meta.events = events;
    b.meta.slots = b.table.slots.len() as u64;
    b.meta.final_live_bytes = b.live.bytes;
    b.meta.peak_live_bytes = b.live.peak_bytes;
    b.meta.peak_live_objects = b.live.peak_objects;
    b.meta.failed_in_trace = b.live.failed;
    b.meta.double_free = b.live.bad.double_free;
    b.meta.free_of_unknown = b.live.bad.free_of_unknown;
    b.meta.inversions = b.live.bad.alloc_of_live_address;
    b.meta.free_null_ops = b
        .arrays
        .iter()
        .flat_map(|a| a.ops.iter())
        .filter(|o| o.kind & op::KIND_MASK == op::FREE_NULL)
        .count() as u64;
    b.meta.preprocess_ns = start.elapsed().as_nanos() as u64;
    Ok(Plan {
        meta: b.meta,
        arrays: b.arrays,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn folding_balances_events() {
        let g = fold(&[(0, 100), (1, 60), (2, 50), (3, 10)], 2);
        assert_eq!(g, vec![vec![0, 3], vec![1, 2]]);
        let g = fold(&[(0, 1), (5, 1)], 4);
        assert_eq!(g, vec![vec![0], vec![5]]);
    }

    #[test]
    fn addr_map_finds_inserts_and_grows() {
        let mut m = AddrMap::with_capacity_log2(2);
        let mut model = HashMap::new();
        let mut x = 0x7f00_0000_1000u64;
        for i in 0..50_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let addr = (x >> 20 << 4) | 0x10;
            m.prefetch(addr);
            assert_eq!(m.insert(addr, i), model.insert(addr, i));
            if i % 3 == 0 {
                *m.get_mut(addr).unwrap() = FREED;
                model.insert(addr, FREED);
            }
        }
        assert_eq!(m.len, model.len());
        for (a, v) in &model {
            assert_eq!(m.get_mut(*a).copied(), Some(*v));
        }
        assert!(m.get_mut(0x1234_5670).is_none());
        // Aligned addresses spread over the buckets.
        let m = AddrMap::with_capacity_log2(10);
        let homes: std::collections::HashSet<usize> = (0..1024u64)
            .map(|i| m.home(0x7f00_0000_0000 + i * 16))
            .collect();
        assert!(homes.len() > 500, "{} distinct buckets", homes.len());
    }
}
