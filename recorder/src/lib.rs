//! The preload recorder (filled by issue 3).
