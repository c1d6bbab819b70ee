//! The alloclab trace format, version 1: the one definition of how allocation events are
//! stored. The recorder and the synthetic generators write it with [`TraceWriter`]; the
//! replayer and `inspect` read it with [`TraceReader`] (file order) or [`MergedReader`]
//! (global order).
//!
//! A trace is a header, then independently decodable zstd frames, each holding a batch of one
//! thread's events, then a trailer with per-thread counts. A file cut short (a killed program)
//! loses at most its last frame. `FORMAT.md` in this crate describes every byte.
//!
//! ```no_run
//! use traces::{Event, Header, MergedReader, TraceWriter};
//! let mut w = TraceWriter::create("t.zst", &Header::for_this_process("example 1.0"))?;
//! w.append(0, 100, Event::Malloc { size: 24, ptr: 0x5000 })?;
//! w.append(1, 250, Event::Free { ptr: 0x5000 })?;
//! w.finish(0)?;
//! for rec in MergedReader::open("t.zst")? {
//!     println!("{:?}", rec?);
//! }
//! # Ok::<(), traces::TraceError>(())
//! ```

mod codec;
mod error;
mod event;
mod frame;
mod header;
pub mod inspect;
pub mod live;
pub mod os;
mod reader;
mod samples;
pub mod synth;
mod sys;
mod writer;

pub use error::{ErrorKind, Result, TraceError, Warning};
pub use event::{AlignedFn, Event, Kind, Record, ThreadId, Timed};
pub use frame::{
    DEFAULT_FRAME_EVENTS, DEFAULT_ZSTD_LEVEL, EncodedFrame, FrameEncoder, MAX_FRAME_EVENTS,
    MAX_FRAME_RAW,
};
pub use header::{
    Clock, FORMAT_MAJOR, FORMAT_MINOR, Header, MAGIC, MAX_HEADER_BYTES, ThreadSummary, Trailer,
};
pub use os::{OsCall, advice_name};
pub use reader::{Frame, FrameInfo, MergedReader, Records, ThreadFrames, TraceReader};
pub use samples::{ProcessSample, RssSummary, SAMPLE_BYTES};
pub use writer::TraceWriter;

/// CLOCK_MONOTONIC now, in ns: the clock recorded traces use (see [`Clock::Monotonic`]).
pub fn monotonic_now_ns() -> u64 {
    sys::monotonic_now_ns()
}

#[doc(hidden)]
pub mod __debug {
    //! Codec internals for the codec bench's breakdown (not a stable API).
    use crate::codec::{PayloadEncoder, STREAMS, TABLE_LEN};
    use crate::event::Timed;

    /// Per stream: (name, raw bytes, zstd bytes when compressed alone at `level`), summed over
    /// frames of `frame` events.
    pub fn stream_sizes(
        events: &[Timed],
        frame: usize,
        level: i32,
    ) -> Vec<(&'static str, usize, usize)> {
        const NAMES: [&str; STREAMS] = ["ops", "ts", "sizes", "refs", "ptrs", "aux", "idx"];
        let mut out: Vec<(&'static str, usize, usize)> = NAMES.iter().map(|n| (*n, 0, 0)).collect();
        let mut enc = PayloadEncoder::new();
        let mut buf = Vec::new();
        for chunk in events.chunks(frame) {
            enc.encode(chunk, &mut buf).unwrap();
            let mut start = TABLE_LEN;
            for (i, o) in out.iter_mut().enumerate() {
                let len = u32::from_le_bytes(buf[i * 4..i * 4 + 4].try_into().unwrap()) as usize;
                let s = &buf[start..start + len];
                o.1 += len;
                o.2 += zstd::bulk::compress(s, level).unwrap().len();
                start += len;
            }
        }
        out
    }
}

#[doc(hidden)]
pub mod __fuzz {
    //! Entry points for the fuzz targets (not a stable API).
    use crate::codec::PayloadDecoder;
    use crate::event::Timed;

    /// Decodes a raw (uncompressed) frame payload.
    pub fn decode_payload(payload: &[u8], count: u32, first_ts: u64) -> Result<Vec<Timed>, String> {
        let mut out = Vec::new();
        PayloadDecoder::new().decode(
            payload,
            count.min(crate::MAX_FRAME_EVENTS),
            first_ts,
            &mut out,
        )?;
        Ok(out)
    }
}
