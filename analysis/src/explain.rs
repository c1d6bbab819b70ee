//! The report's explanation page ("Why the allocators differ"): one or two workloads where the
//! allocators differ most (by ≥ 2× where any do), walked through with pictures — the trace's
//! heap map and size classes, each allocator's OS memory calls and bytes, OS calls over time,
//! and hardware/scheduler counters per op — and sentences made from the measured numbers
//! (which allocator made how many mmap calls, took how many page faults…), never fixed claims.
//!
//! It reads the runs' `os_*`, `perf_*` and rusage columns and the time series' `os_calls` and
//! `os_net_mapped_bytes` (replayer/SCHEMA.md). The trace of a run is found at its `trace_path`
//! or, by file name, in the `--traces` directories, and is used only when its content hash is
//! the run's `trace_hash`. When a result directory holds `heapmaps/<trace>/` (`replay
//! --heap-map`), "The heap under each allocator" draws each allocator's address trace with its
//! OS mappings overlaid ([`crate::heapmap`]), if its header's trace hash is the runs'.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::compute::{Labels, f64s, strs, u32s};
use crate::error::{Error, PolarsContext};
use crate::heapmap::{HeapMap, HeapMapOptions, TimeAxis};
use crate::load::{Loaded, Problem};
use crate::plots::{
    self, Bar, BarChart, Chart, Figure, Group, Line, LineChart, Rendered, XAxis, YUnit, fmt_value,
};
use crate::report::esc;
use crate::schema::SOURCE;

/// A difference at least this large (largest ÷ smallest median) makes a workload worth
/// explaining.
pub const NOTABLE: f64 = 2.0;

/// Most workloads the page walks through.
pub const MAX_WORKLOADS: usize = 2;

/// The OS memory calls of the runs table, in its order.
pub const OS_CALLS: [&str; 5] = ["mmap", "munmap", "mremap", "brk", "madvise"];

/// Counters per op: (column, label). `perf_*` from perf_event_open, the rest from getrusage.
pub const COUNTERS: [(&str, &str); 10] = [
    ("perf_page_faults", "page faults"),
    ("perf_context_switches", "context switches"),
    ("perf_cpu_migrations", "CPU migrations"),
    ("perf_instructions", "instructions"),
    ("perf_cycles", "cycles"),
    ("perf_cache_misses", "cache misses"),
    ("perf_dtlb_load_misses", "dTLB load misses"),
    ("minor_faults", "minor faults (rusage)"),
    ("voluntary_ctx_switches", "voluntary switches (rusage)"),
    ("involuntary_ctx_switches", "involuntary switches (rusage)"),
];

/// One `ok` run's figures the page uses.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// Result directory index.
    pub source: u32,
    /// `run_id`.
    pub run_id: String,
    /// The trace's label (as in the tables).
    pub trace: String,
    /// `trace_name` (names the heap maps' directory).
    pub trace_name: Option<String>,
    /// `trace_hash`.
    pub trace_hash: Option<String>,
    /// `trace_path`.
    pub trace_path: Option<String>,
    /// `workload`.
    pub workload: String,
    /// Replay threads.
    pub threads: u32,
    /// Allocator.
    pub allocator: String,
    /// Ops replayed.
    pub ops: Option<f64>,
    /// ops/s.
    pub ops_per_sec: Option<f64>,
    /// Peak heap RSS.
    pub peak_heap_rss: Option<f64>,
    /// Peak live bytes.
    pub peak_live: Option<f64>,
    /// Calls per [`OS_CALLS`] entry.
    pub os_calls: [Option<f64>; 5],
    /// Bytes per [`OS_CALLS`] entry.
    pub os_bytes: [Option<f64>; 5],
    /// madvise by advice (`advice=calls/bytes …`).
    pub madvise_advice: Option<String>,
    /// The kernel's count of each [`OS_CALLS`] system call (the whole child, glibc's internal
    /// calls included).
    pub kernel_calls: [Option<f64>; 5],
    /// Per [`COUNTERS`] entry.
    pub counters: [Option<f64>; 10],
    /// Why perf counters could not count.
    pub perf_unavailable: Option<String>,
}

/// What the page is made from, read before the aggregation.
pub struct Facts {
    /// `ok` runs.
    pub runs: Vec<RunFacts>,
    timeseries: Option<LazyFrame>,
    sources: Vec<PathBuf>,
}

/// Reads the runs' figures (small: one row per run).
pub fn facts(loaded: &Loaded) -> Result<Facts, Error> {
    let df = &loaded.runs;
    let labels = Labels::of(df)?;
    let status = strs(df, "status")?;
    let (name, hash, path) = (
        strs(df, "trace_name")?,
        strs(df, "trace_hash")?,
        strs(df, "trace_path")?,
    );
    let (run_id, workload, alloc) = (
        strs(df, "run_id")?,
        strs(df, "workload")?,
        strs(df, "allocator")?,
    );
    let src = u32s(df, SOURCE)?;
    let threads = u32s(df, "replay_threads")?;
    let f = |n: &str| f64s(df, n);
    let (ops, ops_s, rss, live) = (
        f("ops")?,
        f("ops_per_sec")?,
        f("peak_heap_rss_bytes")?,
        f("peak_live_bytes")?,
    );
    let calls: Vec<Vec<Option<f64>>> = OS_CALLS
        .iter()
        .map(|c| f(&format!("os_{c}_calls")))
        .collect::<Result<_, _>>()?;
    let bytes: Vec<Vec<Option<f64>>> = OS_CALLS
        .iter()
        .map(|c| f(&format!("os_{c}_bytes")))
        .collect::<Result<_, _>>()?;
    let counters: Vec<Vec<Option<f64>>> = COUNTERS
        .iter()
        .map(|(c, _)| f(c))
        .collect::<Result<_, _>>()?;
    let kernel: Vec<Vec<Option<f64>>> = OS_CALLS
        .iter()
        .map(|c| f(&format!("kernel_{c}_calls")))
        .collect::<Result<_, _>>()?;
    let advice = strs(df, "os_madvise_advice")?;
    let unavailable = strs(df, "perf_unavailable")?;
    let mut runs = Vec::new();
    for i in 0..df.height() {
        if status[i].as_deref() != Some("ok") {
            continue;
        }
        runs.push(RunFacts {
            source: src[i].unwrap_or(0),
            run_id: run_id[i].clone().unwrap_or_default(),
            trace: labels.get(&name[i], &hash[i]),
            trace_name: name[i].clone(),
            trace_hash: hash[i].clone(),
            trace_path: path[i].clone(),
            workload: workload[i]
                .clone()
                .or_else(|| name[i].clone())
                .unwrap_or_default(),
            threads: threads[i].unwrap_or(0),
            allocator: alloc[i].clone().unwrap_or_default(),
            ops: ops[i],
            ops_per_sec: ops_s[i],
            peak_heap_rss: rss[i],
            peak_live: live[i],
            os_calls: std::array::from_fn(|k| calls[k][i]),
            os_bytes: std::array::from_fn(|k| bytes[k][i]),
            madvise_advice: advice[i].clone().filter(|s| !s.is_empty()),
            kernel_calls: std::array::from_fn(|k| kernel[k][i]),
            counters: std::array::from_fn(|k| counters[k][i]),
            perf_unavailable: unavailable[i].clone().filter(|s| !s.is_empty()),
        });
    }
    Ok(Facts {
        runs,
        timeseries: loaded.timeseries.clone(),
        sources: loaded.sources.clone(),
    })
}

/// The median of the finite values (the summary rule's [`results_schema::summary::median`]).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    results_schema::summary::median(&mut v)
}

/// One allocator's medians in a workload.
#[derive(Debug, Clone)]
pub struct AllocMedians {
    /// Allocator.
    pub allocator: String,
    /// Its `ok` runs in this workload.
    pub runs: Vec<usize>,
    /// Median ops/s.
    pub ops_per_sec: Option<f64>,
    /// Median peak heap RSS.
    pub peak_heap_rss: Option<f64>,
    /// Median peak live bytes.
    pub peak_live: Option<f64>,
    /// Median calls per OS call kind.
    pub os_calls: [Option<f64>; 5],
    /// Median bytes per OS call kind.
    pub os_bytes: [Option<f64>; 5],
    /// Median kernel-counted calls per OS call kind.
    pub kernel_calls: [Option<f64>; 5],
    /// Median counter per op, per [`COUNTERS`] entry.
    pub per_op: [Option<f64>; 10],
    /// The madvise advice of its first run.
    pub madvise_advice: Option<String>,
}

impl AllocMedians {
    /// Median OS calls of every kind together.
    pub fn os_total(&self) -> Option<f64> {
        let v: Vec<f64> = self.os_calls.iter().flatten().copied().collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }

    /// Median kernel-counted OS calls of every kind together.
    pub fn kernel_total(&self) -> Option<f64> {
        let v: Vec<f64> = self.kernel_calls.iter().flatten().copied().collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }

    /// Page faults: perf's, else rusage's minor faults (and which).
    pub fn faults(&self, a: &Workload) -> Option<(f64, &'static str)> {
        let ops = a.ops?;
        self.per_op[0]
            .map(|f| (f * ops, "page faults (perf)"))
            .or(self.per_op[7].map(|f| (f * ops, "minor faults (rusage)")))
    }
}

/// One workload (trace × replay threads) and its allocators.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Trace label.
    pub trace: String,
    /// Workload name.
    pub workload: String,
    /// Replay threads.
    pub threads: u32,
    /// Ops per run (median).
    pub ops: Option<f64>,
    /// Per allocator, in name order with `system` first.
    pub allocs: Vec<AllocMedians>,
    /// The largest ratio (largest ÷ smallest median) and what it is of.
    pub spread: (f64, &'static str),
}

/// Groups the runs into workloads and computes the medians.
pub fn workloads(facts: &Facts) -> Vec<Workload> {
    let mut groups: BTreeMap<(String, u32), BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    for (i, r) in facts.runs.iter().enumerate() {
        groups
            .entry((r.trace.clone(), r.threads))
            .or_default()
            .entry(r.allocator.clone())
            .or_default()
            .push(i);
    }
    let mut out = Vec::new();
    for ((trace, threads), by_alloc) in groups {
        let all: Vec<usize> = by_alloc.values().flatten().copied().collect();
        let ops = median(all.iter().filter_map(|&i| facts.runs[i].ops).collect());
        let mut allocs: Vec<AllocMedians> = by_alloc
            .into_iter()
            .map(|(allocator, runs)| {
                let m = |f: &dyn Fn(&RunFacts) -> Option<f64>| {
                    median(runs.iter().filter_map(|&i| f(&facts.runs[i])).collect())
                };
                AllocMedians {
                    ops_per_sec: m(&|r| r.ops_per_sec),
                    peak_heap_rss: m(&|r| r.peak_heap_rss),
                    peak_live: m(&|r| r.peak_live),
                    os_calls: std::array::from_fn(|k| m(&|r| r.os_calls[k])),
                    os_bytes: std::array::from_fn(|k| m(&|r| r.os_bytes[k])),
                    kernel_calls: std::array::from_fn(|k| m(&|r| r.kernel_calls[k])),
                    per_op: std::array::from_fn(|k| {
                        m(&|r| Some(r.counters[k]? / r.ops.filter(|o| *o > 0.0)?))
                    }),
                    madvise_advice: runs
                        .iter()
                        .find_map(|&i| facts.runs[i].madvise_advice.clone()),
                    allocator,
                    runs,
                }
            })
            .collect();
        allocs.sort_by_key(|a| {
            (
                a.allocator != results_schema::BASELINE_ALLOCATOR,
                a.allocator.clone(),
            )
        });
        if allocs.len() < 2 {
            continue;
        }
        let mut w = Workload {
            workload: facts.runs[all[0]].workload.clone(),
            trace,
            threads,
            ops,
            allocs,
            spread: (1.0, "throughput"),
        };
        w.spread = [
            ("throughput", ratio(&w, |a| a.ops_per_sec)),
            ("peak heap RSS", ratio(&w, |a| a.peak_heap_rss)),
            ("page faults", ratio(&w, |a| a.faults(&w).map(|f| f.0))),
        ]
        .into_iter()
        .filter_map(|(n, r)| Some((r?.0, n)))
        .fold((1.0, "throughput"), |b, x| if x.0 > b.0 { x } else { b });
        out.push(w);
    }
    out
}

/// Largest ÷ smallest positive value over the allocators, with the two allocators' indices.
fn ratio(w: &Workload, f: impl Fn(&AllocMedians) -> Option<f64>) -> Option<(f64, usize, usize)> {
    let v: Vec<(usize, f64)> = w
        .allocs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| Some((i, f(a).filter(|v| *v > 0.0 && v.is_finite())?)))
        .collect();
    let hi = v.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let lo = v.iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
    (v.len() >= 2).then_some((hi.1 / lo.1, hi.0, lo.0))
}

/// The workloads the page explains: those with the largest spread, at most
/// [`MAX_WORKLOADS`], distinct traces, those at ≥ [`NOTABLE`] first (if none is, the largest).
pub fn choose(ws: &[Workload]) -> Vec<&Workload> {
    let mut v: Vec<&Workload> = ws.iter().collect();
    v.sort_by(|a, b| b.spread.0.total_cmp(&a.spread.0));
    let mut out: Vec<&Workload> = Vec::new();
    for w in v {
        if out.len() == MAX_WORKLOADS {
            break;
        }
        if out.iter().any(|o| o.trace == w.trace) {
            continue;
        }
        if !out.is_empty() && w.spread.0 < NOTABLE {
            break;
        }
        out.push(w);
    }
    out
}

/// Options of the page.
#[derive(Debug, Clone, Default)]
pub struct ExplainOptions {
    /// Directories searched for trace files (by name), besides each run's `trace_path`.
    pub trace_dirs: Vec<PathBuf>,
    /// The heap map's time axis.
    pub time: TimeAxis,
    /// Draw pictures (off: text only).
    pub plots: bool,
}

/// A figure of the page, drawn.
#[derive(Debug, Clone)]
pub struct Picture {
    /// File stem under `plots/`.
    pub stem: String,
    /// How to read it.
    pub caption: String,
    /// The files.
    pub files: Option<Rendered>,
}

/// One workload's part of the page.
#[derive(Debug, Clone)]
pub struct Part {
    /// Heading.
    pub title: String,
    /// Paragraphs (Markdown inline: `code`, **bold**).
    pub text: Vec<String>,
    /// Pictures, in order.
    pub pictures: Vec<Picture>,
    /// Sub-sections after the pictures ("The heap under each allocator").
    pub sections: Vec<Section>,
}

/// A sub-section of a workload's part.
#[derive(Debug, Clone)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// Paragraphs (Markdown inline).
    pub text: Vec<String>,
    /// Pictures, in order.
    pub pictures: Vec<Picture>,
}

/// The page.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Intro paragraphs.
    pub intro: Vec<String>,
    /// One per workload explained.
    pub parts: Vec<Part>,
}

fn b(v: f64) -> String {
    fmt_value(YUnit::Bytes, v)
}

fn n(v: f64) -> String {
    if v.abs() >= 1e4 {
        fmt_value(YUnit::OpsPerSec, v).trim().to_owned()
    } else if v == v.round() {
        format!("{v:.0}")
    } else {
        fmt_value(YUnit::Plain, v)
    }
}

fn x(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}×")
    } else {
        format!("{v:.1}×")
    }
}

/// The trace file of a workload's runs whose content hash matches, if there is one.
fn find_trace(facts: &Facts, w: &Workload, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    let r = &facts.runs[w.allocs[0].runs[0]];
    let Some(path) = r.trace_path.as_deref().filter(|p| !p.is_empty()) else {
        return Err("the runs do not record a trace path".into());
    };
    let path = Path::new(path);
    let mut candidates = vec![path.to_path_buf()];
    if path.is_relative()
        && let Some(src) = facts.sources.get(r.source as usize)
    {
        candidates.push(src.join(path));
    }
    if let Some(file) = path.file_name() {
        for d in dirs {
            candidates.push(d.join(file));
            candidates.push(d.join(format!("t{}", w.threads)).join(file));
        }
    }
    let mut changed = None;
    for c in candidates.iter().filter(|c| c.is_file()) {
        match (&r.trace_hash, results_schema::trace_hash_of_file(c)) {
            (Some(want), Ok(have)) if *want == have => return Ok(c.clone()),
            (None, Ok(_)) => return Ok(c.clone()),
            (Some(_), Ok(_)) => changed = Some(c.clone()),
            (_, Err(e)) => return Err(format!("{}: {e}", c.display())),
        }
    }
    Err(match changed {
        Some(c) => format!(
            "{} is not the trace that was replayed (its content hash differs from the runs' \
             trace_hash {})",
            c.display(),
            r.trace_hash.as_deref().unwrap_or("")
        ),
        None => format!(
            "trace file {} not found (pass --traces DIR with the directory holding it)",
            path.display()
        ),
    })
}

impl Page {
    /// The files of every picture drawn, in page order.
    pub fn rendered(&self) -> impl Iterator<Item = Rendered> + '_ {
        self.parts
            .iter()
            .flat_map(|p| {
                p.pictures
                    .iter()
                    .chain(p.sections.iter().flat_map(|s| &s.pictures))
            })
            .filter_map(|p| p.files.clone())
    }
}

/// Builds the page: chooses the workloads, reads their traces and time series, draws the
/// pictures into `plots`, and writes the sentences.
pub fn page(
    facts: &Facts,
    opts: &ExplainOptions,
    plots_dir: &Path,
    problems: &mut Vec<Problem>,
) -> Result<Page, Error> {
    let ws = workloads(facts);
    let chosen = choose(&ws);
    let mut page = Page::default();
    match chosen.first() {
        None => {
            page.intro.push(
                "No workload was replayed with two or more allocators (with `ok` runs): \
                 nothing to compare."
                    .into(),
            );
            return Ok(page);
        }
        Some(w) if w.spread.0 < NOTABLE => page.intro.push(format!(
            "No workload here has allocators {} apart in throughput, peak heap RSS or page \
             faults; the largest difference is {} in {} on `{}`, explained below.",
            x(NOTABLE),
            x(w.spread.0),
            w.spread.1,
            w.trace
        )),
        Some(_) => page.intro.push(format!(
            "The workload{} below {} where the allocators differ most (largest ÷ smallest \
             median over the `ok` runs, in throughput, peak heap RSS or page faults), out of \
             {} workload{} replayed with two or more allocators. Every figure is a median over \
             repetitions; the sentences are made from them.",
            if chosen.len() == 1 { "" } else { "s" },
            if chosen.len() == 1 {
                "is the one"
            } else {
                "are those"
            },
            ws.len(),
            if ws.len() == 1 { "" } else { "s" },
        )),
    }
    for w in chosen {
        page.parts.push(part(facts, w, opts, plots_dir, problems)?);
    }
    Ok(page)
}

fn part(
    facts: &Facts,
    w: &Workload,
    opts: &ExplainOptions,
    plots_dir: &Path,
    problems: &mut Vec<Problem>,
) -> Result<Part, Error> {
    let slug = format!("{}_t{}", crate::figures::slug(&w.trace), w.threads);
    let name = |i: usize| format!("`{}`", w.allocs[i].allocator);
    let mut text = Vec::new();
    text.push(format!(
        "`{}` (workload `{}`, {} replay thread{}, {} ops per run): the allocators differ by \
         **{}** in {}.",
        w.trace,
        w.workload,
        w.threads,
        if w.threads == 1 { "" } else { "s" },
        w.ops.map_or("?".into(), n),
        x(w.spread.0),
        w.spread.1
    ));
    if let Some((r, hi, lo)) = ratio(w, |a| a.ops_per_sec) {
        text.push(format!(
            "Throughput: {} was fastest at {} ops/s, {} slowest at {} ops/s ({} apart).",
            name(hi),
            n(w.allocs[hi].ops_per_sec.unwrap_or(0.0)),
            name(lo),
            n(w.allocs[lo].ops_per_sec.unwrap_or(0.0)),
            x(r)
        ));
    }
    if let Some((r, hi, lo)) = ratio(w, |a| a.peak_heap_rss) {
        let live = w.allocs[hi].peak_live.filter(|l| *l > 0.0);
        text.push(format!(
            "Memory: {} held the most heap RSS at its peak, {}{}, and {} the least, {} ({} \
             apart).",
            name(hi),
            b(w.allocs[hi].peak_heap_rss.unwrap_or(0.0)),
            live.map_or(String::new(), |l| format!(
                " for {} live ({} the live bytes)",
                b(l),
                x(w.allocs[hi].peak_heap_rss.unwrap_or(0.0) / l)
            )),
            name(lo),
            b(w.allocs[lo].peak_heap_rss.unwrap_or(0.0)),
            x(r)
        ));
    }
    // OS calls: the allocator with the most calls against the one with the fewest.
    let totals: Vec<(usize, f64)> = w
        .allocs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| Some((i, a.os_total()?)))
        .collect();
    let describe = |i: usize| {
        let a = &w.allocs[i];
        let parts: Vec<String> = OS_CALLS
            .iter()
            .zip(&a.os_calls)
            .filter_map(|(c, v)| v.filter(|v| *v > 0.0).map(|v| format!("{} {c}", n(v))))
            .collect();
        let mapped = a.os_bytes[0].filter(|v| *v > 0.0);
        format!(
            "{}{}",
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            },
            mapped.map_or(String::new(), |m| format!(", mapping {}", b(m)))
        )
    };
    if let (Some(hi), Some(lo)) = (
        totals.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
        totals.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
    ) {
        if hi.1 > lo.1 {
            text.push(format!(
                "OS memory calls during the timed loop: {} made {}{} vs {}'s {}{}.",
                name(hi.0),
                n(hi.1),
                describe(hi.0),
                name(lo.0),
                n(lo.1),
                describe(lo.0)
            ));
        } else {
            text.push(format!(
                "OS memory calls during the timed loop: every allocator made {} (median).",
                n(hi.1)
            ));
        }
        let advised: Vec<String> = w
            .allocs
            .iter()
            .filter_map(|a| {
                Some(format!(
                    "`{}` advised {}",
                    a.allocator,
                    advice_text(a.madvise_advice.as_ref()?)
                ))
            })
            .collect();
        if !advised.is_empty() {
            text.push(format!("madvise by advice: {}.", advised.join("; ")));
        }
    } else {
        text.push("OS memory calls were not counted in these runs (no `os_*` columns).".into());
    }
    let ktotals: Vec<(usize, f64)> = w
        .allocs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| Some((i, a.kernel_total()?)))
        .collect();
    if let (Some(hi), Some(lo)) = (
        ktotals.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
        ktotals.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
    ) {
        let kdescribe = |i: usize| {
            let parts: Vec<String> = OS_CALLS
                .iter()
                .zip(&w.allocs[i].kernel_calls)
                .filter_map(|(c, v)| v.filter(|v| *v > 0.0).map(|v| format!("{} {c}", n(v))))
                .collect();
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        };
        text.push(format!(
            "The kernel's syscall tracepoints, which see every such call of the replay child \
             (glibc malloc's calls inside libc, which the symbol counts above miss, and the \
             harness's own): {} {}{} vs {} {}{}.",
            name(hi.0),
            n(hi.1),
            kdescribe(hi.0),
            name(lo.0),
            n(lo.1),
            kdescribe(lo.0)
        ));
    }
    let faults: Vec<(usize, f64, &str)> = w
        .allocs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.faults(w).map(|(f, s)| (i, f, s)))
        .collect();
    if let (Some(hi), Some(lo)) = (
        faults.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
        faults.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
    ) {
        text.push(format!(
            "Faults: {} took {} {} vs {}'s {}{}.",
            name(hi.0),
            n(hi.1),
            hi.2,
            name(lo.0),
            n(lo.1),
            if lo.1 > 0.0 {
                format!(" ({})", x(hi.1 / lo.1))
            } else {
                String::new()
            }
        ));
    }
    let unavailable: BTreeSet<&str> = w
        .allocs
        .iter()
        .flat_map(|a| &a.runs)
        .filter_map(|&i| facts.runs[i].perf_unavailable.as_deref())
        .collect();
    let missing: Vec<&str> = COUNTERS[..7]
        .iter()
        .enumerate()
        .filter(|(k, _)| w.allocs.iter().all(|a| a.per_op[*k].is_none()))
        .map(|(_, (_, l))| *l)
        .collect();
    if !missing.is_empty() {
        text.push(format!(
            "Unavailable on this machine: {}{}.",
            missing.join(", "),
            unavailable.iter().next().map_or(String::new(), |u| format!(
                " (the replay said: {})",
                short(u)
            ))
        ));
    }
    if let Some((r, hi, lo)) = ratio(w, |a| a.per_op[3]) {
        text.push(format!(
            "Instructions per op: {} {} vs {} {} ({}).",
            name(hi),
            n(w.allocs[hi].per_op[3].unwrap_or(0.0)),
            name(lo),
            n(w.allocs[lo].per_op[3].unwrap_or(0.0)),
            x(r)
        ));
    }
    let mut figs: Vec<Figure> = vec![
        os_figure(w, &slug, OsWhat::Calls),
        os_figure(w, &slug, OsWhat::Bytes),
        os_figure(w, &slug, OsWhat::Kernel),
        counters_figure(w, &slug, &missing, &unavailable),
    ];
    match os_over_time(facts, w, &slug)? {
        Some(f) => figs.push(f),
        None => text.push(
            "OS calls over time: no time-series samples with OS-call counts for these runs.".into(),
        ),
    }
    let mut pictures = Vec::new();
    // The trace: heap map and size classes.
    match find_trace(facts, w, &opts.trace_dirs) {
        Ok(trace) if opts.plots => {
            let map = HeapMap::from_trace(&trace, &HeapMapOptions { time: opts.time });
            match map {
                Ok(map) => {
                    let classes = map.sizes.classes();
                    if let Some(top) = classes.iter().max_by_key(|c| c.count) {
                        let by_bytes = classes.iter().max_by_key(|c| c.bytes).unwrap_or(top);
                        text.push(format!(
                            "The trace: {} requests, most of them {} ({:.0} %); most bytes in \
                             {} requests ({:.0} % of {}). Its heap map spans {} address \
                             range{}, peak live {}.",
                            map.sizes.requests(),
                            top.label(),
                            top.count as f64 * 100.0 / map.sizes.requests().max(1) as f64,
                            by_bytes.label(),
                            by_bytes.bytes as f64 * 100.0 / map.sizes.total_bytes().max(1) as f64,
                            b(map.sizes.total_bytes() as f64),
                            map.axis.segments.len(),
                            if map.axis.segments.len() == 1 {
                                ""
                            } else {
                                "s"
                            },
                            b(map.peak_live_bytes as f64)
                        ));
                    }
                    let stem = format!("heapmap_{slug}");
                    let files =
                        match map.render(&format!("Heap map: {}", w.trace), plots_dir, &stem) {
                            Ok(r) => Some(r),
                            Err(e) => {
                                problems.push(Problem::new(None, e.to_string()));
                                None
                            }
                        };
                    pictures.push(Picture {
                        stem,
                        caption: format!(
                            "The trace's heap map (the addresses the recorded or generated \
                             program got, not an allocator's). {}",
                            map.caption()
                        ),
                        files,
                    });
                    figs.insert(
                        0,
                        map.sizes_figure(&format!("sizes_{slug}"), Group::Trace(w.trace.clone())),
                    );
                }
                Err(e) => problems.push(Problem::new(None, e.to_string())),
            }
        }
        Ok(_) => {}
        Err(why) => text.push(format!("No heap map or size classes of the trace: {why}.")),
    }
    if opts.plots {
        let rendered = crate::report::render_all(&figs, plots_dir, 1, problems)?;
        for (f, r) in figs.into_iter().zip(rendered) {
            pictures.push(Picture {
                stem: f.stem,
                caption: f.caption,
                files: r,
            });
        }
    }
    let sections = if opts.plots {
        heaps(facts, w, &slug, opts.time, plots_dir, problems)
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    Ok(Part {
        title: format!(
            "{} — {} thread{}",
            w.trace,
            w.threads,
            if w.threads == 1 { "" } else { "s" }
        ),
        text,
        pictures,
        sections,
    })
}

/// "The heap under each allocator": the address traces `replay --heap-map` wrote for this
/// workload's trace into a result directory's `heapmaps/<trace>/` (`results_schema::heapmap`),
/// one map per allocator in the page's order, each checked against the runs' `trace_hash`;
/// `None` when there are none.
fn heaps(
    facts: &Facts,
    w: &Workload,
    slug: &str,
    time: TimeAxis,
    plots_dir: &Path,
    problems: &mut Vec<Problem>,
) -> Option<Section> {
    use results_schema::heapmap as hm;
    let first = &facts.runs[w.allocs[0].runs[0]];
    let trace_name = first.trace_name.as_deref().filter(|t| !t.is_empty())?;
    let want_hash = first.trace_hash.as_deref();
    let sources: BTreeSet<u32> = w
        .allocs
        .iter()
        .flat_map(|a| &a.runs)
        .map(|&i| facts.runs[i].source)
        .collect();
    let dirs: Vec<PathBuf> = sources
        .iter()
        .filter_map(|&s| facts.sources.get(s as usize))
        .map(|src| src.join(hm::DIR_NAME))
        .filter(|d| hm::trace_dir(d, trace_name).is_dir())
        .collect();
    if dirs.is_empty() {
        return None;
    }
    let mut text = Vec::new();
    let mut pictures = Vec::new();
    let mut period = None;
    let (mut missing, mut other, mut unreadable) = (Vec::new(), Vec::new(), Vec::new());
    for a in &w.allocs {
        let Some(file) = dirs
            .iter()
            .map(|d| hm::trace_file(d, trace_name, &a.allocator))
            .find(|f| f.is_file())
        else {
            missing.push(format!("`{}`", a.allocator));
            continue;
        };
        // The header first (cheap): is this the trace the runs replayed?
        let header = match traces::MergedReader::open(&file) {
            Ok(r) => r.header().clone(),
            Err(e) => {
                problems.push(Problem::new(file.clone(), format!("{e}: skipped")));
                continue;
            }
        };
        let have = crate::heapmap::AddressTrace::of(&file, &header).and_then(|t| t.trace_hash);
        if let (Some(want), Some(have)) = (want_hash, have.as_deref())
            && want != have
        {
            problems.push(Problem::new(
                file.clone(),
                format!(
                    "address trace of another trace (its trace hash {have} is not the runs' \
                     {want}): not on the explanation page"
                ),
            ));
            other.push(format!("`{}`", a.allocator));
            continue;
        }
        let map = match HeapMap::from_trace(&file, &HeapMapOptions { time }) {
            Ok(m) => m,
            Err(e) => {
                problems.push(Problem::new(
                    None,
                    format!("{e}: not on the explanation page"),
                ));
                unreadable.push(format!("`{}`", a.allocator));
                continue;
            }
        };
        period = period.or(map.address.as_ref().and_then(|t| t.snapshot_ms));
        let peak = map.peak_live_bytes as f64;
        text.push(
            match map
                .overlay
                .as_ref()
                .and_then(|o| Some((o, o.retained_bytes?, o.resident_bytes?)))
            {
                Some((o, retained, resident)) => format!(
                    "`{}`: peak live {} in its heap-map pass; at the last of its {} mapping \
                 snapshots, {} resident in the shown address ranges, of which {} in rows with \
                 nothing live{}.",
                    a.allocator,
                    b(peak),
                    o.snapshots,
                    b(resident as f64),
                    b(retained as f64),
                    if peak > 0.0 {
                        format!(" ({} of the peak live bytes)", x(retained as f64 / peak))
                    } else {
                        String::new()
                    }
                ),
                None => format!(
                    "`{}`: peak live {} in its heap-map pass; no mappings file beside its address \
                 trace, so no OS state.",
                    a.allocator,
                    b(peak)
                ),
            },
        );
        let stem = format!("heapmap_{slug}__{}", crate::figures::slug(&a.allocator));
        let files = match map.render(&map.title(), plots_dir, &stem) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(Problem::new(None, e.to_string()));
                None
            }
        };
        pictures.push(Picture {
            stem,
            caption: map.caption(),
            files,
        });
    }
    if pictures.is_empty() && other.is_empty() && unreadable.is_empty() {
        return None;
    }
    text.insert(
        0,
        format!(
            "Each allocator replayed `{trace_name}` once more, untimed, with `replay --heap-map`: \
             its map shows where that allocator put the blocks and, where nothing is live, what \
             the OS held there (mapping snapshots {}). Retained = resident bytes in the rows of \
             the shown address ranges with nothing live at the end (whole rows: a row holding \
             any live byte counts nothing).",
            period.map_or("at an unrecorded period".to_owned(), |ms| format!(
                "every {} ms",
                fmt_value(YUnit::Plain, ms)
            ))
        ),
    );
    if !missing.is_empty() {
        text.push(format!("No address trace for {}.", missing.join(", ")));
    }
    if !unreadable.is_empty() {
        text.push(format!(
            "Not shown: {} (the address trace or its mappings file could not be read: see the \
             input problems).",
            unreadable.join(", ")
        ));
    }
    if !other.is_empty() {
        text.push(format!(
            "Not shown: {} (its address trace is of another trace: its trace hash is not the \
             runs').",
            other.join(", ")
        ));
    }
    Some(Section {
        title: "The heap under each allocator".into(),
        text,
        pictures,
    })
}

/// `dontneed=3/1359872 free=1/4096` → `dontneed (3 calls, 1.3 MiB), free (1 call, 4 KiB)`.
fn advice_text(s: &str) -> String {
    s.split_whitespace()
        .map(|kv| {
            let Some((k, v)) = kv.split_once('=') else {
                return kv.to_owned();
            };
            match v
                .split_once('/')
                .and_then(|(c, b)| Some((c.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            {
                Some((c, by)) => format!(
                    "{k} ({c} call{}, {})",
                    if c == 1 { "" } else { "s" },
                    fmt_value(YUnit::Bytes, by as f64)
                ),
                None => kv.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first reason of a perf_unavailable text, shortened.
fn short(s: &str) -> String {
    let first = s.split(';').next().unwrap_or(s).trim();
    if first.chars().count() > 160 {
        format!("{}…", first.chars().take(160).collect::<String>())
    } else {
        first.to_owned()
    }
}

fn one(v: f64) -> Bar {
    Bar {
        value: v,
        low: v,
        high: v,
    }
}

fn series(w: &Workload) -> Vec<(String, usize)> {
    w.allocs
        .iter()
        .enumerate()
        .map(|(i, a)| (a.allocator.clone(), i))
        .collect()
}

/// What an OS-call chart shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OsWhat {
    /// Calls through the exported symbols (`os_*_calls`).
    Calls,
    /// Their bytes (`os_*_bytes`).
    Bytes,
    /// The kernel's count (`kernel_*_calls`).
    Kernel,
}

/// OS calls (or bytes) per call kind, allocators side by side.
fn os_figure(w: &Workload, slug: &str, what: OsWhat) -> Figure {
    let bytes = what == OsWhat::Bytes;
    let values: Vec<Vec<Option<Bar>>> = (0..OS_CALLS.len())
        .map(|k| {
            w.allocs
                .iter()
                .map(|a| {
                    match what {
                        OsWhat::Calls => a.os_calls[k],
                        OsWhat::Bytes => a.os_bytes[k],
                        OsWhat::Kernel => a.kernel_calls[k],
                    }
                    .map(one)
                })
                .collect()
        })
        .collect();
    let log = plots::wide_span(values.iter().flatten().flatten().map(|b| b.value));
    let log_note = if log { "; log axis" } else { "" };
    let (stem, title, caption) = match what {
        OsWhat::Kernel => (
            "os_kernel",
            "OS memory calls, kernel count",
            format!(
                "Per allocator (colour), the mmap, munmap, mremap, brk and madvise system calls \
                 the kernel's tracepoints counted in the replay child during the timed loop \
                 (median over its runs; `kernel_*_calls`): glibc malloc's own calls included, \
                 and the harness's thread stacks{log_note}."
            ),
        ),
        _ => {
            let what = if bytes { "bytes" } else { "calls" };
            (
                if bytes { "os_bytes" } else { "os_calls" },
                if bytes {
                    "OS memory bytes"
                } else {
                    "OS memory calls"
                },
                format!(
                    "Per allocator (colour), the OS memory {what} it made through the exported \
                     mmap, munmap, mremap, brk and madvise during the timed loop (median over \
                     its runs; `os_*_{what}` of the runs table; glibc malloc calls the kernel \
                     inside libc, which this does not see){log_note}."
                ),
            )
        }
    };
    Figure {
        stem: format!("{stem}_{slug}"),
        title: format!("{title}: {} (t{})", w.trace, w.threads),
        caption,
        group: Group::Trace(w.trace.clone()),
        chart: Chart::Bar(BarChart {
            value_desc: if bytes {
                "bytes".into()
            } else {
                "calls".into()
            },
            group_desc: "call".into(),
            unit: if bytes { YUnit::Bytes } else { YUnit::Plain },
            log,
            base: None,
            groups: OS_CALLS.iter().map(|s| s.to_string()).collect(),
            series: series(w),
            values,
            reference: None,
        }),
    }
}

/// Counters per op, allocators side by side; a counter nobody could count is labelled
/// unavailable (the caption gives the replay's reason).
fn counters_figure(
    w: &Workload,
    slug: &str,
    missing: &[&str],
    unavailable: &BTreeSet<&str>,
) -> Figure {
    let groups: Vec<String> = COUNTERS
        .iter()
        .map(|(_, l)| {
            if missing.contains(l) {
                format!("{l}: unavailable")
            } else {
                l.to_string()
            }
        })
        .collect();
    let values: Vec<Vec<Option<Bar>>> = (0..COUNTERS.len())
        .map(|k| {
            w.allocs
                .iter()
                .map(|a| a.per_op[k].map(|v| one(v * 1e6)))
                .collect()
        })
        .collect();
    let any = values.iter().flatten().flatten().any(|b| b.value > 0.0);
    Figure {
        stem: format!("counters_{slug}"),
        title: if any {
            format!("Counters per op: {} (t{})", w.trace, w.threads)
        } else {
            format!("Counters per op: {} — none available", w.trace)
        },
        caption: format!(
            "Per allocator (colour), each hardware or scheduler counter of the timed loop per \
             million ops replayed (median over its runs); log axis. perf_event_open \
             counters first, then getrusage's.{}",
            if missing.is_empty() {
                String::new()
            } else {
                format!(
                    " Unavailable (no bar): {}{}.",
                    missing.join(", "),
                    unavailable
                        .iter()
                        .next()
                        .map_or(String::new(), |u| format!(" — {}", short(u)))
                )
            }
        ),
        group: Group::Trace(w.trace.clone()),
        chart: Chart::Bar(BarChart {
            value_desc: "per million ops".into(),
            group_desc: "counter".into(),
            unit: YUnit::Plain,
            log: true,
            base: None,
            groups,
            series: series(w),
            values,
            reference: None,
        }),
    }
}

/// OS calls so far over time, one run per allocator (its first `ok` repetition), from the time
/// series; None when no sample has any.
fn os_over_time(facts: &Facts, w: &Workload, slug: &str) -> Result<Option<Figure>, Error> {
    let Some(ts) = &facts.timeseries else {
        return Ok(None);
    };
    let reps: Vec<&RunFacts> = w.allocs.iter().map(|a| &facts.runs[a.runs[0]]).collect();
    let pred = reps
        .iter()
        .map(|r| {
            col(SOURCE)
                .cast(DataType::UInt32)
                .eq(lit(r.source))
                .and(col("run_id").eq(lit(r.run_id.clone())))
        })
        .reduce(|a, b| a.or(b))
        .expect("two or more allocators");
    let df = ts
        .clone()
        .filter(pred.and(col("phase").eq(lit("replay"))))
        .select([
            col(SOURCE).cast(DataType::UInt32),
            col("run_id"),
            col("t_ns").cast(DataType::Float64),
            col("os_calls").cast(DataType::Float64),
        ])
        .sort(["t_ns"], Default::default())
        .collect()
        .ctx("OS calls over time")?;
    let (src, id, t, calls) = (
        u32s(&df, SOURCE)?,
        strs(&df, "run_id")?,
        f64s(&df, "t_ns")?,
        f64s(&df, "os_calls")?,
    );
    let mut lines = Vec::new();
    let mut any = false;
    for (i, r) in reps.iter().enumerate() {
        let points: Vec<(f64, f64)> = (0..df.height())
            .filter(|&k| src[k] == Some(r.source) && id[k].as_deref() == Some(&r.run_id))
            .filter_map(|k| Some((t[k]? / 1e6, calls[k]?)))
            .collect();
        any |= points.iter().any(|p| p.1 > 0.0);
        lines.push(Line {
            label: w.allocs[i].allocator.clone(),
            color: i,
            markers: points.len() <= plots::SPARSE_POINTS,
            points,
            whiskers: Vec::new(),
            dashed: false,
        });
    }
    if !any {
        return Ok(None);
    }
    Ok(Some(Figure {
        stem: format!("os_over_time_{slug}"),
        title: format!("OS memory calls over time: {} (t{})", w.trace, w.threads),
        caption: "Per allocator (colour), the OS memory calls (mmap, munmap, mremap, brk, \
                  madvise) its replay had made so far at each sampler tick (`os_calls` of the \
                  time series), one repetition each (the first `ok` one)."
            .into(),
        group: Group::Trace(w.trace.clone()),
        chart: Chart::Line(LineChart {
            x_desc: "time since the first op (ms)".into(),
            y_desc: "OS calls so far".into(),
            x_axis: XAxis::Linear,
            y_unit: YUnit::Plain,
            y_log: false,
            y_from_zero: true,
            y_clip: None,
            reference: None,
            lines,
            legend: Vec::new(),
        }),
    }))
}

/// Markdown inline text to HTML (`code`, **bold**).
fn inline(s: &str) -> String {
    crate::report::inline(s)
}

/// The page's section of report.html.
pub fn html(h: &mut String, out: &Path, page: &Page) {
    h.push_str("<h2 id=\"explain\">Why the allocators differ</h2>\n");
    for p in &page.intro {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", inline(p));
    }
    for part in &page.parts {
        let _ = writeln!(h, "<h3>{}</h3>", esc(&part.title));
        for p in &part.text {
            let _ = writeln!(h, "<p>{}</p>", inline(p));
        }
        html_pictures(h, out, &part.pictures);
        for sec in &part.sections {
            let _ = writeln!(h, "<h4>{}</h4>", esc(&sec.title));
            for p in &sec.text {
                let _ = writeln!(h, "<p>{}</p>", inline(p));
            }
            html_pictures(h, out, &sec.pictures);
        }
    }
}

fn html_pictures(h: &mut String, out: &Path, pictures: &[Picture]) {
    for pic in pictures {
        let _ = writeln!(h, "<figure id=\"{}\">", esc(&pic.stem));
        match pic
            .files
            .as_ref()
            .and_then(|r| Some((r, std::fs::read_to_string(&r.svg).ok()?)))
        {
            Some((r, svg)) => {
                h.push_str(svg.find("<svg").map_or("", |i| &svg[i..]));
                let _ = writeln!(
                    h,
                    "\n<figcaption>{} <a href=\"{}\">PNG</a> <a href=\"{}\">SVG</a></figcaption>",
                    inline(&pic.caption),
                    esc(&rel(out, &r.png)),
                    esc(&rel(out, &r.svg))
                );
            }
            None => {
                let _ = writeln!(h, "<p>{}: could not be drawn.</p>", esc(&pic.stem));
            }
        }
        h.push_str("</figure>\n");
    }
}

fn rel(out: &Path, p: &Path) -> String {
    p.strip_prefix(out)
        .unwrap_or(p)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The page as Markdown (`explain.md`), images linked from `plots/`.
pub fn markdown(out: &Path, page: &Page) -> String {
    let mut s = String::from("# Why the allocators differ\n\n");
    for p in &page.intro {
        let _ = writeln!(s, "{p}\n");
    }
    for part in &page.parts {
        let _ = writeln!(s, "## {}\n", part.title);
        for p in &part.text {
            let _ = writeln!(s, "{p}\n");
        }
        md_pictures(&mut s, out, &part.pictures);
        for sec in &part.sections {
            let _ = writeln!(s, "### {}\n", sec.title);
            for p in &sec.text {
                let _ = writeln!(s, "{p}\n");
            }
            md_pictures(&mut s, out, &sec.pictures);
        }
    }
    s
}

fn md_pictures(s: &mut String, out: &Path, pictures: &[Picture]) {
    for pic in pictures {
        if let Some(r) = &pic.files {
            let _ = writeln!(
                s,
                "![{}]({})\n\n{}\n",
                pic.stem,
                rel(out, &r.png),
                pic.caption
            );
        }
    }
}
