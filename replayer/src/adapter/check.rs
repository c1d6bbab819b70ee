//! `check`: glibc's malloc with a 16-byte header in front of every block, to test the replay
//! itself. The header holds a magic word (live or freed) and the block's size; a free or
//! realloc of a block that is not live — which a replay that freed before allocating, or twice,
//! would do — is counted (and the block left alone), as is every `free(NULL)`. The counts are
//! the adapter's stats: `violations` must be 0, `null_frees` must equal the trace's
//! `free(NULL)` ops.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{AdapterContext, AllocSpec, AllocStats, Allocator};
use crate::error::ReplayError;

const LIVE: u32 = 0xA110_C8ED;
const FREED: u32 = 0xF7EE_D0FF;

/// glibc malloc with checking headers.
pub struct Check {
    violations: AtomicU64,
    null_frees: AtomicU64,
    calls: AtomicU64,
    live: AtomicU64,
}

#[repr(C)]
struct Header {
    magic: u32,
    /// Bytes from the start of glibc's block to the user block.
    offset: u32,
    size: u64,
}

impl Check {
    /// A fresh checker.
    pub fn open(_: &AllocSpec, _: &AdapterContext) -> Result<Check, ReplayError> {
        Ok(Check {
            violations: AtomicU64::new(0),
            null_frees: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            live: AtomicU64::new(0),
        })
    }

    fn make(&self, align: usize, size: usize, zero: bool) -> *mut u8 {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let off = align.max(16);
        let Some(total) = size.checked_add(off) else {
            return std::ptr::null_mut();
        };
        let mut base = std::ptr::null_mut();
        // SAFETY: `off` is a power of two ≥ 16.
        if unsafe { libc::posix_memalign(&mut base, off, total) } != 0 {
            return std::ptr::null_mut();
        }
        let base = base as *mut u8;
        // SAFETY: the block is `total` bytes; the header fits in the `off` bytes before the
        // user block.
        unsafe {
            if zero {
                std::ptr::write_bytes(base.add(off), 0, size);
            }
            let h = base.add(off - 16) as *mut Header;
            h.write(Header {
                magic: LIVE,
                offset: off as u32,
                size: size as u64,
            });
        }
        self.live.fetch_add(1, Ordering::Relaxed);
        // SAFETY: inside the block.
        unsafe { base.add(off) }
    }

    /// Checks `p`'s header; marks it freed and returns glibc's block, or counts a violation.
    fn take(&self, p: *mut u8) -> Option<(*mut u8, usize)> {
        // SAFETY: a pointer the replay passes is one this adapter returned (the property under
        // test); its header is in front of it. A stray pointer would be the bug this detects.
        unsafe {
            let h = p.sub(16) as *mut Header;
            if (*h).magic != LIVE {
                self.violations.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            (*h).magic = FREED;
            self.live.fetch_sub(1, Ordering::Relaxed);
            Some((p.sub((*h).offset as usize), (*h).size as usize))
        }
    }
}

// SAFETY: blocks come from glibc's posix_memalign with room for the header; sizes and alignments
// are as asked.
unsafe impl Allocator for Check {
    unsafe fn malloc(&self, size: usize) -> *mut u8 {
        self.make(16, size, false)
    }
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        self.make(16, size, true)
    }
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        if p.is_null() {
            return self.make(16, size, false);
        }
        // SAFETY: see `take`: `p` is live unless the replay is wrong.
        let h = unsafe { &*(p.sub(16) as *const Header) };
        if h.magic != LIVE {
            self.violations.fetch_add(1, Ordering::Relaxed);
            return self.make(16, size, false);
        }
        let q = self.make(h.offset as usize, size, false);
        if !q.is_null() {
            // SAFETY: both blocks are live and distinct; copy the smaller size.
            unsafe { std::ptr::copy_nonoverlapping(p, q, (h.size as usize).min(size)) };
            // SAFETY: `p` was checked live above.
            unsafe { self.free(p) };
            self.calls.fetch_sub(1, Ordering::Relaxed);
        }
        q
    }
    unsafe fn aligned(&self, align: usize, size: usize) -> *mut u8 {
        self.make(align, size, false)
    }
    unsafe fn free(&self, p: *mut u8) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if p.is_null() {
            self.null_frees.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some((base, _)) = self.take(p) {
            // SAFETY: glibc's block, live until now.
            unsafe { libc::free(base.cast()) };
        }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: `p` is live (caller's contract).
        unsafe { (*(p.sub(16) as *const Header)).size as usize }
    }
    fn stats(&self) -> AllocStats {
        let mut s = super::system::mallinfo2_stats();
        s.put("violations", self.violations.load(Ordering::Relaxed));
        s.put("null_frees", self.null_frees.load(Ordering::Relaxed));
        s.put("calls", self.calls.load(Ordering::Relaxed));
        s.put("live_blocks", self.live.load(Ordering::Relaxed));
        s
    }
    fn version(&self) -> String {
        format!("check over glibc {}", super::system::glibc_version())
    }
}
