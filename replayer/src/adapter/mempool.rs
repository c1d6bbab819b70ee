//! `mempool-baseline`, `mempool-sharded`, `mempool-percls`: the process-wide pools of
//! `allocator/mempool` (hybrid routing, thread caches), one per locking variant. Each replay
//! thread empties its caches after its last op, so no block stays parked in a dead thread's cache.

use ::mempool::{Variant, global};

use super::{AdapterContext, AllocSpec, AllocStats, Allocator};
use crate::error::ReplayError;

/// One mempool variant.
pub struct Mempool(Variant);

impl Mempool {
    /// Opens the adapter for the variant `spec` names.
    pub fn open(spec: &AllocSpec, _: &AdapterContext) -> Result<Mempool, ReplayError> {
        Ok(Mempool(match spec {
            AllocSpec::MempoolBaseline => Variant::Baseline,
            AllocSpec::MempoolSharded => Variant::Sharded,
            _ => Variant::Percls,
        }))
    }
}

// SAFETY: mempool's global functions have the C semantics the trait asks for (glibc's realloc
// included), 16-byte alignment at least, and blocks may be freed by any thread.
unsafe impl Allocator for Mempool {
    #[inline(never)]
    unsafe fn malloc(&self, size: usize) -> *mut u8 {
        global::malloc(self.0, size)
    }
    #[inline(never)]
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        global::calloc(self.0, 1, size)
    }
    #[inline(never)]
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: `p` is null or a live block of this variant (caller's contract).
        unsafe { global::realloc(self.0, p, size) }
    }
    #[inline(never)]
    unsafe fn aligned(&self, align: usize, size: usize) -> *mut u8 {
        global::aligned_alloc(self.0, align.max(16), size)
    }
    #[inline(never)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: `p` is null or a live block of this variant (caller's contract).
        unsafe { global::free(self.0, p) }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: `p` is a live block of this variant (caller's contract).
        unsafe { global::usable_size(self.0, p) }
    }
    fn stats(&self) -> AllocStats {
        let st = global::stats(self.0);
        let lk = global::lock_counts(self.0);
        let (mapped, returned) = ::mempool::footprint();
        let mut s = AllocStats {
            allocated: None,
            resident: Some((mapped - returned) as u64),
            ..Default::default()
        };
        for (k, v) in [
            ("allocs", st.allocs),
            ("frees", st.frees),
            ("reallocs", st.reallocs),
            ("bytes_requested", st.bytes_requested),
            ("live_blocks", st.live()),
            ("threads", st.threads),
            (
                "free_class_blocks",
                global::free_class_blocks(self.0) as u64,
            ),
            ("bytes_mapped", mapped as u64),
            ("bytes_returned", returned as u64),
            ("class_locks", lk.class_locks),
            ("class_lock_contended", lk.class_contended),
            ("global_locks", lk.global_locks),
            ("global_lock_contended", lk.global_contended),
            ("replenishes", lk.replenishes),
        ] {
            s.put(k, v);
        }
        s.put("variant", self.0.name());
        s
    }
    fn probe(&self) -> Option<Box<dyn crate::introspect::Probe>> {
        Some(Box::new(PoolProbe(self.0)))
    }
    fn thread_detach(&self) {
        global::thread_detach();
    }
    fn version(&self) -> String {
        format!(
            "mempool {} {} ({})",
            env!("CARGO_PKG_VERSION"),
            self.0.name(),
            crate::env::build_info().commit
        )
    }
}

/// The pool's counters: per-thread records and lock counters summed with relaxed loads, and
/// the reservation's footprint (atomics): no lock, no allocation. (`free_class_blocks` is left
/// out: it takes every class lock, which would both perturb and count as contention.)
struct PoolProbe(Variant);

impl crate::introspect::Probe for PoolProbe {
    fn read(&mut self, out: &mut crate::introspect::Sink<'_>) {
        let st = global::stats(self.0);
        let lk = global::lock_counts(self.0);
        let (mapped, returned) = ::mempool::footprint();
        out.put_u(
            crate::introspect::RESIDENT,
            None,
            mapped.saturating_sub(returned) as u64,
        );
        for (k, v) in [
            ("live_blocks", st.live()),
            ("allocs", st.allocs),
            ("frees", st.frees),
            ("threads", st.threads),
            ("mapped_bytes", mapped as u64),
            ("returned_bytes", returned as u64),
            ("class_locks", lk.class_locks),
            ("class_lock_contended", lk.class_contended),
            ("global_locks", lk.global_locks),
            ("global_lock_contended", lk.global_contended),
            ("replenishes", lk.replenishes),
        ] {
            out.put_u(k, None, v);
        }
    }
}
