//! corral-pool: a lock-free object pool with per-thread lists and a global
//! list of whole batches.
//!
//! ```text
//!  thread A                      global list (Treiber stack of batches)        thread B
//!  ┌──────────────┐  get: pop    head ─► [batch]   ─► [batch]   ─► null        ┌──────────────┐
//!  │ local list   │◄─ one batch ─┘  ▲                                          │ local list   │
//!  │ (Vec, plain  │    (1 CAS)      └─ one batch (1 CAS) when over local_cap ──│ (Vec, plain  │
//!  │  memory ops) │                                                            │  memory ops) │
//!  └──────────────┘                                                            └──────────────┘
//! ```
//!
//! * **Fast path.** `get`/`put` on a thread work on that thread's own list: a
//!   `Vec` pop/push plus owner-only counter stores. No atomic read-modify-write,
//!   no lock, no allocation.
//! * **Batches.** A thread whose list grows over `local_cap` hands its oldest
//!   `batch_size` objects to the global list with one CAS; a thread whose list
//!   is empty takes *one* batch with one CAS (never the whole list, so threads
//!   share fairly), and creates an object only if the global list is empty.
//!   Objects taken on one thread and released on another therefore cost one
//!   atomic operation per batch, not per object.
//! * **ABA.** Popping a Treiber stack node is protected by crossbeam-epoch:
//!   a popped node's memory is not reused while a thread that read its
//!   address is pinned, and nodes are never pushed twice (see `reclaim.rs`).
//! * **Bounded.** The global list holds at most `global_cap` objects (its
//!   length is kept in the head node, so the check costs nothing extra); what
//!   is over is dropped and counted. [`Pool::set_global_cap`] changes it.
//! * **Thread exit.** A thread's list goes back to the global list (or is
//!   dropped past the cap) when the thread exits. A `put` during or after
//!   thread-local teardown goes straight to the global list: nothing leaks.
//! * **Counters.** [`PoolStats`] is summed on demand from per-thread blocks
//!   that only their owner writes; exact when threads are quiescent.
//! * **Hooks.** An optional `fn(&mut [T])` runs on each batch of objects as
//!   it leaves a thread for the global list (the runtime uses it to give deep stack pages
//!   back to the kernel); an optional `fn(&T)` sees objects a few gets before
//!   they are handed out, to prefetch what they point to (the runtime fetches
//!   the header line a create writes).
//! * **Checked.** Atomics and `UnsafeCell` come from `sync.rs`, which is loom
//!   under `--cfg loom`; `scripts/loom.sh` runs the models, `scripts/miri.sh`
//!   the unit tests under miri.
//!
//! # Example
//!
//! ```
//! use corral_pool::{pool, PoolConfig};
//!
//! pool! {
//!     /// Reusable 4 KiB buffers.
//!     static BUFFERS: Pool<Vec<u8>> = PoolConfig::DEFAULT;
//! }
//!
//! fn clear(bufs: &mut [Vec<u8>]) {
//!     bufs.iter_mut().for_each(Vec::clear);
//! }
//!
//! pool! {
//!     /// Buffers cleared as they move to the global list.
//!     static CLEARED: Pool<Vec<u8>> = (PoolConfig { batch_size: 8, local_cap: 16, global_cap: 64 }, clear);
//! }
//!
//! let buf = BUFFERS.get_or_create(|| Vec::with_capacity(4096));
//! BUFFERS.put(buf);
//! let again = BUFFERS.get_or_create(|| unreachable!("the pool has one"));
//! assert_eq!(again.capacity(), 4096);
//! BUFFERS.put(again);
//!
//! let stats = BUFFERS.stats();
//! assert_eq!((stats.created, stats.reused, stats.pooled), (1, 1, 1));
//!
//! CLEARED.put(vec![1, 2, 3]);
//! assert_eq!(CLEARED.try_get(), Some(vec![1, 2, 3])); // still local: not cleared
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod batch_stack;
mod config;
mod counters;
mod local;
mod pool;
mod reclaim;
mod stats;
mod sync;

pub use config::PoolConfig;
pub use pool::{Pool, PREFETCH_DISTANCE};
pub use stats::PoolStats;

/// Items the [`pool!`] macro expands to; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::local::LocalSlot;
    pub use crate::pool::PoolShared;
    pub use crate::sync::LocalKey;
}

/// Declares a `static` [`Pool`] together with its thread-local part.
///
/// ```
/// # use corral_pool::{pool, PoolConfig};
/// # #[derive(Default)] struct Stack;
/// fn on_release(_stacks: &mut [Stack]) { /* e.g. MADV_DONTNEED the deep pages */ }
///
/// pool! { pub static PLAIN: Pool<Stack> = PoolConfig::DEFAULT; }
/// pool! { pub static HOOKED: Pool<Stack> = (PoolConfig::DEFAULT, on_release); }
///
/// let stack = HOOKED.get_or_create(Stack::default);
/// HOOKED.put(stack);
/// ```
///
/// The hook (`fn(&mut [T])`) runs on each batch of objects as it leaves a
/// thread for the global list (a batch release or thread exit): one call
/// per batch, so it can batch its own work (a system call for many
/// objects, say). An optional third item, a
/// prefetch hook (`fn(&T)`), is shown objects a few gets before they are
/// handed out (see [`Pool::with_prefetch_hook`]). Not available under
/// `cfg(loom)`, where pools are built inside the model with `Pool::__new`.
#[macro_export]
macro_rules! pool {
    ($(#[$attr:meta])* $vis:vis static $name:ident : Pool<$t:ty> = ($config:expr, $hook:expr, $prefetch:expr $(,)?); ) => {
        $crate::pool!(@static $(#[$attr])* $vis $name, $t, $config,
            ::core::option::Option::Some($hook as fn(&mut [$t])),
            ::core::option::Option::Some($prefetch as fn(&$t)));
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident : Pool<$t:ty> = ($config:expr, $hook:expr $(,)?); ) => {
        $crate::pool!(@static $(#[$attr])* $vis $name, $t, $config,
            ::core::option::Option::Some($hook as fn(&mut [$t])), ::core::option::Option::None);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident : Pool<$t:ty> = $config:expr; ) => {
        $crate::pool!(@static $(#[$attr])* $vis $name, $t, $config,
            ::core::option::Option::None, ::core::option::Option::None);
    };
    (@static $(#[$attr:meta])* $vis:vis $name:ident, $t:ty, $config:expr, $hook:expr, $prefetch:expr) => {
        $(#[$attr])*
        $vis static $name: $crate::Pool<$t> = {
            const CONFIG: $crate::PoolConfig = $config;
            ::std::thread_local! {
                static LOCAL: $crate::__private::LocalSlot<$t> =
                    const { $crate::__private::LocalSlot::new() };
            }
            static SHARED: $crate::__private::PoolShared<$t> =
                $crate::__private::PoolShared::new(CONFIG);
            $crate::Pool::__new(&LOCAL, &SHARED, CONFIG, $hook).__with_prefetch($prefetch)
        };
    };
}
