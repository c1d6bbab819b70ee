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
//! Events are gathered per thread into batches of [`FRAME_EVENTS`]; a full batch goes over a
//! bounded channel to the writer thread, which turns each batch into one frame
//! ([`TraceWriter::write_batch`]) and sends the emptied buffer back for reuse. Batches reach the
//! writer in generation order, so the bytes are the same on every run.

use std::io::Write;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::heap::Heap;
use crate::error::TraceError;
use crate::event::{AlignedFn, Event, ThreadId, Timed};
use crate::writer::TraceWriter;

/// Events per frame: the writer's default frame size.
pub(crate) const FRAME_EVENTS: usize = crate::frame::DEFAULT_FRAME_EVENTS;
/// OS thread id of thread 0; thread `t` gets `OS_TID_BASE + t`.
pub(crate) const OS_TID_BASE: u32 = 20_000;

type Batch = (ThreadId, Vec<Timed>);

enum Dest {
    /// Batches go to the writer thread.
    Writer {
        tx: SyncSender<Batch>,
        back: Receiver<Vec<Timed>>,
    },
    /// Batches are counted and dropped (to measure generation alone).
    Discard,
}

/// The virtual clock and the per-thread event batches of one trace.
pub(crate) struct Out {
    now: u64,
    rng: Xoshiro256PlusPlus,
    bufs: Vec<Vec<Timed>>,
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
            self.bufs[t] = self.fresh(256);
        }
    }

    fn fresh(&mut self, cap: usize) -> Vec<Timed> {
        if let Dest::Writer { back, .. } = &self.dest
            && let Ok(v) = back.try_recv()
        {
            return v;
        }
        Vec::with_capacity(cap)
    }

    /// Sends thread `t`'s batch to the writer. A full batch is replaced by an empty one of the
    /// same capacity; a partial one (the thread exited, or the trace ends) by nothing.
    #[cold]
    #[inline(never)]
    fn flush(&mut self, t: ThreadId) {
        let i = t as usize;
        let full = self.bufs[i].len() >= FRAME_EVENTS;
        match &self.dest {
            Dest::Discard => {
                self.bufs[i].clear();
                if !full {
                    self.bufs[i] = Vec::new();
                }
            }
            Dest::Writer { .. } => {
                let next = if full {
                    self.fresh(FRAME_EVENTS)
                } else {
                    Vec::new()
                };
                let batch = std::mem::replace(&mut self.bufs[i], next);
                if batch.is_empty() {
                    return;
                }
                if let Dest::Writer { tx, .. } = &self.dest
                    && self.ok
                    && tx.send((t, batch)).is_err()
                {
                    self.ok = false;
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

/// Runs `generate` with its events written by `writer` on a second thread; returns the number
/// of events and the writer's output.
pub(crate) fn run_to_writer<W: Write + Send>(
    seed: u64,
    writer: TraceWriter<W>,
    generate: impl FnOnce(&mut Ctx),
) -> Result<(u64, W), TraceError> {
    let (tx, rx) = sync_channel::<Batch>(4);
    let (back_tx, back) = channel::<Vec<Timed>>();
    std::thread::scope(|s| {
        let w = s.spawn(move || write_batches(writer, rx, back_tx));
        let mut ctx = Ctx {
            out: Out::new(seed, Dest::Writer { tx, back }),
            heap: Heap::new(),
        };
        generate(&mut ctx);
        let events = ctx.out.events();
        ctx.out.finish();
        let out = w.join().expect("the trace writer thread panicked")?;
        Ok((events, out))
    })
}

fn write_batches<W: Write>(
    mut w: TraceWriter<W>,
    rx: Receiver<Batch>,
    back: Sender<Vec<Timed>>,
) -> Result<W, TraceError> {
    for (t, mut batch) in rx {
        w.write_batch(t, &batch)?;
        if batch.capacity() >= FRAME_EVENTS {
            batch.clear();
            let _ = back.send(batch);
        }
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
