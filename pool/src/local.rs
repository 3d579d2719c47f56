//! The per-thread allocation list of one pool.
//!
//! Only the owning thread ever touches its [`LocalSlot`] (it lives in a
//! thread-local that the [`pool!`](crate::pool) macro declares per pool), so
//! the fast paths are plain memory operations: a `Vec` push or pop and two
//! owner-only counter stores.
//!
//! Re-entrancy rule: user code (a `create` closure, `T::drop`, the release
//! hook; the prefetch hook excepted, which must not use the pool) and epoch pins (which may run other crates' deferred destructors)
//! never run while the list is borrowed. Each method below borrows the list
//! for a few plain operations and returns whatever needs slow work to the
//! caller, which does it after the borrow ends. So a `Drop` that puts into
//! the same pool finds the list free.

use crate::counters::ThreadCounters;
use crate::pool::{Pool, PREFETCH_DISTANCE};
use crate::sync::{loom_const_fn, UnsafeCell};
use std::fmt;

/// A thread's part of one pool (created by [`pool!`](crate::pool); not for
/// direct use).
#[doc(hidden)]
pub struct LocalSlot<T: Send + 'static> {
    state: UnsafeCell<Option<Local<T>>>,
}

struct Local<T: Send + 'static> {
    /// LIFO: the most recently put object, warmest in cache, goes out first.
    items: Vec<T>,
    /// This thread's counter block in the pool's registry.
    counters: &'static ThreadCounters,
    pool: &'static Pool<T>,
}

impl<T: Send + 'static> fmt::Debug for LocalSlot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalSlot { .. }")
    }
}

impl<T: Send + 'static> Default for LocalSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + 'static> LocalSlot<T> {
    loom_const_fn! {
        /// An empty slot; the list is set up on first use.
        pub fn new() -> LocalSlot<T> {
            LocalSlot {
                state: UnsafeCell::new(None),
            }
        }
    }

    /// Runs `f` on this thread's list, creating it on first use.
    #[inline(always)]
    fn with_local<R>(&self, pool: &'static Pool<T>, f: impl FnOnce(&mut Local<T>) -> R) -> R {
        self.state.with_mut(|state| {
            // SAFETY:
            // * the slot is a thread-local: only this thread can reach it;
            // * callers' closures never re-enter (module rule): no other `&mut` while this lives.
            let state = unsafe { &mut *state };
            match state {
                Some(local) => f(local),
                None => f(Self::first_use(state, pool)),
            }
        })
    }

    /// Sets up this thread's list: a buffer for it and a counter block.
    #[cold]
    #[inline(never)]
    fn first_use<'a>(state: &'a mut Option<Local<T>>, pool: &'static Pool<T>) -> &'a mut Local<T> {
        state.insert(Local {
            items: Vec::with_capacity(pool.config_ref().local_cap + 1),
            counters: pool.registry().claim(),
            pool,
        })
    }

    /// Fast path of a get: the newest local object, if any.
    #[inline(always)]
    pub(crate) fn pop(&self, pool: &'static Pool<T>) -> Option<T> {
        self.with_local(pool, |local| {
            let value = local.items.pop()?;
            if let Some(hook) = pool.prefetch_hook() {
                let later = local.items.len().checked_sub(PREFETCH_DISTANCE);
                if let Some(later) = later.and_then(|i| local.items.get(i)) {
                    hook(later);
                }
            }
            local.counters.reused.add_owned(1);
            local.counters.local_len.set_owned(local.items.len() as u64);
            Some(value)
        })
    }

    /// Installs a batch taken from the global list and hands out one object.
    pub(crate) fn refill(&self, pool: &'static Pool<T>, mut batch: Vec<T>) -> Option<T> {
        self.with_local(pool, |local| {
            local.counters.stolen.add_owned(1);
            let value = batch.pop();
            if let Some(hook) = pool.prefetch_hook() {
                let soon = batch.len().saturating_sub(PREFETCH_DISTANCE);
                batch[soon..].iter().for_each(hook);
            }
            local.items.append(&mut batch);
            if value.is_some() {
                local.counters.reused.add_owned(1);
            }
            local.counters.local_len.set_owned(local.items.len() as u64);
            value
        })
    }

    /// Fast path of a put; true if the list is now over its cap (the caller
    /// then calls [`take_oldest_batch`](Self::take_oldest_batch)).
    #[inline(always)]
    pub(crate) fn push(&self, pool: &'static Pool<T>, value: T) -> bool {
        self.with_local(pool, |local| {
            local.items.push(value);
            let len = local.items.len();
            local.counters.local_len.set_owned(len as u64);
            len > pool.config_ref().local_cap
        })
    }

    /// Takes the oldest `batch_size` objects out of a list that is over its
    /// cap, with this thread's counters, for the caller to release.
    pub(crate) fn take_oldest_batch(
        &self,
        pool: &'static Pool<T>,
    ) -> Option<(Vec<T>, &'static ThreadCounters)> {
        self.with_local(pool, |local| {
            if local.items.len() <= pool.config_ref().local_cap {
                return None;
            }
            let batch: Vec<T> = local.items.drain(..pool.config_ref().batch_size).collect();
            local.counters.local_len.set_owned(local.items.len() as u64);
            Some((batch, local.counters))
        })
    }

    /// This thread's counter block.
    pub(crate) fn counters(&self, pool: &'static Pool<T>) -> &'static ThreadCounters {
        self.with_local(pool, |local| local.counters)
    }
}

impl<T: Send + 'static> Drop for LocalSlot<T> {
    /// Thread exit: the list goes back to the global list (past the global
    /// cap it is dropped), and the counter block is freed for reuse.
    fn drop(&mut self) {
        // SAFETY:
        // * `&mut self`: nothing else can borrow the state.
        let taken = self.state.with_mut(|state| unsafe { (*state).take() });
        if let Some(local) = taken {
            local.pool.give_back_on_exit(local.items, local.counters);
        }
    }
}
