//! Messages to the user: one line on the recorder's own duplicate of stderr (gnulib programs
//! close fd 2 before exit handlers run, so we keep our own descriptor from load time). If the
//! program closed that duplicate too (and maybe opened a file on its number), fd 2 is used.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

static FD: AtomicI32 = AtomicI32::new(-1);
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);

/// Duplicates fd 2 to a high, close-on-exec descriptor for later messages.
pub fn init() {
    let fd = crate::sys::dup_high(2);
    if fd >= 0
        && let Ok((dev, ino)) = crate::sys::file_id(fd)
    {
        DEV.store(dev, Ordering::Relaxed);
        INO.store(ino, Ordering::Relaxed);
        FD.store(fd, Ordering::Release);
    }
}

/// Our duplicate if it still is one, else fd 2.
fn fd() -> i32 {
    let fd = FD.load(Ordering::Acquire);
    let ours = (DEV.load(Ordering::Relaxed), INO.load(Ordering::Relaxed));
    if fd >= 0 && crate::sys::file_id(fd).is_ok_and(|id| id == ours) {
        fd
    } else {
        2
    }
}

/// Writes `alloclab-recorder[pid]: msg` and a newline, ignoring errors.
pub fn say(msg: &str) {
    let _g = crate::local::InternalScope::enter();
    let line = format!("alloclab-recorder[{}]: {msg}\n", std::process::id());
    crate::sys::write_all(fd(), line.as_bytes());
}
