//! `replay --heap-map`: the real binary's heap-map pass under real allocators — the address
//! trace read back with the traces reader, the mappings file with Python Polars — and its bad
//! input.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use results_schema::Row;
use results_schema::heapmap::{self as hm, MappingRow};
use traces::{Event, Header, MergedReader, TraceWriter};

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("heapmap-test-")
        .tempdir()
        .unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn python_polars() -> String {
    let py = std::env::var("ALLOCLAB_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/python").into());
    let ok = Command::new(&py)
        .args(["-c", "import polars"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{py} cannot import polars: run scripts/install-deps");
    py
}

/// One row of a mappings file as Polars reads it.
#[derive(Debug, Clone, Copy)]
struct Run {
    snapshot: u32,
    t_ns: u64,
    start: u64,
    end: u64,
    resident: bool,
}

/// Reads a mappings file with Python Polars: checks its columns against `MappingRow` and
/// returns its rows.
fn read_maps(path: &Path, allocator: &str, trace: &str) -> Vec<Run> {
    let script = r#"
import sys, polars as pl
d = pl.read_parquet(sys.argv[1])
print(",".join(f"{n}:{t}" for n, t in d.schema.items()))
print(",".join(sorted(set(d["allocator"]))), ",".join(sorted(set(d["trace_name"]))))
for r in d.select("snapshot", "t_ns", "start", "end", "resident").iter_rows():
    print(r[0], r[1], r[2], r[3], int(r[4]))
"#;
    let o = Command::new(python_polars())
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines();
    let polars = |t: &str| match t {
        "UInt32" => "UInt32",
        "UInt64" => "UInt64",
        "Utf8" => "String",
        "Boolean" => "Boolean",
        other => panic!("type {other}"),
    };
    let want: Vec<String> = MappingRow::COLUMNS
        .iter()
        .map(|c| format!("{}:{}", c.name, polars(c.ty.schema_name())))
        .collect();
    assert_eq!(lines.next().unwrap(), want.join(","));
    assert_eq!(lines.next().unwrap(), format!("{allocator} {trace}"));
    lines
        .map(|l| {
            let v: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
            Run {
                snapshot: v[0] as u32,
                t_ns: v[1],
                start: v[2],
                end: v[3],
                resident: v[4] == 1,
            }
        })
        .collect()
}

/// The runs of each snapshot, in snapshot order.
fn snapshots(runs: &[Run]) -> Vec<(u64, Vec<Run>)> {
    let mut out: Vec<(u64, Vec<Run>)> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if i == 0 || runs[i - 1].snapshot != r.snapshot {
            assert_eq!(
                r.snapshot as usize,
                out.len(),
                "snapshots are numbered 0, 1, …"
            );
            out.push((r.t_ns, Vec::new()));
        }
        out.last_mut().unwrap().1.push(*r);
    }
    for w in out.windows(2) {
        assert!(w[0].0 <= w[1].0, "snapshots in time order");
    }
    out
}

/// Bytes of `[lo, hi)` covered by runs (resident only, or all).
fn covered(runs: &[Run], lo: u64, hi: u64, resident_only: bool) -> u64 {
    runs.iter()
        .filter(|r| r.resident || !resident_only)
        .map(|r| r.end.min(hi).saturating_sub(r.start.max(lo)))
        .sum()
}

const BIG: u64 = 1 << 20;
const SMALL: usize = 50;
const FREE_BIG_NS: u64 = 150_000_000;
const END_NS: u64 = 300_000_000;

/// One thread: a 1 MiB block at 0, 50 small blocks in the first ms, the big one freed at
/// 150 ms, the small ones at 300 ms — replayed with --pace, so snapshots fall on both sides.
fn paced_trace(dir: &Path) -> PathBuf {
    let path = dir.join("paced.trace.zst");
    let mut w = TraceWriter::create(&path, &Header::for_this_process("heapmap test")).unwrap();
    w.append(
        0,
        0,
        Event::Malloc {
            size: BIG,
            ptr: 0x1000_0000,
        },
    )
    .unwrap();
    for i in 0..SMALL as u64 {
        let ptr = 0x2000_0000 + i * 64;
        w.append(0, 10_000 + i * 1000, Event::Malloc { size: 48, ptr })
            .unwrap();
    }
    w.append(0, FREE_BIG_NS, Event::Free { ptr: 0x1000_0000 })
        .unwrap();
    for i in 0..SMALL as u64 {
        w.append(
            0,
            END_NS + i,
            Event::Free {
                ptr: 0x2000_0000 + i * 64,
            },
        )
        .unwrap();
    }
    w.finish(0).unwrap();
    path
}

/// The address trace's ops in time order: (ts, event).
fn ops_of(trace: &Path) -> (traces::Header, Vec<(u64, Event)>) {
    let mut r = MergedReader::open(trace).unwrap();
    let header = r.header().clone();
    let mut ops = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        if rec.event.kind().is_op() {
            ops.push((rec.ts, rec.event));
        }
    }
    (header, ops)
}

fn inspect(trace: &Path) -> traces::inspect::Report {
    let mut i = traces::inspect::Inspector::new();
    for r in MergedReader::open(trace).unwrap() {
        i.feed(&r.unwrap());
    }
    i.report()
}

#[test]
fn a_paced_replay_maps_each_allocators_blocks_and_what_it_kept_mapped_and_resident() {
    let d = tmp();
    let t = paced_trace(d.path());
    let out = d.path().join("results");
    let o = run(&[
        "-a",
        "system,fancy",
        "--pace",
        "--no-latency",
        "-q",
        "--retained-wait",
        "0",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--heap-map",
        t.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hash = doc["runs"][0]["trace_hash"].as_str().unwrap().to_string();
    let dir = out.join(hm::DIR_NAME);
    for alloc in ["system", "fancy"] {
        let trace = hm::trace_file(&dir, "paced", alloc);
        let entry = doc["heap_maps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["allocator"] == alloc)
            .unwrap();
        assert_eq!(entry["trace"], trace.display().to_string(), "{entry}");
        assert!(entry["error"].is_null(), "{entry}");

        // The address trace: the trace's ops, with this allocator's addresses, consistent.
        let (header, ops) = ops_of(&trace);
        assert_eq!(header.extra(hm::HEADER_ALLOCATOR), Some(alloc));
        assert_eq!(header.extra(hm::HEADER_TRACE), Some("paced"));
        assert_eq!(header.extra(hm::HEADER_TRACE_HASH), Some(hash.as_str()));
        assert_eq!(header.extra(hm::HEADER_SNAPSHOT_MS), Some("2"));
        assert_eq!(header.extra(hm::HEADER_REPLAY_THREADS), Some("1"));
        assert_eq!(ops.len(), 2 + 2 * SMALL);
        let report = inspect(&trace);
        assert_eq!(report.inconsistencies.total(), 0, "{alloc}");
        assert_eq!(report.failed_allocations, 0);
        assert_eq!(report.peak_live_bytes, BIG + 48 * SMALL as u64);
        let (t_alloc, big) = match ops[0] {
            (ts, Event::Malloc { size: BIG, ptr }) => (ts, ptr),
            other => panic!("{alloc}: first op {other:?}"),
        };
        assert_ne!(big, 0x1000_0000, "the allocator's address, not the trace's");
        let t_free = ops
            .iter()
            .find(|(_, e)| *e == Event::Free { ptr: big })
            .map(|(ts, _)| *ts)
            .unwrap();
        // Paced: the free comes ~150 ms after the malloc.
        assert!(
            t_free - t_alloc >= 140_000_000,
            "{alloc}: {t_alloc} → {t_free}"
        );

        // The mappings: while the block lives, all its pages are mapped and resident (the
        // replay writes every page); after it is freed, glibc has unmapped it (a 1 MiB request
        // is above its mmap threshold).
        let maps = hm::maps_file(&trace).unwrap();
        let snaps = snapshots(&read_maps(&maps, alloc, "paced"));
        assert!(
            snaps.len() >= 20,
            "{alloc}: {} snapshots in 300 ms",
            snaps.len()
        );
        let during: Vec<&(u64, Vec<Run>)> = snaps
            .iter()
            .filter(|(t, _)| *t > t_alloc && *t < t_free)
            .collect();
        assert!(
            !during.is_empty(),
            "{alloc}: no snapshot while the block lived"
        );
        for (t, runs) in &during {
            assert_eq!(
                covered(runs, big, big + BIG, true),
                BIG,
                "{alloc}: at {t} ns the live block's pages are not all resident"
            );
        }
        let (t_last, last) = snaps.last().unwrap();
        assert!(*t_last > t_free);
        if alloc == "system" {
            assert_eq!(
                covered(last, big, big + BIG, false),
                0,
                "glibc unmaps a freed mmapped chunk"
            );
        }
    }
}

#[test]
fn a_two_thread_replay_gives_a_consistent_address_trace_per_thread() {
    let d = tmp();
    let t = common::synth(d.path(), "ring-buffer", 2, 40_000);
    let maps_dir = d.path().join("maps");
    let arg = format!("--heap-map={}", maps_dir.display());
    let o = run(&[
        "-a",
        "jemalloc,fancy",
        "--no-latency",
        "-q",
        "--retained-wait",
        "0",
        &arg,
        t.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let original = inspect(&t);
    for alloc in ["jemalloc", "fancy"] {
        let trace = hm::trace_file(&maps_dir, "ring-buffer", alloc);
        let r = inspect(&trace);
        assert_eq!(r.ops, original.ops, "{alloc}");
        for kind in ["malloc", "free"] {
            assert_eq!(
                r.by_kind.get(kind),
                original.by_kind.get(kind),
                "{alloc} {kind}"
            );
        }
        assert_eq!(r.final_live_bytes, original.final_live_bytes, "{alloc}");
        // Frees are stamped before the call and allocations after it, so an address freed by
        // one thread and handed to the other is never live twice in the merged order.
        assert_eq!(
            r.inconsistencies.total(),
            0,
            "{alloc}: {:?}",
            r.inconsistencies
        );
        assert_eq!(r.cross_thread_frees, original.cross_thread_frees, "{alloc}");
        let threads: HashMap<u32, u64> = r.threads.iter().map(|t| (t.thread, t.events)).collect();
        assert_eq!(threads.len(), 2, "{alloc}");
        let snaps = snapshots(&read_maps(
            &hm::maps_file(&trace).unwrap(),
            alloc,
            "ring-buffer",
        ));
        assert!(
            snaps.len() >= 2,
            "one before the first op, one after the last"
        );
    }
}

#[test]
fn heap_map_bad_input_is_one_clear_line() {
    let d = tmp();
    let t = paced_trace(d.path());
    let t = t.to_str().unwrap();
    let one_line = |o: &Output, needle: &str| {
        let e = stderr(o);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(e.contains(needle), "expected {needle:?} in: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    };
    one_line(&run(&["--heap-map", "-q", t]), "give -o");
    one_line(
        &run(&["--heap-map=/proc/self/nope", "-q", t]),
        "--heap-map /proc/self/nope",
    );
    // clap's own error (its line, then its "For more information" hint).
    let o = run(&["--heap-map-ms", "0", "-q", t]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'0' for '--heap-map-ms"),
        "{}",
        stderr(&o)
    );
}
