//! The reader's memory is bounded by the frames it holds, not by the trace's size: `inspect`
//! (merged reader with read-ahead) on a trace of 12M events — 480 MB decoded — stays within a
//! fixed budget, and within a few MB of what it needs for a trace ten times smaller.
//! (Its own test binary: it reads the peak RSS of its only child from getrusage.)

use std::process::Command;

use traces::{Event, Header, TraceWriter};

/// Writes `events` events over 8 threads, each churning 2048 slots (bounded live set, so the
/// inspector's own tables stay small and only the reader's buffers could grow).
fn write_trace(path: &std::path::Path, events: u64) {
    let mut w = TraceWriter::create(path, &Header::for_this_process("memory-test")).unwrap();
    let threads = 8u64;
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut slots = vec![0u64; (threads * 2048) as usize];
    for i in 0..events / 2 / threads {
        for t in 0..threads {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let s = (t * 2048 + state % 2048) as usize;
            let ts = i * 100 + t;
            if slots[s] != 0 {
                w.append(t as u32, ts, Event::Free { ptr: slots[s] })
                    .unwrap();
            }
            let ptr = 0x7000_0000_0000 + (s as u64) * 0x10000 + (i % 7) * 16;
            slots[s] = ptr;
            w.append(
                t as u32,
                ts,
                Event::Malloc {
                    size: 16 + state % 4000,
                    ptr,
                },
            )
            .unwrap();
        }
    }
    w.finish(0).unwrap();
}

/// Peak RSS in KiB of `inspect trace`, run as a child; returns it with the child's output.
fn inspect_peak_kib(path: &std::path::Path) -> (i64, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_inspect"))
        .args([path.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SAFETY: rusage is plain integers, for which all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer; RUSAGE_CHILDREN reports waited-for children.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    (
        ru.ru_maxrss,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn reading_memory_does_not_grow_with_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (small, big) = (dir.path().join("small.zst"), dir.path().join("big.zst"));
    write_trace(&small, 1_200_000);
    write_trace(&big, 12_000_000);
    // RUSAGE_CHILDREN's maxrss is the largest child so far: measure the small trace first.
    let (small_kib, _) = inspect_peak_kib(&small);
    let (big_kib, json) = inspect_peak_kib(&big);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let events = v["events"].as_u64().unwrap();
    assert!(events > 11_900_000, "{events} events");
    let decoded_mib = (events * std::mem::size_of::<traces::Timed>() as u64) >> 20;
    let big_mib = big_kib / 1024;
    eprintln!(
        "inspect peak RSS: {} MiB on {} events (decoded size {decoded_mib} MiB), {} MiB on a \
         ten times smaller trace",
        big_mib,
        events,
        small_kib / 1024
    );
    assert!(
        big_mib < 160,
        "peak RSS {big_mib} MiB on a {decoded_mib} MiB trace"
    );
    assert!(
        big_kib < small_kib + 48 * 1024,
        "peak RSS grows with the trace: {small_kib} KiB → {big_kib} KiB"
    );
}

#[path = "../benches/workloads/peak.rs"]
mod peak;

/// `frames` frames of one event each, over 4 threads with a live set of 4 objects.
fn write_tiny_frames(path: &std::path::Path, frames: u64) {
    let mut w = TraceWriter::create(path, &Header::for_this_process("memory-test"))
        .unwrap()
        .with_frame_events(1);
    for i in 0..frames {
        let t = (i % 4) as u32;
        let ptr = 0x7000_0000 + t as u64 * 0x100;
        let event = if (i / 4) % 2 == 0 {
            Event::Malloc { size: 32, ptr }
        } else {
            Event::Free { ptr }
        };
        w.append(t, i, event).unwrap();
    }
    w.finish(0).unwrap();
}

/// Reading memory does not grow with the number of frames either (it did by ~135 bytes per
/// frame: an index entry, a copy per thread and a read-ahead order per frame). Long recordings
/// flush every 100 ms, so traces of many small frames are the common shape.
#[test]
fn reading_memory_does_not_grow_with_the_number_of_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (small, big) = (dir.path().join("small.zst"), dir.path().join("big.zst"));
    write_tiny_frames(&small, 40_000);
    write_tiny_frames(&big, 400_000);
    let inspect = |p: &std::path::Path| {
        let (kib, code) =
            peak::peak_rss_kib(Command::new(env!("CARGO_BIN_EXE_inspect")).arg(p)).unwrap();
        assert_eq!(code, Some(0), "inspect {}", p.display());
        kib
    };
    let (small_kib, big_kib) = (inspect(&small), inspect(&big));
    eprintln!(
        "inspect peak RSS: {small_kib} KiB on 40 000 one-event frames, {big_kib} KiB on 400 000"
    );
    // 360 000 more frames at 135 bytes each would be 46 MiB more.
    assert!(
        big_kib < small_kib + 6 * 1024,
        "peak RSS grows with the frames: {small_kib} KiB → {big_kib} KiB"
    );
}
