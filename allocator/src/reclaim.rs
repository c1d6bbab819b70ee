//! The optional background reclaimer: every `reclaim_interval_ms` it cleans the heaps of exited
//! threads, unmaps arenas and huge mappings that sat in the caches for a tick, and asks live
//! heaps to trim (they do it at their next slow path: the reclaimer never touches a heap a
//! thread owns). Off by default (`FANCY_RECLAIM=1` or `configure`).
//!
//! The thread is made with `pthread_create` (not `std::thread`, which allocates through the
//! global allocator, possibly us) and never allocates. It does not survive fork; the child
//! starts its own on the next arena it maps.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

static STATE: AtomicU8 = AtomicU8::new(0); // 0 none, 1 starting, 2 running
static TICK: AtomicU64 = AtomicU64::new(1);
pub(crate) static PASSES: AtomicU64 = AtomicU64::new(0);

/// Reclaimer ticks so far (the age clock of the caches).
#[inline]
pub(crate) fn tick() -> u64 {
    TICK.load(Ordering::Relaxed)
}

/// Starts the reclaimer if reclamation is on and it is not running (from cold paths only).
#[inline]
pub(crate) fn maybe_start() {
    if crate::config::RECLAIM.load(Ordering::Relaxed) && STATE.load(Ordering::Relaxed) == 0 {
        let _ = start();
    }
}

/// Starts the reclaimer thread once. Err(errno of pthread_create).
pub(crate) fn start() -> Result<(), i32> {
    if STATE
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Ok(());
    }
    let mut t: libc::pthread_t = 0;
    // SAFETY: attr set up and destroyed locally; the entry point has the right signature and
    // takes no argument. pthread_create may call malloc (stack/TLS setup): we hold no lock here.
    let r = unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 64 * 1024);
        let r = libc::pthread_create(&mut t, &attr, main, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        r
    };
    if r != 0 {
        STATE.store(0, Ordering::Release);
        return Err(r);
    }
    STATE.store(2, Ordering::Release);
    Ok(())
}

extern "C" fn main(_: *mut libc::c_void) -> *mut libc::c_void {
    loop {
        let ms = crate::config::INTERVAL_MS.load(Ordering::Relaxed).max(1) as i64;
        let ts = libc::timespec {
            tv_sec: ms / 1000,
            tv_nsec: (ms % 1000) * 1_000_000,
        };
        // SAFETY: nanosleep with a valid timespec; an early wake-up only shortens a tick.
        unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
        if !crate::config::RECLAIM.load(Ordering::Relaxed) {
            continue;
        }
        pass();
    }
}

/// One reclamation pass (also callable directly, e.g. by `collect`).
pub(crate) fn pass() {
    let t = TICK.fetch_add(1, Ordering::Relaxed) + 1;
    crate::heap::clean_abandoned(true);
    crate::arena::purge_cache(t - 1);
    crate::huge::purge_cache(t - 1);
    crate::heap::request_trim_all();
    PASSES.fetch_add(1, Ordering::Relaxed);
}

/// After fork, in the child: no reclaimer thread exists there.
pub(crate) fn after_fork_child() {
    STATE.store(0, Ordering::Relaxed);
}

pub(crate) fn running() -> bool {
    STATE.load(Ordering::Relaxed) == 2
}
