//! `lab --quick` end to end, as CI runs it: synthetic suite, python3 recorded with the real
//! recorder, every available allocator replayed, `analyze` over the results. Needs the
//! `analyze` binary (built by scripts/test-all before the tests: `cargo build --profile
//! analysis -p analysis`) and the `record` binary (built by `cargo test` of the workspace).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    // <target>/<profile>/deps/lab-…
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

fn analyze_bin() -> PathBuf {
    let p = std::env::var_os("ALLOCLAB_ANALYZE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("analysis/analyze"));
    assert!(
        p.is_file(),
        "{} is missing: build it first with `cargo build --locked --profile analysis -p analysis` \
         (scripts/test-all does), or point ALLOCLAB_ANALYZE at it",
        p.display()
    );
    p
}

fn lab(out: &Path, extra: &[&str]) -> std::process::Output {
    let bins = Path::new(env!("CARGO_BIN_EXE_lab")).parent().unwrap();
    assert!(
        bins.join("record").is_file(),
        "{}/record is missing: run the workspace's tests (`cargo test`), which build it",
        bins.display()
    );
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

    let available: Vec<String> = replayer::lab::DEFAULT_ALLOCATORS
        .iter()
        .filter(|a| a.check_available().is_ok())
        .map(|a| a.name())
        .collect();
    assert!(available.len() >= 5, "{available:?}");
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
    let src = d.path().join("crash.c");
    std::fs::write(
        &src,
        "#include <stddef.h>\nextern void *__libc_malloc(size_t);\nstatic long n;\n\
         void *malloc(size_t s) { if (++n == 3000) *(volatile int *)0 = 1; return __libc_malloc(s); }\n",
    )
    .unwrap();
    let lib = d.path().join("libcrash.so");
    let o = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .expect("gcc is missing: `apt-get install gcc`");
    assert!(o.status.success());
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
