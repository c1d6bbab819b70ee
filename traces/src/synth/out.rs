//! Where generated events go: one global virtual clock, per-thread batches, and a writer
//! thread that encodes and writes the batches while the generator goes on.
//!
//! Every event of a trace is generated in one sequence and stamped from one clock that only
//! moves forward (by 4–67 ns per event, with a stall of up to 16 µs one event in 1024), so
//! timestamps are unique and the merged (global) order of the trace is exactly the order of
//! generation. That gives the ordering contracts for free: a thread's stamps are increasing, a
//! cross-thread free is stamped after its allocation, and a free is stamped before any later
//! allocation that reuses its address.
//!
//! Events are gathered per thread into batches of [`FRAME_EVENTS`]. A full batch gets a sequence
//! number and goes over a bounded channel to a pool of encoder threads, each with its own
//! [`FrameEncoder`]; one writer thread puts the encoded frames back in sequence order and writes
//! them ([`TraceWriter::write_encoded`]); emptied batches go back to the generator for reuse.
//! Frames are written in generation order whatever the number of encoders, so the bytes are the
//! same on every run. Encoding (payload coding and zstd) costs more per event than generating,
//! so on a machine with more cores than one the encoders take every core the generator leaves.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::heap::Heap;
use crate::error::{ErrorKind, TraceError};
use crate::event::{AlignedFn, Event, ThreadId, Timed};
use crate::frame::{DEFAULT_ZSTD_LEVEL, EncodedFrame, FrameEncoder};
use crate::writer::TraceWriter;

/// Events per frame: the writer's default frame size.
pub(crate) const FRAME_EVENTS: usize = crate::frame::DEFAULT_FRAME_EVENTS;
/// OS thread id of thread 0; thread `t` gets `OS_TID_BASE + t`.
pub(crate) const OS_TID_BASE: u32 = 20_000;

/// A batch of one thread's events with its place in the file.
type Batch = (u64, ThreadId, Vec<Timed>);
/// An encoded frame (or why it could not be encoded) with its place in the file.
type Encoded = (u64, Result<(EncodedFrame, Vec<u8>), String>);

enum Dest {
    /// Batches go to the encoder threads.
    Writer {
        tx: SyncSender<Batch>,
        back: Receiver<Vec<Timed>>,
        seq: u64,
    },
    /// Batches are counted and dropped (to measure generation alone).
    Discard,
}

/// The virtual clock and the per-thread event batches of one trace.
pub(crate) struct Out {
    now: u64,
    rng: Xoshiro256PlusPlus,
    bufs: Vec<Vec<Timed>>,
    /// Emptied buffers for reuse.
    pool: Vec<Vec<Timed>>,
    dest: Dest,
    events: u64,
    /// False once the writer has stopped (an I/O error): generation may stop early.
    ok: bool,
}

impl Out {
    fn new(seed: u64, dest: Dest) -> Out {
        Out {
            now: 0,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xc10c_c10c_c10c_c10c),
            bufs: Vec::new(),
            pool: Vec::new(),
            dest,
            events: 0,
            ok: true,
        }
    }

    /// The current virtual time in ns.
    #[inline(always)]
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// Moves the clock forward by `ns` (every thread idle meanwhile).
    pub(crate) fn pause(&mut self, ns: u64) {
        self.now += ns;
    }

    /// Moves the clock to `ts` if it is later.
    pub(crate) fn advance_to(&mut self, ts: u64) {
        self.now = self.now.max(ts);
    }

    /// Whether the writer is still taking batches.
    pub(crate) fn ok(&self) -> bool {
        self.ok
    }

    /// Events emitted so far.
    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    /// Appends `event` to thread `t`'s stream, stamped a little after the previous event.
    #[inline(always)]
    pub(crate) fn emit(&mut self, t: ThreadId, event: Event) {
        let r = self.rng.next_u64();
        let mut gap = 4 + (r >> 58);
        if r & 0x3ff == 0 {
            gap += (r >> 20) & 0x3fff;
        }
        self.now += gap;
        self.events += 1;
        let b = &mut self.bufs[t as usize];
        b.push(Timed {
            ts: self.now,
            event,
        });
        if b.len() >= FRAME_EVENTS {
            self.flush(t);
        }
    }

    fn open(&mut self, t: ThreadId) {
        let t = t as usize;
        if self.bufs.len() <= t {
            self.bufs.resize_with(t + 1, Vec::new);
        }
        if self.bufs[t].capacity() == 0 {
            self.bufs[t] = self.fresh();
        }
    }

    /// An empty event buffer: a recycled one if any (threads come and go by the hundred in
    /// some workloads), else a new one that grows as needed.
    fn fresh(&mut self) -> Vec<Timed> {
        if let Some(v) = self.pool.pop() {
            return v;
        }
        if let Dest::Writer { back, .. } = &self.dest
            && let Ok(v) = back.try_recv()
        {
            return v;
        }
        Vec::with_capacity(4096)
    }

    /// Sends thread `t`'s batch to the writer. A full batch is replaced by an empty buffer; a
    /// partial one (the thread exited, or the trace ends) by nothing.
    #[cold]
    #[inline(never)]
    fn flush(&mut self, t: ThreadId) {
        let i = t as usize;
        let full = self.bufs[i].len() >= FRAME_EVENTS;
        let next = if full { self.fresh() } else { Vec::new() };
        let mut batch = std::mem::replace(&mut self.bufs[i], next);
        match &mut self.dest {
            Dest::Discard => {
                batch.clear();
                self.pool.push(batch);
            }
            Dest::Writer { tx, seq, .. } => {
                if batch.is_empty() {
                    self.pool.push(batch);
                } else if self.ok {
                    if tx.send((*seq, t, batch)).is_err() {
                        self.ok = false;
                    }
                    *seq += 1;
                }
            }
        }
    }

    /// Sends every remaining batch (in thread order) and closes the stream.
    fn finish(mut self) {
        for t in 0..self.bufs.len() {
            self.flush(t as ThreadId);
        }
    }
}

/// One trace being generated: its clock and batches, and its address-space model.
pub(crate) struct Ctx {
    pub(crate) out: Out,
    pub(crate) heap: Heap,
}

impl Ctx {
    /// Thread `t` begins: it gets an arena and emits its `ThreadStart`.
    pub(crate) fn start(&mut self, t: ThreadId) {
        self.out.open(t);
        self.heap.attach(t);
        self.out.emit(
            t,
            Event::ThreadStart {
                os_tid: OS_TID_BASE + t,
            },
        );
    }

    /// Thread `t` ends: its `ThreadExit`, its last batch written, its arena parked.
    pub(crate) fn exit(&mut self, t: ThreadId) {
        self.out.emit(t, Event::ThreadExit);
        self.out.flush(t);
        self.heap.detach(t);
    }

    #[inline(always)]
    pub(crate) fn malloc(&mut self, t: ThreadId, size: u64) -> u64 {
        let ptr = self.heap.alloc(t, size);
        self.out.emit(t, Event::Malloc { size, ptr });
        ptr
    }

    #[inline(always)]
    pub(crate) fn calloc(&mut self, t: ThreadId, nmemb: u64, size: u64) -> u64 {
        let ptr = self.heap.alloc(t, nmemb * size);
        self.out.emit(t, Event::Calloc { nmemb, size, ptr });
        ptr
    }

    #[inline(always)]
    pub(crate) fn aligned(&mut self, t: ThreadId, func: AlignedFn, align: u64, size: u64) -> u64 {
        let ptr = self.heap.alloc_aligned(t, size, align);
        self.out.emit(
            t,
            Event::Aligned {
                func,
                align,
                size,
                ptr,
            },
        );
        ptr
    }

    /// `realloc(ptr, new)` by thread `t` of an object of `old` bytes (allocated by malloc,
    /// calloc or realloc); returns the new address.
    #[inline(always)]
    pub(crate) fn realloc(&mut self, t: ThreadId, ptr: u64, old: u64, new: u64) -> u64 {
        let p = self.heap.realloc(t, ptr, old, new);
        self.out.emit(
            t,
            Event::Realloc {
                old_ptr: ptr,
                size: new,
                ptr: p,
            },
        );
        p
    }

    /// `free(ptr)` by thread `t` of an object of `size` bytes (from malloc/calloc/realloc).
    #[inline(always)]
    pub(crate) fn free(&mut self, t: ThreadId, ptr: u64, size: u64) {
        self.heap.free(ptr, size);
        self.out.emit(t, Event::Free { ptr });
    }

    /// `free(ptr)` of an aligned allocation of `size` bytes and alignment `align`.
    #[inline(always)]
    pub(crate) fn free_aligned(&mut self, t: ThreadId, ptr: u64, size: u64, align: u64) {
        self.heap.free_aligned(ptr, size, align);
        self.out.emit(t, Event::Free { ptr });
    }
}

/// Runs `generate` with its events encoded by `encoders` threads and written by `writer`;
/// returns the number of events and the writer's output.
pub(crate) fn run_to_writer<W: Write + Send>(
    seed: u64,
    writer: TraceWriter<W>,
    encoders: usize,
    generate: impl FnOnce(&mut Ctx),
) -> Result<(u64, W), TraceError> {
    let encoders = encoders.max(1);
    let (tx, jobs) = sync_channel::<Batch>(2 * encoders);
    let jobs = Arc::new(Mutex::new(jobs));
    let (done_tx, done) = sync_channel::<Encoded>(2 * encoders);
    let (back_tx, back) = channel::<Vec<Timed>>();
    std::thread::scope(|s| {
        for _ in 0..encoders {
            let (jobs, done_tx, back_tx) = (jobs.clone(), done_tx.clone(), back_tx.clone());
            s.spawn(move || encode_batches(&jobs, &done_tx, &back_tx));
        }
        drop((done_tx, back_tx));
        let w = s.spawn(move || write_frames(writer, done));
        let mut ctx = Ctx {
            out: Out::new(seed, Dest::Writer { tx, back, seq: 0 }),
            heap: Heap::new(),
        };
        generate(&mut ctx);
        let events = ctx.out.events();
        ctx.out.finish();
        let out = w.join().expect("the trace writer thread panicked")?;
        Ok((events, out))
    })
}

/// An encoder thread: takes batches until the generator is done, encodes each into one frame.
fn encode_batches(
    jobs: &Mutex<Receiver<Batch>>,
    done: &SyncSender<Encoded>,
    back: &Sender<Vec<Timed>>,
) {
    let mut enc = match FrameEncoder::new(DEFAULT_ZSTD_LEVEL) {
        Ok(e) => e,
        Err(e) => {
            let _ = done.send((0, Err(format!("zstd: {e}"))));
            return;
        }
    };
    loop {
        let job = jobs
            .lock()
            .expect("no encoder panics holding the lock")
            .recv();
        let Ok((seq, t, mut batch)) = job else {
            return;
        };
        let mut bytes = Vec::with_capacity(batch.len() * 4 + 64);
        let r = enc
            .encode(t, &batch, &mut bytes)
            .map(|info| (info, bytes))
            .map_err(|m| format!("thread {t}: {m}"));
        batch.clear();
        let _ = back.send(batch);
        if done.send((seq, r)).is_err() {
            return; // the writer stopped on an error
        }
    }
}

/// The writer thread: frames back in sequence order, into the file, then the trailer.
fn write_frames<W: Write>(mut w: TraceWriter<W>, done: Receiver<Encoded>) -> Result<W, TraceError> {
    let mut pending: BTreeMap<u64, Result<(EncodedFrame, Vec<u8>), String>> = BTreeMap::new();
    let mut next = 0u64;
    for (seq, r) in done {
        pending.insert(seq, r);
        while let Some(r) = pending.remove(&next) {
            let (info, bytes) = r.map_err(|m| {
                TraceError::new("synth", w.bytes_written(), ErrorKind::InvalidInput(m))
            })?;
            w.write_encoded(info, &bytes)?;
            next += 1;
        }
    }
    if let Some((seq, _)) = pending.into_iter().next() {
        return Err(TraceError::new(
            "synth",
            w.bytes_written(),
            ErrorKind::InvalidInput(format!("frame {next} never came (next: {seq})")),
        ));
    }
    w.finish(0)
}

/// Runs `generate` and drops its events; returns how many there were.
pub(crate) fn run_discarding(seed: u64, generate: impl FnOnce(&mut Ctx)) -> u64 {
    let mut ctx = Ctx {
        out: Out::new(seed, Dest::Discard),
        heap: Heap::new(),
    };
    generate(&mut ctx);
    let n = ctx.out.events();
    ctx.out.finish();
    n
}
