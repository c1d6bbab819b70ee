//! The harness's own memory, kept apart from every allocator under test.
//!
//! In a replay child the allocator under test may be glibc's malloc (`system`) or whatever
//! `LD_PRELOAD` put in its place, so the harness cannot take its memory from `malloc` — Rust's
//! `System` allocator *is* `malloc` there. Everything the harness allocates therefore comes
//! straight from the kernel:
//!
//! * [`HarnessAlloc`], the `replay` binary's global allocator (wrapped in [`Counting`]): blocks
//!   above 32 KiB are their own `mmap` (prefaulted with `MAP_POPULATE`, grown with `mremap`);
//!   smaller ones come from power-of-two free lists carved out of 1 MiB mapped chunks, under one
//!   spin lock (the harness allocates little, and never inside the replay loop).
//! * [`Mapping`]: a plain anonymous or file mapping (the plan's op arrays, the slot table),
//!   prefaulted so the replay never takes a page fault on harness memory.
//!
//! [`Counting`] counts every allocation (process-wide and per thread): the engine reads the
//! counts around the replay loop and reports how many harness allocations happened inside it
//! (zero, or the run says why not).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const PAGE: usize = 4096;
/// Blocks up to this size come from the free lists; larger ones are mappings.
const SMALL_MAX: usize = 32 << 10;
/// Classes 16, 32, …, 32 KiB.
const CLASSES: usize = 12;
const CHUNK: usize = 1 << 20;

fn round_up(n: usize, to: usize) -> usize {
    (n + to - 1) & !(to - 1)
}

/// Maps `len` bytes of anonymous, private, read-write memory; with `populate`, every page is
/// faulted in now. `None` when the kernel refuses.
pub fn map_anon(len: usize, populate: bool) -> Option<*mut u8> {
    let flags = libc::MAP_PRIVATE
        | libc::MAP_ANONYMOUS
        | if populate {
            libc::MAP_POPULATE
        } else {
            libc::MAP_NORESERVE
        };
    // SAFETY: an anonymous mapping at an address the kernel chooses touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p.cast())
}

/// Unmaps `len` bytes at `p`.
///
/// # Safety
/// `p..p+len` must be a mapping this module made (or a page-aligned part of one) that nothing
/// uses any more.
unsafe fn unmap(p: *mut u8, len: usize) {
    // SAFETY: the caller guarantees the range is ours and unused.
    unsafe { libc::munmap(p.cast(), len) };
}

struct SmallHeap {
    free: [*mut u8; CLASSES],
    cursor: *mut u8,
    end: *mut u8,
}

/// The harness's allocator: never calls `malloc`. See the module comment.
pub struct HarnessAlloc {
    lock: AtomicBool,
    heap: std::cell::UnsafeCell<SmallHeap>,
}

// SAFETY: `heap` is only touched with `lock` held.
unsafe impl Sync for HarnessAlloc {}

impl HarnessAlloc {
    /// A new, empty allocator (usable in a `static`).
    pub const fn new() -> HarnessAlloc {
        HarnessAlloc {
            lock: AtomicBool::new(false),
            heap: std::cell::UnsafeCell::new(SmallHeap {
                free: [ptr::null_mut(); CLASSES],
                cursor: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }

    fn with_heap<R>(&self, f: impl FnOnce(&mut SmallHeap) -> R) -> R {
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
        // SAFETY: the lock is held, so this is the only reference to the heap.
        let r = f(unsafe { &mut *self.heap.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

impl Default for HarnessAlloc {
    fn default() -> Self {
        HarnessAlloc::new()
    }
}

/// The small class of a layout, or `None` for the mapping path.
fn class_of(layout: Layout) -> Option<(usize, usize)> {
    let size = layout.size().max(layout.align()).max(16);
    if size > SMALL_MAX || layout.align() > PAGE {
        return None;
    }
    let block = size.next_power_of_two();
    Some((block.trailing_zeros() as usize - 4, block))
}

fn large_len(layout: Layout) -> usize {
    round_up(layout.size().max(1), PAGE)
}

unsafe fn alloc_large(layout: Layout) -> *mut u8 {
    let len = large_len(layout);
    if layout.align() <= PAGE {
        return map_anon(len, true).unwrap_or(ptr::null_mut());
    }
    // Over-aligned: map extra and trim both ends.
    let Some(p) = map_anon(len + layout.align(), true) else {
        return ptr::null_mut();
    };
    let start = round_up(p as usize, layout.align());
    let front = start - p as usize;
    let back = layout.align() - front;
    // SAFETY: both trimmed ranges lie inside the mapping just made, page-aligned, unused.
    unsafe {
        if front > 0 {
            unmap(p, front);
        }
        if back > 0 {
            unmap((start + len) as *mut u8, back);
        }
    }
    start as *mut u8
}

// SAFETY: blocks are disjoint (free lists hold only freed blocks, mappings are fresh), aligned
// as asked (power-of-two blocks carved at their own alignment, mappings page- or over-aligned),
// and at least `layout.size()` long.
unsafe impl GlobalAlloc for HarnessAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((class, block)) = class_of(layout) else {
            // SAFETY: forwarded contract.
            return unsafe { alloc_large(layout) };
        };
        self.with_heap(|h| {
            let p = h.free[class];
            if !p.is_null() {
                // SAFETY: a free block stores the next free block of its class in its first word.
                h.free[class] = unsafe { *(p as *mut *mut u8) };
                return p;
            }
            let align = block.min(PAGE);
            let mut start = round_up(h.cursor as usize, align);
            if h.cursor.is_null() || start + block > h.end as usize {
                let Some(c) = map_anon(CHUNK, true) else {
                    return ptr::null_mut();
                };
                h.cursor = c;
                // SAFETY: one past the end of the chunk just mapped.
                h.end = unsafe { c.add(CHUNK) };
                start = c as usize;
            }
            h.cursor = (start + block) as *mut u8;
            start as *mut u8
        })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class_of(layout).is_none() {
            // SAFETY: fresh anonymous mappings are zero.
            return unsafe { alloc_large(layout) };
        }
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: the block is at least `layout.size()` bytes and ours.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        match class_of(layout) {
            None => {
                // SAFETY: a large block is exactly its own page-rounded mapping.
                unsafe { unmap(p, large_len(layout)) }
            }
            Some((class, _)) => self.with_heap(|h| {
                // SAFETY: the block is ours, at least 16 bytes and free from now on.
                unsafe { *(p as *mut *mut u8) = h.free[class] };
                h.free[class] = p;
            }),
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees the new layout is valid.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new)) {
            (Some((a, _)), Some((b, _))) if a == b => return p,
            (None, None) if layout.align() <= PAGE => {
                let (old_len, new_len) = (large_len(layout), large_len(new));
                if old_len == new_len {
                    return p;
                }
                // SAFETY: `p` is exactly a mapping of `old_len` bytes that we own.
                let q = unsafe { libc::mremap(p.cast(), old_len, new_len, libc::MREMAP_MAYMOVE) };
                return if q == libc::MAP_FAILED {
                    ptr::null_mut()
                } else {
                    q.cast()
                };
            }
            _ => {}
        }
        // SAFETY: forwarded contract; the old block is valid for `min` bytes and freed after.
        unsafe {
            let q = self.alloc(new);
            if !q.is_null() {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            q
        }
    }
}

static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// A global allocator that counts allocations (`alloc`, `alloc_zeroed`, `realloc`) of the
/// allocator it wraps, process-wide and per thread.
pub struct Counting<A>(pub A);

impl<A> Counting<A> {
    fn count() {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        THREAD_ALLOCS.with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the wrapped allocator.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: forwarded contract.
        unsafe { self.0.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: forwarded contract.
        unsafe { self.0.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.dealloc(p, layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count();
        // SAFETY: forwarded contract.
        unsafe { self.0.realloc(p, layout, new_size) }
    }
}

/// Harness allocations made so far by the whole process (0 when the global allocator is not
/// [`Counting`]).
pub fn process_allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// Harness allocations made so far by the calling thread.
pub fn thread_allocs() -> u64 {
    THREAD_ALLOCS.with(|c| c.get())
}

/// An owned mapping, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; who reads or writes it is up to the users of its slices.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `len` bytes of zeroed anonymous memory, prefaulted.
    pub fn anon(len: usize) -> io::Result<Mapping> {
        let len = round_up(len.max(1), PAGE);
        let p = map_anon(len, true).ok_or_else(io::Error::last_os_error)?;
        Ok(Mapping { ptr: p, len })
    }

    /// The first `len` bytes of file `fd`, shared and read-only, prefaulted.
    pub fn file(fd: i32, len: usize) -> io::Result<Mapping> {
        let len = round_up(len.max(1), PAGE);
        // SAFETY: a new read-only shared mapping of a file; touches no existing memory.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    /// `len` bytes of file `fd`, shared and writable (the progress counter parent and child
    /// both see), prefaulted.
    pub fn file_rw(fd: i32, len: usize) -> io::Result<Mapping> {
        let len = round_up(len.max(1), PAGE);
        // SAFETY: a new shared mapping of a file; touches no existing memory.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    /// The first 8 bytes as an atomic counter (the mapping is page-aligned).
    pub fn counter(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the mapping is at least a page, page-aligned, and lives as long as `self`;
        // AtomicU64 has u64's layout and every bit pattern is valid.
        unsafe { &*(self.ptr as *const std::sync::atomic::AtomicU64) }
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length in bytes (page-rounded).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: mappings are at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `n` values of `T` starting `offset` bytes in.
    ///
    /// # Panics
    /// When the range is outside the mapping or misaligned.
    pub fn slice<T: Copy>(&self, offset: usize, n: usize) -> &[T] {
        let bytes = n
            .checked_mul(size_of::<T>())
            .expect("slice length overflows");
        assert!(offset + bytes <= self.len, "slice beyond the mapping");
        assert_eq!(
            (self.ptr as usize + offset) % align_of::<T>(),
            0,
            "misaligned slice"
        );
        // SAFETY: in bounds and aligned (checked above); the mapping lives as long as `self`;
        // `T: Copy` plain data for which every bit pattern the plan writes is valid.
        unsafe { std::slice::from_raw_parts(self.ptr.add(offset).cast(), n) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing borrows it past `self`.
        unsafe { unmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_alloc_blocks_are_aligned_disjoint_and_reusable() {
        let a = HarnessAlloc::new();
        let mut blocks = Vec::new();
        for (i, (size, align)) in [
            (1, 1),
            (16, 8),
            (24, 8),
            (100, 64),
            (4000, 4096),
            (5000, 16),
            (40_000, 8),
            (1 << 20, 8192),
            (3, 2),
        ]
        .into_iter()
        .cycle()
        .take(200)
        .enumerate()
        {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a valid non-zero layout.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            // SAFETY: the block is `size` bytes.
            unsafe { ptr::write_bytes(p, i as u8, size) };
            blocks.push((p, l, i as u8));
        }
        for (p, l, v) in &blocks {
            // SAFETY: each block is live and `l.size()` bytes.
            let s = unsafe { std::slice::from_raw_parts(*p, l.size()) };
            assert!(s.iter().all(|b| b == v), "blocks overlap");
        }
        // Grow and shrink through realloc, keeping the contents.
        for (p, l, v) in blocks.iter_mut() {
            let new = l.size() * 3 + 5;
            // SAFETY: `p` is live with layout `l`.
            let q = unsafe { a.realloc(*p, *l, new) };
            assert!(!q.is_null());
            assert_eq!(q as usize % l.align(), 0);
            // SAFETY: the first `l.size()` bytes were copied.
            let s = unsafe { std::slice::from_raw_parts(q, l.size()) };
            assert!(s.iter().all(|b| b == v));
            *p = q;
            *l = Layout::from_size_align(new, l.align()).unwrap();
        }
        for (p, l, _) in blocks {
            // SAFETY: live blocks with their layouts.
            unsafe { a.dealloc(p, l) };
        }
        let l = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: valid layout; zeroed memory of 64 bytes.
        let z = unsafe { a.alloc_zeroed(l) };
        assert!(
            // SAFETY: `z` is a live allocation of 64 bytes, zeroed.
            unsafe { std::slice::from_raw_parts(z, 64) }
                .iter()
                .all(|b| *b == 0)
        );
    }
}
