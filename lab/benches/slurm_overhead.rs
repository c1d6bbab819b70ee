//! What going through Slurm costs the lab's quick profile: `lab slurm` (staging the binaries
//! and traces on the shared path, writing the batch scripts, `sbatch`) against the sweep's own
//! run time, on a real one-node cluster this benchmark starts (tests/common/cluster.rs).
//!
//! ```sh
//! cargo bench --profile test -p lab --bench slurm_overhead [-- REPS]
//! ```
//!
//! Needs root (slurmd runs jobs as their user), Debian's slurm-wlm and munge, and `replay` beside
//! `lab` (`cargo build --profile test -p replayer`). Each repetition plans the quick profile
//! (`lab --quick --no-python --plan-only`: python3 is not recorded, so every run is a
//! synthetic trace), then alternates A: `lab run --manifest M --shard 0/1` (the sweep run
//! locally, in one process) and B: `lab slurm --manifest M --shards 2` followed by waiting for
//! the array. Prints per repetition and the medians: submission time (B's `lab slurm` call),
//! the local run time (A), submission ÷ local run (the issue's target: ≤ 5 %), and B's whole
//! time from submission to the last array task's end ÷ A (what the scheduler adds on top).
//! The machine has 2 cores shared with other work: compare the ratios, not the seconds.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn lab(args: &[&str]) -> std::process::Output {
    common::check_bins();
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(what: &str, o: &std::process::Output) {
    assert!(
        o.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn main() {
    let reps: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("REPS: a whole number"))
        .unwrap_or(3);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "slurm_overhead: SKIPPED: a one-node Slurm runs slurmd as root, and this is not root"
        );
        std::process::exit(2);
    }
    let mut c = Cluster::start();
    let d = tempfile::tempdir().unwrap();
    let (mut submit, mut local, mut ratio, mut whole) = (vec![], vec![], vec![], vec![]);
    println!(
        "rep | runs | lab slurm s | local run s | slurm, submit→done s | submit ÷ local | slurm ÷ local"
    );
    for rep in 0..reps {
        let root = d.path().join(format!("r{rep}"));
        let plan = root.join("plan");
        let p = plan.to_str().unwrap();
        let o = lab(&["--quick", "-q", "--no-python", "--plan-only", "-o", p]);
        ok("lab --plan-only", &o);
        let manifest = plan.join("manifest.jsonl");
        let m = manifest.to_str().unwrap();
        let runs = std::fs::read_to_string(&manifest).unwrap().lines().count() - 1;

        // A: the sweep here, one process.
        let t = Instant::now();
        ok(
            "lab run",
            &lab(&["run", "--manifest", m, "--shard", "0/1", "-q"]),
        );
        let a = t.elapsed().as_secs_f64();
        // Done: the shard's results are in the plan's directory, and Slurm's go elsewhere.

        // B: the same manifest through Slurm, into its own shared directory.
        let shared = root.join("shared");
        let t = Instant::now();
        let o = c.lab(&[
            "slurm",
            "--manifest",
            m,
            "--shared",
            shared.to_str().unwrap(),
            "--shards",
            "2",
            "--partition",
            "lab",
            "--no-analyze",
        ]);
        let s = t.elapsed().as_secs_f64();
        ok("lab slurm", &o);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let array = out
            .lines()
            .find_map(|l| l.strip_prefix("array job: "))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no array job id in {out}"))
            .to_string();
        c.wait_jobs(&[array], Duration::from_secs(3600));
        let b = t.elapsed().as_secs_f64();
        let st = c.lab(&[
            "status",
            "--manifest",
            shared.join("manifest.jsonl").to_str().unwrap(),
        ]);
        let st = String::from_utf8_lossy(&st.stdout).to_string();
        assert!(
            st.starts_with(&format!("{runs} runs: {runs} done")),
            "the array left runs undone: {st}"
        );
        println!(
            "{rep} | {runs} | {s:.2} | {a:.1} | {b:.1} | {:.2} % | {:.2}",
            100.0 * s / a,
            b / a
        );
        submit.push(s);
        local.push(a);
        ratio.push(s / a);
        whole.push(b / a);
        let _ = std::fs::remove_dir_all(Path::new(&root));
    }
    println!(
        "median over {reps}: lab slurm {:.2} s, local run {:.1} s, submission ÷ local run {:.2} % \
         (target ≤ 5 %), Slurm submit→done ÷ local run {:.2}",
        median(&mut submit),
        median(&mut local),
        100.0 * median(&mut ratio),
        median(&mut whole)
    );
}
