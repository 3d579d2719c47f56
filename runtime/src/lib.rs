//! corral-runtime: stackful coroutines with QEMU's semantics (x86-64, a
//! context switch of our own), whose bodies (stack + parked trampoline) are
//! reused through corral-pool.
//!
//! * **QEMU semantics.** [`Coroutine::new`] creates, [`Coroutine::enter`]
//!   runs until the coroutine [`yield_now`]s or its entry returns;
//!   [`current`], [`in_coroutine`], [`Coroutine::entered`]. Entering from
//!   inside a coroutine nests: the inner one's yield or end resumes the outer.
//! * **Safe handles.** [`Coroutine`] is `Copy + Send + Sync`: a yielded
//!   coroutine can be entered again from another thread. A single CAS on a
//!   `(generation, running)` word guards every enter, so entering a running
//!   coroutine panics with "coroutine re-entered recursively" and entering a
//!   finished one (even after its slot was reused) with "coroutine entered
//!   after it terminated".
//! * **Pooled bodies.** A pooled coroutine's body is a trampoline parked in a
//!   loop that runs one entry after another: creating one takes a body from
//!   the thread's pool list and stores the entry closure inline (no heap
//!   allocation for closures up to [`INLINE_ENTRY_BYTES`]), terminating puts
//!   it back. No stack is re-initialised per use. The body that just
//!   terminated waits in a one-body thread-local slot for the next create on
//!   that thread; everything else goes through the pool (see [`pool_stats`]).
//! * **Warm stacks across threads.** A coroutine's first enter runs it on
//!   the stack its thread ran last (the one in that slot): the two bodies
//!   exchange parked stacks, two words each, and the stack it was created
//!   with waits in the slot untouched. Coroutines made on one thread and run
//!   on another (an event loop's) then never wait for a stack another CPU
//!   last wrote; only the header's two lines move, prefetched with
//!   [`Coroutine::prefetch`] by a loop that knows what it enters next.
//! * **Stacks at scale.** [`Stack`] maps with `MAP_NORESERVE` and a guard page
//!   made with `MADV_GUARD_INSTALL` (Linux 6.13+: no mapping of its own, so
//!   neighbouring stacks merge into one VMA) or `mprotect` elsewhere
//!   ([`GuardKind`]). A refused stack is an `io::Error` that says what ran out
//!   ([`Coroutine::try_new`], [`Builder::try_spawn`]).
//! * **Switching.** Our own context switch (`switch.rs`): a resume from Rust
//!   pairs its `call` with the yield's `ret` (no mispredicted return when the
//!   yield is inlined), and [`c_abi`] gives C callers an enter and a yield
//!   that leave their frames by indirect jumps (none from C either). Both
//!   follow one protocol, so the two mix on one coroutine.
//! * **Failures.** A panic in a coroutine resurfaces in whoever entered it
//!   with its original payload (the body goes back to the pool intact). A
//!   stack overflow hits the guard page and is reported as
//!   "coroutine stack overflow" with the stack's bounds before aborting.
//!
//! # Thread-locals and moving between threads
//!
//! A coroutine entered from another thread continues there. The runtime's
//! own thread-locals are read through `#[inline(never)]` accessors so that no
//! thread-local address is kept across a stack switch. User code that yields
//! must do the same: do not hold references into thread-locals, nor
//! thread-bound values (an `Rc` shared with the thread, a `MutexGuard`, a
//! `RefCell` borrow of a thread-local) across [`yield_now`] if the coroutine
//! may be entered from another thread. The compiler cannot check this: the
//! entry closure is `Send`, what it creates on its stack is not inspected.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use corral_runtime::{yield_now, Coroutine};
//!
//! let steps = Arc::new(AtomicU32::new(0));
//! let s = steps.clone();
//! let co = Coroutine::new(move || {
//!     s.fetch_add(1, Ordering::Relaxed);
//!     yield_now();
//!     s.fetch_add(1, Ordering::Relaxed);
//! });
//! co.enter();
//! assert_eq!(steps.load(Ordering::Relaxed), 1);
//! // A yielded coroutine can be entered from another thread.
//! std::thread::spawn(move || co.enter()).join().unwrap();
//! assert_eq!(steps.load(Ordering::Relaxed), 2);
//! assert!(co.is_terminated());
//!
//! // Its body went back to the pool: the next coroutine reuses it.
//! let reused_before = corral_runtime::pool_stats().reused;
//! Coroutine::new(|| {}).enter();
//! assert!(corral_runtime::pool_stats().reused > reused_before);
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod baseline;
mod body;
mod builder;
pub mod c_abi;
mod coroutine;
mod entry;
mod hot;
mod overflow;
mod pool;
mod prefetch;
mod stack;
mod switch;
mod sys;
mod tls;

pub use builder::Builder;
pub use coroutine::{
    current, in_coroutine, try_yield_now, yield_now, Coroutine, EnterError, EventLoopWords,
    NotInCoroutine,
};
pub use entry::INLINE_ENTRY_BYTES;
pub use pool::{install_cap, mprotect_cap, pool_stats, pool_stats_for, INSTALL_POOL_CAP_BYTES};
pub use prefetch::prefetch_line_for_write;
pub use stack::{
    install_supported, live_stacks, usable_size, GuardKind, Stack, DEFAULT_STACK_SIZE,
};
pub use sys::map_count;
