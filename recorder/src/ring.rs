//! One thread's event ring: single producer (the thread), single consumer (whoever holds the
//! session's sink lock: the writer thread, or a thread flushing at exit).
//!
//! A ring is one anonymous mapping: this header, then `cap` slots of 32 bytes. A slot is
//! `[stamp | kind << 60, a, b, c]` — the raw arguments of the call; the consumer turns it into
//! a [`traces::Event`]. The producer writes a slot, then publishes `head` (release); the
//! consumer reads up to `head` (acquire), then publishes `tail`. The producer keeps a private
//! copy of `tail` and re-reads the shared one only when the ring looks full, so a recorded
//! event costs no shared-cache-line traffic. When the ring is really full the producer sleeps
//! on `progress` (a futex the consumer bumps: [`crate::session::push_slow`]) — events are never
//! dropped for want of room.
//!
//! A ring outlives its thread: when the thread's pthread-key destructor runs, the ring becomes
//! `CLOSED` (the thread may still free a few blocks in glibc's own teardown, and they still go
//! into this ring); once the kernel says the thread is gone, the consumer drains the ring, adds
//! the thread's `ThreadExit` after its last event, and marks the ring `FREE` for a new thread.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};

use traces::{AlignedFn, Event, OsCall};

/// Raw event kinds (4 bits, stored at the top of a slot's first word).
pub mod kind {
    pub const MALLOC: u64 = 0;
    pub const CALLOC: u64 = 1;
    pub const REALLOC: u64 = 2;
    pub const FREE: u64 = 3;
    pub const POSIX_MEMALIGN: u64 = 4;
    pub const ALIGNED_ALLOC: u64 = 5;
    pub const MEMALIGN: u64 = 6;
    pub const VALLOC: u64 = 7;
    pub const PVALLOC: u64 = 8;
    pub const FORK: u64 = 11;
    /// OS calls (`--os-calls`), packed into three words: see [`super::decode`].
    pub const OS_BRK: u64 = 9;
    pub const OS_MMAP: u64 = 12;
    pub const OS_MUNMAP: u64 = 13;
    pub const OS_MREMAP: u64 = 14;
    pub const OS_MADVISE: u64 = 15;
}

/// A failed call's errno as stored: at most 255 (what the format holds).
pub fn err_byte(errno: i32) -> u64 {
    errno.clamp(0, 255) as u64
}

/// mremap's flags go in the top byte of its new length (a length of 2^56 or more is refused by
/// the kernel anyway; such a failed call records the length modulo 2^56).
pub const MREMAP_FLAGS_SHIFT: u32 = 56;
/// Bit 63 of a word holding an address says the call failed (no user-space address has it);
/// the low byte then holds the errno.
pub const FAILED: u64 = 1 << 63;

const KIND_SHIFT: u32 = crate::clock::STAMP_BITS;
const STAMP_MASK: u64 = (1 << KIND_SHIFT) - 1;

/// Ring states.
pub const ACTIVE: u8 = 1;
pub const CLOSED: u8 = 2;
pub const FREE: u8 = 3;
pub const CLAIMED: u8 = 4;

/// A slot: `[stamp | kind << 60, a, b, c]`.
pub type Slot = [u64; 4];

/// Turns a slot into its stamp (the process clock's raw 60 bits: see [`crate::clock`]) and
/// event.
///
/// OS calls are packed as (`a`, `b`, `c`):
/// * mmap: the result (`MAP_FAILED` as is), the length, `flags | prot << 32 | errno << 40`;
/// * munmap: address, length, errno;
/// * mremap: old address, `new length | flags << 56`, the new address or `FAILED | errno`;
/// * madvise: address, length, `advice | errno << 32`;
/// * brk and sbrk: the break before, the break after, errno.
pub fn decode(s: &Slot) -> (u64, Event) {
    let stamp = s[0] & STAMP_MASK;
    let (a, b, c) = (s[1], s[2], s[3]);
    let aligned = |func| Event::Aligned {
        func,
        align: a,
        size: b,
        ptr: c,
    };
    let ev = match s[0] >> KIND_SHIFT {
        kind::MALLOC => Event::Malloc { size: a, ptr: b },
        kind::CALLOC => Event::Calloc {
            nmemb: a,
            size: b,
            ptr: c,
        },
        kind::REALLOC => Event::Realloc {
            old_ptr: a,
            size: b,
            ptr: c,
        },
        kind::FREE => Event::Free { ptr: a },
        kind::POSIX_MEMALIGN => aligned(AlignedFn::PosixMemalign),
        kind::ALIGNED_ALLOC => aligned(AlignedFn::AlignedAlloc),
        kind::MEMALIGN => aligned(AlignedFn::Memalign),
        kind::VALLOC => aligned(AlignedFn::Valloc),
        kind::PVALLOC => aligned(AlignedFn::Pvalloc),
        kind::FORK => Event::Fork {
            child_pid: a as u32,
        },
        kind::OS_MMAP => Event::Os {
            call: OsCall::Mmap,
            addr: if a == libc::MAP_FAILED as u64 { 0 } else { a },
            len: b,
            result: 0,
            arg: c as u32,
            prot: (c >> 32) as u8,
            err: (c >> 40) as u8,
        },
        kind::OS_MUNMAP => Event::Os {
            call: OsCall::Munmap,
            addr: a,
            len: b,
            result: 0,
            arg: 0,
            prot: 0,
            err: c as u8,
        },
        kind::OS_MREMAP => Event::Os {
            call: OsCall::Mremap,
            addr: a,
            len: b & ((1 << MREMAP_FLAGS_SHIFT) - 1),
            result: if c & FAILED != 0 { 0 } else { c },
            arg: (b >> MREMAP_FLAGS_SHIFT) as u32,
            prot: 0,
            err: if c & FAILED != 0 { c as u8 } else { 0 },
        },
        kind::OS_MADVISE => Event::Os {
            call: OsCall::Madvise,
            addr: a,
            len: b,
            result: 0,
            arg: c as u32,
            prot: 0,
            err: (c >> 32) as u8,
        },
        kind::OS_BRK => Event::Os {
            call: OsCall::Brk,
            addr: a,
            len: a.abs_diff(b),
            result: b,
            arg: 0,
            prot: 0,
            err: c as u8,
        },
        // Not stored by producers (the consumer adds ThreadExit), kept for completeness.
        _ => Event::ThreadExit,
    };
    (stamp, ev)
}

#[repr(C, align(64))]
struct Padded<T>(T);

/// The ring header, at the start of its mapping.
#[repr(C)]
pub struct Ring {
    // --- Set once at creation, read by anyone. ---
    /// Next ring in the session's registry (push-only list).
    pub next: AtomicPtr<Ring>,
    /// Creation order in the session (the consumer visits rings in this order).
    pub seq: u64,
    /// Slots in the ring (a power of two) and `cap - 1`.
    pub cap: u64,
    mask: u64,
    slots: *mut Slot,
    /// Bytes of the whole mapping.
    pub map_len: usize,

    // --- Set by the claiming thread before it publishes `state = ACTIVE`. ---
    /// ACTIVE, CLOSED, FREE or CLAIMED.
    pub state: AtomicU8,
    /// The registration number of the thread now using the ring (changes when reused).
    pub generation: AtomicU64,
    /// The OS tid of that thread.
    pub os_tid: AtomicU32,
    /// When it registered (a stamp of [`crate::clock`]): its `ThreadStart` stamp.
    pub start_stamp: AtomicU64,
    /// When its pthread-key destructor ran (set before `state = CLOSED`).
    pub exit_stamp: AtomicU64,

    // --- Producer's line. ---
    head: Padded<AtomicU64>,
    /// The producer's last view of `tail` (only the producer touches it).
    cached_tail: UnsafeCell<u64>,
    /// The producer sleeps on `progress`; the consumer wakes it if set.
    pub waiting: AtomicBool,

    // --- Consumer's line. ---
    tail: Padded<AtomicU64>,
    /// Bumped by the consumer after each drain: the futex word the producer sleeps on.
    pub progress: AtomicU32,
}

/// Bytes of the header, rounded to a cache line.
const HEADER: usize = std::mem::size_of::<Ring>().next_multiple_of(64);

impl Ring {
    /// Maps a new ring of `cap` slots (a power of two), or returns null.
    pub fn create(cap: u64, seq: u64) -> *mut Ring {
        let map_len = HEADER + cap as usize * std::mem::size_of::<Slot>();
        let base = crate::sys::map_anon(map_len);
        if base.is_null() {
            return base.cast();
        }
        let ring = base.cast::<Ring>();
        // SAFETY: base is a fresh, writable, page-aligned mapping of map_len > HEADER bytes,
        // so the header fits and is aligned; the slots start HEADER bytes in.
        unsafe {
            ring.write(Ring {
                next: AtomicPtr::new(std::ptr::null_mut()),
                seq,
                cap,
                mask: cap - 1,
                slots: base.add(HEADER).cast(),
                map_len,
                state: AtomicU8::new(CLAIMED),
                generation: AtomicU64::new(0),
                os_tid: AtomicU32::new(0),
                start_stamp: AtomicU64::new(0),
                exit_stamp: AtomicU64::new(0),
                head: Padded(AtomicU64::new(0)),
                cached_tail: UnsafeCell::new(0),
                waiting: AtomicBool::new(false),
                tail: Padded(AtomicU64::new(0)),
                progress: AtomicU32::new(0),
            });
        }
        ring
    }

    /// Makes a CLAIMED ring ready for a new thread and publishes it as ACTIVE.
    ///
    /// # Safety
    /// The caller claimed the ring (state CLAIMED) and becomes its only producer.
    pub unsafe fn activate(&self, generation: u64, os_tid: u32, start_stamp: u64) {
        self.head.0.store(0, Ordering::Relaxed);
        self.tail.0.store(0, Ordering::Relaxed);
        // SAFETY: only the claiming thread touches cached_tail (caller's contract).
        unsafe { *self.cached_tail.get() = 0 };
        self.generation.store(generation, Ordering::Relaxed);
        self.os_tid.store(os_tid, Ordering::Relaxed);
        self.start_stamp.store(start_stamp, Ordering::Relaxed);
        self.state.store(ACTIVE, Ordering::Release);
    }

    /// Stores one event if the ring has room (re-reading the consumer's `tail` only when it
    /// looks full); `false` if it is full (the caller waits: [`crate::session::push_slow`]).
    ///
    /// # Safety
    /// Only the ring's producer thread may call this.
    #[inline(always)]
    pub unsafe fn try_push(&self, w0: u64, a: u64, b: u64, c: u64) -> bool {
        let h = self.head.0.load(Ordering::Relaxed);
        // SAFETY: producer-only field (caller's contract).
        let cached = unsafe { *self.cached_tail.get() };
        // SAFETY: the caller's contract.
        if h.wrapping_sub(cached) >= self.cap && !unsafe { self.refresh_tail(h) } {
            return false;
        }
        // SAFETY: the slot index is masked into the ring; the consumer does not read slot h
        // until head > h is published below.
        unsafe {
            self.slots
                .add((h & self.mask) as usize)
                .write([w0, a, b, c])
        };
        self.head.0.store(h + 1, Ordering::Release);
        if (h + 1) & (self.mask >> 2) == 0 {
            crate::session::ring_quarter(self);
        }
        true
    }

    /// The ring looked full at `h`: re-reads `tail`. Whether there is room now.
    ///
    /// # Safety
    /// Only the ring's producer thread may call this.
    #[cold]
    #[inline(never)]
    unsafe fn refresh_tail(&self, h: u64) -> bool {
        let t = self.tail.0.load(Ordering::Acquire);
        // SAFETY: producer-only field (caller's contract).
        unsafe { *self.cached_tail.get() = t };
        h.wrapping_sub(t) < self.cap
    }

    /// Whether the ring has a free slot for the producer's next event.
    pub fn has_room(&self) -> bool {
        self.head
            .0
            .load(Ordering::Relaxed)
            .wrapping_sub(self.tail.0.load(Ordering::Acquire))
            < self.cap
    }

    /// The stamp of the last event this thread stored in the ring (0 if none since it was
    /// activated). Cold: only the side-buffer drain asks.
    ///
    /// # Safety
    /// Only the ring's producer thread may call this.
    pub unsafe fn last_stamp(&self) -> u64 {
        let h = self.head.0.load(Ordering::Relaxed);
        if h == 0 {
            return 0;
        }
        // SAFETY: slot h-1 was written by this producer; only the producer writes slots, and
        // the consumer only reads them.
        unsafe { (*self.slots.add((h.wrapping_sub(1) & self.mask) as usize))[0] & STAMP_MASK }
    }

    /// Events published and not yet consumed.
    pub fn pending(&self) -> u64 {
        self.head
            .0
            .load(Ordering::Acquire)
            .wrapping_sub(self.tail.0.load(Ordering::Acquire))
    }

    /// Hands up to `max` published events to `f` (in order, in at most two slices), then
    /// frees their slots and wakes a waiting producer. Returns how many there were.
    ///
    /// # Safety
    /// Only the consumer (the holder of the session's sink lock) may call this.
    pub unsafe fn drain(&self, max: u64, mut f: impl FnMut(&[Slot])) -> u64 {
        let t = self.tail.0.load(Ordering::Relaxed);
        let n = self.head.0.load(Ordering::Acquire).wrapping_sub(t).min(max);
        let h = t.wrapping_add(n);
        if n == 0 {
            return 0;
        }
        let start = (t & self.mask) as usize;
        let first = (n as usize).min(self.cap as usize - start);
        // SAFETY: slots [t, h) were written before head was published (acquire above) and the
        // producer does not overwrite them until tail moves past them (below).
        unsafe {
            f(std::slice::from_raw_parts(self.slots.add(start), first));
            if first < n as usize {
                f(std::slice::from_raw_parts(self.slots, n as usize - first));
            }
        }
        self.tail.0.store(h, Ordering::Release);
        self.progress.fetch_add(1, Ordering::Release);
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) {
            crate::sys::futex_wake_all(&self.progress);
        }
        n
    }
}

/// The stamp in a slot's first word.
#[inline(always)]
pub fn stamp_of(w0: u64) -> u64 {
    w0 & STAMP_MASK
}

/// The kind in a slot's first word.
#[inline(always)]
pub fn kind_of(w0: u64) -> u64 {
    w0 >> KIND_SHIFT
}

/// Packs a stamp and a kind into a slot's first word.
#[inline(always)]
pub fn word0(stamp: u64, kind: u64) -> u64 {
    (stamp & STAMP_MASK) | (kind << KIND_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_decode_to_events() {
        let s = [word0(123, kind::REALLOC), 0x10, 64, 0x20];
        assert_eq!(
            decode(&s),
            (
                123,
                Event::Realloc {
                    old_ptr: 0x10,
                    size: 64,
                    ptr: 0x20
                }
            )
        );
        let s = [word0(5, kind::PVALLOC), 4096, 1, 0];
        assert_eq!(
            decode(&s).1,
            Event::Aligned {
                func: AlignedFn::Pvalloc,
                align: 4096,
                size: 1,
                ptr: 0
            }
        );
    }

    #[test]
    fn ring_wraps_and_drains_in_order() {
        let r = Ring::create(8, 0);
        assert!(!r.is_null());
        // SAFETY: a fresh ring, used by this thread alone as producer and consumer.
        unsafe {
            let r = &*r;
            r.activate(1, 1, 0);
            let mut seen = Vec::new();
            for round in 0..5u64 {
                for i in 0..6u64 {
                    assert!(r.try_push(word0(round * 10 + i, kind::FREE), i, 0, 0));
                }
                r.drain(4, |s| seen.extend(s.iter().map(|x| x[0] & STAMP_MASK)));
                r.drain(u64::MAX, |s| {
                    seen.extend(s.iter().map(|x| x[0] & STAMP_MASK))
                });
            }
            let want: Vec<u64> = (0..5u64)
                .flat_map(|r| (0..6).map(move |i| r * 10 + i))
                .collect();
            assert_eq!(seen, want);
        }
    }
}
