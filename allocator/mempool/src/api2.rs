//! The pools as allocators for collections: `allocator-api2`'s `Allocator` (usable with
//! `allocator_api2::vec::Vec`, hashbrown's `HashMap` with its `allocator-api2` feature, …) for a
//! process-wide pool ([`PoolAlloc`]) and for a [`Pool`] of one's own (`&Pool`), and
//! `GlobalAlloc` for a process-wide pool.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator};

use crate::{Pool, Variant, global};

/// A process-wide pool of one variant, as an allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolAlloc(pub Variant);

fn dangling(layout: Layout) -> NonNull<[u8]> {
    // An aligned, non-null address for a zero-sized block (never dereferenced, never freed).
    let p = ptr::without_provenance_mut::<u8>(layout.align());
    // SAFETY: `align()` is never 0.
    NonNull::slice_from_raw_parts(unsafe { NonNull::new_unchecked(p) }, 0)
}

fn block(p: *mut u8, len: usize) -> Result<NonNull<[u8]>, AllocError> {
    NonNull::new(p)
        .map(|p| NonNull::slice_from_raw_parts(p, len))
        .ok_or(AllocError)
}

// SAFETY: blocks are valid until deallocated, never handed out twice, and any copy of a
// PoolAlloc of the same variant frees what another allocated (they share the pool).
unsafe impl Allocator for PoolAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        block(
            global::aligned_alloc(self.0, layout.align().max(16), layout.size()),
            layout.size(),
        )
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: `p` was allocated by this pool with a non-zero size (trait contract).
            unsafe { global::free(self.0, p.as_ptr()) }
        }
    }

    unsafe fn grow(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate(new);
        }
        // SAFETY: `p` is a live block of this pool (trait contract); realloc keeps it on failure.
        let q =
            unsafe { global::realloc_aligned(self.0, p.as_ptr(), new.size(), new.align().max(16)) };
        block(q, new.size())
    }

    unsafe fn shrink(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() == 0 {
            // SAFETY: as deallocate.
            unsafe { self.deallocate(p, old) };
            return Ok(dangling(new));
        }
        // SAFETY: as grow.
        let q =
            unsafe { global::realloc_aligned(self.0, p.as_ptr(), new.size(), new.align().max(16)) };
        block(q, new.size())
    }
}

// SAFETY: as the Allocator impl; GlobalAlloc never asks for zero bytes.
unsafe impl GlobalAlloc for PoolAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        global::aligned_alloc(self.0, layout.align().max(16), layout.size())
    }
    unsafe fn dealloc(&self, p: *mut u8, _: Layout) {
        // SAFETY: `p` came from `alloc` (trait contract).
        unsafe { global::free(self.0, p) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        // SAFETY: `p` is live, `size` non-zero (trait contract).
        unsafe { global::realloc_aligned(self.0, p, size, layout.align().max(16)) }
    }
}

// SAFETY: as PoolAlloc's; the borrow keeps the pool alive (and un-reset) while blocks exist.
unsafe impl Allocator for &Pool {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        block(
            self.alloc_aligned(layout.size(), layout.align().max(16)),
            layout.size(),
        )
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: `p` was allocated by this pool with a non-zero size (trait contract).
            unsafe { self.free(p.as_ptr()) }
        }
    }
}
