//! The pool itself: size classes, the best-fit path, huge spans, aligned and scoped blocks, and
//! the three ways of locking them ([`Variant`]).
//!
//! Block layouts (every payload is 16-byte aligned):
//! - slab block (32, 128 or 256 B): no header; the granule map says which slab a pointer is in.
//! - header block: a 16-byte [`Hdr`] right before the payload says what it is (a class block, a
//!   best-fit block, a huge span, or a view over another block: aligned or scope-tracked).
//!
//! All free lists are intrusive: a free block's first word links to the next one.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sys::{self, GRANULE, Guard, RawLock};
use crate::{LockCounts, Stats, Strategy, Variant};

/// Slab block sizes (the report's fixed-size allocators).
pub(crate) const SLAB_SIZES: [usize; 3] = [32, 128, 256];
/// Segregated class payloads.
pub(crate) const SEG_SIZES: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];
const N_SLAB: usize = 3;
const SEG0: usize = N_SLAB;
const POOL0: usize = SEG0 + SEG_SIZES.len();
/// POOL_BASED classes: every multiple of 16 up to 4096.
const N_POOL: usize = 4096 / 16;
pub(crate) const N_CLASS: usize = POOL0 + N_POOL;
/// Largest request served by a class.
pub(crate) const CLASS_MAX: usize = 4096;
/// Pool chunks (segregated pieces and best-fit blocks are cut from them).
pub const POOL_CHUNK: usize = 1 << 20;
/// What one class refill takes from a pool chunk (sharded, baseline) or the reservation (percls).
const PIECE: usize = GRANULE;
/// Above this a block gets its own span instead of a best-fit block in a pool chunk.
pub const HUGE_MIN: usize = 256 << 10;

const HDR: usize = 16;
const MAGIC: usize = 0xA110_C000_0000_0000;
const TAG_CLASS: usize = 1;
const TAG_BEST: usize = 2;
const TAG_HUGE: usize = 3;
const TAG_ALIGNED: usize = 4;
const TAG_TRACKED: usize = 5;
/// Bytes a scope-tracked block carries before its payload (links, depth, header).
const TRACK: usize = 48;
/// Bytes before a huge payload (list links, span length, header).
const HUGE_HEAD: usize = 48;

#[repr(C)]
struct Hdr {
    /// Payload bytes (class, best-fit, huge) or offset back to the inner payload (views).
    size: usize,
    tag: usize,
}

#[repr(C)]
struct Track {
    prev: *mut Track,
    next: *mut Track,
    depth: usize,
    _pad: usize,
}

#[repr(C)]
struct Chunk {
    next: *mut Chunk,
    len: usize,
}

#[inline]
const fn is_slab(id: usize) -> bool {
    id < N_SLAB
}

#[inline]
pub(crate) const fn payload(id: usize) -> usize {
    if id < N_SLAB {
        SLAB_SIZES[id]
    } else if id < POOL0 {
        SEG_SIZES[id - SEG0]
    } else {
        (id - POOL0 + 1) * 16
    }
}

#[inline]
const fn stride(id: usize) -> usize {
    if is_slab(id) {
        payload(id)
    } else {
        payload(id) + HDR
    }
}

#[inline]
fn seg_id(size: usize) -> usize {
    if size <= 32 {
        SEG0
    } else {
        SEG0 + (usize::BITS - (size - 1).leading_zeros()) as usize - 5
    }
}

#[inline]
fn slab_id(size: usize) -> usize {
    if size <= 32 {
        0
    } else if size <= 128 {
        1
    } else {
        2
    }
}

#[inline]
const fn round16(n: usize) -> usize {
    (n + 15) & !15
}

enum Route {
    Class(usize),
    Best,
    Huge,
}

// ---------------------------------------------------------------------------------------------
// State.

#[repr(C, align(64))]
struct Class {
    lock: RawLock,
    st: UnsafeCell<ClassState>,
    /// Times the class got a new piece to carve (written under the class's lock, read by
    /// [`Core::lock_counts`] without it).
    replenished: AtomicU64,
}

struct ClassState {
    free: *mut u8,
    nfree: usize,
    /// Uncarved part of the class's current piece.
    carve: usize,
    end: usize,
    /// Chunks this class carved on its own (percls only).
    chunks: *mut Chunk,
}

const NBINS: usize = 256 + 8;

struct GlobalState {
    /// Bump range of the current pool chunk.
    bump: usize,
    end: usize,
    /// Pool and slab chunks taken under the global lock.
    chunks: *mut Chunk,
    /// Best-fit free blocks by size: exact bins (multiples of 16 below 4096), then powers of two.
    bins: [*mut u8; NBINS],
    nonempty: [u64; NBINS.div_ceil(64)],
    /// Huge spans of a pool without thread caches (so that reset can give them back).
    huge: *mut Track,
    /// Scope-tracked blocks, oldest first.
    tracked_head: *mut Track,
    tracked_tail: *mut Track,
    depth: usize,
}

/// One pool: a strategy, a variant, its chunks and free lists.
pub(crate) struct Core {
    pub(crate) strategy: Strategy,
    pub(crate) variant: Variant,
    /// `Some(i)` for the process-wide pool of variant `i`, whose slab blocks go through the
    /// thread caches.
    pub(crate) cached: Option<usize>,
    global: RawLock,
    g: UnsafeCell<GlobalState>,
    classes: [Class; N_CLASS],
    scopes: AtomicUsize,
    // Statistics of a pool without thread caches (those count per thread instead).
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    pub(crate) reallocs: AtomicU64,
    pub(crate) requested: AtomicU64,
    pub(crate) live_blocks: AtomicU64,
}

// SAFETY: every UnsafeCell is only touched under the lock that guards it (the class lock, or the
// global lock for the baseline variant and for `g`).
unsafe impl Sync for Core {}
// SAFETY: the raw pointers are into memory the pool owns, not tied to a thread.
unsafe impl Send for Core {}

impl Core {
    pub(crate) const fn new(strategy: Strategy, variant: Variant, cached: Option<usize>) -> Core {
        Core {
            strategy,
            variant,
            cached,
            global: RawLock::new(),
            g: UnsafeCell::new(GlobalState {
                bump: 0,
                end: 0,
                chunks: ptr::null_mut(),
                bins: [ptr::null_mut(); NBINS],
                nonempty: [0; NBINS.div_ceil(64)],
                huge: ptr::null_mut(),
                tracked_head: ptr::null_mut(),
                tracked_tail: ptr::null_mut(),
                depth: 0,
            }),
            classes: [const {
                Class {
                    lock: RawLock::new(),
                    st: UnsafeCell::new(ClassState {
                        free: ptr::null_mut(),
                        nfree: 0,
                        carve: 0,
                        end: 0,
                        chunks: ptr::null_mut(),
                    }),
                    replenished: AtomicU64::new(0),
                }
            }; N_CLASS],
            scopes: AtomicUsize::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            requested: AtomicU64::new(0),
            live_blocks: AtomicU64::new(0),
        }
    }

    #[inline]
    fn route(&self, size: usize) -> Route {
        let big = || {
            if size > HUGE_MIN {
                Route::Huge
            } else {
                Route::Best
            }
        };
        match self.strategy {
            Strategy::Hybrid if size <= 256 => Route::Class(slab_id(size)),
            Strategy::FixedSize if size <= 256 => Route::Class(slab_id(size)),
            Strategy::Hybrid | Strategy::Segregated if size <= CLASS_MAX => {
                Route::Class(seg_id(size))
            }
            Strategy::PoolBased if size <= CLASS_MAX => {
                Route::Class(POOL0 + size.max(1).div_ceil(16) - 1)
            }
            _ => big(),
        }
    }

    /// As [`route`](Self::route), never a slab (for blocks that carry a header view).
    #[inline]
    fn route_nonslab(&self, size: usize) -> Route {
        match self.strategy {
            Strategy::Hybrid | Strategy::FixedSize if size <= CLASS_MAX => {
                if self.strategy == Strategy::Hybrid {
                    Route::Class(seg_id(size))
                } else if size > HUGE_MIN {
                    Route::Huge
                } else {
                    Route::Best
                }
            }
            _ => self.route(size),
        }
    }

    #[inline]
    fn class_lock(&self, id: usize) -> &RawLock {
        match self.variant {
            Variant::Baseline => &self.global,
            _ => &self.classes[id].lock,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Entry points.

    /// A block of at least `size` bytes aligned to `align` (a power of two), or null.
    ///
    /// # Safety
    /// `align` is a power of two.
    pub(crate) unsafe fn alloc(&self, size: usize, align: usize) -> *mut u8 {
        let size = size.max(1);
        let tracking = self.scopes.load(Ordering::Relaxed) > 0;
        // SAFETY: forwarded contracts; each path returns a block of this pool or null.
        unsafe {
            if align > 16 {
                self.alloc_aligned(size, align, tracking)
            } else if tracking {
                self.alloc_tracked(size)
            } else {
                self.alloc_plain(size)
            }
        }
    }

    #[inline]
    unsafe fn alloc_plain(&self, size: usize) -> *mut u8 {
        // SAFETY: each path hands out blocks of this pool only.
        unsafe {
            match self.route(size) {
                Route::Class(id) if is_slab(id) => match self.cached {
                    Some(v) => crate::tcache::slab_alloc(v, id),
                    None => self.class_alloc(id),
                },
                Route::Class(id) => self.class_alloc(id),
                Route::Best => self.best_alloc(size),
                Route::Huge => self.huge_alloc(size),
            }
        }
    }

    unsafe fn alloc_nonslab(&self, size: usize) -> *mut u8 {
        // SAFETY: as alloc_plain.
        unsafe {
            match self.route_nonslab(size) {
                Route::Class(id) => self.class_alloc(id),
                Route::Best => self.best_alloc(size),
                Route::Huge => self.huge_alloc(size),
            }
        }
    }

    unsafe fn alloc_aligned(&self, size: usize, align: usize, tracking: bool) -> *mut u8 {
        // Slab blocks are aligned to their size: a small request with a small alignment fits one.
        if !tracking
            && matches!(self.strategy, Strategy::Hybrid | Strategy::FixedSize)
            && size.max(align) <= 256
        {
            // SAFETY: as alloc_plain.
            return unsafe { self.alloc_plain(size.max(align)) };
        }
        let Some(total) = size
            .checked_add(align)
            .and_then(|t| t.checked_add(HDR))
            .filter(|t| *t <= isize::MAX as usize / 2)
        else {
            return ptr::null_mut();
        };
        // SAFETY: the inner block is ours and `total` bytes long; the aligned payload leaves
        // room for its header after the inner payload start and for `size` bytes before its end.
        unsafe {
            let q = if tracking {
                self.alloc_tracked(total)
            } else {
                self.alloc_nonslab(total)
            };
            if q.is_null() {
                return q;
            }
            let p = ((q as usize + HDR + align - 1) & !(align - 1)) as *mut u8;
            (p.sub(HDR) as *mut Hdr).write(Hdr {
                size: p as usize - q as usize,
                tag: MAGIC | TAG_ALIGNED,
            });
            p
        }
    }

    /// Frees `p`.
    ///
    /// # Safety
    /// `p` is null or a live block of this pool.
    pub(crate) unsafe fn free(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        let k = sys::kind_of(p);
        if k != 0 {
            let id = (k - 1) as usize;
            // SAFETY: `p` is a live slab block of class `id` (caller's contract + granule map).
            unsafe {
                match self.cached {
                    Some(v) => crate::tcache::slab_free(v, id, p),
                    None => self.class_free(id, p),
                }
            }
            return;
        }
        // SAFETY: a non-slab block of ours has its header right before it.
        let h = unsafe { &*(p.sub(HDR) as *const Hdr) };
        debug_assert_eq!(
            h.tag & !0xffff_ffff,
            MAGIC,
            "free of a pointer that is not a block"
        );
        // SAFETY: the header says what the block is; each path takes the block back once.
        unsafe {
            match h.tag & 0xff {
                TAG_CLASS => self.class_free((h.tag >> 8) & 0xffff, p),
                TAG_BEST => {
                    let _g = Guard::new(&self.global);
                    self.bin_push(p);
                }
                TAG_HUGE => self.huge_free(p),
                TAG_ALIGNED => self.free(p.sub(h.size)),
                TAG_TRACKED => {
                    let q = p.sub(h.size);
                    self.untrack(q as *mut Track);
                    self.free(q)
                }
                _ => crate::fatal(b"mempool: free of a block with a damaged header\n"),
            }
        }
    }

    /// Usable bytes of block `p`.
    ///
    /// # Safety
    /// `p` is a live block of this pool.
    pub(crate) unsafe fn usable(&self, p: *mut u8) -> usize {
        let k = sys::kind_of(p);
        if k != 0 {
            return SLAB_SIZES[(k - 1) as usize];
        }
        // SAFETY: a non-slab block of ours has its header right before it.
        let h = unsafe { &*(p.sub(HDR) as *const Hdr) };
        match h.tag & 0xff {
            TAG_CLASS => payload((h.tag >> 8) & 0xffff),
            TAG_BEST | TAG_HUGE => h.size,
            // SAFETY: a view's inner block is live while the view is.
            _ => unsafe { self.usable(p.sub(h.size)) - h.size },
        }
    }

    /// `realloc` for `size > 0`: in place when it fits (and would not waste more than half),
    /// otherwise a new block, the contents copied, the old block freed. Null leaves `p` live.
    ///
    /// # Safety
    /// `p` is a live block of this pool.
    pub(crate) unsafe fn realloc(&self, p: *mut u8, size: usize, align: usize) -> *mut u8 {
        // SAFETY: caller's contract; the copy stays inside both blocks.
        unsafe {
            let old = self.usable(p);
            if size <= old && (size >= old / 2 || old <= 32) && (p as usize).is_multiple_of(align) {
                return p;
            }
            let q = self.alloc(size, align);
            if !q.is_null() {
                ptr::copy_nonoverlapping(p, q, old.min(size));
                self.free(p);
            }
            q
        }
    }

    // -----------------------------------------------------------------------------------------
    // Classes.

    #[inline]
    pub(crate) unsafe fn class_alloc(&self, id: usize) -> *mut u8 {
        let l = self.class_lock(id);
        l.lock();
        // SAFETY: the class state is ours under its lock; a listed block's first word links on.
        unsafe {
            let st = &mut *self.classes[id].st.get();
            let p = st.free;
            if !p.is_null() {
                st.free = *(p as *mut *mut u8);
                st.nfree -= 1;
                l.unlock();
                return p;
            }
            l.unlock();
            let mut one = ptr::null_mut();
            self.pop_batch(id, &mut one, 1);
            one
        }
    }

    #[inline]
    pub(crate) unsafe fn class_free(&self, id: usize, p: *mut u8) {
        let l = self.class_lock(id);
        l.lock();
        // SAFETY: as class_alloc; `p` is a block of class `id` nobody uses any more.
        unsafe {
            let st = &mut *self.classes[id].st.get();
            *(p as *mut *mut u8) = st.free;
            st.free = p;
            st.nfree += 1;
        }
        l.unlock();
    }

    /// Puts `n` blocks of class `id`, linked from `head` to `tail`, back on the class list.
    pub(crate) unsafe fn class_push_list(&self, id: usize, head: *mut u8, tail: *mut u8, n: usize) {
        let l = self.class_lock(id);
        l.lock();
        // SAFETY: as class_free.
        unsafe {
            let st = &mut *self.classes[id].st.get();
            *(tail as *mut *mut u8) = st.free;
            st.free = head;
            st.nfree += n;
        }
        l.unlock();
    }

    /// Fills `out[..want]` with blocks of class `id` (the list first, then carving, then a
    /// refill the variant's way). Returns how many it got: fewer than `want` only if memory
    /// ran out.
    pub(crate) unsafe fn pop_batch(&self, id: usize, out: *mut *mut u8, want: usize) -> usize {
        let l = self.class_lock(id);
        l.lock();
        let mut n = 0;
        // SAFETY: the class state is ours under its lock; carving stays inside the class's piece.
        unsafe {
            loop {
                let st = &mut *self.classes[id].st.get();
                while n < want && !st.free.is_null() {
                    *out.add(n) = st.free;
                    st.free = *(st.free as *mut *mut u8);
                    st.nfree -= 1;
                    n += 1;
                }
                let s = stride(id);
                while n < want && st.carve + s <= st.end {
                    let b = st.carve as *mut u8;
                    st.carve += s;
                    *out.add(n) = if is_slab(id) {
                        b
                    } else {
                        (b as *mut Hdr).write(Hdr {
                            size: payload(id),
                            tag: MAGIC | TAG_CLASS | (id << 8),
                        });
                        b.add(HDR)
                    };
                    n += 1;
                }
                if n == want || !self.replenish(id) {
                    break;
                }
            }
        }
        l.unlock();
        n
    }

    /// Gives class `id` a new piece to carve. Called and returns with the class lock held.
    unsafe fn replenish(&self, id: usize) -> bool {
        // SAFETY: lock discipline per variant (global before class, never the other way round);
        // the state is touched only under the class lock (the global one for baseline).
        unsafe {
            match self.variant {
                Variant::Baseline => match self.piece_locked(id) {
                    Some((a, b)) => {
                        self.install(id, a, b);
                        true
                    }
                    None => false,
                },
                Variant::Sharded => {
                    // The report's design: drop the class lock, carve under the global lock.
                    let cl = &self.classes[id].lock;
                    cl.unlock();
                    self.global.lock();
                    let piece = self.piece_locked(id);
                    cl.lock();
                    if let Some((a, b)) = piece {
                        self.install(id, a, b);
                    }
                    self.global.unlock();
                    piece.is_some()
                }
                Variant::Percls => {
                    let len = if is_slab(id) || stride(id) <= 1040 {
                        GRANULE
                    } else {
                        4 * GRANULE
                    };
                    let kind = if is_slab(id) { id as u8 + 1 } else { 0 };
                    let c = sys::take(len, kind, false);
                    if c.is_null() {
                        return false;
                    }
                    let st = &mut *self.classes[id].st.get();
                    (c as *mut Chunk).write(Chunk {
                        next: st.chunks,
                        len,
                    });
                    st.chunks = c as *mut Chunk;
                    let first = if is_slab(id) { stride(id) } else { HDR };
                    self.install(id, c as usize + first, c as usize + len);
                    true
                }
            }
        }
    }

    /// Makes `[a, b)` the class's carving range; what was left of the old one goes on the list.
    unsafe fn install(&self, id: usize, a: usize, b: usize) {
        // SAFETY: class lock held (caller); the old range is uncarved memory of this class.
        unsafe {
            let st = &mut *self.classes[id].st.get();
            let r = &self.classes[id].replenished;
            r.store(r.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            let s = stride(id);
            while st.carve + s <= st.end {
                let blk = st.carve as *mut u8;
                st.carve += s;
                let p = if is_slab(id) {
                    blk
                } else {
                    (blk as *mut Hdr).write(Hdr {
                        size: payload(id),
                        tag: MAGIC | TAG_CLASS | (id << 8),
                    });
                    blk.add(HDR)
                };
                *(p as *mut *mut u8) = st.free;
                st.free = p;
                st.nfree += 1;
            }
            st.carve = a;
            st.end = b;
        }
    }

    /// A piece for class `id` under the global lock: a new slab chunk, or 64 KiB of the
    /// current pool chunk.
    unsafe fn piece_locked(&self, id: usize) -> Option<(usize, usize)> {
        // SAFETY: global lock held (caller).
        unsafe {
            let g = &mut *self.g.get();
            if is_slab(id) {
                let c = sys::take(GRANULE, id as u8 + 1, true);
                if c.is_null() {
                    return None;
                }
                self.link_chunk(c, GRANULE);
                return Some((c as usize + stride(id), c as usize + GRANULE));
            }
            if g.end - g.bump < PIECE && !self.new_pool_chunk() {
                return None;
            }
            let a = g.bump;
            g.bump += PIECE;
            Some((a, a + PIECE))
        }
    }

    unsafe fn link_chunk(&self, c: *mut u8, len: usize) {
        // SAFETY: global lock held (caller); `c` is a fresh chunk of ours.
        unsafe {
            let g = &mut *self.g.get();
            (c as *mut Chunk).write(Chunk {
                next: g.chunks,
                len,
            });
            g.chunks = c as *mut Chunk;
        }
    }

    /// A new 1 MiB pool chunk to bump from; what is left of the old one becomes a best-fit
    /// free block. Global lock held.
    unsafe fn new_pool_chunk(&self) -> bool {
        let c = sys::take(POOL_CHUNK, 0, true);
        if c.is_null() {
            return false;
        }
        // SAFETY: global lock held (caller); the tail is unused memory of the old chunk.
        unsafe {
            let g = &mut *self.g.get();
            if g.end - g.bump >= HDR + 64 {
                let p = (g.bump + HDR) as *mut u8;
                (g.bump as *mut Hdr).write(Hdr {
                    size: g.end - g.bump - HDR,
                    tag: MAGIC | TAG_BEST,
                });
                self.bin_push(p);
            }
            self.link_chunk(c, POOL_CHUNK);
            g.bump = c as usize + size_of::<Chunk>();
            g.end = c as usize + POOL_CHUNK;
        }
        true
    }

    // -----------------------------------------------------------------------------------------
    // Best fit.

    #[inline]
    fn bin_of(s: usize) -> usize {
        if s < 4096 {
            s >> 4
        } else {
            (256 + (usize::BITS - 1 - s.leading_zeros()) as usize - 12).min(NBINS - 1)
        }
    }

    /// Lists best-fit block `p` (its header holds its size). Global lock held.
    unsafe fn bin_push(&self, p: *mut u8) {
        // SAFETY: global lock held (caller); `p` is a free best-fit block with a header.
        unsafe {
            let g = &mut *self.g.get();
            let s = (*(p.sub(HDR) as *const Hdr)).size;
            let b = Self::bin_of(s);
            *(p as *mut *mut u8) = g.bins[b];
            g.bins[b] = p;
            g.nonempty[b / 64] |= 1 << (b % 64);
        }
    }

    unsafe fn best_alloc(&self, size: usize) -> *mut u8 {
        let need = round16(size.max(16));
        let _l = Guard::new(&self.global);
        // SAFETY: global lock held; listed blocks are free best-fit blocks with headers.
        unsafe {
            let g = &mut *self.g.get();
            let mut b = Self::bin_of(need);
            loop {
                // Next non-empty bin at or after b.
                let mut w = b / 64;
                let mut bits = if w < g.nonempty.len() {
                    g.nonempty[w] & (!0u64 << (b % 64))
                } else {
                    0
                };
                while bits == 0 {
                    w += 1;
                    if w >= g.nonempty.len() {
                        break;
                    }
                    bits = g.nonempty[w];
                }
                if bits == 0 {
                    break;
                }
                b = w * 64 + bits.trailing_zeros() as usize;
                // Best fit among the first blocks of the bin.
                let mut link: *mut *mut u8 = &mut g.bins[b];
                let mut best: *mut *mut u8 = ptr::null_mut();
                let mut best_size = usize::MAX;
                let mut seen = 0;
                while !(*link).is_null() && seen < 32 {
                    let s = (*((*link).sub(HDR) as *const Hdr)).size;
                    if s >= need && s < best_size {
                        best = link;
                        best_size = s;
                        if s == need {
                            break;
                        }
                    }
                    link = *link as *mut *mut u8;
                    seen += 1;
                }
                if !best.is_null() {
                    let p = *best;
                    *best = *(p as *mut *mut u8);
                    if g.bins[b].is_null() {
                        g.nonempty[b / 64] &= !(1 << (b % 64));
                    }
                    if best_size - need >= HDR + 48 {
                        let h = p.add(need);
                        (h as *mut Hdr).write(Hdr {
                            size: best_size - need - HDR,
                            tag: MAGIC | TAG_BEST,
                        });
                        (*(p.sub(HDR) as *mut Hdr)).size = need;
                        self.bin_push(h.add(HDR));
                    }
                    return p;
                }
                b += 1;
                if b >= NBINS {
                    break;
                }
            }
            if g.end - g.bump < need + HDR && !self.new_pool_chunk() {
                return ptr::null_mut();
            }
            let h = g.bump as *mut Hdr;
            g.bump += need + HDR;
            h.write(Hdr {
                size: need,
                tag: MAGIC | TAG_BEST,
            });
            (h as *mut u8).add(HDR)
        }
    }

    // -----------------------------------------------------------------------------------------
    // Huge spans.

    unsafe fn huge_alloc(&self, size: usize) -> *mut u8 {
        let Some(len) = size
            .checked_add(HUGE_HEAD + GRANULE - 1)
            .filter(|l| *l <= isize::MAX as usize)
            .map(|l| l & !(GRANULE - 1))
        else {
            return ptr::null_mut();
        };
        let s = sys::take(len, 0, true);
        if s.is_null() {
            return s;
        }
        // SAFETY: `s` is a fresh span of `len` bytes; its head holds links, length and header.
        unsafe {
            let t = s as *mut Track;
            t.write(Track {
                prev: ptr::null_mut(),
                next: ptr::null_mut(),
                depth: len,
                _pad: 0,
            });
            (s.add(HUGE_HEAD - HDR) as *mut Hdr).write(Hdr {
                size: len - HUGE_HEAD,
                tag: MAGIC | TAG_HUGE,
            });
            if self.cached.is_none() {
                let _l = Guard::new(&self.global);
                let g = &mut *self.g.get();
                (*t).next = g.huge;
                if !g.huge.is_null() {
                    (*g.huge).prev = t;
                }
                g.huge = t;
            }
            s.add(HUGE_HEAD)
        }
    }

    unsafe fn huge_free(&self, p: *mut u8) {
        // SAFETY: `p` is a live huge payload; its span head is HUGE_HEAD bytes before it.
        unsafe {
            let t = p.sub(HUGE_HEAD) as *mut Track;
            if self.cached.is_none() {
                let _l = Guard::new(&self.global);
                let g = &mut *self.g.get();
                if (*t).prev.is_null() {
                    g.huge = (*t).next;
                } else {
                    (*(*t).prev).next = (*t).next;
                }
                if !(*t).next.is_null() {
                    (*(*t).next).prev = (*t).prev;
                }
            }
            sys::give_back(t as *mut u8, (*t).depth);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Scopes.

    unsafe fn alloc_tracked(&self, size: usize) -> *mut u8 {
        let Some(total) = size.checked_add(TRACK) else {
            return ptr::null_mut();
        };
        // SAFETY: the inner block is ours and `total` bytes long; the global lock guards the list.
        unsafe {
            let q = self.alloc_nonslab(total);
            if q.is_null() {
                return q;
            }
            let t = q as *mut Track;
            let _l = Guard::new(&self.global);
            let g = &mut *self.g.get();
            t.write(Track {
                prev: g.tracked_tail,
                next: ptr::null_mut(),
                depth: g.depth,
                _pad: 0,
            });
            if g.tracked_tail.is_null() {
                g.tracked_head = t;
            } else {
                (*g.tracked_tail).next = t;
            }
            g.tracked_tail = t;
            (q.add(TRACK - HDR) as *mut Hdr).write(Hdr {
                size: TRACK,
                tag: MAGIC | TAG_TRACKED,
            });
            q.add(TRACK)
        }
    }

    unsafe fn untrack(&self, t: *mut Track) {
        let _l = Guard::new(&self.global);
        // SAFETY: global lock held; `t` is a listed tracked block.
        unsafe {
            let g = &mut *self.g.get();
            if (*t).prev.is_null() {
                g.tracked_head = (*t).next;
            } else {
                (*(*t).prev).next = (*t).next;
            }
            if (*t).next.is_null() {
                g.tracked_tail = (*t).prev;
            } else {
                (*(*t).next).prev = (*t).prev;
            }
        }
    }

    pub(crate) fn begin_scope(&self) -> usize {
        let _l = Guard::new(&self.global);
        // SAFETY: global lock held.
        let g = unsafe { &mut *self.g.get() };
        g.depth += 1;
        self.scopes.store(g.depth, Ordering::Relaxed);
        g.depth
    }

    /// Frees every block allocated since the matching `begin_scope` and still live. Returns how
    /// many, or None when no scope is open.
    pub(crate) fn end_scope(&self) -> Option<usize> {
        let mut n = 0;
        let depth = {
            let _l = Guard::new(&self.global);
            // SAFETY: global lock held.
            let g = unsafe { &mut *self.g.get() };
            if g.depth == 0 {
                return None;
            }
            g.depth
        };
        loop {
            let t = {
                let _l = Guard::new(&self.global);
                // SAFETY: global lock held.
                let g = unsafe { &mut *self.g.get() };
                let t = g.tracked_tail;
                // SAFETY: listed blocks are live tracked blocks.
                if t.is_null() || unsafe { (*t).depth } < depth {
                    g.depth -= 1;
                    self.scopes.store(g.depth, Ordering::Relaxed);
                    return Some(n);
                }
                t
            };
            // SAFETY: `t` is a live tracked block of this scope; free unlinks it.
            unsafe { self.free((t as *mut u8).add(TRACK)) };
            self.live_blocks.fetch_sub(1, Ordering::Relaxed);
            self.frees.fetch_add(1, Ordering::Relaxed);
            n += 1;
        }
    }

    /// Gives back every chunk and span; all blocks of the pool are gone.
    ///
    /// # Safety
    /// No block of the pool is used again, and no other thread uses the pool meanwhile.
    pub(crate) unsafe fn reset(&self) {
        debug_assert!(self.cached.is_none());
        let _l = Guard::new(&self.global);
        // SAFETY: exclusive use (caller); every chunk listed was taken by this pool.
        unsafe {
            let g = &mut *self.g.get();
            let give = |mut c: *mut Chunk| {
                while !c.is_null() {
                    let next = (*c).next;
                    sys::give_back(c as *mut u8, (*c).len);
                    c = next;
                }
            };
            give(g.chunks);
            for cl in &self.classes {
                let st = &mut *cl.st.get();
                give(st.chunks);
                *st = ClassState {
                    free: ptr::null_mut(),
                    nfree: 0,
                    carve: 0,
                    end: 0,
                    chunks: ptr::null_mut(),
                };
            }
            let mut h = g.huge;
            while !h.is_null() {
                let next = (*h).next;
                sys::give_back(h as *mut u8, (*h).depth);
                h = next;
            }
            *g = GlobalState {
                bump: 0,
                end: 0,
                chunks: ptr::null_mut(),
                bins: [ptr::null_mut(); NBINS],
                nonempty: [0; NBINS.div_ceil(64)],
                huge: ptr::null_mut(),
                tracked_head: ptr::null_mut(),
                tracked_tail: ptr::null_mut(),
                depth: 0,
            };
        }
        self.scopes.store(0, Ordering::Relaxed);
        // Every live block was freed.
        let live = self.live_blocks.swap(0, Ordering::Relaxed);
        self.frees.fetch_add(live, Ordering::Relaxed);
    }

    /// Statistics of a pool without thread caches.
    pub(crate) fn own_stats(&self) -> Stats {
        Stats {
            allocs: self.allocs.load(Ordering::Relaxed),
            frees: self.frees.load(Ordering::Relaxed),
            reallocs: self.reallocs.load(Ordering::Relaxed),
            bytes_requested: self.requested.load(Ordering::Relaxed),
            threads: 0,
        }
    }

    /// Blocks on the class free lists (for tests and statistics).
    pub(crate) fn free_blocks(&self) -> usize {
        (0..N_CLASS)
            .map(|id| {
                let l = self.class_lock(id);
                let _g = Guard::new(l);
                // SAFETY: class lock held.
                unsafe { (*self.classes[id].st.get()).nfree }
            })
            .sum()
    }

    /// Lock acquisitions, contention and replenishments so far (exact when the pool is quiet).
    pub(crate) fn lock_counts(&self) -> LockCounts {
        let (global_locks, global_contended) = self.global.counts();
        let mut c = LockCounts {
            global_locks,
            global_contended,
            ..LockCounts::default()
        };
        for cl in &self.classes {
            if self.variant != Variant::Baseline {
                let (a, w) = cl.lock.counts();
                c.class_locks += a;
                c.class_contended += w;
            }
            c.replenishes += cl.replenished.load(Ordering::Relaxed);
        }
        c
    }

    /// Every lock of the pool, global first (fork handlers take them all, in this order).
    pub(crate) fn for_each_lock(&self, mut f: impl FnMut(&RawLock)) {
        f(&self.global);
        if self.variant != Variant::Baseline {
            for c in &self.classes {
                f(&c.lock);
            }
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.cached.is_none() {
            // SAFETY: dropping: nobody can use the pool's blocks any more (they borrow it).
            unsafe { self.reset() };
        }
    }
}
