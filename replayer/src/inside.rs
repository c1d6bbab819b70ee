//! What the replay child measures inside the loop besides time and RSS: hardware and
//! scheduler counters ([`crate::counters`]) and the allocator's OS memory calls
//! ([`crate::oscalls`]). The engine calls [`loop_start`] at the barrier and [`loop_end`] once
//! the last replay thread is joined; the child opens the counters before the pass
//! ([`prepare`], before any replay thread exists, so they inherit them) and collects the
//! figures after it ([`take`]).

use std::sync::Mutex;

use crate::counters::{Counters, Readings};
use crate::oscalls::{self, Totals};

/// With this environment variable set (to anything) a replay child measures none of this:
/// the counters stay closed and the OS-call wrappers only forward (what the overhead
/// benchmark compares against).
pub const OFF_ENV: &str = "ALLOCLAB_NO_INSIDE";

struct State {
    off: bool,
    counters: Option<Counters>,
    readings: Option<Readings>,
    os: Option<Totals>,
}

static STATE: Mutex<State> = Mutex::new(State {
    off: false,
    counters: None,
    readings: None,
    os: None,
});

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens the counters for the coming pass (call before the engine starts any thread).
pub fn prepare() {
    let mut s = state();
    s.off = std::env::var_os(OFF_ENV).is_some();
    s.counters = (!s.off).then(Counters::open);
    s.readings = None;
    s.os = None;
}

/// The barrier is about to open: start counting.
pub fn loop_start() {
    let mut s = state();
    if let Some(c) = s.counters.as_mut() {
        c.enable();
    }
    if !s.off {
        oscalls::start();
    }
}

/// Every replay thread is joined: stop counting and keep the figures for [`take`].
pub fn loop_end() {
    let os = oscalls::stop();
    let mut s = state();
    if s.off {
        return;
    }
    let readings = s.counters.as_mut().map(|c| {
        c.disable();
        c.read()
    });
    s.readings = readings;
    s.os = Some(os);
}

/// The figures of the last loop: the counters (None if [`prepare`] was not called) and the OS
/// calls.
pub fn take() -> (Option<Readings>, Option<Totals>) {
    let mut s = state();
    s.counters = None;
    (s.readings.take(), s.os.take())
}
