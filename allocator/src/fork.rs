//! Fork safety: every global lock is taken before `fork` and released after it, in both
//! processes, so the child never inherits a lock held by a thread that does not exist there.
//! Lock order everywhere: pool → metadata → arena cache → huge lists.
//!
//! The forking thread may still allocate between our prepare handler and the fork (another
//! library's prepare handler registered before ours runs after it): our locks let the thread
//! recorded in `FORK_HOLDER` through. Heaps bound to threads other than the forking one are left
//! alone in the child (they may be mid-operation); their free memory is lost to the child, never
//! corrupted.

use crate::sync::FORK_HOLDER;
use core::sync::atomic::{AtomicBool, Ordering};

static REGISTERED: AtomicBool = AtomicBool::new(false);

pub(crate) fn register() {
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: handlers with the right signature; pthread_atfork may allocate (then through us,
    // which is fine: no lock of ours is held here).
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

extern "C" fn prepare() {
    crate::heap::POOL.raw_lock();
    crate::heap::META.raw_lock();
    crate::arena::cache_lock().raw_lock();
    crate::huge::lock().raw_lock();
    // SAFETY: pthread_self has no preconditions.
    FORK_HOLDER.store(unsafe { libc::pthread_self() } as usize, Ordering::Release);
}

fn unlock_all() {
    FORK_HOLDER.store(0, Ordering::Release);
    // SAFETY: prepare took every one of these locks on this thread.
    unsafe {
        crate::huge::lock().raw_unlock();
        crate::arena::cache_lock().raw_unlock();
        crate::heap::META.raw_unlock();
        crate::heap::POOL.raw_unlock();
    }
}

extern "C" fn parent() {
    unlock_all();
}

extern "C" fn child() {
    unlock_all();
    crate::heap::after_fork_child(crate::heap::is_real(crate::tls::get()));
    crate::reclaim::after_fork_child();
}
