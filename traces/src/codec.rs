//! Events ⇄ the uncompressed payload of one frame.
//!
//! A frame's events are split into seven byte streams (columns), each compressing well on its
//! own terms, and concatenated behind a table of their lengths:
//!
//! | stream  | holds                                                               |
//! |---------|---------------------------------------------------------------------|
//! | `ops`   | one byte per event: kind (high nibble) and pointer mode (low)       |
//! | `ts`    | LEB128 quantum, then per event LEB128 (delta from previous) / quantum |
//! | `sizes` | LEB128 requested size (element size for calloc)                     |
//! | `refs`  | LEB128 back-references: "the object allocated *d* allocations ago"  |
//! | `ptrs`  | LEB128 zigzag delta of a pointer from the last raw pointer          |
//! | `aux`   | LEB128 calloc nmemb, alignment, tid, child pid, realloc's old mode  |
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

use crate::event::{AlignedFn, Event, Kind, Timed};

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
#[inline]
pub(crate) fn size_class(size: u64) -> usize {
    let chunk = size.saturating_add(8 + 15) & !15;
    if chunk <= 1040 {
        (chunk.max(32) >> 4) as usize
    } else {
        // 1041..=2048 → 66, …, up to 2^64 → 119.
        (66 + (64 - (chunk - 1).leading_zeros()) as usize - 11).min(CLASSES - 1)
    }
}

/// What the encoder knows about a pointer of this frame, packed in a `u32`: an allocation
/// number (the object is live, allocated `seq`-th in the frame), or `BINNED | class` (freed,
/// and probably in the bin of `class`: a lookup that says anything else is a miss without
/// searching any bin).
const BINNED: u32 = 1 << 31;

/// The encoder's map pointer → [`BINNED`]-packed state. Open addressing with linear probing,
/// sized to at least twice the frame's events, cleared per frame, and never deleting within
/// one (freed pointers stay, marked binned), so it needs no tombstones and stays under half
/// full. Cheaper than a general hash map, which this hot path measured at 60–90 instructions
/// per operation.
#[derive(Default)]
struct PtrTable {
    keys: Vec<u64>,
    vals: Vec<u32>,
    mask: usize,
}

impl PtrTable {
    /// Empties the table and sizes it for a frame of `events` events.
    fn reset(&mut self, events: usize) {
        let cap = (2 * events).next_power_of_two().max(1024);
        if self.keys.len() < cap {
            self.keys.resize(cap, 0);
            self.vals.resize(cap, 0);
        }
        self.keys[..cap].fill(0);
        self.mask = cap - 1;
    }

    /// The slot of `key` (non-zero): where it is, or the empty slot where it belongs.
    #[inline]
    fn slot(&self, key: u64) -> usize {
        // Folded multiply: every bit of the pointer reaches the low bits that pick the slot
        // (a plain multiply keeps an aligned pointer's zero low bits).
        let p = (key as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut i = ((p as u64) ^ ((p >> 64) as u64)) as usize & self.mask;
        loop {
            let k = self.keys[i];
            if k == key || k == 0 {
                return i;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    fn get(&self, key: u64) -> Option<u32> {
        let i = self.slot(key);
        (self.keys[i] != 0).then(|| self.vals[i])
    }

    /// Sets `key`'s state and returns the previous one.
    #[inline]
    fn replace(&mut self, key: u64, val: u32) -> Option<u32> {
        let i = self.slot(key);
        let old = (self.keys[i] != 0).then(|| self.vals[i]);
        self.keys[i] = key;
        self.vals[i] = val;
        old
    }
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The pointer-prediction state both sides keep: per size class, a circular buffer of the
/// last [`BIN_DEPTH`] freed pointers whose size the frame knows; and the last raw pointer.
struct Predictor {
    bins: Box<[[u64; BIN_DEPTH]; CLASSES]>,
    /// Per class: index of the next write (the newest entry is at `head - 1`).
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

    /// A pointer of `size` bytes (known to the frame) was freed; returns its class and the
    /// pointer pushed out of the full bin, if any.
    #[inline]
    fn freed(&mut self, ptr: u64, size: u64) -> (usize, Option<u64>) {
        let c = size_class(size);
        let h = self.heads[c] as usize;
        let evicted = (self.lens[c] as usize == BIN_DEPTH).then(|| self.bins[c][h]);
        self.bins[c][h] = ptr;
        self.heads[c] = ((h + 1) & MASK) as u8;
        self.lens[c] = (self.lens[c] + 1).min(BIN_DEPTH as u8);
        (c, evicted)
    }

    /// Removes the entry at `depth` (0 = newest) of class `c`, moving the newer ones down.
    #[inline]
    fn remove(&mut self, c: usize, depth: usize) -> u64 {
        let h = self.heads[c] as usize;
        let bin = &mut self.bins[c];
        let mut pos = (h + BIN_DEPTH - 1 - depth) & MASK;
        let p = bin[pos];
        for _ in 0..depth {
            let next = (pos + 1) & MASK;
            bin[pos] = bin[next];
            pos = next;
        }
        self.heads[c] = ((h + BIN_DEPTH - 1) & MASK) as u8;
        self.lens[c] -= 1;
        p
    }

    /// Finds `ptr` in the bin of class `c` (newest first); removes it and returns its depth.
    #[inline]
    fn take_bin(&mut self, c: usize, ptr: u64) -> Option<usize> {
        let h = self.heads[c] as usize;
        let len = self.lens[c] as usize;
        let bin = &self.bins[c];
        let depth = (0..len).find(|&d| bin[(h + BIN_DEPTH - 1 - d) & MASK] == ptr)?;
        self.remove(c, depth);
        Some(depth)
    }

    /// The pointer at `depth` in the bin of `size`'s class, removed.
    #[inline]
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

/// Encodes frames. Keeps its buffers between frames so steady-state encoding does not allocate.
#[derive(Default)]
pub struct PayloadEncoder {
    streams: [Vec<u8>; STREAMS],
    /// Pointers of this frame: live (allocation number) or binned (class).
    live: PtrTable,
    /// Sizes of this frame's allocations, by allocation number.
    sizes: Vec<u64>,
    pred: Predictor,
}

impl PayloadEncoder {
    /// A new encoder.
    pub fn new() -> PayloadEncoder {
        PayloadEncoder::default()
    }

    fn reset(&mut self, events: usize) {
        for s in &mut self.streams {
            s.clear();
        }
        self.live.reset(events);
        self.sizes.clear();
        self.pred.reset();
    }

    /// Encodes `events` (timestamps non-decreasing, the first one being the frame's base) into
    /// `out` (cleared first). Returns an error message if the timestamps go backwards.
    pub fn encode(&mut self, events: &[Timed], out: &mut Vec<u8>) -> Result<(), String> {
        self.reset(events.len());
        let first = events.first().map_or(0, |e| e.ts);
        // The quantum: the gcd of all deltas (1 as soon as any delta is odd and coprime).
        let mut q = 0u64;
        let mut prev = first;
        for (i, e) in events.iter().enumerate() {
            let Some(dt) = e.ts.checked_sub(prev) else {
                return Err(format!(
                    "event {i}: timestamp {} is earlier than the previous one ({prev}); a \
                     thread's timestamps must not go backwards",
                    e.ts
                ));
            };
            prev = e.ts;
            if q != 1 && dt != 0 {
                q = gcd(q, dt);
            }
        }
        let q = q.max(1);
        put_varint(&mut self.streams[TS], q);
        self.streams[OPS].reserve(events.len());
        let mut prev = first;
        for e in events {
            put_varint(&mut self.streams[TS], (e.ts - prev) / q);
            prev = e.ts;
            self.event(&e.event);
        }
        out.clear();
        out.reserve(TABLE_LEN + self.streams.iter().map(Vec::len).sum::<usize>());
        for s in &self.streams {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        for s in &self.streams {
            out.extend_from_slice(s);
        }
        Ok(())
    }

    #[inline]
    fn event(&mut self, ev: &Event) {
        let kind = ev.kind() as u8;
        let mode = match *ev {
            Event::Malloc { size, ptr } => {
                put_varint(&mut self.streams[SIZES], size);
                self.produced(ptr, size)
            }
            Event::Calloc { nmemb, size, ptr } => {
                put_varint(&mut self.streams[SIZES], size);
                put_varint(&mut self.streams[AUX], nmemb);
                self.produced(ptr, nmemb.saturating_mul(size))
            }
            Event::Aligned {
                align, size, ptr, ..
            } => {
                put_varint(&mut self.streams[SIZES], size);
                put_varint(&mut self.streams[AUX], align);
                self.produced(ptr, size)
            }
            Event::Free { ptr } => self.consumed(ptr, true).0,
            Event::Realloc { old_ptr, size, ptr } => {
                put_varint(&mut self.streams[SIZES], size);
                // The old block is gone when the call moved it, or freed it (size 0); it goes
                // into its bin only after the result is coded, as the decoder does.
                let frees = old_ptr != 0 && ptr != old_ptr && (ptr != 0 || size == 0);
                let (old_mode, old_size) = self.consumed(old_ptr, false);
                put_varint(&mut self.streams[AUX], old_mode as u64);
                let mode = if ptr != 0 && ptr == old_ptr {
                    if let Some(seq) = self.live.get(ptr).filter(|v| v & BINNED == 0) {
                        self.sizes[seq as usize] = size;
                    }
                    MODE_SAME
                } else {
                    self.produced(ptr, size)
                };
                if frees && let Some(old_size) = old_size {
                    let (class, _) = self.pred.freed(old_ptr, old_size);
                    self.live.replace(old_ptr, BINNED | class as u32);
                }
                mode
            }
            Event::ThreadStart { os_tid } => {
                put_varint(&mut self.streams[AUX], os_tid as u64);
                MODE_NULL
            }
            Event::ThreadExit => MODE_NULL,
            Event::Fork { child_pid } => {
                put_varint(&mut self.streams[AUX], child_pid as u64);
                MODE_NULL
            }
        };
        self.streams[OPS].push(kind << 4 | mode);
    }

    /// Codes a pointer the call consumed (free, realloc's input); returns its mode and, when
    /// the object was allocated in this frame, its size. With `frees`, a frame-known object
    /// goes into its class's bin (one hash lookup does both).
    #[inline]
    fn consumed(&mut self, ptr: u64, frees: bool) -> (u8, Option<u64>) {
        if ptr == 0 {
            return (MODE_NULL, None);
        }
        let i = self.live.slot(ptr);
        let v = self.live.vals[i];
        if self.live.keys[i] != 0 && v & BINNED == 0 {
            let size = self.sizes[v as usize];
            put_varint(
                &mut self.streams[REFS],
                (self.sizes.len() - 1 - v as usize) as u64,
            );
            if frees {
                // Pushed-out bin entries keep a stale binned mark: a later lookup then
                // searches one bin in vain, which costs less than removing them here.
                let (class, _) = self.pred.freed(ptr, size);
                self.live.vals[i] = BINNED | class as u32;
            }
            (MODE_REF, Some(size))
        } else {
            (self.raw(ptr), None)
        }
    }

    /// Codes a pointer an allocation of `size` bytes returned and returns its mode; remembers
    /// it as live.
    #[inline]
    fn produced(&mut self, ptr: u64, size: u64) -> u8 {
        if ptr == 0 {
            return MODE_NULL;
        }
        let class = size_class(size);
        let seq = self.sizes.len() as u32;
        self.sizes.push(size);
        let hit = match self.live.replace(ptr, seq) {
            Some(v) if v == BINNED | class as u32 => self.pred.take_bin(class, ptr),
            _ => None,
        };
        match hit {
            Some(depth) if depth < 8 => MODE_BIN + depth as u8,
            Some(depth) => {
                self.streams[IDX].push(depth as u8);
                MODE_BIN_DEEP
            }
            None => self.raw(ptr),
        }
    }

    #[inline]
    fn raw(&mut self, ptr: u64) -> u8 {
        put_varint(
            &mut self.streams[PTRS],
            zigzag(ptr.wrapping_sub(self.pred.last_raw) as i64),
        );
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
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Bad> {
        // Fast path: ten bytes available, so no per-byte bounds checks.
        if let Some(chunk) = self.buf.get(self.pos..self.pos + 10) {
            let chunk: &[u8; 10] = chunk.try_into().expect("10 bytes");
            let b = chunk[0];
            if b < 0x80 {
                self.pos += 1;
                return Ok(b as u64);
            }
            let mut v = (b & 0x7f) as u64;
            for (i, &b) in chunk.iter().enumerate().skip(1) {
                v |= ((b & 0x7f) as u64) << (7 * i);
                if b < 0x80 {
                    if i == 9 && b > 1 {
                        return Err(Bad::Overlong(self.id));
                    }
                    self.pos += i + 1;
                    return Ok(v);
                }
            }
            return Err(Bad::Overlong(self.id));
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

    #[inline]
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
    /// or an allocation larger than `count` events.
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
        self.decode_streams(streams, count, first_ts, out)
            .map_err(Bad::describe)
    }

    fn decode_streams(
        &mut self,
        streams: [Stream<'_>; STREAMS],
        count: u32,
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
        self.allocs.clear();
        self.pred.reset();
        let pred = &mut self.pred;
        let allocs = &mut self.allocs;
        let q = if count == 0 { 1 } else { ts_s.varint()? };
        if q == 0 {
            return Err(Bad::ZeroQuantum);
        }
        let mut ts = first_ts;

        for &op in ops.buf {
            let dt = ts_s.varint()?.checked_mul(q).ok_or(Bad::TsOverflow)?;
            ts = ts.checked_add(dt).ok_or(Bad::TsOverflow)?;
            let mode = op & 0x0f;
            let kind = Kind::from_code(op >> 4).ok_or(Bad::KindCode(op >> 4))?;
            // Mirrors PayloadEncoder::{consumed, produced, raw}.
            let mut raw = |ptrs: &mut Stream<'_>| -> Result<u64, Bad> {
                let d = unzigzag(ptrs.varint()?);
                pred.last_raw = pred.last_raw.wrapping_add(d as u64);
                Ok(pred.last_raw)
            };
            macro_rules! consumed {
                ($mode:expr) => {
                    match $mode {
                        MODE_NULL => (0, None),
                        MODE_RAW => (raw(&mut ptrs)?, None),
                        MODE_REF => {
                            let d = refs.varint()?;
                            let n = allocs.len() as u64;
                            if d >= n {
                                return Err(Bad::BackRef { d, n });
                            }
                            let i = (n - 1 - d) as usize;
                            (allocs[i].0, Some(i))
                        }
                        mode => return Err(Bad::Mode { kind, mode }),
                    }
                };
            }
            macro_rules! produced {
                ($mode:expr, $size:expr) => {{
                    let size: u64 = $size;
                    let p = match $mode {
                        MODE_NULL => 0,
                        MODE_RAW => raw(&mut ptrs)?,
                        MODE_BIN_DEEP => {
                            let d = idx.byte()?;
                            if !(8..BIN_DEPTH as u8).contains(&d) {
                                return Err(Bad::DeepDepth(d));
                            }
                            pred.pop_bin(size, d as usize)?
                        }
                        m if m >= MODE_BIN => pred.pop_bin(size, (m - MODE_BIN) as usize)?,
                        mode => return Err(Bad::Mode { kind, mode }),
                    };
                    if p != 0 {
                        allocs.push((p, size));
                    }
                    p
                }};
            }
            let event = match kind {
                Kind::Malloc => {
                    let size = sizes.varint()?;
                    Event::Malloc {
                        size,
                        ptr: produced!(mode, size),
                    }
                }
                Kind::Calloc => {
                    let size = sizes.varint()?;
                    let nmemb = aux.varint()?;
                    Event::Calloc {
                        nmemb,
                        size,
                        ptr: produced!(mode, nmemb.saturating_mul(size)),
                    }
                }
                Kind::PosixMemalign
                | Kind::AlignedAlloc
                | Kind::Memalign
                | Kind::Valloc
                | Kind::Pvalloc => {
                    let size = sizes.varint()?;
                    let align = aux.varint()?;
                    let func = AlignedFn::ALL[kind as usize - Kind::PosixMemalign as usize];
                    Event::Aligned {
                        func,
                        align,
                        size,
                        ptr: produced!(mode, size),
                    }
                }
                Kind::Free => {
                    let (ptr, seq) = consumed!(mode);
                    if let Some(i) = seq {
                        pred.freed(ptr, allocs[i].1);
                    }
                    Event::Free { ptr }
                }
                Kind::Realloc => {
                    let size = sizes.varint()?;
                    let old_mode = aux.varint()?;
                    if old_mode > 15 {
                        return Err(Bad::OldMode(old_mode));
                    }
                    let (old_ptr, seq) = consumed!(old_mode as u8);
                    let ptr = if mode == MODE_SAME {
                        if old_ptr == 0 {
                            return Err(Bad::SameOfNull);
                        }
                        if let Some(i) = seq {
                            allocs[i].1 = size;
                        }
                        old_ptr
                    } else {
                        let p = produced!(mode, size);
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
                Kind::ThreadStart => {
                    let t = aux.varint()?;
                    Event::ThreadStart {
                        os_tid: u32::try_from(t).map_err(|_| Bad::Tid(t))?,
                    }
                }
                Kind::ThreadExit => Event::ThreadExit,
                Kind::Fork => {
                    let p = aux.varint()?;
                    Event::Fork {
                        child_pid: u32::try_from(p).map_err(|_| Bad::Pid(p))?,
                    }
                }
            };
            if !kind.is_op() && mode != MODE_NULL {
                return Err(Bad::Mode { kind, mode });
            }
            out.push(Timed { ts, event });
        }
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
}
