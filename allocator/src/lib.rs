//! # fancy — alloclab's allocator
//!
//! Per-thread heaps owning 4 MiB arenas; 16 small size classes (≤ 512 B) served from slab pages
//! through a thread-local current page per class; boundary-tag chunks with segregated free lists
//! and immediate coalescing for medium blocks (≤ 1 MiB); huge blocks in their own mappings, with
//! a reuse cache. Cross-thread frees go to the owner heap's lock-free remote list; heaps of
//! exited threads are adopted whole by new threads or cleaned; an optional background
//! reclaimer returns free memory to the OS. See README.md for the design, the diagrams and the
//! measurements.
//!
//! Surfaces: the Rust API below (the replayer's adapter calls it directly), [`Fancy`] as a
//! `GlobalAlloc`, the C API (`fancy_*`, `include/fancy.h`), and the `fancy-preload` cdylib that
//! replaces the whole malloc family under `LD_PRELOAD`. This library never exports unprefixed
//! malloc symbols.
//!
//! Files by mechanism: `alloc` (dispatch, fast paths), `small` (classes, pages), `medium`
//! (boundary tags, bins), `huge` (own mappings, cache), `heap` (heaps, remote frees, pool),
//! `tls` (thread binding, exit), `arena` (4 MiB regions, arena map, cache), `os` (mmap),
//! `reclaim` (background thread), `fork`, `stats`, `validate` (heap walker), `capi`, `global`.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod alloc;
mod arena;
mod capi;
mod config;
pub mod fatal;
mod fork;
mod global;
mod heap;
mod huge;
mod medium;
mod os;
mod reclaim;
mod small;
mod stats;
mod sync;
mod tls;
mod validate;

pub use alloc::{aligned_alloc, calloc, free, malloc, realloc, usable_size};
pub use capi::*;
pub use config::{Config, ConfigError, config, configure};
pub use global::Fancy;
pub use small::{CLASS_SIZES, NUM_CLASSES, SMALL_MAX};
pub use stats::{Stats, print_stats_fd, queue_depths, stats};
pub use tls::{thread_attach, thread_detach};
pub use validate::{HeapError, validate_heap};

/// Largest request served from medium arenas, bytes; larger ones get their own mapping.
pub const MEDIUM_MAX: usize = medium::MEDIUM_MAX;

/// Gives back what the calling thread's heap does not use (empty pages, free arenas), cleans the
/// heaps of exited threads, and (with reclamation on) returns cached memory to the OS now.
pub fn collect() {
    let h = tls::get();
    if heap::is_real(h) {
        // SAFETY: the calling thread owns its heap.
        unsafe { heap::trim(h) };
    }
    heap::clean_abandoned(true);
    if config::RECLAIM.load(core::sync::atomic::Ordering::Relaxed) {
        reclaim::pass();
    }
}

/// Whether the background reclaimer thread is running.
pub fn reclaimer_running() -> bool {
    reclaim::running()
}
