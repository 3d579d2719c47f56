//! Pool counters and the in-library lifecycle measurement for the C benchmark.

use crate::boundary::guard;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The C struct `corral_pool_stats_t` (field order is ABI).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorralPoolStats {
    /// Coroutines (stacks) created fresh.
    pub created: u64,
    /// Taken from the pool instead.
    pub reused: u64,
    /// Freed because a cap was reached.
    pub dropped: u64,
    /// Batches a thread took from the global list.
    pub batches_stolen: u64,
    /// Batches a thread handed to the global list.
    pub batches_released: u64,
    /// Held by the pool right now.
    pub pooled: u64,
}

impl From<corral_pool::PoolStats> for CorralPoolStats {
    fn from(stats: corral_pool::PoolStats) -> CorralPoolStats {
        CorralPoolStats {
            created: stats.created,
            reused: stats.reused,
            dropped: stats.dropped,
            batches_stolen: stats.batches_stolen,
            batches_released: stats.batches_released,
            pooled: stats.pooled,
        }
    }
}

/// `corral_co_pool_stats`: fills `*out` with the default coroutine pool's counters.
///
/// # Safety
///
/// * `out` is NULL (then nothing happens) or valid for writing one `corral_pool_stats_t`.
#[no_mangle]
pub unsafe extern "C" fn corral_co_pool_stats(out: *mut CorralPoolStats) {
    guard(|| {
        let stats = CorralPoolStats::from(corral_runtime::pool_stats());
        // SAFETY:
        // * `out` is valid for writes when non-NULL (caller contract);
        //   `as_mut` returns None for NULL.
        if let Some(out) = unsafe { out.as_mut() } {
            *out = stats;
        }
    })
}

/// `corral_bench_rust_lifecycle_ns`: ns per pooled create+enter+terminate of a
/// Rust coroutine with an empty body (what `corral lifecycle` calls pooled_ns).
#[no_mangle]
pub extern "C" fn corral_bench_rust_lifecycle_ns(iterations: u64) -> f64 {
    guard(|| {
        let iterations = iterations.max(1);
        let start = Instant::now();
        for _ in 0..iterations {
            corral_runtime::Coroutine::new(|| {}).enter();
        }
        start.elapsed().as_nanos() as f64 / iterations as f64
    })
}

/// `corral_bench_rust_switch_ns`: ns per enter+yield round trip of a Rust
/// coroutine, to tell the runtime's switch cost from the C ABI's. With
/// `outlined_yield` the coroutine yields through a function that is not
/// inlined into its loop, as every C caller of `corral_co_yield` does.
#[no_mangle]
pub extern "C" fn corral_bench_rust_switch_ns(round_trips: u64, outlined_yield: bool) -> f64 {
    guard(|| {
        let round_trips = round_trips.max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let seen = stop.clone();
        let co = corral_runtime::Coroutine::new(move || {
            while !seen.load(Ordering::Relaxed) {
                if outlined_yield {
                    outlined_yield_now();
                } else {
                    corral_runtime::yield_now();
                }
            }
        });
        co.enter();
        let start = Instant::now();
        for _ in 0..round_trips {
            co.enter();
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        co.enter();
        elapsed.as_nanos() as f64 / round_trips as f64
    })
}

/// `yield_now` in a frame of its own (what a C caller always has).
#[inline(never)]
fn outlined_yield_now() {
    corral_runtime::yield_now();
}
