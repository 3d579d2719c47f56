//! Criterion benchmarks (coroutine): filled in by the coroutine work.
fn main() {}
