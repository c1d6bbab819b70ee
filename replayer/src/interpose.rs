//! The `replay` binary's own `mmap`, `mmap64`, `munmap`, `mremap`, `madvise`, `brk` and `sbrk`:
//! the system call itself plus a count in [`replayer::oscalls`] while the replay loop runs.
//! They are defined in the executable and exported (build.rs), so every object of the process
//! that calls these functions through its dynamic symbols reaches them first (see oscalls.rs
//! for what they see and what they cannot). Nothing here allocates, locks or panics.
//!
//! mmap, munmap, mremap and madvise go straight to the kernel (`syscall`, which sets errno as
//! the libc wrappers do); brk and sbrk go through glibc's `__sbrk`, so that glibc's idea of the
//! program break (which its own malloc uses) stays right.

use std::ffi::{c_int, c_void};

use replayer::oscalls::{self, Call};

unsafe extern "C" {
    /// glibc's sbrk (a public symbol, GLIBC_2.2.5), which keeps glibc's cached break.
    fn __sbrk(increment: isize) -> *mut c_void;
}

/// `mmap(2)`.
///
/// # Safety
/// As the libc function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    let t0 = oscalls::begin();
    // SAFETY: the caller's arguments, passed on unchanged to the system call it asked for.
    let r = unsafe { libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) };
    let ok = r != -1;
    oscalls::end(t0, Call::Mmap, len as u64, len as i64, ok);
    r as *mut c_void
}

/// `mmap64(2)` (the same call on 64-bit Linux).
///
/// # Safety
/// As the libc function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    // SAFETY: forwarded with the caller's contract.
    unsafe { mmap(addr, len, prot, flags, fd, off) }
}

/// `munmap(2)`.
///
/// # Safety
/// As the libc function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let t0 = oscalls::begin();
    // SAFETY: the caller's arguments, passed on unchanged.
    let r = unsafe { libc::syscall(libc::SYS_munmap, addr, len) } as c_int;
    oscalls::end(t0, Call::Munmap, len as u64, -(len as i64), r == 0);
    r
}

/// `mremap(2)`. The C function is variadic (the fifth argument only with MREMAP_FIXED); on
/// x86-64 a variadic integer argument travels in the same register as a fixed one, so taking
/// five fixed arguments reads it where the caller put it (and ignores it otherwise, as the
/// kernel does).
///
/// # Safety
/// As the libc function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let t0 = oscalls::begin();
    // SAFETY: the caller's arguments, passed on unchanged.
    let r = unsafe { libc::syscall(libc::SYS_mremap, old, old_len, new_len, flags, new_addr) };
    let net = new_len as i64 - old_len as i64;
    oscalls::end(t0, Call::Mremap, new_len as u64, net, r != -1);
    r as *mut c_void
}

/// `madvise(2)`.
///
/// # Safety
/// As the libc function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int {
    let t0 = oscalls::begin();
    // SAFETY: the caller's arguments, passed on unchanged.
    let r = unsafe { libc::syscall(libc::SYS_madvise, addr, len, advice) } as c_int;
    oscalls::end(t0, Call::Madvise, len as u64, 0, r == 0);
    if r == 0 {
        oscalls::advice(t0, advice, len as u64);
    }
    r
}

/// `sbrk(3)`.
///
/// # Safety
/// As the libc function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sbrk(increment: isize) -> *mut c_void {
    let t0 = oscalls::begin();
    // SAFETY: glibc's own sbrk with the caller's argument.
    let r = unsafe { __sbrk(increment) };
    let ok = r as isize != -1;
    oscalls::end(
        t0,
        Call::Brk,
        increment.unsigned_abs() as u64,
        increment as i64,
        ok,
    );
    r
}

/// `brk(2)`, through `__sbrk` (the change from the current break).
///
/// # Safety
/// As the libc function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn brk(addr: *mut c_void) -> c_int {
    let t0 = oscalls::begin();
    // SAFETY: sbrk(0) only reads the current break.
    let cur = unsafe { __sbrk(0) };
    if cur as isize == -1 {
        oscalls::end(t0, Call::Brk, 0, 0, false);
        return -1;
    }
    let inc = (addr as isize).wrapping_sub(cur as isize);
    // SAFETY: moves the break to the caller's address, as brk would.
    let r = unsafe { __sbrk(inc) };
    let ok = r as isize != -1;
    oscalls::end(t0, Call::Brk, inc.unsigned_abs() as u64, inc as i64, ok);
    if ok { 0 } else { -1 }
}
