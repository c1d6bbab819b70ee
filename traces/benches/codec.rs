//! Encode/decode throughput and bytes per event (filled by issue 2).
fn main() {}
