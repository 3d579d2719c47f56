//! A one-body cache per thread in front of corral-pool's pools.
//!
//! The pooled lifecycle is create (take a body) + enter + terminate (give it
//! back). Most programs create the next coroutine on the thread that just
//! finished one, so the body that just terminated waits here and the next
//! create takes it without going through the pool's thread-local list. It is
//! the pool's fast path shortened to one thread-local slot: a miss falls
//! through to the pool, a full slot hands the body to the pool.
//!
//! The slot holds a body of either guard kind (a thread normally uses one
//! shape; a miss on another shape sends the cached body to its pool). The
//! slot and the counters (per guard kind) are thread-locals (tls.rs), in
//! one cache line; other threads reach a running thread's counters through
//! its leaked block, which keeps the sums of exited threads. Their effect
//! is folded into [`pool_stats`](crate::pool_stats): a hit counts as
//! `reused`, a body sitting in a slot (stashed minus hits minus evicted) as
//! `pooled`. Only the owning thread writes its counters (plain loads and
//! stores, no read-modify-write); sums are read on demand and are exact
//! when threads are quiescent.

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;

use corral_pool::PoolStats;

use crate::body::{kind_index as index, swap_parked_stacks, Header, Parked};
use crate::pool::pool_for;
use crate::stack::GuardKind;
use crate::tls::{self, ThreadCache};

/// One thread's cache counters, indexed by guard kind. The running
/// thread's live in its thread-local (tls.rs), in the line of the slot, so
/// the fast path touches no other line; only the owning thread writes them.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Bodies put into the slot. A body that takes the place of one of
    /// its kind counts in neither this nor `evicted`: the slot's bodies of
    /// a kind are always `stashed - hits - evicted`.
    stashed: [AtomicU64; 2],
    /// Bodies taken from the slot by a create.
    hits: [AtomicU64; 2],
    /// Bodies that left the slot for the pool (another stack size, thread
    /// exit, or the place taken by a body of the other kind).
    evicted: [AtomicU64; 2],
}

impl Counts {
    pub(crate) const fn new() -> Counts {
        Counts {
            stashed: [AtomicU64::new(0), AtomicU64::new(0)],
            hits: [AtomicU64::new(0), AtomicU64::new(0)],
            evicted: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Adds these counts of guard kind index `k` to `stats` (see [`fold_into`]).
    fn fold(&self, stats: &mut PoolStats, k: usize) {
        let stashed = self.stashed[k].load(Ordering::Relaxed);
        let hits = self.hits[k].load(Ordering::Relaxed);
        let evicted = self.evicted[k].load(Ordering::Relaxed);
        stats.reused += hits;
        stats.pooled += stashed.saturating_sub(hits + evicted);
    }

    /// Adds `other` into these counts (a thread's, as it exits).
    fn absorb(&self, other: &Counts) {
        for (mine, theirs) in [
            (&self.stashed, &other.stashed),
            (&self.hits, &other.hits),
            (&self.evicted, &other.evicted),
        ] {
            for k in 0..2 {
                let v = theirs[k].load(Ordering::Relaxed);
                mine[k].store(mine[k].load(Ordering::Relaxed) + v, Ordering::Relaxed);
            }
        }
    }
}

/// What other threads can read of one thread's cache: while the thread
/// runs, a pointer to its counters; the counts of the exited threads that
/// had this block. Leaked: blocks of exited threads are reused by new
/// threads (their sums carry on). A thread has a block from its first
/// enter until its exit guard runs.
#[derive(Debug, Default)]
pub(crate) struct Block {
    /// The owning thread's counters (in its thread-local), or null. Set
    /// and cleared under the registry lock; the exit guard clears it
    /// before the thread-local is gone.
    live: AtomicPtr<Counts>,
    /// Counts of the exited threads that used this block.
    exited: Counts,
}

fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Hands the body (if any) in this thread's slot to its pool.
fn evict(c: ThreadCache) {
    if let Some(h) = ptr::NonNull::new(c.slot()) {
        c.set_slot(ptr::null_mut());
        // SAFETY:
        // * the slot owned this parked body (see `stash`).
        let body = unsafe { Parked::from_raw(h) };
        let kind = body.kind();
        bump(&c.counts().evicted[index(kind)]);
        pool_for(kind).put(body);
    }
}

/// Every block ever made (for the sums) and the ones free for a new thread.
struct Registry {
    all: Vec<&'static Block>,
    free: Vec<&'static Block>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    all: Vec::new(),
    free: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Arms the thread-exit hand-back of this thread's block (see [`claim`]).
struct ExitGuard(Cell<bool>);

impl Drop for ExitGuard {
    /// Thread exit: the cached bodies go to their pools, the block to the
    /// free list. Coroutines that end later on this thread (other
    /// thread-locals' destructors) find no block and go straight to the pool.
    fn drop(&mut self) {
        if let Some(b) = tls::take_block() {
            let c = tls::cache();
            evict(c);
            let mut reg = registry();
            b.exited.absorb(c.counts());
            b.live.store(ptr::null_mut(), Ordering::Relaxed);
            reg.free.push(b);
        }
    }
}

thread_local! {
    static EXIT_GUARD: ExitGuard = const { ExitGuard(Cell::new(false)) };
}

/// Gives this thread a block (first enter on the thread): `None` once the
/// thread is exiting (its exit guard is gone or going).
#[cold]
#[inline(never)]
pub(crate) fn claim() -> Option<&'static Block> {
    // Register the destructor first: it is what hands the block back.
    EXIT_GUARD.try_with(|g| g.0.set(true)).ok()?;
    let mut reg = registry();
    let b = reg.free.pop().unwrap_or_else(|| {
        let b: &'static Block = Box::leak(Box::default());
        reg.all.push(b);
        b
    });
    let counts: *const Counts = tls::cache().counts();
    b.live.store(counts.cast_mut(), Ordering::Relaxed);
    drop(reg);
    tls::set_block(b);
    Some(b)
}

/// Takes this thread's cached body if it has the asked [`shape`] (stack
/// size and guard kind). The slot holds a body of either guard kind; one of
/// another shape stays (see [`evict_other_shape`]).
///
/// Inlined only into `#[inline(never)]` functions that never span a switch
/// (see tls.rs): it reads the thread's block directly.
///
/// [`shape`]: crate::body::shape
#[inline(always)]
pub(crate) fn take(shape: usize) -> Option<Parked> {
    let c = tls::cache();
    let h = ptr::NonNull::new(c.slot())?;
    // SAFETY:
    // * the slot owns this parked body (see `stash`); ManuallyDrop: we only
    //   look, the slot keeps owning it.
    let peek = ManuallyDrop::new(unsafe { Parked::from_raw(h) });
    if !peek.has_shape_word(shape) {
        return None;
    }
    c.set_slot(ptr::null_mut());
    // A body is only stashed while the thread has a block (see `stash`),
    // so no test of the block: the counts are the thread's own. The
    // counter's index comes from the body, not from `shape`: nothing but
    // `shape` has to survive the thread-local access (a call, to the
    // compiler) in a saved register.
    bump(&c.counts().hits[index(peek.kind())]);
    // SAFETY:
    // * the slot owned this parked body and no longer does.
    Some(unsafe { Parked::from_raw(h) })
}

/// After a miss of [`take`]: a cached body of another shape goes to its
/// pool, so the slot can keep bodies of the shape now in use.
pub(crate) fn evict_other_shape(size: usize, kind: GuardKind) {
    let c = tls::cache();
    if let Some(h) = ptr::NonNull::new(c.slot()) {
        // SAFETY:
        // * as in `take`: we only look.
        let peek = ManuallyDrop::new(unsafe { Parked::from_raw(h) });
        if !peek.has_shape(size, kind) {
            evict(c);
        }
    }
}

/// Keeps `body` (a parked pooled body; `k` is the index of its guard kind)
/// in the slot of `cache` (the calling thread's) and hands back the body
/// the slot held, if any: the slot keeps the body whose stack this thread
/// used last, the warmest (see [`lend_stack`]). Nothing is kept while the
/// thread has no block (it is exiting).
#[inline(always)]
pub(crate) fn stash(cache: ThreadCache, body: Parked, k: usize) -> Option<Parked> {
    if cache.block().is_none() {
        return Some(body);
    }
    debug_assert_eq!(k, index(body.kind()), "index of another guard kind");
    let held = cache.slot();
    cache.set_slot(body.into_raw().as_ptr());
    let Some(held) = ptr::NonNull::new(held) else {
        bump(&cache.counts().stashed[k]);
        return None;
    };
    // SAFETY:
    // * the slot owned that parked body and no longer does.
    let held = unsafe { Parked::from_raw(held) };
    // One body out, one in: the slot's counts change only if their guard
    // kinds differ (the counters say how many bodies of each kind it holds).
    let out = index(held.kind());
    if out != k {
        bump(&cache.counts().stashed[k]);
        bump(&cache.counts().evicted[out]);
    }
    Some(held)
}

/// A coroutine (`h`, owned by the caller) is being entered: if this is its
/// first enter (its trampoline is parked in its loop) and this thread's
/// slot holds a body of the same shape, the two exchange stacks, and the
/// coroutine runs on the stack this thread ran last, warm in its caches. A
/// coroutine created on another thread comes with a stack last used
/// wherever the pool got it from: its first switch would wait for the
/// parked frame's lines. The cold stack goes to the body in the slot,
/// untouched (see `Parked::trim`). A thread that creates its coroutines
/// itself took the slot's body for them: the slot is empty and this costs
/// one test.
#[inline(always)]
pub(crate) fn lend_stack(h: &Header, c: ThreadCache) {
    let Some(held) = ptr::NonNull::new(c.slot()) else {
        return;
    };
    // SAFETY:
    // * the slot owns that parked body (see `stash`) and keeps owning it;
    //   this thread alone reaches the slot, and the caller owns `h`.
    unsafe {
        let held = held.as_ref();
        if *h.parked.get() && h.may_swap_stacks_with(held) {
            swap_parked_stacks(h, held);
        }
    }
}

/// Adds the slots' hits and held bodies of `kind` to the pool's counters:
/// a body is held if it sits in a slot, and every body stashed left the
/// slot either by a hit or by eviction.
pub(crate) fn fold_into(stats: &mut PoolStats, kind: GuardKind) {
    let k = index(kind);
    for b in &registry().all {
        b.exited.fold(stats, k);
        let live = b.live.load(Ordering::Relaxed);
        if !live.is_null() {
            // SAFETY:
            // * `live` points into a running thread's thread-local: its exit
            //   guard clears it under the registry lock (which we hold)
            //   before the thread-local goes away; the counters are atomics
            //   (only their owner writes them).
            unsafe { &*live }.fold(stats, k);
        }
    }
}
