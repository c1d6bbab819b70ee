//! The optional background reclaimer: every `reclaim_interval_ms` it cleans the heaps of exited
//! threads, unmaps arenas and huge mappings that sat in the caches for a tick, and asks live
//! heaps to trim (they do it at their next slow path: the reclaimer never touches a heap a
//! thread owns). Off by default (`FANCY_RECLAIM=1` or `configure`).
//!
//! The thread is made with `pthread_create` (not `std::thread`, which allocates through the
//! global allocator, possibly us) and never allocates. It does not survive fork; the child
//! starts its own on the next arena it maps.
//!
//! It is never what keeps a process alive: it blocks every signal (a handler run on it could
//! call malloc while it holds an allocator lock), and it ends as soon as no thread holds a heap
//! (`heap::bound_threads`, woken at once by the hand-over of the last one) or the kernel counts
//! it as the process's only thread — after the main thread's `pthread_exit`, say. Reclamation
//! starts again with the next arena or huge block mapped.

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
    // SAFETY: attr and signal sets set up and destroyed locally; the entry point has the right
    // signature and takes no argument. pthread_create may call malloc (stack/TLS setup): we hold
    // no lock here. The new thread inherits the mask with every signal blocked; ours is restored.
    let r = unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 64 * 1024);
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let r = libc::pthread_create(&mut t, &attr, main, core::ptr::null_mut());
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
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
        // Sleeps a tick, or until the last thread with a heap hands it over (`wake`).
        let seen = WAKE.load(Ordering::Acquire);
        if crate::heap::bound_threads() > 0 {
            // SAFETY: a futex wait on our own static word with a valid timeout; a spurious or
            // early wake-up only shortens a tick.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    WAKE.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    seen,
                    &ts as *const libc::timespec,
                )
            };
        }
        // /proc is read about every 100 ms whatever the period.
        let proc_every = (100 / ms).max(1) as u64;
        if crate::heap::bound_threads() == 0 || (tick().is_multiple_of(proc_every) && alone()) {
            // Nobody left to reclaim for: end, so the process can end with its threads.
            STATE.store(0, Ordering::Release);
            return core::ptr::null_mut();
        }
        if !crate::config::RECLAIM.load(Ordering::Relaxed) {
            continue;
        }
        pass();
    }
}

/// Bumped (and futex-woken) when the last thread with a heap hands it over.
static WAKE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Wakes the reclaimer: no thread holds a heap any more (called by `heap::abandon`).
pub(crate) fn wake() {
    if STATE.load(Ordering::Relaxed) != 2 {
        return;
    }
    WAKE.fetch_add(1, Ordering::Release);
    // SAFETY: a futex wake on our own static word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WAKE.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
}

/// Whether the kernel counts the calling thread as its process's only one (field 20 of
/// `/proc/self/stat`). Read with raw open/read into a stack buffer: no allocation. False when
/// /proc cannot be read (then only the heap count ends the reclaimer).
fn alone() -> bool {
    let mut buf = [0u8; 1024];
    // SAFETY: open/read/close with a NUL-terminated path and a buffer of `buf.len()` bytes.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return false;
    }
    let text = &buf[..n as usize];
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    let Some(close) = text.iter().rposition(|&b| b == b')') else {
        return false;
    };
    // Fields 3.. follow; num_threads is field 20, the 18th after the ')'.
    text[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .nth(17)
        .is_some_and(|f| f == b"1")
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
