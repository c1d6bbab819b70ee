//! The recorder on real programs: C test programs with known counts (compiled here with gcc),
//! Debian's python3, git and sqlite3, fork, exec, SIGKILL and an unwritable path. Each test runs
//! in its own temporary directory; the library is the `liballoclab_recorder.so` cargo built
//! next to `record`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use traces::{Clock, Event, Record, Warning};

// ---------------------------------------------------------------------------------------------

/// Runs threads.c and checks every worker's counts per kind exactly.
fn check_threads(env: &[(&str, &str)], workers: usize, per: usize) -> Trace {
    let d = tmp();
    let prog = c_program("threads");
    let (w, p) = (workers.to_string(), per.to_string());
    let o = record(d.path(), "t.zst", &[prog.to_str().unwrap(), &w, &p], env);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let t = Trace::read(&d.path().join("t.zst"));
    t.assert_complete();
    assert_eq!(
        t.report.inconsistencies.total(),
        0,
        "{:?}",
        t.report.inconsistencies
    );
    // The main thread and the workers: never the writer thread.
    assert_eq!(
        t.report.threads.len(),
        workers + 1,
        "{:?}",
        t.report.threads
    );
    let main_tid = t.header.pid;
    assert_eq!(t.report.threads[0].os_tid, main_tid);
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), workers);
    let mut cross = 0;
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let tid: u32 = f[1].parse().unwrap();
        let want: BTreeMap<&str, u64> = f[2..]
            .chunks(2)
            .map(|kv| (kv[0], kv[1].parse().unwrap()))
            .collect();
        let got = t.counts_of_tid(tid);
        for kind in [
            "malloc",
            "calloc",
            "realloc",
            "posix_memalign",
            "aligned_alloc",
            "memalign",
            "valloc",
            "pvalloc",
        ] {
            assert_eq!(got.get(kind), want.get(kind), "tid {tid} {kind}: {got:?}");
        }
        // The program frees NULL once; glibc's thread teardown frees NULL after it.
        assert_eq!(got["free"], want["free"] - 1, "tid {tid}: {got:?}");
        assert!(got["free(NULL)"] >= 1, "tid {tid}: {got:?}");
        assert_eq!(got["thread_start"], 1);
        assert_eq!(got["thread_exit"], 1);
        cross += (per - per / 2) as u64;
        // First event ThreadStart, last ThreadExit.
        let th = t
            .report
            .threads
            .iter()
            .find(|x| x.os_tid == tid)
            .unwrap()
            .thread;
        let mine: Vec<&Record> = t.records.iter().filter(|r| r.thread == th).collect();
        assert_eq!(mine[0].event, Event::ThreadStart { os_tid: tid });
        assert_eq!(mine.last().unwrap().event, Event::ThreadExit);
    }
    assert!(
        t.report.cross_thread_frees >= cross,
        "{}",
        t.report.cross_thread_frees
    );
    assert_eq!(t.report.failed_allocations, 6 * workers as u64);
    // Aligned events carry what was asked.
    let page = t.header.page_size as u64;
    for r in &t.records {
        if let Event::Aligned {
            func, align, ptr, ..
        } = r.event
        {
            if matches!(func, traces::AlignedFn::Valloc | traces::AlignedFn::Pvalloc) {
                assert_eq!(align, page);
            }
            if ptr != 0 {
                assert_eq!(ptr % align.next_power_of_two(), 0, "{:?}", r.event);
            }
        }
    }
    t
}

#[test]
fn threads_counts_per_kind_and_thread_are_exact() {
    let t = check_threads(&[], 4, 2000);
    // The recorder's own allocations (writer thread start-up, zstd) were seen and forwarded.
    let internal: u64 = t.extra("recorder.internal_calls").unwrap().parse().unwrap();
    assert!(internal > 0);
}

#[test]
fn tiny_rings_make_threads_wait_but_drop_nothing() {
    let t = check_threads(
        &[
            ("ALLOCLAB_RING_EVENTS", "1024"),
            ("ALLOCLAB_FRAME_EVENTS", "1024"),
        ],
        8,
        40000,
    );
    let waits: u64 = t.extra("recorder.app_waits").unwrap().parse().unwrap();
    assert!(waits > 0, "the rings never filled: the test proves nothing");
}

#[test]
fn fork_without_exec_child_records_its_own_file() {
    for mode in ["fork", "fork-exit"] {
        let d = tmp();
        let prog = c_program("procs");
        let o = record(d.path(), "p.zst", &[prog.to_str().unwrap(), mode], &[]);
        assert!(o.status.success(), "{mode}: {}", stderr_of(&o));
        let child: u32 = String::from_utf8(o.stdout).unwrap().trim()["child ".len()..]
            .parse()
            .unwrap();
        let all = traces_in(d.path());
        assert_eq!(
            all.len(),
            2,
            "{mode}: {:?}",
            all.iter().map(|t| &t.path).collect::<Vec<_>>()
        );
        let parent = all.iter().find(|t| t.path.ends_with("p.zst")).unwrap();
        let kid = all.iter().find(|t| t.header.pid == child).unwrap();
        assert_eq!(kid.path, d.path().join(format!("p.{child}.zst")));
        for t in [parent, kid] {
            t.assert_complete();
        }
        assert_eq!(parent.report.inconsistencies.total(), 0);
        assert!(
            parent
                .records
                .iter()
                .any(|r| r.event == Event::Fork { child_pid: child })
        );
        assert_eq!(kid.header.parent_pid, parent.header.pid);
        assert_eq!(
            kid.header.extra("fork.parent_trace"),
            Some(parent.path.to_str().unwrap())
        );
        assert_eq!(kid.origin(), "fork");
        // The child: 5 mallocs and their frees, and the free of one of its parent's blocks (an
        // object from before its trace began: the one inconsistency a fork child has).
        let c = kid.counts_of_tid(child);
        assert_eq!(c.get("malloc"), Some(&5), "{mode}: {c:?}");
        assert_eq!(c.get("free"), Some(&6), "{mode}: {c:?}");
        assert_eq!(kid.report.inconsistencies.free_of_unknown, 1);
        assert_eq!(kid.report.inconsistencies.double_free, 0);
        assert_eq!(
            kid.extra("recorder.end"),
            Some(if mode == "fork" { "exit" } else { "_exit" })
        );
    }
}

#[test]
fn without_follow_fork_the_child_records_nothing_and_spoils_nothing() {
    let d = tmp();
    let prog = c_program("procs");
    let o = record(
        d.path(),
        "p.zst",
        &[prog.to_str().unwrap(), "fork"],
        &[("ALLOCLAB_FOLLOW_FORK", "0")],
    );
    assert!(o.status.success(), "{}", stderr_of(&o));
    let all = traces_in(d.path());
    assert_eq!(all.len(), 1);
    all[0].assert_complete();
    assert_eq!(all[0].report.inconsistencies.total(), 0);
    assert!(
        all[0]
            .records
            .iter()
            .any(|r| matches!(r.event, Event::Fork { .. }))
    );
    assert_eq!(all[0].report.by_kind.get("malloc"), Some(&10));
}

#[test]
fn fork_exec_records_the_new_program() {
    let d = tmp();
    let prog = c_program("procs");
    let o = record(d.path(), "p.zst", &[prog.to_str().unwrap(), "exec"], &[]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let child: u32 = String::from_utf8(o.stdout).unwrap().trim()["child ".len()..]
        .parse()
        .unwrap();
    let all = traces_in(d.path());
    let exec = all
        .iter()
        .find(|t| {
            t.header.pid == child
                && t.header.command_line.get(1).map(String::as_str) == Some("exec-child")
        })
        .unwrap_or_else(|| {
            panic!(
                "no trace of the exec'd program: {:?}",
                all.iter().map(|t| &t.path).collect::<Vec<_>>()
            )
        });
    exec.assert_complete();
    assert_eq!(exec.origin(), "start");
    assert_eq!(exec.report.inconsistencies.total(), 0);
    let c = exec.counts_of_tid(child);
    assert!(c.get("malloc").copied().unwrap_or(0) >= 7, "{c:?}");
    let big = exec
        .records
        .iter()
        .filter(|r| matches!(r.event, Event::Malloc { size, .. } if (7000..7007).contains(&size)))
        .count();
    assert_eq!(big, 7);
    // Nobody overwrote anybody: the parent's file is whole and its own.
    let parent = all.iter().find(|t| t.path.ends_with("p.zst")).unwrap();
    parent.assert_complete();
    assert!(
        parent
            .records
            .iter()
            .any(|r| r.event == Event::Fork { child_pid: child })
    );
    for t in &all {
        t.assert_complete();
    }
}

#[test]
fn sigkill_leaves_every_flushed_frame_readable() {
    let d = tmp();
    let prog = c_program("procs");
    let out = d.path().join("k.zst");
    let mut child = Command::new(&prog)
        .arg("spin")
        .env("LD_PRELOAD", lib())
        .env("ALLOCLAB_OUTPUT", &out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let mut pairs = 0u64;
    while pairs < 1_000_000 && started.elapsed() < Duration::from_secs(60) {
        pairs = lines.next().unwrap().unwrap().parse().unwrap();
    }
    // Everything before `pairs` is at least 100 ms (the flush period) old after this.
    std::thread::sleep(Duration::from_millis(400));
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Trace::read(&out);
    assert!(t.trailer.is_none());
    assert!(
        t.warnings
            .iter()
            .all(|w| matches!(w, Warning::Truncated { .. })),
        "{:?}",
        t.warnings
    );
    let mallocs = t.report.by_kind.get("malloc").copied().unwrap_or(0);
    assert!(
        mallocs >= pairs,
        "{mallocs} mallocs in the trace, {pairs} made 400 ms before the kill"
    );
    assert_eq!(t.report.inconsistencies.total(), 0);
}

#[test]
fn unwritable_path_leaves_the_program_alone() {
    let d = tmp();
    let echo = require("/bin/echo", "coreutils");
    let o = record(
        d.path(),
        "/nonexistent-dir/sub/t.zst",
        &[echo.to_str().unwrap(), "hello"],
        &[],
    );
    assert!(o.status.success());
    assert_eq!(o.stdout, b"hello\n");
    let err = stderr_of(&o);
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("alloclab-recorder"))
        .collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(
        ours[0].contains("/nonexistent-dir/sub/t.zst") && ours[0].contains("writable"),
        "{err}"
    );
    // The library alone, too.
    let o = Command::new(&echo)
        .arg("alone")
        .env("LD_PRELOAD", lib())
        .env("ALLOCLAB_OUTPUT", "/nonexistent-dir/t.%p.zst")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout, b"alone\n");
    assert_eq!(stderr_of(&o).lines().count(), 1, "{}", stderr_of(&o));
}

#[test]
fn exit_codes_signals_and_stdin_pass_through() {
    let d = tmp();
    let sh = require("/bin/sh", "dash");
    let o = record(
        d.path(),
        "a.zst",
        &[sh.to_str().unwrap(), "-c", "echo out; echo err >&2; exit 7"],
        &[],
    );
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(o.stdout, b"out\n");
    assert!(stderr_of(&o).starts_with("err\n"));
    // The summary line.
    let last = stderr_of(&o).lines().last().unwrap().to_string();
    assert!(
        last.starts_with("record: ") && last.contains("events") && last.contains("bytes/event"),
        "{last}"
    );

    use std::os::unix::process::ExitStatusExt;
    let o = record(
        d.path(),
        "b.zst",
        &[sh.to_str().unwrap(), "-c", "kill -TERM $$"],
        &[],
    );
    assert_eq!(o.status.signal(), Some(libc::SIGTERM));

    let mut c = Command::new(record_bin())
        .current_dir(d.path())
        .args(["-o", "c.zst", "--", "/bin/cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout, b"through stdin\n");

    // A signal sent to `record` reaches the program.
    let mut c = Command::new(record_bin())
        .current_dir(d.path())
        .args([
            "-o",
            "d.zst",
            "--",
            sh.to_str().unwrap(),
            "-c",
            "trap 'echo got-usr1; exit 3' USR1; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGUSR1) };
    assert_eq!(lines.next().unwrap().unwrap(), "got-usr1");
    assert_eq!(c.wait().unwrap().code(), Some(3));
}

// ---------------------------------------------------------------------------------------------
// Real programs: same output and exit code with and without the recorder, consistent traces.

fn same_with_and_without(
    args: &[&str],
    env: &[(&str, &str)],
    script_dir: impl Fn(&Path),
) -> Vec<Trace> {
    let a = tmp();
    let b = tmp();
    script_dir(a.path());
    script_dir(b.path());
    let plain = bare(a.path(), args, env);
    let rec = record(b.path(), "rec.trace.zst", args, env);
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        String::from_utf8_lossy(&rec.stdout),
        "stdout differs; recorded stderr: {}",
        stderr_of(&rec)
    );
    assert_eq!(
        plain.status.code(),
        rec.status.code(),
        "{}",
        stderr_of(&rec)
    );
    assert!(plain.status.success(), "{}", stderr_of(&plain));
    let all = traces_in(b.path());
    assert!(!all.is_empty());
    for t in &all {
        t.assert_complete();
        let bad = &t.report.inconsistencies;
        if t.origin() == "fork" {
            // Frees of blocks the parent allocated before the fork are expected here.
            assert_eq!(
                bad.double_free + bad.alloc_of_live_address,
                0,
                "{}: {bad:?}",
                t.path.display()
            );
        } else {
            assert_eq!(bad.total(), 0, "{}: {bad:?}", t.path.display());
        }
    }
    all
}

#[test]
fn python3_runs_unchanged_and_its_trace_is_consistent() {
    let py = require("/usr/bin/python3", "python3");
    let script = "import threading, subprocess\n\
        d = {str(i): str(i * i) for i in range(200000)}\n\
        out = []\n\
        def work(n):\n    out.append(sum(len(str(x)) for x in range(n)))\n\
        ts = [threading.Thread(target=work, args=(50000 + k,)) for k in range(4)]\n\
        [t.start() for t in ts]; [t.join() for t in ts]\n\
        r = subprocess.run(['/bin/echo', 'child'], capture_output=True, text=True)\n\
        print(len(d), sum(len(v) for v in d.values()), sorted(out), r.stdout.strip())\n";
    let all = same_with_and_without(
        &[py.to_str().unwrap(), "-c", script],
        &[("PYTHONMALLOC", "malloc")],
        |_| {},
    );
    let root = all
        .iter()
        .find(|t| t.path.ends_with("rec.trace.zst"))
        .unwrap();
    // PYTHONMALLOC=malloc sends every object through malloc: hundreds of thousands of calls.
    assert!(root.report.ops > 400_000, "{}", root.report.ops);
    assert!(
        root.report.threads.len() >= 5,
        "{:?}",
        root.report.threads.len()
    );
}

#[test]
fn git_runs_unchanged_and_its_traces_are_consistent() {
    let git = require("git", "git");
    let g = git.to_str().unwrap();
    let script = format!(
        "set -e; {g} init -q repo; cd repo; for i in 1 2 3; do echo $i > f$i; {g} add f$i; \
         {g} -c user.name=t -c user.email=t@t commit -q -m c$i; done; {g} log --format=%s; \
         {g} rev-list --count HEAD; {g} status --short | wc -l"
    );
    let all = same_with_and_without(
        &["/bin/sh", "-c", &script],
        &[("GIT_CONFIG_NOSYSTEM", "1"), ("HOME", "/nonexistent")],
        |_| {},
    );
    assert!(
        all.iter()
            .filter(|t| t.header.command_line.iter().any(|a| a.ends_with("git")))
            .count()
            >= 8
    );
}

#[test]
fn sqlite3_runs_unchanged_and_its_trace_is_consistent() {
    let sq = require("sqlite3", "sqlite3");
    let sql = "create table t(a, b); \
        with recursive c(x) as (select 1 union all select x + 1 from c limit 30000) \
        insert into t select x, printf('%08x-%d', x * 2654435761 % 4294967296, x) from c; \
        create index i on t(b); \
        select count(*), sum(a), sum(length(b)), min(b), max(b) from t; \
        delete from t where a % 3 = 0; select count(*) from t;";
    let all = same_with_and_without(&[sq.to_str().unwrap(), ":memory:", sql], &[], |_| {});
    assert_eq!(all.len(), 1);
    assert!(all[0].report.ops > 10_000, "{}", all[0].report.ops);
}

#[test]
fn the_library_is_never_linked_into_record_or_the_tests() {
    // The crate is also an rlib (so that cargo builds the .so for tests); linking it would make
    // its malloc the process's. This test binary's malloc must be glibc's.
    // SAFETY: Dl_info is plain C data (pointers and integers): all zeroes is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr with an address of a function and a live out-parameter.
    let ok = unsafe { libc::dladdr(libc::malloc as *const libc::c_void, &mut info) };
    assert_ne!(ok, 0);
    // SAFETY: dladdr filled dli_fname with a NUL-terminated path.
    let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned();
    assert!(file.contains("libc.so"), "malloc comes from {file}");
    // And `record` runs without recording itself: its own run leaves only the program's trace.
    let d = tmp();
    let o = record(d.path(), "t.zst", &["/bin/true"], &[]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let all = traces_in(d.path());
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].header.command_line, ["/bin/true"]);
}

#[test]
fn a_program_that_takes_our_descriptor_never_gets_trace_bytes() {
    let d = tmp();
    let prog = c_program("procs");
    let mine = d.path().join("mine.txt");
    let o = record(
        d.path(),
        "t.zst",
        &[prog.to_str().unwrap(), "closefds", mine.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_eq!(std::fs::read(&mine).unwrap(), b"mine\n");
    let err = stderr_of(&o);
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("alloclab-recorder"))
        .collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(ours[0].contains("descriptor"), "{err}");
    // What was written before stays readable.
    let t = Trace::read(&d.path().join("t.zst"));
    assert!(t.trailer.is_none());
}

#[test]
fn a_failed_exec_goes_on_in_a_continuation_file() {
    let d = tmp();
    let prog = c_program("procs");
    let o = record(
        d.path(),
        "p.zst",
        &[prog.to_str().unwrap(), "execfail"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr_of(&o));
    let all = traces_in(d.path());
    assert_eq!(
        all.len(),
        2,
        "{:?}",
        all.iter().map(|t| &t.path).collect::<Vec<_>>()
    );
    let first = all.iter().find(|t| t.path.ends_with("p.zst")).unwrap();
    let next = all.iter().find(|t| !t.path.ends_with("p.zst")).unwrap();
    for t in [first, next] {
        t.assert_complete();
        assert_eq!(t.report.inconsistencies.total(), 0);
    }
    assert_eq!(first.extra("recorder.end"), Some("exec"));
    assert_eq!(next.origin(), "continuation after a failed exec");
    assert_eq!(
        next.header.extra("exec.failed_after"),
        Some(first.path.to_str().unwrap())
    );
    let sizes = |t: &Trace, lo: u64| {
        t.records
            .iter()
            .filter(
                |r| matches!(r.event, Event::Malloc { size, .. } if (lo..lo + 10).contains(&size)),
            )
            .count()
    };
    assert_eq!((sizes(first, 3000), sizes(first, 4000)), (3, 0));
    assert_eq!((sizes(next, 3000), sizes(next, 4000)), (0, 4));
    // The thread is announced again in the new file.
    assert!(matches!(next.records[0].event, Event::ThreadStart { .. }));
}

// ---------------------------------------------------------------------------------------------
// The clock: TSC ticks mapped to CLOCK_MONOTONIC ns, or clock_gettime.

/// A line on the real stderr, past the test harness's capture (which only takes `print!`
/// and `eprint!`): a skipped part of a test shows in CI output even when the test passes.
fn loud(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// CLOCK_MONOTONIC now, ns.
fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: t is a live, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Whether this machine lets the recorder use the TSC (what `ALLOCLAB_CLOCK=auto` decides).
fn tsc_usable() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let source =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .unwrap_or_default();
    cfg!(target_arch = "x86_64")
        && has("constant_tsc")
        && has("nonstop_tsc")
        && has("rdtscp")
        && source.trim() == "tsc"
}

/// Checks contract 3 and the clock's basic promises on a finished trace recorded between
/// `before` and `after` (CLOCK_MONOTONIC ns); returns how many allocations got an address
/// that another thread had freed.
fn check_clock(t: &Trace, want_tsc: bool, before: u64, after: u64) -> u64 {
    let name = t.path.display();
    let clock = t.header.extra("recorder.clock").unwrap_or("");
    assert_eq!(
        clock.starts_with("tsc"),
        want_tsc,
        "{name}: header clock {clock:?}"
    );
    assert_eq!(
        t.extra("recorder.clock"),
        Some(if want_tsc { "tsc" } else { "monotonic" }),
        "{name}"
    );
    assert_eq!(t.extra("recorder.clock.clamped"), Some("0"), "{name}");
    if want_tsc {
        let hz: f64 = t.extra("recorder.clock.tsc_hz").unwrap().parse().unwrap();
        assert!((1e8..1e11).contains(&hz), "{name}: {hz} Hz");
        let drift: i64 = t.extra("recorder.clock.drift_ns").unwrap().parse().unwrap();
        assert!(
            drift.abs() < 1_000_000,
            "{name}: the map drifted {drift} ns"
        );
    }
    // Time 0 and the last stamp lie within the run, on CLOCK_MONOTONIC (1 ms of slack for the
    // TSC map's calibration error).
    let Clock::Monotonic {
        start_monotonic_ns: start,
        ..
    } = t.header.clock
    else {
        panic!("{name}: not a monotonic clock");
    };
    let end = start + t.records.iter().map(|r| r.ts).max().unwrap_or(0);
    assert!(
        before <= start,
        "{name}: time 0 {start} before the run ({before})"
    );
    assert!(
        end <= after + 1_000_000,
        "{name}: last stamp {end} after the run ({after})"
    );
    // Per thread, in file order (the thread's own order), stamps never go back.
    assert_eq!(t.backwards, None, "{name}");
    // Contract 3: for every address, a free is stamped after the allocation it frees and
    // before the next allocation that returns the address, whichever threads made them. In
    // stamp order (the merged order), either mistake shows as an allocation of an address that
    // is still live: report those, with the address's next free.
    let mut live: BTreeMap<u64, u32> = BTreeMap::new();
    let mut freed: BTreeMap<u64, u32> = BTreeMap::new();
    let mut cross = 0;
    let mut bad = Vec::new();
    for (i, r) in t.records.iter().enumerate() {
        let (ptr, freed_ptr) = match r.event {
            Event::Free { ptr } => (0, ptr),
            Event::Malloc { ptr, .. } | Event::Calloc { ptr, .. } | Event::Aligned { ptr, .. } => {
                (ptr, 0)
            }
            Event::Realloc { old_ptr, ptr, .. } if old_ptr != ptr => (ptr, old_ptr),
            _ => (0, 0),
        };
        if freed_ptr != 0 {
            live.remove(&freed_ptr);
            freed.insert(freed_ptr, r.thread);
        }
        if ptr == 0 {
            continue;
        }
        if live.insert(ptr, r.thread).is_some() {
            let free = t.records[i..]
                .iter()
                .find(|x| matches!(x.event, Event::Free { ptr: p } if p == ptr));
            bad.push((ptr, r.ts, r.thread, free.map(|f| (f.ts, f.thread))));
        } else if freed.remove(&ptr).is_some_and(|th| th != r.thread) {
            cross += 1;
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: {} allocations of an address still live in stamp order: an allocation and a \
         free of the same address by two threads stamped in the wrong order (ptr, alloc ts, \
         alloc thread, (ts and thread of the address's next free)): {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    assert_eq!(
        t.report.inconsistencies.total(),
        0,
        "{name}: {:?}",
        t.report.inconsistencies
    );
    cross
}

/// Records handoff.c (another thread frees, the main thread gets the address back at once)
/// with `clock`, and checks the clock.
fn check_handoff(clock: &str, want_tsc: bool) {
    let d = tmp();
    let prog = c_program("handoff");
    let before = monotonic_ns();
    let o = record(
        d.path(),
        "h.zst",
        &[prog.to_str().unwrap(), "1000000"],
        &[("ALLOCLAB_CLOCK", clock)],
    );
    let after = monotonic_ns();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "handoff 1000000\n");
    let t = Trace::read(&d.path().join("h.zst"));
    t.assert_complete();
    let cross = check_clock(&t, want_tsc, before, after);
    // glibc hands most of the taker's frees back to the main thread's next mallocs.
    assert!(
        cross > 300_000,
        "only {cross} addresses went from one thread to another"
    );
    if want_tsc {
        assert_eq!(t.extra("recorder.clock.ordered"), Some("true"));
    }
}

#[test]
fn tsc_clock_orders_a_cross_thread_free_before_the_next_allocation() {
    let usable = tsc_usable();
    if !usable {
        // Loud, where CI output shows it: `ALLOCLAB_CLOCK=tsc` falls back, and that is what
        // gets checked here.
        loud("SKIPPED (TSC part): this machine cannot use the TSC; the fallback clock was checked");
    }
    check_handoff("tsc", usable);
}

#[test]
fn monotonic_clock_fallback_orders_a_cross_thread_free_before_the_next_allocation() {
    check_handoff("monotonic", false);
}

#[test]
fn auto_clock_is_the_tsc_where_usable_and_every_thread_stays_in_order() {
    let before = monotonic_ns();
    let t = check_threads(&[], 4, 2000);
    let after = monotonic_ns();
    let usable = tsc_usable();
    check_clock(&t, usable, before, after);
    if !usable {
        loud(
            "SKIPPED (TSC part): this machine cannot use the TSC; the fork check below runs on \
             the fallback clock",
        );
    }
    // A forked child keeps its parent's time 0 (and map), on either clock.
    let d = tmp();
    let prog = c_program("procs");
    let o = record(d.path(), "p.zst", &[prog.to_str().unwrap(), "fork"], &[]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let all = traces_in(d.path());
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].header.clock, all[1].header.clock);
    for t in &all {
        assert_eq!(
            t.extra("recorder.clock"),
            Some(if usable { "tsc" } else { "monotonic" })
        );
    }
}

#[test]
fn forced_tsc_clock_is_used_or_reported_with_a_fallback() {
    // Where the TSC is usable it is used silently; elsewhere one line says why not.
    let d = tmp();
    let o = record(
        d.path(),
        "t.zst",
        &["/bin/true"],
        &[("ALLOCLAB_CLOCK", "tsc")],
    );
    assert!(o.status.success(), "{}", stderr_of(&o));
    let warned = stderr_of(&o).contains("ALLOCLAB_CLOCK=tsc, but");
    assert_eq!(warned, !tsc_usable(), "{}", stderr_of(&o));
    let t = Trace::read(&d.path().join("t.zst"));
    t.assert_complete();
    assert_eq!(
        t.extra("recorder.clock"),
        Some(if tsc_usable() { "tsc" } else { "monotonic" })
    );
    if tsc_usable() {
        // One thread: plain rdtsc stamps, still never going back.
        assert_eq!(t.extra("recorder.clock.ordered"), Some("false"));
        assert_eq!(t.extra("recorder.clock.clamped"), Some("0"));
        assert_eq!(t.backwards, None);
    }
}
