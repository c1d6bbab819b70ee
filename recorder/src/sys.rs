//! The few system calls the recorder makes: futexes, anonymous memory, descriptors, thread ids.

use std::ffi::c_int;
use std::sync::atomic::AtomicU32;

/// The kernel id of the calling thread.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// The calling process's pid (a real syscall: glibc 2.25+ does not cache it).
pub fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// Sleeps while `word` holds `expected`, at most `timeout_ns`.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: word is a live, aligned u32 for the duration of the call; ts is a valid
    // relative timeout. EAGAIN/ETIMEDOUT/EINTR are all fine: callers re-check their condition.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes every thread sleeping on `word`.
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: word is a live, aligned u32; FUTEX_WAKE reads nothing else.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// `len` bytes of zeroed anonymous memory, or null. A system call, not libc's `mmap`: the
/// library exports `mmap` itself (the OS call hooks), and the recorder's own mappings must not
/// go through them.
pub fn map_anon(len: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure returns -1.
    let p = unsafe {
        libc::syscall(
            libc::SYS_mmap,
            std::ptr::null_mut::<libc::c_void>(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == -1 {
        std::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

/// `madvise(2)` as a system call (for the same reason as [`map_anon`]); 0 or -1 (errno set).
///
/// # Safety
/// `addr..addr + len` is a mapping of the caller's.
pub unsafe fn madvise(addr: *mut libc::c_void, len: usize, advice: c_int) -> c_int {
    // SAFETY: the caller's contract; madvise touches no memory of ours.
    unsafe { libc::syscall(libc::SYS_madvise, addr, len, advice) as c_int }
}

/// A close-on-exec duplicate of `fd` numbered 900 or above when possible (programs that reuse
/// low descriptors never meet it), or -1.
pub fn dup_high(fd: c_int) -> c_int {
    // SAFETY: fcntl on any descriptor number is safe; failures return -1.
    unsafe {
        let d = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 900);
        if d >= 0 {
            return d;
        }
        libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3)
    }
}

/// Writes all of `buf` to `fd`, giving up on the first error.
pub fn write_all(fd: c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice of buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// Blocks every signal in the calling thread; returns the previous mask.
pub fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; the pointers are to live locals.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

/// Restores a mask returned by [`block_all_signals`].
pub fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: old is a valid mask from pthread_sigmask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}

/// CPU time the calling thread has used, in ns.
pub fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: t is a live, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
}

/// The trace file, written through a raw descriptor that is checked before every write: a
/// program that closes all its descriptors (daemons, some fork children) and then opens files
/// may get our descriptor number back, and the recorder must never write into the program's
/// file. A write finding another file behind the number fails, and recording stops.
pub struct TraceFile {
    fd: c_int,
    dev: u64,
    ino: u64,
}

/// The (device, inode) of the file open on `fd`.
pub fn file_id(fd: c_int) -> std::io::Result<(u64, u64)> {
    // SAFETY: st is a plain-data out-parameter; fstat on any number is safe.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((st.st_dev, st.st_ino))
    }
}

impl TraceFile {
    /// Takes ownership of `fd`, an open trace file.
    pub fn new(fd: c_int) -> std::io::Result<TraceFile> {
        let (dev, ino) = file_id(fd)?;
        Ok(TraceFile { fd, dev, ino })
    }

    fn check(&self) -> std::io::Result<()> {
        match file_id(self.fd) {
            Ok(id) if id == (self.dev, self.ino) => Ok(()),
            Ok(_) => Err(std::io::Error::other(
                "the program closed the trace's descriptor and opened another file on its number",
            )),
            Err(e) => Err(std::io::Error::new(
                e.kind(),
                format!("the trace's descriptor was closed by the program ({e})"),
            )),
        }
    }
}

impl std::io::Write for TraceFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.check()?;
        loop {
            // SAFETY: buf is a live slice of buf.len() bytes.
            let n = unsafe { libc::write(self.fd, buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        // Never close a descriptor that is no longer ours.
        if self.check().is_ok() {
            // SAFETY: fd is our trace file (just checked).
            unsafe { libc::close(self.fd) };
        }
    }
}

/// Reads up to `buf.len()` bytes of the file at `path` (a NUL-terminated path) with plain
/// system calls (no allocation); `None` if it cannot be opened.
fn read_small(path: &std::ffi::CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: path is NUL-terminated; the descriptor is ours until closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: buf is a live, writable slice of buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: fd was opened above.
    unsafe { libc::close(fd) };
    (n >= 0).then_some(n as usize)
}

/// Whether the calling thread is the only live thread of the process: its main thread ended
/// (a main thread that called `pthread_exit` stays a zombie in `/proc` until the process ends)
/// and `/proc/self/task` lists nothing but that zombie and us. Cheap when the main thread
/// lives (one small read); a directory scan only once it is a zombie. False when in doubt.
pub fn only_thread_left() -> bool {
    let pid = getpid();
    let mut path = [0u8; 48];
    let mut w = &mut path[..];
    if std::io::Write::write_fmt(&mut w, format_args!("/proc/self/task/{pid}/stat\0")).is_err() {
        return false;
    }
    let Ok(path) = std::ffi::CStr::from_bytes_until_nul(&path) else {
        return false;
    };
    let mut stat = [0u8; 512];
    let Some(n) = read_small(path, &mut stat) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let stat = &stat[..n];
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    if stat.get(close + 2) != Some(&b'Z') {
        return false;
    }
    // SAFETY: a NUL-terminated path; the stream is closed below.
    let dir = unsafe { libc::opendir(c"/proc/self/task".as_ptr()) };
    if dir.is_null() {
        return false;
    }
    let mut tasks = 0;
    loop {
        // SAFETY: dir is an open directory stream.
        let e = unsafe { libc::readdir(dir) };
        if e.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) };
        if name.to_bytes().first().is_some_and(u8::is_ascii_digit) {
            tasks += 1;
        }
    }
    // SAFETY: dir is open and closed once.
    unsafe { libc::closedir(dir) };
    // The zombie main thread and the caller.
    tasks <= 2
}
