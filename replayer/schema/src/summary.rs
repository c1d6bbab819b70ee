//! The one aggregation rule: a *configuration* is one trace (by identity: name and hash) ×
//! replay thread count × allocator; each of its figures is the **median over its `ok` runs**
//! (latency: the median over runs of each run's quantile), with the spread beside it; ratios
//! are taken within one trace and thread count, against `system` and against the fastest.
//!
//! `analyze` computes it with Polars (and writes it as `summary.parquet` and
//! `summary_latency.parquet`, rows below); the replay's terminal table computes it here, in
//! plain Rust over the rows; a test of `analyze` holds the two equal on the same rows.

use std::collections::{BTreeMap, BTreeSet};

use crate::{BASELINE_ALLOCATOR, LatencyRow, RunRow, TraceId, Workload};

/// The median of `v` (None when empty); the mean of the two middle values for an even count.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Coefficient of variation: sample standard deviation / mean (None with fewer than 2 values or
/// a mean of 0).
pub fn cv(v: &[f64]) -> Option<f64> {
    let n = v.len();
    if n < 2 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if mean == 0.0 {
        return None;
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    Some(var.sqrt() / mean)
}

/// A run's throughput: `ops_per_sec`, or `ops / wall_ns` when only those were written.
pub fn throughput(r: &RunRow) -> Option<f64> {
    r.ops_per_sec
        .or_else(|| r.wall_ns.map(|w| r.ops as f64 / w as f64 * 1e9))
}

/// Ratios of one configuration's median throughput within its trace and thread count.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ratios {
    /// Over the `system` allocator's median (None without a `system` median there).
    pub vs_system: Option<f64>,
    /// Over the fastest allocator's median there (1.0 is the fastest).
    pub vs_best: Option<f64>,
}

/// The ratios of each `(group, allocator, median)`; a group is one machine type, trace and
/// thread count.
pub fn ratios<G: Ord>(rows: &[(G, &str, Option<f64>)]) -> Vec<Ratios> {
    let mut system: BTreeMap<&G, f64> = BTreeMap::new();
    let mut best: BTreeMap<&G, f64> = BTreeMap::new();
    for (g, a, m) in rows {
        let Some(m) = *m else { continue };
        if *a == BASELINE_ALLOCATOR {
            system.insert(g, m);
        }
        let b = best.entry(g).or_insert(m);
        *b = b.max(m);
    }
    rows.iter()
        .map(|(g, _, m)| match m {
            None => Ratios::default(),
            Some(m) => Ratios {
                vs_system: system.get(g).filter(|&&s| s > 0.0).map(|s| m / s),
                vs_best: best.get(g).filter(|&&b| b > 0.0).map(|b| m / b),
            },
        })
        .collect()
}

/// Labels telling traces apart where their runs would otherwise look alike. A trace is labelled
/// by its name, unless another trace of that name was replayed with a thread count it was also
/// replayed with (the lab's `t1/larson` and `t2/larson`, both 4 threads): then by its name and
/// the parameters (`trace_params`) in which those traces differ, or the first 8 digits of its
/// hash when the parameters do not tell them apart. Items are (trace, its parameters, a replay
/// thread count it was replayed with); a trace may come several times.
pub fn labels<'a>(
    traces: impl IntoIterator<Item = (&'a TraceId, &'a str, u32)>,
) -> BTreeMap<TraceId, String> {
    type Seen<'a> = BTreeMap<&'a TraceId, (&'a str, BTreeSet<u32>)>;
    let mut by_name: BTreeMap<&str, Seen<'a>> = BTreeMap::new();
    for (id, params, threads) in traces {
        let e = by_name
            .entry(&id.name)
            .or_default()
            .entry(id)
            .or_insert((params, BTreeSet::new()));
        e.1.insert(threads);
    }
    let mut out = BTreeMap::new();
    for (name, ids) in by_name {
        let colliding: BTreeMap<&TraceId, &str> = ids
            .iter()
            .filter(|(id, (_, th))| {
                ids.iter()
                    .any(|(other, (_, o))| other != *id && !th.is_disjoint(o))
            })
            .map(|(id, (p, _))| (*id, *p))
            .collect();
        for id in ids.keys() {
            if !colliding.contains_key(id) {
                out.insert((*id).clone(), name.to_owned());
            }
        }
        if colliding.is_empty() {
            continue;
        }
        let parsed: BTreeMap<&TraceId, BTreeMap<&str, &str>> = colliding
            .iter()
            .map(|(id, p)| {
                let kv = p
                    .split_whitespace()
                    .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                    .collect();
                (*id, kv)
            })
            .collect();
        let keys: BTreeSet<&str> = parsed.values().flat_map(|m| m.keys().copied()).collect();
        let differ: Vec<&str> = keys
            .into_iter()
            .filter(|k| {
                let vals: BTreeSet<Option<&&str>> = parsed.values().map(|m| m.get(k)).collect();
                vals.len() > 1
            })
            .collect();
        let mut made: BTreeMap<&TraceId, String> = BTreeMap::new();
        let mut any_empty = false;
        for (id, m) in &parsed {
            let diff: Vec<String> = differ
                .iter()
                .filter_map(|k| m.get(k).map(|v| format!("{k}={v}")))
                .collect();
            any_empty |= diff.is_empty();
            made.insert(id, format!("{name} ({})", diff.join(", ")));
        }
        let distinct: BTreeSet<&String> = made.values().collect();
        let by_hash = any_empty || distinct.len() < made.len();
        for (id, l) in made {
            let label = if by_hash {
                let h = id.hash.as_deref().unwrap_or("no hash");
                format!("{name} #{}", &h[..h.len().min(8)])
            } else {
                l
            };
            out.insert(id.clone(), label);
        }
    }
    out
}

/// The labels of the traces of some runs ([`labels`]).
pub fn run_labels(runs: &[RunRow]) -> BTreeMap<TraceId, String> {
    let ids: Vec<(TraceId, &str, u32)> = runs
        .iter()
        .map(|r| (r.trace_id(), r.trace_params.as_str(), r.replay_threads))
        .collect();
    labels(ids.iter().map(|(id, p, t)| (id, *p, *t)))
}

/// A run's machine type: its CPU model and CPU count (`<cpu_model> ×<cpus>`). Hosts of one type
/// pool their runs (a cluster's identical nodes); runs of different types are different
/// configurations, so no median pools them and no ratio divides one type's figure by another's.
pub fn machine_type(cpu_model: Option<&str>, cpus: Option<u32>) -> String {
    format!(
        "{} ×{}",
        cpu_model.filter(|c| !c.is_empty()).unwrap_or("unknown CPU"),
        cpus.map_or_else(|| "?".to_string(), |n| n.to_string())
    )
}

/// Identifies a configuration (sorts by machine type, trace name, hash, threads, allocator).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigKey {
    /// The machine type ([`machine_type`]).
    pub machine: String,
    /// The trace.
    pub trace: TraceId,
    /// Replay threads.
    pub replay_threads: u32,
    /// Allocator adapter name.
    pub allocator: String,
}

impl ConfigKey {
    /// The configuration of a run.
    pub fn of(r: &RunRow) -> ConfigKey {
        ConfigKey {
            machine: machine_type(Some(&r.cpu_model), Some(r.cpus)),
            trace: r.trace_id(),
            replay_threads: r.replay_threads,
            allocator: r.allocator.clone(),
        }
    }
}

rows! {
    /// One row of `analyze`'s summary.parquet: one configuration (machine type × trace × threads
    /// × allocator), medians over its `ok` runs.
    pub struct SummaryRow {
        /// the machine type the runs were made on: CPU model and CPU count (`<cpu_model> ×<cpus>`)
        pub machine: String,
        /// the trace's short name
        pub trace_name: String,
        /// the trace's hash (`trace_hash` of runs; null for results written before it existed)
        pub trace_hash: Option<String>,
        /// the trace's name, with what tells it apart when several traces share that name
        pub trace_label: String,
        /// the trace's parameters, where known
        pub trace_params: Option<String>,
        /// the trace's workload
        pub workload: Workload,
        /// replay threads
        pub replay_threads: u32,
        /// allocator
        pub allocator: String,
        /// `ok` runs
        pub runs_ok: u32,
        /// `ok` runs with a throughput figure
        pub runs_throughput: u32,
        /// median ops/s
        pub ops_per_sec_median: Option<f64>,
        /// slowest run's ops/s
        pub ops_per_sec_min: Option<f64>,
        /// fastest run's ops/s
        pub ops_per_sec_max: Option<f64>,
        /// coefficient of variation of ops/s (sample std / mean; null with fewer than 2 runs)
        pub ops_per_sec_cv: Option<f64>,
        /// median ops/s over `system`'s in the same trace and threads
        pub ratio_to_system: Option<f64>,
        /// median ops/s over the fastest allocator's in the same trace and threads
        pub ratio_to_best: Option<f64>,
        /// median peak live bytes
        pub peak_live_bytes: Option<f64>,
        /// median peak heap RSS
        pub peak_heap_rss_bytes: Option<f64>,
        /// median peak RSS
        pub peak_rss_bytes: Option<f64>,
        /// median heap RSS at peak live
        pub heap_rss_at_peak_live_bytes: Option<f64>,
        /// median fragmentation ratio at peak live
        pub frag_ratio_at_peak: Option<f64>,
        /// smallest fragmentation ratio at peak live
        pub frag_ratio_at_peak_min: Option<f64>,
        /// largest fragmentation ratio at peak live
        pub frag_ratio_at_peak_max: Option<f64>,
        /// median usable ÷ requested bytes of the blocks live at the peak (`overhead_ratio`)
        pub overhead_ratio: Option<f64>,
        /// median retained heap RSS right after the last op
        pub retained_heap_rss_bytes: Option<f64>,
        /// median retained heap RSS 0.1 s later
        pub retained_heap_rss_100ms_bytes: Option<f64>,
        /// median retained heap RSS 1 s later
        pub retained_heap_rss_1s_bytes: Option<f64>,
        /// median minor page faults
        pub minor_faults: Option<f64>,
        /// median major page faults
        pub major_faults: Option<f64>,
    }
}

rows! {
    /// One row of `analyze`'s summary_latency.parquet: one configuration's latency of one op
    /// kind at one quantile of the grid, the median over its `ok` runs.
    pub struct SummaryLatencyRow {
        /// as in summary.parquet
        pub machine: String,
        /// the trace's short name
        pub trace_name: String,
        /// the trace's hash
        pub trace_hash: Option<String>,
        /// as in summary.parquet
        pub trace_label: String,
        /// replay threads
        pub replay_threads: u32,
        /// allocator
        pub allocator: String,
        /// op kind
        pub op: String,
        /// `ok` runs that timed this op kind
        pub runs: u32,
        /// median ops of this kind timed per run
        pub count: Option<f64>,
        /// median of the runs' mean latency
        pub mean_ns: Option<f64>,
        /// the quantile
        pub quantile: f64,
        /// median over the runs of their latency at the quantile
        pub latency_ns: Option<f64>,
    }
}

/// The summary of some runs, one row per configuration sorted by [`ConfigKey`], with trace
/// labels made over these runs' traces.
pub fn summarize(runs: &[RunRow]) -> Vec<SummaryRow> {
    let mut by: BTreeMap<ConfigKey, Vec<&RunRow>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.status.is_ok()) {
        by.entry(ConfigKey::of(r)).or_default().push(r);
    }
    let labels = run_labels(runs);
    let mut rows: Vec<SummaryRow> = by
        .iter()
        .map(|(k, rs)| {
            let med = |f: &dyn Fn(&RunRow) -> Option<f64>| {
                median(&mut rs.iter().filter_map(|r| f(r)).collect::<Vec<f64>>())
            };
            let tp: Vec<f64> = rs.iter().filter_map(|r| throughput(r)).collect();
            let frag: Vec<f64> = rs.iter().filter_map(|r| r.frag_ratio_at_peak).collect();
            let u = |v: Option<u64>| v.map(|v| v as f64);
            SummaryRow {
                machine: k.machine.clone(),
                trace_name: k.trace.name.clone(),
                trace_hash: k.trace.hash.clone(),
                trace_label: labels[&k.trace].clone(),
                trace_params: Some(rs[0].trace_params.clone()),
                workload: rs[0].workload.clone(),
                replay_threads: k.replay_threads,
                allocator: k.allocator.clone(),
                runs_ok: rs.len() as u32,
                runs_throughput: tp.len() as u32,
                ops_per_sec_median: median(&mut tp.clone()),
                ops_per_sec_min: tp.iter().copied().reduce(f64::min),
                ops_per_sec_max: tp.iter().copied().reduce(f64::max),
                ops_per_sec_cv: cv(&tp),
                ratio_to_system: None,
                ratio_to_best: None,
                peak_live_bytes: med(&|r| Some(r.peak_live_bytes as f64)),
                peak_heap_rss_bytes: med(&|r| u(r.peak_heap_rss_bytes)),
                peak_rss_bytes: med(&|r| u(r.peak_rss_bytes)),
                heap_rss_at_peak_live_bytes: med(&|r| u(r.heap_rss_at_peak_live_bytes)),
                frag_ratio_at_peak: median(&mut frag.clone()),
                frag_ratio_at_peak_min: frag.iter().copied().reduce(f64::min),
                frag_ratio_at_peak_max: frag.iter().copied().reduce(f64::max),
                overhead_ratio: med(&|r| r.overhead_ratio),
                retained_heap_rss_bytes: med(&|r| u(r.retained_heap_rss_bytes)),
                retained_heap_rss_100ms_bytes: med(&|r| u(r.retained_heap_rss_100ms_bytes)),
                retained_heap_rss_1s_bytes: med(&|r| u(r.retained_heap_rss_1s_bytes)),
                minor_faults: med(&|r| u(r.minor_faults)),
                major_faults: med(&|r| u(r.major_faults)),
            }
        })
        .collect();
    // Ratios within one machine type, trace and thread count.
    type Group<'a> = (&'a str, &'a TraceId, u32);
    let groups: Vec<(Group, &str, Option<f64>)> = by
        .keys()
        .zip(&rows)
        .map(|(k, r)| {
            (
                (k.machine.as_str(), &k.trace, k.replay_threads),
                k.allocator.as_str(),
                r.ops_per_sec_median,
            )
        })
        .collect();
    for (r, x) in rows.iter_mut().zip(ratios(&groups)) {
        r.ratio_to_system = x.vs_system;
        r.ratio_to_best = x.vs_best;
    }
    rows
}

/// The latency summary of some runs: per configuration, op kind and quantile, the median over
/// the `ok` runs of their latency at it. Sorted by configuration, op (schema order), quantile.
/// Latency rows join their run on `run_id`, which must be unique among `runs` (it is within one
/// result directory).
pub fn summarize_latency(runs: &[RunRow], latency: &[LatencyRow]) -> Vec<SummaryLatencyRow> {
    let ok: BTreeMap<&str, &RunRow> = runs
        .iter()
        .filter(|r| r.status.is_ok())
        .map(|r| (r.run_id.as_str(), r))
        .collect();
    let labels = run_labels(runs);
    type Cell = (Vec<f64>, Vec<f64>, Vec<f64>, BTreeSet<String>);
    let mut by: BTreeMap<(ConfigKey, usize, String, u32), Cell> = BTreeMap::new();
    for l in latency {
        let Some(r) = ok.get(l.run_id.as_str()) else {
            continue;
        };
        let q = quantile_key(l.quantile);
        let rank = crate::OPS
            .iter()
            .position(|o| *o == l.op)
            .unwrap_or(crate::OPS.len());
        let e = by
            .entry((ConfigKey::of(r), rank, l.op.clone(), q))
            .or_default();
        e.0.push(l.latency_ns as f64);
        e.1.push(l.count as f64);
        e.2.push(l.mean_ns);
        e.3.insert(l.run_id.clone());
    }
    by.into_iter()
        .map(
            |((k, _, op, q), (mut lat, mut count, mut mean, rs))| SummaryLatencyRow {
                machine: k.machine,
                trace_label: labels[&k.trace].clone(),
                trace_name: k.trace.name,
                trace_hash: k.trace.hash,
                replay_threads: k.replay_threads,
                allocator: k.allocator,
                op,
                runs: rs.len() as u32,
                count: median(&mut count),
                mean_ns: median(&mut mean),
                quantile: q as f64 / 100_000.0,
                latency_ns: median(&mut lat),
            },
        )
        .collect()
}

/// A quantile as integer hundred-thousandths (0.999 → 99 900), so grid points compare exactly.
pub fn quantile_key(q: f64) -> u32 {
    (q * 100_000.0 + 0.5) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, hash: &str) -> TraceId {
        TraceId {
            name: name.into(),
            hash: Some(hash.into()),
        }
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(cv(&[1.0]), None);
        let c = cv(&[10.0, 12.0, 11.0]).unwrap();
        assert!((c - 1.0 / 11.0).abs() < 1e-12);
    }

    #[test]
    fn ratios_are_within_a_group_against_system_and_the_fastest() {
        let rows = [
            ("a", "system", Some(10.0)),
            ("a", "fancy", Some(20.0)),
            ("a", "bump", None),
            ("b", "fancy", Some(4.0)),
        ];
        let r = ratios(&rows);
        assert_eq!(r[0].vs_system, Some(1.0));
        assert_eq!(r[0].vs_best, Some(0.5));
        assert_eq!(r[1].vs_system, Some(2.0));
        assert_eq!(r[1].vs_best, Some(1.0));
        assert_eq!(r[2], Ratios::default());
        assert_eq!(r[3].vs_system, None);
        assert_eq!(r[3].vs_best, Some(1.0));
    }

    #[test]
    fn traces_sharing_a_name_get_labels_that_tell_them_apart() {
        let (a, b, c) = (id("larson", "aa11"), id("larson", "bb22"), id("rl", "cc33"));
        let pa = "workload=larson seed=1 threads=1";
        let pb = "workload=larson seed=1 threads=2";
        // Both replayed with 4 threads: told apart by the parameter that differs.
        let l = labels([(&a, pa, 4), (&b, pb, 4), (&c, "threads=1", 1)]);
        assert_eq!(l[&a], "larson (threads=1)");
        assert_eq!(l[&b], "larson (threads=2)");
        assert_eq!(l[&c], "rl");
        // Replayed with different thread counts: the thread count tells them apart already.
        let l = labels([(&a, pa, 1), (&b, pb, 2), (&a, pa, 1)]);
        assert_eq!((l[&a].as_str(), l[&b].as_str()), ("larson", "larson"));
        // Same parameters (or none): the hash tells them apart.
        let d = id("larson", "0123456789abcdef");
        let l = labels([(&a, pa, 4), (&d, pa, 4)]);
        assert_eq!(l[&a], "larson #aa11");
        assert_eq!(l[&d], "larson #01234567");
    }
}
