//! The malloc family: size dispatch, the inlined fast paths, realloc and the aligned family.
//!
//! ```text
//!  malloc(n):  n ≤ 512      → class c = table[(n+15)/16]; pop heap.current[c].free  (fast path)
//!              n ≤ 1 MiB    → medium: boundary-tag chunk from the heap's bins
//!              else         → huge: own mapping (or the huge cache)
//!  free(p):    arena = (p-1) & ~(4 MiB-1); arena.small_owner == my heap → push on page free list
//!              otherwise: medium on the owner → coalesce; other owner → its remote list;
//!              huge → unmap or cache
//! ```

use crate::arena::{self, Kind, arena_of, is_arena};
use crate::heap;
use crate::huge;
use crate::medium::{self, MEDIUM_MAX, MEDIUM_MAX_ALIGN};
use crate::small::{self, SMALL_MAX, class_of};
use crate::tls;
use core::ptr;

/// Allocates `size` bytes aligned to 16. Returns null when out of memory. `malloc(0)` returns a
/// unique pointer.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    if size <= SMALL_MAX {
        let c = class_of(size);
        // SAFETY: tls::get() is this thread's heap or a sentinel; c < 16.
        let p = unsafe { small::alloc_fast(tls::get(), c) };
        if !p.is_null() {
            return p;
        }
        return small_slow(c);
    }
    large(size, 16)
}

#[cold]
#[inline(never)]
fn small_slow(c: usize) -> *mut u8 {
    tls::with_heap(|h| {
        if h.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: with_heap hands us a heap we own for the call.
        unsafe { small::alloc_slow(h, c) }
    })
}

#[inline(never)]
fn large(size: usize, align: usize) -> *mut u8 {
    if size <= MEDIUM_MAX && align <= MEDIUM_MAX_ALIGN {
        let h = tls::get();
        if heap::is_real(h) {
            // SAFETY: the calling thread owns its bound heap.
            return unsafe { medium::alloc(h, size, align) };
        }
        tls::with_heap(|h| {
            if h.is_null() {
                return ptr::null_mut();
            }
            // SAFETY: with_heap hands us a heap we own for the call.
            unsafe { medium::alloc(h, size, align) }
        })
    } else {
        huge::alloc(size, align, false)
    }
}

/// Frees a block from any fancy allocation function. Null is ignored.
///
/// # Safety
/// `p` must be null or a live block returned by this allocator, not freed since.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    if p.is_null() {
        return;
    }
    let a = arena_of(p);
    let h = tls::get();
    // SAFETY: is_arena proves `a` is a live arena header of ours before it is read; a Small
    // arena whose owner is our heap means the block is ours to free locally.
    unsafe {
        if is_arena(a) && (*a).small_owner == h {
            small::free_checked(h, a, p);
            return;
        }
        free_generic(p, a, h);
    }
}

#[inline(never)]
unsafe fn free_generic(p: *mut u8, a: *mut arena::Arena, h: *mut heap::Heap) {
    if !is_arena(a) {
        crate::fatal::fatal_ptr("free(): invalid pointer", p, "not allocated by fancy");
    }
    // A thread that only frees (a consumer) gets a heap too, so its counters stay per-thread
    // instead of one contended global atomic.
    let h = if h == heap::unbound() {
        let b = tls::bind();
        if b.is_null() { h } else { b }
    } else {
        h
    };
    // SAFETY: `a` is one of our arenas (checked); `p` is a live block of it (caller).
    unsafe {
        match (*a).kind {
            Kind::Small => {
                let owner = (*a).small_owner;
                if owner == h {
                    // A heap this thread adopted between the fast-path test and the bind above.
                    return small::free_checked(h, a, p);
                }
                small::check_foreign_free(h, a, p, "free(): invalid pointer");
                if heap::is_real(h) {
                    small::free_foreign(h, a, p)
                } else {
                    heap::remote_free(owner, h, p)
                }
            }
            Kind::Medium => {
                if (*a).heap == h {
                    medium::free_local(h, a, p)
                } else {
                    medium::check_free(p, "free(): invalid pointer");
                    heap::remote_free((*a).heap, h, p)
                }
            }
            Kind::Huge => {
                if p as usize != a as usize + (*a).offset {
                    crate::fatal::fatal_ptr(
                        "free(): invalid pointer",
                        p,
                        "inside a huge block, not its start",
                    );
                }
                huge::free(a)
            }
            Kind::Free => crate::fatal::fatal_ptr(
                "free(): invalid pointer",
                p,
                "into a free arena (freed before?)",
            ),
        }
    }
}

/// Allocates `n * size` zeroed bytes; null on overflow or out of memory.
pub fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        return ptr::null_mut();
    };
    if total > MEDIUM_MAX {
        return huge::alloc(total, 16, true);
    }
    let p = malloc(total);
    if !p.is_null() {
        // SAFETY: `p` has at least `total` bytes.
        unsafe { ptr::write_bytes(p, 0, total) };
    }
    p
}

/// Allocates `size` bytes aligned to `align`, any power of two. Null if `align` is not a power
/// of two or memory runs out.
pub fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    if align <= 16 {
        return malloc(size);
    }
    if size <= SMALL_MAX
        && align <= SMALL_MAX
        && let Some(c) = small::class_for_aligned(size, align)
    {
        // SAFETY: this thread's heap or a sentinel; c < 16.
        let p = unsafe { small::alloc_fast(tls::get(), c) };
        if !p.is_null() {
            return p;
        }
        return small_slow(c);
    }
    large(size.max(SMALL_MAX + 1), align)
}

/// Usable bytes of a block (≥ the size asked for). 0 for null or a pointer that is not ours.
///
/// # Safety
/// `p` must be null, foreign, or a live block of this allocator.
pub unsafe fn usable_size(p: *const u8) -> usize {
    if p.is_null() {
        return 0;
    }
    let a = arena_of(p);
    if !is_arena(a) {
        return 0;
    }
    // SAFETY: our arena; `p` live (caller).
    unsafe {
        match (*a).kind {
            Kind::Small => small::usable(a, p),
            Kind::Medium => medium::usable(p),
            Kind::Huge => huge::usable(a, p),
            Kind::Free => 0,
        }
    }
}

/// Resizes a block, in place when it can (same class, a free neighbour, mremap). glibc's
/// semantics: `realloc(null, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and returns null.
/// On failure returns null and leaves `p` alone.
///
/// # Safety
/// `p` must be null or a live block of this allocator.
pub unsafe fn realloc(p: *mut u8, n: usize) -> *mut u8 {
    if p.is_null() {
        return malloc(n);
    }
    if n == 0 {
        // SAFETY: caller's contract.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    let a = arena_of(p);
    if !is_arena(a) {
        crate::fatal::fatal_ptr("realloc(): invalid pointer", p, "not allocated by fancy");
    }
    // SAFETY: our arena; the block is checked to be live before its size is read.
    unsafe {
        match (*a).kind {
            Kind::Small => {
                small::check_foreign_free(tls::get(), a, p, "realloc(): invalid pointer")
            }
            Kind::Medium => medium::check_free(p, "realloc(): invalid pointer"),
            Kind::Huge if p as usize != a as usize + (*a).offset => crate::fatal::fatal_ptr(
                "realloc(): invalid pointer",
                p,
                "inside a huge block, not its start",
            ),
            _ => {}
        }
        let old = usable_size(p);
        match (*a).kind {
            Kind::Small => {
                if n <= old && (n > old / 2 || old <= 32) {
                    return p;
                }
            }
            Kind::Medium => {
                if n <= MEDIUM_MAX
                    && n > SMALL_MAX / 2
                    && (*a).heap == tls::get()
                    && medium::realloc_in_place((*a).heap, p, n)
                {
                    return p;
                }
            }
            Kind::Huge => {
                if n > MEDIUM_MAX {
                    let q = huge::realloc(a, p, n);
                    if !q.is_null() {
                        return q;
                    }
                } else if n <= old && n > old / 2 {
                    return p;
                }
            }
            Kind::Free => crate::fatal::fatal_ptr(
                "realloc(): invalid pointer",
                p,
                "into a free arena (freed before?)",
            ),
        }
        let q = malloc(n);
        if q.is_null() {
            return q;
        }
        ptr::copy_nonoverlapping(p, q, old.min(n));
        free(p);
        q
    }
}
