//! A one-body cache per thread and guard kind in front of corral-pool.
//!
//! The pooled lifecycle is create (take a body) + enter + terminate (give it
//! back). Most programs create the next coroutine on the thread that just
//! finished one, so the body that just terminated waits here and the next
//! create takes it without going through the pool's thread-local list. It is
//! the pool's fast path shortened to one thread-local slot: a miss falls
//! through to the pool, a full slot hands the body to the pool.
//!
//! Its effect on the counters is folded into [`pool_stats`](crate::pool_stats):
//! a hit counts as `reused`, a body sitting here as `pooled`. Only the
//! owning thread writes a block (plain loads and stores, no read-modify-write);
//! sums are read on demand and are exact when threads are quiescent. Nothing
//! is written on the take side: `create` runs right before the CAS of the
//! first `enter`, and stores still in the store buffer make that CAS slower.

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;

use corral_pool::PoolStats;

use crate::body::{Header, Parked};
use crate::pool::pool_for;
use crate::stack::GuardKind;
use crate::tls;

/// One thread's slots and counters, indexed by guard kind. Leaked: blocks of
/// exited threads are reused by new threads (their sums carry on).
#[derive(Debug, Default)]
pub(crate) struct Block {
    /// The cached body, or null.
    slots: [AtomicPtr<Header>; 2],
    /// Bodies put into the slot.
    stashed: [AtomicU64; 2],
    /// Bodies that left the slot for the pool (stack size mismatch, thread exit).
    evicted: [AtomicU64; 2],
}

fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl Block {
    /// Hands the slot's body (if any) to its pool.
    fn evict(&self, k: usize) {
        let h = self.slots[k].load(Ordering::Relaxed);
        if let Some(h) = ptr::NonNull::new(h) {
            self.slots[k].store(ptr::null_mut(), Ordering::Relaxed);
            bump(&self.evicted[k]);
            // SAFETY:
            // * the slot owned this parked body (see `stash`).
            let body = unsafe { Parked::from_raw(h) };
            pool_for(kind_of(k)).put(body);
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
            b.evict(0);
            b.evict(1);
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

#[inline(always)]
fn index(kind: GuardKind) -> usize {
    match kind {
        GuardKind::Install => 0,
        GuardKind::Mprotect => 1,
    }
}

fn kind_of(k: usize) -> GuardKind {
    if k == 0 {
        GuardKind::Install
    } else {
        GuardKind::Mprotect
    }
}

/// Takes this thread's cached body of `kind` if it has the asked stack size.
/// A slot only ever holds bodies of its own guard kind (see [`stash`]); a
/// body of another size stays (see [`evict_other_size`]).
///
/// Inlined only into `#[inline(never)]` functions that never span a switch
/// (see tls.rs): it reads the thread's block directly.
#[inline(always)]
pub(crate) fn take(kind: GuardKind, size: usize) -> Option<Parked> {
    let b = tls::block()?;
    let k = index(kind);
    let h = ptr::NonNull::new(b.slots[k].load(Ordering::Relaxed))?;
    // SAFETY:
    // * the slot owns this parked body (see `stash`); ManuallyDrop: we only
    //   look, the slot keeps owning it.
    let peek = ManuallyDrop::new(unsafe { Parked::from_raw(h) });
    if !peek.has_size(size) {
        return None;
    }
    b.slots[k].store(ptr::null_mut(), Ordering::Relaxed);
    // SAFETY:
    // * the slot owned this parked body and no longer does.
    Some(unsafe { Parked::from_raw(h) })
}

#[cold]
/// After a miss of [`take`]: a cached body of another stack size goes to
/// its pool, so the slot can keep bodies of the size now in use.
pub(crate) fn evict_other_size(kind: GuardKind, size: usize) {
    let Some(b) = tls::block() else {
        return;
    };
    let k = index(kind);
    if let Some(h) = ptr::NonNull::new(b.slots[k].load(Ordering::Relaxed)) {
        // SAFETY:
        // * as in `take`: we only look.
        let peek = ManuallyDrop::new(unsafe { Parked::from_raw(h) });
        if !peek.has_size(size) {
            b.evict(k);
        }
    }
}

/// Keeps `body` (a parked pooled body of guard kind `kind`) in `block`'s
/// slot if it is free; otherwise hands it back. `block` is the calling
/// thread's (`None` while the thread exits).
#[inline(always)]
pub(crate) fn stash(
    block: Option<&'static Block>,
    body: Parked,
    kind: GuardKind,
) -> Option<Parked> {
    let Some(b) = block else {
        return Some(body);
    };
    let k = index(kind);
    if !b.slots[k].load(Ordering::Relaxed).is_null() {
        return Some(body);
    }
    b.slots[k].store(body.into_raw().as_ptr(), Ordering::Relaxed);
    bump(&b.stashed[k]);
    None
}

/// Adds the slots' hits and held bodies of `kind` to the pool's counters:
/// a body is held if it sits in a slot, and every body stashed left the
/// slot either by a hit or by eviction.
pub(crate) fn fold_into(stats: &mut PoolStats, kind: GuardKind) {
    let k = index(kind);
    for b in &registry().all {
        let held = u64::from(!b.slots[k].load(Ordering::Relaxed).is_null());
        let stashed = b.stashed[k].load(Ordering::Relaxed);
        let evicted = b.evicted[k].load(Ordering::Relaxed);
        stats.reused += stashed.saturating_sub(evicted + held);
        stats.pooled += held;
    }
}
