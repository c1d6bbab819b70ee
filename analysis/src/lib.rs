//! Analysis (filled by issue 7).
