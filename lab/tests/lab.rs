//! `lab --quick` end to end, as CI runs it: synthetic suite, python3 recorded with the real
//! recorder, every default allocator replayed, `analyze` over the results. Needs the
//! `analyze` binary (built by scripts/test-all before the tests: `cargo build --locked
//! --profile analysis -p analysis`; or point ALLOCLAB_ANALYZE at one) and the `record` and
//! `replay` binaries beside `lab` (built by `cargo test` of the workspace; alone: `cargo build
//! --profile test -p recorder -p replayer`). Without any of them the tests fail and say so.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

mod common;
use common::analyze_bin;

fn lab(out: &Path, extra: &[&str]) -> std::process::Output {
    let bins = Path::new(env!("CARGO_BIN_EXE_lab")).parent().unwrap();
    for b in ["record", "replay"] {
        assert!(
            bins.join(b).is_file(),
            "{}/{b} is missing: run the workspace's tests (`cargo test`), which build it, or \
             `cargo build --profile test -p recorder -p replayer` first",
            bins.display()
        );
    }
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["--quick", "-q", "--out"])
        .arg(out)
        .arg("--analyze")
        .arg(analyze_bin())
        .args(extra)
        .output()
        .unwrap()
}

/// (trace, allocator) pairs of a CSV table of the report.
fn rows(csv: &Path) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| head.iter().position(|h| *h == n).unwrap();
    let (t, a) = (col("trace_name"), col("allocator"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[t].to_string(), f[a].to_string())
        })
        .collect()
}

#[test]
fn the_quick_lab_reports_every_available_allocator_on_every_workload() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("lab");
    let start = std::time::Instant::now();
    let o = lab(&out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "lab failed: {err}");
    let first = start.elapsed();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let report = out.join("report/report.html");
    assert!(
        stdout.contains(&format!("report: {}", report.display())),
        "{stdout}"
    );
    assert!(report.is_file());
    assert!(err.contains("0 not ok"), "{err}");

    // Every default allocator must be here: the test promises all of them (as the replay's
    // tests do), so a missing one fails it, with what to install.
    for a in lab::suite::DEFAULT_ALLOCATORS {
        if let Err(e) = a.check_available() {
            panic!("{} is not available here: {e}", a.name());
        }
    }
    let available: Vec<String> = lab::suite::DEFAULT_ALLOCATORS
        .iter()
        .map(|a| a.name())
        .collect();
    let mut traces: Vec<String> = traces::synth::WORKLOADS
        .iter()
        .map(|w| w.name.to_string())
        .collect();
    traces.push("python3-json".into());
    for table in ["throughput", "memory"] {
        let got = rows(&out.join(format!("report/tables/{table}.csv")));
        for t in &traces {
            for a in &available {
                assert!(
                    got.contains(&(t.clone(), a.clone())),
                    "{table}.csv has no row for {t} × {a}"
                );
            }
        }
    }
    // The recorded program is a real python3 run, replayed at its own thread count.
    let runs = std::fs::read_dir(out.join("runs")).unwrap().count();
    assert!(runs >= traces.len(), "{runs} sweeps");

    // A rerun finds every sweep done and replays nothing.
    let o = lab(&out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("0 sweeps replayed"), "{err}");
    assert!(
        start.elapsed() - first < first,
        "the rerun took as long as the first run"
    );

    // Other parameters into the same directory are refused, with what to do.
    let o = lab(&out, &["--repeat", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("other parameters"));
}

#[test]
fn a_users_program_joins_the_sweep_and_a_crash_does_not_stop_it() {
    // sqlite3 recorded through `--record --`, and a preloaded allocator that crashes: its runs
    // are reported as crashed, the rest of the sweep and the report go on.
    let d = tempfile::tempdir().unwrap();
    assert!(
        Path::new("/usr/bin/sqlite3").is_file(),
        "sqlite3 is missing: `apt-get install sqlite3` (recorder/ci-deps.txt lists it)"
    );
    let lib = common::crashing_allocator(d.path());
    let out = d.path().join("lab");
    let alloc = format!("system,preload:{}", lib.display());
    let sql = "create table t(a, b); \
               with recursive c(x) as (select 1 union all select x + 1 from c limit 20000) \
               insert into t select x, printf('%0100d', x) from c; \
               select count(*), sum(length(b)) from t;";
    let o = lab(
        &out,
        &[
            "--workloads",
            "rl_small,larson",
            "--threads",
            "1",
            "--no-python",
            "--alloc",
            &alloc,
            "--record",
            "--",
            "/usr/bin/sqlite3",
            ":memory:",
            sql,
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("recorded recorded-sqlite3"), "{err}");
    assert!(err.contains("crashed"), "{err}");
    let got = rows(&out.join("report/tables/throughput.csv"));
    for t in ["rl_small", "larson", "recorded-sqlite3"] {
        assert!(
            got.contains(&(t.to_string(), "system".to_string())),
            "{got:?}"
        );
    }
    let failed = std::fs::read_to_string(out.join("report/tables/failed_runs.csv")).unwrap();
    assert!(
        failed.lines().filter(|l| l.contains("crashed")).count() >= 3,
        "{failed}"
    );
}

/// The lab at its smallest (one tiny synthetic trace, glibc only) with `extra` options; needs
/// neither python3 nor a real `analyze`.
fn small_lab(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--workloads",
        "rl_small",
        "--threads",
        "1",
        "--no-python",
        "--alloc",
        "system",
    ];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["--quick", "-q", "--out"])
        .arg(out)
        .args(&args)
        .output()
        .unwrap()
}

/// The fidelity step of the default profile (forced here into a quick lab): the default real
/// set measured, its tables in the report beside the sweeps, and not run again on a rerun.
#[test]
fn the_lab_puts_the_fidelity_tables_of_the_default_set_in_its_report() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("lab");
    let o = small_lab(
        &out,
        &["--fidelity", "--analyze", analyze_bin().to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let fid = out.join("fidelity");
    let md = std::fs::read_to_string(fid.join("fidelity.md")).unwrap();
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    assert!(html.contains("<h2 id=\"fidelity\">"), "no fidelity section");
    for p in [
        "python3-st",
        "python3-mt",
        "perl",
        "sqlite3",
        "gcc",
        "git",
        "c-rounds",
        "c-pipeline",
    ] {
        assert!(
            md.contains(&format!("| {p} |")),
            "{p} missing from fidelity.md"
        );
        assert!(
            html.contains(&format!("<h3>{p} — ")),
            "{p} missing from the report"
        );
        assert!(fid.join(p).join("summary.json").is_file(), "{p}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("report/fidelity.md")).unwrap(),
        md
    );
    // A rerun finds it done.
    let o = small_lab(
        &out,
        &["--fidelity", "--analyze", analyze_bin().to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("fidelity: done before"), "{err}");
}

#[test]
fn each_failing_step_has_its_own_exit_code_and_says_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let bins = Path::new(env!("CARGO_BIN_EXE_lab")).parent().unwrap();
    let record = bins.join("record");
    assert!(
        record.is_file(),
        "{} is missing: `cargo build --profile test -p recorder`",
        record.display()
    );
    // 3: a program the lab runs is missing, and the message says what to build.
    let o = small_lab(
        &d.path().join("a"),
        &[
            "--replay-bin",
            "/nonexistent/replay",
            "--analyze",
            "/bin/true",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("/nonexistent/replay") && err.contains("cargo build --release -p replayer"),
        "{err}"
    );
    let o = small_lab(&d.path().join("b"), &["--analyze", "/nonexistent/analyze"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("--profile analysis -p analysis"), "{err}");
    // 4: the recorded program fails (a real program that exits 3).
    let o = small_lab(
        &d.path().join("c"),
        &[
            "--analyze",
            "/bin/true",
            "--record",
            "--",
            "/bin/sh",
            "-c",
            "echo broken >&2; exit 3",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("exit code 3") && err.contains("broken"),
        "{err}"
    );
    // 5: analyze fails on the results (/bin/false stands for an analyze that fails; the replay
    // before it is real).
    let out = d.path().join("d");
    let o = small_lab(&out, &["--analyze", "/bin/false"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("analyze failed"), "{err}");
    assert!(out.join("runs/rl_small-t1/runs.parquet").is_file());
    // 2: bad input.
    let o = small_lab(
        &d.path().join("e"),
        &["--scale=-1", "--analyze", "/bin/true"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--scale"), "{err}");
}

/// `--heap-maps`: the sweeps named (by workload) also write each allocator's heap map, the
/// others none; a name that picks no sweep is refused before anything runs.
#[test]
fn heap_maps_are_written_for_the_sweeps_named_and_a_wrong_name_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("lab");
    let o = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["--quick", "-q", "--out"])
        .arg(&out)
        .args([
            "--workloads",
            "rl_small,fragmentation-holes",
            "--threads",
            "1",
            "--no-python",
            "--alloc",
            "system,fancy",
            "--heap-maps",
            "fragmentation-holes",
            "--analyze",
            "/bin/true",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let maps = out.join("runs/fragmentation-holes-t1/heapmaps");
    for a in ["system", "fancy"] {
        let t = results_schema::heapmap::trace_file(&maps, "fragmentation-holes", a);
        assert!(t.is_file(), "{} missing", t.display());
        let m = results_schema::heapmap::maps_file(&t).unwrap();
        assert!(m.is_file(), "{} missing", m.display());
    }
    assert!(!out.join("runs/rl_small-t1/heapmaps").exists());
    // The real `analyze` draws them, with the real mappings overlaid.
    let pics = d.path().join("pics");
    let o = Command::new(analyze_bin())
        .arg("--heap-map")
        .arg(&maps)
        .arg("-o")
        .arg(&pics)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for a in ["system", "fancy"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("under {a})")))
            .unwrap_or_else(|| panic!("no map of {a}: {text}"));
        assert!(line.contains("mapping snapshots"), "{line}");
        assert!(
            pics.join(format!("heapmap_fragmentation-holes__{a}.png"))
                .is_file(),
            "{text}"
        );
    }

    let o = small_lab(
        &d.path().join("bad"),
        &["--heap-maps", "no-such-workload", "--analyze", "/bin/true"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--heap-maps no-such-workload") && err.contains("rl_small-t1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
