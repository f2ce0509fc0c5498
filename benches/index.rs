//! Index benchmarks (filled in below).
fn main() {}
