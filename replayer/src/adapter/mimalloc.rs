//! `mimalloc`: mimalloc linked in through libmimalloc-sys (`extended` feature for its process
//! info and statistics). Transparent huge pages change its figures a lot (docs/DESIGN.md, Facts):
//! the THP mode is recorded with every run, `MIMALLOC_*` options with the allocator.

use libmimalloc_sys as mi;

use super::{AdapterContext, AllocSpec, AllocStats, Allocator};
use crate::error::ReplayError;

/// mimalloc's `mi_*` entry points.
pub struct Mimalloc;

impl Mimalloc {
    /// Opens the adapter (mimalloc initialises itself).
    pub fn open(_: &AllocSpec, _: &AdapterContext) -> Result<Mimalloc, ReplayError> {
        Ok(Mimalloc)
    }
}

// SAFETY: mimalloc's functions have the C semantics the trait asks for.
unsafe impl Allocator for Mimalloc {
    #[inline(always)]
    unsafe fn malloc(&self, size: usize) -> *mut u8 {
        // SAFETY: plain allocator call.
        unsafe { mi::mi_malloc(size).cast() }
    }
    #[inline(always)]
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        // SAFETY: plain allocator call.
        unsafe { mi::mi_zalloc(size).cast() }
    }
    #[inline(always)]
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: `p` is null or a live mimalloc block (caller's contract).
        unsafe { mi::mi_realloc(p.cast(), size).cast() }
    }
    #[inline(always)]
    unsafe fn aligned(&self, align: usize, size: usize) -> *mut u8 {
        // SAFETY: `align` is a power of two.
        unsafe { mi::mi_malloc_aligned(size, align).cast() }
    }
    #[inline(always)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: `p` is null or a live mimalloc block (caller's contract).
        unsafe { mi::mi_free(p.cast()) }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: `p` is a live mimalloc block (caller's contract).
        unsafe { mi::mi_usable_size(p.cast()) }
    }
    fn stats(&self) -> AllocStats {
        let mut s = AllocStats::default();
        let mut v = [0usize; 8];
        // SAFETY: every pointer is to a distinct local usize.
        unsafe {
            let [a, b, c, d, e, f, g, h] = &mut v;
            mi::mi_process_info(a, b, c, d, e, f, g, h);
        }
        let names = [
            "elapsed_msecs",
            "user_msecs",
            "system_msecs",
            "current_rss",
            "peak_rss",
            "current_commit",
            "peak_commit",
            "page_faults",
        ];
        for (k, v) in names.iter().zip(v) {
            s.put(k, v as u64);
        }
        s.resident = Some(v[5] as u64);
        // mimalloc's own statistics as JSON (its `malloc_requested` / `malloc_normal` counters
        // give the bytes in use when its build counts them).
        let mut buf = vec![0u8; 1 << 16];
        // SAFETY: the buffer is writable for its whole length; mimalloc writes a NUL-terminated
        // string into it (or returns null).
        let p = unsafe { mi::mi_stats_get_json(buf.len(), buf.as_mut_ptr().cast()) };
        if !p.is_null() {
            // SAFETY: a NUL-terminated string inside `buf`.
            let text = unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy();
            if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&text) {
                if let Some(cur) = m
                    .get("malloc_requested")
                    .and_then(|x| x.get("current"))
                    .and_then(|x| x.as_u64())
                {
                    s.allocated = Some(cur);
                }
                s.put("stats", serde_json::Value::Object(m));
            }
        }
        s
    }
    fn version(&self) -> String {
        // SAFETY: no arguments; returns e.g. 332 for 3.3.2.
        let v = unsafe { mi::mi_version() };
        format!("mimalloc {}.{}.{}", v / 100, v / 10 % 10, v % 10)
    }
}
