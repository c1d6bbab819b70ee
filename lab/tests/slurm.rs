//! `lab slurm` against a real one-node Slurm cluster the test starts itself from Debian's
//! packages (`slurm-wlm`, `munge`; scripts/install-deps installs them): munged with a key it
//! makes, slurmctld and slurmd in the foreground as the test's own children, every state file
//! in a temporary directory, stopped at the end. Needs root (slurmd runs jobs as their user:
//! `SlurmdUser=root`); elsewhere the test says it is skipped and why. Needs `replay` beside
//! `lab` and `analyze` (as tests/lab.rs: `cargo build --locked --profile analysis -p analysis`,
//! or ALLOCLAB_ANALYZE).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{analyze_bin, plan, result_keys, run_files, sweep_args};

/// `lab slurm …`; returns the array and analysis job ids.
fn submit(c: &Cluster, manifest: &Path, shared: &Path, shards: &str) -> (String, String) {
    let o = c.lab(&[
        "slurm",
        "--manifest",
        manifest.to_str().unwrap(),
        "--shared",
        shared.to_str().unwrap(),
        "--shards",
        shards,
        "--partition",
        "lab",
        "--analyze",
        analyze_bin().to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    // The staging and submission time (`-- --nocapture` shows it).
    eprint!("{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.status.success(),
        "{out}{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        c.logs()
    );
    let id = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no `{prefix}` in {out}"))
            .to_string()
    };
    let (array, analysis) = (id("array job: "), id("analysis job: "));
    assert!(
        out.contains(&format!("follow: squeue -j {array},{analysis}")),
        "{out}"
    );
    (array, analysis)
}

fn status(c: &Cluster, manifest: &Path) -> String {
    let o = c.lab(&["status", "--manifest", manifest.to_str().unwrap()]);
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_sweep_through_slurm_makes_the_local_labs_runs() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED a_sweep_through_slurm_makes_the_local_labs_runs: a one-node Slurm runs \
             slurmd as root (SlurmdUser=root), and this test is not root"
        );
        return;
    }
    let analyze = analyze_bin();
    let mut c = Cluster::start();
    let d = tempfile::tempdir().unwrap();

    // 1. The tiny sweep planned, submitted as 3 array tasks, and run locally: same runs.
    let extra = ["-w", "small,larson", "-r", "2"];
    let m = plan(&d.path().join("plan"), &extra);
    let shared = d.path().join("shared");
    let (array, analysis) = submit(&c, &m, &shared, "3");
    let mut args = sweep_args(&extra);
    let local = d.path().join("local");
    args.extend([
        "-o",
        local.to_str().unwrap(),
        "--analyze",
        analyze.to_str().unwrap(),
    ]);
    let o = common::lab(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    c.wait_jobs(&[array.clone(), analysis.clone()], Duration::from_secs(600));
    let logs = shared.join("slurm/logs");
    let shard_logs = std::fs::read_dir(&logs)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("shard-{array}_"))
        })
        .count();
    assert_eq!(
        shard_logs,
        3,
        "one log per array task in {}",
        logs.display()
    );
    let mut local_keys = result_keys(&run_files(&local.join("runs")));
    let mut slurm_keys = result_keys(&run_files(&shared.join("shards")));
    assert_eq!(local_keys.len(), 16);
    // The run ids, op counts, peak live bytes and trace hashes are the same; each run's
    // measurements (time, RSS) are its own.
    local_keys.sort();
    slurm_keys.sort();
    assert_eq!(slurm_keys, local_keys);
    assert!(
        status(&c, &shared.join("manifest.jsonl"))
            .starts_with("16 runs: 16 done (16 ok, 0 not ok), 0 pending"),
    );
    let report = shared.join("report/report.html");
    assert!(
        report.is_file(),
        "the analysis job made no report: {}",
        std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("analyze-"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<String>()
    );

    // 2. An array task cancelled mid-run, then the sweep submitted again into the same shared
    // directory: the cancelled shard's finished runs are kept, the rest made, none twice.
    let m2 = plan(
        &d.path().join("plan2"),
        &["-w", "kv-store,small", "-r", "3", "--scale", "0.01"],
    );
    let rows = std::fs::read_to_string(&m2).unwrap().lines().count() - 1;
    let shared2 = d.path().join("shared2");
    let (array, analysis) = submit(&c, &m2, &shared2, "3");
    // Task 0 runs first (one node, --exclusive): cancel it once a run of it is in place.
    let shard0 = shared2.join("shards/0-of-3");
    let start = Instant::now();
    while run_files(&shard0).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "task 0 made no run"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.slurm("scancel", &[&format!("{array}_0")]);
    c.wait_jobs(&[array.clone(), analysis.clone()], Duration::from_secs(600));
    let after_cancel = status(&c, &shared2.join("manifest.jsonl"));
    let pending: usize = after_cancel
        .split(" pending")
        .next()
        .and_then(|p| p.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{after_cancel}"));
    assert!(
        pending > 0,
        "the cancelled task finished first: {after_cancel}"
    );
    let (array, analysis) = submit(&c, &m2, &shared2, "3");
    c.wait_jobs(&[array, analysis], Duration::from_secs(600));
    assert!(
        status(&c, &shared2.join("manifest.jsonl")).starts_with(&format!(
            "{rows} runs: {rows} done ({rows} ok, 0 not ok), 0 pending"
        )),
    );
    let keys = result_keys(&run_files(&shared2.join("shards")));
    assert_eq!(keys.len(), rows);
    let ids: std::collections::BTreeSet<_> = keys.iter().map(|k| k.id.clone()).collect();
    assert_eq!(ids.len(), rows, "a run twice");
}
