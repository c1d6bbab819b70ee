//! Writing traces: the file header, event frames (appended one event at a time or as whole
//! batches), and the trailer.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{ErrorKind, Result, TraceError};
use crate::event::{Event, ThreadId, Timed};
use crate::frame::{DEFAULT_FRAME_EVENTS, DEFAULT_ZSTD_LEVEL, FrameEncoder, put_trailer};
use crate::header::{
    FOOTER_MAGIC, FORMAT_MAJOR, FORMAT_MINOR, Header, MAGIC, ThreadSummary, Trailer,
};

/// The bytes of a file header: magic, version, header length, CRC, bincode header.
pub(crate) fn header_bytes(header: &Header) -> Vec<u8> {
    let body = bincode::serde::encode_to_vec(header, bincode::config::standard())
        .expect("encoding a header into a Vec cannot fail");
    let mut out = Vec::with_capacity(20 + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[derive(Default)]
struct ThreadState {
    summary: Option<ThreadSummary>,
    last_ts: u64,
    pending: Vec<Timed>,
}

/// Writes one trace. Events go in per thread: either whole batches ([`write_batch`]), each
/// becoming one frame, or one at a time ([`append`]), buffered per thread and written as a
/// frame every `frame_events` events. [`finish`] writes what is buffered and the trailer; a
/// writer dropped without `finish` leaves a trace that reads as cut short.
///
/// [`write_batch`]: TraceWriter::write_batch
/// [`append`]: TraceWriter::append
/// [`finish`]: TraceWriter::finish
pub struct TraceWriter<W: Write> {
    out: W,
    path: String,
    offset: u64,
    encoder: FrameEncoder,
    buf: Vec<u8>,
    threads: BTreeMap<ThreadId, ThreadState>,
    frame_events: usize,
    total_events: u64,
    frames: u64,
    end_ts: u64,
}

impl TraceWriter<BufWriter<File>> {
    /// Creates (or truncates) the file at `path` and writes the header.
    pub fn create(path: impl AsRef<Path>, header: &Header) -> Result<Self> {
        let p = path.as_ref();
        let name = p.display().to_string();
        let file = File::create(p).map_err(|e| TraceError::new(&name, 0, ErrorKind::Io(e)))?;
        TraceWriter::new(BufWriter::with_capacity(1 << 20, file), name, header)
    }
}

impl<W: Write> TraceWriter<W> {
    /// Writes the header of a new trace to `out`; `name` is used in error messages.
    pub fn new(out: W, name: impl Into<String>, header: &Header) -> Result<Self> {
        let mut w = TraceWriter {
            out,
            path: name.into(),
            offset: 0,
            encoder: FrameEncoder::new(DEFAULT_ZSTD_LEVEL)
                .map_err(|e| TraceError::new("zstd", 0, ErrorKind::Io(e)))?,
            buf: Vec::new(),
            threads: BTreeMap::new(),
            frame_events: DEFAULT_FRAME_EVENTS,
            total_events: 0,
            frames: 0,
            end_ts: 0,
        };
        let bytes = header_bytes(header);
        w.put(&bytes)?;
        Ok(w)
    }

    /// Sets the zstd level (default [`DEFAULT_ZSTD_LEVEL`]).
    pub fn with_zstd_level(mut self, level: i32) -> Result<Self> {
        self.encoder = FrameEncoder::new(level)
            .map_err(|e| TraceError::new(&self.path, self.offset, ErrorKind::Io(e)))?;
        Ok(self)
    }

    /// Sets how many events [`append`](TraceWriter::append) gathers per frame (default
    /// [`DEFAULT_FRAME_EVENTS`], clamped to 1 ..= `MAX_FRAME_EVENTS`).
    pub fn with_frame_events(mut self, n: usize) -> Self {
        self.frame_events = n.clamp(1, crate::frame::MAX_FRAME_EVENTS as usize);
        self
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| TraceError::new(&self.path, self.offset, ErrorKind::Io(e)))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn invalid(&self, m: String) -> TraceError {
        TraceError::new(&self.path, self.offset, ErrorKind::InvalidInput(m))
    }

    /// Appends one event of `thread`, written with the thread's next frame.
    pub fn append(&mut self, thread: ThreadId, ts: u64, event: Event) -> Result<()> {
        let st = self.threads.entry(thread).or_default();
        st.pending.push(Timed { ts, event });
        if st.pending.len() >= self.frame_events {
            self.write_pending_of(thread)?;
        }
        Ok(())
    }

    /// Writes `events` of `thread` as one frame (after any events appended before for it).
    /// Timestamps must not go backwards within a thread; an empty batch writes nothing.
    pub fn write_batch(&mut self, thread: ThreadId, events: &[Timed]) -> Result<()> {
        self.write_pending_of(thread)?;
        self.write_frames(thread, events)
    }

    /// Writes the events `append` gathered for `thread`, keeping the buffer for reuse.
    fn write_pending_of(&mut self, thread: ThreadId) -> Result<()> {
        let Some(st) = self.threads.get_mut(&thread) else {
            return Ok(());
        };
        let mut batch = std::mem::take(&mut st.pending);
        let r = self.write_frames(thread, &batch);
        batch.clear();
        self.threads.get_mut(&thread).expect("present").pending = batch;
        r
    }

    fn write_frames(&mut self, thread: ThreadId, events: &[Timed]) -> Result<()> {
        for chunk in events.chunks(crate::frame::MAX_FRAME_EVENTS as usize) {
            let last_ts = self.threads.get(&thread).map_or(0, |s| s.last_ts);
            if chunk[0].ts < last_ts {
                return Err(self.invalid(format!(
                    "thread {thread}: batch starts at {} ns, before its previous event at \
                     {last_ts} ns",
                    chunk[0].ts
                )));
            }
            self.buf.clear();
            let info = match self.encoder.encode(thread, chunk, &mut self.buf) {
                Ok(info) => info,
                Err(m) => return Err(self.invalid(format!("thread {thread}: {m}"))),
            };
            let buf = std::mem::take(&mut self.buf);
            let r = self.put(&buf);
            self.buf = buf;
            r?;
            self.account(info);
        }
        Ok(())
    }

    /// Writes a frame encoded elsewhere by a [`FrameEncoder`] (`bytes` is exactly what
    /// `encode` appended, described by `info`).
    pub fn write_encoded(&mut self, info: crate::frame::EncodedFrame, bytes: &[u8]) -> Result<()> {
        let last_ts = self.threads.get(&info.thread).map_or(0, |s| s.last_ts);
        if info.first_ts < last_ts {
            return Err(self.invalid(format!(
                "thread {}: frame starts at {} ns, before its previous event at {last_ts} ns",
                info.thread, info.first_ts
            )));
        }
        self.put(bytes)?;
        self.account(info);
        Ok(())
    }

    fn account(&mut self, info: crate::frame::EncodedFrame) {
        let st = self.threads.entry(info.thread).or_default();
        let s = st.summary.get_or_insert(ThreadSummary {
            thread: info.thread,
            os_tid: 0,
            events: 0,
            frames: 0,
        });
        s.events += info.events as u64;
        s.frames += 1;
        if let Some(tid) = info.os_tid {
            s.os_tid = tid;
        }
        st.last_ts = info.last_ts;
        self.total_events += info.events as u64;
        self.frames += 1;
        self.end_ts = self.end_ts.max(info.last_ts);
    }

    /// Writes process samples (RSS, faults; format 1.1) as one samples frame, now. They need
    /// not be ordered with the events; they must be in time order among themselves.
    pub fn write_samples(&mut self, samples: &[crate::samples::ProcessSample]) -> Result<()> {
        if samples.len() > crate::frame::MAX_FRAME_EVENTS as usize
            || samples.windows(2).any(|w| w[1].ts < w[0].ts)
        {
            return Err(self.invalid(format!(
                "{} samples: a samples frame holds at most {} samples, in time order",
                samples.len(),
                crate::frame::MAX_FRAME_EVENTS
            )));
        }
        let mut buf = Vec::new();
        crate::samples::put_samples(&mut buf, samples);
        self.put(&buf)
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Events written so far (not counting those still buffered by `append`).
    pub fn events_written(&self) -> u64 {
        self.total_events
    }

    /// Writes out every thread's buffered events (as short frames) and flushes the output, so
    /// that a reader sees everything appended so far even if the process dies next.
    pub fn flush(&mut self) -> Result<()> {
        self.write_pending()?;
        self.out
            .flush()
            .map_err(|e| TraceError::new(&self.path, self.offset, ErrorKind::Io(e)))
    }

    /// Writes every thread's buffered events. Allocates nothing beyond the frames themselves
    /// (the recorder flushes with it while the program may have exhausted memory).
    fn write_pending(&mut self) -> Result<()> {
        let mut next = self.threads.keys().next().copied();
        while let Some(t) = next {
            self.write_pending_of(t)?;
            next = self
                .threads
                .range(t.saturating_add(1)..)
                .next()
                .map(|(k, _)| *k);
            if t == ThreadId::MAX {
                break;
            }
        }
        Ok(())
    }

    /// Writes the buffered events, the trailer (with `dropped_events`, the events the caller
    /// lost) and the footer, flushes, and returns the output.
    pub fn finish(self, dropped_events: u64) -> Result<W> {
        self.finish_with(dropped_events, Vec::new())
    }

    /// [`finish`](TraceWriter::finish) with extra key/value facts in the trailer.
    pub fn finish_with(mut self, dropped_events: u64, extra: Vec<(String, String)>) -> Result<W> {
        self.write_pending()?;
        let trailer = Trailer {
            threads: self
                .threads
                .values()
                .filter_map(|s| s.summary.clone())
                .collect(),
            total_events: self.total_events,
            frames: self.frames,
            dropped_events,
            end_ts: self.end_ts,
            extra,
        };
        let trailer_offset = self.offset;
        let mut buf = Vec::new();
        put_trailer(&mut buf, &trailer);
        buf.extend_from_slice(&trailer_offset.to_le_bytes());
        buf.extend_from_slice(&FOOTER_MAGIC);
        self.put(&buf)?;
        self.out
            .flush()
            .map_err(|e| TraceError::new(&self.path, self.offset, ErrorKind::Io(e)))?;
        Ok(self.out)
    }
}
