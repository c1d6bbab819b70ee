//! `analyze` on introspection.parquet (the allocators' own statistics): a result directory built
//! from the schema's own row structs, with readings the test chooses, read back through the
//! whole pipeline; the figures equal the ones computed by hand here.

mod common;

use std::path::Path;

use analysis::summary::frame;
use common::{Results, Run as _};
use results_schema::{IntrospectionRow, RunRow, SCHEMA_VERSION};

fn point(
    run: &RunRow,
    phase: &str,
    sample: u32,
    t_ms: u64,
    metric: &str,
    key: Option<i64>,
    value: i64,
) -> IntrospectionRow {
    IntrospectionRow {
        schema_version: SCHEMA_VERSION,
        run_id: format!(
            "{}/{}/t{}/r{}",
            run.trace_name, run.allocator, run.replay_threads, run.repetition
        ),
        allocator: run.allocator.clone(),
        trace_name: run.trace_name.clone(),
        workload: run.workload.clone(),
        replay_threads: run.replay_threads,
        repetition: run.repetition,
        phase: phase.into(),
        sample,
        t_ns: t_ms * 1_000_000,
        metric: metric.into(),
        key,
        value,
    }
}

/// Two ok jemalloc runs, one ok fancy run and a crashed fancy run, with readings: resident
/// peaks of 10 and 30 MiB (median 20), ends of 4 and 6 MiB (median 5); fancy's classes 16 B
/// (100 of 200 blocks live) and 512 B (1 of 1).
fn write_dir(dir: &Path) {
    let mut r = Results {
        sweep: "intro".into(),
        ..Default::default()
    };
    r.runs.push(RunRow::ok("frag", "jemalloc", 2, 0, 1e6));
    r.runs.push(RunRow::ok("frag", "jemalloc", 2, 1, 1e6));
    r.runs.push(RunRow::ok("frag", "fancy", 2, 0, 1e6));
    r.runs
        .push(RunRow::crashed("frag", "fancy", 2, 1, "killed by SIGSEGV"));
    common::write(dir, &r);
    let mib = 1i64 << 20;
    let mut rows = Vec::new();
    for (run, peak, end) in [(&r.runs[0], 10, 4), (&r.runs[1], 30, 6)] {
        rows.push(point(
            run,
            "replay",
            0,
            100,
            "resident_bytes",
            None,
            peak * mib / 2,
        ));
        rows.push(point(
            run,
            "replay",
            1,
            200,
            "resident_bytes",
            None,
            peak * mib,
        ));
        rows.push(point(
            run,
            "after",
            2,
            250,
            "resident_bytes",
            None,
            end * mib,
        ));
        rows.push(point(run, "replay", 0, 100, "in_use_bytes", None, mib));
        rows.push(point(run, "replay", 1, 200, "in_use_bytes", None, 2 * mib));
        rows.push(point(run, "after", 2, 250, "in_use_bytes", None, mib));
        // Per-arena figures are not in the table.
        rows.push(point(
            run,
            "replay",
            0,
            100,
            "arena_active_bytes",
            Some(0),
            7,
        ));
    }
    for run in [&r.runs[2], &r.runs[3]] {
        for (s, phase, t) in [(0, "replay", 100), (1, "after", 300)] {
            rows.push(point(run, phase, s, t, "resident_bytes", None, 8 * mib));
            rows.push(point(run, phase, s, t, "class_live_blocks", Some(16), 100));
            rows.push(point(
                run,
                phase,
                s,
                t,
                "class_capacity_blocks",
                Some(16),
                200,
            ));
            rows.push(point(run, phase, s, t, "class_live_blocks", Some(512), 1));
            // Heap 1's queue holds 40 blocks during the ops and none after; heap 0's never any.
            let depth = if phase == "after" { 0 } else { 40 };
            rows.push(point(
                run,
                phase,
                s,
                t,
                "cross_thread_queue_depth",
                Some(1),
                depth,
            ));
            rows.push(point(
                run,
                phase,
                s,
                t,
                "cross_thread_queue_depth",
                Some(0),
                0,
            ));
            rows.push(point(
                run,
                phase,
                s,
                t,
                "cross_thread_queue_max",
                None,
                depth,
            ));
            rows.push(point(
                run,
                phase,
                s,
                t,
                "class_capacity_blocks",
                Some(512),
                1,
            ));
        }
    }
    let mut df = frame(&rows).unwrap();
    common::write_frame(&dir.join("introspection.parquet"), &mut df);
}

#[test]
fn analyze_reads_introspection_into_a_table_and_plots() {
    let d = tempfile::tempdir().unwrap();
    write_dir(d.path());
    let mut problems = Vec::new();
    let dirs = analysis::load::discover(&[d.path().display().to_string()], &mut problems).unwrap();
    let loaded = analysis::load::load(&dirs, problems).unwrap();
    let x = analysis::introspection::load(&loaded);
    assert!(x.problems.is_empty(), "{:?}", x.problems);
    // The crashed run's readings are left out.
    assert_eq!(x.runs.len(), 3);
    let je = x.runs.iter().find(|r| r.allocator == "jemalloc").unwrap();
    assert_eq!(je.readings.len(), 3);
    assert!(je.readings[2].after);

    let rows = analysis::introspection::rows(&x);
    let get = |a: &str, m: &str| {
        rows.iter()
            .find(|r| r.allocator == a && r.metric == m)
            .unwrap_or_else(|| panic!("no {a} {m} in {rows:?}"))
    };
    let res = get("jemalloc", "resident_bytes");
    assert_eq!(res.runs, 2);
    assert_eq!(res.peak, 20.0 * (1 << 20) as f64);
    assert_eq!(res.end, Some(5.0 * (1 << 20) as f64));
    assert_eq!(get("jemalloc", "in_use_bytes").peak, 2.0 * (1 << 20) as f64);
    assert!(!rows.iter().any(|r| r.metric == "arena_active_bytes"));
    // fancy's fill level: (100 × 16 + 1 × 512) / (200 × 16 + 512) in ‰.
    let fill = get("fancy", "small_fill_permille");
    assert_eq!(fill.peak, (2112 * 1000 / 3712) as f64);
    assert_eq!(fill.runs, 1);
    let fancy = x.runs.iter().find(|r| r.allocator == "fancy").unwrap();
    let queues: Vec<Vec<(i64, i64)>> = fancy
        .readings
        .iter()
        .map(|x| x.queues.iter().map(|(h, d)| (*h, *d)).collect())
        .collect();
    assert_eq!(queues, vec![vec![(0, 0), (1, 40)], vec![(0, 0), (1, 0)]]);
    assert_eq!(get("fancy", "cross_thread_queue_max").peak, 40.0);

    // The whole report: the table and both plots.
    let out = tempfile::tempdir().unwrap();
    let opts = analysis::Options::new(vec![d.path().display().to_string()], out.path());
    let report = analysis::run(&opts).unwrap();
    let md = std::fs::read_to_string(out.path().join("tables/allocator_introspection.md")).unwrap();
    assert!(md.contains("resident_bytes"), "{md}");
    assert!(md.contains("MiB"), "{md}");
    for stem in [
        "introspection_resident_frag_t2",
        "introspection_fill_fancy_frag_t2",
        "introspection_queues_fancy_frag_t2",
    ] {
        assert!(
            out.path().join(format!("plots/{stem}.svg")).is_file(),
            "{stem}: {:?}",
            report.written.plots
        );
    }
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(
        html.contains("own statistics"),
        "the table is in the report"
    );
}

#[test]
fn a_directory_without_introspection_has_no_table_and_no_problem() {
    let d = tempfile::tempdir().unwrap();
    let mut r = Results::default();
    r.runs.push(RunRow::ok("t", "system", 1, 0, 1e6));
    common::write(d.path(), &r);
    let mut problems = Vec::new();
    let dirs = analysis::load::discover(&[d.path().display().to_string()], &mut problems).unwrap();
    let loaded = analysis::load::load(&dirs, problems).unwrap();
    let x = analysis::introspection::load(&loaded);
    assert!(x.runs.is_empty() && x.problems.is_empty());
    assert!(analysis::introspection::table(&x).is_none());
}
