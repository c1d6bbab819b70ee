//! The heap walker: checks every invariant it can reach without racing a running thread.
//!
//! It covers the calling thread's heap, every heap in the pool (threads that exited or
//! detached: the pool lock makes them ours for the walk), the arena cache and the huge lists.
//! Heaps bound to other running threads are not walked (their owner may be writing them); join
//! or detach those threads first to have them checked. Pending remote frees of walked heaps are
//! collected first, so the counts are exact.

use crate::arena::{self, ARENA_HEADER, Kind, is_arena};
use crate::heap::{self, Heap};
use crate::huge;
use crate::medium::{self, HDR, NBINS, bin_of};
use crate::small::{self, CLASS_SIZES, NUM_CLASSES, PAGE_SIZE, PAGES_PER_ARENA, empty_page};
use crate::tls;
use core::sync::atomic::Ordering::Relaxed;

/// A broken heap invariant: where, and which.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("fancy heap corrupt at {addr:#x}: {what}")]
pub struct HeapError {
    /// Address of the arena, page, block or chunk at fault.
    pub addr: usize,
    /// The invariant that does not hold.
    pub what: &'static str,
}

fn err<T>(addr: usize, what: &'static str) -> Result<T, HeapError> {
    Err(HeapError { addr, what })
}

/// Walks the heaps the caller can own without racing (see the module doc) and checks them.
pub fn validate_heap() -> Result<(), HeapError> {
    let h = tls::get();
    if heap::is_real(h) {
        // SAFETY: the calling thread owns its heap.
        unsafe { validate_one(h)? };
    }
    let mut res = Ok(());
    heap::with_pool(|h| {
        if res.is_ok() {
            // SAFETY: pool heaps are owned by the pool lock holder, us.
            res = unsafe { validate_one(h) };
        }
    });
    res?;
    let mut res = Ok(());
    arena::cache_walk(|a| {
        // SAFETY: cache_walk holds the cache lock; cached arena headers are mapped and ours.
        if res.is_ok() && (!is_arena(a) || unsafe { (*a).kind } != Kind::Free) {
            res = err(a as usize, "cached arena not registered or not free");
        }
    });
    res?;
    let mut res = Ok(());
    let mut live = 0u64;
    let (walked, counted) = huge::walk(|a| {
        if res.is_err() {
            return;
        }
        // SAFETY: huge headers under the huge lock (held by walk).
        let (kind, map, off, size) = unsafe { ((*a).kind, (*a).map_size, (*a).offset, (*a).size) };
        if !is_arena(a) {
            res = err(a as usize, "huge mapping not registered");
        } else if kind != Kind::Huge
            || !(4096..=arena::ARENA_SIZE).contains(&off)
            || off + size != map
        {
            res = err(a as usize, "huge block header inconsistent");
        }
        live += 1;
    });
    res?;
    if walked != counted {
        return err(0, "huge page pool counters disagree with its list");
    }
    if live != huge::HUGE_BLOCKS.load(Relaxed) {
        return err(0, "huge block count disagrees with the huge list");
    }
    Ok(())
}

/// # Safety
/// The caller must own `h`.
unsafe fn validate_one(h: *mut Heap) -> Result<(), HeapError> {
    // SAFETY: owner (caller); every pointer followed is checked against the arena map or the
    // arena bounds first.
    unsafe {
        heap::collect_remote(h);
        validate_small(h)?;
        validate_medium(h)
    }
}

unsafe fn validate_small(h: *mut Heap) -> Result<(), HeapError> {
    // SAFETY: see validate_one.
    unsafe {
        let mut live = [0u64; NUM_CLASSES];
        let mut pages = [0u64; NUM_CLASSES];
        let mut free_pages = 0usize;
        let mut carved = 0u64;
        let mut avail = [0usize; NUM_CLASSES];
        let mut a = (*h).local.small_arenas;
        let mut n_arenas = 0;
        while !a.is_null() {
            n_arenas += 1;
            if n_arenas > 1 << 20 {
                return err(a as usize, "small arena list does not end");
            }
            if !is_arena(a) || (*a).kind != Kind::Small || (*a).small_owner != h || (*a).heap != h {
                return err(
                    a as usize,
                    "small arena header wrong (kind/owner/registration)",
                );
            }
            let mut used_pages = 0;
            for i in 0..PAGES_PER_ARENA {
                let page = (*a).pages.as_mut_ptr().add(i);
                let area = if i == 0 {
                    a.cast::<u8>().add(ARENA_HEADER)
                } else {
                    a.cast::<u8>().add(i * PAGE_SIZE)
                };
                if (*page).area != area {
                    return err(page as usize, "page area pointer wrong");
                }
                match (*page).state {
                    small::STATE_FREE => {
                        free_pages += 1;
                        continue;
                    }
                    small::STATE_AVAIL | small::STATE_CURRENT | small::STATE_FULL => {}
                    _ => return err(page as usize, "page state unknown"),
                }
                used_pages += 1;
                let c = (*page).class as usize;
                if c >= NUM_CLASSES || (*page).block_size != CLASS_SIZES[c] {
                    return err(page as usize, "page class or block size wrong");
                }
                let len = small::page_bytes(i);
                let bs = (*page).block_size as usize;
                if (*page).reserved as usize != len / bs
                    || (*page).capacity > (*page).reserved
                    || (*page).used > (*page).capacity
                {
                    return err(
                        page as usize,
                        "page counts out of range (used ≤ capacity ≤ reserved)",
                    );
                }
                // Free list: inside the carved area, on block boundaries, no repeats, right count.
                let mut seen = [0u64; 64];
                let mut n = 0u32;
                let mut b = (*page).free;
                while !b.is_null() {
                    let off = (b as usize).wrapping_sub(area as usize);
                    if off >= (*page).capacity as usize * bs || !off.is_multiple_of(bs) {
                        return err(
                            b as usize,
                            "free block outside its page's carved area or misaligned",
                        );
                    }
                    let k = off / bs;
                    if seen[k / 64] & (1 << (k % 64)) != 0 {
                        return err(b as usize, "block twice in a free list (double free)");
                    }
                    seen[k / 64] |= 1 << (k % 64);
                    n += 1;
                    b = (*b).next;
                }
                if n != (*page).capacity - (*page).used {
                    return err(page as usize, "free list length ≠ capacity − used");
                }
                match (*page).state {
                    small::STATE_CURRENT if (*h).local.current[c] != page => {
                        return err(
                            page as usize,
                            "page marked current but not its class's current",
                        );
                    }
                    small::STATE_FULL if n != 0 || (*page).capacity != (*page).reserved => {
                        return err(page as usize, "full page has free blocks");
                    }
                    small::STATE_AVAIL => avail[c] += 1,
                    _ => {}
                }
                live[c] += (*page).used as u64;
                pages[c] += 1;
                carved += (*page).capacity as u64 * bs as u64;
            }
            if used_pages != (*a).used_pages {
                return err(a as usize, "arena used_pages ≠ pages in use");
            }
            a = (*a).next;
        }
        if carved != (*h).shared.small_carved.load(Relaxed) {
            return err(
                h as usize,
                "small carved-bytes counter ≠ carved blocks of the pages",
            );
        }
        for c in 0..NUM_CLASSES {
            // Kept blocks of other heaps: on this heap's foreign list, counted by their owners.
            let fp: *mut small::Page = &raw mut (*h).local.foreign[c];
            let kept = (*fp).capacity.wrapping_sub((*fp).used);
            if kept > (*fp).reserved || (*fp).class as usize != c {
                return err(fp as usize, "foreign list count out of range");
            }
            let mut n = 0u32;
            let mut b = (*fp).free;
            while !b.is_null() {
                let ar = arena::arena_of(b.cast::<u8>());
                if !is_arena(ar) || (*ar).kind != Kind::Small || (*ar).small_owner == h {
                    return err(
                        b as usize,
                        "foreign list holds a block that is not another heap's",
                    );
                }
                n += 1;
                if n > kept {
                    return err(fp as usize, "foreign list longer than its count");
                }
                b = (*b).next;
            }
            if n != kept {
                return err(fp as usize, "foreign list shorter than its count");
            }
            let is_current = (*h).local.current[c] == fp;
            if (*fp).state
                != if is_current {
                    small::STATE_CURRENT
                } else {
                    small::STATE_FOREIGN
                }
            {
                return err(fp as usize, "foreign page in the wrong state");
            }
            live[c] = live[c].wrapping_sub(kept as u64);
            if live[c] != (*h).shared.class_live[c].load(Relaxed) {
                return err(h as usize, "class live counter ≠ blocks in use");
            }
            if pages[c] != (*h).shared.class_pages[c].load(Relaxed) {
                return err(h as usize, "class page counter ≠ pages of the class");
            }
            let cur = (*h).local.current[c];
            if cur != empty_page()
                && ((*cur).state != small::STATE_CURRENT || (*cur).class as usize != c)
            {
                return err(cur as usize, "current page of a class not in state current");
            }
            let mut n = 0;
            let mut prev = core::ptr::null_mut();
            let mut p = (*h).local.avail[c];
            while !p.is_null() {
                if (*p).state != small::STATE_AVAIL || (*p).class as usize != c || (*p).prev != prev
                {
                    return err(p as usize, "avail list holds a wrong page or broken links");
                }
                n += 1;
                if n > avail[c] {
                    return err(p as usize, "avail list longer than its pages");
                }
                prev = p;
                p = (*p).next;
            }
            if n != avail[c] {
                return err(h as usize, "avail list misses pages");
            }
        }
        let mut n = 0;
        let mut p = (*h).local.free_pages;
        while !p.is_null() {
            if (*p).state != small::STATE_FREE {
                return err(p as usize, "free page list holds a page in use");
            }
            n += 1;
            if n > free_pages {
                return err(p as usize, "free page list longer than the free pages");
            }
            p = (*p).next;
        }
        if n != free_pages {
            return err(h as usize, "free page list misses pages");
        }
        if n_arenas != (*h).shared.small_arenas.load(Relaxed) {
            return err(h as usize, "small arena counter wrong");
        }
    }
    Ok(())
}

unsafe fn validate_medium(h: *mut Heap) -> Result<(), HeapError> {
    // SAFETY: see validate_one.
    unsafe {
        let mut in_use = 0u64;
        let mut blocks = 0u64;
        let mut free_bytes = 0u64;
        let mut free_chunks = 0u64;
        let mut touched = 0u64;
        let mut a = (*h).local.medium_arenas;
        let mut n_arenas = 0;
        while !a.is_null() {
            n_arenas += 1;
            if !is_arena(a)
                || (*a).kind != Kind::Medium
                || (*a).heap != h
                || !(*a).small_owner.is_null()
            {
                return err(a as usize, "medium arena header wrong");
            }
            let top = (*a).top;
            if !(ARENA_HEADER + HDR..=arena::ARENA_SIZE).contains(&top) {
                return err(a as usize, "medium arena high-water mark out of range");
            }
            touched += (top - ARENA_HEADER - HDR) as u64;
            medium::walk(a, |c, size, free| {
                if free {
                    free_bytes += size as u64;
                    free_chunks += 1;
                } else {
                    if c as usize + size - a as usize > top {
                        return Err("in-use medium chunk above its arena's high-water mark");
                    }
                    in_use += (size - HDR) as u64;
                    blocks += 1;
                }
                Ok(())
            })
            .map_err(|what| HeapError {
                addr: a as usize,
                what,
            })?;
            a = (*a).next;
        }
        if touched != (*h).shared.medium_touched.load(Relaxed) {
            return err(
                h as usize,
                "medium touched-bytes counter ≠ the arenas' high-water marks",
            );
        }
        if n_arenas != (*h).local.medium_arena_count
            || n_arenas as u64 != (*h).shared.medium_arenas.load(Relaxed)
        {
            return err(h as usize, "medium arena count wrong");
        }
        let bins = &(*h).local.bins;
        let mut binned = 0u64;
        for b in 0..NBINS {
            let head = bins.heads[b];
            let bit = bins.bitmap[b >> 6] & (1 << (b & 63)) != 0;
            if bit == head.is_null() {
                return err(h as usize, "bin bitmap disagrees with the bin");
            }
            let mut prev = core::ptr::null_mut();
            let mut c = head;
            while !c.is_null() {
                let ar = arena::arena_of(c.cast::<u8>().add(HDR));
                if !is_arena(ar) || (*ar).kind != Kind::Medium || (*ar).heap != h {
                    return err(c as usize, "binned chunk outside the heap's medium arenas");
                }
                if (*c).head & 1 == 0 || bin_of(medium::size_of_chunk(c)) != b || (*c).prev != prev
                {
                    return err(
                        c as usize,
                        "binned chunk not free, in the wrong bin, or badly linked",
                    );
                }
                binned += 1;
                if binned > free_chunks {
                    return err(c as usize, "more binned chunks than free chunks");
                }
                prev = c;
                c = (*c).next;
            }
        }
        if binned != free_chunks {
            return err(h as usize, "free chunks missing from the bins");
        }
        let mut parked = 0u64;
        let mut parked_n = 0u64;
        for i in 0..medium::TC_SIZES {
            let mut c = bins.tc[i];
            let mut n = 0u8;
            while !c.is_null() {
                let ar = arena::arena_of(c.cast::<u8>().add(HDR));
                if !is_arena(ar)
                    || (*ar).kind != Kind::Medium
                    || (*ar).heap != h
                    || (*c).head & 1 != 0
                    || !medium::is_parked(c)
                {
                    return err(
                        c as usize,
                        "parked medium chunk not an in-use, parked chunk of the heap",
                    );
                }
                parked += medium::size_of_chunk(c) as u64;
                parked_n += 1;
                n += 1;
                if n > bins.tc_count[i] || parked_n > blocks {
                    return err(c as usize, "front cache list longer than its count");
                }
                c = (*c).next;
            }
            if n != bins.tc_count[i] {
                return err(h as usize, "front cache count wrong");
            }
            if (bins.tc_map[i >> 6] >> (i & 63)) & 1 != (n != 0) as u64 {
                return err(h as usize, "front cache bitmap disagrees with its lists");
            }
        }
        if parked != bins.tc_bytes as u64 {
            return err(h as usize, "front cache byte count wrong");
        }
        if parked != (*h).shared.medium_cached.load(Relaxed) {
            return err(h as usize, "front cache bytes counter wrong");
        }
        blocks -= parked_n;
        in_use -= parked - parked_n * HDR as u64;
        if in_use != (*h).shared.medium_in_use.load(Relaxed)
            || blocks != (*h).shared.medium_blocks.load(Relaxed)
            || free_bytes != (*h).shared.medium_free.load(Relaxed)
        {
            return err(h as usize, "medium counters disagree with the arenas");
        }
    }
    Ok(())
}
