//! The lab's errors, one kind per step that can fail, each with its own exit code (listed in
//! `lab --help` and lab/README.md).

use std::path::PathBuf;

use replayer::ReplayError;

/// Something the lab could not do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// An option is out of range, or the output directory holds another lab (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// The replayer refused a trace or an allocator (exit 2), or the machine failed it (exit 1).
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A program the lab runs is not where it looks (exit 3).
    #[error("{tool} not found at {}: {build}", path.display())]
    MissingTool {
        tool: &'static str,
        path: PathBuf,
        /// What to build or pass instead.
        build: String,
    },
    /// `record` could not record the program, or the program failed under it (exit 4).
    #[error("recording `{command}` failed: {why}")]
    Record { command: String, why: String },
    /// `analyze` failed on the results (exit 5).
    #[error("analyze failed ({status}): {stderr}; the results are in {}", runs.display())]
    Analyze {
        status: String,
        stderr: String,
        runs: PathBuf,
    },
    /// `lab fidelity`: the program failed when run for real under an allocator (exit 6).
    #[error("`{command}` under {allocator} failed ({status}): {stderr}")]
    RealRun {
        command: String,
        allocator: String,
        status: String,
        stderr: String,
    },
    /// An operating-system call failed (exit 1).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The exit codes, for `lab --help` (the README has the same table).
pub const EXIT_CODES: &str = "Exit status: 0 done (failed replay runs are listed in the report), \
1 the machine failed (I/O), 2 bad input (options, a trace, an allocator, an output directory \
made with other parameters), 3 a program the lab runs is missing (record, replay, analyze: the \
message says what to build), 4 recording a program failed, 5 analyze failed, 6 a program run \
for real by `lab fidelity` failed.";

impl LabError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            LabError::BadInput(_) => 2,
            LabError::Replay(e) if e.is_bad_input() => 2,
            LabError::Replay(_) | LabError::Io { .. } => 1,
            LabError::MissingTool { .. } => 3,
            LabError::Record { .. } => 4,
            LabError::Analyze { .. } => 5,
            LabError::RealRun { .. } => 6,
        }
    }

    /// An I/O error while doing `what`.
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LabError {
        let what = what.to_string();
        move |source| LabError::Io { what, source }
    }
}

/// Bad input with `msg`.
pub fn bad(msg: impl Into<String>) -> LabError {
    LabError::BadInput(msg.into())
}
