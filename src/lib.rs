//! corral: coroutine I/O for storage engines.
//!
//! This facade re-exports the workspace's crates under one name, in the order
//! their dependencies point:
//!
//! * [`pool`] (`corral-pool`): the lock-free object pool every coroutine
//!   body comes from;
//! * [`runtime`] (`corral-runtime`): stackful coroutines with QEMU's
//!   semantics on pooled stacks;
//! * [`aio`] (`corral-aio`): the `AioContext` event loop, coroutine locks,
//!   the thread pool, and [`aio::block`], the block backends with their
//!   coroutine and AIO faces.
//!
//! # Example
//!
//! A coroutine reads through the `threads` backend (blocking reads on the thread pool), yielding
//! until its request completed; the event loop runs until nothing is in
//! flight.
//!
//! ```
//! use corral::aio::block::{BackendKind, BlockDevice, OpenOptions};
//! use corral::aio::AioContext;
//! use corral::runtime::Coroutine;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! let ctx = AioContext::new()?;
//! let opts = OpenOptions { backend: BackendKind::Threads, ..OpenOptions::default() };
//! let dev = BlockDevice::open(&ctx, "/dev/zero", &opts)?;
//!
//! let read = Arc::new(AtomicUsize::new(0));
//! for i in 0..4 {
//!     let (dev, read) = (dev.clone(), read.clone());
//!     ctx.co_enter(Coroutine::new(move || {
//!         let mut buf = [0xffu8; 4096];
//!         let n = dev.co_pread(i * 4096, &mut buf).expect("read");
//!         assert!(buf[..n].iter().all(|&b| b == 0));
//!         read.fetch_add(n, Ordering::Relaxed);
//!     }));
//! }
//! dev.drain()?;
//! assert_eq!(read.load(Ordering::Relaxed), 4 * 4096);
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub use corral_aio as aio;
pub use corral_pool as pool;
pub use corral_runtime as runtime;
