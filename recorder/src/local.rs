//! Per-thread state: the re-entry guard and the thread's ring.
//!
//! Everything here is a `const`-initialised `thread_local!` of types without `Drop`: touching
//! it never allocates and never registers a TLS destructor (a lazily initialised one would
//! call malloc, i.e. re-enter the hooks). Thread exit is seen through a pthread key instead
//! ([`crate::session::on_thread_exit`]).

use std::cell::Cell;

use crate::ring::Ring;

/// Guard value: the thread is not inside the recorder.
pub const OUT: u8 = 0;
/// Guard value: the thread is storing an event (a hook entered now is a signal handler that
/// interrupted the recorder: a re-entry, counted and forwarded unrecorded).
pub const HOT: u8 = 1;
/// Guard value: the thread runs recorder code that may allocate (start-up, thread
/// registration, flushing; always, on the writer thread): hooks forward without recording.
pub const INTERNAL: u8 = 2;

/// One thread's recorder state.
pub struct Local {
    /// [`OUT`], [`HOT`] or [`INTERNAL`]. Read on every hook call.
    pub guard: Cell<u8>,
    /// The thread's ring, null until its first event (and again after it exited).
    pub ring: Cell<*mut Ring>,
    /// The thread's pthread-key destructor has run (events after it start a new ring).
    pub exited: Cell<bool>,
    /// Rounds of pthread-key destructors seen (we re-arm to run in the last round).
    pub exit_round: Cell<u8>,
    /// Recording failed on this thread (no memory for a ring): forward only.
    pub broken: Cell<bool>,
}

thread_local! {
    pub static LOCAL: Local = const {
        Local {
            guard: Cell::new(OUT),
            ring: Cell::new(std::ptr::null_mut()),
            exited: Cell::new(false),
            exit_round: Cell::new(0),
            broken: Cell::new(false),
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
