//! The text table on stdout: allocators side by side, medians over repetitions with their
//! spread, ratios to `system` and to the fastest — the rule of `results_schema::summary`, the
//! one `analyze` uses. The same [`Summary`] is in `--json`.

use results_schema::summary::{self, SummaryRow};
use serde::Serialize;

use crate::human;
use crate::results::{Results, RunRow, TraceInfo};

use results_schema::summary::median;

/// A distribution-free confidence interval of a median: order statistics `x(k)` and
/// `x(n+1-k)` of the sorted values, with `k` the largest for which the binomial coverage
/// `1 - 2·P(Bin(n, ½) < k)` is at least 95 % (for fewer than 6 values no such `k` exists: then
/// min–max, whose coverage `1 - 2^(1-n)` is below 95 %).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct MedianCi {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    /// The interval's coverage probability.
    pub coverage: f64,
}

impl MedianCi {
    /// Whether the interval is a 95 % one and lies within ± `tol` (a fraction) of the median.
    pub fn within(&self, tol: f64) -> bool {
        self.coverage >= 0.95
            && self.median > 0.0
            && (self.median - self.low).max(self.high - self.median) <= tol * self.median
    }
}

/// The [`MedianCi`] of `v` (None when empty).
pub fn median_ci(v: &[f64]) -> Option<MedianCi> {
    let mut x = v.to_vec();
    let median = median(&mut x)?;
    let n = x.len();
    // P(Bin(n, ½) ≤ j) for j = 0.., summed in f64 (n stays small: a cap of repetitions).
    let mut below = 0.0; // P(B < k)
    let mut coef = 1.0f64; // C(n, k-1)
    let half_n = 0.5f64.powi(n as i32);
    let mut k = 1;
    let mut coverage = 1.0 - 2.0 * half_n;
    for cand in 1..=n.div_ceil(2) {
        // P(B < cand) = sum_{j < cand} C(n, j) / 2^n
        below += coef * half_n;
        coef = coef * (n - (cand - 1)) as f64 / cand as f64;
        let cov = 1.0 - 2.0 * below;
        if cov >= 0.95 {
            k = cand;
            coverage = cov;
        } else {
            break;
        }
    }
    Some(MedianCi {
        median,
        low: x[k - 1],
        high: x[n - k],
        coverage,
    })
}

/// One allocator's figures over its runs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub allocator: String,
    pub runs: usize,
    pub ok: usize,
    /// Medians and ratios over the ok runs (None when no run was ok).
    pub summary: Option<SummaryRow>,
    /// The confidence interval of the median ops/s ([`median_ci`]).
    pub ops_per_sec_ci: Option<MedianCi>,
    /// This allocator's ops/s min–max range overlaps `system`'s (its "vs system" ratio does
    /// not separate them).
    pub overlaps_system: bool,
    /// This allocator's ops/s min–max range overlaps the fastest's (likewise for "vs best").
    pub overlaps_best: bool,
    /// With `--until-stable`: whether the median was pinned down within the tolerance
    /// before the cap (None without it).
    pub stable: Option<bool>,
    /// Usable ÷ requested bytes at the peak (runs.parquet's `overhead_ratio`), median.
    pub overhead_ratio_median: Option<f64>,
    pub wall_ns_median: Option<f64>,
    /// Median over runs of each run's quantile: (op, [min, p50, p95, p99, p99.9]) in ns
    /// ([`LATENCY_QUANTILES`]).
    pub latency_ns: Vec<(String, [f64; 5])>,
    pub errors: Vec<String>,
}

/// The latency quantiles the table shows: min, p50, p95, p99, p99.9.
pub const LATENCY_QUANTILES: [f64; 5] = [0.0, 0.5, 0.95, 0.99, 0.999];

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
    let mut sums = names
        .iter()
        .map(|&name| {
            let runs: Vec<&RunRow> = r.runs.iter().filter(|x| x.allocator == name).collect();
            let ok: Vec<&RunRow> = runs.iter().copied().filter(|x| x.status.is_ok()).collect();
            let tput: Vec<f64> = ok.iter().filter_map(|x| x.ops_per_sec).collect();
            let mut overhead: Vec<f64> = ok.iter().filter_map(|x| x.overhead_ratio).collect();
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
                let v: Vec<f64> = LATENCY_QUANTILES.iter().filter_map(|&x| q(x)).collect();
                if let Ok(v) = <[f64; 5]>::try_from(v) {
                    latency_ns.push((op.to_string(), v));
                }
            }
            Summary {
                allocator: name.to_string(),
                runs: runs.len(),
                ok: ok.len(),
                summary: configs.iter().find(|c| c.allocator == name).cloned(),
                ops_per_sec_ci: median_ci(&tput),
                overlaps_system: false,
                overlaps_best: false,
                stable: ok.iter().chain(runs.iter()).find_map(|x| x.stable),
                overhead_ratio_median: median(&mut overhead),
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
        .collect::<Vec<Summary>>();
    // Which ratios do not separate their two cells: min–max ranges that overlap.
    let range = |s: &Summary| {
        s.summary
            .as_ref()
            .and_then(|c| c.ops_per_sec_min.zip(c.ops_per_sec_max))
    };
    let median_of = |s: &Summary| s.summary.as_ref().and_then(|c| c.ops_per_sec_median);
    let system = sums
        .iter()
        .find(|s| s.allocator == results_schema::BASELINE_ALLOCATOR)
        .and_then(range);
    let best = sums
        .iter()
        .filter(|s| median_of(s).is_some())
        .max_by(|a, b| median_of(a).partial_cmp(&median_of(b)).unwrap())
        .and_then(range);
    let overlap = |a: Option<(f64, f64)>, b: Option<(f64, f64)>| match (a, b) {
        (Some((lo, hi)), Some((blo, bhi))) => lo <= bhi && blo <= hi,
        _ => false,
    };
    for s in &mut sums {
        let mine = range(s);
        if s.allocator != results_schema::BASELINE_ALLOCATOR {
            s.overlaps_system = overlap(mine, system);
        }
        if mine != best {
            s.overlaps_best = overlap(mine, best);
        }
    }
    sums
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
        human::bytes(p.peak_live_bytes),
        p.peak_live_objects,
        human::bytes(p.final_live_bytes),
    );
    let secs = p.preprocess_ns as f64 / 1e9;
    s += &format!(
        "preprocessed {} events in {} ({} events/s); replay state {} ({:.2} bytes/op, {} slots); \
         {} ops wait for another thread\n",
        p.events,
        human::ns(p.preprocess_ns as f64),
        human::rate(p.events as f64 / secs.max(1e-9)),
        human::bytes(p.state_bytes()),
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
    let (mut any_overlap, mut any_unstable) = (false, false);
    for s in &sums {
        let c = s.summary.as_ref();
        let unstable = s.stable == Some(false);
        any_unstable |= unstable;
        any_overlap |= s.overlaps_system || s.overlaps_best;
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
                .map_or_else(|| "—".into(), |l| human::ns(l.1[i]))
        };
        let ratio = |v: Option<f64>| opt(v, |v| format!("{v:.2}×"));
        let marked = |v: Option<f64>, overlaps: bool| {
            opt(v, |v| format!("{v:.2}×{}", if overlaps { "~" } else { "" }))
        };
        let bytes = |v: Option<f64>| opt(v, |v| human::bytes(v as u64));
        rows.push(vec![
            s.allocator.clone(),
            format!("{}/{}", s.ok, s.runs),
            opt(get(|c| c.ops_per_sec_median), |v| {
                human::rate(v) + if unstable { " !" } else { "" }
            }),
            spread,
            marked(get(|c| c.ratio_to_system), s.overlaps_system),
            marked(get(|c| c.ratio_to_best), s.overlaps_best),
            lat("malloc", 0),
            lat("malloc", 1),
            lat("malloc", 2),
            lat("malloc", 3),
            lat("malloc", 4),
            lat("free", 3),
            bytes(get(|c| c.peak_heap_rss_bytes)),
            ratio(get(|c| c.frag_ratio_at_peak)),
            opt(s.overhead_ratio_median, |v| format!("{v:.3}×")),
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
            "malloc min",
            "p50",
            "p95",
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
    if any_overlap {
        out += "~: this allocator's ops/s min–max range overlaps system's (vs system) or the \
                fastest's (vs best): the ratio does not separate them\n";
    }
    if any_unstable {
        out += "!: not stable: the 95 % interval of the median ops/s was still wider than \
                --until-stable when --max-repeat was reached\n";
    }
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

    #[test]
    fn median_ci_uses_order_statistics_with_95_percent_coverage() {
        // 5 values: no 95 % interval exists; min–max covers 1 - 2/32.
        let c = super::median_ci(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((c.low, c.high, c.median), (1.0, 5.0, 3.0));
        assert!((c.coverage - 0.9375).abs() < 1e-12 && !c.within(10.0));
        // 6 values: min–max, 1 - 2/64.
        let c = super::median_ci(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!((c.low, c.high), (1.0, 6.0));
        assert!((c.coverage - (1.0 - 2.0 / 64.0)).abs() < 1e-12);
        // 9 values: k = 2 (P(B ≤ 1) = 10/512; coverage 0.9609); k = 3 would give 0.820.
        let v: Vec<f64> = (1..=9).map(f64::from).collect();
        let c = super::median_ci(&v).unwrap();
        assert_eq!((c.low, c.high), (2.0, 8.0));
        assert!((c.coverage - (1.0 - 20.0 / 512.0)).abs() < 1e-12);
        // Within ±5 %: 100 ± 4.
        let c = super::median_ci(&[96.0, 100.0, 101.0, 99.0, 104.0, 100.0]).unwrap();
        assert!(c.within(0.05) && !c.within(0.03));
    }
}
