//! `scripts/lab --study allocatorbench`: the AllocatorBench study (docs/allocatorbench.md) in one
//! command, run tiny (rl_small at 1% of its size, 1 and 2 threads, one repetition) with the
//! test build's `synth` and `replay` and the `analyze` binary. Needs `synth` and `replay`
//! beside `lab` (built by `cargo test` of the workspace) and `analyze` (scripts/test-all builds
//! it first).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{analyze_bin, result_keys, run_files};

/// The study's allocators: the pool's three variants and the four it is compared with.
const ALLOCATORS: [&str; 7] = [
    "mempool-baseline",
    "mempool-sharded",
    "mempool-percls",
    "system",
    "jemalloc",
    "mimalloc",
    "fancy",
];

#[test]
fn the_allocatorbench_study_runs_in_one_command_and_plots_throughput_against_threads() {
    let bins = Path::new(env!("CARGO_BIN_EXE_lab")).parent().unwrap();
    for b in ["synth", "replay"] {
        assert!(
            bins.join(b).is_file(),
            "{}/{b} is missing: run the workspace's tests (`cargo test`), which build it",
            bins.display()
        );
    }
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("study");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let o = Command::new("bash")
        .arg(repo.join("scripts/lab"))
        .args(["--study", "allocatorbench", "--no-build", "--bin"])
        .arg(bins)
        .arg("--analyze")
        .arg(analyze_bin())
        .arg("--out")
        .arg(&out)
        .args([
            "--scale",
            "0.01",
            "--threads",
            "1 2",
            "--workloads",
            "rl_small",
        ])
        .args([
            "--repeat",
            "1",
            "--replay-opts",
            "--no-latency --retained-wait 0",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("oversubscribed"), "{stdout}");

    // Every allocator replayed both traces, and each run finished.
    let keys = result_keys(&run_files(&out.join("runs")));
    let got: BTreeSet<(&str, u32)> = keys
        .iter()
        .map(|k| (k.allocator.as_str(), k.replay_threads))
        .collect();
    let want: BTreeSet<(&str, u32)> = ALLOCATORS.iter().flat_map(|a| [(*a, 1), (*a, 2)]).collect();
    assert_eq!(got, want);
    assert_eq!(keys.len(), 14, "one repetition each: {keys:?}");
    assert!(keys.iter().all(|k| k.status == "ok"), "{keys:?}");
    let names: BTreeSet<&str> = keys.iter().map(|k| k.trace_name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["rl_small-t1", "rl_small-t2"]));

    // The report's Table 1 has a column per allocator and a row per thread count, and the two
    // traces make one throughput-vs-threads figure.
    let report = out.join("report");
    let t1 = std::fs::read_to_string(report.join("tables/allocatorbench_scaling.md")).unwrap();
    for a in ALLOCATORS {
        assert!(t1.contains(a), "no {a} in Table 1:\n{t1}");
    }
    let svg =
        std::fs::read_to_string(report.join("plots/throughput_vs_threads_workload_rl_small.svg"))
            .unwrap();
    for a in ALLOCATORS {
        assert!(svg.contains(a), "no {a} in the scaling plot's legend");
    }
}
