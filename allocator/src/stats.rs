//! Statistics: a plain `Copy` snapshot summed from per-heap counters (each written by one owner,
//! read here with relaxed loads: exact when threads are quiet, approximate while they run).

use crate::arena;
use crate::fatal::StackWriter;
use crate::heap;
use crate::huge;
use crate::os;
use crate::small::{CLASS_SIZES, NUM_CLASSES, PAGE_SIZE};
use core::fmt::Write;
use core::sync::atomic::Ordering::Relaxed;

/// A snapshot of the allocator's state. Bytes are bytes, counts are counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Usable bytes of live blocks (small: class size; medium: chunk payload; huge: mapping
    /// after the block's start), bytes. Always ≥ the bytes the program asked for.
    pub bytes_in_use: u64,
    /// Part of `bytes_in_use` in small blocks (≤ 512 B), bytes.
    pub small_bytes_in_use: u64,
    /// Part of `bytes_in_use` in medium blocks (513 B ..= 1 MiB), bytes.
    pub medium_bytes_in_use: u64,
    /// Part of `bytes_in_use` in huge blocks (own mappings), bytes.
    pub huge_bytes_in_use: u64,
    /// Bytes currently mapped from the OS: arenas (in use and cached), huge blocks (live and
    /// cached), heap metadata. An upper bound of the allocator's RSS, bytes.
    pub bytes_mapped: u64,
    /// Mapped bytes held for reuse, not in use: cached arenas and cached huge mappings, bytes.
    pub bytes_cached: u64,
    /// Bytes given back to the OS so far (munmap and MADV_DONTNEED), cumulative, bytes.
    pub bytes_returned: u64,
    /// Bytes of free medium chunks inside live arenas, bytes.
    pub medium_bytes_free: u64,
    /// Bytes of freed medium chunks parked in the heaps' front caches, bytes.
    pub medium_bytes_parked: u64,
    /// Bytes of small pages carved into blocks (live or free): the memory small blocks have
    /// touched, bytes.
    pub small_bytes_carved: u64,
    /// Bytes of medium arenas below their high-water marks (live, free or parked chunks): the
    /// memory medium blocks have touched, bytes.
    pub medium_bytes_touched: u64,
    /// Arenas (4 MiB regions) owned by heaps, small + medium, count.
    pub arenas: u64,
    /// Small-block arenas, count.
    pub arenas_small: u64,
    /// Medium-block arenas, count.
    pub arenas_medium: u64,
    /// Fully free arenas in the global cache, count.
    pub arenas_cached: u64,
    /// Live huge blocks, count.
    pub huge_blocks: u64,
    /// Heaps ever created (one per concurrently running thread, reused), count.
    pub heaps: u64,
    /// Heaps whose thread exited, waiting in the pool for adoption, count.
    pub heaps_abandoned: u64,
    /// Block size of each small class, bytes.
    pub class_size: [u32; NUM_CLASSES],
    /// Live blocks per small class, count.
    pub class_live_blocks: [u64; NUM_CLASSES],
    /// 64 KiB pages assigned per small class, count.
    pub class_pages: [u64; NUM_CLASSES],
    /// Blocks the pages of each small class can hold: `class_pages × (64 KiB / class size)`, an
    /// upper bound (an arena's first page shares its 64 KiB with the arena header), count. The
    /// class's fill level is `class_live_blocks / class_capacity_blocks`.
    pub class_capacity_blocks: [u64; NUM_CLASSES],
    /// Live medium blocks, count.
    pub medium_live_blocks: u64,
    /// Blocks freed by a thread other than their owner and not yet taken back by the owner,
    /// count.
    pub cross_thread_frees_pending: u64,
    /// Blocks freed by a thread other than their owner, cumulative, count.
    pub cross_thread_frees_total: u64,
    /// The deepest cross-thread free queue (blocks waiting on one heap's queue), count.
    pub cross_thread_queue_max: u64,
    /// Heaps whose cross-thread free queue holds at least one block, count.
    pub cross_thread_queues_nonempty: u64,
    /// mmap calls, cumulative, count.
    pub mmap_calls: u64,
    /// munmap calls, cumulative, count.
    pub munmap_calls: u64,
    /// Passes of the background reclaimer, cumulative, count.
    pub reclaim_passes: u64,
    /// Whether background reclamation is on.
    pub reclaim: bool,
}

impl Stats {
    /// Live blocks of every kind, count.
    pub fn live_blocks(&self) -> u64 {
        self.class_live_blocks.iter().sum::<u64>() + self.medium_live_blocks + self.huge_blocks
    }
}

/// Takes a snapshot of the allocator's counters.
pub fn stats() -> Stats {
    let mut s = Stats {
        class_size: CLASS_SIZES,
        ..Default::default()
    };
    let mut issued = heap::REMOTE_ISSUED_UNBOUND.load(Relaxed);
    let mut collected = 0u64;
    heap::for_each_heap(|h| {
        // SAFETY: heaps are never freed; every field read here is an atomic.
        let sh = unsafe { &(*h).shared };
        for (c, &size) in CLASS_SIZES.iter().enumerate() {
            // A heap's count may have wrapped below zero (blocks of other heaps it keeps, see
            // small::free_foreign): the sums over heaps are exact, with wrapping arithmetic.
            let live = sh.class_live[c].load(Relaxed);
            s.class_live_blocks[c] = s.class_live_blocks[c].wrapping_add(live);
            s.class_pages[c] += sh.class_pages[c].load(Relaxed);
            s.small_bytes_in_use = s
                .small_bytes_in_use
                .wrapping_add(live.wrapping_mul(size as u64));
        }
        s.medium_bytes_in_use += sh.medium_in_use.load(Relaxed);
        s.medium_live_blocks += sh.medium_blocks.load(Relaxed);
        s.medium_bytes_free += sh.medium_free.load(Relaxed);
        s.medium_bytes_parked += sh.medium_cached.load(Relaxed);
        s.small_bytes_carved += sh.small_carved.load(Relaxed);
        s.medium_bytes_touched += sh.medium_touched.load(Relaxed);
        s.arenas_small += sh.small_arenas.load(Relaxed);
        s.arenas_medium += sh.medium_arenas.load(Relaxed);
        issued += sh.remote_issued.load(Relaxed);
        collected += sh.remote_collected.load(Relaxed);
        let depth = queue_depth(sh);
        s.cross_thread_queue_max = s.cross_thread_queue_max.max(depth);
        s.cross_thread_queues_nonempty += u64::from(depth > 0);
        s.heaps += 1;
    });
    // Read while threads run, the sums may catch a keep before the matching allocation: never
    // report that as a wrapped-around count.
    for c in 0..NUM_CLASSES {
        if s.class_live_blocks[c] > i64::MAX as u64 {
            s.class_live_blocks[c] = 0;
        }
    }
    for ((cap, &pages), &size) in s
        .class_capacity_blocks
        .iter_mut()
        .zip(&s.class_pages)
        .zip(&CLASS_SIZES)
    {
        *cap = pages * (PAGE_SIZE / size as usize) as u64;
    }
    if s.small_bytes_in_use > i64::MAX as u64 {
        s.small_bytes_in_use = 0;
    }
    s.huge_blocks = huge::HUGE_BLOCKS.load(Relaxed);
    s.huge_bytes_in_use = huge::HUGE_BYTES.load(Relaxed);
    s.bytes_in_use = s.small_bytes_in_use + s.medium_bytes_in_use + s.huge_bytes_in_use;
    s.arenas = s.arenas_small + s.arenas_medium;
    s.arenas_cached = arena::CACHED_ARENAS.load(Relaxed);
    s.bytes_mapped = os::MAPPED.load(Relaxed);
    s.bytes_cached =
        s.arenas_cached * arena::ARENA_SIZE as u64 + huge::HUGE_CACHED_BYTES.load(Relaxed);
    s.bytes_returned = os::RETURNED.load(Relaxed);
    s.heaps_abandoned = heap::ABANDONED_COUNT.load(Relaxed);
    s.cross_thread_frees_total = issued;
    s.cross_thread_frees_pending = issued.saturating_sub(collected);
    s.mmap_calls = os::MMAP_CALLS.load(Relaxed);
    s.munmap_calls = os::MUNMAP_CALLS.load(Relaxed);
    s.reclaim_passes = crate::reclaim::PASSES.load(Relaxed);
    s.reclaim = crate::config::RECLAIM.load(Relaxed);
    s
}

/// Blocks waiting on one heap's cross-thread free queue: pushed minus collected. A pusher counts
/// its block just after its CAS, so the owner may collect (and count) it first: the difference
/// saturates at 0, and while threads run it is approximate, as every figure here.
fn queue_depth(sh: &heap::HeapShared) -> u64 {
    let collected = sh.remote_collected.load(Relaxed);
    sh.remote_received.load(Relaxed).saturating_sub(collected)
}

/// Calls `f(heap, depth)` for every heap ever created, in creation order from the newest
/// (`heap` numbers them 0, 1, … in that order): the blocks waiting on its cross-thread free
/// queue. Allocates nothing.
pub fn queue_depths(mut f: impl FnMut(u64, u64)) {
    let mut i = 0;
    heap::for_each_heap(|h| {
        // SAFETY: heaps are never freed; the fields read are atomics.
        let sh = unsafe { &(*h).shared };
        f(i, queue_depth(sh));
        i += 1;
    });
}

/// Writes the stats as text to `fd`, without allocating.
pub fn print_stats_fd(fd: i32) {
    let s = stats();
    let mut w = StackWriter::<4096>::new();
    let _ = writeln!(w, "fancy stats (bytes unless noted)");
    let _ = writeln!(
        w,
        "  in use {} (small {}, medium {}, huge {})  mapped {}  cached {}  returned {}",
        s.bytes_in_use,
        s.small_bytes_in_use,
        s.medium_bytes_in_use,
        s.huge_bytes_in_use,
        s.bytes_mapped,
        s.bytes_cached,
        s.bytes_returned
    );
    let _ = writeln!(
        w,
        "  arenas {} (small {}, medium {}, cached {})  huge blocks {}  heaps {} (abandoned {})",
        s.arenas,
        s.arenas_small,
        s.arenas_medium,
        s.arenas_cached,
        s.huge_blocks,
        s.heaps,
        s.heaps_abandoned
    );
    let _ = writeln!(
        w,
        "  cross-thread frees {} (pending {})  mmap {}  munmap {}  reclaim {} ({} passes)",
        s.cross_thread_frees_total,
        s.cross_thread_frees_pending,
        s.mmap_calls,
        s.munmap_calls,
        if s.reclaim { "on" } else { "off" },
        s.reclaim_passes
    );
    let _ = write!(w, "  class live blocks:");
    for c in 0..NUM_CLASSES {
        let _ = write!(w, " {}:{}", s.class_size[c], s.class_live_blocks[c]);
    }
    let _ = writeln!(
        w,
        "\n  medium live blocks {}  medium free bytes {}",
        s.medium_live_blocks, s.medium_bytes_free
    );
    w.flush_to(fd);
}
