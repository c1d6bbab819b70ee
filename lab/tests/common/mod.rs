//! What the lab's test binaries share: where `analyze` is; running `lab`, planning a tiny
//! sweep, and reading back the runs it wrote (shard and Slurm tests).
#![allow(dead_code)]

pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::{Array, StringArray, UInt32Array, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The `replay` (and `record`) binaries the lab needs beside it.
pub fn check_bins() {
    let bins = Path::new(env!("CARGO_BIN_EXE_lab")).parent().unwrap();
    assert!(
        bins.join("replay").is_file(),
        "{}/replay is missing: run the workspace's tests (`cargo test`), which build it, or \
         `cargo build --profile test -p replayer` first",
        bins.display()
    );
}

/// `lab ARGS`.
pub fn lab(args: &[&str]) -> Output {
    check_bins();
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(args)
        .output()
        .unwrap()
}

/// The lab's arguments of the tests' tiny sweep: the quick profile, two allocators, no
/// python3, plus `extra`.
pub fn sweep_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--quick", "-q", "--no-python", "-a", "system,jemalloc"];
    v.extend_from_slice(extra);
    v
}

/// `lab --plan-only` of the tiny sweep into `out`; returns the manifest.
pub fn plan(out: &Path, extra: &[&str]) -> PathBuf {
    let mut args = sweep_args(extra);
    args.extend(["--plan-only", "-o", out.to_str().unwrap()]);
    let o = lab(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = out.join("manifest.jsonl");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("manifest: {}", m.display())
    );
    m
}

/// Every runs.parquet under `dir` (not in dot directories), sorted.
pub fn run_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return v;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            v.extend(run_files(&p));
        } else if e.file_name() == "runs.parquet" {
            v.push(p);
        }
    }
    v.sort();
    v
}

/// What identifies a run and what it must reproduce anywhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunKey {
    pub id: String,
    pub trace_name: String,
    pub trace_hash: String,
    pub allocator: String,
    pub replay_threads: u32,
    pub repetition: u32,
    pub status: String,
    pub ops: u64,
    pub peak_live_bytes: u64,
}

fn col<'a, T: 'static>(b: &'a arrow_array::RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} of another type"))
}

/// The rows of `files`, sorted.
pub fn result_keys(files: &[PathBuf]) -> Vec<RunKey> {
    let mut v = Vec::new();
    for f in files {
        let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in r {
            let b = b.unwrap();
            let s = |n: &str| col::<StringArray>(&b, n).clone();
            let (id, tn, th, al, st) = (
                s("run_id"),
                s("trace_name"),
                s("trace_hash"),
                s("allocator"),
                s("status"),
            );
            let rt = col::<UInt32Array>(&b, "replay_threads");
            let rep = col::<UInt32Array>(&b, "repetition");
            let ops = col::<UInt64Array>(&b, "ops");
            let pl = col::<UInt64Array>(&b, "peak_live_bytes");
            for i in 0..b.num_rows() {
                assert!(!id.is_null(i));
                v.push(RunKey {
                    id: id.value(i).to_string(),
                    trace_name: tn.value(i).to_string(),
                    trace_hash: th.value(i).to_string(),
                    allocator: al.value(i).to_string(),
                    replay_threads: rt.value(i),
                    repetition: rep.value(i),
                    status: st.value(i).to_string(),
                    ops: ops.value(i),
                    peak_live_bytes: pl.value(i),
                });
            }
        }
    }
    v.sort();
    v
}

pub fn target_dir() -> PathBuf {
    // <target>/<profile>/deps/lab-…
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `analyze` binary: ALLOCLAB_ANALYZE, or where `cargo build --profile analysis -p
/// analysis` puts it.
pub fn analyze_bin() -> PathBuf {
    let p = std::env::var_os("ALLOCLAB_ANALYZE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("analysis/analyze"));
    assert!(
        p.is_file(),
        "{} is missing: build it first with `cargo build --locked --profile analysis -p analysis` \
         (scripts/test-all does), or point ALLOCLAB_ANALYZE at it",
        p.display()
    );
    p
}

/// A preloadable malloc that crashes the program (SIGSEGV) on its 3000th call, compiled with
/// gcc into `dir/libcrash.so`: an allocator under which a real run fails.
pub fn crashing_allocator(dir: &Path) -> PathBuf {
    let src = dir.join("crash.c");
    std::fs::write(
        &src,
        "#include <stddef.h>\nextern void *__libc_malloc(size_t);\nstatic long n;\n\
         void *malloc(size_t s) { if (++n == 3000) *(volatile int *)0 = 1; return __libc_malloc(s); }\n",
    )
    .unwrap();
    let lib = dir.join("libcrash.so");
    let o = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .expect("gcc is missing: `apt-get install gcc`");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    lib
}
