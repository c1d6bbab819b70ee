//! Arenas: 4 MiB, 4 MiB-aligned mmap'd regions, each owned by one heap for its whole life.
//!
//! ```text
//!  arena (4 MiB, aligned)           kind = Small                    kind = Medium
//!  ┌──────────────┬──────────────────────────────────────┐   ┌──────────────┬────────────────────┐
//!  │ header 4 KiB │ 64 KiB slab pages × 64 (page 0 is    │   │ header 4 KiB │ boundary-tag chunks │
//!  │ (Arena)      │ 60 KiB), one size class per page      │   │ (Arena)      │ … │ end sentinel   │
//!  └──────────────┴──────────────────────────────────────┘   └──────────────┴────────────────────┘
//!  kind = Huge: one block, header page at the arena-aligned base, the block at base + offset.
//! ```
//!
//! Any block's arena is `(p - 1) & !(ARENA_SIZE - 1)`: blocks never start at an arena's base (its
//! header is there), and a huge block's offset is at most `ARENA_SIZE`. A global bitmap
//! (`ARENA_MAP`, one bit per 4 MiB of address space, 4 MiB of .bss of which only touched words
//! cost memory) says which arena addresses are ours, so `free` can refuse a foreign pointer
//! instead of reading unmapped memory.
//!
//! Arenas never change heap while they hold a block: a fully free arena goes back to the global
//! cache (`CACHE`), from which any heap may take it again.

use crate::heap::Heap;
use crate::os;
use crate::small::{PAGES_PER_ARENA, Page};
use crate::sync::SpinLock;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

pub const ARENA_SHIFT: usize = 22;
pub const ARENA_SIZE: usize = 1 << ARENA_SHIFT;
/// The header occupies the first OS page of every arena.
pub const ARENA_HEADER: usize = 4096;
/// `Arena::flags` bit: the pages after the header were given back to the OS (cached arenas).
pub const DECOMMITTED: u8 = 1;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Kind {
    /// In the global cache, owned by nobody.
    Free = 0,
    Small = 1,
    Medium = 2,
    Huge = 3,
}

/// The header at the base of every arena.
#[repr(C)]
pub struct Arena {
    /// The owning heap if this is a Small arena, else null. Read by every `free` (fast-path
    /// test: `small_owner == my heap`); written only while the arena holds no block.
    pub small_owner: *mut Heap,
    /// The owning heap (Small and Medium), null for Huge and Free. Same rules as `small_owner`.
    pub heap: *mut Heap,
    pub kind: Kind,
    /// `DECOMMITTED`: a cached arena whose pages were given back (acquire clears it).
    pub flags: u8,
    /// Pages of a Small arena assigned to a size class (owner only).
    pub used_pages: u32,
    /// Bytes mapped at the base: `ARENA_SIZE`, or the whole mapping of a huge block.
    pub map_size: usize,
    /// Huge: offset of the block from the base (4096 ..= ARENA_SIZE).
    pub offset: usize,
    /// Huge: usable bytes of the block. Medium: bytes of free chunks (owner only).
    pub size: usize,
    /// Links in the owner's arena list (Small/Medium), the huge list, or the cache (owner or the
    /// lock of that list only).
    pub next: *mut Arena,
    pub prev: *mut Arena,
    /// Reclaimer tick when the arena entered the cache.
    pub cached_at: u64,
    /// Medium: offset of the end of the highest chunk ever handed out (memory above it has
    /// never been touched). Allocation prefers chunks below it (owner only).
    pub top: usize,
    /// Bit `i` set: the arena's 64 KiB page `i` has been touched (carved into by a Small arena,
    /// below the high-water mark of a Medium one) and not given back to the OS since. Kept
    /// while the arena sits in the cache, so the next heap to take it uses resident memory
    /// before fresh memory (`acquire` prefers the cached arena with the most such pages).
    pub resident_pages: u64,
    /// Small: one descriptor per 64 KiB page.
    pub pages: [Page; PAGES_PER_ARENA],
}

const _: () = assert!(core::mem::size_of::<Arena>() <= ARENA_HEADER);

/// The arena of any pointer the allocator handed out.
#[inline(always)]
pub fn arena_of(p: *const u8) -> *mut Arena {
    ((p as usize).wrapping_sub(1) & !(ARENA_SIZE - 1)) as *mut Arena
}

// ---------------------------------------------------------------------------------------------
// The arena map: one bit per possible arena address in the 47-bit user address space.

const MAP_WORDS: usize = 1 << (47 - ARENA_SHIFT - 6);
static ARENA_MAP: [AtomicU64; MAP_WORDS] = [const { AtomicU64::new(0) }; MAP_WORDS];

/// True if `a` is the base of a live arena of ours (any kind).
#[inline(always)]
pub fn is_arena(a: *const Arena) -> bool {
    let i = (a as usize) >> ARENA_SHIFT;
    let w = i >> 6;
    if w >= MAP_WORDS {
        return false;
    }
    // SAFETY: `w < MAP_WORDS` was checked just above.
    let word = unsafe { ARENA_MAP.get_unchecked(w) }.load(Ordering::Relaxed);
    (word >> (i & 63)) & 1 != 0
}

fn map_set(a: *const Arena, on: bool) {
    let i = (a as usize) >> ARENA_SHIFT;
    let w = i >> 6;
    if w >= MAP_WORDS {
        crate::fatal::fatal("mmap returned an address above 2^47");
    }
    let bit = 1u64 << (i & 63);
    if on {
        ARENA_MAP[w].fetch_or(bit, Ordering::Release);
    } else {
        ARENA_MAP[w].fetch_and(!bit, Ordering::Release);
    }
}

/// Whether all heaps together (and live huge blocks) have touched `huge_pages_above_mib`.
fn process_big() -> bool {
    crate::heap::footprint() as usize >= crate::config::HUGE_PAGES_ABOVE.load(Ordering::Relaxed)
}

/// Maps a new arena region of `size` bytes such that `base + offset` is aligned to `align` (the
/// caller makes sure that leaves `base` arena-aligned), and registers it. Null on failure.
/// `huge_hint`: ask for transparent huge pages whatever the global threshold (huge blocks, arenas
/// of a big heap).
pub(crate) fn map_region(size: usize, align: usize, offset: usize, huge_hint: bool) -> *mut Arena {
    // Huge blocks are accounted by the kernel like glibc's mappings (see `os::map_hint`).
    let a = os::map_aligned(size, align, offset, size != ARENA_SIZE) as *mut Arena;
    if !a.is_null() && !(a as usize).is_multiple_of(ARENA_SIZE) {
        crate::fatal::fatal("map_region: base not arena-aligned");
    }
    if !a.is_null() {
        if huge_hint
            || crate::config::HUGE_PAGES.load(Ordering::Relaxed)
            || (size != ARENA_SIZE && process_big())
        {
            // SAFETY: the range is the mapping we just made.
            unsafe { os::hint_huge_pages(a.cast(), size) };
        }
        map_set(a, true);
    }
    a
}

/// Unregisters and unmaps an arena region.
///
/// # Safety
/// `a` must be a region from `map_region` of `size` bytes with no live block.
pub(crate) unsafe fn unmap_region(a: *mut Arena, size: usize) {
    map_set(a, false);
    // SAFETY: by the caller's contract the region is ours and dead.
    unsafe { os::unmap(a.cast(), size) };
}

/// Registers a region that becomes an arena again (a pooled huge mapping reused in place).
pub(crate) fn register(a: *mut Arena) {
    map_set(a, true);
}

/// Unregisters a region that stops being an arena (a freed huge mapping entering the pool).
pub(crate) fn unregister(a: *mut Arena) {
    map_set(a, false);
}

// ---------------------------------------------------------------------------------------------
// The global cache of fully free arenas.

struct Cache {
    head: *mut Arena,
    count: usize,
}
// SAFETY: the raw pointers are only followed under the lock.
unsafe impl Send for Cache {}

static CACHE: SpinLock<Cache> = SpinLock::new(Cache {
    head: ptr::null_mut(),
    count: 0,
});
pub(crate) static CACHED_ARENAS: AtomicU64 = AtomicU64::new(0);
/// Resident pages (`Arena::resident_pages`) of the arenas in the cache, counted under its lock.
static CACHED_RESIDENT: AtomicU64 = AtomicU64::new(0);

/// Whether a cached arena holds resident pages: a heap about to carve a page it never touched
/// takes such an arena first.
#[inline]
pub(crate) fn cache_has_resident() -> bool {
    CACHED_RESIDENT.load(Ordering::Relaxed) != 0
}
pub(crate) static LIVE_ARENAS: AtomicU64 = AtomicU64::new(0);

/// Gives a heap an arena: from the cache if one is there, else freshly mapped. The header is
/// zeroed; the caller sets it up. Null if the OS refuses memory. `heap_bytes`: the memory the
/// heap has touched so far; past `huge_pages_heap_above_mib` its arenas get transparent huge
/// pages (a cached arena too: the hint covers the pages it faults in from now on).
pub(crate) fn acquire(heap_bytes: u64) -> *mut Arena {
    // A heap gets huge pages once it alone has touched `huge_pages_heap_above_mib`, or once the
    // process has touched `huge_pages_above_mib` and this heap at least a whole arena. Without
    // that last condition, a program of 1000 threads with a few KiB each (64 MiB together)
    // gave every new thread's arenas 2 MiB pages where it touched one 4 KiB page: 490 MB of RSS
    // where glibc takes 38 MB (`cargo bench -p fancy-preload --bench live_threads`).
    let heap_big = heap_bytes as usize
        >= crate::config::HUGE_PAGES_HEAP_ABOVE.load(Ordering::Relaxed)
        || (heap_bytes as usize >= ARENA_SIZE && process_big());
    let a = {
        let mut c = CACHE.lock();
        // The cached arena with the most resident pages: a program that frees everything and
        // allocates again (phases, rounds) then reuses the memory it already faulted in
        // instead of spreading over cached arenas it touched only in part. The cache is short
        // (16 arenas by default).
        let mut best: *mut *mut Arena = &mut c.head;
        let mut link: *mut *mut Arena = &mut c.head;
        // SAFETY: the cache list and its arenas' headers are ours under the lock.
        unsafe {
            while !(*link).is_null() {
                if (**link).resident_pages.count_ones() > (**best).resident_pages.count_ones() {
                    best = link;
                }
                link = &mut (**link).next;
            }
            let a = *best;
            if !a.is_null() {
                *best = (*a).next;
                c.count -= 1;
                CACHED_RESIDENT
                    .fetch_sub((*a).resident_pages.count_ones() as u64, Ordering::Relaxed);
            }
            a
        }
    };
    let a = if a.is_null() {
        crate::reclaim::maybe_start();
        let mut a = map_region(ARENA_SIZE, ARENA_SIZE, 0, heap_big);
        if a.is_null() && release_for_retry() {
            a = map_region(ARENA_SIZE, ARENA_SIZE, 0, heap_big);
        }
        a
    } else {
        CACHED_ARENAS.fetch_sub(1, Ordering::Relaxed);
        if heap_big {
            // SAFETY: the arena's whole range is our mapping, taken out of the cache by us.
            unsafe { os::hint_huge_pages(a.cast(), ARENA_SIZE) };
        }
        a
    };
    if !a.is_null() {
        // SAFETY: the arena is ours alone now; the header is plain data inside our mapping.
        unsafe {
            let resident = (*a).resident_pages;
            ptr::write_bytes(a.cast::<u8>(), 0, core::mem::size_of::<Arena>());
            (*a).resident_pages = resident;
        }
        LIVE_ARENAS.fetch_add(1, Ordering::Relaxed);
    }
    a
}

/// Takes back a fully free arena: cached for reuse, or unmapped when the cache is full.
/// `decommit`: give its pages back to the OS now, keeping the address range for reuse (an
/// arena freed by a heap whose thread has exited).
///
/// # Safety
/// `a` must be an arena from `acquire` that holds no live block and is in no list.
pub(crate) unsafe fn release(a: *mut Arena, decommit: bool) {
    LIVE_ARENAS.fetch_sub(1, Ordering::Relaxed);
    if decommit {
        // SAFETY: the arena holds no live block; its header page stays (written just below).
        unsafe {
            os::decommit(a.cast::<u8>().add(ARENA_HEADER), ARENA_SIZE - ARENA_HEADER);
            (*a).flags |= DECOMMITTED;
            (*a).resident_pages = 0;
        }
    }
    // SAFETY: the arena is dead and ours (caller's contract).
    unsafe {
        (*a).kind = Kind::Free;
        (*a).small_owner = ptr::null_mut();
        (*a).heap = ptr::null_mut();
        (*a).cached_at = crate::reclaim::tick();
    }
    let limit = if crate::config::RECLAIM.load(Ordering::Relaxed) {
        usize::MAX // the reclaimer ages them out
    } else {
        crate::config::ARENA_CACHE.load(Ordering::Relaxed)
    };
    {
        let mut c = CACHE.lock();
        if c.count < limit {
            // SAFETY: header writes under the cache lock; nobody else knows the arena.
            unsafe { (*a).next = c.head };
            c.head = a;
            c.count += 1;
            // SAFETY: as above.
            let resident = unsafe { (*a).resident_pages.count_ones() };
            CACHED_RESIDENT.fetch_add(resident as u64, Ordering::Relaxed);
            CACHED_ARENAS.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    // SAFETY: dead arena of ARENA_SIZE bytes.
    unsafe { unmap_region(a, ARENA_SIZE) };
}

/// The OS refused a mapping (out of memory, or out of address space under `ulimit -v`): gives
/// back everything mapped and unused — cached arenas, pooled huge pages, the free memory of
/// exited threads' heaps — so that a retry can succeed where glibc, which keeps no such caches,
/// would. Returns whether anything was released.
pub(crate) fn release_for_retry() -> bool {
    crate::heap::clean_abandoned(true);
    purge_cache(u64::MAX) + crate::huge::purge_cache(u64::MAX) > 0
}

/// Unmaps cached arenas that entered the cache before tick `before` (reclaimer), or all.
pub(crate) fn purge_cache(before: u64) -> usize {
    let mut victims: *mut Arena = ptr::null_mut();
    let mut n = 0;
    {
        let mut c = CACHE.lock();
        let mut link: *mut *mut Arena = &mut c.head;
        // SAFETY: we walk and unlink the cache list under its lock.
        unsafe {
            while !(*link).is_null() {
                let a = *link;
                if (*a).cached_at < before {
                    CACHED_RESIDENT
                        .fetch_sub((*a).resident_pages.count_ones() as u64, Ordering::Relaxed);
                    *link = (*a).next;
                    (*a).next = victims;
                    victims = a;
                    n += 1;
                } else {
                    link = &mut (*a).next;
                }
            }
        }
        c.count -= n;
    }
    CACHED_ARENAS.fetch_sub(n as u64, Ordering::Relaxed);
    while !victims.is_null() {
        // SAFETY: unlinked from the cache above; no one else can reach these arenas.
        unsafe {
            let next = (*victims).next;
            unmap_region(victims, ARENA_SIZE);
            victims = next;
        }
    }
    n
}

pub(crate) fn cache_lock() -> &'static SpinLock<impl Sized> {
    &CACHE
}

/// Cached arena count (for validation).
pub(crate) fn cache_walk(mut f: impl FnMut(*mut Arena)) {
    let c = CACHE.lock();
    let mut a = c.head;
    while !a.is_null() {
        f(a);
        // SAFETY: cache list under its lock.
        a = unsafe { (*a).next };
    }
}
