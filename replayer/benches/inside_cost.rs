//! What measuring inside the replay child costs: the OS-call counting (replay's mmap/munmap/
//! mremap/madvise/brk wrappers), the perf counters and the allocator's own statistics read by
//! the sampler (introspection, `--introspect-ms`, default 100 ms), against the same child with
//! all of it off (`ALLOCLAB_NO_INSIDE=1`: counters closed, wrappers only forwarding; and
//! `--introspect-ms 0`).
//!
//! For each workload and allocator, `replay -a ALLOC -r 1 --no-latency` runs in turn with
//! everything on, with introspection off, and with everything off (A B C A B C …,
//! `INSIDE_REPS` rounds, default 7); the figures are the medians of the per-round ratios of the
//! untimed pass's wall time (`wall_ns`, the loop where counting and introspection run):
//! introspection alone (A ÷ B) and everything (A ÷ C), with the median number of readings taken
//! while the ops ran and the median share of A's loop time the sampler spent reading (Σ
//! `read_ns` ÷ `wall_ns`: the time a replay thread could have waited on a lock the reading held,
//! at most; a direct figure where the ratios drown in a loaded machine's noise). Target
//! (issue 17): ≤ 1.05.
//!
//! `INSIDE_REPS=5 cargo bench --profile test -p replayer --bench inside_cost` (`INTROSPECT_MS`
//! sets A's period, default 100; `INSIDE_SCALE` multiplies the traces' ops, default 1).

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

/// The untimed pass's wall time, the introspection readings taken while the ops ran, and the
/// time those readings took (their `read_ns`).
fn wall_ns(trace: &Path, alloc: &str, off: bool, introspect_ms: u64) -> (f64, f64, f64) {
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
    .args(["--introspect-ms", &introspect_ms.to_string()])
    .arg(trace);
    if off {
        c.env(replayer::inside::OFF_ENV, "1");
    } else {
        c.env_remove(replayer::inside::OFF_ENV);
    }
    let o = c.output().expect("running replay");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("replay --json");
    let during: Vec<&serde_json::Value> = v["introspection"]
        .as_array()
        .expect("introspection rows")
        .iter()
        .filter(|p| p["phase"] == "replay" && p["metric"] == "read_ns")
        .collect();
    (
        v["runs"][0]["wall_ns"].as_f64().expect("wall_ns"),
        during.len() as f64,
        during
            .iter()
            .filter_map(|p| p["value"].as_f64())
            .sum::<f64>()
            .max(0.0),
    )
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
    // INSIDE_SCALE multiplies the traces' ops: longer loops, so one reading's cost and the
    // machine's jitter are a smaller share of each (at 1 the json-tree loop is ~40 ms, shorter
    // than the default period: it takes no reading while the ops run).
    let scale: f64 = std::env::var("INSIDE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0);
    let ops = |n: f64| (n * scale).round().max(1.0) as u64;
    let traces = [
        (
            "malloc-large",
            synth(dir.path(), "malloc-large", 1, ops(300.0)),
        ),
        (
            "json-tree",
            synth(dir.path(), "json-tree", 1, ops(3_000_000.0)),
        ),
    ];
    // A shorter period than the default multiplies the readings, and so their cost: on a noisy
    // machine that makes it measurable (at 10 ms, ten times the default's).
    let period: u64 = std::env::var("INTROSPECT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(replayer::engine::DEFAULT_INTROSPECT_MS);
    println!(
        "inside_cost: wall_ns of the untimed pass, medians of {reps} A/B/C rounds \
         (A everything on, introspection every {period} ms; B introspection off; C everything off)"
    );
    println!(
        "{:>14} {:>9}  {:>13}  {:>10}  {:>8}  {:>9}  {:>12}",
        "trace",
        "allocator",
        "introspection",
        "everything",
        "readings",
        "A wall ms",
        "reading time"
    );
    let mut worst: f64 = 0.0;
    for (name, t) in &traces {
        for alloc in ["system", "jemalloc", "mimalloc", "tcmalloc", "fancy"] {
            let (mut intro, mut all, mut readings, mut wall, mut share) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps {
                let (a, n, read) = wall_ns(t, alloc, false, period);
                let (b, _, _) = wall_ns(t, alloc, false, 0);
                let (c, _, _) = wall_ns(t, alloc, true, 0);
                intro.push(a / b);
                all.push(a / c);
                readings.push(n);
                wall.push(a / 1e6);
                share.push(read / a * 100.0);
            }
            let (mi, ma) = (median(&mut intro), median(&mut all));
            worst = worst.max(ma);
            println!(
                "{name:>14} {alloc:>9}  {mi:>12.3}×  {ma:>9.3}×  {:>8.0}  {:>9.1}  {:>11.3}%",
                median(&mut readings),
                median(&mut wall),
                median(&mut share)
            );
        }
    }
    println!(
        "largest median ratio {worst:.3}× (target ≤ 1.05: {})",
        if worst <= 1.05 { "met" } else { "not met" }
    );
}
