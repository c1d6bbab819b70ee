//! Helpers shared by the recorder's integration tests: the `record` binary and library, C test
//! programs compiled with gcc, temporary directories, and a trace read back whole.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use traces::inspect::{Inspector, Report};
use traces::{Event, Header, MergedReader, Record, TraceReader, Trailer, Warning};

pub fn record_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_record"))
}

/// The library `record` preloads: next to it or in deps/ (where `cargo test` leaves it),
/// the newer of the two, as `record` chooses.
pub fn lib() -> PathBuf {
    let next_to = record_bin().with_file_name("liballoclab_recorder.so");
    let in_deps = record_bin()
        .with_file_name("deps")
        .join("liballoclab_recorder.so");
    [next_to, in_deps]
        .into_iter()
        .filter_map(|l| Some((std::fs::metadata(&l).ok()?.modified().ok()?, l)))
        .max()
        .map(|(_, l)| l)
        .expect("liballoclab_recorder.so is missing: `cargo test -p recorder` builds it")
}

/// The path of `tool`, or a failure naming the Debian package to install.
pub fn require(tool: &str, package: &str) -> PathBuf {
    let found = if tool.starts_with('/') {
        Some(PathBuf::from(tool)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
        })
    };
    found.unwrap_or_else(|| {
        panic!(
            "{tool} is not installed: `apt-get install {package}` (recorder/ci-deps.txt lists \
             what these tests need)"
        )
    })
}

/// Compiles the programs of tests/c once per test binary; the path of NAME.
pub fn c_program(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let gcc = require("gcc", "gcc");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("recorder-c");
        std::fs::create_dir_all(&dir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
        for prog in ["threads", "procs", "handoff", "hostile"] {
            // -fno-builtin: gcc would otherwise delete malloc/free pairs whose block is unused.
            let out = Command::new(&gcc)
                .args(["-O1", "-fno-builtin", "-w", "-pthread", "-o"])
                .arg(dir.join(prog))
                .arg(src.join(format!("{prog}.c")))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "gcc failed on {prog}.c: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    });
    dir.join(name)
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("recorder-test-")
        .tempdir()
        .unwrap()
}

/// `record -o OUT -- args…` in `dir`.
pub fn record(dir: &Path, out: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(record_bin());
    c.current_dir(dir).arg("-o").arg(out).arg("--").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null()).output().unwrap()
}

/// The program alone, with the same environment.
pub fn bare(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(args[0]);
    c.current_dir(dir).args(&args[1..]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null()).output().unwrap()
}

pub struct Trace {
    pub path: PathBuf,
    pub header: Header,
    pub trailer: Option<Trailer>,
    pub warnings: Vec<Warning>,
    pub records: Vec<Record>,
    pub report: Report,
    /// The first stamp of a thread below its previous one in file order (the thread's own
    /// order), if any.
    pub backwards: Option<String>,
}

impl Trace {
    pub fn read(path: &Path) -> Trace {
        let r = MergedReader::open(path)
            .unwrap_or_else(|e| panic!("{}: does not open: {e}", path.display()));
        let header = r.header().clone();
        let mut records = Vec::new();
        let mut ins = Inspector::new();
        let mut it = r;
        loop {
            match it.next() {
                Some(Ok(rec)) => {
                    ins.feed(&rec);
                    records.push(rec);
                }
                Some(Err(e)) => panic!("{}: unreadable: {e}", path.display()),
                None => break,
            }
        }
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        let mut backwards = None;
        for r in TraceReader::open(path).unwrap().records() {
            let Ok(r) = r else { break };
            let prev = last.insert(r.thread, r.ts).unwrap_or(0);
            if r.ts < prev && backwards.is_none() {
                backwards = Some(format!("thread {}: {prev} ns, then {} ns", r.thread, r.ts));
            }
        }
        Trace {
            path: path.to_path_buf(),
            header,
            trailer: it.trailer().cloned(),
            warnings: it.warnings().to_vec(),
            records,
            report: ins.report(),
            backwards,
        }
    }

    pub fn extra(&self, key: &str) -> Option<&str> {
        self.trailer.as_ref().and_then(|t| {
            t.extra
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        })
    }

    /// Finished, nothing dropped, the recorder never re-entered itself.
    pub fn assert_complete(&self) {
        let t = self
            .trailer
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no trailer", self.path.display()));
        assert_eq!(t.dropped_events, 0, "{}", self.path.display());
        assert_eq!(t.total_events, self.records.len() as u64);
        assert_eq!(
            self.extra("recorder.reentries"),
            Some("0"),
            "{}",
            self.path.display()
        );
    }

    pub fn origin(&self) -> &str {
        self.header.extra("recorder.origin").unwrap_or("")
    }

    /// Events per kind of the thread whose OS tid is `tid`, NULL frees counted apart.
    pub fn counts_of_tid(&self, tid: u32) -> BTreeMap<&'static str, u64> {
        let thread = self
            .report
            .threads
            .iter()
            .find(|t| t.os_tid == tid)
            .unwrap_or_else(|| panic!("no thread with tid {tid}"))
            .thread;
        let mut m = BTreeMap::new();
        for r in self.records.iter().filter(|r| r.thread == thread) {
            let name = match r.event {
                Event::Free { ptr: 0 } => "free(NULL)",
                e => e.kind().name(),
            };
            *m.entry(name).or_insert(0) += 1;
        }
        m
    }
}

pub fn traces_in(dir: &Path) -> Vec<Trace> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".zst"))
        .collect();
    v.sort();
    v.iter().map(|p| Trace::read(p)).collect()
}

pub fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
