//! A recording session: the rings of one process, the writer thread that drains them, and the
//! trace file they go to. Also what happens at load, thread exit, fork, exec and exit.
//!
//! * **Rings.** A thread's first event claims a ring (a free one left by an exited thread, or a
//!   new mapping) and pushes it on the session's registry, a push-only list. The thread's
//!   `ThreadStart` is not stored in the ring: the consumer writes it (from the ring's `os_tid`
//!   and `start_ns`) before the thread's first events in each file.
//! * **Sink.** Whoever holds the sink lock consumes: normally the writer thread, at exit or exec
//!   the thread that is leaving. Per ring it keeps a staging batch; a batch of
//!   `ALLOCLAB_FRAME_EVENTS` becomes a frame at once, and every `ALLOCLAB_FLUSH_MS` every
//!   partial batch becomes a (short) frame and the file is flushed: a killed program loses at
//!   most that much.
//! * **Writer thread.** Spawned at load (or, in a forked child, at the child's first event),
//!   with all signals blocked and its guard set for good: zstd's allocations are forwarded
//!   unrecorded. It sleeps on a futex when the rings are quiet; a producer wakes it when its
//!   ring passes a quarter, and sleeps itself (never drops) when its ring is full.
//! * **Fork.** The child gets a new session (new registry, new sink, new file named after its
//!   pid, header `parent_pid` and `fork.parent_trace`); the parent's rings and a sink lock the
//!   parent's writer may have held are abandoned, never touched.
//! * **Exec.** The trace is finished before the exec; if it fails, a continuation file starts.
//! * **Exit.** The library's destructor (after the program's atexit handlers) and `_exit`
//!   drain everything, write the trailer, and stop recording; later calls are only forwarded.

use std::ffi::{c_char, c_int, c_void};
use std::io::BufWriter;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use traces::{Clock, Event, Header, ThreadId, Timed, TraceWriter};

use crate::clock::{self, now_ns};
use crate::diag::say;
use crate::error::RecorderError;
use crate::local::{HOT, INTERNAL, InternalScope, LOCAL, Local, WAIT};
use crate::options;
use crate::ring::{self, Ring, word0};
use crate::sys;

/// Whether hooks record at all: false when disabled, after a failure, and after teardown.
pub static RECORDING: AtomicBool = AtomicBool::new(true);
/// The library's constructor ran (the root session may start its writer).
static LOADED: AtomicBool = AtomicBool::new(false);
/// The process the current session belongs to (a vfork child shares our memory: it must not
/// finish its parent's trace).
static PID: AtomicU32 = AtomicU32::new(0);
/// The pthread key whose destructor tells us a thread exits.
static KEY: AtomicU32 = AtomicU32::new(0);
static KEY_ONCE: Once = Once::new();
/// argc/argv as given to the constructor (for the header's command line).
static ARGC: AtomicU32 = AtomicU32::new(0);
static ARGV: AtomicPtr<*const c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Counters reported in the trailer (`recorder.*` facts).
static REENTRIES: AtomicU64 = AtomicU64::new(0);
static INTERNAL_CALLS: AtomicU64 = AtomicU64::new(0);
static WAITS: AtomicU64 = AtomicU64::new(0);
static WAIT_NS: AtomicU64 = AtomicU64::new(0);
static WRITER_CPU_NS: AtomicU64 = AtomicU64::new(0);
/// Events lost, for any reason (a hook entered from a signal handler while the thread was
/// storing an event, no memory for a staging batch or a frame): the trailer's
/// `dropped_events`, the one place every loss is counted.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Events in threads' side buffers (see [`guarded`]) not yet moved into a ring: whatever is
/// left at the end (a thread whose last store a handler interrupted) is counted as dropped.
static SIDE_PENDING: AtomicU64 = AtomicU64::new(0);

/// A word in a page the kernel zeroes in every child that gets a copy of our memory (fork,
/// `_Fork`, `clone` without `CLONE_VM`: `MADV_WIPEONFORK`) but shares with a vfork child. It
/// holds 1 in the process that owns the session; null until the constructor mapped it.
static TOKEN: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());
/// This process was made without our fork handler and said so (see [`orphaned`]).
static ORPHAN_SAID: AtomicBool = AtomicBool::new(false);

/// glibc runs pthread-key destructors in at most this many rounds.
const PTHREAD_DESTRUCTOR_ITERATIONS: u8 = 4;

const IDLE: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;
const FAILED: u8 = 3;
const FINISHED: u8 = 4;

/// One process's recording.
pub struct Session {
    /// Registry of rings, newest first.
    rings: AtomicPtr<Ring>,
    next_seq: AtomicU64,
    next_gen: AtomicU64,
    /// IDLE, STARTING, RUNNING, FAILED or FINISHED.
    phase: AtomicU8,
    /// A forked child's session (starts its writer at the first event).
    child: bool,
    /// The writer sleeps on `wake` while `sleeping`.
    wake: AtomicU32,
    sleeping: AtomicBool,
    /// The current output path (a leaked `String`), for forked children's headers.
    path: AtomicPtr<String>,
    sink: Mutex<Sink>,
}

struct RingRef(*mut Ring);
// SAFETY: rings are never unmapped; the consumer side of a ring is only used under the sink
// lock, which is what moves between threads.
unsafe impl Send for RingRef {}

/// What the consumer keeps per ring.
struct Known {
    ring: RingRef,
    /// The ring's `generation` when its current thread was announced (0: not yet in this file).
    generation: u64,
    thread: ThreadId,
    /// Trace ns of the thread's last event written to the file (stamps never go back).
    last_ts: u64,
    /// Relative stamp (see [`clock::Map::rel`]) of the thread's last staged event.
    last_rel: u64,
    /// Events drained and not yet written; their `ts` are relative stamps until [`write`]
    /// turns them into ns.
    staging: Vec<Timed>,
}

struct Output {
    w: TraceWriter<BufWriter<sys::TraceFile>>,
    path: String,
    /// Events of the largest frame written so far (`traces`' buffers are that large now).
    largest: usize,
    /// A probe for a larger frame failed: frames stay at most `largest` events from now on.
    pressed: bool,
}

/// An upper bound of what `traces` allocates to encode one event of a frame: the raw payload
/// (at most ~40 bytes an event), zstd's output bound of it, and slack.
const ENCODE_BYTES_PER_EVENT: usize = 96;

/// What the writer's small allocations (a thread's entry in `traces`' tables, the trailer)
/// may need at once.
const SMALL_PROBE: usize = 64 << 10;

/// Whether `bytes` can be allocated now (allocated and released at once).
fn memory_for(bytes: usize) -> bool {
    crate::real::probe(bytes)
}

/// What opening a trace needs besides the frame buffers: the 1 MiB output buffer, zstd's
/// context, the header.
const OPEN_BYTES: usize = 4 << 20;

/// The consumer's state, under the session's lock.
struct Sink {
    out: Option<Output>,
    known: Vec<Known>,
    next_thread: ThreadId,
    /// For a forked child: the parent's pid and trace path.
    parent: Option<(u32, String)>,
    /// The path of the trace finished before an exec (set until the exec failed or we died).
    exec_pending: Option<String>,
    /// For a continuation after a failed exec: the previous file.
    continues: Option<String>,
    /// Files this session opened.
    files: u32,
}

static ROOT: Session = Session::new(false);
static CURRENT: AtomicPtr<Session> = AtomicPtr::new(std::ptr::null_mut());

/// The current session (the root one, or the one a fork made).
#[inline]
pub fn session() -> &'static Session {
    let p = CURRENT.load(Ordering::Acquire);
    if p.is_null() {
        &ROOT
    } else {
        // SAFETY: sessions are leaked, never freed.
        unsafe { &*p }
    }
}

impl Session {
    const fn new(child: bool) -> Session {
        Session {
            rings: AtomicPtr::new(std::ptr::null_mut()),
            next_seq: AtomicU64::new(0),
            next_gen: AtomicU64::new(0),
            phase: AtomicU8::new(IDLE),
            child,
            wake: AtomicU32::new(0),
            sleeping: AtomicBool::new(false),
            path: AtomicPtr::new(std::ptr::null_mut()),
            sink: Mutex::new(Sink {
                out: None,
                known: Vec::new(),
                next_thread: 0,
                parent: None,
                exec_pending: None,
                continues: None,
                files: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_writer(&self) {
        self.wake.fetch_add(1, Ordering::Release);
        sys::futex_wake_all(&self.wake);
    }

    /// Whether some ring needs the writer now (checked before it sleeps).
    fn busy(&self) -> bool {
        let mut p = self.rings.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: rings in the registry are never unmapped.
            let r = unsafe { &*p };
            if r.waiting.load(Ordering::Relaxed) || r.pending() >= r.cap / 4 {
                return true;
            }
            p = r.next.load(Ordering::Acquire);
        }
        false
    }

    /// Sleeps until woken or `ns` passed, unless a ring is busy.
    fn sleep(&self, ns: u64) {
        let seq = self.wake.load(Ordering::Acquire);
        self.sleeping.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.busy() {
            sys::futex_wait(&self.wake, seq, ns);
        }
        self.sleeping.store(false, Ordering::Relaxed);
    }

    fn set_path(&self, path: &str) {
        let p = Box::into_raw(Box::new(path.to_string()));
        // The previous string is leaked on purpose: a forked child may be reading it.
        self.path.store(p, Ordering::Release);
    }

    fn current_path(&self) -> String {
        let p = self.path.load(Ordering::Acquire);
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: set_path leaks the strings it stores: they live forever.
            unsafe { (*p).clone() }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hot-path helpers (called from hooks and ring pushes).

/// A hook ran while the thread's guard was set. `INTERNAL`: the recorder's own call, counted
/// and not recorded. `HOT`: a signal handler interrupted the thread while it stored an event;
/// the event goes into the thread's side buffer, which its next event moves into the ring
/// ([`drain_side`]) — or, if the buffer is full, is counted as dropped. Async-signal-safe: a
/// clock read, one `fetch_add` on the thread's own counter, a 32-byte store, atomic counters.
/// `WAIT`: a signal handler interrupted the thread while it waited for room in its ring
/// (nothing half-stored): the event is stored as usual (waiting too, if need be).
#[cold]
#[inline(never)]
pub fn guarded(l: &Local, g: u8, k: u64, a: u64, b: u64, c: u64) {
    if g != HOT && g != WAIT {
        INTERNAL_CALLS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    REENTRIES.fetch_add(1, Ordering::Relaxed);
    let stamp = clock::stamp();
    // One instruction: a handler interrupting this one gets the next slot (and fills it and
    // returns before this one goes on).
    let i = l.side_len.fetch_add(1, Ordering::Relaxed) as usize;
    if let Some(slot) = l.side.get(i) {
        slot.set([word0(stamp, k), a, b, c]);
        SIDE_PENDING.fetch_add(1, Ordering::Relaxed);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        return;
    }
    let ring = l.ring.get();
    if g == WAIT && !ring.is_null() && !l.draining.get() {
        // The buffer is full, but the thread only waits for room for its own event: give the
        // slot back (a handler interrupting us has returned, so this is still the last one
        // taken) and store the event the usual way — the buffer first, then the event,
        // waiting for room. (While the buffer itself is being moved, the event is dropped
        // instead: stored now, it would pass events of earlier handlers.)
        l.side_len.fetch_sub(1, Ordering::Relaxed);
        REENTRIES.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the thread's own ring (WAIT is only set by push_slow, on it).
        crate::calls::store(l, unsafe { &*ring }, k, a, b, c, WAIT);
        return;
    }
    DROPPED.fetch_add(1, Ordering::Relaxed);
}

/// The thread's ring is full: waits for room (never drops for want of it), then stores the
/// event with the stamp `base()` — or the ring's last stamp, if a signal handler stored a later
/// one meanwhile — so that the thread's stamps never go back. Called with the guard `HOT` and
/// returns with it; while it sleeps the guard is `WAIT`: a signal handler that allocates
/// meanwhile puts its events into the side buffer, or, when that is full, stores them itself
/// (waiting too). Gives up if recording stopped (the event is
/// then not recorded) or the writer waits for memory (counted as dropped: see
/// [`wait_for_room`]).
///
/// # Safety
/// `r` is the calling thread's ring (it is its only producer).
#[cold]
#[inline(never)]
pub unsafe fn push_slow(
    l: &Local,
    r: &Ring,
    k: u64,
    a: u64,
    b: u64,
    c: u64,
    base: impl Fn() -> u64,
) {
    loop {
        l.guard.set(WAIT);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        let ok = wait_for_room(r);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        l.guard.set(HOT);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if !ok {
            return;
        }
        // Handlers that ran while we waited (side buffer) came first.
        if l.side_len.load(Ordering::Relaxed) != 0 {
            // SAFETY: the caller's contract.
            unsafe { drain_side(l, r) };
        }
        // SAFETY: the caller's contract.
        let stamp = base().max(unsafe { r.last_stamp() });
        // SAFETY: the caller's contract. A handler may have filled the ring again meanwhile:
        // then wait again.
        if unsafe { r.try_push(word0(stamp, k), a, b, c) } {
            return;
        }
    }
}

/// Moves the thread's side buffer (events of signal handlers that interrupted its stores,
/// see [`guarded`]) into its ring, in slot order, and empties it. Called with the guard `HOT`,
/// before the caller takes its own stamp. A handler event stamped before the event it
/// interrupted was stored (it came between the guard being set and the stamp being taken,
/// a few instructions) gets that event's stamp: the thread's stamps never go back.
///
/// # Safety
/// `ring` is the calling thread's ring (it is its only producer).
#[cold]
#[inline(never)]
pub unsafe fn drain_side(l: &Local, r: &Ring) {
    if l.draining.replace(true) {
        return; // a handler's store while we wait for room in the middle of a move
    }
    // SAFETY: the caller's contract.
    let mut last = unsafe { r.last_stamp() };
    let mut i = 0u32;
    loop {
        let n = l.side_len.load(Ordering::Acquire);
        if i >= n {
            // A handler may take a slot between the load and here: then go on with it.
            if l.side_len
                .compare_exchange(n, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                l.draining.set(false);
                return;
            }
            continue;
        }
        // Slots past the buffer's end were counted as dropped by the handler that took them.
        if let Some(slot) = l.side.get(i as usize) {
            let [w0, a, b, c] = slot.get();
            let (stamp, k) = (ring::stamp_of(w0), ring::kind_of(w0));
            last = last.max(stamp);
            // SAFETY: the caller's contract. A handler interrupting this push takes a later
            // slot (or, while push_slow waits, stores its events itself: hence the stamp floor).
            if !unsafe { r.try_push(word0(last, k), a, b, c) } {
                // SAFETY: as above.
                unsafe { push_slow(l, r, k, a, b, c, || stamp) };
                // SAFETY: as above.
                last = unsafe { r.last_stamp() };
            }
            SIDE_PENDING.fetch_sub(1, Ordering::Relaxed);
        }
        i += 1;
    }
}

/// The thread's first event: claim a ring, then record.
#[cold]
#[inline(never)]
pub fn first_event(l: &Local, k: u64, a: u64, b: u64, c: u64) {
    if l.broken.get() || orphaned() {
        return;
    }
    let prev = l.guard.replace(INTERNAL);
    let s = session();
    let ring = register(s, l);
    if ring.is_null() {
        l.broken.set(true);
        l.guard.set(prev);
        say(&"cannot map memory for a thread's event ring; this thread is not recorded");
        return;
    }
    l.ring.set(ring);
    if s.child && s.phase.load(Ordering::Acquire) == IDLE {
        start_writer(s);
    }
    // SAFETY: the ring was just claimed by this thread.
    crate::calls::store(l, unsafe { &*ring }, k, a, b, c, prev);
}

fn ensure_key() -> libc::pthread_key_t {
    KEY_ONCE.call_once(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: key is a live out-parameter; the destructor is an extern "C" fn that lives
        // as long as the library (which is never unloaded: LD_PRELOAD).
        if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
            KEY.store(key + 1, Ordering::Release);
        }
    });
    KEY.load(Ordering::Acquire)
}

/// Claims a ring for the calling thread and publishes it; null if no memory.
fn register(s: &'static Session, l: &Local) -> *mut Ring {
    // Time 0 of the process's traces and its clock (once).
    clock::init();
    let key = ensure_key();
    let cap = options::get().ring_events;
    let mut ring = std::ptr::null_mut();
    let mut p = s.rings.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: rings in the registry are never unmapped.
        let r = unsafe { &*p };
        if r.cap == cap
            && r.state
                .compare_exchange(
                    ring::FREE,
                    ring::CLAIMED,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            ring = p;
            break;
        }
        p = r.next.load(Ordering::Acquire);
    }
    if ring.is_null() {
        ring = Ring::create(cap, s.next_seq.fetch_add(1, Ordering::Relaxed));
        if ring.is_null() {
            return ring;
        }
        // SAFETY: a fresh ring, not yet shared.
        let r = unsafe { &*ring };
        let mut head = s.rings.load(Ordering::Acquire);
        loop {
            r.next.store(head, Ordering::Relaxed);
            match s
                .rings
                .compare_exchange(head, ring, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
    }
    let generation = s.next_gen.fetch_add(1, Ordering::Relaxed) + 1;
    if generation > 1 {
        // Before this thread's first stamp: stamps must now be ordered (see crate::clock).
        clock::several_threads();
    }
    // SAFETY: we claimed the ring (CLAIMED, by create or by the CAS above).
    unsafe { (*ring).activate(generation, sys::gettid(), clock::ordered_stamp()) };
    if key != 0 && !l.exited.get() {
        // SAFETY: key was created by pthread_key_create; keys below 32 need no allocation.
        unsafe { libc::pthread_setspecific(key - 1, ring as *const c_void) };
    }
    ring
}

/// A ring passed a quarter of its capacity: wake the writer if it sleeps (or start it, if the
/// library's constructor has not run yet and the ring is filling up).
#[cold]
#[inline(never)]
pub fn ring_quarter(_ring: &Ring) {
    let s = session();
    std::sync::atomic::fence(Ordering::SeqCst);
    if s.sleeping.load(Ordering::Relaxed) {
        // No guard change: a futex wake allocates nothing, and a signal handler that
        // allocates meanwhile must count as a re-entry (dropped), not as our own call.
        s.wake_writer();
    }
}

/// The calling thread's ring is full: wait for the writer (never drop for want of room).
/// `false` if recording stopped meanwhile (the event is then not recorded) or the writer waits
/// for memory (counted as dropped).
///
/// Nothing here allocates (`start_writer` sets `INTERNAL` itself); the caller ([`push_slow`])
/// has set the guard to `WAIT`, so a signal handler that allocates meanwhile records its events
/// (and may itself wait here).
#[cold]
#[inline(never)]
fn wait_for_room(ring: &Ring) -> bool {
    if orphaned() {
        return false;
    }
    let s = session();
    let t0 = now_ns();
    WAITS.fetch_add(1, Ordering::Relaxed);
    let ok = loop {
        if !RECORDING.load(Ordering::Acquire) {
            break false;
        }
        if ring.has_room() {
            break true;
        }
        match s.phase.load(Ordering::Acquire) {
            IDLE if !start_writer(s) => break false,
            FAILED | FINISHED => break false,
            _ => {}
        }
        if crate::real::STARVED.load(Ordering::Acquire) {
            // The writer waits for memory: the program must not wait for it.
            DROPPED.fetch_add(1, Ordering::Relaxed);
            break false;
        }
        ring.waiting.store(true, Ordering::SeqCst);
        let seen = ring.progress.load(Ordering::Acquire);
        std::sync::atomic::fence(Ordering::SeqCst);
        if ring.has_room() {
            ring.waiting.store(false, Ordering::Relaxed);
            break true;
        }
        s.wake_writer();
        sys::futex_wait(&ring.progress, seen, 1_000_000);
        ring.waiting.store(false, Ordering::Relaxed);
    };
    WAIT_NS.fetch_add(now_ns() - t0, Ordering::Relaxed);
    ok
}

/// The pthread-key destructor: the thread is exiting. glibc runs key destructors in up to four
/// rounds; we re-arm until the last so that other keys' destructors (which may free) run
/// before our `ThreadExit`.
unsafe extern "C" fn on_thread_exit(value: *mut c_void) {
    LOCAL.with(|l| {
        let round = l.exit_round.get() + 1;
        l.exit_round.set(round);
        let key = KEY.load(Ordering::Acquire);
        if round < PTHREAD_DESTRUCTOR_ITERATIONS && key != 0 && !value.is_null() {
            // SAFETY: re-setting our own key from its destructor is allowed (glibc then runs
            // another round).
            unsafe { libc::pthread_setspecific(key - 1, value) };
            return;
        }
        let ring = l.ring.get();
        if ring.is_null() {
            return;
        }
        l.exited.set(true);
        // The ring stays this thread's: glibc's teardown after the key destructors may still
        // free (it frees NULL twice on glibc 2.36); the consumer writes ThreadExit once the
        // kernel says the thread is gone.
        // SAFETY: rings are never unmapped.
        let r = unsafe { &*ring };
        r.exit_stamp
            .store(clock::ordered_stamp(), Ordering::Relaxed);
        r.state.store(ring::CLOSED, Ordering::Release);
        let s = session();
        std::sync::atomic::fence(Ordering::SeqCst);
        if s.sleeping.load(Ordering::Relaxed) {
            let prev = l.guard.replace(INTERNAL);
            s.wake_writer();
            l.guard.set(prev);
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The consumer.

impl Sink {
    /// Picks up rings registered since the last call, in creation order (without allocating
    /// beyond `known` itself, whose growth is fallible: see [`Sink::drain`]).
    fn refresh(&mut self, s: &Session) -> Result<(), RecorderError> {
        // Only a gap-free run: a ring whose creator has not pushed it yet comes next time.
        while (self.known.len() as u64) < s.next_seq.load(Ordering::Acquire) {
            let want = self.known.len() as u64;
            let mut p = s.rings.load(Ordering::Acquire);
            // SAFETY: rings in the registry are never unmapped.
            while !p.is_null() && unsafe { (*p).seq } != want {
                // SAFETY: as above.
                p = unsafe { (*p).next.load(Ordering::Acquire) };
            }
            if p.is_null() {
                break;
            }
            self.known
                .try_reserve(16)
                .map_err(|_| RecorderError::NoMemory("the list of threads"))?;
            self.known.push(Known {
                ring: RingRef(p),
                generation: 0,
                thread: 0,
                last_ts: 0,
                last_rel: 0,
                staging: Vec::new(),
            });
        }
        Ok(())
    }

    /// Moves published events into staging batches, writing full batches as frames. A ring's
    /// slots are freed before its frame is encoded, so its thread can go on while we work; a
    /// pass takes at most one frame's worth from each ring (the busiest thread cannot starve
    /// the others). `partial`: take everything published so far and also write every
    /// non-empty batch (a flush). `ending`: the process is leaving, so every exiting thread gets
    /// its ThreadExit now. Returns the events moved.
    fn drain(&mut self, s: &Session, partial: bool, ending: bool) -> Result<u64, RecorderError> {
        self.refresh(s)?;
        let frame_events = options::get().frame_events;
        let map = clock::anchor_map();
        let Sink {
            out,
            known,
            next_thread,
            ..
        } = self;
        let Some(out) = out.as_mut() else {
            return Ok(0);
        };
        let mut moved = 0;
        for k in known.iter_mut() {
            // SAFETY: rings in the registry are never unmapped.
            let r = unsafe { &*k.ring.0 };
            let state = r.state.load(Ordering::Acquire);
            if state != ring::ACTIVE && state != ring::CLOSED {
                continue;
            }
            // Checked before draining: once the thread is gone, nothing more can be published.
            let gone =
                state == ring::CLOSED && (ending || thread_gone(r.os_tid.load(Ordering::Relaxed)));
            let generation = r.generation.load(Ordering::Relaxed);
            if k.generation != generation {
                // A thread new to this file: announce it.
                write(out, k)?;
                k.generation = generation;
                k.thread = *next_thread;
                *next_thread += 1;
                k.last_ts = 0;
                k.last_rel = map.rel(r.start_stamp.load(Ordering::Relaxed));
                if k.staging.try_reserve(1).is_err() {
                    return Err(RecorderError::NoMemory("a thread's first frame"));
                }
                k.staging.push(Timed {
                    ts: k.last_rel,
                    event: Event::ThreadStart {
                        os_tid: r.os_tid.load(Ordering::Relaxed),
                    },
                });
            }
            // A flush takes what was published when it began (a thread that keeps its ring
            // full cannot hold it forever); otherwise one frame's worth.
            let mut budget = if partial || gone {
                r.pending()
            } else {
                u64::MAX
            };
            loop {
                let room = frame_events.saturating_sub(k.staging.len()) as u64;
                let want = room.min(budget).min(r.pending());
                // Staging grows fallibly: events that find no memory are counted as dropped
                // (the slots are freed all the same: the program never waits on a full ring
                // because the recorder ran out of memory).
                let stage = k.staging.try_reserve(want as usize).is_ok();
                // SAFETY: we hold the sink lock: we are the ring's only consumer.
                let n = unsafe {
                    r.drain(want, |slots| {
                        if stage {
                            k.staging.extend(slots.iter().map(|sl| {
                                let (stamp, event) = ring::decode(sl);
                                Timed {
                                    ts: map.rel(stamp),
                                    event,
                                }
                            }));
                        } else {
                            DROPPED.fetch_add(slots.len() as u64, Ordering::Relaxed);
                        }
                    })
                };
                if let Some(e) = k.staging.last() {
                    k.last_rel = e.ts;
                }
                moved += n;
                budget -= n;
                if k.staging.len() >= frame_events {
                    write(out, k)?;
                }
                if !(partial || gone) || n == 0 || budget == 0 {
                    break;
                }
            }
            if gone {
                let exit = map.rel(r.exit_stamp.load(Ordering::Relaxed));
                k.last_rel = k.last_rel.max(exit);
                if k.staging.try_reserve(1).is_err() {
                    return Err(RecorderError::NoMemory("a thread's last frame"));
                }
                k.staging.push(Timed {
                    ts: k.last_rel,
                    event: Event::ThreadExit,
                });
            }
            if partial || gone {
                write(out, k)?;
            }
            if gone {
                // Its thread is gone and every event is written: the ring may be reused.
                k.staging = Vec::new();
                r.state.store(ring::FREE, Ordering::Release);
            }
        }
        Ok(moved)
    }

    /// Drains everything and flushes the file.
    fn flush(&mut self, s: &Session) -> Result<(), RecorderError> {
        self.drain(s, true, false)?;
        if let Some(out) = self.out.as_mut() {
            out.sample()?;
            out.w.flush().map_err(|e| out.error(e))?;
        }
        Ok(())
    }

    /// Drains everything and writes the trailer; the file is closed.
    fn finish(&mut self, s: &Session, end: &str) -> Result<Option<String>, RecorderError> {
        if self.out.is_none() {
            return Ok(None);
        }
        self.drain(s, true, true)?;
        if crate::real::TAPPED.load(Ordering::Acquire) {
            return Err(RecorderError::NoMemory("the recorder's own data"));
        }
        if !memory_for(16 * SMALL_PROBE) {
            return Err(RecorderError::NoMemory("the trailer"));
        }
        let mut out = self.out.take().expect("checked above");
        out.sample()?;
        let events = out.w.events_written();
        let bytes = out.w.bytes_written();
        let extra = vec![
            ("recorder.end".to_string(), end.to_string()),
            ("recorder.reentries".into(), stat(&REENTRIES)),
            ("recorder.internal_calls".into(), stat(&INTERNAL_CALLS)),
            ("recorder.app_waits".into(), stat(&WAITS)),
            ("recorder.app_wait_ns".into(), stat(&WAIT_NS)),
            ("recorder.writer_cpu_ns".into(), stat(&WRITER_CPU_NS)),
        ];
        let extra = extra.into_iter().chain(clock::facts()).collect();
        let path = out.path.clone();
        out.w
            .finish_with(
                DROPPED.load(Ordering::Relaxed) + SIDE_PENDING.load(Ordering::Relaxed),
                extra,
            )
            .map_err(|source| RecorderError::Write { path, source })?;
        if options::get().verbose {
            say(&format_args!(
                "{events} events, {} threads, {bytes} bytes ({:.2} bytes/event) in {}",
                self.next_thread,
                bytes as f64 / events.max(1) as f64,
                out.path
            ));
        }
        Ok(Some(out.path))
    }
}

/// Whether the thread `tid` of this process has ended.
fn thread_gone(tid: u32) -> bool {
    // SAFETY: signal 0 only checks that the thread exists.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, sys::getpid(), tid, 0) };
    rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn stat(a: &AtomicU64) -> String {
    a.load(Ordering::Relaxed).to_string()
}

/// Writes a ring's staged events as one frame (nothing if there are none): first their
/// relative stamps become trace ns, by the process's one clock map (see [`crate::clock`]);
/// a stamp below its thread's previous one is raised to it (and counted).
fn write(out: &mut Output, k: &mut Known) -> Result<(), RecorderError> {
    if k.staging.is_empty() {
        return Ok(());
    }
    // Encoding a frame larger than any before grows `traces`' buffers, and a thread new to the
    // file adds to its tables; both abort on failure. Make sure (with a fallible probe,
    // released at once into this thread's malloc arena, where the writer's next allocations
    // find it) that the memory is there, else lose the batch and count it.
    // A batch larger than the buffers that finds no memory is written as frames of the
    // largest size so far, which need none.
    // Once a probe failed, frames never grow again: the memory the program leaves is what the
    // writer has. (A probe is released before `traces` allocates, so a program allocating at
    // that very moment can still take the memory: the probe asks for twice the estimate.)
    let len = k.staging.len();
    let chunk = if len > out.largest && !out.pressed && memory_for(2 * len * ENCODE_BYTES_PER_EVENT)
    {
        out.largest = len;
        len
    } else {
        // The buffers were sized in bytes by an earlier frame of `largest` events; other
        // events may encode larger: a quarter of that leaves room for the difference.
        out.pressed |= len > out.largest;
        if len > out.largest {
            (out.largest / 4).max(1)
        } else {
            len
        }
    };
    if chunk == 0 || !memory_for(SMALL_PROBE) {
        DROPPED.fetch_add(len as u64, Ordering::Relaxed);
        k.staging.clear();
        return Ok(());
    }
    let map = clock::map();
    let mut prev = k.last_ts;
    let mut clamped = 0;
    for e in k.staging.iter_mut() {
        let ts = map.ns(e.ts);
        if ts < prev {
            clamped += 1;
        } else {
            prev = ts;
        }
        e.ts = prev;
    }
    if clamped != 0 {
        clock::CLAMPED.fetch_add(clamped, Ordering::Relaxed);
    }
    k.last_ts = prev;
    let r = k
        .staging
        .chunks(chunk)
        .try_for_each(|c| out.w.write_batch(k.thread, c));
    k.staging.clear();
    r.map_err(|e| out.error(e))
}

impl Output {
    /// Writes a sample of the process's memory (RSS, peak, faults) into the trace.
    fn sample(&mut self) -> Result<(), RecorderError> {
        let sample = crate::rss::sample();
        self.w.write_samples(&[sample]).map_err(|e| self.error(e))
    }

    fn error(&self, source: traces::TraceError) -> RecorderError {
        RecorderError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

/// Recording cannot go on: say why once, stop recording, let the program run.
fn fail(s: &Session, sink: &mut Sink, err: &RecorderError) {
    RECORDING.store(false, Ordering::Release);
    s.phase.store(FAILED, Ordering::Release);
    sink.out = None;
    say(err);
}

/// The command line the constructor was given (argv), or std's view of it.
fn command_line() -> Vec<String> {
    let argv = ARGV.load(Ordering::Acquire);
    let argc = ARGC.load(Ordering::Acquire) as usize;
    if argv.is_null() {
        return std::env::args().collect();
    }
    (0..argc)
        .map_while(|i| {
            // SAFETY: argv holds argc pointers to NUL-terminated strings (the process's own
            // argv, which lives as long as the process).
            unsafe {
                let p = *argv.add(i);
                (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
            }
        })
        .collect()
}

/// Creates the next trace file of session `s` and writes its header.
fn open_output(s: &Session, sink: &mut Sink) -> Result<Output, RecorderError> {
    let opts = options::get();
    // The allocations below (header, zstd, output buffer) are not fallible one by one: check
    // the memory is there first.
    if !memory_for(OPEN_BYTES) {
        return Err(RecorderError::NoMemory("opening the trace file"));
    }
    let template = crate::naming::parse(&opts.output);
    let pid = sys::getpid();
    // Only the first file of the first process may take the template's own name.
    let root = !s.child && sink.files == 0 && sink.continues.is_none();
    let mut last_err = None;
    let mut opened = None;
    for path in template.candidates(pid, root) {
        let c = std::ffi::CString::new(path.clone())
            .map_err(|_| RecorderError::BadPath(path.clone()))?;
        // SAFETY: c is a NUL-terminated path; O_EXCL never truncates another trace.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd >= 0 {
            opened = Some((fd, path));
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            last_err = Some((path, e));
            break;
        }
    }
    let (fd, path) = opened.ok_or_else(|| match last_err {
        Some((path, source)) => RecorderError::Create { path, source },
        None => RecorderError::NamesTaken {
            template: opts.output.clone(),
        },
    })?;
    // Keep the trace on a high descriptor: programs that reuse low numbers never meet it.
    let high = sys::dup_high(fd);
    let fd = if high >= 0 {
        // SAFETY: fd is ours, just opened.
        unsafe { libc::close(fd) };
        high
    } else {
        fd
    };
    let file = sys::TraceFile::new(fd).map_err(|source| RecorderError::Create {
        path: path.clone(),
        source,
    })?;

    clock::init();
    let start = clock::anchor_ns();
    let mut h = Header::for_this_process(concat!("alloclab-recorder ", env!("CARGO_PKG_VERSION")));
    h.command_line = command_line();
    if let Clock::Monotonic {
        resolution_ns,
        start_monotonic_ns,
    } = h.clock
    {
        h.start_unix_ns = h
            .start_unix_ns
            .saturating_sub(start_monotonic_ns.saturating_sub(start));
        h.clock = Clock::Monotonic {
            start_monotonic_ns: start,
            resolution_ns,
        };
    }
    let origin = if let Some((ppid, ppath)) = &sink.parent {
        h.extra.push(("fork.parent_pid".into(), ppid.to_string()));
        h.extra.push(("fork.parent_trace".into(), ppath.clone()));
        "fork"
    } else if let Some(prev) = &sink.continues {
        h.extra.push(("exec.failed_after".into(), prev.clone()));
        "continuation after a failed exec"
    } else {
        "start"
    };
    h.extra.push(("recorder.origin".into(), origin.into()));
    h.extra.push(("recorder.clock".into(), clock::describe()));
    h.extra.push(("recorder.options".into(), opts.describe()));
    // Whether OS calls were recorded: a trace without OS call events says so here.
    h.extra.push((
        "recorder.os_calls".into(),
        if opts.os_calls { "recorded" } else { "off" }.into(),
    ));
    let w = TraceWriter::new(BufWriter::with_capacity(1 << 20, file), &path, &h)
        .and_then(|w| w.with_zstd_level(opts.zstd_level))
        .map_err(|source| RecorderError::Write {
            path: path.clone(),
            source,
        })?;
    // The header reaches the file now: a program that dies (or takes our descriptor) before
    // the first flush still leaves a trace that opens.
    let mut w = w;
    w.write_samples(&[crate::rss::sample()])
        .and_then(|_| w.flush())
        .map_err(|source| RecorderError::Write {
            path: path.clone(),
            source,
        })?;
    sink.files += 1;
    sink.next_thread = 0;
    for k in &mut sink.known {
        k.generation = 0;
    }
    s.set_path(&path);
    Ok(Output {
        w,
        path,
        largest: 0,
        pressed: false,
    })
}

/// Opens the session's file and starts its writer thread (once). `false` if recording failed.
fn start_writer(s: &'static Session) -> bool {
    if s.phase
        .compare_exchange(IDLE, STARTING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Someone else started (or failed): wait for the outcome.
        loop {
            match s.phase.load(Ordering::Acquire) {
                // A copy of a parent caught starting its writer: nobody will finish here.
                STARTING if orphaned() => return false,
                // SAFETY: sched_yield has no preconditions.
                STARTING => unsafe {
                    libc::sched_yield();
                },
                RUNNING => return true,
                _ => return false,
            }
        }
    }
    let _g = InternalScope::enter();
    let mut sink = s.lock();
    match open_output(s, &mut sink) {
        Ok(out) => sink.out = Some(out),
        Err(m) => {
            fail(s, &mut sink, &m);
            return false;
        }
    }
    drop(sink);
    // The writer inherits a mask blocking every signal: the program's handlers never run on it.
    let old = sys::block_all_signals();
    let spawned = spawn_writer(s);
    sys::restore_signals(&old);
    if let Err(e) = spawned {
        let mut sink = s.lock();
        fail(s, &mut sink, &RecorderError::Thread(e));
        return false;
    }
    s.phase.store(RUNNING, Ordering::Release);
    true
}

/// Starts the writer thread with `pthread_create` (not `std::thread`: std registers TLS
/// destructors on the spawning thread through `__cxa_thread_atexit_impl`, whose calloc'd entry
/// the program's exit would then free — a free of a block the trace never saw).
fn spawn_writer(s: &'static Session) -> std::io::Result<()> {
    extern "C" fn start(arg: *mut c_void) -> *mut c_void {
        // The guard first: nothing this thread does is ever recorded.
        LOCAL.with(|l| l.guard.set(INTERNAL));
        crate::real::WRITER.with(|w| w.set(true));
        // SAFETY: arg is the &'static Session passed below.
        let s = unsafe { &*(arg as *const Session) };
        // A panic must not unwind out of an extern "C" fn; stop recording instead.
        if std::panic::catch_unwind(|| writer_main(s)).is_err() {
            let mut sink = s.lock();
            sink.out = None;
            RECORDING.store(false, Ordering::Release);
            s.phase.store(FAILED, Ordering::Release);
            say(&"the writer thread failed; recording stopped, the program runs on");
        }
        std::ptr::null_mut()
    }
    // SAFETY: plain-data out-parameters; `start` has the signature pthread_create expects and
    // `s` lives forever.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 1 << 20);
        let mut t: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut t, &attr, start, s as *const Session as *mut c_void);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        // Named for `top -H` and debuggers; failure is harmless.
        libc::pthread_setname_np(t, c"alloclab-writer".as_ptr());
    }
    Ok(())
}

fn writer_main(s: &'static Session) {
    let interval = options::get().flush_ms * 1_000_000;
    let mut next_flush = now_ns() + interval;
    loop {
        match s.phase.load(Ordering::Acquire) {
            FAILED | FINISHED => return,
            _ => {}
        }
        let mut sink = s.lock();
        if crate::real::TAPPED.load(Ordering::Acquire) && sink.out.is_some() {
            // glibc had no memory for the recorder and the reserve stood in: stop before the
            // reserve runs out too.
            fail(
                s,
                &mut sink,
                &RecorderError::NoMemory("the recorder's own data"),
            );
            return;
        }
        let now = now_ns();
        let r = if now >= next_flush {
            next_flush = now + interval;
            if sys::only_thread_left() {
                // The program's threads are all gone (its main thread called pthread_exit and
                // the others ended): the process would have exited already. Returning lets
                // glibc end it as it would have, with exit(0) from this, its last thread —
                // the library's destructor then writes the trailer.
                return;
            }
            sink.flush(s).map(|_| 0)
        } else {
            sink.drain(s, false, false)
        };
        let moved = match r {
            Ok(n) => n,
            Err(e) => {
                fail(s, &mut sink, &e);
                return;
            }
        };
        drop(sink);
        WRITER_CPU_NS.store(sys::thread_cpu_ns(), Ordering::Relaxed);
        if moved == 0 {
            let left = next_flush.saturating_sub(now_ns());
            s.sleep(left.clamp(100_000, 10_000_000));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Process events: load, fork, exec, exit.

/// The library's constructor: read options, resolve symbols, start the writer.
#[cfg(not(test))]
extern "C" fn on_load(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    ARGC.store(argc.max(0) as u32, Ordering::Release);
    ARGV.store(argv as *mut *const c_char, Ordering::Release);
    let _g = InternalScope::enter();
    // The OS call hooks forward to what these resolve to, recording or not.
    crate::real::resolve_os();
    PID.store(sys::getpid(), Ordering::Release);
    crate::diag::init();
    let o = options::get();
    crate::calls::OS_CALLS.store(o.os_calls && !o.disable, Ordering::Release);
    if o.disable {
        RECORDING.store(false, Ordering::Release);
        return;
    }
    if o.verbose {
        say(&format_args!("recording with {}", o.describe()));
    }
    crate::real::RESERVE.map();
    crate::real::resolve_all();
    ensure_key();
    map_token();
    // SAFETY: registering an extern "C" fn with no arguments, valid for the process's life.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_child)) };
    LOADED.store(true, Ordering::Release);
    start_writer(&ROOT);
}

#[cfg(not(test))]
extern "C" fn on_unload() {
    finish("exit");
}

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = on_load;

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = on_unload;

/// `pthread_atfork` child handler: the child starts a session of its own.
extern "C" fn after_fork_child() {
    let _g = InternalScope::enter();
    let parent = session();
    let parent_pid = PID.load(Ordering::Relaxed);
    PID.store(sys::getpid(), Ordering::Release);
    // The kernel zeroed the token page in this child: it is ours now.
    let token = TOKEN.load(Ordering::Acquire);
    if !token.is_null() {
        // SAFETY: the token page is mapped for the life of the process (and its copies).
        unsafe { (*token).store(1, Ordering::Release) };
    }
    for c in [
        &DROPPED,
        &REENTRIES,
        &INTERNAL_CALLS,
        &WAITS,
        &WAIT_NS,
        &WRITER_CPU_NS,
        &clock::CLAMPED,
        &SIDE_PENDING,
    ] {
        c.store(0, Ordering::Relaxed);
    }
    clock::after_fork_child();
    LOCAL.with(|l| {
        l.ring.set(std::ptr::null_mut());
        l.exited.set(false);
        l.exit_round.set(0);
        l.broken.set(false);
        // The parent's pending handler events are the parent's.
        l.side_len.store(0, Ordering::Relaxed);
        l.draining.set(false);
    });
    // Always a session of its own: the parent's (copied) sink holds the parent's file, which
    // the child must never write, not even at its exit.
    let layout = std::alloc::Layout::new::<Session>();
    // SAFETY: Session is not zero-sized; a null result is handled.
    let child = unsafe { std::alloc::alloc(layout) }.cast::<Session>();
    if child.is_null() {
        // The parent's (copied) session must never be finished here: it writes its file.
        static NONE: Session = Session::new(true);
        RECORDING.store(false, Ordering::Release);
        CURRENT.store(&NONE as *const Session as *mut Session, Ordering::Release);
        say(&RecorderError::NoMemory("a forked child's session"));
        return;
    }
    // SAFETY: child is a fresh allocation for one Session; it is leaked (sessions live forever).
    let child: &'static mut Session = unsafe {
        child.write(Session::new(true));
        &mut *child
    };
    if !options::get().follow_fork || !RECORDING.load(Ordering::Acquire) {
        RECORDING.store(false, Ordering::Release);
        child.phase.store(FINISHED, Ordering::Release);
        CURRENT.store(child, Ordering::Release);
        return;
    }
    child
        .sink
        .get_mut()
        .unwrap_or_else(|e| e.into_inner())
        .parent = Some((parent_pid, parent.current_path()));
    CURRENT.store(child, Ordering::Release);
}

/// Maps the [`TOKEN`] page (once, at load). Without `MADV_WIPEONFORK` (Linux < 4.14) no
/// token is kept, and a child made without fork handlers is taken for a vfork child: it is
/// not recorded either, but says nothing.
fn map_token() {
    let page = sys::map_anon(4096);
    if page.is_null() {
        return;
    }
    // SAFETY: page is a fresh private anonymous mapping of one page.
    if unsafe { sys::madvise(page.cast(), 4096, libc::MADV_WIPEONFORK) } != 0 {
        return;
    }
    let token = page.cast::<AtomicU32>();
    // SAFETY: the page is zeroed, writable and aligned for an AtomicU32; it is never unmapped.
    unsafe { (*token).store(1, Ordering::Release) };
    TOKEN.store(token, Ordering::Release);
}

/// Whether the calling process is the one the current session belongs to (a vfork child, or
/// a child made without our fork handler, is not).
fn is_our_process() -> bool {
    let pid = PID.load(Ordering::Acquire);
    pid == 0 || pid == sys::getpid()
}

/// Whether this process is a copy of the recorded one made without our fork handler
/// (`_Fork()`, `clone()` without `CLONE_VM`, `syscall(SYS_fork)`): it has the parent's rings
/// and session, but no writer thread. The first time it is noticed (at the latest at exit),
/// recording stops in this process and one line says so; the parent records on. A vfork
/// child (same memory, token intact) is not an orphan.
pub fn orphaned() -> bool {
    if is_our_process() {
        return false;
    }
    let token = TOKEN.load(Ordering::Acquire);
    // SAFETY: the token page, once mapped, is never unmapped (a copy of it is ours too).
    if token.is_null() || unsafe { (*token).load(Ordering::Acquire) } != 0 {
        return false;
    }
    if !ORPHAN_SAID.swap(true, Ordering::AcqRel) {
        // Private memory: stopping here cannot stop the parent.
        RECORDING.store(false, Ordering::Release);
        let parent = PID.load(Ordering::Relaxed);
        say(&format_args!(
            "this process was made from process {parent} without fork handlers (_Fork(), clone() \
             or a raw fork system call), so it has no writer thread: its allocations are not \
             recorded (the parent's trace goes on). Use fork() to record both"
        ));
    }
    true
}

/// Drains everything, writes the trailer and stops recording (exit, `_exit`).
pub fn finish(end: &str) {
    if !is_our_process() {
        orphaned(); // says so if a fork without handlers made us; a vfork child stays quiet
        return; // the trace is the parent's
    }
    let _g = InternalScope::enter();
    RECORDING.store(false, Ordering::Release);
    let s = session();
    let mut sink = s.lock();
    // This thread consumes now: its allocations wait for memory as the writer's do.
    let was = crate::real::WRITER.with(|w| w.replace(true));
    let r = sink.finish(s, end);
    crate::real::WRITER.with(|w| w.set(was));
    if let Err(e) = r {
        fail(s, &mut sink, &e);
    }
    s.phase.store(FINISHED, Ordering::Release);
    drop(sink);
    s.wake_writer();
}

/// Before an exec: finish the trace (the exec'd program writes its own).
pub fn before_exec() {
    if orphaned() || !is_our_process() || !RECORDING.load(Ordering::Acquire) {
        return;
    }
    let _g = InternalScope::enter();
    let s = session();
    let mut sink = s.lock();
    let was = crate::real::WRITER.with(|w| w.replace(true));
    let r = sink.finish(s, "exec");
    crate::real::WRITER.with(|w| w.set(was));
    match r {
        Ok(p) => sink.exec_pending = p,
        Err(e) => fail(s, &mut sink, &e),
    }
}

/// The exec failed (the process goes on): continue in a new file.
pub fn exec_failed() {
    if !is_our_process() {
        return;
    }
    let _g = InternalScope::enter();
    let s = session();
    let mut sink = s.lock();
    if let Some(prev) = sink.exec_pending.take() {
        sink.continues = Some(prev);
        match open_output(s, &mut sink) {
            Ok(out) => sink.out = Some(out),
            Err(m) => fail(s, &mut sink, &m),
        }
    }
}
