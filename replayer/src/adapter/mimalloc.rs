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
    fn probe(&self) -> Option<Box<dyn crate::introspect::Probe>> {
        Some(Box::new(MiProbe(Box::new(MiStats::new()))))
    }
    fn version(&self) -> String {
        // SAFETY: no arguments; returns e.g. 332 for 3.3.2.
        let v = unsafe { mi::mi_version() };
        format!("mimalloc {}.{}.{}", v / 100, v / 10 % 10, v % 10)
    }
}

/// `mi_stats_t` of mimalloc 3.3 (`include/mimalloc-stats.h`, `MI_STAT_VERSION` 5): a size and
/// a version, then 544 `int64_t`s — each `mi_stat_count_t` is (total, peak, current), each
/// `mi_stat_counter_t` one total. `mi_stats_get` checks the size and version and refuses a
/// mismatch (another mimalloc), so a wrong layout reads nothing rather than garbage.
#[repr(C)]
struct MiStats {
    size: usize,
    version: usize,
    v: [i64; 544],
}

/// `MI_STAT_VERSION` of the layout above.
const MI_STAT_VERSION: usize = 5;

impl MiStats {
    fn new() -> MiStats {
        MiStats {
            size: std::mem::size_of::<MiStats>(),
            version: MI_STAT_VERSION,
            v: [0; 544],
        }
    }
}

unsafe extern "C" {
    /// The subprocess's statistics with every heap's added (mimalloc-stats.h).
    fn mi_stats_get(stats: *mut MiStats) -> bool;
}

/// Indices into [`MiStats::v`] of the `current` member of counts and of counters (offsets
/// from mimalloc-stats.h: `pages` at 0, `reserved` at 3, …, checked by the size test).
const MI_COUNTS: [(&str, usize); 6] = [
    ("pages", 2),
    ("reserved_bytes", 5),
    ("committed_bytes", 8),
    ("page_committed_bytes", 13),
    ("pages_abandoned", 16),
    ("threads", 19),
];
const MI_COUNTERS: [(&str, usize); 7] = [
    ("reset_bytes", 9),
    ("purged_bytes", 10),
    ("mmap_calls", 29),
    ("commit_calls", 30),
    ("reset_calls", 31),
    ("purge_calls", 32),
    ("arena_count", 33),
];

/// mimalloc's statistics (`mi_stats_get`, into a struct of ours made before the replay: it
/// copies and adds counters under the heap-list lock, allocating nothing) and its process
/// info (`mi_process_info`: getrusage and its commit counters). mimalloc's release build
/// keeps only its "essential" statistics (`MI_STAT` 0): the OS-level ones (reserved,
/// committed, purged, calls) are exact and current; per-page ones are merged from thread
/// heaps as they go, so they lag while threads run. It has no figure of bytes in use in this
/// build, so it writes no `in_use_bytes`.
struct MiProbe(Box<MiStats>);

// SAFETY: the statistics buffer is plain data, owned by the probe.
unsafe impl Send for MiProbe {}

impl crate::introspect::Probe for MiProbe {
    fn read(&mut self, out: &mut crate::introspect::Sink<'_>) {
        let s = &mut *self.0;
        *s = MiStats::new();
        // SAFETY: `s` is a mi_stats_t of the size and version written in its header.
        if unsafe { mi_stats_get(s) } {
            for (k, i) in MI_COUNTS {
                out.put(k, None, s.v[i]);
            }
            for (k, i) in MI_COUNTERS {
                out.put(k, None, s.v[i]);
            }
        }
        let mut v = [0usize; 8];
        // SAFETY: every pointer is to a distinct local usize.
        unsafe {
            let [a, b, c, d, e, f, g, h] = &mut v;
            mi::mi_process_info(a, b, c, d, e, f, g, h);
        }
        out.put_u(crate::introspect::RESIDENT, None, v[5] as u64);
        out.put_u("process_rss_bytes", None, v[3] as u64);
        out.put_u("process_commit_bytes", None, v[5] as u64);
        out.put_u("page_faults", None, v[7] as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_layout_is_the_linked_mimallocs() {
        // mimalloc refuses a struct of another size or version: this reading proves the layout.
        let mut s = Box::new(MiStats::new());
        // SAFETY: as in MiProbe::read.
        let read = unsafe { mi_stats_get(&mut *s) };
        assert!(read, "mi_stats_get refused our mi_stats_t");
        assert_eq!(std::mem::size_of::<MiStats>(), 4368);
        assert!(s.v[8] > 0, "mimalloc has committed memory");
    }
}
