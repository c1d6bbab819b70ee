//! Which figures a report has, built from an [`Analysis`] into the chart model of
//! [`crate::plots`].

use std::collections::{BTreeMap, BTreeSet};

use crate::compute::{Analysis, BASELINE_ALLOCATOR, ConfigRow, op_rank, series_groups};
use crate::plots::{Bar, BarChart, Chart, Figure, Line, LineChart, XAxis, YUnit};

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
    let mut names: BTreeSet<&str> = a.configs.iter().map(|c| c.key.allocator.as_str()).collect();
    let mut order = Vec::new();
    if names.remove(BASELINE_ALLOCATOR) {
        order.push(BASELINE_ALLOCATOR);
    }
    order.extend(names);
    order
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n.to_owned(), i))
        .collect()
}

const MB: f64 = 1024.0 * 1024.0;

/// Every figure, in report order.
pub fn figures(a: &Analysis, max_series_groups: usize) -> Vec<Figure> {
    let colors = allocator_colors(a);
    let mut out = Vec::new();
    let threads: BTreeSet<u32> = a.configs.iter().map(|c| c.key.threads).collect();
    for &n in &threads {
        out.extend(bars_by_trace(
            a,
            &colors,
            n,
            &format!("throughput_by_workload_t{n}"),
            &format!("Throughput by workload, {n} thread(s)"),
            "M ops/s (median; bar: min–max over repetitions)",
            YUnit::Plain,
            |c| {
                c.ops_per_sec_median.map(|v| Bar {
                    value: v / 1e6,
                    low: c.ops_per_sec_min.unwrap_or(v) / 1e6,
                    high: c.ops_per_sec_max.unwrap_or(v) / 1e6,
                })
            },
            None,
            "Median ops/s of each allocator on each trace, higher is better; the black bar spans \
             the slowest and fastest repetition.",
        ));
    }
    let traces: BTreeSet<&str> = a.configs.iter().map(|c| c.key.trace.as_str()).collect();
    for trace in &traces {
        if let Some(f) = throughput_vs_threads(a, &colors, trace) {
            out.push(f);
        }
    }
    let (groups, _) = series_groups(&a.configs, max_series_groups);
    for (trace, n) in &groups {
        out.extend(latency_curves(a, &colors, trace, *n));
    }
    for (trace, n) in &groups {
        out.extend(memory_over_time(a, &colors, trace, *n));
        out.extend(frag_over_time(a, &colors, trace, *n));
    }
    for &n in &threads {
        out.extend(bars_by_trace(
            a,
            &colors,
            n,
            &format!("overhead_ratio_t{n}"),
            &format!("Heap-RSS overhead ratio at peak live, {n} thread(s)"),
            "heap RSS / live bytes at peak live (median; bar: min–max)",
            YUnit::Ratio,
            |c| {
                c.frag_ratio_at_peak.map(|v| Bar {
                    value: v,
                    low: c.frag_ratio_at_peak_min.unwrap_or(v),
                    high: c.frag_ratio_at_peak_max.unwrap_or(v),
                })
            },
            Some((1.0, "1.0× = no overhead".to_owned())),
            "Resident heap memory per byte the program asked for, at the moment of peak live \
             bytes: lower is better, 1.0× would be no overhead (below 1 happens when pages of \
             untouched blocks are not resident).",
        ));
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn bars_by_trace(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    threads: u32,
    stem: &str,
    title: &str,
    y_desc: &str,
    y_unit: YUnit,
    value: impl Fn(&ConfigRow) -> Option<Bar>,
    reference: Option<(f64, String)>,
    caption: &str,
) -> Option<Figure> {
    let rows: Vec<&ConfigRow> = a
        .configs
        .iter()
        .filter(|c| c.key.threads == threads)
        .collect();
    let groups: Vec<String> = rows
        .iter()
        .map(|c| c.key.trace.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let series: Vec<(String, usize)> = colors
        .iter()
        .filter(|(n, _)| rows.iter().any(|r| &r.key.allocator == *n))
        .map(|(n, &c)| (n.clone(), c))
        .collect::<Vec<_>>();
    let mut series = series;
    series.sort_by_key(|s| s.1);
    let values: Vec<Vec<Option<Bar>>> = groups
        .iter()
        .map(|g| {
            series
                .iter()
                .map(|(al, _)| {
                    rows.iter()
                        .find(|r| &r.key.trace == g && &r.key.allocator == al)
                        .and_then(|r| value(r))
                })
                .collect()
        })
        .collect();
    if values.iter().flatten().all(Option::is_none) {
        return None;
    }
    Some(Figure {
        stem: stem.to_owned(),
        title: title.to_owned(),
        caption: caption.to_owned(),
        chart: Chart::Bar(BarChart {
            y_desc: y_desc.to_owned(),
            x_desc: "trace".to_owned(),
            y_unit,
            groups,
            series,
            values,
            reference,
        }),
    })
}

fn throughput_vs_threads(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    trace: &str,
) -> Option<Figure> {
    let rows: Vec<&ConfigRow> = a.configs.iter().filter(|c| c.key.trace == trace).collect();
    let nthreads: BTreeSet<u32> = rows.iter().map(|r| r.key.threads).collect();
    if nthreads.len() < 2 {
        return None;
    }
    let mut lines = Vec::new();
    for (al, &ci) in colors {
        let mine: Vec<&&ConfigRow> = rows.iter().filter(|r| &r.key.allocator == al).collect();
        let x = |r: &ConfigRow| (r.key.threads.max(1) as f64).log2();
        let points: Vec<(f64, f64)> = mine
            .iter()
            .filter_map(|r| r.ops_per_sec_median.map(|m| (x(r), m / 1e6)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let whiskers = mine
            .iter()
            .filter_map(|r| match (r.ops_per_sec_min, r.ops_per_sec_max) {
                (Some(lo), Some(hi)) => Some((x(r), lo / 1e6, hi / 1e6)),
                _ => None,
            })
            .collect();
        lines.push(Line {
            label: al.clone(),
            color: ci,
            points,
            whiskers,
            dashed: false,
            markers: true,
        });
    }
    if lines.is_empty() {
        return None;
    }
    Some(Figure {
        stem: format!("throughput_vs_threads_{}", slug(trace)),
        title: format!("Throughput vs replay threads, {trace}"),
        caption: "Median ops/s per allocator at each replay thread count (log2 axis), \
                  higher is better; vertical bars span the slowest and fastest repetition. \
                  Flat or falling lines are allocators that stop scaling."
            .into(),
        chart: Chart::Line(LineChart {
            x_desc: "replay threads".into(),
            y_desc: "throughput (M ops/s, median)".into(),
            x_axis: XAxis::Log2,
            y_unit: YUnit::Plain,
            y_log: false,
            y_from_zero: true,
            y_clip: None,
            reference: None,
            lines,
        }),
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
        for (al, &ci) in colors {
            let Some(r) = rows.iter().find(|l| l.op == op && &l.key.allocator == al) else {
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
                 line that bends up late has a long tail."
            ),
            chart: Chart::Line(LineChart {
                x_desc: "percentile (log scale of 1 / (1 − q))".into(),
                y_desc: "latency (log scale)".into(),
                x_axis: XAxis::Nines,
                y_unit: YUnit::Ns,
                y_log: true,
                y_from_zero: false,
                y_clip: None,
                reference: None,
                lines,
            }),
        });
    }
    out
}

fn memory_over_time(
    a: &Analysis,
    colors: &BTreeMap<String, usize>,
    trace: &str,
    threads: u32,
) -> Option<Figure> {
    let mut lines = Vec::new();
    for (al, &ci) in colors {
        let Some(s) = a
            .series
            .iter()
            .find(|s| s.key.trace == trace && s.key.threads == threads && &s.key.allocator == al)
        else {
            continue;
        };
        let heap: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter_map(|p| p.heap_rss_bytes.map(|v| (p.t_ms, v / MB)))
            .collect();
        let live: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter_map(|p| p.live_bytes.map(|v| (p.t_ms, v / MB)))
            .collect();
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
    Some(Figure {
        stem: format!("memory_{}_t{threads}", slug(trace)),
        title: format!("Heap RSS and live bytes over time, {trace}, {threads} thread(s)"),
        caption: "Solid: heap RSS (RSS above the RSS before the first op); dashed: live bytes \
                  (sum of requested sizes not yet freed), per allocator, median over \
                  repetitions in each time bucket. The gap between a solid line and its dashed \
                  line is the allocator's overhead; a line that ends earlier is a faster \
                  replay."
            .into(),
        chart: Chart::Line(LineChart {
            x_desc: "time since first op (ms)".into(),
            y_desc: "MiB".into(),
            x_axis: XAxis::Linear,
            y_unit: YUnit::Plain,
            y_log: false,
            y_from_zero: true,
            y_clip: None,
            reference: None,
            lines,
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
    for (al, &ci) in colors {
        let Some(s) = a
            .series
            .iter()
            .find(|s| s.key.trace == trace && s.key.threads == threads && &s.key.allocator == al)
        else {
            continue;
        };
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter_map(|p| p.frag_ratio.filter(|v| v.is_finite()).map(|v| (p.t_ms, v)))
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
             lower is better, 1.0× would be no overhead.{}",
            if clipped {
                format!(
                    " Values above {clip:.1}× (early samples, when little is live) are drawn at {clip:.1}×."
                )
            } else {
                String::new()
            }
        ),
        chart: Chart::Line(LineChart {
            x_desc: "time since first op (ms)".into(),
            y_desc: "heap RSS / live bytes".into(),
            x_axis: XAxis::Linear,
            y_unit: YUnit::Ratio,
            y_log: false,
            y_from_zero: true,
            y_clip: clipped.then_some(clip),
            reference: Some((1.0, "1.0× = no overhead".into())),
            lines,
        }),
    })
}
