//! The events of a trace: one allocator call each, plus thread and fork markers, and (format
//! 1.2) the OS memory calls the recorder saw with `--os-calls`.
//!
//! Every pointer is a `u64` (the format is for 64-bit programs); `0` is NULL, so a failed
//! allocation is an allocation whose `ptr` is 0. Sizes are the sizes the program asked for,
//! never rounded.

use serde::{Deserialize, Serialize};

use crate::os::OsCall;

/// A thread's small id inside one trace: 0, 1, 2, … in the order the recorder first saw the
/// threads. The OS thread id is carried by the thread's [`Event::ThreadStart`].
pub type ThreadId = u32;

/// Which function of the aligned family made an [`Event::Aligned`] allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum AlignedFn {
    /// `posix_memalign(&p, align, size)`; a failure (EINVAL, ENOMEM) is recorded with ptr 0.
    PosixMemalign = 0,
    /// `aligned_alloc(align, size)` (C11).
    AlignedAlloc = 1,
    /// `memalign(align, size)` (obsolete glibc function, still used).
    Memalign = 2,
    /// `valloc(size)`: page-aligned; `align` holds the page size.
    Valloc = 3,
    /// `pvalloc(size)`: page-aligned, size rounded up to a page by the allocator; `size` is the
    /// request as made, `align` the page size.
    Pvalloc = 4,
}

impl AlignedFn {
    /// All functions, in code order.
    pub const ALL: [AlignedFn; 5] = [
        AlignedFn::PosixMemalign,
        AlignedFn::AlignedAlloc,
        AlignedFn::Memalign,
        AlignedFn::Valloc,
        AlignedFn::Pvalloc,
    ];

    /// The C name of the function.
    pub fn name(self) -> &'static str {
        match self {
            AlignedFn::PosixMemalign => "posix_memalign",
            AlignedFn::AlignedAlloc => "aligned_alloc",
            AlignedFn::Memalign => "memalign",
            AlignedFn::Valloc => "valloc",
            AlignedFn::Pvalloc => "pvalloc",
        }
    }
}

/// One recorded event. Which thread made it and when is held beside it ([`Timed`], [`Record`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// `malloc(size)` returned `ptr` (0: it failed).
    Malloc { size: u64, ptr: u64 },
    /// `calloc(nmemb, size)` returned `ptr`; the request is `nmemb * size` bytes, zeroed.
    Calloc { nmemb: u64, size: u64, ptr: u64 },
    /// `realloc(old_ptr, size)` (also `reallocarray`, with `size = nmemb * size`) returned
    /// `ptr`. `old_ptr == 0` acts as malloc. `ptr == 0` with `size > 0` is a failure that leaves
    /// `old_ptr` live; with `size == 0` glibc frees `old_ptr` and returns NULL.
    Realloc { old_ptr: u64, size: u64, ptr: u64 },
    /// `free(ptr)`; `free(NULL)` is recorded too (ptr 0).
    Free { ptr: u64 },
    /// An aligned allocation by `func` returned `ptr` (0: it failed). `align` is as requested,
    /// even when the allocator would refuse it.
    Aligned {
        func: AlignedFn,
        align: u64,
        size: u64,
        ptr: u64,
    },
    /// The thread began (first event of each thread); `os_tid` is its kernel thread id.
    ThreadStart { os_tid: u32 },
    /// The thread ended (its last event, when the recorder saw it end).
    ThreadExit,
    /// The process forked here; the child (pid `child_pid`) records into its own trace.
    Fork { child_pid: u32 },
    /// An OS memory call (format 1.2). Not an allocator call: the live set, the replayer and
    /// `synth` ignore it. Fields per call (FORMAT.md has the table):
    ///
    /// | call | `addr` | `len` | `result` | `arg` | `prot` |
    /// |---|---|---|---|---|---|
    /// | mmap | the new mapping (0 if it failed) | length asked | 0 | flags | prot |
    /// | munmap | address | length | 0 | 0 | 0 |
    /// | mremap | old address | new length | new address (0 if it failed) | flags | 0 |
    /// | brk | the break before | bytes it moved | the break after | 0 | 0 |
    /// | madvise | address | length | 0 | advice | 0 |
    ///
    /// `err` is 0 when the call succeeded, else its errno (at most 255). mmap's address hint,
    /// fd and offset and mremap's old length are not recorded (an event is 32 bytes in
    /// memory).
    Os {
        call: OsCall,
        prot: u8,
        err: u8,
        arg: u32,
        addr: u64,
        len: u64,
        result: u64,
    },
}

/// The kind of an event, without its data: what tables count by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    Malloc = 0,
    Calloc = 1,
    Realloc = 2,
    Free = 3,
    PosixMemalign = 4,
    AlignedAlloc = 5,
    Memalign = 6,
    Valloc = 7,
    Pvalloc = 8,
    ThreadStart = 9,
    ThreadExit = 10,
    Fork = 11,
    /// An OS memory call (format 1.2).
    Os = 12,
}

impl Kind {
    /// Number of kinds.
    pub const COUNT: usize = 13;

    /// All kinds, in code order.
    pub const ALL: [Kind; Kind::COUNT] = [
        Kind::Malloc,
        Kind::Calloc,
        Kind::Realloc,
        Kind::Free,
        Kind::PosixMemalign,
        Kind::AlignedAlloc,
        Kind::Memalign,
        Kind::Valloc,
        Kind::Pvalloc,
        Kind::ThreadStart,
        Kind::ThreadExit,
        Kind::Fork,
        Kind::Os,
    ];

    /// The kind's name as used in reports and JSON (the C function name for calls).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Malloc => "malloc",
            Kind::Calloc => "calloc",
            Kind::Realloc => "realloc",
            Kind::Free => "free",
            Kind::PosixMemalign => "posix_memalign",
            Kind::AlignedAlloc => "aligned_alloc",
            Kind::Memalign => "memalign",
            Kind::Valloc => "valloc",
            Kind::Pvalloc => "pvalloc",
            Kind::ThreadStart => "thread_start",
            Kind::ThreadExit => "thread_exit",
            Kind::Fork => "fork",
            Kind::Os => "os",
        }
    }

    /// Whether events of this kind are allocator calls (ops), not markers or OS calls.
    pub fn is_op(self) -> bool {
        (self as u8) < Kind::ThreadStart as u8
    }

    /// The kind with code `code`, if any.
    pub fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.get(code as usize).copied()
    }
}

impl Event {
    /// The event's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Event::Malloc { .. } => Kind::Malloc,
            Event::Calloc { .. } => Kind::Calloc,
            Event::Realloc { .. } => Kind::Realloc,
            Event::Free { .. } => Kind::Free,
            Event::Aligned { func, .. } => match func {
                AlignedFn::PosixMemalign => Kind::PosixMemalign,
                AlignedFn::AlignedAlloc => Kind::AlignedAlloc,
                AlignedFn::Memalign => Kind::Memalign,
                AlignedFn::Valloc => Kind::Valloc,
                AlignedFn::Pvalloc => Kind::Pvalloc,
            },
            Event::ThreadStart { .. } => Kind::ThreadStart,
            Event::ThreadExit => Kind::ThreadExit,
            Event::Fork { .. } => Kind::Fork,
            Event::Os { .. } => Kind::Os,
        }
    }

    /// The bytes the program asked for if this event allocates (`nmemb * size` for calloc,
    /// saturating), else `None`.
    pub fn requested_bytes(&self) -> Option<u64> {
        match *self {
            Event::Malloc { size, .. }
            | Event::Realloc { size, .. }
            | Event::Aligned { size, .. } => Some(size),
            Event::Calloc { nmemb, size, .. } => Some(nmemb.saturating_mul(size)),
            _ => None,
        }
    }

    /// The pointer this event returned, if it is an allocating call (0 when it failed).
    pub fn result_ptr(&self) -> Option<u64> {
        match *self {
            Event::Malloc { ptr, .. }
            | Event::Calloc { ptr, .. }
            | Event::Realloc { ptr, .. }
            | Event::Aligned { ptr, .. } => Some(ptr),
            _ => None,
        }
    }
}

// The decoders and the recorder hold events by the million: an OS call must not make every
// event larger.
const _: () = assert!(std::mem::size_of::<Event>() == 32);

/// An event with its timestamp: the unit of a frame, whose thread is the frame's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timed {
    /// Nanoseconds since the trace's start (see [`crate::Header::clock`]).
    pub ts: u64,
    pub event: Event,
}

/// An event with its timestamp and thread: what the merged (global order) reader yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// Nanoseconds since the trace's start.
    pub ts: u64,
    pub thread: ThreadId,
    pub event: Event,
}
