//! `jemalloc`: jemalloc 5.3 linked in through tikv-jemalloc-sys, every symbol `_rjem_`-prefixed
//! (so it never replaces the process's malloc), with statistics compiled in.

use tikv_jemalloc_ctl::{epoch, stats};

use super::{AdapterContext, AllocSpec, AllocStats, Allocator};
use crate::error::ReplayError;

/// jemalloc through its prefixed entry points.
pub struct Jemalloc;

impl Jemalloc {
    /// Opens the adapter (jemalloc initialises itself at its first call).
    pub fn open(_: &AllocSpec, _: &AdapterContext) -> Result<Jemalloc, ReplayError> {
        Ok(Jemalloc)
    }
}

// SAFETY: jemalloc's prefixed malloc family has the C semantics the trait asks for.
unsafe impl Allocator for Jemalloc {
    #[inline(always)]
    unsafe fn malloc(&self, size: usize) -> *mut u8 {
        // SAFETY: plain allocator call.
        unsafe { tikv_jemalloc_sys::malloc(size).cast() }
    }
    #[inline(always)]
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        // SAFETY: plain allocator call.
        unsafe { tikv_jemalloc_sys::calloc(1, size).cast() }
    }
    #[inline(always)]
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: `p` is null or a live jemalloc block (caller's contract).
        unsafe { tikv_jemalloc_sys::realloc(p.cast(), size).cast() }
    }
    #[inline(always)]
    unsafe fn aligned(&self, align: usize, size: usize) -> *mut u8 {
        let mut p = std::ptr::null_mut();
        // SAFETY: `align` is a power of two, raised to posix_memalign's minimum.
        let r = unsafe { tikv_jemalloc_sys::posix_memalign(&mut p, align.max(8), size) };
        if r == 0 {
            p.cast()
        } else {
            std::ptr::null_mut()
        }
    }
    #[inline(always)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: `p` is null or a live jemalloc block (caller's contract).
        unsafe { tikv_jemalloc_sys::free(p.cast()) }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: `p` is a live jemalloc block (caller's contract).
        unsafe { tikv_jemalloc_sys::malloc_usable_size(p.cast()) }
    }
    fn stats(&self) -> AllocStats {
        let mut s = AllocStats::default();
        if epoch::advance().is_err() {
            return s;
        }
        let read = [
            ("allocated", stats::allocated::read()),
            ("active", stats::active::read()),
            ("metadata", stats::metadata::read()),
            ("resident", stats::resident::read()),
            ("mapped", stats::mapped::read()),
            ("retained", stats::retained::read()),
        ];
        for (k, v) in read {
            if let Ok(v) = v {
                s.put(k, v as u64);
                match k {
                    "allocated" => s.allocated = Some(v as u64),
                    "resident" => s.resident = Some(v as u64),
                    _ => {}
                }
            }
        }
        s
    }
    fn version(&self) -> String {
        match tikv_jemalloc_ctl::version::read() {
            Ok(v) => format!("jemalloc {}", v.split('-').next().unwrap_or(v)),
            Err(_) => "jemalloc 5.3 (tikv-jemalloc-sys 0.6)".into(),
        }
    }
}
