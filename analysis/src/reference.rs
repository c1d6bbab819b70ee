//! The reference tables: the seed documents' own tables (AllocatorBench's scaling table,
//! FancyAllocator's README tables), regenerated from our runs. They are specific to those
//! documents and their workloads; the generic tables are in [`crate::tables`].

use std::collections::{BTreeMap, BTreeSet};

use crate::compute::{Analysis, BASELINE_ALLOCATOR, ConfigKey, LatencyRow};
use crate::tables::{Cell, Table, fmt_bytes, fmt_mops, fmt_ns, fmt_pct, fmt_ratio, raw_num};
use results_schema::summary::SummaryRow;

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

/// The reference tables, in report order.
pub fn tables(a: &Analysis, seeds: &SeedOptions) -> Vec<Table> {
    let machines: BTreeSet<&str> = a.configs.iter().map(|c| c.machine.as_str()).collect();
    if machines.len() < 2 {
        let mut t = vec![
            allocatorbench_scaling(&a.configs, &seeds.scaling_workload),
            allocatorbench_overhead(&a.configs),
        ];
        t.extend(fancy_tables(&a.configs, &a.latency, &seeds.fancy_workload));
        return t;
    }
    // One set per machine type: a ratio never takes its two figures from different ones.
    let mut t = Vec::new();
    for m in machines {
        let configs: Vec<SummaryRow> = a
            .configs
            .iter()
            .filter(|c| c.machine == m)
            .cloned()
            .collect();
        let latency: Vec<LatencyRow> = a
            .latency
            .iter()
            .filter(|c| c.key.machine == m)
            .cloned()
            .collect();
        let mut set = vec![
            allocatorbench_scaling(&configs, &seeds.scaling_workload),
            allocatorbench_overhead(&configs),
        ];
        set.extend(fancy_tables(&configs, &latency, &seeds.fancy_workload));
        for mut table in set {
            table.name = format!("{}_{}", table.name, crate::figures::slug(m));
            table.title = format!("{} — {m}", table.title);
            t.push(table);
        }
    }
    t
}

/// The configurations of one workload (or the fallback workload), and the workload used.
fn pick_workload<'a>(configs: &'a [SummaryRow], want: &str) -> (Vec<&'a SummaryRow>, String, bool) {
    let of = |w: &str| -> Vec<&SummaryRow> {
        configs
            .iter()
            .filter(|c| c.workload.to_string() == w || c.trace_label == w)
            .collect()
    };
    let rows = of(want);
    if !rows.is_empty() {
        return (rows, want.to_owned(), false);
    }
    // Fall back to the workload with the most thread counts, then the most configurations.
    let mut by: BTreeMap<String, (BTreeSet<u32>, usize)> = BTreeMap::new();
    for c in configs {
        let e = by.entry(c.workload.to_string()).or_default();
        e.0.insert(c.replay_threads);
        e.1 += 1;
    }
    match by.into_iter().max_by(|a, b| {
        (a.1.0.len(), a.1.1)
            .cmp(&(b.1.0.len(), b.1.1))
            .then(b.0.cmp(&a.0))
    }) {
        Some((w, _)) => (of(&w), w, true),
        None => (Vec::new(), want.to_owned(), true),
    }
}

fn allocator_order(rows: &[&SummaryRow]) -> Vec<String> {
    let mut names: BTreeSet<&str> = rows.iter().map(|r| r.allocator.as_str()).collect();
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
pub fn allocatorbench_scaling(configs: &[SummaryRow], want: &str) -> Table {
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
    let traces: BTreeSet<&str> = rows.iter().map(|r| r.trace_label.as_str()).collect();
    let multi = traces.len() > 1;
    if multi {
        t.col("trace", "trace_name");
    }
    t.col("Threads", "replay_threads");
    for a in &allocs {
        t.col(a, &format!("{a}_ops_per_sec"));
    }
    t.col("best vs system", "best_ratio_to_system");
    let mut grid: BTreeMap<(&str, u32), BTreeMap<&str, &SummaryRow>> = BTreeMap::new();
    for r in &rows {
        grid.entry((&r.trace_label, r.replay_threads))
            .or_default()
            .insert(&r.allocator, r);
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
            let is_best = best.is_some_and(|b| b.1.allocator == *a);
            let mut c = Cell::num(v, fmt_mops);
            if is_best && by.len() > 1 {
                c.text = format!("**{}**", c.text);
            }
            row.push(c);
        }
        row.push(match best {
            Some((_, r)) if r.ratio_to_system.is_some() => Cell {
                text: format!(
                    "{} {}",
                    r.allocator,
                    fmt_signed_pct(r.ratio_to_system.unwrap_or(1.0))
                ),
                raw: raw_num(r.ratio_to_system.unwrap_or(1.0)),
            },
            _ => Cell::num(None, fmt_ratio),
        });
        t.rows.push(row);
    }
    t
}

/// AllocatorBench's Table 4.4: the overhead ratio the report used (usable ÷ requested bytes at
/// the peak) beside the lab's heap-RSS ÷ live bytes, per trace and allocator — for the
/// one-thread traces where some allocator has the former.
pub fn allocatorbench_overhead(configs: &[SummaryRow]) -> Table {
    let mut t = Table::new(
        "allocatorbench_overhead",
        "AllocatorBench Table 4.4: overhead ratio per workload",
        "The seed report's fragmentation table, regenerated from these runs for every \
         allocator: `usable ÷ requested` is its overhead ratio (the allocator's usable size \
         summed over the blocks live at the peak, over the bytes they asked for; its rounding \
         and per-block slack), `heap RSS ÷ live` the lab's (heap RSS at the peak over the peak \
         live bytes; also free memory the allocator keeps and its metadata). Medians over the \
         ok repetitions; one-thread traces where some allocator has the first. Multi-thread \
         traces are left out: there the replay's walk of the live blocks happens when the \
         peak's thread runs alone, and the blocks then live need not be the trace's peak set \
         the requested bytes come from (figures below 1× were seen).",
    );
    t.col("workload", "workload");
    t.col("trace", "trace_name");
    t.col("threads", "replay_threads");
    t.col("allocator", "allocator");
    t.col("usable ÷ requested", "overhead_ratio");
    t.col("heap RSS ÷ live", "frag_ratio_at_peak");
    let traces: BTreeSet<(&str, u32)> = configs
        .iter()
        .filter(|c| c.overhead_ratio.is_some() && c.replay_threads == 1)
        .map(|c| (c.trace_label.as_str(), c.replay_threads))
        .collect();
    let mut rows: Vec<&SummaryRow> = configs
        .iter()
        .filter(|c| traces.contains(&(c.trace_label.as_str(), c.replay_threads)))
        .collect();
    rows.sort_by(|a, b| {
        (a.workload.to_string(), &a.trace_label, a.replay_threads)
            .cmp(&(b.workload.to_string(), &b.trace_label, b.replay_threads))
            .then_with(|| {
                (a.allocator != BASELINE_ALLOCATOR, &a.allocator)
                    .cmp(&(b.allocator != BASELINE_ALLOCATOR, &b.allocator))
            })
    });
    for r in rows {
        t.rows.push(vec![
            Cell::text(r.workload.to_string()),
            Cell::text(&r.trace_label),
            Cell::text(r.replay_threads.to_string()),
            Cell::text(&r.allocator),
            Cell::num(r.overhead_ratio, |v| format!("{v:.3}×")),
            Cell::num(r.frag_ratio_at_peak, fmt_ratio),
        ]);
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
pub fn fancy_tables(configs: &[SummaryRow], lat: &[LatencyRow], want: &str) -> Vec<Table> {
    let (rows, used, fell_back) = pick_workload(configs, want);
    let note_tail = fallback_note(want, &used, fell_back);
    // Most threads of the workload (per trace: a workload can have several traces; the first
    // trace by name is used and named).
    let trace = rows.iter().map(|r| r.trace_label.clone()).min();
    let rows: Vec<&SummaryRow> = rows
        .into_iter()
        .filter(|r| Some(&r.trace_label) == trace.as_ref())
        .collect();
    let trace = trace.unwrap_or_else(|| used.clone());
    let top = rows.iter().map(|r| r.replay_threads).max().unwrap_or(0);
    let at_top: Vec<&SummaryRow> = {
        let mut v: Vec<&SummaryRow> = rows
            .iter()
            .copied()
            .filter(|r| r.replay_threads == top)
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
            Cell::text(&r.allocator),
            Cell {
                text: r
                    .ops_per_sec_median
                    .map(|v| format!("{:.2}", v / 1e6))
                    .unwrap_or_else(|| "—".into()),
                raw: r.ops_per_sec_median.map(raw_num).unwrap_or_default(),
            },
            Cell::num(r.ratio_to_system, |v| format!("{v:.1}x")),
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
                .find(|l| l.key == ConfigKey::of(r) && l.op == op)
                .and_then(|l| l.quantiles.get(&q).copied())
        };
        lrows.push((
            &r.allocator,
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
    let mut grid: BTreeMap<u32, BTreeMap<&str, &SummaryRow>> = BTreeMap::new();
    for r in &rows {
        grid.entry(r.replay_threads)
            .or_default()
            .insert(&r.allocator, r);
    }
    for (threads, by) in &grid {
        let best = by
            .values()
            .filter_map(|r| r.ops_per_sec_median.map(|m| (m, r.allocator.as_str())))
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
            Cell::text(&r.allocator),
            Cell::num(r.peak_rss_bytes, fmt_bytes),
            Cell::num(r.peak_heap_rss_bytes, fmt_bytes),
        ]);
    }
    vec![tp, lt, sc, rss]
}
