//! The process-wide pools (one per variant), their thread-local slab caches and the per-thread
//! statistics records.
//!
//! A thread's cache holds up to 64 blocks of 32 B and 32 each of 128 B and 256 B per variant;
//! it is refilled with half its capacity at once from the class list and, when full, drains half
//! back in one list splice. The thread-local state is `const`-initialised and has no destructor
//! (so touching it never allocates); a pthread key registered on a thread's first call drains
//! its caches and retires its statistics when the thread exits.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crate::pool::{Core, N_CLASS};
use crate::sys::{self, GRANULE, Guard, RawLock};
use crate::{Stats, Strategy, Variant};

/// The process-wide pools, by [`Variant`] index.
pub(crate) static POOLS: [Core; 3] = [
    Core::new(Strategy::Hybrid, Variant::Baseline, Some(0)),
    Core::new(Strategy::Hybrid, Variant::Sharded, Some(1)),
    Core::new(Strategy::Hybrid, Variant::Percls, Some(2)),
];

const CAP: [usize; 3] = [64, 32, 32];
const _: () = assert!(N_CLASS > 3);

/// Counter slots of a statistics record.
const C_ALLOCS: usize = 0;
const C_FREES: usize = 1;
const C_REALLOCS: usize = 2;
const C_BYTES: usize = 3;

/// One thread's counters for the three pools. Only the owner thread writes them (plain
/// load + store); `stats()` reads them from any thread.
#[repr(C, align(64))]
struct ThreadRec {
    next: *mut ThreadRec,
    in_use: AtomicBool,
    counts: [[AtomicU64; 4]; 3],
}

struct Tls {
    registered: bool,
    rec: *mut ThreadRec,
    n: [[usize; 3]; 3],
    slots: [[[*mut u8; 64]; 3]; 3],
}

thread_local! {
    static TLS: UnsafeCell<Tls> = const {
        UnsafeCell::new(Tls {
            registered: false,
            rec: ptr::null_mut(),
            n: [[0; 3]; 3],
            slots: [[[ptr::null_mut(); 64]; 3]; 3],
        })
    };
}

/// Registry of records (push-only; a retired record is reused by the next new thread).
static RECS: AtomicPtr<ThreadRec> = AtomicPtr::new(ptr::null_mut());
static REC_LOCK: RawLock = RawLock::new();
/// Carving range for new records.
static REC_NEXT: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
static REC_END: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
/// Counts of threads that have exited.
static RETIRED: [[AtomicU64; 4]; 3] = [const { [const { AtomicU64::new(0) }; 4] }; 3];
static RETIRED_THREADS: AtomicU64 = AtomicU64::new(0);
/// The pthread key whose destructor drains a thread's caches; u32::MAX until created.
static KEY: AtomicU32 = AtomicU32::new(u32::MAX);

#[inline]
fn tls() -> *mut Tls {
    TLS.with(|t| t.get())
}

/// Registers the calling thread (key value and statistics record) if it is not yet.
#[inline]
fn ensure(t: *mut Tls) {
    // SAFETY: `t` is this thread's state.
    if unsafe { !(*t).registered } {
        register(t);
    }
}

#[cold]
fn register(t: *mut Tls) {
    // SAFETY: `t` is this thread's state. `registered` is set first: pthread_setspecific may
    // allocate (through this pool, when preloaded), and that nested call must not come back here.
    unsafe {
        (*t).registered = true;
        let key = key();
        if key != u32::MAX {
            libc::pthread_setspecific(key, ptr::dangling::<libc::c_void>());
        }
        if (*t).rec.is_null() {
            (*t).rec = new_rec();
        }
    }
}

fn key() -> u32 {
    let k = KEY.load(Ordering::Acquire);
    if k != u32::MAX {
        return k;
    }
    let _g = Guard::new(&REC_LOCK);
    let k = KEY.load(Ordering::Acquire);
    if k != u32::MAX {
        return k;
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creating a key with a valid destructor.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
        KEY.store(key, Ordering::Release);
        key
    } else {
        u32::MAX
    }
}

fn new_rec() -> *mut ThreadRec {
    // SAFETY: records are never freed; the registry is push-only, new ones are carved from
    // reservation memory under REC_LOCK.
    unsafe {
        let mut r = RECS.load(Ordering::Acquire);
        while !r.is_null() {
            if (*r)
                .in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return r;
            }
            r = (*r).next;
        }
        let _g = Guard::new(&REC_LOCK);
        let mut p = REC_NEXT.load(Ordering::Relaxed);
        if p.is_null() || p.add(size_of::<ThreadRec>()) > REC_END.load(Ordering::Relaxed) {
            p = sys::take_fresh(GRANULE, 0);
            if p.is_null() {
                return ptr::null_mut();
            }
            REC_END.store(p.add(GRANULE), Ordering::Relaxed);
        }
        REC_NEXT.store(p.add(size_of::<ThreadRec>()), Ordering::Relaxed);
        let r = p as *mut ThreadRec;
        r.write(ThreadRec {
            next: RECS.load(Ordering::Relaxed),
            in_use: AtomicBool::new(true),
            counts: [const { [const { AtomicU64::new(0) }; 4] }; 3],
        });
        RECS.store(r, Ordering::Release);
        r
    }
}

#[inline]
fn bump(t: *mut Tls, v: usize, what: usize, by: u64) {
    // SAFETY: `t` is this thread's state; its record is written by this thread only.
    unsafe {
        let r = (*t).rec;
        if !r.is_null() {
            let c = &(*r).counts[v][what];
            c.store(
                c.load(Ordering::Relaxed).wrapping_add(by),
                Ordering::Relaxed,
            );
        }
    }
}

/// Counts an allocation of `size` bytes for pool `v` on this thread.
#[inline]
pub(crate) fn count_alloc(v: usize, size: usize) {
    let t = tls();
    ensure(t);
    bump(t, v, C_ALLOCS, 1);
    bump(t, v, C_BYTES, size as u64);
}

#[inline]
pub(crate) fn count_free(v: usize) {
    let t = tls();
    ensure(t);
    bump(t, v, C_FREES, 1);
}

#[inline]
pub(crate) fn count_realloc(v: usize, size: usize) {
    let t = tls();
    ensure(t);
    bump(t, v, C_REALLOCS, 1);
    bump(t, v, C_BYTES, size as u64);
}

/// A slab block of class `id` (< 3) for pool `v`, from the thread's cache.
#[inline]
pub(crate) unsafe fn slab_alloc(v: usize, id: usize) -> *mut u8 {
    let t = tls();
    // SAFETY: `t` is this thread's state; cached blocks are free blocks of class `id`.
    unsafe {
        let n = (*t).n[v][id];
        if n > 0 {
            (*t).n[v][id] = n - 1;
            return (*t).slots[v][id][n - 1];
        }
        refill(t, v, id)
    }
}

#[cold]
unsafe fn refill(t: *mut Tls, v: usize, id: usize) -> *mut u8 {
    ensure(t);
    // SAFETY: as slab_alloc; the batch lands in this thread's slots (re-read after `ensure`,
    // which may have run a nested allocation).
    unsafe {
        let n = (*t).n[v][id];
        if n > 0 {
            (*t).n[v][id] = n - 1;
            return (*t).slots[v][id][n - 1];
        }
        let got = POOLS[v].pop_batch(id, (*t).slots[v][id].as_mut_ptr(), CAP[id] / 2);
        if got == 0 {
            return ptr::null_mut();
        }
        (*t).n[v][id] = got - 1;
        (*t).slots[v][id][got - 1]
    }
}

/// Takes back slab block `p` of class `id` for pool `v` into the thread's cache.
#[inline]
pub(crate) unsafe fn slab_free(v: usize, id: usize, p: *mut u8) {
    let t = tls();
    // SAFETY: `t` is this thread's state; `p` is a block of class `id` nobody uses.
    unsafe {
        let n = (*t).n[v][id];
        if n < CAP[id] {
            (*t).slots[v][id][n] = p;
            (*t).n[v][id] = n + 1;
            return;
        }
        drain(t, v, id, CAP[id] / 2);
        let n = (*t).n[v][id];
        (*t).slots[v][id][n] = p;
        (*t).n[v][id] = n + 1;
    }
}

/// Moves the top `k` cached blocks of class `id` back to pool `v`'s class list.
unsafe fn drain(t: *mut Tls, v: usize, id: usize, k: usize) {
    // SAFETY: `t` is this thread's state; the blocks are free blocks of the class, linked
    // through their first word before one splice under the class lock.
    unsafe {
        let n = (*t).n[v][id];
        let k = k.min(n);
        if k == 0 {
            return;
        }
        let s = &(*t).slots[v][id];
        for i in n - k..n - 1 {
            *(s[i] as *mut *mut u8) = s[i + 1];
        }
        POOLS[v].class_push_list(id, s[n - k], s[n - 1], k);
        (*t).n[v][id] = n - k;
    }
}

/// Empties the calling thread's caches into the pools and retires its statistics record.
pub(crate) fn detach() {
    let t = tls();
    // SAFETY: `t` is this thread's state.
    unsafe {
        for v in 0..3 {
            for id in 0..3 {
                drain(t, v, id, usize::MAX);
            }
        }
        let r = (*t).rec;
        if !r.is_null() {
            for (mine, all) in (*r).counts.iter().zip(&RETIRED) {
                for (c, total) in mine.iter().zip(all) {
                    total.fetch_add(c.swap(0, Ordering::Relaxed), Ordering::Relaxed);
                }
            }
            RETIRED_THREADS.fetch_add(1, Ordering::Relaxed);
            (*r).in_use.store(false, Ordering::Release);
            (*t).rec = ptr::null_mut();
        }
        if (*t).registered {
            (*t).registered = false;
            let k = KEY.load(Ordering::Acquire);
            if k != u32::MAX {
                libc::pthread_setspecific(k, ptr::null());
            }
        }
    }
}

extern "C" fn thread_exit(_: *mut libc::c_void) {
    detach();
}

/// This thread's statistics for pool `v`.
pub(crate) fn thread_stats(v: usize) -> Stats {
    let t = tls();
    // SAFETY: `t` is this thread's state.
    let r = unsafe { (*t).rec };
    let mut s = Stats::default();
    if !r.is_null() {
        // SAFETY: records are never freed.
        add(&mut s, unsafe { &(*r).counts[v] });
        s.threads = 1;
    }
    s
}

fn add(s: &mut Stats, c: &[AtomicU64; 4]) {
    s.allocs += c[C_ALLOCS].load(Ordering::Relaxed);
    s.frees += c[C_FREES].load(Ordering::Relaxed);
    s.reallocs += c[C_REALLOCS].load(Ordering::Relaxed);
    s.bytes_requested += c[C_BYTES].load(Ordering::Relaxed);
}

/// Every thread's statistics for pool `v` merged: the exited threads' and the live ones'.
pub(crate) fn merged_stats(v: usize) -> Stats {
    let mut s = Stats::default();
    add(&mut s, &RETIRED[v]);
    s.threads = RETIRED_THREADS.load(Ordering::Relaxed);
    let mut r = RECS.load(Ordering::Acquire);
    // SAFETY: records are never freed; the registry is push-only.
    unsafe {
        while !r.is_null() {
            if (*r).in_use.load(Ordering::Acquire) {
                add(&mut s, &(*r).counts[v]);
                s.threads += 1;
            }
            r = (*r).next;
        }
    }
    s
}

/// Blocks sitting in the calling thread's caches for pool `v`.
pub(crate) fn cached_blocks(v: usize) -> usize {
    let t = tls();
    // SAFETY: `t` is this thread's state.
    unsafe { (*t).n[v].iter().sum() }
}

/// Fork support: take every lock the pools use, in one order.
pub(crate) fn lock_all() {
    REC_LOCK.lock();
    for p in &POOLS {
        p.for_each_lock(|l| l.lock());
    }
    sys::region_lock().lock();
}

pub(crate) fn unlock_all(child: bool) {
    let f = |l: &RawLock| {
        if child {
            l.reset_in_child()
        } else {
            l.unlock()
        }
    };
    f(sys::region_lock());
    for p in &POOLS {
        p.for_each_lock(f);
    }
    f(&REC_LOCK);
}
