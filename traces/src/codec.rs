//! Events ⇄ the uncompressed payload of one frame.
//!
//! A frame's events are split into six byte streams (columns), each compressing well on its own
//! terms, and concatenated behind a table of their lengths:
//!
//! | stream  | holds                                                              |
//! |---------|--------------------------------------------------------------------|
//! | `ops`   | one byte per event: kind (high nibble) and pointer mode (low)      |
//! | `ts`    | LEB128 delta of each timestamp from the previous event's           |
//! | `sizes` | LEB128 requested size (element size for calloc)                    |
//! | `refs`  | LEB128 back-references: "the object allocated *d* allocations ago" |
//! | `ptrs`  | LEB128 zigzag delta of a pointer from the last raw pointer         |
//! | `aux`   | LEB128 calloc nmemb, alignment, tid, child pid, realloc's old-pointer mode |
//!
//! Pointers are what make traces big, so each is coded by the cheapest of:
//! * **ref** (frees, realloc's old pointer): the object was allocated earlier in this frame;
//!   store how many allocations ago. In a program's frame most frees hit an object of the same
//!   frame, and the distance is small and repetitive.
//! * **ring** (allocation results): allocators hand back recently freed blocks (glibc's tcache,
//!   every size-class allocator); an 8-entry ring of the frame's latest freed pointers turns
//!   such a result into 3 bits in the op byte.
//! * **same** (realloc): resized in place.
//! * **raw**: zigzag delta from the last raw pointer; allocators carve neighbouring blocks, so
//!   deltas are small.
//!
//! All this state is reset at each frame, so every frame decodes on its own.
//! FORMAT.md describes the same bytes for readers in other languages.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::event::{AlignedFn, Event, Kind, Timed};

/// Pointer mode (low nibble of an op byte): the pointer is NULL.
pub(crate) const MODE_NULL: u8 = 0;
/// The pointer is a zigzag delta in `ptrs`.
pub(crate) const MODE_RAW: u8 = 1;
/// Realloc result equals the old pointer.
pub(crate) const MODE_SAME: u8 = 2;
/// The pointer is a back-reference in `refs` (consumed pointers only).
pub(crate) const MODE_REF: u8 = 3;
/// Modes 8..=15: the allocation result is the ring entry freed `mode - 8` frees ago.
pub(crate) const MODE_RING: u8 = 8;
const RING: usize = 8;

/// Number of streams in a payload.
pub(crate) const STREAMS: usize = 6;
/// Bytes of the stream-length table at the start of a payload.
pub(crate) const TABLE_LEN: usize = STREAMS * 4;

/// A multiplicative hash for pointers: they are already well spread above the low bits.
#[derive(Default, Clone, Copy)]
struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing; the high bits (which hashbrown uses for its tags) mix well.
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type PtrMap = HashMap<u64, u32, BuildHasherDefault<PtrHasher>>;

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

/// Encodes frames. Keeps its buffers between frames so steady-state encoding does not allocate.
#[derive(Default)]
pub struct PayloadEncoder {
    streams: [Vec<u8>; STREAMS],
    live: PtrMap,
    allocs: u32,
    last_ptr: u64,
    ring: [u64; RING],
    ring_pos: usize,
}

const OPS: usize = 0;
const TS: usize = 1;
const SIZES: usize = 2;
const REFS: usize = 3;
const PTRS: usize = 4;
const AUX: usize = 5;

impl PayloadEncoder {
    /// A new encoder.
    pub fn new() -> PayloadEncoder {
        PayloadEncoder::default()
    }

    fn reset(&mut self) {
        for s in &mut self.streams {
            s.clear();
        }
        self.live.clear();
        self.allocs = 0;
        self.last_ptr = 0;
        self.ring = [0; RING];
        self.ring_pos = 0;
    }

    /// Encodes `events` (timestamps non-decreasing, the first one being the frame's base) into
    /// `out` (cleared first). Returns an error message if the timestamps go backwards.
    pub fn encode(&mut self, events: &[Timed], out: &mut Vec<u8>) -> Result<(), String> {
        self.reset();
        self.streams[OPS].reserve(events.len());
        let mut prev_ts = events.first().map_or(0, |e| e.ts);
        for (i, e) in events.iter().enumerate() {
            let Some(dt) = e.ts.checked_sub(prev_ts) else {
                return Err(format!(
                    "event {i}: timestamp {} is earlier than the previous one ({prev_ts}); a \
                     thread's timestamps must not go backwards",
                    e.ts
                ));
            };
            prev_ts = e.ts;
            put_varint(&mut self.streams[TS], dt);
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
                self.produced(ptr)
            }
            Event::Calloc { nmemb, size, ptr } => {
                put_varint(&mut self.streams[SIZES], size);
                put_varint(&mut self.streams[AUX], nmemb);
                self.produced(ptr)
            }
            Event::Aligned {
                align, size, ptr, ..
            } => {
                put_varint(&mut self.streams[SIZES], size);
                put_varint(&mut self.streams[AUX], align);
                self.produced(ptr)
            }
            Event::Free { ptr } => {
                let mode = self.consumed(ptr);
                if ptr != 0 {
                    self.freed(ptr);
                }
                mode
            }
            Event::Realloc { old_ptr, size, ptr } => {
                put_varint(&mut self.streams[SIZES], size);
                let old_mode = self.consumed(old_ptr);
                put_varint(&mut self.streams[AUX], old_mode as u64);
                let mode = if ptr != 0 && ptr == old_ptr {
                    MODE_SAME
                } else {
                    self.produced(ptr)
                };
                // The old block is gone when the call moved it, or freed it (size 0).
                if old_ptr != 0 && ptr != old_ptr && (ptr != 0 || size == 0) {
                    self.freed(old_ptr);
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

    /// Codes a pointer the call consumed (free, realloc's input) and returns its mode.
    #[inline]
    fn consumed(&mut self, ptr: u64) -> u8 {
        if ptr == 0 {
            return MODE_NULL;
        }
        if let Some(&seq) = self.live.get(&ptr) {
            put_varint(&mut self.streams[REFS], (self.allocs - 1 - seq) as u64);
            MODE_REF
        } else {
            self.raw(ptr)
        }
    }

    /// Codes a pointer the call returned and returns its mode; remembers it as live.
    #[inline]
    fn produced(&mut self, ptr: u64) -> u8 {
        if ptr == 0 {
            return MODE_NULL;
        }
        let mut mode = None;
        for r in 0..RING {
            let slot = (self.ring_pos + RING - 1 - r) % RING;
            if self.ring[slot] == ptr {
                self.ring[slot] = 0;
                mode = Some(MODE_RING + r as u8);
                break;
            }
        }
        let mode = mode.unwrap_or_else(|| self.raw(ptr));
        self.live.insert(ptr, self.allocs);
        self.allocs += 1;
        mode
    }

    #[inline]
    fn raw(&mut self, ptr: u64) -> u8 {
        put_varint(
            &mut self.streams[PTRS],
            zigzag(ptr.wrapping_sub(self.last_ptr) as i64),
        );
        self.last_ptr = ptr;
        MODE_RAW
    }

    #[inline]
    fn freed(&mut self, ptr: u64) {
        self.live.remove(&ptr);
        self.ring[self.ring_pos] = ptr;
        self.ring_pos = (self.ring_pos + 1) % RING;
    }
}

/// A cursor over one stream.
struct Stream<'a> {
    buf: &'a [u8],
    pos: usize,
    name: &'static str,
}

impl<'a> Stream<'a> {
    #[inline]
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("stream {} ends inside a value", self.name));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(format!("stream {}: value overflows 64 bits", self.name));
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(format!("stream {}: value longer than 10 bytes", self.name));
            }
        }
    }

    fn finished(&self) -> Result<(), String> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(format!(
                "stream {} has {} bytes left over after the last event",
                self.name,
                self.buf.len() - self.pos
            ))
        }
    }
}

/// Decodes frames. Keeps its buffers between frames.
#[derive(Default)]
pub struct PayloadDecoder {
    allocs: Vec<u64>,
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
        const NAMES: [&str; STREAMS] = ["ops", "ts", "sizes", "refs", "ptrs", "aux"];
        let mut start = TABLE_LEN;
        let mut s: [Stream<'_>; STREAMS] = std::array::from_fn(|i| {
            let st = Stream {
                buf: &payload[start..start + lens[i]],
                pos: 0,
                name: NAMES[i],
            };
            start += lens[i];
            st
        });
        let [ops, ts_s, sizes, refs, ptrs, aux] = &mut s;

        self.allocs.clear();
        let mut last_ptr = 0u64;
        let mut ring = [0u64; RING];
        let mut ring_pos = 0usize;
        let mut ts = first_ts;
        out.reserve(count as usize);

        // Pointer decoding, mirroring PayloadEncoder::{consumed, produced, raw, freed}.
        let raw = |ptrs: &mut Stream<'_>, last_ptr: &mut u64| -> Result<u64, String> {
            let d = unzigzag(ptrs.varint()?);
            *last_ptr = last_ptr.wrapping_add(d as u64);
            Ok(*last_ptr)
        };
        macro_rules! consumed {
            ($mode:expr) => {
                match $mode {
                    MODE_NULL => 0,
                    MODE_RAW => raw(ptrs, &mut last_ptr)?,
                    MODE_REF => {
                        let d = refs.varint()?;
                        let n = self.allocs.len() as u64;
                        if d >= n {
                            return Err(format!(
                                "back-reference to {d} allocations ago, but only {n} were made in \
                                 this frame"
                            ));
                        }
                        self.allocs[(n - 1 - d) as usize]
                    }
                    m => return Err(format!("pointer mode {m} is not valid for a freed pointer")),
                }
            };
        }
        macro_rules! produced {
            ($mode:expr, $same:expr) => {{
                let mode: u8 = $mode;
                let p = match mode {
                    MODE_NULL => 0,
                    MODE_RAW => raw(ptrs, &mut last_ptr)?,
                    MODE_SAME => match $same {
                        Some(p) if p != 0 => p,
                        _ => return Err("pointer mode 'same' outside a realloc".to_string()),
                    },
                    m if m >= MODE_RING => {
                        let slot = (ring_pos + RING - 1 - (m - MODE_RING) as usize) % RING;
                        let p = ring[slot];
                        if p == 0 {
                            return Err(format!(
                                "ring reference {} to an empty slot",
                                m - MODE_RING
                            ));
                        }
                        ring[slot] = 0;
                        p
                    }
                    m => return Err(format!("pointer mode {m} is not valid for a result")),
                };
                if p != 0 && mode != MODE_SAME {
                    self.allocs.push(p);
                }
                p
            }};
        }
        macro_rules! freed {
            ($p:expr) => {{
                ring[ring_pos] = $p;
                ring_pos = (ring_pos + 1) % RING;
            }};
        }

        for &op in ops.buf {
            ts = ts
                .checked_add(ts_s.varint()?)
                .ok_or("timestamp overflows 64 bits")?;
            let mode = op & 0x0f;
            let kind = Kind::from_code(op >> 4)
                .ok_or_else(|| format!("unknown event kind code {}", op >> 4))?;
            let event = match kind {
                Kind::Malloc => {
                    let size = sizes.varint()?;
                    Event::Malloc {
                        size,
                        ptr: produced!(mode, None),
                    }
                }
                Kind::Calloc => {
                    let size = sizes.varint()?;
                    let nmemb = aux.varint()?;
                    Event::Calloc {
                        nmemb,
                        size,
                        ptr: produced!(mode, None),
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
                        ptr: produced!(mode, None),
                    }
                }
                Kind::Free => {
                    let ptr = consumed!(mode);
                    if ptr != 0 {
                        freed!(ptr);
                    }
                    Event::Free { ptr }
                }
                Kind::Realloc => {
                    let size = sizes.varint()?;
                    let old_mode = aux.varint()?;
                    if old_mode > 15 {
                        return Err(format!("realloc old-pointer mode {old_mode} is invalid"));
                    }
                    let old_ptr = consumed!(old_mode as u8);
                    let ptr = produced!(mode, Some(old_ptr));
                    if old_ptr != 0 && ptr != old_ptr && (ptr != 0 || size == 0) {
                        freed!(old_ptr);
                    }
                    Event::Realloc { old_ptr, size, ptr }
                }
                Kind::ThreadStart => {
                    let os_tid = aux.varint()?;
                    Event::ThreadStart {
                        os_tid: u32::try_from(os_tid)
                            .map_err(|_| format!("thread id {os_tid} out of range"))?,
                    }
                }
                Kind::ThreadExit => Event::ThreadExit,
                Kind::Fork => {
                    let pid = aux.varint()?;
                    Event::Fork {
                        child_pid: u32::try_from(pid)
                            .map_err(|_| format!("child pid {pid} out of range"))?,
                    }
                }
            };
            if !kind.is_op() && mode != MODE_NULL {
                return Err(format!("{} event with pointer mode {mode}", kind.name()));
            }
            out.push(Timed { ts, event });
        }
        for st in [ts_s, sizes, refs, ptrs, aux] {
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
