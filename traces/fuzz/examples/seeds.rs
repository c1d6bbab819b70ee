//! Builds the fuzz corpora from real traces (not a fuzz target; a plain program):
//!
//! ```sh
//! cargo +nightly run --release --example seeds -- ../tests/data/golden.zst ../samples/python-json.trace.zst ../samples/python-os-calls.trace.zst
//! ```
//!
//! * `corpus/read_trace/`: each trace as is, plus small re-encodings of its first events (small
//!   frames, so mutations reach headers, trailers and payloads without a 600 KB input);
//! * `corpus/decode_payload/`: what that target reads — `count` (u32 LE, taken `% 4096`),
//!   `first_ts` (u64 LE), then a raw (decompressed) events payload — for chunks of the traces'
//!   frames of 1 to 4000 events, re-encoded with the crate's own encoder.

use std::fs;
use std::path::{Path, PathBuf};

use traces::{Frame, FrameEncoder, Timed, TraceReader, TraceWriter};

/// Chunk sizes for payload seeds: all below 4096, the target's `count % 4096`.
const CHUNKS: [usize; 6] = [1, 8, 50, 300, 1000, 4000];
/// Payload seeds taken per chunk size and trace.
const PER_SIZE: usize = 6;

fn main() {
    let inputs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    assert!(!inputs.is_empty(), "usage: seeds TRACE…");
    let rt = Path::new("corpus/read_trace");
    let dp = Path::new("corpus/decode_payload");
    fs::create_dir_all(rt).unwrap();
    fs::create_dir_all(dp).unwrap();
    let (mut n_rt, mut n_dp) = (0, 0);
    for input in &inputs {
        let stem = input
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace('.', "_");
        fs::copy(input, rt.join(&stem)).unwrap();
        n_rt += 1;

        let mut r = TraceReader::open(input).unwrap();
        let header = r.header().clone();
        let mut frames: Vec<Frame> = Vec::new();
        let mut f = Frame::default();
        while r.next_frame(&mut f).unwrap() {
            frames.push(std::mem::take(&mut f));
        }

        // Small whole traces: the first `n` events of every thread, in frames of `fe` events.
        for (n, fe) in [(40, 16), (400, 100), (3000, 1000)] {
            let mut bytes = Vec::new();
            let mut w = TraceWriter::new(&mut bytes, "seed", &header)
                .unwrap()
                .with_frame_events(fe);
            let mut taken = std::collections::HashMap::new();
            for fr in &frames {
                let t = taken.entry(fr.thread).or_insert(0usize);
                let k = (n - *t).min(fr.events.len());
                for e in &fr.events[..k] {
                    w.append(fr.thread, e.ts, e.event).unwrap();
                }
                *t += k;
            }
            w.finish(0).unwrap();
            fs::write(rt.join(format!("{stem}-first{n}-frames{fe}")), &bytes).unwrap();
            n_rt += 1;
        }

        // Raw payloads: chunks of each size, spread over the trace.
        let all: Vec<&[Timed]> = frames.iter().map(|f| &f.events[..]).collect();
        let mut enc = FrameEncoder::new(1).unwrap();
        for size in CHUNKS {
            let chunks: Vec<&[Timed]> = all.iter().flat_map(|ev| ev.chunks(size)).collect();
            let step = (chunks.len() / PER_SIZE).max(1);
            for (i, chunk) in chunks.iter().step_by(step).take(PER_SIZE).enumerate() {
                let mut frame = Vec::new();
                enc.encode(0, chunk, &mut frame).unwrap();
                let raw_len = u32::from_le_bytes(frame[32..36].try_into().unwrap()) as usize;
                let raw = zstd::bulk::decompress(&frame[44..], raw_len).unwrap();
                let mut seed = Vec::with_capacity(12 + raw.len());
                seed.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
                seed.extend_from_slice(&chunk[0].ts.to_le_bytes());
                seed.extend_from_slice(&raw);
                // Check the seed decodes as the target will decode it.
                let back =
                    traces::__fuzz::decode_payload(&raw, chunk.len() as u32, chunk[0].ts).unwrap();
                assert_eq!(back, *chunk);
                fs::write(dp.join(format!("{stem}-{size}ev-{i}")), &seed).unwrap();
                n_dp += 1;
            }
        }
    }
    println!("read_trace: {n_rt} seeds, decode_payload: {n_dp} seeds");
}
