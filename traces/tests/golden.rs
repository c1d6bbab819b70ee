//! The golden trace `tests/data/golden.zst` pins format 1.0: every kind of event, every pointer
//! mode, two threads, the header and the trailer. Reading it must give exactly the events
//! below, and writing those events must give exactly its bytes.
//!
//! If a change to the writer changes the file on purpose (a new format version), regenerate it
//! with `ALLOCLAB_BLESS=1 cargo test -p traces --test golden` and update FORMAT.md. If only the
//! zstd library changed, the decoded payloads still match (checked first) and blessing is safe.

use std::path::PathBuf;

use traces::{
    AlignedFn, Clock, Event, Header, MergedReader, Record, Timed, TraceReader, TraceWriter,
};

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden.zst")
}

fn header() -> Header {
    Header {
        writer: "alloclab golden 1.0".into(),
        command_line: vec!["golden".into(), "--every-kind".into()],
        pid: 4242,
        parent_pid: 1,
        start_unix_ns: 1_700_000_000_000_000_000,
        clock: Clock::Monotonic {
            start_monotonic_ns: 123_456_789,
            resolution_ns: 1,
        },
        page_size: 4096,
        host: "golden-host".into(),
        extra: vec![("note".into(), "pins format 1.0".into())],
    }
}

/// Thread 0: every kind and pointer mode. Thread 1: frees thread 0's object (a cross-thread
/// free, a raw pointer in its own frame), and its timestamps are whole microseconds (quantum).
fn threads() -> Vec<Vec<Timed>> {
    let t = |ts, event| Timed { ts, event };
    let a = 0x5555_0000_1000u64;
    let t0 = vec![
        t(100, Event::ThreadStart { os_tid: 4242 }),
        t(150, Event::Malloc { size: 24, ptr: a }), // raw
        t(
            190,
            Event::Malloc {
                size: 40,
                ptr: a + 0x20,
            },
        ), // raw, small delta
        t(
            230,
            Event::Calloc {
                nmemb: 4,
                size: 8,
                ptr: a + 0x50,
            },
        ),
        t(260, Event::Free { ptr: a }), // ref → bin of class 2
        t(300, Event::Malloc { size: 20, ptr: a }), // bin depth 0
        t(
            330,
            Event::Realloc {
                old_ptr: a + 0x20,
                size: 48,
                ptr: a + 0x20,
            },
        ), // same
        t(
            370,
            Event::Realloc {
                old_ptr: a + 0x20,
                size: 600,
                ptr: a + 0x1000,
            },
        ), // moved
        t(
            400,
            Event::Realloc {
                old_ptr: 0,
                size: 50,
                ptr: a + 0x20,
            },
        ), // bin (class 4)
        t(
            420,
            Event::Realloc {
                old_ptr: a + 0x1000,
                size: 0,
                ptr: 0,
            },
        ), // frees
        t(430, Event::Free { ptr: 0 }),
        t(
            440,
            Event::Malloc {
                size: 1 << 50,
                ptr: 0,
            },
        ), // failed
        t(
            450,
            Event::Aligned {
                func: AlignedFn::PosixMemalign,
                align: 64,
                size: 100,
                ptr: a + 0x2000,
            },
        ),
        t(
            460,
            Event::Aligned {
                func: AlignedFn::AlignedAlloc,
                align: 32,
                size: 64,
                ptr: a + 0x2100,
            },
        ),
        t(
            470,
            Event::Aligned {
                func: AlignedFn::Memalign,
                align: 128,
                size: 10,
                ptr: a + 0x2200,
            },
        ),
        t(
            480,
            Event::Aligned {
                func: AlignedFn::Valloc,
                align: 4096,
                size: 5000,
                ptr: a + 0x4000,
            },
        ),
        t(
            490,
            Event::Aligned {
                func: AlignedFn::Pvalloc,
                align: 4096,
                size: 1,
                ptr: a + 0x7000,
            },
        ),
        t(
            500,
            Event::Aligned {
                func: AlignedFn::PosixMemalign,
                align: 3,
                size: 8,
                ptr: 0,
            },
        ), // EINVAL
        t(510, Event::Free { ptr: a + 0x9999 }), // unknown: raw
        t(520, Event::Fork { child_pid: 4343 }),
        t(600, Event::ThreadExit),
    ];
    // Eleven frees of class 2 then a malloc that finds its block at depth 10 (deep bin).
    let mut t2 = Vec::new();
    let b = 0x5555_0010_0000u64;
    let mut ts = 1_000;
    for i in 0..11 {
        ts += 10;
        t2.push(t(
            ts,
            Event::Malloc {
                size: 16,
                ptr: b + i * 0x20,
            },
        ));
    }
    for i in 0..11 {
        ts += 10;
        t2.push(t(ts, Event::Free { ptr: b + i * 0x20 }));
    }
    t2.push(t(ts + 10, Event::Malloc { size: 16, ptr: b }));
    let t1 = vec![
        t(2_000, Event::ThreadStart { os_tid: 4244 }),
        t(3_000, Event::Free { ptr: a + 0x50 }), // cross-thread, raw in this frame
        t(5_000, Event::ThreadExit),
    ];
    vec![t0, t1, t2]
}

fn write(path: &std::path::Path) {
    let mut w = TraceWriter::create(path, &header()).unwrap();
    for (i, evs) in threads().iter().enumerate() {
        w.write_batch(if i == 2 { 0 } else { i as u32 }, evs)
            .unwrap();
    }
    w.finish(0).unwrap();
}

fn expected_records() -> Vec<Record> {
    let th = threads();
    let mut all: Vec<Record> = Vec::new();
    for (i, evs) in th.iter().enumerate() {
        let thread = if i == 2 { 0 } else { i as u32 };
        all.extend(evs.iter().map(|e| Record {
            ts: e.ts,
            thread,
            event: e.event,
        }));
    }
    all.sort_by_key(|r| (r.ts, r.thread));
    all
}

/// (frame header bytes 0..32, decompressed payload) of every frame, and the trailer bytes.
fn decoded_frames(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let hl = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut off = 20 + hl;
    let mut out = vec![(bytes[..off].to_vec(), Vec::new())];
    while off + 44 <= bytes.len() && &bytes[off..off + 4] == b"AFRM" {
        let stored = u32::from_le_bytes(bytes[off + 36..off + 40].try_into().unwrap()) as usize;
        let payload = &bytes[off + 44..off + 44 + stored];
        let raw = if bytes[off + 5] & 1 == 1 {
            payload.to_vec()
        } else {
            zstd::bulk::decompress(payload, 1 << 20).unwrap()
        };
        out.push((bytes[off..off + 32].to_vec(), raw));
        off += 44 + stored;
    }
    out.push((bytes[off..].to_vec(), Vec::new()));
    out
}

#[test]
fn golden_trace_reads_as_pinned() {
    let path = golden_path();
    if std::env::var_os("ALLOCLAB_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write(&path);
    }
    let r = MergedReader::open(&path).expect("tests/data/golden.zst (bless with ALLOCLAB_BLESS=1)");
    assert_eq!(r.header(), &header());
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    let t = r.trailer().unwrap().clone();
    assert_eq!(t.total_events, 47);
    assert_eq!(t.frames, 3);
    assert_eq!(t.dropped_events, 0);
    assert_eq!(t.end_ts, 5_000);
    assert_eq!(
        t.threads
            .iter()
            .map(|s| (s.thread, s.os_tid, s.events, s.frames))
            .collect::<Vec<_>>(),
        vec![(0, 4242, 44, 2), (1, 4244, 3, 1)]
    );
    let got: Vec<Record> = r.map(Result::unwrap).collect();
    assert_eq!(got, expected_records());

    // File order too.
    let mut seq = TraceReader::open(&path).unwrap();
    let mut frame = traces::Frame::default();
    let mut threads = Vec::new();
    while seq.next_frame(&mut frame).unwrap() {
        threads.push((frame.thread, frame.events.len()));
    }
    assert_eq!(threads, vec![(0, 21), (1, 3), (0, 23)]);
}

#[test]
fn writing_the_golden_events_gives_the_golden_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.zst");
    write(&fresh);
    let (want, mut got) = (
        std::fs::read(golden_path()).unwrap(),
        std::fs::read(&fresh).unwrap(),
    );
    // The golden file is a 1.0 trace; later minors only add frame and event kinds (none of which
    // the golden events make), so a writer of a later minor writes the same bytes but the minor.
    assert_eq!(
        &want[10..12],
        &0u16.to_le_bytes(),
        "the golden trace is 1.0"
    );
    assert_eq!(&got[10..12], &traces::FORMAT_MINOR.to_le_bytes());
    got[10..12].copy_from_slice(&want[10..12]);
    let (w, g) = (decoded_frames(&want), decoded_frames(&got));
    assert_eq!(w.len(), g.len(), "frame count");
    for (i, (a, b)) in w.iter().zip(&g).enumerate() {
        assert_eq!(a.0, b.0, "part {i}: header bytes differ");
        assert_eq!(
            a.1, b.1,
            "part {i}: decoded payload differs: the event coding changed"
        );
    }
    assert!(
        want == got,
        "the encoding is unchanged but the compressed bytes differ (a new zstd?): bless the golden file"
    );
}
