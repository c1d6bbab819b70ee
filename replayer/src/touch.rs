//! Touch policies: how much of each new block a replay writes, so that its RSS is the one the
//! program would have. `none`, `first`, `pages` and `full` write the same amount of every block;
//! `recorded` writes the fraction of each large block's pages that the recorded program made
//! resident, inferred from the RSS samples the recorder put in the trace (format 1.1).
//!
//! The inference: at its peak the program's RSS above its start baseline is its heap (plus
//! whatever else it mapped and touched). Blocks smaller than a page are counted as resident in
//! full — an allocator writes their headers and their neighbours' anyway — so what is left of
//! the heap peak, over the live bytes of large blocks at the peak, is the fraction of a large
//! block the program touched. The replay touches that fraction of each large block's pages,
//! from its start (a program fills a buffer from its start; which pages does not change the
//! RSS), and always its first page.

use std::collections::HashMap;
use std::path::Path;

use traces::{Event, MergedReader, RssSummary};

use crate::engine::Touch;

/// A page, as the touch loops step (the smallest page of the machines the lab runs on).
const PAGE: usize = 4096;
/// Fractions are fixed point, this many parts per whole.
const ONE: u64 = 1 << 16;

/// A touch policy resolved for one replay: the policy and, for `recorded`, its fraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    how: Touch,
    /// Fraction of a large block's pages to touch, in 1/65536 (only for `recorded`).
    frac: u64,
}

impl Policy {
    /// `how`, with `fraction` (0..=1) of each large block's pages for [`Touch::Recorded`].
    pub fn new(how: Touch, fraction: f64) -> Policy {
        Policy {
            how,
            frac: (fraction.clamp(0.0, 1.0) * ONE as f64).round() as u64,
        }
    }
}

/// Writes new block `p` of `n` bytes as `how` says.
///
/// # Safety
/// `p` is null or a block of at least `n` writable bytes that nothing else uses yet.
#[inline(always)]
pub unsafe fn touch(p: *mut u8, n: usize, how: Policy) {
    if n == 0 || p.is_null() {
        return;
    }
    let end = match how.how {
        Touch::None => return,
        Touch::First => p as usize + 1,
        Touch::Pages => p as usize + n,
        Touch::Recorded => {
            if n <= PAGE {
                p as usize + n
            } else {
                // At least the first page; the fraction of the rest rounded up.
                let want = ((n as u64 * how.frac).div_ceil(ONE) as usize).max(1);
                p as usize + want.min(n)
            }
        }
        Touch::Full => {
            // SAFETY: `p` is a fresh block of at least `n` bytes from the allocator under
            // test.
            unsafe { std::ptr::write_bytes(p, 0x5a, n) };
            std::hint::black_box(p);
            return;
        }
    };
    // SAFETY: `p` is a fresh block of at least `n` bytes from the allocator under test; every
    // write is at an address in [p, end) with end ≤ p + n.
    unsafe {
        p.write_volatile(1);
        let mut q = (p as usize & !(PAGE - 1)) + PAGE;
        while q < end {
            (q as *mut u8).write_volatile(1);
            q += PAGE;
        }
    }
}

/// What the trace says the program touched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The trace's RSS curve.
    pub rss: RssSummary,
    /// Live bytes in blocks larger than a page, and in the others, when live bytes peaked.
    pub large_live_at_peak: u64,
    pub small_live_at_peak: u64,
    /// The fraction of a large block's bytes the program made resident (0..=1).
    pub fraction: f64,
}

/// Reads the trace's samples and live bytes and estimates the touched fraction; `None` when
/// the trace has no samples (synthetic traces, traces of format 1.0).
pub fn estimate(trace: &Path) -> traces::Result<Option<Estimate>> {
    let mut r = MergedReader::open(trace)?;
    let Some(rss) = RssSummary::of(r.process_samples()) else {
        return Ok(None);
    };
    // Live bytes by block size, by the live-set rules of `traces::inspect::Inspector` (which
    // gives the total; the large blocks are tracked beside it).
    let mut insp = traces::inspect::Inspector::new();
    let mut large: HashMap<u64, u64> = HashMap::new();
    let (mut large_live, mut peak, mut at_peak) = (0u64, 0u64, (0u64, 0u64));
    while let Some(rec) = r.next_record()? {
        insp.feed(&rec);
        let mut drop_ptr = |p: u64| {
            if let Some(s) = large.remove(&p) {
                large_live -= s;
            }
        };
        match rec.event {
            Event::Free { ptr } => drop_ptr(ptr),
            Event::Realloc { old_ptr, size, ptr } => {
                if ptr != 0 || size == 0 {
                    drop_ptr(old_ptr);
                }
                if ptr != 0 && size as usize > PAGE {
                    large_live += size;
                    large.insert(ptr, size);
                }
            }
            Event::Malloc { ptr, .. } | Event::Calloc { ptr, .. } | Event::Aligned { ptr, .. } => {
                drop_ptr(ptr);
                let size = rec.event.requested_bytes().unwrap_or(0);
                if ptr != 0 && size as usize > PAGE {
                    large_live += size;
                    large.insert(ptr, size);
                }
            }
            _ => {}
        }
        let live = insp.live_bytes();
        if live > peak {
            peak = live;
            at_peak = (large_live.min(live), live - large_live.min(live));
        }
    }
    let (large_live_at_peak, small_live_at_peak) = at_peak;
    let fraction = if large_live_at_peak == 0 {
        1.0
    } else {
        let left = rss.heap_peak_bytes().saturating_sub(small_live_at_peak);
        (left as f64 / large_live_at_peak as f64).clamp(0.0, 1.0)
    };
    Ok(Some(Estimate {
        rss,
        large_live_at_peak,
        small_live_at_peak,
        fraction,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of a fresh mapping that `touch` made resident.
    fn resident_after(n: usize, how: Policy) -> usize {
        let len = n.div_ceil(PAGE) * PAGE;
        // SAFETY: a fresh private anonymous mapping, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: a block of `len` ≥ `n` bytes.
        unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
        // SAFETY: the mapping is `len` ≥ `n` bytes, writable, and this test's alone.
        unsafe { touch(p.cast(), n, how) };
        let mut vec = vec![0u8; len / PAGE];
        // SAFETY: `vec` has one byte per page of the mapping.
        assert_eq!(unsafe { libc::mincore(p, len, vec.as_mut_ptr()) }, 0);
        // SAFETY: our mapping.
        unsafe { libc::munmap(p, len) };
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }

    #[test]
    fn recorded_touches_its_fraction_of_large_blocks_and_small_blocks_whole() {
        let mb = 1 << 20;
        assert_eq!(resident_after(mb, Policy::new(Touch::Pages, 0.0)), 256);
        assert_eq!(resident_after(mb, Policy::new(Touch::Recorded, 0.25)), 64);
        assert_eq!(resident_after(mb, Policy::new(Touch::Recorded, 0.0)), 1);
        assert_eq!(resident_after(mb, Policy::new(Touch::Recorded, 1.0)), 256);
        assert_eq!(resident_after(PAGE, Policy::new(Touch::Recorded, 0.0)), 1);
        assert_eq!(resident_after(mb, Policy::new(Touch::First, 0.0)), 1);
        assert_eq!(resident_after(mb, Policy::new(Touch::None, 0.0)), 0);
    }
}
