//! Helpers shared by the replayer's integration tests.

use std::path::{Path, PathBuf};

use traces::synth::{Config, Params, generate_file};

/// Writes `workload`'s synthetic trace (seed 3) with `threads` and `ops` into `dir`.
pub fn synth(dir: &Path, workload: &str, threads: u32, ops: u64) -> PathBuf {
    let cfg = Config::new(
        workload,
        &Params {
            threads: Some(threads),
            ops: Some(ops),
            seed: 3,
            ..Params::default()
        },
    )
    .unwrap();
    let p = dir.join(format!("{workload}.trace.zst"));
    generate_file(&cfg, &p).unwrap();
    p
}
