//! `fancy` and `fancy-reclaim`: alloclab's allocator (`allocator/`) through its Rust API.
//! `fancy-reclaim` turns its background reclaimer on before the first allocation. Each replay
//! thread calls `fancy::thread_detach()` after its last op: a heap is handed over by a pthread
//! key destructor otherwise, which may run after the thread is joined (and after the retained
//! RSS is read).

use super::{AdapterContext, AllocSpec, AllocStats, Allocator};
use crate::error::ReplayError;
use crate::introspect::{IN_USE, Probe, RESIDENT, Sink};

/// fancy, with or without reclamation.
pub struct Fancy;

impl Fancy {
    /// Opens the adapter; for `fancy-reclaim`, configures the reclaimer (fancy must not have
    /// allocated yet in this process).
    pub fn open(spec: &AllocSpec, _: &AdapterContext) -> Result<Fancy, ReplayError> {
        if *spec == AllocSpec::FancyReclaim && !fancy::config().reclaim {
            fancy::configure(fancy::Config {
                reclaim: true,
                ..fancy::config()
            })
            .map_err(|e| ReplayError::AllocatorUnavailable {
                name: spec.name(),
                why: e.to_string(),
            })?;
        }
        Ok(Fancy)
    }
}

// SAFETY: fancy's API has the C semantics the trait asks for (its README), including glibc's
// realloc, and is callable from any thread.
unsafe impl Allocator for Fancy {
    #[inline(never)]
    unsafe fn malloc(&self, size: usize) -> *mut u8 {
        fancy::malloc(size)
    }
    #[inline(never)]
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        fancy::calloc(1, size)
    }
    #[inline(never)]
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: `p` is null or a live fancy block (caller's contract).
        unsafe { fancy::realloc(p, size) }
    }
    #[inline(never)]
    unsafe fn aligned(&self, align: usize, size: usize) -> *mut u8 {
        fancy::aligned_alloc(align, size)
    }
    #[inline(never)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: `p` is null or a live fancy block (caller's contract).
        unsafe { fancy::free(p) }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: `p` is a live fancy block (caller's contract).
        unsafe { fancy::usable_size(p) }
    }
    fn stats(&self) -> AllocStats {
        let st = fancy::stats();
        let mut s = AllocStats {
            allocated: Some(st.bytes_in_use),
            resident: Some(st.bytes_mapped),
            ..Default::default()
        };
        for (k, v) in [
            ("bytes_in_use", st.bytes_in_use),
            ("small_bytes_in_use", st.small_bytes_in_use),
            ("medium_bytes_in_use", st.medium_bytes_in_use),
            ("huge_bytes_in_use", st.huge_bytes_in_use),
            ("bytes_mapped", st.bytes_mapped),
            ("bytes_cached", st.bytes_cached),
            ("bytes_returned", st.bytes_returned),
            ("medium_bytes_free", st.medium_bytes_free),
            ("medium_bytes_parked", st.medium_bytes_parked),
            ("arenas", st.arenas),
            ("arenas_cached", st.arenas_cached),
            ("huge_blocks", st.huge_blocks),
            ("heaps", st.heaps),
            ("heaps_abandoned", st.heaps_abandoned),
            ("live_blocks", st.live_blocks()),
            ("cross_thread_frees_pending", st.cross_thread_frees_pending),
            ("cross_thread_frees_total", st.cross_thread_frees_total),
            ("mmap_calls", st.mmap_calls),
            ("munmap_calls", st.munmap_calls),
            ("reclaim_passes", st.reclaim_passes),
        ] {
            s.put(k, v);
        }
        s.put("reclaim", st.reclaim);
        s
    }
    fn probe(&self) -> Option<Box<dyn Probe>> {
        Some(Box::new(FancyProbe))
    }
    fn thread_detach(&self) {
        fancy::thread_detach();
    }
    fn version(&self) -> String {
        format!(
            "fancy {} ({})",
            env!("CARGO_PKG_VERSION"),
            crate::env::build_info().commit
        )
    }
}

/// fancy's [`fancy::stats`]: a `Copy` snapshot summed from per-heap atomics (relaxed loads, no
/// lock, no allocation). Per small class (key: the class's block size): live blocks and the
/// blocks its pages can hold (the fill level is their ratio); the cross-thread frees not yet
/// taken back by their owners, all heaps together and per heap's queue (key: the heap's number,
/// [`fancy::queue_depths`]), with the deepest queue.
struct FancyProbe;

impl Probe for FancyProbe {
    fn read(&mut self, out: &mut Sink<'_>) {
        let st = fancy::stats();
        out.put_u(IN_USE, None, st.bytes_in_use);
        out.put_u(RESIDENT, None, st.bytes_mapped);
        for (k, v) in [
            ("small_bytes_in_use", st.small_bytes_in_use),
            ("medium_bytes_in_use", st.medium_bytes_in_use),
            ("huge_bytes_in_use", st.huge_bytes_in_use),
            ("cached_bytes", st.bytes_cached),
            ("returned_bytes", st.bytes_returned),
            ("medium_free_bytes", st.medium_bytes_free),
            ("medium_parked_bytes", st.medium_bytes_parked),
            ("small_carved_bytes", st.small_bytes_carved),
            ("medium_touched_bytes", st.medium_bytes_touched),
            ("arenas", st.arenas),
            ("arenas_cached", st.arenas_cached),
            ("heaps", st.heaps),
            ("heaps_abandoned", st.heaps_abandoned),
            ("medium_live_blocks", st.medium_live_blocks),
            ("huge_blocks", st.huge_blocks),
            ("cross_thread_frees_pending", st.cross_thread_frees_pending),
            ("cross_thread_frees_total", st.cross_thread_frees_total),
            ("cross_thread_queue_max", st.cross_thread_queue_max),
            (
                "cross_thread_queues_nonempty",
                st.cross_thread_queues_nonempty,
            ),
        ] {
            out.put_u(k, None, v);
        }
        fancy::queue_depths(|heap, depth| {
            out.put_u("cross_thread_queue_depth", Some(heap as u32), depth)
        });
        for c in 0..st.class_size.len() {
            let key = Some(st.class_size[c]);
            out.put_u("class_live_blocks", key, st.class_live_blocks[c]);
            out.put_u("class_capacity_blocks", key, st.class_capacity_blocks[c]);
        }
    }
}
