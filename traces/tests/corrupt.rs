//! Bad input: empty files, wrong magic, newer versions, cut files, corrupt frames, garbage
//! inside frames, absurd lengths. Each must give one clear error naming the file, the byte
//! offset and what is wrong (exit code 2 from `inspect`), never a panic, never an allocation
//! sized by an unchecked length; a file cut short still yields every complete frame.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

use traces::{Clock, Event, Header, MergedReader, Record, TraceReader, TraceWriter, Warning};

/// Tracks the largest single allocation each thread asks for, so a test can prove that reading
/// a file with absurd lengths never allocates by them.
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

fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|c| c.set(0));
    let r = f();
    (r, LARGEST.with(|c| c.get()))
}

const HEADER_LEN_FIELD: usize = 12;

fn header() -> Header {
    Header {
        writer: "corrupt-test".into(),
        command_line: vec!["t".into()],
        pid: 1,
        parent_pid: 0,
        start_unix_ns: 0,
        clock: Clock::Synthetic,
        page_size: 4096,
        host: "h".into(),
        extra: vec![],
    }
}

/// A trace of 3 threads × 1000 events in frames of 100 events; returns the file's bytes and
/// the events in global order.
fn sample(dir: &Path) -> (PathBuf, Vec<u8>, Vec<Record>) {
    let path = dir.join("good.zst");
    let mut w = TraceWriter::create(&path, &header())
        .unwrap()
        .with_frame_events(100);
    let mut all = Vec::new();
    for i in 0..1000u64 {
        for t in 0..3u32 {
            let ptr = 0x10000 + (t as u64) * 0x100000 + (i % 50) * 64;
            let event = if (i / 50) % 2 == 0 {
                Event::Malloc {
                    size: 16 + i % 200,
                    ptr,
                }
            } else {
                Event::Free { ptr }
            };
            let ts = i * 10 + t as u64;
            w.append(t, ts, event).unwrap();
            all.push(Record {
                ts,
                thread: t,
                event,
            });
        }
    }
    w.finish(0).unwrap();
    all.sort_by_key(|r| (r.ts, r.thread));
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes, all)
}

/// Offsets of the frames (events and trailer) of a valid file.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let hl = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut off = 20 + hl;
    let mut out = Vec::new();
    while off + 44 <= bytes.len() && &bytes[off..off + 4] == b"AFRM" {
        out.push(off);
        let stored = u32::from_le_bytes(bytes[off + 36..off + 40].try_into().unwrap()) as usize;
        off += 44 + stored;
    }
    out
}

/// Rewrites the frame at `off` with `payload` as its stored bytes (and `raw_len`), with a
/// correct CRC: "garbage inside a frame" that passes the checksum.
fn replace_payload(bytes: &[u8], off: usize, payload: &[u8], raw_len: u32) -> Vec<u8> {
    let stored = u32::from_le_bytes(bytes[off + 36..off + 40].try_into().unwrap()) as usize;
    let mut hdr = bytes[off..off + 40].to_vec();
    hdr[32..36].copy_from_slice(&raw_len.to_le_bytes());
    hdr[36..40].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&hdr);
    h.update(payload);
    let mut out = bytes[..off].to_vec();
    out.extend_from_slice(&hdr);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&bytes[off + 44 + stored..]);
    // Keep the footer's trailer offset right, so the frame is the file's only fault.
    let n = out.len();
    let trailer = u64::from_le_bytes(out[n - 16..n - 8].try_into().unwrap());
    let moved = trailer as i64 + payload.len() as i64 - stored as i64;
    out[n - 16..n - 8].copy_from_slice(&(moved as u64).to_le_bytes());
    out
}

/// Fixes up the CRC of the frame at `off` after its header was edited.
fn fix_crc(bytes: &mut [u8], off: usize) {
    let stored = u32::from_le_bytes(bytes[off + 36..off + 40].try_into().unwrap()) as usize;
    let stored = stored.min(bytes.len() - off - 44);
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[off..off + 40]);
    h.update(&bytes[off + 44..off + 44 + stored]);
    let crc = h.finalize();
    bytes[off + 40..off + 44].copy_from_slice(&crc.to_le_bytes());
}

/// Reads `bytes` as a trace file with both readers; returns the merged reader's error text.
fn read_err(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let merged = MergedReader::open(&path).and_then(|r| r.collect::<Result<Vec<_>, _>>());
    let seq = TraceReader::open(&path).and_then(|r| r.records().collect::<Result<Vec<_>, _>>());
    let (m, s) = (
        merged.unwrap_err().to_string(),
        seq.unwrap_err().to_string(),
    );
    assert_eq!(m, s, "both readers report the same problem");
    m
}

fn inspect(path: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_inspect"))
        .arg(path)
        .output()
        .expect("run inspect");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `inspect` exits 2 with exactly one line on stderr, which names the file.
fn assert_inspect_fails(dir: &Path, name: &str, expect: &str) {
    let path = dir.join(name);
    let (code, _, err) = inspect(&path);
    assert_eq!(code, 2, "inspect {name}: stderr {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains(expect), "expected {expect:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = read_err(dir.path(), "empty.zst", b"");
    assert!(
        e.ends_with("byte 0: the file is empty, not an alloclab trace"),
        "{e}"
    );
    assert_inspect_fails(dir.path(), "empty.zst", "the file is empty");
}

#[test]
fn wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let e = read_err(
        dir.path(),
        "text.zst",
        b"hello, this is not a trace at all\n",
    );
    assert!(e.contains("byte 0: not an alloclab trace"), "{e}");
    // A real zstd file (what a user might mistake for a trace).
    let z = zstd::bulk::compress(b"some data", 3).unwrap();
    let e = read_err(dir.path(), "plain.zst", &z);
    assert!(e.contains("not an alloclab trace"), "{e}");
    assert_inspect_fails(dir.path(), "plain.zst", "not an alloclab trace");
}

#[test]
fn newer_format_version() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut bytes, _) = sample(dir.path());
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    bytes[10..12].copy_from_slice(&3u16.to_le_bytes());
    let e = read_err(dir.path(), "v2.zst", &bytes);
    assert!(
        e.contains(&format!(
            "byte 8: trace format version 2.3 is not supported by this reader (format 1.{})",
            traces::FORMAT_MINOR
        )),
        "{e}"
    );
    assert_inspect_fails(dir.path(), "v2.zst", "version 2.3");
}

/// A file of a newer minor may hold events this reader cannot decode (1.2 added OS calls, which
/// a 1.1 reader cannot): it is refused at its header, by both readers and `inspect`, with one
/// line naming the versions. Older minors are read.
#[test]
fn newer_minor_version_is_refused_and_older_ones_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut bytes, all) = sample(dir.path());
    let newer = traces::FORMAT_MINOR + 1;
    bytes[10..12].copy_from_slice(&newer.to_le_bytes());
    let want = format!(
        "byte 8: trace format version 1.{newer} is not supported by this reader (format 1.{}); \
         use the alloclab version that wrote it",
        traces::FORMAT_MINOR
    );
    let e = read_err(dir.path(), "newer.zst", &bytes);
    assert!(e.contains(&want), "{e}");
    let path = dir.path().join("newer.zst");
    let seq = TraceReader::open(&path).err().expect("refused").to_string();
    assert!(seq.contains(&want), "{seq}");
    let (code, out, err) = inspect(&path);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&want), "{err}");
    for older in 0..=traces::FORMAT_MINOR {
        bytes[10..12].copy_from_slice(&older.to_le_bytes());
        let path = dir.path().join(format!("v1.{older}.zst"));
        std::fs::write(&path, &bytes).unwrap();
        let got: Vec<Record> = MergedReader::open(&path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, all, "1.{older}");
    }
}

#[test]
fn cut_everywhere_keeps_every_complete_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, _) = sample(dir.path());
    let frames = frame_offsets(&bytes);
    let header_end = frames[0];
    let trailer = *frames.last().unwrap();
    let path = dir.path().join("cut.zst");
    // Every cut point inside the header is an error; every cut after it yields exactly the
    // frames that end before the cut, and a warning that counts the bytes lost.
    for cut in (0..bytes.len())
        .step_by(7)
        .chain([header_end, trailer, bytes.len() - 1])
    {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let r = MergedReader::open(&path);
        if cut < header_end {
            let e = r.err().expect("cut header must fail").to_string();
            assert!(
                e.contains("ends inside the trace header") || e.contains("empty"),
                "cut {cut}: {e}"
            );
            continue;
        }
        let r = r.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let complete: Vec<usize> = frames
            .iter()
            .copied()
            .filter(|&o| o < trailer)
            .zip(frames.iter().skip(1).copied())
            .filter(|&(_, end)| end <= cut)
            .map(|(o, _)| o)
            .collect();
        assert_eq!(r.frames(), complete.len() as u64, "cut at {cut}");
        let expect_events: u64 = complete
            .iter()
            .map(|&o| u32::from_le_bytes(bytes[o + 12..o + 16].try_into().unwrap()) as u64)
            .sum();
        assert_eq!(r.total_events(), expect_events, "cut at {cut}");
        let warnings = r.warnings().to_vec();
        let n = r.map(Result::unwrap).count() as u64;
        assert_eq!(n, expect_events, "cut at {cut}");
        if cut < bytes.len() - 16 {
            let lost_from = complete.last().map_or(header_end, |&o| {
                frames[frames.iter().position(|&f| f == o).unwrap() + 1]
            });
            assert!(
                matches!(warnings.as_slice(), [Warning::Truncated { offset, bytes_lost, .. }]
                    if *offset as usize == lost_from && *bytes_lost as usize == cut - lost_from),
                "cut at {cut}: {warnings:?}"
            );
        }
    }
}

#[test]
fn cut_file_through_inspect_warns_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, _) = sample(dir.path());
    let frames = frame_offsets(&bytes);
    let cut = frames[5] + 100; // inside the sixth frame
    let path = dir.path().join("killed.zst");
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let (code, out, err) = inspect(&path);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning"), "{err}");
    assert!(
        err.contains(&format!("byte {}: the trace is cut short", frames[5])),
        "{err}"
    );
    assert!(err.contains("the last 100 bytes"), "{err}");
    assert!(err.contains("100 events lost"), "{err}");
    assert!(out.contains("CUT SHORT"), "{out}");
    assert!(out.contains("500 events"), "5 frames of 100 events: {out}");
}

#[test]
fn corrupted_frame_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, _) = sample(dir.path());
    let frames = frame_offsets(&bytes);
    // Flip one bit in the payload of the third frame, then in its header.
    let mut b = bytes.clone();
    b[frames[2] + 60] ^= 0x10;
    let e = read_err(dir.path(), "flip.zst", &b);
    assert!(
        e.contains(&format!("byte {}: frame checksum mismatch", frames[2])),
        "{e}"
    );
    assert_inspect_fails(dir.path(), "flip.zst", "frame checksum mismatch");
    // A flipped header bit that keeps the fields plausible is caught by the checksum…
    let mut b = bytes.clone();
    b[frames[2] + 16] ^= 0x01; // low bit of first_ts
    let e = read_err(dir.path(), "flip2.zst", &b);
    assert!(
        e.contains(&format!("byte {}: frame checksum", frames[2])),
        "{e}"
    );
    // …one that makes them impossible, by the range checks that run before any allocation.
    let mut b = bytes.clone();
    b[frames[2] + 20] ^= 0x01; // bit 32 of first_ts: now after last_ts
    let e = read_err(dir.path(), "flip3.zst", &b);
    assert!(
        e.contains(&format!(
            "byte {}: corrupt frame header: first timestamp",
            frames[2]
        )),
        "{e}"
    );
    // Frame magic destroyed: the file is corrupt from there.
    let mut b = bytes.clone();
    b[frames[3]..frames[3] + 4].copy_from_slice(b"XXXX");
    let e = read_err(dir.path(), "magic.zst", &b);
    assert!(
        e.contains(&format!(
            "byte {}: expected a frame, found bytes 0x58585858",
            frames[3]
        )),
        "{e}"
    );
    // Header checksum.
    let mut b = bytes.clone();
    b[25] ^= 0x40;
    let e = read_err(dir.path(), "hdr.zst", &b);
    assert!(e.contains("byte 20: header checksum mismatch"), "{e}");
}

#[test]
fn garbage_inside_a_frame_with_a_valid_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, _) = sample(dir.path());
    let frames = frame_offsets(&bytes);
    let f = frames[1];
    // Not zstd at all.
    let b = replace_payload(&bytes, f, b"this is not zstd data", 100);
    let e = read_err(dir.path(), "notzstd.zst", &b);
    assert!(
        e.contains(&format!("byte {f}: frame does not decompress")),
        "{e}"
    );
    assert_inspect_fails(dir.path(), "notzstd.zst", "does not decompress");
    // Valid zstd, garbage events: random bytes with a plausible stream table.
    let mut raw = Vec::new();
    for len in [100u32, 50, 50, 0, 0, 0, 0] {
        raw.extend_from_slice(&len.to_le_bytes());
    }
    raw.extend((0..200u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0xF0));
    let z = zstd::bulk::compress(&raw, 1).unwrap();
    let b = replace_payload(&bytes, f, &z, raw.len() as u32);
    let e = read_err(dir.path(), "garbage.zst", &b);
    assert!(
        e.contains(&format!("byte {f}: malformed events in frame")),
        "{e}"
    );
    // Decompresses to a different length than the header says.
    let b = replace_payload(&bytes, f, &z, raw.len() as u32 + 1);
    let e = read_err(dir.path(), "len.zst", &b);
    assert!(e.contains("frame does not decompress"), "{e}");
    // Back-reference beyond the frame's allocations.
    let mut raw = Vec::new();
    for len in [1u32, 2, 0, 1, 0, 0, 0] {
        raw.extend_from_slice(&len.to_le_bytes());
    }
    raw.extend_from_slice(&[0x33, 1, 0, 5]); // free, mode ref; ts quantum 1, delta 0; ref 5
    let z = zstd::bulk::compress(&raw, 1).unwrap();
    let mut b = replace_payload(&bytes, f, &z, raw.len() as u32);
    b[f + 12..f + 16].copy_from_slice(&1u32.to_le_bytes());
    fix_crc(&mut b, f);
    let e = read_err(dir.path(), "ref.zst", &b);
    assert!(e.contains("back-reference to 5 allocations ago"), "{e}");
}

#[test]
fn absurd_lengths_are_refused_without_allocating_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, _) = sample(dir.path());
    let frames = frame_offsets(&bytes);
    let f = frames[0];
    let mut cases: Vec<(&str, Vec<u8>, String)> = Vec::new();

    let mut b = bytes.clone();
    b[HEADER_LEN_FIELD..HEADER_LEN_FIELD + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push((
        "hdrlen",
        b,
        "byte 12: header length 4294967295 exceeds the limit".into(),
    ));

    for (field, at, what) in [
        ("raw", 32, "payload length 4294967295 exceeds the limit"),
        ("stored", 36, "stored length 4294967295 exceeds the limit"),
        ("count", 12, "event count 4294967295 exceeds the limit"),
    ] {
        let mut b = bytes.clone();
        b[f + at..f + at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        fix_crc(&mut b, f);
        cases.push((field, b, format!("byte {f}: corrupt frame header: {what}")));
    }
    // Within the limits but larger than the file: not an allocation of 60 MiB. With the rest
    // of the file after it, a corrupt length; with nothing after it, a frame cut short.
    let mut b = bytes.clone();
    b[f + 36..f + 40].copy_from_slice(&(60u32 << 20).to_le_bytes());
    fix_crc(&mut b, f);
    let path = dir.path().join("bigstored.zst");
    for (cut, corrupt) in [(b.len(), true), (f + 44 + 100, false)] {
        std::fs::write(&path, &b[..cut]).unwrap();
        let (read, largest) = largest_allocation_during(|| {
            let mut r = TraceReader::open(&path)?;
            let mut fr = traces::Frame::default();
            while r.next_frame(&mut fr)? {}
            Ok::<_, traces::TraceError>(r.warnings().to_vec())
        });
        if corrupt {
            let e = read.unwrap_err().to_string();
            assert!(e.contains(&format!("byte {f}: corrupt frame header: stored length 62914560 runs past the end of the file, yet a valid frame starts")), "{e}");
        } else {
            let warnings = read.unwrap();
            assert!(
                matches!(warnings[..], [Warning::Truncated { .. }]),
                "{warnings:?}"
            );
        }
        assert!(largest < 4 << 20, "largest allocation {largest} bytes");
    }

    for (name, b, expect) in cases {
        let (e, largest) = largest_allocation_during(|| read_err(dir.path(), name, &b));
        assert!(e.contains(&expect), "{name}: expected {expect:?} in {e}");
        assert!(
            largest < 4 << 20,
            "{name}: largest allocation {largest} bytes"
        );
        assert_inspect_fails(dir.path(), name, "exceeds the limit");
    }
}

#[test]
fn data_after_the_footer() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut bytes, _) = sample(dir.path());
    let len = bytes.len();
    bytes.extend_from_slice(b"extra");
    let e = read_err(dir.path(), "tail.zst", &bytes);
    assert!(
        e.contains(&format!(
            "byte {len}: corrupt frame header: unexpected data after the end"
        )),
        "{e}"
    );
}

#[test]
fn missing_file_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = inspect(&dir.path().join("nope.zst"));
    assert_eq!(code, 2);
    assert!(
        err.contains("nope.zst: byte 0: I/O error: No such file or directory"),
        "{err}"
    );
    let (code, _, err) = inspect(dir.path());
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Found by `cargo fuzz run read_trace` (with `-malloc_limit_mb=32`): a frame whose header
/// claims a 32 MiB raw payload — within the 64 MiB limit — over 131 stored bytes that are not a
/// valid zstd frame. The reader reserved the claimed length before decompressing anything.
#[test]
fn fuzz_raw_len_larger_than_the_zstd_data_is_refused_without_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-raw-len-alloc.bin"),
    )
    .unwrap();
    let (e, largest) =
        largest_allocation_during(|| read_err(dir.path(), "fuzz-raw-len-alloc.bin", &bytes));
    assert!(e.contains("byte 118: frame does not decompress"), "{e}");
    assert!(largest < 4 << 20, "largest allocation {largest} bytes");

    // The same with a valid zstd frame: golden's first frame claiming 64 MiB.
    let mut b =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden.zst")).unwrap();
    let f = frame_offsets(&b)[0];
    b[f + 32..f + 36].copy_from_slice(&(64u32 << 20).to_le_bytes());
    fix_crc(&mut b, f);
    let (e, largest) = largest_allocation_during(|| read_err(dir.path(), "claims64m.zst", &b));
    assert!(
        e.contains(&format!("byte {f}: frame does not decompress")),
        "{e}"
    );
    assert!(largest < 4 << 20, "largest allocation {largest} bytes");
}

/// A damaged kind byte is a corrupt frame (exit 2), never "a frame of a newer kind" whose
/// events are silently skipped: the checksum is checked before the kind is trusted.
#[test]
fn a_damaged_kind_byte_is_corruption_not_an_unknown_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, _) = sample(dir.path());
    let frames = frame_offsets(&bytes);
    let f = frames[2];
    for kind in (0..=255u8).filter(|&k| k != 1) {
        let mut b = bytes.clone();
        b[f + 4] = kind;
        let e = read_err(dir.path(), "kind.zst", &b);
        assert!(
            e.contains(&format!("byte {f}: frame checksum mismatch")),
            "kind {kind}: {e}"
        );
        if kind.is_power_of_two() || kind == 3 || kind == 0x81 {
            assert_inspect_fails(dir.path(), "kind.zst", "frame checksum mismatch");
        }
    }
    // The trailer's kind byte too.
    let t = *frames.last().unwrap();
    let mut b = bytes.clone();
    b[t + 4] = 3;
    let e = read_err(dir.path(), "tkind.zst", &b);
    assert!(
        e.contains(&format!("byte {t}: frame checksum mismatch")),
        "{e}"
    );
}

/// A frame of a kind this reader does not know, with a valid checksum (what a newer minor
/// version writes), is skipped with a warning, and every event is still read.
#[test]
fn an_intact_frame_of_an_unknown_kind_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, all) = sample(dir.path());
    let frames = frame_offsets(&bytes);
    let f = frames[4];
    let body = b"a frame kind from the future";
    let mut hdr = [0u8; 40];
    hdr[0..4].copy_from_slice(b"AFRM");
    hdr[4] = 9;
    hdr[5] = 1; // stored uncompressed
    hdr[32..36].copy_from_slice(&(body.len() as u32).to_le_bytes());
    hdr[36..40].copy_from_slice(&(body.len() as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&hdr);
    h.update(body);
    let mut b = bytes[..f].to_vec();
    b.extend_from_slice(&hdr);
    b.extend_from_slice(&h.finalize().to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&bytes[f..]);
    let n = b.len();
    let trailer = u64::from_le_bytes(b[n - 16..n - 8].try_into().unwrap()) + 44 + body.len() as u64;
    b[n - 16..n - 8].copy_from_slice(&trailer.to_le_bytes());
    let path = dir.path().join("newer.zst");
    std::fs::write(&path, &b).unwrap();
    let r = MergedReader::open(&path).unwrap();
    assert_eq!(
        r.warnings(),
        &[Warning::UnknownFrameKind {
            offset: f as u64,
            kind: 9
        }]
    );
    let got: Vec<Record> = r.map(Result::unwrap).collect();
    assert_eq!(got, all);
    let mut seq = TraceReader::open(&path).unwrap().records();
    let n = seq.by_ref().map(Result::unwrap).count();
    assert_eq!(n, all.len());
    assert_eq!(
        seq.reader().warnings(),
        &[Warning::UnknownFrameKind {
            offset: f as u64,
            kind: 9
        }]
    );
    let (code, _, err) = inspect(&path);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("byte {f}: skipped a frame of unknown kind 9")),
        "{err}"
    );
}

/// A damaged high byte of a stored length makes the frame run past the end of the file. That
/// is not a file cut short (which would lose every event after it, exit 0) when whole valid
/// frames, or the file's footer, follow: it is a corrupt frame.
#[test]
fn a_stored_length_past_the_end_with_frames_after_it_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, _) = sample(dir.path());
    let frames = frame_offsets(&bytes);
    let trailer = *frames.last().unwrap();
    for (f, follows) in [
        (frames[2], "a valid frame starts"),
        (frames[frames.len() - 2], "a valid frame starts"),
        (trailer, "the file ends with a trace footer"),
    ] {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[f + 39] ^= 1 << bit;
            if f == trailer {
                // The trailer is stored uncompressed: its two lengths must stay equal to get
                // this far.
                b[f + 35] ^= 1 << bit;
            }
            let name = format!("len{f}-{bit}.zst");
            let e = read_err(dir.path(), &name, &b);
            if bit < 3 && (f != trailer || bit < 2) {
                // Within the 64 MiB limit: only what follows tells corruption from a cut.
                assert!(
                    e.contains(&format!("byte {f}: corrupt frame header: stored length"))
                        && e.contains(follows)
                        && e.ends_with("the length is corrupt"),
                    "bit {bit} of frame {f}'s length: {e}"
                );
                assert_inspect_fails(dir.path(), &name, "the length is corrupt");
            } else {
                assert!(e.contains("exceeds the limit"), "{e}");
            }
        }
    }
    // A real cut inside the same frame is still a cut (exit 0, a warning).
    let path = dir.path().join("cut.zst");
    std::fs::write(&path, &bytes[..frames[3] - 10]).unwrap();
    let (code, _, err) = inspect(&path);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("byte {}: the trace is cut short", frames[2])),
        "{err}"
    );
}

/// The fault class "corrupted frames of every field": every byte of the file header, of the
/// headers of an events frame at the start, middle and end and of the trailer frame, and of
/// the footer, damaged three ways (low bit, high bit, all bits). Each damaged file is either
/// refused by both readers and by `inspect` with one line naming the file and the byte (exit
/// 2), or — only where the damage is harmless by the format's rules (an older minor version)
/// — read exactly as the original.
#[test]
fn every_header_field_of_the_file_and_its_frames_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes, all) = sample(dir.path());
    let frames = frame_offsets(&bytes);
    let header_end = frames[0];
    let n = bytes.len();
    let mut regions: Vec<(&str, std::ops::Range<usize>)> = vec![("file header", 0..header_end)];
    for (what, f) in [
        ("first events frame", frames[0]),
        ("middle events frame", frames[frames.len() / 2]),
        ("last events frame", frames[frames.len() - 2]),
        ("trailer frame", frames[frames.len() - 1]),
    ] {
        regions.push((what, f..f + 44));
    }
    regions.push(("footer", n - 16..n));
    let path = dir.path().join("field.zst");
    let mut cases = 0;
    for (what, range) in regions {
        for i in range {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                std::fs::write(&path, &b).unwrap();
                let merged =
                    MergedReader::open(&path).and_then(|r| r.collect::<Result<Vec<_>, _>>());
                let seq = TraceReader::open(&path)
                    .and_then(|r| r.records().collect::<Result<Vec<_>, _>>());
                let (code, _, err) = inspect(&path);
                cases += 1;
                let minor = u16::from_le_bytes([b[10], b[11]]);
                if (10..12).contains(&i) && minor <= traces::FORMAT_MINOR {
                    // An older minor version: read (the file holds nothing it lacks).
                    assert_eq!(merged.unwrap(), all, "{what} byte {i}");
                    assert_eq!(code, 0, "{what} byte {i}: {err}");
                    continue;
                }
                let at = format!("{}: byte ", path.display());
                for (reader, r) in [
                    ("merged", merged.map(|_| ())),
                    ("sequential", seq.map(|_| ())),
                ] {
                    let e = r
                        .err()
                        .unwrap_or_else(|| panic!("{what} byte {i} ^ {mask:#x}: {reader} read it"))
                        .to_string();
                    assert!(e.starts_with(&at), "{what} byte {i}: {reader}: {e}");
                }
                assert_eq!(code, 2, "{what} byte {i} ^ {mask:#x}: inspect: {err}");
                assert_eq!(err.lines().count(), 1, "{what} byte {i}: {err}");
                assert!(err.contains(&at), "{what} byte {i}: {err}");
                assert!(!err.contains("panicked"), "{err}");
            }
        }
    }
    assert!(cases > 600, "{cases} cases");
}
