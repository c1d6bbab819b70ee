//! The allocators' own statistics (introspection.parquet, replayer/SCHEMA.md): a table of the
//! headline figures at their peak and at the end of each configuration's runs, and two plots
//! per trace — what each allocator holds from the OS against what it counts in use, over time,
//! and fancy's per-class fill levels over time — and, where fancy's threads freed each other's
//! blocks, the depth of each heap's cross-thread free queue over time.
//!
//! Read beside the runs (before [`crate::compute`] consumes them): the file's rows are joined
//! to the `ok` runs of their directory by `run_id`, so a failed run's readings are left out and
//! the trace, thread count and allocator come from the run. A directory without the file (a
//! replay before it existed) simply has no rows here.

use std::collections::BTreeMap;

use polars::prelude::*;
use results_schema::Status;
use results_schema::summary::median;

use crate::error::{Error, PolarsContext};
use crate::figures::slug;
use crate::load::{Loaded, Problem, conform};
use crate::plots::{Chart, Figure, Group, Line, LineChart, XAxis, YUnit};
use crate::schema::{FileKind, SOURCE};
use crate::tables::{Cell, Table, fmt_bytes, fmt_count};

/// The figures the table shows, where an allocator has them (SCHEMA.md lists them all).
const HEADLINE: [&str; 23] = [
    "in_use_bytes",
    "resident_bytes",
    // glibc
    "arenas",
    "free_fast_bytes",
    "free_rest_bytes",
    "mmap_bytes",
    // jemalloc
    "active_bytes",
    "dirty_bytes",
    "muzzy_bytes",
    "retained_bytes",
    "tcache_bytes",
    // mimalloc
    "committed_bytes",
    "purged_bytes",
    // tcmalloc
    "pageheap_free_bytes",
    "pageheap_unmapped_bytes",
    "thread_cache_free_bytes",
    // fancy
    "cached_bytes",
    "medium_free_bytes",
    "cross_thread_frees_pending",
    "cross_thread_queue_max",
    // mempool
    "class_lock_contended",
    "global_lock_contended",
    // fancy, derived: Σ live bytes / Σ capacity bytes of the small classes
    SMALL_FILL,
];

/// fancy's per-heap cross-thread free queue depth (key: the heap's number).
const QUEUE_DEPTH: &str = "cross_thread_queue_depth";

/// fancy's small-class fill level, derived from `class_live_blocks` and
/// `class_capacity_blocks` (per mille, so it stays an integer like the other figures).
const SMALL_FILL: &str = "small_fill_permille";

/// One reading of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// ns since the first op.
    pub t_ns: u64,
    /// After the last op (else during the ops).
    pub after: bool,
    /// Whole-allocator figures.
    pub values: BTreeMap<String, i64>,
    /// fancy's classes: block size → (live blocks, capacity blocks).
    pub classes: BTreeMap<i64, (i64, i64)>,
    /// fancy's cross-thread free queues: heap number → blocks waiting.
    pub queues: BTreeMap<i64, i64>,
}

/// One run's readings, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReadings {
    /// Trace name.
    pub trace: String,
    /// Replay threads.
    pub threads: u32,
    /// Allocator.
    pub allocator: String,
    /// `run_id` (with the directory index, unique across directories).
    pub run: (u32, String),
    /// The readings.
    pub readings: Vec<Reading>,
}

/// What introspection.parquet holds for the analysis.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Introspection {
    /// Every ok run with readings, by (trace, threads, allocator, run).
    pub runs: Vec<RunReadings>,
    /// What was wrong on the way.
    pub problems: Vec<Problem>,
}

/// Reads the introspection files of `loaded`'s directories.
pub fn load(loaded: &Loaded) -> Introspection {
    let mut problems = Vec::new();
    let mut frames = Vec::new();
    for (i, dir) in loaded.sources.iter().enumerate() {
        let path = dir.join(FileKind::Introspection.file_name());
        if !path.is_file() {
            continue;
        }
        if let Some(lf) = conform(&path, FileKind::Introspection, i as u32, &mut problems) {
            frames.push(lf);
        }
    }
    let runs = match read(&loaded.runs, frames) {
        Ok(r) => r,
        Err(e) => {
            problems.push(Problem::new(
                None,
                format!("introspection files could not be read, no introspection table: {e}"),
            ));
            Vec::new()
        }
    };
    Introspection { runs, problems }
}

fn read(runs: &DataFrame, frames: Vec<LazyFrame>) -> Result<Vec<RunReadings>, Error> {
    if frames.is_empty() {
        return Ok(Vec::new());
    }
    let all = concat(frames, UnionArgs::default()).ctx("concatenating introspection files")?;
    let ok = runs
        .clone()
        .lazy()
        .filter(col("status").eq(lit(Status::Ok.name())))
        .select([
            col(SOURCE),
            col("run_id"),
            col("trace_name"),
            col("replay_threads"),
            col("allocator"),
        ]);
    let on = [col(SOURCE), col("run_id")];
    let wanted = col("key").is_null().or(col("metric")
        .eq(lit("class_live_blocks"))
        .or(col("metric").eq(lit("class_capacity_blocks")))
        .or(col("metric").eq(lit(QUEUE_DEPTH))));
    let df = all
        .filter(wanted)
        .join(ok, on.clone(), on, JoinArgs::new(JoinType::Inner))
        .sort(
            [SOURCE, "run_id", "t_ns"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()
        .ctx("introspection rows")?;
    let src = crate::compute::u32s(&df, SOURCE)?;
    let rid = crate::compute::strs(&df, "run_id")?;
    let trace = crate::compute::strs(&df, "trace_name")?;
    let threads = crate::compute::u32s(&df, "replay_threads")?;
    let alloc = crate::compute::strs(&df, "allocator")?;
    let phase = crate::compute::strs(&df, "phase")?;
    let t = crate::compute::f64s(&df, "t_ns")?;
    let metric = crate::compute::strs(&df, "metric")?;
    let key = crate::compute::f64s(&df, "key")?;
    let value = crate::compute::f64s(&df, "value")?;
    let mut out: Vec<RunReadings> = Vec::new();
    for i in 0..df.height() {
        let (Some(m), Some(v), Some(t)) = (&metric[i], value[i], t[i]) else {
            continue;
        };
        let run = (src[i].unwrap_or(0), rid[i].clone().unwrap_or_default());
        if out.last().is_none_or(|r| r.run != run) {
            out.push(RunReadings {
                trace: trace[i].clone().unwrap_or_default(),
                threads: threads[i].unwrap_or(0),
                allocator: alloc[i].clone().unwrap_or_default(),
                run,
                readings: Vec::new(),
            });
        }
        let r = out.last_mut().expect("pushed");
        let t = t as u64;
        let after = phase[i].as_deref() == Some("after");
        if r.readings
            .last()
            .is_none_or(|x| x.t_ns != t || x.after != after)
        {
            r.readings.push(Reading {
                t_ns: t,
                after,
                ..Default::default()
            });
        }
        let reading = r.readings.last_mut().expect("pushed");
        let v = v as i64;
        match (m.as_str(), key[i]) {
            ("class_live_blocks", Some(k)) => reading.classes.entry(k as i64).or_default().0 = v,
            ("class_capacity_blocks", Some(k)) => {
                reading.classes.entry(k as i64).or_default().1 = v
            }
            (QUEUE_DEPTH, Some(k)) => {
                reading.queues.insert(k as i64, v);
            }
            (_, None) => {
                reading.values.insert(m.clone(), v);
            }
            _ => {}
        }
    }
    for r in &mut out {
        for x in &mut r.readings {
            if let Some(f) = small_fill(x) {
                x.values.insert(SMALL_FILL.into(), f);
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.trace, a.threads, &a.allocator, &a.run).cmp(&(
            &b.trace,
            b.threads,
            &b.allocator,
            &b.run,
        ))
    });
    Ok(out)
}

/// Σ live bytes / Σ capacity bytes of fancy's small classes, per mille.
fn small_fill(r: &Reading) -> Option<i64> {
    let (live, cap) = r
        .classes
        .iter()
        .fold((0i64, 0i64), |(l, c), (size, (n, k))| {
            (l + n * size, c + k * size)
        });
    (cap > 0).then(|| live * 1000 / cap)
}

/// One row of the table: a configuration's figure, median over its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureRow {
    /// Trace name.
    pub trace: String,
    /// Replay threads.
    pub threads: u32,
    /// Allocator.
    pub allocator: String,
    /// The metric.
    pub metric: String,
    /// Median over runs of the run's largest reading.
    pub peak: f64,
    /// Median over runs of the reading after the last op.
    pub end: Option<f64>,
    /// Runs with the figure.
    pub runs: usize,
}

/// The headline figures per configuration (see [`HEADLINE`]).
pub fn rows(x: &Introspection) -> Vec<FigureRow> {
    type Acc = (Vec<f64>, Vec<f64>);
    let mut acc: BTreeMap<(String, u32, String, usize), Acc> = BTreeMap::new();
    for r in &x.runs {
        for (mi, m) in HEADLINE.iter().enumerate() {
            let vals: Vec<(bool, f64)> = r
                .readings
                .iter()
                .filter_map(|x| x.values.get(*m).map(|v| (x.after, *v as f64)))
                .collect();
            if vals.is_empty() {
                continue;
            }
            let e = acc
                .entry((r.trace.clone(), r.threads, r.allocator.clone(), mi))
                .or_default();
            e.0.push(vals.iter().map(|v| v.1).fold(f64::MIN, f64::max));
            if let Some(end) = vals.iter().find(|v| v.0) {
                e.1.push(end.1);
            }
        }
    }
    acc.into_iter()
        .map(
            |((trace, threads, allocator, mi), (mut peaks, mut ends))| FigureRow {
                trace,
                threads,
                allocator,
                metric: HEADLINE[mi].to_string(),
                runs: peaks.len(),
                peak: median(&mut peaks).unwrap_or(f64::NAN),
                end: median(&mut ends),
            },
        )
        .collect()
}

/// The table of [`rows`].
pub fn table(x: &Introspection) -> Option<Table> {
    let rows = rows(x);
    if rows.is_empty() {
        return None;
    }
    let mut t = Table::new(
        "allocator_introspection",
        "The allocators' own statistics: at their peak and at the end",
        "What each allocator reports about itself (introspection.parquet), read by the replay's \
         sampler during the untimed pass and once after the last op: the largest reading and \
         the one after the last op, medians over the runs. `in_use_bytes` is what the allocator \
         counts in live blocks, `resident_bytes` what it holds from the OS as it counts it; \
         their gap is the allocator's own view of its overhead. The other figures explain it \
         (glibc's free chunks, jemalloc's dirty and retained pages, tcmalloc's page-heap and \
         cache bytes, fancy's cached arenas and small-class fill level in ‰). replayer/SCHEMA.md \
         lists every figure.",
    );
    for (h, c) in [
        ("trace", "trace_name"),
        ("threads", "replay_threads"),
        ("allocator", "allocator"),
        ("metric", "metric"),
        ("at peak", "peak"),
        ("at end", "end"),
        ("runs", "runs"),
    ] {
        t.col(h, c);
    }
    for r in rows {
        let fmt = |v: f64| {
            if r.metric.ends_with("_bytes") {
                fmt_bytes(v)
            } else {
                fmt_count(v)
            }
        };
        t.rows.push(vec![
            Cell::text(&r.trace),
            Cell::text(r.threads.to_string()),
            Cell::text(&r.allocator),
            Cell::text(&r.metric),
            Cell::num(Some(r.peak), fmt),
            Cell::num(r.end, fmt),
            Cell::text(r.runs.to_string()),
        ]);
    }
    Some(t)
}

/// Most (trace, threads) groups plotted.
const MAX_GROUPS: usize = 12;

/// The plots: per (trace, threads), resident and in-use bytes over time for each allocator's
/// first run, and fancy's class fill levels over time; `colors` is the report's palette slot per
/// allocator ([`crate::figures::allocator_colors`]).
pub fn figures(x: &Introspection, colors: &BTreeMap<String, usize>) -> Vec<Figure> {
    let mut groups: BTreeMap<(&str, u32), Vec<&RunReadings>> = BTreeMap::new();
    for r in &x.runs {
        let g = groups.entry((&r.trace, r.threads)).or_default();
        // The first run of each allocator (runs are sorted).
        if !g.iter().any(|o| o.allocator == r.allocator) {
            g.push(r);
        }
    }
    let mut out = Vec::new();
    for ((trace, threads), runs) in groups.into_iter().take(MAX_GROUPS) {
        let ms = |t: u64| t as f64 / 1e6;
        let mut lines = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            let color = colors.get(&r.allocator).copied().unwrap_or(i);
            for (metric, dashed, what) in [
                ("resident_bytes", false, "resident"),
                ("in_use_bytes", true, "in use"),
            ] {
                let points: Vec<(f64, f64)> = r
                    .readings
                    .iter()
                    .filter_map(|x| x.values.get(metric).map(|v| (ms(x.t_ns), *v as f64)))
                    .collect();
                if !points.is_empty() {
                    lines.push(Line {
                        label: format!("{} {what}", r.allocator),
                        color,
                        points,
                        whiskers: Vec::new(),
                        dashed,
                        markers: true,
                    });
                }
            }
        }
        if !lines.is_empty() {
            out.push(Figure {
                stem: format!("introspection_resident_{}_t{threads}", slug(trace)),
                title: format!("Allocators' own memory figures, {trace}, {threads} threads"),
                caption: "Each allocator's own count of the memory it holds from the OS \
                          (solid) and of its bytes in live blocks (dashed), over the untimed \
                          pass of its first run; the last point is read after the last op. \
                          mimalloc's release build counts no bytes in use."
                    .into(),
                group: Group::Trace(trace.to_string()),
                chart: line_chart("bytes (allocator's own count)", YUnit::Bytes, lines),
            });
        }
        for r in runs.iter().filter(|r| {
            r.readings
                .iter()
                .any(|x| x.classes.values().any(|c| c.1 > 0))
        }) {
            let sizes: Vec<i64> = {
                let mut s: Vec<i64> = r
                    .readings
                    .iter()
                    .flat_map(|x| x.classes.iter().filter(|c| c.1.1 > 0).map(|c| *c.0))
                    .collect();
                s.sort();
                s.dedup();
                s
            };
            let lines: Vec<Line> = sizes
                .iter()
                .enumerate()
                .map(|(color, size)| Line {
                    label: format!("{size} B"),
                    color,
                    points: r
                        .readings
                        .iter()
                        .filter_map(|x| {
                            let (n, c) = x.classes.get(size)?;
                            (*c > 0).then(|| (ms(x.t_ns), *n as f64 / *c as f64))
                        })
                        .collect(),
                    whiskers: Vec::new(),
                    dashed: false,
                    markers: true,
                })
                .collect();
            out.push(Figure {
                stem: format!(
                    "introspection_fill_{}_{}_t{threads}",
                    slug(&r.allocator),
                    slug(trace)
                ),
                title: format!(
                    "{} small-class fill levels, {trace}, {threads} threads",
                    r.allocator
                ),
                caption: "Live blocks of each small size class over the blocks its pages can \
                          hold (1 = every page full), over the untimed pass of the first run. A \
                          class that stays low holds pages for few blocks: its memory is what \
                          fragmentation costs."
                    .into(),
                group: Group::Trace(trace.to_string()),
                chart: line_chart("fill level (live / capacity)", YUnit::Plain, lines),
            });
        }
        for r in runs.iter() {
            if let Some(f) = queue_figure(r, trace, threads) {
                out.push(f);
            }
        }
    }
    out
}

/// The depth of each heap's cross-thread free queue over a run's readings: one line per heap
/// whose queue ever held a block (none when no queue did).
fn queue_figure(r: &RunReadings, trace: &str, threads: u32) -> Option<Figure> {
    let heaps: Vec<i64> = {
        let mut h: Vec<i64> = r
            .readings
            .iter()
            .flat_map(|x| x.queues.iter().filter(|q| *q.1 > 0).map(|q| *q.0))
            .collect();
        h.sort();
        h.dedup();
        h
    };
    if heaps.is_empty() {
        return None;
    }
    let lines = heaps
        .iter()
        .enumerate()
        .map(|(color, heap)| Line {
            label: format!("heap {heap}"),
            color,
            points: r
                .readings
                .iter()
                .filter_map(|x| Some((x.t_ns as f64 / 1e6, *x.queues.get(heap)? as f64)))
                .collect(),
            whiskers: Vec::new(),
            dashed: false,
            markers: true,
        })
        .collect();
    Some(Figure {
        stem: format!(
            "introspection_queues_{}_{}_t{threads}",
            slug(&r.allocator),
            slug(trace)
        ),
        title: format!(
            "{} cross-thread free queues, {trace}, {threads} threads",
            r.allocator
        ),
        caption: "Blocks other threads freed into each heap's queue and its owner has not yet                   taken back, per heap (numbered newest first), over the untimed pass of the                   first run. A deep queue is memory the owner cannot reuse until it collects."
            .into(),
        group: Group::Trace(trace.to_string()),
        chart: line_chart("blocks waiting", YUnit::Plain, lines),
    })
}

fn line_chart(y_desc: &str, y_unit: YUnit, lines: Vec<Line>) -> Chart {
    Chart::Line(LineChart {
        x_desc: "time since the first op (ms)".into(),
        y_desc: y_desc.into(),
        x_axis: XAxis::Linear,
        y_unit,
        y_log: false,
        y_from_zero: true,
        y_clip: None,
        reference: None,
        lines,
        legend: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_fill_weights_classes_by_block_size() {
        let mut r = Reading::default();
        r.classes.insert(16, (100, 200));
        r.classes.insert(512, (1, 1));
        // (1600 + 512) / (3200 + 512)
        assert_eq!(small_fill(&r), Some(2112 * 1000 / 3712));
        assert_eq!(small_fill(&Reading::default()), None);
    }
}
