//! Messages to the user: one line on the recorder's own duplicate of stderr (gnulib programs
//! close fd 2 before exit handlers run, so we keep our own descriptor from load time).

use std::sync::atomic::{AtomicI32, Ordering};

static FD: AtomicI32 = AtomicI32::new(2);

/// Duplicates fd 2 to a high, close-on-exec descriptor for later messages.
pub fn init() {
    let fd = crate::sys::dup_high(2);
    if fd >= 0 {
        FD.store(fd, Ordering::Relaxed);
    }
}

/// Writes `alloclab-recorder[pid]: msg` and a newline, ignoring errors.
pub fn say(msg: &str) {
    let _g = crate::local::InternalScope::enter();
    let line = format!("alloclab-recorder[{}]: {msg}\n", std::process::id());
    crate::sys::write_all(FD.load(Ordering::Relaxed), line.as_bytes());
}
