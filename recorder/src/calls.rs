//! The bodies of the hooks: forward to glibc, record one event. See [`crate::hooks`].

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, compiler_fence};

use crate::clock;
use crate::local::{HOT, LOCAL, Local, OUT};
use crate::real;
use crate::ring::Ring;
use crate::ring::{self, kind, word0};
use crate::session;

/// Records one event of the calling thread: the hot path. No lock, no syscall, no
/// allocation: a thread-local load, a clock read (`rdtscp`, or the vDSO) and a 32-byte
/// store.
#[inline(always)]
fn record(k: u64, a: u64, b: u64, c: u64) {
    if !session::RECORDING.load(Ordering::Relaxed) {
        return;
    }
    // Only the address comes out of `with` (a tiny closure, always inlined); the rest works on
    // the reference.
    // SAFETY: LOCAL is a const-initialised thread-local without destructor: it lives as long
    // as the thread, and only this thread touches it.
    let l: &Local = unsafe { &*LOCAL.with(|l| l as *const Local) };
    let g = l.guard.get();
    if g != OUT {
        return session::guarded(l, g, k, a, b, c);
    }
    let ring = l.ring.get();
    if ring.is_null() {
        return session::first_event(l, k, a, b, c);
    }
    // SAFETY: the ring in this thread's LOCAL was claimed by this thread: it is the ring's only
    // producer; rings are never unmapped.
    store(l, unsafe { &*ring }, k, a, b, c, OUT);
}

/// Stores one event into the thread's ring `r` (which the thread claimed: it is its only
/// producer), with the guard `HOT` meanwhile, then sets the guard to `after`.
#[inline(always)]
pub(crate) fn store(l: &Local, r: &Ring, k: u64, a: u64, b: u64, c: u64, after: u8) {
    l.guard.set(HOT);
    // The guard is set before anything below (a signal handler must see it), and changed only
    // after the store: compiler fences (no instruction) keep the compiler from moving it.
    compiler_fence(Ordering::SeqCst);
    // Events of signal handlers that interrupted an earlier store of this thread: into the ring
    // first, before this event's stamp (the one extra branch of the hot path; never taken
    // without such handlers).
    if l.side_len.load(Ordering::Relaxed) != 0 {
        // SAFETY: r is this thread's ring (the caller's contract).
        unsafe { session::drain_side(l, r) };
    }
    let stamp = clock::stamp();
    // SAFETY: as above.
    if !unsafe { r.try_push(word0(stamp, k), a, b, c) } {
        // SAFETY: as above.
        unsafe { session::push_slow(l, r, k, a, b, c, clock::stamp) };
    }
    compiler_fence(Ordering::SeqCst);
    l.guard.set(after);
}

#[inline(always)]
pub unsafe fn malloc(size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments to glibc.
    let p = unsafe { real::malloc(size) };
    record(kind::MALLOC, size as u64, p as u64, 0);
    p
}

#[inline(always)]
pub unsafe fn free(ptr: *mut c_void) {
    record(kind::FREE, ptr as u64, 0, 0);
    // SAFETY: forwarding the caller's pointer to glibc.
    unsafe { real::free(ptr) }
}

#[inline(always)]
pub unsafe fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments to glibc.
    let p = unsafe { real::calloc(n, size) };
    record(kind::CALLOC, n as u64, size as u64, p as u64);
    p
}

#[inline(always)]
pub unsafe fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if size == 0 && !ptr.is_null() {
        // glibc frees the block and returns NULL: a free, stamped before it happens.
        record(kind::REALLOC, ptr as u64, 0, 0);
        // SAFETY: forwarding the caller's arguments to glibc.
        return unsafe { real::realloc(ptr, 0) };
    }
    // SAFETY: forwarding the caller's arguments to glibc.
    let p = unsafe { real::realloc(ptr, size) };
    record(kind::REALLOC, ptr as u64, size as u64, p as u64);
    p
}

/// glibc's reallocarray: realloc of `n * size` bytes, ENOMEM if that overflows.
#[inline(always)]
pub unsafe fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: as realloc.
        Some(bytes) => unsafe { realloc(ptr, bytes) },
        None => {
            set_errno(libc::ENOMEM);
            record(kind::REALLOC, ptr as u64, u64::MAX, 0);
            std::ptr::null_mut()
        }
    }
}

#[inline(always)]
pub unsafe fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments to glibc.
    let p = unsafe { real::memalign(align, size) };
    record(kind::MEMALIGN, align as u64, size as u64, p as u64);
    p
}

/// glibc 2.36's aligned_alloc is memalign (the same address in libc.so.6).
#[inline(always)]
pub unsafe fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments to glibc.
    let p = unsafe { real::memalign(align, size) };
    record(kind::ALIGNED_ALLOC, align as u64, size as u64, p as u64);
    p
}

/// glibc's posix_memalign: EINVAL unless `align` is a power-of-two multiple of
/// `sizeof(void *)`, ENOMEM if memalign fails; `*out` is written only on success.
#[inline(always)]
pub unsafe fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    let word = std::mem::size_of::<*mut c_void>();
    let (ret, p) = if !align.is_multiple_of(word) || !(align / word).is_power_of_two() {
        (libc::EINVAL, std::ptr::null_mut())
    } else {
        // SAFETY: forwarding the caller's arguments to glibc.
        let p = unsafe { real::memalign(align, size) };
        if p.is_null() {
            (libc::ENOMEM, p)
        } else {
            // SAFETY: the caller passes a writable pointer (posix_memalign's contract).
            unsafe { *out = p };
            (0, p)
        }
    };
    record(kind::POSIX_MEMALIGN, align as u64, size as u64, p as u64);
    ret
}

#[inline(always)]
pub unsafe fn valloc(size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's argument to glibc.
    let p = unsafe { real::valloc(size) };
    record(kind::VALLOC, page_size(), size as u64, p as u64);
    p
}

#[inline(always)]
pub unsafe fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's argument to glibc.
    let p = unsafe { real::pvalloc(size) };
    record(kind::PVALLOC, page_size(), size as u64, p as u64);
    p
}

fn page_size() -> u64 {
    static PAGE: AtomicU64 = AtomicU64::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    PAGE.store(p, Ordering::Relaxed);
    p
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno.
    unsafe { *libc::__errno_location() = e };
}

fn errno() -> c_int {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() }
}

/// fork: the parent records a `Fork` event; the child's recorder is reset by the
/// `pthread_atfork` child handler ([`session::after_fork_child`]).
#[inline(always)]
pub unsafe fn fork() -> libc::pid_t {
    let f = real::FORK.get();
    if f == 0 {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: f is glibc's fork, found by dlsym.
    let pid = unsafe { std::mem::transmute::<usize, real::ForkFn>(f)() };
    if pid > 0 {
        record(kind::FORK, pid as u64, 0, 0);
    }
    pid
}

/// Runs an exec function: the trace is finished first (exec replaces the process without
/// exit handlers); if the exec fails, recording goes on into a continuation file.
fn exec_with(run: impl FnOnce() -> c_int) -> c_int {
    session::before_exec();
    let r = run();
    let e = errno();
    session::exec_failed();
    set_errno(e);
    r
}

#[inline(always)]
pub unsafe fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let f = real::EXECVE.get();
    if f == 0 {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: f is glibc's execve, found by dlsym; the arguments are the caller's.
    exec_with(|| unsafe { std::mem::transmute::<usize, real::ExecveFn>(f)(path, argv, envp) })
}

#[inline(always)]
pub unsafe fn execv(next: &real::Next, path: *const c_char, argv: *const *const c_char) -> c_int {
    let f = next.get();
    if f == 0 {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: f is glibc's execv or execvp, found by dlsym; the arguments are the caller's.
    exec_with(|| unsafe { std::mem::transmute::<usize, real::ExecvFn>(f)(path, argv) })
}

#[inline(always)]
pub unsafe fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let f = real::EXECVPE.get();
    if f == 0 {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: f is glibc's execvpe, found by dlsym; the arguments are the caller's.
    exec_with(|| unsafe { std::mem::transmute::<usize, real::ExecveFn>(f)(file, argv, envp) })
}

#[inline(always)]
pub unsafe fn fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    let f = real::FEXECVE.get();
    if f == 0 {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: f is glibc's fexecve, found by dlsym; the arguments are the caller's.
    exec_with(|| unsafe { std::mem::transmute::<usize, real::FexecveFn>(f)(fd, argv, envp) })
}

/// `_exit`/`_Exit`: finish the trace (exit handlers will not run), then end the process
/// as glibc's `_exit` does.
pub fn exit_now(status: c_int) -> ! {
    session::finish("_exit");
    loop {
        // SAFETY: exit_group ends the process; it does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, status) };
    }
}

// ---------------------------------------------------------------------------------------------
// OS memory calls (`--os-calls`, `ALLOCLAB_OS_CALLS=1`).

/// Whether OS calls are recorded: set by the library's constructor from `ALLOCLAB_OS_CALLS`.
/// Off, each OS hook is this relaxed load and a call of the real function.
pub static OS_CALLS: AtomicBool = AtomicBool::new(false);

/// Records an OS call (stamped after it returned), leaving the caller's errno as the call set
/// it (recording may wait on a futex).
#[inline(always)]
fn record_os(k: u64, a: u64, b: u64, c: u64) {
    let e = errno();
    record(k, a, b, c);
    set_errno(e);
}

#[inline(always)]
pub unsafe fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { real::os::mmap(addr, len, prot, flags, fd, off) };
    if OS_CALLS.load(Ordering::Relaxed) {
        let err = if p == libc::MAP_FAILED {
            ring::err_byte(errno())
        } else {
            0
        };
        let c = flags as u32 as u64 | (prot as u8 as u64) << 32 | err << 40;
        record_os(kind::OS_MMAP, p as u64, len as u64, c);
    }
    p
}

#[inline(always)]
pub unsafe fn munmap(addr: *mut c_void, len: usize) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real::os::munmap(addr, len) };
    if OS_CALLS.load(Ordering::Relaxed) {
        let err = if r != 0 { ring::err_byte(errno()) } else { 0 };
        record_os(kind::OS_MUNMAP, addr as u64, len as u64, err);
    }
    r
}

#[inline(always)]
pub unsafe fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { real::os::mremap(old, old_len, new_len, flags, new_addr) };
    if OS_CALLS.load(Ordering::Relaxed) {
        let c = if p == libc::MAP_FAILED {
            ring::FAILED | ring::err_byte(errno())
        } else {
            p as u64
        };
        let b = (new_len as u64 & ((1 << ring::MREMAP_FLAGS_SHIFT) - 1))
            | (flags as u8 as u64) << ring::MREMAP_FLAGS_SHIFT;
        record_os(kind::OS_MREMAP, old as u64, b, c);
    }
    p
}

#[inline(always)]
pub unsafe fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real::os::madvise(addr, len, advice) };
    if OS_CALLS.load(Ordering::Relaxed) {
        let err = if r != 0 { ring::err_byte(errno()) } else { 0 };
        record_os(
            kind::OS_MADVISE,
            addr as u64,
            len as u64,
            advice as u32 as u64 | err << 32,
        );
    }
    r
}

/// brk and sbrk: the break before and after the call (glibc's `sbrk(0)`, which only reads its
/// cached break, around it).
#[inline(always)]
fn moving_break<R>(call: impl FnOnce() -> R, failed: impl Fn(&R) -> bool) -> R {
    if !OS_CALLS.load(Ordering::Relaxed) {
        return call();
    }
    let before = real::os::sbrk(0);
    let r = call();
    let err = if failed(&r) {
        ring::err_byte(errno())
    } else {
        0
    };
    let e = errno();
    let after = real::os::sbrk(0);
    set_errno(e);
    record_os(kind::OS_BRK, before as u64, after as u64, err);
    r
}

#[inline(always)]
pub fn brk(addr: *mut c_void) -> c_int {
    moving_break(|| real::os::brk(addr), |&r| r != 0)
}

#[inline(always)]
pub fn sbrk(increment: isize) -> *mut c_void {
    moving_break(|| real::os::sbrk(increment), |&r| r as isize == -1)
}
