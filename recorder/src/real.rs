//! The real allocator and the real process functions the hooks forward to.
//!
//! The malloc family is reached through glibc's `__libc_*` entry points, bound at link time:
//! no `dlsym`, so nothing to resolve (and nothing that allocates) before the first call, and no
//! recursion (redhook's `dlsym`-in-a-`Once` approach recurses on calloc: README.md explains).
//! There is no `__libc_posix_memalign` or `__libc_aligned_alloc`: both are memalign with
//! checks, done in [`crate::hooks`] exactly as glibc 2.36 does them.
//!
//! `fork`, the exec family and the OS memory calls (`mmap`, `munmap`, `mremap`, `madvise`,
//! `brk`, `sbrk`) are found with `dlsym(RTLD_NEXT, …)`, resolved once at load with the guard
//! set (dlsym may allocate). An OS call made before that (another library's constructor) goes
//! straight to the kernel instead ([`os`]): never a `dlsym` from inside a hook.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
/// Most of the recorder's own allocations are checked before they are made (a fallible
/// probe, see `session::memory_for`), but a program allocating on another core can take the
/// memory between the probe and the allocation, and std aborts the process when a Rust
/// allocation fails. So a failed allocation never reaches std:
///
/// - on the writer thread it is retried for up to [`STARVED_RETRY_MS`] while [`STARVED`]
///   tells the program's threads not to wait for the writer (a full ring then drops its
///   event, counted): a program at its memory limit usually frees soon after;
/// - then (and at once on any other thread) it is served from the [`Reserve`], a region
///   mapped when the library loads, and [`TAPPED`] tells the session to stop recording
///   ("out of memory", one line) before the reserve runs out too.
///
/// A probe ([`probe`]) is the exception: it asks whether memory is there now, so its failure
/// is returned at once (no retry, no reserve).
pub struct LibcAllocator;

/// The writer thread is waiting for memory.
pub static STARVED: AtomicBool = AtomicBool::new(false);
/// How long the writer waits for memory before taking it from the reserve.
pub const STARVED_RETRY_MS: u32 = 2000;
/// An allocation was served from the reserve: glibc had no memory for the recorder.
pub static TAPPED: AtomicBool = AtomicBool::new(false);

std::thread_local! {
    /// Set on the writer thread: its failed allocations wait and retry.
    pub static WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set while [`probe`] runs: a failed allocation is the answer, not a problem.
    static PROBING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether `bytes` can be allocated now (allocated and released at once); never waits and
/// never takes from the reserve.
pub fn probe(bytes: usize) -> bool {
    PROBING.with(|p| p.set(true));
    let ok = Vec::<u8>::new().try_reserve_exact(bytes).is_ok();
    PROBING.with(|p| p.set(false));
    ok
}

/// `p`, or when `p` is null: nothing for a probe; on the writer thread, the result of
/// retrying `again` every millisecond for up to [`STARVED_RETRY_MS`]; then a block of
/// `layout` from the reserve.
fn or_else_wait(p: *mut u8, layout: Layout, mut again: impl FnMut() -> *mut u8) -> *mut u8 {
    if !p.is_null() || PROBING.with(|p| p.get()) {
        return p;
    }
    let mut p = p;
    if WRITER.with(|w| w.get()) {
        STARVED.store(true, Ordering::Release);
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
    }
    if p.is_null() {
        p = RESERVE.take(layout);
        if !p.is_null() {
            TAPPED.store(true, Ordering::Release);
        }
    }
    p
}

/// What the reserve holds: enough for the writer to finish what it was doing and for the
/// session to stop (the frame buffers themselves are probed before they grow).
const RESERVE_BYTES: usize = 8 << 20;

/// Memory for the recorder's allocations when glibc has none: one anonymous mapping made when
/// the library loads (address space only until used: `MAP_NORESERVE`, untouched pages cost
/// no RSS), handed out by a bump pointer. A block of it is never given back (freeing one does
/// nothing): once it is used, recording stops, so it is used at most once per process.
pub struct Reserve {
    base: AtomicUsize,
    next: AtomicUsize,
}

pub static RESERVE: Reserve = Reserve {
    base: AtomicUsize::new(0),
    next: AtomicUsize::new(0),
};

impl Reserve {
    /// Maps the reserve (once; a failed mapping leaves no reserve, and allocations that find
    /// no memory then fail as they would without it).
    pub fn map(&self) {
        if self.base.load(Ordering::Acquire) != 0 {
            return;
        }
        // Not through libc's mmap: the library's own `mmap` export would see it.
        let p = crate::sys::map_anon(RESERVE_BYTES);
        if !p.is_null() {
            self.next.store(p as usize, Ordering::Release);
            self.base.store(p as usize, Ordering::Release);
        }
    }

    /// Whether `p` is a block of the reserve.
    fn holds(&self, p: *mut u8) -> bool {
        let base = self.base.load(Ordering::Acquire);
        base != 0 && (p as usize) >= base && (p as usize) < base + RESERVE_BYTES
    }

    /// A block of `layout` (null when the reserve is missing or spent).
    fn take(&self, layout: Layout) -> *mut u8 {
        let base = self.base.load(Ordering::Acquire);
        if base == 0 {
            return std::ptr::null_mut();
        }
        let end = base + RESERVE_BYTES;
        let align = layout.align().max(MALLOC_ALIGN);
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let start = (cur + align - 1) & !(align - 1);
            let Some(stop) = start
                .checked_add(layout.size().max(1))
                .filter(|&e| e <= end)
            else {
                return std::ptr::null_mut();
            };
            match self
                .next
                .compare_exchange_weak(cur, stop, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return start as *mut u8,
                Err(now) => cur = now,
            }
        }
    }
}

// SAFETY: every method forwards to glibc's allocator, which returns memory valid for the
// layout (memalign for alignments above what malloc guarantees) or NULL, or takes a fresh,
// suitably aligned block of the reserve (each handed out once); dealloc/realloc tell the
// reserve's blocks (never freed) from glibc's (freed by glibc).
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
        or_else_wait(once(), layout, once)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: plain call into glibc's allocator.
            let once = || unsafe { calloc(1, layout.size()) as *mut u8 };
            // The reserve's pages are zero until used, and each is used once.
            or_else_wait(once(), layout, once)
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
        if RESERVE.holds(ptr) {
            return;
        }
        // SAFETY: ptr came from malloc/calloc/memalign/realloc above.
        unsafe { free(ptr as *mut c_void) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && !RESERVE.holds(ptr) {
            // SAFETY: ptr came from glibc with malloc alignment; a failed realloc leaves it
            // valid, so it may be retried.
            let once = || unsafe { realloc(ptr as *mut c_void, new_size) as *mut u8 };
            let new_layout =
                // SAFETY: the caller's contract: new_size rounded up to align fits isize.
                unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            let p = or_else_wait(once(), new_layout, once);
            if !p.is_null() && RESERVE.holds(p) {
                // SAFETY: `ptr` is still valid (its realloc failed) and holds layout.size()
                // bytes; the new block holds new_size; they do not overlap.
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    free(ptr as *mut c_void);
                }
            }
            return p;
        }
        // SAFETY: the caller's contract for GlobalAlloc::realloc, forwarded: a new block, the
        // old contents copied, the old block released (a no-op for the reserve's).
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
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

    /// The function's address if it was resolved (0 before [`resolve_all`], or if there is no
    /// such function).
    pub fn resolved(&self) -> usize {
        self.addr.load(Ordering::Acquire)
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

pub static MMAP: Next = Next::new(c"mmap");
pub static MUNMAP: Next = Next::new(c"munmap");
pub static MREMAP: Next = Next::new(c"mremap");
pub static MADVISE: Next = Next::new(c"madvise");
pub static BRK: Next = Next::new(c"brk");
pub static SBRK: Next = Next::new(c"sbrk");

/// Resolves every `dlsym` function now (at load time, before the program runs).
pub fn resolve_all() {
    for n in [&FORK, &EXECVE, &EXECV, &EXECVP, &EXECVPE, &FEXECVE] {
        n.get();
    }
    resolve_os();
}

/// Resolves the OS memory calls the hooks forward to (done first at load, even when recording
/// is disabled: the hooks are exported either way).
pub fn resolve_os() {
    for n in [&MMAP, &MUNMAP, &MREMAP, &MADVISE, &BRK, &SBRK] {
        n.get();
    }
}

/// The real OS memory calls: glibc's functions (or the next library's, `RTLD_NEXT`) once
/// resolved; before that, the system call itself, which is what glibc's `mmap`, `munmap`,
/// `mremap` and `madvise` do (`syscall` sets errno as they do). `brk` and `sbrk` keep glibc's
/// cached program break: before resolution they go through glibc's public `__sbrk`.
pub mod os {
    use std::ffi::{c_int, c_void};

    use super::{BRK, MADVISE, MMAP, MREMAP, MUNMAP, SBRK};

    type MmapFn =
        unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, c_int, libc::off_t) -> *mut c_void;
    type MunmapFn = unsafe extern "C" fn(*mut c_void, usize) -> c_int;
    type MremapFn = unsafe extern "C" fn(*mut c_void, usize, usize, c_int, ...) -> *mut c_void;
    type MadviseFn = unsafe extern "C" fn(*mut c_void, usize, c_int) -> c_int;
    type BrkFn = unsafe extern "C" fn(*mut c_void) -> c_int;
    type SbrkFn = unsafe extern "C" fn(isize) -> *mut c_void;

    unsafe extern "C" {
        /// glibc's sbrk (a public symbol, GLIBC_2.2.5), which keeps glibc's cached break.
        fn __sbrk(increment: isize) -> *mut c_void;
    }

    /// # Safety
    /// As `mmap(2)`.
    #[inline(always)]
    pub unsafe fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        off: libc::off_t,
    ) -> *mut c_void {
        let f = MMAP.resolved();
        if f == 0 {
            // SAFETY: the caller's arguments, passed on to the system call they ask for.
            return unsafe { libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) }
                as *mut c_void;
        }
        // SAFETY: f is the next `mmap` (dlsym); the caller's arguments.
        unsafe { std::mem::transmute::<usize, MmapFn>(f)(addr, len, prot, flags, fd, off) }
    }

    /// # Safety
    /// As `munmap(2)`.
    #[inline(always)]
    pub unsafe fn munmap(addr: *mut c_void, len: usize) -> c_int {
        let f = MUNMAP.resolved();
        if f == 0 {
            // SAFETY: as mmap.
            return unsafe { libc::syscall(libc::SYS_munmap, addr, len) } as c_int;
        }
        // SAFETY: f is the next `munmap` (dlsym); the caller's arguments.
        unsafe { std::mem::transmute::<usize, MunmapFn>(f)(addr, len) }
    }

    /// # Safety
    /// As `mremap(2)` (`new_addr` is read by the kernel only with `MREMAP_FIXED`).
    #[inline(always)]
    pub unsafe fn mremap(
        old: *mut c_void,
        old_len: usize,
        new_len: usize,
        flags: c_int,
        new_addr: *mut c_void,
    ) -> *mut c_void {
        let f = MREMAP.resolved();
        if f == 0 {
            // SAFETY: as mmap.
            return unsafe {
                libc::syscall(libc::SYS_mremap, old, old_len, new_len, flags, new_addr)
            } as *mut c_void;
        }
        // SAFETY: f is the next `mremap` (dlsym), called as the variadic function it is.
        unsafe { std::mem::transmute::<usize, MremapFn>(f)(old, old_len, new_len, flags, new_addr) }
    }

    /// # Safety
    /// As `madvise(2)`.
    #[inline(always)]
    pub unsafe fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int {
        let f = MADVISE.resolved();
        if f == 0 {
            // SAFETY: as mmap.
            return unsafe { libc::syscall(libc::SYS_madvise, addr, len, advice) } as c_int;
        }
        // SAFETY: f is the next `madvise` (dlsym); the caller's arguments.
        unsafe { std::mem::transmute::<usize, MadviseFn>(f)(addr, len, advice) }
    }

    /// `sbrk(3)`.
    #[inline(always)]
    pub fn sbrk(increment: isize) -> *mut c_void {
        let f = SBRK.resolved();
        if f == 0 {
            // SAFETY: glibc's own sbrk; any increment is valid input (it fails cleanly).
            return unsafe { __sbrk(increment) };
        }
        // SAFETY: f is the next `sbrk` (dlsym).
        unsafe { std::mem::transmute::<usize, SbrkFn>(f)(increment) }
    }

    /// `brk(2)`.
    #[inline(always)]
    pub fn brk(addr: *mut c_void) -> c_int {
        let f = BRK.resolved();
        if f == 0 {
            // Through __sbrk, by the difference from the current break (as glibc's brk, it
            // fails with ENOMEM, leaving the break where it was).
            let cur = sbrk(0);
            if cur as isize == -1 {
                return -1;
            }
            let r = sbrk((addr as isize).wrapping_sub(cur as isize));
            return if r as isize == -1 { -1 } else { 0 };
        }
        // SAFETY: f is the next `brk` (dlsym).
        unsafe { std::mem::transmute::<usize, BrkFn>(f)(addr) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reserve of its own (the library's is mapped by the constructor, not in unit tests).
    fn reserve() -> Reserve {
        let r = Reserve {
            base: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
        };
        r.map();
        assert_ne!(
            r.base.load(Ordering::Relaxed),
            0,
            "mmap of the reserve failed"
        );
        r
    }

    #[test]
    fn the_reserve_hands_out_aligned_disjoint_blocks_until_it_is_spent() {
        let r = reserve();
        let mut blocks = Vec::new();
        for (i, align) in [1usize, 8, 16, 64, 4096, 16].into_iter().enumerate() {
            let layout = Layout::from_size_align(100 * (i + 1), align).unwrap();
            let p = r.take(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % align.max(MALLOC_ALIGN), 0);
            assert!(r.holds(p));
            // SAFETY: a fresh block of layout.size() bytes of the reserve.
            unsafe { std::ptr::write_bytes(p, 0xab, layout.size()) };
            blocks.push((p as usize, layout.size()));
        }
        blocks.sort();
        for w in blocks.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "overlapping blocks {w:?}");
        }
        // More than is left: refused, and what is left still serves a small block.
        assert!(
            r.take(Layout::from_size_align(RESERVE_BYTES, 16).unwrap())
                .is_null()
        );
        assert!(!r.take(Layout::from_size_align(64, 16).unwrap()).is_null());
        let heap = Box::new(0u64);
        assert!(!r.holds((&*heap as *const u64).cast_mut().cast()));
    }

    #[test]
    fn a_probe_that_finds_no_memory_fails_at_once() {
        let t = std::time::Instant::now();
        assert!(!probe(usize::MAX / 4));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert!(probe(4096));
    }
}
