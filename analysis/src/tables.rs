//! The tables: built from an [`Analysis`], written as Markdown (numbers with units, for people)
//! and CSV (raw numbers in the units of the column names, for programs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::compute::{Analysis, BASELINE_ALLOCATOR, ConfigRow, LatencyRow, TABLE_QUANTILES};

/// One cell: what a person reads and what a program reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Formatted, with units (Markdown, HTML).
    pub text: String,
    /// Raw value (CSV); empty for a missing value.
    pub raw: String,
}

impl Cell {
    /// A text cell (same both ways).
    pub fn text(s: impl Into<String>) -> Cell {
        let s = s.into();
        Cell {
            raw: s.clone(),
            text: s,
        }
    }

    /// A number shown through `fmt`, raw as is; `—` and empty when missing.
    pub fn num(v: Option<f64>, fmt: impl Fn(f64) -> String) -> Cell {
        match v {
            Some(v) if v.is_finite() => Cell {
                text: fmt(v),
                raw: raw_num(v),
            },
            _ => Cell {
                text: "—".into(),
                raw: String::new(),
            },
        }
    }
}

fn raw_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A table with a name (its file stem), a title and a note on how to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// File stem: `tables/<name>.md`, `tables/<name>.csv`.
    pub name: String,
    /// Heading.
    pub title: String,
    /// How to read it.
    pub note: String,
    /// Column headers for people (with units).
    pub headers: Vec<String>,
    /// Column names for CSV (snake_case, units in the names).
    pub csv_headers: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    fn new(name: &str, title: impl Into<String>, note: impl Into<String>) -> Table {
        Table {
            name: name.into(),
            title: title.into(),
            note: note.into(),
            headers: Vec::new(),
            csv_headers: Vec::new(),
            rows: Vec::new(),
        }
    }

    fn col(&mut self, header: &str, csv: &str) {
        self.headers.push(header.into());
        self.csv_headers.push(csv.into());
    }

    /// The table as Markdown: heading, note, table.
    pub fn to_markdown(&self) -> String {
        let mut s = format!("## {}\n\n", self.title);
        if !self.note.is_empty() {
            let _ = writeln!(s, "{}\n", self.note);
        }
        if self.rows.is_empty() {
            s.push_str("_(no data)_\n");
            return s;
        }
        let esc = |t: &str| t.replace('|', "\\|").replace('\n', " ");
        let _ = writeln!(
            s,
            "| {} |",
            self.headers
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(s, "|{}", "---|".repeat(self.headers.len()));
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} |",
                r.iter()
                    .map(|c| esc(&c.text))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        s
    }

    /// The table as CSV (RFC 4180 quoting), raw values.
    pub fn to_csv(&self) -> String {
        let q = |t: &str| {
            if t.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", t.replace('"', "\"\""))
            } else {
                t.to_owned()
            }
        };
        let mut s = self
            .csv_headers
            .iter()
            .map(|h| q(h))
            .collect::<Vec<_>>()
            .join(",");
        s.push('\n');
        for r in &self.rows {
            s.push_str(&r.iter().map(|c| q(&c.raw)).collect::<Vec<_>>().join(","));
            s.push('\n');
        }
        s
    }
}

// ---- formatting --------------------------------------------------------------------------------

/// `12.3M`-style ops/s in millions.
pub fn fmt_mops(v: f64) -> String {
    let m = v / 1e6;
    if m >= 100.0 {
        format!("{m:.0}M")
    } else if m >= 10.0 {
        format!("{m:.1}M")
    } else {
        format!("{m:.2}M")
    }
}

/// Bytes in binary units.
pub fn fmt_bytes(v: f64) -> String {
    let a = v.abs();
    if a >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", v / (1024.0 * 1024.0 * 1024.0))
    } else if a >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / (1024.0 * 1024.0))
    } else if a >= 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

/// Nanoseconds as ns, µs or ms.
pub fn fmt_ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1} µs", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.2} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

/// A ratio as `1.18×`.
pub fn fmt_ratio(v: f64) -> String {
    format!("{v:.2}×")
}

/// A fraction as a percentage.
pub fn fmt_pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

/// A count with thousands separators.
pub fn fmt_count(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A quantile in hundred-thousandths as `p99.9` (`max` for 1.0).
pub fn quantile_label(q: u32) -> String {
    match q {
        100_000 => "max".into(),
        0 => "min".into(),
        q => {
            let p = q as f64 / 1000.0;
            format!("p{}", trim_float(p))
        }
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

// ---- the tables -----------------------------------------------------------------------------------

/// Options that choose the seed tables' workloads.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Workload of AllocatorBench's scaling table (its report used `rl_small`).
    pub scaling_workload: String,
    /// Workload of FancyAllocator's tables (its README's ring-buffer benchmark).
    pub fancy_workload: String,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            scaling_workload: "rl_small".into(),
            fancy_workload: "ring-buffer".into(),
        }
    }
}

/// Every table, in report order.
pub fn all_tables(a: &Analysis, seeds: &SeedOptions) -> Vec<Table> {
    let mut t = vec![
        throughput(&a.configs),
        latency(&a.latency),
        memory(&a.configs),
    ];
    t.push(allocatorbench_scaling(&a.configs, &seeds.scaling_workload));
    t.extend(fancy_tables(&a.configs, &a.latency, &seeds.fancy_workload));
    t.push(failed(a));
    t.push(machines(a));
    t.push(allocators(a));
    t
}

fn key_cells(r: &ConfigRow) -> Vec<Cell> {
    vec![
        Cell::text(&r.key.trace),
        Cell::text(&r.workload),
        Cell::text(r.key.threads.to_string()),
        Cell::text(&r.key.allocator),
    ]
}

fn key_cols(t: &mut Table) {
    t.col("trace", "trace_name");
    t.col("workload", "workload");
    t.col("threads", "replay_threads");
    t.col("allocator", "allocator");
}

/// Throughput per allocator × workload × threads.
pub fn throughput(configs: &[ConfigRow]) -> Table {
    let mut t = Table::new(
        "throughput",
        "Throughput per allocator, trace and thread count",
        "Ops/s of the untimed replay pass, median over the ok repetitions (n). CV is the \
         coefficient of variation (sample standard deviation / mean) over those repetitions; \
         min and max bound them. `vs system` is the median over the `system` allocator's \
         (glibc malloc) in the same trace and thread count; `vs best` over the fastest \
         allocator's there (1.00× is the best).",
    );
    key_cols(&mut t);
    t.col("n", "runs");
    t.col("ops/s (median)", "ops_per_sec_median");
    t.col("CV", "ops_per_sec_cv");
    t.col("min", "ops_per_sec_min");
    t.col("max", "ops_per_sec_max");
    t.col("vs system", "ratio_to_system");
    t.col("vs best", "ratio_to_best");
    for r in configs {
        let mut row = key_cells(r);
        row.push(Cell::text(r.runs_throughput.to_string()));
        row.push(Cell::num(r.ops_per_sec_median, fmt_mops));
        row.push(Cell::num(r.ops_per_sec_cv, fmt_pct));
        row.push(Cell::num(r.ops_per_sec_min, fmt_mops));
        row.push(Cell::num(r.ops_per_sec_max, fmt_mops));
        row.push(Cell::num(r.vs_system, fmt_ratio));
        row.push(Cell::num(r.vs_best, fmt_ratio));
        t.rows.push(row);
    }
    t
}

/// Latency percentiles per op kind.
pub fn latency(rows: &[LatencyRow]) -> Table {
    let mut t = Table::new(
        "latency",
        "Latency percentiles per op kind",
        "From the timed replay pass (HdrHistogram, 3 significant digits): for each run the \
         latency at each quantile, then the median over the ok repetitions (n). `count` is the \
         ops of that kind timed per run.",
    );
    t.col("trace", "trace_name");
    t.col("threads", "replay_threads");
    t.col("allocator", "allocator");
    t.col("op", "op");
    t.col("n", "runs");
    t.col("count", "count");
    t.col("mean", "mean_ns");
    for q in TABLE_QUANTILES {
        let l = quantile_label(q);
        t.col(&l, &format!("{}_ns", l.replace('.', "_")));
    }
    for r in rows {
        let mut row = vec![
            Cell::text(&r.key.trace),
            Cell::text(r.key.threads.to_string()),
            Cell::text(&r.key.allocator),
            Cell::text(&r.op),
            Cell::text(r.runs.to_string()),
            Cell::num(r.count, fmt_count),
            Cell::num(r.mean_ns, fmt_ns),
        ];
        for q in TABLE_QUANTILES {
            row.push(Cell::num(r.quantiles.get(&q).copied(), fmt_ns));
        }
        t.rows.push(row);
    }
    t
}

/// Memory per configuration.
pub fn memory(configs: &[ConfigRow]) -> Table {
    let mut t = Table::new(
        "memory",
        "Memory: peak heap RSS, fragmentation, retained RSS, page faults",
        "Medians over the ok repetitions. Heap RSS is RSS minus the RSS before the first op. \
         Fragmentation at peak = heap RSS at the moment of peak live bytes / peak live bytes \
         (1.00× would be no overhead at all; min–max over repetitions beside it). Retained = \
         heap RSS right after the last op, 0.1 s and 1 s later (`—` when the replay's \
         `--retained-wait` was shorter). Faults are the replay child's \
         (getrusage).",
    );
    key_cols(&mut t);
    t.col("n", "runs");
    t.col("peak live", "peak_live_bytes");
    t.col("peak heap RSS", "peak_heap_rss_bytes");
    t.col("peak RSS", "peak_rss_bytes");
    t.col("frag. at peak", "frag_ratio_at_peak");
    t.col("frag. min–max", "frag_ratio_at_peak_range");
    t.col("retained", "retained_heap_rss_bytes");
    t.col("retained 0.1 s", "retained_heap_rss_100ms_bytes");
    t.col("retained 1 s", "retained_heap_rss_1s_bytes");
    t.col("minor faults", "minor_faults");
    t.col("major faults", "major_faults");
    for r in configs {
        let mut row = key_cells(r);
        row.push(Cell::text(r.runs_ok.to_string()));
        row.push(Cell::num(r.peak_live_bytes, fmt_bytes));
        row.push(Cell::num(r.peak_heap_rss_bytes, fmt_bytes));
        row.push(Cell::num(r.peak_rss_bytes, fmt_bytes));
        row.push(Cell::num(r.frag_ratio_at_peak, fmt_ratio));
        row.push(match (r.frag_ratio_at_peak_min, r.frag_ratio_at_peak_max) {
            (Some(lo), Some(hi)) => Cell {
                text: format!("{lo:.2}–{hi:.2}"),
                raw: format!("{lo}-{hi}"),
            },
            _ => Cell::num(None, fmt_ratio),
        });
        row.push(Cell::num(r.retained_heap_rss_bytes, fmt_bytes));
        row.push(Cell::num(r.retained_heap_rss_100ms_bytes, fmt_bytes));
        row.push(Cell::num(r.retained_heap_rss_1s_bytes, fmt_bytes));
        row.push(Cell::num(r.minor_faults, fmt_count));
        row.push(Cell::num(r.major_faults, fmt_count));
        t.rows.push(row);
    }
    t
}

/// The configurations of one workload (or the fallback workload), and the workload used.
fn pick_workload<'a>(configs: &'a [ConfigRow], want: &str) -> (Vec<&'a ConfigRow>, String, bool) {
    let of = |w: &str| -> Vec<&ConfigRow> {
        configs
            .iter()
            .filter(|c| c.workload == w || c.key.trace == w)
            .collect()
    };
    let rows = of(want);
    if !rows.is_empty() {
        return (rows, want.to_owned(), false);
    }
    // Fall back to the workload with the most thread counts, then the most configurations.
    let mut by: BTreeMap<&str, (BTreeSet<u32>, usize)> = BTreeMap::new();
    for c in configs {
        let e = by.entry(&c.workload).or_default();
        e.0.insert(c.key.threads);
        e.1 += 1;
    }
    match by.into_iter().max_by(|a, b| {
        (a.1.0.len(), a.1.1)
            .cmp(&(b.1.0.len(), b.1.1))
            .then(b.0.cmp(a.0))
    }) {
        Some((w, _)) => (of(w), w.to_owned(), true),
        None => (Vec::new(), want.to_owned(), true),
    }
}

fn allocator_order(rows: &[&ConfigRow]) -> Vec<String> {
    let mut names: BTreeSet<&str> = rows.iter().map(|r| r.key.allocator.as_str()).collect();
    let mut out = Vec::new();
    if names.remove(BASELINE_ALLOCATOR) {
        out.push(BASELINE_ALLOCATOR.to_owned());
    }
    out.extend(names.into_iter().map(str::to_owned));
    out
}

fn fallback_note(want: &str, used: &str, fell_back: bool) -> String {
    if fell_back {
        format!(
            " No `{want}` runs in these results: this is workload `{used}` instead (the one with \
             the most thread counts)."
        )
    } else {
        String::new()
    }
}

/// AllocatorBench's Table 1: throughput vs thread count, one column per allocator.
pub fn allocatorbench_scaling(configs: &[ConfigRow], want: &str) -> Table {
    let (rows, used, fell_back) = pick_workload(configs, want);
    let mut t = Table::new(
        "allocatorbench_scaling",
        format!("AllocatorBench Table 1: throughput (ops/s) vs thread count, {used} workload"),
        format!(
            "The seed report's scaling table, regenerated from these runs: median ops/s per \
             allocator over the ok repetitions (each trace of the workload in its own rows; the \
             fastest in bold). `best vs system` is the fastest allocator and its ratio to glibc's malloc at that thread \
             count.{}",
            fallback_note(want, &used, fell_back)
        ),
    );
    let allocs = allocator_order(&rows);
    let traces: BTreeSet<&str> = rows.iter().map(|r| r.key.trace.as_str()).collect();
    let multi = traces.len() > 1;
    if multi {
        t.col("trace", "trace_name");
    }
    t.col("Threads", "replay_threads");
    for a in &allocs {
        t.col(a, &format!("{a}_ops_per_sec"));
    }
    t.col("best vs system", "best_ratio_to_system");
    let mut grid: BTreeMap<(&str, u32), BTreeMap<&str, &ConfigRow>> = BTreeMap::new();
    for r in &rows {
        grid.entry((&r.key.trace, r.key.threads))
            .or_default()
            .insert(&r.key.allocator, r);
    }
    for ((trace, threads), by) in grid {
        let mut row = Vec::new();
        if multi {
            row.push(Cell::text(trace));
        }
        row.push(Cell::text(threads.to_string()));
        let best = by
            .values()
            .filter_map(|r| r.ops_per_sec_median.map(|m| (m, r)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        for a in &allocs {
            let v = by.get(a.as_str()).and_then(|r| r.ops_per_sec_median);
            let is_best = best.is_some_and(|b| b.1.key.allocator == *a);
            let mut c = Cell::num(v, fmt_mops);
            if is_best && by.len() > 1 {
                c.text = format!("**{}**", c.text);
            }
            row.push(c);
        }
        row.push(match best {
            Some((_, r)) if r.vs_system.is_some() => Cell {
                text: format!(
                    "{} {}",
                    r.key.allocator,
                    fmt_signed_pct(r.vs_system.unwrap_or(1.0))
                ),
                raw: raw_num(r.vs_system.unwrap_or(1.0)),
            },
            _ => Cell::num(None, fmt_ratio),
        });
        t.rows.push(row);
    }
    t
}

fn fmt_signed_pct(ratio: f64) -> String {
    let p = (ratio - 1.0) * 100.0;
    if p >= 0.0 {
        format!("+{p:.1} %")
    } else {
        format!("−{:.1} %", -p)
    }
}

/// FancyAllocator's README tables: throughput at the most threads, malloc P99/P99.9, thread
/// scaling, peak RSS.
pub fn fancy_tables(configs: &[ConfigRow], lat: &[LatencyRow], want: &str) -> Vec<Table> {
    let (rows, used, fell_back) = pick_workload(configs, want);
    let note_tail = fallback_note(want, &used, fell_back);
    // Most threads of the workload (per trace: a workload can have several traces; the first
    // trace by name is used and named).
    let trace = rows.iter().map(|r| r.key.trace.clone()).min();
    let rows: Vec<&ConfigRow> = rows
        .into_iter()
        .filter(|r| Some(&r.key.trace) == trace.as_ref())
        .collect();
    let trace = trace.unwrap_or_else(|| used.clone());
    let top = rows.iter().map(|r| r.key.threads).max().unwrap_or(0);
    let at_top: Vec<&ConfigRow> = {
        let mut v: Vec<&ConfigRow> = rows
            .iter()
            .copied()
            .filter(|r| r.key.threads == top)
            .collect();
        v.sort_by(|a, b| {
            b.ops_per_sec_median
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&a.ops_per_sec_median.unwrap_or(f64::NEG_INFINITY))
        });
        v
    };

    let mut tp = Table::new(
        "fancy_throughput",
        format!("FancyAllocator: throughput ({top} threads, trace {trace})"),
        format!(
            "The README's headline table: median Mops/s at the largest thread count of the \
             trace, fastest first, and the ratio to glibc's malloc (`system`).{note_tail}"
        ),
    );
    tp.col("Allocator", "allocator");
    tp.col("Mops/sec", "ops_per_sec_median");
    tp.col("vs glibc", "ratio_to_system");
    tp.col("CV", "ops_per_sec_cv");
    for r in &at_top {
        tp.rows.push(vec![
            Cell::text(&r.key.allocator),
            Cell {
                text: r
                    .ops_per_sec_median
                    .map(|v| format!("{:.2}", v / 1e6))
                    .unwrap_or_else(|| "—".into()),
                raw: r.ops_per_sec_median.map(raw_num).unwrap_or_default(),
            },
            Cell::num(r.vs_system, |v| format!("{v:.1}x")),
            Cell::num(r.ops_per_sec_cv, fmt_pct),
        ]);
    }

    let mut lt = Table::new(
        "fancy_latency",
        format!("FancyAllocator: latency (P99, {top} threads, trace {trace})"),
        format!(
            "Allocation latency: the `malloc` op's P99 and P99.9 (median over repetitions), \
             lowest P99 first.{note_tail}"
        ),
    );
    lt.col("Allocator", "allocator");
    lt.col("Alloc P99", "malloc_p99_ns");
    lt.col("Alloc P999", "malloc_p99_9_ns");
    lt.col("Free P99", "free_p99_ns");
    // (allocator, malloc p99, malloc p99.9, free p99)
    type LatencyCells<'a> = (&'a str, Option<f64>, Option<f64>, Option<f64>);
    let mut lrows: Vec<LatencyCells> = Vec::new();
    for r in &at_top {
        let get = |op: &str, q: u32| {
            lat.iter()
                .find(|l| l.key == r.key && l.op == op)
                .and_then(|l| l.quantiles.get(&q).copied())
        };
        lrows.push((
            &r.key.allocator,
            get("malloc", 99_000),
            get("malloc", 99_900),
            get("free", 99_000),
        ));
    }
    lrows.sort_by(|a, b| {
        a.1.unwrap_or(f64::INFINITY)
            .total_cmp(&b.1.unwrap_or(f64::INFINITY))
    });
    for (a, p99, p999, f99) in lrows {
        lt.rows.push(vec![
            Cell::text(a),
            Cell::num(p99, fmt_ns),
            Cell::num(p999, fmt_ns),
            Cell::num(f99, fmt_ns),
        ]);
    }

    let allocs = allocator_order(&rows);
    let mut sc = Table::new(
        "fancy_scaling",
        format!("FancyAllocator: thread scaling (trace {trace})"),
        format!(
            "Median ops/s per allocator and thread count; the fastest of each row in bold.{note_tail}"
        ),
    );
    sc.col("Threads", "replay_threads");
    for a in &allocs {
        sc.col(a, &format!("{a}_ops_per_sec"));
    }
    let mut grid: BTreeMap<u32, BTreeMap<&str, &ConfigRow>> = BTreeMap::new();
    for r in &rows {
        grid.entry(r.key.threads)
            .or_default()
            .insert(&r.key.allocator, r);
    }
    for (threads, by) in &grid {
        let best = by
            .values()
            .filter_map(|r| r.ops_per_sec_median.map(|m| (m, r.key.allocator.as_str())))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|b| b.1);
        let mut row = vec![Cell::text(threads.to_string())];
        for a in &allocs {
            let mut c = Cell::num(
                by.get(a.as_str()).and_then(|r| r.ops_per_sec_median),
                fmt_mops,
            );
            if best == Some(a.as_str()) && by.len() > 1 {
                c.text = format!("**{}**", c.text);
            }
            row.push(c);
        }
        sc.rows.push(row);
    }

    let mut rss = Table::new(
        "fancy_peak_rss",
        format!("FancyAllocator: peak RSS ({top} threads, trace {trace})"),
        format!(
            "Median peak RSS of the replay process (and peak heap RSS: RSS above the RSS before \
             the first op), smallest first.{note_tail}"
        ),
    );
    rss.col("Allocator", "allocator");
    rss.col("Peak RSS", "peak_rss_bytes");
    rss.col("Peak heap RSS", "peak_heap_rss_bytes");
    let mut by_rss = at_top.clone();
    by_rss.sort_by(|a, b| {
        a.peak_rss_bytes
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.peak_rss_bytes.unwrap_or(f64::INFINITY))
    });
    for r in by_rss {
        rss.rows.push(vec![
            Cell::text(&r.key.allocator),
            Cell::num(r.peak_rss_bytes, fmt_bytes),
            Cell::num(r.peak_heap_rss_bytes, fmt_bytes),
        ]);
    }
    vec![tp, lt, sc, rss]
}

/// Runs that did not finish `ok`.
pub fn failed(a: &Analysis) -> Table {
    let mut t = Table::new(
        "failed_runs",
        "Failed runs",
        "Runs whose status is not `ok`: left out of every other table and plot.",
    );
    t.col("directory", "source");
    t.col("run", "run_id");
    t.col("allocator", "allocator");
    t.col("trace", "trace_name");
    t.col("threads", "replay_threads");
    t.col("rep.", "repetition");
    t.col("status", "status");
    t.col("error", "error");
    let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
    for f in &a.failed {
        t.rows.push(vec![
            Cell::text(&f.source),
            Cell::text(&f.run_id),
            Cell::text(&f.allocator),
            Cell::text(&f.trace),
            Cell::text(opt(f.threads)),
            Cell::text(opt(f.repetition)),
            Cell::text(&f.status),
            Cell::text(&f.error),
        ]);
    }
    t
}

/// The machines and builds the runs recorded.
pub fn machines(a: &Analysis) -> Table {
    let mut t = Table::new(
        "machines",
        "Machines and builds",
        "Each distinct combination the runs recorded, with its number of runs. Results from \
         different rows are not directly comparable.",
    );
    if let Some(m) = a.machines.first() {
        for (label, _) in &m.facts {
            t.col(label, &label.to_lowercase().replace(' ', "_"));
        }
    }
    t.col("runs", "runs");
    for m in &a.machines {
        let mut row: Vec<Cell> = m.facts.iter().map(|(_, v)| Cell::text(v)).collect();
        row.push(Cell::text(m.runs.to_string()));
        t.rows.push(row);
    }
    t
}

/// Allocator versions and options.
pub fn allocators(a: &Analysis) -> Table {
    let mut t = Table::new(
        "allocators",
        "Allocator versions and options",
        "As each run recorded them.",
    );
    t.col("allocator", "allocator");
    t.col("version", "allocator_version");
    t.col("options", "allocator_options");
    t.col("runs", "runs");
    for f in &a.allocators {
        t.rows.push(vec![
            Cell::text(&f.allocator),
            Cell::text(&f.version),
            Cell::text(&f.options),
            Cell::text(f.runs.to_string()),
        ]);
    }
    t
}
