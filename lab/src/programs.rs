//! The default real-program set of `lab fidelity --default-set`: Debian's python3 (every
//! object through malloc, one single-threaded and one multithreaded script), perl, sqlite3,
//! gcc (the driver runs cc1 and as on a small generated C file), git (`git log -p` over a
//! repository made for it), and two multithreaded C programs of the lab's own
//! (`programs/rounds.c`, `programs/pipeline.c`: threads created in rounds, objects passed
//! between threads), compiled with gcc. Each runs in well under a second here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{LabError, bad};
use crate::fidelity::{Program, gcc};

const ROUNDS_C: &str = include_str!("../programs/rounds.c");
const PIPELINE_C: &str = include_str!("../programs/pipeline.c");

/// Single-threaded python3: dicts of small objects, JSON out and back, a sort.
const PY_ST: &str = r#"
import json, sys
n = int(sys.argv[1])
d = {}
for i in range(n):
    d["key%d" % (i * 7)] = {"id": i, "tags": ["t%d" % (i % 13), "x" * (i % 40)]}
back = json.loads(json.dumps(d))
rows = sorted(back.items(), key=lambda kv: (len(kv[1]["tags"][1]), kv[0]))
print(len(rows), rows[0][0])
"#;

/// Multithreaded python3: four threads build, serialise and count their own data, handing
/// results to the main thread.
const PY_MT: &str = r#"
import json, threading, collections, sys
n = int(sys.argv[1])
def work(seed, out):
    d = {}
    for i in range(n):
        d["k%d" % (i * 7 + seed)] = [i, "v" * (i % 30), {"s": seed}]
    text = json.dumps(d)
    words = collections.Counter(text.split(","))
    out.append((len(json.loads(text)), len(words)))
out = []
ts = [threading.Thread(target=work, args=(s, out)) for s in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(sorted(out))
"#;

/// perl: a hash that churns (inserts, deletes behind), strings of varying length.
const PERL: &str = r#"my %h; my $n = $ARGV[0];
for my $i (1..$n) { $h{"k$i"} = "v" x ($i % 50); delete $h{"k" . ($i - 2000)} if $i > 2000; }
my @k = sort keys %h; print scalar(@k), "\n";"#;

/// sqlite3: rows made by a recursive query, an index, a grouped query.
const SQL: &str = "create table t(a integer, b text); \
with recursive c(x) as (select 1 union all select x + 1 from c limit 30000) \
insert into t select x, printf('%0*d', 20 + x % 200, x) from c; \
create index tb on t(b); \
select count(*), sum(length(b)) from t group by a % 7;";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn need(path: &str, pkg: &str) -> Result<(), LabError> {
    if Path::new(path).is_file() {
        Ok(())
    } else {
        Err(bad(format!(
            "{path} is missing: `apt-get install {pkg}` (the default program set uses it)"
        )))
    }
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(LabError::io(format!("writing {}", path.display())))
}

/// A C file with `n` functions that do a little of everything a compiler works at.
fn c_source(n: usize) -> String {
    let mut o = String::from("#include <stdio.h>\n#include <string.h>\n\n");
    for i in 0..n {
        let _ = write!(
            o,
            "struct s{i} {{ int a[{m}]; double d; const char *name; }};\n\
             static int f{i}(struct s{i} *p, int k) {{\n\
             \x20   int t = 0;\n\
             \x20   for (int j = 0; j < {m}; j++) {{ p->a[j] = j * k + {i}; t += p->a[j] % (j + 1); }}\n\
             \x20   switch (k % 4) {{ case 0: t += (int)p->d; break; case 1: t -= {i}; break;\n\
             \x20     default: t ^= (int)strlen(p->name); }}\n\
             \x20   return t;\n}}\n",
            m = 4 + i % 12
        );
    }
    o.push_str("int main(void) {\n    long t = 0;\n");
    for i in 0..n {
        let _ = writeln!(
            o,
            "    {{ struct s{i} v = {{ .d = {i}.5, .name = \"f{i}\" }}; t += f{i}(&v, {i}); }}"
        );
    }
    o.push_str("    printf(\"%ld\\n\", t);\n    return 0;\n}\n");
    o
}

/// A git repository of `commits` commits over 20 files, made with `git fast-import`.
fn git_repo(dir: &Path, commits: usize) -> Result<(), LabError> {
    let git = |args: &[&str], input: Option<&str>| -> Result<(), LabError> {
        let mut c = Command::new("/usr/bin/git");
        c.args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut ch = c.spawn().map_err(LabError::io("running /usr/bin/git"))?;
        if let Some(text) = input {
            use std::io::Write;
            let mut stdin = ch.stdin.take().expect("piped");
            stdin
                .write_all(text.as_bytes())
                .map_err(LabError::io("feeding git fast-import"))?;
        }
        let o = ch
            .wait_with_output()
            .map_err(LabError::io("running /usr/bin/git"))?;
        if !o.status.success() {
            return Err(bad(format!(
                "preparing the git repository: git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(())
    };
    std::fs::create_dir_all(dir).map_err(LabError::io(format!("creating {}", dir.display())))?;
    git(&["init", "-q", "-b", "main"], None)?;
    let mut stream = String::new();
    for i in 0..commits {
        let content: String = (0..(20 + i % 40))
            .map(|l| format!("line {l} of revision {i}: {}\n", "x".repeat((l * i) % 60)))
            .collect();
        let msg = format!("commit {i}\n");
        let _ = write!(
            stream,
            "commit refs/heads/main\nmark :{m}\ncommitter Lab <lab@example.org> {t} +0000\n\
             data {ml}\n{msg}",
            m = i + 1,
            t = 1_700_000_000 + i * 60,
            ml = msg.len()
        );
        if i > 0 {
            let _ = writeln!(stream, "from :{i}");
        }
        let _ = write!(
            stream,
            "M 100644 inline file{}.txt\ndata {}\n{content}\n",
            i % 20,
            content.len()
        );
    }
    git(&["fast-import", "--quiet"], Some(&stream))?;
    Ok(())
}

/// Prepares the default set in `work` (scripts, inputs, the C programs compiled, a git
/// repository) and returns its programs.
pub fn default_set(work: &Path) -> Result<Vec<Program>, LabError> {
    need("/usr/bin/python3", "python3")?;
    need("/usr/bin/perl", "perl")?;
    need("/usr/bin/sqlite3", "sqlite3")?;
    need("/usr/bin/gcc", "gcc")?;
    need("/usr/bin/git", "git")?;
    std::fs::create_dir_all(work).map_err(LabError::io(format!("creating {}", work.display())))?;
    let work = std::fs::canonicalize(work)
        .map_err(LabError::io(format!("resolving {}", work.display())))?;
    let py_st = work.join("py_st.py");
    let py_mt = work.join("py_mt.py");
    write(&py_st, PY_ST)?;
    write(&py_mt, PY_MT)?;
    let bin = |name: &str, src: &str| -> Result<PathBuf, LabError> {
        let c = work.join(format!("{name}.c"));
        let exe = work.join(name);
        write(&c, src)?;
        gcc(&["-O2", "-pthread"], &c, &exe)?;
        Ok(exe)
    };
    let rounds = bin("rounds", ROUNDS_C)?;
    let pipeline = bin("pipeline", PIPELINE_C)?;
    let gcc_dir = work.join("gcc");
    std::fs::create_dir_all(&gcc_dir).map_err(LabError::io("creating the gcc directory"))?;
    write(&gcc_dir.join("small.c"), &c_source(120))?;
    let repo = work.join("repo");
    if !repo.join(".git").is_dir() {
        git_repo(&repo, 300)?;
    }
    let py_env = vec![("PYTHONMALLOC".to_string(), "malloc".to_string())];
    let p =
        |name: &str, cmd: Vec<String>, env: Vec<(String, String)>, cwd: Option<PathBuf>| Program {
            name: name.into(),
            cmd,
            env,
            cwd,
        };
    let path = |p: &Path| p.display().to_string();
    Ok(vec![
        p(
            "python3-st",
            vec!["/usr/bin/python3".into(), path(&py_st), "40000".into()],
            py_env.clone(),
            None,
        ),
        p(
            "python3-mt",
            vec!["/usr/bin/python3".into(), path(&py_mt), "12000".into()],
            py_env,
            None,
        ),
        p(
            "perl",
            s(&["/usr/bin/perl", "-e", PERL, "150000"]),
            Vec::new(),
            None,
        ),
        p(
            "sqlite3",
            s(&["/usr/bin/sqlite3", ":memory:", SQL]),
            Vec::new(),
            None,
        ),
        p(
            "gcc",
            s(&["/usr/bin/gcc", "-O2", "-c", "small.c", "-o", "small.o"]),
            Vec::new(),
            Some(gcc_dir),
        ),
        p(
            "git",
            s(&["/usr/bin/git", "log", "-p", "--stat"]),
            vec![
                ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
                ("HOME".into(), path(&repo)),
                ("GIT_PAGER".into(), "cat".into()),
            ],
            Some(repo),
        ),
        p(
            "c-rounds",
            vec![path(&rounds), "8".into(), "4".into(), "15000".into()],
            Vec::new(),
            None,
        ),
        p(
            "c-pipeline",
            vec![path(&pipeline), "8".into(), "15000".into()],
            Vec::new(),
            None,
        ),
    ])
}
