//! Events ⇄ the uncompressed payload of one frame.
//!
//! A frame's events are split into seven byte streams (columns), each compressing well on its
//! own terms, and concatenated behind a table of their lengths:
//!
//! | stream  | holds                                                               |
//! |---------|---------------------------------------------------------------------|
//! | `ops`   | one byte per event: kind (high nibble) and pointer mode (low; for an OS call, the call) |
//! | `ts`    | LEB128 quantum, then per event LEB128 (delta from previous) / quantum |
//! | `sizes` | LEB128 requested size (element size for calloc)                     |
//! | `refs`  | LEB128 back-references: "the object allocated *d* allocations ago"  |
//! | `ptrs`  | LEB128 zigzag delta of a pointer from the last raw pointer          |
//! | `aux`   | LEB128 calloc nmemb, alignment, tid, child pid, realloc's old mode, an OS call's six fields |
//! | `idx`   | one byte per deep bin hit: its depth                                |
//!
//! Pointers are what make traces big, so each is coded by the cheapest of:
//! * **ref** (frees, realloc's old pointer): the object was allocated earlier in this frame;
//!   store how many allocations ago.
//! * **bin** (allocation results): allocators keep per-size-class LIFO free lists (glibc's
//!   tcache and bins, every size-class allocator), so the block a malloc returns is very often
//!   one recently freed in the request's size class. Per class, the last [`BIN_DEPTH`] freed
//!   pointers are kept; a hit at depth < 8 costs 3 bits of the op byte. (A ring of recently
//!   freed pointers of any class was measured too: it saved 0.03 bytes/event once bins exist,
//!   for a 32-entry search per allocation, so it is not in the format.)
//! * **same** (realloc): resized in place.
//! * **raw**: zigzag delta from the last raw pointer; allocators carve neighbouring blocks, so
//!   deltas are small.
//!
//! Timestamps are divided by the frame's quantum — the greatest common divisor of its deltas —
//! so a clock read at µs resolution costs no more than its information.
//!
//! All this state is reset at each frame, so every frame decodes on its own. The encoder and
//! the decoder update it by the same rules (see FORMAT.md, which describes the same bytes for
//! readers in other languages).
//!
//! Speed (instructions per event are in the README): a varint is read with one 8-byte load
//! and written with one 4- or 8-byte store, with no branch per byte; the quantum is found, in
//! the same pass that codes the events, and divided out by multiplying with a modular inverse
//! instead of 64-bit divisions; the encoder's pointer table is sized by the pointers a frame
//! really has, is emptied by bumping a generation instead of clearing it, holds each live
//! object's size class (no side array), and is prefetched a few events ahead once it outgrows
//! the cache; the decoder writes events straight into the output's spare capacity.

use std::mem::MaybeUninit;

use crate::event::{AlignedFn, Event, Kind, Timed};
use crate::os::OsCall;

/// Pointer mode (low nibble of an op byte): the pointer is NULL.
pub(crate) const MODE_NULL: u8 = 0;
/// The pointer is a zigzag delta in `ptrs`.
pub(crate) const MODE_RAW: u8 = 1;
/// Realloc result equals the old pointer.
pub(crate) const MODE_SAME: u8 = 2;
/// The pointer is a back-reference in `refs` (consumed pointers only).
pub(crate) const MODE_REF: u8 = 3;
/// Allocation result from its size class's bin at the depth in `idx` (≥ 8).
pub(crate) const MODE_BIN_DEEP: u8 = 4;
/// Modes 8..=15: allocation result from its size class's bin at depth `mode - 8`.
pub(crate) const MODE_BIN: u8 = 8;

/// Freed pointers remembered per size class.
pub const BIN_DEPTH: usize = 32;
/// Number of size classes (see [`size_class`]).
const CLASSES: usize = 128;

/// Number of streams in a payload.
pub(crate) const STREAMS: usize = 7;
/// Bytes of the stream-length table at the start of a payload.
pub(crate) const TABLE_LEN: usize = STREAMS * 4;

const OPS: usize = 0;
const TS: usize = 1;
const SIZES: usize = 2;
const REFS: usize = 3;
const PTRS: usize = 4;
const AUX: usize = 5;
const IDX: usize = 6;

/// The size class of a request, for the bins: glibc's chunk size (`size + 8` rounded up to
/// 16, at least 32) in 16-byte steps up to 1040 bytes, then one class per power of two.
#[inline(always)]
pub(crate) fn size_class(size: u64) -> usize {
    let chunk = size.saturating_add(8 + 15) & !15;
    if chunk <= 1040 {
        (chunk.max(32) >> 4) as usize
    } else {
        // 1041..=2048 → 66, …, up to 2^64 → 119.
        (66 + (64 - (chunk - 1).leading_zeros()) as usize - 11).min(CLASSES - 1)
    }
}

/// What the encoder knows about a pointer of this frame, packed in a `u32`: a live object's
/// allocation number (it was allocated `seq`-th in the frame, bits 0..24) and size class (bits
/// 24..31), or `BINNED | class` (freed, and probably in the bin of `class`: a lookup that says
/// anything else is a miss without searching any bin). Only the class of an object's size is
/// ever needed again, so the table holds all the encoder knows about it.
const BINNED: u32 = 1 << 31;
/// Bits of a live object's allocation number.
const SEQ_BITS: u32 = 24;
const SEQ_MASK: u32 = (1 << SEQ_BITS) - 1;
/// Most events a frame may have for the encoder (allocation numbers fit [`SEQ_BITS`]); frames
/// are far smaller (`MAX_FRAME_EVENTS`).
const MAX_EVENTS: usize = 1 << SEQ_BITS;

#[inline(always)]
fn live_state(seq: u32, class: usize) -> u32 {
    seq | (class as u32) << SEQ_BITS
}

/// One entry of [`PtrTable`]: a slot is in use in the current frame iff its `generation` is
/// the table's.
#[derive(Clone, Copy, Default)]
struct Slot {
    key: u64,
    val: u32,
    generation: u32,
}

/// Slots of a new table (16 KiB); it doubles whenever it gets half full.
const TABLE_MIN: usize = 1024;

/// The encoder's map pointer → [`BINNED`]-packed state. Open addressing with linear probing,
/// never deleting within a frame (freed pointers stay, marked binned), so it needs no
/// tombstones; it doubles when half full, so it is sized by the pointers frames really have
/// (a churn frame of 256 Ki events has ~56 Ki, a program-like one ~4 Ki: 2 MiB and 128–512 KiB
/// of table, where a table sized by the event count took 6 MiB). A frame starts
/// by bumping the generation, which empties every slot without touching them. Cheaper than a
/// general hash map, which this hot path measured at 60–90 instructions per operation.
#[derive(Default)]
struct PtrTable {
    slots: Vec<Slot>,
    generation: u32,
    /// Keys in use in this frame.
    len: usize,
}

impl PtrTable {
    /// Empties the table.
    fn reset(&mut self) {
        if self.slots.is_empty() {
            self.slots = vec![Slot::default(); TABLE_MIN];
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Once per 2^32 frames: old generations would alias.
            self.slots.fill(Slot::default());
            self.generation = 1;
        }
        self.len = 0;
    }

    /// Where `key`'s probe sequence starts in a table of `mask + 1` slots. A folded multiply:
    /// every bit of the pointer reaches the low bits that pick the slot (a plain multiply
    /// keeps an aligned pointer's zero low bits).
    #[inline(always)]
    fn home(key: u64, mask: usize) -> usize {
        let p = (key as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((p as u64) ^ ((p >> 64) as u64)) as usize & mask
    }

    /// The slot of `key`: where it is, or the free slot where it belongs.
    #[inline(always)]
    fn slot(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = Self::home(key, mask);
        loop {
            let s = &self.slots[i];
            if s.generation != self.generation || s.key == key {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// The state in slot `i` (from [`slot`](Self::slot)), if it holds a key.
    #[inline(always)]
    fn at(&self, i: usize) -> Option<u32> {
        let s = &self.slots[i];
        (s.generation == self.generation).then_some(s.val)
    }

    /// Sets `key`'s state and returns the previous one.
    #[inline(always)]
    fn replace(&mut self, key: u64, val: u32) -> Option<u32> {
        let i = self.slot(key);
        let generation = self.generation;
        let s = &mut self.slots[i];
        if s.generation == generation {
            return Some(std::mem::replace(&mut s.val, val));
        }
        *s = Slot {
            key,
            val,
            generation,
        };
        self.len += 1;
        if self.len * 2 > self.slots.len() {
            self.grow();
        }
        None
    }

    /// Starts loading the slot where a lookup of `key` begins into the cache.
    #[inline(always)]
    fn prefetch(&self, key: u64) {
        let slot: *const Slot = &self.slots[Self::home(key, self.slots.len() - 1)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is only a hint to the cache: it has no architectural effect and
        // cannot fault, whatever the address (and this one is a live reference into `slots`).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(slot.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    /// Doubles the table, moving this frame's keys.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let size = 2 * self.slots.len();
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        let mask = size - 1;
        for s in old.iter().filter(|s| s.generation == self.generation) {
            let mut i = Self::home(s.key, mask);
            while self.slots[i].generation == self.generation {
                i = (i + 1) & mask;
            }
            self.slots[i] = *s;
        }
    }
}

/// Bytes of the varint of a value with `lz` leading zero bits (index 0..=64).
const VARINT_LEN: [u8; 65] = {
    let mut t = [0u8; 65];
    let mut lz = 0;
    while lz <= 64 {
        let bits = 64 - lz;
        t[lz] = if bits == 0 { 1 } else { bits.div_ceil(7) as u8 };
        lz += 1;
    }
    t
};

/// One stream being written: a buffer with room for everything the current block of events
/// can add (see [`MAX_EVENT_BYTES`]), and the write position. Writing needs no capacity check
/// or growth path; the slice's bounds check, which never fails, is one compare.
struct Sink<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Sink<'_> {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.pos] = b;
        self.pos += 1;
    }

    /// Appends the LEB128 varint of `v`. A value below 2^28 (sizes, references, most deltas)
    /// is spread into 7-bit groups with a few 32-bit shifts and written as one 4-byte store of
    /// which the varint's length is kept; up to 2^56 the same in 64 bits: no branch per byte.
    #[inline(always)]
    fn varint(&mut self, v: u64) {
        if v < 0x80 {
            return self.byte(v as u8);
        }
        let n = VARINT_LEN[v.leading_zeros() as usize] as usize;
        if v < 1 << 28 {
            // 14-bit halves into 16-bit lanes, then 7-bit groups into bytes; then the
            // continuation bits of all bytes but the last (n is 2..=4).
            let v = v as u32;
            let x = (v & 0x3fff) | ((v & 0x0fff_c000) << 2);
            let x = (x & 0x007f_007f) | ((x & 0x3f80_3f80) << 1);
            let x = x | (0x0080_8080u32 >> (32 - 8 * n));
            self.buf[self.pos..self.pos + 4].copy_from_slice(&x.to_le_bytes());
        } else if v < 1 << 56 {
            // The same in 64 bits (n is 5..=8).
            let x = (v & 0x0fff_ffff) | ((v & 0x00ff_ffff_f000_0000) << 4);
            let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x0fff_c000_0fff_c000) << 2);
            let x = (x & 0x007f_007f_007f_007f) | ((x & 0x3f80_3f80_3f80_3f80) << 1);
            let x = x | (0x0080_8080_8080_8080u64 >> (64 - 8 * n));
            self.buf[self.pos..self.pos + 8].copy_from_slice(&x.to_le_bytes());
        } else {
            return self.varint_long(v);
        }
        self.pos += n;
    }

    #[cold]
    #[inline(never)]
    fn varint_long(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }
}

#[inline(always)]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline(always)]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A timestamp quantum `q = 2^shift · m` (`m` odd) with what divides by it without a division:
/// `inv`, the inverse of `m` modulo 2^64, and `lim = ⌊(2^64 − 1) / m⌋`. For a multiple `x` of
/// `q`, `x / q = (x >> shift) · inv mod 2^64`; and any `x` is a multiple of `m` iff
/// `x · inv mod 2^64 ≤ lim` (Granlund and Montgomery, "Division by invariant integers using
/// multiplication", 1994, §9).
#[derive(Clone, Copy)]
struct Quantum {
    q: u64,
    shift: u32,
    low: u64,
    inv: u64,
    lim: u64,
}

impl Quantum {
    /// The state before any non-zero delta: nothing but 0 is a multiple.
    const NONE: Quantum = Quantum {
        q: 0,
        shift: 0,
        low: u64::MAX,
        inv: 0,
        lim: 0,
    };

    fn new(q: u64) -> Quantum {
        debug_assert!(q != 0);
        let shift = q.trailing_zeros();
        let m = q >> shift;
        // Newton's iteration doubles the correct low bits: 3 (any odd m is its own inverse
        // modulo 8), 6, 12, 24, 48, 96.
        let mut inv = m;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(inv)));
        }
        debug_assert_eq!(m.wrapping_mul(inv), 1);
        Quantum {
            q,
            shift,
            low: (1u64 << shift) - 1,
            inv,
            lim: u64::MAX / m,
        }
    }

    #[inline(always)]
    fn divides(&self, x: u64) -> bool {
        x & self.low == 0 && (x >> self.shift).wrapping_mul(self.inv) <= self.lim
    }

    /// `x / q`, for a multiple `x` of `q`.
    #[inline(always)]
    fn div_exact(&self, x: u64) -> u64 {
        (x >> self.shift).wrapping_mul(self.inv)
    }

    /// Makes the quantum divide `dt` too: the gcd of the deltas so far. A delta the quantum
    /// divides (once it is 1, all of them) costs a shift, a multiply and two compares.
    #[inline(always)]
    fn include(&mut self, dt: u64) {
        if !self.divides(dt) {
            *self = Quantum::new(gcd(self.q, dt));
        }
    }
}

fn backwards(i: usize, ts: u64, prev: u64) -> String {
    format!(
        "event {i}: timestamp {ts} is earlier than the previous one ({prev}); a thread's \
         timestamps must not go backwards"
    )
}

/// The pointer-prediction state both sides keep: per size class, a circular buffer of the
/// last [`BIN_DEPTH`] freed pointers whose size the frame knows; and the last raw pointer.
struct Predictor {
    /// Per class: the entry at depth `d` (0 = newest) is at index `(head + d) % BIN_DEPTH`.
    bins: Box<[[u64; BIN_DEPTH]; CLASSES]>,
    /// Per class: index of the newest entry.
    heads: [u8; CLASSES],
    /// Per class: entries held (≤ BIN_DEPTH).
    lens: [u8; CLASSES],
    last_raw: u64,
}

const MASK: usize = BIN_DEPTH - 1;

impl Default for Predictor {
    fn default() -> Self {
        Predictor {
            bins: Box::new([[0; BIN_DEPTH]; CLASSES]),
            heads: [0; CLASSES],
            lens: [0; CLASSES],
            last_raw: 0,
        }
    }
}

impl Predictor {
    fn reset(&mut self) {
        self.heads = [0; CLASSES];
        self.lens = [0; CLASSES];
        self.last_raw = 0;
    }

    /// A pointer of `size` bytes (known to the frame) was freed: it becomes the newest entry of
    /// its class's bin (a full bin loses its oldest).
    #[inline(always)]
    fn freed(&mut self, ptr: u64, size: u64) {
        self.push(ptr, size_class(size));
    }

    /// `ptr` becomes the newest entry of the bin of class `c` (a full bin loses its oldest).
    #[inline(always)]
    fn push(&mut self, ptr: u64, c: usize) {
        let h = (self.heads[c] as usize).wrapping_sub(1) & MASK;
        self.bins[c][h] = ptr;
        self.heads[c] = h as u8;
        self.lens[c] = (self.lens[c] + 1).min(BIN_DEPTH as u8);
    }

    /// Removes the entry at `depth` (0 = newest, `depth < len`) of class `c`, moving the newer
    /// ones down.
    #[inline(always)]
    fn remove(&mut self, c: usize, depth: usize) -> u64 {
        let h = self.heads[c] as usize;
        let bin = &mut self.bins[c];
        let mut pos = (h + depth) & MASK;
        let p = bin[pos];
        for _ in 0..depth {
            let newer = pos.wrapping_sub(1) & MASK;
            bin[pos] = bin[newer];
            pos = newer;
        }
        self.heads[c] = ((h + 1) & MASK) as u8;
        self.lens[c] -= 1;
        p
    }

    /// Finds `ptr` in the bin of class `c` (newest first); removes it and returns its depth.
    #[inline(always)]
    fn take_bin(&mut self, c: usize, ptr: u64) -> Option<usize> {
        let h = self.heads[c] as usize;
        let bin = &self.bins[c];
        let depth = (0..self.lens[c] as usize).find(|&d| bin[(h + d) & MASK] == ptr)?;
        self.remove(c, depth);
        Some(depth)
    }

    /// The pointer at `depth` in the bin of `size`'s class, removed.
    #[inline(always)]
    fn pop_bin(&mut self, size: u64, depth: usize) -> Result<u64, Bad> {
        let c = size_class(size);
        if depth >= self.lens[c] as usize {
            return Err(Bad::BinDepth {
                depth: depth as u8,
                class: c as u8,
                len: self.lens[c],
            });
        }
        Ok(self.remove(c, depth))
    }
}

/// The most bytes one event adds to each stream (`ptrs`: a realloc's two raw pointers).
const MAX_EVENT_BYTES: [usize; STREAMS] = [1, 10, 10, 10, 20, 60, 1];
/// Events encoded between two checks that every stream has room for them.
const BLOCK: usize = 256;
/// How many events ahead the encoder prefetches the pointer-table slots of an event's pointers
/// (a churn-like frame's table outgrows the L2 cache; misses on it were ~40 % of encode time).
const PREFETCH: usize = 16;

/// Encodes frames. Keeps its buffers between frames so steady-state encoding does not allocate.
#[derive(Default)]
pub struct PayloadEncoder {
    /// Per stream, the output buffer. Kept at the largest length a frame needed (the bytes past
    /// a frame's own are scratch), so it is zero-filled only when it grows.
    bufs: [Vec<u8>; STREAMS],
    /// Pointers of this frame: live (allocation number, class) or binned (class).
    live: PtrTable,
    pred: Predictor,
    /// The last frame's quantum (0 before the first): the guess this frame's timestamps are
    /// divided by while they are coded, which is right unless the clock's resolution changed.
    last_quantum: u64,
}

/// Pointer-table size (slots) from which its slots are prefetched: lookups land anywhere in the
/// table, and from 1 MiB (2^16 slots) it no longer stays in the L2 cache with everything else.
/// A smaller table is cache-resident: prefetching it costs ~25 instructions per event for
/// nothing.
const PREFETCH_SLOTS: usize = 1 << 16;

impl PayloadEncoder {
    /// A new encoder.
    pub fn new() -> PayloadEncoder {
        PayloadEncoder::default()
    }

    /// Encodes `events` (timestamps non-decreasing, the first one being the frame's base) into
    /// `out` (cleared first). Returns an error message if the timestamps go backwards.
    ///
    /// One pass over the events codes everything; the timestamps' quantum (the gcd of their
    /// deltas) is found on the way, and the deltas are divided by the last frame's quantum
    /// meanwhile. Only if this frame's turns out different is the `ts` stream coded again.
    pub fn encode(&mut self, events: &[Timed], out: &mut Vec<u8>) -> Result<(), String> {
        if events.len() > MAX_EVENTS {
            return Err(format!(
                "a frame holds at most {MAX_EVENTS} events, not {}",
                events.len()
            ));
        }
        self.live.reset();
        self.pred.reset();
        let mut allocs = 0;
        let first = events.first().map_or(0, |e| e.ts);
        let guess = Quantum::new(self.last_quantum.max(1));
        let mut quantum = Quantum::NONE;
        let mut pos = [0usize; STREAMS];
        let mut prev = first;
        let mut block_start = 0;
        loop {
            let block = &events[block_start..(block_start + BLOCK).min(events.len())];
            // Room for the block (and, in the first, the quantum that leads `ts`).
            for (s, buf) in self.bufs.iter_mut().enumerate() {
                let need = pos[s] + block.len() * MAX_EVENT_BYTES[s] + 16;
                if buf.len() < need {
                    let len = need.max(2 * buf.len());
                    buf.resize(len, 0);
                }
            }
            let [ops, ts, sizes, refs, ptrs, aux, idx] = &mut self.bufs;
            fn sink(buf: &mut [u8], pos: usize) -> Sink<'_> {
                Sink { buf, pos }
            }
            let mut cx = Encoding {
                ops: sink(ops, pos[OPS]),
                ts: sink(ts, pos[TS]),
                sizes: sink(sizes, pos[SIZES]),
                refs: sink(refs, pos[REFS]),
                ptrs: sink(ptrs, pos[PTRS]),
                aux: sink(aux, pos[AUX]),
                idx: sink(idx, pos[IDX]),
                live: &mut self.live,
                allocs,
                pred: &mut self.pred,
            };
            if block_start == 0 {
                cx.ts.varint(guess.q);
            }
            let coded = if cx.live.slots.len() >= PREFETCH_SLOTS {
                cx.block::<true>(
                    events,
                    block_start,
                    block.len(),
                    &guess,
                    &mut quantum,
                    &mut prev,
                )
            } else {
                cx.block::<false>(
                    events,
                    block_start,
                    block.len(),
                    &guess,
                    &mut quantum,
                    &mut prev,
                )
            };
            pos = [
                cx.ops.pos,
                cx.ts.pos,
                cx.sizes.pos,
                cx.refs.pos,
                cx.ptrs.pos,
                cx.aux.pos,
                cx.idx.pos,
            ];
            allocs = cx.allocs;
            coded?;
            block_start += block.len();
            if block_start >= events.len() {
                break;
            }
        }
        if quantum.q == 0 {
            quantum = Quantum::new(1);
        }
        if quantum.q != guess.q {
            pos[TS] = self.recode_ts(events, &quantum);
        }
        self.last_quantum = quantum.q;
        out.clear();
        out.reserve(TABLE_LEN + pos.iter().sum::<usize>());
        for len in pos {
            out.extend_from_slice(&(len as u32).to_le_bytes());
        }
        for (buf, len) in self.bufs.iter().zip(pos) {
            out.extend_from_slice(&buf[..len]);
        }
        Ok(())
    }

    /// Codes the `ts` stream again with `quantum` (it divides every delta); returns its length.
    #[cold]
    #[inline(never)]
    fn recode_ts(&mut self, events: &[Timed], quantum: &Quantum) -> usize {
        let buf = &mut self.bufs[TS];
        let need = (events.len() + 1) * MAX_EVENT_BYTES[TS] + 16;
        if buf.len() < need {
            buf.resize(need, 0);
        }
        let mut ts = Sink { buf, pos: 0 };
        ts.varint(quantum.q);
        let mut prev = events.first().map_or(0, |e| e.ts);
        for e in events {
            ts.varint(quantum.div_exact(e.ts - prev));
            prev = e.ts;
        }
        ts.pos
    }
}

/// The encoder's state while it codes one block of events: the streams' sinks and the frame's
/// pointer state.
struct Encoding<'a> {
    ops: Sink<'a>,
    ts: Sink<'a>,
    sizes: Sink<'a>,
    refs: Sink<'a>,
    ptrs: Sink<'a>,
    aux: Sink<'a>,
    idx: Sink<'a>,
    live: &'a mut PtrTable,
    /// Allocations made in this frame so far.
    allocs: u32,
    pred: &'a mut Predictor,
}

impl Encoding<'_> {
    /// Codes the `len` events of `all` from `start`; their timestamp deltas are divided by
    /// `guess` and go into `quantum`. With `PF`, the table slots of the event
    /// [`PREFETCH`] places ahead are loaded meanwhile.
    #[inline(always)]
    fn block<const PF: bool>(
        &mut self,
        all: &[Timed],
        start: usize,
        len: usize,
        guess: &Quantum,
        quantum: &mut Quantum,
        prev: &mut u64,
    ) -> Result<(), String> {
        for (i, e) in all[start..start + len].iter().enumerate() {
            if PF && let Some(ahead) = all.get(start + i + PREFETCH) {
                self.prefetch(&ahead.event);
            }
            let Some(dt) = e.ts.checked_sub(*prev) else {
                return Err(backwards(start + i, e.ts, *prev));
            };
            *prev = e.ts;
            quantum.include(dt);
            self.ts.varint(guess.div_exact(dt));
            let op = self.event(&e.event);
            self.ops.byte(op);
        }
        Ok(())
    }

    /// Starts loading the table slots `ev`'s pointers will be looked up in.
    #[inline(always)]
    fn prefetch(&self, ev: &Event) {
        match *ev {
            Event::Malloc { ptr, .. }
            | Event::Free { ptr }
            | Event::Calloc { ptr, .. }
            | Event::Aligned { ptr, .. } => self.live.prefetch(ptr),
            Event::Realloc { old_ptr, ptr, .. } => {
                self.live.prefetch(old_ptr);
                self.live.prefetch(ptr);
            }
            _ => {}
        }
    }

    /// Codes one event's fields; returns its op byte.
    #[inline(always)]
    fn event(&mut self, ev: &Event) -> u8 {
        let (kind, mode) = match *ev {
            Event::Malloc { size, ptr } => {
                self.sizes.varint(size);
                (Kind::Malloc, self.produced(ptr, size))
            }
            Event::Free { ptr } => (Kind::Free, self.consumed(ptr, true).0),
            Event::Calloc { nmemb, size, ptr } => {
                self.sizes.varint(size);
                self.aux.varint(nmemb);
                (Kind::Calloc, self.produced(ptr, nmemb.saturating_mul(size)))
            }
            Event::Aligned {
                func,
                align,
                size,
                ptr,
            } => {
                self.sizes.varint(size);
                self.aux.varint(align);
                let kind = Kind::ALL[Kind::PosixMemalign as usize + func as usize];
                (kind, self.produced(ptr, size))
            }
            Event::Realloc { old_ptr, size, ptr } => {
                (Kind::Realloc, self.realloc(old_ptr, size, ptr))
            }
            Event::ThreadStart { os_tid } => {
                self.aux.varint(os_tid as u64);
                (Kind::ThreadStart, MODE_NULL)
            }
            Event::ThreadExit => (Kind::ThreadExit, MODE_NULL),
            Event::Fork { child_pid } => {
                self.aux.varint(child_pid as u64);
                (Kind::Fork, MODE_NULL)
            }
            // Rare (an OS call costs microseconds): plain varints, no pointer state.
            Event::Os {
                call,
                prot,
                err,
                arg,
                addr,
                len,
                result,
            } => {
                for v in [addr, len, result, arg as u64, prot as u64, err as u64] {
                    self.aux.varint(v);
                }
                (Kind::Os, call as u8)
            }
        };
        (kind as u8) << 4 | mode
    }

    /// Codes a realloc's fields; returns the result's mode.
    #[inline(always)]
    fn realloc(&mut self, old_ptr: u64, size: u64, ptr: u64) -> u8 {
        self.sizes.varint(size);
        // The old block is gone when the call moved it, or freed it (size 0); it goes into its
        // bin only after the result is coded, as the decoder does.
        let frees = old_ptr != 0 && ptr != old_ptr && (ptr != 0 || size == 0);
        let (old_mode, old_class) = self.consumed(old_ptr, false);
        self.aux.varint(old_mode as u64);
        let mode = if ptr != 0 && ptr == old_ptr {
            let i = self.live.slot(ptr);
            if let Some(v) = self.live.at(i).filter(|v| v & BINNED == 0) {
                self.live.slots[i].val = live_state(v & SEQ_MASK, size_class(size));
            }
            MODE_SAME
        } else {
            self.produced(ptr, size)
        };
        if frees && let Some(class) = old_class {
            self.pred.push(old_ptr, class);
            self.live.replace(old_ptr, BINNED | class as u32);
        }
        mode
    }

    /// Codes a pointer the call consumed (free, realloc's input); returns its mode and, when
    /// the object was allocated in this frame, its size class. With `frees`, a frame-known
    /// object goes into its class's bin (one hash lookup does both).
    #[inline(always)]
    fn consumed(&mut self, ptr: u64, frees: bool) -> (u8, Option<usize>) {
        if ptr == 0 {
            return (MODE_NULL, None);
        }
        let i = self.live.slot(ptr);
        match self.live.at(i) {
            Some(v) if v & BINNED == 0 => {
                let class = (v >> SEQ_BITS) as usize;
                self.refs.varint((self.allocs - 1 - (v & SEQ_MASK)) as u64);
                if frees {
                    // Pushed-out bin entries keep a stale binned mark: a later lookup then
                    // searches one bin in vain, which costs less than removing them here.
                    self.pred.push(ptr, class);
                    self.live.slots[i].val = BINNED | class as u32;
                }
                (MODE_REF, Some(class))
            }
            _ => (self.raw(ptr), None),
        }
    }

    /// Codes a pointer an allocation of `size` bytes returned and returns its mode; remembers
    /// it as live.
    #[inline(always)]
    fn produced(&mut self, ptr: u64, size: u64) -> u8 {
        if ptr == 0 {
            return MODE_NULL;
        }
        let class = size_class(size);
        let seq = self.allocs;
        self.allocs += 1;
        let hit = match self.live.replace(ptr, live_state(seq, class)) {
            Some(v) if v == BINNED | class as u32 => self.pred.take_bin(class, ptr),
            _ => None,
        };
        match hit {
            Some(depth) if depth < 8 => MODE_BIN + depth as u8,
            Some(depth) => {
                self.idx.byte(depth as u8);
                MODE_BIN_DEEP
            }
            None => self.raw(ptr),
        }
    }

    #[inline(always)]
    fn raw(&mut self, ptr: u64) -> u8 {
        self.ptrs
            .varint(zigzag(ptr.wrapping_sub(self.pred.last_raw) as i64));
        self.pred.last_raw = ptr;
        MODE_RAW
    }
}

const NAMES: [&str; STREAMS] = ["ops", "ts", "sizes", "refs", "ptrs", "aux", "idx"];

/// What is wrong with a payload. `Copy` and small, so the decoder's hot path passes results in
/// registers; turned into a message only when decoding fails.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bad {
    StreamEnd(usize),
    Overlong(usize),
    Leftover(usize, usize),
    BackRef { d: u64, n: u64 },
    BinDepth { depth: u8, class: u8, len: u8 },
    DeepDepth(u8),
    Mode { kind: Kind, mode: u8 },
    OldMode(u64),
    KindCode(u8),
    OsCall(u8),
    OsField(&'static str, u64),
    TsOverflow,
    ZeroQuantum,
    SameOfNull,
    NotCanonicalSame,
    Tid(u64),
    Pid(u64),
}

impl Bad {
    fn describe(self) -> String {
        match self {
            Bad::StreamEnd(s) => format!("stream {} ends inside a value", NAMES[s]),
            Bad::Overlong(s) => format!("stream {}: value longer than 64 bits", NAMES[s]),
            Bad::Leftover(s, n) => format!(
                "stream {} has {n} bytes left over after the last event",
                NAMES[s]
            ),
            Bad::BackRef { d, n } => format!(
                "back-reference to {d} allocations ago, but only {n} were made in this frame"
            ),
            Bad::BinDepth { depth, class, len } => format!(
                "bin reference at depth {depth}, but size class {class} holds {len} pointers"
            ),
            Bad::DeepDepth(d) => format!("deep bin reference with depth {d} (must be 8..32)"),
            Bad::Mode { kind, mode } => {
                format!(
                    "pointer mode {mode} is not valid for a {} event",
                    kind.name()
                )
            }
            Bad::OldMode(m) => format!("realloc old-pointer mode {m} is invalid"),
            Bad::KindCode(k) => format!("unknown event kind code {k}"),
            Bad::OsCall(c) => format!("unknown OS call code {c}"),
            Bad::OsField(f, v) => format!("OS call field {f} = {v} is out of range"),
            Bad::TsOverflow => "timestamp overflows 64 bits".into(),
            Bad::ZeroQuantum => "timestamp quantum is 0".into(),
            Bad::SameOfNull => "pointer mode 'same' for realloc(NULL)".into(),
            Bad::NotCanonicalSame => {
                "realloc result equals its old pointer but is not coded 'same'".into()
            }
            Bad::Tid(t) => format!("thread id {t} out of range"),
            Bad::Pid(p) => format!("child pid {p} out of range"),
        }
    }
}

/// A cursor over one stream.
struct Stream<'a> {
    buf: &'a [u8],
    pos: usize,
    id: usize,
}

impl<'a> Stream<'a> {
    /// The next varint. Fast path, while 8 bytes remain: one 8-byte load; a 1-byte varint
    /// returns at once; a longer one ending within the word is found by its first clear high
    /// bit and its 7-bit groups are packed with a few shifts (in 32 bits up to 4 bytes): no
    /// branch and no bounds check per byte. Longer varints, and a stream's last 7 bytes, take
    /// the byte-by-byte path, which alone reports errors.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Bad> {
        if let Some(word) = self.buf.get(self.pos..self.pos + 8) {
            let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            if w & 0x80 == 0 {
                self.pos += 1;
                return Ok(w & 0x7f);
            }
            // The varint's last byte holds the lowest clear high bit: at 8 × its length − 1.
            let ends = !w & 0x8080_8080_8080_8080;
            let bits = ends.trailing_zeros() + 1;
            if bits <= 32 {
                let x = (w as u32) & (u32::MAX >> (32 - bits));
                let x = (x & 0x007f_007f) | ((x & 0x7f00_7f00) >> 1);
                let x = (x & 0x0000_3fff) | ((x & 0x3fff_0000) >> 2);
                self.pos += (bits / 8) as usize;
                return Ok(x as u64);
            }
            if ends != 0 {
                let x = w & 0x7f7f_7f7f_7f7f_7f7f & (u64::MAX >> (64 - bits));
                let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
                let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
                let x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
                self.pos += (bits / 8) as usize;
                return Ok(x);
            }
        }
        self.varint_slow()
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, Bad> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(Bad::StreamEnd(self.id));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(Bad::Overlong(self.id));
            }
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Bad::Overlong(self.id))
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, Bad> {
        let b = *self.buf.get(self.pos).ok_or(Bad::StreamEnd(self.id))?;
        self.pos += 1;
        Ok(b)
    }

    fn finished(&self) -> Result<(), Bad> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(Bad::Leftover(self.id, self.buf.len() - self.pos))
        }
    }
}

/// Decodes frames. Keeps its buffers between frames.
#[derive(Default)]
pub struct PayloadDecoder {
    /// The frame's allocations so far: (pointer, size), by allocation number.
    allocs: Vec<(u64, u64)>,
    pred: Predictor,
}

impl PayloadDecoder {
    /// A new decoder.
    pub fn new() -> PayloadDecoder {
        PayloadDecoder::default()
    }

    /// Decodes `count` events from `payload`, the first stamped `first_ts`, appending them to
    /// `out`. Every length and reference is checked: malformed input is an error, never a panic
    /// or an allocation larger than `count` events (`count` is at most the payload's length).
    pub fn decode(
        &mut self,
        payload: &[u8],
        count: u32,
        first_ts: u64,
        out: &mut Vec<Timed>,
    ) -> Result<(), String> {
        if payload.len() < TABLE_LEN {
            return Err(format!(
                "payload of {} bytes is shorter than its {TABLE_LEN}-byte stream table",
                payload.len()
            ));
        }
        let mut lens = [0usize; STREAMS];
        let mut total = TABLE_LEN;
        for (i, len) in lens.iter_mut().enumerate() {
            *len = u32::from_le_bytes(payload[i * 4..i * 4 + 4].try_into().unwrap()) as usize;
            total = total.saturating_add(*len);
        }
        if total != payload.len() {
            return Err(format!(
                "stream lengths add up to {total} bytes but the payload has {}",
                payload.len()
            ));
        }
        if lens[OPS] != count as usize {
            return Err(format!(
                "frame header says {count} events but the op stream holds {}",
                lens[OPS]
            ));
        }
        let mut start = TABLE_LEN;
        let streams: [Stream<'_>; STREAMS] = std::array::from_fn(|id| {
            let st = Stream {
                buf: &payload[start..start + lens[id]],
                pos: 0,
                id,
            };
            start += lens[id];
            st
        });
        out.reserve(count as usize);
        self.decode_streams(streams, first_ts, out)
            .map_err(Bad::describe)
    }

    /// Decodes one event per op byte into `out`'s spare capacity, which holds at least that
    /// many.
    fn decode_streams(
        &mut self,
        streams: [Stream<'_>; STREAMS],
        first_ts: u64,
        out: &mut Vec<Timed>,
    ) -> Result<(), Bad> {
        let [
            ops,
            mut ts_s,
            mut sizes,
            mut refs,
            mut ptrs,
            mut aux,
            mut idx,
        ] = streams;
        let count = ops.buf.len();
        self.allocs.clear();
        // At most one allocation per event: pushes below never reallocate.
        self.allocs.reserve(count);
        self.pred.reset();
        let pred = &mut self.pred;
        let allocs = &mut self.allocs;
        let q = if count == 0 { 1 } else { ts_s.varint()? };
        if q == 0 {
            return Err(Bad::ZeroQuantum);
        }
        let mut ts = first_ts;
        let len = out.len();
        let spare: &mut [MaybeUninit<Timed>] = out.spare_capacity_mut();
        debug_assert!(spare.len() >= count);
        let mut written = 0;

        for (&op, slot) in ops.buf.iter().zip(spare) {
            let dt = ts_s.varint()?.checked_mul(q).ok_or(Bad::TsOverflow)?;
            ts = ts.checked_add(dt).ok_or(Bad::TsOverflow)?;
            let mode = op & 0x0f;
            // Mirrors PayloadEncoder::{consumed, produced, raw}.
            macro_rules! raw {
                () => {{
                    let d = unzigzag(ptrs.varint()?);
                    pred.last_raw = pred.last_raw.wrapping_add(d as u64);
                    pred.last_raw
                }};
            }
            macro_rules! consumed {
                ($kind:expr, $mode:expr) => {
                    match $mode {
                        MODE_NULL => (0, None),
                        MODE_RAW => (raw!(), None),
                        MODE_REF => {
                            let d = refs.varint()?;
                            let n = allocs.len() as u64;
                            if d >= n {
                                return Err(Bad::BackRef { d, n });
                            }
                            let i = (n - 1 - d) as usize;
                            (allocs[i].0, Some(i))
                        }
                        mode => return Err(Bad::Mode { kind: $kind, mode }),
                    }
                };
            }
            macro_rules! produced {
                ($kind:expr, $mode:expr, $size:expr) => {{
                    let size: u64 = $size;
                    let p = match $mode {
                        MODE_NULL => 0,
                        MODE_RAW => raw!(),
                        MODE_BIN_DEEP => {
                            let d = idx.byte()?;
                            if !(8..BIN_DEPTH as u8).contains(&d) {
                                return Err(Bad::DeepDepth(d));
                            }
                            pred.pop_bin(size, d as usize)?
                        }
                        m if m >= MODE_BIN => pred.pop_bin(size, (m - MODE_BIN) as usize)?,
                        mode => return Err(Bad::Mode { kind: $kind, mode }),
                    };
                    if p != 0 {
                        allocs.push((p, size));
                    }
                    p
                }};
            }
            // A thread marker has no pointer: its mode must be 0 (checked after its fields).
            macro_rules! marker {
                ($kind:expr, $event:expr) => {{
                    let event = $event;
                    if mode != MODE_NULL {
                        return Err(Bad::Mode { kind: $kind, mode });
                    }
                    event
                }};
            }
            let event = match op >> 4 {
                0 => {
                    let size = sizes.varint()?;
                    Event::Malloc {
                        size,
                        ptr: produced!(Kind::Malloc, mode, size),
                    }
                }
                3 => {
                    let (ptr, seq) = consumed!(Kind::Free, mode);
                    if let Some(i) = seq {
                        pred.freed(ptr, allocs[i].1);
                    }
                    Event::Free { ptr }
                }
                1 => {
                    let size = sizes.varint()?;
                    let nmemb = aux.varint()?;
                    Event::Calloc {
                        nmemb,
                        size,
                        ptr: produced!(Kind::Calloc, mode, nmemb.saturating_mul(size)),
                    }
                }
                2 => {
                    let size = sizes.varint()?;
                    let old_mode = aux.varint()?;
                    if old_mode > 15 {
                        return Err(Bad::OldMode(old_mode));
                    }
                    let (old_ptr, seq) = consumed!(Kind::Realloc, old_mode as u8);
                    let ptr = if mode == MODE_SAME {
                        if old_ptr == 0 {
                            return Err(Bad::SameOfNull);
                        }
                        if let Some(i) = seq {
                            allocs[i].1 = size;
                        }
                        old_ptr
                    } else {
                        let p = produced!(Kind::Realloc, mode, size);
                        if p != 0 && p == old_ptr {
                            return Err(Bad::NotCanonicalSame);
                        }
                        p
                    };
                    if old_ptr != 0
                        && ptr != old_ptr
                        && (ptr != 0 || size == 0)
                        && let Some(i) = seq
                    {
                        pred.freed(old_ptr, allocs[i].1);
                    }
                    Event::Realloc { old_ptr, size, ptr }
                }
                k @ 4..=8 => {
                    let kind = Kind::ALL[k as usize];
                    let size = sizes.varint()?;
                    let align = aux.varint()?;
                    Event::Aligned {
                        func: AlignedFn::ALL[k as usize - Kind::PosixMemalign as usize],
                        align,
                        size,
                        ptr: produced!(kind, mode, size),
                    }
                }
                9 => marker!(Kind::ThreadStart, {
                    let t = aux.varint()?;
                    Event::ThreadStart {
                        os_tid: u32::try_from(t).map_err(|_| Bad::Tid(t))?,
                    }
                }),
                10 => marker!(Kind::ThreadExit, Event::ThreadExit),
                11 => marker!(Kind::Fork, {
                    let p = aux.varint()?;
                    Event::Fork {
                        child_pid: u32::try_from(p).map_err(|_| Bad::Pid(p))?,
                    }
                }),
                12 => {
                    let call = OsCall::from_code(mode).ok_or(Bad::OsCall(mode))?;
                    let (addr, len, result) = (aux.varint()?, aux.varint()?, aux.varint()?);
                    let arg = aux.varint()?;
                    let (prot, err) = (aux.varint()?, aux.varint()?);
                    Event::Os {
                        call,
                        arg: u32::try_from(arg).map_err(|_| Bad::OsField("arg", arg))?,
                        prot: u8::try_from(prot).map_err(|_| Bad::OsField("prot", prot))?,
                        err: u8::try_from(err).map_err(|_| Bad::OsField("err", err))?,
                        addr,
                        len,
                        result,
                    }
                }
                k => return Err(Bad::KindCode(k)),
            };
            slot.write(Timed { ts, event });
            written += 1;
        }
        debug_assert_eq!(written, count);
        // SAFETY: the loop wrote the first `written` elements of `out`'s spare capacity, in
        // order (`zip` pairs the i-th op with the i-th spare slot), each with a complete
        // `Timed`; so the first `len + written` elements are initialised. (An error returns
        // before this, leaving `out` as it was.)
        unsafe { out.set_len(len + written) };
        for st in [ts_s, sizes, refs, ptrs, aux, idx] {
            st.finished()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(events: &[Timed]) -> Vec<Timed> {
        let mut enc = PayloadEncoder::new();
        let mut buf = Vec::new();
        enc.encode(events, &mut buf).unwrap();
        let mut out = Vec::new();
        PayloadDecoder::new()
            .decode(
                &buf,
                events.len() as u32,
                events.first().map_or(0, |e| e.ts),
                &mut out,
            )
            .unwrap();
        out
    }

    #[test]
    fn pointer_modes_round_trip() {
        let t = |ts, event| Timed { ts, event };
        let evs = vec![
            t(5, Event::ThreadStart { os_tid: 77 }),
            t(
                6,
                Event::Malloc {
                    size: 10,
                    ptr: 0x1000,
                },
            ),
            t(
                7,
                Event::Malloc {
                    size: 20,
                    ptr: 0x1020,
                },
            ),
            t(9, Event::Free { ptr: 0x1000 }),
            t(
                9,
                Event::Malloc {
                    size: 10,
                    ptr: 0x1000,
                },
            ), // ring
            t(
                10,
                Event::Realloc {
                    old_ptr: 0x1020,
                    size: 30,
                    ptr: 0x1020,
                },
            ), // same
            t(
                11,
                Event::Realloc {
                    old_ptr: 0x1020,
                    size: 300,
                    ptr: 0x9000,
                },
            ), // moved
            t(12, Event::Free { ptr: 0x5555 }), // raw, unknown
            t(12, Event::Free { ptr: 0 }),
            t(
                13,
                Event::Malloc {
                    size: 1 << 40,
                    ptr: 0,
                },
            ), // failed
            t(
                14,
                Event::Realloc {
                    old_ptr: 0x9000,
                    size: 0,
                    ptr: 0,
                },
            ), // realloc(p, 0) frees
            t(
                15,
                Event::Realloc {
                    old_ptr: 0,
                    size: 8,
                    ptr: 0x9000,
                },
            ), // ring again
            t(
                16,
                Event::Calloc {
                    nmemb: 3,
                    size: 8,
                    ptr: 0x20,
                },
            ),
            t(
                17,
                Event::Aligned {
                    func: AlignedFn::Pvalloc,
                    align: 4096,
                    size: 5,
                    ptr: 0x4000,
                },
            ),
            t(18, Event::Fork { child_pid: 4242 }),
            t(u64::MAX, Event::ThreadExit),
        ];
        assert_eq!(roundtrip(&evs), evs);
    }

    #[test]
    fn bins_ring_and_quantum_round_trip() {
        // 40 objects of one class freed, then reallocated in an order that hits the bin at
        // every depth (inline and deep), the ring (other class), and raw; timestamps in µs.
        let mut evs = Vec::new();
        let mut ts = 1_000_000;
        let mut push = |event| {
            ts += 3000;
            evs.push(Timed { ts, event });
        };
        let ptrs: Vec<u64> = (0..40).map(|i| 0x10_0000 + i * 64).collect();
        for &p in &ptrs {
            push(Event::Malloc { size: 40, ptr: p });
        }
        for &p in &ptrs {
            push(Event::Free { ptr: p });
        }
        for (i, &p) in ptrs.iter().enumerate().rev().step_by(3) {
            // same class: bin; every other one as a bigger request: ring or raw.
            let size = if i % 2 == 0 { 40 } else { 4000 };
            push(Event::Malloc { size, ptr: p });
        }
        push(Event::Realloc {
            old_ptr: ptrs[39],
            size: 48,
            ptr: ptrs[39],
        });
        push(Event::Free { ptr: ptrs[39] });
        push(Event::Calloc {
            nmemb: 2,
            size: 20,
            ptr: ptrs[39],
        });
        let got = roundtrip(&evs);
        assert_eq!(got, evs);
        assert_eq!(size_class(0), 2);
        assert_eq!(size_class(24), 2);
        assert_eq!(size_class(25), 3);
        assert_eq!(size_class(1032), 65);
        assert_eq!(size_class(1033), 66);
        assert_eq!(size_class(2040), 66);
        assert_eq!(size_class(2041), 67);
        assert_eq!(size_class(u64::MAX), 119);
    }

    #[test]
    fn os_calls_round_trip_and_bad_ones_are_refused() {
        let t = |ts, event| Timed { ts, event };
        let os = |call, err, arg, addr, len, result| Event::Os {
            call,
            prot: 3,
            err,
            arg,
            addr,
            len,
            result,
        };
        let events = vec![
            t(
                1,
                Event::Malloc {
                    size: 24,
                    ptr: 0x5000,
                },
            ),
            t(2, os(OsCall::Mmap, 0, 0x22, 0x7f00_0000_0000, 1 << 20, 0)),
            t(3, os(OsCall::Munmap, 22, 0, 0x7f00_0000_0000, 4096, 0)),
            t(3, Event::Free { ptr: 0x5000 }),
            t(4, os(OsCall::Mremap, 0, 1, 1 << 40, u64::MAX, 1 << 41)),
            t(5, os(OsCall::Brk, 0, 0, 0x55_0000, 0x2_1000, 0x57_1000)),
            t(6, os(OsCall::Madvise, 255, u32::MAX, 0x1000, 8192, 0)),
            t(
                7,
                Event::Malloc {
                    size: 24,
                    ptr: 0x5000,
                },
            ),
        ];
        assert_eq!(roundtrip(&events), events);
        // The pointer coding around OS calls is the same as without them (they touch neither
        // `last` nor the bins): the last malloc is still a bin hit.
        let mut buf = Vec::new();
        PayloadEncoder::new().encode(&events, &mut buf).unwrap();
        assert_eq!(buf[TABLE_LEN + 7] & 0x0f, MODE_BIN);

        // A payload of one OS event with the given op byte and aux varints.
        let payload = |op: u8, aux: &[u64]| {
            let mut a = Vec::new();
            for v in aux {
                a.extend(reference_varint(*v));
            }
            let streams: [Vec<u8>; STREAMS] =
                [vec![op], vec![1, 0], vec![], vec![], vec![], a, vec![]];
            let mut p = Vec::new();
            for s in &streams {
                p.extend((s.len() as u32).to_le_bytes());
            }
            for s in &streams {
                p.extend(s);
            }
            p
        };
        let decode = |p: &[u8]| {
            let mut out = Vec::new();
            PayloadDecoder::new().decode(p, 1, 0, &mut out).map(|_| out)
        };
        assert_eq!(
            decode(&payload(0xc4, &[1, 2, 3, 4, 5, 6])).unwrap()[0].event,
            Event::Os {
                call: OsCall::Madvise,
                addr: 1,
                len: 2,
                result: 3,
                arg: 4,
                prot: 5,
                err: 6
            }
        );
        for (op, aux, want) in [
            (0xc5, vec![0; 6], "unknown OS call code 5"),
            (0xc0, vec![0, 0, 0, 1 << 32, 0, 0], "arg = 4294967296"),
            (0xc0, vec![0, 0, 0, 0, 256, 0], "prot = 256"),
            (0xc0, vec![0, 0, 0, 0, 0, 300], "err = 300"),
            (0xc0, vec![0; 5], "aux"),
            (0xd0, vec![], "unknown event kind code 13"),
        ] {
            let e = decode(&payload(op, &aux)).unwrap_err();
            assert!(e.contains(want), "{op:#x} {aux:?}: {e}");
        }
    }

    #[test]
    fn backwards_timestamps_are_refused() {
        let evs = [
            Timed {
                ts: 10,
                event: Event::ThreadExit,
            },
            Timed {
                ts: 9,
                event: Event::ThreadExit,
            },
        ];
        let err = PayloadEncoder::new()
            .encode(&evs, &mut Vec::new())
            .unwrap_err();
        assert!(err.contains("earlier than the previous"), "{err}");
    }

    /// LEB128 the plain way, byte by byte.
    fn reference_varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }

    fn interesting_values() -> Vec<u64> {
        let mut vs = vec![0, 1, 0x7f, 0x80, u64::MAX, u64::MAX - 1, 1 << 63];
        for bits in 1..64 {
            let b = 1u64 << bits;
            vs.extend([b - 1, b, b + 1, b | (b >> 1), b + 0x5555_5555_5555_5555 % b]);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            vs.push(x >> (x % 64));
        }
        vs
    }

    #[test]
    fn varints_match_plain_leb128_on_every_path() {
        for v in interesting_values() {
            let want = reference_varint(v);
            let mut buf = vec![0xAAu8; 32];
            let mut sink = Sink {
                buf: &mut buf,
                pos: 3,
            };
            sink.varint(v);
            assert_eq!(sink.pos, 3 + want.len(), "length of {v:#x}");
            assert_eq!(&buf[3..3 + want.len()], &want[..], "bytes of {v:#x}");
            // Read back with 0..=12 bytes after it: the word path and the byte-by-byte one.
            for tail in 0..=12 {
                let mut stream_bytes = want.clone();
                stream_bytes.extend(std::iter::repeat_n(0x81, tail));
                let mut st = Stream {
                    buf: &stream_bytes,
                    pos: 0,
                    id: SIZES,
                };
                assert_eq!(st.varint().unwrap(), v, "{v:#x} with {tail} bytes after");
                assert_eq!(st.pos, want.len());
            }
        }
    }

    #[test]
    fn bad_varints_are_errors_on_every_path() {
        for tail in [0usize, 12] {
            let read = |bytes: &[u8]| {
                let mut b = bytes.to_vec();
                b.extend(std::iter::repeat_n(0, tail));
                Stream {
                    buf: &b,
                    pos: 0,
                    id: PTRS,
                }
                .varint()
                .map_err(Bad::describe)
            };
            // Ten bytes whose last carries more than the 64th bit; eleven bytes.
            let mut over = vec![0xff; 9];
            over.push(0x02);
            assert!(read(&over).unwrap_err().contains("longer than 64 bits"));
            assert!(
                read(&[0x80; 11])
                    .unwrap_err()
                    .contains("longer than 64 bits")
            );
            let mut max = vec![0xff; 9];
            max.push(0x01);
            assert_eq!(read(&max), Ok(u64::MAX));
            if tail == 0 {
                assert!(
                    read(&[0x80, 0x80])
                        .unwrap_err()
                        .contains("ends inside a value")
                );
                assert!(
                    read(&[])
                        .unwrap_err()
                        .contains("stream ptrs ends inside a value")
                );
            }
        }
    }

    #[test]
    fn quantum_divides_like_division() {
        let qs = [
            1u64,
            2,
            3,
            7,
            10,
            1000,
            1024,
            3 << 20,
            999_999_937,
            u64::MAX,
            1 << 63,
        ];
        for &q in &qs {
            let quantum = Quantum::new(q);
            for v in interesting_values() {
                assert_eq!(quantum.divides(v), v % q == 0, "{v} by {q}");
                if let Some(m) = v.checked_mul(q) {
                    assert!(quantum.divides(m));
                    assert_eq!(quantum.div_exact(m), v, "{m} / {q}");
                }
            }
        }
        // The running quantum is the gcd of the deltas, whatever their order.
        for deltas in [
            vec![0, 0, 3000, 6000, 0, 9000],
            vec![4096, 1024, 0, 65536],
            vec![1000, 1001],
            vec![0],
            vec![u64::MAX, u64::MAX - 1],
        ] {
            let mut quantum = Quantum::NONE;
            for &d in &deltas {
                quantum.include(d);
            }
            let want = deltas.iter().fold(0, |g, &d| gcd(g, d));
            assert_eq!(quantum.q, want, "{deltas:?}");
        }
    }

    #[test]
    fn pointer_table_grows_and_forgets_per_frame() {
        let mut t = PtrTable::default();
        for frame in 0..3u64 {
            t.reset();
            for k in 1..5000u64 {
                assert_eq!(t.replace(k * 16 + frame, k as u32), None);
            }
            for k in 1..5000u64 {
                assert_eq!(t.replace(k * 16 + frame, 7), Some(k as u32));
                assert_eq!(t.at(t.slot(k * 16 + frame)), Some(7));
            }
            assert!(t.slots.len() >= 2 * 4999 && t.slots.len().is_power_of_two());
            // Nothing of the previous frame is left.
            if frame > 0 {
                assert_eq!(t.at(t.slot(16 + frame - 1)), None);
            }
        }
    }

    #[test]
    fn bins_find_the_newest_copy_and_keep_order() {
        let mut p = Predictor::default();
        let c = size_class(40);
        for ptr in 1..=40u64 {
            p.push(ptr * 16, c); // 40 pushes: the 8 oldest fall out
        }
        p.push(30 * 16, c); // a second copy, newest
        assert_eq!(p.lens[c] as usize, BIN_DEPTH);
        assert_eq!(p.take_bin(c, 30 * 16), Some(0));
        assert_eq!(p.take_bin(c, 30 * 16), Some(10));
        assert_eq!(p.take_bin(c, 5 * 16), None); // pushed out
        // What is left, newest first: 40, 39, …, 31, 29, …, 10.
        let left: Vec<u64> = (0..p.lens[c] as usize)
            .map(|d| p.bins[c][(p.heads[c] as usize + d) & MASK] / 16)
            .collect();
        let want: Vec<u64> = (10..=40).rev().filter(|&x| x != 30).collect();
        assert_eq!(left, want);
        assert_eq!(p.pop_bin(40, 3).unwrap(), 37 * 16);
        assert!(p.pop_bin(40, 29).is_err());
    }

    #[test]
    fn a_frame_with_a_big_pointer_table_round_trips() {
        // 60 Ki distinct pointers: the table outgrows PREFETCH_SLOTS mid-frame, so later
        // blocks prefetch; frees in scattered order, and reallocs of both pointer kinds.
        let n = 60_000u64;
        let mut evs = Vec::new();
        let mut ts = 0;
        let mut push = |event| {
            ts += 1000;
            evs.push(Timed { ts, event });
        };
        for i in 0..n {
            push(Event::Malloc {
                size: 16 + i % 2000,
                ptr: 0x1000_0000 + i * 32,
            });
        }
        for i in 0..n {
            let p = 0x1000_0000 + (i * 7919 % n) * 32;
            if i % 5 == 0 {
                push(Event::Realloc {
                    old_ptr: p,
                    size: 100,
                    ptr: p + 0x4000_0000,
                });
                push(Event::Free {
                    ptr: p + 0x4000_0000,
                });
            } else {
                push(Event::Free { ptr: p });
            }
        }
        let mut enc = PayloadEncoder::new();
        let mut buf = Vec::new();
        enc.encode(&evs, &mut buf).unwrap();
        assert!(enc.live.slots.len() >= PREFETCH_SLOTS);
        assert_eq!(roundtrip(&evs), evs);
    }

    #[test]
    fn a_reused_encoder_writes_what_a_fresh_one_writes() {
        // Frames whose quanta differ (the encoder's guess is the previous frame's), empty
        // frames, and frames large enough to fill several blocks and grow the table.
        let frames: Vec<Vec<Timed>> = [1u64, 1000, 1000, 7, 1, 0, 1000]
            .iter()
            .map(|&q| {
                let n = if q == 0 { 0 } else { 3000 };
                (0..n)
                    .map(|i| Timed {
                        ts: 5_000_000 + q * (2 * (i / 3) + (i % 3 == 2) as u64),
                        event: if i % 2 == 0 {
                            Event::Malloc {
                                size: 24 + i % 100,
                                ptr: 0x7000_0000 + (i % 700) * 48,
                            }
                        } else {
                            Event::Free {
                                ptr: 0x7000_0000 + ((i - 1) % 700) * 48,
                            }
                        },
                    })
                    .collect()
            })
            .collect();
        let mut reused = PayloadEncoder::new();
        for evs in &frames {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            reused.encode(evs, &mut a).unwrap();
            PayloadEncoder::new().encode(evs, &mut b).unwrap();
            assert_eq!(a, b);
            if !evs.is_empty() {
                let mut out = Vec::new();
                PayloadDecoder::new()
                    .decode(&a, evs.len() as u32, evs[0].ts, &mut out)
                    .unwrap();
                assert_eq!(&out, evs);
            }
        }
    }
}
