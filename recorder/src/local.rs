//! Per-thread state: the re-entry guard and the thread's ring.
//!
//! Everything here is a `const`-initialised `thread_local!` of types without `Drop`: touching
//! it never allocates and never registers a TLS destructor (a lazily initialised one would
//! call malloc, i.e. re-enter the hooks). Thread exit is seen through a pthread key instead
//! ([`crate::session::on_thread_exit`]).

use std::cell::Cell;
use std::sync::atomic::AtomicU32;

use crate::ring::{Ring, Slot};

/// Events a thread's side buffer holds (see [`Local::side`]): signal handlers that allocate
/// while their thread stores an event. A handler makes one to a few events; 32 leave room for
/// handlers interrupting handlers.
pub const SIDE_SLOTS: usize = 32;

/// Guard value: the thread is not inside the recorder.
pub const OUT: u8 = 0;
/// Guard value: the thread is storing an event (a hook entered now is a signal handler that
/// interrupted the recorder: a re-entry, whose event goes into the thread's side buffer).
pub const HOT: u8 = 1;
/// Guard value: the thread waits for room in its full ring, before storing its event (nothing
/// is half-stored: a signal handler that allocates now records as if outside the recorder,
/// waiting for room itself if need be, then puts this value back).
pub const WAIT: u8 = 3;
/// Guard value: the thread runs recorder code that may allocate (start-up, thread
/// registration, flushing; always, on the writer thread): hooks forward without recording.
pub const INTERNAL: u8 = 2;

/// One thread's recorder state.
pub struct Local {
    /// [`OUT`], [`HOT`], [`WAIT`] or [`INTERNAL`]. Read on every hook call.
    pub guard: Cell<u8>,
    /// The thread's ring, null until its first event (and again after it exited).
    pub ring: Cell<*mut Ring>,
    /// The thread's pthread-key destructor has run (events after it start a new ring).
    pub exited: Cell<bool>,
    /// Rounds of pthread-key destructors seen (we re-arm to run in the last round).
    pub exit_round: Cell<u8>,
    /// Recording failed on this thread (no memory for a ring): forward only.
    pub broken: Cell<bool>,
    /// Slots of [`Local::side`] taken (may pass [`SIDE_SLOTS`]: those events were dropped). A
    /// re-entered hook takes a slot with one `fetch_add` — a single instruction, so a handler
    /// interrupting this one takes the next slot — and fills it before it returns; the
    /// thread's next event outside a handler moves the slots into the ring (before its own
    /// stamp, so they keep their place in the thread's order) and resets this to 0. Only this
    /// thread (and its signal handlers, which run to completion before the code they
    /// interrupted resumes) touches it.
    pub side_len: AtomicU32,
    /// Events of hooks entered while the thread stored an event (guard [`HOT`]): a signal
    /// handler that allocates. Storing them into the ring then would tear the interrupted
    /// store, so they wait here. No allocation: a fixed array in the thread's TLS.
    pub side: [Cell<Slot>; SIDE_SLOTS],
    /// The thread is moving its side buffer into the ring (such a move is never nested).
    pub draining: Cell<bool>,
}

thread_local! {
    pub static LOCAL: Local = const {
        Local {
            guard: Cell::new(OUT),
            ring: Cell::new(std::ptr::null_mut()),
            exited: Cell::new(false),
            exit_round: Cell::new(0),
            broken: Cell::new(false),
            side_len: AtomicU32::new(0),
            side: [const { Cell::new([0; 4]) }; SIDE_SLOTS],
            draining: Cell::new(false),
        }
    };
}

/// Sets the guard to [`INTERNAL`] for its lifetime and restores the previous value after.
pub struct InternalScope {
    prev: u8,
}

impl InternalScope {
    pub fn enter() -> InternalScope {
        let prev = LOCAL.with(|l| l.guard.replace(INTERNAL));
        InternalScope { prev }
    }
}

impl Drop for InternalScope {
    fn drop(&mut self) {
        LOCAL.with(|l| l.guard.set(self.prev));
    }
}
