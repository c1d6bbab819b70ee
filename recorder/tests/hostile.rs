//! The recorder under hostile conditions (the stress/fault suite): process lifetime (a main
//! thread that calls `pthread_exit`, children made without fork handlers, exec from a thread,
//! threads exiting while the program forks), memory exhaustion under an address-space limit,
//! allocations inside signal handlers, and read-only or full output file systems. The rule
//! each test holds: the program runs as it runs without the recorder (same exit status and
//! output, never a hang), and whatever is not recorded is said — one line on stderr, or counted
//! as dropped in the trailer, where `inspect` shows it. Programs are tests/c/hostile.c.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use traces::Event;

/// Runs `cmd`, failing the test (after killing it) if it has not ended within `secs`.
fn within(mut cmd: Command, secs: u64, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {secs} s (killed): stdout {:?}, stderr {}",
                String::from_utf8_lossy(&o.stdout),
                stderr_of(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `record -o OUT -- hostile ARGS…` in `dir`, within `secs`.
fn record_hostile(dir: &Path, out: &str, args: &[&str], env: &[(&str, &str)], secs: u64) -> Output {
    let mut c = Command::new(record_bin());
    c.current_dir(dir)
        .arg("-o")
        .arg(out)
        .arg("--")
        .arg(c_program("hostile"))
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    within(c, secs, &format!("record -- hostile {}", args.join(" ")))
}

/// The recorder's own lines on stderr.
fn our_lines(o: &Output) -> Vec<String> {
    stderr_of(o)
        .lines()
        .filter(|l| l.starts_with("alloclab-recorder"))
        .map(str::to_string)
        .collect()
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Process lifetime.

#[test]
fn a_main_thread_that_calls_pthread_exit_lets_the_process_exit() {
    // Before: the writer thread (every signal blocked) kept the process alive for ever.
    for args in [&["pthread-exit"][..], &["pthread-exit-alone", "5000"]] {
        let d = tmp();
        let bare = within(
            {
                let mut c = Command::new(c_program("hostile"));
                c.args(args);
                c
            },
            20,
            "the program alone",
        );
        assert_eq!(bare.status.code(), Some(0));
        let o = record_hostile(d.path(), "t.zst", args, &[], 20);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr_of(&o));
        assert!(our_lines(&o).is_empty(), "{}", stderr_of(&o));
        let t = Trace::read(&d.path().join("t.zst"));
        t.assert_complete();
        assert_eq!(t.report.inconsistencies.total(), 0, "{args:?}");
        let mallocs = t.report.by_kind.get("malloc").copied().unwrap_or(0);
        assert!(mallocs >= 5000, "{args:?}: {mallocs} mallocs");
        if args[0] == "pthread-exit" {
            // The worker ran to its end, after the main thread had gone.
            assert!(t.report.threads.len() >= 2, "{:?}", t.report.threads);
        }
    }
}

#[test]
fn a_child_made_without_fork_handlers_says_so_and_never_hangs() {
    // Before: a child that allocates a lot waited for ever for a writer thread it does not
    // have; one that allocates a little finished, its events in no trace and nothing said.
    for mode in ["_Fork", "sysfork", "clone"] {
        for n in ["1000000", "100"] {
            let d = tmp();
            let o = record_hostile(d.path(), "t.zst", &[mode, n], &[], 30);
            assert_eq!(o.status.code(), Some(0), "{mode} {n}: {}", stderr_of(&o));
            let out = stdout_of(&o);
            let f: Vec<&str> = out.split_whitespace().collect();
            assert_eq!((f[0], f[2]), ("child", "0"), "{mode} {n}: {out}");
            let child = f[1];
            let ours = our_lines(&o);
            assert_eq!(ours.len(), 1, "{mode} {n}: {}", stderr_of(&o));
            assert!(
                ours[0].starts_with(&format!("alloclab-recorder[{child}]"))
                    && ours[0].contains("without fork handlers")
                    && ours[0].contains("not recorded"),
                "{mode} {n}: {}",
                ours[0]
            );
            // The parent's trace is whole and the child's events are in none.
            let all = traces_in(d.path());
            assert_eq!(all.len(), 1, "{mode} {n}");
            let t = &all[0];
            t.assert_complete();
            assert_eq!(t.report.inconsistencies.total(), 0, "{mode} {n}");
            let mallocs = t.report.by_kind.get("malloc").copied().unwrap_or(0);
            assert!(
                (105..1000).contains(&mallocs),
                "{mode} {n}: {mallocs} mallocs in the parent's trace"
            );
        }
    }
}

#[test]
fn exec_from_a_thread_ends_the_trace_and_records_the_new_program() {
    let d = tmp();
    let o = record_hostile(d.path(), "t.zst", &["exec-thread"], &[], 30);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert!(our_lines(&o).is_empty(), "{}", stderr_of(&o));
    let all = traces_in(d.path());
    assert_eq!(
        all.len(),
        2,
        "{:?}",
        all.iter().map(|t| &t.path).collect::<Vec<_>>()
    );
    let before = all.iter().find(|t| t.path.ends_with("t.zst")).unwrap();
    before.assert_complete();
    assert_eq!(before.extra("recorder.end"), Some("exec"));
    let after = all.iter().find(|t| !t.path.ends_with("t.zst")).unwrap();
    after.assert_complete();
    assert_eq!(
        after.header.command_line.first().map(String::as_str),
        Some("/bin/true")
    );
    assert_eq!(after.header.pid, before.header.pid);
}

#[test]
fn threads_exiting_while_the_program_forks_leave_every_trace_whole() {
    let d = tmp();
    let o = record_hostile(d.path(), "t.zst", &["fork-churn", "25"], &[], 60);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_eq!(stdout_of(&o), "fork-churn ok\n");
    assert!(our_lines(&o).is_empty(), "{}", stderr_of(&o));
    let all = traces_in(d.path());
    assert_eq!(all.len(), 26);
    for t in &all {
        t.assert_complete();
        if t.origin() == "fork" {
            // Only the forking thread lives in the child: 1000 mallocs of its own.
            assert_eq!(t.report.threads.len(), 1, "{}", t.path.display());
            let c = t.counts_of_tid(t.header.pid);
            assert_eq!(c.get("malloc"), Some(&1000), "{}: {c:?}", t.path.display());
        } else {
            assert_eq!(t.report.inconsistencies.total(), 0);
            assert_eq!(t.report.threads.len(), 1 + 4 * 25);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Memory exhaustion.

/// The program's malloc loop runs into its address-space limit: it must end as it does alone
/// (exit 0, its counts printed), and the trace must account for every event it made: recorded
/// or dropped and counted, or one line saying recording stopped for want of memory.
fn check_oom(o: &Output, d: &Path, what: &str) {
    assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr_of(o));
    let out = stdout_of(o);
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f.first(), Some(&"oom"), "{what}: {out}");
    let small: u64 = f[2].parse().unwrap();
    let big: u64 = f[1].parse().unwrap();
    assert!(small > 10_000, "{what}: {out}");
    // The trace of the program that printed it (not of a shell that exec'd it).
    let t = traces_in(d)
        .into_iter()
        .find(|t| t.header.command_line.get(1).map(String::as_str) == Some("oom"))
        .unwrap_or_else(|| panic!("{what}: no trace of `hostile oom`"));
    let ours = our_lines(o);
    match &t.trailer {
        Some(tr) => {
            assert!(ours.is_empty(), "{what}: {ours:?}");
            let sized = |want: u64| {
                t.records
                    .iter()
                    .filter(|r| matches!(r.event, Event::Malloc { size, ptr } if size == want && ptr != 0))
                    .count() as u64
            };
            // Every successful malloc of the loops is in the trace or among the dropped.
            assert!(
                sized(64) + sized(4096) + tr.dropped_events >= small + big,
                "{what}: {} + {} recorded, {} dropped, {small} + {big} made",
                sized(64),
                sized(4096),
                tr.dropped_events
            );
            assert_eq!(t.extra("recorder.reentries"), Some("0"));
        }
        None => {
            assert_eq!(ours.len(), 1, "{what}: {}", stderr_of(o));
            assert!(ours[0].contains("out of memory"), "{what}: {}", ours[0]);
        }
    }
}

#[test]
fn running_out_of_address_space_never_aborts_the_program() {
    // Before: every run died (2 of 3 with a 200 MB limit) of Rust's "memory allocation of … bytes failed" (exit 134).
    for run in 0..3 {
        let d = tmp();
        let o = record_hostile(d.path(), "t.zst", &["oom", "100"], &[], 120);
        check_oom(&o, d.path(), &format!("run {run}"));
    }
    // The limit set before the program starts (`ulimit -v`), recorder included.
    let d = tmp();
    let sh = require("/bin/sh", "dash");
    let mut c = Command::new(record_bin());
    c.current_dir(d.path())
        .args(["-o", "t.zst", "--"])
        .arg(&sh)
        .arg("-c")
        .arg(format!(
            "ulimit -v 200000 && exec {} oom 0",
            c_program("hostile").display()
        ));
    let o = within(c, 120, "ulimit -v");
    check_oom(&o, d.path(), "ulimit -v 200000");
}

// ---------------------------------------------------------------------------------------------
// Signals.

#[test]
fn allocations_in_signal_handlers_are_recorded_or_counted_as_dropped() {
    // Before: the handler's events were lost whenever it interrupted the recorder's store —
    // nearly always, as the main thread does nothing but free(NULL) — first silently, then
    // counted as dropped (~99 %). Now they wait in the thread's side buffer and go into the
    // ring with the thread's next event; while the thread waits for room in its full ring (this
    // program outruns the writer: it waits often), a handler that finds the buffer full waits
    // for room too. Only a handler that finds the buffer full while it is being moved into the
    // ring, or one that interrupts the thread's very last store, loses its events (counted).
    // Frames of 16384 events and not the default 262144: the handler's waits last as long as
    // the writer takes to encode a frame (~0.1 s in a debug build), ~10 s then for 5000 calls.
    let n = 5_000u64;
    for env in [
        &[("ALLOCLAB_FRAME_EVENTS", "16384")][..],
        &[
            ("ALLOCLAB_RING_EVENTS", "1024"),
            ("ALLOCLAB_FRAME_EVENTS", "1024"),
        ],
    ] {
        let d = tmp();
        let o = record_hostile(d.path(), "t.zst", &["signals", &n.to_string()], env, 120);
        assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
        assert_eq!(stdout_of(&o), format!("signals {n}\n"));
        let t = Trace::read(&d.path().join("t.zst"));
        let tr = t.trailer.as_ref().expect("a trailer");
        assert_eq!(tr.total_events, t.records.len() as u64);
        // The handler's events: the main thread's mallocs of 40 bytes and the frees of their
        // blocks (the program itself mallocs no 40-byte block on the main thread after its
        // start, and its loop frees only NULL).
        let main = t.report.threads[0].thread;
        let mut live = std::collections::HashSet::new();
        let (mut mallocs, mut frees) = (0u64, 0u64);
        for r in t.records.iter().filter(|r| r.thread == main) {
            match r.event {
                Event::Malloc { size: 40, ptr } => {
                    mallocs += 1;
                    live.insert(ptr);
                }
                Event::Free { ptr } if live.remove(&ptr) => frees += 1,
                _ => {}
            }
        }
        let dropped = tr.dropped_events;
        let reentries: u64 = t.extra("recorder.reentries").unwrap().parse().unwrap();
        let internal: u64 = t.extra("recorder.internal_calls").unwrap().parse().unwrap();
        let what = format!(
            "{env:?}: {mallocs} mallocs and {frees} frees of the handler recorded, {dropped} \
             dropped, {reentries} re-entries, {internal} internal calls, {n} handler calls"
        );
        // Every handler event is in the trace or counted as dropped: exactly.
        assert_eq!(mallocs + frees + dropped, 2 * n, "{what}");
        // Every loss here is a re-entry (none expected: one handler runs at a time and makes 2
        // events, the buffer holds 32).
        assert!(dropped <= reentries, "{what}");
        // Most handler calls interrupt the recorder (the program's loop is almost all
        // recorder), and nearly all of those are recorded now: at least 99 % of the handler's
        // events with the default ring, where ~99 % were dropped before. With a 1024-event ring
        // the program waits for the writer all the time, and a handler more often finds its
        // buffer being moved into the ring: 0–204 of the 10 000 events were dropped in 27 runs
        // here (the same before and after the OS-call hooks), so that case is held to 95 %.
        assert!(reentries >= n, "{what}");
        let percent = if env.len() == 2 { 95 } else { 99 };
        assert!(mallocs + frees >= 2 * n * percent / 100, "{what}");
        // In the thread's order: stamps never go back, nothing clamped by the writer, and the
        // trace is consistent (no free of an unknown block, no block allocated twice).
        assert_eq!(t.backwards, None, "{what}");
        assert_eq!(
            t.extra("recorder.clock.clamped").unwrap_or("0"),
            "0",
            "{what}"
        );
        assert_eq!(
            t.report.inconsistencies.total(),
            0,
            "{what}: {:?}",
            t.report.inconsistencies
        );
        eprintln!("{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs: read-only, full.

/// Runs `script` with `sh` in a private mount namespace (as root, or as an unprivileged user
/// mapped to root), with $1 a fresh empty directory for it to mount on. Fails, naming what to
/// do, when no mount namespace can be made.
fn in_mount_namespace(script: &str, extra: &[&str]) -> Output {
    let unshare = require("unshare", "util-linux");
    let d = tmp();
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let probe = Command::new(&unshare)
        .args(["--user", "--map-root-user", "--mount", "true"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "cannot make a mount namespace (`unshare --user --map-root-user --mount`): {}; this \
         test needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) \
         or root",
        stderr_of(&probe)
    );
    let mut c = Command::new(&unshare);
    c.args([
        "--user",
        "--map-root-user",
        "--mount",
        "/bin/sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&mnt)
    .args(extra)
    .env("REC", record_bin())
    .env("PROG", c_program("threads"));
    within(c, 60, script)
}

#[test]
fn a_read_only_output_lets_the_program_run_and_says_why_in_one_line() {
    // Before: `record` refused to start the program (exit 125) when the old trace could not
    // be removed from a read-only file system.
    let o = in_mount_namespace(
        "mount -t tmpfs -o size=1m tmpfs \"$1\" && echo old > \"$1/t.zst\" && \
         mount -o remount,ro \"$1\" && exec \"$REC\" -o \"$1/t.zst\" -- /bin/echo hello",
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_eq!(stdout_of(&o), "hello\n");
    let ours = our_lines(&o);
    assert_eq!(ours.len(), 1, "{}", stderr_of(&o));
    assert!(ours[0].contains("Read-only file system"), "{}", ours[0]);
    // Without an old trace in the way, too.
    let o = in_mount_namespace(
        "mount -t tmpfs -o ro,size=1m tmpfs \"$1\" && \
         exec \"$REC\" -o \"$1/t.zst\" -- /bin/echo hello",
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_eq!(stdout_of(&o), "hello\n");
    assert_eq!(our_lines(&o).len(), 1, "{}", stderr_of(&o));
}

#[test]
fn a_full_file_system_lets_the_program_finish_and_says_why_in_one_line() {
    // 64 KiB hold the header and a few frames, not 4 × 50000 events of threads.c.
    let o = in_mount_namespace(
        "mount -t tmpfs -o size=64k tmpfs \"$1\" && \
         \"$REC\" -o \"$1/t.zst\" -- \"$PROG\" 4 50000; rc=$?; \
         ls -l \"$1\" >&2; exit $rc",
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_eq!(stdout_of(&o).lines().count(), 4, "{}", stdout_of(&o));
    let ours = our_lines(&o);
    assert_eq!(ours.len(), 1, "{}", stderr_of(&o));
    assert!(
        ours[0].contains("No space left on device") && ours[0].contains("cannot write"),
        "{}",
        ours[0]
    );
}
