//! `mempool`: the AllocatorBench research memory pool, rebuilt for alloclab.
//!
//! * [`Pool`]: a pool of its own with one [`Strategy`] and one [`Variant`], scopes
//!   ([`Pool::begin_scope`] / [`Pool::end_scope`]), [`Pool::reset`] and statistics.
//! * [`global`]: the three process-wide pools (hybrid routing, thread caches), one per
//!   [`Variant`], as C-like functions — what the replayer adapters and the preload library use.
//! * [`PoolAlloc`]: a process-wide pool as an `allocator-api2` allocator (and a `GlobalAlloc`);
//!   `&Pool` is one too.
//!
//! Memory comes from one address-space reservation made with `mmap` (never from malloc), in
//! 1 MiB pool chunks and 64 KiB slab chunks. See README.md for the design.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod api2;
pub mod global;
mod pool;
mod sys;
mod tcache;

use core::sync::atomic::Ordering;

pub use api2::PoolAlloc;
pub use pool::{HUGE_MIN, POOL_CHUNK};
pub use sys::GRANULE as SLAB_CHUNK;

/// How a pool serves a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Every request from best-fit free lists over 1 MiB pool chunks (huge ones get a span).
    BestFit,
    /// Requests up to 256 B from fixed-size slabs of 32, 128 or 256 B; larger ones best-fit.
    FixedSize,
    /// Requests up to 4096 B from one pool per multiple of 16 B; larger ones best-fit.
    PoolBased,
    /// Requests up to 4096 B from power-of-two classes 32…4096 B; larger ones best-fit.
    Segregated,
    /// The report's routing: slabs up to 256 B, segregated classes to 4096 B, best-fit above.
    Hybrid,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::BestFit,
        Strategy::FixedSize,
        Strategy::PoolBased,
        Strategy::Segregated,
        Strategy::Hybrid,
    ];
}

/// How a pool's size classes are locked and replenished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// One lock for everything.
    Baseline,
    /// A lock per class; an empty class is refilled under the global lock (the report's design).
    Sharded,
    /// A lock per class; each class takes its own chunks (no global lock to refill).
    Percls,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Baseline, Variant::Sharded, Variant::Percls];

    /// `baseline`, `sharded` or `percls`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Sharded => "sharded",
            Variant::Percls => "percls",
        }
    }

    /// The variant called `s` (as [`name`](Self::name)).
    pub fn from_name(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == s)
    }

    #[inline]
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Allocation statistics: of one thread, of a pool, or merged over threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Allocations (malloc, calloc, aligned, and realloc of null).
    pub allocs: u64,
    /// Frees (including blocks freed by `end_scope`).
    pub frees: u64,
    /// Reallocations of a live block.
    pub reallocs: u64,
    /// Bytes asked for by allocations and reallocations.
    pub bytes_requested: u64,
    /// Threads whose counts are included (0 for a [`Pool`], which counts pool-wide).
    pub threads: u64,
}

impl Stats {
    /// Blocks allocated and not freed.
    pub fn live(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
    }
}

/// How often a pool's locks were taken and found taken, and how often its classes were
/// replenished: what tells the variants apart (each lock counts its own acquisitions; exact
/// when the pool is quiet). Reading them takes no lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockCounts {
    /// Acquisitions of the per-class locks (0 for `baseline`, whose classes use the global lock).
    pub class_locks: u64,
    /// Of those, the ones that found the lock taken.
    pub class_contended: u64,
    /// Acquisitions of the pool's global lock (every class operation for `baseline`; best fit,
    /// huge blocks, scopes and — for `sharded` — replenishment otherwise).
    pub global_locks: u64,
    /// Of those, the ones that found the lock taken.
    pub global_contended: u64,
    /// Times a class got a new piece of memory to carve (under the global lock for
    /// `baseline` and `sharded`; from its own chunk for `percls`).
    pub replenishes: u64,
}

/// Bytes of the reservation made usable so far by all pools, and bytes given back since.
pub fn footprint() -> (usize, usize) {
    sys::footprint()
}

/// Whether `p` points into memory of any mempool pool.
pub fn owns(p: *const u8) -> bool {
    sys::owns(p)
}

/// Writes `msg` to stderr and aborts (no allocation).
pub(crate) fn fatal(msg: &[u8]) -> ! {
    // SAFETY: writing a valid buffer to fd 2, then aborting.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::abort()
    }
}

/// A pool of its own: one strategy, one variant, no thread caches (a pool is shared by the
/// threads that use it, as a thread-local pool of the original would be by one).
pub struct Pool {
    core: pool::Core,
}

impl Pool {
    pub fn new(strategy: Strategy, variant: Variant) -> Pool {
        Pool {
            core: pool::Core::new(strategy, variant, None),
        }
    }

    pub fn strategy(&self) -> Strategy {
        self.core.strategy
    }

    pub fn variant(&self) -> Variant {
        self.core.variant
    }

    /// A block of at least `size` bytes, 16-byte aligned; null if memory ran out.
    pub fn alloc(&self, size: usize) -> *mut u8 {
        self.alloc_aligned(size, 16)
    }

    /// A block of at least `size` bytes aligned to `align`; null if memory ran out or `align`
    /// is not a power of two.
    pub fn alloc_aligned(&self, size: usize, align: usize) -> *mut u8 {
        if !align.is_power_of_two() {
            return core::ptr::null_mut();
        }
        // SAFETY: `align` is a power of two.
        let p = unsafe { self.core.alloc(size, align) };
        if !p.is_null() {
            self.core.allocs.fetch_add(1, Ordering::Relaxed);
            self.core.live_blocks.fetch_add(1, Ordering::Relaxed);
            self.core
                .requested
                .fetch_add(size as u64, Ordering::Relaxed);
        }
        p
    }

    /// Frees `p` (null does nothing).
    ///
    /// # Safety
    /// `p` is null or a live block of this pool, not used afterwards.
    pub unsafe fn free(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        // SAFETY: caller's contract.
        unsafe { self.core.free(p) };
        self.core.frees.fetch_add(1, Ordering::Relaxed);
        self.core.live_blocks.fetch_sub(1, Ordering::Relaxed);
    }

    /// Resizes `p` to `size` bytes (contents kept up to the smaller size). Null `p` allocates;
    /// `size` 0 frees and returns null; on failure returns null and `p` stays live.
    ///
    /// # Safety
    /// `p` is null or a live block of this pool; unless null is returned, it is not used again.
    pub unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        if p.is_null() {
            return self.alloc(size);
        }
        if size == 0 {
            // SAFETY: caller's contract.
            unsafe { self.free(p) };
            return core::ptr::null_mut();
        }
        // SAFETY: caller's contract.
        let q = unsafe { self.core.realloc(p, size, 16) };
        if !q.is_null() {
            self.core.reallocs.fetch_add(1, Ordering::Relaxed);
            self.core
                .requested
                .fetch_add(size as u64, Ordering::Relaxed);
        }
        q
    }

    /// Usable bytes of `p` (at least what was asked for).
    ///
    /// # Safety
    /// `p` is a live block of this pool.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: caller's contract.
        unsafe { self.core.usable(p) }
    }

    /// Opens a scope: blocks allocated from now on (by any thread) until the matching
    /// [`end_scope`](Self::end_scope) are freed by it if still live. Scopes nest; returns the
    /// new depth.
    pub fn begin_scope(&self) -> usize {
        self.core.begin_scope()
    }

    /// Closes the innermost scope, freeing its live blocks; returns how many it freed, or None
    /// if no scope was open.
    ///
    /// Pointers to those blocks must not be used afterwards.
    pub fn end_scope(&self) -> Option<usize> {
        self.core.end_scope()
    }

    /// Frees every block and gives every chunk back; the pool is as new.
    pub fn reset(&mut self) {
        // SAFETY: `&mut self`: no other thread uses the pool, and no collection borrows it.
        unsafe { self.core.reset() }
    }

    /// The pool's statistics.
    pub fn stats(&self) -> Stats {
        self.core.own_stats()
    }

    /// The pool's lock and replenishment counts.
    pub fn lock_counts(&self) -> LockCounts {
        self.core.lock_counts()
    }

    /// Blocks on the pool's class free lists.
    pub fn free_class_blocks(&self) -> usize {
        self.core.free_blocks()
    }
}
