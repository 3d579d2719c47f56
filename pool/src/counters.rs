//! Per-thread counters: written only by their owner, summed on demand.
//!
//! Each thread that uses a pool claims one [`ThreadCounters`] block from the
//! pool's [`Registry`] and is its only writer, so the fast path bumps a
//! counter with a relaxed load and a relaxed store (two plain `mov`s on x86),
//! never a read-modify-write. Blocks are never freed: a thread that exits
//! hands its block back (`in_use = false`) and the next thread to claim it
//! keeps adding to the same cumulative totals, so `sum` over all blocks stays
//! exact and the registry only grows to the largest number of threads that
//! used the pool at once. Code that runs where no thread-local exists any
//! more (TLS teardown) counts in the shared `orphan` block with `fetch_add`.

use crate::stats::PoolStats;
use crate::sync::{loom_const_fn, AtomicBool, AtomicPtr, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;
use std::ptr;

/// One counter of a [`ThreadCounters`] block.
#[derive(Debug)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    loom_const_fn! {
        fn new() -> Counter {
            Counter(AtomicU64::new(0))
        }
    }

    /// Adds `n`; only the block's owning thread may call this.
    ///
    /// Benign race, by design: a reader summing concurrently may see the old
    /// or the new value, never a torn one (it is an atomic), and no update is
    /// lost because there is a single writer.
    #[inline(always)]
    pub(crate) fn add_owned(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Sets the value; only the block's owning thread may call this.
    #[inline(always)]
    pub(crate) fn set_owned(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds `n` from any thread (the orphan block).
    pub(crate) fn add_shared(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which way a block is written: by its owner or by anyone.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Writer {
    /// The claiming thread: plain load+store.
    Owner,
    /// Any thread: `fetch_add`.
    Shared,
}

/// The counters of one thread (or of the orphan block).
#[derive(Debug)]
pub(crate) struct ThreadCounters {
    pub(crate) created: Counter,
    pub(crate) reused: Counter,
    pub(crate) dropped: Counter,
    pub(crate) stolen: Counter,
    pub(crate) released: Counter,
    /// Objects in the owner's local list (0 once the owner has exited; the
    /// orphan block has no local list and stays 0).
    pub(crate) local_len: Counter,
    in_use: AtomicBool,
    /// Next block; immutable once the block is published.
    next: *const CachePadded<ThreadCounters>,
}

impl ThreadCounters {
    loom_const_fn! {
        fn new(in_use: bool) -> ThreadCounters {
            ThreadCounters {
                created: Counter::new(),
                reused: Counter::new(),
                dropped: Counter::new(),
                stolen: Counter::new(),
                released: Counter::new(),
                local_len: Counter::new(),
                in_use: AtomicBool::new(in_use),
                next: ptr::null(),
            }
        }
    }

    /// Adds `n` to `counter` the way `writer` may.
    #[inline(always)]
    pub(crate) fn add(&self, writer: Writer, counter: fn(&Self) -> &Counter, n: u64) {
        match writer {
            Writer::Owner => counter(self).add_owned(n),
            Writer::Shared => counter(self).add_shared(n),
        }
    }

    /// Gives the block back when its owner exits. Release: the owner's last
    /// counts happen-before the next owner's claim (an Acquire CAS).
    pub(crate) fn release(&self) {
        self.in_use.store(false, Ordering::Release);
    }

    fn add_to(&self, stats: &mut PoolStats) {
        stats.created = stats.created.wrapping_add(self.created.get());
        stats.reused = stats.reused.wrapping_add(self.reused.get());
        stats.dropped = stats.dropped.wrapping_add(self.dropped.get());
        stats.batches_stolen = stats.batches_stolen.wrapping_add(self.stolen.get());
        stats.batches_released = stats.batches_released.wrapping_add(self.released.get());
        stats.pooled = stats.pooled.wrapping_add(self.local_len.get());
    }
}

/// All the counter blocks of one pool: an append-only lock-free list.
#[derive(Debug)]
pub(crate) struct Registry {
    head: AtomicPtr<CachePadded<ThreadCounters>>,
    /// Counts made where no thread-local block is reachable.
    pub(crate) orphan: CachePadded<ThreadCounters>,
}

// SAFETY:
// * the raw pointers in the list point to leaked, never-freed blocks whose
//   fields are atomics (or `next`, immutable after publication), so sharing
//   and sending them between threads is sound.
unsafe impl Send for Registry {}
// SAFETY: as for `Send` above.
unsafe impl Sync for Registry {}

impl Registry {
    loom_const_fn! {
        pub(crate) fn new() -> Registry {
            Registry {
                head: AtomicPtr::new(ptr::null_mut()),
                orphan: CachePadded::new(ThreadCounters::new(true)),
            }
        }
    }

    /// Claims a free block for the calling thread, or adds a new one.
    ///
    /// Lock-free: a CAS per visited free block, a CAS loop to push a new one.
    /// Blocks are never removed, so the push has no ABA problem.
    pub(crate) fn claim(&self) -> &ThreadCounters {
        let mut cur = self.head.load(Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY:
            // * `cur` came from `head` or a published `next`: blocks are leaked
            //   and never freed, so it is valid for the registry's lifetime;
            // * the Acquire load made its construction visible.
            let block = unsafe { &*cur };
            if block
                .in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return block;
            }
            cur = block.next.cast_mut();
        }
        let new = Box::into_raw(Box::new(CachePadded::new(ThreadCounters::new(true))));
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY:
            // * `new` is unpublished: this thread is its only user.
            unsafe { (&mut *new).next = head };
            match self
                .head
                .compare_exchange(head, new, Ordering::Release, Ordering::Relaxed)
            {
                // SAFETY:
                // * `new` is leaked (never freed) and only its atomics are
                //   touched from now on.
                Ok(_) => return unsafe { &*new },
                Err(actual) => head = actual,
            }
        }
    }

    /// Blocks claimed by a live thread (Acquire: a thread seen as gone has
    /// its last counts and its exit hand-back visible to the caller).
    pub(crate) fn active(&self) -> usize {
        let mut active = 0;
        let mut cur = self.head.load(Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY:
            // * as in `claim`: blocks are published with Release, never freed.
            let block = unsafe { &*cur };
            active += block.in_use.load(Ordering::Acquire) as usize;
            cur = block.next.cast_mut();
        }
        active
    }

    /// Frees the blocks; only when no thread can use them any more.
    fn free_blocks(&mut self) {
        let mut cur = self.head.load(Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY:
            // * `&mut self` on a registry being dropped: no thread holds a block (a pool with
            //   live lists is never dropped: each list holds a `&'static` to it);
            // * every block came from `Box::into_raw` in `claim`, linked once.
            let block = unsafe { Box::from_raw(cur) };
            cur = block.next.cast_mut();
        }
    }

    /// Sums every block (owned, free and orphan) into `stats`.
    pub(crate) fn add_to(&self, stats: &mut PoolStats) {
        self.orphan.add_to(stats);
        let mut cur = self.head.load(Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY:
            // * as in `claim`: blocks are published with Release, never freed.
            let block = unsafe { &*cur };
            block.add_to(stats);
            cur = block.next.cast_mut();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.free_blocks();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Registry, Writer};
    use crate::PoolStats;

    #[test]
    fn released_blocks_are_reused_and_keep_their_totals() {
        let registry = Registry::new();
        let a = registry.claim();
        a.add(Writer::Owner, |c| &c.created, 3);
        let b = registry.claim();
        assert!(!std::ptr::eq(a, b));
        b.add(Writer::Owner, |c| &c.reused, 2);
        assert_eq!(registry.active(), 2);
        a.release();
        assert_eq!(registry.active(), 1);
        let c = registry.claim();
        assert!(
            std::ptr::eq(a, c),
            "a free block is claimed before a new one"
        );
        c.add(Writer::Owner, |c| &c.created, 1);
        registry.orphan.add(Writer::Shared, |c| &c.dropped, 5);
        let mut stats = PoolStats::default();
        registry.add_to(&mut stats);
        assert_eq!((stats.created, stats.reused, stats.dropped), (4, 2, 5));
    }
}
