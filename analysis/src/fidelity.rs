//! `lab fidelity`'s results in the report: the summaries the lab wrote
//! (`<dir>/<program>/summary.json`), shown as results-schema's fidelity tables. The lab
//! aggregates (medians, savings, Kendall's τ); this only reads and formats.

use std::fmt::Write as _;
use std::path::Path;

use results_schema::fidelity::{ProgramSummary, tables};

use crate::error::Error;
use crate::load::Problem;

/// The summaries under `dir`, by program directory name; one that cannot be read is a problem
/// (and left out). A `dir` that is not a directory is bad input.
pub fn load(dir: &Path, problems: &mut Vec<Problem>) -> Result<Vec<ProgramSummary>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::BadArgument {
        arg: dir.display().to_string(),
        reason: format!("--fidelity needs the directory `lab fidelity --out` wrote: {e}"),
    })?;
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path().join("summary.json"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        match std::fs::read(&f)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<ProgramSummary>(&b).map_err(|e| e.to_string()))
        {
            Ok(s) => out.push(s),
            Err(e) => problems.push(Problem::new(
                f.clone(),
                format!("not a fidelity summary ({e}); left out of the fidelity section"),
            )),
        }
    }
    if out.is_empty() {
        problems.push(Problem::new(
            dir.to_path_buf(),
            "no <program>/summary.json of `lab fidelity` here: the report has no fidelity section",
        ));
    }
    Ok(out)
}

/// The report's fidelity section (nothing without summaries).
pub fn html(h: &mut String, s: &[ProgramSummary]) {
    if s.is_empty() {
        return;
    }
    h.push_str("<h2 id=\"fidelity\">Real programs against their replays</h2>\n");
    h.push_str(
        "<p class=\"note\">From <code>lab fidelity</code>: each program run for real under each \
         allocator (LD_PRELOAD) and its recorded trace replayed under the same libraries; \
         medians per side. <code>✗</code>: a Kendall τ below 0.8 or a replayed heap RSS \
         outside 0.75–1.25× the real one. Also in <a href=\"fidelity.md\">fidelity.md</a>.</p>\n",
    );
    for t in tables(s) {
        if let Some(head) = &t.heading {
            let _ = writeln!(h, "<h3>{}</h3>", crate::report::esc(head));
        }
        if let Some(c) = &t.caption {
            let _ = writeln!(h, "<p class=\"note\">{}</p>", crate::report::esc(c));
        }
        h.push_str("<table><tr>");
        for c in &t.headers {
            let _ = write!(h, "<th>{}</th>", crate::report::esc(c));
        }
        h.push_str("</tr>\n");
        for r in &t.rows {
            h.push_str("<tr>");
            for (c, numeric) in r.iter().zip(&t.numeric) {
                let class = match (c.contains('✗'), numeric) {
                    (true, _) => " class=\"bad\"",
                    (false, false) => " class=\"t\"",
                    (false, true) => "",
                };
                let _ = write!(h, "<td{class}>{}</td>", crate::report::esc(c));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
}
