//! `inspect trace.zst`: what a trace holds — header, duration, events per kind and thread, live
//! bytes, sizes, cross-thread frees, inconsistencies, OS memory calls (format 1.2). `--json`
//! for scripts.
//!
//! Exit codes: 0 the trace reads cleanly (warnings, like a cut file, are printed to stderr),
//! 2 the trace (or an argument) is bad: one line on stderr says which file, where and what.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use traces::inspect::{Inspector, Report};
use traces::{Clock, Header, MergedReader, Trailer};

/// Summarise an alloclab trace.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The trace file (.zst) to read.
    trace: std::path::PathBuf,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct JsonHeader<'a> {
    format_version: String,
    writer: &'a str,
    command_line: &'a [String],
    pid: u32,
    parent_pid: u32,
    start_unix_ns: u64,
    clock: String,
    clock_resolution_ns: Option<u64>,
    page_size: u32,
    host: &'a str,
    extra: std::collections::BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    file: String,
    file_bytes: u64,
    bytes_per_event: f64,
    header: JsonHeader<'a>,
    complete: bool,
    warnings: Vec<String>,
    trailer: Option<&'a Trailer>,
    frames: u64,
    /// The recorded process's RSS curve (format 1.1; null without samples) and its samples.
    rss: Option<traces::RssSummary>,
    process_samples: &'a [traces::ProcessSample],
    #[serde(flatten)]
    report: &'a Report,
}

fn clock_name(h: &Header) -> (String, Option<u64>) {
    match h.clock {
        Clock::Monotonic { resolution_ns, .. } => ("monotonic".into(), Some(resolution_ns)),
        Clock::Synthetic => ("synthetic".into(), None),
    }
}

fn human_bytes(b: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}

fn human_ns(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.3} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.3} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.3} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

fn print_text(
    out: &mut impl Write,
    file: &str,
    file_bytes: u64,
    r: &MergedReader,
    report: &Report,
) -> std::io::Result<()> {
    let h = r.header();
    let (clock, res) = clock_name(h);
    writeln!(out, "trace        {file}")?;
    let (major, minor) = r.format_version();
    writeln!(out, "format       {major}.{minor} written by {}", h.writer)?;
    let quoted: Vec<String> = h
        .command_line
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect();
    writeln!(out, "command      {}", quoted.join(" "))?;
    match traces::RssSummary::of(r.process_samples()) {
        Some(s) => writeln!(
            out,
            "process RSS  baseline {} at start, peak {} (+{}), end {}; {} minor faults, {} samples",
            human_bytes(s.baseline_bytes),
            human_bytes(s.peak_bytes),
            human_bytes(s.heap_peak_bytes()),
            human_bytes(s.end_bytes),
            s.minor_faults,
            s.samples
        )?,
        None => writeln!(out, "process RSS  not recorded (no samples in this trace)")?,
    }
    writeln!(
        out,
        "process      pid {} (parent {}) on {:?}",
        h.pid, h.parent_pid, h.host
    )?;
    writeln!(
        out,
        "clock        {clock}{}, page size {}",
        res.map(|r| format!(" (resolution {r} ns)"))
            .unwrap_or_default(),
        h.page_size
    )?;
    for (k, v) in &h.extra {
        writeln!(out, "  {k} = {v}")?;
    }
    let complete = r.trailer().is_some();
    writeln!(
        out,
        "file         {} in {} frames, {:.2} bytes/event, {}",
        human_bytes(file_bytes),
        r.frames(),
        file_bytes as f64 / report.events.max(1) as f64,
        if complete {
            "complete"
        } else {
            "CUT SHORT (no trailer)"
        }
    )?;
    if let Some(t) = r.trailer() {
        writeln!(
            out,
            "dropped      {} events (recorder's count)",
            t.dropped_events
        )?;
    }
    writeln!(
        out,
        "duration     {} ({} ops, {} events)",
        human_ns(report.duration_ns),
        report.ops,
        report.events
    )?;
    writeln!(
        out,
        "live bytes   peak {} ({} objects) at {}, final {} ({} objects)",
        human_bytes(report.peak_live_bytes),
        report.peak_live_objects,
        human_ns(report.peak_live_ts),
        human_bytes(report.final_live_bytes),
        report.final_live_objects
    )?;
    writeln!(
        out,
        "requested    {} in total; {} failed allocations; {} cross-thread frees",
        human_bytes(report.total_requested_bytes),
        report.failed_allocations,
        report.cross_thread_frees
    )?;
    let bad = &report.inconsistencies;
    writeln!(
        out,
        "inconsistent {} (free of unknown pointer {}, double free {}, allocation of a live \
         address {})",
        bad.total(),
        bad.free_of_unknown,
        bad.double_free,
        bad.alloc_of_live_address
    )?;
    let os = &report.os_calls;
    if os.calls.values().all(|c| c.calls == 0) {
        writeln!(
            out,
            "os calls     none recorded (record --os-calls records them)"
        )?;
    } else {
        writeln!(out, "\nos calls           calls    failed  bytes")?;
        for (name, c) in &os.calls {
            writeln!(
                out,
                "  {name:<14}{:>9} {:>9}  {}",
                c.calls,
                c.failed,
                human_bytes(c.bytes)
            )?;
            if *name == "madvise" {
                for (advice, c) in &os.madvise_by_advice {
                    writeln!(
                        out,
                        "    {:<12}{:>9} {:>9}  {}",
                        advice,
                        c.calls,
                        c.failed,
                        human_bytes(c.bytes)
                    )?;
                }
            }
        }
    }
    writeln!(out, "\nevents by kind")?;
    for (k, n) in &report.by_kind {
        writeln!(
            out,
            "  {k:<16}{n:>14}  {:>5.1} %",
            100.0 * *n as f64 / report.events.max(1) as f64
        )?;
    }
    writeln!(out, "\nthreads ({})", report.threads.len())?;
    writeln!(
        out,
        "  {:>6} {:>8} {:>12} {:>12} {:>12}  kinds",
        "id", "os tid", "events", "first", "last"
    )?;
    const MAX_THREADS_SHOWN: usize = 64;
    for t in report.threads.iter().take(MAX_THREADS_SHOWN) {
        let kinds: Vec<String> = t.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(
            out,
            "  {:>6} {:>8} {:>12} {:>12} {:>12}  {}",
            t.thread,
            t.os_tid,
            t.events,
            human_ns(t.first_ts),
            human_ns(t.last_ts),
            kinds.join(", ")
        )?;
    }
    if report.threads.len() > MAX_THREADS_SHOWN {
        writeln!(
            out,
            "  … {} more threads (use --json for all)",
            report.threads.len() - MAX_THREADS_SHOWN
        )?;
    }
    writeln!(out, "\nrequested sizes")?;
    let max = report
        .sizes
        .iter()
        .map(|b| b.count)
        .max()
        .unwrap_or(0)
        .max(1);
    for b in report.sizes.iter().filter(|b| b.count > 0) {
        let label = if b.max == 0 {
            "0 B".to_string()
        } else if b.max == u64::MAX {
            format!("> {}", human_bytes(b.min_exclusive))
        } else {
            format!("≤ {}", human_bytes(b.max))
        };
        let bar = "#".repeat(((b.count as f64 / max as f64) * 40.0).ceil() as usize);
        writeln!(out, "  {label:>12} {:>12}  {bar}", b.count)?;
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), traces::TraceError> {
    let mut reader = MergedReader::open(&args.trace)?;
    let file = reader.path().to_string();
    for w in reader.warnings() {
        eprintln!("inspect: warning: {}", w.describe(&file));
    }
    let file_bytes = std::fs::metadata(&args.trace).map(|m| m.len()).unwrap_or(0);
    let mut insp = Inspector::new();
    while let Some(rec) = reader.next_record()? {
        insp.feed(&rec);
    }
    let report = insp.report();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = if args.json {
        let h = reader.header();
        let (clock, clock_resolution_ns) = clock_name(h);
        let j = JsonOut {
            file: file.clone(),
            file_bytes,
            bytes_per_event: file_bytes as f64 / report.events.max(1) as f64,
            header: JsonHeader {
                format_version: {
                    let (major, minor) = reader.format_version();
                    format!("{major}.{minor}")
                },
                writer: &h.writer,
                command_line: &h.command_line,
                pid: h.pid,
                parent_pid: h.parent_pid,
                start_unix_ns: h.start_unix_ns,
                clock,
                clock_resolution_ns,
                page_size: h.page_size,
                host: &h.host,
                extra: h
                    .extra
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            },
            complete: reader.trailer().is_some(),
            warnings: reader
                .warnings()
                .iter()
                .map(|w| w.describe(&file))
                .collect(),
            trailer: reader.trailer(),
            frames: reader.frames(),
            rss: traces::RssSummary::of(reader.process_samples()),
            process_samples: reader.process_samples(),
            report: &report,
        };
        serde_json::to_writer_pretty(&mut out, &j)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        print_text(&mut out, &file, file_bytes, &reader, &report)
    };
    match written.and_then(|_| out.flush()) {
        // A closed pipe (`inspect t.zst | head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(traces::TraceError::new(
            "stdout",
            0,
            traces::ErrorKind::Io(e),
        )),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inspect: {e}");
            ExitCode::from(2)
        }
    }
}
