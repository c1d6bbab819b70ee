//! The fancy allocator (filled by issue 6).
