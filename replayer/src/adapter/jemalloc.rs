//! `jemalloc`: jemalloc 5.3 linked in through tikv-jemalloc-sys, every symbol `_rjem_`-prefixed
//! (so it never replaces the process's malloc), with statistics compiled in.

use tikv_jemalloc_ctl::{epoch, raw, stats};

use super::{AdapterContext, AllocSpec, AllocStats, Allocator};
use crate::error::ReplayError;
use crate::introspect::{IN_USE, Probe, RESIDENT, Sink};

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
    fn probe(&self) -> Option<Box<dyn Probe>> {
        JeProbe::open().map(|p| Box::new(p) as Box<dyn Probe>)
    }
    fn version(&self) -> String {
        match tikv_jemalloc_ctl::version::read() {
            Ok(v) => format!("jemalloc {}", v.split('-').next().unwrap_or(v)),
            Err(_) => "jemalloc 5.3 (tikv-jemalloc-sys 0.6)".into(),
        }
    }
}

/// `mallctl` names are looked up once (`mallctlnametomib`), at the first reading rather than
/// when the probe is made: a lookup initialises jemalloc, which must happen in the replay, after
/// the baseline RSS is read (the names are static and the tables sized up front, so the lookup
/// allocates nothing). A reading advances the epoch (jemalloc merges its per-arena statistics
/// then) and reads each MIB; neither allocates: jemalloc keeps its control tables in its own
/// metadata.
struct JeProbe {
    ready: bool,
    epoch: Mib,
    /// Process-wide figures (sized up front).
    global: Vec<(&'static str, Mib)>,
    /// Figures of arena `i` (the MIB's third component is set to `i`).
    arena: Vec<(&'static str, Mib)>,
    narenas: u32,
    /// jemalloc's page size, bytes.
    page: u64,
}

/// How to read one MIB: its C type (`Pages`: a size_t count of pages, read as bytes).
#[derive(Clone, Copy)]
enum Kind {
    Size,
    Pages,
    U64,
    U32,
}

#[derive(Clone, Copy)]
struct Mib {
    mib: [usize; 6],
    len: usize,
    kind: Kind,
}

impl Mib {
    /// Looks `name` (NUL-terminated) up.
    fn new(name: &[u8], kind: Kind) -> Option<Mib> {
        let len = name.iter().filter(|&&c| c == b'.').count() + 1;
        let mut mib = [0usize; 6];
        raw::name_to_mib(name, &mut mib[..len]).ok()?;
        Some(Mib { mib, len, kind })
    }

    fn read(&self, page: u64) -> Option<u64> {
        let m = &self.mib[..self.len];
        // SAFETY: each MIB is read as the type jemalloc documents for it (size_t, uint64_t or
        // unsigned).
        unsafe {
            match self.kind {
                Kind::Size => raw::read_mib::<usize>(m).ok().map(|v| v as u64),
                Kind::Pages => raw::read_mib::<usize>(m).ok().map(|v| v as u64 * page),
                Kind::U64 => raw::read_mib::<u64>(m).ok(),
                Kind::U32 => raw::read_mib::<u32>(m).ok().map(u64::from),
            }
        }
    }
}

/// Arenas read one by one, at most.
const MAX_ARENAS: u32 = 64;

/// Process-wide figures: metric, mallctl name, type. Arena 4096 is `MALLCTL_ARENAS_ALL`, all
/// arenas merged; jemalloc has no tcache hit counter, but `small_requests − tcache_fills ×
/// fill size` bounds the hits, and `tcache_bytes` is what the thread caches hold.
const GLOBAL: [(&str, &[u8], Kind); 14] = [
    (IN_USE, b"stats.allocated\0", Kind::Size),
    (RESIDENT, b"stats.resident\0", Kind::Size),
    ("allocated_bytes", b"stats.allocated\0", Kind::Size),
    ("active_bytes", b"stats.active\0", Kind::Size),
    ("metadata_bytes", b"stats.metadata\0", Kind::Size),
    ("mapped_bytes", b"stats.mapped\0", Kind::Size),
    ("retained_bytes", b"stats.retained\0", Kind::Size),
    ("dirty_bytes", b"stats.arenas.4096.pdirty\0", Kind::Pages),
    ("muzzy_bytes", b"stats.arenas.4096.pmuzzy\0", Kind::Pages),
    (
        "tcache_bytes",
        b"stats.arenas.4096.tcache_bytes\0",
        Kind::Size,
    ),
    (
        "small_requests",
        b"stats.arenas.4096.small.nrequests\0",
        Kind::U64,
    ),
    (
        "tcache_fills",
        b"stats.arenas.4096.small.nfills\0",
        Kind::U64,
    ),
    (
        "tcache_flushes",
        b"stats.arenas.4096.small.nflushes\0",
        Kind::U64,
    ),
    (
        "large_requests",
        b"stats.arenas.4096.large.nrequests\0",
        Kind::U64,
    ),
];

/// Per-arena figures (arena 0's names; the index is replaced).
const PER_ARENA: [(&str, &[u8], Kind); 3] = [
    (
        "arena_active_bytes",
        b"stats.arenas.0.pactive\0",
        Kind::Pages,
    ),
    ("arena_dirty_bytes", b"stats.arenas.0.pdirty\0", Kind::Pages),
    ("arena_threads", b"stats.arenas.0.nthreads\0", Kind::U32),
];

impl JeProbe {
    fn open() -> Option<JeProbe> {
        Some(JeProbe {
            ready: false,
            epoch: Mib {
                mib: [0; 6],
                len: 0,
                kind: Kind::U64,
            },
            global: Vec::with_capacity(GLOBAL.len()),
            arena: Vec::with_capacity(PER_ARENA.len()),
            narenas: 0,
            page: 4096,
        })
    }

    /// The lookups (see the type).
    fn prepare(&mut self) -> bool {
        let Some(epoch_mib) = Mib::new(b"epoch\0", Kind::U64) else {
            return false;
        };
        self.epoch = epoch_mib;
        // SAFETY: documented as size_t and unsigned.
        let (page, narenas) = unsafe {
            (
                raw::read::<usize>(b"arenas.page\0").unwrap_or(4096) as u64,
                raw::read::<u32>(b"arenas.narenas\0").unwrap_or(0),
            )
        };
        self.page = page;
        self.narenas = narenas.min(MAX_ARENAS);
        for (metric, name, kind) in GLOBAL {
            if let Some(m) = Mib::new(name, kind) {
                self.global.push((metric, m));
            }
        }
        for (metric, name, kind) in PER_ARENA {
            if let Some(m) = Mib::new(name, kind) {
                self.arena.push((metric, m));
            }
        }
        true
    }
}

impl Probe for JeProbe {
    fn read(&mut self, out: &mut Sink<'_>) {
        if !self.ready {
            if !self.prepare() {
                return;
            }
            self.ready = true;
        }
        // Writing the epoch refreshes the statistics.
        let m = &self.epoch.mib[..self.epoch.len];
        // SAFETY: `epoch` is a uint64_t; the value written is ignored by jemalloc.
        if unsafe { raw::write_mib(m, 1u64) }.is_err() {
            return;
        }
        for (metric, m) in &self.global {
            if let Some(v) = m.read(self.page) {
                out.put_u(metric, None, v);
            }
        }
        for i in 0..self.narenas {
            for (metric, m) in &self.arena {
                let mut m = *m;
                m.mib[2] = i as usize;
                // An arena not created yet has no statistics (jemalloc answers an error).
                if let Some(v) = m.read(self.page) {
                    out.put_u(metric, Some(i), v);
                }
            }
        }
    }
}
