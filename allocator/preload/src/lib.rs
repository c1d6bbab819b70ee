//! `libfancy_preload.so`: the fancy allocator as the whole malloc family, for `LD_PRELOAD`.
//!
//! Each exported symbol is one line over the `fancy` Rust API. Nothing here allocates through
//! Rust's global allocator, and nothing may unwind into C: the functions are `extern "C"` (a
//! panic would abort rather than unwind), and a panic hook installed at load writes a fixed
//! message with `write(2)` and aborts before any formatting could allocate.
//!
//! Exported: malloc, free, cfree, calloc, realloc, reallocarray, memalign, posix_memalign,
//! aligned_alloc, valloc, pvalloc, malloc_usable_size, the `__libc_*` aliases, and stubs glibc
//! programs use (malloc_trim → fancy::collect, mallinfo/mallinfo2 from fancy's stats,
//! malloc_stats, mallopt, malloc_info), plus the `fancy_*` C API of the library.

#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicI32, Ordering};

// Keep the C API (fancy_*) of the library in this cdylib's exports.
pub use fancy::{
    fancy_aligned_alloc, fancy_calloc, fancy_check_leaks, fancy_free, fancy_malloc,
    fancy_posix_memalign, fancy_print_stats, fancy_realloc, fancy_usable_size, fancy_validate_heap,
};

const PAGE: usize = 4096;

#[inline(always)]
fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

#[inline(always)]
fn oom(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// `malloc(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    oom(fancy::malloc(size))
}

/// `free(3)`.
///
/// # Safety
/// `p` must be null or a live block from this malloc.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: caller's contract (the C contract of free).
    unsafe { fancy::free(p.cast()) }
}

/// `cfree` (obsolete alias of free).
///
/// # Safety
/// As `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { fancy::free(p.cast()) }
}

/// `calloc(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    oom(fancy::calloc(n, size))
}

/// `realloc(3)`, glibc semantics (`realloc(p, 0)` frees and returns NULL).
///
/// # Safety
/// `p` must be null or a live block from this malloc.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: caller's contract.
    let q = unsafe { fancy::realloc(p.cast(), size) };
    if q.is_null() && size != 0 {
        set_errno(libc::ENOMEM);
    }
    q.cast()
}

/// `reallocarray(3)`: realloc with an overflow check on `n * size`.
///
/// # Safety
/// As `realloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: caller's contract.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `memalign(3)`: glibc rounds a non-power-of-two alignment up to the next power of two.
#[unsafe(no_mangle)]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let align = if align.is_power_of_two() {
        align
    } else {
        match align.checked_next_power_of_two() {
            Some(a) => a,
            None => {
                set_errno(libc::EINVAL);
                return ptr::null_mut();
            }
        }
    };
    oom(fancy::aligned_alloc(align.max(16), size))
}

/// `aligned_alloc(3)` (glibc accepts any power of two).
#[unsafe(no_mangle)]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    oom(fancy::aligned_alloc(align, size))
}

/// `posix_memalign(3)`.
///
/// # Safety
/// `out` must be valid for a pointer write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: caller's contract.
    unsafe { fancy::fancy_posix_memalign(out, align, size) }
}

/// `valloc(3)`: page-aligned.
#[unsafe(no_mangle)]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    oom(fancy::aligned_alloc(PAGE, size))
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole pages.
#[unsafe(no_mangle)]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(s) = size.checked_add(PAGE - 1) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    oom(fancy::aligned_alloc(PAGE, (s & !(PAGE - 1)).max(PAGE)))
}

/// `malloc_usable_size(3)`.
///
/// # Safety
/// `p` must be null or a live block from this malloc.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: caller's contract.
    unsafe { fancy::usable_size(p.cast()) }
}

/// `__libc_malloc` (some programs and libraries call glibc's internal names directly).
#[unsafe(no_mangle)]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    malloc(size)
}
/// `__libc_free`.
///
/// # Safety
/// As `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { free(p) }
}
/// `__libc_calloc`.
#[unsafe(no_mangle)]
pub extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    calloc(n, size)
}
/// `__libc_realloc`.
///
/// # Safety
/// As `realloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: caller's contract.
    unsafe { realloc(p, size) }
}
/// `__libc_memalign`.
#[unsafe(no_mangle)]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    memalign(align, size)
}
/// `__libc_valloc`.
#[unsafe(no_mangle)]
pub extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    valloc(size)
}
/// `__libc_pvalloc`.
#[unsafe(no_mangle)]
pub extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    pvalloc(size)
}

/// `malloc_trim(3)`: gives back what the calling thread's heap and the pool do not use.
/// Returns 1 (memory may have been released).
#[unsafe(no_mangle)]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    fancy::collect();
    1
}

/// `mallopt(3)`: no glibc tunable applies; accepted and ignored (returns 1, "success").
#[unsafe(no_mangle)]
pub extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
    1
}

/// `mallinfo2(3)` from fancy's stats: `arena` = bytes mapped, `uordblks` = bytes in use,
/// `fordblks` = mapped − in use, `hblks`/`hblkhd` = huge blocks and their bytes.
#[unsafe(no_mangle)]
pub extern "C" fn mallinfo2() -> libc::mallinfo2 {
    let s = fancy::stats();
    libc::mallinfo2 {
        arena: s.bytes_mapped as usize,
        ordblks: s.arenas as usize,
        smblks: 0,
        hblks: s.huge_blocks as usize,
        hblkhd: s.huge_bytes_in_use as usize,
        usmblks: 0,
        fsmblks: 0,
        uordblks: s.bytes_in_use as usize,
        fordblks: s.bytes_mapped.saturating_sub(s.bytes_in_use) as usize,
        keepcost: s.bytes_cached as usize,
    }
}

/// `mallinfo(3)`: as `mallinfo2`, truncated to `int` like glibc's.
#[unsafe(no_mangle)]
pub extern "C" fn mallinfo() -> libc::mallinfo {
    let m = mallinfo2();
    let c = |x: usize| x.min(c_int::MAX as usize) as c_int;
    libc::mallinfo {
        arena: c(m.arena),
        ordblks: c(m.ordblks),
        smblks: 0,
        hblks: c(m.hblks),
        hblkhd: c(m.hblkhd),
        usmblks: 0,
        fsmblks: 0,
        uordblks: c(m.uordblks),
        fordblks: c(m.fordblks),
        keepcost: c(m.keepcost),
    }
}

/// `malloc_stats(3)`: fancy's stats on stderr.
#[unsafe(no_mangle)]
pub extern "C" fn malloc_stats() {
    fancy::print_stats_fd(2);
}

/// `malloc_info(3)`: a minimal XML document with fancy's totals. Returns 0, or -1 if
/// `options` is not 0 (as glibc).
///
/// # Safety
/// `stream` must be a valid `FILE*`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_info(options: c_int, stream: *mut libc::FILE) -> c_int {
    if options != 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    let s = fancy::stats();
    let mut w = fancy::fatal::StackWriter::<512>::new();
    let _ = core::fmt::Write::write_fmt(
        &mut w,
        format_args!(
            "<malloc version=\"fancy-1\">\n<total type=\"mapped\" size=\"{}\"/>\n<total type=\"in_use\" size=\"{}\"/>\n</malloc>\n",
            s.bytes_mapped, s.bytes_in_use
        ),
    );
    let b = w.as_bytes();
    // SAFETY: caller's contract on `stream`; `b` is a valid buffer.
    unsafe { libc::fwrite(b.as_ptr().cast(), 1, b.len(), stream) };
    0
}

// ---------------------------------------------------------------------------------------------
// Load-time setup.

/// Our own duplicate of stderr: gnulib programs close fd 2 before exit handlers run.
static REPORT_FD: AtomicI32 = AtomicI32::new(2);

fn panic_hook(_: &std::panic::PanicHookInfo<'_>) {
    fancy::fatal::fatal("panic inside libfancy_preload (aborting)");
}

extern "C" fn at_exit() {
    fancy::print_stats_fd(REPORT_FD.load(Ordering::Relaxed));
}

extern "C" fn init() {
    // A function item is zero-sized: Box::new does not allocate.
    std::panic::set_hook(Box::new(panic_hook));
    let cfg = fancy::config();
    fancy::thread_attach();
    if cfg.reclaim {
        let _ = fancy::configure(cfg);
    }
    if cfg.verbose {
        // SAFETY: dup/atexit with valid arguments.
        unsafe {
            let fd = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3);
            if fd >= 0 {
                REPORT_FD.store(fd, Ordering::Relaxed);
            }
            libc::atexit(at_exit);
        }
        let mut w = fancy::fatal::StackWriter::<256>::new();
        let _ = core::fmt::Write::write_fmt(&mut w, format_args!("fancy: preloaded, {:?}\n", cfg));
        w.flush_to(REPORT_FD.load(Ordering::Relaxed));
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;
