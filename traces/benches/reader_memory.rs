//! Reader memory against the number of frames: peak RSS of `inspect` on 1M frames of one
//! event each (the shape of a long recording that flushes often), beside the same events in
//! default-size frames and a ten times smaller trace of tiny frames.
//!
//! `cargo bench -p traces --bench reader_memory` prints the figures (median of 3 runs each,
//! interleaved); traces/README.md quotes them.

#[path = "workloads/peak.rs"]
mod peak;

use std::path::Path;
use std::process::Command;

use traces::{Event, Header, TraceWriter};

/// `events` events over 4 threads with a live set of 4 objects, in frames of `per_frame`.
fn write(path: &Path, events: u64, per_frame: usize) {
    let mut w = TraceWriter::create(path, &Header::for_this_process("reader-memory-bench"))
        .unwrap()
        .with_frame_events(per_frame);
    for i in 0..events {
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

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("1M events, 1 event/frame", 1_000_000u64, 1usize),
        ("100k events, 1 event/frame", 100_000, 1),
        (
            "1M events, default frames",
            1_000_000,
            traces::DEFAULT_FRAME_EVENTS,
        ),
    ];
    let paths: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, &(_, events, per_frame))| {
            let p = dir.path().join(format!("t{i}.zst"));
            write(&p, events, per_frame);
            p
        })
        .collect();
    let mut kib: Vec<Vec<u64>> = vec![Vec::new(); cases.len()];
    for _ in 0..3 {
        for (i, p) in paths.iter().enumerate() {
            let (k, code) =
                peak::peak_rss_kib(Command::new(env!("CARGO_BIN_EXE_inspect")).arg(p)).unwrap();
            assert_eq!(code, Some(0), "inspect {}", p.display());
            kib[i].push(k);
        }
    }
    println!("inspect peak RSS (median of 3, KiB)");
    for (i, (name, _, _)) in cases.iter().enumerate() {
        kib[i].sort_unstable();
        let bytes = std::fs::metadata(&paths[i]).unwrap().len();
        println!(
            "  {name:<30} {:>8} KiB   (file {:.1} MiB)",
            kib[i][1],
            bytes as f64 / (1 << 20) as f64
        );
    }
    let per_frame = (kib[0][1] as f64 - kib[1][1] as f64) * 1024.0 / 900_000.0;
    println!("  growth from 100k to 1M one-event frames: {per_frame:.1} bytes per frame");
}
