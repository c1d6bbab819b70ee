//! `libmempool_preload.so`: one of the process-wide mempool pools as the whole malloc family, for
//! `LD_PRELOAD`. The variant is chosen with `MEMPOOL_VARIANT=baseline|sharded|percls` (default
//! `percls`), read on the first call.
//!
//! Nothing here allocates through Rust's global allocator and nothing unwinds into C: a panic
//! hook installed at load writes a fixed message and aborts.
//!
//! Pointers the pool does not own (its memory is one reserved address range) are never touched
//! as pool blocks: `free` hands a block of glibc's own heap (in the `brk` heap, or one of its
//! `mmap`ed chunks, recognised by its header) to glibc's `__libc_free`, and leaves anything else
//! alone (the dynamic loader's early allocations); `realloc` of such a glibc block goes to
//! `__libc_realloc`. glibc's `__libc_*` names are deliberately not exported, so they stay
//! glibc's.

#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use mempool::{Variant, global};

const PAGE: usize = 4096;

unsafe extern "C" {
    fn __libc_free(p: *mut c_void);
    fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
}

/// The variant in use: its index, or 0xff before the first call.
static VARIANT: AtomicU8 = AtomicU8::new(0xff);
/// The program break when the library was loaded (start of glibc's own `brk` heap, if any).
static BRK0: AtomicUsize = AtomicUsize::new(0);
/// Frees of pointers neither the pool nor glibc's heap owns (left alone).
static FOREIGN_LEFT: AtomicUsize = AtomicUsize::new(0);

#[inline(always)]
fn variant() -> Variant {
    match VARIANT.load(Ordering::Relaxed) {
        0 => Variant::Baseline,
        1 => Variant::Sharded,
        2 => Variant::Percls,
        _ => pick_variant(),
    }
}

fn say(msg: &[u8]) {
    // SAFETY: writing a valid buffer to fd 2.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

#[cold]
fn pick_variant() -> Variant {
    // SAFETY: getenv with a NUL-terminated name; the value is read as a C string.
    let v = unsafe {
        let s = libc::getenv(c"MEMPOOL_VARIANT".as_ptr());
        if s.is_null() {
            Variant::Percls
        } else {
            let b = core::ffi::CStr::from_ptr(s).to_bytes();
            match core::str::from_utf8(b).ok().and_then(Variant::from_name) {
                Some(v) => v,
                None => {
                    say(b"mempool: MEMPOOL_VARIANT must be baseline, sharded or percls; using percls\n");
                    Variant::Percls
                }
            }
        }
    };
    VARIANT.store(v as u8, Ordering::Relaxed);
    v
}

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

/// Whether `p` (not ours) looks like a block of glibc's own malloc.
fn glibc_block(p: *mut c_void) -> bool {
    let a = p as usize;
    if !a.is_multiple_of(16) {
        return false;
    }
    let brk0 = BRK0.load(Ordering::Relaxed);
    // SAFETY: sbrk(0) only reads the current break.
    let brk = unsafe { libc::sbrk(0) } as usize;
    if brk0 != 0 && a > brk0 && a < brk {
        return true;
    }
    // An mmapped chunk: its header sits 16 bytes into a page, size field with IS_MMAPPED set.
    // SAFETY: p - 8 is in the same page as p, which the caller says is a live block.
    a % PAGE == 16 && unsafe { *((a - 8) as *const usize) } & 2 != 0
}

unsafe fn foreign_free(p: *mut c_void) {
    if glibc_block(p) {
        // SAFETY: a glibc block (caller's contract on free + the check above).
        unsafe { __libc_free(p) }
    } else {
        FOREIGN_LEFT.fetch_add(1, Ordering::Relaxed);
    }
}

/// `malloc(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    oom(global::malloc(variant(), size))
}

/// `free(3)`.
///
/// # Safety
/// `p` must be null or a live block from this malloc.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    if mempool::owns(p.cast()) {
        // SAFETY: caller's contract (a live block of ours).
        unsafe { global::free(variant(), p.cast()) }
    } else {
        // SAFETY: caller's contract.
        unsafe { foreign_free(p) }
    }
}

/// `cfree` (obsolete alias of free).
///
/// # Safety
/// As `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: caller's contract.
    unsafe { free(p) }
}

/// `calloc(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    oom(global::calloc(variant(), n, size))
}

/// `realloc(3)`, glibc semantics (`realloc(p, 0)` frees and returns NULL).
///
/// # Safety
/// `p` must be null or a live block from this malloc.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if !p.is_null() && !mempool::owns(p.cast()) {
        if glibc_block(p) {
            // SAFETY: a live glibc block (caller's contract + check).
            return unsafe { __libc_realloc(p, size) };
        }
        say(b"mempool: realloc of a block neither mempool nor glibc's malloc made (aborting)\n");
        // SAFETY: aborting.
        unsafe { libc::abort() };
    }
    // SAFETY: caller's contract.
    let q = unsafe { global::realloc(variant(), p.cast(), size) };
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
    let Some(a) = align.max(16).checked_next_power_of_two() else {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    };
    oom(global::aligned_alloc(variant(), a, size))
}

/// `aligned_alloc(3)` (glibc accepts any power of two).
#[unsafe(no_mangle)]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    oom(global::aligned_alloc(variant(), align.max(16), size))
}

/// `posix_memalign(3)`.
///
/// # Safety
/// `out` must be valid for a pointer write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<usize>()) {
        return libc::EINVAL;
    }
    let p = global::aligned_alloc(variant(), align.max(16), size);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: caller's contract.
    unsafe { *out = p.cast() };
    0
}

/// `valloc(3)`: page-aligned.
#[unsafe(no_mangle)]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    oom(global::aligned_alloc(variant(), PAGE, size))
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole pages.
#[unsafe(no_mangle)]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(s) = size.checked_add(PAGE - 1) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    oom(global::aligned_alloc(
        variant(),
        PAGE,
        (s & !(PAGE - 1)).max(PAGE),
    ))
}

/// `malloc_usable_size(3)`.
///
/// # Safety
/// `p` must be null or a live block from this malloc.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    if mempool::owns(p.cast()) {
        // SAFETY: caller's contract.
        return unsafe { global::usable_size(variant(), p.cast()) };
    }
    if glibc_block(p) {
        // SAFETY: a glibc chunk's size word sits just before the block.
        let w = unsafe { *((p as usize - 8) as *const usize) };
        return (w & !7).saturating_sub(if w & 2 != 0 { 16 } else { 8 });
    }
    0
}

/// `malloc_trim(3)`: the pool keeps its chunks; returns 0 (nothing released).
#[unsafe(no_mangle)]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    0
}

/// `mallopt(3)`: no glibc tunable applies; accepted and ignored (returns 1, "success").
#[unsafe(no_mangle)]
pub extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
    1
}

/// `mallinfo2(3)`: `arena` = bytes of chunks in use by all pools, `ordblks` = live blocks.
#[unsafe(no_mangle)]
pub extern "C" fn mallinfo2() -> libc::mallinfo2 {
    let (mapped, returned) = mempool::footprint();
    let s = global::stats(variant());
    libc::mallinfo2 {
        arena: mapped - returned,
        ordblks: s.live() as usize,
        smblks: 0,
        hblks: 0,
        hblkhd: 0,
        usmblks: 0,
        fsmblks: 0,
        uordblks: 0,
        fordblks: 0,
        keepcost: 0,
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
        hblks: 0,
        hblkhd: 0,
        usmblks: 0,
        fsmblks: 0,
        uordblks: 0,
        fordblks: 0,
        keepcost: 0,
    }
}

/// `malloc_stats(3)`: nothing to print (glibc's format does not apply).
#[unsafe(no_mangle)]
pub extern "C" fn malloc_stats() {}

/// `malloc_info(3)`: a minimal XML document. Returns 0, or -1 if `options` is not 0.
///
/// # Safety
/// `stream` must be a valid `FILE*`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_info(options: c_int, stream: *mut libc::FILE) -> c_int {
    if options != 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    let b = b"<malloc version=\"mempool-1\">\n</malloc>\n";
    // SAFETY: caller's contract on `stream`; `b` is a valid buffer.
    unsafe { libc::fwrite(b.as_ptr().cast(), 1, b.len(), stream) };
    0
}

// ---------------------------------------------------------------------------------------------
// Load-time setup.

fn panic_hook(_: &std::panic::PanicHookInfo<'_>) {
    say(b"mempool: panic inside libmempool_preload (aborting)\n");
    // SAFETY: aborting.
    unsafe { libc::abort() }
}

extern "C" fn prepare() {
    global::fork_prepare();
}
extern "C" fn parent() {
    global::fork_parent();
}
extern "C" fn child() {
    global::fork_child();
}

extern "C" fn init() {
    // A function item is zero-sized: Box::new does not allocate.
    std::panic::set_hook(Box::new(panic_hook));
    // SAFETY: sbrk(0) reads the break; pthread_atfork registers plain functions.
    unsafe {
        BRK0.store(libc::sbrk(0) as usize, Ordering::Relaxed);
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
    }
    variant();
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;
