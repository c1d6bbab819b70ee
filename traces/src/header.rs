//! The file header and trailer: what a trace says about itself.
//!
//! Both are encoded with bincode 2 (`config::standard()`: little-endian, varint integers) through
//! serde. They are not self-describing, so fields are never added to them in a minor version:
//! new facts go into the `extra` key/value lists, and a change of these structs is a new major
//! format version.

use serde::{Deserialize, Serialize};

use crate::event::ThreadId;

/// The first 8 bytes of every trace file.
pub const MAGIC: [u8; 8] = *b"ALCLTRC\0";
/// The last 8 bytes of a finished trace file (followed by nothing; preceded by the trailer
/// frame's offset).
pub const FOOTER_MAGIC: [u8; 8] = *b"ALCLEND\0";
/// Format major version: a reader refuses any other major version.
pub const FORMAT_MAJOR: u16 = 1;
/// Format minor version: 1.1 added the process samples frame (which a 1.0 reader skips), 1.2
/// the OS call events (which a 1.1 reader cannot decode). A reader refuses a file of a newer
/// minor than its own.
pub const FORMAT_MINOR: u16 = 2;
/// Largest header a reader accepts, in bytes.
pub const MAX_HEADER_BYTES: u32 = 1 << 20;

/// The clock the timestamps come from. Timestamps are always nanoseconds since the trace
/// start; this says what those nanoseconds mean.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clock {
    /// `CLOCK_MONOTONIC`, nanoseconds since `start_monotonic_ns`, comparable across threads.
    Monotonic {
        /// The CLOCK_MONOTONIC reading that is timestamp 0.
        start_monotonic_ns: u64,
        /// The clock's resolution as reported by `clock_getres`, in ns.
        resolution_ns: u64,
    },
    /// Timestamps made up by a generator: ordered and plausible, not measured.
    Synthetic,
}

/// What a trace says about its origin. Written once, at the start of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The program that wrote the trace and its version, e.g. `alloclab-recorder 0.1.0` or
    /// `alloclab-synth 0.1.0`.
    pub writer: String,
    /// The recorded program's command line (argv), or the generator's invocation.
    pub command_line: Vec<String>,
    /// Process id of the recorded process (0 for synthetic traces).
    pub pid: u32,
    /// Parent process id; for a child recorded after fork, the parent whose trace it continues.
    pub parent_pid: u32,
    /// Wall-clock time of timestamp 0, in ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// What timestamps mean.
    pub clock: Clock,
    /// The recorded system's page size in bytes.
    pub page_size: u32,
    /// Host name of the recording machine.
    pub host: String,
    /// Further facts as key/value pairs (e.g. `synth.workload`, `synth.seed`, `kernel`).
    pub extra: Vec<(String, String)>,
}

impl Header {
    /// A header for a trace made by `writer` on this machine, now, with the current process's
    /// ids and a monotonic clock whose zero is now.
    pub fn for_this_process(writer: impl Into<String>) -> Header {
        let (start_monotonic_ns, resolution_ns) = crate::sys::monotonic_now_and_resolution();
        Header {
            writer: writer.into(),
            command_line: std::env::args().collect(),
            pid: std::process::id(),
            parent_pid: crate::sys::parent_pid(),
            start_unix_ns: crate::sys::unix_now_ns(),
            clock: Clock::Monotonic {
                start_monotonic_ns,
                resolution_ns,
            },
            page_size: crate::sys::page_size(),
            host: crate::sys::host_name(),
            extra: Vec::new(),
        }
    }

    /// The value of `key` in `extra`, if present.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Per-thread counts, as written in the trailer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSummary {
    /// The thread's small id.
    pub thread: ThreadId,
    /// Its OS thread id (0 if no `ThreadStart` was recorded).
    pub os_tid: u32,
    /// Events recorded for it.
    pub events: u64,
    /// Frames holding its events.
    pub frames: u64,
}

/// Written once, at the end of a finished trace. A trace cut short has none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// One entry per thread that has events, by small id.
    pub threads: Vec<ThreadSummary>,
    /// Events in all frames.
    pub total_events: u64,
    /// Event frames in the file.
    pub frames: u64,
    /// Events the writer lost (a recorder that had to drop events says so here; alloclab's own
    /// recorder never drops, so this is 0).
    pub dropped_events: u64,
    /// The largest timestamp in the trace.
    pub end_ts: u64,
    /// Further facts as key/value pairs.
    pub extra: Vec<(String, String)>,
}
