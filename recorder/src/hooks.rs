//! The exported symbols. Each is one call of an `#[inline(always)]` function of [`crate::calls`]
//! (bytehound's layout); exports are `no_mangle` only outside unit tests, so the test harness
//! keeps glibc's malloc.
//!
//! Every allocation function calls glibc first and records after it returned (its stamp is
//! taken after the call); `free` records first (its stamp is taken before the block can be
//! handed out again) — contract 3 of docs/DESIGN.md. Arguments are passed on untouched.

//!
//! Each export is `unsafe extern "C"`: its safety contract is the C function's own (a pointer
//! argument must be what that function accepts); its `// SAFETY:` line says what the body
//! relies on. The bodies only forward to glibc and record.

#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_void};

use libc::pid_t;

use crate::calls;

#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: the caller passes what C's malloc takes; the body forwards it to glibc untouched.
    unsafe { calls::malloc(size) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: the caller passes a pointer from this malloc family or NULL (free's contract), forwarded untouched.
    unsafe { calls::free(ptr) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: plain sizes, forwarded untouched to glibc.
    unsafe { calls::calloc(n, size) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: ptr is NULL or from this malloc family (realloc's contract), forwarded untouched.
    unsafe { calls::realloc(ptr, size) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: as realloc; the product is checked for overflow before glibc sees it.
    unsafe { calls::reallocarray(ptr, n, size) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: plain sizes, forwarded untouched to glibc.
    unsafe { calls::memalign(align, size) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: plain sizes, forwarded to glibc's memalign (what its aligned_alloc is).
    unsafe { calls::aligned_alloc(align, size) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: out is writable (posix_memalign's contract); it is written only on success.
    unsafe { calls::posix_memalign(out, align, size) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: a plain size, forwarded untouched to glibc.
    unsafe { calls::valloc(size) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: a plain size, forwarded untouched to glibc.
    unsafe { calls::pvalloc(size) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fork() -> pid_t {
    // SAFETY: no arguments; calls glibc's fork found by dlsym.
    unsafe { calls::fork() }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: path/argv/envp are the caller's NUL-terminated strings and arrays (execve's contract), passed to glibc untouched.
    unsafe { calls::execve(path, argv, envp) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: as execve; glibc's execv is called with the caller's arguments.
    unsafe { calls::execv(&crate::real::EXECV, path, argv) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: as execve; glibc's execvp is called with the caller's arguments.
    unsafe { calls::execv(&crate::real::EXECVP, file, argv) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: as execve; glibc's execvpe is called with the caller's arguments.
    unsafe { calls::execvpe(file, argv, envp) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fexecve(
    fd: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: fd and the arrays are the caller's (fexecve's contract), passed to glibc untouched.
    unsafe { calls::fexecve(fd, argv, envp) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    // SAFETY: nothing unsafe is done (no pointer argument): the trace is finished, the process ends.
    calls::exit_now(status)
}
#[cfg_attr(not(test), unsafe(no_mangle))]
#[allow(non_snake_case)]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    // SAFETY: as _exit.
    calls::exit_now(status)
}

// OS memory calls: always exported (a cdylib's exports are fixed at link time); they only
// forward unless `ALLOCLAB_OS_CALLS=1` (README.md: "OS calls").

#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    // SAFETY: the caller's arguments (mmap's contract), forwarded untouched.
    unsafe { calls::mmap(addr, len, prot, flags, fd, off) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    // SAFETY: as mmap (the same function on 64-bit Linux: glibc's mmap64 is its mmap).
    unsafe { calls::mmap(addr, len, prot, flags, fd, off) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    // SAFETY: the caller's arguments (munmap's contract), forwarded untouched.
    unsafe { calls::munmap(addr, len) }
}
/// The C function is variadic (`new_addr` only with `MREMAP_FIXED`); on x86-64 and aarch64 a
/// variadic integer argument travels where a fixed one would, so five fixed arguments read it
/// where the caller put it (and pass on an unused register otherwise, which glibc ignores as
/// the kernel does).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    // SAFETY: the caller's arguments (mremap's contract), forwarded untouched.
    unsafe { calls::mremap(old, old_len, new_len, flags, new_addr) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int {
    // SAFETY: the caller's arguments (madvise's contract), forwarded untouched.
    unsafe { calls::madvise(addr, len, advice) }
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn brk(addr: *mut c_void) -> c_int {
    calls::brk(addr)
}
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sbrk(increment: isize) -> *mut c_void {
    calls::sbrk(increment)
}
