//! alloclab's preload recorder: an `LD_PRELOAD` library that records every malloc-family call
//! of a program into an alloclab trace (format owned by the `traces` crate).
//!
//! How it works, in one paragraph (README.md has the long version):
//! * [`hooks`] exports `malloc`, `free`, `calloc`, `realloc`, `reallocarray`, `memalign`,
//!   `posix_memalign`, `aligned_alloc`, `valloc`, `pvalloc` (plus `fork`, the exec family and
//!   `_exit`); each forwards to glibc's `__libc_*` function and records one event. It also
//!   exports `mmap`, `mmap64`, `munmap`, `mremap`, `madvise`, `brk` and `sbrk`, which forward
//!   to glibc's (`dlsym(RTLD_NEXT)`) and record an OS call event only with `--os-calls`.
//! * Recording is a clock read ([`clock`]: the TSC, turned into CLOCK_MONOTONIC ns later by
//!   the writer, or the vDSO) and a store of 32 bytes into the calling thread's [`ring`] (a
//!   single-producer single-consumer ring in `mmap`ed memory, found through a
//!   `const`-initialised thread-local pointer): no lock, no syscall, no allocation.
//! * One background thread ([`session`]) drains the rings, encodes and compresses frames with
//!   `traces`, and writes them; every `ALLOCLAB_FLUSH_MS` (100 ms) everything drained so far
//!   reaches the file. When a ring is full its thread waits: nothing is dropped for want of
//!   room. What is lost under hostile conditions (a signal handler re-entering the recorder,
//!   memory exhaustion) is counted in the trailer's `dropped_events`; README.md lists them.
//! * A per-thread guard ([`local`]) keeps the recorder's own allocations (the writer thread,
//!   zstd, thread start-up) out of the trace; Rust allocations inside the library go straight
//!   to `__libc_malloc` through [`real::LibcAllocator`].

#![deny(clippy::undocumented_unsafe_blocks)]
// Unit tests keep glibc's malloc: the hooks are not exported there, so mostly unused.
#![cfg_attr(test, allow(dead_code, unused_imports))]

mod calls;
mod clock;
mod diag;
mod error;
mod hooks;
mod local;
pub mod naming;
mod options;
mod real;
mod ring;
mod rss;
mod session;
mod sys;

/// Every Rust allocation of the library goes straight to glibc, never through the exported
/// hooks: the recorder cannot record (or recurse into) itself.
#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: real::LibcAllocator = real::LibcAllocator;
