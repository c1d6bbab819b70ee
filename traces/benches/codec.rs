//! Encode and decode throughput and compressed bytes per event of the trace format.
//!
//! `cargo bench -p traces --bench codec [-- EVENTS]` (default 10M events per trace).
//!
//! The traces are made here by really calling glibc's malloc/free and stamping each call with
//! CLOCK_MONOTONIC, so addresses and timings are those of a real allocator:
//! * **churn**: the recorder issue's churn loop — 4096 slots, each step frees a random slot and
//!   mallocs 8 B–32 KiB into it (uniform sizes);
//! * **program**: a program-like mix — mostly small objects (16–256 B, skewed) with LIFO-ish
//!   short lifetimes, some medium buffers that grow by realloc, a few long-lived objects, one
//!   calloc in 16 and an aligned allocation in 64;
//! * **mixed**: both interleaved on two threads (the 10M-event "mixed" trace of the issue).
//!
//! Each measurement is repeated (encode, decode alternating) and the median is printed, with
//! the bytes per event of the default settings and of alternatives (zstd levels, plain bincode
//! of the events + zstd) for comparison.

use std::hint::black_box;
use std::io::Cursor;
use std::time::Instant;

use traces::{Event, Header, MergedReader, Timed, TraceWriter};

#[path = "workloads/mod.rs"]
mod workloads;
use workloads::{churn, cpu_now, decode_sequential, now, program};

fn header() -> Header {
    Header::for_this_process("alloclab codec bench")
}

/// Encodes `threads` (thread id, events) in 64Ki-event frames, interleaving frames in file
/// order the way a recorder would.
fn encode(threads: &[(u32, &[Timed])], level: i32) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::with_capacity(64 << 20), "mem", &header())
        .unwrap()
        .with_zstd_level(level)
        .unwrap();
    let chunk: usize = std::env::var("CODEC_FRAME")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(traces::DEFAULT_FRAME_EVENTS);
    let max_frames = threads
        .iter()
        .map(|(_, e)| e.len().div_ceil(chunk))
        .max()
        .unwrap_or(0);
    for f in 0..max_frames {
        for (t, evs) in threads {
            let lo = f * chunk;
            if lo < evs.len() {
                w.write_batch(*t, &evs[lo..(lo + chunk).min(evs.len())])
                    .unwrap();
            }
        }
    }
    w.finish(0).unwrap()
}

/// Global order from a file, with frames decoded ahead on a second thread (`MergedReader::open`).
fn decode_merged_file(path: &std::path::Path) -> u64 {
    let mut n = 0u64;
    for r in MergedReader::open(path).unwrap() {
        black_box(r.unwrap());
        n += 1;
    }
    n
}

fn decode_merged(bytes: &[u8]) -> u64 {
    let mut n = 0u64;
    for r in MergedReader::new(Cursor::new(bytes), "mem").unwrap() {
        black_box(r.unwrap());
        n += 1;
    }
    n
}

/// Plain serde/bincode of each event (fixed struct, varints), zstd level 1: what "just use
/// bincode" would give, for comparison.
fn bincode_baseline(evs: &[Timed]) -> usize {
    #[derive(serde::Serialize)]
    struct Flat {
        dt: u64,
        kind: u8,
        size: u64,
        old: u64,
        ptr: u64,
    }
    let mut prev = 0;
    let flat: Vec<Flat> = evs
        .iter()
        .map(|e| {
            let (size, old, ptr) = match e.event {
                Event::Malloc { size, ptr } => (size, 0, ptr),
                Event::Calloc { size, ptr, .. } => (size, 0, ptr),
                Event::Aligned { size, ptr, .. } => (size, 0, ptr),
                Event::Realloc { old_ptr, size, ptr } => (size, old_ptr, ptr),
                Event::Free { ptr } => (0, ptr, 0),
                _ => (0, 0, 0),
            };
            let f = Flat {
                dt: e.ts.wrapping_sub(prev),
                kind: e.event.kind() as u8,
                size,
                old,
                ptr,
            };
            prev = e.ts;
            f
        })
        .collect();
    let raw = bincode::serde::encode_to_vec(&flat, bincode::config::standard()).unwrap();
    zstd::bulk::compress(&raw, 1).unwrap().len()
}

/// The same events with timestamps rounded down to whole microseconds (what a recorder at
/// 1 µs resolution writes).
fn to_micros(evs: &[Timed]) -> Vec<Timed> {
    evs.iter()
        .map(|e| Timed {
            ts: e.ts / 1000 * 1000,
            event: e.event,
        })
        .collect()
}

/// `v` printed with as many decimals as it takes (`min` at least) for the printed figure to fall
/// on the same side of `target` as the exact value: 29.96 is "29.96", not "30.0", against ≥ 30.
fn shown(v: f64, at_least: bool, target: f64, min: usize) -> String {
    let holds = |x: f64| if at_least { x >= target } else { x <= target };
    (min..=9)
        .map(|d| format!("{v:.d$}"))
        .find(|f| f.parse::<f64>().is_ok_and(|x| holds(x) == holds(v)))
        .unwrap_or_else(|| format!("{v}"))
}

/// One target's line: the figure the target is judged on (at least `min` decimals), compared at
/// full precision.
fn verdict(what: &str, v: f64, min: usize, at_least: bool, target: f64, also: &str) -> String {
    let met = if at_least { v >= target } else { v <= target };
    format!(
        "  {what:<24} {:>10}{also:<14}  {} {target:<4}  {}",
        shown(v, at_least, target, min),
        if at_least { ">=" } else { "<=" },
        if met { "met" } else { "MISSED" }
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let reps = 5;
    let start = now();
    let churn = churn(n, start);
    if let Ok(only) = std::env::var("CODEC_ONLY") {
        // Profiling aid: loop one operation on the churn trace.
        let bytes = encode(&[(0, &churn[..])], traces::DEFAULT_ZSTD_LEVEL);
        for _ in 0..10 {
            match only.as_str() {
                "encode" => drop(black_box(encode(
                    &[(0, &churn[..])],
                    traces::DEFAULT_ZSTD_LEVEL,
                ))),
                "decode" => drop(black_box(decode_sequential(&bytes))),
                _ => drop(black_box(decode_merged(&bytes))),
            }
        }
        return;
    }
    let program = program(n, start);
    let half = n / 2;
    let churn_us = to_micros(&churn);
    let program_us = to_micros(&program);
    // (name, its threads' events).
    type Trace<'a> = (&'a str, Vec<(u32, &'a [Timed])>);
    let traces: Vec<Trace> = vec![
        ("churn", vec![(0, &churn[..])]),
        ("program", vec![(0, &program[..])]),
        ("mixed", vec![(0, &churn[..half]), (1, &program[..half])]),
        ("churn@1µs", vec![(0, &churn_us[..])]),
        ("program@1µs", vec![(0, &program_us[..])]),
    ];
    println!(
        "Mev/s = million events per second of thread CPU time (wall time in brackets); zstd \
         level {}; medians of {reps}",
        traces::DEFAULT_ZSTD_LEVEL
    );
    println!(
        "{:<12} {:>9} {:>11} {:>16} {:>16} {:>16} {:>16}",
        "trace", "events", "bytes/event", "encode", "decode", "merged", "merged+ahead"
    );
    let mut verdicts = Vec::new();
    let tmp = std::env::temp_dir().join(format!("alloclab-codec-bench-{}.zst", std::process::id()));
    for (name, threads) in &traces {
        let events: usize = threads.iter().map(|(_, e)| e.len()).sum();
        let (mut enc, mut dec, mut mer) = (Vec::new(), Vec::new(), Vec::new());
        let (mut encw, mut decw, mut merw) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ahead, mut aheadw) = (Vec::new(), Vec::new());
        let mut bytes = Vec::new();
        let rate = |secs: f64| events as f64 / secs / 1e6;
        for _ in 0..reps {
            let (t, c) = (Instant::now(), cpu_now());
            bytes = encode(threads, traces::DEFAULT_ZSTD_LEVEL);
            enc.push(rate(cpu_now() - c));
            encw.push(rate(t.elapsed().as_secs_f64()));
            let (t, c) = (Instant::now(), cpu_now());
            assert_eq!(decode_sequential(&bytes), events as u64);
            dec.push(rate(cpu_now() - c));
            decw.push(rate(t.elapsed().as_secs_f64()));
            let (t, c) = (Instant::now(), cpu_now());
            assert_eq!(decode_merged(&bytes), events as u64);
            mer.push(rate(cpu_now() - c));
            merw.push(rate(t.elapsed().as_secs_f64()));
            std::fs::write(&tmp, &bytes).unwrap();
            let (t, c) = (Instant::now(), cpu_now());
            assert_eq!(decode_merged_file(&tmp), events as u64);
            // CPU time of the consuming thread only: the decoding moved to the other.
            ahead.push(rate(cpu_now() - c));
            aheadw.push(rate(t.elapsed().as_secs_f64()));
        }
        let fmt =
            |cpu: Vec<f64>, wall: Vec<f64>| format!("{:.1} ({:.1})", median(cpu), median(wall));
        let bpe = bytes.len() as f64 / events as f64;
        // The targets are judged on the coding thread's CPU time; wall time is shown beside it.
        let (e, ew, d, dw) = (
            median(enc.clone()),
            median(encw.clone()),
            median(dec.clone()),
            median(decw.clone()),
        );
        verdicts.push(verdict(
            &format!("{name} encode"),
            e,
            1,
            true,
            30.0,
            &format!(" (wall {ew:.1})"),
        ));
        verdicts.push(verdict(
            &format!("{name} decode"),
            d,
            1,
            true,
            50.0,
            &format!(" (wall {dw:.1})"),
        ));
        let bytes_target = match *name {
            "churn@1µs" => Some(3.5),
            "program@1µs" => Some(1.5),
            _ => None,
        };
        if let Some(t) = bytes_target {
            verdicts.push(verdict(
                &format!("{name} bytes/event"),
                bpe,
                3,
                false,
                t,
                "",
            ));
        }
        println!(
            "{name:<12} {events:>9} {bpe:>11.3} {:>16} {:>16} {:>16} {:>16}",
            fmt(enc, encw),
            fmt(dec, decw),
            fmt(mer, merw),
            fmt(ahead, aheadw),
        );
    }
    let _ = std::fs::remove_file(&tmp);
    println!(
        "\ntargets, compared at full precision: encode >= 30 and decode >= 50 M events/s of the \
         coding thread's CPU time (the targets use CPU time; wall time in brackets, for reference); \
         bytes/event at 1 µs resolution"
    );
    for v in &verdicts {
        println!("{v}");
    }
    if let Some(dir) = std::env::var_os("CODEC_DUMP") {
        // Raw events as little-endian u64 rows (ts, kind, size, old, ptr) for offline analysis.
        for (name, evs) in [("churn", &churn), ("program", &program)] {
            let mut b = Vec::with_capacity(evs.len() * 40);
            for e in evs.iter() {
                let (k, size, old, ptr) = match e.event {
                    Event::Malloc { size, ptr } => (0, size, 0, ptr),
                    Event::Calloc { nmemb, size, ptr } => (1, nmemb * size, 0, ptr),
                    Event::Realloc { old_ptr, size, ptr } => (2, size, old_ptr, ptr),
                    Event::Free { ptr } => (3, 0, ptr, 0),
                    Event::Aligned { size, ptr, .. } => (4, size, 0, ptr),
                    _ => (9, 0, 0, 0),
                };
                for v in [e.ts, k, size, old, ptr] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.bin")), b).unwrap();
        }
    }
    if std::env::var_os("CODEC_BREAKDOWN").is_some() {
        for (name, threads) in &traces {
            let events: usize = threads.iter().map(|(_, e)| e.len()).sum();
            println!("\n{name}: stream  raw B/ev  zstd B/ev");
            for (_, evs) in threads {
                for (s, raw, z) in
                    traces::__debug::stream_sizes(evs, traces::DEFAULT_FRAME_EVENTS, 1)
                {
                    println!(
                        "  {s:<6} {:>8.3} {:>8.3}",
                        raw as f64 / events as f64,
                        z as f64 / events as f64
                    );
                }
            }
        }
    }
    println!("\nalternatives (bytes/event):");
    println!("trace         zstd-1   zstd-3   zstd-9   bincode+zstd-1");
    for (name, threads) in &traces {
        let events: usize = threads.iter().map(|(_, e)| e.len()).sum();
        let per = |b: usize| b as f64 / events as f64;
        let all: Vec<Timed> = threads
            .iter()
            .flat_map(|(_, e)| e.iter().copied())
            .collect();
        println!(
            "{name:<8} {:>7.3}  {:>7.3}  {:>7.3}   {:>7.3}",
            per(encode(threads, 1).len()),
            per(encode(threads, 3).len()),
            per(encode(threads, 9).len()),
            per(bincode_baseline(&all)),
        );
    }
}
