//! Adaptive polling: how long `poll` busy-polls the poll handlers before it blocks (seed 1).
//!
//! `poll_ns` starts at 0 (no busy polling). After each iteration the loop compares how long it
//! would have blocked (`block_ns`, from the start of the iteration to the end of the wait)
//! with the current window:
//! * `block_ns <= poll_ns`: polling covered it, the sweet spot; no change.
//! * `block_ns > max_ns`: polling that long would be waste; shrink (`/ shrink`, or to 0).
//! * otherwise: a slightly longer window would have avoided the syscall; grow (`* grow`,
//!   starting at 4 us), capped at `max_ns`.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// First window when growing from 0.
pub const POLL_START_NS: u64 = 4_000;

/// Default `max_ns` of a new context (QEMU's iothread default).
pub const DEFAULT_POLL_MAX_NS: u64 = 32_768;

/// The tunables; `max_ns == 0` disables busy polling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollParams {
    /// Longest busy-poll window in nanoseconds (0 disables polling).
    pub max_ns: u64,
    /// Growth factor (0 means the default, 2).
    pub grow: u64,
    /// Shrink divisor (0 means: drop straight to 0).
    pub shrink: u64,
}

impl Default for PollParams {
    fn default() -> Self {
        PollParams {
            max_ns: DEFAULT_POLL_MAX_NS,
            grow: 2,
            shrink: 0,
        }
    }
}

/// The next window given the current one and how long the loop would have blocked.
pub fn adjust(poll_ns: u64, block_ns: u64, p: PollParams) -> u64 {
    if block_ns <= poll_ns {
        poll_ns
    } else if block_ns > p.max_ns {
        if p.shrink > 1 {
            poll_ns / p.shrink
        } else {
            0
        }
    } else if poll_ns < p.max_ns {
        let grow = if p.grow == 0 { 2 } else { p.grow };
        let next = if poll_ns == 0 {
            POLL_START_NS
        } else {
            poll_ns.saturating_mul(grow)
        };
        next.min(p.max_ns)
    } else {
        poll_ns
    }
}

/// The parameters as shared words: set from any thread, read by the polling thread.
/// A stale value used for one iteration is harmless (as in QEMU).
#[derive(Debug)]
pub(crate) struct SharedPollParams {
    max_ns: AtomicU64,
    grow: AtomicU64,
    shrink: AtomicU64,
    /// The current window; written by the poller, reset to 0 by `set`.
    pub(crate) poll_ns: AtomicU64,
}

impl SharedPollParams {
    pub(crate) fn new(p: PollParams) -> Self {
        SharedPollParams {
            max_ns: AtomicU64::new(p.max_ns),
            grow: AtomicU64::new(p.grow),
            shrink: AtomicU64::new(p.shrink),
            poll_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self) -> PollParams {
        PollParams {
            max_ns: self.max_ns.load(Relaxed),
            grow: self.grow.load(Relaxed),
            shrink: self.shrink.load(Relaxed),
        }
    }

    pub(crate) fn set(&self, p: PollParams) {
        self.max_ns.store(p.max_ns, Relaxed);
        self.grow.store(p.grow, Relaxed);
        self.shrink.store(p.shrink, Relaxed);
        self.poll_ns.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PollParams = PollParams {
        max_ns: 32_000,
        grow: 2,
        shrink: 2,
    };

    #[test]
    fn grows_from_4us_doubling_up_to_max() {
        let mut ns = 0;
        let mut seen = vec![];
        for _ in 0..6 {
            ns = adjust(ns, 30_000, P);
            seen.push(ns);
        }
        assert_eq!(seen, vec![4_000, 8_000, 16_000, 32_000, 32_000, 32_000]);
    }

    #[test]
    fn sweet_spot_keeps_and_long_blocks_shrink() {
        assert_eq!(adjust(16_000, 10_000, P), 16_000);
        assert_eq!(adjust(16_000, 1_000_000, P), 8_000);
        assert_eq!(adjust(16_000, 1_000_000, PollParams { shrink: 0, ..P }), 0);
        assert_eq!(adjust(0, 5_000, PollParams { grow: 0, ..P }), 4_000);
        assert_eq!(adjust(4_000, 5_000, PollParams { grow: 0, ..P }), 8_000);
        assert_eq!(
            adjust(0, 5_000, PollParams { max_ns: 3_000, ..P }),
            0,
            "block > max shrinks"
        );
    }
}
