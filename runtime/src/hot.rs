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
//! slot itself is a thread-local (tls.rs); the counters, per guard kind, live in a
//! leaked per-thread block that other threads can read. Their effect is
//! folded into [`pool_stats`](crate::pool_stats): a hit counts as `reused`,
//! a body sitting in a slot (stashed minus hits minus evicted) as `pooled`.
//! Only the owning thread writes a block (plain loads and stores, no
//! read-modify-write); sums are read on demand and are exact when threads
//! are quiescent.

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use corral_pool::PoolStats;

use crate::body::{kind_index as index, Parked};
use crate::pool::pool_for;
use crate::stack::GuardKind;
use crate::tls::{self, ThreadCache};

/// One thread's slots and counters, indexed by guard kind. Leaked: blocks of
/// exited threads are reused by new threads (their sums carry on).
#[derive(Debug, Default)]
pub(crate) struct Block {
    /// Bodies put into the slot.
    stashed: [AtomicU64; 2],
    /// Bodies taken from the slot by a create.
    hits: [AtomicU64; 2],
    /// Bodies that left the slot for the pool (stack size mismatch, thread exit).
    evicted: [AtomicU64; 2],
}

fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl Block {
    /// Hands the body (if any) in this thread's slot to its pool; `self`
    /// is this thread's block.
    fn evict(&self) {
        let c = tls::cache();
        if let Some(h) = ptr::NonNull::new(c.slot()) {
            c.set_slot(ptr::null_mut());
            // SAFETY:
            // * the slot owned this parked body (see `stash`).
            let body = unsafe { Parked::from_raw(h) };
            let kind = body.kind();
            bump(&self.evicted[index(kind)]);
            pool_for(kind).put(body);
        }
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
            b.evict();
            registry().free.push(b);
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
    // A body is only stashed while the thread has a block (see `stash`).
    // The counter's index comes from the body, not from `shape`: nothing
    // but `shape` has to survive the thread-local access (a call, to the
    // compiler) in a saved register.
    if let Some(b) = c.block() {
        bump(&b.hits[index(peek.kind())]);
    }
    // SAFETY:
    // * the slot owned this parked body and no longer does.
    Some(unsafe { Parked::from_raw(h) })
}

/// After a miss of [`take`]: a cached body of another shape goes to its
/// pool, so the slot can keep bodies of the shape now in use.
pub(crate) fn evict_other_shape(size: usize, kind: GuardKind) {
    let c = tls::cache();
    let Some(b) = c.block() else {
        return;
    };
    if let Some(h) = ptr::NonNull::new(c.slot()) {
        // SAFETY:
        // * as in `take`: we only look.
        let peek = ManuallyDrop::new(unsafe { Parked::from_raw(h) });
        if !peek.has_shape(size, kind) {
            b.evict();
        }
    }
}

/// Keeps `body` (a parked pooled body; `k` is the index of its guard kind)
/// in the slot of `cache` (the calling thread's) if it is free; otherwise
/// hands it back. Nothing is kept while the thread has no block (it is
/// exiting).
#[inline(always)]
pub(crate) fn stash(cache: ThreadCache, body: Parked, k: usize) -> Option<Parked> {
    let Some(b) = cache.block() else {
        return Some(body);
    };
    debug_assert_eq!(k, index(body.kind()), "index of another guard kind");
    if !cache.slot().is_null() {
        return Some(body);
    }
    cache.set_slot(body.into_raw().as_ptr());
    bump(&b.stashed[k]);
    None
}

/// Adds the slots' hits and held bodies of `kind` to the pool's counters:
/// a body is held if it sits in a slot, and every body stashed left the
/// slot either by a hit or by eviction.
pub(crate) fn fold_into(stats: &mut PoolStats, kind: GuardKind) {
    let k = index(kind);
    for b in &registry().all {
        let stashed = b.stashed[k].load(Ordering::Relaxed);
        let hits = b.hits[k].load(Ordering::Relaxed);
        let evicted = b.evicted[k].load(Ordering::Relaxed);
        stats.reused += hits;
        stats.pooled += stashed.saturating_sub(hits + evicted);
    }
}
