//! What can go wrong while recording. Each message says what happened, that the program runs
//! on, and what to do; it is printed once on stderr (`diag::say`) and recording stops.

/// A recording failure.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error(
        "cannot create the trace file {path}: {source}. The program runs on unrecorded; point \
         ALLOCLAB_OUTPUT (or record -o) at a writable directory"
    )]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot create a trace file from {template:?}: every candidate name exists; remove old \
         traces or choose another ALLOCLAB_OUTPUT. The program runs on unrecorded"
    )]
    NamesTaken { template: String },
    #[error("the trace path {0:?} contains a NUL byte; choose another ALLOCLAB_OUTPUT")]
    BadPath(String),
    #[error(
        "cannot write the trace file {path}: {source}. Recording stopped (is the disk full?); \
         the program runs on, and the file keeps every complete frame"
    )]
    Write {
        path: String,
        source: traces::TraceError,
    },
    #[error(
        "out of memory for {0}: recording stopped, the program runs on (events recorded so far \
         are in the trace; raise the memory limit, e.g. `ulimit -v`, to record all of it)"
    )]
    NoMemory(&'static str),
    #[error("cannot start the writer thread: {0}. The program runs on unrecorded")]
    Thread(std::io::Error),
}
