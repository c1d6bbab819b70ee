//! The heap maps of a replay (`replay --heap-map DIR`), in one place: where the files go, what
//! the address trace's header says, and the columns of the mappings file.
//!
//! For each allocator, one extra untimed child pass (measuring nothing else) replays the trace
//! and writes two files into `DIR/<trace_name>/`:
//!
//! * `<allocator>.heapmap.zst`, the **address trace**: a trace in the lab's format whose ops are
//!   the replayed ops with the addresses *this allocator* returned, timestamped in ns since the
//!   pass's first op (one trace thread per replay thread). Its header's `extra` holds
//!   [`HEADER_ALLOCATOR`], [`HEADER_TRACE`], [`HEADER_TRACE_HASH`], [`HEADER_SNAPSHOT_MS`] and
//!   [`HEADER_REPLAY_THREADS`].
//! * `<allocator>.maps.parquet`, the **mappings** ([`MappingRow`]): snapshots of the process's
//!   private read-write anonymous mappings and `[heap]` from `/proc/self/maps`, each cut into
//!   runs of resident and not-resident pages (`mincore`), on the address trace's clock.
//!
//! `<allocator>` is the allocator's name made safe for a file name ([`slug`]).

use std::path::{Path, PathBuf};

/// The directory `replay --heap-map` writes to when given `-o OUT` and no directory:
/// `OUT/heapmaps`.
pub const DIR_NAME: &str = "heapmaps";

/// Suffix of an address trace.
pub const TRACE_SUFFIX: &str = ".heapmap.zst";

/// Suffix of a mappings file.
pub const MAPS_SUFFIX: &str = ".maps.parquet";

/// Header key: the allocator's name (as in runs.parquet's `allocator`).
pub const HEADER_ALLOCATOR: &str = "alloclab.heapmap.allocator";
/// Header key: the replayed trace's `trace_name`.
pub const HEADER_TRACE: &str = "alloclab.heapmap.trace";
/// Header key: the replayed trace's `trace_hash`.
pub const HEADER_TRACE_HASH: &str = "alloclab.heapmap.trace_hash";
/// Header key: the period of the mapping snapshots, ms.
pub const HEADER_SNAPSHOT_MS: &str = "alloclab.heapmap.snapshot_ms";
/// Header key: the replay threads (as in runs' `replay_threads`; a replay with `--threads` folds
/// the trace's threads onto fewer).
pub const HEADER_REPLAY_THREADS: &str = "alloclab.heapmap.replay_threads";

/// `allocator` made safe for a file name: every character outside `[A-Za-z0-9._-]` becomes `_`
/// (`preload:/usr/lib/libjemalloc.so.2` → `preload__usr_lib_libjemalloc.so.2`).
pub fn slug(allocator: &str) -> String {
    allocator
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The directory of one trace's heap maps under `dir`.
pub fn trace_dir(dir: &Path, trace_name: &str) -> PathBuf {
    dir.join(slug(trace_name))
}

/// The address trace of `allocator` replaying `trace_name`, under `dir`.
pub fn trace_file(dir: &Path, trace_name: &str, allocator: &str) -> PathBuf {
    trace_dir(dir, trace_name).join(format!("{}{TRACE_SUFFIX}", slug(allocator)))
}

/// The mappings file beside the address trace `trace` (`x.heapmap.zst` → `x.maps.parquet`);
/// `None` if `trace` is not named as an address trace.
pub fn maps_file(trace: &Path) -> Option<PathBuf> {
    let name = trace.file_name()?.to_str()?;
    let stem = name.strip_suffix(TRACE_SUFFIX)?;
    Some(trace.with_file_name(format!("{stem}{MAPS_SUFFIX}")))
}

rows! {
    /// One row of a mappings file: a run of pages of one mapping in one snapshot, all resident
    /// or all not.
    pub struct MappingRow {
        /// 1
        pub schema_version: u32,
        /// as in runs
        pub allocator: String,
        /// as in runs
        pub trace_name: String,
        /// the snapshot's number (0, 1, … in time order)
        pub snapshot: u32,
        /// when the snapshot was taken: ns since the pass's first op (the address trace's clock)
        pub t_ns: u64,
        /// first address of the run
        pub start: u64,
        /// one past its last address
        pub end: u64,
        /// its pages are resident (mincore); false: mapped, not resident
        pub resident: bool,
        /// the run is in `[heap]` (the program break), not in an anonymous mmap
        pub heap: bool,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_safe_and_the_maps_file_sits_beside_its_trace() {
        assert_eq!(
            slug("preload:/usr/lib/libjemalloc.so.2"),
            "preload__usr_lib_libjemalloc.so.2"
        );
        let t = trace_file(Path::new("/r/heapmaps"), "rl_small", "fancy");
        assert_eq!(t, Path::new("/r/heapmaps/rl_small/fancy.heapmap.zst"));
        assert_eq!(
            maps_file(&t).unwrap(),
            Path::new("/r/heapmaps/rl_small/fancy.maps.parquet")
        );
        assert_eq!(maps_file(Path::new("/r/x.trace.zst")), None);
    }
}
