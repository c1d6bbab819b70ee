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

/// The fixture's runs.parquet.
fn fixture_runs() -> polars::prelude::DataFrame {
    use polars::prelude::*;
    let f = std::fs::File::open(fixture().join("runs.parquet")).unwrap();
    ParquetReader::new(f).finish().unwrap()
}

/// Per allocator, the median over the fixture's runs of `column` (by hand, from the Parquet).
fn medians(column: &str) -> Vec<(String, f64)> {
    use polars::prelude::*;
    let df = fixture_runs();
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
    let df = fixture_runs();
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

// ---- Address traces (`replay --heap-map`) and their mappings overlaid ----

use analysis::heapmap::{NOT_MAPPED_RGB, NOT_RESIDENT_RGB, RETAINED_RGB};
use results_schema::heapmap::{
    HEADER_ALLOCATOR, HEADER_SNAPSHOT_MS, HEADER_TRACE, HEADER_TRACE_HASH, MappingRow,
};

const X: u64 = 0x100000;
const Y: u64 = 0x101000;
const Z: u64 = 0x102000;
const W: u64 = 0x103000;

/// An address trace as `replay --heap-map` writes it, at `trace_file(dir, trace, allocator)`:
/// 100 ops, op k at k µs. X (4 KiB) malloc at op 0, free at 40; Y (4 KiB) at 1, free at 41;
/// Z (2 KiB) at 2, free at 5; W (4 KiB) at 3, never freed; the other ops free(NULL).
fn address_trace(dir: &Path, trace: &str, allocator: &str, hash: &str) -> PathBuf {
    let path = results_schema::heapmap::trace_file(dir, trace, allocator);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut h = Header::for_this_process("heapmap overlay test");
    h.extra = vec![
        (HEADER_ALLOCATOR.into(), allocator.into()),
        (HEADER_TRACE.into(), trace.into()),
        (HEADER_TRACE_HASH.into(), hash.into()),
        (HEADER_SNAPSHOT_MS.into(), "10".into()),
    ];
    let mut w = TraceWriter::create(&path, &h).unwrap();
    for k in 0..100u64 {
        let e = match k {
            0 => Event::Malloc { size: 4096, ptr: X },
            1 => Event::Malloc { size: 4096, ptr: Y },
            2 => Event::Malloc { size: 2048, ptr: Z },
            3 => Event::Malloc { size: 4096, ptr: W },
            5 => Event::Free { ptr: Z },
            40 => Event::Free { ptr: X },
            41 => Event::Free { ptr: Y },
            _ => Event::Free { ptr: 0 },
        };
        w.append(0, k * 1000, e).unwrap();
    }
    w.finish(0).unwrap();
    path
}

fn run_row(snapshot: u32, t_ns: u64, start: u64, end: u64, resident: bool) -> MappingRow {
    MappingRow {
        schema_version: 1,
        allocator: "fancy".into(),
        trace_name: "hand".into(),
        snapshot,
        t_ns,
        start,
        end,
        resident,
        heap: false,
    }
}

/// Three snapshots: at 20 µs (op 20) X..W all resident; at 50 µs X resident, Y's first 3 KiB
/// mapped not resident and its last KiB resident, Z not mapped, W resident; at 99.5 µs (after
/// the last op) all four pages resident. Every snapshot also holds a far mapping no block used.
fn mapping_rows() -> Vec<MappingRow> {
    let far = (0x7f00_0000_0000, 0x7f00_0010_0000);
    let mut v = vec![
        run_row(0, 20_000, X, W + 0x1000, true),
        run_row(0, 20_000, far.0, far.1, true),
        run_row(1, 50_000, X, Y, true),
        run_row(1, 50_000, Y, Y + 0xc00, false),
        run_row(1, 50_000, Y + 0xc00, Z, true),
        run_row(1, 50_000, W, W + 0x1000, true),
        run_row(1, 50_000, far.0, far.1, false),
        run_row(2, 99_500, far.0, far.1, true),
        run_row(2, 99_500, X, Z, true),
        run_row(2, 99_500, Z, W + 0x1000, true),
    ];
    v.last_mut().unwrap().heap = true;
    v
}

/// Writes `rows` as a mappings file with polars, columns named and typed from
/// `MappingRow::COLUMNS`, leaving out `drop`.
fn write_maps(path: &Path, rows: &[MappingRow], drop: Option<&str>) {
    // The rows as analyze writes any schema's rows, optionally without one column.
    let mut df = analysis::summary::frame(rows).unwrap();
    if let Some(c) = drop {
        df = df.drop(c).unwrap();
    }
    analysis::summary::write_parquet(path, &mut df).unwrap();
}

fn analyze_heap_map(path: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_analyze"))
        .arg("--heap-map")
        .arg(path)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn the_os_mappings_overlay_an_address_trace_region_by_region() {
    let dir = tempfile::tempdir().unwrap();
    let hm = dir.path().join("heapmaps");
    let trace = address_trace(&hm, "hand", "fancy", "abc");
    // The trace alone first: no mappings file, the trace-only colours.
    let plain = HeapMap::from_trace(&trace, &HeapMapOptions::default()).unwrap();
    assert!(plain.overlay.is_none());
    let maps = results_schema::heapmap::maps_file(&trace).unwrap();
    write_maps(&maps, &mapping_rows(), None);

    let out = dir.path().join("out");
    let o = analyze_heap_map(&trace, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("(hand under fancy)"), "{stdout}");
    assert!(stdout.contains("3 mapping snapshots"), "{stdout}");

    // One segment, [X, W + 4 KiB): 16 KiB over 503 rows → 33 bytes per row.
    let map = HeapMap::from_trace(&trace, &HeapMapOptions::default()).unwrap();
    assert_eq!(map.axis.segments.len(), 1);
    assert_eq!(map.axis.bytes_per_row, 33);
    let a = map.address.as_ref().unwrap();
    assert_eq!(
        (
            a.allocator.as_str(),
            a.trace.as_str(),
            a.trace_hash.as_deref()
        ),
        ("fancy", "hand", Some("abc"))
    );
    assert_eq!(a.snapshot_ms, Some(10.0));
    let ov = map.overlay.as_ref().unwrap();
    assert_eq!(ov.snapshots, 3);
    // Op k's first column is ⌊6.3 k⌋; op 20 (20 µs, the first snapshot) is the first column
    // whose end is at or after it.
    assert_eq!(ov.first_col, Some(126));
    // Retained at the last snapshot, by hand: only W is live at the end, W's rows start at
    // byte 0x3000 = 12288 of the segment, inside row 372 ([12276, 12309)); rows 0..372 have
    // nothing live and are all resident: 372 × 33 bytes. Resident in all: the four pages.
    assert_eq!(ov.retained_bytes, Some(372 * 33));
    assert_eq!(ov.resident_bytes, Some(4 * 4096));

    let img = image::open(out.join("heapmap_hand__fancy.png"))
        .unwrap()
        .to_rgb8();
    let row = |addr: u64| ((addr - X) / 33) as u32;
    let col = |op: u32| (op * heapmap::COLS).div_ceil(100) + 1;
    // Before the first snapshot: the trace-only colours. X live (blue), Z freed at op 5
    // (orange), Z's upper half never allocated (light grey).
    assert!(is_allocated(pixel(&img, row(X + 100), col(10))));
    assert_eq!(pixel(&img, row(Z + 100), col(10)), FREED_RGB);
    assert_eq!(pixel(&img, row(Z + 0xc00), col(10)), UNTOUCHED_RGB);
    assert_eq!(
        pixel(&img, row(Z + 100), 125),
        FREED_RGB,
        "the column before"
    );
    // Snapshot 0 (ops 20–49): everything resident. Z, freed, is retained; X still live.
    assert_eq!(pixel(&img, row(Z + 100), 126), RETAINED_RGB);
    assert_eq!(pixel(&img, row(Z + 0xc00), col(30)), RETAINED_RGB);
    assert!(is_allocated(pixel(&img, row(X + 100), col(30))));
    assert!(is_allocated(pixel(&img, row(W + 100), col(30))));
    // Snapshot 1 (ops 50–99, all but the last column): X freed and resident; Y freed, its
    // first 3 KiB mapped not resident, its last KiB resident; Z not mapped; W live.
    for op in [50, 70, 99] {
        assert_eq!(
            pixel(&img, row(X + 100), col(op)),
            RETAINED_RGB,
            "X, op {op}"
        );
        assert_eq!(
            pixel(&img, row(Y + 100), col(op)),
            NOT_RESIDENT_RGB,
            "Y, op {op}"
        );
        assert_eq!(
            pixel(&img, row(Y + 0xe00), col(op)),
            RETAINED_RGB,
            "Y's tail, op {op}"
        );
        assert_eq!(
            pixel(&img, row(Z + 100), col(op)),
            NOT_MAPPED_RGB,
            "Z, op {op}"
        );
        assert!(
            is_allocated(pixel(&img, row(W + 100), col(op))),
            "W, op {op}"
        );
    }
    // The row across Y's resident boundary (Y + 0xc00 = byte 7168, row 217 = [7161, 7194)):
    // 7 bytes not resident, 26 resident → resident (at least half).
    assert_eq!(row(Y + 0xc00), 217);
    assert_eq!(pixel(&img, 217, col(70)), RETAINED_RGB);
    // The row across Z's start (row 124 = [4092, 4125) holds Y's last 4 bytes (resident) and
    // Z's first 29 (not mapped) → not mapped.
    assert_eq!(pixel(&img, row(Z), col(70)), NOT_MAPPED_RGB);
    // The last column shows the last snapshot (after the last op): all resident.
    let last = heapmap::COLS - 1;
    assert_eq!(map.cell(row(Z + 100), last), Cell::Retained);
    assert_eq!(pixel(&img, row(Y + 100), last), RETAINED_RGB);
    assert_eq!(pixel(&img, row(Z + 100), last), RETAINED_RGB);
    assert!(is_allocated(pixel(&img, row(W + 100), last)));
    // Cells with live bytes are blue whatever the snapshot says.
    assert!(matches!(map.cell(row(W + 100), 300), Cell::Allocated(_)));

    // Title, legend and caption say who, what, and the figure.
    let svg = std::fs::read_to_string(out.join("heapmap_hand__fancy.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts: String = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("|");
    for want in [
        "Heap map: hand under fancy",
        "resident, nothing live",
        "mapped, not resident",
        "not mapped",
        "freed",
        "one every 10 ms",
        "12 KiB resident,",
    ] {
        assert!(texts.contains(want), "{want:?} not in {texts}");
    }
    let caption = map.caption();
    for want in [
        "Allocator `fancy` replaying `hand`",
        "3 snapshots, one every 10 ms",
        "at least half the row's bytes resident",
        "The first 126 columns end before the first snapshot",
        "12 KiB was resident in the shown address ranges in rows with nothing live",
        "of 16 KiB resident there in all",
    ] {
        assert!(caption.contains(want), "{want:?} not in {caption}");
    }
}

#[test]
fn the_time_axis_overlay_uses_each_columns_last_ns() {
    let dir = tempfile::tempdir().unwrap();
    let trace = address_trace(&dir.path().join("heapmaps"), "hand", "fancy", "abc");
    write_maps(
        &results_schema::heapmap::maps_file(&trace).unwrap(),
        &mapping_rows(),
        None,
    );
    let map = HeapMap::from_trace(
        &trace,
        &HeapMapOptions {
            time: heapmap::TimeAxis::Ns,
        },
    )
    .unwrap();
    // 0..=99 000 ns over 630 columns: column c ends at ⌈(c + 1) × 99 001 / 630⌉ − 1 ns; the
    // first ending at or after 20 000 ns is column 127 (ends at 20 114).
    let ov = map.overlay.as_ref().unwrap();
    assert_eq!(ov.first_col, Some(127));
    assert_eq!(ov.retained_bytes, Some(372 * 33));
    let z = ((Z + 100 - X) / 33) as u32;
    assert_eq!(map.cell(z, 126), Cell::Freed);
    assert_eq!(map.cell(z, 127), Cell::Retained);
}

#[test]
fn a_damaged_mappings_file_is_one_line_naming_it_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let trace = address_trace(&dir.path().join("heapmaps"), "hand", "fancy", "abc");
    let maps = results_schema::heapmap::maps_file(&trace).unwrap();
    let check = |what: &str, want: &str| {
        let o = analyze_heap_map(&trace, &dir.path().join("out"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(maps.to_str().unwrap()), "{what}: {err}");
        assert!(err.contains(want), "{what}: {want:?} not in {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
    };
    // Cut short: the real file, its second half gone.
    write_maps(&maps, &mapping_rows(), None);
    let bytes = std::fs::read(&maps).unwrap();
    std::fs::write(&maps, &bytes[..bytes.len() / 2]).unwrap();
    check("truncated", "cannot be read as a mappings file");
    // A column missing.
    write_maps(&maps, &mapping_rows(), Some("resident"));
    check("no resident column", "lacks the column(s) resident");
    // Not Parquet at all.
    std::fs::write(&maps, b"PAR1 but not really").unwrap();
    check("garbage", "cannot be read as a mappings file");
}

#[test]
fn heap_map_of_a_directory_draws_every_allocators_address_trace() {
    let dir = tempfile::tempdir().unwrap();
    let hm = dir.path().join("results/heapmaps");
    let fancy = address_trace(&hm, "hand", "fancy", "abc");
    write_maps(
        &results_schema::heapmap::maps_file(&fancy).unwrap(),
        &mapping_rows(),
        None,
    );
    // An allocator whose name is not file-safe, without a mappings file.
    let jem = address_trace(&hm, "hand", "preload:/usr/lib/libjemalloc.so.2", "abc");
    assert!(jem.ends_with("hand/preload__usr_lib_libjemalloc.so.2.heapmap.zst"));
    let out = dir.path().join("out");
    let o = analyze_heap_map(&hm, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("hand under fancy") && l.contains("3 mapping snapshots")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("under preload:/usr/lib/libjemalloc.so.2")
                && !l.contains("snapshots")),
        "{stdout}"
    );
    for stem in ["hand__fancy", "hand__preload__usr_lib_libjemalloc_so_2"] {
        for f in [
            format!("heapmap_{stem}.png"),
            format!("heapmap_{stem}.svg"),
            format!("sizes_{stem}.csv"),
        ] {
            assert!(out.join(&f).is_file(), "{f} missing: {stdout}");
        }
    }
    // Without the overlay: the trace-only colours (Z freed at the end).
    let img = image::open(out.join("heapmap_hand__preload__usr_lib_libjemalloc_so_2.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(
        pixel(&img, ((Z + 100 - X) / 33) as u32, heapmap::COLS - 1),
        FREED_RGB
    );
    // One trace's directory works too; a directory without address traces is an error.
    let o = analyze_heap_map(&hm.join("hand"), &dir.path().join("out2"));
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = analyze_heap_map(&empty, &dir.path().join("out3"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(empty.to_str().unwrap()), "{err}");
    assert!(err.contains("no address trace"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The fixture's trace name and allocators (from its runs.parquet).
fn fixture_trace_and_allocators() -> (String, Vec<String>) {
    let df = fixture_runs();
    let name = df
        .column("trace_name")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_owned();
    let mut allocs: Vec<String> = df
        .column("allocator")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    allocs.sort();
    allocs.dedup();
    (name, allocs)
}

#[test]
fn the_explanation_page_shows_the_heap_under_each_allocator_when_there_are_heap_maps() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    for f in std::fs::read_dir(fixture()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, results.join(f.file_name().unwrap())).unwrap();
    }
    let run = |out: &str| {
        let out = dir.path().join(out);
        let o = Command::new(env!("CARGO_BIN_EXE_analyze"))
            .arg(&results)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            std::fs::read_to_string(out.join("explain.md")).unwrap(),
            std::fs::read_to_string(out.join("report.html")).unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            out,
        )
    };
    // Without heap maps: no such section.
    let (md, html, _, _) = run("without");
    assert!(!md.contains("The heap under each allocator"), "{md}");
    assert!(!html.contains("The heap under each allocator"));

    let (trace, allocs) = fixture_trace_and_allocators();
    assert!(allocs.len() >= 2, "{allocs:?}");
    let hash = fixture_trace_hash();
    let hm = results.join(results_schema::heapmap::DIR_NAME);
    for a in &allocs {
        let t = address_trace(&hm, &trace, a, &hash);
        write_maps(
            &results_schema::heapmap::maps_file(&t).unwrap(),
            &mapping_rows(),
            None,
        );
    }
    let (md, html, stderr, out) = run("with");
    assert!(md.contains("### The heap under each allocator"), "{md}");
    // The address traces and mappings files are no input problem.
    assert!(!stderr.contains("heapmap"), "{stderr}");
    assert!(html.contains("<h4>The heap under each allocator</h4>"));
    // One map per allocator, in the page's order (system first, then by name), each with its
    // sentence: peak live 14 KiB (X, Y, Z and W live after op 3: 4 + 4 + 2 + 4 KiB), 16 KiB
    // resident at the last snapshot, 12 KiB of it retained (372 rows of 33 bytes: 12 276 B,
    // 0.86× the peak live bytes).
    let mut order = allocs.clone();
    order.sort_by_key(|a| (a != results_schema::BASELINE_ALLOCATOR, a.clone()));
    let mut at = 0;
    for a in &order {
        let stem = format!(
            "heapmap_{}_t2__{}",
            analysis::figures::slug(&trace),
            analysis::figures::slug(a)
        );
        let png = out.join("plots").join(format!("{stem}.png"));
        assert!(png.is_file(), "{} missing", png.display());
        let i = md[at..]
            .find(&format!("![{stem}]"))
            .unwrap_or_else(|| panic!("{stem} not after the previous one in:\n{md}"));
        at += i;
        let sentence = format!(
            "`{a}`: peak live 14 KiB in its heap-map pass; at the last of its 3 mapping \
             snapshots, 16 KiB resident in the shown address ranges, of which 12 KiB in rows \
             with nothing live (0.9× of the peak live bytes)."
        );
        assert!(md.contains(&sentence), "{sentence:?} not in:\n{md}");
        assert!(html.contains(&format!("<figure id=\"{stem}\">")));
    }
    assert!(md.contains("mapping snapshots every 10 ms"), "{md}");

    // An address trace of another trace (its hash differs): skipped, with a problem line.
    let other = &order[0];
    address_trace(&hm, &trace, other, "0000");
    let (md, _, stderr, _) = run("mismatch");
    assert!(
        stderr.contains("address trace of another trace (its trace hash 0000"),
        "{stderr}"
    );
    assert!(!md.contains(&format!("`{other}`: peak live")), "{md}");
    assert!(
        md.contains(&format!(
            "Not shown: `{other}` (its address trace is of another trace"
        )),
        "{md}"
    );
    // The other allocators' maps are still there.
    assert!(md.contains(&format!("`{}`: peak live", order[1])), "{md}");
    // A damaged mappings file: that allocator left out, the file named in a problem line.
    let second = &order[1];
    let t = results_schema::heapmap::trace_file(&hm, &trace, second);
    let maps = results_schema::heapmap::maps_file(&t).unwrap();
    let bytes = std::fs::read(&maps).unwrap();
    std::fs::write(&maps, &bytes[..bytes.len() / 3]).unwrap();
    let (md, _, stderr, _) = run("damaged");
    assert!(
        stderr.contains(&format!("mappings file {}: ", maps.display())),
        "{stderr}"
    );
    assert!(
        md.contains(&format!(
            "Not shown: `{second}` (the address trace or its mappings file could not be read"
        )),
        "{md}"
    );
    assert!(!md.contains(&format!("`{second}`: peak live")), "{md}");
}
