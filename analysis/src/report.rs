//! Writing the outputs: `tables/*.md|csv`, `tables.md`, `plots/*.png|svg` and `report.html`
//! (one page; the plots inlined as SVG, so it is viewable offline alone; links to the files
//! beside it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::compute::Analysis;
use crate::error::Error;
use crate::load::Problem;
use std::collections::BTreeSet;

use crate::figures::Figures;
use crate::plots::{Figure, Group, Rendered, render};
use crate::tables::Table;

/// What was written.
#[derive(Debug)]
pub struct Written {
    /// `tables/<name>.md` and `.csv` of each table.
    pub tables: Vec<(PathBuf, PathBuf)>,
    /// `tables.md`: every table on one page.
    pub tables_md: PathBuf,
    /// Each figure's PNG and SVG, in figure order (figures that failed are missing).
    pub plots: Vec<Rendered>,
    /// `report.html`.
    pub html: PathBuf,
    /// `summary.parquet` and `summary_latency.parquet` (crate::summary).
    pub summary: Vec<PathBuf>,
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Renders the figures on up to `threads` threads; a figure that fails is a problem.
pub fn render_all(
    figs: &[Figure],
    dir: &Path,
    threads: usize,
    problems: &mut Vec<Problem>,
) -> Result<Vec<Option<Rendered>>, Error> {
    mkdir(dir)?;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Rendered, Error>>>> =
        Mutex::new((0..figs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, figs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = figs.get(i) else { break };
                    let r = render(f, dir);
                    results.lock().expect("no panics while held")[i] = Some(r);
                }
            });
        }
    });
    let mut out = Vec::new();
    let mut first_err: Option<String> = None;
    let mut failed = 0;
    for r in results.into_inner().expect("threads joined") {
        match r {
            Some(Ok(r)) => out.push(Some(r)),
            Some(Err(e)) => {
                failed += 1;
                first_err.get_or_insert_with(|| e.to_string());
                out.push(None);
            }
            None => out.push(None),
        }
    }
    if let Some(e) = first_err {
        problems.push(Problem::new(
            None,
            format!("{failed} of {} plots could not be drawn: {e}", figs.len()),
        ));
    }
    Ok(out)
}

/// Writes every output into `out`.
pub fn write_all(
    out: &Path,
    a: &Analysis,
    tables: &[Table],
    figs: &Figures,
    rendered: &[Option<Rendered>],
    fidelity: &[results_schema::fidelity::ProgramSummary],
    explained: &crate::explain::Page,
) -> Result<Written, Error> {
    mkdir(out)?;
    let tdir = out.join("tables");
    mkdir(&tdir)?;
    let mut written = Vec::new();
    for t in tables {
        let md = tdir.join(format!("{}.md", t.name));
        let csv = tdir.join(format!("{}.csv", t.name));
        write(&md, &t.to_markdown())?;
        write(&csv, &t.to_csv())?;
        written.push((md, csv));
    }
    let tables_md = out.join("tables.md");
    write(&tables_md, &all_markdown(a, tables))?;
    if !fidelity.is_empty() {
        write(
            &out.join("fidelity.md"),
            &results_schema::fidelity::markdown(fidelity),
        )?;
    }
    write(
        &out.join("explain.md"),
        &crate::explain::markdown(out, explained),
    )?;
    let html = out.join("report.html");
    write(
        &html,
        &html_page(out, a, tables, figs, rendered, fidelity, explained),
    )?;
    let summary = crate::summary::write(out, a)?;
    Ok(Written {
        tables: written,
        tables_md,
        plots: rendered.iter().flatten().cloned().collect(),
        html,
        summary,
    })
}

fn all_markdown(a: &Analysis, tables: &[Table]) -> String {
    let mut s = String::from("# alloclab analysis\n\n");
    let _ = writeln!(
        s,
        "{} runs ({} ok, {} not ok) from {} result director{}.\n",
        a.runs_total,
        a.runs_ok,
        a.failed.len(),
        a.sources.len(),
        if a.sources.len() == 1 { "y" } else { "ies" }
    );
    if !a.problems.is_empty() {
        s.push_str("## Input problems\n\n");
        for p in &a.problems {
            let _ = writeln!(s, "- {p}");
        }
        s.push('\n');
    }
    for t in tables {
        s.push_str(&t.to_markdown());
        s.push('\n');
    }
    s
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Markdown-ish inline text (`code`, **bold**) to HTML.
pub(crate) fn inline(s: &str) -> String {
    let e = esc(s);
    let mut out = String::new();
    let mut code = false;
    let mut bold = false;
    let mut rest = e.as_str();
    while let Some(i) = rest.find(['`', '*']) {
        out.push_str(&rest[..i]);
        if rest[i..].starts_with("**") {
            out.push_str(if bold { "</b>" } else { "<b>" });
            bold = !bold;
            rest = &rest[i + 2..];
        } else if rest[i..].starts_with('`') {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
            rest = &rest[i + 1..];
        } else {
            out.push('*');
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    if code {
        out.push_str("</code>");
    }
    if bold {
        out.push_str("</b>");
    }
    out
}

fn rel(out: &Path, p: &Path) -> String {
    p.strip_prefix(out)
        .unwrap_or(p)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn inline_svg(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let start = s.find("<svg")?;
    Some(s[start..].to_owned())
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;\
color:#222}h1{font-size:1.6em}h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #ccc}\
h3{font-size:1.1em;margin-top:1.5em}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}\
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f2f2f2}\
td.t{text-align:left}p.note{color:#555;max-width:60em}figure{margin:1em 0 2em 0}\
figure svg{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;max-width:60em}\
.problems li{color:#8a4b00}nav{position:sticky;top:0;background:#fff;padding:.4em 0;\
border-bottom:1px solid #ddd;z-index:1}nav a{margin-right:1em}code{background:#f5f5f5}\
details{margin:.4em 0}details>summary{cursor:pointer;padding:.2em 0}\
details.trace{border:1px solid #ddd;border-radius:4px;padding:.2em .8em;margin:.5em 0}\
details.trace>summary{font-size:1.05em}ul.toc{columns:3 18em;padding-left:1.2em}\
.ok{color:#276b27}.bad{color:#a00}h2,h3,figure,details{scroll-margin-top:3em}";

/// Opens a closed `<details>` a link points into (the page works without it: all content is
/// there, collapsed).
const SCRIPT: &str = "function openTarget(){var id=decodeURIComponent(location.hash.slice(1));\
if(!id)return;var e=document.getElementById(id);while(e){if(e.tagName==='DETAILS')e.open=true;\
e=e.parentElement;}var t=document.getElementById(id);if(t)t.scrollIntoView();}\
window.addEventListener('hashchange',openTarget);openTarget();";

/// Tables with more rows than this are collapsed (a click shows them).
const LONG_TABLE: usize = 40;

fn figure_html(h: &mut String, out: &Path, f: &Figure, r: &Option<Rendered>) {
    let _ = writeln!(h, "<figure id=\"{}\">", esc(&f.stem));
    match r
        .as_ref()
        .and_then(|r| inline_svg(&r.svg).map(|svg| (r, svg)))
    {
        Some((r, svg)) => {
            h.push_str(&svg);
            let _ = writeln!(
                h,
                "\n<figcaption>{} <a href=\"{}\">PNG</a> <a href=\"{}\">SVG</a></figcaption>",
                inline(&f.caption),
                esc(&rel(out, &r.png)),
                esc(&rel(out, &r.svg))
            );
        }
        None => {
            let _ = writeln!(
                h,
                "<p>{}: could not be drawn (see input problems).</p>",
                esc(&f.title)
            );
        }
    }
    h.push_str("</figure>\n");
}

/// A figure and the files it was drawn to (None: it could not be drawn).
type Placed<'a> = (&'a Figure, &'a Option<Rendered>);

fn trace_id(trace: &str) -> String {
    format!("trace-{}", crate::figures::slug(trace))
}

fn html_page(
    out: &Path,
    a: &Analysis,
    tables: &[Table],
    figs: &Figures,
    rendered: &[Option<Rendered>],
    fidelity: &[results_schema::fidelity::ProgramSummary],
    explained: &crate::explain::Page,
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>alloclab analysis</title><style>{CSS}</style></head><body>\n"
    );
    h.push_str("<h1>alloclab analysis</h1>\n");
    let traces: BTreeSet<&str> = a.configs.iter().map(|c| c.trace_label.as_str()).collect();
    let allocators: BTreeSet<&str> = a.configs.iter().map(|c| c.allocator.as_str()).collect();
    let threads: BTreeSet<u32> = a.configs.iter().map(|c| c.replay_threads).collect();
    let sources = a
        .sources
        .iter()
        .map(|s| format!("<code>{}</code>", esc(s)))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        h,
        "<p>{} runs ({} ok, <a href=\"#failed\">{} not ok</a>) from {} result director{}{}</p>",
        a.runs_total,
        a.runs_ok,
        a.failed.len(),
        a.sources.len(),
        if a.sources.len() == 1 { "y" } else { "ies" },
        if a.sources.len() <= 6 {
            format!(": {sources}.")
        } else {
            format!(
                ".</p>\n<details><summary>the directories</summary><p>{sources}</p></details><p>"
            )
        }
    );
    let _ = writeln!(
        h,
        "<p>{} trace{}, {} allocator{} ({}), replay threads {}; {} plots.</p>",
        traces.len(),
        if traces.len() == 1 { "" } else { "s" },
        allocators.len(),
        if allocators.len() == 1 { "" } else { "s" },
        esc(&allocators.iter().copied().collect::<Vec<_>>().join(", ")),
        threads
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        rendered.iter().flatten().count()
    );
    let overview: Vec<Placed> = figs
        .figs
        .iter()
        .zip(rendered)
        .filter(|(f, _)| matches!(f.group, Group::Overview(_)))
        .collect();
    let mut per_trace: Vec<(&str, Vec<Placed>)> = Vec::new();
    for (f, r) in figs.figs.iter().zip(rendered) {
        if let Group::Trace(t) = &f.group {
            match per_trace.last_mut() {
                Some((last, v)) if *last == t.as_str() => v.push((f, r)),
                _ => per_trace.push((t.as_str(), vec![(f, r)])),
            }
        }
    }
    h.push_str("<nav>");
    if !a.problems.is_empty() {
        h.push_str("<a href=\"#problems\">Input problems</a>");
    }
    let _ = write!(
        h,
        "<a href=\"#failed\">Failed runs ({})</a><a href=\"#facts\">Machine and build</a>\
         <a href=\"#plots\">Overview plots</a><a href=\"#tables\">Tables</a>\
         <a href=\"#traces\">Per trace</a><a href=\"tables.md\">tables.md</a>",
        a.failed.len()
    );
    if !fidelity.is_empty() {
        h.push_str("<a href=\"#fidelity\">Real programs</a>");
    }
    h.push_str("<a href=\"#explain\">Why they differ</a>");
    h.push_str("</nav>\n");
    if !a.problems.is_empty() {
        h.push_str("<h2 id=\"problems\">Input problems</h2>\n<ul class=\"problems\">\n");
        for p in &a.problems {
            let _ = writeln!(h, "<li>{}</li>", esc(&p.to_string()));
        }
        h.push_str("</ul>\n");
    }
    let is_fact = |t: &&Table| t.name == "machines" || t.name == "allocators";
    let failed_table = tables.iter().find(|t| t.name == "failed_runs");
    h.push_str("<h2 id=\"failed\">Failed runs</h2>\n");
    match failed_table {
        Some(t) if !t.rows.is_empty() => {
            let _ = writeln!(
                h,
                "<p class=\"bad\">{} run{} did not finish <code>ok</code>; {} left out of \
                 every figure.</p>",
                a.failed.len(),
                if a.failed.len() == 1 { "" } else { "s" },
                if a.failed.len() == 1 {
                    "it is"
                } else {
                    "they are"
                }
            );
            table_html(&mut h, t);
        }
        _ => h.push_str("<p class=\"ok\">None: every run finished <code>ok</code>.</p>\n"),
    }
    crate::fidelity::html(&mut h, fidelity);
    crate::explain::html(&mut h, out, explained);
    h.push_str("<h2 id=\"facts\">Machine and build</h2>\n");
    for t in tables.iter().filter(is_fact) {
        table_html(&mut h, t);
    }

    h.push_str("<h2 id=\"plots\">Overview plots</h2>\n");
    if figs.figs.is_empty() {
        h.push_str("<p>No plots: no data to draw.</p>\n");
    }
    let mut sections: Vec<&str> = Vec::new();
    for (f, _) in &overview {
        if let Group::Overview(s) = &f.group
            && !sections.contains(&s.as_str())
        {
            sections.push(s);
        }
    }
    if sections.len() > 1 {
        h.push_str("<p>");
        for s in &sections {
            let _ = write!(
                h,
                "<a href=\"#plots-{0}\">{1}</a> · ",
                crate::figures::slug(s),
                esc(s)
            );
        }
        h.push_str("<a href=\"#traces\">per trace</a></p>\n");
    }
    for sec in &sections {
        let _ = writeln!(
            h,
            "<h3 id=\"plots-{}\">{}</h3>",
            crate::figures::slug(sec),
            esc(sec)
        );
        for (f, r) in overview
            .iter()
            .filter(|(f, _)| matches!(&f.group, Group::Overview(s) if s == sec))
        {
            figure_html(&mut h, out, f, r);
        }
    }

    h.push_str("<h2 id=\"tables\">Tables</h2>\n<p>");
    let rest: Vec<&Table> = tables
        .iter()
        .filter(|t| !is_fact(t) && t.name != "failed_runs")
        .collect();
    for t in &rest {
        let _ = write!(h, "<a href=\"#{}\">{}</a> · ", esc(&t.name), esc(&t.title));
    }
    h.push_str("<a href=\"tables.md\">all in one page (tables.md)</a></p>\n");
    for t in rest {
        table_html(&mut h, t);
    }

    h.push_str("<h2 id=\"traces\">Per trace</h2>\n");
    h.push_str(
        "<p class=\"note\">Throughput vs threads, latency percentile curves, and memory and \
         fragmentation over time, for each trace (click a trace to open it).</p>\n",
    );
    for n in &figs.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", inline(n));
    }
    if !per_trace.is_empty() {
        h.push_str("<ul class=\"toc\">\n");
        for (t, v) in &per_trace {
            let _ = writeln!(
                h,
                "<li><a href=\"#{}\">{}</a> ({} plot{})</li>",
                trace_id(t),
                esc(t),
                v.len(),
                if v.len() == 1 { "" } else { "s" }
            );
        }
        h.push_str("</ul>\n");
    }
    let open = per_trace.len() <= 2;
    for (t, v) in &per_trace {
        let workload = a
            .configs
            .iter()
            .find(|c| c.trace_label == *t)
            .map(|c| c.workload.to_string())
            .unwrap_or_default();
        let nthreads: BTreeSet<u32> = a
            .configs
            .iter()
            .filter(|c| c.trace_label == *t)
            .map(|c| c.replay_threads)
            .collect();
        let _ = writeln!(
            h,
            "<details class=\"trace\" id=\"{}\"{}><summary><b>{}</b> — workload <code>{}</code>, \
             threads {}, {} plot{}</summary>",
            trace_id(t),
            if open { " open" } else { "" },
            esc(t),
            esc(&workload),
            nthreads
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            v.len(),
            if v.len() == 1 { "" } else { "s" }
        );
        for (f, r) in v {
            figure_html(&mut h, out, f, r);
        }
        h.push_str("</details>\n");
    }
    let _ = write!(h, "<script>{SCRIPT}</script>\n</body></html>\n");
    h
}

fn table_html(h: &mut String, t: &Table) {
    let _ = writeln!(
        h,
        "<h3 id=\"{0}\">{1}</h3>\n<p class=\"note\">{2} <a href=\"tables/{0}.csv\">CSV</a> \
         <a href=\"tables/{0}.md\">Markdown</a></p>",
        esc(&t.name),
        esc(&t.title),
        inline(&t.note)
    );
    if t.rows.is_empty() {
        h.push_str("<p><i>(no data)</i></p>\n");
        return;
    }
    let long = t.rows.len() > LONG_TABLE;
    if long {
        let _ = writeln!(
            h,
            "<details><summary>show all {} rows</summary>",
            t.rows.len()
        );
    }
    h.push_str("<table><tr>");
    for c in &t.headers {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>\n");
    for r in &t.rows {
        h.push_str("<tr>");
        for c in r {
            let numeric = c
                .raw
                .chars()
                .next()
                .is_some_and(|ch| ch.is_ascii_digit() || ch == '-')
                || c.text == "—";
            let _ = write!(
                h,
                "<td{}>{}</td>",
                if numeric { "" } else { " class=\"t\"" },
                inline(&c.text)
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    if long {
        h.push_str("</details>\n");
    }
}
