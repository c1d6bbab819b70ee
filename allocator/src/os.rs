//! The OS layer: mmap, munmap, mremap and madvise, and nothing else. Every failure is a null
//! pointer or `false`, never a panic.

use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

pub const OS_PAGE: usize = 4096;

/// Bytes currently mapped by the allocator (arenas, huge blocks, metadata).
pub(crate) static MAPPED: AtomicU64 = AtomicU64::new(0);
pub(crate) static MMAP_CALLS: AtomicU64 = AtomicU64::new(0);
pub(crate) static MUNMAP_CALLS: AtomicU64 = AtomicU64::new(0);
/// Bytes given back to the OS with munmap or MADV_DONTNEED (cumulative).
pub(crate) static RETURNED: AtomicU64 = AtomicU64::new(0);

#[inline]
pub const fn align_up(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

/// Maps `size` bytes of fresh zeroed read/write memory, or null.
pub(crate) fn map(size: usize) -> *mut u8 {
    map_hint(ptr::null_mut(), size, false)
}

/// Maps `size` bytes near `hint` (a hint only: the kernel may place it elsewhere), or null.
/// `accounted`: without `MAP_NORESERVE`, so the kernel's overcommit policy judges the request as
/// it judges glibc's own mappings — a huge block larger than the machine can ever back (64 TiB)
/// is refused under the default heuristic mode, as glibc's malloc is. Arenas (4 MiB, touched
/// page by page) keep `MAP_NORESERVE`.
fn map_hint(hint: *mut u8, size: usize, accounted: bool) -> *mut u8 {
    let flags =
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if accounted { 0 } else { libc::MAP_NORESERVE };
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing (the hint is
    // only a hint, without MAP_FIXED) cannot overlap or invalidate any existing memory.
    let p = unsafe {
        libc::mmap(
            hint.cast(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    MMAP_CALLS.fetch_add(1, Ordering::Relaxed);
    if p == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    MAPPED.fetch_add(size as u64, Ordering::Relaxed);
    p.cast()
}

/// Unmaps `[p, p+size)`.
///
/// # Safety
/// The range must be a mapping (or part of one) made by this module, and nothing may use it
/// afterwards.
pub(crate) unsafe fn unmap(p: *mut u8, size: usize) {
    if size == 0 {
        return;
    }
    // SAFETY: by the caller's contract the range is ours and dead.
    unsafe { libc::munmap(p.cast(), size) };
    MUNMAP_CALLS.fetch_add(1, Ordering::Relaxed);
    MAPPED.fetch_sub(size as u64, Ordering::Relaxed);
    RETURNED.fetch_add(size as u64, Ordering::Relaxed);
}

/// Maps `size` bytes such that `result + offset` is aligned to `align` (a power of two ≥ the OS
/// page): an exact mapping if it comes out aligned, else one asked for at the aligned address
/// next to it, else by over-mapping and trimming (which needs `size + align` of address space
/// for a moment: under `ulimit -v` the first two are what still succeed). `accounted`: see
/// `map_hint`. Returns null on failure.
pub(crate) fn map_aligned(size: usize, align: usize, offset: usize, accounted: bool) -> *mut u8 {
    debug_assert!(align.is_power_of_two() && align >= OS_PAGE && size.is_multiple_of(OS_PAGE));
    if size > isize::MAX as usize {
        return ptr::null_mut();
    }
    // First try an exact-size mapping: consecutive mappings usually come out aligned.
    let p = map_hint(ptr::null_mut(), size, accounted);
    if p.is_null() {
        return p;
    }
    if (p as usize + offset).is_multiple_of(align) {
        return p;
    }
    // SAFETY: `p` is the mapping we just made and nothing else knows it.
    unsafe { unmap(p, size) };
    // The aligned addresses just below and above where the kernel put it (the space there was
    // free a moment ago, at least in part).
    let up = align_up(p as usize + offset, align) - offset;
    // (Not for alignments above an arena: those are huge blocks, over-mapped and accounted
    // like glibc's, so an alignment no machine could back fails as it does there.)
    let hints = if align <= crate::arena::ARENA_SIZE {
        [up, up.wrapping_sub(align)]
    } else {
        [0, 0]
    };
    for hint in hints {
        if hint == 0 || hint > isize::MAX as usize {
            continue;
        }
        let q = map_hint(hint as *mut u8, size, accounted);
        if q.is_null() {
            break;
        }
        if q as usize == hint {
            return q;
        }
        // SAFETY: `q` is the mapping we just made and nothing else knows it.
        unsafe { unmap(q, size) };
    }
    let Some(total) = size
        .checked_add(align)
        .filter(|&t| t <= isize::MAX as usize)
    else {
        return ptr::null_mut();
    };
    let raw = map_hint(ptr::null_mut(), total, accounted);
    if raw.is_null() {
        return raw;
    }
    let start = align_up(raw as usize + offset, align) - offset;
    let head = start - raw as usize;
    let tail = total - head - size;
    // SAFETY: head and tail are the unused ends of the mapping we just made.
    unsafe {
        unmap(raw, head);
        unmap((start + size) as *mut u8, tail);
    }
    start as *mut u8
}

/// Gives the pages of `[p, p+size)` back to the OS; they read as zero when touched again.
///
/// # Safety
/// The range must be page-aligned, inside one of our mappings, and hold nothing that is needed.
pub(crate) unsafe fn decommit(p: *mut u8, size: usize) {
    if size == 0 {
        return;
    }
    // SAFETY: by the caller's contract the range is ours and its contents are dead.
    unsafe { libc::madvise(p.cast(), size, libc::MADV_DONTNEED) };
    RETURNED.fetch_add(size as u64, Ordering::Relaxed);
}

/// Asks for transparent huge pages on `[p, p+size)` (THP is `madvise` on this machine).
///
/// # Safety
/// The range must be inside one of our mappings.
pub(crate) unsafe fn hint_huge_pages(p: *mut u8, size: usize) {
    // SAFETY: a hint on our own mapping; failure only means no huge pages.
    unsafe { libc::madvise(p.cast(), size, libc::MADV_HUGEPAGE) };
}

/// Resizes the mapping at `p` from `old` to `new` bytes without moving it. False if the pages
/// after it are taken.
///
/// # Safety
/// `[p, p+old)` must be one of our mappings.
pub(crate) unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    // SAFETY: without MREMAP_MAYMOVE the kernel either resizes in place or fails.
    let r = unsafe { libc::mremap(p.cast(), old, new, 0) };
    if r == libc::MAP_FAILED {
        return false;
    }
    if new > old {
        MAPPED.fetch_add((new - old) as u64, Ordering::Relaxed);
    } else {
        MAPPED.fetch_sub((old - new) as u64, Ordering::Relaxed);
        RETURNED.fetch_add((old - new) as u64, Ordering::Relaxed);
    }
    true
}

/// Moves the mapping `[p, p+old)` to a fresh region of `new` bytes whose start is aligned to
/// `align`, keeping the pages already faulted in (page tables move, data is not copied).
/// Returns the new start, or null (the old mapping is then untouched).
///
/// # Safety
/// `[p, p+old)` must be one of our mappings; on success it no longer exists.
pub(crate) unsafe fn remap_move_aligned(
    p: *mut u8,
    old: usize,
    new: usize,
    align: usize,
) -> *mut u8 {
    let dst = map_aligned(new, align, 0, true);
    if dst.is_null() {
        return dst;
    }
    // SAFETY: MREMAP_FIXED atomically replaces the reservation `dst` we own with the old pages.
    let r = unsafe {
        libc::mremap(
            p.cast(),
            old,
            new,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst.cast::<libc::c_void>(),
        )
    };
    if r == libc::MAP_FAILED {
        // SAFETY: `dst` is our reservation and unused.
        unsafe { unmap(dst, new) };
        return ptr::null_mut();
    }
    // The old range is gone, the new one was already counted by map_aligned.
    MAPPED.fetch_sub(old as u64, Ordering::Relaxed);
    dst
}

/// Moves the pages of `[src, src+len)` to `dst` (replacing whatever `dst` maps), keeping them
/// faulted in. False if the kernel refuses (e.g. the range spans two mappings).
///
/// # Safety
/// Both ranges must be ours, page-aligned, and hold nothing needed at `dst`.
pub(crate) unsafe fn move_pages(src: *mut u8, len: usize, dst: *mut u8) -> bool {
    // SAFETY: caller's contract; MREMAP_FIXED replaces our own pages at `dst`.
    let r = unsafe {
        libc::mremap(
            src.cast(),
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst.cast::<libc::c_void>(),
        )
    };
    if r == libc::MAP_FAILED {
        return false;
    }
    // The source range is gone; `dst` was already counted.
    MAPPED.fetch_sub(len as u64, Ordering::Relaxed);
    true
}
