//! LD_PRELOAD malloc replacement over the fancy allocator (filled by issue 6).
