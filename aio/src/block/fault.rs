//! A fault-injecting wrapper around any backend, for tests: fails a chosen fraction of
//! requests with `EIO`, or delays them, deterministically (seeded).

use super::bound::ThreadBound;
use super::request::{self, Request};
use super::{Backend, BackendStats};
use std::ptr::NonNull;
use std::time::Duration;

/// What to inject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    /// Fraction of requests (0.0 to 1.0) completed with `EIO` instead of being done.
    pub fail_fraction: f64,
    /// Sleep this long (in the request's coroutine) before passing a request on.
    pub delay: Option<Duration>,
    /// Seed of the generator that picks the failing requests.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            fail_fraction: 0.0,
            delay: None,
            seed: 0x5eed,
        }
    }
}

/// The wrapper (see the module documentation).
#[derive(Debug)]
pub struct FaultBackend {
    inner: Box<dyn Backend>,
    config: FaultConfig,
    state: ThreadBound<FaultState>,
}

#[derive(Debug)]
struct FaultState {
    rng: u64,
    /// Requests sleeping before they reach `inner`.
    delayed: usize,
    failed: u64,
}

impl FaultBackend {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Backend>, config: FaultConfig) -> Self {
        let state = FaultState {
            rng: config.seed | 1,
            delayed: 0,
            failed: 0,
        };
        FaultBackend {
            inner,
            config,
            state: ThreadBound::new(state),
        }
    }

    /// Requests failed so far.
    pub fn failed(&self) -> u64 {
        self.state.with(|s| s.failed)
    }
}

/// xorshift64*: a fast, good-enough generator for picking requests.
fn next_unit(rng: &mut u64) -> f64 {
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

impl Backend for FaultBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    unsafe fn submit(&self, req: NonNull<Request>) {
        let fail = self.state.with(|s| {
            let fail = next_unit(&mut s.rng) < self.config.fail_fraction;
            s.failed += fail as u64;
            s.delayed += self.config.delay.is_some() as usize;
            fail
        });
        if let Some(delay) = self.config.delay {
            // We run in the request's coroutine (backend contract), so it can sleep.
            crate::co_sleep(delay);
            self.state.with(|s| s.delayed -= 1);
        }
        if fail {
            // SAFETY: `req` is in flight and ours; its coroutine is the running one.
            unsafe { request::complete_in_submit(req, -(libc::EIO as isize)) };
        } else {
            // SAFETY: the caller's guarantees pass on unchanged.
            unsafe { self.inner.submit(req) };
        }
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight() + self.state.with(|s| s.delayed)
    }

    fn plug(&self) {
        self.inner.plug();
    }

    fn unplug(&self) {
        self.inner.unplug();
    }

    fn stats(&self) -> BackendStats {
        self.inner.stats()
    }
}
