//! `unsafe impl GlobalAlloc` for Rust programs: `#[global_allocator] static A: fancy::Fancy = fancy::Fancy;`

use core::alloc::{GlobalAlloc, Layout};

/// The fancy allocator as a Rust global allocator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fancy;

// SAFETY: every method returns memory of at least `layout.size()` bytes aligned to
// `layout.align()` (or null), and frees only what these methods returned.
unsafe impl GlobalAlloc for Fancy {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= 16 {
            crate::malloc(layout.size())
        } else {
            crate::aligned_alloc(layout.align(), layout.size())
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` of this allocator (GlobalAlloc contract).
        unsafe { crate::free(ptr) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= 16 {
            crate::calloc(1, layout.size())
        } else {
            let p = crate::aligned_alloc(layout.align(), layout.size());
            if !p.is_null() {
                // SAFETY: `p` has `layout.size()` bytes.
                unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
            }
            p
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= 16 {
            // SAFETY: `ptr` is ours and live; new_size > 0 (GlobalAlloc contract).
            return unsafe { crate::realloc(ptr, new_size) };
        }
        let q = crate::aligned_alloc(layout.align(), new_size);
        if !q.is_null() {
            // SAFETY: both blocks are live and at least min(old, new) bytes long.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
                crate::free(ptr);
            }
        }
        q
    }
}
