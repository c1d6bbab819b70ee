//! Options, in one table: name, environment variable, default, meaning.
//!
//! | field | env | default | meaning |
//! |---|---|---|---|
//! | `reclaim` | `FANCY_RECLAIM` | off | background thread returning free arenas, cached huge blocks and abandoned heaps' memory to the OS |
//! | `reclaim_interval_ms` | `FANCY_RECLAIM_INTERVAL_MS` | 50 | period of the reclaimer |
//! | `huge_pages` | `FANCY_HUGE_PAGES` | off | `MADV_HUGEPAGE` on every arena and huge block |
//! | `huge_pages_above_mib` | `FANCY_HUGE_PAGES_ABOVE_MIB` | 64 | `MADV_HUGEPAGE` on arenas mapped once the heaps use this many MiB (touched small pages and medium chunks, live huge blocks: big heaps take 512× fewer page faults; small programs stay lean); `usize::MAX` never. Huge blocks of 2 MiB and more get the hint always |
//! | `huge_pages_heap_above_mib` | `FANCY_HUGE_PAGES_HEAP_ABOVE_MIB` | 16 | `MADV_HUGEPAGE` on the arenas a heap takes once *that heap* has touched this many MiB: one thread with a big working set gets 2 MiB pages early, many threads with small heaps keep 4 KiB pages; `usize::MAX` never |
//! | `arena_cache` | `FANCY_ARENA_CACHE` | 16 | fully free arenas kept mapped for reuse (4 MiB each) |
//! | `huge_cache_mib` | `FANCY_HUGE_CACHE_MIB` | 256 | MiB of freed huge blocks kept mapped for reuse |
//! | `verbose` | `FANCY_VERBOSE` | off | print the options at start and the stats at exit (preload) |
//!
//! The environment is read once, with `getenv` (which does not allocate), on the first
//! allocation or the first call to [`configure`]; a later `configure` overrides it.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};

/// The allocator's options. `Config::default()` is the documented default; see the module table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Run the background reclaimer (returns fully free arenas and cached huge blocks to the OS,
    /// cleans heaps left by exited threads, asks live heaps to trim).
    pub reclaim: bool,
    /// Reclaimer period in milliseconds (1..=10000).
    pub reclaim_interval_ms: u32,
    /// Ask for transparent huge pages (`MADV_HUGEPAGE`) on arenas and huge blocks.
    pub huge_pages: bool,
    /// Ask for transparent huge pages on arenas mapped once the heaps use at least this many MiB
    /// (touched small pages and medium chunks, live huge blocks; `usize::MAX`: never). Big heaps
    /// then take 2 MiB faults instead of 4 KiB ones; small programs keep 4 KiB pages and their
    /// small RSS. (Huge blocks of 2 MiB and more get the hint whatever this says.)
    pub huge_pages_above_mib: usize,
    /// Ask for transparent huge pages on the arenas a heap takes once that heap alone has
    /// touched this many MiB (small pages carved, medium memory below the high-water marks;
    /// `usize::MAX`: never). A thread with a big working set stops paying a 4 KiB fault per page
    /// long before the process as a whole reaches `huge_pages_above_mib`, while many threads
    /// with small heaps keep their RSS tight.
    pub huge_pages_heap_above_mib: usize,
    /// Fully free arenas kept mapped for reuse when reclamation is off (4 MiB each).
    pub arena_cache: usize,
    /// MiB of freed huge blocks kept mapped for reuse when reclamation is off.
    pub huge_cache_mib: usize,
    /// Print the options at start and the stats at exit (used by the preload library).
    pub verbose: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reclaim: false,
            reclaim_interval_ms: 50,
            huge_pages: false,
            huge_pages_above_mib: 64,
            huge_pages_heap_above_mib: 16,
            arena_cache: 16,
            huge_cache_mib: 256,
            verbose: false,
        }
    }
}

/// Errors from [`configure`].
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `reclaim_interval_ms` outside 1..=10000.
    #[error("reclaim_interval_ms must be in 1..=10000, got {0}")]
    BadInterval(u32),
    /// The reclaimer thread could not be started (`pthread_create` returned this error number).
    #[error("could not start the reclaimer thread: pthread_create returned {0}")]
    ReclaimThread(i32),
}

pub(crate) static RECLAIM: AtomicBool = AtomicBool::new(false);
pub(crate) static INTERVAL_MS: AtomicU32 = AtomicU32::new(50);
pub(crate) static HUGE_PAGES: AtomicBool = AtomicBool::new(false);
pub(crate) static HUGE_PAGES_ABOVE: AtomicUsize = AtomicUsize::new(64 << 20);
pub(crate) static HUGE_PAGES_HEAP_ABOVE: AtomicUsize = AtomicUsize::new(16 << 20);
pub(crate) static ARENA_CACHE: AtomicUsize = AtomicUsize::new(16);
pub(crate) static HUGE_CACHE_BYTES: AtomicUsize = AtomicUsize::new(256 << 20);
pub(crate) static VERBOSE: AtomicBool = AtomicBool::new(false);

/// 0 = environment not read, 1 = being read, 2 = read.
static ENV_STATE: AtomicU8 = AtomicU8::new(0);

fn env_str(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv with a NUL-terminated name; the result is null or a NUL-terminated string
    // owned by the environment, which we only read here, before returning.
    unsafe {
        let p = libc::getenv(name.as_ptr());
        if p.is_null() {
            None
        } else {
            Some(core::ffi::CStr::from_ptr(p).to_bytes())
        }
    }
}

fn env_bool(name: &core::ffi::CStr) -> Option<bool> {
    env_str(name).map(|v| {
        !(v.is_empty()
            || v == b"0"
            || v.eq_ignore_ascii_case(b"false")
            || v.eq_ignore_ascii_case(b"off")
            || v.eq_ignore_ascii_case(b"no"))
    })
}

fn env_u64(name: &core::ffi::CStr) -> Option<u64> {
    let v = env_str(name)?;
    let mut n: u64 = 0;
    if v.is_empty() {
        return None;
    }
    for &c in v {
        if !c.is_ascii_digit() {
            crate::fatal::write_stderr("fancy: ignoring non-numeric value of ");
            crate::fatal::write_stderr(name.to_str().unwrap_or("?"));
            crate::fatal::write_stderr("\n");
            return None;
        }
        n = n.saturating_mul(10).saturating_add((c - b'0') as u64);
    }
    Some(n)
}

/// Reads the environment once (idempotent, cheap after the first call).
#[inline]
pub(crate) fn ensure_env() {
    if ENV_STATE.load(Ordering::Acquire) != 2 {
        read_env_slow();
    }
}

#[cold]
fn read_env_slow() {
    if ENV_STATE
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Another thread reads it; the values it sets are plain atomics, defaults meanwhile.
        return;
    }
    if let Some(b) = env_bool(c"FANCY_RECLAIM") {
        RECLAIM.store(b, Ordering::Relaxed);
    }
    if let Some(n) = env_u64(c"FANCY_RECLAIM_INTERVAL_MS") {
        INTERVAL_MS.store(n.clamp(1, 10_000) as u32, Ordering::Relaxed);
    }
    if let Some(b) = env_bool(c"FANCY_HUGE_PAGES") {
        HUGE_PAGES.store(b, Ordering::Relaxed);
    }
    if let Some(n) = env_u64(c"FANCY_HUGE_PAGES_ABOVE_MIB") {
        HUGE_PAGES_ABOVE.store((n as usize).saturating_mul(1 << 20), Ordering::Relaxed);
    }
    if let Some(n) = env_u64(c"FANCY_HUGE_PAGES_HEAP_ABOVE_MIB") {
        HUGE_PAGES_HEAP_ABOVE.store((n as usize).saturating_mul(1 << 20), Ordering::Relaxed);
    }
    if let Some(n) = env_u64(c"FANCY_ARENA_CACHE") {
        ARENA_CACHE.store(n.min(1 << 20) as usize, Ordering::Relaxed);
    }
    if let Some(n) = env_u64(c"FANCY_HUGE_CACHE_MIB") {
        HUGE_CACHE_BYTES.store((n.min(1 << 30) as usize) << 20, Ordering::Relaxed);
    }
    if let Some(b) = env_bool(c"FANCY_VERBOSE") {
        VERBOSE.store(b, Ordering::Relaxed);
    }
    ENV_STATE.store(2, Ordering::Release);
}

/// The options in force.
pub fn config() -> Config {
    ensure_env();
    Config {
        reclaim: RECLAIM.load(Ordering::Relaxed),
        reclaim_interval_ms: INTERVAL_MS.load(Ordering::Relaxed),
        huge_pages: HUGE_PAGES.load(Ordering::Relaxed),
        huge_pages_above_mib: HUGE_PAGES_ABOVE.load(Ordering::Relaxed) >> 20,
        huge_pages_heap_above_mib: HUGE_PAGES_HEAP_ABOVE.load(Ordering::Relaxed) >> 20,
        arena_cache: ARENA_CACHE.load(Ordering::Relaxed),
        huge_cache_mib: HUGE_CACHE_BYTES.load(Ordering::Relaxed) >> 20,
        verbose: VERBOSE.load(Ordering::Relaxed),
    }
}

/// Sets the options (overriding the environment). Call it before the first allocation to have
/// reclamation from the start (`replay --alloc fancy-reclaim` does); it may be called again
/// later. Turning `reclaim` on starts the reclaimer thread now.
pub fn configure(cfg: Config) -> Result<(), ConfigError> {
    if !(1..=10_000).contains(&cfg.reclaim_interval_ms) {
        return Err(ConfigError::BadInterval(cfg.reclaim_interval_ms));
    }
    ensure_env();
    INTERVAL_MS.store(cfg.reclaim_interval_ms, Ordering::Relaxed);
    HUGE_PAGES.store(cfg.huge_pages, Ordering::Relaxed);
    HUGE_PAGES_ABOVE.store(
        cfg.huge_pages_above_mib.saturating_mul(1 << 20),
        Ordering::Relaxed,
    );
    HUGE_PAGES_HEAP_ABOVE.store(
        cfg.huge_pages_heap_above_mib.saturating_mul(1 << 20),
        Ordering::Relaxed,
    );
    ARENA_CACHE.store(cfg.arena_cache, Ordering::Relaxed);
    HUGE_CACHE_BYTES.store(cfg.huge_cache_mib.min(1 << 30) << 20, Ordering::Relaxed);
    VERBOSE.store(cfg.verbose, Ordering::Relaxed);
    RECLAIM.store(cfg.reclaim, Ordering::Relaxed);
    if cfg.reclaim {
        // The reclaimer runs while some thread holds a heap: the caller is about to allocate.
        crate::tls::thread_attach();
        crate::reclaim::start().map_err(ConfigError::ReclaimThread)?;
    }
    Ok(())
}
