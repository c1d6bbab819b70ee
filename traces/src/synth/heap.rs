//! A small model of an allocator's address space, so that synthetic traces carry pointers that
//! behave like a real allocator's: a freed address comes back soon to a request of the same size
//! class, neighbours in time are neighbours in memory, big blocks are page-aligned and their
//! ranges reused like `mmap`'s, and no address is ever live twice at once.
//!
//! How it works (a simplified mimalloc/glibc):
//! * sizes up to [`SMALL_MAX`] fall in one of [`NCLASS`] size classes (16-byte steps to 128 B,
//!   then four classes per power of two);
//! * every thread is attached to an **arena**; an arena carves each class's objects from its
//!   own pages (64 KiB, or 8 objects for big classes), and pages from 4 MiB segments taken in
//!   address order from one global segment space, so the owning arena of any address is one
//!   table lookup;
//! * a free pushes the address on its **owning** arena's LIFO free list of that class (a
//!   cross-thread free returns the object to the thread that allocated it, as mimalloc's
//!   thread-free lists and glibc's arenas do); an allocation pops that list first;
//! * an exiting thread's arena is parked and handed to the next new thread (glibc reuses the
//!   arenas of dead threads, mimalloc reclaims abandoned segments);
//! * sizes above [`SMALL_MAX`] are whole pages in a separate region that grows downwards like
//!   `mmap`; freed ranges coalesce and the highest fitting range is reused first;
//! * an aligned request takes the smallest class whose object size is a multiple of the
//!   alignment (pages are page-aligned, so every object of that class is aligned); alignments
//!   above a page go to the big-block region.

use std::collections::BTreeMap;

use crate::event::ThreadId;

/// Largest size served from size classes; bigger requests are page-granular big blocks.
pub(crate) const SMALL_MAX: u64 = 256 << 10;
/// Number of size classes.
pub(crate) const NCLASS: usize = 52;
/// Page size of the model (alignment of pages and of big blocks).
pub(crate) const PAGE: u64 = 4096;

const SEG_SHIFT: u32 = 22;
const SEG_SIZE: u64 = 1 << SEG_SHIFT;
/// Where segments start (grow upwards), like a brk heap.
const SEG_BASE: u64 = 0x5600_0000_0000;
/// Where the big-block region starts (grows downwards), like the mmap area.
const LARGE_TOP: u64 = 0x7f80_0000_0000;
/// The boundary between segments (16 TiB above) and big blocks (25 TiB below).
const SPLIT: u64 = SEG_BASE + (1 << 44);

/// The class of a request of `size` bytes (`size <= SMALL_MAX`).
#[inline(always)]
pub(crate) fn class_of(size: u64) -> usize {
    if size <= 128 {
        (size.max(1) as usize).div_ceil(16) - 1
    } else {
        let s = size - 1;
        let e = 63 - s.leading_zeros() as usize; // 2^e <= s < 2^(e+1), e >= 7
        8 + (e - 7) * 4 + ((s >> (e - 2)) & 3) as usize
    }
}

/// The object size of class `c`.
#[inline(always)]
pub(crate) fn class_size(c: usize) -> u64 {
    if c < 8 {
        16 * (c as u64 + 1)
    } else {
        let e = 7 + (c - 8) / 4;
        let q = ((c - 8) % 4) as u64;
        (1u64 << e) + (q + 1) * (1u64 << (e - 2))
    }
}

/// The class an aligned request uses, or `None` if it must be a big block.
#[inline]
pub(crate) fn aligned_class(size: u64, align: u64) -> Option<usize> {
    if align > PAGE || size > SMALL_MAX {
        return None;
    }
    let mut c = class_of(size.max(align));
    while c < NCLASS {
        if class_size(c).is_multiple_of(align) {
            return Some(c);
        }
        c += 1;
    }
    None
}

fn page_bytes(c: usize) -> u64 {
    (class_size(c) * 8).next_multiple_of(PAGE).max(64 << 10)
}

struct Arena {
    /// LIFO free list per class (inline: one indirection less on the hot path).
    free: [Vec<u64>; NCLASS],
    /// Carving position and end of the current page of each class.
    cur: [u64; NCLASS],
    end: [u64; NCLASS],
    /// Unused part of the arena's current segment.
    seg_cur: u64,
    seg_end: u64,
}

impl Arena {
    fn new() -> Arena {
        Arena {
            free: std::array::from_fn(|_| Vec::new()),
            cur: [0; NCLASS],
            end: [0; NCLASS],
            seg_cur: 0,
            seg_end: 0,
        }
    }
}

/// Big blocks: page-granular ranges below [`LARGE_TOP`].
struct Large {
    /// Lowest address handed out so far; the region grows downwards from here.
    floor: u64,
    /// Free ranges above `floor`, by start address (coalesced, never touching `floor`).
    free: BTreeMap<u64, u64>,
}

impl Large {
    fn alloc(&mut self, len: u64, align: u64) -> u64 {
        // Highest fitting free range first, as the kernel's top-down mmap does.
        let mut hit = None;
        for (&a, &l) in self.free.iter().rev() {
            if l < len {
                continue;
            }
            let start = (a + l - len) & !(align - 1);
            if start >= a {
                hit = Some((a, l, start));
                break;
            }
        }
        if let Some((a, l, start)) = hit {
            self.free.remove(&a);
            if start > a {
                self.free.insert(a, start - a);
            }
            if start + len < a + l {
                self.free.insert(start + len, a + l - start - len);
            }
            return start;
        }
        let start = (self.floor - len) & !(align - 1);
        assert!(
            start >= SPLIT,
            "synth: the address-space model ran out of room for big blocks"
        );
        if start + len < self.floor {
            self.free.insert(start + len, self.floor - start - len);
        }
        self.floor = start;
        start
    }

    fn free(&mut self, mut addr: u64, mut len: u64) {
        if let Some((&a, &l)) = self.free.range(..addr).next_back()
            && a + l == addr
        {
            self.free.remove(&a);
            addr = a;
            len += l;
        }
        if let Some(&l) = self.free.get(&(addr + len)) {
            self.free.remove(&(addr + len));
            len += l;
        }
        if addr == self.floor {
            self.floor += len;
        } else {
            self.free.insert(addr, len);
        }
    }
}

/// The address-space model of one trace.
pub(crate) struct Heap {
    arenas: Vec<Arena>,
    /// Arena of each thread id (u32::MAX: not attached).
    thread_arena: Vec<u32>,
    /// Arenas of exited threads, handed out again LIFO.
    idle: Vec<u32>,
    /// Owning arena of each segment, by segment number.
    seg_owner: Vec<u32>,
    large: Large,
}

impl Default for Heap {
    fn default() -> Self {
        Heap::new()
    }
}

impl Heap {
    pub(crate) fn new() -> Heap {
        Heap {
            arenas: Vec::new(),
            thread_arena: Vec::new(),
            idle: Vec::new(),
            seg_owner: Vec::new(),
            large: Large {
                floor: LARGE_TOP,
                free: BTreeMap::new(),
            },
        }
    }

    /// Gives thread `t` an arena: a parked one if any, else a new one.
    pub(crate) fn attach(&mut self, t: ThreadId) {
        let a = self.idle.pop().unwrap_or_else(|| {
            self.arenas.push(Arena::new());
            (self.arenas.len() - 1) as u32
        });
        let t = t as usize;
        if self.thread_arena.len() <= t {
            self.thread_arena.resize(t + 1, u32::MAX);
        }
        debug_assert_eq!(self.thread_arena[t], u32::MAX, "thread {t} attached twice");
        self.thread_arena[t] = a;
    }

    /// Parks thread `t`'s arena for the next new thread. Its objects stay valid.
    pub(crate) fn detach(&mut self, t: ThreadId) {
        let a = std::mem::replace(&mut self.thread_arena[t as usize], u32::MAX);
        debug_assert_ne!(a, u32::MAX, "thread {t} not attached");
        self.idle.push(a);
    }

    /// An address for `size` bytes requested by thread `t`.
    #[inline(always)]
    pub(crate) fn alloc(&mut self, t: ThreadId, size: u64) -> u64 {
        if size > SMALL_MAX {
            return self.large.alloc(size.next_multiple_of(PAGE), PAGE);
        }
        self.alloc_class(t, class_of(size))
    }

    /// An address for `size` bytes aligned to `align` (a power of two) for thread `t`.
    #[inline]
    pub(crate) fn alloc_aligned(&mut self, t: ThreadId, size: u64, align: u64) -> u64 {
        match aligned_class(size, align) {
            Some(c) => self.alloc_class(t, c),
            None => self
                .large
                .alloc(size.max(1).next_multiple_of(PAGE), align.max(PAGE)),
        }
    }

    #[inline(always)]
    fn alloc_class(&mut self, t: ThreadId, c: usize) -> u64 {
        let a = self.thread_arena[t as usize] as usize;
        let ar = &mut self.arenas[a];
        if let Some(p) = ar.free[c].pop() {
            return p;
        }
        let cs = class_size(c);
        if ar.cur[c] + cs <= ar.end[c] {
            let p = ar.cur[c];
            ar.cur[c] += cs;
            return p;
        }
        self.new_page(a, c)
    }

    #[cold]
    #[inline(never)]
    fn new_page(&mut self, a: usize, c: usize) -> u64 {
        let len = page_bytes(c);
        if self.arenas[a].seg_cur + len > self.arenas[a].seg_end {
            let seg = self.seg_owner.len() as u64;
            self.seg_owner.push(a as u32);
            let base = SEG_BASE + seg * SEG_SIZE;
            assert!(
                base + SEG_SIZE <= SPLIT,
                "synth: the address-space model ran out of room for small objects"
            );
            self.arenas[a].seg_cur = base;
            self.arenas[a].seg_end = base + SEG_SIZE;
        }
        let ar = &mut self.arenas[a];
        let page = ar.seg_cur;
        ar.seg_cur += len;
        let cs = class_size(c);
        ar.cur[c] = page + cs;
        ar.end[c] = page + len / cs * cs;
        page
    }

    /// Frees `ptr`, an object of `size` bytes allocated by [`Heap::alloc`] (by any thread).
    #[inline(always)]
    pub(crate) fn free(&mut self, ptr: u64, size: u64) {
        if size > SMALL_MAX {
            self.large.free(ptr, size.next_multiple_of(PAGE));
        } else {
            self.free_class(ptr, class_of(size));
        }
    }

    /// Frees `ptr`, an object allocated by [`Heap::alloc_aligned`] with `size` and `align`.
    #[inline]
    pub(crate) fn free_aligned(&mut self, ptr: u64, size: u64, align: u64) {
        match aligned_class(size, align) {
            Some(c) => self.free_class(ptr, c),
            None => self.large.free(ptr, size.max(1).next_multiple_of(PAGE)),
        }
    }

    #[inline(always)]
    fn free_class(&mut self, ptr: u64, c: usize) {
        let seg = ((ptr - SEG_BASE) >> SEG_SHIFT) as usize;
        let a = self.seg_owner[seg] as usize;
        self.arenas[a].free[c].push(ptr);
    }

    /// The address after `realloc(ptr, new)` by thread `t` of an object of `old` bytes: the
    /// same address when the size class (or the page count of a big block) does not change,
    /// else a new block (taken before the old one is freed, so the two differ).
    #[inline]
    pub(crate) fn realloc(&mut self, t: ThreadId, ptr: u64, old: u64, new: u64) -> u64 {
        let same = if old > SMALL_MAX || new > SMALL_MAX {
            old > SMALL_MAX
                && new > SMALL_MAX
                && old.next_multiple_of(PAGE) == new.next_multiple_of(PAGE)
        } else {
            class_of(old) == class_of(new)
        };
        if same {
            return ptr;
        }
        let p = self.alloc(t, new);
        self.free(ptr, old);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_monotonic_and_fit() {
        let mut prev = 0;
        for c in 0..NCLASS {
            let s = class_size(c);
            assert!(s > prev && s.is_multiple_of(16), "class {c}: {s}");
            assert_eq!(class_of(s), c, "size {s}");
            assert_eq!(class_of(prev + 1), c, "size {}", prev + 1);
            prev = s;
        }
        assert_eq!(class_size(NCLASS - 1), SMALL_MAX);
        assert_eq!(class_of(0), 0);
    }

    #[test]
    fn freed_addresses_come_back_lifo_and_never_twice() {
        let mut h = Heap::new();
        h.attach(0);
        h.attach(1);
        let a = h.alloc(0, 24);
        let b = h.alloc(0, 24);
        assert_eq!(b, a + 32);
        h.free(a, 24);
        h.free(b, 20);
        assert_eq!(h.alloc(0, 30), b);
        // Thread 1 has its own arena: a cross-thread free returns to the owner.
        let c = h.alloc(1, 24);
        assert_ne!(c, a);
        h.free(c, 24);
        assert_eq!(h.alloc(0, 24), a);
        assert_eq!(h.alloc(1, 24), c);
    }

    #[test]
    fn aligned_and_big_blocks() {
        let mut h = Heap::new();
        h.attach(0);
        for size in [1, 64, 65, 100, 300, 1000, 5000] {
            for align in [32, 64, 128, 4096] {
                let p = h.alloc_aligned(0, size, align);
                assert_eq!(p % align, 0, "size {size} align {align}");
            }
        }
        let p = h.alloc_aligned(0, 100, 1 << 16);
        assert_eq!(p % (1 << 16), 0);
        let big = h.alloc(0, 5 << 20);
        assert_eq!(big % PAGE, 0);
        h.free(big, 5 << 20);
        assert_eq!(h.alloc(0, 5 << 20), big, "a freed range is reused");
        let x = h.alloc(0, 1 << 20);
        let y = h.alloc(0, 1 << 20);
        h.free(x, 1 << 20);
        h.free(y, 1 << 20);
        // Both ranges coalesce and give the floor back; what is left free is the alignment gap
        // above the 64 KiB-aligned block.
        assert_eq!(h.large.floor, big);
        assert_eq!(h.large.free.len(), 1);
    }

    #[test]
    fn realloc_in_place_within_a_class() {
        let mut h = Heap::new();
        h.attach(0);
        let p = h.alloc(0, 100);
        assert_eq!(h.realloc(0, p, 100, 112), p);
        let q = h.realloc(0, p, 112, 200);
        assert_ne!(q, p);
        assert_eq!(h.alloc(0, 100), p, "the old block was freed");
    }

    #[test]
    fn arenas_of_exited_threads_are_reused() {
        let mut h = Heap::new();
        h.attach(0);
        let p = h.alloc(0, 48);
        h.free(p, 48);
        h.detach(0);
        h.attach(5);
        assert_eq!(h.alloc(5, 48), p);
    }
}
