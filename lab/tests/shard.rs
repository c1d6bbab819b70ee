//! The lab's manifest and its shards without Slurm: `lab --plan-only`, `lab run --shard`, a
//! shard killed mid-run and run again, `lab status`. Needs `replay` beside `lab` (built by
//! `cargo test` of the workspace; alone: `cargo build --profile test -p replayer`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{lab, plan, result_keys, run_files};

/// `lab run -q --manifest M --shard SHARD`.
fn run_shard(m: &std::path::Path, shard: &str) -> std::process::Output {
    lab(&[
        "run",
        "-q",
        "--manifest",
        m.to_str().unwrap(),
        "--shard",
        shard,
    ])
}

#[test]
fn shards_together_make_every_run_of_the_manifest_once() {
    let d = tempfile::tempdir().unwrap();
    let m = plan(&d.path().join("p"), &["-w", "small,larson", "-r", "2"]);
    let rows = std::fs::read_to_string(&m).unwrap().lines().count() - 1;
    // small and larson at 1 and 2 threads × 2 repetitions × 2 allocators.
    assert_eq!(rows, 16);
    for i in 0..3 {
        let o = lab(&[
            "run",
            "-q",
            "--manifest",
            m.to_str().unwrap(),
            "--shard",
            &format!("{i}/3"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let dir = m.parent().unwrap();
    let keys = result_keys(&run_files(&dir.join("shards")));
    assert_eq!(keys.len(), rows, "{keys:#?}");
    let ids: std::collections::BTreeSet<_> = keys.iter().map(|k| k.id.clone()).collect();
    assert_eq!(ids.len(), rows, "a run twice");
    // Every shard got some, none got another's.
    for i in 0..3 {
        let n = run_files(&dir.join(format!("shards/{i}-of-3"))).len();
        assert!(n > 0, "shard {i} empty");
    }
    let s = lab(&["status", "--manifest", m.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&s.stdout);
    assert!(
        out.starts_with("16 runs: 16 done (16 ok, 0 not ok), 0 pending"),
        "{out}"
    );
    // Run again with another shard count: everything is found done.
    let o = lab(&["run", "--manifest", m.to_str().unwrap(), "--shard", "0/1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("16 runs, 16 already done, 0 replayed now"),
        "{err}"
    );
}

#[test]
fn a_killed_shard_is_redone_without_losing_or_doubling_a_run() {
    let d = tempfile::tempdir().unwrap();
    let m = plan(
        &d.path().join("p"),
        &["-w", "kv-store,small", "-r", "3", "--scale", "0.01"],
    );
    let rows = std::fs::read_to_string(&m).unwrap().lines().count() - 1;
    let dir = m.parent().unwrap().to_path_buf();
    let shard = dir.join("shards/0-of-1");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args([
            "run",
            "-q",
            "--manifest",
            m.to_str().unwrap(),
            "--shard",
            "0/1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once its first runs are in place.
    let start = Instant::now();
    while run_files(&shard).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no run finished"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shard ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_then = run_files(&shard).len();
    assert!(done_then < rows, "the shard finished before it was killed");
    // A cut copy of a run (its Parquet without run.json) must not count as finished, and
    // neither may what the killed task left in .partial/.
    let s = lab(&["status", "--manifest", m.to_str().unwrap(), "--list"]);
    let out = String::from_utf8_lossy(&s.stdout).to_string();
    let pending: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("pending: "))
        .collect();
    assert_eq!(pending.len(), rows - done_then, "{out}");
    let victim = pending[0];
    let text = std::fs::read_to_string(&m).unwrap();
    let output = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["id"] == victim)
        .unwrap()["output"]
        .as_str()
        .unwrap()
        .to_string();
    let cut = shard.join(&output);
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::copy(run_files(&shard)[0].clone(), cut.join("runs.parquet")).unwrap();
    std::fs::create_dir_all(shard.join(".partial/junk")).unwrap();
    std::fs::write(shard.join(".partial/junk/runs.parquet"), b"PAR1 cut").unwrap();
    let s = lab(&["status", "--manifest", m.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&s.stdout);
    assert!(
        out.starts_with(&format!(
            "{rows} runs: {done_then} done ({done_then} ok, 0 not ok), {} pending",
            rows - done_then
        )),
        "{out}"
    );

    let o = run_shard(&m, "0/1");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{rows} runs, {done_then} already done, {} replayed now",
            rows - done_then
        )),
        "{err}"
    );
    assert!(!shard.join(".partial").exists());
    let keys = result_keys(&run_files(&shard));
    assert_eq!(keys.len(), rows);
    let ids: std::collections::BTreeSet<_> = keys.iter().map(|k| k.id.clone()).collect();
    assert_eq!(ids.len(), rows, "a run twice");
    assert!(keys.iter().all(|k| k.status == "ok"), "{keys:#?}");
}

#[test]
fn status_counts_runs_that_did_not_finish_ok() {
    let d = tempfile::tempdir().unwrap();
    // One microsecond per replay child: every run times out, and is recorded so.
    let m = plan(
        &d.path().join("p"),
        &["-w", "small", "-t", "1", "--timeout", "0.000001"],
    );
    let o = lab(&["run", "-q", "--manifest", m.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = lab(&["status", "--manifest", m.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&s.stdout);
    assert!(
        out.starts_with("2 runs: 2 done (0 ok, 2 not ok), 0 pending"),
        "{out}"
    );
    assert_eq!(out.matches("not ok: small-t1/").count(), 2, "{out}");
    assert!(out.contains(": timeout: "), "{out}");
}

#[test]
fn bad_manifests_and_shards_get_one_clear_line() {
    let d = tempfile::tempdir().unwrap();
    let m = plan(&d.path().join("p"), &["-w", "small", "-t", "1"]);
    let text = std::fs::read_to_string(&m).unwrap();
    let check = |args: &[&str], want: &str| {
        let o = lab(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    };
    let ms = m.to_str().unwrap();
    check(
        &["run", "--manifest", ms, "--shard", "3/3"],
        "--shard \"3/3\"",
    );
    // A cut manifest.
    let cut = d.path().join("cut.jsonl");
    std::fs::write(&cut, &text[..text.len() - 40]).unwrap();
    check(
        &["status", "--manifest", cut.to_str().unwrap()],
        "cut.jsonl:3: bad run row",
    );
    // A trace that is not the one planned.
    let trace = m.parent().unwrap().join("traces/t1/small.trace.zst");
    let mut bytes = std::fs::read(&trace).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&trace, bytes).unwrap();
    check(&["run", "--manifest", ms], "content hash");
}

/// `lab slurm`'s staging of a `preload:PATH` allocator (`lab::slurm::plan_preloads`, which
/// `submit` runs before copying): the library goes to `lib/<hash>/<name>` beside the manifest
/// and the runs point there; a shard then replays with the staged copy although PATH is gone
/// (a node that never had it), and its rows keep the planned allocator name and run ids.
/// (tests/slurm.rs submits through a real Slurm.)
#[test]
fn a_preload_library_is_staged_with_the_manifest_and_loaded_from_there() {
    use lab::shard::Manifest;
    let d = tempfile::tempdir().unwrap();
    let m = plan(&d.path().join("p"), &["-w", "small", "-r", "1"]);
    // Debian's jemalloc, copied to a place that disappears before the shard runs.
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let lib = src.join("libjemalloc.so.2");
    std::fs::copy("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", &lib).unwrap();
    let spec = format!("preload:{}", lib.display());
    let mut man = Manifest::read(&m).unwrap();
    for r in &mut man.runs {
        if r.allocator == "jemalloc" {
            r.allocator = spec.clone();
        }
    }
    Manifest::write(&m, &man.header, &man.runs).unwrap();

    let mut man = Manifest::read(&m).unwrap();
    let copies = lab::slurm::plan_preloads(&mut man).unwrap();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let (from, rel) = &copies[0];
    assert_eq!(from, &lib);
    let parts: Vec<&str> = rel.split('/').collect();
    assert_eq!(parts.len(), 3, "{rel}");
    assert_eq!((parts[0], parts[2]), ("lib", "libjemalloc.so.2"));
    assert!(parts[1].len() == 16 && parts[1].chars().all(|c| c.is_ascii_hexdigit()));
    let preload = man.runs.iter().filter(|r| r.allocator == spec).count();
    assert!(preload > 0);
    for r in &man.runs {
        let want = (r.allocator == spec).then(|| rel.clone());
        assert_eq!(r.staged_lib, want, "{}", r.id);
    }
    // Planning again gives the same place (a resubmission's manifest is the same text).
    let again = lab::slurm::plan_preloads(&mut Manifest::read(&m).unwrap()).unwrap();
    assert_eq!(again, copies);
    // Stage as `submit` does, and take the original away.
    let dir = m.parent().unwrap();
    std::fs::create_dir_all(dir.join(rel).parent().unwrap()).unwrap();
    std::fs::copy(from, dir.join(rel)).unwrap();
    Manifest::write(&m, &man.header, &man.runs).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
    assert_eq!(
        man.alloc_spec(&man.runs[1]),
        format!("preload:{}", dir.join(rel).display())
    );

    let o = run_shard(&m, "0/1");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let keys = result_keys(&run_files(&dir.join("shards")));
    assert_eq!(keys.len(), man.runs.len());
    assert!(keys.iter().all(|k| k.status == "ok"), "{keys:?}");
    let staged: Vec<_> = keys.iter().filter(|k| k.allocator == spec).collect();
    assert_eq!(staged.len(), preload, "{keys:?}");
    for k in staged {
        assert!(k.id.contains(&format!("/{spec}/")), "{}", k.id);
    }
}
