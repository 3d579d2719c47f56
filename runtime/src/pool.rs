//! The runtime's static pools of parked bodies, one per guard kind, and
//! their caps.
//!
//! * `mprotect` guards cost two mappings per stack, so that pool's global cap
//!   stays at or below `(vm.max_map_count - 5000) / 2` (QEMU 9.0's rule).
//! * Installed guards cost no mapping; that pool is capped by bytes of
//!   stack: [`INSTALL_POOL_CAP_BYTES`] divided by the stack size.
//!
//! In front of each pool sits a one-body slot per thread (`hot.rs`): the body
//! a coroutine just released is what the next create on that thread takes.
//! [`pool_stats`] folds the slots into the counters (hits are `reused`,
//! bodies waiting there are `pooled`), so the pool's invariants hold for the
//! runtime as a whole.
//!
//! A body leaving a thread for the global list goes through the release
//! hook, which gives back the deep pages of a stack that was used deeply
//! (see `Parked::trim`). The hook runs once per batch moved (on each body) or at
//! thread exit: off the create/enter/terminate fast path. Measured here: an
//! `MADV_DONTNEED` of a 256 KiB stack with 40 deep pages resident costs
//! ~25 µs (and each page touched again later ~3 µs to fault back in), one on
//! an untouched range still ~0.75 µs; so the hook first reads a canary word
//! and calls the kernel only for stacks that really went deep.

use std::io;
use std::sync::{Mutex, Once};

use corral_pool::{Pool, PoolConfig, PoolStats};

use crate::body::{Header, Parked};
use crate::stack::GuardKind;
use crate::sys::max_map_count;
use crate::tls::ThreadCache;

/// Bytes of stack (address space reserved, mostly not resident) the
/// installed-guard pool may hold globally: 2 GiB, i.e. 8192 stacks of the
/// default 256 KiB.
pub const INSTALL_POOL_CAP_BYTES: usize = 2 << 30;

corral_pool::pool! {
    static INSTALL_POOL: Pool<Parked> = (PoolConfig::DEFAULT, release_hook, prefetch_hook);
}
corral_pool::pool! {
    static MPROTECT_POOL: Pool<Parked> = (PoolConfig::DEFAULT, release_hook, prefetch_hook);
}

fn release_hook(batch: &mut [Parked]) {
    batch.iter_mut().for_each(Parked::trim);
}

/// A body a create will take soon: fetch, owned, the header line the create
/// writes (a body that came through the global list was last written by
/// the thread that ended its coroutine, on another CPU).
fn prefetch_hook(body: &Parked) {
    crate::prefetch::prefetch_lines_for_write::<1>((body.header() as *const Header).cast());
}

/// Where a body goes when its coroutine terminates.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Home {
    /// The corral-pool pool of installed-guard stacks. The two pooled
    /// homes are 0 and 1, the index of the thread's cache counters for their
    /// kind, so the terminate path reads one byte for both decisions.
    PooledInstall = 0,
    /// The corral-pool pool of mprotect-guard stacks.
    PooledMprotect = 1,
    /// The `Mutex<Vec>` baseline pool (see [`Builder::mutex_pool`](crate::Builder::mutex_pool)).
    Mutex,
    Unpooled,
}

/// QEMU's pool before 2014: one process-wide `Mutex<Vec>`, kept as the
/// baseline `corral lifecycle --cross-thread` measures against.
static MUTEX_POOL: Mutex<Vec<Parked>> = Mutex::new(Vec::new());

/// Takes a body of the given shape from the mutex baseline pool, or makes one.
pub(crate) fn mutex_pool_get(size: usize, kind: GuardKind) -> io::Result<Parked> {
    loop {
        let body = MUTEX_POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match body {
            Some(body) if body.has_shape(size, kind) => return Ok(body),
            Some(other) => drop(other),
            None => return Parked::new(size, kind, Home::Mutex),
        }
    }
}

impl Home {
    /// The home of a pooled body of guard kind `kind`.
    pub(crate) fn pooled(kind: GuardKind) -> Home {
        match kind {
            GuardKind::Install => Home::PooledInstall,
            GuardKind::Mprotect => Home::PooledMprotect,
        }
    }

    /// Gives a body whose trampoline is parked back to its pool (or drops
    /// it); `cache` is the calling thread's one-body cache. With `OUTLINED`,
    /// the pool put of a body the slot gives up is a call: for a caller that
    /// rarely needs it and should not pay its registers on every call (the
    /// C ABI's termination); a thread that ends coroutines other threads
    /// made needs it every time (the Rust enter inlines it).
    #[inline(always)]
    pub(crate) fn give_back<const OUTLINED: bool>(self, body: Parked, cache: ThreadCache) {
        match self {
            Home::PooledInstall | Home::PooledMprotect => {
                if let Some(body) = crate::hot::stash(cache, body, self as usize) {
                    if OUTLINED {
                        put_pooled_outlined(body);
                    } else {
                        put_pooled(body);
                    }
                }
            }
            Home::Mutex | Home::Unpooled => self.give_back_unpooled(body),
        }
    }

    /// [`give_back`](Home::give_back) for the homes off the fast path: out
    /// of line, so the pooled case saves no more than it needs.
    #[cold]
    #[inline(never)]
    fn give_back_unpooled(self, body: Parked) {
        if let Home::Mutex = self {
            let mut pool = MUTEX_POOL.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < PoolConfig::DEFAULT.global_cap {
                pool.push(body);
                return;
            }
            drop(pool);
        }
        drop(body);
    }
}

/// The thread's cache slot is taken: the body goes to its pool.
#[inline(always)]
fn put_pooled(body: Parked) {
    with_pool(body.kind(), |pool| pool.put(body));
}

/// [`put_pooled`], out of line.
#[inline(never)]
fn put_pooled_outlined(body: Parked) {
    put_pooled(body);
}

/// The pool of one guard kind.
#[inline]
pub(crate) fn pool_for(kind: GuardKind) -> &'static Pool<Parked> {
    with_pool(kind, |pool| pool)
}

/// Runs `f` on the pool of one guard kind, with a copy of `f` per pool: in
/// each, the pool is a constant, and its thread-local list is reached
/// directly (through a pool chosen at run time, the thread-local lookup is
/// an indirect call). For the fast paths (`get`, `put`); elsewhere
/// [`pool_for`] is enough.
#[inline(always)]
pub(crate) fn with_pool<R>(kind: GuardKind, f: impl FnOnce(&'static Pool<Parked>) -> R) -> R {
    match kind {
        GuardKind::Install => f(&INSTALL_POOL),
        GuardKind::Mprotect => f(&MPROTECT_POOL),
    }
}

/// Sets both pools' global caps; called before the first body is made
/// (a pool can only hold bodies after one was made).
pub(crate) fn set_caps_once() {
    static CAPS: Once = Once::new();
    CAPS.call_once(set_caps);
}

fn set_caps() {
    let default = PoolConfig::DEFAULT.global_cap;
    INSTALL_POOL.set_global_cap(install_cap(crate::stack::DEFAULT_STACK_SIZE).min(default.max(1)));
    MPROTECT_POOL.set_global_cap(mprotect_cap().min(default));
}

/// The installed-guard pool's cap for stacks of `stack_size` bytes.
pub fn install_cap(stack_size: usize) -> usize {
    (INSTALL_POOL_CAP_BYTES / stack_size.max(1)).max(1)
}

/// The mprotect pool's cap: `(vm.max_map_count - 5000) / 2`.
pub fn mprotect_cap() -> usize {
    max_map_count().saturating_sub(5000) / 2
}

/// Counters of the pool that [`Coroutine::new`](crate::Coroutine::new) uses
/// (the probed guard kind's).
pub fn pool_stats() -> PoolStats {
    pool_stats_for(GuardKind::probed())
}

/// Counters of the pool of one guard kind.
pub fn pool_stats_for(kind: GuardKind) -> PoolStats {
    set_caps_once();
    let mut stats = pool_for(kind).stats();
    crate::hot::fold_into(&mut stats, kind);
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_guard_kind() {
        set_caps_once();
        let maps_rule = max_map_count().saturating_sub(5000) / 2;
        let mprotect = MPROTECT_POOL.config().global_cap;
        assert!(
            mprotect <= maps_rule,
            "{mprotect} > (max_map_count - 5000) / 2 = {maps_rule}"
        );
        assert!(mprotect > 0);
        let install = INSTALL_POOL.config().global_cap;
        assert!(install * crate::stack::DEFAULT_STACK_SIZE <= INSTALL_POOL_CAP_BYTES);
        assert!(install > 0);
    }
}
