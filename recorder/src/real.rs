//! The real allocator and the real process functions the hooks forward to.
//!
//! The malloc family is reached through glibc's `__libc_*` entry points, bound at link time:
//! no `dlsym`, so nothing to resolve (and nothing that allocates) before the first call, and no
//! recursion (redhook's `dlsym`-in-a-`Once` approach recurses on calloc: README.md explains).
//! There is no `__libc_posix_memalign` or `__libc_aligned_alloc`: both are memalign with
//! checks, done in [`crate::hooks`] exactly as glibc 2.36 does them.
//!
//! `fork` and the exec family are found with `dlsym(RTLD_NEXT, …)`, resolved once at load with
//! the guard set (dlsym may allocate).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

unsafe extern "C" {
    #[link_name = "__libc_malloc"]
    pub fn malloc(size: usize) -> *mut c_void;
    #[link_name = "__libc_calloc"]
    pub fn calloc(nmemb: usize, size: usize) -> *mut c_void;
    #[link_name = "__libc_realloc"]
    pub fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    #[link_name = "__libc_free"]
    pub fn free(ptr: *mut c_void);
    #[link_name = "__libc_memalign"]
    pub fn memalign(align: usize, size: usize) -> *mut c_void;
    #[link_name = "__libc_valloc"]
    pub fn valloc(size: usize) -> *mut c_void;
    #[link_name = "__libc_pvalloc"]
    pub fn pvalloc(size: usize) -> *mut c_void;
}

/// glibc's malloc alignment on x86_64 and aarch64.
const MALLOC_ALIGN: usize = 16;

/// The library's global allocator: glibc's allocator, reached without the hooks.
///
/// On the writer thread, a failed allocation is retried for up to [`STARVED_RETRY_MS`] while
/// [`STARVED`] tells the program's threads not to wait for the writer (a full ring then drops
/// its event, counted): a program that hits its memory limit usually frees soon after, and the
/// writer's allocations (inside `traces` and zstd, which cannot fail gracefully) then succeed
/// instead of aborting the process. Only if the memory stays gone longer is the allocation
/// refused (and std aborts).
pub struct LibcAllocator;

/// The writer thread is waiting for memory.
pub static STARVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// How long the writer waits for memory before giving up.
pub const STARVED_RETRY_MS: u32 = 2000;

std::thread_local! {
    /// Set on the writer thread: its failed allocations wait and retry.
    pub static WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `p`, or — on the writer thread, when `p` is null — the result of retrying `again` every
/// millisecond for up to [`STARVED_RETRY_MS`].
fn retry_on_writer(p: *mut u8, mut again: impl FnMut() -> *mut u8) -> *mut u8 {
    if !p.is_null() || !WRITER.with(|w| w.get()) {
        return p;
    }
    STARVED.store(true, Ordering::Release);
    let mut p = p;
    for _ in 0..STARVED_RETRY_MS {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        // SAFETY: ts is a valid relative time; a null remainder is allowed.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
        p = again();
        if !p.is_null() {
            break;
        }
    }
    STARVED.store(false, Ordering::Release);
    p
}

// SAFETY: every method forwards to glibc's allocator, which returns memory valid for the
// layout (memalign for alignments above what malloc guarantees) or NULL; dealloc/realloc get
// pointers that came from these same functions.
unsafe impl GlobalAlloc for LibcAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let once = || {
            // SAFETY: plain calls into glibc's allocator.
            unsafe {
                if layout.align() <= MALLOC_ALIGN {
                    malloc(layout.size()) as *mut u8
                } else {
                    memalign(layout.align(), layout.size()) as *mut u8
                }
            }
        };
        retry_on_writer(once(), once)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: plain call into glibc's allocator.
            let once = || unsafe { calloc(1, layout.size()) as *mut u8 };
            retry_on_writer(once(), once)
        } else {
            // SAFETY: alloc returns NULL or a block of layout.size() bytes.
            unsafe {
                let p = self.alloc(layout);
                if !p.is_null() {
                    std::ptr::write_bytes(p, 0, layout.size());
                }
                p
            }
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: ptr came from malloc/calloc/memalign/realloc above.
        unsafe { free(ptr as *mut c_void) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: ptr came from this allocator with malloc alignment; a failed realloc
            // leaves it valid, so it may be retried.
            let once = || unsafe { realloc(ptr as *mut c_void, new_size) as *mut u8 };
            retry_on_writer(once(), once)
        } else {
            // SAFETY: the caller's contract for GlobalAlloc::realloc, forwarded.
            unsafe {
                let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    free(ptr as *mut c_void);
                }
                new
            }
        }
    }
}

pub type ExecveFn =
    unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
pub type ExecvFn = unsafe extern "C" fn(*const c_char, *const *const c_char) -> c_int;
pub type FexecveFn =
    unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;
pub type ForkFn = unsafe extern "C" fn() -> libc::pid_t;

/// A function found with `dlsym(RTLD_NEXT, name)`; 0 until resolved.
pub struct Next {
    name: &'static std::ffi::CStr,
    addr: AtomicUsize,
}

impl Next {
    const fn new(name: &'static std::ffi::CStr) -> Next {
        Next {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// The function's address (resolving it now if needed, with the guard set); 0 if glibc
    /// has no such function.
    pub fn get(&self) -> usize {
        let a = self.addr.load(Ordering::Acquire);
        if a != 0 {
            return a;
        }
        let _g = crate::local::InternalScope::enter();
        // SAFETY: RTLD_NEXT with a NUL-terminated name is a valid dlsym call.
        let a = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) } as usize;
        self.addr.store(a, Ordering::Release);
        a
    }
}

pub static FORK: Next = Next::new(c"fork");
pub static EXECVE: Next = Next::new(c"execve");
pub static EXECV: Next = Next::new(c"execv");
pub static EXECVP: Next = Next::new(c"execvp");
pub static EXECVPE: Next = Next::new(c"execvpe");
pub static FEXECVE: Next = Next::new(c"fexecve");

/// Resolves every `dlsym` function now (at load time, before the program runs).
pub fn resolve_all() {
    for n in [&FORK, &EXECVE, &EXECV, &EXECVP, &EXECVPE, &FEXECVE] {
        n.get();
    }
}
