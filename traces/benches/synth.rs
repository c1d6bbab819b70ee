//! Generation speed of the synthetic suite (filled by issue 4).
fn main() {}
