//! Medium blocks (513 B ..= 1 MiB): boundary-tag chunks in 4 MiB arenas, segregated free lists,
//! immediate coalescing on free, in-place realloc into a free neighbour.
//!
//! ```text
//!  chunk:  ┌───────────┬──────────────────┬─────────────────────────────┐
//!          │ prev_size │ size | PREV_FREE │ payload (user) …            │
//!          │ (valid iff│      | FREE      │ free: next, prev links      │
//!          │ PREV_FREE)│                  │                             │
//!          └───────────┴──────────────────┴─────────────────────────────┘
//!  arena:  [header 4 KiB][chunk][chunk]…[chunk][end sentinel: 16 B, never free]
//! ```
//! Invariants (checked by `validate`): chunks tile the arena; no two free chunks are adjacent;
//! a free chunk's size is also in the next chunk's `prev_size` and the next chunk has
//! PREV_FREE; every free chunk is in exactly the bin of its size, and a bin's bit is set iff the
//! bin is non-empty.
//!
//! Bins: sizes < 256 B one bin per 16 B; above, 8 bins per power of two (TLSF-like), 128 bins.
//! Allocation looks at the head of the request's own bin, then takes the head of the first
//! non-empty larger bin (every chunk there fits): O(1) with a bitmap.
//!
//! Footprint: each arena has a high-water mark (`Arena::top`, the end of the highest chunk ever
//! handed out; nothing above it was touched). A request whose chunk would reach above it is a
//! growth: before new memory is touched, remote frees are collected, the front cache is flushed
//! into the bins if it holds more than 1/32 of the touched memory, and the bins are searched
//! harder for a chunk below the mark. So the heap touches new memory only when what it already
//! touched cannot serve the request, as a plain coalescing heap would.

use crate::arena::{self, ARENA_HEADER, ARENA_SIZE, Arena, Kind};
use crate::heap::{self, Heap};
use crate::small::{arena_list_push, arena_list_remove};
use crate::sync::{bump, drop_by};
use core::ptr;

pub const HDR: usize = 16;
pub const MIN_CHUNK: usize = 32;
/// Largest request served from medium arenas; above it blocks are huge (own mapping).
pub const MEDIUM_MAX: usize = 1 << 20;
/// Largest alignment served from medium arenas.
pub const MEDIUM_MAX_ALIGN: usize = 64 * 1024;
const FREE: usize = 1;
const PREV_FREE: usize = 2;
/// In use by the allocator itself: parked in the front cache (a second free of it is a double
/// free, caught here as glibc's tcache key catches it).
const PARKED: usize = 4;
const FLAGS: usize = 15;
/// The size bits of a chunk's `head` (chunks are smaller than 4 MiB). The high 32 bits hold the
/// chunk's tag (`tag`): a free checks it, so a pointer that is not the start of a chunk (an
/// interior pointer, a stray one, a chunk merged into a neighbour since) is refused instead of
/// its preceding bytes being taken for a header.
const SIZE_MASK: usize = 0xFFFF_FFFF & !FLAGS;
const TAG_MASK: usize = !0xFFFF_FFFF;

/// The tag of a chunk header at `c`: its address mixed with the process's secret.
#[inline(always)]
fn tag(c: *const Chunk) -> usize {
    ((c as usize >> 4) ^ (crate::small::key_secret() >> 32)) << 32
}

/// Writes a chunk's `head` (size and flags) with its tag.
#[inline(always)]
unsafe fn set_head(c: *mut Chunk, v: usize) {
    // SAFETY: callers pass chunk headers inside our arenas.
    unsafe { (*c).head = v | tag(c) }
}

/// Checks the program's free (or realloc: `what` names the call) of a pointer into a medium
/// arena: it must be the payload of a live chunk — 16-aligned, its header tagged for its
/// address, neither free nor parked in the front cache. Aborts with a line naming the pointer
/// otherwise.
///
/// # Safety
/// `p` must lie inside one of our medium arenas (`arena_of(p)` is one).
#[inline(always)]
pub unsafe fn check_free(p: *mut u8, what: &str) {
    if p as usize & 15 != 0 {
        crate::fatal::fatal_ptr(what, p, "not the start of a medium block (misaligned)");
    }
    let c = p.wrapping_sub(HDR) as *const Chunk;
    // SAFETY: `p` is 16-aligned inside an arena whose first 4 KiB are its header, so `c` is an
    // aligned, mapped word pair of the same arena (or of its header).
    let h = unsafe { (*c).head };
    if h & TAG_MASK != tag(c) {
        crate::fatal::fatal_ptr(
            what,
            p,
            "not the start of a live medium block (an interior or stray pointer, or a block freed before)",
        );
    }
    if h & (FREE | PARKED) != 0 {
        crate::fatal::fatal_ptr(what, p, "the medium block is already free (double free)");
    }
}
pub const NBINS: usize = 128;
/// First chunk of a medium arena.
const AREA_START: usize = ARENA_HEADER;
/// End sentinel offset.
const AREA_END: usize = ARENA_SIZE - HDR;
const AREA_LEN: usize = AREA_END - AREA_START;

#[repr(C)]
pub struct Chunk {
    pub prev_size: usize,
    pub head: usize,
    pub next: *mut Chunk,
    pub prev: *mut Chunk,
}

/// Chunk sizes up to this go through the per-heap front cache (see `Bins::tc`).
pub const TC_MAX_CHUNK: usize = 4096 + HDR;
const TC_MIN_CHUNK: usize = 512 + 16 + HDR - 16; // chunk_size(513) = 544; 528 keeps the index simple
/// Exact-size lists, one per 16 B of chunk size in TC_MIN_CHUNK..=TC_MAX_CHUNK.
pub const TC_SIZES: usize = (TC_MAX_CHUNK - TC_MIN_CHUNK) / 16 + 1;
/// Chunks parked per exact size.
pub const TC_COUNT: u8 = 8;
/// The front cache may always hold this many bytes; beyond, at most 1/16 of the heap's touched
/// medium memory (`TC_SHARE`), so parked chunks cost the heap at most ~6 % of its footprint.
pub const TC_MIN_BUDGET: usize = 64 * 1024;
pub const TC_SHARE: u32 = 2;
/// The heap flushes the front cache before touching new memory when it holds more than
/// 1/2^TC_FLUSH_SHARE of the touched medium memory.
pub const TC_FLUSH_SHARE: u32 = 5;

#[inline(always)]
fn tc_index(cs: usize) -> usize {
    (cs - TC_MIN_CHUNK) >> 4
}

/// How many exact sizes a request of chunk size `cs` may take a parked chunk from: its own and
/// the next ones up, so a chunk at most `cs / 16` larger is handed out whole (no split).
#[inline(always)]
fn tc_window(cs: usize) -> usize {
    (cs >> 8).max(1)
}

/// First non-empty front-cache list in `i .. i + w`, if any (one bitmap look, two at a word
/// boundary).
#[inline(always)]
fn tc_find(bins: &Bins, i: usize, w: usize) -> Option<usize> {
    let end = (i + w).min(TC_SIZES);
    let mut j = i;
    while j < end {
        let word = bins.tc_map[j >> 6] >> (j & 63);
        if word != 0 {
            let k = j + word.trailing_zeros() as usize;
            return (k < end).then_some(k);
        }
        j = (j | 63) + 1;
    }
    None
}

/// The heap's bins (owner only).
#[repr(C)]
pub struct Bins {
    pub bitmap: [u64; 2],
    pub heads: [*mut Chunk; NBINS],
    /// The front cache, as glibc's tcache: up to `TC_COUNT` recently freed chunks per exact size
    /// (≤ 4 KiB), parked *in use* (not coalesced) and handed out again first, to a request of
    /// the same size or up to 1/16 smaller. Bounded in bytes (`TC_MIN_BUDGET`, or 1/16 of the
    /// heap's touched medium memory), flushed into the coalescing heap before the heap touches
    /// new memory and on every trim. It saves the 4–7 cache misses of coalescing on the hottest
    /// medium sizes.
    pub tc: [*mut Chunk; TC_SIZES],
    pub tc_count: [u8; TC_SIZES],
    /// Bit `i` set iff `tc[i]` is non-empty (flushes visit only those).
    pub tc_map: [u64; TC_WORDS],
    /// Bytes of parked chunks (the owner's copy of `shared.medium_cached`).
    pub tc_bytes: usize,
}

/// Words of the front cache's occupancy bitmap.
pub const TC_WORDS: usize = TC_SIZES.div_ceil(64);

impl Bins {
    pub const EMPTY: Bins = Bins {
        bitmap: [0; 2],
        heads: [ptr::null_mut(); NBINS],
        tc: [ptr::null_mut(); TC_SIZES],
        tc_count: [0; TC_SIZES],
        tc_map: [0; TC_WORDS],
        tc_bytes: 0,
    };
}

/// Whether an in-use chunk is parked in the front cache.
pub(crate) fn is_parked(c: *const Chunk) -> bool {
    // SAFETY: callers pass chunk headers inside our arenas.
    unsafe { (*c).head & PARKED != 0 }
}

/// If `c` (an in-use chunk) is parked in the front cache, takes it out and frees it into the
/// coalescing heap (so realloc can grow into it). At most `TC_COUNT` comparisons.
unsafe fn tc_unpark(heap: *mut Heap, c: *mut Chunk) -> bool {
    // SAFETY: owner-only lists; `c` is an in-use chunk header of the heap's arena.
    unsafe {
        let size = size_of_chunk(c);
        if !(TC_MIN_CHUNK..=TC_MAX_CHUNK).contains(&size) {
            return false;
        }
        let i = tc_index(size);
        let mut link: *mut *mut Chunk = &mut (*heap).local.bins.tc[i];
        while !(*link).is_null() {
            if *link == c {
                (*c).head &= !PARKED;
                *link = (*c).next;
                tc_taken(heap, i, size);
                coalesce_free(heap, arena::arena_of(c.cast::<u8>().add(HDR)), c);
                return true;
            }
            link = &mut (**link).next;
        }
        false
    }
}

/// Frees every parked chunk into the coalescing heap.
///
/// # Safety
/// The caller must own `heap`.
pub(crate) unsafe fn tc_flush(heap: *mut Heap) {
    // SAFETY: owner-only lists; parked chunks are in-use chunks of the heap's arenas.
    unsafe {
        if (*heap).local.bins.tc_bytes == 0 {
            return;
        }
        for w in 0..TC_WORDS {
            while (*heap).local.bins.tc_map[w] != 0 {
                let i = w * 64 + (*heap).local.bins.tc_map[w].trailing_zeros() as usize;
                let mut c = (*heap).local.bins.tc[i];
                (*heap).local.bins.tc[i] = ptr::null_mut();
                (*heap).local.bins.tc_count[i] = 0;
                (*heap).local.bins.tc_map[w] &= !(1u64 << (i & 63));
                while !c.is_null() {
                    let next = (*c).next;
                    (*c).head &= !PARKED;
                    let size = size_of_chunk(c);
                    (*heap).local.bins.tc_bytes -= size;
                    drop_by(&(*heap).shared.medium_cached, size as u64);
                    coalesce_free(heap, arena::arena_of(c.cast::<u8>().add(HDR)), c);
                    c = next;
                }
            }
        }
    }
}

/// Bookkeeping after chunk `size` left front-cache list `i` (its links are already updated).
#[inline(always)]
unsafe fn tc_taken(heap: *mut Heap, i: usize, size: usize) {
    // SAFETY: owner-only (caller).
    unsafe {
        let bins = &mut (*heap).local.bins;
        bins.tc_count[i] -= 1;
        if bins.tc_count[i] == 0 {
            bins.tc_map[i >> 6] &= !(1u64 << (i & 63));
        }
        bins.tc_bytes -= size;
        drop_by(&(*heap).shared.medium_cached, size as u64);
    }
}

/// Whether handing out `[c, c + need)` would touch memory of its arena above the high-water
/// mark (memory never used before).
#[inline(always)]
unsafe fn grows(c: *mut Chunk, need: usize) -> bool {
    let a = arena::arena_of(c.cast::<u8>().wrapping_add(HDR));
    // SAFETY: `c` is a chunk of one of our medium arenas (callers).
    unsafe { c as usize + need - a as usize > (*a).top }
}

/// Raises the arena's high-water mark to the end of chunk `c` of `size` bytes.
#[inline(always)]
unsafe fn raise_top(heap: *mut Heap, c: *mut Chunk, size: usize) {
    let a = arena::arena_of(c.cast::<u8>().wrapping_add(HDR));
    // SAFETY: as in grows; owner-only header field and counter.
    unsafe {
        let end = c as usize + size - a as usize;
        if end > (*a).top {
            bump(&(*heap).shared.medium_touched, (end - (*a).top) as u64);
            (*a).top = end;
        }
    }
}

#[inline(always)]
pub fn size_of_chunk(c: *const Chunk) -> usize {
    // SAFETY: callers pass chunk headers inside our arenas.
    unsafe { (*c).head & SIZE_MASK }
}

#[inline(always)]
fn is_free(c: *const Chunk) -> bool {
    // SAFETY: as above.
    unsafe { (*c).head & FREE != 0 }
}

#[inline(always)]
unsafe fn at(c: *mut Chunk, off: usize) -> *mut Chunk {
    // SAFETY: callers stay inside the arena (chunk sizes tile it).
    unsafe { c.cast::<u8>().add(off).cast() }
}

/// Bin of a chunk size (a multiple of 16, ≥ 32, < 4 MiB).
#[inline]
pub fn bin_of(size: usize) -> usize {
    if size < 256 {
        size >> 4
    } else {
        let fl = (usize::BITS - 1 - size.leading_zeros()) as usize;
        16 + (fl - 8) * 8 + ((size >> (fl - 3)) & 7)
    }
}

/// Chunk size for a request of `n` bytes.
#[inline]
pub fn chunk_size(n: usize) -> usize {
    (n + HDR + 15).max(MIN_CHUNK) & !15
}

unsafe fn bin_insert(heap: *mut Heap, c: *mut Chunk) {
    // SAFETY: `c` is a chunk header of ours (caller).
    unsafe { bin_insert_sized(heap, c, size_of_chunk(c)) }
}

/// `bin_insert` for a chunk whose size the caller knows (no re-read of the header just written).
#[inline(always)]
unsafe fn bin_insert_sized(heap: *mut Heap, c: *mut Chunk, size: usize) {
    // SAFETY: owner-only bins; `c` is a free chunk of `size` bytes in no bin.
    unsafe {
        let b = bin_of(size);
        let bins = &mut (*heap).local.bins;
        let head = bins.heads[b];
        (*c).prev = ptr::null_mut();
        (*c).next = head;
        if !head.is_null() {
            (*head).prev = c;
        }
        bins.heads[b] = c;
        bins.bitmap[b >> 6] |= 1 << (b & 63);
    }
}

unsafe fn bin_remove(heap: *mut Heap, c: *mut Chunk) {
    // SAFETY: `c` is in its bin (owner-only).
    unsafe {
        let b = bin_of(size_of_chunk(c));
        let bins = &mut (*heap).local.bins;
        if (*c).prev.is_null() {
            bins.heads[b] = (*c).next;
            if (*c).next.is_null() {
                bins.bitmap[b >> 6] &= !(1 << (b & 63));
            }
        } else {
            (*(*c).prev).next = (*c).next;
        }
        if !(*c).next.is_null() {
            (*(*c).next).prev = (*c).prev;
        }
    }
}

/// First non-empty bin ≥ `from`, if any.
fn first_bin_from(bins: &Bins, from: usize) -> Option<usize> {
    let mut w = from >> 6;
    if w >= 2 {
        return None;
    }
    let mut bits = bins.bitmap[w] & (!0u64 << (from & 63));
    loop {
        if bits != 0 {
            return Some(w * 64 + bits.trailing_zeros() as usize);
        }
        w += 1;
        if w >= 2 {
            return None;
        }
        bits = bins.bitmap[w];
    }
}

/// Finds a free chunk of at least `cs` bytes (left in its bin), or null.
#[inline]
unsafe fn find(heap: *mut Heap, cs: usize) -> *mut Chunk {
    // SAFETY: owner-only bins.
    unsafe {
        let b = bin_of(cs);
        // Only the head of the request's own bin is looked at: every chunk visited is a cache
        // miss, and any chunk of a larger bin fits (TLSF's good fit).
        let c = (*heap).local.bins.heads[b];
        if !c.is_null() && size_of_chunk(c) >= cs {
            return c;
        }
        if let Some(nb) = first_bin_from(&(*heap).local.bins, b + 1) {
            return (*heap).local.bins.heads[nb];
        }
        ptr::null_mut()
    }
}

/// A free chunk of at least `cs` bytes lying wholly below its arena's high-water mark, looked
/// for harder than `find` does (up to 32 chunks of the request's own bin, up to 4 of each
/// larger bin), or null. Only on the growth path: it is what keeps the heap from touching new
/// memory while a fitting hole exists.
unsafe fn find_below_top(heap: *mut Heap, cs: usize) -> *mut Chunk {
    // SAFETY: owner-only bins; every chunk in them is a free chunk of our arenas.
    unsafe {
        let b = bin_of(cs);
        let mut c = (*heap).local.bins.heads[b];
        let mut k = 0;
        while !c.is_null() && k < 32 {
            if size_of_chunk(c) >= cs && !grows(c, cs) {
                return c;
            }
            c = (*c).next;
            k += 1;
        }
        let mut from = b + 1;
        while let Some(nb) = first_bin_from(&(*heap).local.bins, from) {
            let mut c = (*heap).local.bins.heads[nb];
            let mut k = 0;
            while !c.is_null() && k < 4 {
                if !grows(c, cs) {
                    return c;
                }
                c = (*c).next;
                k += 1;
            }
            from = nb + 1;
        }
        ptr::null_mut()
    }
}

/// The growth path of a medium allocation: `find` found nothing, or only a chunk that reaches
/// above its arena's high-water mark (`cand`). Before new memory is touched, everything that
/// may give back used memory is done — remote frees collected, the front cache flushed into
/// the coalescing heap — and the bins are searched harder; then the candidate is taken, or a
/// new arena. Returns a free chunk (in its bin) of at least `need` bytes, or null.
#[cold]
#[inline(never)]
unsafe fn grow(heap: *mut Heap, need: usize, cand: *mut Chunk) -> *mut Chunk {
    // SAFETY: owner of `heap` (caller).
    unsafe {
        let mut cand = cand;
        let pending = !(*heap)
            .shared
            .remote
            .load(core::sync::atomic::Ordering::Relaxed)
            .is_null()
            || (*heap)
                .shared
                .trim_request
                .load(core::sync::atomic::Ordering::Relaxed);
        // Parked chunks are flushed once they hold more than 1/32 of the touched memory: below
        // that, growing costs less than coalescing them all again and again.
        let touched = (*heap)
            .shared
            .medium_touched
            .load(core::sync::atomic::Ordering::Relaxed);
        let flush = (*heap).local.bins.tc_bytes as u64 > touched >> TC_FLUSH_SHARE;
        if pending || flush {
            // Either may coalesce with, or release the arena of, the candidate: look again.
            heap::maintenance(heap);
            if flush {
                tc_flush(heap);
            }
            cand = find(heap, need);
            if !cand.is_null() && !grows(cand, need) {
                return cand;
            }
        }
        let c = find_below_top(heap, need);
        if !c.is_null() {
            return c;
        }
        if !cand.is_null() {
            return cand;
        }
        if !add_arena(heap) {
            return ptr::null_mut();
        }
        find(heap, need)
    }
}

/// Marks the free (unlinked) chunk `c` in use with exactly `cs` bytes when the rest can form a
/// chunk, which is then freed (coalescing forward). Returns the chunk's final size.
unsafe fn carve(heap: *mut Heap, c: *mut Chunk, cs: usize) -> usize {
    // SAFETY: `c` is a free chunk removed from its bin, owner-only; its neighbours are in use.
    unsafe {
        let size = size_of_chunk(c);
        let keep_flags = (*c).head & PREV_FREE;
        if size - cs >= MIN_CHUNK {
            set_head(c, cs | keep_flags);
            let rest = at(c, cs);
            set_head(rest, (size - cs) | FREE);
            // The chunk after `c` has PREV_FREE already (`c` was free): only its prev_size
            // changes. A store that misses the cache does not stall; a read-modify-write would.
            let after = at(rest, size - cs);
            (*after).prev_size = size - cs;
            bin_insert_sized(heap, rest, size - cs);
            cs
        } else {
            set_head(c, size | keep_flags);
            (*at(c, size)).head &= !PREV_FREE;
            size
        }
    }
}

/// Allocates `n` bytes (≤ MEDIUM_MAX) aligned to `align` (16 ..= MEDIUM_MAX_ALIGN).
///
/// # Safety
/// `heap` must be a real heap owned by the calling thread.
#[inline]
pub unsafe fn alloc(heap: *mut Heap, n: usize, align: usize) -> *mut u8 {
    // SAFETY: owner of `heap` (caller); chunks are inside our arenas.
    unsafe {
        let cs = chunk_size(n);
        if cs <= TC_MAX_CHUNK
            && let Some(j) = tc_find(&(*heap).local.bins, tc_index(cs), tc_window(cs))
        {
            let c = (*heap).local.bins.tc[j];
            // An aligned request takes a parked chunk only if its payload is aligned already
            // (chunks freed by aligned allocations of the same size usually are).
            if (c as usize + HDR) & (align - 1) == 0 {
                let size = size_of_chunk(c);
                (*c).head &= !PARKED;
                (*heap).local.bins.tc[j] = (*c).next;
                tc_taken(heap, j, size);
                bump(&(*heap).shared.medium_in_use, (size - HDR) as u64);
                bump(&(*heap).shared.medium_blocks, 1);
                return c.cast::<u8>().add(HDR);
            }
        }
        alloc_bins(heap, cs, align)
    }
}

/// A medium allocation the front cache could not serve: from the bins (boundary-tag chunks).
#[inline(never)]
unsafe fn alloc_bins(heap: *mut Heap, cs: usize, align: usize) -> *mut u8 {
    // SAFETY: owner of `heap` (caller); chunks are inside our arenas.
    unsafe {
        let need = if align <= 16 {
            cs
        } else {
            cs + align + MIN_CHUNK
        };
        let mut c = find(heap, need);
        if c.is_null() || grows(c, need) {
            c = grow(heap, need, c);
            if c.is_null() {
                return ptr::null_mut();
            }
        }
        bin_remove(heap, c);
        if align > 16 {
            let p0 = c as usize + HDR;
            let mut p = (p0 + align - 1) & !(align - 1);
            if p != p0 && p - p0 < MIN_CHUNK {
                p = (p0 + MIN_CHUNK + align - 1) & !(align - 1);
            }
            let front = p - p0;
            if front > 0 {
                // Split off the front as a free chunk; its predecessor is in use.
                let size = size_of_chunk(c);
                let flags = (*c).head & PREV_FREE;
                set_head(c, front | FREE | flags);
                let d = at(c, front);
                (*d).prev_size = front;
                set_head(d, (size - front) | PREV_FREE);
                bin_insert(heap, c);
                c = d;
            }
        }
        let got = carve(heap, c, cs);
        raise_top(heap, c, got);
        drop_by(&(*heap).shared.medium_free, got as u64);
        bump(&(*heap).shared.medium_in_use, (got - HDR) as u64);
        bump(&(*heap).shared.medium_blocks, 1);
        c.cast::<u8>().add(HDR)
    }
}

unsafe fn add_arena(heap: *mut Heap) -> bool {
    heap::help_abandoned();
    // SAFETY: heaps are never freed; atomics.
    let mut a = arena::acquire(unsafe { heap::touched(heap) });
    // SAFETY: the caller owns `heap` (see `medium::release_for_retry`).
    if a.is_null() && unsafe { crate::medium::release_for_retry(heap) } {
        // SAFETY: as above.
        a = arena::acquire(unsafe { heap::touched(heap) });
    }
    if a.is_null() {
        return false;
    }
    // SAFETY: fresh arena, ours alone.
    unsafe {
        (*a).kind = Kind::Medium;
        (*a).heap = heap;
        (*a).map_size = ARENA_SIZE;
        (*a).top = AREA_START + HDR;
        let c = at(a.cast(), AREA_START);
        (*c).prev_size = 0;
        set_head(c, AREA_LEN | FREE);
        let end = at(a.cast(), AREA_END);
        (*end).prev_size = AREA_LEN;
        // The end sentinel carries no tag: a pointer just past the arena is never a block.
        (*end).head = HDR | PREV_FREE;
        bin_insert(heap, c);
        arena_list_push(&mut (*heap).local.medium_arenas, a);
        (*heap).local.medium_arena_count += 1;
        bump(&(*heap).shared.medium_arenas, 1);
        bump(&(*heap).shared.medium_free, AREA_LEN as u64);
    }
    true
}

/// Frees a medium block on its owner's thread, coalescing with free neighbours. The pointer is
/// checked first (`check_free`): this is also where a block freed twice through the remote list
/// is caught, when its owner collects it the second time.
///
/// # Safety
/// `p` must be a live medium block of arena `a` owned by `heap`, held by the caller.
#[inline]
pub unsafe fn free_local(heap: *mut Heap, a: *mut Arena, p: *mut u8) {
    // SAFETY: caller's contract; neighbours found through the boundary tags stay in the arena
    // (first chunk never has PREV_FREE, the end sentinel is never free).
    unsafe {
        check_free(p, "free(): invalid pointer");
        let c = p.sub(HDR) as *mut Chunk;
        let size = size_of_chunk(c);
        drop_by(&(*heap).shared.medium_in_use, (size - HDR) as u64);
        drop_by(&(*heap).shared.medium_blocks, 1);
        if (TC_MIN_CHUNK..=TC_MAX_CHUNK).contains(&size) && !(*heap).local.abandoned {
            let i = tc_index(size);
            let budget = TC_MIN_BUDGET.max(
                ((*heap)
                    .shared
                    .medium_touched
                    .load(core::sync::atomic::Ordering::Relaxed)
                    >> TC_SHARE) as usize,
            );
            let bins = &mut (*heap).local.bins;
            if bins.tc_count[i] < TC_COUNT && bins.tc_bytes + size <= budget {
                (*c).head |= PARKED;
                (*c).next = bins.tc[i];
                bins.tc[i] = c;
                bins.tc_count[i] += 1;
                bins.tc_map[i >> 6] |= 1u64 << (i & 63);
                bins.tc_bytes += size;
                bump(&(*heap).shared.medium_cached, size as u64);
                return;
            }
        }
        coalesce_free(heap, a, c);
    }
}

/// Frees the in-use chunk `c` into the coalescing heap (its in-use counters already dropped).
#[inline(never)]
unsafe fn coalesce_free(heap: *mut Heap, a: *mut Arena, c: *mut Chunk) {
    // SAFETY: `c` is an in-use chunk of arena `a` owned by `heap` (caller); see free_local.
    unsafe {
        let mut c = c;
        let mut size = size_of_chunk(c);
        bump(&(*heap).shared.medium_free, size as u64);
        let next = at(c, size);
        let merged_next = is_free(next);
        if merged_next {
            bin_remove(heap, next);
            size += size_of_chunk(next);
            // An absorbed header keeps no tag: a later free of its address is refused.
            (*next).head = 0;
        }
        if (*c).head & PREV_FREE != 0 {
            let prev = c.cast::<u8>().sub((*c).prev_size).cast::<Chunk>();
            bin_remove(heap, prev);
            size += size_of_chunk(prev);
            (*c).head = 0;
            c = prev;
        }
        set_head(c, size | FREE);
        let after = at(c, size);
        (*after).prev_size = size;
        if !merged_next {
            // (After a merge with `next`, the chunk after it has PREV_FREE already: a store-only
            // update, no read of a cold header.)
            (*after).head |= PREV_FREE;
        }
        if size == AREA_LEN && ((*heap).local.medium_arena_count > 1 || (*heap).local.abandoned) {
            release_arena(heap, a);
        } else {
            bin_insert_sized(heap, c, size);
        }
    }
}

unsafe fn release_arena(heap: *mut Heap, a: *mut Arena) {
    // SAFETY: the arena's only chunk is free and unlinked from the bins; owner-only lists.
    unsafe {
        arena_list_remove(&mut (*heap).local.medium_arenas, a);
        (*heap).local.medium_arena_count -= 1;
        drop_by(&(*heap).shared.medium_arenas, 1);
        drop_by(&(*heap).shared.medium_free, AREA_LEN as u64);
        drop_by(
            &(*heap).shared.medium_touched,
            ((*a).top - AREA_START - HDR) as u64,
        );
        // Pages below the high-water mark were touched (some may have been given back by a
        // trim since: an overestimate only ranks this arena higher in the cache).
        let pages = (*a).top.div_ceil(crate::small::PAGE_SIZE);
        (*a).resident_pages = if pages >= 64 {
            u64::MAX
        } else {
            (1u64 << pages) - 1
        };
        arena::release(a, heap::gives_back(heap));
    }
}

/// The OS refused an arena (out of memory or address space): flushes the heap's front cache
/// into the bins and releases its fully free medium arenas, so that their address space can
/// serve the request (a program that freed its medium blocks and now allocates small ones, under
/// `ulimit -v`). Returns whether an arena was released.
///
/// # Safety
/// The caller must own `heap` and hold no pointer to one of its free chunks or parked chunks
/// (both add_arena callers: a small page allocation, or a medium one that found no chunk).
pub(crate) unsafe fn release_for_retry(heap: *mut Heap) -> bool {
    // SAFETY: caller's contract.
    unsafe {
        let before = (*heap).local.medium_arena_count;
        tc_flush(heap);
        release_free_arenas(heap);
        (*heap).local.medium_arena_count < before
    }
}

/// Releases the heap's fully free medium arenas, including the last one (trim/abandon).
pub(crate) unsafe fn release_free_arenas(heap: *mut Heap) {
    // SAFETY: owner-only lists.
    unsafe {
        let mut a = (*heap).local.medium_arenas;
        while !a.is_null() {
            let next = (*a).next;
            let c = at(a.cast(), AREA_START);
            if is_free(c) && size_of_chunk(c) == AREA_LEN {
                bin_remove(heap, c);
                release_arena(heap, a);
            }
            a = next;
        }
    }
}

/// Gives back to the OS the interior pages of free chunks of at least 64 KiB that lie below
/// their arena's high-water mark (above it nothing was ever touched); a free chunk holding the
/// mark lowers it to where its returned pages start. Returns bytes.
pub(crate) unsafe fn decommit_free_chunks(heap: *mut Heap) -> usize {
    let mut n = 0;
    // SAFETY: owner-only; free chunks hold no live data beyond their header and links, which
    // lie below `lo`.
    unsafe {
        let from = bin_of(64 * 1024);
        for b in from..NBINS {
            let mut c = (*heap).local.bins.heads[b];
            while !c.is_null() {
                let a = arena::arena_of(c.cast::<u8>().add(HDR));
                let top = a as usize + (*a).top;
                let end = c as usize + size_of_chunk(c);
                let lo = crate::os::align_up(c as usize + core::mem::size_of::<Chunk>(), 4096);
                let hi = ((end - HDR) & !4095).min(crate::os::align_up(top, 4096));
                if hi > lo {
                    crate::os::decommit(lo as *mut u8, hi - lo);
                    n += hi - lo;
                }
                if top > lo && top <= end {
                    // Every in-use chunk of the arena lies below this free one.
                    drop_by(&(*heap).shared.medium_touched, (top - lo) as u64);
                    (*a).top = lo - a as usize;
                }
                c = (*c).next;
            }
        }
    }
    n
}

/// Usable bytes of a medium block.
///
/// # Safety
/// `p` must be a live medium block.
#[inline]
pub unsafe fn usable(p: *const u8) -> usize {
    // SAFETY: caller's contract.
    unsafe { size_of_chunk(p.sub(HDR).cast()) - HDR }
}

/// Resizes a medium block in place (shrinking, or growing into a free next chunk). False if it
/// cannot; the block is then unchanged.
///
/// # Safety
/// `p` must be a live medium block owned by `heap`, held by the caller; `n` ≤ MEDIUM_MAX.
pub unsafe fn realloc_in_place(heap: *mut Heap, p: *mut u8, n: usize) -> bool {
    // SAFETY: caller's contract; same neighbour reasoning as free_local.
    unsafe {
        let c = p.sub(HDR) as *mut Chunk;
        let size = size_of_chunk(c);
        let cs = chunk_size(n);
        if cs <= size {
            if size - cs >= 4096.max(size / 4) {
                shrink(heap, c, size, cs);
            }
            return true;
        }
        let next = at(c, size);
        if size + size_of_chunk(next) < cs {
            return false;
        }
        if !is_free(next) && !tc_unpark(heap, next) {
            return false;
        }
        let nsize = size_of_chunk(next);
        bin_remove(heap, next);
        drop_by(&(*heap).shared.medium_free, nsize as u64);
        let total = size + nsize;
        let flags = (*c).head & PREV_FREE;
        let final_size = if total - cs >= MIN_CHUNK {
            let rest = at(c, cs);
            set_head(rest, (total - cs) | FREE);
            let after = at(c, total);
            (*after).prev_size = total - cs;
            bin_insert(heap, rest);
            bump(&(*heap).shared.medium_free, (total - cs) as u64);
            cs
        } else {
            (*at(c, total)).head &= !PREV_FREE;
            total
        };
        set_head(c, final_size | flags);
        raise_top(heap, c, final_size);
        bump(&(*heap).shared.medium_in_use, (final_size - size) as u64);
        true
    }
}

unsafe fn shrink(heap: *mut Heap, c: *mut Chunk, size: usize, cs: usize) {
    // SAFETY: `c` is a live chunk of `size` bytes (owner-only); the tail becomes a free chunk.
    unsafe {
        let flags = (*c).head & PREV_FREE;
        set_head(c, cs | flags);
        let rest = at(c, cs);
        let mut rsize = size - cs;
        drop_by(&(*heap).shared.medium_in_use, rsize as u64);
        bump(&(*heap).shared.medium_free, rsize as u64);
        let next = at(c, size);
        if is_free(next) {
            bin_remove(heap, next);
            rsize += size_of_chunk(next);
        }
        set_head(rest, rsize | FREE);
        let after = at(rest, rsize);
        (*after).prev_size = rsize;
        (*after).head |= PREV_FREE;
        bin_insert(heap, rest);
    }
}

/// Walks the chunks of a medium arena: `f(chunk, size, free)`. Returns an error text if the
/// tiling is broken.
pub(crate) unsafe fn walk(
    a: *mut Arena,
    mut f: impl FnMut(*mut Chunk, usize, bool) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    // SAFETY: reads chunk headers of an arena owned by the caller; every step is bounds-checked
    // against the arena end before it is followed.
    unsafe {
        let mut off = AREA_START;
        let mut prev_free = false;
        let mut prev_size = 0;
        while off < AREA_END {
            let c = at(a.cast(), off);
            let size = size_of_chunk(c);
            if size < MIN_CHUNK || !size.is_multiple_of(16) || off + size > AREA_END {
                return Err("medium chunk size out of range");
            }
            let pf = (*c).head & PREV_FREE != 0;
            if pf != prev_free {
                return Err("PREV_FREE flag disagrees with the previous chunk");
            }
            if pf && (*c).prev_size != prev_size {
                return Err("prev_size disagrees with the previous free chunk");
            }
            let fr = is_free(c);
            if fr && prev_free {
                return Err("two adjacent free chunks (missed coalescing)");
            }
            f(c, size, fr)?;
            prev_free = fr;
            prev_size = size;
            off += size;
        }
        let end = at(a.cast(), AREA_END);
        if off != AREA_END || size_of_chunk(end) != HDR || is_free(end) {
            return Err("medium arena end sentinel broken");
        }
        if ((*end).head & PREV_FREE != 0) != prev_free
            || (prev_free && (*end).prev_size != prev_size)
        {
            return Err("end sentinel boundary tag broken");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotonic_and_in_range() {
        let mut last = 0;
        let mut s = 32;
        while s < AREA_LEN + 16 {
            let b = bin_of(s);
            assert!(b >= last && b < NBINS, "size {s} bin {b}");
            last = b;
            s += 16;
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(513), 544);
        assert_eq!(chunk_size(0), 32);
        assert_eq!(chunk_size(16), 32);
        assert_eq!(chunk_size(17), 48);
    }
}
