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
