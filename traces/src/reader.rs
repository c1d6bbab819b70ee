//! Reading traces without loading them: frame by frame in file order ([`TraceReader`]), or all
//! threads merged into one global order ([`MergedReader`]).
//!
//! Memory: the sequential reader holds one frame; the merged reader holds a small index (one
//! entry per frame) and one decoded frame per thread whose frame is open at the current
//! timestamp. Neither depends on the file's size.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use crate::error::{ErrorKind, Result, TraceError, Warning};
use crate::event::{Record, ThreadId, Timed};
use crate::frame::{
    FRAME_HEADER_LEN, FrameHeader, FrameReader, KIND_EVENTS, KIND_TRAILER, Next, read_full,
};
use crate::header::{FOOTER_MAGIC, FORMAT_MAJOR, Header, MAGIC, MAX_HEADER_BYTES, Trailer};
use crate::samples::{KIND_SAMPLES, ProcessSample};

/// Reads and checks the file header; returns it and the offset of the first frame.
fn read_header(src: &mut impl Read, path: &str) -> Result<(Header, u64)> {
    let err = |off: u64, kind| TraceError::new(path, off, kind);
    let io = |off: u64| move |e| TraceError::new(path, off, ErrorKind::Io(e));
    let mut fixed = [0u8; 20];
    let n = read_full(src, &mut fixed).map_err(io(0))?;
    if n == 0 {
        return Err(err(0, ErrorKind::Empty));
    }
    let m = n.min(8);
    if fixed[..m] != MAGIC[..m] {
        return Err(err(
            0,
            ErrorKind::BadMagic {
                found: fixed[..8].try_into().unwrap(),
                len: m,
            },
        ));
    }
    if n < 12 {
        return Err(err(n as u64, ErrorKind::TruncatedHeader));
    }
    let major = u16::from_le_bytes([fixed[8], fixed[9]]);
    let minor = u16::from_le_bytes([fixed[10], fixed[11]]);
    if major != FORMAT_MAJOR {
        return Err(err(8, ErrorKind::UnsupportedVersion { major, minor }));
    }
    if n < 20 {
        return Err(err(n as u64, ErrorKind::TruncatedHeader));
    }
    let len = u32::from_le_bytes(fixed[12..16].try_into().unwrap());
    let crc = u32::from_le_bytes(fixed[16..20].try_into().unwrap());
    if len > MAX_HEADER_BYTES {
        return Err(err(12, ErrorKind::HeaderTooLarge { len }));
    }
    let mut body = Vec::new();
    let got = src
        .take(len as u64)
        .read_to_end(&mut body)
        .map_err(io(20))?;
    if got < len as usize {
        return Err(err(20 + got as u64, ErrorKind::TruncatedHeader));
    }
    if crc32fast::hash(&body) != crc {
        return Err(err(20, ErrorKind::HeaderChecksum));
    }
    let cfg = bincode::config::standard().with_limit::<{ MAX_HEADER_BYTES as usize }>();
    let (header, used): (Header, usize) = bincode::serde::decode_from_slice(&body, cfg)
        .map_err(|e| err(20, ErrorKind::BadHeader(e.to_string())))?;
    if used != body.len() {
        return Err(err(
            20 + used as u64,
            ErrorKind::BadHeader(format!("{} bytes left over", body.len() - used)),
        ));
    }
    Ok((header, 20 + len as u64))
}

/// After the trailer frame: the optional footer, then nothing.
fn check_footer(src: &mut impl Read, path: &str, offset: u64, trailer_offset: u64) -> Result<()> {
    let mut f = [0u8; 17];
    let n = read_full(src, &mut f).map_err(|e| TraceError::new(path, offset, ErrorKind::Io(e)))?;
    // A file cut inside the footer lost nothing: the trailer is complete.
    if n < 16 {
        return Ok(());
    }
    let stored = u64::from_le_bytes(f[0..8].try_into().unwrap());
    if f[8..16] != FOOTER_MAGIC || stored != trailer_offset {
        return Err(TraceError::new(
            path,
            offset,
            ErrorKind::BadFrameHeader("the footer after the trailer is corrupt".into()),
        ));
    }
    if n > 16 {
        return Err(TraceError::new(
            path,
            offset + 16,
            ErrorKind::BadFrameHeader(
                "unexpected data after the end of the trace (two traces concatenated?)".into(),
            ),
        ));
    }
    Ok(())
}

/// One frame's events, as the sequential reader yields them.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    /// The thread all events belong to.
    pub thread: ThreadId,
    /// Byte offset of the frame in the file.
    pub offset: u64,
    /// The events, in the thread's order.
    pub events: Vec<Timed>,
}

/// Reads a trace frame by frame, in file order, holding one frame in memory.
pub struct TraceReader<R: Read> {
    src: R,
    path: String,
    offset: u64,
    header: Header,
    frames: FrameReader,
    trailer: Option<Trailer>,
    warnings: Vec<Warning>,
    done: bool,
    /// Process samples read so far (format 1.1).
    samples: Vec<ProcessSample>,
}

impl TraceReader<BufReader<File>> {
    /// Opens the trace at `path` and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let p = path.as_ref();
        let name = p.display().to_string();
        let f = File::open(p).map_err(|e| TraceError::new(&name, 0, ErrorKind::Io(e)))?;
        TraceReader::new(BufReader::with_capacity(1 << 20, f), name)
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads the header from `src`; `name` is used in error messages.
    pub fn new(mut src: R, name: impl Into<String>) -> Result<Self> {
        let path = name.into();
        let (header, offset) = read_header(&mut src, &path)?;
        Ok(TraceReader {
            src,
            frames: FrameReader::new().map_err(|e| TraceError::new(&path, 0, ErrorKind::Io(e)))?,
            path,
            offset,
            header,
            trailer: None,
            warnings: Vec::new(),
            done: false,
            samples: Vec::new(),
        })
    }

    /// The trace's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The name used in messages (the path for files).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The trailer, once the reader reached it (`None` before, and for a trace cut short).
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// Problems that did not stop reading (a cut file, skipped frames).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The process samples (RSS, faults) of the frames read so far, in time order; all of
    /// them once the reader reached the end. Empty for traces without any (synthetic, 1.0).
    pub fn process_samples(&self) -> &[ProcessSample] {
        &self.samples
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next frame of events into `frame`; `false` at the end of the trace.
    pub fn next_frame(&mut self, frame: &mut Frame) -> Result<bool> {
        while !self.done {
            let at = self.offset;
            match self.frames.read(&mut self.src, &self.path, at)? {
                Next::End => {
                    self.warnings.push(Warning::Truncated {
                        offset: at,
                        bytes_lost: 0,
                        events_lost: None,
                    });
                    self.done = true;
                }
                Next::Cut { bytes, events } => {
                    self.warnings.push(Warning::Truncated {
                        offset: at,
                        bytes_lost: bytes,
                        events_lost: events,
                    });
                    self.offset += bytes;
                    self.done = true;
                }
                Next::Frame(h) => {
                    self.offset += h.frame_len();
                    match h.kind {
                        KIND_EVENTS => {
                            self.frames
                                .decode_events(&h, &self.path, at, &mut frame.events)?;
                            frame.thread = h.thread;
                            frame.offset = at;
                            return Ok(true);
                        }
                        KIND_TRAILER => {
                            self.trailer = Some(self.frames.decode_trailer(&self.path, at)?);
                            check_footer(&mut self.src, &self.path, self.offset, at)?;
                            self.done = true;
                        }
                        KIND_SAMPLES => {
                            self.frames
                                .decode_samples(&h, &self.path, at, &mut self.samples)?
                        }
                        kind => self
                            .warnings
                            .push(Warning::UnknownFrameKind { offset: at, kind }),
                    }
                }
            }
        }
        Ok(false)
    }

    /// All events in file order (frame by frame), each with its thread.
    pub fn records(self) -> Records<R> {
        Records {
            reader: self,
            frame: Frame::default(),
            pos: 0,
        }
    }
}

/// Iterator over a trace's events in file order; see [`TraceReader::records`].
pub struct Records<R: Read> {
    reader: TraceReader<R>,
    frame: Frame,
    pos: usize,
}

impl<R: Read> Records<R> {
    /// The underlying reader (for the header, trailer and warnings).
    pub fn reader(&self) -> &TraceReader<R> {
        &self.reader
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        while self.pos >= self.frame.events.len() {
            match self.reader.next_frame(&mut self.frame) {
                Ok(true) => self.pos = 0,
                Ok(false) => return None,
                Err(e) => {
                    self.reader.done = true;
                    return Some(Err(e));
                }
            }
        }
        let e = self.frame.events[self.pos];
        self.pos += 1;
        Some(Ok(Record {
            ts: e.ts,
            thread: self.frame.thread,
            event: e.event,
        }))
    }
}

/// Where a frame is and what it covers: one entry of the merged reader's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub offset: u64,
    pub thread: ThreadId,
    pub events: u32,
    pub first_ts: u64,
    pub last_ts: u64,
    /// Bytes of the frame in the file (header + stored payload).
    pub bytes: u64,
}

struct Cursor {
    thread: ThreadId,
    frames: VecDeque<FrameInfo>,
    events: Vec<Timed>,
    pos: usize,
}

/// Reads a trace in one global order: by timestamp, ties broken by thread id (then by each
/// thread's own order). Needs a seekable source: it first scans the frame headers (not the
/// payloads) to build an index, then decodes each frame when the merge reaches it.
pub struct MergedReader<R: Read + Seek = BufReader<File>> {
    src: R,
    path: String,
    header: Header,
    trailer: Option<Trailer>,
    warnings: Vec<Warning>,
    index: Vec<FrameInfo>,
    frames: FrameReader,
    cursors: Vec<Cursor>,
    /// Cursors waiting, keyed by their next timestamp (next event, or next frame's first).
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// The cursor being drained; it is not in the heap.
    current: Option<usize>,
    /// Decoded-frame buffers not in use.
    pool: Vec<Vec<Timed>>,
    /// Frames decoded ahead on a worker thread, when reading a file (see [`MergedReader::open`]).
    ahead: Option<ReadAhead>,
    /// Every process sample of the trace (format 1.1), read while indexing.
    samples: Vec<ProcessSample>,
}

/// How many frames the read-ahead thread may decode before the merge needs them.
const READ_AHEAD_FRAMES: usize = 2;

/// A worker thread that decodes frames in the exact order the merge will load them: a frame is
/// loaded when the merge reaches its first timestamp, and the merge visits keys
/// (timestamp, thread) in increasing order, so the load order is the index sorted by
/// (first timestamp, thread) — known before the first event. Decoding thus runs on another
/// core while the caller consumes events.
struct ReadAhead {
    frames: Receiver<(u64, Result<Vec<Timed>>)>,
    recycle: Sender<Vec<Timed>>,
}

impl ReadAhead {
    fn start(path: &Path, name: &str, order: Vec<FrameInfo>) -> std::io::Result<ReadAhead> {
        let mut file = BufReader::with_capacity(1 << 16, File::open(path)?);
        let mut frames = FrameReader::new()?;
        let name = name.to_string();
        let (tx, rx): (SyncSender<(u64, Result<Vec<Timed>>)>, _) = sync_channel(READ_AHEAD_FRAMES);
        let (recycle, spare) = channel::<Vec<Timed>>();
        std::thread::Builder::new()
            .name("trace-read-ahead".into())
            .spawn(move || {
                for f in order {
                    let mut buf = spare.try_recv().unwrap_or_default();
                    let r = file
                        .seek(SeekFrom::Start(f.offset))
                        .map_err(|e| TraceError::new(&name, f.offset, ErrorKind::Io(e)))
                        .and_then(|_| {
                            read_events(&mut frames, &mut file, &name, f.offset, &mut buf)
                        })
                        .map(|_| buf);
                    let failed = r.is_err();
                    // The reader was dropped: stop.
                    if tx.send((f.offset, r)).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(ReadAhead {
            frames: rx,
            recycle,
        })
    }
}

/// Reads and decodes the events frame at `offset` (the current position of `src`) into `buf`.
fn read_events(
    frames: &mut FrameReader,
    src: &mut impl Read,
    path: &str,
    offset: u64,
    buf: &mut Vec<Timed>,
) -> Result<()> {
    match frames.read(src, path, offset)? {
        Next::Frame(h) => frames.decode_events(&h, path, offset, buf),
        _ => Err(TraceError::new(
            path,
            offset,
            ErrorKind::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file changed while it was being read",
            )),
        )),
    }
}

impl MergedReader<BufReader<File>> {
    /// Opens the trace at `path`, reads its header and indexes its frames. Frames are then
    /// decoded ahead, in the order the merge needs them, by a worker thread (at most
    /// a few frames ahead, so memory stays bounded).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let p = path.as_ref();
        let name = p.display().to_string();
        let f = File::open(p).map_err(|e| TraceError::new(&name, 0, ErrorKind::Io(e)))?;
        let mut r = MergedReader::new(BufReader::with_capacity(1 << 16, f), name)?;
        if r.index.len() > 1 {
            let mut order: Vec<(u64, usize, FrameInfo)> = Vec::with_capacity(r.index.len());
            for (i, c) in r.cursors.iter().enumerate() {
                order.extend(c.frames.iter().map(|f| (f.first_ts, i, *f)));
            }
            // Stable: a thread's frames with equal first timestamps keep their file order.
            order.sort_by_key(|&(ts, i, _)| (ts, i));
            let order = order.into_iter().map(|(_, _, f)| f).collect();
            r.ahead = Some(
                ReadAhead::start(p, &r.path, order)
                    .map_err(|e| TraceError::new(&r.path, 0, ErrorKind::Io(e)))?,
            );
        }
        Ok(r)
    }
}

impl<R: Read + Seek> MergedReader<R> {
    /// Reads the header from `src` and indexes its frames; `name` is used in messages.
    pub fn new(mut src: R, name: impl Into<String>) -> Result<Self> {
        let path = name.into();
        let io = |off: u64| {
            let path = path.clone();
            move |e| TraceError::new(path, off, ErrorKind::Io(e))
        };
        let (header, mut offset) = read_header(&mut src, &path)?;
        let file_len = src.seek(SeekFrom::End(0)).map_err(io(0))?;
        let mut frames = FrameReader::new().map_err(io(0))?;
        let mut index = Vec::new();
        let mut warnings = Vec::new();
        let mut trailer = None;
        let mut samples = Vec::new();
        loop {
            src.seek(SeekFrom::Start(offset)).map_err(io(offset))?;
            let mut hb = [0u8; FRAME_HEADER_LEN];
            let n = read_full(&mut src, &mut hb).map_err(io(offset))?;
            if n == 0 {
                warnings.push(Warning::Truncated {
                    offset,
                    bytes_lost: 0,
                    events_lost: None,
                });
                break;
            }
            let h = if n == FRAME_HEADER_LEN {
                FrameHeader::parse(&hb).map_err(|k| TraceError::new(&path, offset, k))?
            } else {
                // Let the frame reader tell a cut header from garbage.
                src.seek(SeekFrom::Start(offset)).map_err(io(offset))?;
                if let Next::Cut { bytes, events } = frames.read(&mut src, &path, offset)? {
                    warnings.push(Warning::Truncated {
                        offset,
                        bytes_lost: bytes,
                        events_lost: events,
                    });
                }
                break;
            };
            if offset + h.frame_len() > file_len {
                warnings.push(Warning::Truncated {
                    offset,
                    bytes_lost: file_len - offset,
                    events_lost: Some(h.event_count as u64),
                });
                break;
            }
            match h.kind {
                KIND_EVENTS => index.push(FrameInfo {
                    offset,
                    thread: h.thread,
                    events: h.event_count,
                    first_ts: h.first_ts,
                    last_ts: h.last_ts,
                    bytes: h.frame_len(),
                }),
                KIND_TRAILER => {
                    src.seek(SeekFrom::Start(offset)).map_err(io(offset))?;
                    frames.read(&mut src, &path, offset)?;
                    trailer = Some(frames.decode_trailer(&path, offset)?);
                    check_footer(&mut src, &path, offset + h.frame_len(), offset)?;
                    break;
                }
                KIND_SAMPLES => {
                    src.seek(SeekFrom::Start(offset)).map_err(io(offset))?;
                    frames.read(&mut src, &path, offset)?;
                    frames.decode_samples(&h, &path, offset, &mut samples)?;
                }
                kind => warnings.push(Warning::UnknownFrameKind { offset, kind }),
            }
            offset += h.frame_len();
        }

        // One cursor per thread, in thread-id order, each with its frames in file order.
        let mut by_thread: HashMap<ThreadId, usize> = HashMap::new();
        let mut cursors: Vec<Cursor> = Vec::new();
        let mut threads: Vec<ThreadId> = index.iter().map(|f| f.thread).collect();
        threads.sort_unstable();
        threads.dedup();
        for t in threads {
            by_thread.insert(t, cursors.len());
            cursors.push(Cursor {
                thread: t,
                frames: VecDeque::new(),
                events: Vec::new(),
                pos: 0,
            });
        }
        for f in &index {
            let c = &mut cursors[by_thread[&f.thread]];
            if let Some(prev) = c.frames.back()
                && f.first_ts < prev.last_ts
            {
                return Err(TraceError::new(
                    &path,
                    f.offset,
                    ErrorKind::BadFrameHeader(format!(
                        "thread {}'s frame starts at {} ns, before its previous frame ends ({} \
                         ns)",
                        f.thread, f.first_ts, prev.last_ts
                    )),
                ));
            }
            c.frames.push_back(*f);
        }
        let mut heap = BinaryHeap::with_capacity(cursors.len());
        for (i, c) in cursors.iter().enumerate() {
            if let Some(f) = c.frames.front() {
                heap.push(Reverse((f.first_ts, i)));
            }
        }
        Ok(MergedReader {
            src,
            path,
            header,
            trailer,
            warnings,
            index,
            frames,
            cursors,
            heap,
            current: None,
            pool: Vec::new(),
            ahead: None,
            samples,
        })
    }

    /// The trace's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The name used in messages (the path for files).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The trailer (`None` for a trace cut short).
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// Problems found while indexing that did not stop reading.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The trace's process samples (RSS, faults), in time order; empty for traces without any
    /// (synthetic, format 1.0).
    pub fn process_samples(&self) -> &[ProcessSample] {
        &self.samples
    }

    /// The frame index, in file order.
    pub fn index(&self) -> &[FrameInfo] {
        &self.index
    }

    /// Total events in the indexed (complete) frames.
    pub fn total_events(&self) -> u64 {
        self.index.iter().map(|f| f.events as u64).sum()
    }

    /// The key of cursor `i`'s next item, if it has one.
    fn key(&self, i: usize) -> Option<(u64, usize)> {
        let c = &self.cursors[i];
        match c.events.get(c.pos) {
            Some(e) => Some((e.ts, i)),
            None => c.frames.front().map(|f| (f.first_ts, i)),
        }
    }

    fn load(&mut self, i: usize) -> Result<()> {
        let c = &mut self.cursors[i];
        let f = c
            .frames
            .pop_front()
            .expect("load is called with a pending frame");
        let mut buf = std::mem::take(&mut c.events);
        if let Some(ahead) = &self.ahead {
            // The worker decodes in exactly this order; anything else is a bug, reported
            // rather than papered over.
            let (offset, r) = ahead.frames.recv().map_err(|_| {
                TraceError::new(
                    &self.path,
                    f.offset,
                    ErrorKind::Io(std::io::Error::other("the read-ahead thread stopped")),
                )
            })?;
            let decoded = r?;
            assert_eq!(offset, f.offset, "read-ahead order differs from the merge");
            if buf.capacity() > 0 {
                let _ = ahead.recycle.send(buf);
            }
            buf = decoded;
        } else {
            if buf.capacity() == 0 {
                buf = self.pool.pop().unwrap_or_default();
            }
            let io = |e| TraceError::new(&self.path, f.offset, ErrorKind::Io(e));
            self.src.seek(SeekFrom::Start(f.offset)).map_err(io)?;
            read_events(
                &mut self.frames,
                &mut self.src,
                &self.path,
                f.offset,
                &mut buf,
            )?;
        }
        let c = &mut self.cursors[i];
        c.events = buf;
        c.pos = 0;
        Ok(())
    }

    /// The next event in global order, or `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(i) = self.current {
                let c = &self.cursors[i];
                if let Some(e) = c.events.get(c.pos) {
                    // Keep draining this cursor while it stays first.
                    let first = match self.heap.peek() {
                        None => true,
                        Some(Reverse(k)) => (e.ts, i) <= *k,
                    };
                    if first {
                        let rec = Record {
                            ts: e.ts,
                            thread: c.thread,
                            event: e.event,
                        };
                        self.cursors[i].pos += 1;
                        return Ok(Some(rec));
                    }
                } else {
                    // Frame drained: hand its buffer back unless the thread goes on.
                    let c = &mut self.cursors[i];
                    c.pos = 0;
                    let mut buf = std::mem::take(&mut c.events);
                    buf.clear();
                    match &self.ahead {
                        Some(ahead) => {
                            let _ = ahead.recycle.send(buf);
                        }
                        None => self.pool.push(buf),
                    }
                }
                self.current = None;
                if let Some(k) = self.key(i) {
                    self.heap.push(Reverse(k));
                }
            }
            let Some(Reverse((_, i))) = self.heap.pop() else {
                return Ok(None);
            };
            if self.cursors[i].pos >= self.cursors[i].events.len() {
                self.load(i)?;
            }
            self.current = Some(i);
        }
    }
}

impl<R: Read + Seek> Iterator for MergedReader<R> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                // Stop after an error: the merge cannot go on past a corrupt frame.
                self.heap.clear();
                self.current = None;
                Some(Err(e))
            }
        }
    }
}
