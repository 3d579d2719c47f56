//! corral-aio: a QEMU-style `AioContext` event loop for coroutine I/O.
//!
//! One [`AioContext`] per thread that runs it. [`AioContext::poll`] runs one iteration:
//! bottom halves scheduled from any thread without a lock, coroutines woken into the
//! context, ready fd handlers (epoll, with adaptive busy polling), expired timers. Other
//! threads wake a sleeping context through an eventfd, but only when it really sleeps (the
//! notify_me / notified protocol, see the `notify` module source): a busy context takes no
//! syscall per scheduled bottom half.
//!
//! Coroutines (from `corral-runtime`) belong to a context: [`co_wake`] from any thread
//! queues a coroutine into its home context, [`AioContext::co_schedule`] moves it, and the
//! locks in this crate ([`CoMutex`], [`CoRwLock`], [`CoQueue`], [`CoSemaphore`]) and
//! [`co_sleep`] are built on that. Blocking calls go to the context's [`ThreadPool`], whose
//! completions come back through a bottom half.
//!
//! ```
//! use corral_aio::{co_sleep, AioContext, CoMutex};
//! use corral_runtime::Coroutine;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let ctx = AioContext::new()?;
//! let counter = Arc::new(CoMutex::new(0u32));
//!
//! // A bottom half scheduled from another thread runs on the polling thread.
//! let c = counter.clone();
//! let ctx2 = ctx.clone();
//! std::thread::spawn(move || ctx2.bh_schedule_oneshot(move || *c.try_lock().unwrap() += 1))
//!     .join()
//!     .unwrap();
//! while *counter.try_lock().unwrap() == 0 {
//!     ctx.poll(true);
//! }
//!
//! // A coroutine that sleeps on the context's timers, then takes the lock.
//! let c = counter.clone();
//! let co = Coroutine::new(move || {
//!     co_sleep(Duration::from_millis(1));
//!     *c.lock() += 1;
//! });
//! ctx.co_enter(co);
//! while !co.is_terminated() {
//!     ctx.poll(true);
//! }
//! assert_eq!(*counter.try_lock().unwrap(), 2);
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod bh;
pub mod block;
mod busy_poll;
mod co_schedule;
mod context;
mod epoll;
mod fd_handlers;
mod locks;
mod notify;
pub mod poll_adaptive;
mod sleeper;
mod sync;
mod sys;
mod thread_pool;
mod timer;
mod wait;

pub use bh::Bh;
pub use co_schedule::{co_reschedule_self, co_sleep, co_wake};
pub use context::{current_context, AioContext, AioStats};
pub use fd_handlers::FdHandlers;
pub use locks::{
    CoMutex, CoMutexGuard, CoQueue, CoRwLock, CoRwLockReadGuard, CoRwLockWriteGuard, CoSemaphore,
};
pub use poll_adaptive::PollParams;
pub use thread_pool::{ThreadPool, ThreadPoolStats, Work};
pub use timer::Timer;
