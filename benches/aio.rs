//! Criterion benchmarks (aio): filled in by the aio work.
fn main() {}
