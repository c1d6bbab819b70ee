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
    FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, FrameReader, KIND_EVENTS, KIND_TRAILER, Next,
    read_full,
};
use crate::header::{
    FOOTER_MAGIC, FORMAT_MAJOR, FORMAT_MINOR, Header, MAGIC, MAX_HEADER_BYTES, Trailer,
};
use crate::samples::{KIND_SAMPLES, ProcessSample};

/// Reads and checks the file header; returns it, the file's format minor version and the offset
/// of the first frame.
fn read_header(src: &mut impl Read, path: &str) -> Result<(Header, u16, u64)> {
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
    // A newer minor may hold event kinds this reader cannot decode (1.2 added OS calls): it is
    // refused here, before anything is read, rather than in the middle of the stream.
    if major != FORMAT_MAJOR || minor > FORMAT_MINOR {
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
    Ok((header, minor, 20 + len as u64))
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
    /// The file's format minor version.
    minor: u16,
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
        let (header, minor, offset) = read_header(&mut src, &path)?;
        Ok(TraceReader {
            src,
            minor,
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

    /// The file's format version (major, minor): what wrote it, not this reader's.
    pub fn format_version(&self) -> (u16, u16) {
        (FORMAT_MAJOR, self.minor)
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

/// Where a frame is and what it covers.
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

impl FrameInfo {
    fn of(offset: u64, h: &FrameHeader) -> FrameInfo {
        FrameInfo {
            offset,
            thread: h.thread,
            events: h.event_count,
            first_ts: h.first_ts,
            last_ts: h.last_ts,
            bytes: h.frame_len(),
        }
    }
}

/// What the merged reader's first pass learned about one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadFrames {
    pub thread: ThreadId,
    /// Its events frames.
    pub frames: u64,
    /// Its events.
    pub events: u64,
    /// First timestamp of its first frame.
    pub first_ts: u64,
    /// Last timestamp of its last frame.
    pub last_ts: u64,
}

/// A seekable source read at explicit offsets through one buffer, so that reading the headers
/// of consecutive frames costs no system call per frame.
struct At<R> {
    src: R,
    buf: Box<[u8]>,
    /// `buf[..len]` holds the bytes at `start..start + len`.
    start: u64,
    len: usize,
    /// Where `src` is positioned (`None`: unknown).
    pos: Option<u64>,
}

impl<R: Read + Seek> At<R> {
    fn new(src: R, capacity: usize) -> At<R> {
        At {
            src,
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            len: 0,
            pos: None,
        }
    }

    fn seek_src(&mut self, to: u64) -> std::io::Result<()> {
        if self.pos != Some(to) {
            self.pos = None;
            self.src.seek(SeekFrom::Start(to))?;
            self.pos = Some(to);
        }
        Ok(())
    }

    /// Reads `dst.len()` bytes at `offset`, fewer only where the data ends.
    fn read_at(&mut self, offset: u64, dst: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < dst.len() {
            let at = offset + n as u64;
            if at >= self.start && at < self.start + self.len as u64 {
                let i = (at - self.start) as usize;
                let k = (self.len - i).min(dst.len() - n);
                dst[n..n + k].copy_from_slice(&self.buf[i..i + k]);
                n += k;
                continue;
            }
            self.seek_src(at)?;
            if dst.len() - n >= self.buf.len() {
                // A large read goes straight to its destination.
                let k = read_full(&mut self.src, &mut dst[n..])?;
                self.pos = Some(at + k as u64);
                return Ok(n + k);
            }
            self.len = 0;
            self.start = at;
            self.len = read_full(&mut self.src, &mut self.buf)?;
            self.pos = Some(at + self.len as u64);
            if self.len == 0 {
                break;
            }
        }
        Ok(n)
    }

    /// A `Read` over the bytes from `offset` on.
    fn reader(&mut self, offset: u64) -> AtRead<'_, R> {
        AtRead { at: self, offset }
    }
}

struct AtRead<'a, R> {
    at: &'a mut At<R>,
    offset: u64,
}

impl<R: Read + Seek> Read for AtRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.at.read_at(self.offset, buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// The merged reader's first pass: every frame header from `offset` on (payloads are read
/// only for frames that must be checked now: the trailer, frames of unknown kinds, a frame
/// running past the end of the file). Keeps one summary per thread, never one entry per frame.
struct Scan {
    threads: Vec<ThreadFrames>,
    frames: u64,
    /// Where the events frames end (the trailer's offset, or where the file was cut).
    end: u64,
    trailer: Option<Trailer>,
    warnings: Vec<Warning>,
    /// Every process sample of the trace (format 1.1): one per recorder flush, so bounded by
    /// the recording's duration, not by its events.
    samples: Vec<ProcessSample>,
}

fn scan<R: Read + Seek>(
    at: &mut At<R>,
    frames: &mut FrameReader,
    path: &str,
    mut offset: u64,
    file_len: u64,
) -> Result<Scan> {
    let io = |off: u64| move |e| TraceError::new(path, off, ErrorKind::Io(e));
    let mut by_id: HashMap<ThreadId, usize> = HashMap::new();
    let mut threads: Vec<ThreadFrames> = Vec::new();
    // Per thread (as in `threads`): the offset of its last frame.
    let mut last_frame: Vec<u64> = Vec::new();
    let mut n_frames = 0;
    let mut warnings = Vec::new();
    let mut trailer = None;
    let mut samples = Vec::new();
    // The previous frame: when the bytes after it are not a frame header, its own stored length
    // may be what is wrong, which its checksum tells.
    let mut prev: Option<u64> = None;
    loop {
        let mut hb = [0u8; FRAME_HEADER_LEN];
        let n = at.read_at(offset, &mut hb).map_err(io(offset))?;
        if n == 0 {
            warnings.push(Warning::Truncated {
                offset,
                bytes_lost: 0,
                events_lost: None,
            });
            break;
        }
        let h = if n == FRAME_HEADER_LEN {
            match FrameHeader::parse(&hb) {
                Ok(h) => Some(h),
                Err(k) => {
                    if let Some(p) = prev {
                        frames.read(&mut at.reader(p), path, p)?;
                    }
                    return Err(TraceError::new(path, offset, k));
                }
            }
        } else {
            None
        };
        let Some(h) = h.filter(|h| offset + h.frame_len() <= file_len) else {
            if let Some(p) = prev.filter(|_| n < FRAME_HEADER_LEN && hb[..4] != FRAME_MAGIC[..4]) {
                frames.read(&mut at.reader(p), path, p)?;
            }
            // A cut frame, or a corrupt one (a length that runs past the end of the file while
            // valid frames follow, garbage in a cut header): the frame reader tells them apart.
            match frames.read(&mut at.reader(offset), path, offset)? {
                Next::Cut { bytes, events } => warnings.push(Warning::Truncated {
                    offset,
                    bytes_lost: bytes,
                    events_lost: events,
                }),
                // Cannot happen (the data is shorter than the frame); report it as a cut.
                Next::End | Next::Frame(_) => warnings.push(Warning::Truncated {
                    offset,
                    bytes_lost: file_len - offset,
                    events_lost: None,
                }),
            }
            break;
        };
        match h.kind {
            KIND_EVENTS => {
                let i = *by_id.entry(h.thread).or_insert_with(|| {
                    threads.push(ThreadFrames {
                        thread: h.thread,
                        frames: 0,
                        events: 0,
                        first_ts: h.first_ts,
                        last_ts: h.first_ts,
                    });
                    last_frame.push(offset);
                    threads.len() - 1
                });
                let t = &mut threads[i];
                if h.first_ts < t.last_ts {
                    // A damaged timestamp is a checksum error; only intact frames are out of
                    // order.
                    let p = last_frame[i];
                    frames.read(&mut at.reader(p), path, p)?;
                    frames.read(&mut at.reader(offset), path, offset)?;
                    return Err(TraceError::new(
                        path,
                        offset,
                        ErrorKind::BadFrameHeader(format!(
                            "thread {}'s frame starts at {} ns, before its previous frame \
                             ends ({} ns)",
                            h.thread, h.first_ts, t.last_ts
                        )),
                    ));
                }
                t.frames += 1;
                t.events += h.event_count as u64;
                t.last_ts = h.last_ts;
                last_frame[i] = offset;
                n_frames += 1;
            }
            KIND_TRAILER => {
                frames.read(&mut at.reader(offset), path, offset)?;
                trailer = Some(frames.decode_trailer(path, offset)?);
                let end = offset + h.frame_len();
                check_footer(&mut at.reader(end), path, end, offset)?;
                break;
            }
            KIND_SAMPLES => {
                frames.read(&mut at.reader(offset), path, offset)?;
                frames.decode_samples(&h, path, offset, &mut samples)?;
            }
            kind => {
                // Only a frame whose checksum holds is of an unknown kind; a damaged kind byte
                // is a corrupt frame.
                frames.read(&mut at.reader(offset), path, offset)?;
                warnings.push(Warning::UnknownFrameKind { offset, kind });
            }
        }
        prev = Some(offset);
        offset += h.frame_len();
    }
    threads.sort_unstable_by_key(|t| t.thread);
    Ok(Scan {
        threads,
        frames: n_frames,
        end: offset,
        trailer,
        warnings,
        samples,
    })
}

/// Most frames of one thread the load order queues ahead of the merge.
const QUEUE_MAX: usize = 16;

/// One thread's frames, as far as the load order has found them.
struct ThreadQueue {
    /// Found and not yet handed out, in file order.
    queue: VecDeque<FrameInfo>,
    /// `None`: every frame of this thread before the frontier is in `queue` or handed out.
    /// `Some(o)`: its queue was full; its frames from offset `o` on are not queued yet.
    behind: Option<u64>,
    /// Frames not yet handed out.
    left: u64,
}

/// Produces the events frames in the order the merge loads them: by (first timestamp, thread),
/// each thread's frames in file order. Frames are found by reading headers in file order (the
/// frontier), each thread queuing at most [`QUEUE_MAX`] of them; a thread whose queue was full
/// reads the headers after its last queued frame again when it needs more. Memory is a few
/// frame headers per thread, whatever the number of frames; a file in rough time order (as
/// writers make them) is read about once.
struct LoadOrder<R> {
    at: At<R>,
    path: String,
    frontier: u64,
    end: u64,
    by_id: HashMap<ThreadId, usize>,
    threads: Vec<ThreadQueue>,
    /// Threads with frames left, keyed by their next frame's (first timestamp, index).
    heap: BinaryHeap<Reverse<(u64, usize)>>,
}

impl<R: Read + Seek> LoadOrder<R> {
    fn new(at: At<R>, path: &str, first: u64, scan: &Scan) -> LoadOrder<R> {
        let mut heap = BinaryHeap::with_capacity(scan.threads.len());
        for (i, t) in scan.threads.iter().enumerate() {
            heap.push(Reverse((t.first_ts, i)));
        }
        LoadOrder {
            at,
            path: path.to_string(),
            frontier: first,
            end: scan.end,
            by_id: scan
                .threads
                .iter()
                .enumerate()
                .map(|(i, t)| (t.thread, i))
                .collect(),
            threads: scan
                .threads
                .iter()
                .map(|t| ThreadQueue {
                    queue: VecDeque::new(),
                    behind: None,
                    left: t.frames,
                })
                .collect(),
            heap,
        }
    }

    fn changed(&self, offset: u64) -> TraceError {
        TraceError::new(
            &self.path,
            offset,
            ErrorKind::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file changed while it was being read",
            )),
        )
    }

    /// The header of the frame at `offset` (below `end`, so the first pass read it already).
    fn header_at(&mut self, offset: u64) -> Result<FrameHeader> {
        let mut hb = [0u8; FRAME_HEADER_LEN];
        let n = self
            .at
            .read_at(offset, &mut hb)
            .map_err(|e| TraceError::new(&self.path, offset, ErrorKind::Io(e)))?;
        if n < FRAME_HEADER_LEN {
            return Err(self.changed(offset));
        }
        FrameHeader::parse(&hb).map_err(|k| TraceError::new(&self.path, offset, k))
    }

    fn index_of(&self, h: &FrameHeader, offset: u64) -> Result<usize> {
        self.by_id
            .get(&h.thread)
            .copied()
            .ok_or_else(|| self.changed(offset))
    }

    /// Reads the header at the frontier and queues the frame; `false` at the end.
    fn advance(&mut self) -> Result<bool> {
        if self.frontier >= self.end {
            return Ok(false);
        }
        let offset = self.frontier;
        let h = self.header_at(offset)?;
        self.frontier += h.frame_len();
        if h.kind == KIND_EVENTS {
            let i = self.index_of(&h, offset)?;
            let t = &mut self.threads[i];
            if t.behind.is_none() {
                if t.queue.len() < QUEUE_MAX {
                    t.queue.push_back(FrameInfo::of(offset, &h));
                } else {
                    t.behind = Some(offset);
                }
            }
        }
        Ok(true)
    }

    /// Queues thread `i`'s frames from `from` (up to the frontier) until its queue is full.
    fn catch_up(&mut self, i: usize, from: u64) -> Result<()> {
        let mut offset = from;
        while offset < self.frontier {
            let h = self.header_at(offset)?;
            let next = offset + h.frame_len();
            if h.kind == KIND_EVENTS && self.index_of(&h, offset)? == i {
                let t = &mut self.threads[i];
                t.queue.push_back(FrameInfo::of(offset, &h));
                if t.queue.len() == QUEUE_MAX {
                    t.behind = (next < self.frontier).then_some(next);
                    return Ok(());
                }
            }
            offset = next;
        }
        self.threads[i].behind = None;
        Ok(())
    }

    /// Makes thread `i`'s queue non-empty (it has frames left).
    fn fill(&mut self, i: usize) -> Result<()> {
        while self.threads[i].queue.is_empty() {
            match self.threads[i].behind {
                Some(from) => self.catch_up(i, from)?,
                None => {
                    if !self.advance()? {
                        return Err(self.changed(self.frontier));
                    }
                }
            }
        }
        Ok(())
    }

    /// The next frame to load, with its thread's index.
    fn next(&mut self) -> Result<Option<(usize, FrameInfo)>> {
        let Some(Reverse((_, i))) = self.heap.pop() else {
            return Ok(None);
        };
        self.fill(i)?;
        let t = &mut self.threads[i];
        let f = t.queue.pop_front().expect("fill leaves a frame");
        t.left -= 1;
        if t.left > 0 {
            self.fill(i)?;
            let next = self.threads[i].queue[0].first_ts;
            self.heap.push(Reverse((next, i)));
        }
        Ok(Some((i, f)))
    }

    /// Reads and decodes the events frame `f` into `buf`.
    fn decode(
        &mut self,
        frames: &mut FrameReader,
        f: &FrameInfo,
        buf: &mut Vec<Timed>,
    ) -> Result<()> {
        let LoadOrder { at, path, .. } = self;
        match frames.read(&mut at.reader(f.offset), path, f.offset)? {
            Next::Frame(h) => frames.decode_events(&h, path, f.offset, buf),
            _ => Err(self.changed(f.offset)),
        }
    }
}

/// A frame decoded for the merge: its thread's index and events.
type Loaded = (usize, FrameInfo, Vec<Timed>);

/// Where the merge's frames come from. (One per reader, never moved on a hot path: its
/// variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
enum Loads<R> {
    /// Decoded on the caller's thread.
    Here {
        order: Box<LoadOrder<R>>,
        frames: FrameReader,
        pool: Vec<Vec<Timed>>,
    },
    /// Decoded ahead on a worker thread (see [`MergedReader::open`]).
    Ahead(ReadAhead),
    /// Nothing more.
    Done,
}

/// How many frames the read-ahead thread may decode before the merge needs them.
const READ_AHEAD_FRAMES: usize = 2;

/// A worker thread that finds and decodes frames in the exact order the merge loads them: a
/// frame is loaded when the merge reaches its first timestamp, and the merge visits keys
/// (timestamp, thread) in increasing order, so the load order is by (first timestamp, thread),
/// which [`LoadOrder`] produces. Decoding thus runs on another core while the caller consumes
/// events.
struct ReadAhead {
    frames: Receiver<Result<Loaded>>,
    recycle: Sender<Vec<Timed>>,
}

impl ReadAhead {
    fn start(mut order: LoadOrder<File>) -> std::io::Result<ReadAhead> {
        let mut frames = FrameReader::new()?;
        let (tx, rx): (SyncSender<Result<Loaded>>, _) = sync_channel(READ_AHEAD_FRAMES);
        let (recycle, spare) = channel::<Vec<Timed>>();
        std::thread::Builder::new()
            .name("trace-read-ahead".into())
            .spawn(move || {
                loop {
                    let r = match order.next() {
                        Ok(Some((i, f))) => {
                            let mut buf = spare.try_recv().unwrap_or_default();
                            order.decode(&mut frames, &f, &mut buf).map(|_| (i, f, buf))
                        }
                        Ok(None) => return,
                        Err(e) => Err(e),
                    };
                    let failed = r.is_err();
                    // The reader was dropped: stop.
                    if tx.send(r).is_err() || failed {
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

struct Cursor {
    thread: ThreadId,
    events: Vec<Timed>,
    pos: usize,
}

/// Reads a trace in one global order: by timestamp, ties broken by thread id (then by each
/// thread's own order). Needs a seekable source: a first pass reads the frame headers (not the
/// payloads) to check them and count each thread's frames; the merge then decodes each frame
/// when it reaches the frame's first timestamp.
///
/// Memory: one decoded frame per thread whose frame is open at the current timestamp, a few
/// frame headers per thread, and (with [`MergedReader::open`]) the two frames decoded ahead —
/// nothing per frame of the file.
pub struct MergedReader<R: Read + Seek = File> {
    path: String,
    header: Header,
    /// The file's format minor version.
    minor: u16,
    trailer: Option<Trailer>,
    warnings: Vec<Warning>,
    threads: Vec<ThreadFrames>,
    frames: u64,
    loads: Loads<R>,
    /// The next frame to load, decoded, once asked for.
    pending: Option<Loaded>,
    /// One per thread, in thread-id order.
    cursors: Vec<Cursor>,
    /// Cursors with events left, keyed by their next event, except `current`.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// The cursor being drained; it is not in the heap.
    current: Option<usize>,
    /// Every process sample of the trace (format 1.1), read by the first pass.
    samples: Vec<ProcessSample>,
}

impl MergedReader<File> {
    /// Opens the trace at `path`, reads its header and checks its frame headers. Frames are
    /// then decoded ahead, in the order the merge needs them, by a worker thread (at most a
    /// few frames ahead, so memory stays bounded).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let p = path.as_ref();
        let name = p.display().to_string();
        let f = File::open(p).map_err(|e| TraceError::new(&name, 0, ErrorKind::Io(e)))?;
        let mut r = MergedReader::new(f, name)?;
        if r.frames > 1
            && let Loads::Here { order, .. } = std::mem::replace(&mut r.loads, Loads::Done)
        {
            r.loads = Loads::Ahead(
                ReadAhead::start(*order)
                    .map_err(|e| TraceError::new(&r.path, 0, ErrorKind::Io(e)))?,
            );
        }
        Ok(r)
    }
}

impl<R: Read + Seek> MergedReader<R> {
    /// Reads the header from `src` and checks its frame headers; `name` is used in messages.
    pub fn new(src: R, name: impl Into<String>) -> Result<Self> {
        let path = name.into();
        let io = |off: u64| {
            let path = path.clone();
            move |e| TraceError::new(path, off, ErrorKind::Io(e))
        };
        let mut at = At::new(src, 1 << 16);
        let (header, minor, first) = read_header(&mut at.reader(0), &path)?;
        at.pos = None;
        let file_len = at.src.seek(SeekFrom::End(0)).map_err(io(0))?;
        let mut frames = FrameReader::new().map_err(io(0))?;
        let scan = scan(&mut at, &mut frames, &path, first, file_len)?;
        let order = LoadOrder::new(at, &path, first, &scan);
        let heap = BinaryHeap::with_capacity(scan.threads.len());
        Ok(MergedReader {
            cursors: scan
                .threads
                .iter()
                .map(|t| Cursor {
                    thread: t.thread,
                    events: Vec::new(),
                    pos: 0,
                })
                .collect(),
            path,
            header,
            minor,
            trailer: scan.trailer,
            warnings: scan.warnings,
            samples: scan.samples,
            threads: scan.threads,
            frames: scan.frames,
            loads: Loads::Here {
                order: Box::new(order),
                frames,
                pool: Vec::new(),
            },
            pending: None,
            heap,
            current: None,
        })
    }

    /// The trace's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file's format version (major, minor): what wrote it, not this reader's.
    pub fn format_version(&self) -> (u16, u16) {
        (FORMAT_MAJOR, self.minor)
    }

    /// The name used in messages (the path for files).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The trailer (`None` for a trace cut short).
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// Problems found by the first pass that did not stop reading.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The trace's process samples (RSS, faults), in time order; empty for traces without any
    /// (synthetic, format 1.0).
    pub fn process_samples(&self) -> &[ProcessSample] {
        &self.samples
    }

    /// The threads that have events frames, in thread-id order, with their counts.
    pub fn threads(&self) -> &[ThreadFrames] {
        &self.threads
    }

    /// Complete events frames in the file.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Total events in the complete frames.
    pub fn total_events(&self) -> u64 {
        self.threads.iter().map(|t| t.events).sum()
    }

    /// Hands a drained frame buffer back for reuse.
    fn recycle(&mut self, mut buf: Vec<Timed>) {
        buf.clear();
        match &mut self.loads {
            Loads::Here { pool, .. } => pool.push(buf),
            Loads::Ahead(ahead) => {
                let _ = ahead.recycle.send(buf);
            }
            Loads::Done => {}
        }
    }

    /// The next frame in load order, decoded.
    fn next_load(&mut self) -> Result<Option<Loaded>> {
        let r = match &mut self.loads {
            Loads::Here {
                order,
                frames,
                pool,
            } => match order.next()? {
                Some((i, f)) => {
                    let mut buf = pool.pop().unwrap_or_default();
                    order.decode(frames, &f, &mut buf)?;
                    Some((i, f, buf))
                }
                None => None,
            },
            // A closed channel: the worker has handed out every frame.
            Loads::Ahead(ahead) => ahead.frames.recv().ok().transpose()?,
            Loads::Done => None,
        };
        if r.is_none() {
            self.loads = Loads::Done;
        }
        Ok(r)
    }

    /// The next event in global order, or `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if self.pending.is_none() && !matches!(self.loads, Loads::Done) {
                self.pending = self.next_load()?;
            }
            let load = self.pending.as_ref().map(|(i, f, _)| (f.first_ts, *i));
            if let Some(i) = self.current {
                let c = &self.cursors[i];
                if let Some(e) = c.events.get(c.pos) {
                    // Keep draining this cursor while it stays first.
                    let k = (e.ts, i);
                    let first = self.heap.peek().is_none_or(|Reverse(h)| k <= *h)
                        && load.is_none_or(|l| k <= l);
                    if first {
                        let rec = Record {
                            ts: e.ts,
                            thread: c.thread,
                            event: e.event,
                        };
                        self.cursors[i].pos += 1;
                        return Ok(Some(rec));
                    }
                    self.heap.push(Reverse(k));
                } else {
                    let buf = std::mem::take(&mut self.cursors[i].events);
                    self.cursors[i].pos = 0;
                    self.recycle(buf);
                }
                self.current = None;
            }
            // The smallest key is either a cursor's next event or the next frame's first
            // event; on a tie (same thread) the cursor's events come first.
            let next = self.heap.peek().map(|Reverse(k)| *k);
            match (next, load) {
                (None, None) => return Ok(None),
                (Some(k), Some(l)) if k <= l => {
                    self.heap.pop();
                    self.current = Some(k.1);
                }
                (Some(k), None) => {
                    self.heap.pop();
                    self.current = Some(k.1);
                }
                (_, Some(_)) => {
                    let (i, f, buf) = self.pending.take().expect("a pending frame");
                    let c = &mut self.cursors[i];
                    if c.pos < c.events.len() {
                        // Cannot happen: a thread's frames do not overlap in time.
                        return Err(TraceError::new(
                            &self.path,
                            f.offset,
                            ErrorKind::BadFrameHeader(format!(
                                "thread {}'s frame starts before its previous frame ends",
                                f.thread
                            )),
                        ));
                    }
                    let old = std::mem::replace(&mut c.events, buf);
                    c.pos = 0;
                    if old.capacity() > 0 {
                        self.recycle(old);
                    }
                    self.current = Some(i);
                }
            }
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
                self.pending = None;
                self.loads = Loads::Done;
                Some(Err(e))
            }
        }
    }
}
