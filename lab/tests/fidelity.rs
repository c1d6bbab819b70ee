//! `lab fidelity` on a small real program (Debian's perl churning a hash): both sides for every
//! allocator, with plausible numbers. Needs `record` and `replay` beside `lab` (built by `cargo
//! test` of the workspace; alone: `cargo build --profile test -p recorder -p replayer`), and
//! Debian's jemalloc, mimalloc and tcmalloc (replayer/ci-deps.txt); libfancy_preload.so is built
//! as a dev-dependency. Without any of them the test fails and says so.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt64Type};
use lab::fidelity::ProgramSummary;

mod common;

const PERL: &str = r#"my %h; for my $i (1..$ARGV[0]) { $h{"k$i"} = "v" x ($i % 50); delete $h{"k" . ($i - 500)} if $i > 500 } print scalar(keys %h), "\n";"#;

#[test]
fn fidelity_measures_both_sides_for_every_allocator() {
    let bins = Path::new(env!("CARGO_BIN_EXE_lab")).parent().unwrap();
    for b in ["record", "replay"] {
        assert!(
            bins.join(b).is_file(),
            "{}/{b} is missing: run the workspace's tests (`cargo test`), or `cargo build \
             --profile test -p recorder -p replayer` first",
            bins.display()
        );
    }
    for (lib, pkg) in lab::fidelity::DEBIAN_LIBRARIES {
        assert!(
            Path::new(lib).is_file(),
            "{lib} is missing: apt-get install {pkg}"
        );
    }
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("fid");
    let o = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args([
            "fidelity",
            "-q",
            "--repeat",
            "5",
            "--name",
            "perl-hash",
            "--out",
        ])
        .arg(&out)
        .args(["--", "/usr/bin/perl", "-e", PERL, "20000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "lab fidelity failed: {err}");
    assert!(stdout.contains("| perl-hash |"), "{stdout}");

    let dir = out.join("perl-hash");
    let s: ProgramSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let names: Vec<&str> = s.allocators.iter().map(|a| a.allocator.as_str()).collect();
    assert_eq!(
        names,
        ["glibc", "jemalloc", "mimalloc", "tcmalloc", "fancy"]
    );

    // The trace's ops and peak live bytes, by inspect, independently of the lab.
    let trace = dir.join("perl-hash.trace.zst");
    let mut r = traces::MergedReader::open(&trace).unwrap();
    let mut insp = traces::inspect::Inspector::new();
    while let Some(rec) = r.next_record().unwrap() {
        insp.feed(&rec);
    }
    let rep = insp.report();
    assert!(rep.ops > 20_000, "{} ops", rep.ops);
    assert_eq!(s.trace_ops, rep.ops);
    assert_eq!(s.trace_peak_live_bytes, rep.peak_live_bytes);
    for a in &s.allocators {
        assert_eq!(a.replay_failed, 0, "{}", a.allocator);
        assert_eq!(a.replay_ops, Some(rep.ops), "{}: replayed ops", a.allocator);
        assert!(a.real_wall_s > 0.0 && a.real_wall_s < 60.0, "{a:?}");
        assert!(
            a.replay_wall_s > 0.0 && a.replay_wall_s < a.real_wall_s * 10.0,
            "{a:?}"
        );
        assert!(a.real_heap_rss_bytes > 0.0, "{a:?}");
        assert!(a.replay_heap_rss_bytes > 0.0, "{a:?}");
        assert!(a.real_minflt > 0.0, "{a:?}");
    }
    assert!(
        s.tau_time.is_some_and(|t| (-1.0..=1.0).contains(&t)),
        "{s:?}"
    );
    assert!(
        s.events_per_real_s > 0.0 && s.replay_fraction > 0.0,
        "{s:?}"
    );
    // Of the 10 allocator pairs, those the real runs separate, and the replay's agreement.
    assert!(
        s.separated_pairs <= 10 && s.separated_pairs_ordered <= s.separated_pairs,
        "{s:?}"
    );

    // The Parquet rows: both sides × every allocator × 5 repetitions, with positive times.
    let f = std::fs::File::open(dir.join("fidelity.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let mut cells: BTreeMap<(String, String), usize> = BTreeMap::new();
    for b in reader.build().unwrap() {
        let b = b.unwrap();
        let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        let (alloc, side) = (col("allocator"), col("side"));
        let (alloc, side) = (alloc.as_string::<i32>(), side.as_string::<i32>());
        let wall = col("wall_s");
        let ops = col("ops");
        for i in 0..b.num_rows() {
            assert!(wall.as_primitive::<Float64Type>().value(i) > 0.0);
            assert_eq!(ops.as_primitive::<UInt64Type>().value(i), rep.ops);
            *cells
                .entry((alloc.value(i).to_string(), side.value(i).to_string()))
                .or_default() += 1;
        }
    }
    assert_eq!(cells.len(), 10, "{cells:?}");
    assert!(cells.values().all(|&n| n == 5), "{cells:?}");

    // `analyze --fidelity` puts the same tables in the report (over the replays' own runs):
    // its fidelity.md, made from the summaries it read back, is the lab's byte for byte.
    let report = d.path().join("report");
    let o = Command::new(common::analyze_bin())
        .arg(&out)
        .arg("-o")
        .arg(&report)
        .args(["--no-plots", "--fidelity"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(report.join("fidelity.md")).unwrap(),
        std::fs::read_to_string(out.join("fidelity.md")).unwrap()
    );
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<h2 id=\"fidelity\">"), "no fidelity section");
    assert!(html.contains("<h3>perl-hash — "), "no perl-hash table");
    for a in names {
        assert!(
            html.contains(&format!("<td class=\"t\">{a}</td>")),
            "no {a} row"
        );
    }
    // A directory without summaries is said, not fatal; a missing one is bad input.
    let o = Command::new(common::analyze_bin())
        .arg(&out)
        .arg("-o")
        .arg(d.path().join("r2"))
        .args(["--no-plots", "--fidelity", "/nonexistent/fid"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/fid"));
}

#[test]
fn a_program_that_fails_for_real_is_its_own_error() {
    let d = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["fidelity", "-q", "--alloc", "system", "--out"])
        .arg(d.path())
        .args(["--", "/bin/sh", "-c", "exit 7"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // Recording it fails first: exit 4, with the program's status.
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("exit code 7"), "{err}");
    // A preloaded allocator that crashes the program: recording (without it) works, the real
    // run under it fails: exit 6, naming the allocator.
    let lib = common::crashing_allocator(d.path());
    let o = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["fidelity", "-q", "--alloc"])
        .arg(format!("system,preload:{}", lib.display()))
        .arg("--out")
        .arg(d.path().join("crash"))
        .args(["--", "/usr/bin/perl", "-e", PERL, "20000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(6), "{err}");
    assert!(
        err.contains("under crash") && err.contains("signal 11"),
        "{err}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args([
            "fidelity", "-q", "--repeat", "3", "--alloc", "system", "--out",
        ])
        .arg(d.path())
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--repeat must be at least 5"));
}
