//! The replayer (filled by issue 5).
