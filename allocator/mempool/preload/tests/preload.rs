//! Real programs under `LD_PRELOAD=libmempool_preload.so`, each variant: Debian's python3 with
//! `PYTHONMALLOC=malloc` (threads, json, a fork), git (commits, gc, fsck, logs) and sqlite3
//! must print the same and exit the same as under glibc's malloc; a C probe frees and reallocs
//! blocks glibc's own malloc made (`__libc_malloc`) and checks the malloc family's semantics.
//! A missing tool fails with the Debian package to install (allocator/ci-deps.txt).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VARIANTS: [&str; 3] = ["baseline", "sharded", "percls"];

fn lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        let p = dir.join("libmempool_preload.so");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "libmempool_preload.so not found next to {}: build it with `cargo build -p mempool-preload`",
        exe.display()
    );
}

fn need(tool: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(tool);
    assert!(
        p.exists(),
        "{tool} is missing: install the Debian package `{package}` (listed in allocator/ci-deps.txt)"
    );
    p
}

/// Runs the command under glibc (`None`) or under a variant of the pool.
fn run(cmd: &mut Command, variant: Option<&str>) -> Output {
    match variant {
        Some(v) => cmd.env("LD_PRELOAD", lib()).env("MEMPOOL_VARIANT", v),
        None => cmd.env_remove("LD_PRELOAD"),
    };
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `make()` under glibc and under each variant: same exit code and stdout.
fn same_as_glibc(mut make: impl FnMut() -> Command) -> Output {
    let base = run(&mut make(), None);
    assert!(base.status.success(), "under glibc: {}", show(&base));
    for v in VARIANTS {
        let ours = run(&mut make(), Some(v));
        assert_eq!(
            base.status.code(),
            ours.status.code(),
            "exit codes differ\nglibc: {}\n{v}: {}",
            show(&base),
            show(&ours)
        );
        assert_eq!(
            String::from_utf8_lossy(&base.stdout),
            String::from_utf8_lossy(&ours.stdout),
            "stdout differs under {v}: {}",
            show(&ours)
        );
    }
    base
}

const PY: &str = r#"
import json, os, re, threading
out = []
def work(n):
    d = {}
    for i in range(30000):
        d["k%d" % i] = [i, str(i) * (i % 11), {"x": i}]
        if i % 3 == 0:
            del d["k%d" % (i // 2)]
    s = json.dumps(d, sort_keys=True)
    out.append((n, len(s), len(re.findall(r'"k\d+7"', s)), len(json.loads(s))))
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(sorted(out))
pid = os.fork()
if pid == 0:
    x = [bytes(i % 5000) for i in range(20000)]
    os._exit(sum(map(len, x)) % 200)
_, st = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(st))
big = [bytearray(1 << 20) for _ in range(40)]
print(sum(len(b) for b in big))
"#;

#[test]
fn python_threads_json_fork_the_same() {
    let py = need("/usr/bin/python3", "python3");
    same_as_glibc(|| {
        let mut c = Command::new(&py);
        c.env("PYTHONMALLOC", "malloc").args(["-c", PY]);
        c
    });
}

#[test]
fn the_library_is_really_loaded_and_checks_its_variable() {
    let py = need("/usr/bin/python3", "python3");
    let o = run(
        Command::new(&py).args(["-c", "print(1)"]),
        Some("no-such-variant"),
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("MEMPOOL_VARIANT must be baseline, sharded or percls"),
        "{}",
        show(&o)
    );
}

#[test]
fn git_commits_and_logs_the_same() {
    let git = need("/usr/bin/git", "git");
    let mut results: Vec<(Option<&str>, Vec<u8>)> = Vec::new();
    for variant in [None, Some("baseline"), Some("sharded"), Some("percls")] {
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
                ])
                .args(["-c", "init.defaultBranch=main"])
                .args(args);
            c
        };
        let ok = |args: &[&str]| {
            let o = run(&mut g(args), variant);
            assert!(
                o.status.success(),
                "git {args:?} under {variant:?}: {}",
                show(&o)
            );
            o.stdout
        };
        ok(&["init", "-q"]);
        for i in 0..20 {
            let f = dir.path().join(format!("f{}.txt", i % 5));
            std::fs::write(f, format!("line {i}\n").repeat(i * 40 + 1)).unwrap();
            ok(&["add", "-A"]);
            ok(&["commit", "-q", "-m", &format!("commit {i}")]);
        }
        let mut out = Vec::new();
        for args in [
            &["log", "--stat", "--format=%H %s"][..],
            &["gc", "-q"][..],
            &["fsck", "--strict"][..],
            &["log", "-p", "-4"][..],
            &["rev-list", "--all", "--count"][..],
        ] {
            out.extend(ok(args));
        }
        results.push((variant, out));
    }
    let base = &results[0].1;
    assert!(String::from_utf8_lossy(base).contains("commit 19"));
    for (v, out) in &results[1..] {
        assert_eq!(
            String::from_utf8_lossy(base),
            String::from_utf8_lossy(out),
            "git output differs under {v:?}"
        );
    }
}

#[test]
fn sqlite3_query_results_the_same() {
    let sqlite = need("/usr/bin/sqlite3", "sqlite3");
    let sql = "
        CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL, blob BLOB);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
          INSERT INTO t SELECT x, 'name-' || (x * 7919 % 10007), x * 0.5, zeroblob(x % 300) FROM c;
        CREATE INDEX t_name ON t(name);
        SELECT count(*), sum(v), count(DISTINCT name) FROM t;
        SELECT name, count(*) AS n FROM t GROUP BY name ORDER BY n DESC, name LIMIT 5;
        DELETE FROM t WHERE id % 3 = 0;
        SELECT count(*), sum(length(blob)) FROM t;
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
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("100000|"));
}

const PROBE: &str = r#"
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
extern void *__libc_malloc(size_t);
#define CHECK(c) do { if (!(c)) { printf("FAILED line %d: %s\n", __LINE__, #c); return 1; } } while (0)
int main(void) {
    /* Blocks of glibc's own malloc (brk heap and mmapped) freed and realloc'ed through ours. */
    char *a = __libc_malloc(100); memset(a, 1, 100); free(a);
    char *b = __libc_malloc(4 << 20); memset(b, 2, 4 << 20); free(b);
    char *c = __libc_malloc(64); memset(c, 3, 64);
    c = realloc(c, 10000); CHECK(c && c[63] == 3); free(c);
    /* The family's semantics. */
    void *p = malloc(0); CHECK(p); free(p);
    free(NULL);
    int *z = calloc(1000, sizeof(int)); CHECK(z);
    for (int i = 0; i < 1000; i++) CHECK(z[i] == 0);
    free(z);
    errno = 0; CHECK(calloc(SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    for (size_t al = 16; al <= (1 << 16); al <<= 1) {
        void *q = NULL;
        CHECK(posix_memalign(&q, al, 100) == 0 && (uintptr_t)q % al == 0);
        CHECK(malloc_usable_size(q) >= 100);
        free(q);
        q = aligned_alloc(al, 3 * al); CHECK(q && (uintptr_t)q % al == 0); free(q);
        q = memalign(al, 5); CHECK(q && (uintptr_t)q % al == 0); free(q);
    }
    void *q = NULL; CHECK(posix_memalign(&q, 24, 8) == EINVAL);
    q = valloc(10); CHECK(q && (uintptr_t)q % 4096 == 0); free(q);
    q = pvalloc(10); CHECK(q && (uintptr_t)q % 4096 == 0 && malloc_usable_size(q) >= 4096); free(q);
    char *r = malloc(10); strcpy(r, "abcdefghi");
    for (size_t n = 20; n < (8 << 20); n *= 3) { r = realloc(r, n); CHECK(r && strcmp(r, "abcdefghi") == 0); }
    r = realloc(r, 5); CHECK(r && memcmp(r, "abcde", 5) == 0);
    CHECK(realloc(r, 0) == NULL);
    errno = 0; CHECK(malloc(SIZE_MAX - 100) == NULL && errno == ENOMEM);
    errno = 0; CHECK(reallocarray(NULL, SIZE_MAX, 2) == NULL && errno == ENOMEM);
    printf("ok\n");
    return 0;
}
"#;

fn compile(dir: &Path, name: &str, src: &str) -> PathBuf {
    let cc = need("/usr/bin/cc", "gcc");
    let c = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&c, src).unwrap();
    let o = Command::new(cc)
        .args(["-O1", "-Wno-alloc-size-larger-than"])
        .arg("-o")
        .arg(&exe)
        .arg(&c)
        .output()
        .unwrap();
    assert!(o.status.success(), "cc: {}", show(&o));
    exe
}

#[test]
fn a_c_probe_of_the_malloc_family_and_of_foreign_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile(dir.path(), "probe", PROBE);
    let o = same_as_glibc(|| Command::new(&exe));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n");
}
