//! Heap maps, size classes and the explanation page, on traces written here with the traces
//! writer, on a synthetic trace, and on the committed real replay (`tests/data/replay-small`).

use std::path::{Path, PathBuf};
use std::process::Command;

use analysis::heapmap::{
    self, ALLOC_FULL_RGB, Cell, FREED_RGB, GAP_RGB, GAP_ROWS, HeapMap, HeapMapOptions, PLOT,
    UNTOUCHED_RGB,
};
use plotters::style::RGBColor;
use traces::{Event, Header, TraceWriter};

const A: u64 = 0x10000;
const B: u64 = 0x10800;
const B2: u64 = 0x10c00;
const FAR: u64 = 0x7f00_0000_0000;

/// 100 ops on one thread: A (1 KiB) at op 0, B (1 KiB) at op 1, a far block churned by the ops
/// in between (malloc at even ops, free at odd), A freed at op 50, B moved by realloc to B2 at
/// op 70, everything freed at the end (ops 97–99).
fn hand_made_trace(dir: &Path) -> PathBuf {
    let path = dir.join("hand.trace.zst");
    let mut w = TraceWriter::create(&path, &Header::for_this_process("heapmap test")).unwrap();
    let mut ops: Vec<Event> = vec![
        Event::Malloc { size: 1024, ptr: A },
        Event::Malloc { size: 1024, ptr: B },
    ];
    while ops.len() < 97 {
        let i = ops.len();
        ops.push(match i {
            50 => Event::Free { ptr: A },
            70 => Event::Realloc {
                old_ptr: B,
                size: 1024,
                ptr: B2,
            },
            // Keep the far block's malloc/free pairs aligned: free(NULL) after the two.
            51 | 71 => Event::Free { ptr: 0 },
            _ if i.is_multiple_of(2) => Event::Malloc {
                size: 100,
                ptr: FAR,
            },
            _ => Event::Free { ptr: FAR },
        });
    }
    // ops.len() == 97; op 96 was a malloc of FAR (even index), so free it, B2 and FAR's last.
    ops.push(Event::Free { ptr: FAR });
    ops.push(Event::Free { ptr: B2 });
    ops.push(Event::Free { ptr: 0 });
    assert_eq!(ops.len(), 100);
    for (i, e) in ops.into_iter().enumerate() {
        w.append(0, i as u64 * 10, e).unwrap();
    }
    w.finish(0).unwrap();
    path
}

fn pixel(img: &image::RgbImage, row: u32, col: u32) -> RGBColor {
    // Row 0 is the bottom of the plot; the plot's bottom edge is PLOT.3 (exclusive).
    let p = img.get_pixel(PLOT.0 + col, PLOT.3 - 1 - row);
    RGBColor(p[0], p[1], p[2])
}

fn is_allocated(c: RGBColor) -> bool {
    // The allocated ramp runs from light to dark blue: blue well above red.
    c.2 as i32 - c.0 as i32 > 60 && c != UNTOUCHED_RGB && c != GAP_RGB
}

#[test]
fn heap_map_of_a_hand_made_trace_is_right_region_by_region() {
    let dir = tempfile::tempdir().unwrap();
    let trace = hand_made_trace(dir.path());
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_analyze"))
        .arg("--heap-map")
        .arg(&trace)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("100 ops, 2 address segments"), "{stdout}");

    // The axis by hand: used pages [0x10000, 0x11000) and [FAR, FAR + 4 KiB), the far gap
    // collapsed; 8 KiB shown over 504 rows less one gap band and one row per segment:
    // ceil(8192 / 494) = 17 bytes per row; the first segment takes ceil(4096 / 17) = 241 rows.
    let map = HeapMap::from_trace(&trace, &HeapMapOptions::default()).unwrap();
    assert_eq!(map.axis.bytes_per_row, 17);
    assert_eq!(map.axis.segments.len(), 2);
    assert_eq!(map.axis.gaps, vec![FAR - 0x11000]);
    assert_eq!(
        (map.axis.segments[0].row0, map.axis.segments[0].rows),
        (0, 241)
    );
    assert_eq!(map.axis.segments[1].row0, 241 + GAP_ROWS);
    assert_eq!(map.ops, 100);
    assert_eq!(map.peak_live_bytes, 2148);
    assert_eq!(map.inconsistent, 0);

    let row = |addr: u64| ((addr - A) / 17) as u32;
    // 630 columns over 100 ops: op k starts at column ⌈6.3 k⌉.
    let col = |op: u32| (op * heapmap::COLS).div_ceil(100) + 1;
    let img = image::open(out.join("heapmap_hand.png")).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), heapmap::SIZE);
    let (a, b, hole, b2) = (row(A + 512), row(B + 512), row(A + 0x600), row(B2 + 512));
    // A: allocated from op 0 until its free at op 50, freed after.
    for op in [0, 10, 49] {
        let c = pixel(&img, a, col(op));
        assert!(is_allocated(c), "A at op {op}: {c:?}");
    }
    for op in [51, 80, 99] {
        assert_eq!(pixel(&img, a, col(op)), FREED_RGB, "A at op {op}");
    }
    // A's row is full of live bytes: the darkest colour.
    assert_eq!(pixel(&img, a, col(20)), ALLOC_FULL_RGB);
    // B: not allocated during op 0, allocated from op 1 until the realloc moved it at op 70.
    assert_eq!(pixel(&img, b, 1), UNTOUCHED_RGB, "B before its malloc");
    for op in [2, 50, 69] {
        assert!(is_allocated(pixel(&img, b, col(op))), "B at op {op}");
    }
    assert_eq!(pixel(&img, b, col(71)), FREED_RGB, "B after the realloc");
    // B2: nothing before op 70, allocated after it until its free at op 98.
    assert_eq!(
        pixel(&img, b2, col(60)),
        UNTOUCHED_RGB,
        "B2 before the realloc"
    );
    assert!(
        is_allocated(pixel(&img, b2, col(71))),
        "B2 after the realloc"
    );
    assert!(is_allocated(pixel(&img, b2, col(97))), "B2 before its free");
    // The bytes between A and B were never allocated.
    for op in [0, 50, 99] {
        assert_eq!(pixel(&img, hole, col(op)), UNTOUCHED_RGB, "hole at op {op}");
    }
    // The collapsed gap's band, and the far block's row (allocated and freed within each
    // column after the first: freed at the end of the column, or live).
    assert_eq!(pixel(&img, 241 + GAP_ROWS / 2, 300), GAP_RGB);
    let far = 241 + GAP_ROWS;
    assert_eq!(map.cell(far, heapmap::COLS - 1), Cell::Freed);
    assert_eq!(pixel(&img, far, heapmap::COLS - 1), FREED_RGB);

    // The SVG: the same grid embedded as a PNG, the title and an address label as text.
    let svg = std::fs::read_to_string(out.join("heapmap_hand.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let image = doc
        .descendants()
        .find(|n| n.has_tag_name("image"))
        .expect("an <image> element");
    assert!(
        image
            .attribute("href")
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    assert_eq!(image.attribute("x"), Some(PLOT.0.to_string().as_str()));
    let texts: String = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("|");
    assert!(texts.contains("Heap map: hand"), "{texts}");
    assert!(texts.contains("0x10000"), "{texts}");
    assert!(texts.contains("gap"), "{texts}");
}

#[test]
fn size_classes_of_a_known_trace_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sizes.trace.zst");
    let mut w = TraceWriter::create(&path, &Header::for_this_process("sizes test")).unwrap();
    let mut p = 0x1000u64;
    let mut next = || {
        p += 0x10000;
        p
    };
    let mut events = Vec::new();
    for size in [0u64, 1, 2, 3, 4, 5, 16, 17, 4096, 4097] {
        events.push(Event::Malloc { size, ptr: next() });
    }
    events.push(Event::Calloc {
        nmemb: 3,
        size: 10,
        ptr: next(),
    });
    let r = next();
    events.push(Event::Malloc { size: 8, ptr: r });
    events.push(Event::Realloc {
        old_ptr: r,
        size: 100,
        ptr: next(),
    });
    events.push(Event::Aligned {
        func: traces::AlignedFn::PosixMemalign,
        align: 64,
        size: 200,
        ptr: next(),
    });
    // A failed malloc is a request too (inspect counts it alike).
    events.push(Event::Malloc { size: 40, ptr: 0 });
    events.push(Event::Free { ptr: r + 0x10000 });
    for (i, e) in events.into_iter().enumerate() {
        w.append(0, i as u64, e).unwrap();
    }
    w.finish(0).unwrap();

    let map = HeapMap::from_trace(&path, &HeapMapOptions::default()).unwrap();
    let got: Vec<(String, u64, u64)> = map
        .sizes
        .classes()
        .iter()
        .map(|c| (c.label(), c.count, c.bytes))
        .collect();
    let want: Vec<(&str, u64, u64)> = vec![
        ("0 B", 1, 0),
        ("1 B", 1, 1),
        ("2 B", 1, 2),
        ("3 B–4 B", 2, 7),
        ("5 B–8 B", 2, 13),
        ("9 B–16 B", 1, 16),
        ("17 B–32 B", 2, 47),
        ("33 B–64 B", 1, 40),
        ("65 B–128 B", 1, 100),
        ("129 B–256 B", 1, 200),
        ("257 B–512 B", 0, 0),
        ("513 B–1 KiB", 0, 0),
        ("1 KiB–2 KiB", 0, 0),
        ("2 KiB–4 KiB", 1, 4096),
        ("4 KiB–8 KiB", 1, 4097),
    ];
    let got_ref: Vec<(&str, u64, u64)> = got.iter().map(|(l, c, b)| (l.as_str(), *c, *b)).collect();
    // The labels' lower bounds are written in whole units (1025 B as 1 KiB); the bounds in
    // bytes are exact in the CSV.
    assert_eq!(
        got_ref.iter().map(|g| (g.1, g.2)).collect::<Vec<_>>(),
        want.iter().map(|g| (g.1, g.2)).collect::<Vec<_>>(),
        "{got_ref:?}"
    );
    assert_eq!(map.sizes.requests(), 15);
    // 1 + 2 + 7 + 13 + 16 + 47 + 40 + 100 + 200 + 4096 + 4097
    assert_eq!(map.sizes.total_bytes(), 8619);

    // The same numbers in the CSV `analyze --heap-map` writes.
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_analyze"))
        .args([
            "--heap-map",
            path.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("sizes_sizes.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), want.len());
    let by_bounds: Vec<(u64, u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r[1].parse().unwrap(),
                r[2].parse().unwrap(),
                r[3].parse().unwrap(),
                r[4].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_bounds[3], (2, 4, 2, 7));
    assert_eq!(by_bounds[6], (16, 32, 2, 47));
    assert_eq!(by_bounds[14], (4096, 8192, 1, 4097));
    let img = image::open(out.join("sizes_sizes.png")).unwrap();
    assert!(img.width() >= 1000);
}

#[test]
fn a_bad_trace_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.trace.zst");
    std::fs::write(&bad, b"not a trace at all").unwrap();
    for path in [bad, dir.path().join("missing.trace.zst")] {
        let o = Command::new(env!("CARGO_BIN_EXE_analyze"))
            .arg("--heap-map")
            .arg(&path)
            .arg("-o")
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(path.to_str().unwrap()), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay-small")
}

/// Per allocator, the median over the fixture's runs of `column` (by hand, from the Parquet).
fn medians(column: &str) -> Vec<(String, f64)> {
    use polars::prelude::*;
    let f = std::fs::File::open(fixture().join("runs.parquet")).unwrap();
    let df = ParquetReader::new(f).finish().unwrap();
    let alloc = df.column("allocator").unwrap().str().unwrap().clone();
    let v = df.column(column).unwrap().cast(&DataType::Float64).unwrap();
    let v = v.f64().unwrap();
    let mut by: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for i in 0..df.height() {
        by.entry(alloc.get(i).unwrap().to_owned())
            .or_default()
            .push(v.get(i).unwrap());
    }
    by.into_iter()
        .map(|(a, mut v)| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let m = if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            };
            (a, m)
        })
        .collect()
}

fn fixture_trace_hash() -> String {
    use polars::prelude::*;
    let f = std::fs::File::open(fixture().join("runs.parquet")).unwrap();
    let df = ParquetReader::new(f).finish().unwrap();
    df.column("trace_hash")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_owned()
}

#[test]
fn the_report_on_the_real_replay_explains_it_with_pictures_and_measured_numbers() {
    let dir = tempfile::tempdir().unwrap();
    // The fixture's trace, made again (synth is deterministic): README's command.
    let traces_dir = dir.path().join("traces");
    std::fs::create_dir_all(&traces_dir).unwrap();
    let trace = traces_dir.join("rl_small.trace.zst");
    let params = traces::synth::Params {
        threads: Some(2),
        ops: Some(2_000_000),
        seed: 7,
        ..Default::default()
    };
    let cfg = traces::synth::Config::new("rl_small", &params).unwrap();
    traces::synth::generate_file(&cfg, &trace).unwrap();
    assert_eq!(
        results_schema::trace_hash_of_file(&trace).unwrap(),
        fixture_trace_hash(),
        "synth no longer makes the fixture's trace: regenerate tests/data/replay-small (README)"
    );
    let out = dir.path().join("report");
    let o = Command::new(env!("CARGO_BIN_EXE_analyze"))
        .arg(fixture())
        .arg("-o")
        .arg(&out)
        .arg("--traces")
        .arg(&traces_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let md = std::fs::read_to_string(out.join("explain.md")).unwrap();
    assert!(html.contains("<h2 id=\"explain\">Why the allocators differ</h2>"));
    assert!(html.contains("href=\"#explain\""));
    for stem in [
        "heapmap_rl_small_t2",
        "sizes_rl_small_t2",
        "os_calls_rl_small_t2",
        "os_bytes_rl_small_t2",
        "os_kernel_rl_small_t2",
        "counters_rl_small_t2",
        "os_over_time_rl_small_t2",
    ] {
        assert!(
            html.contains(&format!("<figure id=\"{stem}\">")),
            "{stem} is not in report.html"
        );
        for ext in ["png", "svg"] {
            let f = out.join("plots").join(format!("{stem}.{ext}"));
            assert!(f.is_file(), "{} missing", f.display());
        }
        assert!(
            md.contains(&format!("(plots/{stem}.png)")),
            "{stem} not in explain.md"
        );
        let img = image::open(out.join("plots").join(format!("{stem}.png"))).unwrap();
        assert_eq!(img.width(), 1000, "{stem}");
    }
    // The heap map in the report is the trace's: the same grid as drawing it alone.
    let alone = HeapMap::from_trace(&trace, &HeapMapOptions::default()).unwrap();
    assert_eq!(alone.ops, 2_008_190);
    let a = image::open(out.join("plots/heapmap_rl_small_t2.png"))
        .unwrap()
        .to_rgb8();
    let (x, y) = HeapMap::pixel(10, 10);
    assert_eq!(
        RGBColor(
            a.get_pixel(x, y)[0],
            a.get_pixel(x, y)[1],
            a.get_pixel(x, y)[2]
        ),
        alone.cell(10, 10).rgb()
    );

    // The sentences carry the measured medians. Page faults (perf): the most and the fewest.
    let faults = medians("perf_page_faults");
    let hi = faults.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let lo = faults.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let want = format!(
        "Faults: `{}` took {} page faults (perf) vs `{}`'s {}",
        hi.0, hi.1, lo.0, lo.1
    );
    assert!(md.contains(&want), "{want:?} not in:\n{md}");
    // OS calls: the allocator with the most (all kinds together) against the one with the
    // fewest, with its mmap count.
    let kinds = ["mmap", "munmap", "mremap", "brk", "madvise"];
    let per_kind: Vec<Vec<(String, f64)>> = kinds
        .iter()
        .map(|k| medians(&format!("os_{k}_calls")))
        .collect();
    let totals: Vec<(String, f64)> = per_kind[0]
        .iter()
        .enumerate()
        .map(|(i, (a, _))| (a.clone(), per_kind.iter().map(|k| k[i].1).sum()))
        .collect();
    let most = totals.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let mmaps = per_kind[0].iter().find(|(a, _)| *a == most.0).unwrap().1;
    let want = format!("`{}` made {} ({} mmap", most.0, most.1, mmaps);
    assert!(md.contains(&want), "{want:?} not in:\n{md}");
    // The same by the kernel's count (glibc's own calls included).
    let kernel: Vec<Vec<(String, f64)>> = kinds
        .iter()
        .map(|k| medians(&format!("kernel_{k}_calls")))
        .collect();
    let ktotals: Vec<(String, f64)> = kernel[0]
        .iter()
        .enumerate()
        .map(|(i, (a, _))| (a.clone(), kernel.iter().map(|k| k[i].1).sum()))
        .collect();
    let kmost = ktotals.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let want = format!("harness's own): `{}` {} (", kmost.0, kmost.1);
    assert!(md.contains(&want), "{want:?} not in:\n{md}");
    // This VM exposes no PMU: the page says which counters were unavailable, and why.
    assert!(md.contains("Unavailable on this machine:"), "{md}");
    assert!(md.contains("cycles"), "{md}");
    assert!(
        html.contains("cycles: unavailable"),
        "the counters chart does not say so"
    );
    // Size classes of the trace, exact: rl_small's sizes are 16–512 B.
    let classes = alone.sizes.classes();
    assert_eq!(classes.first().unwrap().max, 16);
    assert_eq!(classes.last().unwrap().max, 512);
    assert_eq!(
        classes.iter().map(|c| c.count).sum::<u64>(),
        alone.sizes.requests()
    );
}

/// The fixture copied into `dir` with every run's `trace_path` set to `trace_path`.
fn fixture_with_trace_path(dir: &Path, trace_path: &str) -> PathBuf {
    use polars::prelude::*;
    let out = dir.join("results");
    std::fs::create_dir_all(&out).unwrap();
    for f in ["latency.parquet", "timeseries.parquet"] {
        std::fs::copy(fixture().join(f), out.join(f)).unwrap();
    }
    let f = std::fs::File::open(fixture().join("runs.parquet")).unwrap();
    let mut df = ParquetReader::new(f).finish().unwrap();
    let n = df.height();
    df.with_column(Column::new("trace_path".into(), vec![trace_path; n]))
        .unwrap();
    let w = std::fs::File::create(out.join("runs.parquet")).unwrap();
    ParquetWriter::new(w).finish(&mut df).unwrap();
    out
}

#[test]
fn the_page_says_why_there_is_no_heap_map_when_the_trace_is_missing_or_another() {
    let dir = tempfile::tempdir().unwrap();
    // Another trace at the recorded path: its hash is not the runs' trace_hash.
    let other = hand_made_trace(dir.path());
    let results = fixture_with_trace_path(dir.path(), other.to_str().unwrap());
    let run = |results: &Path, out: &str| {
        let out = dir.path().join(out);
        let o = Command::new(env!("CARGO_BIN_EXE_analyze"))
            .arg(results)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            std::fs::read_to_string(out.join("explain.md")).unwrap(),
            out,
        )
    };
    let (md, out) = run(&results, "changed");
    assert!(
        md.contains(&format!(
            "No heap map or size classes of the trace: {} is not the trace that was replayed",
            other.display()
        )),
        "{md}"
    );
    assert!(!out.join("plots/heapmap_rl_small_t2.png").exists());
    // The runs' other pictures are still there.
    assert!(out.join("plots/os_calls_rl_small_t2.png").is_file());
    // A path where nothing is.
    let gone = dir.path().join("nowhere/rl_small.trace.zst");
    let results = fixture_with_trace_path(&dir.path().join("b"), gone.to_str().unwrap());
    let (md, _) = run(&results, "missing");
    assert!(
        md.contains(&format!(
            "trace file {} not found (pass --traces DIR",
            gone.display()
        )),
        "{md}"
    );
}
