//! The calling thread's heap, and its hand-over when the thread exits.
//!
//! The heap pointer lives in a TLS slot that never allocates and never registers a TLS
//! destructor (an initial-exec variable on x86-64 Linux, else a `const` `thread_local!` `Cell`
//! without `Drop`) (which would go through
//! `__cxa_thread_atexit_impl` → calloc → us). Thread exit is caught by a pthread key whose
//! destructor abandons the heap to the pool (pthread keys below 32 live inside the thread
//! descriptor, so `pthread_setspecific` does not allocate either; if it ever does, the heap is
//! already bound, so the nested calloc is served normally).

use crate::heap::{self, Heap};
use core::sync::atomic::{AtomicU64, Ordering};

// On x86-64 Linux the slot is an initial-exec TLS variable defined in assembly: in a shared
// library (the preload cdylib) Rust's `thread_local!` compiles to a `__tls_get_addr` call on every
// access, while initial-exec is one `mov` from `%fs` (it needs static TLS space, which a library
// loaded at startup, as LD_PRELOAD does, always has; 8 bytes also fit glibc's surplus for dlopen).
// Its initial value is the UNBOUND sentinel, so the fast paths never test for null.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod slot {
    use crate::heap::Heap;

    core::arch::global_asm!(
        ".pushsection .tdata.__fancy_tls_heap_v1,\"awT\",@progbits",
        ".p2align 3",
        ".globl __fancy_tls_heap_v1",
        ".hidden __fancy_tls_heap_v1",
        ".type __fancy_tls_heap_v1,@object",
        ".size __fancy_tls_heap_v1,8",
        "__fancy_tls_heap_v1:",
        ".quad {unbound}",
        ".popsection",
        unbound = sym crate::heap::UNBOUND,
    );

    #[inline(always)]
    pub fn get() -> *mut Heap {
        let v: *mut Heap;
        // SAFETY: reads this thread's own TLS slot (defined above) through its initial-exec
        // offset; no memory is written.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr [rip + __fancy_tls_heap_v1@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v}]",
                v = out(reg) v,
                options(nostack, readonly, preserves_flags),
            );
        }
        v
    }

    #[inline(always)]
    pub fn set(h: *mut Heap) {
        // SAFETY: writes this thread's own TLS slot; declared as writing memory so the compiler
        // does not reuse an earlier `get` across it.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + __fancy_tls_heap_v1@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {h}",
                t = out(reg) _,
                h = in(reg) h,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod slot {
    use crate::heap::{self, Heap};
    use core::cell::Cell;

    thread_local! {
        static HEAP: Cell<*mut Heap> = const { Cell::new(heap::UNBOUND.0.get()) };
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        HEAP.with(|h| h.get())
    }

    #[inline(always)]
    pub fn set(h: *mut Heap) {
        HEAP.with(|c| c.set(h));
    }
}

/// The calling thread's heap, or one of the sentinels `UNBOUND` / `EXITED`.
#[inline(always)]
pub fn get() -> *mut Heap {
    slot::get()
}

#[inline(always)]
fn set(h: *mut Heap) {
    slot::set(h)
}

/// 0 = no key, 1 = being created, 2 = ready, 3 = failed.
/// 0 = no key yet, `pid << 8 | 1` = being created by a thread of process `pid`, 2 = created,
/// 3 = creation failed. The creator's pid is in the state so that a child forked while its
/// parent was creating the key (the creating thread does not exist in the child) sees that
/// nobody will finish and starts over, instead of waiting forever (found by the fork stress
/// test: a child hung in `key()`).
static KEY_STATE: AtomicU64 = AtomicU64::new(0);
static mut KEY: libc::pthread_key_t = 0;

unsafe extern "C" fn thread_exit(value: *mut libc::c_void) {
    let h = value as *mut Heap;
    if get() == h && heap::is_real(h) {
        set(heap::exited());
        // SAFETY: `h` was this thread's heap; the thread is ending and will not use it again
        // (TLS now names the EXITED sentinel, so later mallocs borrow a pooled heap).
        unsafe { heap::abandon(h) };
    }
}

fn key() -> Option<libc::pthread_key_t> {
    let mut spins = 0u32;
    loop {
        match KEY_STATE.load(Ordering::Acquire) {
            2 => {
                // SAFETY: KEY is written once, before KEY_STATE becomes 2 (Release/Acquire).
                return Some(unsafe { KEY });
            }
            3 => return None,
            0 => {
                let creating = (my_pid() << 8) | 1;
                if KEY_STATE
                    .compare_exchange(0, creating, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let mut k: libc::pthread_key_t = 0;
                    // SAFETY: plain key creation with a destructor of the right signature.
                    let r = unsafe { libc::pthread_key_create(&mut k, Some(thread_exit)) };
                    if r == 0 {
                        // SAFETY: only the thread that won the CAS writes KEY, once.
                        unsafe { KEY = k };
                        crate::fork::register();
                        KEY_STATE.store(2, Ordering::Release);
                        return Some(k);
                    }
                    KEY_STATE.store(3, Ordering::Release);
                    return None;
                }
            }
            creating => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1024) {
                    if creating >> 8 != my_pid() {
                        // Forked while another thread of the parent was creating the key.
                        let _ = KEY_STATE.compare_exchange(
                            creating,
                            0,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                        continue;
                    }
                    // SAFETY: plain syscall.
                    unsafe { libc::sched_yield() };
                } else {
                    core::hint::spin_loop();
                }
            }
        }
    }
}

fn my_pid() -> u64 {
    // SAFETY: getpid has no preconditions and does not allocate.
    unsafe { libc::getpid() as u64 }
}

/// Binds a heap to the calling thread (which has none). Returns it, or null if the OS gives no
/// memory. `EXITED` threads are not bound again (their mallocs borrow).
#[cold]
pub(crate) fn bind() -> *mut Heap {
    crate::config::ensure_env();
    let h = heap::acquire();
    if h.is_null() {
        return h;
    }
    set(h);
    if let Some(k) = key() {
        // SAFETY: a valid key; the value is our heap pointer, read back by thread_exit.
        unsafe { libc::pthread_setspecific(k, h.cast()) };
    }
    h
}

/// Ends the calling thread's use of its heap (as at thread exit) without ending the thread; its
/// next allocation binds a heap again.
pub fn thread_detach() {
    let h = get();
    if heap::is_real(h) {
        set(heap::unbound());
        if let Some(k) = key() {
            // SAFETY: valid key; clearing the value so thread_exit does not see a stale heap.
            unsafe { libc::pthread_setspecific(k, core::ptr::null()) };
        }
        // SAFETY: it was this thread's heap and TLS no longer names it.
        unsafe { heap::abandon(h) };
    }
}

/// Binds a heap to the calling thread now (optional: the first allocation does it anyway).
pub fn thread_attach() {
    let h = get();
    if h == heap::unbound() || h == heap::exited() {
        bind();
    }
}

/// Runs `f` with a heap the calling thread owns: its own (bound on first use) or, after its
/// exit destructor ran, one borrowed from the pool for the duration of `f`.
#[cold]
pub(crate) fn with_heap<R>(f: impl FnOnce(*mut Heap) -> R) -> R {
    let h = get();
    if heap::is_real(h) {
        return f(h);
    }
    if h == heap::unbound() {
        let b = bind();
        if !b.is_null() {
            return f(b);
        }
    }
    let b = heap::acquire();
    if b.is_null() {
        return f(core::ptr::null_mut());
    }
    let r = f(b);
    // SAFETY: borrowed for the call only; TLS never named it.
    unsafe { heap::abandon(b) };
    r
}
