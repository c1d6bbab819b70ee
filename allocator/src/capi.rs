//! The C API (`include/fancy.h`): `fancy_*` symbols, never the unprefixed malloc family (only
//! the preload cdylib exports those). Each function is `extern "C"`, so a panic could not unwind
//! into C (Rust aborts instead); the allocator itself never panics (see `fatal`).

use crate::fatal::{StackWriter, write_fd};
use core::ffi::{c_int, c_void};
use core::fmt::Write;

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

#[inline]
fn nomem(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// `malloc`.
#[unsafe(no_mangle)]
pub extern "C" fn fancy_malloc(size: usize) -> *mut c_void {
    nomem(crate::malloc(size))
}

/// `free`.
///
/// # Safety
/// `p` must be null or a live block from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fancy_free(p: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { crate::free(p.cast()) }
}

/// `calloc`.
#[unsafe(no_mangle)]
pub extern "C" fn fancy_calloc(n: usize, size: usize) -> *mut c_void {
    nomem(crate::calloc(n, size))
}

/// `realloc` (glibc semantics for size 0: frees and returns NULL).
///
/// # Safety
/// `p` must be null or a live block from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fancy_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: caller's contract.
    let q = unsafe { crate::realloc(p.cast(), size) };
    if q.is_null() && size != 0 {
        set_errno(libc::ENOMEM);
    }
    q.cast()
}

/// `aligned_alloc`: `align` must be a power of two (else NULL, EINVAL).
#[unsafe(no_mangle)]
pub extern "C" fn fancy_aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    nomem(crate::aligned_alloc(align, size))
}

/// `posix_memalign`: returns 0, EINVAL (alignment not a power of two multiple of
/// `sizeof(void*)`) or ENOMEM.
///
/// # Safety
/// `out` must be valid for a pointer write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fancy_posix_memalign(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let p = crate::aligned_alloc(align, size);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: caller's contract.
    unsafe { *out = p.cast() };
    0
}

/// `malloc_usable_size`: 0 for NULL or a pointer not from this allocator.
///
/// # Safety
/// `p` must be null, foreign, or a live block from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fancy_usable_size(p: *const c_void) -> usize {
    // SAFETY: caller's contract.
    unsafe { crate::usable_size(p.cast()) }
}

/// Prints the stats to stderr.
#[unsafe(no_mangle)]
pub extern "C" fn fancy_print_stats() {
    crate::stats::print_stats_fd(2);
}

/// Walks the heap (see `validate_heap`); returns true if it is sound, else prints why to stderr
/// and returns false.
#[unsafe(no_mangle)]
pub extern "C" fn fancy_validate_heap() -> bool {
    match crate::validate_heap() {
        Ok(()) => true,
        Err(e) => {
            let mut w = StackWriter::<256>::new();
            let _ = writeln!(w, "{e}");
            w.flush_to(2);
            false
        }
    }
}

/// Reports blocks still allocated to stderr; returns true if there are any (a leak, when called
/// at the point the program believes it freed everything).
#[unsafe(no_mangle)]
pub extern "C" fn fancy_check_leaks() -> bool {
    let s = crate::stats();
    let live = s.live_blocks();
    if live > 0 {
        let mut w = StackWriter::<256>::new();
        let _ = writeln!(
            w,
            "fancy: {} blocks still allocated ({} bytes: small {}, medium {}, huge {})",
            live, s.bytes_in_use, s.small_bytes_in_use, s.medium_bytes_in_use, s.huge_bytes_in_use
        );
        write_fd(2, w.as_bytes());
    }
    live > 0
}
