//! Small blocks (≤ 512 B): 16 size classes, served from 64 KiB slab pages.
//!
//! Each heap keeps, per class, a *current* page (the thread-local cache: allocation is a pop from
//! its free list) and a list of other pages with free blocks (`avail`). A page's free list is
//! carved lazily, 4 KiB at a time, so memory is touched only when it is handed out; when the
//! current page runs dry, pages with freed blocks are used before any new memory is carved, so a
//! class holds about its peak of live blocks rather than a full page each time. Pages are owned
//! by one heap; a block freed by another thread is kept by that thread for its own next
//! allocations of the class (its *foreign* list, bounded), or goes to the owner's remote list
//! (`heap.rs`) and is freed here by the owner later. A page whose last block is freed returns to
//! the heap's free pages, and an arena whose pages are all free returns to the arena cache.
//!
//! Size → class is one table lookup on `(size + 15) / 16`.

use crate::arena::{self, ARENA_HEADER, Arena, Kind};
use crate::heap::{self, Heap};
use crate::sync::{bump, drop_by};
use core::ptr;

/// Number of small size classes.
pub const NUM_CLASSES: usize = 16;
/// Largest small request, bytes.
pub const SMALL_MAX: usize = 512;
pub const PAGE_SHIFT: usize = 16;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
pub const PAGES_PER_ARENA: usize = arena::ARENA_SIZE / PAGE_SIZE;

/// The block sizes of the 16 classes, in bytes.
pub const CLASS_SIZES: [u32; NUM_CLASSES] = [
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512,
];

/// Class of a request of `s` bytes, indexed by `(s + 15) / 16` (0 ..= 32).
static CLASS_OF: [u8; 33] = {
    let mut t = [0u8; 33];
    let mut i = 0;
    while i < 33 {
        let size = if i == 0 { 1 } else { i * 16 };
        let mut c = 0;
        while (CLASS_SIZES[c] as usize) < size {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
};

/// The class of a request of `size` ≤ 512 bytes.
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    debug_assert!(size <= SMALL_MAX);
    // SAFETY: size ≤ 512 ⇒ (size + 15) >> 4 ≤ 32 < 33.
    unsafe { *CLASS_OF.get_unchecked((size + 15) >> 4) as usize }
}

/// Smallest class whose block size is ≥ `size` and a multiple of `align` (≤ 512): its blocks are
/// then `align`-aligned, since pages start 4 KiB-aligned.
pub fn class_for_aligned(size: usize, align: usize) -> Option<usize> {
    let mut c = class_of(size.max(align).min(SMALL_MAX));
    while c < NUM_CLASSES {
        if (CLASS_SIZES[c] as usize).is_multiple_of(align) && CLASS_SIZES[c] as usize >= size {
            return Some(c);
        }
        c += 1;
    }
    None
}

/// A free block: its first word links to the next; its second holds `free_key(block)` while the
/// block sits on any free list (a page's, a foreign list, a remote list) and is cleared when
/// the block is handed out, so a second free of a block finds its key and is refused.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
    pub key: usize,
}

/// The secret of the free-block keys (and of medium chunk tags): random per process, set before
/// the first heap carves a block (`init_key`).
static KEY: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(0x9e37_79b9_7f4a_7c15);

/// Sets the key secret from `getrandom` (no allocation). Called by every new heap before it is
/// used; the value is drawn once, so concurrent callers agree.
pub(crate) fn init_key() {
    use core::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.load(Ordering::Acquire) {
        return;
    }
    static LOCK: crate::sync::SpinLock<()> = crate::sync::SpinLock::new(());
    let _g = LOCK.lock();
    if DONE.load(Ordering::Relaxed) {
        return;
    }
    let mut k: usize = 0;
    // SAFETY: getrandom writes at most size_of::<usize>() bytes into `k`.
    let n = unsafe {
        libc::getrandom(
            (&raw mut k).cast(),
            core::mem::size_of::<usize>(),
            libc::GRND_NONBLOCK,
        )
    };
    if n != core::mem::size_of::<usize>() as isize {
        // No entropy yet (early boot): the stack address and the clock still vary per process.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        k = (&raw const ts as usize).rotate_left(17) ^ (ts.tv_nsec as usize) ^ (ts.tv_sec as usize);
    }
    KEY.store(k | 1, Ordering::Relaxed);
    DONE.store(true, Ordering::Release);
}

/// The process's key secret.
#[inline(always)]
pub(crate) fn key_secret() -> usize {
    KEY.load(core::sync::atomic::Ordering::Relaxed)
}

/// The key a free block at `b` carries.
#[inline(always)]
pub(crate) fn free_key(b: *const u8) -> usize {
    key_secret() ^ b as usize
}

/// Marks a block as free (it is about to enter a free list).
///
/// # Safety
/// `b` must be a dead small or medium block of ours (at least 16 bytes).
#[inline(always)]
pub(crate) unsafe fn set_free_key(b: *mut u8) {
    // SAFETY: caller's contract: the block's second word is ours to write.
    unsafe { (*(b as *mut Block)).key = free_key(b) };
}

/// Whether a block carries the free key: it sits on a free list (or the program wrote that
/// exact value, random per process and per block, into the second word of a live block).
///
/// # Safety
/// `b` must point to at least 16 readable bytes.
#[inline(always)]
pub(crate) unsafe fn has_free_key(b: *const u8) -> bool {
    // SAFETY: caller's contract.
    unsafe { (*(b as *const Block)).key == free_key(b) }
}

// `Page::start_4k` holds page 0's first-block offset in 4 KiB units, in a byte.
const _: () = assert!(ARENA_HEADER.is_multiple_of(4096) && ARENA_HEADER >> 12 < 256);

/// `ceil(2^32 / size)` for each class. For every offset below 64 KiB, one multiply
/// `off * MAGIC[c]` gives `off / size` in its high 32 bits and, in its low 32 bits, a value below
/// `MAGIC[c]` exactly when `size` divides `off`: a free checks its pointer without a division
/// (`magic_is_exact` tries every offset).
static MAGIC: [u32; NUM_CLASSES] = {
    let mut t = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = (1u64 << 32).div_ceil(CLASS_SIZES[c] as u64) as u32;
        c += 1;
    }
    t
};

pub const STATE_FREE: u8 = 0;
/// In the heap's `avail` list of its class.
pub const STATE_AVAIL: u8 = 1;
/// The heap's current page of its class.
pub const STATE_CURRENT: u8 = 2;
/// No free block and nothing left to carve; in no list.
pub const STATE_FULL: u8 = 3;
/// The heap's pseudo-page of foreign blocks of a class (`HeapLocal::foreign`), not current.
pub const STATE_FOREIGN: u8 = 4;
/// Bytes of foreign blocks a heap keeps per class before it sends further ones to their owners.
pub const FOREIGN_BYTES: u32 = 8 * 1024;

/// A page descriptor, in the arena header. Owner-only: other threads never touch it.
#[repr(C)]
pub struct Page {
    /// Local free list.
    pub free: *mut Block,
    /// Blocks handed out and not yet freed by the owner (blocks waiting in the remote list count).
    pub used: u32,
    /// Blocks carved so far (free list + used).
    pub capacity: u32,
    /// Blocks the page can hold.
    pub reserved: u32,
    pub block_size: u32,
    pub class: u8,
    pub state: u8,
    /// Free page whose memory was given back (MADV_DONTNEED) since it was last used.
    pub decommitted: bool,
    /// Where the page's first block lies, in 4 KiB units from the page's start (page 0 of an
    /// arena starts after the arena's header): a free finds its offset with a mask and one
    /// subtraction, no test of the page index.
    pub start_4k: u8,
    /// `MAGIC[class]`, here so that a free checks its pointer without a second dependent load.
    pub magic: u32,
    /// Links in `avail` (class) or the heap's free pages.
    pub next: *mut Page,
    pub prev: *mut Page,
    /// First block.
    pub area: *mut u8,
}

impl Page {
    pub const EMPTY: Page = Page {
        free: ptr::null_mut(),
        used: 0,
        capacity: 0,
        reserved: 0,
        block_size: 0,
        class: 0,
        state: STATE_FULL,
        decommitted: false,
        start_4k: 0,
        magic: 0,
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
        area: ptr::null_mut(),
    };
}

/// The page every class of an unbound heap points at: never has a free block, never written.
pub struct SyncPage(pub core::cell::UnsafeCell<Page>);
// SAFETY: EMPTY_PAGE is never written (its free list is empty, so every path that would write
// a page leaves through the slow path, which checks for it first).
unsafe impl Sync for SyncPage {}
pub static EMPTY_PAGE: SyncPage = SyncPage(core::cell::UnsafeCell::new(Page::EMPTY));

#[inline(always)]
pub fn empty_page() -> *mut Page {
    EMPTY_PAGE.0.get()
}

/// The fast path: pop from the current page of the class. Null means "take the slow path".
///
/// # Safety
/// `heap` must be the calling thread's heap or one of the sentinels.
#[inline(always)]
pub unsafe fn alloc_fast(heap: *mut Heap, c: usize) -> *mut u8 {
    // SAFETY: heap is the thread's own (or a sentinel whose pages have no free block); c < 16.
    unsafe {
        let page = *(*heap).local.current.get_unchecked(c);
        let b = (*page).free;
        if !b.is_null() {
            (*page).free = (*b).next;
            (*b).key = 0;
            (*page).used += 1;
            bump((*heap).shared.class_live.get_unchecked(c), 1);
        }
        b.cast()
    }
}

/// Slow path of a small allocation: collect remote frees; then, in this order, take a page of
/// the class that has freed blocks (memory already touched), carve more of the current page,
/// take a page with room to carve, or a fresh page. Free blocks are reused before new memory is
/// touched: a class's pages then hold about its peak of live blocks, not one page-full each.
///
/// # Safety
/// `heap` must be a real heap owned by the calling thread.
#[cold]
#[inline(never)]
pub unsafe fn alloc_slow(heap: *mut Heap, c: usize) -> *mut u8 {
    // SAFETY: exclusive owner of `heap` (caller), pages and arenas of the heap are ours.
    unsafe {
        heap::maintenance(heap);
        let fp: *mut Page = &raw mut (*heap).local.foreign[c];
        let mut cur = (*heap).local.current[c];
        if cur == fp && !(*fp).free.is_null() {
            return alloc_fast(heap, c);
        }
        if cur == fp {
            // The foreign blocks are used up: back to the heap's own pages.
            (*fp).capacity = 0;
            (*fp).used = 0;
            (*fp).state = STATE_FOREIGN;
            (*heap).local.current[c] = empty_page();
            cur = empty_page();
        }
        let mut page = cur;
        if cur == empty_page() || (*cur).free.is_null() {
            // Blocks of other heaps this thread freed come first: nobody else would reuse them
            // soon; then freed blocks of the heap's own pages, then new memory.
            page = if (*fp).free.is_null() {
                avail_take_free(heap, c)
            } else {
                fp
            };
            if page.is_null() {
                if cur != empty_page() && (*cur).capacity < (*cur).reserved {
                    page = cur;
                } else {
                    page = avail_pop(heap, c);
                    if page.is_null() {
                        page = new_page(heap, c);
                    }
                }
            }
            if cur != empty_page() && page != cur {
                // Leaving the current page: it keeps its room to carve in `avail`, or is full.
                if (*cur).capacity < (*cur).reserved {
                    (*cur).state = STATE_AVAIL;
                    avail_push_back(heap, c, cur);
                } else {
                    (*cur).state = STATE_FULL;
                }
            }
        }
        if page.is_null() {
            (*heap).local.current[c] = empty_page();
            return ptr::null_mut();
        }
        (*page).state = STATE_CURRENT;
        (*heap).local.current[c] = page;
        if (*page).free.is_null() {
            extend(heap, page);
        }
        alloc_fast(heap, c)
    }
}

/// Frees a small block of a page another heap owns (a cross-thread free). The block is kept in
/// this heap's foreign list of its class (up to `FOREIGN_BYTES`) and handed out by this
/// thread's next allocations of the class, as jemalloc's tcache keeps any block it is given;
/// beyond that it goes to its owner's remote list. Without this, memory freed for an owner that
/// is idle (a main thread waiting, a producer between bursts) waits there until the owner's
/// next slow path, while the freeing thread maps new memory. The owner still counts the block
/// as in use; the list is sent back to the owners by `flush_foreign` (trim, thread exit).
///
/// # Safety
/// `heap` must be a real heap owned by the calling thread; `p` a live small block of arena
/// `a`, which another heap owns.
#[inline(never)]
pub unsafe fn free_foreign(heap: *mut Heap, a: *mut Arena, p: *mut u8) {
    // SAFETY: a page's class is written only while the page holds no block, and `p` is live,
    // so reading it races with nothing (the owner writes other fields of the descriptor, never
    // this one, meanwhile); the foreign page is this thread's own.
    unsafe {
        let idx = (p as usize - a as usize) >> PAGE_SHIFT;
        let c = (*a).pages[idx].class as usize;
        let fp: *mut Page = &raw mut (*heap).local.foreign[c];
        if (*fp).capacity - (*fp).used < (*fp).reserved {
            let b = p as *mut Block;
            (*b).next = (*fp).free;
            (*b).key = free_key(p);
            (*fp).free = b;
            (*fp).capacity += 1;
            // The owner still counts the block; this heap's count compensates (it may wrap
            // below zero; sums over heaps are exact).
            drop_by((*heap).shared.class_live.get_unchecked(c), 1);
        } else {
            heap::remote_free((*a).small_owner, heap, p);
        }
    }
}

/// Sends every kept foreign block back to its owner's remote list, one CAS per run of blocks
/// of the same owner.
///
/// # Safety
/// The caller must own `heap`.
pub(crate) unsafe fn flush_foreign(heap: *mut Heap) {
    // SAFETY: owner-only foreign pages; the blocks are live blocks of other heaps (their arena
    // headers' owner fields are stable while they hold a block).
    unsafe {
        for c in 0..NUM_CLASSES {
            let fp: *mut Page = &raw mut (*heap).local.foreign[c];
            if (*heap).local.current[c] == fp {
                (*heap).local.current[c] = empty_page();
            }
            let n = (*fp).capacity - (*fp).used;
            let mut b = (*fp).free;
            (*fp).free = ptr::null_mut();
            (*fp).capacity = 0;
            (*fp).used = 0;
            (*fp).state = STATE_FOREIGN;
            if n == 0 {
                continue;
            }
            bump((*heap).shared.class_live.get_unchecked(c), n as u64);
            while !b.is_null() {
                let owner = (*arena::arena_of(b.cast::<u8>())).small_owner;
                let first = b;
                let mut last = b;
                let mut k = 1u64;
                while !(*last).next.is_null()
                    && (*arena::arena_of((*last).next.cast::<u8>())).small_owner == owner
                {
                    last = (*last).next;
                    k += 1;
                }
                b = (*last).next;
                heap::remote_free_chain(owner, heap, first, last, k);
            }
        }
    }
}

/// Sets up the foreign pseudo-pages of a new heap.
pub(crate) fn init_foreign(pages: &mut [Page; NUM_CLASSES]) {
    for (c, p) in pages.iter_mut().enumerate() {
        p.class = c as u8;
        p.block_size = CLASS_SIZES[c];
        p.reserved = FOREIGN_BYTES / CLASS_SIZES[c];
        p.state = STATE_FOREIGN;
    }
}

/// Makes a current page with blocks in use an ordinary page again: in `avail` if it has free
/// blocks or room, else full.
///
/// # Safety
/// The caller owns `heap`; `page` was its current page (no longer named by `current`).
pub(crate) unsafe fn retire_current(heap: *mut Heap, page: *mut Page) {
    // SAFETY: owner-only page and list.
    unsafe {
        if (*page).free.is_null() && (*page).capacity == (*page).reserved {
            (*page).state = STATE_FULL;
        } else {
            (*page).state = STATE_AVAIL;
            list_push(&mut (*heap).local.avail[(*page).class as usize], page);
        }
    }
}

/// Pages of `avail` looked at for freed blocks before new memory is carved.
const AVAIL_SCAN: usize = 8;

/// Unlinks and returns a page of class `c` that has freed blocks (among the first
/// `AVAIL_SCAN` of `avail`), or null.
unsafe fn avail_take_free(heap: *mut Heap, c: usize) -> *mut Page {
    // SAFETY: owner-only list.
    unsafe {
        let mut p = (*heap).local.avail[c];
        let mut k = 0;
        while !p.is_null() && k < AVAIL_SCAN {
            if !(*p).free.is_null() {
                list_remove(&mut (*heap).local.avail[c], p);
                return p;
            }
            p = (*p).next;
            k += 1;
        }
        ptr::null_mut()
    }
}

/// Appends `p` (in no list) after the first `AVAIL_SCAN` pages of `avail[c]` at most, so pages
/// with freed blocks stay in front of it.
unsafe fn avail_push_back(heap: *mut Heap, c: usize, p: *mut Page) {
    // SAFETY: owner-only list; `p` is in no list.
    unsafe {
        let head = (*heap).local.avail[c];
        if head.is_null() {
            list_push(&mut (*heap).local.avail[c], p);
            return;
        }
        let mut q = head;
        let mut k = 1;
        while !(*q).next.is_null() && k < AVAIL_SCAN {
            q = (*q).next;
            k += 1;
        }
        (*p).prev = q;
        (*p).next = (*q).next;
        if !(*q).next.is_null() {
            (*(*q).next).prev = p;
        }
        (*q).next = p;
    }
}

/// Carves up to 4 KiB (at least 4 blocks) more of the page into its free list.
unsafe fn extend(heap: *mut Heap, page: *mut Page) {
    // SAFETY: owner-only page; the carved range lies inside the page.
    unsafe {
        let bs = (*page).block_size as usize;
        let left = ((*page).reserved - (*page).capacity) as usize;
        let n = (4096 / bs).max(4).min(left);
        let start = (*page).area.add((*page).capacity as usize * bs);
        let mut p = start;
        for _ in 1..n {
            let next = p.add(bs);
            (*(p as *mut Block)).next = next.cast();
            set_free_key(p);
            p = next;
        }
        (*(p as *mut Block)).next = (*page).free;
        set_free_key(p);
        (*page).free = start.cast();
        (*page).capacity += n as u32;
        bump(&(*heap).shared.small_carved, (n * bs) as u64);
    }
}

unsafe fn avail_pop(heap: *mut Heap, c: usize) -> *mut Page {
    // SAFETY: owner-only list.
    unsafe {
        let p = (*heap).local.avail[c];
        if !p.is_null() {
            list_remove(&mut (*heap).local.avail[c], p);
        }
        p
    }
}

/// Unlinks `p` from the doubly linked page list whose head is `*head`.
pub(crate) unsafe fn list_remove(head: *mut *mut Page, p: *mut Page) {
    // SAFETY: `p` is in the list at `head` (caller), all owner-only.
    unsafe {
        if (*p).prev.is_null() {
            *head = (*p).next;
        } else {
            (*(*p).prev).next = (*p).next;
        }
        if !(*p).next.is_null() {
            (*(*p).next).prev = (*p).prev;
        }
        (*p).next = ptr::null_mut();
        (*p).prev = ptr::null_mut();
    }
}

pub(crate) unsafe fn list_push(head: *mut *mut Page, p: *mut Page) {
    // SAFETY: `p` is in no list (caller), all owner-only.
    unsafe {
        (*p).prev = ptr::null_mut();
        (*p).next = *head;
        if !(*head).is_null() {
            (**head).prev = p;
        }
        *head = p;
    }
}

/// A free page of the heap set up for class `c`, or null when the OS gives no memory.
unsafe fn new_page(heap: *mut Heap, c: usize) -> *mut Page {
    // SAFETY: owner-only heap lists; a fresh arena is ours alone.
    unsafe {
        let front = (*heap).local.free_pages;
        if front.is_null() {
            if !add_arena(heap) {
                return ptr::null_mut();
            }
        } else if arena::cache_has_resident() && !page_resident(front) {
            // The heap's next free page was never touched (the rest of an arena it used only in
            // part) while a cached arena holds pages already faulted in: take that arena, whose
            // resident pages go to the front. A program that frees everything and allocates it
            // again then stays on the memory it had, instead of faulting in the rest of a
            // partly used arena (the `small` workload's second round touched 3 MiB more).
            add_arena(heap);
        }
        let page = (*heap).local.free_pages;
        list_remove(&mut (*heap).local.free_pages, page);
        let (a, idx) = page_slot(page);
        (*a).used_pages += 1;
        let bs = CLASS_SIZES[c];
        (*a).resident_pages |= 1 << idx;
        let len = page_bytes(idx);
        (*page).class = c as u8;
        (*page).block_size = bs;
        (*page).magic = MAGIC[c];
        (*page).start_4k = ((PAGE_SIZE - len) >> 12) as u8;
        (*page).reserved = (len / bs as usize) as u32;
        (*page).capacity = 0;
        (*page).used = 0;
        (*page).free = ptr::null_mut();
        (*page).state = STATE_AVAIL;
        (*page).decommitted = false;
        bump(&(*heap).shared.class_pages[c], 1);
        page
    }
}

/// The arena of a page descriptor and the page's index in it.
///
/// # Safety
/// `page` must be a page descriptor in a small arena's header.
unsafe fn page_slot(page: *mut Page) -> (*mut Arena, usize) {
    // SAFETY: caller; `area` points into the page's own memory, inside its arena.
    unsafe {
        let a = arena::arena_of((*page).area.add(1));
        (a, page.offset_from((*a).pages.as_ptr()) as usize)
    }
}

/// Bytes of blocks page `idx` of an arena holds: the first page shares its 64 KiB with the
/// arena header.
pub(crate) fn page_bytes(idx: usize) -> usize {
    if idx == 0 {
        PAGE_SIZE - ARENA_HEADER
    } else {
        PAGE_SIZE
    }
}

/// Whether a free page's memory is resident from an earlier use.
///
/// # Safety
/// `page` must be a page descriptor of one of the heap's small arenas.
unsafe fn page_resident(page: *mut Page) -> bool {
    // SAFETY: caller; the arena header holds the descriptor.
    unsafe {
        let (a, idx) = page_slot(page);
        (*a).resident_pages >> idx & 1 != 0
    }
}

/// Takes an arena for small pages and puts its 64 pages on the heap's free page list.
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
    // SAFETY: the arena is ours alone (fresh from acquire, header zeroed).
    unsafe {
        (*a).kind = Kind::Small;
        (*a).heap = heap;
        (*a).map_size = arena::ARENA_SIZE;
        // Pages still resident from the arena's last use go to the front of the free page list
        // (pushed last), in address order, so they are handed out before fresh ones.
        let resident = (*a).resident_pages;
        for pass in [false, true] {
            for i in (0..PAGES_PER_ARENA).rev() {
                if ((resident >> i) & 1 != 0) != pass {
                    continue;
                }
                let page = (*a).pages.as_mut_ptr().add(i);
                ptr::write(page, Page::EMPTY);
                (*page).state = STATE_FREE;
                (*page).area = if i == 0 {
                    a.cast::<u8>().add(ARENA_HEADER)
                } else {
                    a.cast::<u8>().add(i * PAGE_SIZE)
                };
                list_push(&mut (*heap).local.free_pages, page);
            }
        }
        // Publish the owner last: from here on frees of this heap's blocks may test it.
        (*a).small_owner = heap;
        arena_list_push(&mut (*heap).local.small_arenas, a);
        bump(&(*heap).shared.small_arenas, 1);
    }
    true
}

pub(crate) unsafe fn arena_list_push(head: *mut *mut Arena, a: *mut Arena) {
    // SAFETY: owner-only list; `a` in no list.
    unsafe {
        (*a).prev = ptr::null_mut();
        (*a).next = *head;
        if !(*head).is_null() {
            (**head).prev = a;
        }
        *head = a;
    }
}

pub(crate) unsafe fn arena_list_remove(head: *mut *mut Arena, a: *mut Arena) {
    // SAFETY: `a` is in the list at `head`.
    unsafe {
        if (*a).prev.is_null() {
            *head = (*a).next;
        } else {
            (*(*a).prev).next = (*a).next;
        }
        if !(*a).next.is_null() {
            (*(*a).next).prev = (*a).prev;
        }
        (*a).next = ptr::null_mut();
        (*a).prev = ptr::null_mut();
    }
}

/// Whether `p` is the start of one of the first `bound` blocks of `page`: one multiply, two
/// compares.
///
/// # Safety
/// `page` must be the descriptor of the arena page holding `p`.
#[inline(always)]
unsafe fn on_block_below(page: *const Page, p: *const u8, bound: u32) -> bool {
    // SAFETY: caller's contract.
    unsafe {
        // The offset from the page's first block, in 32 bits: a pointer into the arena's header
        // (before page 0's first block) wraps to at least 2^32 - ARENA_HEADER, whose quotient
        // below is far above any bound, so it needs no test of its own.
        let off = (p as u32 & (PAGE_SIZE as u32 - 1)).wrapping_sub(((*page).start_4k as u32) << 12);
        // One multiply gives both the block index (high half) and whether `off` is a multiple
        // of the block size (low half below the reciprocal: Lemire, Kaser & Kurz, "Faster
        // remainder by direct computation", exact for offsets below 2^16 and sizes ≤ 512;
        // `magic_is_exact` and `wrapped_offsets_are_refused` check it). A page never used has
        // a reciprocal of 0: nothing is on a block.
        let magic = (*page).magic;
        let prod = off as u64 * magic as u64;
        (prod as u32) < magic && (prod >> 32) < bound as u64
    }
}

/// Whether `p` is the start of a block `page` has carved (below its high-water mark).
///
/// # Safety
/// As `on_block_below`.
#[inline(always)]
unsafe fn on_carved_block(page: *const Page, p: *const u8) -> bool {
    // SAFETY: caller's contract.
    unsafe { on_block_below(page, p, (*page).capacity) }
}

/// The program's free of a pointer into a small arena the calling thread owns. Refuses —
/// aborting with a line naming the pointer — a pointer that is not a live block: one off a
/// block boundary (an interior pointer), past what the page has carved, in a page with no live
/// block, or carrying the free key (a double free: the block is on a free list already).
///
/// # Safety
/// `a` must be a small arena owned by `heap`, held by the caller, and `p` a pointer for which
/// `arena_of(p) == a`.
#[inline(always)]
pub unsafe fn free_checked(heap: *mut Heap, a: *mut Arena, p: *mut u8) {
    // SAFETY: caller's contract; the mask keeps the page index below 64 (arenas are aligned to
    // their size); the block's words are read only once `p` is a carved block.
    unsafe {
        let key = free_key(p);
        let idx = (p as usize >> PAGE_SHIFT) & (PAGES_PER_ARENA - 1);
        let page = (*a).pages.as_mut_ptr().add(idx);
        // Short-circuit order: the key word is read only once `p` is known to be a carved block
        // (16-aligned, inside the page), so a stray pointer never makes it read misaligned or
        // outside the arena. A page with no live block needs no test of its own: a released page
        // has carved nothing (capacity 0), and every carved block of a page with none live is on
        // its free list, with its key.
        if !on_carved_block(page, p) || (*(p as *const Block)).key == key {
            owner_bad_free(heap, page, p);
        }
        push_local(heap, page, p, key);
    }
}

/// Checks the program's free (or realloc: `what` names the call) of a small block whose page another heap owns (or that a thread
/// without a heap frees), before it is kept or sent to the owner: the pointer must be on a
/// block boundary of its page's class, and must not carry the free key. A block found on the
/// caller's own foreign list is a confirmed double free; one carrying the key elsewhere is on
/// a list another thread owns, where pushing it again would corrupt that list: refused too.
///
/// # Safety
/// `a` must be a small arena of ours and `heap` the caller's heap or a sentinel.
#[inline(always)]
pub unsafe fn check_foreign_free(heap: *mut Heap, a: *mut Arena, p: *mut u8, what: &str) {
    // SAFETY: a page's class, reciprocal and size are written only while the page holds no
    // block (see `free_foreign`); the block's words are read once `p` is on a block boundary
    // inside it.
    unsafe {
        let idx = (p as usize >> PAGE_SHIFT) & (PAGES_PER_ARENA - 1);
        let page = (*a).pages.as_ptr().add(idx);
        // The bound is the blocks the page can hold (`reserved`), not the part it carved (the
        // owner's to change).
        if !on_block_below(page, p, (*page).reserved) || has_free_key(p) {
            foreign_bad_free(heap, page, p, what);
        }
    }
}

/// A foreign free failed `check_foreign_free`: says why and aborts.
#[cold]
#[inline(never)]
unsafe fn foreign_bad_free(heap: *mut Heap, page: *const Page, p: *mut u8, what: &str) -> ! {
    // SAFETY: as in `check_foreign_free`; the key is read only for a pointer on a block.
    unsafe {
        if !on_block_below(page, p, (*page).reserved) {
            crate::fatal::fatal_ptr(
                what,
                p,
                "not the start of a small block (an interior or stray pointer)",
            );
        }
        let c = (*page).class as usize & (NUM_CLASSES - 1);
        let why = if heap::is_real(heap) && list_holds((*heap).local.foreign[c].free, p) {
            "already freed (this thread freed it before)"
        } else {
            "already freed (it carries the free-list key; another thread holds it)"
        };
        crate::fatal::fatal_ptr(what, p, why)
    }
}

/// The owner's free of `p` failed a check: it is not on a carved block, or the block carries
/// the free key. A key match is confirmed on the page's free list (or, after collecting the heap's
/// remote frees, there) for the message; either way the block is on a free list, so freeing it
/// again would hand it out twice: abort.
#[cold]
#[inline(never)]
unsafe fn owner_bad_free(heap: *mut Heap, page: *mut Page, p: *mut u8) -> ! {
    // SAFETY: the caller's page holds `p`.
    if !unsafe { on_carved_block(page, p) } {
        bad_free(
            p,
            "not the start of a live block (an interior or stray pointer)",
        );
    }
    // SAFETY: the caller owns the heap, so the page's list and the remote list are ours; `p` is
    // a carved block of the page.
    unsafe {
        if !has_free_key(p) {
            bad_free(p, "not a live block");
        }
        if list_holds((*page).free, p) {
            double_free(p, "the block is already free (on its page's free list)");
        }
        heap::collect_remote(heap);
        if list_holds((*page).free, p) {
            double_free(
                p,
                "the block is already free (freed before by another thread)",
            );
        }
    }
    double_free(
        p,
        "the block is already free (it carries the free-list key; another thread holds it)",
    )
}

/// Whether the free list starting at `b` holds `p` (at most a page's worth of blocks looked at).
///
/// # Safety
/// `b` must be a free list the caller owns.
unsafe fn list_holds(mut b: *mut Block, p: *mut u8) -> bool {
    let mut n = 0;
    // SAFETY: caller's contract: every block on the list is a free block of ours.
    unsafe {
        while !b.is_null() && n <= PAGE_SIZE / 16 {
            if b.cast::<u8>() == p {
                return true;
            }
            b = (*b).next;
            n += 1;
        }
    }
    false
}

#[cold]
#[inline(never)]
fn double_free(p: *mut u8, why: &str) -> ! {
    crate::fatal::fatal_ptr("free(): double free of", p, why)
}

#[cold]
#[inline(never)]
fn bad_free(p: *mut u8, why: &str) -> ! {
    crate::fatal::fatal_ptr("free(): invalid pointer", p, why)
}

/// Puts a small block of a page owned by `heap` on the page's free list, on the owner thread
/// (the program's free after `free_checked`, or a block collected from the remote list).
///
/// # Safety
/// `p` must be a live small block of arena `a`, and `heap` its owner, held by the caller.
#[inline(always)]
pub unsafe fn free_local(heap: *mut Heap, a: *mut Arena, p: *mut u8) {
    // SAFETY: caller's contract; the page index is < 64 since p is inside the arena.
    unsafe {
        let idx = (p as usize - a as usize) >> PAGE_SHIFT;
        push_local(heap, (*a).pages.as_mut_ptr().add(idx), p, free_key(p));
    }
}

/// Pushes block `p` (its key `key`) on its page's free list.
///
/// # Safety
/// As `free_local`; `page` is the descriptor of the page holding `p`.
#[inline(always)]
unsafe fn push_local(heap: *mut Heap, page: *mut Page, p: *mut u8, key: usize) {
    // SAFETY: caller's contract.
    unsafe {
        let b = p as *mut Block;
        (*b).next = (*page).free;
        (*b).key = key;
        (*page).free = b;
        (*page).used -= 1;
        drop_by(
            (*heap)
                .shared
                .class_live
                .get_unchecked((*page).class as usize),
            1,
        );
        if (*page).used == 0 || (*page).state == STATE_FULL {
            free_slow(heap, page);
        }
    }
}

#[cold]
#[inline(never)]
unsafe fn free_slow(heap: *mut Heap, page: *mut Page) {
    // SAFETY: owner-only page and heap lists.
    unsafe {
        let c = (*page).class as usize;
        if (*page).state == STATE_FULL {
            (*page).state = STATE_AVAIL;
            list_push(&mut (*heap).local.avail[c], page);
        }
        if (*page).used == 0 && (*page).state == STATE_AVAIL {
            list_remove(&mut (*heap).local.avail[c], page);
            release_page(heap, page);
        }
    }
}

/// Returns an empty page (in no list) to the heap's free pages; releases its arena if that was
/// the arena's last page in use.
pub(crate) unsafe fn release_page(heap: *mut Heap, page: *mut Page) {
    // SAFETY: owner-only; `page` is empty and in no list.
    unsafe {
        let c = (*page).class as usize;
        drop_by(&(*heap).shared.class_pages[c], 1);
        drop_by(
            &(*heap).shared.small_carved,
            (*page).capacity as u64 * (*page).block_size as u64,
        );
        (*page).state = STATE_FREE;
        (*page).free = ptr::null_mut();
        (*page).used = 0;
        (*page).capacity = 0;
        list_push(&mut (*heap).local.free_pages, page);
        let a = arena::arena_of((*page).area.add(1));
        (*a).used_pages -= 1;
        if (*a).used_pages == 0 {
            for i in 0..PAGES_PER_ARENA {
                list_remove(
                    &mut (*heap).local.free_pages,
                    (*a).pages.as_mut_ptr().add(i),
                );
            }
            arena_list_remove(&mut (*heap).local.small_arenas, a);
            drop_by(&(*heap).shared.small_arenas, 1);
            arena::release(a, heap::gives_back(heap));
        }
    }
}

/// Gives back to the OS the memory of the heap's free pages that still hold some (reclaimer-
/// requested trim). Returns bytes decommitted.
pub(crate) unsafe fn decommit_free_pages(heap: *mut Heap) -> usize {
    let mut n = 0;
    // SAFETY: owner-only free page list; free pages hold no live block.
    unsafe {
        let mut p = (*heap).local.free_pages;
        while !p.is_null() {
            if !(*p).decommitted {
                let (a, idx) = page_slot(p);
                let len = page_bytes(idx);
                crate::os::decommit((*p).area, len);
                (*p).decommitted = true;
                (*a).resident_pages &= !(1u64 << idx);
                n += len;
            }
            p = (*p).next;
        }
    }
    n
}

/// Usable size of a small block: its class size.
///
/// # Safety
/// `p` must be a live small block of arena `a`.
#[inline]
pub unsafe fn usable(a: *mut Arena, p: *const u8) -> usize {
    // SAFETY: caller's contract; page descriptors are immutable while the block lives.
    unsafe {
        let idx = (p as usize - a as usize) >> PAGE_SHIFT;
        (*a).pages[idx].block_size as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_table_is_smallest_fit() {
        for size in 0..=SMALL_MAX {
            let c = class_of(size);
            assert!(
                CLASS_SIZES[c] as usize >= size.max(1),
                "size {size} class {c}"
            );
            if c > 0 {
                assert!(
                    (CLASS_SIZES[c - 1] as usize) < size,
                    "size {size} class {c}"
                );
            }
        }
    }

    #[test]
    fn magic_is_exact() {
        for c in 0..NUM_CLASSES {
            let (bs, m) = (CLASS_SIZES[c] as u64, MAGIC[c]);
            for off in 0..PAGE_SIZE as u64 {
                let prod = off * m as u64;
                assert_eq!(prod >> 32, off / bs, "class {c} offset {off}");
                assert_eq!((prod as u32) < m, off % bs == 0, "class {c} offset {off}");
            }
        }
    }

    #[test]
    fn wrapped_offsets_are_refused() {
        // A pointer into an arena's header, before page 0's first block: its 32-bit offset
        // wraps, and its block index must lie past any page's capacity.
        let most_blocks = (PAGE_SIZE / CLASS_SIZES[0] as usize) as u64;
        for (c, &magic) in MAGIC.iter().enumerate() {
            for back in 1..=ARENA_HEADER as u32 {
                let off = 0u32.wrapping_sub(back);
                let i = (off as u64 * magic as u64) >> 32;
                assert!(i > most_blocks, "class {c} offset -{back}: index {i}");
            }
        }
    }

    #[test]
    fn aligned_classes_divide() {
        for align in [16, 32, 64, 128, 256, 512] {
            for size in 1..=512 {
                if let Some(c) = class_for_aligned(size, align) {
                    let bs = CLASS_SIZES[c] as usize;
                    assert!(bs >= size && bs.is_multiple_of(align));
                } else {
                    assert!(size > 512 || align > 512);
                }
            }
        }
    }
}
