//! Block backends: the storage side of corral, behind one trait.
//!
//! A [`BlockDevice`] is a file (or block device) bound to one [`AioContext`], with one of
//! the backends below doing its I/O. Requests have two faces over one path:
//!
//! * the coroutine face, [`BlockDevice::co_preadv`] and friends: the calling coroutine
//!   yields and is resumed when its request completes;
//! * the emulated AIO face, [`BlockDevice::aio_preadv`] and friends: the request is handed
//!   to the context through a bottom half (`AioContext::co_schedule`), runs in a pooled
//!   coroutine through the coroutine face, and the callback runs in the context with the
//!   result. Any thread may submit; the callback never runs before the call returned.
//!
//! # The backend contract
//!
//! Every backend implements [`Backend`] and meets these rules; the device relies on them.
//!
//! * `submit` runs on the context's thread, inside the coroutine that waits for the
//!   request. It never blocks that thread on I/O.
//! * Every submitted request is completed exactly once through `request::complete`, with
//!   the bytes transferred or `-errno` -- also when the kernel refuses it at submission,
//!   when a ring is full, or when the backend is torn down. Nothing is lost, nothing
//!   completes twice.
//! * A completion may be found while `submit` still runs (null, a ring that already has
//!   the answer): the backend completes it there and the waiting coroutine, being the one
//!   running, is not re-entered (`request::complete` checks).
//! * Completions are delivered on the context's thread from a handler, a bottom half or
//!   `submit`, never from another thread and never while the backend holds its state
//!   borrowed (a woken coroutine may submit again at once).
//! * `in_flight` counts requests submitted and not yet completed; `drain` polls the
//!   context until it is zero.
//! * Batching: while plugged (explicitly, or while the backend delivers completions) a
//!   backend may queue submissions and send them with one system call at unplug.
//!
//! | backend | [`BackendKind`] | I/O done by |
//! | --- | --- | --- |
//! | [`null`] | `Null`, `NullBh` | nothing: completes inline (QEMU `null-co`) or from a bottom half (`null-aio`) |
//! | [`threads`] | `Threads` | `preadv`/`pwritev`/`fdatasync` on the context's thread pool |
//! | [`linux_aio`] | `LinuxAio` | `io_submit`, completions from the userspace ring |
//! | [`io_uring`] | `IoUring` | an io_uring, completions reaped in the poll handler |
//!
//! [`fault`] wraps any of them to fail or delay a chosen fraction of requests.
//!
//! ```
//! use corral_aio::block::{BackendKind, BlockDevice, OpenOptions};
//! use corral_aio::AioContext;
//! use corral_runtime::Coroutine;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//!
//! let ctx = AioContext::new()?;
//! let opts = OpenOptions { backend: BackendKind::Threads, ..OpenOptions::default() };
//! let dev = BlockDevice::open(&ctx, "/dev/zero", &opts)?;
//!
//! // Coroutine face: the coroutine yields until its read completed.
//! let (d, done) = (dev.clone(), Arc::new(AtomicBool::new(false)));
//! let flag = done.clone();
//! ctx.co_enter(Coroutine::new(move || {
//!     let mut buf = [1u8; 512];
//!     assert_eq!(d.co_pread(0, &mut buf).unwrap(), 512);
//!     assert!(buf.iter().all(|&b| b == 0));
//!     flag.store(true, Ordering::Release);
//! }));
//!
//! // AIO face: the callback runs in the context once the read completed.
//! dev.aio_pread(0, vec![1u8; 512], |buf, res| {
//!     assert_eq!(res.unwrap(), 512);
//!     assert!(buf.iter().all(|&b| b == 0));
//! });
//! dev.drain()?;
//! assert!(done.load(Ordering::Acquire));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`AioContext`]: crate::AioContext

mod aio_face;
mod bound;
mod device;
mod error;
pub mod fault;
mod glue;
pub mod io_uring;
mod job;
pub mod linux_aio;
pub mod null;
mod request;
mod ring_driver;
pub mod threads;

pub use device::{AllocMode, BlockDevice, OpenOptions};
pub use error::{errno_of, InvalidRequest};
pub use request::{Op, Request};

use crate::AioContext;
use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::str::FromStr;
use std::sync::Arc;

/// A block backend (see the module documentation for the contract).
pub trait Backend: Send + Sync + fmt::Debug {
    /// Short name, as `corral bench --backend` spells it.
    fn name(&self) -> &'static str;

    /// Starts `req`; the backend completes it exactly once, possibly before returning.
    ///
    /// # Safety
    ///
    /// * `req` points to a valid request that stays at its address, and that the caller
    ///   neither moves nor touches except through `Request::result`, until it completed;
    /// * called on the context's thread, inside the coroutine that waits for `req`.
    unsafe fn submit(&self, req: NonNull<Request>);

    /// Requests submitted and not completed yet.
    fn in_flight(&self) -> usize;

    /// Starts queueing submissions (nests).
    fn plug(&self) {}

    /// Ends one `plug`; the outermost sends what was queued with one system call.
    fn unplug(&self) {}

    /// Counters (zero where a backend does not keep them).
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }
}

/// What a backend counts, to show system calls per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Submission system calls (`io_submit`, `io_uring_enter`).
    pub submit_calls: u64,
    /// Requests those calls handed to the kernel.
    pub submitted: u64,
    /// Completions reaped from a ring (no system call).
    pub reaped: u64,
}

/// The backends a device can be opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Completes at once without I/O, inline in the request coroutine (QEMU `null-co`).
    Null,
    /// Completes without I/O from a bottom half (QEMU `null-aio`).
    NullBh,
    /// Blocking system calls on the context's thread pool.
    Threads,
    /// Linux native AIO (`io_submit`).
    LinuxAio,
    /// io_uring.
    IoUring,
}

impl BackendKind {
    /// Every backend, in the order of the table above.
    pub const ALL: [BackendKind; 5] = [
        Self::Null,
        Self::NullBh,
        Self::Threads,
        Self::LinuxAio,
        Self::IoUring,
    ];

    /// The name `FromStr` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::NullBh => "null-bh",
            Self::Threads => "threads",
            Self::LinuxAio => "linux-aio",
            Self::IoUring => "io-uring",
        }
    }

    /// Creates the backend for `ctx`. Fails with the kernel's errno where the kernel
    /// refuses it (io_uring or AIO disabled, limits reached).
    pub fn create(self, ctx: &Arc<AioContext>) -> io::Result<Box<dyn Backend>> {
        Ok(match self {
            Self::Null => Box::new(null::NullBackend::inline()),
            Self::NullBh => Box::new(null::NullBackend::bottom_half(ctx)),
            Self::Threads => Box::new(threads::ThreadsBackend::new(ctx)),
            Self::LinuxAio => Box::new(linux_aio::LinuxAioBackend::new(ctx)?),
            Self::IoUring => Box::new(io_uring::IoUringBackend::new(ctx)?),
        })
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| {
                format!("unknown backend {s:?} (null, null-bh, threads, linux-aio, io-uring)")
            })
    }
}
