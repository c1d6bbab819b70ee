//! What measuring inside the replay child costs: the OS-call counting (replay's mmap/munmap/
//! mremap/madvise/brk wrappers) and the perf counters, against the same child with both off
//! (`ALLOCLAB_NO_INSIDE=1`: counters closed, wrappers only forwarding).
//!
//! For each workload and allocator, `replay -a ALLOC -r 1 --no-latency` runs alternately with
//! and without (A B A B …, `INSIDE_REPS` pairs, default 7); the figure is the median of the
//! per-pair ratios of the untimed pass's wall time (`wall_ns`, the loop where counting is
//! on). Target (issue 17): ≤ 1.05.
//!
//! `cargo bench -p replayer --bench inside_cost`

use std::path::{Path, PathBuf};
use std::process::Command;

use traces::synth::{Config, Params, generate_file};

fn synth(dir: &Path, workload: &str, threads: u32, ops: u64) -> PathBuf {
    let cfg = Config::new(
        workload,
        &Params {
            threads: Some(threads),
            ops: Some(ops),
            seed: 1,
            ..Params::default()
        },
    )
    .expect("a known workload");
    let p = dir.join(format!("{workload}.trace.zst"));
    generate_file(&cfg, &p).expect("writing the trace");
    p
}

fn wall_ns(trace: &Path, alloc: &str, off: bool) -> f64 {
    let mut c = Command::new(env!("CARGO_BIN_EXE_replay"));
    c.args([
        "--json",
        "-q",
        "--no-latency",
        "--retained-wait",
        "0",
        "-r",
        "1",
    ])
    .args(["-a", alloc])
    .arg(trace);
    if off {
        c.env(replayer::inside::OFF_ENV, "1");
    } else {
        c.env_remove(replayer::inside::OFF_ENV);
    }
    let o = c.output().expect("running replay");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("replay --json");
    v["runs"][0]["wall_ns"].as_f64().expect("wall_ns")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let reps: usize = std::env::var("INSIDE_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let traces = [
        ("malloc-large", synth(dir.path(), "malloc-large", 1, 300)),
        ("json-tree", synth(dir.path(), "json-tree", 1, 1_000_000)),
    ];
    println!(
        "inside_cost: wall_ns with ÷ without counting (untimed pass), median of {reps} A/B pairs"
    );
    let mut worst: f64 = 0.0;
    for (name, t) in &traces {
        for alloc in ["system", "jemalloc", "fancy"] {
            let mut ratios = Vec::new();
            for _ in 0..reps {
                let on = wall_ns(t, alloc, false);
                let off = wall_ns(t, alloc, true);
                ratios.push(on / off);
            }
            let m = median(&mut ratios);
            worst = worst.max(m);
            println!("{name:>14} {alloc:>9}: {m:.3}×");
        }
    }
    println!(
        "largest median ratio {worst:.3}× (target ≤ 1.05: {})",
        if worst <= 1.05 { "met" } else { "not met" }
    );
}
