//! The replay plan: what preprocessing makes of a trace, and the only thing the timed loop reads.
//!
//! A plan is one array of 12-byte [`Op`]s per replay thread plus a slot count. Every traced
//! object lives in a *slot* (an index into the replay's slot table, one 8-byte word each: the
//! object's pointer in the low 48 bits, the slot's generation in the high 16). Each op that
//! changes a slot (an allocation into it, a realloc, a free) is that slot's next *transition*;
//! the op carries the generation it expects (the number of earlier transitions, mod 2^16) and
//! a WAIT flag when the previous transition belongs to another replay thread. A waiting op
//! spins until the slot shows its generation, so no object is freed or reallocated before the
//! allocation that made it, nor a slot reused before its previous object is freed — whichever
//! threads do them (contract 3). The generation cannot wrap ambiguously: a slot is at most one
//! pending transition per replay thread behind an op that waits on it.
//!
//! Beside the ops: per thread, the cumulative live-bytes change every checkpoint period (1 to
//! [`CHECKPOINT`] ops; the
//! sampler turns the threads' progress into live bytes without the loop counting anything), the
//! position of the op that reaches the trace's peak live bytes (the engine reads RSS there),
//! the largest rise of live bytes inside each checkpoint period (so the replay measures the
//! peak live bytes it really reaches from one shared update per period), for `--pace` only
//! each op's trace timestamp, and for an ordered replay ([`Order`]) each op's position in the
//! trace's global order.
//!
//! Thread lifetimes: a traced thread whose `thread start` comes after other threads' ops gets a
//! [`StartAfter`]: its replay thread is created when the op that preceded its start in the
//! trace is done and once every thread that had exited by then has really ended (joined), so a
//! replay never has more threads alive than the program had ([`PlanMeta::replay_peak_threads`]).
//!
//! The parent preprocesses once and writes the arrays into a memfd; each replay child maps it
//! read-only ([`MappedPlan`]), so preprocessing never runs in the measured process.

use serde::{Deserialize, Serialize};

use crate::mem::Mapping;

/// Most ops between two live-bytes checkpoints and two progress updates of a replay thread
/// (a plan picks fewer for a short trace, so its samples still see progress: see
/// [`checkpoint_for`]).
pub const CHECKPOINT: usize = 1024;

/// The checkpoint period for a trace of `events` events on `threads` threads: at least ~4096
/// checkpoints per thread (so a short trace of slow ops, as malloc-large's, still shows
/// progress in its samples), a power of two between 1 and [`CHECKPOINT`] ops.
pub fn checkpoint_for(events: u64, threads: usize) -> u64 {
    (events / (threads.max(1) as u64 * 4096))
        .next_power_of_two()
        .clamp(1, CHECKPOINT as u64)
}

/// Number of checkpoints of a thread with `ops` ops, one every `every` ops: one per started
/// period and one for the start.
pub fn checkpoints_len(ops: u64, every: u64) -> usize {
    ops.div_ceil(every.max(1)) as usize + 1
}

/// How a replay keeps the trace's interleaving (`--order`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Only the dependencies the trace implies (an object's allocation before its free, a
    /// slot's previous object before its next): threads run at their own pace.
    #[default]
    Deps,
    /// A thread runs an op only while at most `K` ops that precede it in the trace's global
    /// order are not done yet.
    Window(u64),
    /// The trace's global order exactly: one op at a time.
    Strict,
}

/// The window of `--order window` without a size, in ops (chosen by measuring: README.md).
pub const DEFAULT_WINDOW: u64 = 256;

impl Order {
    /// Parses `deps`, `strict`, `window` or `window:K`.
    pub fn parse(s: &str) -> Result<Order, String> {
        let s = s.trim();
        match s {
            "deps" => return Ok(Order::Deps),
            "strict" => return Ok(Order::Strict),
            "window" => return Ok(Order::Window(DEFAULT_WINDOW)),
            _ => {}
        }
        let k = s.strip_prefix("window:").ok_or_else(|| {
            format!("'{s}' is not an order: give deps, strict, window or window:K (K ops)")
        })?;
        match k.trim().parse::<u64>() {
            Ok(k) if k >= 1 => Ok(Order::Window(k)),
            _ => Err(format!(
                "'{s}': the window must be a number of ops of at least 1 (window:0 is strict)"
            )),
        }
    }

    /// The name used in results (`deps`, `window:K`, `strict`).
    pub fn name(self) -> String {
        match self {
            Order::Deps => "deps".into(),
            Order::Window(k) => format!("window:{k}"),
            Order::Strict => "strict".into(),
        }
    }

    /// The window in ops (0 for strict), or `None` when only dependencies are kept.
    pub fn window(self) -> Option<u64> {
        match self {
            Order::Deps => None,
            Order::Window(k) => Some(k),
            Order::Strict => Some(0),
        }
    }
}

/// When a replay thread whose traced thread started during the trace may be created.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StartAfter {
    /// Replay thread and its op count: the op that preceded the thread's start in the trace's
    /// global order (its creator, most likely) must be done.
    pub after: Option<(u32, u64)>,
    /// The first this many threads of [`PlanMeta::exit_order`] must have ended (joined).
    pub exits: u32,
}

/// One allocator call to replay (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Op {
    /// Bytes to ask for (allocations and realloc); [`BIG`] when the request does not fit in 32
    /// bits, and then the size is the thread's next entry of its big-sizes array. 0 for frees.
    pub size: u32,
    /// The object's slot (unused by [`op::FREE_NULL`]).
    pub slot: u32,
    /// Kind in the low nibble, [`op::WAIT`] flag in the high bit.
    pub kind: u8,
    /// log2 of the alignment ([`op::ALIGNED`] only).
    pub align_log2: u8,
    /// The slot's generation this op expects (transitions before it, mod 2^16).
    pub generation: u16,
}

const _: () = assert!(size_of::<Op>() == 12);

/// [`Op::size`] of a request of 4 GiB or more: its size is in the thread's big-sizes array.
pub const BIG: u32 = u32::MAX;

/// Op kinds and flags.
pub mod op {
    /// `malloc(size)` into a free slot.
    pub const MALLOC: u8 = 0;
    /// `calloc(1, size)` (the trace's `nmemb × size`) into a free slot.
    pub const CALLOC: u8 = 1;
    /// An aligned allocation (any of the aligned family) into a free slot.
    pub const ALIGNED: u8 = 2;
    /// `realloc(slot's pointer, size)`; a free slot holds NULL, which makes it `realloc(NULL, n)`.
    pub const REALLOC: u8 = 3;
    /// `free(slot's pointer)`.
    pub const FREE: u8 = 4;
    /// `free(NULL)`, as the program did.
    pub const FREE_NULL: u8 = 5;
    /// `realloc(p, 0)` that freed `p` in the trace: replayed as `free(p)` (allocators disagree on
    /// what `realloc(p, 0)` returns), counted as a realloc.
    pub const REALLOC_FREE: u8 = 6;
    /// Free of an object whose address the trace handed out again while it was live (an
    /// address-reuse inversion: its real free is missing from the trace). Counted as a free.
    pub const DROP: u8 = 7;
    /// Number of kinds.
    pub const KINDS: u8 = 8;
    /// Flag: the slot's previous transition is another replay thread's; wait for it.
    pub const WAIT: u8 = 0x80;
    /// Mask of the kind.
    pub const KIND_MASK: u8 = 0x0f;
}

/// The five op kinds results are reported by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpClass {
    Malloc = 0,
    Calloc = 1,
    Realloc = 2,
    Free = 3,
    Aligned = 4,
}

impl OpClass {
    /// All classes, in report order.
    pub const ALL: [OpClass; 5] = [
        OpClass::Malloc,
        OpClass::Calloc,
        OpClass::Realloc,
        OpClass::Free,
        OpClass::Aligned,
    ];

    /// The name used in tables and Parquet (`op` column).
    pub fn name(self) -> &'static str {
        match self {
            OpClass::Malloc => "malloc",
            OpClass::Calloc => "calloc",
            OpClass::Realloc => "realloc",
            OpClass::Free => "free",
            OpClass::Aligned => "aligned",
        }
    }

    /// The class an op kind is reported under.
    #[inline(always)]
    pub fn of(kind: u8) -> OpClass {
        match kind & op::KIND_MASK {
            op::MALLOC => OpClass::Malloc,
            op::CALLOC => OpClass::Calloc,
            op::ALIGNED => OpClass::Aligned,
            op::REALLOC | op::REALLOC_FREE => OpClass::Realloc,
            _ => OpClass::Free,
        }
    }
}

/// Counts by op class, in [`OpClass::ALL`] order.
pub type ClassCounts = [u64; 5];

/// Where one replay thread's arrays are in the plan file, and what they hold.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThreadLayout {
    /// Traced threads (small ids) folded into this replay thread.
    pub trace_threads: Vec<u32>,
    /// Number of ops.
    pub ops: u64,
    /// Byte offset of the op array.
    pub ops_offset: u64,
    /// Byte offset of the checkpoints ([`checkpoints_len`] i64 values: the thread's cumulative
    /// live-bytes change after `min(k × checkpoint, ops)` ops).
    pub checkpoints_offset: u64,
    /// Byte offset of the op timestamps (u64 ns since the trace's first event), with `--pace`.
    pub ts_offset: Option<u64>,
    /// Requests of 4 GiB or more, in op order (u64 bytes each).
    pub big: u64,
    /// Byte offset of those sizes.
    pub big_offset: u64,
    /// Byte offset of the rises ([`checkpoints_len`] i64 values: the largest rise of the
    /// thread's cumulative live bytes inside each checkpoint period, above its start; 0 for
    /// the first).
    pub rise_offset: u64,
    /// Byte offset of the ops' positions in the trace's global order (u64 each), when the
    /// plan is ordered.
    pub seq_offset: Option<u64>,
    /// When the thread is created: `None` at the start, with the others.
    pub start: Option<StartAfter>,
    /// Op counts at which the thread must publish its progress at once (another thread's
    /// start waits for it), ascending.
    pub marks: Vec<u64>,
}

/// Everything about a plan except its arrays: counts, sizes and where the arrays are.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PlanMeta {
    /// Per replay thread.
    pub threads: Vec<ThreadLayout>,
    /// Slots the replay needs (the slot table's length).
    pub slots: u64,
    /// Ops between two checkpoints ([`checkpoint_for`]).
    pub checkpoint: u64,
    /// Total length of the plan file, bytes.
    pub file_len: u64,
    /// Ops per class (what the replay will call).
    pub ops_by_class: ClassCounts,
    /// `free(NULL)` ops (inside the free count).
    pub free_null_ops: u64,
    /// Events read from the trace.
    pub events: u64,
    /// Thread start/exit and fork markers, and OS calls (format 1.2): not replayed.
    pub markers: u64,
    /// Traced threads.
    pub trace_threads: u32,
    /// Allocations that failed in the trace (NULL result): not replayed.
    pub failed_in_trace: u64,
    /// Frees/reallocs of a pointer the trace never returned (skipped).
    pub free_of_unknown: u64,
    /// Frees/reallocs of a pointer already freed (skipped).
    pub double_free: u64,
    /// Allocations that returned an address still live in the trace: the old object is freed
    /// first (a DROP op) and the new one gets its own slot.
    pub inversions: u64,
    /// Largest live bytes (requested sizes) in trace order, as `inspect` computes it.
    pub peak_live_bytes: u64,
    /// Live objects at that moment.
    pub peak_live_objects: u64,
    /// Live bytes after the last event.
    pub final_live_bytes: u64,
    /// Replay thread and op index just after the op that first reaches the peak.
    pub peak_at: Option<(u32, u64)>,
    /// That thread's cumulative live-bytes change just after that op (the replay adds the
    /// other threads' progress to it to know its live bytes at that moment).
    pub peak_at_cum: i64,
    /// Largest single request, bytes (the bump adapter sizes its region by it).
    pub max_request: u64,
    /// Ops with the WAIT flag (cross-thread dependencies).
    pub waiting_ops: u64,
    /// Whether op timestamps are in the plan (`--pace`).
    pub paced: bool,
    /// How the replay keeps the trace's interleaving; anything but `Deps` has the ops'
    /// global positions in the plan.
    pub order: Order,
    /// Replay threads that end during the trace, in the order their traced threads ended
    /// (their last event).
    pub exit_order: Vec<u32>,
    /// Replay threads with a [`StartAfter`], in the order their traced threads started.
    pub spawn_order: Vec<u32>,
    /// Most traced threads alive at once in the trace (from a thread's start, or first
    /// event, to its exit's last event; a thread without exit lives to the end).
    pub trace_peak_threads: u32,
    /// Most replay threads the replay has alive at once (its thread starts and joins follow
    /// the plan, so it is known in advance; equal to `trace_peak_threads` when every traced
    /// thread has its start and exit events and none is folded).
    pub replay_peak_threads: u32,
    /// Wall time of preprocessing, ns.
    pub preprocess_ns: u64,
}

impl PlanMeta {
    /// Ops in all threads.
    pub fn total_ops(&self) -> u64 {
        self.threads.iter().map(|t| t.ops).sum()
    }

    /// Bytes of replay state: op arrays, checkpoints, timestamps, big sizes and the slot table.
    pub fn state_bytes(&self) -> u64 {
        let ops = self.total_ops();
        let big: u64 = self.threads.iter().map(|t| t.big * 8).sum();
        let checkpoints: u64 = self
            .threads
            .iter()
            .map(|t| checkpoints_len(t.ops, self.checkpoint) as u64 * 8)
            .sum();
        ops * size_of::<Op>() as u64
            + checkpoints * 2
            + big
            + if self.paced { ops * 8 } else { 0 }
            + if self.order != Order::Deps {
                ops * 8
            } else {
                0
            }
            + self.slots * 8
    }

    /// Replay state per op.
    pub fn bytes_per_op(&self) -> f64 {
        self.state_bytes() as f64 / self.total_ops().max(1) as f64
    }

    /// Trace events skipped as inconsistent.
    pub fn skipped_inconsistent(&self) -> u64 {
        self.free_of_unknown + self.double_free
    }
}

/// A plan's arrays for one replay thread, borrowed from wherever they live.
#[derive(Clone, Copy, Debug)]
pub struct ThreadView<'a> {
    pub ops: &'a [Op],
    /// Sizes of the thread's [`BIG`] requests, in op order.
    pub big: &'a [u64],
    pub checkpoints: &'a [i64],
    /// Largest rise of live bytes inside each checkpoint period.
    pub rise: &'a [i64],
    pub ts: Option<&'a [u64]>,
    /// The ops' positions in the trace's global order (ordered plans).
    pub seq: Option<&'a [u64]>,
}

/// A plan as the engine reads it.
#[derive(Clone, Debug)]
pub struct PlanView<'a> {
    pub meta: &'a PlanMeta,
    pub threads: Vec<ThreadView<'a>>,
}

impl PlanView<'_> {
    /// Checks what the engine relies on without checking again: every op's slot is inside the
    /// slot table, kinds are known, array lengths match the layout.
    pub fn check(&self) -> Result<(), String> {
        for (i, t) in self.threads.iter().enumerate() {
            if t.checkpoints.len() != checkpoints_len(t.ops.len() as u64, self.meta.checkpoint) {
                return Err(format!("replay thread {i}: wrong number of checkpoints"));
            }
            if t.ts.is_some_and(|ts| ts.len() != t.ops.len()) {
                return Err(format!("replay thread {i}: wrong number of timestamps"));
            }
            if t.rise.len() != t.checkpoints.len() {
                return Err(format!("replay thread {i}: wrong number of rises"));
            }
            if (self.meta.order != Order::Deps) != t.seq.is_some()
                || t.seq.is_some_and(|s| s.len() != t.ops.len())
            {
                return Err(format!("replay thread {i}: wrong number of op positions"));
            }
            if let Some(l) = self.meta.threads.get(i)
                && (l.marks.iter().any(|m| *m > t.ops.len() as u64)
                    || !l.marks.is_sorted()
                    || l.start.is_some_and(|s| {
                        s.after.is_some_and(|(c, k)| {
                            c as usize >= self.threads.len()
                                || k > self.threads[c as usize].ops.len() as u64
                        }) || s.exits as usize > self.meta.exit_order.len()
                    }))
            {
                return Err(format!(
                    "replay thread {i}: start or marks out of range (or marks not ascending)"
                ));
            }
            let bigs = t
                .ops
                .iter()
                .filter(|o| o.size == BIG && o.kind & op::KIND_MASK <= op::REALLOC)
                .count();
            if bigs != t.big.len() {
                return Err(format!("replay thread {i}: wrong number of big sizes"));
            }
            if let Some(bad) = t.ops.iter().find(|o| {
                let k = o.kind & op::KIND_MASK;
                k >= op::KINDS || (k != op::FREE_NULL && o.slot as u64 >= self.meta.slots)
            }) {
                return Err(format!(
                    "replay thread {i}: op {bad:?} is outside the plan's {} slots or of no known kind",
                    self.meta.slots
                ));
            }
        }
        Ok(())
    }
}

/// Arrays of one replay thread, owned (as preprocessing builds them).
#[derive(Clone, Debug, Default)]
pub struct ThreadArrays {
    pub ops: Vec<Op>,
    pub big: Vec<u64>,
    pub checkpoints: Vec<i64>,
    pub rise: Vec<i64>,
    pub ts: Vec<u64>,
    pub seq: Vec<u64>,
}

/// A plan built in memory by [`crate::prep`].
#[derive(Debug)]
pub struct Plan {
    pub meta: PlanMeta,
    pub arrays: Vec<ThreadArrays>,
}

/// Arrays start on a cache line of their own (not a page: a trace of thousands of short
/// threads would make a plan of mostly padding).
fn align_array(n: u64) -> u64 {
    (n + 63) & !63
}

fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: `T` is plain data (Op, i64, u64) without padding that matters to the reader;
    // reading it as bytes is valid for its whole length.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

impl Plan {
    /// The plan as the engine reads it.
    pub fn view(&self) -> PlanView<'_> {
        PlanView {
            meta: &self.meta,
            threads: self
                .arrays
                .iter()
                .map(|a| ThreadView {
                    ops: &a.ops,
                    big: &a.big,
                    checkpoints: &a.checkpoints,
                    rise: &a.rise,
                    ts: self.meta.paced.then_some(&a.ts[..]),
                    seq: (self.meta.order != Order::Deps).then_some(&a.seq[..]),
                })
                .collect(),
        }
    }

    /// Fills in the file layout (offsets, length) of `meta`.
    fn lay_out(&mut self) {
        let mut off = 0u64;
        for (l, a) in self.meta.threads.iter_mut().zip(&self.arrays) {
            l.ops_offset = off;
            off = align_array(off + a.ops.len() as u64 * size_of::<Op>() as u64);
            l.big = a.big.len() as u64;
            l.big_offset = off;
            off = align_array(off + a.big.len() as u64 * 8);
            l.checkpoints_offset = off;
            off = align_array(off + a.checkpoints.len() as u64 * 8);
            l.rise_offset = off;
            off = align_array(off + a.rise.len() as u64 * 8);
            if self.meta.paced {
                l.ts_offset = Some(off);
                off = align_array(off + a.ts.len() as u64 * 8);
            }
            if self.meta.order != Order::Deps {
                l.seq_offset = Some(off);
                off = align_array(off + a.seq.len() as u64 * 8);
            }
        }
        self.meta.file_len = ((off + 4095) & !4095).max(4096);
    }

    /// Writes the arrays into a new memfd (inherited by children: no close-on-exec) and returns
    /// its descriptor; `meta` gets the layout.
    pub fn write_memfd(&mut self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::fd::FromRawFd;
        self.lay_out();
        // SAFETY: memfd_create with a static name; the new descriptor is owned below.
        let fd = unsafe { libc::memfd_create(c"alloclab-plan".as_ptr(), 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut f = std::fs::File::from(owned.try_clone()?);
        f.set_len(self.meta.file_len)?;
        for (l, a) in self.meta.threads.iter().zip(&self.arrays) {
            f.seek(SeekFrom::Start(l.ops_offset))?;
            f.write_all(bytes_of(&a.ops))?;
            f.seek(SeekFrom::Start(l.big_offset))?;
            f.write_all(bytes_of(&a.big))?;
            f.seek(SeekFrom::Start(l.checkpoints_offset))?;
            f.write_all(bytes_of(&a.checkpoints))?;
            f.seek(SeekFrom::Start(l.rise_offset))?;
            f.write_all(bytes_of(&a.rise))?;
            if let Some(o) = l.ts_offset {
                f.seek(SeekFrom::Start(o))?;
                f.write_all(bytes_of(&a.ts))?;
            }
            if let Some(o) = l.seq_offset {
                f.seek(SeekFrom::Start(o))?;
                f.write_all(bytes_of(&a.seq))?;
            }
        }
        Ok(owned)
    }
}

/// A plan mapped from the parent's memfd in a replay child.
pub struct MappedPlan {
    pub meta: PlanMeta,
    map: Mapping,
}

impl MappedPlan {
    /// Maps `fd` (prefaulted) and checks it ([`PlanView::check`]).
    pub fn open(fd: i32, meta: PlanMeta) -> std::io::Result<MappedPlan> {
        let map = Mapping::file(fd, meta.file_len as usize)?;
        let p = MappedPlan { meta, map };
        p.view()
            .check()
            .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidData, m))?;
        Ok(p)
    }

    /// The plan as the engine reads it.
    pub fn view(&self) -> PlanView<'_> {
        PlanView {
            meta: &self.meta,
            threads: self
                .meta
                .threads
                .iter()
                .map(|l| ThreadView {
                    ops: self.map.slice(l.ops_offset as usize, l.ops as usize),
                    big: self.map.slice(l.big_offset as usize, l.big as usize),
                    checkpoints: self.map.slice(
                        l.checkpoints_offset as usize,
                        checkpoints_len(l.ops, self.meta.checkpoint),
                    ),
                    rise: self.map.slice(
                        l.rise_offset as usize,
                        checkpoints_len(l.ops, self.meta.checkpoint),
                    ),
                    ts: l
                        .ts_offset
                        .map(|o| self.map.slice(o as usize, l.ops as usize)),
                    seq: l
                        .seq_offset
                        .map(|o| self.map.slice(o as usize, l.ops as usize)),
                })
                .collect(),
        }
    }
}
