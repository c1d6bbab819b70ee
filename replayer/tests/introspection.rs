//! The allocators' own statistics over time (introspection.parquet): every allocator's probe
//! read on a real replay by the real `replay` binary, and its figures checked against each other
//! and against the trace (nothing mocked: glibc, jemalloc, mimalloc, Debian's tcmalloc, fancy
//! and the pool are the real allocators).

mod common;
use common::synth;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use traces::MergedReader;

fn replay_json(trace: &Path, allocs: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "--json",
        "-q",
        "--no-latency",
        "--retained-wait",
        "0",
        "--sample-ms",
        "1",
        "-a",
        allocs,
    ];
    args.extend_from_slice(extra);
    args.push(trace.to_str().unwrap());
    let o = Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "replay {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// One run's readings: (phase, sample) → metric → key → value.
type Readings = BTreeMap<(String, u64), BTreeMap<String, BTreeMap<Option<i64>, i64>>>;

fn readings(doc: &Value, allocator: &str) -> Readings {
    let mut r = Readings::new();
    for p in doc["introspection"].as_array().unwrap() {
        if p["allocator"] != allocator {
            continue;
        }
        r.entry((
            p["phase"].as_str().unwrap().to_string(),
            p["sample"].as_u64().unwrap(),
        ))
        .or_default()
        .entry(p["metric"].as_str().unwrap().to_string())
        .or_default()
        .insert(p["key"].as_i64(), p["value"].as_i64().unwrap());
    }
    r
}

fn get(m: &BTreeMap<String, BTreeMap<Option<i64>, i64>>, metric: &str) -> i64 {
    *m.get(metric)
        .and_then(|k| k.get(&None))
        .unwrap_or_else(|| panic!("no {metric} in {m:?}"))
}

fn after(r: &Readings) -> &BTreeMap<String, BTreeMap<Option<i64>, i64>> {
    let v: Vec<_> = r.iter().filter(|(k, _)| k.0 == "after").collect();
    assert_eq!(v.len(), 1, "one reading after the last op");
    v[0].1
}

#[test]
fn every_allocators_statistics_are_read_over_time_and_are_plausible() {
    let d = tempfile::tempdir().unwrap();
    let t = synth(d.path(), "fragmentation_mix", 2, 200_000);
    let mut insp = traces::inspect::Inspector::new();
    for r in MergedReader::open(&t).unwrap() {
        insp.feed(&r.unwrap());
    }
    let trace = insp.report();
    let live = trace.final_live_bytes as i64;
    let jemalloc_so = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
    let allocs = format!(
        "system,jemalloc,mimalloc,tcmalloc,fancy,mempool-baseline,bump,preload:{jemalloc_so}"
    );
    let doc = replay_json(&t, &allocs, &["--introspect-ms", "1"]);
    for run in doc["runs"].as_array().unwrap() {
        // `ok` includes: the harness allocated nothing inside the loop (the probes neither).
        assert_eq!(run["status"], "ok", "{run}");
    }

    // Allocators without statistics have no rows, and that is no error.
    for a in ["bump", &format!("preload:{jemalloc_so}")] {
        assert!(readings(&doc, a).is_empty(), "{a} has introspection rows");
    }

    let with_probe = [
        "system",
        "jemalloc",
        "mimalloc",
        "tcmalloc",
        "fancy",
        "mempool-baseline",
    ];
    for a in with_probe {
        let r = readings(&doc, a);
        let during = r.keys().filter(|k| k.0 == "replay").count();
        assert!(during >= 1, "{a}: no reading while the ops ran ({r:?})");
        after(&r);
        // Samples are numbered 0, 1, … in time order.
        let numbers: Vec<u64> = r.keys().map(|k| k.1).collect();
        let mut sorted = numbers.clone();
        sorted.sort();
        assert_eq!(sorted, (0..numbers.len() as u64).collect::<Vec<_>>(), "{a}");
        // Every probe gives a resident figure at every reading.
        for (k, m) in &r {
            assert!(get(m, "resident_bytes") > 0, "{a} {k:?}");
            // Each reading says how long it took (a call into the allocator: not free).
            assert!(get(m, "read_ns") > 0, "{a} {k:?}");
        }
    }

    // glibc: the arenas' memory from the OS holds what is in use, which holds the live bytes.
    let r = readings(&doc, "system");
    let m = after(&r);
    let in_use = get(m, "in_use_bytes");
    assert!(in_use >= live, "glibc in use {in_use} < live {live}");
    assert!(get(m, "system_bytes") + get(m, "mmap_bytes") >= in_use);
    assert!(get(m, "arenas") >= 1);
    let per_arena: i64 = m["arena_system_bytes"].values().sum();
    assert_eq!(per_arena, get(m, "system_bytes"), "arenas sum to the total");
    assert!(
        !m["free_chunks_by_size"].is_empty(),
        "fragmentation leaves free chunks"
    );

    // jemalloc: resident ≥ active at every reading, ≥ allocated at the end, which holds the live
    // bytes.
    let r = readings(&doc, "jemalloc");
    for (k, m) in &r {
        let (res, act, all) = (
            get(m, "resident_bytes"),
            get(m, "active_bytes"),
            get(m, "allocated_bytes"),
        );
        assert!(res >= act, "{k:?}: resident {res} < active {act}");
        // Allocated comes from the bins' counters, active from the page counters: read while
        // threads run they may be a moment apart, so the order is checked once they are joined.
        if k.0 == "after" {
            assert!(act >= all, "{k:?}: active {act} < allocated {all}");
        }
        assert!(get(m, "mapped_bytes") >= act, "{k:?}");
        assert!(
            !m["arena_active_bytes"].is_empty(),
            "{k:?}: no arena figures"
        );
    }
    assert!(get(after(&r), "allocated_bytes") >= live);

    // mimalloc: committed within reserved, both non-zero.
    let r = readings(&doc, "mimalloc");
    for (k, m) in &r {
        let (res, com) = (get(m, "reserved_bytes"), get(m, "committed_bytes"));
        assert!(
            com > 0 && res >= com,
            "{k:?}: reserved {res} committed {com}"
        );
        assert!(get(m, "process_rss_bytes") > 0);
    }

    // tcmalloc: the heap holds what is allocated.
    let r = readings(&doc, "tcmalloc");
    for (k, m) in &r {
        let (heap, cur) = (get(m, "heap_size_bytes"), get(m, "current_allocated_bytes"));
        assert!(heap >= cur, "{k:?}: heap {heap} < allocated {cur}");
    }
    assert!(get(after(&r), "current_allocated_bytes") >= live);

    // fancy: each small class's live blocks fit the blocks its pages hold. Exact once every
    // thread is joined; while they run the two counts are read a moment apart, so allow one
    // page's worth.
    let r = readings(&doc, "fancy");
    let mut used = 0;
    for (k, m) in &r {
        let cap = &m["class_capacity_blocks"];
        for (size, n) in &m["class_live_blocks"] {
            let c = cap[size];
            let slack = if k.0 == "after" {
                0
            } else {
                65536 / size.unwrap()
            };
            assert!(*n <= c + slack, "{k:?} class {size:?}: {n} live of {c}");
            used += (*n > 0) as u32;
        }
    }
    assert!(used > 0, "no reading saw a live small block");
    assert!(get(after(&r), "in_use_bytes") >= live);

    // The pool counts exactly the trace's final live blocks.
    let r = readings(&doc, "mempool-baseline");
    assert_eq!(
        get(after(&r), "live_blocks"),
        trace.final_live_objects as i64
    );
}

#[test]
fn introspection_off_writes_no_rows_and_the_file_is_still_written() {
    let d = tempfile::tempdir().unwrap();
    let t = synth(d.path(), "ring-buffer", 1, 20_000);
    let out = d.path().join("out");
    let doc = replay_json(
        &t,
        "system,fancy",
        &["--introspect-ms", "0", "-o", out.to_str().unwrap()],
    );
    assert!(doc["introspection"].as_array().unwrap().is_empty());
    assert!(out.join("introspection.parquet").is_file());
}
