//! The text table on stdout: allocators side by side, medians over repetitions with their
//! spread, ratios to `system` and to the fastest — the rule of `results_schema::summary`, the
//! one `analyze` uses. The same [`Summary`] is in `--json`.

use results_schema::summary::{self, SummaryRow};
use serde::Serialize;

use crate::fmt;
use crate::results::{Results, RunRow, TraceInfo};

use results_schema::summary::median;

/// One allocator's figures over its runs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub allocator: String,
    pub runs: usize,
    pub ok: usize,
    /// Medians and ratios over the ok runs (None when no run was ok).
    pub summary: Option<SummaryRow>,
    pub wall_ns_median: Option<f64>,
    /// Median over runs of each run's quantile: (op, p50, p99, p99.9) in ns.
    pub latency_ns: Vec<(String, f64, f64, f64)>,
    pub errors: Vec<String>,
}

/// Summaries per allocator, in the order allocators first appear. (A sweep replays one trace
/// with one thread count, so each allocator is one configuration.)
pub fn summarize(r: &Results) -> Vec<Summary> {
    let mut names: Vec<&str> = Vec::new();
    for run in &r.runs {
        if !names.contains(&run.allocator.as_str()) {
            names.push(&run.allocator);
        }
    }
    let configs = summary::summarize(&r.runs);
    let latency = summary::summarize_latency(&r.runs, &r.latency);
    names
        .iter()
        .map(|&name| {
            let runs: Vec<&RunRow> = r.runs.iter().filter(|x| x.allocator == name).collect();
            let ok: Vec<&RunRow> = runs.iter().copied().filter(|x| x.status.is_ok()).collect();
            let mut wall: Vec<f64> = ok
                .iter()
                .filter_map(|x| x.wall_ns.map(|v| v as f64))
                .collect();
            let mut latency_ns = Vec::new();
            for op in results_schema::OPS {
                let q = |quant: f64| {
                    latency
                        .iter()
                        .find(|l| {
                            l.allocator == name
                                && l.op == op
                                && summary::quantile_key(l.quantile) == summary::quantile_key(quant)
                        })
                        .and_then(|l| l.latency_ns)
                };
                if let (Some(a), Some(b), Some(c)) = (q(0.5), q(0.99), q(0.999)) {
                    latency_ns.push((op.to_string(), a, b, c));
                }
            }
            Summary {
                allocator: name.to_string(),
                runs: runs.len(),
                ok: ok.len(),
                summary: configs.iter().find(|c| c.allocator == name).cloned(),
                wall_ns_median: median(&mut wall),
                latency_ns,
                errors: runs
                    .iter()
                    .filter(|x| !x.status.is_ok())
                    .map(|x| {
                        format!(
                            "r{} {}: {}",
                            x.repetition,
                            x.status,
                            x.error.as_deref().unwrap_or("")
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "—".to_string(), f)
}

fn render_rows(head: &[&str], rows: &[Vec<String>]) -> String {
    let cols = head.len();
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 {
                s += c;
                s += &" ".repeat(pad);
            } else {
                s += "  ";
                s += &" ".repeat(pad);
                s += c;
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut s = line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        s += &line(r.clone());
    }
    s
}

/// What preprocessing found, in a few lines.
pub fn render_trace(t: &TraceInfo) -> String {
    let p = &t.plan;
    let mut s = format!(
        "trace {} ({}): {} ops on {} replay threads ({} traced), peak live {} ({} objects), \
         final live {}\n",
        t.name,
        t.workload,
        p.total_ops(),
        p.threads.len(),
        p.trace_threads,
        fmt::bytes(p.peak_live_bytes),
        p.peak_live_objects,
        fmt::bytes(p.final_live_bytes),
    );
    let secs = p.preprocess_ns as f64 / 1e9;
    s += &format!(
        "preprocessed {} events in {} ({} events/s); replay state {} ({:.2} bytes/op, {} slots); \
         {} ops wait for another thread\n",
        p.events,
        fmt::ns(p.preprocess_ns as f64),
        fmt::rate(p.events as f64 / secs.max(1e-9)),
        fmt::bytes(p.state_bytes()),
        p.bytes_per_op(),
        p.slots,
        p.waiting_ops,
    );
    if p.skipped_inconsistent() + p.inversions + p.failed_in_trace > 0 {
        s += &format!(
            "inconsistent events skipped: {} frees of unknown pointers, {} double frees; \
             {} address-reuse inversions resolved; {} failed allocations of the trace not replayed\n",
            p.free_of_unknown, p.double_free, p.inversions, p.failed_in_trace
        );
    }
    s
}

/// The table of a sweep.
pub fn render(r: &Results) -> String {
    let sums = summarize(r);
    let mut rows = Vec::new();
    for s in &sums {
        let c = s.summary.as_ref();
        let get = |f: fn(&SummaryRow) -> Option<f64>| c.and_then(f);
        let spread = match (
            get(|c| c.ops_per_sec_min),
            get(|c| c.ops_per_sec_max),
            get(|c| c.ops_per_sec_median),
        ) {
            (Some(a), Some(b), Some(m)) if s.ok > 1 && m > 0.0 => {
                format!("±{:.1}%", (b - a) / 2.0 / m * 100.0)
            }
            _ => String::new(),
        };
        let lat = |op: &str, i: usize| {
            s.latency_ns
                .iter()
                .find(|l| l.0 == op)
                .map_or_else(|| "—".into(), |l| fmt::ns([l.1, l.2, l.3][i]))
        };
        let ratio = |v: Option<f64>| opt(v, |v| format!("{v:.2}×"));
        let bytes = |v: Option<f64>| opt(v, |v| fmt::bytes(v as u64));
        rows.push(vec![
            s.allocator.clone(),
            format!("{}/{}", s.ok, s.runs),
            opt(get(|c| c.ops_per_sec_median), fmt::rate),
            spread,
            ratio(get(|c| c.ratio_to_system)),
            ratio(get(|c| c.ratio_to_best)),
            lat("malloc", 0),
            lat("malloc", 1),
            lat("malloc", 2),
            lat("free", 1),
            bytes(get(|c| c.peak_heap_rss_bytes)),
            ratio(get(|c| c.frag_ratio_at_peak)),
            bytes(get(|c| c.retained_heap_rss_bytes)),
            bytes(get(|c| c.retained_heap_rss_1s_bytes)),
        ]);
    }
    let mut out = render_rows(
        &[
            "allocator",
            "ok",
            "ops/s",
            "spread",
            "vs system",
            "vs best",
            "malloc p50",
            "p99",
            "p99.9",
            "free p99",
            "peak heap RSS",
            "frag@peak",
            "retained",
            "after 1 s",
        ],
        &rows,
    );
    out += "(medians over ok runs; spread = half the min–max range; latency from the timed pass";
    if let Some(t) = r.timer_overhead_ns {
        out += &format!(", including ~{t:.0} ns of timer reads");
    }
    out += ")\n";
    for s in &sums {
        for e in &s.errors {
            out += &format!("{}: {e}\n", s.allocator);
        }
    }
    out
}
