//! The exported symbols. Each is one line calling an `#[inline(always)]` function of [`crate::calls`]
//! (bytehound's layout); exports are `no_mangle` only outside unit tests, so the test harness
//! keeps glibc's malloc.
//!
//! Every allocation function calls glibc first and records after it returned (its stamp is
//! taken after the call); `free` records first (its stamp is taken before the block can be
//! handed out again) — contract 3 of docs/DESIGN.md. Arguments are passed on untouched.

#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_void};

use libc::pid_t;

use crate::calls;

#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void { unsafe { calls::malloc(size) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn free(ptr: *mut c_void) { unsafe { calls::free(ptr) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void { unsafe { calls::calloc(n, size) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void { unsafe { calls::realloc(ptr, size) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void { unsafe { calls::reallocarray(ptr, n, size) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void { unsafe { calls::memalign(align, size) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void { unsafe { calls::aligned_alloc(align, size) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int { unsafe { calls::posix_memalign(out, align, size) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void { unsafe { calls::valloc(size) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void { unsafe { calls::pvalloc(size) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fork() -> pid_t { unsafe { calls::fork() } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int { unsafe { calls::execve(path, argv, envp) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int { unsafe { calls::execv(&crate::real::EXECV, path, argv) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int { unsafe { calls::execv(&crate::real::EXECVP, file, argv) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int { unsafe { calls::execvpe(file, argv, envp) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int { unsafe { calls::fexecve(fd, argv, envp) } }
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn _exit(status: c_int) -> ! { calls::exit_now(status) }
#[cfg_attr(not(test), unsafe(no_mangle))]
#[allow(non_snake_case)]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! { calls::exit_now(status) }
