//! The pool: a thread's local list in front, the global batch list behind.

use crate::batch_stack::BatchStack;
use crate::config::PoolConfig;
use crate::counters::{Registry, ThreadCounters, Writer};
use crate::local::LocalSlot;
use crate::stats::PoolStats;
use crate::sync::{loom_const_fn, LocalKey};
use std::fmt;

/// A pool of `T`: declare one with [`pool!`](crate::pool) as a `static`.
///
/// See the [crate documentation](crate) for the design. All methods take
/// `&'static self` where they may touch the calling thread's list, because
/// that list refers back to the pool when the thread exits.
///
/// `Pool` itself holds no interior mutability (the shared state is a second
/// static, [`PoolShared`]), so a `static` pool lands in read-only memory and
/// the compiler folds its fields into the caller: the thread-local lookup
/// becomes a direct, inlinable access instead of a call through a pointer.
pub struct Pool<T: Send + 'static> {
    local: &'static LocalKey<LocalSlot<T>>,
    shared: &'static PoolShared<T>,
    config: PoolConfig,
    release_hook: Option<fn(&mut [T])>,
    prefetch_hook: Option<fn(&T)>,
}

/// How many gets ahead of the object it hands out a get shows the prefetch
/// hook the object a later get will hand out (see
/// [`Pool::with_prefetch_hook`]).
pub const PREFETCH_DISTANCE: usize = 8;

/// The part of a [`Pool`] that threads share (created by
/// [`pool!`](crate::pool); not for direct use).
#[doc(hidden)]
pub struct PoolShared<T> {
    global: BatchStack<T>,
    counters: Registry,
}

impl<T> fmt::Debug for PoolShared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolShared")
            .field("global", &self.global)
            .finish_non_exhaustive()
    }
}

impl<T> PoolShared<T> {
    loom_const_fn! {
        /// Empty shared state for a pool configured with `config`.
        pub fn new(config: PoolConfig) -> PoolShared<T> {
            PoolShared {
                global: BatchStack::new(config.global_cap),
                counters: Registry::new(),
            }
        }
    }
}

impl<T: Send + 'static> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.config())
            .field("stats", &self.stats())
            .field("release_hook", &self.release_hook.is_some())
            .field("prefetch_hook", &self.prefetch_hook.is_some())
            .finish()
    }
}

impl<T: Send + 'static> Pool<T> {
    loom_const_fn! {
        /// Builds a pool from its thread-local slot and shared state. Use
        /// [`pool!`](crate::pool) instead; under `cfg(loom)` models call this
        /// (with a `loom::thread_local!` slot) because loom atomics cannot be
        /// `const`.
        #[doc(hidden)]
        pub fn __new(
            local: &'static LocalKey<LocalSlot<T>>,
            shared: &'static PoolShared<T>,
            config: PoolConfig,
            release_hook: Option<fn(&mut [T])>,
        ) -> Pool<T> {
            Pool {
                local,
                shared,
                config: config.sanitized(),
                release_hook,
                prefetch_hook: None,
            }
        }
    }

    loom_const_fn! {
        /// Adds a prefetch hook (the third item of [`pool!`](crate::pool)).
        ///
        /// A get from the local list calls `hook` on the object that the
        /// [`PREFETCH_DISTANCE`]th get after it will hand out (if the list
        /// holds one), and a batch taken from the global list shows it the
        /// first objects it will hand out. The hook may ask the CPU to
        /// fetch memory the object points to: objects released by another
        /// thread come back with their memory in that thread's cache, and
        /// the fetch then overlaps the work between gets. It runs with
        /// the list borrowed: it must not use the pool.
        pub fn with_prefetch_hook(self, hook: fn(&T)) -> Pool<T> {
            self.__with_prefetch(Some(hook))
        }
    }

    loom_const_fn! {
        /// [`with_prefetch_hook`](Self::with_prefetch_hook) with an optional
        /// hook, for [`pool!`](crate::pool).
        #[doc(hidden)]
        pub fn __with_prefetch(self, hook: Option<fn(&T)>) -> Pool<T> {
            Pool {
                prefetch_hook: hook,
                ..self
            }
        }
    }

    /// Takes a pooled object, or makes one with `create`.
    ///
    /// Common case: a pop from this thread's list, no atomic RMW, no lock.
    #[inline(always)]
    pub fn get_or_create(&'static self, create: impl FnOnce() -> T) -> T {
        match self.try_get() {
            Some(value) => value,
            None => self.create(create),
        }
    }

    /// Like [`get_or_create`](Self::get_or_create) with a fallible `create`,
    /// whose error is returned as is (nothing is counted then).
    #[inline(always)]
    pub fn try_get_or_create<E>(
        &'static self,
        create: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        match self.try_get() {
            Some(value) => Ok(value),
            None => {
                let value = create()?;
                self.count(|c| &c.created, 1);
                Ok(value)
            }
        }
    }

    /// Makes a new object (the pool had none) and counts it.
    #[cold]
    #[inline(never)]
    fn create(&'static self, create: impl FnOnce() -> T) -> T {
        let value = create();
        self.count(|c| &c.created, 1);
        value
    }

    /// Takes an object only if the pool has one: from this thread's list,
    /// else one batch from the global list (one atomic operation).
    #[inline(always)]
    pub fn try_get(&'static self) -> Option<T> {
        match self.local.try_with(|slot| slot.pop(self)) {
            Ok(Some(value)) => Some(value),
            _ => self.try_get_slow(),
        }
    }

    /// `try_get` when the local list is empty (or the thread-local is gone):
    /// one batch from the global list, taken with the list not borrowed
    /// (see `local`).
    #[cold]
    #[inline(never)]
    fn try_get_slow(&'static self) -> Option<T> {
        let batch = self.shared.global.pop()?;
        let mut batch = Some(batch);
        match self
            .local
            .try_with(|slot| batch.take().and_then(|b| slot.refill(self, b)))
        {
            Ok(value) => value,
            // The thread-local is being (or has been) destroyed: take one,
            // push the rest straight back.
            Err(_) => {
                let orphan = &self.shared.counters.orphan;
                let mut batch = batch.take()?;
                orphan.add(Writer::Shared, |c| &c.stolen, 1);
                let value = batch.pop();
                if value.is_some() {
                    orphan.add(Writer::Shared, |c| &c.reused, 1);
                }
                self.release(batch, orphan, Writer::Shared, false);
                value
            }
        }
    }

    /// Gives `value` back to the pool.
    ///
    /// Common case: a push on this thread's list, no atomic RMW, no lock.
    /// Over the local cap the oldest batch goes to the global list in one
    /// atomic operation (the release hook runs on the batch first); what
    /// does not fit under the global cap is dropped.
    #[inline(always)]
    pub fn put(&'static self, value: T) {
        let mut value = Some(value);
        let over_cap = self
            .local
            .try_with(|slot| value.take().is_some_and(|value| slot.push(self, value)));
        match over_cap {
            Ok(false) => {}
            Ok(true) => self.release_oldest_batch(),
            Err(_) => self.put_without_local(value.take()),
        }
    }

    /// The local list went over its cap: its oldest batch goes global.
    #[cold]
    #[inline(never)]
    fn release_oldest_batch(&'static self) {
        if let Ok(Some((batch, counters))) =
            self.local.try_with(|slot| slot.take_oldest_batch(self))
        {
            self.release(batch, counters, Writer::Owner, true);
        }
    }

    /// `put` when the thread-local is being (or has been) destroyed: the
    /// object goes straight to the global list.
    #[cold]
    #[inline(never)]
    fn put_without_local(&self, value: Option<T>) {
        if let Some(value) = value {
            let orphan = &self.shared.counters.orphan;
            self.release(vec![value], orphan, Writer::Shared, true);
        }
    }

    /// Drops `value` without pooling it, counting it as dropped (e.g. an
    /// object left in a bad state).
    pub fn discard(&'static self, value: T) {
        self.count(|c| &c.dropped, 1);
        drop(value);
    }

    /// Drops every object in the global list (counted as dropped) and
    /// returns how many. Threads' local lists are left alone, and the caller
    /// gets no local list of its own.
    pub fn trim(&self) -> usize {
        let orphan = &self.shared.counters.orphan;
        let mut trimmed = 0;
        while let Some(batch) = self.shared.global.pop() {
            trimmed += batch.len();
            orphan.add(Writer::Shared, |c| &c.dropped, batch.len() as u64);
            drop(batch);
        }
        trimmed
    }

    /// Sums the counters of every thread and the global list.
    ///
    /// Exact when no thread is using the pool; otherwise a snapshot.
    pub fn stats(&self) -> PoolStats {
        let mut stats = PoolStats::default();
        self.shared.counters.add_to(&mut stats);
        stats.pooled = stats.pooled.wrapping_add(self.shared.global.len() as u64);
        stats
    }

    /// How many threads currently have a local list for this pool (a
    /// snapshot). A thread stops counting once its exit hand-back is done,
    /// and its counts are then visible to `stats`.
    pub fn active_threads(&self) -> usize {
        self.shared.counters.active()
    }

    /// Sets the global cap (in objects). Applies to later releases; objects
    /// already in the global list stay until they are taken or trimmed.
    pub fn set_global_cap(&self, cap: usize) {
        self.shared.global.set_cap(cap);
    }

    /// The configuration in force (with the current global cap).
    pub fn config(&self) -> PoolConfig {
        PoolConfig {
            global_cap: self.shared.global.cap(),
            ..self.config
        }
    }

    /// The shared state (for loom models that free their pools).
    #[doc(hidden)]
    pub fn __shared(&self) -> &'static PoolShared<T> {
        self.shared
    }

    pub(crate) fn prefetch_hook(&self) -> Option<fn(&T)> {
        self.prefetch_hook
    }

    pub(crate) fn config_ref(&self) -> &PoolConfig {
        &self.config
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.shared.counters
    }

    /// Thread exit: the whole list goes to the global list in batches.
    pub(crate) fn give_back_on_exit(&self, mut items: Vec<T>, counters: &ThreadCounters) {
        counters.local_len.set_owned(0);
        while !items.is_empty() {
            let at = items.len().saturating_sub(self.config.batch_size);
            let batch = items.split_off(at);
            self.release(batch, counters, Writer::Owner, true);
        }
        counters.release();
    }

    /// Moves `batch` to the global list; drops and counts what is over the cap.
    fn release(&self, mut batch: Vec<T>, counters: &ThreadCounters, writer: Writer, hook: bool) {
        if let (true, Some(release_hook)) = (hook, self.release_hook) {
            release_hook(&mut batch);
        }
        let (excess, pushed) = self.shared.global.push(batch);
        if pushed {
            counters.add(writer, |c| &c.released, 1);
        }
        if !excess.is_empty() {
            // Count before dropping: a `Drop` may re-enter the pool.
            counters.add(writer, |c| &c.dropped, excess.len() as u64);
            drop(excess);
        }
    }

    /// Adds `n` to one counter of this thread (or of the orphan block).
    fn count(&'static self, counter: fn(&ThreadCounters) -> &crate::counters::Counter, n: u64) {
        match self.local.try_with(|slot| slot.counters(self)) {
            Ok(counters) => counters.add(Writer::Owner, counter, n),
            Err(_) => self.shared.counters.orphan.add(Writer::Shared, counter, n),
        }
    }
}
