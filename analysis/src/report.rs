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
use crate::plots::{Figure, Rendered, render};
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
    figs: &[Figure],
    rendered: &[Option<Rendered>],
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
    let html = out.join("report.html");
    write(&html, &html_page(out, a, tables, figs, rendered))?;
    Ok(Written {
        tables: written,
        tables_md,
        plots: rendered.iter().flatten().cloned().collect(),
        html,
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
fn inline(s: &str) -> String {
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
h3{font-size:1.1em}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}\
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f2f2f2}\
td.t{text-align:left}p.note{color:#555;max-width:60em}figure{margin:1em 0}\
figure svg{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;max-width:60em}\
.problems li{color:#8a4b00}nav a{margin-right:1em}code{background:#f5f5f5}";

fn html_page(
    out: &Path,
    a: &Analysis,
    tables: &[Table],
    figs: &[Figure],
    rendered: &[Option<Rendered>],
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>alloclab analysis</title><style>{CSS}</style></head><body>\n"
    );
    h.push_str("<h1>alloclab analysis</h1>\n");
    let _ = writeln!(
        h,
        "<p>{} runs ({} ok, {} not ok) from {} result director{}: {}.</p>",
        a.runs_total,
        a.runs_ok,
        a.failed.len(),
        a.sources.len(),
        if a.sources.len() == 1 { "y" } else { "ies" },
        a.sources
            .iter()
            .map(|s| format!("<code>{}</code>", esc(s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    h.push_str(
        "<nav><a href=\"#tables\">Tables</a><a href=\"#plots\">Plots</a>\
         <a href=\"#facts\">Machine and build</a><a href=\"tables.md\">tables.md</a></nav>\n",
    );
    if !a.problems.is_empty() {
        h.push_str("<h2 id=\"problems\">Input problems</h2>\n<ul class=\"problems\">\n");
        for p in &a.problems {
            let _ = writeln!(h, "<li>{}</li>", esc(&p.to_string()));
        }
        h.push_str("</ul>\n");
    }
    let (facts, rest): (Vec<&Table>, Vec<&Table>) = tables
        .iter()
        .partition(|t| t.name == "machines" || t.name == "allocators");
    h.push_str("<h2 id=\"tables\">Tables</h2>\n");
    for t in rest {
        table_html(&mut h, t);
    }
    h.push_str("<h2 id=\"plots\">Plots</h2>\n");
    if figs.is_empty() {
        h.push_str("<p>No plots: no data to draw.</p>\n");
    }
    for (f, r) in figs.iter().zip(rendered) {
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
    h.push_str("<h2 id=\"facts\">Machine and build</h2>\n");
    for t in facts {
        table_html(&mut h, t);
    }
    h.push_str("</body></html>\n");
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
}
