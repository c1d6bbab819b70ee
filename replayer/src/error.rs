//! Errors of the replayer library. Bad input (an unknown allocator, a corrupt trace, a trace
//! too big for this machine) is told apart from failures of the machine so the binary can exit
//! with 2 for the former.

use std::fmt;

/// Something the replay cannot do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The trace cannot be read (the `traces` error as it is: file, byte offset, what).
    #[error(transparent)]
    Trace(#[from] traces::TraceError),
    /// `--alloc` names no known allocator.
    #[error("unknown allocator '{name}'; valid: {valid}")]
    UnknownAllocator { name: String, valid: String },
    /// The allocator exists but cannot be used on this machine.
    #[error("{name}: {why}")]
    AllocatorUnavailable { name: String, why: String },
    /// The replay would need more memory than the machine has.
    #[error(
        "{what}: {} needed, {} available (use --max-memory to override)",
        crate::human::bytes(*needed),
        crate::human::bytes(*available)
    )]
    TooBig {
        what: String,
        needed: u64,
        available: u64,
    },
    /// An option or input is out of range.
    #[error("{0}")]
    BadInput(String),
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl ReplayError {
    /// Whether the error is the user's input (exit code 2) rather than the machine's.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ReplayError::Io { .. })
    }

    /// An I/O error while doing `what`.
    pub fn io(what: impl fmt::Display, source: std::io::Error) -> ReplayError {
        ReplayError::Io {
            what: what.to_string(),
            source,
        }
    }
}
