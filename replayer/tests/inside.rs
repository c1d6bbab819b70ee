//! What the replay child measures inside the loop besides time: the allocator's OS memory calls
//! (exact, on a C allocator whose calls are known) and the perf counters (present, or
//! unavailable with the reason).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use traces::{Event, Header, TraceWriter};

/// A malloc that asks the OS for every block: malloc/calloc/aligned → one mmap of
/// `size + 64` bytes (64-byte header holding the length); free → one madvise(MADV_DONTNEED)
/// and one munmap of it; realloc of a block → malloc + copy + free. So its OS calls are known
/// exactly from the ops it is given.
const MMAP_MALLOC: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#define HDR 64
static void *get(size_t size) {
    size_t len = size + HDR;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    *(size_t *)p = len;
    return p + HDR;
}
void *malloc(size_t size) { return get(size); }
void *calloc(size_t n, size_t size) { return get(n * size); }
void free(void *q) {
    if (!q) return;
    char *p = (char *)q - HDR;
    size_t len = *(size_t *)p;
    madvise(p, len, MADV_DONTNEED);
    munmap(p, len);
}
size_t malloc_usable_size(void *q) { return q ? *(size_t *)((char *)q - HDR) - HDR : 0; }
void *realloc(void *q, size_t size) {
    if (!q) return get(size);
    void *n = get(size);
    if (!n) return NULL;
    size_t old = malloc_usable_size(q);
    memcpy(n, q, old < size ? old : size);
    free(q);
    return n;
}
int posix_memalign(void **out, size_t align, size_t size) {
    if (align > HDR) return EINVAL;
    *out = get(size);
    return *out ? 0 : ENOMEM;
}
void *memalign(size_t align, size_t size) { return align > HDR ? NULL : get(size); }
void *aligned_alloc(size_t align, size_t size) { return memalign(align, size); }
"#;

fn replay_bin() -> &'static str {
    env!("CARGO_BIN_EXE_replay")
}

fn build_lib(dir: &Path) -> PathBuf {
    let src = dir.join("mmap_malloc.c");
    std::fs::write(&src, MMAP_MALLOC).unwrap();
    let lib = dir.join("libmmapmalloc.so");
    let o = Command::new("gcc")
        .args(["-O1", "-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    lib
}

const N: u64 = 50;
const MOVED: u64 = 20;

/// One thread: N mallocs of 100 bytes, MOVED of them realloc'ed to 5000, then every block
/// freed.
fn write_trace(dir: &Path) -> PathBuf {
    let path = dir.join("known.trace.zst");
    let mut w = TraceWriter::create(&path, &Header::for_this_process("oscalls-test")).unwrap();
    let a = |i: u64| 0x7000_0000 + i * 0x1000;
    let b = |i: u64| 0x9000_0000 + i * 0x2000;
    let mut ts = 0;
    let mut put = |e: Event| {
        ts += 1;
        w.append(1, ts, e).unwrap();
    };
    for i in 0..N {
        put(Event::Malloc {
            size: 100,
            ptr: a(i),
        });
    }
    for i in 0..MOVED {
        put(Event::Realloc {
            old_ptr: a(i),
            size: 5000,
            ptr: b(i),
        });
    }
    for i in 0..N {
        put(Event::Free {
            ptr: if i < MOVED { b(i) } else { a(i) },
        });
    }
    w.finish(0).unwrap();
    path
}

fn replay_json(args: &[&str]) -> Value {
    replay_json_env(args, &[])
}

fn replay_json_env(args: &[&str], env: &[(&str, &str)]) -> Value {
    let o = Command::new(replay_bin())
        .envs(env.iter().copied())
        .args(["--json", "-q", "--retained-wait", "0"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "replay {args:?}: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is not a number: {}", v[k]))
}

#[test]
fn os_calls_of_a_known_allocator_are_counted_exactly() {
    let d = tempfile::tempdir().unwrap();
    let lib = build_lib(d.path());
    let trace = write_trace(d.path());
    let alloc = format!("preload:{}", lib.display());
    let doc = replay_json(&[
        "-a",
        &alloc,
        "-r",
        "1",
        "--touch",
        "first",
        trace.to_str().unwrap(),
    ]);
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(
        (n(r, "ops_malloc"), n(r, "ops_realloc"), n(r, "ops_free")),
        (N, MOVED, N)
    );
    // Every allocation maps once; every block given back (frees, and the old block of each
    // realloc) is advised once and unmapped once.
    let (maps, unmaps) = (N + MOVED, N + MOVED);
    assert_eq!(n(r, "os_mmap_calls"), maps, "{r}");
    assert_eq!(n(r, "os_munmap_calls"), unmaps, "{r}");
    assert_eq!(n(r, "os_madvise_calls"), unmaps, "{r}");
    assert_eq!(n(r, "os_mremap_calls"), 0);
    assert_eq!(n(r, "os_brk_calls"), 0);
    assert_eq!(n(r, "os_calls_failed"), 0);
    let mapped = N * (100 + 64) + MOVED * (5000 + 64);
    assert_eq!(n(r, "os_mmap_bytes"), mapped);
    assert_eq!(n(r, "os_munmap_bytes"), mapped);
    assert_eq!(r["os_net_mapped_bytes"].as_i64(), Some(0));
    assert_eq!(
        r["os_madvise_advice"].as_str().unwrap(),
        format!("dontneed={unmaps}/{mapped}")
    );
    assert!(n(r, "os_mmap_ns") > 0 && n(r, "os_munmap_ns") > 0);
}

#[test]
fn glibc_calls_are_not_seen_by_the_wrappers_and_a_linked_allocator_is() {
    // glibc's malloc maps blocks of 5 MiB with its internal __mmap (a fixed threshold, so it
    // maps every one of them): the wrappers see none of it (the kernel tracepoint columns do,
    // where permitted). jemalloc, linked into `replay`,
    // calls the exported mmap: its calls are seen.
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("big.trace.zst");
    let mut w = TraceWriter::create(&path, &Header::for_this_process("oscalls-test")).unwrap();
    for i in 0..40u64 {
        let p = 0x7000_0000 + i * 0x100_0000;
        w.append(
            1,
            2 * i,
            Event::Malloc {
                size: 5 << 20,
                ptr: p,
            },
        )
        .unwrap();
        w.append(1, 2 * i + 1, Event::Free { ptr: p }).unwrap();
    }
    w.finish(0).unwrap();
    let doc = replay_json_env(
        &["-a", "system,jemalloc", "-r", "1", path.to_str().unwrap()],
        &[("MALLOC_MMAP_THRESHOLD_", "1048576")],
    );
    let runs = doc["runs"].as_array().unwrap();
    let by = |a: &str| runs.iter().find(|r| r["allocator"] == a).unwrap();
    let (sys, je) = (by("system"), by("jemalloc"));
    assert_eq!(
        n(sys, "os_mmap_calls") + n(sys, "os_munmap_calls"),
        0,
        "{sys}"
    );
    assert!(
        n(je, "os_mmap_calls") + n(je, "os_madvise_calls") > 0,
        "{je}"
    );
    // Where the kernel's tracepoints count, they see glibc's 40 maps and unmaps.
    if let Some(k) = sys["kernel_mmap_calls"].as_u64() {
        assert!(k >= 40, "{sys}");
        assert!(n(sys, "kernel_munmap_calls") >= 40, "{sys}");
    } else {
        let why = sys["perf_unavailable"].as_str().unwrap();
        assert!(why.contains("sys_mmap: "), "{why}");
    }
}

#[test]
fn counters_are_present_or_unavailable_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let lib = build_lib(d.path());
    let trace = write_trace(d.path());
    let alloc = format!("system,preload:{}", lib.display());
    let doc = replay_json(&["-a", &alloc, "-r", "1", trace.to_str().unwrap()]);
    for r in doc["runs"].as_array().unwrap() {
        assert_eq!(r["status"], "ok", "{r}");
        let why = r["perf_unavailable"].as_str().unwrap_or("");
        for c in [
            "page_faults",
            "context_switches",
            "cpu_migrations",
            "instructions",
            "cycles",
            "cache_misses",
            "dtlb_load_misses",
        ] {
            let v = &r[format!("perf_{c}")];
            assert!(
                v.is_u64() != why.contains(&format!("{c}: ")),
                "{c}: value {v} and unavailable {why:?}: exactly one of them"
            );
        }
        // Each reason says something beyond the name.
        for part in why.split("; ").filter(|p| !p.is_empty()) {
            let (_, reason) = part.split_once(": ").unwrap();
            assert!(reason.len() > 5, "{part}");
        }
        // Software page faults count wherever perf works at all; they cover the 70 mmap'ed
        // blocks' first touches of the preload run, and getrusage is always there.
        if let Some(pf) = r["perf_page_faults"].as_u64()
            && r["allocator"] != "system"
        {
            assert!(pf >= N + MOVED, "{r}");
        }
        assert!(r["minor_faults"].is_u64());
    }
}
