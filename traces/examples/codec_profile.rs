//! A small driver for counting the codec's instructions with callgrind (wall time on a shared
//! machine is noisy; instruction counts repeat).
//!
//! ```sh
//! # once: make the traces (real glibc calls, as in benches/codec.rs), stored as trace files:
//! # churn.zst, program.zst (ns timestamps) and churn-us.zst, program-us.zst (µs)
//! cargo run --release -p traces --example codec_profile -- gen /tmp/codec 1000000
//! # then, per operation (the measured part is the `encode_all` / `decode_sequential` functions):
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*encode_all*' \
//!     target/release/examples/codec_profile encode /tmp/codec/churn-us.zst
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*decode_sequential*' \
//!     target/release/examples/codec_profile decode /tmp/codec/churn-us.zst
//! ```
//!
//! Commands:
//! * `gen DIR [EVENTS]` writes the four traces, in frames of `CODEC_FRAME` events (default:
//!   the writers' default), as the bench does. Addresses and timings come from the real
//!   allocator and clock, so each `gen` makes different traces: keep one set to compare builds.
//! * `encode FILE [REPS] [LEVEL]` reads the trace's events into memory, then re-encodes and
//!   compresses them (same frames, zstd level LEVEL, default the writers') REPS times with one
//!   `FrameEncoder`; `decode FILE [REPS]` decodes the file REPS times with the sequential
//!   reader. Both print the events per repetition. The first repetition also pays for buffers
//!   and tables growing: (instructions of 3 REPS − of 1) / (2 × events) is the steady state.
//! * `time REPS FILE…`: median encode and decode rates (events per second of thread CPU time).
//! * `rewrite IN OUT`: the same frames written again by this build (to decode what it writes).
//! * `streams FILE`: raw and zstd bytes per event of each stream; `distinct FILE`: distinct
//!   pointers per frame (what sizes the encoder's pointer table).

use std::hint::black_box;
use std::io::Cursor;

use traces::{Event, Frame, FrameEncoder, Header, Timed, TraceReader, TraceWriter};

#[path = "../benches/workloads/mod.rs"]
mod workloads;
use workloads::{churn, cpu_now, decode_sequential, program};

fn header() -> Header {
    Header::for_this_process("alloclab codec profile")
}

fn write_trace(path: &std::path::Path, events: &[Timed]) {
    let chunk: usize = std::env::var("CODEC_FRAME")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(traces::DEFAULT_FRAME_EVENTS);
    let mut w = TraceWriter::create(path, &header()).unwrap();
    for c in events.chunks(chunk) {
        w.write_batch(0, c).unwrap();
    }
    w.finish(0).unwrap();
}

/// The frames of a trace file: (thread, events).
fn read_frames(bytes: &[u8]) -> Vec<(u32, Vec<Timed>)> {
    let mut r = TraceReader::new(Cursor::new(bytes), "trace").unwrap();
    let mut f = Frame::default();
    let mut out = Vec::new();
    while r.next_frame(&mut f).unwrap() {
        out.push((f.thread, f.events.clone()));
    }
    out
}

/// Encodes and compresses `frames` with `enc` (kept between calls, as a recorder keeps its
/// encoder), appending the frames to `out` (cleared first): the codec's work for a trace,
/// without the writer's header and trailer.
#[inline(never)]
fn encode_all(enc: &mut FrameEncoder, frames: &[(u32, Vec<Timed>)], out: &mut Vec<u8>) -> usize {
    out.clear();
    for (t, evs) in frames {
        enc.encode(*t, evs, out).unwrap();
    }
    out.len()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let num = |i: usize, d: usize| arg(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    match arg(0) {
        Some("gen") => {
            let dir = std::path::PathBuf::from(arg(1).expect("gen DIR [EVENTS]"));
            let n = num(2, 1_000_000);
            std::fs::create_dir_all(&dir).unwrap();
            let start = traces::monotonic_now_ns();
            let micros = |evs: &[Timed]| -> Vec<Timed> {
                evs.iter()
                    .map(|e| Timed {
                        ts: e.ts / 1000 * 1000,
                        event: e.event,
                    })
                    .collect()
            };
            let c = churn(n, start);
            let p = program(n, start);
            write_trace(&dir.join("churn.zst"), &c);
            write_trace(&dir.join("churn-us.zst"), &micros(&c));
            write_trace(&dir.join("program.zst"), &p);
            write_trace(&dir.join("program-us.zst"), &micros(&p));
            println!("wrote {} events per trace to {}", n, dir.display());
        }
        Some("encode") => {
            let bytes = std::fs::read(arg(1).expect("encode FILE [REPS] [LEVEL]")).unwrap();
            let frames = read_frames(&bytes);
            let events: usize = frames.iter().map(|(_, e)| e.len()).sum();
            let reps = num(2, 1);
            let level = arg(3)
                .and_then(|a| a.parse().ok())
                .unwrap_or(traces::DEFAULT_ZSTD_LEVEL);
            let mut enc = FrameEncoder::new(level).unwrap();
            let mut out = Vec::new();
            let mut len = 0;
            for _ in 0..reps {
                len = encode_all(&mut enc, &frames, &mut out);
            }
            println!(
                "encode: {events} events x {reps}, {len} bytes ({:.3} bytes/event)",
                len as f64 / events as f64
            );
        }
        Some("decode") => {
            let bytes = std::fs::read(arg(1).expect("decode FILE [REPS]")).unwrap();
            let reps = num(2, 1);
            let mut n = 0;
            for _ in 0..reps {
                n = decode_sequential(&bytes);
            }
            println!("decode: {n} events x {reps}");
        }
        Some("rewrite") => {
            // The same events and frames, written by this build's writer.
            let bytes = std::fs::read(arg(1).expect("rewrite IN OUT")).unwrap();
            let r = TraceReader::new(Cursor::new(&bytes[..]), "in").unwrap();
            let mut w = TraceWriter::create(arg(2).expect("rewrite IN OUT"), r.header()).unwrap();
            for (t, evs) in read_frames(&bytes) {
                w.write_batch(t, &evs).unwrap();
            }
            w.finish(0).unwrap();
        }
        Some("time") => {
            // Median encode and decode rates (Mev/s of thread CPU time) over REPS runs per file.
            let reps = num(1, 11);
            for path in &args[2..] {
                let bytes = std::fs::read(path).unwrap();
                let frames = read_frames(&bytes);
                let events: usize = frames.iter().map(|(_, e)| e.len()).sum();
                let (mut enc, mut dec) = (Vec::new(), Vec::new());
                let mut encoder = FrameEncoder::new(traces::DEFAULT_ZSTD_LEVEL).unwrap();
                let mut out = Vec::new();
                for _ in 0..reps {
                    let c = cpu_now();
                    black_box(encode_all(&mut encoder, &frames, &mut out));
                    enc.push(events as f64 / (cpu_now() - c) / 1e6);
                    let c = cpu_now();
                    black_box(decode_sequential(&bytes));
                    dec.push(events as f64 / (cpu_now() - c) / 1e6);
                }
                enc.sort_by(f64::total_cmp);
                dec.sort_by(f64::total_cmp);
                println!(
                    "{path}: encode {:.1} Mev/s, decode {:.1} Mev/s (medians of {reps})",
                    enc[reps / 2],
                    dec[reps / 2]
                );
            }
        }
        Some("distinct") => {
            // Distinct non-NULL pointers per frame (what the encoder's pointer table holds).
            let bytes = std::fs::read(arg(1).expect("distinct FILE")).unwrap();
            for (_, evs) in read_frames(&bytes) {
                let mut set = std::collections::HashSet::new();
                for e in &evs {
                    match e.event {
                        Event::Malloc { ptr, .. }
                        | Event::Calloc { ptr, .. }
                        | Event::Aligned { ptr, .. }
                        | Event::Free { ptr } => {
                            set.insert(ptr);
                        }
                        Event::Realloc { old_ptr, ptr, .. } => {
                            set.insert(ptr);
                            set.insert(old_ptr);
                        }
                        _ => {}
                    }
                }
                println!("{} events, {} distinct pointers", evs.len(), set.len());
            }
        }
        Some("streams") => {
            // Raw and zstd bytes per event of each stream (frames of the writers' default size).
            let bytes = std::fs::read(arg(1).expect("streams FILE")).unwrap();
            let evs: Vec<Timed> = read_frames(&bytes)
                .into_iter()
                .flat_map(|(_, e)| e)
                .collect();
            for (s, raw, z) in traces::__debug::stream_sizes(&evs, traces::DEFAULT_FRAME_EVENTS, 1)
            {
                println!(
                    "{s:<6} raw {:>7.3}  zstd {:>7.3} bytes/event",
                    raw as f64 / evs.len() as f64,
                    z as f64 / evs.len() as f64
                );
            }
        }
        _ => {
            eprintln!(
                "usage: codec_profile gen DIR [EVENTS] | encode FILE [REPS] [LEVEL] | decode FILE [REPS]"
            );
            std::process::exit(2);
        }
    }
}
