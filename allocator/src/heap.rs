//! Heaps: the per-thread owners of arenas, and how blocks and heaps move between threads.
//!
//! ```text
//!  thread A ──TLS──► heap A ── owns ──► small arenas, medium arenas
//!                      ▲  remote list (lock-free MPSC stack of freed blocks)
//!  thread B: free(p of A) ─ CAS push ─┘     heap A's owner pops the whole list (one swap) in
//!                                           its slow paths and frees each block locally.
//!            (a small block B frees is first kept in B's foreign list and reused by B; only
//!             beyond a bound, or when B trims or exits, does it go to A's remote list)
//!  thread A exits ──► heap A "abandoned" → pool ──► adopted whole by the next new thread, or
//!                                                   cleaned by a thread short of memory / the
//!                                                   reclaimer (remote frees collected, empty
//!                                                   pages and arenas released); a block freed
//!                                                   into a pooled heap is taken back at once
//!                                                   by the freeing thread (pool lock, try).
//! ```
//! A heap's memory is owned by exactly one thread at a time: its bound thread, or whoever popped
//! it from the pool (under the pool lock). Other threads only push onto its remote list and read
//! its counters, which are atomics. Heaps are never unmapped, so a remote free can always push
//! onto the heap an arena names, even after the thread that owned it exited.

use crate::arena::{Arena, Kind};
use crate::medium::{self, Bins};
use crate::small::{self, Block, NUM_CLASSES, Page, empty_page};
use crate::sync::{SpinLock, bump};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};

/// Owner-only part of a heap.
#[repr(C)]
pub struct HeapLocal {
    /// The current page per class: the thread-local small-block cache (never null: the empty
    /// page when the class has none).
    pub current: [*mut Page; NUM_CLASSES],
    /// Other pages of each class with free blocks or room to carve.
    pub avail: [*mut Page; NUM_CLASSES],
    /// Unassigned pages of the heap's small arenas.
    pub free_pages: *mut Page,
    pub small_arenas: *mut Arena,
    pub medium_arenas: *mut Arena,
    pub medium_arena_count: usize,
    /// Set while the heap is being handed over or sits in the pool: memory it frees then goes
    /// back to the OS (no thread is left to reuse it soon), and the front cache is bypassed.
    pub abandoned: bool,
    /// Set when the heap was handed over by the last thread that had one (no heap is owned
    /// now): the program is winding down its threads, and what the heap frees goes back to the
    /// OS at once (see `gives_back`).
    pub last_out: bool,
    /// Set during the hand-over itself (`abandon`'s trim).
    pub handing_over: bool,
    /// Per class, small blocks of *other* heaps this thread freed and keeps for its own next
    /// allocations (see `small::free_foreign`): a pseudo-page whose free list they form, made
    /// the class's current page when its own run out. `capacity - used` is the list's length.
    pub foreign: [Page; NUM_CLASSES],
    pub bins: Bins,
}

pub const OWNED: u8 = 1;
pub const ABANDONED: u8 = 2;

/// The part of a heap other threads touch.
#[repr(C, align(64))]
pub struct HeapShared {
    /// Blocks freed by other threads, waiting for the owner (pushed with CAS, taken with swap).
    pub remote: AtomicPtr<Block>,
    /// Blocks pushed onto `remote`, cumulative (by the pushers, after their CAS, on the line
    /// the CAS just took): with `remote_collected`, this queue's depth.
    pub remote_received: AtomicU64,
    _pad: [u8; 48],
    // Counters below are written by the owner only (relaxed load+store) and read by stats().
    /// Live blocks per class.
    pub class_live: [AtomicU64; NUM_CLASSES],
    /// Pages assigned per class.
    pub class_pages: [AtomicU64; NUM_CLASSES],
    /// Usable bytes of live medium blocks.
    pub medium_in_use: AtomicU64,
    pub medium_blocks: AtomicU64,
    /// Bytes of free medium chunks.
    pub medium_free: AtomicU64,
    /// Bytes of medium chunks parked in the front cache.
    pub medium_cached: AtomicU64,
    /// Bytes of small pages carved into blocks (touched by small blocks).
    pub small_carved: AtomicU64,
    /// Bytes of medium arenas below their high-water marks (touched by medium chunks).
    pub medium_touched: AtomicU64,
    pub small_arenas: AtomicU64,
    pub medium_arenas: AtomicU64,
    /// Frees this heap's thread pushed to other heaps.
    pub remote_issued: AtomicU64,
    /// Remote frees this heap collected.
    pub remote_collected: AtomicU64,
    pub state: AtomicU8,
    /// Set by the reclaimer: trim at the next slow path.
    pub trim_request: AtomicBool,
    /// Next in the list of all heaps (set once before the heap is published).
    pub all_next: AtomicPtr<Heap>,
    /// Next in the pool of abandoned heaps (under the pool lock).
    pub pool_next: UnsafeCell<*mut Heap>,
}

#[repr(C)]
pub struct Heap {
    pub local: HeapLocal,
    pub shared: HeapShared,
}

impl Heap {
    const fn sentinel() -> Heap {
        Heap {
            local: HeapLocal {
                current: [small::EMPTY_PAGE.0.get(); NUM_CLASSES],
                avail: [ptr::null_mut(); NUM_CLASSES],
                free_pages: ptr::null_mut(),
                small_arenas: ptr::null_mut(),
                medium_arenas: ptr::null_mut(),
                medium_arena_count: 0,
                abandoned: false,
                last_out: false,
                handing_over: false,
                foreign: [Page::EMPTY; NUM_CLASSES],
                bins: Bins::EMPTY,
            },
            shared: HeapShared {
                remote: AtomicPtr::new(ptr::null_mut()),
                remote_received: AtomicU64::new(0),
                _pad: [0; 48],
                class_live: [const { AtomicU64::new(0) }; NUM_CLASSES],
                class_pages: [const { AtomicU64::new(0) }; NUM_CLASSES],
                medium_in_use: AtomicU64::new(0),
                medium_blocks: AtomicU64::new(0),
                medium_free: AtomicU64::new(0),
                medium_cached: AtomicU64::new(0),
                small_carved: AtomicU64::new(0),
                medium_touched: AtomicU64::new(0),
                small_arenas: AtomicU64::new(0),
                medium_arenas: AtomicU64::new(0),
                remote_issued: AtomicU64::new(0),
                remote_collected: AtomicU64::new(0),
                state: AtomicU8::new(0),
                trim_request: AtomicBool::new(false),
                all_next: AtomicPtr::new(ptr::null_mut()),
                pool_next: UnsafeCell::new(ptr::null_mut()),
            },
        }
    }
}

#[repr(transparent)]
pub struct SyncHeap(pub UnsafeCell<Heap>);
// SAFETY: the sentinel heaps are never written: every fast path that would write reaches the
// slow path first (their pages have no free block, no arena names them), which checks for them.
unsafe impl Sync for SyncHeap {}

/// The heap of a thread that has not allocated yet.
pub static UNBOUND: SyncHeap = SyncHeap(UnsafeCell::new(Heap::sentinel()));
/// The heap of a thread whose exit destructor ran (later mallocs borrow a pooled heap).
pub static EXITED: SyncHeap = SyncHeap(UnsafeCell::new(Heap::sentinel()));

#[inline(always)]
pub fn unbound() -> *mut Heap {
    UNBOUND.0.get()
}
#[inline(always)]
pub fn exited() -> *mut Heap {
    EXITED.0.get()
}
#[inline(always)]
pub fn is_real(h: *mut Heap) -> bool {
    h != unbound() && h != exited()
}

// ---------------------------------------------------------------------------------------------
// All heaps, the pool of abandoned heaps, and heap metadata memory.

static ALL_HEAPS: AtomicPtr<Heap> = AtomicPtr::new(ptr::null_mut());
pub(crate) static HEAP_COUNT: AtomicU64 = AtomicU64::new(0);
pub(crate) static ABANDONED_COUNT: AtomicU64 = AtomicU64::new(0);
/// Remote frees issued by threads without a heap of their own.
pub(crate) static REMOTE_ISSUED_UNBOUND: AtomicU64 = AtomicU64::new(0);

pub(crate) struct Pool {
    head: *mut Heap,
}
// SAFETY: only followed under the lock.
unsafe impl Send for Pool {}
pub(crate) static POOL: SpinLock<Pool> = SpinLock::new(Pool {
    head: ptr::null_mut(),
});

pub(crate) struct Meta {
    next: *mut u8,
    end: *mut u8,
}
// SAFETY: only used under the lock.
unsafe impl Send for Meta {}
pub(crate) static META: SpinLock<Meta> = SpinLock::new(Meta {
    next: ptr::null_mut(),
    end: ptr::null_mut(),
});
static META_BYTES: AtomicU64 = AtomicU64::new(0);

fn meta_lock() -> &'static SpinLock<Meta> {
    &META
}

/// Heaps bound to threads of this process: made or adopted, not yet handed back (a heap
/// borrowed for one call by an exited thread counts while it is borrowed). The reclaimer ends
/// when it reaches 0.
static BOUND: AtomicU64 = AtomicU64::new(0);

/// Threads of this process holding a heap.
pub(crate) fn bound_threads() -> u64 {
    BOUND.load(Ordering::Acquire)
}

/// After fork, in the child: only the forking thread exists; it holds a heap or not.
pub(crate) fn after_fork_child(forker_has_heap: bool) {
    BOUND.store(forker_has_heap as u64, Ordering::Release);
}

/// Visits every heap ever created (they are never freed).
pub(crate) fn for_each_heap(mut f: impl FnMut(*mut Heap)) {
    let mut h = ALL_HEAPS.load(Ordering::Acquire);
    while !h.is_null() {
        f(h);
        // SAFETY: heaps are never freed; all_next is set before publication.
        h = unsafe { (*h).shared.all_next.load(Ordering::Acquire) };
    }
}

/// Whether an arena the heap frees should go back to the OS now: the heap's thread has exited
/// and the heap holds no block any more, and either its thread freed everything itself before
/// handing it over (a worker that is done) or no thread has a heap any more (the program winds
/// down). A heap handed over with blocks in use and emptied later by other threads' frees keeps
/// its memory resident: in thread-churning programs (larson, mstress) the next new thread
/// adopts it, and would fault given-back memory in again.
///
/// # Safety
/// The caller must own `h`.
pub(crate) unsafe fn gives_back(h: *mut Heap) -> bool {
    // SAFETY: owner (caller); counters are atomics.
    unsafe {
        if !(*h).local.abandoned
            || !((*h).local.last_out || (*h).local.handing_over)
            || (*h).shared.medium_blocks.load(Ordering::Relaxed) != 0
        {
            return false;
        }
        let mut live = 0u64;
        for c in 0..NUM_CLASSES {
            live = live.wrapping_add((*h).shared.class_live[c].load(Ordering::Relaxed));
        }
        live == 0
    }
}

/// Memory one heap has touched: small pages carved, medium arenas below their high-water marks.
///
/// # Safety
/// `h` must be a heap (heaps are never freed).
pub(crate) unsafe fn touched(h: *mut Heap) -> u64 {
    // SAFETY: caller; atomics.
    let sh = unsafe { &(*h).shared };
    sh.small_carved.load(Ordering::Relaxed) + sh.medium_touched.load(Ordering::Relaxed)
}

/// Memory the heaps have touched (small pages carved, medium arenas below their high-water
/// marks) plus live huge blocks: what the program uses, unlike the mapped address space, which
/// counts every arena of every thread in full. Decides when new regions get huge pages.
pub(crate) fn footprint() -> u64 {
    let mut n = crate::huge::HUGE_BYTES.load(Ordering::Relaxed);
    for_each_heap(|h| {
        // SAFETY: heaps are never freed.
        n += unsafe { touched(h) };
    });
    n
}

fn new_heap() -> *mut Heap {
    // Before the first block is carved: free blocks and chunk headers carry keys made from it.
    small::init_key();
    let size = core::mem::size_of::<Heap>();
    let h = {
        let mut m = meta_lock().lock();
        if (m.end as usize) - (m.next as usize) < size {
            let chunk = 64 * 1024;
            let p = crate::os::map(chunk);
            if p.is_null() {
                return ptr::null_mut();
            }
            META_BYTES.fetch_add(chunk as u64, Ordering::Relaxed);
            m.next = p;
            // SAFETY: p .. p+chunk is our fresh mapping.
            m.end = unsafe { p.add(chunk) };
        }
        let h = m.next as *mut Heap;
        // SAFETY: size bytes fit before `end` (checked above); the mapping is 64-aligned at start
        // and Heap's size is a multiple of its 64-byte alignment.
        m.next = unsafe { m.next.add(size) };
        h
    };
    // SAFETY: `h` is fresh metadata memory, ours alone until published below.
    unsafe {
        ptr::write(h, Heap::sentinel());
        small::init_foreign(&mut (*h).local.foreign);
        (*h).shared.state.store(OWNED, Ordering::Relaxed);
        let mut head = ALL_HEAPS.load(Ordering::Relaxed);
        loop {
            (*h).shared.all_next.store(head, Ordering::Relaxed);
            match ALL_HEAPS.compare_exchange_weak(head, h, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(x) => head = x,
            }
        }
    }
    HEAP_COUNT.fetch_add(1, Ordering::Relaxed);
    h
}

const _: () = assert!(core::mem::size_of::<Heap>().is_multiple_of(64));

/// A heap for the calling thread: an abandoned one if the pool has one (adopted whole, with its
/// arenas and pending remote frees), else a new one. Null only if the OS gives no memory.
pub(crate) fn acquire() -> *mut Heap {
    let h = acquire_inner();
    if !h.is_null() {
        BOUND.fetch_add(1, Ordering::AcqRel);
    }
    h
}

fn acquire_inner() -> *mut Heap {
    let h = {
        let mut pool = POOL.lock();
        let h = pool.head;
        if !h.is_null() {
            // SAFETY: pool list under its lock; the state changes under it too (remote_free
            // relies on ABANDONED meaning "in the pool" while it holds the lock).
            unsafe {
                pool.head = *(*h).shared.pool_next.get();
                (*h).shared.state.store(OWNED, Ordering::Relaxed);
            }
        }
        h
    };
    if h.is_null() {
        let h = new_heap();
        if h.is_null() && crate::arena::release_for_retry() {
            return new_heap();
        }
        return h;
    }
    ABANDONED_COUNT.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: popped from the pool: ours alone now.
    unsafe {
        (*h).local.abandoned = false;
        collect_remote(h);
    }
    h
}

/// Hands a heap over to the pool (thread exit, `thread_detach`, end of a borrow).
///
/// # Safety
/// The caller must own `h` and never touch it again.
pub(crate) unsafe fn abandon(h: *mut Heap) {
    // SAFETY: owner (caller).
    unsafe {
        (*h).local.abandoned = true;
        (*h).local.last_out =
            HEAP_COUNT.load(Ordering::Relaxed) <= ABANDONED_COUNT.load(Ordering::Relaxed) + 1;
        (*h).local.handing_over = true;
        trim(h);
        (*h).local.handing_over = false;
        let mut pool = POOL.lock();
        (*h).shared.state.store(ABANDONED, Ordering::Relaxed);
        *(*h).shared.pool_next.get() = pool.head;
        pool.head = h;
    }
    ABANDONED_COUNT.fetch_add(1, Ordering::Relaxed);
    if BOUND.fetch_sub(1, Ordering::AcqRel) == 1 {
        crate::reclaim::wake();
    }
}

/// Cleans abandoned heaps (collects their remote frees, releases empty pages and arenas) so
/// their memory can serve others. Called by a thread about to map a new arena, and by the
/// reclaimer. Does nothing if another thread holds the pool.
pub(crate) fn help_abandoned() {
    if ABANDONED_COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    clean_abandoned(false);
}

pub(crate) fn clean_abandoned(wait: bool) {
    let pool = if wait {
        Some(POOL.lock())
    } else {
        POOL.try_lock()
    };
    let Some(pool) = pool else { return };
    let mut h = pool.head;
    while !h.is_null() {
        // SAFETY: heaps in the pool are owned by the pool lock holder (us).
        unsafe {
            if !(*h).shared.remote.load(Ordering::Relaxed).is_null()
                || (*h).shared.trim_request.load(Ordering::Relaxed)
            {
                trim(h);
            }
            h = *(*h).shared.pool_next.get();
        }
    }
    drop(pool);
}

// ---------------------------------------------------------------------------------------------
// Cross-thread frees.

/// Pushes a block freed by a thread that does not own it onto its owner heap's remote list.
///
/// # Safety
/// `p` must be a live small or medium block of a heap `owner`; it is dead after this call.
#[inline]
pub unsafe fn remote_free(owner: *mut Heap, me: *mut Heap, p: *mut u8) {
    // SAFETY: the block is dead, so its first word is ours to use as a link; the owner heap is
    // never unmapped.
    unsafe {
        let b = p as *mut Block;
        // A second free of the block while it waits here is refused by its key.
        small::set_free_key(p);
        let head = &(*owner).shared.remote;
        let mut old = head.load(Ordering::Relaxed);
        loop {
            (*b).next = old;
            match head.compare_exchange_weak(old, b, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(x) => old = x,
            }
        }
        (*owner)
            .shared
            .remote_received
            .fetch_add(1, Ordering::Relaxed);
        if is_real(me) {
            bump(&(*me).shared.remote_issued, 1);
        } else {
            REMOTE_ISSUED_UNBOUND.fetch_add(1, Ordering::Relaxed);
        }
        if (*owner).shared.state.load(Ordering::Relaxed) == ABANDONED {
            collect_abandoned(owner);
        }
    }
}

/// The owner of a block just freed by another thread has exited (its heap is in the pool):
/// nobody would take the block back until a new thread adopts the heap, so the freeing thread
/// does it now, as the pool lock's holder, and what becomes free goes back to the OS. Skipped
/// if another thread holds the pool.
#[cold]
#[inline(never)]
fn collect_abandoned(h: *mut Heap) {
    let Some(pool) = POOL.try_lock() else { return };
    // SAFETY: under the pool lock a heap whose state is ABANDONED is in the pool, owned by the
    // lock holder (us) for as long as we hold it.
    unsafe {
        if (*h).shared.state.load(Ordering::Relaxed) == ABANDONED {
            collect_remote(h);
        }
    }
    drop(pool);
}

/// Pushes the chain `first ..= last` (`n` blocks linked through their first words, all of heap
/// `owner`, dead) onto `owner`'s remote list with one CAS.
///
/// # Safety
/// As `remote_free`, for every block of the chain.
pub(crate) unsafe fn remote_free_chain(
    owner: *mut Heap,
    me: *mut Heap,
    first: *mut Block,
    last: *mut Block,
    n: u64,
) {
    // SAFETY: the blocks are dead and linked by the caller; the owner heap is never unmapped.
    unsafe {
        let head = &(*owner).shared.remote;
        let mut old = head.load(Ordering::Relaxed);
        loop {
            (*last).next = old;
            match head.compare_exchange_weak(old, first, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(x) => old = x,
            }
        }
        (*owner)
            .shared
            .remote_received
            .fetch_add(n, Ordering::Relaxed);
        if is_real(me) {
            bump(&(*me).shared.remote_issued, n);
        } else {
            REMOTE_ISSUED_UNBOUND.fetch_add(n, Ordering::Relaxed);
        }
        if (*owner).shared.state.load(Ordering::Relaxed) == ABANDONED {
            collect_abandoned(owner);
        }
    }
}

/// Frees every block on the heap's remote list, as its owner.
///
/// # Safety
/// The caller must own `h`.
pub(crate) unsafe fn collect_remote(h: *mut Heap) {
    // SAFETY: owner (caller); Acquire pairs with the pushers' Release, so the links are visible.
    unsafe {
        let mut b = (*h).shared.remote.swap(ptr::null_mut(), Ordering::Acquire);
        let mut n = 0u64;
        while !b.is_null() {
            let next = (*b).next;
            free_owned(h, b.cast());
            n += 1;
            b = next;
        }
        bump(&(*h).shared.remote_collected, n);
    }
}

/// Frees a small or medium block of heap `h` on the owner's side.
///
/// # Safety
/// The caller owns `h` and `p` is a live block of one of its arenas.
#[inline]
pub(crate) unsafe fn free_owned(h: *mut Heap, p: *mut u8) {
    let a = crate::arena::arena_of(p);
    // SAFETY: caller's contract.
    unsafe {
        match (*a).kind {
            Kind::Small => small::free_local(h, a, p),
            Kind::Medium => medium::free_local(h, a, p),
            _ => crate::fatal::fatal("remote list holds a block of a non-heap arena"),
        }
    }
}

/// Work the owner does in its slow paths: collect remote frees, honour a trim request.
///
/// # Safety
/// The caller must own `h`.
#[inline]
pub(crate) unsafe fn maintenance(h: *mut Heap) {
    // SAFETY: owner (caller).
    unsafe {
        if !(*h).shared.remote.load(Ordering::Relaxed).is_null() {
            collect_remote(h);
        }
        if (*h).shared.trim_request.load(Ordering::Relaxed) {
            (*h).shared.trim_request.store(false, Ordering::Relaxed);
            trim(h);
        }
    }
}

/// Gives back what the heap does not use: collects remote frees, releases empty current pages
/// and fully free medium arenas, and (with reclamation on) decommits free pages and large free
/// chunks.
///
/// # Safety
/// The caller must own `h`.
pub(crate) unsafe fn trim(h: *mut Heap) {
    // SAFETY: owner (caller).
    unsafe {
        (*h).shared.trim_request.store(false, Ordering::Relaxed);
        collect_remote(h);
        small::flush_foreign(h);
        for c in 0..NUM_CLASSES {
            let page = (*h).local.current[c];
            if page != empty_page() && (*page).used == 0 {
                (*h).local.current[c] = empty_page();
                small::release_page(h, page);
            } else if page != empty_page() && (*h).local.abandoned {
                // Handed over with blocks still in use: an ordinary page from now on, so the
                // free of its last block (by anyone) releases it.
                (*h).local.current[c] = empty_page();
                small::retire_current(h, page);
            }
        }
        medium::tc_flush(h);
        medium::release_free_arenas(h);
        if crate::config::RECLAIM.load(Ordering::Relaxed) {
            small::decommit_free_pages(h);
            medium::decommit_free_chunks(h);
        }
    }
}

/// Asks every heap bound to a thread to trim at its next slow path (reclaimer).
pub(crate) fn request_trim_all() {
    for_each_heap(|h| {
        // SAFETY: heaps are never freed; these are atomics.
        unsafe { (*h).shared.trim_request.store(true, Ordering::Relaxed) };
    });
}

/// Runs `f` on every heap in the pool while holding the pool lock (the caller owns them then).
pub(crate) fn with_pool(mut f: impl FnMut(*mut Heap)) {
    let pool = POOL.lock();
    let mut h = pool.head;
    while !h.is_null() {
        f(h);
        // SAFETY: pool list under its lock.
        h = unsafe { *(*h).shared.pool_next.get() };
    }
}
