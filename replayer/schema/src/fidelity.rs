//! `lab fidelity`'s summaries (`<program>/summary.json`) and the tables made of them: written
//! by the lab (which measures and aggregates), read by `analyze` (which puts the same tables
//! in the report). The aggregation lives in the lab; the table's content lives here, once, and
//! each reader only formats it (markdown, HTML).

use serde::{Deserialize, Deserializer, Serialize};

/// A figure `serde_json` wrote as `null` (it writes NaN so) reads back as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One allocator's medians.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AllocSummary {
    /// The library's name (glibc, jemalloc, …).
    pub allocator: String,
    #[serde(deserialize_with = "nan_if_null")]
    /// Median wall time of the real runs, seconds.
    pub real_wall_s: f64,
    #[serde(deserialize_with = "nan_if_null")]
    /// Median wall time of the replays (the op loop), seconds.
    pub replay_wall_s: f64,
    #[serde(deserialize_with = "nan_if_null")]
    /// Median peak RSS above the pre-`main` baseline of the real runs.
    pub real_heap_rss_bytes: f64,
    #[serde(deserialize_with = "nan_if_null")]
    /// Median peak heap RSS of the replays.
    pub replay_heap_rss_bytes: f64,
    #[serde(deserialize_with = "nan_if_null")]
    /// Median minor faults of the real runs.
    pub real_minflt: f64,
    #[serde(deserialize_with = "nan_if_null")]
    /// Median minor faults of the replays.
    pub replay_minflt: f64,
    /// Seconds saved against glibc (the first allocator): real, and as the replay predicts it.
    #[serde(deserialize_with = "nan_if_null")]
    pub real_saving_s: f64,
    #[serde(deserialize_with = "nan_if_null")]
    /// The same saving as the replay predicts it.
    pub predicted_saving_s: f64,
    /// Replay runs that did not finish ok.
    pub replay_failed: u32,
    /// Ops every ok replay run verified (the same in all of them), else `None`.
    pub replay_ops: Option<u64>,
    /// The most live bytes a replay reached.
    pub replay_peak_live_bytes: u64,
}

/// What fidelity found for one program.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProgramSummary {
    /// The program's name (its directory).
    pub program: String,
    /// Its command line.
    pub command: String,
    /// Runs per side and allocator.
    pub repeat: u32,
    /// Trace files the recording made (one per process).
    pub trace_files: usize,
    /// Events in them.
    pub trace_events: u64,
    /// Ops of the trace(s), by inspect.
    pub trace_ops: u64,
    /// The trace's peak live bytes.
    pub trace_peak_live_bytes: u64,
    /// Per allocator, in the order compared (the first is the baseline).
    pub allocators: Vec<AllocSummary>,
    /// Kendall τ-b between the real and the replayed medians over the allocators.
    pub tau_time: Option<f64>,
    /// The same for peak heap RSS.
    pub tau_heap_rss: Option<f64>,
    /// Trace events per second of the first allocator's real time.
    #[serde(deserialize_with = "nan_if_null")]
    pub events_per_real_s: f64,
    /// The first allocator's replay time over its real time.
    #[serde(deserialize_with = "nan_if_null")]
    pub replay_fraction: f64,
    /// Allocator pairs the real runs tell apart (medians further apart than 3× the larger
    /// of their spreads, half the min–max range of each one's runs).
    #[serde(default)]
    pub separated_pairs: u32,
    /// Of those, the pairs the replay orders the same way (issue 15's time target: all).
    #[serde(default)]
    pub separated_pairs_ordered: u32,
    /// The replay's `--touch`.
    #[serde(default)]
    pub replay_touch: String,
    /// The replay's `--order`.
    #[serde(default)]
    pub replay_order: String,
}

/// The τ a ranking must reach (issue 15's target) and the band a replayed heap RSS must fall
/// in, as a fraction of the real one.
pub const TAU_TARGET: f64 = 0.8;
/// See [`TAU_TARGET`].
pub const RSS_BAND: (f64, f64) = (0.75, 1.25);

/// A table: an optional heading and caption, header cells, body cells (text; a miss of a
/// target carries ` ✗`).
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// A heading above it.
    pub heading: Option<String>,
    /// A line below the heading.
    pub caption: Option<String>,
    /// Column names.
    pub headers: Vec<&'static str>,
    /// Per column: right-aligned (numbers).
    pub numeric: Vec<bool>,
    /// The cells, row by row.
    pub rows: Vec<Vec<String>>,
}

fn mib(b: f64) -> String {
    if b.is_nan() {
        "–".into()
    } else {
        format!("{:.1}", b / (1024.0 * 1024.0))
    }
}

fn tau(t: Option<f64>) -> String {
    match t {
        None => "–".into(),
        Some(t) if t >= TAU_TARGET => format!("{t:.2}"),
        Some(t) => format!("{t:.2} ✗"),
    }
}

/// The first line of the tables: the replay mode they hold.
pub fn mode_line(s: &[ProgramSummary]) -> Option<String> {
    s.first().map(|p| {
        format!(
            "Replays with --touch {} --order {}.",
            p.replay_touch, p.replay_order
        )
    })
}

/// The tables of a fidelity run: one line per program, then per program real against replay
/// per allocator. τ below [`TAU_TARGET`] and a replayed heap RSS outside [`RSS_BAND`] of the
/// real one are marked ` ✗`.
pub fn tables(s: &[ProgramSummary]) -> Vec<Table> {
    let mut out = vec![Table {
        heading: None,
        caption: mode_line(s),
        headers: vec![
            "program",
            "events",
            "events/s real",
            "replay/real time",
            "τ time",
            "τ heap RSS",
            "separated pairs ordered",
            "ops verified",
            "peak live trace / replay",
        ],
        numeric: vec![false, true, true, true, true, true, true, false, false],
        rows: s
            .iter()
            .map(|p| {
                let verified = p
                    .allocators
                    .iter()
                    .all(|a| a.replay_failed == 0 && a.replay_ops == Some(p.trace_ops));
                let live = p
                    .allocators
                    .iter()
                    .map(|a| a.replay_peak_live_bytes)
                    .max()
                    .unwrap_or(0);
                vec![
                    p.program.clone(),
                    p.trace_events.to_string(),
                    format!("{:.2}M", p.events_per_real_s / 1e6),
                    format!("{:.2}", p.replay_fraction),
                    tau(p.tau_time),
                    tau(p.tau_heap_rss),
                    format!(
                        "{}/{}{}",
                        p.separated_pairs_ordered,
                        p.separated_pairs,
                        if p.separated_pairs_ordered < p.separated_pairs {
                            " ✗"
                        } else {
                            ""
                        }
                    ),
                    if verified {
                        format!("{} = inspect's", p.trace_ops)
                    } else {
                        format!("✗ (inspect {})", p.trace_ops)
                    },
                    format!("{} / {}", p.trace_peak_live_bytes, live),
                ]
            })
            .collect(),
    }];
    for p in s {
        let command = if p.command.len() > 80 {
            format!("{}…", &p.command[..p.command.floor_char_boundary(80)])
        } else {
            p.command.clone()
        }
        .replace('`', "'")
        .replace('\n', " ");
        out.push(Table {
            heading: Some(format!("{} — `{command}`", p.program)),
            caption: Some(format!(
                "{} trace file(s), {} events; medians of {} runs per side",
                p.trace_files, p.trace_events, p.repeat
            )),
            headers: vec![
                "allocator",
                "real s",
                "replay s",
                "saving vs glibc real s",
                "predicted s",
                "real heap RSS MiB",
                "replay heap RSS MiB",
                "replay/real RSS",
                "real minflt",
                "replay minflt",
                "replay failed",
            ],
            numeric: vec![
                false, true, true, true, true, true, true, true, true, true, true,
            ],
            rows: p
                .allocators
                .iter()
                .map(|a| {
                    let ratio = a.replay_heap_rss_bytes / a.real_heap_rss_bytes;
                    let miss = if (RSS_BAND.0..=RSS_BAND.1).contains(&ratio) {
                        ""
                    } else {
                        " ✗"
                    };
                    vec![
                        a.allocator.clone(),
                        format!("{:.3}", a.real_wall_s),
                        format!("{:.3}", a.replay_wall_s),
                        format!("{:+.3}", a.real_saving_s),
                        format!("{:+.3}", a.predicted_saving_s),
                        mib(a.real_heap_rss_bytes),
                        mib(a.replay_heap_rss_bytes),
                        format!("{ratio:.2}{miss}"),
                        format!("{:.0}", a.real_minflt),
                        format!("{:.0}", a.replay_minflt),
                        a.replay_failed.to_string(),
                    ]
                })
                .collect(),
        });
    }
    out
}

/// The tables as markdown (what `lab fidelity` prints and writes to `fidelity.md`).
pub fn markdown(s: &[ProgramSummary]) -> String {
    let mut o = String::new();
    for t in tables(s) {
        if let Some(h) = &t.heading {
            o.push_str(&format!("\n### {h}\n\n"));
        }
        if let Some(c) = &t.caption {
            o.push_str(&format!("{c}\n\n"));
        }
        o.push_str(&format!("| {} |\n", t.headers.join(" | ")));
        let align: Vec<&str> = t
            .numeric
            .iter()
            .map(|&n| if n { "---:" } else { "---" })
            .collect();
        o.push_str(&format!("|{}|\n", align.join("|")));
        for r in &t.rows {
            o.push_str(&format!("| {} |\n", r.join(" | ")));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program() -> ProgramSummary {
        let a = |name: &str, real: f64, replay: f64| AllocSummary {
            allocator: name.into(),
            real_wall_s: real,
            replay_wall_s: replay,
            real_heap_rss_bytes: 10.0 * 1048576.0,
            replay_heap_rss_bytes: if name == "glibc" { 5.0 } else { 10.0 } * 1048576.0,
            real_minflt: 100.0,
            replay_minflt: 90.0,
            real_saving_s: 0.0,
            predicted_saving_s: 0.0,
            replay_failed: 0,
            replay_ops: Some(42),
            replay_peak_live_bytes: 1000,
        };
        ProgramSummary {
            program: "p".into(),
            command: "/bin/p `x`".into(),
            repeat: 5,
            trace_files: 1,
            trace_events: 43,
            trace_ops: 42,
            trace_peak_live_bytes: 1000,
            allocators: vec![a("glibc", 1.0, 0.5), a("jemalloc", 0.9, f64::NAN)],
            tau_time: Some(0.5),
            tau_heap_rss: Some(1.0),
            events_per_real_s: 43.0,
            replay_fraction: 0.5,
            separated_pairs: 1,
            separated_pairs_ordered: 0,
            replay_touch: "pages".into(),
            replay_order: "deps".into(),
        }
    }

    #[test]
    fn a_summary_with_missing_figures_reads_back_and_marks_misses() {
        let p = program();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"replay_wall_s\":null"), "{json}");
        let back: ProgramSummary = serde_json::from_str(&json).unwrap();
        assert!(back.allocators[1].replay_wall_s.is_nan());
        let t = tables(&[back]);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].rows[0][4], "0.50 ✗");
        assert_eq!(t[0].rows[0][5], "1.00");
        assert_eq!(t[0].rows[0][6], "0/1 ✗");
        assert_eq!(t[0].rows[0][7], "42 = inspect's");
        // glibc's replayed heap RSS is half the real one: a miss; jemalloc's equal: none.
        assert_eq!(t[1].rows[0][7], "0.50 ✗");
        assert_eq!(t[1].rows[1][7], "1.00");
        assert_eq!(t[1].rows[1][2], "NaN");
        let md = markdown(&[program()]);
        assert!(
            md.starts_with("Replays with --touch pages --order deps.\n"),
            "{md}"
        );
        assert!(md.contains("### p — `/bin/p 'x'`"), "{md}");
        assert!(md.contains("|---|---:|---:|"), "{md}");
    }
}
