//! A tiny spin lock for the cold paths (arena cache, heap pool, huge list, metadata).
//!
//! Why not `std::sync::Mutex`: these locks must be taken and released by the fork handlers from
//! different functions (prepare / parent / child), and the forking thread must be able to re-enter
//! them while it holds them for `fork` (another prepare handler may call malloc after ours). The
//! hot paths never take a lock.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Set while the forking thread holds every lock between the prepare and parent/child handlers.
/// Holds that thread's id (`pthread_self`), or 0.
pub(crate) static FORK_HOLDER: AtomicUsize = AtomicUsize::new(0);

pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through `lock()`, which gives one thread at a time access.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; T: Send makes that fine.
unsafe impl<T: Send> Send for SpinLock<T> {}

pub(crate) struct Guard<'a, T> {
    lock: &'a SpinLock<T>,
    /// False when this guard re-entered a lock held by the forking thread: it must not release it.
    owns: bool,
}

#[inline]
fn self_id() -> usize {
    // SAFETY: pthread_self has no preconditions and never fails.
    unsafe { libc::pthread_self() as usize }
}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn lock(&self) -> Guard<'_, T> {
        let mut spins = 0u32;
        loop {
            if !self.locked.load(Ordering::Relaxed)
                && self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Guard {
                    lock: self,
                    owns: true,
                };
            }
            // The forking thread holds every lock between prepare and parent/child; a prepare
            // handler of another library registered before ours may still call malloc then.
            let holder = FORK_HOLDER.load(Ordering::Acquire);
            if holder != 0 && holder == self_id() {
                return Guard {
                    lock: self,
                    owns: false,
                };
            }
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }

    pub(crate) fn try_lock(&self) -> Option<Guard<'_, T>> {
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            Some(Guard {
                lock: self,
                owns: true,
            })
        } else {
            None
        }
    }

    /// Takes the lock without a guard (fork prepare).
    pub(crate) fn raw_lock(&self) {
        core::mem::forget(self.lock());
    }

    /// Releases a lock taken with `raw_lock`.
    ///
    /// # Safety
    /// The caller must hold the lock through `raw_lock` (or be the only thread left after fork).
    pub(crate) unsafe fn raw_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

impl<T> core::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves exclusive access (or re-entry by the forking thread, which
        // holds the lock and is the only thread using it until fork returns).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for Deref.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        if self.owns {
            self.lock.locked.store(false, Ordering::Release);
        }
    }
}

/// A counter written by a single thread (its heap's owner) and read by any thread for stats.
/// Relaxed load + store: as cheap as a plain increment, and no data race.
#[inline(always)]
pub(crate) fn bump(c: &core::sync::atomic::AtomicU64, delta: u64) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(delta),
        Ordering::Relaxed,
    );
}

#[inline(always)]
pub(crate) fn drop_by(c: &core::sync::atomic::AtomicU64, delta: u64) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_sub(delta),
        Ordering::Relaxed,
    );
}
