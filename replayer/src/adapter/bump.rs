//! `bump`: never frees. Each replay thread carves blocks out of its own ring (a private mapping
//! of at least 256 KiB and 4× the plan's largest request, mapped and prefaulted when the thread
//! attaches, before the baseline RSS is read) and wraps around when it reaches the end, so a
//! long trace does not need its total bytes in RAM, the replay takes no page fault, and a small
//! ring stays in cache. Live blocks are overwritten after a wrap: nobody reads them (the
//! replay only writes), so this is a floor — a loop with one cheap call per op — that shows
//! what the harness itself costs, not an allocator to compare memory with.

use std::cell::Cell;
use std::ptr;

use super::{AdapterContext, AllocSpec, AllocStats, Allocator};
use crate::error::ReplayError;

const HEADER: usize = 16;

thread_local! {
    /// This thread's ring: (start, cursor, end); null until the first allocation.
    static RING: Cell<(*mut u8, *mut u8, *mut u8)> =
        const { Cell::new((ptr::null_mut(), ptr::null_mut(), ptr::null_mut())) };
}

/// The bump "allocator".
pub struct Bump {
    ring_bytes: usize,
}

impl Bump {
    /// Sizes the rings for `ctx.max_request`.
    pub fn open(_: &AllocSpec, ctx: &AdapterContext) -> Result<Bump, ReplayError> {
        let need = (ctx.max_request as usize)
            .saturating_mul(4)
            .saturating_add(64 << 10);
        Ok(Bump {
            ring_bytes: need.max(256 << 10).next_power_of_two(),
        })
    }

    /// Maps (and prefaults) this thread's ring if it has none; false if the kernel refuses.
    #[cold]
    fn map_ring(&self) -> bool {
        if !RING.get().0.is_null() {
            return true;
        }
        match crate::mem::map_anon(self.ring_bytes, true) {
            Some(p) => {
                // SAFETY: one past the end of the mapping just made.
                let end = unsafe { p.add(self.ring_bytes) };
                RING.set((p, p, end));
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    fn carve(&self, align: usize, size: usize) -> *mut u8 {
        let (start, cur, end) = RING.get();
        if start.is_null() {
            if !self.map_ring() {
                return ptr::null_mut();
            }
            return self.carve(align, size);
        }
        let fit = |from: usize| {
            let user = (from + HEADER + align - 1) & !(align - 1);
            let next = user.checked_add(size)?.checked_add(15)? & !15;
            (next <= end as usize).then_some((user, next))
        };
        let Some((user, next)) = fit(cur as usize).or_else(|| fit(start as usize)) else {
            return ptr::null_mut();
        };
        RING.set((start, next as *mut u8, end));
        let user = user as *mut u8;
        // SAFETY: the header lies in the ring, just before the block, inside this thread's
        // mapping.
        unsafe { (user.sub(HEADER) as *mut usize).write(size) };
        user
    }
}

// SAFETY: blocks are carved from a thread's own mapping, aligned, `size` bytes long; a block
// may be reused after the ring wraps, which only the replay's own writes can observe (the
// documented point of this adapter). `free` does nothing, so a block freed by another thread
// is harmless.
unsafe impl Allocator for Bump {
    #[inline(never)]
    unsafe fn malloc(&self, size: usize) -> *mut u8 {
        self.carve(16, size)
    }
    #[inline(never)]
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        let p = self.carve(16, size);
        if !p.is_null() {
            // SAFETY: the block is `size` bytes (it may hold an older block's bytes).
            unsafe { ptr::write_bytes(p, 0, size) };
        }
        p
    }
    #[inline(never)]
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        let q = self.carve(16, size);
        if !p.is_null() && !q.is_null() {
            // SAFETY: `p` is a block of ours whose header holds its size; `q` is a fresh
            // block of `size` bytes. They may overlap only after a wrap, hence `copy`.
            unsafe {
                // After a wrap the header may hold another block's bytes: never copy past
                // the ring's end.
                let old = (p.sub(HEADER) as *const usize).read();
                let room = RING.get().2 as usize - p as usize;
                ptr::copy(p, q, old.min(size).min(room));
            }
        }
        q
    }
    #[inline(never)]
    unsafe fn aligned(&self, align: usize, size: usize) -> *mut u8 {
        self.carve(align.max(16), size)
    }
    #[inline(never)]
    unsafe fn free(&self, _: *mut u8) {}
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: `p` is a block of ours: its header holds its size.
        unsafe { (p.sub(HEADER) as *const usize).read() }
    }

    /// No: once the ring wraps, a live block's header may hold a newer block's bytes.
    fn has_usable_size(&self) -> bool {
        false
    }
    fn thread_attach(&self) {
        self.map_ring();
    }
    fn stats(&self) -> AllocStats {
        let mut s = AllocStats::default();
        s.put("ring_bytes_per_thread", self.ring_bytes as u64);
        s
    }
    fn version(&self) -> String {
        format!("alloclab bump {}", env!("CARGO_PKG_VERSION"))
    }
}
