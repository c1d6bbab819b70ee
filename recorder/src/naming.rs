//! Trace file names: how a path template (`ALLOCLAB_OUTPUT`, `record -o`) becomes one file per
//! process, so that no process ever overwrites another's trace. Shared with the `record`
//! binary (which finds the files of a run with [`Template::matches`]).
//!
//! * `%p` in the template stands for the pid: `t.%p.zst` → `t.4242.zst`.
//! * Without `%p`, the first process (the one `record` started) writes the template path, and
//!   every other one a name with `.<pid>` before the file name's first dot:
//!   `out/app.trace.zst` → `out/app.4242.trace.zst`.
//! * Files are created with `O_EXCL`. When the name is taken (an exec'd program has the pid of
//!   the process it replaced, which may have written a trace already), `-1`, `-2`, … follow
//!   the pid: `out/app.4242-1.trace.zst`.

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The template without `%p`, written by the first process; `None` with `%p`.
    pub root: Option<String>,
    /// What comes before the pid in a per-process name.
    pub prefix: String,
    /// What comes after it.
    pub suffix: String,
}

/// Parses a template.
pub fn parse(template: &str) -> Template {
    if let Some(i) = template.find("%p") {
        return Template {
            root: None,
            prefix: template[..i].to_string(),
            suffix: template[i + 2..].to_string(),
        };
    }
    let name_start = template.rfind('/').map_or(0, |i| i + 1);
    let name = &template[name_start..];
    // The first dot after any leading dots of a hidden file's name.
    let lead = name.len() - name.trim_start_matches('.').len();
    let (prefix, suffix) = match name[lead..].find('.') {
        Some(d) => {
            let cut = name_start + lead + d;
            (
                format!("{}.", &template[..cut]),
                template[cut..].to_string(),
            )
        }
        None => (format!("{template}."), String::new()),
    };
    Template {
        root: Some(template.to_string()),
        prefix,
        suffix,
    }
}

impl Template {
    /// The per-process name of `pid`, attempt `n` (0: no `-n`).
    pub fn pid_path(&self, pid: u32, n: u32) -> String {
        let suffix = self.suffix.replace("%p", &pid.to_string());
        if n == 0 {
            format!("{}{pid}{suffix}", self.prefix)
        } else {
            format!("{}{pid}-{n}{suffix}", self.prefix)
        }
    }

    /// The names a process tries, in order: the root name first when `root` is set.
    pub fn candidates(&self, pid: u32, root: bool) -> impl Iterator<Item = String> + '_ {
        let first = if root { self.root.clone() } else { None };
        first
            .into_iter()
            .chain((0..1000).map(move |n| self.pid_path(pid, n)))
    }

    /// Whether `path` is the root file or a per-process file of this template (any pid).
    pub fn matches(&self, path: &str) -> bool {
        if self.root.as_deref() == Some(path) {
            return true;
        }
        let Some(rest) = path.strip_prefix(&self.prefix) else {
            return false;
        };
        // The suffix may repeat %p: accept digits where it had one.
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        let mut tail = &rest[digits..];
        if let Some(t) = tail.strip_prefix('-') {
            let d = t.bytes().take_while(u8::is_ascii_digit).count();
            if d > 0 {
                tail = &t[d..];
            }
        }
        let pid = &rest[..digits];
        tail == self.suffix.replace("%p", pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_pid() {
        let t = parse("out/app.trace.zst");
        assert_eq!(t.root.as_deref(), Some("out/app.trace.zst"));
        assert_eq!(t.pid_path(42, 0), "out/app.42.trace.zst");
        assert_eq!(t.pid_path(42, 2), "out/app.42-2.trace.zst");
        let c: Vec<String> = t.candidates(7, true).take(3).collect();
        assert_eq!(
            c,
            [
                "out/app.trace.zst",
                "out/app.7.trace.zst",
                "out/app.7-1.trace.zst"
            ]
        );
        assert!(t.matches("out/app.trace.zst"));
        assert!(t.matches("out/app.123-4.trace.zst"));
        assert!(!t.matches("out/app.x.trace.zst"));
        assert!(!t.matches("out/app.12.trace.zst.tmp"));
        assert_eq!(parse("trace").pid_path(1, 0), "trace.1");
        assert_eq!(parse("d.x/.hidden.zst").pid_path(1, 0), "d.x/.hidden.1.zst");
    }

    #[test]
    fn names_with_pid() {
        let t = parse("/tmp/t.%p.zst");
        assert_eq!(t.root, None);
        assert_eq!(t.pid_path(42, 0), "/tmp/t.42.zst");
        assert_eq!(t.candidates(42, true).next().unwrap(), "/tmp/t.42.zst");
        assert!(t.matches("/tmp/t.42-1.zst"));
        assert!(!t.matches("/tmp/t..zst"));
    }
}
