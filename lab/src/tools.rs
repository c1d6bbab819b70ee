//! The programs the lab runs, and where it finds them.
//!
//! | program | default | option | environment |
//! |---|---|---|---|
//! | `record` | beside the `lab` executable | `--record-bin` | `ALLOCLAB_RECORD_BIN` |
//! | `replay` | beside the `lab` executable | `--replay-bin` | `ALLOCLAB_REPLAY_BIN` |
//! | `analyze` | `../analysis/analyze` from the `lab` executable's directory | `--analyze` | `ALLOCLAB_ANALYZE` |
//! | `libfancy_preload.so` | beside the `lab` executable (or in `deps/` there) | `--fancy-lib` | `ALLOCLAB_FANCY_LIB` |
//!
//! The defaults are cargo's layout: `cargo build --release -p lab -p replayer -p recorder -p
//! fancy-preload` puts `lab`, `replay`, `record` and `libfancy_preload.so` in
//! `<target>/release/`, and `cargo build --profile analysis -p analysis` puts `analyze` in
//! `<target>/analysis/`. A missing program is a [`LabError::MissingTool`] saying what to build.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::error::LabError;

/// Where the lab's programs are.
#[derive(Clone, Debug)]
pub struct Tools {
    pub record: PathBuf,
    pub replay: PathBuf,
    pub analyze: PathBuf,
    pub fancy_lib: PathBuf,
}

/// The directory of the running executable.
fn exe_dir() -> Result<PathBuf, LabError> {
    let exe = std::env::current_exe().map_err(LabError::io("finding the lab executable"))?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

impl Tools {
    /// The given paths, the others at their defaults (see the module's table).
    pub fn locate(
        record: Option<PathBuf>,
        replay: Option<PathBuf>,
        analyze: Option<PathBuf>,
        fancy_lib: Option<PathBuf>,
    ) -> Result<Tools, LabError> {
        let dir = exe_dir()?;
        let fancy_default = || {
            let next_to = dir.join("libfancy_preload.so");
            let in_deps = dir.join("deps/libfancy_preload.so");
            if !next_to.is_file() && in_deps.is_file() {
                in_deps
            } else {
                next_to
            }
        };
        Ok(Tools {
            record: record.unwrap_or_else(|| dir.join("record")),
            replay: replay.unwrap_or_else(|| dir.join("replay")),
            analyze: analyze.unwrap_or_else(|| dir.join("../analysis/analyze")),
            fancy_lib: fancy_lib.unwrap_or_else(fancy_default),
        })
    }

    /// `record`, checked to exist.
    pub fn record(&self) -> Result<&Path, LabError> {
        need(
            "record",
            &self.record,
            "build it with `cargo build --release -p recorder` (scripts/lab does), or pass \
             --record-bin PATH",
        )
    }

    /// `replay`, checked to exist.
    pub fn replay(&self) -> Result<&Path, LabError> {
        need(
            "replay",
            &self.replay,
            "build it with `cargo build --release -p replayer` (scripts/lab does), or pass \
             --replay-bin PATH",
        )
    }

    /// `analyze`, checked to exist.
    pub fn analyze(&self) -> Result<&Path, LabError> {
        need(
            "analyze",
            &self.analyze,
            "build it with `cargo build --locked --profile analysis -p analysis` (scripts/lab \
             does; polars, ~20-40 min the first time), or pass --analyze PATH",
        )
    }

    /// `libfancy_preload.so`, checked to exist.
    pub fn fancy_lib(&self) -> Result<&Path, LabError> {
        need(
            "libfancy_preload.so",
            &self.fancy_lib,
            "build it with `cargo build --release -p fancy-preload` (scripts/lab does), or pass \
             --fancy-lib PATH",
        )
    }
}

fn need<'a>(tool: &'static str, path: &'a Path, build: &str) -> Result<&'a Path, LabError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(LabError::MissingTool {
            tool,
            path: path.to_path_buf(),
            build: build.to_string(),
        })
    }
}

/// What `record --json` reports.
#[derive(Clone, Debug, Deserialize)]
pub struct Recorded {
    /// Trace files written, the first process's first.
    pub files: Vec<PathBuf>,
    pub events: u64,
    pub threads: u64,
    pub processes: u64,
    pub bytes: u64,
    /// Events the recorder lost.
    pub dropped: u64,
    /// Trace files without a trailer (a process cut short).
    pub incomplete: u64,
    /// The program's exit code, or the signal that ended it.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

impl Recorded {
    /// One line for the user.
    pub fn summary(&self) -> String {
        format!(
            "{} events, {} threads, {} processes, {} bytes, {} dropped",
            self.events, self.threads, self.processes, self.bytes, self.dropped
        )
    }
}

/// Records `cmd` (with `env` added, in `cwd` if given) into `out` with `record --json`; the
/// program must exit 0.
pub fn record(
    tools: &Tools,
    cmd: &[String],
    env: &[(String, String)],
    cwd: Option<&Path>,
    out: &Path,
) -> Result<Recorded, LabError> {
    let rec = tools.record()?;
    let command = cmd.join(" ");
    let json = out.with_extension("record.json");
    let _ = std::fs::remove_file(&json);
    let mut c = Command::new(rec);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let o = c
        .arg(format!("--json={}", json.display()))
        .arg("-o")
        .arg(out)
        .arg("--")
        .args(cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(LabError::io(format!("running {}", rec.display())))?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    let tail = stderr.trim().lines().rev().take(3).collect::<Vec<_>>();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
    let text = std::fs::read_to_string(&json).map_err(|e| LabError::Record {
        command: command.clone(),
        why: format!(
            "record wrote no result to {} ({e}; record {}): {tail}",
            json.display(),
            o.status
        ),
    })?;
    let _ = std::fs::remove_file(&json);
    let r: Recorded = serde_json::from_str(&text).map_err(|e| LabError::Record {
        command: command.clone(),
        why: format!("record's --json result does not parse ({e}): {text}"),
    })?;
    if r.exit_code != Some(0) {
        let how = match (r.exit_code, r.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "an unknown status".into(),
        };
        return Err(LabError::Record {
            command,
            why: format!("the program ended with {how}: {tail}"),
        });
    }
    if r.files.is_empty() || r.events == 0 {
        return Err(LabError::Record {
            command,
            why: format!("no events were recorded ({}): {tail}", r.summary()),
        });
    }
    Ok(r)
}
