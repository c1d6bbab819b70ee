//! The text table on stdout: allocators side by side, medians over repetitions with their
//! spread, ratios to the first allocator. The same [`Summary`] is in `--json`.

use serde::Serialize;

use crate::fmt;
use crate::results::{Results, RunRow, TraceInfo};

/// Median of `v` (None when empty); the mean of the two middle values for an even count.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One allocator's figures over its runs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub allocator: String,
    pub runs: usize,
    pub ok: usize,
    pub ops_per_sec_median: Option<f64>,
    pub ops_per_sec_min: Option<f64>,
    pub ops_per_sec_max: Option<f64>,
    /// Median ops/s over the first allocator's.
    pub throughput_vs_first: Option<f64>,
    pub wall_ns_median: Option<f64>,
    /// Median over runs of each run's quantile: (op, p50, p99, p99.9) in ns.
    pub latency_ns: Vec<(String, f64, f64, f64)>,
    pub peak_heap_rss_bytes_median: Option<f64>,
    pub frag_ratio_at_peak_median: Option<f64>,
    /// Usable ÷ requested bytes at the peak (runs.parquet's `overhead_ratio`).
    pub overhead_ratio_median: Option<f64>,
    pub retained_heap_rss_bytes_median: Option<f64>,
    pub retained_heap_rss_1s_bytes_median: Option<f64>,
    pub minor_faults_median: Option<f64>,
    pub errors: Vec<String>,
}

/// Summaries per allocator, in the order allocators first appear.
pub fn summarize(r: &Results) -> Vec<Summary> {
    let mut names: Vec<&str> = Vec::new();
    for run in &r.runs {
        if !names.contains(&run.allocator.as_str()) {
            names.push(&run.allocator);
        }
    }
    let mut out: Vec<Summary> = names
        .iter()
        .map(|&name| {
            let runs: Vec<&RunRow> = r.runs.iter().filter(|x| x.allocator == name).collect();
            let ok: Vec<&RunRow> = runs.iter().copied().filter(|x| x.status == "ok").collect();
            let med = |f: &dyn Fn(&RunRow) -> Option<f64>| {
                let mut v: Vec<f64> = ok.iter().filter_map(|x| f(x)).collect();
                median(&mut v)
            };
            let tput: Vec<f64> = ok.iter().filter_map(|x| x.ops_per_sec).collect();
            let mut latency_ns = Vec::new();
            for op in ["malloc", "calloc", "realloc", "free", "aligned"] {
                let q = |quant: f64| {
                    let mut v: Vec<f64> = ok
                        .iter()
                        .filter_map(|run| {
                            r.latency
                                .iter()
                                .find(|l| {
                                    l.run_id == run.run_id
                                        && l.op == op
                                        && (l.quantile - quant).abs() < 1e-9
                                })
                                .map(|l| l.latency_ns as f64)
                        })
                        .collect();
                    median(&mut v)
                };
                if let (Some(a), Some(b), Some(c)) = (q(0.5), q(0.99), q(0.999)) {
                    latency_ns.push((op.to_string(), a, b, c));
                }
            }
            Summary {
                allocator: name.to_string(),
                runs: runs.len(),
                ok: ok.len(),
                ops_per_sec_median: med(&|x| x.ops_per_sec),
                ops_per_sec_min: tput.iter().copied().reduce(f64::min),
                ops_per_sec_max: tput.iter().copied().reduce(f64::max),
                throughput_vs_first: None,
                wall_ns_median: med(&|x| x.wall_ns.map(|v| v as f64)),
                latency_ns,
                peak_heap_rss_bytes_median: med(&|x| x.peak_heap_rss_bytes.map(|v| v as f64)),
                frag_ratio_at_peak_median: med(&|x| x.frag_ratio_at_peak),
                overhead_ratio_median: med(&|x| x.overhead_ratio),
                retained_heap_rss_bytes_median: med(&|x| {
                    x.retained_heap_rss_bytes.map(|v| v as f64)
                }),
                retained_heap_rss_1s_bytes_median: med(&|x| {
                    x.retained_heap_rss_1s_bytes.map(|v| v as f64)
                }),
                minor_faults_median: med(&|x| x.minor_faults.map(|v| v as f64)),
                errors: runs
                    .iter()
                    .filter(|x| x.status != "ok")
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
        .collect();
    let first = out.first().and_then(|s| s.ops_per_sec_median);
    for s in &mut out {
        s.throughput_vs_first = match (s.ops_per_sec_median, first) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
    }
    out
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
    let first = sums
        .first()
        .map_or("", |s| s.allocator.as_str())
        .to_string();
    let mut rows = Vec::new();
    for s in &sums {
        let spread = match (s.ops_per_sec_min, s.ops_per_sec_max, s.ops_per_sec_median) {
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
        rows.push(vec![
            s.allocator.clone(),
            format!("{}/{}", s.ok, s.runs),
            opt(s.ops_per_sec_median, fmt::rate),
            spread,
            opt(s.throughput_vs_first, |v| format!("{v:.2}×")),
            lat("malloc", 0),
            lat("malloc", 1),
            lat("malloc", 2),
            lat("free", 1),
            opt(s.peak_heap_rss_bytes_median, |v| fmt::bytes(v as u64)),
            opt(s.frag_ratio_at_peak_median, |v| format!("{v:.2}×")),
            opt(s.overhead_ratio_median, |v| format!("{v:.3}×")),
            opt(s.retained_heap_rss_bytes_median, |v| fmt::bytes(v as u64)),
            opt(s.retained_heap_rss_1s_bytes_median, |v| {
                fmt::bytes(v as u64)
            }),
        ]);
    }
    let vs = format!("vs {first}");
    let mut out = render_rows(
        &[
            "allocator",
            "ok",
            "ops/s",
            "spread",
            &vs,
            "malloc p50",
            "p99",
            "p99.9",
            "free p99",
            "peak heap RSS",
            "frag@peak",
            "usable/req",
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

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(super::median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(super::median(&mut []), None);
    }
}
