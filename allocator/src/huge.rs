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
    /// Freed huge mappings, kept as faulted-in page ranges (see `Piece`).
    pool: *mut Piece,
    pool_bytes: usize,
    pool_count: usize,
}
// SAFETY: the pointers are only followed under the lock.
unsafe impl Send for Lists {}

/// A freed huge mapping in the pool: a page range whose pages are still faulted in. The header
/// sits in its first bytes; a piece is consumed from its tail, so the header stays valid.
#[repr(C)]
struct Piece {
    len: usize,
    next: *mut Piece,
    cached_at: u64,
}

static LISTS: SpinLock<Lists> = SpinLock::new(Lists {
    live: ptr::null_mut(),
    pool: ptr::null_mut(),
    pool_bytes: 0,
    pool_count: 0,
});
pub(crate) static HUGE_BLOCKS: AtomicU64 = AtomicU64::new(0);
pub(crate) static HUGE_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static HUGE_CACHED_BYTES: AtomicU64 = AtomicU64::new(0);

const MAX_PIECES: usize = 64;
/// Huge mappings of at least this size get `MADV_HUGEPAGE` from the start: a block this big is
/// used whole by nearly every program, and the kernel only backs 2 MiB-aligned ranges that lie
/// inside the mapping, so the hint costs no memory for a block that is touched, while it cuts
/// first-touch faults 512-fold (4 KiB faults cost ~1.5 µs each on the lab VM, a 2 MiB one
/// ~180 µs).
const HUGE_PAGE_HINT_MIN: usize = 2 << 20;

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
    align.clamp(OS_PAGE, ARENA_SIZE)
}

/// Allocates a huge block of `n` bytes aligned to `align`. `zero`: the caller needs zeroes.
///
/// A fresh arena-aligned mapping is reserved, then filled from its front with pages of freed
/// huge blocks moved over by `mremap` (page tables move; nothing is copied and nothing faults),
/// so a program that frees and allocates large blocks keeps reusing the same physical pages —
/// what glibc gets from its heap — without keeping address ranges of fixed sizes.
pub fn alloc(n: usize, align: usize, zero: bool) -> *mut u8 {
    let off = offset_for(align);
    // No object may be larger than PTRDIFF_MAX (C) / isize::MAX (Rust).
    let Some(total) = n
        .checked_add(off)
        .and_then(|t| t.checked_add(OS_PAGE - 1))
        .filter(|&t| t <= isize::MAX as usize)
    else {
        return ptr::null_mut();
    };
    let total = total & !(OS_PAGE - 1);
    crate::reclaim::maybe_start();
    if align <= ARENA_SIZE
        && let Some(p) = reuse_whole_piece(total, off, zero)
    {
        return p;
    }
    // The base must be arena-aligned and base + off aligned to `align`: for align ≤ ARENA_SIZE
    // an arena-aligned base does both; above, off = ARENA_SIZE and base + off carries `align`.
    let map = || {
        if align <= ARENA_SIZE {
            arena::map_region(total, ARENA_SIZE, 0, total >= HUGE_PAGE_HINT_MIN)
        } else {
            arena::map_region(total, align, ARENA_SIZE, total >= HUGE_PAGE_HINT_MIN)
        }
    };
    let mut a = map();
    if a.is_null() {
        let h = crate::tls::get();
        // SAFETY: the calling thread owns its bound heap and holds none of its free or parked
        // chunks here (a huge request never does).
        let freed = crate::heap::is_real(h) && unsafe { crate::medium::release_for_retry(h) };
        if arena::release_for_retry() || freed {
            a = map();
        }
    }
    if a.is_null() {
        return ptr::null_mut();
    }
    let moved = fill_from_pool(a.cast(), total);
    // SAFETY: the mapping is ours alone; the header lies in its first page.
    unsafe {
        let p = setup(a, total, off);
        if zero && moved > off {
            // Moved pages hold old data; the rest is fresh and reads as zero.
            ptr::write_bytes(p, 0, moved - off);
        }
        p
    }
}

/// Reuses a pooled mapping in place when one fits without wasting more than half the request:
/// no syscall at all. Pieces keep their (arena-aligned) base: they are consumed from the tail.
fn reuse_whole_piece(total: usize, off: usize, zero: bool) -> Option<*mut u8> {
    let piece = {
        let mut l = LISTS.lock();
        let mut best: *mut Piece = ptr::null_mut();
        let mut link: *mut *mut Piece = &mut l.pool;
        let mut best_link: *mut *mut Piece = ptr::null_mut();
        // SAFETY: pool list under the lock.
        unsafe {
            while !(*link).is_null() {
                let e = *link;
                let len = (*e).len;
                if len >= total
                    && len - total <= total / 2
                    && (e as usize).is_multiple_of(ARENA_SIZE)
                    && (best.is_null() || len < (*best).len)
                {
                    best = e;
                    best_link = link;
                }
                link = &mut (*e).next;
            }
            if best.is_null() {
                return None;
            }
            *best_link = (*best).next;
            l.pool_count -= 1;
            l.pool_bytes -= (*best).len;
        }
        HUGE_CACHED_BYTES.store(l.pool_bytes as u64, Ordering::Relaxed);
        best
    };
    let a = piece as *mut Arena;
    // SAFETY: the piece is ours alone now: a whole, arena-aligned, faulted-in mapping.
    unsafe {
        let len = (*piece).len;
        arena::register(a);
        let p = setup(a, len, off);
        if zero {
            ptr::write_bytes(p, 0, len - off);
        }
        Some(p)
    }
}

/// Moves pooled pages into `[dst, dst + total)` from its start; returns the bytes moved.
fn fill_from_pool(dst: *mut u8, total: usize) -> usize {
    let mut done = 0;
    let mut l = LISTS.lock();
    while done < total && !l.pool.is_null() {
        let need = total - done;
        // Smallest piece that covers the rest, else the largest.
        let mut best: *mut Piece = ptr::null_mut();
        let mut largest: *mut Piece = ptr::null_mut();
        let mut e = l.pool;
        // SAFETY: pool pieces under the lock; their headers are in faulted pages we own.
        unsafe {
            while !e.is_null() {
                if (*e).len >= need && (best.is_null() || (*e).len < (*best).len) {
                    best = e;
                }
                if largest.is_null() || (*e).len > (*largest).len {
                    largest = e;
                }
                e = (*e).next;
            }
        }
        let piece = if best.is_null() { largest } else { best };
        // SAFETY: as above; the taken range is the piece's tail, or all of it.
        unsafe {
            let take = (*piece).len.min(need);
            let src = piece.cast::<u8>().add((*piece).len - take);
            if take == (*piece).len {
                let mut link: *mut *mut Piece = &mut l.pool;
                while *link != piece {
                    link = &mut (**link).next;
                }
                *link = (*piece).next;
                l.pool_count -= 1;
            } else {
                (*piece).len -= take;
            }
            l.pool_bytes -= take;
            if os::move_pages(src, take, dst.add(done)) {
                done += take;
            } else {
                // Spans two kernel mappings (or the kernel refused): drop it, use fresh pages.
                os::unmap(src, take);
            }
        }
    }
    HUGE_CACHED_BYTES.store(l.pool_bytes as u64, Ordering::Relaxed);
    done
}

unsafe fn setup(a: *mut Arena, total: usize, off: usize) -> *mut u8 {
    // SAFETY: `a` is a mapping of `total` bytes we own.
    unsafe {
        (*a).kind = Kind::Huge;
        (*a).small_owner = ptr::null_mut();
        (*a).heap = ptr::null_mut();
        (*a).map_size = total;
        (*a).offset = off;
        (*a).size = total - off;
        HUGE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        HUGE_BYTES.fetch_add((total - off) as u64, Ordering::Relaxed);
        let mut l = LISTS.lock();
        push(&mut l.live, a);
        drop(l);
        a.cast::<u8>().add(off)
    }
}

/// Frees a huge block (any thread): its pages go to the pool, or back to the OS when the pool
/// is full.
///
/// # Safety
/// `a` must be the arena of a live huge block.
pub unsafe fn free(a: *mut Arena) {
    // SAFETY: caller's contract; the block dies here, its mapping becomes a pool piece.
    unsafe {
        let total = (*a).map_size;
        HUGE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        HUGE_BYTES.fetch_sub((*a).size as u64, Ordering::Relaxed);
        let limit = if crate::config::RECLAIM.load(Ordering::Relaxed) {
            usize::MAX >> 1 // the reclaimer ages pieces out
        } else {
            crate::config::HUGE_CACHE_BYTES.load(Ordering::Relaxed)
        };
        let mut evict: *mut Piece = ptr::null_mut();
        {
            let mut l = LISTS.lock();
            remove(&mut l.live, a);
            arena::unregister(a);
            if total > limit {
                drop(l);
                os::unmap(a.cast(), total);
                return;
            }
            let piece = a as *mut Piece;
            (*piece).len = total;
            (*piece).cached_at = crate::reclaim::tick();
            (*piece).next = l.pool;
            l.pool = piece;
            l.pool_bytes += total;
            l.pool_count += 1;
            // Over budget: evict the oldest pieces (the list is newest first).
            while l.pool_bytes > limit || l.pool_count > MAX_PIECES {
                let mut link: *mut *mut Piece = &mut l.pool;
                while !(**link).next.is_null() {
                    link = &mut (**link).next;
                }
                let old = *link;
                *link = ptr::null_mut();
                l.pool_bytes -= (*old).len;
                l.pool_count -= 1;
                (*old).next = evict;
                evict = old;
            }
            HUGE_CACHED_BYTES.store(l.pool_bytes as u64, Ordering::Relaxed);
        }
        while !evict.is_null() {
            let next = (*evict).next;
            os::unmap(evict.cast(), (*evict).len);
            evict = next;
        }
    }
}

/// Unmaps pool pieces that entered the pool before tick `before` (reclaimer).
pub(crate) fn purge_cache(before: u64) -> usize {
    let mut victims: *mut Piece = ptr::null_mut();
    let mut n = 0;
    {
        let mut l = LISTS.lock();
        let mut link: *mut *mut Piece = &mut l.pool;
        // SAFETY: pool list under the lock.
        unsafe {
            while !(*link).is_null() {
                let e = *link;
                if (*e).cached_at < before {
                    *link = (*e).next;
                    l.pool_bytes -= (*e).len;
                    l.pool_count -= 1;
                    (*e).next = victims;
                    victims = e;
                    n += 1;
                } else {
                    link = &mut (*e).next;
                }
            }
        }
        HUGE_CACHED_BYTES.store(l.pool_bytes as u64, Ordering::Relaxed);
    }
    while !victims.is_null() {
        // SAFETY: unlinked above, ours alone.
        unsafe {
            let next = (*victims).next;
            os::unmap(victims.cast(), (*victims).len);
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
        let Some(total) = n
            .checked_add(off + OS_PAGE - 1)
            .filter(|&t| t <= isize::MAX as usize)
        else {
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
            // Unregistered before the move: once mremap has vacated `a`, another thread's mmap
            // may get that very address for a new arena and register it; clearing the bit
            // after the move would then disown that arena (found by the reclaim stress test:
            // a later free of one of its blocks was refused as "not allocated by fancy").
            // Nobody else looks `a` up meanwhile: the block is the caller's alone.
            arena::unregister(a);
            na = os::remap_move_aligned(a.cast(), old, total, ARENA_SIZE) as *mut Arena;
            if na.is_null() {
                arena::register(a);
                let mut l = LISTS.lock();
                push(&mut l.live, a);
                return ptr::null_mut();
            }
            arena::register(na);
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

/// Visits live huge blocks (validation) and returns the pool's (piece count, bytes) as found by
/// walking it, next to its counters.
pub(crate) fn walk(mut f: impl FnMut(*mut Arena)) -> ((usize, usize), (usize, usize)) {
    let l = LISTS.lock();
    let mut a = l.live;
    while !a.is_null() {
        f(a);
        // SAFETY: list under the lock.
        a = unsafe { (*a).next };
    }
    let (mut n, mut bytes) = (0, 0);
    let mut e = l.pool;
    while !e.is_null() && n <= MAX_PIECES {
        // SAFETY: pool list under the lock.
        unsafe {
            n += 1;
            bytes += (*e).len;
            e = (*e).next;
        }
    }
    ((n, bytes), (l.pool_count, l.pool_bytes))
}
