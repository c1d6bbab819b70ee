//! The analysis tests: fixture results with known values (written here, with real Parquet read
//! back by the library and by the `analyze` binary), hand-computed medians and ratios, images
//! decoded, SVG parsed, HTML links checked on disk, bad input, and the notebook executed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use analysis::compute::{self, ComputeOptions};
use analysis::load;
use analysis::schema::FileKind;
use common::{self as fixture, Results, Run as _};
use polars::prelude::*;
use results_schema::{Row as _, RunRow};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Trace `t`, 2 threads: system at 10, 12, 11 M ops/s; fancy at 20, 24, 22 M ops/s plus a
/// crashed repetition; bump at 5, 5, 8 M ops/s. Latency: run i's quantile q is
/// `1000·q + 10·rep` ns (so the median over reps 0..2 is `1000·q + 10`).
fn known_results() -> Results {
    let mut r = Results {
        sweep: "known".into(),
        ..Default::default()
    };
    let tps = [
        ("system", [10e6, 12e6, 11e6]),
        ("fancy", [20e6, 24e6, 22e6]),
        ("bump", [5e6, 5e6, 8e6]),
    ];
    for (alloc, v) in tps {
        for (rep, tp) in v.into_iter().enumerate() {
            let mut run = RunRow::ok("t", alloc, 2, rep as u32, tp);
            run.workload = "rl_small".into();
            // Fragmentation at peak: 1.1, 1.3, 1.2 (median 1.2) for every allocator.
            let frag = [1.1, 1.3, 1.2][rep];
            run.frag_ratio_at_peak = Some(frag);
            run.peak_heap_rss_bytes = Some([3u64 << 20, 5 << 20, 4 << 20][rep]);
            run.minor_faults = Some([100, 300, 200][rep]);
            let i = r.runs.len();
            r.runs.push(run);
            for op in ["malloc", "free"] {
                r.add_latency(i, op, 500_000, |q| (1000.0 * q) as u64 + 10 * rep as u64);
            }
            let dur = r.runs[i].wall_ns.unwrap();
            for k in 0..50u64 {
                let live = 1u64 << 20;
                let heap = (live as f64 * 1.5) as i64;
                r.samples.push(
                    i as u32,
                    false,
                    dur * k / 50,
                    k,
                    live,
                    (8 << 20) + heap as u64,
                    heap,
                );
            }
            r.samples
                .push(i as u32, true, dur + 100_000_000, 0, 0, 8 << 20, 4096);
        }
    }
    let mut crashed = RunRow::crashed("t", "fancy", 2, 3, "killed by signal 11 (SIGSEGV)");
    crashed.workload = "rl_small".into();
    r.runs.push(crashed);
    r
}

fn analyze_dirs(dirs: &[PathBuf]) -> compute::Analysis {
    analyze_dirs_with(dirs, &ComputeOptions::default())
}

fn analyze_dirs_with(dirs: &[PathBuf], opts: &ComputeOptions) -> compute::Analysis {
    let args: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let mut problems = Vec::new();
    let found = load::discover(&args, &mut problems).unwrap();
    let loaded = load::load(&found, problems).unwrap();
    compute::compute(loaded, opts).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn medians_and_ratios_equal_hand_computed_values() {
    let d = tmp();
    fixture::write(d.path(), &known_results());
    let a = analyze_dirs(&[d.path().to_path_buf()]);
    assert_eq!(a.runs_total, 10);
    assert_eq!(a.runs_ok, 9);
    assert_eq!(a.failed.len(), 1);
    let get = |al: &str| a.configs.iter().find(|c| c.allocator == al).unwrap();
    let sys = get("system");
    let fancy = get("fancy");
    let bump = get("bump");
    assert_eq!(sys.runs_ok, 3);
    assert_eq!(fancy.runs_ok, 3, "the crashed repetition is left out");
    assert!(close(sys.ops_per_sec_median.unwrap(), 11e6));
    assert!(close(fancy.ops_per_sec_median.unwrap(), 22e6));
    assert!(close(bump.ops_per_sec_median.unwrap(), 5e6));
    assert!(close(fancy.ratio_to_system.unwrap(), 2.0));
    assert!(close(fancy.ratio_to_best.unwrap(), 1.0));
    assert!(close(sys.ratio_to_best.unwrap(), 0.5));
    assert!(close(bump.ratio_to_system.unwrap(), 5.0 / 11.0));
    // CV: system mean 11M, sample std 1M.
    assert!(close(sys.ops_per_sec_cv.unwrap(), 1.0 / 11.0));
    assert!(close(sys.ops_per_sec_min.unwrap(), 10e6));
    assert!(close(sys.ops_per_sec_max.unwrap(), 12e6));
    // Memory medians.
    assert!(close(sys.frag_ratio_at_peak.unwrap(), 1.2));
    assert!(close(sys.frag_ratio_at_peak_min.unwrap(), 1.1));
    assert!(close(sys.frag_ratio_at_peak_max.unwrap(), 1.3));
    assert!(close(sys.peak_heap_rss_bytes.unwrap(), (4u64 << 20) as f64));
    assert!(close(sys.minor_faults.unwrap(), 200.0));
    // Latency: median over reps of 1000·q + 10·rep.
    let l = a
        .latency
        .iter()
        .find(|l| l.key.allocator == "system" && l.op == "malloc")
        .unwrap();
    assert_eq!(l.runs, 3);
    assert!(close(l.quantiles[&99_000], 1000.0));
    assert!(close(l.quantiles[&99_900], 1009.0));
    assert!(close(l.quantiles[&50_000], 510.0));
    assert!(close(l.quantiles[&100_000], 1010.0));
    // Over time: heap 1.5 MiB and live 1 MiB in every replay bucket; the `after` sample is out.
    let s = a
        .series
        .iter()
        .find(|s| s.key.allocator == "fancy")
        .unwrap();
    assert!(s.points.len() > 10);
    for p in &s.points {
        assert!(close(p.live_bytes.unwrap(), (1u64 << 20) as f64));
        assert!(close(p.frag_ratio.unwrap(), 1.5));
    }
}

/// Three repetitions of one configuration that took 10, 30 and 20 ms, 10 samples each at
/// 0, 1/10, … 9/10 of the run; repetition r's heap RSS at sample k is (k+1)(r+1) MiB, live
/// bytes 1 MiB throughout.
fn uneven_repetitions() -> Results {
    let mut r = Results::default();
    for (rep, wall_ms) in [10u64, 30, 20].into_iter().enumerate() {
        let mut run = RunRow::ok("t", "system", 1, rep as u32, 1e6);
        let wall = wall_ms * 1_000_000;
        run.wall_ns = Some(wall);
        let i = r.runs.len() as u32;
        r.runs.push(run);
        for k in 0..10u64 {
            let heap = ((k + 1) * (rep as u64 + 1)) << 20;
            r.samples.push(
                i,
                false,
                wall * k / 10,
                k,
                1 << 20,
                (8 << 20) + heap,
                heap as i64,
            );
        }
        // Retained-RSS samples after the last op are not part of the replay's time series.
        r.samples
            .push(i, true, wall + 100_000_000, 10, 0, 9 << 20, 1 << 20);
    }
    r
}

#[test]
fn memory_over_time_is_the_median_of_repetitions_aligned_by_progress() {
    let d = tmp();
    fixture::write(d.path(), &uneven_repetitions());
    // As many buckets as samples per run: bucket k holds sample k of every repetition, the
    // median over repetitions of (k+1)(r+1) MiB is 2(k+1) MiB, drawn at the middle of bucket
    // k of the median-length (20 ms) run: (k + 0.5) · 2 ms.
    let a = analyze_dirs(&[d.path().to_path_buf()]);
    assert_eq!(a.series.len(), 1);
    let pts = &a.series[0].points;
    assert_eq!(pts.len(), 10, "{pts:?}");
    for (k, p) in pts.iter().enumerate() {
        let k = k as f64;
        assert!(close(p.t_ms, (k + 0.5) * 2.0), "{p:?}");
        assert!(
            close(p.heap_rss_bytes.unwrap(), 2.0 * (k + 1.0) * MIB),
            "{p:?}"
        );
        assert!(close(p.live_bytes.unwrap(), MIB), "{p:?}");
        assert!(close(p.frag_ratio.unwrap(), 2.0 * (k + 1.0)), "{p:?}");
    }
    // Five buckets: bucket 0 holds samples 0 and 1 of each run, heap {1, 2}, {2, 4}, {3, 6}
    // MiB: median (2 + 3) / 2 = 2.5 MiB, at 0.5 · 20 ms / 5 = 2 ms; the last bucket holds
    // {9, 10}, {18, 20}, {27, 30}: median (18 + 20) / 2 = 19 MiB at 18 ms.
    let opts = ComputeOptions {
        time_buckets: 5,
        ..Default::default()
    };
    let a = analyze_dirs_with(&[d.path().to_path_buf()], &opts);
    let pts = &a.series[0].points;
    assert_eq!(pts.len(), 5, "{pts:?}");
    assert!(
        close(pts[0].t_ms, 2.0) && close(pts[0].heap_rss_bytes.unwrap(), 2.5 * MIB),
        "{pts:?}"
    );
    assert!(
        close(pts[4].t_ms, 18.0) && close(pts[4].heap_rss_bytes.unwrap(), 19.0 * MIB),
        "{pts:?}"
    );
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn csv_and_markdown_carry_the_same_figures() {
    let d = tmp();
    let out = tmp();
    fixture::write(d.path(), &known_results());
    let opts = analysis::Options::new(vec![d.path().display().to_string()], out.path());
    analysis::run(&opts).unwrap();
    // CSV: raw numbers, units in the column names (no quoting needed in these rows).
    let csv = std::fs::read_to_string(out.path().join("tables/throughput.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let fancy = rows
        .iter()
        .find(|r| r[col("allocator")] == "fancy")
        .unwrap();
    assert_eq!(fancy[col("ops_per_sec_median")], "22000000");
    assert_eq!(fancy[col("ratio_to_system")], "2");
    let md = std::fs::read_to_string(out.path().join("tables/throughput.md")).unwrap();
    assert!(
        md.contains("| t | rl_small | 2 | fancy | 3 | 22.0M |"),
        "{md}"
    );
    // The seed tables exist and hold our numbers.
    let seed =
        std::fs::read_to_string(out.path().join("tables/allocatorbench_scaling.md")).unwrap();
    assert!(
        seed.contains("| 2 | 11.0M | 5.00M | **22.0M** | fancy +100.0 % |"),
        "{seed}"
    );
    let fancy_tp = std::fs::read_to_string(out.path().join("tables/fancy_throughput.csv")).unwrap();
    assert!(
        fancy_tp
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("fancy,22000000,2,")
    );
    let failed = std::fs::read_to_string(out.path().join("tables/failed_runs.csv")).unwrap();
    assert!(failed.contains("t/fancy/t2/r3"));
    assert!(failed.contains("killed by signal 11"));
}

/// A run whose replay reached more live bytes than the trace had is listed (with its order
/// and the ratio); runs that stayed at the trace's peak are not.
#[test]
fn runs_beyond_the_trace_peak_are_flagged() {
    let d = tmp();
    let out = tmp();
    let mut r = known_results();
    // system's repetition 1 ran ahead: 1.5× the trace's peak live bytes.
    let i = r
        .runs
        .iter()
        .position(|x| x.allocator == "system" && x.repetition == 1)
        .unwrap();
    let peak = r.runs[i].peak_live_bytes;
    r.runs[i].measured_peak_live_bytes = Some(peak + peak / 2);
    r.runs[i].order = "deps".into();
    fixture::write(d.path(), &r);
    let opts = analysis::Options::new(vec![d.path().display().to_string()], out.path());
    analysis::run(&opts).unwrap();
    let csv =
        std::fs::read_to_string(out.path().join("tables/runs_beyond_trace_peak.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(",system,") && lines[1].contains(",deps,"),
        "{csv}"
    );
    assert!(lines[1].ends_with(",1.5"), "{csv}");
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(
        html.contains("id=\"runs_beyond_trace_peak\""),
        "no table in the report"
    );
}

/// A sweep of two directories: several traces and thread counts (for every kind of plot).
#[test]
fn the_overhead_table_puts_usable_over_requested_beside_heap_rss_over_live() {
    let d = tmp();
    let out = tmp();
    let mut r = Results {
        sweep: "ovh".into(),
        ..Default::default()
    };
    // One thread, three repetitions: usable ÷ requested system 1.0625 each, fancy 1.3, 1.1,
    // 1.2 (median 1.2), bump unmeasured; heap RSS ÷ live 1.1, 1.3, 1.2 (median 1.2) for all.
    // Each allocator also on a two-thread trace, whose 0.3 the table must leave out.
    let ovh = [
        ("system", [Some(1.0625); 3]),
        ("fancy", [Some(1.3), Some(1.1), Some(1.2)]),
        ("bump", [None; 3]),
    ];
    for (alloc, o) in ovh {
        for rep in 0..3 {
            let mut run = RunRow::ok("one", alloc, 1, rep as u32, 1e6);
            run.workload = "rl_small".into();
            run.frag_ratio_at_peak = Some([1.1, 1.3, 1.2][rep]);
            run.overhead_ratio = o[rep];
            r.runs.push(run);
        }
        let mut run = RunRow::ok("two", alloc, 2, 0, 1e6);
        run.workload = "rl_small".into();
        run.overhead_ratio = Some(0.3);
        r.runs.push(run);
    }
    fixture::write(d.path(), &r);
    let opts = analysis::Options::new(vec![d.path().display().to_string()], out.path());
    analysis::run(&opts).unwrap();
    let csv =
        std::fs::read_to_string(out.path().join("tables/allocatorbench_overhead.csv")).unwrap();
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        [
            "workload,trace_name,replay_threads,allocator,overhead_ratio,frag_ratio_at_peak",
            "rl_small,one,1,system,1.0625,1.2",
            "rl_small,one,1,bump,,1.2",
            "rl_small,one,1,fancy,1.2,1.2",
        ],
        "{csv}"
    );
    let md = std::fs::read_to_string(out.path().join("tables/allocatorbench_overhead.md")).unwrap();
    assert!(
        md.contains("| rl_small | one | 1 | fancy | 1.200× | 1.20× |"),
        "{md}"
    );
}

fn sweep(root: &Path) -> Vec<PathBuf> {
    let spec = fixture::SynthSpec {
        traces: vec![
            ("rl_small".into(), "rl_small".into()),
            ("ring-buffer".into(), "ring-buffer".into()),
        ],
        allocators: vec!["system".into(), "fancy".into(), "bump".into()],
        threads: vec![1, 2, 4],
        repetitions: 4,
        samples_per_run: 60,
        dirs: 2,
        crash_every: 17,
    };
    fixture::write_synthetic(root, &spec);
    vec![root.join("d000"), root.join("d001")]
}

/// The streaming engine (the default) and the in-memory one give the same latency rows and the
/// same over-time points on a sweep of two directories with crashed runs.
#[test]
fn both_engines_aggregate_the_same() {
    let d = tmp();
    let dirs = sweep(d.path());
    // Batches of a few configurations' samples (60 a run) for the streaming engine's medians,
    // and one file at a time.
    let with = |engine| {
        let opts = ComputeOptions {
            engine,
            time_buckets: 7,
            median_batch_rows: 500,
            files_at_once: 1,
            ..Default::default()
        };
        analyze_dirs_with(&dirs, &opts)
    };
    let (s, m) = (
        with(compute::Engine::Streaming),
        with(compute::Engine::InMemory),
    );
    assert_eq!(s.configs, m.configs);
    assert!(!s.latency.is_empty());
    assert_eq!(s.latency, m.latency);
    assert!(
        s.series.iter().any(|x| x.points.len() == 7),
        "{:?}",
        s.series
    );
    assert_eq!(s.series, m.series);
}

fn palette() -> Vec<[u8; 3]> {
    (0..10)
        .map(|i| {
            let c = analysis::plots::color(i);
            [c.0, c.1, c.2]
        })
        .collect()
}

/// Pixels of the PNG that are (nearly) one of the palette colours; the PNG is as large as
/// `render` said (1000×620, or 1000 wide and taller for a horizontal bar chart).
fn data_pixels(r: &analysis::plots::Rendered) -> usize {
    let png = &r.png;
    let img = image::open(png)
        .unwrap_or_else(|e| panic!("{}: not a valid PNG: {e}", png.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), r.size, "{}", png.display());
    let (w, h) = analysis::plots::SIZE;
    assert!(
        r.size.0 == w && r.size.1 >= h,
        "{}: {:?}",
        png.display(),
        r.size
    );
    let pal = palette();
    img.pixels()
        .filter(|p| {
            pal.iter()
                .any(|c| (0..3).all(|k| (p.0[k] as i32 - c[k] as i32).abs() <= 6))
        })
        .count()
}

#[test]
fn plots_exist_as_valid_images_with_data_in_them() {
    let d = tmp();
    let out = tmp();
    sweep(d.path());
    let opts = analysis::Options::new(vec![d.path().display().to_string()], out.path());
    let report = analysis::run(&opts).unwrap();
    let stems: BTreeSet<String> = report
        .written
        .plots
        .iter()
        .map(|r| r.png.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "throughput_by_workload_t1",
        "throughput_by_workload_t4",
        "throughput_vs_threads_rl_small",
        "throughput_vs_threads_ring-buffer",
        "latency_rl_small_t4_malloc",
        "latency_ring-buffer_t1_free",
        "memory_rl_small_t2",
        "frag_ring-buffer_t4",
        "overhead_ratio_t2",
        "throughput_vs_system_t4",
        "latency_p99_t2_malloc",
    ] {
        assert!(stems.contains(want), "no plot {want}: {stems:?}");
    }
    for r in &report.written.plots {
        // PNG: decodes, right size, and a good number of pixels in the data colours (lines,
        // bars), not just axes and text.
        let n = data_pixels(r);
        assert!(n > 500, "{}: only {n} data pixels", r.png.display());
        // SVG: well-formed XML with drawn shapes in the data colours and text.
        let text = std::fs::read_to_string(&r.svg).unwrap();
        let doc = roxmltree::Document::parse(&text)
            .unwrap_or_else(|e| panic!("{}: not XML: {e}", r.svg.display()));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let pal: Vec<String> = palette()
            .iter()
            .map(|c| format!("#{:02X}{:02X}{:02X}", c[0], c[1], c[2]))
            .collect();
        let shapes = doc
            .descendants()
            .filter(|n| {
                matches!(
                    n.tag_name().name(),
                    "polyline" | "rect" | "circle" | "path" | "line"
                )
            })
            .filter(|n| {
                ["stroke", "fill"].iter().any(|a| {
                    n.attribute(*a)
                        .is_some_and(|v| pal.iter().any(|p| p.eq_ignore_ascii_case(v)))
                })
            })
            .count();
        assert!(shapes > 0, "{}: no shapes in data colours", r.svg.display());
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "text")
            .filter_map(|n| n.text())
            .collect();
        assert!(texts.len() > 5, "{}: too little text", r.svg.display());
    }
    // Titles and axis descriptions with units are in the SVGs.
    let tv = std::fs::read_to_string(out.path().join("plots/throughput_vs_threads_rl_small.svg"))
        .unwrap();
    assert!(tv.contains("Throughput vs replay threads, rl_small"));
    assert!(tv.contains("ops/s"));
    assert!(
        svg_text_boxes(&tv).iter().any(|(_, t)| t.ends_with(" M")),
        "throughput ticks in M (ops/s)"
    );
    assert!(tv.contains("replay threads"));
    let mem = std::fs::read_to_string(out.path().join("plots/memory_rl_small_t4.svg")).unwrap();
    assert!(mem.contains("time since first op (ms)") && mem.contains("MiB"));
    let mem_texts: Vec<String> = svg_text_boxes(&mem).into_iter().map(|b| b.1).collect();
    for t in ["fancy", "heap RSS (solid)", "live bytes (dashed)"] {
        assert!(
            mem_texts.iter().any(|m| m == t),
            "memory legend lacks {t}: {mem_texts:?}"
        );
    }
}

/// The trace names of the lab's quick sweep (24 synthetic workloads and a recorded trace).
const LAB_TRACES: [&str; 25] = [
    "alignment64",
    "churn",
    "ephemeral-ttl",
    "fragmentation-holes",
    "fragmentation_mix",
    "json-tree",
    "kv-store",
    "large",
    "larson",
    "malloc-large",
    "medium",
    "mixed",
    "mleak",
    "mstress",
    "producer-consumer",
    "python3-json",
    "ring-buffer",
    "rl_medium",
    "rl_small",
    "sh6bench",
    "shared-pool",
    "small",
    "thread-local",
    "web-server",
    "xmalloc",
];

/// A text box of an SVG, estimated: (x0, y0, x1, y1).
type TextBox = (f64, f64, f64, f64);

/// The texts of an SVG with their estimated boxes.
fn svg_text_boxes(svg: &str) -> Vec<(TextBox, String)> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants()
        .filter(|n| n.tag_name().name() == "text" && n.attribute("transform").is_none())
        .filter_map(|n| {
            let text = n.text()?.trim().to_owned();
            let x: f64 = n.attribute("x")?.parse().ok()?;
            let y: f64 = n.attribute("y")?.parse().ok()?;
            let size: f64 = n.attribute("font-size")?.parse().ok()?;
            // DejaVu Sans averages well under 0.6 em a character: a generous width.
            let w = text.chars().count() as f64 * 0.6 * size;
            let x0 = match n.attribute("text-anchor") {
                Some("middle") => x - w / 2.0,
                Some("end") => x - w,
                _ => x,
            };
            // The baseline is near y whatever the dy: a box of one em around it.
            Some(((x0, y - size * 0.5, x0 + w, y + size * 0.5), text))
        })
        .collect()
}

fn overlap(a: TextBox, b: TextBox) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

#[test]
fn many_traces_get_horizontal_bars_whose_names_do_not_overlap() {
    let d = tmp();
    let out = tmp();
    let spec = fixture::SynthSpec {
        traces: LAB_TRACES
            .iter()
            .map(|t| (t.to_string(), t.to_string()))
            .collect(),
        allocators: [
            "system",
            "jemalloc",
            "mimalloc",
            "tcmalloc",
            "fancy",
            "fancy-reclaim",
        ]
        .map(String::from)
        .to_vec(),
        threads: vec![1, 2],
        repetitions: 1,
        // One sample per replay, as in a quick sweep of short replays: no curves over time.
        samples_per_run: 1,
        dirs: 1,
        crash_every: 0,
    };
    fixture::write_synthetic(d.path(), &spec);
    let opts = analysis::Options::new(vec![d.path().display().to_string()], out.path());
    let report = analysis::run(&opts).unwrap();
    let by_stem = |stem: &str| {
        report
            .written
            .plots
            .iter()
            .find(|r| r.png.file_stem().unwrap() == stem)
            .unwrap_or_else(|| panic!("no plot {stem}"))
    };
    for stem in [
        "throughput_by_workload_t1",
        "throughput_vs_system_t2",
        "overhead_ratio_t1",
        "latency_p99_t2_malloc",
    ] {
        let r = by_stem(stem);
        // Horizontal: as tall as 25 groups of 6 bars need.
        assert!(
            r.size.1 > 1000,
            "{stem}: {:?} is not the horizontal layout",
            r.size
        );
        assert!(data_pixels(r) > 2000, "{stem}: too few bars drawn");
        let svg = std::fs::read_to_string(&r.svg).unwrap();
        let boxes = svg_text_boxes(&svg);
        // Every trace is named once, down the y axis in name order, and no two texts overlap.
        let mut names: Vec<&(TextBox, String)> = boxes
            .iter()
            .filter(|(_, t)| LAB_TRACES.contains(&t.as_str()))
            .collect();
        names.sort_by(|a, b| a.0.1.total_cmp(&b.0.1));
        let top_down: Vec<&str> = names.iter().map(|n| n.1.as_str()).collect();
        assert_eq!(top_down, LAB_TRACES, "{stem}: trace names top to bottom");
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                assert!(!overlap(a.0, b.0), "{stem}: {:?} overlaps {:?}", a, b);
            }
        }
    }
    // The over-time plots are left out, and the report says which and why.
    assert!(
        !report.written.plots.iter().any(|r| {
            let stem = r.png.file_stem().unwrap().to_string_lossy();
            stem.starts_with("memory_") || stem.starts_with("frag_")
        }),
        "over-time plots of one sample per run"
    );
    let html = std::fs::read_to_string(&report.written.html).unwrap();
    assert!(html.contains("No memory or fragmentation over time for 12 (trace, threads) pair(s)"));
    assert!(html.contains("at most one sample during the replay"));
    // A few short names stay vertical, at the usual size, without overlapping either.
    let small = tmp();
    let out2 = tmp();
    sweep(small.path());
    let opts = analysis::Options::new(vec![small.path().display().to_string()], out2.path());
    let report = analysis::run(&opts).unwrap();
    let r = report
        .written
        .plots
        .iter()
        .find(|r| r.png.file_stem().unwrap() == "throughput_by_workload_t2")
        .unwrap();
    assert_eq!(r.size, analysis::plots::SIZE);
    let boxes = svg_text_boxes(&std::fs::read_to_string(&r.svg).unwrap());
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            assert!(!overlap(a.0, b.0), "{:?} overlaps {:?}", a, b);
        }
    }
}

fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let pat = format!("{attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&pat) {
        let v = &rest[i + pat.len()..];
        let end = v.find('"').unwrap();
        out.push(&v[..end]);
        rest = &v[end..];
    }
    out
}

#[test]
fn html_references_only_files_that_exist() {
    let d = tmp();
    let out = tmp();
    sweep(d.path());
    let opts = analysis::Options::new(vec![format!("{}/d*", d.path().display())], out.path());
    let report = analysis::run(&opts).unwrap();
    let html = std::fs::read_to_string(&report.written.html).unwrap();
    let mut links = attr_values(&html, "href");
    links.extend(attr_values(&html, "src"));
    let mut checked = 0;
    for l in links {
        if l.starts_with('#') || l.starts_with("data:") {
            continue;
        }
        assert!(
            !l.contains("://"),
            "external link {l}: the page must work offline"
        );
        assert!(!l.starts_with('/'), "absolute link {l}");
        assert!(
            out.path().join(l).is_file(),
            "report.html links {l}, which is not there"
        );
        checked += 1;
    }
    assert!(checked >= report.written.plots.len() * 2 + report.written.tables.len() * 2);
    // Every link within the page has its target, and no id is used twice.
    let ids = attr_values(&html, "id");
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an id is used twice");
    for l in attr_values(&html, "href") {
        if let Some(id) = l.strip_prefix('#') {
            assert!(
                unique.contains(id),
                "report.html links #{id}, which it lacks"
            );
        }
    }
    // Each trace has its own section in the per-trace part, listed in its index.
    for t in ["rl_small", "ring-buffer"] {
        assert!(html.contains(&format!("<details class=\"trace\" id=\"trace-{t}\"")));
        assert!(html.contains(&format!("href=\"#trace-{t}\"")));
    }
    // Every plot is inlined as SVG; the facts the runs recorded are on the page.
    assert_eq!(html.matches("<svg").count(), report.written.plots.len());
    for fact in [
        "fixture-host",
        "Fixture CPU @ 3.0GHz",
        "rustc 1.95.0",
        "0000000",
        "fancy-1.0",
        "6.1.0-fixture",
    ] {
        assert!(html.contains(fact), "report.html lacks {fact}");
    }
    // The crashed runs are listed.
    assert!(report.runs_failed > 0);
    assert!(html.contains("killed by signal 11"));
}

fn write_runs_only(dir: &Path, r: &Results, edit: impl FnOnce(DataFrame) -> DataFrame) {
    std::fs::create_dir_all(dir).unwrap();
    let [runs, lat, ts] = fixture::frames(r);
    let mut runs = edit(runs);
    fixture::write_frame(&dir.join("runs.parquet"), &mut runs);
    let _ = (lat, ts);
}

fn problems_text(a: &compute::Analysis) -> String {
    a.problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_empty_directory_is_bad_input_with_a_clear_message() {
    let d = tmp();
    let out = tmp();
    let opts = analysis::Options::new(vec![d.path().display().to_string()], out.path());
    let err = analysis::run(&opts).unwrap_err();
    assert!(err.is_bad_input());
    let msg = err.to_string();
    assert!(msg.contains("no usable runs"), "{msg}");
    assert!(msg.contains("no runs.parquet"), "{msg}");
    // The binary: exit 2, the message on stderr.
    let o = Command::new(env!("CARGO_BIN_EXE_analyze"))
        .arg(d.path())
        .arg("-o")
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("no runs.parquet"), "{stderr}");
    let o = Command::new(env!("CARGO_BIN_EXE_analyze"))
        .arg(d.path().join("nothing-here-*"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no file or directory matches"));
}

#[test]
fn bad_directories_are_listed_and_the_rest_is_still_reported() {
    let root = tmp();
    let good = root.path().join("good");
    fixture::write(&good, &known_results());
    // An older schema: no schema_version and no fragmentation columns, no latency or
    // time-series file.
    let old = root.path().join("old");
    write_runs_only(&old, &known_results(), |df| {
        df.drop_many([
            "schema_version",
            "frag_ratio_at_peak",
            "heap_rss_at_peak_live_bytes",
        ])
    });
    // A newer one: schema_version 2, an unknown extra column, ops_per_sec written as text.
    let newer = root.path().join("newer");
    write_runs_only(&newer, &known_results(), |df| {
        let n = df.height();
        df.lazy()
            .with_columns([
                lit(2u32).alias("schema_version"),
                lit("x").alias("some_future_column"),
                col("ops_per_sec").cast(DataType::String),
            ])
            .collect()
            .unwrap()
            .head(Some(n))
    });
    // Lacks the identifying column run_id.
    let noid = root.path().join("noid");
    write_runs_only(&noid, &known_results(), |df| df.drop("run_id").unwrap());
    // Not Parquet at all.
    let junk = root.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("runs.parquet"), b"this is not parquet").unwrap();
    // Time series without runs.
    let orphan = root.path().join("orphan");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("timeseries.parquet"), b"").unwrap();

    let a = analyze_dirs(&[root.path().to_path_buf()]);
    let p = problems_text(&a);
    for (what, needle) in [
        (
            "older schema",
            "old/runs.parquet: missing column(s) read as null: schema_version, heap_rss_at_peak_live_bytes, frag_ratio_at_peak",
        ),
        ("no version", "no schema_version"),
        ("newer version", "newer/runs.parquet: schema_version 2"),
        (
            "cast",
            "newer/runs.parquet: column(s) of another type than the schema's, cast",
        ),
        ("no id", "noid/runs.parquet: lacks the column(s) run_id"),
        ("junk", "junk/runs.parquet: cannot be read as Parquet"),
        (
            "orphan",
            "orphan: has latency or time-series files but no runs.parquet",
        ),
        ("no latency", "old: no latency.parquet"),
    ] {
        assert!(
            p.contains(needle),
            "{what}: no problem containing {needle:?} in:\n{p}"
        );
    }
    assert!(
        !p.contains("some_future_column"),
        "unknown columns are ignored silently:\n{p}"
    );
    // good, old and newer are read: 3 × 10 runs; the medians are unchanged (each directory has
    // the same values); the text throughput was cast back to numbers.
    assert_eq!(a.sources.len(), 3);
    assert_eq!(a.runs_total, 30);
    assert_eq!(a.failed.len(), 3);
    let fancy = a.configs.iter().find(|c| c.allocator == "fancy").unwrap();
    assert_eq!(fancy.runs_throughput, 9);
    assert!(close(fancy.ops_per_sec_median.unwrap(), 22e6));
    // The frag median ignores the old directory's nulls.
    assert!(close(fancy.frag_ratio_at_peak.unwrap(), 1.2));
    // Latency only from the good directory (3 runs per configuration).
    assert!(a.latency.iter().all(|l| l.runs == 3));
}

#[test]
fn failed_runs_only_still_give_a_report() {
    let d = tmp();
    let out = tmp();
    let mut r = Results::default();
    r.runs
        .push(RunRow::crashed("t", "system", 1, 0, "timeout after 60 s"));
    r.runs.push(RunRow::crashed(
        "t",
        "fancy",
        1,
        0,
        "killed by signal 6 (SIGABRT)",
    ));
    fixture::write(d.path(), &r);
    let o = Command::new(env!("CARGO_BIN_EXE_analyze"))
        .arg(d.path())
        .arg("-o")
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("2 runs (0 ok, 2 not ok)"), "{stdout}");
    let md = std::fs::read_to_string(out.path().join("tables.md")).unwrap();
    assert!(md.contains("timeout after 60 s") && md.contains("SIGABRT"));
    assert!(out.path().join("report.html").is_file());
}

/// The Python the tests run (the notebook, allocator/bench/lab_targets.py): `ALLOCLAB_PYTHON`,
/// else the lab's venv (scripts/python makes it on first use; scripts/test-all sets the
/// variable), checked to import `modules`, with a message naming what to run when it does not.
fn python(modules: &str) -> String {
    let py = std::env::var("ALLOCLAB_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/python").into());
    let check = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .output();
    match check {
        Ok(o) if o.status.success() => py,
        Ok(o) => panic!(
            "{py} lacks the Python packages the tests need ({}): run scripts/install-deps \
             (it fills the venv of scripts/python with analysis/requirements.txt)",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "cannot run {py} ({e}): run scripts/install-deps (Debian's python3 and python3-venv)"
        ),
    }
}

/// Executes the notebook headless against `results`; returns what it printed (the text of its
/// stream outputs) and the number of images it drew.
fn run_notebook(results: &Path) -> (String, usize) {
    let nb = Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/explore.ipynb");
    let script = r#"
import sys, pathlib, nbformat, nbclient
path, = sys.argv[1:]
nb = nbformat.read(path, as_version=4)
client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
    resources={"metadata": {"path": str(pathlib.Path(path).parent)}})
client.execute()
images = 0
for cell in nb.cells:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            print("ERROR", out.get("ename"), out.get("evalue")); sys.exit(1)
        if out.get("output_type") == "stream":
            sys.stdout.write(out.get("text", ""))
        if "image/png" in out.get("data", {}):
            images += 1
print("IMAGES", images)
"#;
    let o = Command::new(python("polars, nbclient, nbformat, ipykernel, matplotlib"))
        .args(["-c", script])
        .arg(&nb)
        .env("ALLOCLAB_RESULTS", results)
        .env("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "notebook failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let images = stdout
        .lines()
        .find_map(|l| l.strip_prefix("IMAGES "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no image count in the notebook's output:\n{stdout}"));
    (stdout, images)
}

/// How to remake the real replay fixture.
const REGENERATE: &str = "regenerate it from the repository root with the release binaries \
(CARGO_TARGET_DIR=$HOME/.cache/alloclab/target cargo build --release -p traces -p replayer; \
the committed one was made with the test-profile binaries in target/debug, as its \
build_profile column says):\n  \
$HOME/.cache/alloclab/target/release/synth rl_small --threads 2 --ops 2000000 --seed 7 -o /tmp/rl_small.trace.zst\n  \
$HOME/.cache/alloclab/target/release/replay -a system,jemalloc,mimalloc,fancy,bump -r 2 --sample-ms 2 \
--retained-wait 0.1 --sweep replay-small -o analysis/tests/data/replay-small /tmp/rl_small.trace.zst";

/// The committed small real replay: `tests/data/replay-small`, written by the replayer itself
/// (5 allocators × 2 repetitions of a 2M-op rl_small trace on 2 threads). Required.
fn real_replay_fixture() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay-small");
    // introspection.parquet came after this fixture (a directory without it reads cleanly;
    // tests/introspection.rs reads one).
    for kind in FileKind::ALL
        .into_iter()
        .filter(|k| *k != FileKind::Introspection)
    {
        let f = p.join(kind.file_name());
        assert!(
            f.is_file(),
            "{} is missing: the analysis tests read a small real replay there; {REGENERATE}",
            f.display()
        );
    }
    p
}

fn read_parquet(path: &Path) -> DataFrame {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(f)
        .finish()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn col_f64(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::Float64))
        .unwrap_or_else(|e| panic!("column {name}: {e}"));
    c.f64().unwrap().iter().collect()
}

fn col_str(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    let c = df
        .column(name)
        .and_then(|c| c.cast(&DataType::String))
        .unwrap_or_else(|e| panic!("column {name}: {e}"));
    c.str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

/// The median, by hand.
fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn schema_of(df: &DataFrame) -> Vec<(String, DataType)> {
    df.schema()
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect()
}

#[test]
fn the_replayers_files_have_the_columns_and_types_analyze_reads() {
    let p = real_replay_fixture();
    let fixture_frames = fixture::frames(&known_results());
    for (kind, synthetic) in FileKind::ALL.into_iter().zip(fixture_frames) {
        let path = p.join(kind.file_name());
        let real = read_parquet(&path);
        assert!(real.height() > 0, "{}: no rows", path.display());
        let schema = real.schema();
        for c in analysis::schema::columns(kind) {
            let want = analysis::schema::dtype(c.ty);
            match schema.get(c.name) {
                None => panic!(
                    "{}: the replayer wrote no column {} (analyze reads it as {want})",
                    path.display(),
                    c.name
                ),
                Some(have) => assert_eq!(
                    *have,
                    want,
                    "{}: column {} is {have} in the replayer's file, analyze reads {want}",
                    path.display(),
                    c.name
                ),
            }
        }
        // The synthetic results of the other tests and the benchmark have exactly the
        // replayer's columns, in its order, with its types.
        assert_eq!(
            schema_of(&synthetic),
            schema_of(&real),
            "the test fixtures write {} differently from the replayer",
            kind.file_name()
        );
    }
    // And analyze reads the replayer's files without a single complaint.
    let a = analyze_dirs(&[p]);
    assert!(
        a.problems.is_empty(),
        "problems reading the real replay: {}",
        problems_text(&a)
    );
}

#[test]
fn report_on_the_real_replay_equals_hand_computed_figures() {
    let p = real_replay_fixture();
    let runs = read_parquet(&p.join("runs.parquet"));
    let (trace, threads, alloc, status) = (
        col_str(&runs, "trace_name"),
        col_f64(&runs, "replay_threads"),
        col_str(&runs, "allocator"),
        col_str(&runs, "status"),
    );
    let run_id = col_str(&runs, "run_id");
    let tp = col_f64(&runs, "ops_per_sec");
    let peak_heap = col_f64(&runs, "peak_heap_rss_bytes");
    let frag = col_f64(&runs, "frag_ratio_at_peak");
    let retained = col_f64(&runs, "retained_heap_rss_bytes");
    let retained_100ms = col_f64(&runs, "retained_heap_rss_100ms_bytes");
    let minor = col_f64(&runs, "minor_faults");
    // The ok runs of each configuration, by hand.
    type Key = (String, u32, String);
    let mut by: std::collections::BTreeMap<Key, Vec<usize>> = Default::default();
    let mut ok_runs = BTreeSet::new();
    for i in 0..runs.height() {
        if status[i].as_deref() == Some("ok") {
            let k = (
                trace[i].clone().unwrap(),
                threads[i].unwrap() as u32,
                alloc[i].clone().unwrap(),
            );
            by.entry(k).or_default().push(i);
            ok_runs.insert(run_id[i].clone().unwrap());
        }
    }
    assert!(
        by.len() >= 2,
        "the real replay has fewer than 2 configurations: {by:?}"
    );
    let med =
        |col: &[Option<f64>], idx: &[usize]| median(idx.iter().map(|&i| col[i].unwrap()).collect());
    let tp_median: std::collections::BTreeMap<&Key, f64> =
        by.iter().map(|(k, idx)| (k, med(&tp, idx))).collect();

    let a = analyze_dirs(std::slice::from_ref(&p));
    assert_eq!(a.runs_total, runs.height());
    assert_eq!(a.runs_ok, ok_runs.len());
    assert_eq!(a.configs.len(), by.len());
    for (k, idx) in &by {
        let c = a
            .configs
            .iter()
            .find(|c| (&c.trace_label, c.replay_threads, &c.allocator) == (&k.0, k.1, &k.2))
            .unwrap_or_else(|| panic!("no configuration {k:?}"));
        let v: Vec<f64> = idx.iter().map(|&i| tp[i].unwrap()).collect();
        let m = tp_median[k];
        assert_eq!(c.runs_throughput as usize, v.len());
        assert!(close(c.ops_per_sec_median.unwrap(), m), "{k:?}: {c:?}");
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(close(c.ops_per_sec_min.unwrap(), min) && close(c.ops_per_sec_max.unwrap(), max));
        if v.len() >= 2 {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
            assert!(
                close(c.ops_per_sec_cv.unwrap(), var.sqrt() / mean),
                "{k:?}: {c:?}"
            );
        }
        let system = tp_median.get(&(k.0.clone(), k.1, "system".to_owned()));
        if let Some(s) = system {
            assert!(close(c.ratio_to_system.unwrap(), m / s), "{k:?}: {c:?}");
        }
        let best = tp_median
            .iter()
            .filter(|(o, _)| (&o.0, o.1) == (&k.0, k.1))
            .map(|(_, v)| *v)
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(close(c.ratio_to_best.unwrap(), m / best), "{k:?}: {c:?}");
        assert!(close(c.peak_heap_rss_bytes.unwrap(), med(&peak_heap, idx)));
        assert!(close(c.frag_ratio_at_peak.unwrap(), med(&frag, idx)));
        assert!(close(
            c.retained_heap_rss_bytes.unwrap(),
            med(&retained, idx)
        ));
        assert!(close(
            c.retained_heap_rss_100ms_bytes.unwrap(),
            med(&retained_100ms, idx)
        ));
        assert!(close(c.minor_faults.unwrap(), med(&minor, idx)));
    }
    assert!(
        a.configs
            .iter()
            .any(|c| c.allocator == "system" && close(c.ratio_to_system.unwrap(), 1.0))
    );

    // Latency: each op kind's p99 is the median over the ok runs of their p99.
    let lat = read_parquet(&p.join("latency.parquet"));
    let (lrun, lop, lq, lns) = (
        col_str(&lat, "run_id"),
        col_str(&lat, "op"),
        col_f64(&lat, "quantile"),
        col_f64(&lat, "latency_ns"),
    );
    let mut p99: std::collections::BTreeMap<(String, String), Vec<f64>> = Default::default();
    let lalloc = col_str(&lat, "allocator");
    for i in 0..lat.height() {
        if ok_runs.contains(lrun[i].as_ref().unwrap()) && (lq[i].unwrap() - 0.99).abs() < 1e-9 {
            p99.entry((lalloc[i].clone().unwrap(), lop[i].clone().unwrap()))
                .or_default()
                .push(lns[i].unwrap());
        }
    }
    assert!(!p99.is_empty(), "no p99 rows in the real latency.parquet");
    for ((al, op), v) in p99 {
        let l = a
            .latency
            .iter()
            .find(|l| l.key.allocator == al && l.op == op)
            .unwrap_or_else(|| panic!("no latency row for {al} {op}"));
        assert_eq!(l.runs as usize, v.len());
        assert!(close(l.quantiles[&99_000], median(v)), "{al} {op}: {l:?}");
    }

    // The whole report: the CSV carries the same medians, every plot is an image with data,
    // every link of the page is a file, and the machine and build facts are on the page.
    let out = tmp();
    let opts = analysis::Options::new(vec![p.display().to_string()], out.path());
    let report = analysis::run(&opts).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let csv = std::fs::read_to_string(out.path().join("tables/throughput.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let mut csv_rows = 0;
    for l in lines {
        let r: Vec<&str> = l.split(',').collect();
        let k = (
            r[at("trace_name")].to_owned(),
            r[at("replay_threads")].parse::<u32>().unwrap(),
            r[at("allocator")].to_owned(),
        );
        let v: f64 = r[at("ops_per_sec_median")].parse().unwrap();
        assert!(close(v, tp_median[&k]), "{l}");
        csv_rows += 1;
    }
    assert_eq!(csv_rows, by.len());
    let pairs: BTreeSet<(String, u32)> = by.keys().map(|k| (k.0.clone(), k.1)).collect();
    let ops: BTreeSet<String> = lop.iter().flatten().cloned().collect();
    let stems: BTreeSet<String> = report
        .written
        .plots
        .iter()
        .map(|r| r.png.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for (t, n) in &pairs {
        let mut want = vec![
            format!("throughput_by_workload_t{n}"),
            format!("overhead_ratio_t{n}"),
            format!("memory_{t}_t{n}"),
        ];
        want.extend(ops.iter().map(|op| format!("latency_{t}_t{n}_{op}")));
        for w in want {
            assert!(
                stems.contains(&w),
                "no plot {w} from the real replay: {stems:?}"
            );
        }
    }
    for r in &report.written.plots {
        let n = data_pixels(r);
        assert!(n > 200, "{}: only {n} data pixels", r.png.display());
        roxmltree::Document::parse(&std::fs::read_to_string(&r.svg).unwrap())
            .unwrap_or_else(|e| panic!("{}: not XML: {e}", r.svg.display()));
    }
    let html = std::fs::read_to_string(&report.written.html).unwrap();
    let mut links = attr_values(&html, "href");
    links.extend(attr_values(&html, "src"));
    for l in links
        .into_iter()
        .filter(|l| !l.starts_with('#') && !l.starts_with("data:"))
    {
        assert!(
            out.path().join(l).is_file(),
            "report.html links {l}, which is not there"
        );
    }
    for fact in [
        "host",
        "kernel",
        "cpu_model",
        "rustc_version",
        "build_profile",
        "alloclab_commit",
        "allocator_version",
    ] {
        for v in col_str(&runs, fact)
            .into_iter()
            .flatten()
            .collect::<BTreeSet<_>>()
        {
            assert!(
                html.contains(&analysis::report::esc(&v)),
                "report.html lacks the {fact} the runs recorded: {v}"
            );
        }
    }
}

#[test]
fn notebook_runs_clean_on_the_real_replay() {
    let p = real_replay_fixture();
    let (out, images) = run_notebook(&p);
    assert_eq!(images, 1, "the notebook drew no plot:\n{out}");
    let a = analyze_dirs(&[p]);
    let want = format!("{} ok runs, {} not ok", a.runs_ok, a.failed.len());
    assert!(
        out.contains(&want),
        "the notebook did not print {want:?}:\n{out}"
    );
}

#[test]
fn notebook_runs_clean_on_a_sweep_with_failed_runs() {
    let d = tmp();
    sweep(d.path());
    let (out, images) = run_notebook(d.path());
    assert_eq!(images, 1, "the notebook drew no plot:\n{out}");
    assert!(out.contains("from 2 result directories"), "{out}");
    let a = analyze_dirs(&[d.path().to_path_buf()]);
    assert!(!a.failed.is_empty());
    let want = format!("{} ok runs, {} not ok", a.runs_ok, a.failed.len());
    assert!(
        out.contains(&want),
        "the notebook did not print {want:?}:\n{out}"
    );
}

// ---- one aggregation rule, one trace identity --------------------------------------------------

/// Whether two rows of a summary are equal: every cell, floats within 1e-9 relative.
fn same_cells<R: results_schema::Row + std::fmt::Debug>(got: &R, want: &R) {
    use results_schema::Cell;
    for ((c, g), w) in R::COLUMNS.iter().zip(got.cells()).zip(want.cells()) {
        let ok = match (&g, &w) {
            (Cell::F64(a), Cell::F64(b)) => close(*a, *b),
            _ => g == w,
        };
        assert!(ok, "{}: {g:?} ≠ {w:?}\n{got:?}\n{want:?}", c.name);
    }
}

/// `analyze`'s Polars aggregation against the plain-Rust rule of `results_schema::summary` (the
/// replay's terminal table uses it) on the same rows, and summary.parquet against both.
fn polars_equals_the_rule(dirs: &[PathBuf], results: &[Results]) {
    let mut runs = Vec::new();
    let mut latency = Vec::new();
    // Run ids are unique only within a directory: the rule joins on them, so make them unique.
    for (k, r) in results.iter().enumerate() {
        let (mut a, mut b, _) = r.rows();
        a.iter_mut()
            .for_each(|x| x.run_id = format!("{k}:{}", x.run_id));
        b.iter_mut()
            .for_each(|x| x.run_id = format!("{k}:{}", x.run_id));
        runs.extend(a);
        latency.extend(b);
    }
    let a = analyze_dirs(dirs);
    let key = |m: &str, l: &str, t: u32, al: &str| (m.to_owned(), l.to_owned(), t, al.to_owned());
    let mut want = results_schema::summary::summarize(&runs);
    want.sort_by_key(|r| key(&r.machine, &r.trace_label, r.replay_threads, &r.allocator));
    let got = analysis::summary::summary_rows(&a);
    assert_eq!(got.len(), want.len());
    assert!(!got.is_empty());
    for (g, w) in got.iter().zip(&want) {
        same_cells(g, w);
    }
    let mut want = results_schema::summary::summarize_latency(&runs, &latency);
    let rank = |op: &str| compute::op_rank(op);
    want.sort_by(|a, b| {
        (
            key(&a.machine, &a.trace_label, a.replay_threads, &a.allocator),
            rank(&a.op),
            a.quantile.to_bits(),
        )
            .cmp(&(
                key(&b.machine, &b.trace_label, b.replay_threads, &b.allocator),
                rank(&b.op),
                b.quantile.to_bits(),
            ))
    });
    let got = analysis::summary::latency_rows(&a);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        same_cells(g, w);
    }
}

#[test]
fn the_polars_aggregation_equals_the_summary_rule() {
    let d = tmp();
    fixture::write(d.path(), &known_results());
    polars_equals_the_rule(&[d.path().to_path_buf()], &[known_results()]);
}

/// Two traces of one name replayed with the same thread count: the lab's `t1/larson.trace.zst`
/// and `t2/larson.trace.zst` (larson makes 4 threads whatever `--threads` is). Each is its own
/// configuration, labelled by the parameter that differs, in every table and in summary.parquet.
fn larson_variants(root: &Path) -> (Vec<PathBuf>, Vec<Results>) {
    let mut dirs = Vec::new();
    let mut all = Vec::new();
    for (n, tps) in [(1u32, [10e6, 12e6, 11e6]), (2, [30e6, 34e6, 32e6])] {
        let mut r = Results::default();
        for (rep, tp) in tps.into_iter().enumerate() {
            for (alloc, speed) in [("system", 1.0), ("fancy", 2.0)] {
                let mut run = RunRow::ok("larson", alloc, 4, rep as u32, tp * speed);
                run.trace_hash = format!("{:016x}", 0xa000 + n);
                run.trace_params = format!("workload=larson seed=1 threads={n} ops=1000");
                run.workload = "larson".into();
                let i = r.runs.len();
                r.runs.push(run);
                r.add_latency(i, "malloc", 1000, |q| {
                    (100.0 * q * n as f64) as u64 + rep as u64
                });
            }
        }
        let dir = root.join(format!("larson-t{n}"));
        fixture::write(&dir, &r);
        dirs.push(dir);
        all.push(r);
    }
    (dirs, all)
}

#[test]
fn traces_of_one_name_with_different_hashes_are_never_pooled() {
    let d = tmp();
    let (dirs, results) = larson_variants(d.path());
    let a = analyze_dirs(&[d.path().to_path_buf()]);
    let labels: Vec<(&str, &str, f64)> = a
        .configs
        .iter()
        .map(|c| {
            (
                c.trace_label.as_str(),
                c.allocator.as_str(),
                c.ops_per_sec_median.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        [
            ("larson (threads=1)", "fancy", 22e6),
            ("larson (threads=1)", "system", 11e6),
            ("larson (threads=2)", "fancy", 64e6),
            ("larson (threads=2)", "system", 32e6),
        ]
    );
    for c in &a.configs {
        assert_eq!(c.runs_ok, 3, "{c:?}");
        assert!(close(
            c.ratio_to_system.unwrap(),
            if c.allocator == "fancy" { 2.0 } else { 1.0 }
        ));
    }
    // Latency: each trace's own runs (p99 of threads=2 is twice that of threads=1).
    let p99 = |label: &str| {
        a.latency
            .iter()
            .find(|l| l.key.trace == label && l.key.allocator == "system")
            .unwrap()
            .quantiles[&99_000]
    };
    assert!(close(p99("larson (threads=1)"), 100.0));
    assert!(close(p99("larson (threads=2)"), 199.0));
    polars_equals_the_rule(&dirs, &results);

    // The tables show both, and summary.parquet holds them with their hashes and labels.
    let out = tmp();
    let opts = analysis::Options::new(vec![d.path().display().to_string()], out.path());
    let report = analysis::run(&opts).unwrap();
    let md = std::fs::read_to_string(out.path().join("tables/throughput.md")).unwrap();
    assert!(
        md.contains("| larson (threads=1) | larson | 4 | fancy | 3 | 22.0M |"),
        "{md}"
    );
    assert!(
        md.contains("| larson (threads=2) | larson | 4 | fancy | 3 | 64.0M |"),
        "{md}"
    );
    assert_eq!(report.written.summary.len(), 2);
    let s = read_parquet(&out.path().join("summary.parquet"));
    assert_eq!(s.height(), 4);
    assert_eq!(
        col_str(&s, "trace_hash"),
        [0xa001, 0xa001, 0xa002, 0xa002].map(|h| Some(format!("{h:016x}")))
    );
    assert_eq!(
        col_f64(&s, "ops_per_sec_median"),
        [22e6, 11e6, 64e6, 32e6].map(Some)
    );
    let names: Vec<(String, DataType)> = schema_of(&s);
    let want: Vec<(String, DataType)> = results_schema::summary::SummaryRow::COLUMNS
        .iter()
        .map(|c| (c.name.to_owned(), analysis::schema::dtype(c.ty)))
        .collect();
    assert_eq!(names, want);
    let l = read_parquet(&out.path().join("summary_latency.parquet"));
    assert_eq!(
        l.height(),
        4 * 17,
        "2 traces × 2 allocators × the quantile grid"
    );
}

// ---- allocator/bench/lab_targets.py ---------------------------------------------------------------

/// One trace, four allocators, three ok repetitions each. `system`'s peak heap RSS is 0 bytes
/// (jemalloc's 10 MiB, mimalloc's 8 MiB, fancy's 2 MiB); fancy has a fourth repetition that
/// `failed` after its timed pass, with a malloc P99 of 1 ms.
fn peers_and_a_failed_run() -> Results {
    let mut r = Results::default();
    for (alloc, heap_mib, p99) in [
        ("system", 0u64, [100u64, 100, 100]),
        ("jemalloc", 10, [90, 90, 90]),
        ("mimalloc", 8, [100, 100, 100]),
        ("fancy", 2, [100, 110, 120]),
    ] {
        for rep in 0..3u32 {
            let mut run = RunRow::ok("ring-buffer", alloc, 1, rep, 1e6 * (rep + 1) as f64);
            run.peak_heap_rss_bytes = Some(heap_mib << 20);
            let i = r.runs.len();
            r.runs.push(run);
            let p = p99[rep as usize];
            r.add_latency(i, "malloc", 1000, |q| if q >= 0.99 { p } else { 10 });
            r.add_latency(i, "free", 1000, |_| 10);
        }
    }
    let mut failed = RunRow::ok("ring-buffer", "fancy", 1, 3, 1e6);
    failed.status = results_schema::Status::Failed;
    failed.error = Some("replay: replayed ops per kind differ from the plan's".into());
    let i = r.runs.len();
    r.runs.push(failed);
    r.add_latency(
        i,
        "malloc",
        1000,
        |q| if q >= 0.99 { 1_000_000 } else { 10 },
    );
    r.add_latency(i, "free", 1000, |_| 10);
    r
}

#[test]
fn lab_targets_counts_a_peer_at_zero_bytes_and_only_ok_runs_latency() {
    let d = tmp();
    let out = tmp();
    fixture::write(d.path(), &peers_and_a_failed_run());
    let opts = analysis::Options::new(vec![d.path().display().to_string()], out.path());
    analysis::run(&opts).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../allocator/bench/lab_targets.py");
    let o = Command::new(python("polars"))
        .arg(&script)
        .arg(out.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // glibc's 0 bytes is the lowest peer: fancy's 2 MiB is not within 1.15× of it (it was,
    // against mimalloc's 8 MiB, when a peer at 0 was dropped).
    assert!(
        text.contains("0 of 1 trace × threads within 1.15×"),
        "{text}"
    );
    assert!(
        text.contains("| ring-buffer | 1 | 2.00 | 0.00 | ∞ |"),
        "{text}"
    );
    // fancy's malloc P99 is the median of its ok runs (100, 110, 120 ns), not 115 with the
    // failed run's 1 ms.
    assert!(
        text.contains("| ring-buffer | 1 | 100 | 90 | 100 | 110 | 1.10× |"),
        "{text}"
    );
    // Throughput: medians over the ok runs (1, 2, 3 M ops/s: 2 M), fancy's failed run left out.
    assert!(
        text.contains("| ring-buffer | 1 | 2 | 2 | 2 | 2 | 1.00× | 1.00× |"),
        "{text}"
    );
    // A target is judged at full precision, printed with the digits that show it.
    assert!(
        text.contains("**fancy / mimalloc = 1.00× (target ≥ 1: met)**"),
        "{text}"
    );
}

/// analysis/README.md's two column tables of the section "summary.parquet", against the row
/// structs: every column, type and nullability, in order.
#[test]
fn readme_documents_the_summary_columns() {
    use results_schema::summary::{SummaryLatencyRow, SummaryRow};
    let md =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = md
        .find("\n## summary.parquet")
        .expect("no summary.parquet section");
    let section = &md[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    // Tables are runs of lines starting with "| "; header and rule lines are skipped.
    let mut tables: Vec<Vec<(String, String, bool)>> = Vec::new();
    let mut in_table = false;
    for line in section.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table {
            tables.push(Vec::new());
            in_table = true;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells[1] == "column" || cells[1].starts_with("---") {
            continue;
        }
        let mut ty = cells[2].split(',').map(str::trim);
        let t = ty.next().unwrap().to_owned();
        let nullable = ty.any(|x| x == "nullable");
        for c in cells[1].split(',') {
            tables
                .last_mut()
                .unwrap()
                .push((c.trim().to_owned(), t.clone(), nullable));
        }
    }
    let cols = |c: &[results_schema::Col]| -> Vec<(String, String, bool)> {
        c.iter()
            .map(|c| (c.name.to_owned(), c.ty.schema_name().to_owned(), c.nullable))
            .collect()
    };
    assert_eq!(tables.len(), 2, "{section}");
    assert_eq!(tables[0], cols(SummaryRow::COLUMNS));
    assert_eq!(tables[1], cols(SummaryLatencyRow::COLUMNS));
}

/// Trace `t` on a second machine type (`Other CPU`, host node2), where glibc is the fastest:
/// system 30, 32, 31 M ops/s; fancy 20, 24, 22; bump 5, 5, 8.
fn other_machine() -> Results {
    let mut r = Results {
        sweep: "other".into(),
        machine: fixture::Machine {
            cpu_model: "Other CPU".into(),
            host: "node2".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    for (alloc, v) in [
        ("system", [30e6, 32e6, 31e6]),
        ("fancy", [20e6, 24e6, 22e6]),
        ("bump", [5e6, 5e6, 8e6]),
    ] {
        for (rep, tp) in v.into_iter().enumerate() {
            let mut run = RunRow::ok("t", alloc, 2, rep as u32, tp);
            run.workload = "rl_small".into();
            let i = r.runs.len();
            r.runs.push(run);
            // Twice the first machine's latency (tests/analyze.rs `known_results`).
            r.add_latency(i, "malloc", 500_000, |q| (2000.0 * q) as u64);
        }
    }
    r
}

#[test]
fn two_machine_types_are_reported_apart_and_their_rankings_compared() {
    let d = tmp();
    let (a_dir, b_dir) = (d.path().join("a"), d.path().join("b"));
    let known = known_results();
    let cpu_a = known.machine.cpu_model.clone();
    fixture::write(&a_dir, &known);
    fixture::write(&b_dir, &other_machine());
    let a = analyze_dirs(&[a_dir.clone(), b_dir.clone()]);
    let machines: BTreeSet<&str> = a.configs.iter().map(|c| c.machine.as_str()).collect();
    assert_eq!(machines.len(), 2, "{machines:?}");
    assert_eq!(
        a.configs.len(),
        6,
        "3 allocators × 2 machine types, never pooled"
    );
    let get = |m: &str, al: &str| {
        a.configs
            .iter()
            .find(|c| c.machine.starts_with(m) && c.allocator == al)
            .unwrap_or_else(|| panic!("no {al} on {m}"))
    };
    // Medians and ratios within each machine type only.
    assert!(close(
        get(&cpu_a, "system").ops_per_sec_median.unwrap(),
        11e6
    ));
    assert!(close(get(&cpu_a, "fancy").ratio_to_system.unwrap(), 2.0));
    assert!(close(
        get("Other CPU", "system").ops_per_sec_median.unwrap(),
        31e6
    ));
    assert!(close(
        get("Other CPU", "fancy").ratio_to_system.unwrap(),
        22.0 / 31.0
    ));
    assert!(close(
        get("Other CPU", "system").ratio_to_best.unwrap(),
        1.0
    ));

    let t = analysis::tables::ranking_across_machines(&a.configs).expect("two machine types");
    let csv = t.to_csv();
    assert!(csv.contains("fancy > system > bump,no"), "{csv}");
    assert!(csv.contains("system > fancy > bump,no"), "{csv}");
    // One machine type: no such table.
    let one = analyze_dirs(std::slice::from_ref(&a_dir));
    assert!(analysis::tables::ranking_across_machines(&one.configs).is_none());
    // The analyze binary writes it, and every table has the machine column.
    let out = d.path().join("report");
    let o = Command::new(env!("CARGO_BIN_EXE_analyze"))
        .arg(&b_dir)
        .arg(d.path().join("a"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ranking = std::fs::read_to_string(out.join("tables/ranking_across_machines.csv")).unwrap();
    assert!(ranking.lines().count() == 3, "{ranking}");
    let throughput = std::fs::read_to_string(out.join("tables/throughput.csv")).unwrap();
    assert!(
        throughput.starts_with("machine,trace_name,"),
        "{throughput}"
    );
    assert_eq!(
        throughput
            .lines()
            .filter(|l| l.starts_with("Other CPU"))
            .count(),
        3
    );
    // The seed documents' tables (their ratios): one set per machine type.
    let names: Vec<String> = std::fs::read_dir(out.join("tables"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let per_machine = names
        .iter()
        .filter(|n| n.starts_with("fancy_throughput_") && n.ends_with(".csv"))
        .count();
    assert_eq!(per_machine, 2, "{names:?}");

    // summary.parquet and summary_latency.parquet: a row per machine type, equal to the rule.
    let summary = read_parquet(&out.join("summary.parquet"));
    let m = summary.column("machine").unwrap().str().unwrap().clone();
    let distinct: BTreeSet<&str> = m.iter().flatten().collect();
    assert_eq!(distinct.len(), 2, "{distinct:?}");
    assert_eq!(summary.height(), 6);
    polars_equals_the_rule(&[a_dir.clone(), b_dir.clone()], &[known, other_machine()]);

    // The plots: each shows one machine type, named in its title and file name; the overview
    // sections are per machine type; both types have their throughput and p99 bars.
    let figs = analysis::figures::figures(&a, &Default::default());
    let names: BTreeSet<&str> = machines.iter().copied().collect();
    let mut stems = BTreeSet::new();
    for f in &figs.figs {
        let on: Vec<&&str> = names.iter().filter(|m| f.title.contains(**m)).collect();
        assert_eq!(
            on.len(),
            1,
            "{} names not exactly one machine type",
            f.title
        );
        assert!(
            f.stem.ends_with(&analysis::figures::slug(on[0])),
            "{}",
            f.stem
        );
        assert!(stems.insert(f.stem.clone()), "two figures {}", f.stem);
        if let analysis::plots::Group::Overview(s) = &f.group {
            assert!(s.ends_with(*on[0]), "section {s} of {}", f.title);
        }
    }
    let bars = |m: &str, stem: &str| -> Vec<(String, f64)> {
        let f = figs
            .figs
            .iter()
            .find(|f| f.stem == format!("{stem}_{}", analysis::figures::slug(m)))
            .unwrap_or_else(|| panic!("no {stem} for {m}"));
        let analysis::plots::Chart::Bar(b) = &f.chart else {
            panic!("{stem} is not a bar chart")
        };
        b.series
            .iter()
            .zip(&b.values[0])
            .map(|((name, _), v)| (name.clone(), v.unwrap().value))
            .collect()
    };
    let machine_a = names.iter().find(|m| m.starts_with(&cpu_a)).unwrap();
    let machine_b = names.iter().find(|m| m.starts_with("Other CPU")).unwrap();
    let tp_a = bars(machine_a, "throughput_by_workload_t2");
    let tp_b = bars(machine_b, "throughput_by_workload_t2");
    assert!(
        tp_a.iter().any(|(n, v)| n == "system" && close(*v, 11e6)),
        "{tp_a:?}"
    );
    assert!(
        tp_b.iter().any(|(n, v)| n == "system" && close(*v, 31e6)),
        "{tp_b:?}"
    );
    let p99_a = bars(machine_a, "latency_p99_t2_malloc");
    let p99_b = bars(machine_b, "latency_p99_t2_malloc");
    assert!(p99_a.iter().all(|(_, v)| *v < 1100.0), "{p99_a:?}");
    assert!(p99_b.iter().all(|(_, v)| *v > 1900.0), "{p99_b:?}");
    // Per trace: both machine types' latency curves, side by side under trace `t`.
    let curves: Vec<&str> = figs
        .figs
        .iter()
        .filter(|f| f.stem.starts_with("latency_t_t2_malloc"))
        .map(|f| f.stem.as_str())
        .collect();
    assert_eq!(curves.len(), 2, "{curves:?}");
    for stem in &stems {
        assert!(
            out.join(format!("plots/{stem}.png")).is_file(),
            "{stem}.png"
        );
    }
}

/// A workload synthesized at several thread counts (the lab's `t{n}` variants, the
/// AllocatorBench study's `…-t{n}` traces): one throughput-vs-threads figure over the traces
/// that differ only in `threads=`, a point per trace; none where the traces share a point.
#[test]
fn a_workload_at_several_thread_counts_gets_one_scaling_figure_of_its_traces() {
    let d = tmp();
    let mut r = Results {
        sweep: "scaling".into(),
        ..Default::default()
    };
    // rl_small at 1, 2 and 4 threads: system 10, 20, 30 M ops/s (median of 9/10/11 M …),
    // fancy 2× that; larson's variants all replay with 80 threads (a shared point).
    for t in [1u32, 2, 4] {
        let trace = format!("rl_small-t{t}");
        for (alloc, base) in [("system", 10e6), ("fancy", 20e6)] {
            for (rep, f) in [0.9, 1.0, 1.1].into_iter().enumerate() {
                let mut run = RunRow::ok(&trace, alloc, t, rep as u32, base * f64::from(t) * f);
                run.workload = "rl_small".into();
                run.trace_params = format!(
                    "workload=rl_small seed=1 threads={t} ops=4000000 scale=0.25 total_ops={}",
                    4_000_000 * t
                );
                r.runs.push(run);
            }
        }
        let trace = format!("larson-t{t}");
        for alloc in ["system", "fancy"] {
            let mut run = RunRow::ok(&trace, alloc, 80, 0, 5e6);
            run.workload = "larson".into();
            run.trace_params = format!("workload=larson seed=1 threads={t}");
            r.runs.push(run);
        }
    }
    fixture::write(d.path(), &r);
    let a = analyze_dirs(&[d.path().to_owned()]);
    let figs = analysis::figures::figures(&a, &analysis::figures::FigureOptions::default());
    let scaling: Vec<&analysis::plots::Figure> = figs
        .figs
        .iter()
        .filter(|f| f.stem.starts_with("throughput_vs_threads_workload_"))
        .collect();
    assert_eq!(
        scaling.iter().map(|f| f.stem.as_str()).collect::<Vec<_>>(),
        ["throughput_vs_threads_workload_rl_small"],
        "larson's variants share the point (80 threads): no figure"
    );
    let f = scaling[0];
    assert!(
        f.caption.contains("rl_small-t1, rl_small-t2, rl_small-t4"),
        "{}",
        f.caption
    );
    let analysis::plots::Chart::Line(c) = &f.chart else {
        panic!("a line chart: {:?}", f.chart);
    };
    let line = |al: &str| {
        c.lines
            .iter()
            .find(|l| l.label == al)
            .unwrap_or_else(|| panic!("no {al} line"))
    };
    for (al, base) in [("system", 10e6), ("fancy", 20e6)] {
        let l = line(al);
        let want: Vec<(f64, f64)> = [1u32, 2, 4]
            .iter()
            .map(|&t| (f64::from(t).log2(), base * f64::from(t)))
            .collect();
        assert_eq!(l.points.len(), 3, "{al}: {:?}", l.points);
        for (p, w) in l.points.iter().zip(&want) {
            assert!(
                close(p.0, w.0) && close(p.1, w.1),
                "{al}: {:?} vs {want:?}",
                l.points
            );
        }
        // The whiskers span each trace's slowest and fastest repetition.
        assert!(
            close(l.whiskers[2].1, base * 4.0 * 0.9) && close(l.whiskers[2].2, base * 4.0 * 1.1)
        );
    }
    // The figure is drawn by `analyze`, in the overview.
    let out = tmp();
    let opts = analysis::Options::new(vec![d.path().display().to_string()], out.path());
    analysis::run(&opts).unwrap();
    let svg = std::fs::read_to_string(
        out.path()
            .join("plots/throughput_vs_threads_workload_rl_small.svg"),
    )
    .unwrap();
    assert!(svg.contains("Throughput vs threads, workload rl_small"));
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("Scaling by workload"));
}
