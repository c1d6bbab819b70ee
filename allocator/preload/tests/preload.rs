//! Real programs under `LD_PRELOAD=libfancy_preload.so`: a C probe of the whole malloc family,
//! Debian's python3 with `PYTHONMALLOC=malloc` (every object through malloc) running a
//! multithreaded script and stdlib test modules, git and sqlite3 — each must give the same output
//! and exit code as under glibc's malloc. A missing tool fails the test with the Debian package
//! to install (see `allocator/ci-deps.txt`), never skips.

mod common;

use common::{default_signals, lib};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn need(tool: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(tool);
    assert!(
        p.exists(),
        "{tool} is missing: install the Debian package `{package}` (listed in allocator/ci-deps.txt)"
    );
    p
}

fn run(cmd: &mut Command, preload: bool) -> Output {
    if preload {
        cmd.env("LD_PRELOAD", lib());
    } else {
        cmd.env_remove("LD_PRELOAD");
    }
    default_signals(cmd);
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

/// Runs the command under glibc and under fancy; both must succeed the same way.
fn same_as_glibc(mut make: impl FnMut() -> Command) -> Output {
    let base = run(&mut make(), false);
    let ours = run(&mut make(), true);
    let show = |o: &Output| {
        format!(
            "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert_eq!(
        base.status.code(),
        ours.status.code(),
        "exit codes differ\nglibc: {}\nfancy: {}",
        show(&base),
        show(&ours)
    );
    assert_eq!(
        String::from_utf8_lossy(&base.stdout),
        String::from_utf8_lossy(&ours.stdout),
        "stdout differs\nfancy: {}",
        show(&ours)
    );
    ours
}

#[test]
fn c_probe_of_the_malloc_family() {
    let cc = need("/usr/bin/cc", "gcc");
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("probe");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/probe.c");
    let out = Command::new(cc)
        .args(["-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-ldl")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = run(&mut Command::new(&exe), true);
    assert!(
        o.status.success() && o.stdout == b"probe ok\n",
        "probe: {:?}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Without the preload the probe must fail: proof that it tests the preload and not glibc.
    let o = run(&mut Command::new(&exe), false);
    assert!(
        !o.status.success(),
        "the probe passed under glibc: it does not detect fancy"
    );
}

const PY_SCRIPT: &str = r#"
import threading, json, hashlib, collections, ctypes, re
def work(seed, out):
    d = {}
    for i in range(60000):
        k = f"k{(i * seed) % 7919}"
        d[k] = [i, str(i) * (i % 7), {"x": i}]
        if i % 3 == 0:
            d.pop(f"k{(i * 31) % 7919}", None)
    blob = json.dumps(sorted(d.items())[:2000])
    words = collections.Counter(re.findall(r"\d+", blob))
    out[seed] = hashlib.sha256(blob.encode()).hexdigest() + " " + str(len(words))
out = {}
ts = [threading.Thread(target=work, args=(s, out)) for s in range(1, 7)]
for t in ts: t.start()
for t in ts: t.join()
for k in sorted(out): print(k, out[k])
big = [bytearray(n) for n in range(0, 3_000_000, 150_000)]
print(sum(len(b) for b in big))
libc = ctypes.CDLL(None)
has = hasattr(libc, "fancy_validate_heap")
print("fancy-valid", bool(libc.fancy_validate_heap()) if has else "absent")
"#;

#[test]
fn python3_multithreaded_script_with_pythonmalloc_malloc() {
    let py = need("/usr/bin/python3", "python3");
    let make = || {
        let mut c = Command::new(&py);
        c.env("PYTHONMALLOC", "malloc").args(["-c", PY_SCRIPT]);
        c
    };
    let base = run(&mut make(), false);
    let ours = run(&mut make(), true);
    assert!(
        base.status.success() && ours.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let b = String::from_utf8_lossy(&base.stdout).replace("fancy-valid absent", "");
    let o = String::from_utf8_lossy(&ours.stdout).replace("fancy-valid True", "");
    assert!(
        ours.stdout.ends_with(b"fancy-valid True\n"),
        "fancy not active or heap invalid: {}",
        String::from_utf8_lossy(&ours.stdout)
    );
    assert_eq!(b, o);
}

#[test]
fn python3_stdlib_test_modules_with_pythonmalloc_malloc() {
    let py = need("/usr/bin/python3", "python3");
    need(
        "/usr/lib/python3.11/test/test_dict.py",
        "libpython3.11-testsuite",
    );
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        Command::new(&py)
            .env("PYTHONMALLOC", "malloc")
            .current_dir(dir.path())
            .args([
                "-m",
                "test",
                "-q",
                "test_dict",
                "test_list",
                "test_set",
                "test_json",
                "test_re",
                "test_threading",
                "test_unicode",
            ]),
        true,
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("Tests result: SUCCESS"),
        "python stdlib tests under fancy:\n{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn git_commits_and_logs_the_same() {
    let git = need("/usr/bin/git", "git");
    for preload in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let g = |args: &[&str]| {
            let mut c = Command::new(&git);
            c.current_dir(dir.path())
                .env("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
                .env("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .args([
                    "-c",
                    "user.name=lab",
                    "-c",
                    "user.email=lab@example.invalid",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args);
            c
        };
        let mut outputs = Vec::new();
        let r = |c: &mut Command| run(c, preload);
        assert!(r(&mut g(&["init", "-q"])).status.success());
        for i in 0..30 {
            std::fs::write(
                dir.path().join(format!("f{}.txt", i % 7)),
                format!("line {i}\n").repeat(i * 50 + 1),
            )
            .unwrap();
            assert!(r(&mut g(&["add", "-A"])).status.success());
            assert!(
                r(&mut g(&["commit", "-q", "-m", &format!("commit {i}")]))
                    .status
                    .success()
            );
        }
        for args in [
            &["log", "--stat", "--format=%H %s"][..],
            &["gc", "-q"][..],
            &["fsck", "--strict"][..],
            &["log", "-p", "-5"][..],
            &["rev-list", "--all", "--count"][..],
        ] {
            let o = r(&mut g(args));
            assert!(
                o.status.success(),
                "git {args:?} failed (preload {preload}): {}",
                String::from_utf8_lossy(&o.stderr)
            );
            outputs.push(o.stdout);
        }
        // Compare against the glibc run's outputs through a file per mode.
        let key = std::env::temp_dir().join(format!("fancy-git-{}", std::process::id()));
        if !preload {
            std::fs::write(&key, outputs.concat()).unwrap();
        } else {
            let base = std::fs::read(&key).unwrap();
            std::fs::remove_file(&key).ok();
            assert_eq!(
                String::from_utf8_lossy(&base),
                String::from_utf8_lossy(&outputs.concat()),
                "git output differs under fancy"
            );
        }
    }
}

#[test]
fn sqlite3_query_results_the_same() {
    let sqlite = need("/usr/bin/sqlite3", "sqlite3");
    let sql = "
        CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL, blob BLOB);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
          INSERT INTO t SELECT x, 'name-' || (x * 7919 % 10007), x * 0.5, randomblob(x % 300) FROM c;
        CREATE INDEX t_name ON t(name);
        SELECT count(*), sum(v), count(DISTINCT name) FROM t;
        SELECT name, count(*) AS n FROM t GROUP BY name ORDER BY n DESC, name LIMIT 5;
        DELETE FROM t WHERE id % 3 = 0;
        SELECT count(*), sum(length(blob)) > 0 FROM t;
        SELECT group_concat(id, ',') FROM (SELECT id FROM t ORDER BY name, id LIMIT 20);
    ";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let o = same_as_glibc(|| {
        let _ = std::fs::remove_file(&db);
        let mut c = Command::new(&sqlite);
        c.arg(&db).arg(sql);
        c
    });
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("200000|"));
}

#[test]
fn reclaim_mode_runs_python_too() {
    let py = need("/usr/bin/python3", "python3");
    let o = run(
        Command::new(&py).env("PYTHONMALLOC", "malloc").env("FANCY_RECLAIM", "1").env("FANCY_RECLAIM_INTERVAL_MS", "5").args([
            "-c",
            "import time, ctypes\nfor r in range(5):\n  x=[str(i)*20 for i in range(200000)]\n  del x\n  time.sleep(0.02)\nprint(bool(ctypes.CDLL(None).fancy_validate_heap()))",
        ]),
        true,
    );
    assert!(
        o.status.success() && o.stdout == b"True\n",
        "{:?} {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn programs_start_with_default_signal_actions_however_the_suite_was_launched() {
    // A suite started as a shell background job ignores SIGINT and SIGQUIT; its children would
    // inherit that (python3 then installs no SIGINT handler). The child here is made to ignore
    // them first, as such a suite would, and `run` must give them back their default action.
    use std::os::unix::process::CommandExt;
    let py = need("/usr/bin/python3", "python3");
    let mut c = Command::new(&py);
    // SAFETY: runs in the forked child before exec and only calls `signal` (async-signal-safe).
    unsafe {
        c.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGPIPE] {
                libc::signal(sig, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    c.args([
        "-c",
        "import signal\nprint(signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGQUIT) == signal.SIG_DFL)",
    ]);
    let o = run(&mut c, true);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "True True\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
