//! `record --os-calls` (`ALLOCLAB_OS_CALLS=1`): the program's mmap, munmap, mremap, madvise and
//! brk/sbrk calls recorded as OS call events (trace format 1.2), counted exactly; nothing of
//! the kind without the option; real programs unchanged under it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Trace, bare, record, record_bin, require, stderr_of, tmp, traces_in};
use traces::{Event, OsCall};

/// A program making a known set of OS memory calls, from two threads, between glibc-internal
/// ones (a 1 MiB malloc that glibc maps itself, a thread stack) that are not seen. It prints
/// the addresses it got and whether every failing call left the errno it should.
const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int bad = 0;
#define EXPECT_ERRNO(e) do { if (errno != (e)) { bad++; fprintf(stderr, "line %d: errno %d\n", __LINE__, errno); } } while (0)

static void *worker(void *arg) {
    (void)arg;
    char *w = mmap(NULL, 32768, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    w[0] = 1;
    munmap(w, 32768);
    return NULL;
}

int main(void) {
    /* glibc maps this itself (internal __mmap): not seen. */
    char *big = malloc(1 << 20);
    big[0] = 1;
    free(big);

    char *a = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *b = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *c = mmap(NULL, 16384, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    errno = 0;
    if (mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) bad++;
    EXPECT_ERRNO(EINVAL);
    a[0] = 1;
    b[0] = 1;

    madvise(a, 65536, MADV_DONTNEED);
    madvise(b, 65536, MADV_DONTNEED);
    errno = 0;
    if (madvise(a + 1, 4096, MADV_DONTNEED) == 0) bad++;
    EXPECT_ERRNO(EINVAL);

    char *b2 = mremap(b, 1 << 20, 2 << 20, MREMAP_MAYMOVE);

    /* A thread: its stack is glibc's (not seen), its own mmap/munmap are. */
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);

    errno = 0;
    if (munmap((void *)1, 4096) == 0) bad++;
    EXPECT_ERRNO(EINVAL);
    munmap(a, 65536);
    munmap(b2, 2 << 20);
    munmap(c, 16384);

    void *cur = sbrk(0);
    sbrk(131072);
    sbrk(-131072);
    errno = 0;
    if (sbrk((intptr_t)1 << 62) != (void *)-1) bad++;
    EXPECT_ERRNO(ENOMEM);
    brk(cur);

    printf("a=%lx b=%lx b2=%lx c=%lx brk=%lx bad=%d\n", (unsigned long)a, (unsigned long)b,
           (unsigned long)b2, (unsigned long)c, (unsigned long)cur, bad);
    return bad ? 1 : 0;
}
"#;

fn compile(dir: &Path) -> PathBuf {
    let gcc = require("gcc", "gcc");
    let src = dir.join("oscalls.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let exe = dir.join("oscalls");
    let out = Command::new(gcc)
        .args(["-O1", "-fno-builtin", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// The program's printed addresses: a, b, b2, c, brk.
fn addresses(stdout: &str) -> [u64; 5] {
    let v: Vec<u64> = stdout
        .split_whitespace()
        .take(5)
        .map(|kv| u64::from_str_radix(kv.split_once('=').unwrap().1, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn os_events(t: &Trace) -> Vec<(u32, Event)> {
    t.records
        .iter()
        .filter(|r| matches!(r.event, Event::Os { .. }))
        .map(|r| (r.thread, r.event))
        .collect()
}

#[test]
fn a_known_program_s_os_calls_are_counted_exactly() {
    let dir = tmp();
    let exe = compile(dir.path());
    let exe = exe.to_str().unwrap();
    let out = Command::new(record_bin())
        .current_dir(dir.path())
        .args(["--os-calls", "-o", "on.trace.zst", "--", exe])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", stderr_of(&out));
    assert!(stdout.contains("bad=0"), "{stdout}");
    let [a, b, b2, c, cur] = addresses(&stdout);
    let t = Trace::read(&dir.path().join("on.trace.zst"));
    t.assert_complete();
    assert_eq!(t.header.extra("recorder.os_calls"), Some("recorded"));
    assert_eq!(t.report.inconsistencies.total(), 0);

    // inspect --json's `os_calls` object (inspect serialises this very report).
    let json = serde_json::to_value(&t.report).unwrap();
    let os = &json["os_calls"];
    let want = serde_json::json!({
        "calls": {
            "mmap":    {"calls": 5, "failed": 1, "bytes": 65536 + (1 << 20) + 16384 + 32768},
            "munmap":  {"calls": 5, "failed": 1, "bytes": 65536 + (2 << 20) + 16384 + 32768},
            "mremap":  {"calls": 1, "failed": 0, "bytes": 2 << 20},
            "madvise": {"calls": 3, "failed": 1, "bytes": 131072},
            "brk":     {"calls": 5, "failed": 1, "bytes": 262144},
        },
        "madvise_by_advice": {"dontneed": {"calls": 3, "failed": 1, "bytes": 131072}},
    });
    assert_eq!(os, &want, "{}", serde_json::to_string_pretty(os).unwrap());
    assert_eq!(t.report.by_kind["os"], 19);
    // Not allocator calls: the ops are the mallocs and frees alone.
    assert_eq!(
        t.report.ops,
        t.report.events
            - 19
            - t.report.by_kind["thread_start"]
            - t.report.by_kind.get("thread_exit").copied().unwrap_or(0)
    );

    // The events themselves, in the main thread's order; the worker's pair on its own thread.
    let evs = os_events(&t);
    let main = evs[0].0;
    let mine: Vec<Event> = evs.iter().filter(|e| e.0 == main).map(|e| e.1).collect();
    let theirs: Vec<Event> = evs.iter().filter(|e| e.0 != main).map(|e| e.1).collect();
    let os = |call, addr, len, result, arg, prot, err| Event::Os {
        call,
        addr,
        len,
        result,
        arg,
        prot,
        err,
    };
    let (rw, anon) = (
        (libc::PROT_READ | libc::PROT_WRITE) as u8,
        (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32,
    );
    let dontneed = libc::MADV_DONTNEED as u32;
    let (einval, enomem) = (libc::EINVAL as u8, libc::ENOMEM as u8);
    assert_eq!(
        mine,
        vec![
            os(OsCall::Mmap, a, 65536, 0, anon, rw, 0),
            os(OsCall::Mmap, b, 1 << 20, 0, anon, rw, 0),
            os(
                OsCall::Mmap,
                c,
                16384,
                0,
                anon | libc::MAP_NORESERVE as u32,
                0,
                0
            ),
            os(OsCall::Mmap, 0, 0, 0, anon, libc::PROT_READ as u8, einval),
            os(OsCall::Madvise, a, 65536, 0, dontneed, 0, 0),
            os(OsCall::Madvise, b, 65536, 0, dontneed, 0, 0),
            os(OsCall::Madvise, a + 1, 4096, 0, dontneed, 0, einval),
            os(
                OsCall::Mremap,
                b,
                2 << 20,
                b2,
                libc::MREMAP_MAYMOVE as u32,
                0,
                0
            ),
            os(OsCall::Munmap, 1, 4096, 0, 0, 0, einval),
            os(OsCall::Munmap, a, 65536, 0, 0, 0, 0),
            os(OsCall::Munmap, b2, 2 << 20, 0, 0, 0, 0),
            os(OsCall::Munmap, c, 16384, 0, 0, 0, 0),
            os(OsCall::Brk, cur, 0, cur, 0, 0, 0),
            os(OsCall::Brk, cur, 131072, cur + 131072, 0, 0, 0),
            os(OsCall::Brk, cur + 131072, 131072, cur, 0, 0, 0),
            os(OsCall::Brk, cur, 0, cur, 0, 0, enomem),
            os(OsCall::Brk, cur, 0, cur, 0, 0, 0),
        ]
    );
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert!(matches!(
        theirs[0],
        Event::Os {
            call: OsCall::Mmap,
            len: 32768,
            err: 0,
            ..
        }
    ));
    assert!(matches!(
        theirs[1],
        Event::Os {
            call: OsCall::Munmap,
            len: 32768,
            err: 0,
            ..
        }
    ));
}

#[test]
fn without_the_option_there_are_no_os_events_and_the_program_is_the_same() {
    let dir = tmp();
    let exe = compile(dir.path());
    let exe = exe.to_str().unwrap();
    let off = record(dir.path(), "off.trace.zst", &[exe], &[]);
    let plain = bare(dir.path(), &[exe], &[]);
    for o in [&off, &plain] {
        assert!(o.status.success(), "{}", stderr_of(o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("bad=0"));
    }
    let t = Trace::read(&dir.path().join("off.trace.zst"));
    t.assert_complete();
    assert_eq!(t.header.extra("recorder.os_calls"), Some("off"));
    assert!(os_events(&t).is_empty());
    assert!(!t.report.by_kind.contains_key("os"));
    assert!(t.report.os_calls.calls.values().all(|c| c.calls == 0));
    assert!(t.report.ops > 0, "the mallocs are still there");
}

/// Debian's python3 (its small-object allocator maps its arenas with mmap) with the option:
/// the same output and exit code as without the recorder, a complete, consistent trace, and
/// the arenas' mmap calls in it.
#[test]
fn python3_runs_unchanged_with_os_calls_recorded() {
    let py = require("/usr/bin/python3", "python3");
    let script = "import threading, mmap\n\
        d = {str(i): [i] * 3 for i in range(300000)}\n\
        del d\n\
        out = []\n\
        def work(n):\n    out.append(sum(len(str(x)) for x in range(n)))\n\
        ts = [threading.Thread(target=work, args=(40000 + k,)) for k in range(3)]\n\
        [t.start() for t in ts]; [t.join() for t in ts]\n\
        m = mmap.mmap(-1, 1 << 20); m[0:5] = b'hello'; print(m[0:5].decode()); m.close()\n\
        print(sorted(out))\n\
        raise SystemExit(3)\n";
    let args = [py.to_str().unwrap(), "-c", script];
    let dir = tmp();
    let plain = bare(dir.path(), &args, &[]);
    let rec = record(
        dir.path(),
        "py.trace.zst",
        &args,
        &[("ALLOCLAB_OS_CALLS", "1")],
    );
    assert_eq!(plain.status.code(), Some(3), "{}", stderr_of(&plain));
    assert_eq!(rec.status.code(), Some(3), "{}", stderr_of(&rec));
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        String::from_utf8_lossy(&rec.stdout)
    );
    let all = traces_in(dir.path());
    assert_eq!(all.len(), 1);
    let t = &all[0];
    t.assert_complete();
    assert_eq!(t.report.inconsistencies.total(), 0);
    let os = &t.report.os_calls.calls;
    // pymalloc's arenas (256 KiB each on 3.11) and the mmap module's 1 MiB mapping.
    assert!(os["mmap"].calls >= 5, "{os:?}");
    assert!(os["mmap"].bytes >= (1 << 20) + 4 * 262144, "{os:?}");
    assert!(os["munmap"].calls >= 2, "{os:?}");
    assert!(
        t.records.iter().any(|r| matches!(
            r.event,
            Event::Os {
                call: OsCall::Mmap,
                len: 1048576,
                err: 0,
                ..
            }
        )),
        "the mmap module's mapping"
    );
}
