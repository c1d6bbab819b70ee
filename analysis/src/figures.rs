//! Which figures a report has, built from an [`Analysis`] into the chart model of
//! [`crate::plots`].
//!
//! The overview figures cover every trace at one thread count (throughput, throughput relative
//! to `system`, the heap-RSS overhead ratio, p99 latency per op kind); the per-trace figures
//! (throughput vs threads, latency curves, memory and fragmentation over time) are grouped by
//! trace.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use crate::compute::{Analysis, BASELINE_ALLOCATOR, LatencyRow, op_rank, series_groups};
use crate::plots::{
    Bar, BarChart, Chart, Figure, Group, LegendEntry, Line, LineChart, Swatch, XAxis, YUnit,
    wide_span,
};
use results_schema::summary::SummaryRow;

/// A file-name-safe form of a name.
pub fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() { "_".into() } else { out }
}

/// Palette slot per allocator: `system` first, then by name, the same in every figure.
pub fn allocator_colors(a: &Analysis) -> BTreeMap<String, usize> {
    allocator_order(a)
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect()
}

/// Allocators in legend order: `system` first, then by name.
fn allocator_order(a: &Analysis) -> Vec<String> {
    let mut names: BTreeSet<&str> = a.configs.iter().map(|c| c.allocator.as_str()).collect();
    let mut order = Vec::new();
    if names.remove(BASELINE_ALLOCATOR) {
        order.push(BASELINE_ALLOCATOR.to_owned());
    }
    order.extend(names.into_iter().map(str::to_owned));
    order
}

/// The value axis of the overview bar charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BarScale {
    /// Log when the values span more than [`crate::plots::LOG_SPAN`], else linear.
    #[default]
    Auto,
    /// Always linear (from 0).
    Linear,
    /// Always log.
    Log,
}

impl FromStr for BarScale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BarScale::Auto),
            "linear" => Ok(BarScale::Linear),
            "log" => Ok(BarScale::Log),
            _ => Err(format!("{s:?}: expected auto, linear or log")),
        }
    }
}

/// What decides which figures are made.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureOptions {
    /// Most (trace, threads) pairs with per-trace latency and over-time plots
    /// ([`series_groups`]).
    pub max_series_groups: usize,
    /// Value axis of the overview bar charts.
    pub bar_scale: BarScale,
}

impl Default for FigureOptions {
    fn default() -> Self {
        FigureOptions {
            max_series_groups: 12,
            bar_scale: BarScale::Auto,
        }
    }
}

/// The figures of a report, and what was not drawn and why.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Figures {
    /// Every figure, in report order: the overview, then per trace.
    pub figs: Vec<Figure>,
    /// Figures left out, with the reason (for the report).
    pub notes: Vec<String>,
}

/// Every figure, in report order. With several machine types each figure shows one (named in
/// its title and file name; its overview section is per machine type), never a mix: the
/// overview sections of each type in turn, then per trace each type's figures.
pub fn figures(a: &Analysis, opts: &FigureOptions) -> Figures {
    let machines: BTreeSet<&str> = a.configs.iter().map(|c| c.machine.as_str()).collect();
    let colors = allocator_colors(a);
    if machines.len() <= 1 {
        return figures_of(a, &colors, opts);
    }
    let mut overview = Vec::new();
    let mut per_trace = Vec::new();
    let mut notes = vec![format!(
        "{} machine types: each plot shows one (named in its title and file name), with the \
         overview plots grouped by machine type; the tables keep every machine type apart, and \
         `ranking_across_machines` compares their rankings.",
        machines.len()
    )];
    for m in machines {
        let mine = figures_of(&for_machine(a, m), &colors, opts);
        for mut f in mine.figs {
            f.stem = format!("{}_{}", f.stem, slug(m));
            f.title = format!("{} — {m}", f.title);
            match &mut f.group {
                Group::Overview(section) => {
                    *section = format!("{section} — {m}");
                    overview.push(f);
                }
                Group::Trace(_) => per_trace.push(f),
            }
        }
        notes.extend(mine.notes.into_iter().map(|n| format!("{m}: {n}")));
    }
    // Per trace in name order, each machine type's figures together (a stable sort).
    per_trace.sort_by(|x, y| match (&x.group, &y.group) {
        (Group::Trace(a), Group::Trace(b)) => a.cmp(b),
        _ => std::cmp::Ordering::Equal,
    });
    overview.extend(per_trace);
    Figures {
        figs: overview,
        notes,
    }
}

/// The part of an analysis made on machine type `m`.
fn for_machine(a: &Analysis, m: &str) -> Analysis {
    Analysis {
        sources: a.sources.clone(),
        runs_total: a.runs_total,
        runs_ok: a.runs_ok,
        configs: a
            .configs
            .iter()
            .filter(|c| c.machine == m)
            .cloned()
            .collect(),
        latency: a
            .latency
            .iter()
            .filter(|l| l.key.machine == m)
            .cloned()
            .collect(),
        series: a
            .series
            .iter()
            .filter(|s| s.key.machine == m)
            .cloned()
            .collect(),
        failed: a.failed.clone(),
        beyond_peak: a.beyond_peak.clone(),
        machines: a.machines.clone(),
        allocators: a.allocators.clone(),
        problems: Vec::new(),
    }
}

/// The figures of one machine type's analysis, in report order.
fn figures_of(a: &Analysis, colors: &BTreeMap<String, usize>, opts: &FigureOptions) -> Figures {
    let colors = colors.clone();
    let mut out = Figures::default();
    let threads: BTreeSet<u32> = a.configs.iter().map(|c| c.replay_threads).collect();
    let bar_log = |values: &[Option<Bar>]| match opts.bar_scale {
        BarScale::Log => Some("`--bar-scale log`"),
        BarScale::Linear => None,
        BarScale::Auto => wide_span(
            values
                .iter()
                .flatten()
                .flat_map(|b| [b.value, b.low, b.high]),
        )
        .then_some("the values span more than 30×"),
    };
    let throughput = "Throughput";
    for &n in &threads {
        out.figs.extend(bars_by_trace(
            a,
            &colors,
            n,
            &bar_log,
            BarSpec {
                stem: format!("throughput_by_workload_t{n}"),
                title: format!("Throughput by workload, {n} thread(s)"),
                section: throughput,
                value_desc: "throughput (ops/s, median; black: min–max over repetitions)",
                unit: YUnit::OpsPerSec,
                reference: None,
                base: None,
                caption: "Median ops/s of each allocator on each trace, higher is better; the \
                          black line spans the slowest and fastest repetition. The next \
                          figure shows each relative to `system`; the `throughput` table has \
                          the numbers.",
            },
            |c| {
                c.ops_per_sec_median.map(|v| Bar {
                    value: v,
                    low: c.ops_per_sec_min.unwrap_or(v),
                    high: c.ops_per_sec_max.unwrap_or(v),
                })
            },
        ));
        out.figs.extend(throughput_vs_system(a, &colors, n));
    }
    out.figs
        .extend(throughput_vs_threads_by_workload(a, &colors));
    let memory = "Memory overhead";
    for &n in &threads {
        out.figs.extend(bars_by_trace(
            a,
            &colors,
            n,
            &bar_log,
            BarSpec {
                stem: format!("overhead_ratio_t{n}"),
                title: format!("Heap-RSS overhead ratio at peak live, {n} thread(s)"),
                section: memory,
                value_desc: "heap RSS / live bytes at peak live (median; black: min–max)",
                unit: YUnit::Ratio,
                reference: Some((1.0, "1× = no overhead".to_owned())),
                base: None,
                caption: "Resident heap memory per byte the program asked for, at the moment of \
                          peak live bytes: lower is better, 1× would be no overhead (below 1 \
                          happens when pages of untouched blocks are not resident).",
            },
            |c| {
                c.frag_ratio_at_peak.map(|v| Bar {
                    value: v,
                    low: c.frag_ratio_at_peak_min.unwrap_or(v),
                    high: c.frag_ratio_at_peak_max.unwrap_or(v),
                })
            },
        ));
    }
    for &n in &threads {
        out.figs.extend(p99_by_trace(a, &colors, n, &bar_log));
    }

    // Per trace.
    let (groups, left_out) = series_groups(&a.configs, opts.max_series_groups);
    if left_out > 0 {
        out.notes.push(format!(
            "Latency curves and over-time plots are drawn for {} of the {} (trace, threads) \
             pairs (`--max-series {}`): each trace at its largest thread count, recorded traces \
             first, then by name. The overview plots and the tables cover every pair.",
            groups.len(),
            groups.len() + left_out,
            opts.max_series_groups
        ));
    }
    let traces: BTreeSet<&str> = a.configs.iter().map(|c| c.trace_label.as_str()).collect();
    let mut sparse = Vec::new();
    let mut no_frag = Vec::new();
    for trace in &traces {
        out.figs.extend(throughput_vs_threads(a, &colors, trace));
        for (_, n) in groups.iter().filter(|g| g.0 == *trace) {
            out.figs.extend(latency_curves(a, &colors, trace, *n));
        }
        for (_, n) in groups.iter().filter(|g| g.0 == *trace) {
            let Some((curves, all)) = has_series(a, trace, *n) else {
                continue;
            };
            if curves * 2 < all {
                sparse.push(format!("{trace} ({n} thr.)"));
                continue;
            }
            out.figs.extend(memory_over_time(a, &colors, trace, *n));
            match frag_over_time(a, &colors, trace, *n) {
                Some(f) => out.figs.push(f),
                None => no_frag.push(format!("{trace} ({n} thr.)")),
            }
        }
    }
    if !sparse.is_empty() {
        out.notes.push(format!(
            "No memory or fragmentation over time for {} (trace, threads) pair(s): {}. Most of \
             their runs have at most one sample during the replay (the replays were shorter \
             than the sampler period, `replay --sample-ms`), so there is no curve to draw; the `memory` \
             table and the overhead plots have their peak figures.",
            sparse.len(),
            sparse.join(", ")
        ));
    }
    if !no_frag.is_empty() {
        out.notes.push(format!(
            "No fragmentation ratio over time for {}: no sample had live bytes above 0.",
            no_frag.join(", ")
        ));
    }
    out
}

/// Of the allocators' series of (trace, threads): how many have at least two points (a
/// curve), and how many there are (None: none). Over-time plots are drawn when at least half
/// are curves.
fn has_series(a: &Analysis, trace: &str, threads: u32) -> Option<(usize, usize)> {
    let lens: Vec<usize> = a
        .series
        .iter()
        .filter(|s| s.key.trace == trace && s.key.threads == threads)
        .map(|s| s.points.len())
        .collect();
    (!lens.is_empty()).then(|| (lens.iter().filter(|&&n| n >= 2).count(), lens.len()))
}

struct BarSpec<'a> {
    stem: String,
    title: String,
    section: &'a str,
    value_desc: &'a str,
    unit: YUnit,
    reference: Option<(f64, String)>,
    base: Option<f64>,
    caption: &'a str,
}

/// Bars per trace (groups, by name) and allocator (series, legend order) at one thread count.
fn bars_by_trace(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    threads: u32,
    log: &dyn Fn(&[Option<Bar>]) -> Option<&'static str>,
    spec: BarSpec<'_>,
    value: impl Fn(&SummaryRow) -> Option<Bar>,
) -> Option<Figure> {
    let rows: Vec<&SummaryRow> = a
        .configs
        .iter()
        .filter(|c| c.replay_threads == threads)
        .collect();
    let groups = traces_of(&rows, config_id);
    let series = present_series(colors, &rows, config_id);
    let values = bar_grid(&groups, &series, &rows, config_id, |r, _| value(r));
    bar_figure(groups, series, values, log, spec)
}

/// A configuration's (trace label, allocator): its bar's group and series.
fn config_id(r: &SummaryRow) -> (&str, &str) {
    (&r.trace_label, &r.allocator)
}

/// A latency row's (trace label, allocator).
fn latency_id(l: &LatencyRow) -> (&str, &str) {
    (&l.key.trace, &l.key.allocator)
}

/// The traces `rows` cover, by name: a bar chart's groups.
fn traces_of<R>(rows: &[&R], key: impl Fn(&R) -> (&str, &str)) -> Vec<String> {
    rows.iter()
        .map(|r| key(r).0.to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The allocators `rows` cover with their colour indices, in legend (colour) order: a bar
/// chart's series.
fn present_series<R>(
    colors: &BTreeMap<String, usize>,
    rows: &[&R],
    key: impl Fn(&R) -> (&str, &str),
) -> Vec<(String, usize)> {
    let mut series: Vec<(String, usize)> = colors
        .iter()
        .filter(|(n, _)| rows.iter().any(|r| key(r).1 == n.as_str()))
        .map(|(n, &c)| (n.clone(), c))
        .collect();
    series.sort_by_key(|s| s.1);
    series
}

/// Per group (trace) and series (allocator), `value` of the row of that trace and allocator
/// (given the trace too), or `None` where `rows` has none.
fn bar_grid<R>(
    groups: &[String],
    series: &[(String, usize)],
    rows: &[&R],
    key: impl Fn(&R) -> (&str, &str),
    value: impl Fn(&R, &str) -> Option<Bar>,
) -> Vec<Vec<Option<Bar>>> {
    groups
        .iter()
        .map(|g| {
            series
                .iter()
                .map(|(al, _)| {
                    let r = rows.iter().find(|r| key(r) == (g.as_str(), al.as_str()))?;
                    value(r, g)
                })
                .collect()
        })
        .collect()
}

fn bar_figure(
    groups: Vec<String>,
    series: Vec<(String, usize)>,
    values: Vec<Vec<Option<Bar>>>,
    log: &dyn Fn(&[Option<Bar>]) -> Option<&'static str>,
    spec: BarSpec<'_>,
) -> Option<Figure> {
    if values.iter().flatten().all(Option::is_none) {
        return None;
    }
    let all: Vec<Option<Bar>> = values.iter().flatten().copied().collect();
    let why_log = log(&all);
    let log = why_log.is_some();
    let value_desc = if log {
        format!("{} — log scale", spec.value_desc)
    } else {
        spec.value_desc.to_owned()
    };
    Some(Figure {
        stem: spec.stem,
        title: spec.title,
        caption: match why_log {
            Some(why) if spec.base.is_none() => format!(
                "{} The value axis is logarithmic ({why}); bars start at its low end.",
                spec.caption,
            ),
            _ => spec.caption.to_owned(),
        },
        group: Group::Overview(spec.section.to_owned()),
        chart: Chart::Bar(BarChart {
            value_desc,
            group_desc: "trace".to_owned(),
            unit: spec.unit,
            log,
            base: spec.base,
            groups,
            series,
            values,
            reference: spec.reference,
        }),
    })
}

/// Each allocator's median throughput over `system`'s, per trace, at one thread count: bars
/// from 1× (left: slower than `system`, right: faster) on a log axis.
fn throughput_vs_system(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    threads: u32,
) -> Option<Figure> {
    let rows: Vec<&SummaryRow> = a
        .configs
        .iter()
        .filter(|c| c.replay_threads == threads)
        .collect();
    let base: BTreeMap<&str, f64> = rows
        .iter()
        .filter(|r| r.allocator == BASELINE_ALLOCATOR)
        .filter_map(|r| {
            r.ops_per_sec_median
                .filter(|v| *v > 0.0)
                .map(|v| (r.trace_label.as_str(), v))
        })
        .collect();
    if base.is_empty() {
        return None;
    }
    let groups: Vec<String> = base.keys().map(|t| (*t).to_owned()).collect();
    let mut series = present_series(colors, &rows, config_id);
    series.retain(|(n, _)| n.as_str() != BASELINE_ALLOCATOR);
    if series.is_empty() {
        return None;
    }
    let values = bar_grid(&groups, &series, &rows, config_id, |r, g| {
        let sys = base[g];
        let v = r.ops_per_sec_median?;
        Some(Bar {
            value: v / sys,
            low: r.ops_per_sec_min.unwrap_or(v) / sys,
            high: r.ops_per_sec_max.unwrap_or(v) / sys,
        })
    });
    bar_figure(
        groups,
        series,
        values,
        &|_| Some("ratios"),
        BarSpec {
            stem: format!("throughput_vs_system_t{threads}"),
            title: format!("Throughput relative to system (glibc), {threads} thread(s)"),
            section: "Throughput",
            value_desc: "median ops/s ÷ system's median ops/s",
            unit: YUnit::Ratio,
            reference: Some((1.0, "1× = system".to_owned())),
            base: Some(1.0),
            caption: "Each allocator's median throughput divided by `system`'s on the same trace \
                      and thread count (the table's `vs system`): bars to the right of 1× are \
                      faster than glibc malloc, to the left slower; log scale, so 2× and 0.5× \
                      are the same distance from 1×. Black: slowest–fastest repetition over \
                      `system`'s median.",
        },
    )
}

/// p99 latency per trace and allocator, one figure per op kind, at one thread count.
fn p99_by_trace(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    threads: u32,
    log: &dyn Fn(&[Option<Bar>]) -> Option<&'static str>,
) -> Vec<Figure> {
    let rows: Vec<_> = a
        .latency
        .iter()
        .filter(|l| l.key.threads == threads)
        .collect();
    let ops: BTreeSet<(usize, String)> = rows.iter().map(|l| op_rank(&l.op)).collect();
    let mut out = Vec::new();
    for (_, op) in ops {
        let mine: Vec<_> = rows.iter().filter(|l| l.op == op).copied().collect();
        let groups = traces_of(&mine, latency_id);
        let series = present_series(colors, &mine, latency_id);
        let values = bar_grid(&groups, &series, &mine, latency_id, |l, _| {
            let v = *l.quantiles.get(&99_000)?;
            Some(Bar {
                value: v,
                low: v,
                high: v,
            })
        });
        let caption = format!(
            "The 99th percentile of `{op}` latency in the timed pass (median over \
             repetitions), per trace and allocator: lower is better; the per-trace latency curves show the whole \
             distribution."
        );
        out.extend(bar_figure(
            groups,
            series,
            values,
            log,
            BarSpec {
                stem: format!("latency_p99_t{threads}_{}", slug(&op)),
                title: format!("{op} p99 latency by workload, {threads} thread(s)"),
                section: "Tail latency",
                value_desc: "p99 latency (median over repetitions)",
                unit: YUnit::Ns,
                reference: None,
                base: None,
                caption: &caption,
            },
        ));
    }
    out
}

/// The parameters of a synthetic trace without its thread count (`threads=`, and
/// `total_ops=`, which is derived from it): traces of one workload with equal keys differ in
/// their thread count only.
fn params_but_threads(params: &str) -> String {
    params
        .split_whitespace()
        .filter(|kv| !kv.starts_with("threads=") && !kv.starts_with("total_ops="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Throughput vs threads per synthetic workload, over traces that differ only in their thread
/// count (the lab's `t{n}/…` variants, the AllocatorBench study's `…-t{n}` traces): one
/// figure per (workload, other parameters) with at least two thread counts. A point is one
/// trace's configuration; a figure is left out when two traces would share a point (as
/// larson's variants, which all replay with the threads the workload makes itself), so no
/// point pools different traces.
fn throughput_vs_threads_by_workload(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
) -> Vec<Figure> {
    let mut families: BTreeMap<(String, String), Vec<&SummaryRow>> = BTreeMap::new();
    for c in &a.configs {
        // Without the parameters that made it (older results), a trace's family is unknown.
        let (results_schema::Workload::Synthetic(w), Some(p)) = (&c.workload, &c.trace_params)
        else {
            continue;
        };
        if !p.split_whitespace().any(|kv| kv.starts_with("threads=")) {
            continue;
        }
        families
            .entry((w.clone(), params_but_threads(p)))
            .or_default()
            .push(c);
    }
    let several = families.keys().map(|(w, _)| w).collect::<Vec<_>>();
    let mut out = Vec::new();
    for ((workload, params), rows) in &families {
        let traces: BTreeSet<&str> = rows.iter().map(|r| r.trace_label.as_str()).collect();
        let threads: BTreeSet<u32> = rows.iter().map(|r| r.replay_threads).collect();
        if traces.len() < 2 || threads.len() < 2 {
            continue; // one trace: throughput_vs_threads draws it, if replayed at several counts
        }
        let mut points: BTreeSet<(&str, u32)> = BTreeSet::new();
        if !rows
            .iter()
            .all(|r| points.insert((r.allocator.as_str(), r.replay_threads)))
        {
            continue;
        }
        let Some(chart) = throughput_threads_chart(a, colors, rows, "threads (log2 scale)") else {
            continue;
        };
        // Two families of one workload (different sizes, seeds, …) need their parameters in
        // the name to be told apart.
        let alone = several.iter().filter(|w| **w == workload).count() == 1;
        let name = if alone {
            workload.clone()
        } else {
            format!("{workload} ({params})")
        };
        out.push(Figure {
            stem: format!("throughput_vs_threads_workload_{}", slug(&name)),
            title: format!("Throughput vs threads, workload {name}"),
            caption: format!(
                "Median ops/s per allocator over {} traces of workload `{workload}` that differ \
                 only in their thread count ({}), each replayed with its own threads (log2 \
                 axis); vertical bars span the slowest and fastest repetition. Flat or falling \
                 lines are allocators that stop scaling; thread counts above the machine's \
                 cores are oversubscribed.",
                traces.len(),
                traces.iter().copied().collect::<Vec<_>>().join(", ")
            ),
            group: Group::Overview("Scaling by workload".to_owned()),
            chart,
        });
    }
    out
}

fn throughput_vs_threads(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    trace: &str,
) -> Option<Figure> {
    let rows: Vec<&SummaryRow> = a
        .configs
        .iter()
        .filter(|c| c.trace_label == trace)
        .collect();
    let nthreads: BTreeSet<u32> = rows.iter().map(|r| r.replay_threads).collect();
    if nthreads.len() < 2 {
        return None;
    }
    let chart = throughput_threads_chart(a, colors, &rows, "replay threads (log2 scale)")?;
    Some(Figure {
        stem: format!("throughput_vs_threads_{}", slug(trace)),
        title: format!("Throughput vs replay threads, {trace}"),
        caption: "Median ops/s per allocator at each replay thread count (log2 axis), \
                  higher is better; vertical bars span the slowest and fastest repetition. \
                  Flat or falling lines are allocators that stop scaling."
            .into(),
        group: Group::Trace(trace.to_owned()),
        chart,
    })
}

/// Median ops/s against replay threads (log2 axis), a line per allocator in legend order with
/// min–max whiskers, over `rows` (one configuration per allocator and thread count); None
/// when no allocator has a throughput figure.
fn throughput_threads_chart(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    rows: &[&SummaryRow],
    x_desc: &str,
) -> Option<Chart> {
    let x = |r: &SummaryRow| f64::from(r.replay_threads.max(1)).log2();
    let mut lines = Vec::new();
    for al in allocator_order(a) {
        let mut mine: Vec<&SummaryRow> =
            rows.iter().copied().filter(|r| r.allocator == al).collect();
        mine.sort_by_key(|r| r.replay_threads);
        let points: Vec<(f64, f64)> = mine
            .iter()
            .filter_map(|r| r.ops_per_sec_median.map(|m| (x(r), m)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let whiskers = mine
            .iter()
            .filter_map(|r| match (r.ops_per_sec_min, r.ops_per_sec_max) {
                (Some(lo), Some(hi)) => Some((x(r), lo, hi)),
                _ => None,
            })
            .collect();
        lines.push(Line {
            label: al.clone(),
            color: colors[&al],
            points,
            whiskers,
            dashed: false,
            markers: true,
        });
    }
    (!lines.is_empty()).then(|| {
        Chart::Line(LineChart {
            x_desc: x_desc.into(),
            y_desc: "throughput (ops/s, median)".into(),
            x_axis: XAxis::Log2,
            y_unit: YUnit::OpsPerSec,
            y_log: false,
            y_from_zero: true,
            y_clip: None,
            reference: None,
            lines,
            legend: Vec::new(),
        })
    })
}

/// −log10(1 − q), the maximum (q = 1) at 5.
pub fn nines(q_e5: u32) -> f64 {
    if q_e5 >= 100_000 {
        5.0
    } else {
        -(1.0 - q_e5 as f64 / 100_000.0).log10()
    }
}

fn latency_curves(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    trace: &str,
    threads: u32,
) -> Vec<Figure> {
    let rows: Vec<_> = a
        .latency
        .iter()
        .filter(|l| l.key.trace == trace && l.key.threads == threads)
        .collect();
    let ops: BTreeSet<(usize, String)> = rows.iter().map(|l| op_rank(&l.op)).collect();
    let mut out = Vec::new();
    for (_, op) in ops {
        let mut lines = Vec::new();
        for al in allocator_order(a) {
            let ci = colors[&al];
            let Some(r) = rows.iter().find(|l| l.op == op && l.key.allocator == al) else {
                continue;
            };
            let points: Vec<(f64, f64)> = r
                .quantiles
                .iter()
                .filter(|(q, _)| **q >= 50_000 || **q == 0)
                .map(|(&q, &v)| (nines(q), v))
                .collect();
            if points.is_empty() {
                continue;
            }
            lines.push(Line {
                label: al.clone(),
                color: ci,
                points,
                whiskers: Vec::new(),
                dashed: false,
                markers: true,
            });
        }
        if lines.is_empty() {
            continue;
        }
        out.push(Figure {
            stem: format!("latency_{}_t{threads}_{}", slug(trace), slug(&op)),
            title: format!("{op} latency percentiles, {trace}, {threads} thread(s)"),
            caption: format!(
                "Latency of `{op}` at each percentile of the timed pass (median over \
                 repetitions), log scale: the further right, the rarer; lower is better. A \
                 line that bends up late has a long tail. A minimum of 0 ns (below the timer's \
                 resolution) cannot be drawn on the log axis and is left out."
            ),
            group: Group::Trace(trace.to_owned()),
            chart: Chart::Line(LineChart {
                x_desc: "percentile (scale of 1 / (1 − q))".into(),
                y_desc: "latency (log scale)".into(),
                x_axis: XAxis::Nines,
                y_unit: YUnit::Ns,
                y_log: true,
                y_from_zero: false,
                y_clip: None,
                reference: None,
                lines,
                legend: Vec::new(),
            }),
        });
    }
    out
}

/// Time since the first op in ms or s, whichever reads better for a run that long.
fn time_axis(max_ms: f64) -> (f64, &'static str) {
    if max_ms >= 10_000.0 {
        (1000.0, "time since first op (s)")
    } else {
        (1.0, "time since first op (ms)")
    }
}

fn series_of<'a>(
    a: &'a Analysis,
    trace: &str,
    threads: u32,
    al: &str,
) -> Option<&'a crate::compute::Series> {
    a.series
        .iter()
        .find(|s| s.key.trace == trace && s.key.threads == threads && s.key.allocator == al)
}

fn memory_over_time(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    trace: &str,
    threads: u32,
) -> Option<Figure> {
    let mut lines = Vec::new();
    let mut legend = Vec::new();
    let mut max_t: f64 = 0.0;
    for al in allocator_order(a) {
        if let Some(s) = series_of(a, trace, threads, &al) {
            max_t = s.points.iter().map(|p| p.t_ms).fold(max_t, f64::max);
        }
    }
    let (tdiv, x_desc) = time_axis(max_t);
    for al in allocator_order(a) {
        let ci = colors[&al];
        let Some(s) = series_of(a, trace, threads, &al) else {
            continue;
        };
        let heap: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter_map(|p| p.heap_rss_bytes.map(|v| (p.t_ms / tdiv, v)))
            .collect();
        let live: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter_map(|p| p.live_bytes.map(|v| (p.t_ms / tdiv, v)))
            .collect();
        if heap.is_empty() && live.is_empty() {
            continue;
        }
        legend.push(LegendEntry {
            label: al.clone(),
            swatch: Swatch::Block(ci),
        });
        if !heap.is_empty() {
            lines.push(Line {
                label: format!("{al} heap RSS"),
                color: ci,
                points: heap,
                whiskers: Vec::new(),
                dashed: false,
                markers: false,
            });
        }
        if !live.is_empty() {
            lines.push(Line {
                label: format!("{al} live bytes"),
                color: ci,
                points: live,
                whiskers: Vec::new(),
                dashed: true,
                markers: false,
            });
        }
    }
    if lines.is_empty() {
        return None;
    }
    let no_live = lines
        .iter()
        .filter(|l| l.dashed)
        .all(|l| l.points.iter().all(|p| p.1 == 0.0));
    legend.push(LegendEntry {
        label: "heap RSS (solid)".into(),
        swatch: Swatch::Line {
            color: None,
            dashed: false,
        },
    });
    legend.push(LegendEntry {
        label: "live bytes (dashed)".into(),
        swatch: Swatch::Line {
            color: None,
            dashed: true,
        },
    });
    Some(Figure {
        stem: format!("memory_{}_t{threads}", slug(trace)),
        title: format!("Heap RSS and live bytes over time, {trace}, {threads} thread(s)"),
        caption: format!(
            "Solid: heap RSS (RSS above the RSS before the first op); dashed: live bytes (sum \
             of requested sizes not yet freed), per allocator (colour), median over repetitions \
             in each time bucket. The gap between a solid line and its dashed line is the \
             allocator's overhead; a line that ends earlier is a faster replay.{}",
            if no_live {
                " Live bytes are 0 in every sample of these runs, so the dashed lines lie on the \
                 time axis."
            } else {
                ""
            }
        ),
        group: Group::Trace(trace.to_owned()),
        chart: Chart::Line(LineChart {
            x_desc: x_desc.into(),
            y_desc: "heap RSS and live bytes (bytes, binary units)".into(),
            x_axis: XAxis::Linear,
            y_unit: YUnit::Bytes,
            y_log: false,
            y_from_zero: true,
            y_clip: None,
            reference: None,
            lines,
            legend,
        }),
    })
}

fn frag_over_time(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    trace: &str,
    threads: u32,
) -> Option<Figure> {
    let mut lines = Vec::new();
    let mut all = Vec::new();
    let mut max_t: f64 = 0.0;
    for al in allocator_order(a) {
        if let Some(s) = series_of(a, trace, threads, &al) {
            max_t = s.points.iter().map(|p| p.t_ms).fold(max_t, f64::max);
        }
    }
    let (tdiv, x_desc) = time_axis(max_t);
    for al in allocator_order(a) {
        let ci = colors[&al];
        let Some(s) = series_of(a, trace, threads, &al) else {
            continue;
        };
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter_map(|p| {
                p.frag_ratio
                    .filter(|v| v.is_finite())
                    .map(|v| (p.t_ms / tdiv, v))
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        all.extend(pts.iter().map(|p| p.1));
        lines.push(Line {
            label: al.clone(),
            color: ci,
            points: pts,
            whiskers: Vec::new(),
            dashed: false,
            markers: false,
        });
    }
    if lines.is_empty() {
        return None;
    }
    // Early in a run live bytes are tiny and the ratio huge: clip at 1.5× the 95th percentile.
    all.sort_by(f64::total_cmp);
    let p95 = all[((all.len() - 1) as f64 * 0.95) as usize];
    let max = *all.last().unwrap_or(&p95);
    let clip = (p95 * 1.5).max(1.5);
    let clipped = max > clip;
    Some(Figure {
        stem: format!("frag_{}_t{threads}", slug(trace)),
        title: format!("Fragmentation ratio over time, {trace}, {threads} thread(s)"),
        caption: format!(
            "Heap RSS / live bytes at each sample (median over repetitions per time bucket): \
             lower is better, 1× would be no overhead.{}",
            if clipped {
                format!(
                    " Values above {clip:.1}× (early samples, when little is live) are drawn at {clip:.1}×."
                )
            } else {
                String::new()
            }
        ),
        group: Group::Trace(trace.to_owned()),
        chart: Chart::Line(LineChart {
            x_desc: x_desc.into(),
            y_desc: "heap RSS / live bytes".into(),
            x_axis: XAxis::Linear,
            y_unit: YUnit::Ratio,
            y_log: false,
            y_from_zero: true,
            y_clip: clipped.then_some(clip),
            reference: Some((1.0, "1× = no overhead".into())),
            lines,
            legend: Vec::new(),
        }),
    })
}
