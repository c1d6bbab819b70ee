//! Huge blocks (> 1 MiB, or alignment > 64 KiB): one mapping each, arena-aligned, with the
//! header page at the base and the block at `base + offset` (4 KiB ..= 4 MiB).
//!
//! Freed huge mappings go to a small cache (bounded in bytes) instead of munmap: the next huge
//! request reuses the pages already faulted in, trimming the tail with munmap or growing it with
//! mremap (page tables move, nothing is copied). glibc wins big on 5–25 MiB blocks by reusing its
//! heap; this cache is what keeps fancy near it. The reclaimer unmaps entries that sat one tick.
//! Any thread may free a huge block: there is no owner.

use crate::arena::{self, ARENA_SIZE, Arena, Kind};
use crate::os::{self, OS_PAGE};
use crate::sync::SpinLock;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

struct Lists {
    /// Live huge blocks (for stats and validation).
    live: *mut Arena,
    /// Freed mappings kept for reuse.
    cache: *mut Arena,
    cache_bytes: usize,
    cache_count: usize,
}
// SAFETY: the pointers are only followed under the lock.
unsafe impl Send for Lists {}

static LISTS: SpinLock<Lists> = SpinLock::new(Lists {
    live: ptr::null_mut(),
    cache: ptr::null_mut(),
    cache_bytes: 0,
    cache_count: 0,
});
pub(crate) static HUGE_BLOCKS: AtomicU64 = AtomicU64::new(0);
pub(crate) static HUGE_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static HUGE_CACHED_BYTES: AtomicU64 = AtomicU64::new(0);

const MAX_CACHE_ENTRIES: usize = 16;

pub(crate) fn lock() -> &'static SpinLock<impl Sized> {
    &LISTS
}

unsafe fn push(head: *mut *mut Arena, a: *mut Arena) {
    // SAFETY: under the lists lock (callers).
    unsafe {
        (*a).prev = ptr::null_mut();
        (*a).next = *head;
        if !(*head).is_null() {
            (**head).prev = a;
        }
        *head = a;
    }
}

unsafe fn remove(head: *mut *mut Arena, a: *mut Arena) {
    // SAFETY: under the lists lock; `a` is in the list.
    unsafe {
        if (*a).prev.is_null() {
            *head = (*a).next;
        } else {
            (*(*a).prev).next = (*a).next;
        }
        if !(*a).next.is_null() {
            (*(*a).next).prev = (*a).prev;
        }
    }
}

fn offset_for(align: usize) -> usize {
    align.max(OS_PAGE).min(ARENA_SIZE)
}

/// Allocates a huge block of `n` bytes aligned to `align`. `zero`: the caller needs zeroes.
pub fn alloc(n: usize, align: usize, zero: bool) -> *mut u8 {
    let off = offset_for(align);
    let Some(total) = n.checked_add(off).and_then(|t| t.checked_add(OS_PAGE - 1)) else {
        return ptr::null_mut();
    };
    let total = total & !(OS_PAGE - 1);
    if align <= ARENA_SIZE {
        if let Some(p) = from_cache(n, total, off, zero) {
            return p;
        }
    }
    crate::reclaim::maybe_start();
    // The base must be arena-aligned and base + off aligned to `align`: for align ≤ ARENA_SIZE
    // an arena-aligned base does both; above, off = ARENA_SIZE and base + off carries `align`.
    let a = if align <= ARENA_SIZE {
        arena::map_region(total, ARENA_SIZE, 0)
    } else {
        arena::map_region(total, align, ARENA_SIZE)
    };
    if a.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the mapping is ours alone; the header lies in its first page.
    unsafe { setup(a, total, off, n) }
}

unsafe fn setup(a: *mut Arena, total: usize, off: usize, n: usize) -> *mut u8 {
    // SAFETY: `a` is a mapping of `total` bytes we own.
    unsafe {
        (*a).kind = Kind::Huge;
        (*a).small_owner = ptr::null_mut();
        (*a).heap = ptr::null_mut();
        (*a).map_size = total;
        (*a).offset = off;
        (*a).size = total - off;
        let _ = n;
        HUGE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        HUGE_BYTES.fetch_add((total - off) as u64, Ordering::Relaxed);
        let mut l = LISTS.lock();
        push(&mut l.live, a);
        drop(l);
        a.cast::<u8>().add(off)
    }
}

fn from_cache(n: usize, total: usize, off: usize, zero: bool) -> Option<*mut u8> {
    let a = {
        let mut l = LISTS.lock();
        if l.cache.is_null() {
            return None;
        }
        // Smallest entry that fits, else the largest one (grown with mremap).
        let mut best: *mut Arena = ptr::null_mut();
        let mut largest: *mut Arena = ptr::null_mut();
        let mut e = l.cache;
        // SAFETY: cache list under the lock.
        unsafe {
            while !e.is_null() {
                let s = (*e).map_size;
                if s >= total && (best.is_null() || s < (*best).map_size) {
                    best = e;
                }
                if largest.is_null() || s > (*largest).map_size {
                    largest = e;
                }
                e = (*e).next;
            }
        }
        let a = if best.is_null() { largest } else { best };
        // SAFETY: under the lock; `a` is in the cache.
        unsafe {
            remove(&mut l.cache, a);
            l.cache_bytes -= (*a).map_size;
            l.cache_count -= 1;
        }
        HUGE_CACHED_BYTES.store(l.cache_bytes as u64, Ordering::Relaxed);
        a
    };
    // SAFETY: `a` was unlinked from the cache: ours alone, a whole mapping of map_size bytes.
    unsafe {
        let old = (*a).map_size;
        let old_off = (*a).offset;
        // Bytes of the old block that may hold stale data (the new block must read as zero).
        let dirty_end = old;
        let mut a = a;
        let mut total = total;
        if old > total {
            // Keep a moderately larger mapping whole (its pages are already faulted in: reusing
            // them is what makes glibc fast on large blocks); trim only a big excess.
            if old - total <= total / 2 {
                total = old;
            } else {
                os::unmap(a.cast::<u8>().add(total), old - total);
            }
        } else if old < total && !os::remap_in_place(a.cast(), old, total) {
            let moved = os::remap_move_aligned(a.cast(), old, total, ARENA_SIZE) as *mut Arena;
            if moved.is_null() {
                arena::unmap_region(a, old);
                return None;
            }
            arena::remapped(a, moved);
            a = moved;
        }
        let p = setup(a, total, off, n);
        if zero {
            // Old data lies in [old_off, min(dirty_end, total)); the header page is ours.
            let lo = off.min(old_off);
            let hi = dirty_end.min(total);
            if hi > lo {
                let start = a.cast::<u8>().add(off.max(lo));
                let end = a.cast::<u8>().add(hi);
                if end > start {
                    ptr::write_bytes(start, 0, end.offset_from(start) as usize);
                }
            }
        }
        Some(p)
    }
}

/// Frees a huge block (any thread).
///
/// # Safety
/// `a` must be the arena of a live huge block.
pub unsafe fn free(a: *mut Arena) {
    // SAFETY: caller's contract; the block dies here.
    unsafe {
        let total = (*a).map_size;
        HUGE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        HUGE_BYTES.fetch_sub((*a).size as u64, Ordering::Relaxed);
        let limit = if crate::config::RECLAIM.load(Ordering::Relaxed) {
            usize::MAX >> 1
        } else {
            crate::config::HUGE_CACHE_BYTES.load(Ordering::Relaxed)
        };
        let mut l = LISTS.lock();
        remove(&mut l.live, a);
        if (*a).offset <= ARENA_SIZE
            && l.cache_count < MAX_CACHE_ENTRIES
            && l.cache_bytes + total <= limit
        {
            (*a).kind = Kind::Free;
            (*a).cached_at = crate::reclaim::tick();
            push(&mut l.cache, a);
            l.cache_bytes += total;
            l.cache_count += 1;
            HUGE_CACHED_BYTES.store(l.cache_bytes as u64, Ordering::Relaxed);
            return;
        }
        drop(l);
        arena::unmap_region(a, total);
    }
}

/// Unmaps cached huge mappings that entered the cache before tick `before`.
pub(crate) fn purge_cache(before: u64) -> usize {
    let mut victims: *mut Arena = ptr::null_mut();
    let mut n = 0;
    {
        let mut l = LISTS.lock();
        let mut e = l.cache;
        // SAFETY: cache list under the lock.
        unsafe {
            while !e.is_null() {
                let next = (*e).next;
                if (*e).cached_at < before {
                    remove(&mut l.cache, e);
                    l.cache_bytes -= (*e).map_size;
                    l.cache_count -= 1;
                    (*e).next = victims;
                    victims = e;
                    n += 1;
                }
                e = next;
            }
        }
        HUGE_CACHED_BYTES.store(l.cache_bytes as u64, Ordering::Relaxed);
    }
    while !victims.is_null() {
        // SAFETY: unlinked above, ours alone.
        unsafe {
            let next = (*victims).next;
            arena::unmap_region(victims, (*victims).map_size);
            victims = next;
        }
    }
    n
}

/// Usable bytes of a huge block.
///
/// # Safety
/// `a` must be the arena of the live huge block `p`.
pub unsafe fn usable(a: *mut Arena, p: *const u8) -> usize {
    // SAFETY: caller's contract.
    unsafe { a as usize + (*a).map_size - p as usize }
}

/// Resizes a huge block to `n` bytes (> MEDIUM_MAX) with mremap, keeping its contents. Null if
/// the OS refuses (the block is then unchanged).
///
/// # Safety
/// `p` must be the live huge block of arena `a`.
pub unsafe fn realloc(a: *mut Arena, p: *mut u8, n: usize) -> *mut u8 {
    // SAFETY: caller's contract; the block is ours for the duration (no one else frees it).
    unsafe {
        let off = p as usize - a as usize;
        if off > ARENA_SIZE {
            return ptr::null_mut();
        }
        let Some(total) = n.checked_add(off + OS_PAGE - 1) else {
            return ptr::null_mut();
        };
        let total = total & !(OS_PAGE - 1);
        let old = (*a).map_size;
        if total == old {
            return p;
        }
        let mut l = LISTS.lock();
        remove(&mut l.live, a);
        drop(l);
        let mut na = a;
        if total < old {
            os::unmap(a.cast::<u8>().add(total), old - total);
        } else if !os::remap_in_place(a.cast(), old, total) {
            na = os::remap_move_aligned(a.cast(), old, total, ARENA_SIZE) as *mut Arena;
            if na.is_null() {
                let mut l = LISTS.lock();
                push(&mut l.live, a);
                return ptr::null_mut();
            }
            arena::remapped(a, na);
        }
        HUGE_BYTES.fetch_sub((*na).size as u64, Ordering::Relaxed);
        (*na).map_size = total;
        (*na).size = total - off;
        HUGE_BYTES.fetch_add((*na).size as u64, Ordering::Relaxed);
        let mut l = LISTS.lock();
        push(&mut l.live, na);
        na.cast::<u8>().add(off)
    }
}

/// Visits live huge blocks and cached mappings (validation).
pub(crate) fn walk(mut f: impl FnMut(*mut Arena, bool)) {
    let l = LISTS.lock();
    let mut a = l.live;
    while !a.is_null() {
        f(a, true);
        // SAFETY: list under the lock.
        a = unsafe { (*a).next };
    }
    let mut a = l.cache;
    while !a.is_null() {
        f(a, false);
        // SAFETY: list under the lock.
        a = unsafe { (*a).next };
    }
}
