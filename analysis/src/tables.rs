//! The tables: built from an [`Analysis`], written as Markdown (numbers with units, for people)
//! and CSV (raw numbers in the units of the column names, for programs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::compute::{Analysis, LatencyRow, TABLE_QUANTILES};
use crate::reference::{self, SeedOptions};
use results_schema::summary::SummaryRow;

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

pub(crate) fn raw_num(v: f64) -> String {
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
    pub(crate) fn new(name: &str, title: impl Into<String>, note: impl Into<String>) -> Table {
        Table {
            name: name.into(),
            title: title.into(),
            note: note.into(),
            headers: Vec::new(),
            csv_headers: Vec::new(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn col(&mut self, header: &str, csv: &str) {
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

/// Every table, in report order.
pub fn all_tables(a: &Analysis, seeds: &SeedOptions) -> Vec<Table> {
    let mut t = vec![
        throughput(&a.configs),
        latency(&a.latency),
        memory(&a.configs),
    ];
    t.extend(reference::tables(a, seeds));
    if let Some(r) = ranking_across_machines(&a.configs) {
        t.push(r);
    }
    t.push(failed(a));
    t.push(beyond_peak(a));
    t.push(machines(a));
    t.push(allocators(a));
    t
}

fn key_cells(r: &SummaryRow) -> Vec<Cell> {
    vec![
        Cell::text(&r.machine),
        Cell::text(&r.trace_label),
        Cell::text(r.workload.to_string()),
        Cell::text(r.replay_threads.to_string()),
        Cell::text(&r.allocator),
    ]
}

fn key_cols(t: &mut Table) {
    t.col("machine", "machine");
    t.col("trace", "trace_name");
    t.col("workload", "workload");
    t.col("threads", "replay_threads");
    t.col("allocator", "allocator");
}

/// Throughput per allocator × workload × threads.
pub fn throughput(configs: &[SummaryRow]) -> Table {
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
        row.push(Cell::num(r.ratio_to_system, fmt_ratio));
        row.push(Cell::num(r.ratio_to_best, fmt_ratio));
        t.rows.push(row);
    }
    t
}

/// The allocators of one (trace, threads) on one machine type, fastest first (median ops/s),
/// among `common`.
fn ranking<'a>(rows: &[&'a SummaryRow], common: &BTreeSet<&'a str>) -> Vec<&'a str> {
    let mut v: Vec<(&str, f64)> = rows
        .iter()
        .filter(|r| common.contains(r.allocator.as_str()))
        .filter_map(|r| Some((r.allocator.as_str(), r.ops_per_sec_median?)))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter().map(|(a, _)| a).collect()
}

/// With several machine types: per trace and thread count, each machine type's ranking of the
/// allocators by median ops/s (over the allocators measured on every one of them), and whether
/// it is the same everywhere. Rankings are compared, never figures across machine types.
pub fn ranking_across_machines(configs: &[SummaryRow]) -> Option<Table> {
    let machines: BTreeSet<&str> = configs.iter().map(|c| c.machine.as_str()).collect();
    if machines.len() < 2 {
        return None;
    }
    let mut t = Table::new(
        "ranking_across_machines",
        "Does the ranking hold across machines?",
        "For each trace and thread count measured on several machine types: the allocators by \
         median ops/s, fastest first, on each machine type (only allocators measured on all of \
         them), and whether that order is the same on every machine type. Each machine type's \
         figures are its own; no figure is divided by another machine type's.",
    );
    t.col("trace", "trace_name");
    t.col("threads", "replay_threads");
    t.col("machine", "machine");
    t.col("ranking (fastest first)", "ranking");
    t.col("holds", "ranking_holds");
    let mut groups: BTreeMap<(&str, u32), BTreeMap<&str, Vec<&SummaryRow>>> = BTreeMap::new();
    for c in configs {
        groups
            .entry((c.trace_label.as_str(), c.replay_threads))
            .or_default()
            .entry(c.machine.as_str())
            .or_default()
            .push(c);
    }
    for ((trace, threads), per) in groups {
        if per.len() < 2 {
            continue;
        }
        let mut common: Option<BTreeSet<&str>> = None;
        for rows in per.values() {
            let s: BTreeSet<&str> = rows
                .iter()
                .filter(|r| r.ops_per_sec_median.is_some())
                .map(|r| r.allocator.as_str())
                .collect();
            common = Some(match common {
                None => s,
                Some(c) => c.intersection(&s).copied().collect(),
            });
        }
        let common = common.unwrap_or_default();
        let ranks: Vec<(&str, Vec<&str>)> = per
            .iter()
            .map(|(m, rows)| (*m, ranking(rows, &common)))
            .collect();
        let holds = ranks.windows(2).all(|w| w[0].1 == w[1].1);
        for (m, r) in ranks {
            t.rows.push(vec![
                Cell::text(trace),
                Cell::text(threads.to_string()),
                Cell::text(m),
                Cell::text(r.join(" > ")),
                Cell::text(if holds { "yes" } else { "no" }),
            ]);
        }
    }
    Some(t)
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
    t.col("machine", "machine");
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
            Cell::text(&r.key.machine),
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
pub fn memory(configs: &[SummaryRow]) -> Table {
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

/// Runs whose replay reached more live bytes than the trace ever had.
pub fn beyond_peak(a: &Analysis) -> Table {
    let mut t = Table::new(
        "runs_beyond_trace_peak",
        "Runs beyond the trace's peak live bytes",
        "`ok` runs whose measured peak live bytes exceed the trace's: their threads ran ahead of \
         the trace's interleaving (`--order deps`), so their memory figures describe a larger \
         live set than the program had. `--order window:K` or `strict` keeps the interleaving.",
    );
    t.col("run", "run_id");
    t.col("allocator", "allocator");
    t.col("trace", "trace_name");
    t.col("threads", "replay_threads");
    t.col("order", "order");
    t.col("measured peak live", "measured_peak_live_bytes");
    t.col("trace peak live", "peak_live_bytes");
    t.col("ratio", "measured_over_trace_peak");
    for r in &a.beyond_peak {
        t.rows.push(vec![
            Cell::text(&r.run_id),
            Cell::text(&r.allocator),
            Cell::text(&r.trace),
            Cell::text(r.threads.map(|v| v.to_string()).unwrap_or_default()),
            Cell::text(&r.order),
            Cell::text(r.measured.to_string()),
            Cell::text(r.trace_peak.to_string()),
            Cell::num(Some(r.measured as f64 / r.trace_peak.max(1) as f64), |x| {
                format!("{x:.3}×")
            }),
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
