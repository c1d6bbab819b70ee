//! What the pool asks of the OS: one address-space reservation that every chunk is cut from (so
//! "is this pointer ours" is a range check), a byte per 64 KiB granule saying what kind of chunk
//! covers it, and a futex lock. Nothing here allocates.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Chunk granularity: slab chunks are exactly one granule, every chunk starts on one.
pub const GRANULE: usize = 64 << 10;
const GRANULE_SHIFT: u32 = 16;
/// Address space reserved at first use (PROT_NONE: it costs nothing until a chunk is taken).
const RESERVE: usize = 1 << 38;
const MAP_LEN: usize = RESERVE >> GRANULE_SHIFT;

// ---------------------------------------------------------------------------------------------
// A futex lock (std's Mutex would do, but this one has try_lock without poisoning and can be
// released in a fork child).

/// A lock with no data: spin briefly, then sleep on a futex. It counts its acquisitions and
/// the ones that found it taken (the pool's contention figures, [`crate::LockCounts`]).
pub struct RawLock {
    state: AtomicU32,
    /// Acquisitions that found the lock taken (entered the slow path).
    contended: AtomicU64,
    /// Acquisitions. Written only by the holder (a load and a store, no read-modify-write: the
    /// line is already the holder's), so counting costs next to nothing.
    acquired: AtomicU64,
}

impl RawLock {
    pub const fn new() -> RawLock {
        RawLock {
            state: AtomicU32::new(0),
            contended: AtomicU64::new(0),
            acquired: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn lock(&self) {
        if self
            .state
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        self.held();
    }

    #[inline]
    fn held(&self) {
        let n = self.acquired.load(Ordering::Relaxed);
        self.acquired.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    #[cold]
    fn lock_slow(&self) {
        self.contended.fetch_add(1, Ordering::Relaxed);
        for _ in 0..64 {
            if self.state.load(Ordering::Relaxed) == 0
                && self
                    .state
                    .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            core::hint::spin_loop();
        }
        while self.state.swap(2, Ordering::Acquire) != 0 {
            // SAFETY: FUTEX_WAIT on an aligned u32 we own; a spurious wake-up is handled by the loop.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.state.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    2u32,
                    ptr::null::<libc::timespec>(),
                );
            }
        }
    }

    /// (acquisitions, acquisitions that found the lock taken) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.acquired.load(Ordering::Relaxed),
            self.contended.load(Ordering::Relaxed),
        )
    }

    #[inline]
    pub fn try_lock(&self) -> bool {
        let ok = self
            .state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if ok {
            self.held();
        }
        ok
    }

    #[inline]
    pub fn unlock(&self) {
        if self.state.swap(0, Ordering::Release) == 2 {
            // SAFETY: FUTEX_WAKE on an aligned u32 we own.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.state.as_ptr(),
                    libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                    1u32,
                );
            }
        }
    }

    /// In a fork child: the only thread left; whoever held the lock is gone.
    pub fn reset_in_child(&self) {
        self.state.store(0, Ordering::Relaxed);
    }
}

impl Default for RawLock {
    fn default() -> Self {
        RawLock::new()
    }
}

/// Holds a [`RawLock`] until dropped.
pub struct Guard<'a>(&'a RawLock);

impl<'a> Guard<'a> {
    #[inline]
    pub fn new(l: &'a RawLock) -> Guard<'a> {
        l.lock();
        Guard(l)
    }
}

impl Drop for Guard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.unlock();
    }
}

// ---------------------------------------------------------------------------------------------
// The reservation.

struct Region {
    /// Start of the reservation; 0 until reserved.
    base: AtomicUsize,
    /// The granule map (one byte per granule).
    map: AtomicUsize,
    /// Bytes of the reservation handed out fresh so far.
    bump: AtomicUsize,
    /// 0 not reserved, 1 reserving, 2 reserved, 3 failed.
    state: AtomicU32,
    /// Returned spans (a singly linked list through their first 16 bytes), under `lock`.
    spans: UnsafeCell<*mut Span>,
    nspans: AtomicUsize,
    lock: RawLock,
    /// Bytes made readable/writable (fresh chunks) and bytes currently given back.
    mapped: AtomicUsize,
    returned: AtomicUsize,
}

#[repr(C)]
struct Span {
    next: *mut Span,
    len: usize,
}

// SAFETY: `spans` is only touched under `lock`; the rest are atomics.
unsafe impl Sync for Region {}

static REGION: Region = Region {
    base: AtomicUsize::new(0),
    map: AtomicUsize::new(0),
    bump: AtomicUsize::new(0),
    state: AtomicU32::new(0),
    spans: UnsafeCell::new(ptr::null_mut()),
    nspans: AtomicUsize::new(0),
    lock: RawLock::new(),
    mapped: AtomicUsize::new(0),
    returned: AtomicUsize::new(0),
};

/// Reserves the address space on first call; false if the OS refused.
#[inline]
fn ready() -> bool {
    REGION.state.load(Ordering::Acquire) == 2 || reserve()
}

#[cold]
fn reserve() -> bool {
    loop {
        match REGION
            .state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => break,
            Err(2) => return true,
            Err(3) => return false,
            Err(_) => core::hint::spin_loop(),
        }
    }
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: fresh anonymous mappings, no address hint; results checked.
    let (base, map) = unsafe {
        // One extra granule so the base can be rounded up to a granule boundary.
        let b = libc::mmap(
            ptr::null_mut(),
            RESERVE + GRANULE,
            libc::PROT_NONE,
            flags,
            -1,
            0,
        );
        let m = libc::mmap(
            ptr::null_mut(),
            MAP_LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        );
        (b, m)
    };
    if base == libc::MAP_FAILED || map == libc::MAP_FAILED {
        REGION.state.store(3, Ordering::Release);
        return false;
    }
    let aligned = (base as usize + GRANULE - 1) & !(GRANULE - 1);
    REGION.base.store(aligned, Ordering::Relaxed);
    REGION.map.store(map as usize, Ordering::Relaxed);
    REGION.state.store(2, Ordering::Release);
    true
}

/// Whether `p` lies in the pool's reservation (any pool, any variant).
#[inline]
pub fn owns(p: *const u8) -> bool {
    let base = REGION.base.load(Ordering::Relaxed);
    base != 0 && (p as usize).wrapping_sub(base) < RESERVE
}

/// The granule-map byte of `p` (`p` must be ours): 0 for chunks whose blocks carry headers,
/// 1 + slab index for slab chunks.
#[inline]
pub fn kind_of(p: *const u8) -> u8 {
    let base = REGION.base.load(Ordering::Relaxed);
    let i = ((p as usize) - base) >> GRANULE_SHIFT;
    let map = REGION.map.load(Ordering::Relaxed) as *const u8;
    // SAFETY: `p` is inside the reservation, so `i < MAP_LEN`; the map is mapped read/write.
    unsafe { *map.add(i) }
}

fn set_kind(start: usize, len: usize, kind: u8) {
    let base = REGION.base.load(Ordering::Relaxed);
    let map = REGION.map.load(Ordering::Relaxed) as *mut u8;
    let first = (start - base) >> GRANULE_SHIFT;
    // SAFETY: [start, start+len) is a chunk inside the reservation, so its granules index the map.
    unsafe { ptr::write_bytes(map.add(first), kind, len >> GRANULE_SHIFT) };
}

/// A fresh chunk of `len` bytes (a multiple of [`GRANULE`]) cut from the reservation without
/// any lock (an atomic bump), marked `kind` in the granule map. Null when exhausted.
pub fn take_fresh(len: usize, kind: u8) -> *mut u8 {
    debug_assert!(len.is_multiple_of(GRANULE) && len > 0);
    if !ready() {
        return ptr::null_mut();
    }
    let off = REGION.bump.fetch_add(len, Ordering::Relaxed);
    if off > RESERVE - len.min(RESERVE) {
        return ptr::null_mut();
    }
    let p = REGION.base.load(Ordering::Relaxed) + off;
    // SAFETY: [p, p+len) lies inside our PROT_NONE reservation and belongs to no one else.
    let r = unsafe { libc::mprotect(p as *mut _, len, libc::PROT_READ | libc::PROT_WRITE) };
    if r != 0 {
        return ptr::null_mut();
    }
    REGION.mapped.fetch_add(len, Ordering::Relaxed);
    set_kind(p, len, kind);
    p as *mut u8
}

/// Tries the returned spans first (first fit, the rest of the span stays listed), then a fresh
/// chunk. With `wait == false` the span list is skipped if another thread holds it.
pub fn take(len: usize, kind: u8, wait: bool) -> *mut u8 {
    if REGION.nspans.load(Ordering::Relaxed) > 0 && (wait || REGION.lock.try_lock()) {
        if wait {
            REGION.lock.lock();
        }
        // SAFETY: the span list is ours under the lock; each span is a returned, still
        // read/write part of the reservation whose first 16 bytes hold its `Span`.
        let found = unsafe {
            let mut link: *mut *mut Span = REGION.spans.get();
            let mut found = ptr::null_mut();
            while !(*link).is_null() {
                let s = *link;
                if (*s).len >= len {
                    if (*s).len == len {
                        *link = (*s).next;
                        REGION.nspans.fetch_sub(1, Ordering::Relaxed);
                    } else {
                        let rest = (s as *mut u8).add(len) as *mut Span;
                        rest.write(Span {
                            next: (*s).next,
                            len: (*s).len - len,
                        });
                        *link = rest;
                    }
                    found = s as *mut u8;
                    break;
                }
                link = &raw mut (*s).next;
            }
            found
        };
        REGION.lock.unlock();
        if !found.is_null() {
            REGION.returned.fetch_sub(len, Ordering::Relaxed);
            set_kind(found as usize, len, kind);
            // The span header is the only byte written since it was given back.
            // SAFETY: the span is ours now and at least 16 bytes long.
            unsafe { ptr::write_bytes(found, 0, size_of::<Span>()) };
            return found;
        }
    }
    take_fresh(len, kind)
}

/// Gives a chunk back: its pages return to the OS (they read as zero when reused) and the
/// address range is kept for [`take`].
///
/// # Safety
/// `[p, p+len)` is a chunk from [`take`]/[`take_fresh`] that nothing uses any more.
pub unsafe fn give_back(p: *mut u8, len: usize) {
    // SAFETY: the caller gives us the whole chunk; it stays mapped read/write.
    unsafe {
        libc::madvise(p.cast(), len, libc::MADV_DONTNEED);
        let _g = Guard::new(&REGION.lock);
        let s = p as *mut Span;
        s.write(Span {
            next: *REGION.spans.get(),
            len,
        });
        *REGION.spans.get() = s;
    }
    REGION.nspans.fetch_add(1, Ordering::Relaxed);
    REGION.returned.fetch_add(len, Ordering::Relaxed);
}

/// Bytes of the reservation made usable so far, and bytes of those given back to the OS.
pub fn footprint() -> (usize, usize) {
    (
        REGION.mapped.load(Ordering::Relaxed),
        REGION.returned.load(Ordering::Relaxed),
    )
}

/// For fork handlers: the span-list lock.
pub fn region_lock() -> &'static RawLock {
    &REGION.lock
}
