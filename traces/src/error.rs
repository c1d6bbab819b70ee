//! Errors of reading and writing traces. Every reading error names the file and the byte
//! offset where the problem was found, and says what is wrong.

use std::fmt;

/// A trace could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: byte {offset}: {kind}")]
pub struct TraceError {
    /// The file (or the name the caller gave the stream).
    pub path: String,
    /// Byte offset in the file where the problem was found.
    pub offset: u64,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong with a trace.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An I/O error from the operating system.
    Io(std::io::Error),
    /// The file is empty.
    Empty,
    /// The file does not start with the trace magic.
    BadMagic { found: [u8; 8], len: usize },
    /// The file's major format version is not one this reader knows.
    UnsupportedVersion { major: u16, minor: u16 },
    /// The file ends inside the header.
    TruncatedHeader,
    /// The header's length field is out of bounds.
    HeaderTooLarge { len: u32 },
    /// The header's checksum does not match.
    HeaderChecksum,
    /// The header bytes do not decode.
    BadHeader(String),
    /// A frame does not start with the frame magic (the file is corrupt here).
    BadFrameMagic { found: u32 },
    /// A frame's checksum does not match its bytes (the frame is corrupt).
    FrameChecksum { expected: u32, actual: u32 },
    /// A frame header field is out of its allowed range.
    BadFrameHeader(String),
    /// The compressed payload does not decompress.
    Decompress(String),
    /// The decompressed payload does not decode into events.
    Malformed(String),
    /// The trailer does not decode.
    BadTrailer(String),
    /// The writer was given events it cannot represent.
    InvalidInput(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Io(e) => write!(f, "I/O error: {e}"),
            ErrorKind::Empty => write!(f, "the file is empty, not an alloclab trace"),
            ErrorKind::BadMagic { found, len } => write!(
                f,
                "not an alloclab trace: it starts with {:?} instead of {:?}",
                String::from_utf8_lossy(&found[..*len]),
                String::from_utf8_lossy(&crate::MAGIC),
            ),
            ErrorKind::UnsupportedVersion { major, minor } => write!(
                f,
                "trace format version {major}.{minor} is not supported by this reader (format \
                 {}.{}); use the alloclab version that wrote it",
                crate::FORMAT_MAJOR,
                crate::FORMAT_MINOR
            ),
            ErrorKind::TruncatedHeader => {
                write!(f, "the file ends inside the trace header: nothing to read")
            }
            ErrorKind::HeaderTooLarge { len } => write!(
                f,
                "header length {len} exceeds the limit of {} bytes: the file is corrupt",
                crate::MAX_HEADER_BYTES
            ),
            ErrorKind::HeaderChecksum => write!(f, "header checksum mismatch: the file is corrupt"),
            ErrorKind::BadHeader(m) => write!(f, "the header does not decode: {m}"),
            ErrorKind::BadFrameMagic { found } => write!(
                f,
                "expected a frame, found bytes {found:#010x}: the file is corrupt from here on"
            ),
            ErrorKind::FrameChecksum { expected, actual } => write!(
                f,
                "frame checksum mismatch (stored {expected:#010x}, computed {actual:#010x}): the \
                 frame is corrupt"
            ),
            ErrorKind::BadFrameHeader(m) => write!(f, "corrupt frame header: {m}"),
            ErrorKind::Decompress(m) => write!(f, "frame does not decompress: {m}"),
            ErrorKind::Malformed(m) => write!(f, "malformed events in frame: {m}"),
            ErrorKind::BadTrailer(m) => write!(f, "the trailer does not decode: {m}"),
            ErrorKind::InvalidInput(m) => write!(f, "cannot encode: {m}"),
        }
    }
}

impl TraceError {
    /// A new error at `offset` of `path`.
    pub fn new(path: impl Into<String>, offset: u64, kind: ErrorKind) -> TraceError {
        TraceError {
            path: path.into(),
            offset,
            kind,
        }
    }
}

/// A result with a [`TraceError`].
pub type Result<T, E = TraceError> = std::result::Result<T, E>;

/// A problem that did not stop reading: what was lost, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The file ends before its trailer: the last `bytes_lost` bytes (from `offset`) are an
    /// incomplete frame and were skipped. `events_lost` is known when the cut frame's header
    /// survived.
    Truncated {
        offset: u64,
        bytes_lost: u64,
        events_lost: Option<u64>,
    },
    /// A frame of a kind this reader does not know (written by a newer minor version) was
    /// skipped.
    UnknownFrameKind { offset: u64, kind: u8 },
}

impl Warning {
    /// The warning as one line naming `path`.
    pub fn describe(&self, path: &str) -> String {
        match self {
            Warning::Truncated {
                offset,
                bytes_lost,
                events_lost,
            } => {
                let events = match events_lost {
                    Some(n) => format!("{n} events"),
                    None => "an unknown number of events".to_string(),
                };
                format!(
                    "{path}: byte {offset}: the trace is cut short (no trailer): the last \
                     {bytes_lost} bytes, an incomplete frame, were skipped ({events} lost); every \
                     complete frame before it was read"
                )
            }
            Warning::UnknownFrameKind { offset, kind } => format!(
                "{path}: byte {offset}: skipped a frame of unknown kind {kind} (written by a \
                 newer alloclab)"
            ),
        }
    }
}
