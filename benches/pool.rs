//! Criterion benchmarks (pool): filled in by the pool work.
fn main() {}
