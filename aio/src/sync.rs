//! The loom/std facade: the notify protocol imports its atomics only from here, so that
//! `RUSTFLAGS="--cfg loom"` checks every access of it (see `scripts/loom-aio.sh`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32};
