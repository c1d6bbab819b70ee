//! `record [-o FILE] [--] cmd args…`: runs a program with the alloclab recorder preloaded,
//! passes its standard streams, signals and exit status through, and prints one summary line
//! to stderr at the end.
//!
//! The recorder itself is `liballoclab_recorder.so` (this crate's cdylib), found next to this
//! executable (or at `--lib` / `ALLOCLAB_LIB`). Every process of the run writes its own trace:
//! the first one `FILE`, the others (forked children, exec'd programs) `FILE` with `.<pid>`
//! before the extension (`%p` in `FILE` puts every pid where you want it).

#![deny(clippy::undocumented_unsafe_blocks)]

#[path = "../naming.rs"]
#[allow(dead_code)]
mod naming;

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result, bail};
use clap::Parser;

/// Record every malloc-family call of a program (and of the processes it starts) into alloclab
/// traces.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Trace file. `%p` stands for the pid; without it, the first process writes FILE and every
    /// other process FILE with `.<pid>` before the extension. Default: `<program>.trace.zst`.
    #[arg(short, long, value_name = "FILE")]
    output: Option<String>,
    /// The recorder library (default: liballoclab_recorder.so next to `record`).
    #[arg(long, env = "ALLOCLAB_LIB", value_name = "PATH")]
    lib: Option<PathBuf>,
    /// Report the result as one JSON object instead of the summary line: on stderr, or with
    /// `--json=FILE` into FILE (what scripts read: `files`, `events`, `threads`, `processes`,
    /// `bytes`, `dropped`, `incomplete`, `exit_code` or `signal` of the program).
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true, default_missing_value = "-")]
    json: Option<PathBuf>,
    /// Also record the program's mmap, munmap, mremap, madvise and brk/sbrk calls (those made
    /// through the dynamic symbols, not glibc malloc's own) as OS call events (trace format
    /// 1.2). Sets ALLOCLAB_OS_CALLS=1 for the program.
    #[arg(long)]
    os_calls: bool,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// The recorded program's pid, for the signal forwarder.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Signals a user sends to `record` go on to the program. Those the terminal sends to the
/// whole foreground group (Ctrl-C, Ctrl-\) reached the program already and are not repeated.
extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; kill is
    // async-signal-safe.
    unsafe {
        let from_kernel = !info.is_null() && (*info).si_code == libc::SI_KERNEL;
        let child = CHILD.load(Ordering::Relaxed);
        if child > 0 && !from_kernel {
            libc::kill(child, sig);
        }
    }
}

const FORWARDED: [libc::c_int; 8] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGALRM,
];

/// Blocks (`true`) or unblocks the forwarded signals. They stay blocked from before the spawn
/// until the child's pid is known, so a signal sent meanwhile waits instead of being lost.
/// The child unblocks them itself before exec (see `run`).
fn block_forwarded(block: bool) {
    // SAFETY: sigset_t is plain data; pthread_sigmask with valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

fn install_forwarding() {
    for sig in FORWARDED {
        // SAFETY: a zeroed sigaction with an SA_SIGINFO handler of the right signature.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// liballoclab_recorder.so next to `record`, or in `deps/` beside it (where `cargo test` leaves
/// it: cargo copies a library up to the profile directory only for `cargo build`): the newer
/// of the two when both exist, so a `cargo test` after a `cargo build` never preloads the
/// older library.
fn default_lib() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the record executable's path")?;
    let next_to = exe.with_file_name("liballoclab_recorder.so");
    let in_deps = exe.with_file_name("deps").join("liballoclab_recorder.so");
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Ok(match (modified(&next_to), modified(&in_deps)) {
        (None, Some(_)) => in_deps,
        (Some(a), Some(b)) if b > a => in_deps,
        _ => next_to,
    })
}

/// What the traces of the run hold.
#[derive(Default)]
struct Summary {
    files: Vec<PathBuf>,
    events: u64,
    threads: u64,
    bytes: u64,
    incomplete: u64,
    dropped: u64,
}

fn summarise(template: &naming::Template, since: std::time::SystemTime) -> Summary {
    let mut s = Summary::default();
    let probe = template
        .root
        .clone()
        .unwrap_or_else(|| template.pid_path(0, 0));
    let dir = Path::new(&probe)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return s;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| template.matches(&p.to_string_lossy()))
        .filter(|p| {
            p.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .collect();
    files.sort();
    if let Some(root) = &template.root
        && let Some(i) = files.iter().position(|p| p.to_string_lossy() == *root)
    {
        let r = files.remove(i);
        files.insert(0, r);
    }
    for f in &files {
        s.bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
        match traces::MergedReader::open(f) {
            Ok(r) => match r.trailer() {
                Some(t) => {
                    s.events += t.total_events;
                    s.dropped += t.dropped_events;
                    s.threads += t.threads.len() as u64;
                }
                None => {
                    s.incomplete += 1;
                    s.events += r.total_events();
                    s.threads += r.threads().len() as u64;
                }
            },
            Err(_) => s.incomplete += 1,
        }
    }
    s.files = files;
    s
}

fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let lib = match args.lib {
        Some(l) => l,
        None => default_lib()?,
    };
    if !lib.is_file() {
        bail!(
            "the recorder library {} does not exist: build it with `cargo build --release -p \
             recorder` (it lands next to `record`), or pass --lib PATH",
            lib.display()
        );
    }
    let lib = std::path::absolute(&lib)?;
    let program = &args.command[0];
    let output = args.output.unwrap_or_else(|| {
        let name = Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "alloclab".into());
        format!("{name}.trace.zst")
    });
    // Absolute, so that a program that changes directory still writes beside FILE.
    let output = std::path::absolute(&output)
        .with_context(|| format!("bad output path {output:?}"))?
        .to_string_lossy()
        .into_owned();
    let template = naming::parse(&output);
    if let Some(root) = &template.root {
        // The first process creates FILE with O_EXCL: a trace of an earlier run is replaced.
        // If it cannot be removed (read-only file system, …), the program still runs: the
        // library then cannot create its file either and says why in one line, as for every
        // other output problem.
        let _ = std::fs::remove_file(root);
    }
    let mut preload = lib.to_string_lossy().into_owned();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload = format!("{preload}:{}", old.to_string_lossy());
    }
    // File times have coarse granularity on some filesystems: allow a little slack.
    let since = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    install_forwarding();
    block_forwarded(true);
    let mut cmd = Command::new(program);
    cmd.args(&args.command[1..])
        .env("LD_PRELOAD", &preload)
        .env("ALLOCLAB_OUTPUT", &output);
    if args.os_calls {
        cmd.env("ALLOCLAB_OS_CALLS", "1");
    }
    // SAFETY: the closure only calls pthread_sigmask, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            block_forwarded(false);
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    if let Ok(c) = &spawned {
        CHILD.store(c.id() as i32, Ordering::Relaxed);
    }
    block_forwarded(false);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("record: cannot run {}: {e}", program.to_string_lossy());
            return Ok(ExitCode::from(
                if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                },
            ));
        }
    };
    let status = child.wait().context("waiting for the program")?;
    CHILD.store(0, Ordering::Relaxed);

    let s = summarise(&template, since);
    if let Some(dest) = &args.json {
        write_json(&s, &status, dest)?;
        return Ok(exit_like(status));
    }
    let first = s
        .files
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no trace file".into());
    let more = if s.files.len() > 1 {
        format!(" (+{} more beside it)", s.files.len() - 1)
    } else {
        String::new()
    };
    let incomplete = if s.incomplete > 0 {
        format!(", {} without trailer (cut short)", s.incomplete)
    } else {
        String::new()
    };
    eprintln!(
        "record: {} events, {} threads, {} processes, {} in {first}{more}, {:.2} bytes/event{incomplete}",
        s.events,
        s.threads,
        s.files.len(),
        human(s.bytes),
        s.bytes as f64 / s.events.max(1) as f64,
    );

    Ok(exit_like(status))
}

/// `--json`: the summary and the program's exit status as one JSON object, on stderr (`-`) or
/// into a file.
fn write_json(s: &Summary, status: &std::process::ExitStatus, dest: &Path) -> Result<()> {
    let v = serde_json::json!({
        "files": s.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "events": s.events,
        "threads": s.threads,
        "processes": s.files.len(),
        "bytes": s.bytes,
        "dropped": s.dropped,
        "incomplete": s.incomplete,
        "exit_code": status.code(),
        "signal": status.signal(),
    });
    if dest == Path::new("-") {
        eprintln!("{v}");
        return Ok(());
    }
    std::fs::write(dest, format!("{v}\n"))
        .with_context(|| format!("cannot write the --json result to {}", dest.display()))
}

/// Exits as the program did: its code, or its signal raised again.
fn exit_like(status: std::process::ExitStatus) -> ExitCode {
    if let Some(code) = status.code() {
        return ExitCode::from(code as u8);
    }
    if let Some(sig) = status.signal() {
        // Die of the same signal, so our parent sees what it would have seen.
        // SAFETY: resetting a disposition and raising a signal have no memory preconditions.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            let mut core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_CORE, &mut core);
            core.rlim_cur = 0;
            libc::setrlimit(libc::RLIMIT_CORE, &core);
            libc::raise(sig);
        }
        return ExitCode::from(128 + sig as u8);
    }
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("record: {e:#}");
            ExitCode::from(125)
        }
    }
}
