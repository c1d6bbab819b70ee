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

/// A line being formatted on the stack: `say` must not allocate (it reports, among others,
/// that memory ran out). Text past its capacity is cut, ending in `…`.
struct Line {
    buf: [u8; 1024],
    len: usize,
    cut: bool,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - 4 - self.len; // keep room for "…\n"
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        self.cut |= n < s.len();
        Ok(())
    }
}

/// Writes `alloclab-recorder[pid]: msg` and a newline, ignoring errors. Never allocates.
pub fn say(msg: &dyn std::fmt::Display) {
    use std::fmt::Write as _;
    let _g = crate::local::InternalScope::enter();
    let mut line = Line {
        buf: [0; 1024],
        len: 0,
        cut: false,
    };
    let _ = write!(line, "alloclab-recorder[{}]: {msg}", crate::sys::getpid());
    if line.cut {
        let _ = line.write_str("…");
    }
    line.buf[line.len] = b'\n';
    crate::sys::write_all(fd(), &line.buf[..line.len + 1]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let mut l = Line {
            buf: [0; 1024],
            len: 0,
            cut: false,
        };
        write!(l, "{}", "é".repeat(600)).unwrap();
        assert!(l.cut);
        assert!(std::str::from_utf8(&l.buf[..l.len]).is_ok());
        assert!(l.len <= 1020);
    }
}
