//! The process-wide pools, one per [`Variant`]: hybrid routing, thread caches for the slab
//! classes, per-thread statistics. These are the functions the replay adapters and the preload
//! library call; a block must be freed through the variant that allocated it.

use core::ptr;

use crate::tcache::{self, POOLS};
use crate::{LockCounts, Stats, Variant};

/// `malloc(size)`: null when memory ran out.
#[inline]
pub fn malloc(v: Variant, size: usize) -> *mut u8 {
    let i = v.index();
    tcache::count_alloc(i, size);
    // SAFETY: 16 is a power of two.
    unsafe { POOLS[i].alloc(size, 16) }
}

/// `calloc(n, size)`: zeroed; null on overflow or when memory ran out.
pub fn calloc(v: Variant, n: usize, size: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        return ptr::null_mut();
    };
    let p = malloc(v, total);
    if !p.is_null() {
        // SAFETY: `p` holds at least `total` bytes.
        unsafe { ptr::write_bytes(p, 0, total) };
    }
    p
}

/// An aligned allocation (`align` must be a power of two; null otherwise).
pub fn aligned_alloc(v: Variant, align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    let i = v.index();
    tcache::count_alloc(i, size);
    // SAFETY: `align` is a power of two.
    unsafe { POOLS[i].alloc(size, align) }
}

/// `free(p)`.
///
/// # Safety
/// `p` is null or a live block of variant `v`, not used afterwards.
#[inline]
pub unsafe fn free(v: Variant, p: *mut u8) {
    if p.is_null() {
        return;
    }
    let i = v.index();
    tcache::count_free(i);
    // SAFETY: caller's contract.
    unsafe { POOLS[i].free(p) }
}

/// `realloc(p, size)` with glibc's semantics: null `p` allocates, `size` 0 frees and returns
/// null, failure returns null and leaves `p` live.
///
/// # Safety
/// `p` is null or a live block of variant `v`; unless null is returned it is not used again.
pub unsafe fn realloc(v: Variant, p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: caller's contract.
    unsafe { realloc_aligned(v, p, size, 16) }
}

/// `realloc` keeping an alignment of `align` (a power of two).
///
/// # Safety
/// As [`realloc`].
pub unsafe fn realloc_aligned(v: Variant, p: *mut u8, size: usize, align: usize) -> *mut u8 {
    if p.is_null() {
        return aligned_alloc(v, align, size);
    }
    if size == 0 {
        // SAFETY: caller's contract.
        unsafe { free(v, p) };
        return ptr::null_mut();
    }
    let i = v.index();
    tcache::count_realloc(i, size);
    // SAFETY: caller's contract; `align` a power of two (callers pass 16 or a Layout's).
    unsafe { POOLS[i].realloc(p, size, align) }
}

/// `malloc_usable_size(p)`.
///
/// # Safety
/// `p` is a live block of variant `v`.
pub unsafe fn usable_size(v: Variant, p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: caller's contract.
    unsafe { POOLS[v.index()].usable(p) }
}

/// Every thread's statistics for variant `v`, merged (exact once the threads are quiet).
pub fn stats(v: Variant) -> Stats {
    tcache::merged_stats(v.index())
}

/// The calling thread's statistics for variant `v`.
pub fn thread_stats(v: Variant) -> Stats {
    tcache::thread_stats(v.index())
}

/// Blocks in the calling thread's caches for variant `v`.
pub fn thread_cached_blocks(v: Variant) -> usize {
    tcache::cached_blocks(v.index())
}

/// Lock acquisitions, contention and class replenishments of variant `v`'s pool so far.
pub fn lock_counts(v: Variant) -> LockCounts {
    POOLS[v.index()].lock_counts()
}

/// Blocks on variant `v`'s class free lists (not counting thread caches).
pub fn free_class_blocks(v: Variant) -> usize {
    POOLS[v.index()].free_blocks()
}

/// Empties the calling thread's caches and retires its statistics (done anyway when the thread
/// exits; call it to have it done before the thread is joined).
pub fn thread_detach() {
    tcache::detach();
}

/// `pthread_atfork` prepare handler: takes every lock of the process-wide pools.
pub fn fork_prepare() {
    tcache::lock_all();
}

/// `pthread_atfork` parent handler.
pub fn fork_parent() {
    tcache::unlock_all(false);
}

/// `pthread_atfork` child handler.
pub fn fork_child() {
    tcache::unlock_all(true);
}
