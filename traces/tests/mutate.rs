//! The decoder against a second implementation, on mutated real traces.
//!
//! `reference` below decodes an events payload the way FORMAT.md describes it, written from
//! that page alone: plain loops, byte-at-a-time varints, bins as lists. The test takes every
//! frame of the committed traces (`tests/data/golden.zst`, `samples/python-json.trace.zst`,
//! `samples/python-os-calls.trace.zst` with OS call events) and of synthetic traces of several workloads, mutates each payload many times (bit flips,
//! random bytes, insertions, deletions, cuts, stream-length edits, swapped op codes) and
//! requires the crate's decoder to accept exactly the payloads the reference accepts, with the
//! same events. Whole files are mutated too (with their checksums recomputed, so the mutation
//! reaches the decoders, as the `read_trace` fuzz target does): both readers must return a
//! clean error naming the file or the events the reference decodes, without a panic and
//! without an allocation larger than the file could need.
//!
//! Bounded to run in well under 30 s in the test profile:
//! `cargo test -p traces --test mutate -- --nocapture` prints how many mutations ran.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::Cursor;
use std::path::Path;

use traces::synth::{Config, Params, generate};
use traces::{AlignedFn, Event, MergedReader, OsCall, Record, Timed, TraceReader};

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to System unchanged; the bookkeeping touches only a const-initialised
// thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(l.size())));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(n)));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The reference decoder: FORMAT.md, "Events payload", literally.
mod reference {
    use super::*;

    struct Stream<'a> {
        b: &'a [u8],
        pos: usize,
    }

    impl Stream<'_> {
        /// Unsigned LEB128, at most 10 bytes, the value within 64 bits.
        fn varint(&mut self) -> Option<u64> {
            let mut v: u128 = 0;
            for i in 0..10 {
                let b = *self.b.get(self.pos)?;
                self.pos += 1;
                v |= ((b & 0x7f) as u128) << (7 * i);
                if b & 0x80 == 0 {
                    return u64::try_from(v).ok();
                }
            }
            None
        }
        fn byte(&mut self) -> Option<u8> {
            let b = *self.b.get(self.pos)?;
            self.pos += 1;
            Some(b)
        }
        fn done(&self) -> bool {
            self.pos == self.b.len()
        }
    }

    fn class(s: u64) -> usize {
        let c = (s.saturating_add(8 + 15) & !15).max(32);
        if c <= 1040 {
            (c / 16) as usize
        } else {
            let bitlength = 64 - (c - 1).leading_zeros() as usize;
            (66 + bitlength - 11).min(127)
        }
    }

    struct State {
        last: u64,
        allocs: Vec<(u64, u64)>,
        bins: Vec<VecDeque<u64>>,
    }

    impl State {
        fn push_bin(&mut self, ptr: u64, size: u64) {
            let bin = &mut self.bins[class(size)];
            bin.push_front(ptr);
            bin.truncate(32);
        }
    }

    /// Decodes `count` events; `None` if the payload is not valid.
    pub fn decode(payload: &[u8], count: u32, first_ts: u64) -> Option<Vec<Timed>> {
        let mut lens = [0usize; 7];
        for (i, l) in lens.iter_mut().enumerate() {
            *l = u32::from_le_bytes(payload.get(i * 4..i * 4 + 4)?.try_into().unwrap()) as usize;
        }
        if 28 + lens.iter().map(|&l| l as u128).sum::<u128>() != payload.len() as u128 {
            return None;
        }
        let mut at = 28;
        let mut s: Vec<Stream> = lens
            .iter()
            .map(|&l| {
                let st = Stream {
                    b: &payload[at..at + l],
                    pos: 0,
                };
                at += l;
                st
            })
            .collect();
        let ops = s[0].b;
        if ops.len() != count as usize {
            return None;
        }
        let mut st = State {
            last: 0,
            allocs: Vec::new(),
            bins: vec![VecDeque::new(); 128],
        };
        let q = if ops.is_empty() { 1 } else { s[1].varint()? };
        if q == 0 {
            return None;
        }
        let mut ts = first_ts;
        let mut out = Vec::new();
        for &op in ops {
            ts = ts.checked_add(s[1].varint()?.checked_mul(q)?)?;
            let (kind, mode) = (op >> 4, op & 15);
            let event = match kind {
                0 | 1 | 4..=8 => {
                    let size = s[2].varint()?;
                    let aux = if kind == 0 { 0 } else { s[5].varint()? };
                    let bytes = if kind == 1 {
                        aux.saturating_mul(size)
                    } else {
                        size
                    };
                    let ptr = produced(&mut st, &mut s, mode, bytes)?;
                    match kind {
                        0 => Event::Malloc { size, ptr },
                        1 => Event::Calloc {
                            nmemb: aux,
                            size,
                            ptr,
                        },
                        k => Event::Aligned {
                            func: AlignedFn::ALL[k as usize - 4],
                            align: aux,
                            size,
                            ptr,
                        },
                    }
                }
                3 => {
                    let (ptr, i) = consumed(&mut st, &mut s, mode)?;
                    if let Some(i) = i {
                        st.push_bin(ptr, st.allocs[i].1);
                    }
                    Event::Free { ptr }
                }
                2 => {
                    let size = s[2].varint()?;
                    let old_mode = u8::try_from(s[5].varint()?).ok()?;
                    let (old_ptr, i) = consumed(&mut st, &mut s, old_mode)?;
                    let ptr = if mode == 2 {
                        if old_ptr == 0 {
                            return None;
                        }
                        if let Some(i) = i {
                            st.allocs[i].1 = size;
                        }
                        old_ptr
                    } else {
                        let p = produced(&mut st, &mut s, mode, size)?;
                        if p != 0 && p == old_ptr {
                            return None;
                        }
                        p
                    };
                    let freed = old_ptr != 0 && ptr != old_ptr && (ptr != 0 || size == 0);
                    if freed && let Some(i) = i {
                        st.push_bin(old_ptr, st.allocs[i].1);
                    }
                    Event::Realloc { old_ptr, size, ptr }
                }
                9..=11 => {
                    let e = match kind {
                        9 => Event::ThreadStart {
                            os_tid: u32::try_from(s[5].varint()?).ok()?,
                        },
                        10 => Event::ThreadExit,
                        _ => Event::Fork {
                            child_pid: u32::try_from(s[5].varint()?).ok()?,
                        },
                    };
                    if mode != 0 {
                        return None;
                    }
                    e
                }
                // An OS call (1.2): the call in the low nibble, six varints in aux.
                12 => {
                    let call = OsCall::from_code(mode)?;
                    let mut f = [0u64; 6];
                    for v in &mut f {
                        *v = s[5].varint()?;
                    }
                    Event::Os {
                        call,
                        addr: f[0],
                        len: f[1],
                        result: f[2],
                        arg: u32::try_from(f[3]).ok()?,
                        prot: u8::try_from(f[4]).ok()?,
                        err: u8::try_from(f[5]).ok()?,
                    }
                }
                _ => return None,
            };
            out.push(Timed { ts, event });
        }
        // The op stream was read as a slice; every other stream must be used up.
        s[1..].iter().all(Stream::done).then_some(out)
    }

    fn raw(st: &mut State, s: &mut [Stream]) -> Option<u64> {
        let z = s[4].varint()?;
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        st.last = st.last.wrapping_add(d as u64);
        Some(st.last)
    }

    /// A freed pointer or realloc's old pointer: modes 0, 1, 3.
    fn consumed(st: &mut State, s: &mut [Stream], mode: u8) -> Option<(u64, Option<usize>)> {
        match mode {
            0 => Some((0, None)),
            1 => Some((raw(st, s)?, None)),
            3 => {
                let d = s[3].varint()?;
                let n = st.allocs.len() as u64;
                if d >= n {
                    return None;
                }
                let i = (n - 1 - d) as usize;
                Some((st.allocs[i].0, Some(i)))
            }
            _ => None,
        }
    }

    /// An allocation's result: modes 0, 1, 4, 8–15.
    fn produced(st: &mut State, s: &mut [Stream], mode: u8, size: u64) -> Option<u64> {
        let depth = match mode {
            0 => return Some(0),
            1 => {
                let p = raw(st, s)?;
                st.allocs.push((p, size));
                return Some(p);
            }
            4 => {
                let k = s[6].byte()?;
                if !(8..32).contains(&k) {
                    return None;
                }
                k as usize
            }
            8..=15 => mode as usize - 8,
            _ => return None,
        };
        let bin = &mut st.bins[class(size)];
        let p = bin.remove(depth)?;
        if p != 0 {
            st.allocs.push((p, size));
        }
        Some(p)
    }
}

/// A raw events payload with what its frame header says about it.
#[derive(Clone)]
struct Payload {
    raw: Vec<u8>,
    count: u32,
    first_ts: u64,
}

/// The events frames of a trace file, decompressed (FORMAT.md's frame layout).
fn payloads(file: &[u8]) -> Vec<Payload> {
    let hl = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
    let mut off = 20 + hl;
    let mut out = Vec::new();
    while off + 44 <= file.len() && &file[off..off + 4] == b"AFRM" {
        let u32_at = |i: usize| u32::from_le_bytes(file[off + i..off + i + 4].try_into().unwrap());
        let stored = u32_at(36) as usize;
        if file[off + 4] == 1 {
            let raw = zstd::bulk::decompress(&file[off + 44..off + 44 + stored], 64 << 20).unwrap();
            out.push(Payload {
                raw,
                count: u32_at(12),
                first_ts: u64::from_le_bytes(file[off + 16..off + 24].try_into().unwrap()),
            });
        }
        off += 44 + stored;
    }
    out
}

/// xorshift64*: the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random mutation of `p` (its bytes, or what the frame header says about them).
fn mutate(p: &Payload, rng: &mut Rng) -> Payload {
    let mut m = p.clone();
    let n = m.raw.len();
    let stream_start = |m: &Payload, s: usize| {
        28 + (0..s)
            .map(|i| u32::from_le_bytes(m.raw[i * 4..i * 4 + 4].try_into().unwrap()) as usize)
            .sum::<usize>()
    };
    match rng.below(9) {
        // Flip one bit of the streams (not the table: that is mostly a length error).
        0 | 1 => {
            if n > 28 {
                let i = 28 + rng.below(n - 28);
                m.raw[i] ^= 1 << rng.below(8);
            }
        }
        // A random byte.
        2 => {
            let i = rng.below(n);
            m.raw[i] = rng.next() as u8;
        }
        // A byte inserted into, or removed from, one stream, its table length kept right.
        3 | 4 => {
            let s = rng.below(7);
            let len = u32::from_le_bytes(m.raw[s * 4..s * 4 + 4].try_into().unwrap());
            let start = stream_start(&m, s);
            let new_len = if rng.below(2) == 0 {
                m.raw
                    .insert(start + rng.below(len as usize + 1), rng.next() as u8);
                len + 1
            } else if len > 0 {
                m.raw.remove(start + rng.below(len as usize));
                len - 1
            } else {
                len
            };
            m.raw[s * 4..s * 4 + 4].copy_from_slice(&new_len.to_le_bytes());
            if s == 0 {
                m.count = new_len;
            }
        }
        // An op byte replaced by another kind/mode (the most structured field).
        5 => {
            let len = u32::from_le_bytes(m.raw[0..4].try_into().unwrap()) as usize;
            if len > 0 {
                let i = 28 + rng.below(len);
                m.raw[i] = match rng.below(3) {
                    0 => (m.raw[i] & 0xf0) | rng.below(16) as u8,
                    1 => (m.raw[i] & 0x0f) | (rng.below(16) as u8) << 4,
                    _ => rng.next() as u8,
                };
            }
        }
        // The payload cut short.
        6 => m.raw.truncate(rng.below(n)),
        // The event count, or the first timestamp, wrong.
        7 => {
            if rng.below(2) == 0 {
                m.count = (m.count as i64 + rng.below(5) as i64 - 2).max(0) as u32;
            } else {
                m.first_ts = match rng.below(3) {
                    0 => u64::MAX - rng.below(1000) as u64,
                    _ => rng.next(),
                };
            }
        }
        // Several bit flips at once.
        _ => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(n);
                m.raw[i] ^= 1 << rng.below(8);
            }
        }
    }
    m
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![
        (
            "tests/data/golden.zst".to_string(),
            std::fs::read(dir.join("tests/data/golden.zst")).unwrap(),
        ),
        (
            "samples/python-json.trace.zst".to_string(),
            std::fs::read(dir.join("samples/python-json.trace.zst")).unwrap(),
        ),
        (
            "samples/python-os-calls.trace.zst".to_string(),
            std::fs::read(dir.join("samples/python-os-calls.trace.zst")).unwrap(),
        ),
    ];
    // Synthetic workloads reach the kinds and modes a recorded trace may lack (calloc, aligned,
    // deep bins, realloc in place, many threads).
    for w in ["larson", "alignment64", "sh6bench", "mstress"] {
        let cfg = Config::new(
            w,
            &Params {
                ops: Some(3000),
                threads: Some(2),
                seed: 7,
                ..Params::default()
            },
        )
        .unwrap();
        let (_, bytes) = generate(&cfg, Vec::new(), w).unwrap();
        files.push((format!("synth {w}"), bytes));
    }
    files
}

#[test]
fn decoder_agrees_with_the_reference_on_mutated_payloads() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused, mut total) = (0u64, 0u64, 0u64);
    for (name, file) in corpus() {
        let frames = payloads(&file);
        assert!(!frames.is_empty(), "{name}");
        // The unmutated frames decode the same on both paths.
        for p in &frames {
            let ours = traces::__fuzz::decode_payload(&p.raw, p.count, p.first_ts).unwrap();
            assert_eq!(
                Some(ours),
                reference::decode(&p.raw, p.count, p.first_ts),
                "{name}"
            );
        }
        // Large payloads cost more per mutation: a budget in payload bytes per file.
        let bytes: usize = frames.iter().map(|p| p.raw.len()).sum();
        let rounds = (40_000_000 / bytes.max(1)).clamp(200, 40_000);
        for _ in 0..rounds {
            let p = &frames[rng.below(frames.len())];
            let m = mutate(p, &mut rng);
            LARGEST.with(|c| c.set(0));
            let ours = traces::__fuzz::decode_payload(&m.raw, m.count, m.first_ts);
            let largest = LARGEST.with(|c| c.get());
            // Never more than the events the payload could hold (one per op byte).
            let bound = (m.raw.len() + 64) * std::mem::size_of::<Timed>() * 2;
            assert!(
                largest <= bound.max(1 << 16),
                "{name}: allocated {largest} bytes"
            );
            let want = reference::decode(&m.raw, m.count, m.first_ts);
            match (&ours, &want) {
                (Ok(a), Some(b)) => {
                    assert_eq!(a, b, "{name}: both accept, different events");
                    accepted += 1;
                }
                (Err(e), None) => {
                    assert!(!e.is_empty());
                    refused += 1;
                }
                (Ok(_), None) => panic!("{name}: the decoder accepts what the reference refuses"),
                (Err(e), Some(_)) => {
                    panic!("{name}: the decoder refuses ({e}) what the reference accepts")
                }
            }
            total += 1;
        }
    }
    eprintln!(
        "{total} mutated payloads: {accepted} decoded identically by both, {refused} refused by \
         both"
    );
    assert!(
        accepted > total / 50,
        "mutations must also reach valid payloads"
    );
    assert!(refused > total / 4);
}

/// Recomputes the header's and every complete frame's CRC (as the `read_trace` fuzz target).
fn fix_checksums(b: &mut [u8]) {
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    if b.len() < 20 || b[..8] != traces::MAGIC {
        return;
    }
    let n = u32_at(b, 12);
    if n > traces::MAX_HEADER_BYTES as usize || 20 + n > b.len() {
        return;
    }
    let crc = crc32fast::hash(&b[20..20 + n]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    let mut off = 20 + n;
    while off + 44 <= b.len() && &b[off..off + 4] == b"AFRM" {
        let Some(end) = (off + 44)
            .checked_add(u32_at(b, off + 36))
            .filter(|&e| e <= b.len())
        else {
            break;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(&b[off..off + 40]);
        h.update(&b[off + 44..end]);
        let crc = h.finalize();
        b[off + 40..off + 44].copy_from_slice(&crc.to_le_bytes());
        off = end;
    }
}

/// What the reference makes of a whole file, if every frame decodes: the events in global
/// order (by timestamp, then thread, then each thread's order).
fn reference_records(file: &[u8]) -> Option<Vec<Record>> {
    let hl = u32::from_le_bytes(file.get(12..16)?.try_into().unwrap()) as usize;
    let mut off = 20 + hl;
    let mut out = Vec::new();
    while off + 44 <= file.len() && &file[off..off + 4] == b"AFRM" {
        let u32_at = |i: usize| u32::from_le_bytes(file[off + i..off + i + 4].try_into().unwrap());
        let stored = u32_at(36) as usize;
        let end = (off + 44).checked_add(stored)?;
        if file[off + 4] == 1 {
            let raw = zstd::bulk::decompress(file.get(off + 44..end)?, 64 << 20).ok()?;
            let first_ts = u64::from_le_bytes(file[off + 16..off + 24].try_into().unwrap());
            let thread = u32_at(8);
            for e in reference::decode(&raw, u32_at(12), first_ts)? {
                out.push(Record {
                    ts: e.ts,
                    thread,
                    event: e.event,
                });
            }
        }
        off = end;
    }
    let mut seq: Vec<(usize, Record)> = out.into_iter().enumerate().collect();
    seq.sort_by_key(|(i, r)| (r.ts, r.thread, *i));
    Some(seq.into_iter().map(|(_, r)| r).collect())
}

#[test]
fn mutated_files_are_refused_cleanly_or_read_as_the_reference_reads_them() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (mut read, mut compared, mut refused, mut total) = (0u64, 0u64, 0u64, 0u64);
    for (name, file) in corpus() {
        let rounds = (20_000_000 / file.len()).clamp(50, 3_000);
        for _ in 0..rounds {
            let mut b = file.clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(b.len());
                match rng.below(3) {
                    0 => b[i] ^= 1 << rng.below(8),
                    1 => b[i] = rng.next() as u8,
                    _ => b.truncate(i.max(1)),
                }
            }
            fix_checksums(&mut b);
            LARGEST.with(|c| c.set(0));
            let merged = MergedReader::new(Cursor::new(&b[..]), "mutant")
                .and_then(|r| r.collect::<Result<Vec<_>, _>>());
            let seq = TraceReader::new(Cursor::new(&b[..]), "mutant")
                .and_then(|r| r.records().collect::<Result<Vec<_>, _>>());
            let largest = LARGEST.with(|c| c.get());
            // Decoded events of the file, plus a frame's buffers: never what a corrupt length
            // claims (up to 64 MiB).
            let bound = (b.len() * 64).max(8 << 20);
            assert!(largest <= bound, "{name}: allocated {largest} bytes");
            match (merged, seq) {
                (Ok(m), Ok(mut s)) => {
                    // The reference has no cut-file handling: compare whole files only.
                    if let Some(want) = reference_records(&b) {
                        assert_eq!(
                            m, want,
                            "{name}: the merged reader differs from the reference"
                        );
                        compared += 1;
                    }
                    s.sort_by_key(|r| (r.ts, r.thread));
                    let mut sorted = m.clone();
                    sorted.sort_by_key(|r| (r.ts, r.thread));
                    assert_eq!(sorted, s, "{name}: the two readers read different events");
                    read += 1;
                }
                (Err(e), _) | (_, Err(e)) => {
                    let e = e.to_string();
                    assert!(e.starts_with("mutant: byte "), "{name}: {e}");
                    assert!(!e.contains('\n'), "{name}: one line: {e}");
                    refused += 1;
                }
            }
            total += 1;
        }
    }
    eprintln!(
        "{total} mutated files: {read} read by both readers ({compared} of them whole, and read \
         as the reference reads them), {refused} refused"
    );
    assert!(compared > 0 && refused > 0);
}
