//! Aborting with a message, without allocating and without unwinding.
//!
//! Nothing inside the allocator may panic: a panic allocates its payload and runs the panic hook,
//! which may allocate again, from inside malloc. Broken invariants and invalid pointers end here.

/// Writes `fancy: <msg>` to fd 2 with `write(2)` and aborts the process.
#[cold]
#[inline(never)]
pub fn fatal(msg: &str) -> ! {
    write_stderr("fancy: ");
    write_stderr(msg);
    write_stderr("\n");
    // SAFETY: abort has no preconditions; it never returns.
    unsafe { libc::abort() }
}

/// Writes `fancy: <what> <p>: <why>` (the pointer in hex) to fd 2 as one line and aborts: the
/// message for a misused pointer (double free, interior or foreign pointer).
#[cold]
#[inline(never)]
pub fn fatal_ptr(what: &str, p: *const u8, why: &str) -> ! {
    let mut w = StackWriter::<256>::new();
    let _ = core::fmt::Write::write_fmt(&mut w, format_args!("fancy: {what} {p:p}: {why}\n"));
    w.flush_to(2);
    // SAFETY: abort has no preconditions; it never returns.
    unsafe { libc::abort() }
}

/// Writes bytes to fd 2, retrying on short writes; errors are ignored (nothing else to do).
pub fn write_stderr(s: &str) {
    write_fd(2, s.as_bytes());
}

pub(crate) fn write_fd(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: `b` is a valid slice for `b.len()` bytes.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

/// A `core::fmt::Write` into a fixed stack buffer: formatting without allocating.
pub struct StackWriter<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackWriter<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> StackWriter<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        StackWriter {
            buf: [0; N],
            len: 0,
        }
    }
    /// What was formatted so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// Writes what was formatted to `fd` and empties the buffer.
    pub fn flush_to(&mut self, fd: i32) {
        write_fd(fd, &self.buf[..self.len]);
        self.len = 0;
    }
}

impl<const N: usize> core::fmt::Write for StackWriter<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let b = s.as_bytes();
        let n = b.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        Ok(())
    }
}
