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
//! a hit counts as `reused`, a body sitting here as `pooled`. Each thread's
//! counters are written by that thread only (plain load + store) and summed
//! on demand, like the pool's own.

use std::cell::Cell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use corral_pool::PoolStats;

use crate::body::{Header, Parked};
use crate::pool::pool_for;
use crate::stack::GuardKind;

/// Counters of one thread's slots; written by their thread only.
#[derive(Debug, Default)]
struct Counters {
    hits: [AtomicU64; 2],
    held: [AtomicU64; 2],
}

impl Counters {
    fn bump_hits(&self, k: usize) {
        let c = &self.hits[k];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// Every counter block ever claimed (kept for the sums), and the ones whose
/// thread exited (claimed again by new threads; their sums carry on).
struct Registry {
    all: Vec<&'static Counters>,
    free: Vec<&'static Counters>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    all: Vec::new(),
    free: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

struct Slots {
    bodies: [Cell<*const Header>; 2],
    counters: Cell<Option<&'static Counters>>,
}

impl Slots {
    #[cold]
    fn claim_counters(&self) -> &'static Counters {
        let mut reg = registry();
        let c = reg.free.pop().unwrap_or_else(|| {
            let c: &'static Counters = Box::leak(Box::default());
            reg.all.push(c);
            c
        });
        self.counters.set(Some(c));
        c
    }

    #[inline(always)]
    fn counters(&self) -> &'static Counters {
        match self.counters.get() {
            Some(c) => c,
            None => self.claim_counters(),
        }
    }
}

impl Drop for Slots {
    /// Thread exit: the cached bodies go to their pools, the counters block
    /// to the free list.
    fn drop(&mut self) {
        for (k, slot) in self.bodies.iter().enumerate() {
            if let Some(h) = NonNull::new(slot.replace(ptr::null()).cast_mut()) {
                if let Some(c) = self.counters.get() {
                    c.held[k].store(0, Ordering::Relaxed);
                }
                // SAFETY:
                // * the slot owned this parked body (see `stash`).
                let body = unsafe { Parked::from_raw(h) };
                pool_for(kind_of(k)).put(body);
            }
        }
        if let Some(c) = self.counters.take() {
            registry().free.push(c);
        }
    }
}

thread_local! {
    static SLOTS: Slots = const {
        Slots {
            bodies: [Cell::new(ptr::null()), Cell::new(ptr::null())],
            counters: Cell::new(None),
        }
    };
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

/// Takes this thread's cached body of `kind` if it has the asked stack size
/// (a body of another size goes to the pool). Never inlined: see tls.rs.
#[inline(never)]
pub(crate) fn take(kind: GuardKind, size: usize) -> Option<Parked> {
    let k = index(kind);
    SLOTS
        .try_with(|s| {
            let h = NonNull::new(s.bodies[k].replace(ptr::null()).cast_mut())?;
            let c = s.counters();
            c.held[k].store(0, Ordering::Relaxed);
            // SAFETY:
            // * the slot owned this parked body (see `stash`).
            let body = unsafe { Parked::from_raw(h) };
            if body.has_shape(size, kind) {
                c.bump_hits(k);
                Some(body)
            } else {
                pool_for(kind).put(body);
                None
            }
        })
        .ok()
        .flatten()
}

/// Keeps `body` (a parked pooled body) in this thread's slot if it is free;
/// otherwise hands it back. Inlined only into `Coroutine::try_enter`'s frame,
/// which never changes thread (see tls.rs).
#[inline(always)]
pub(crate) fn stash(body: Parked, kind: GuardKind) -> Option<Parked> {
    let k = index(kind);
    let mut body = Some(body);
    let _ = SLOTS.try_with(|s| {
        if s.bodies[k].get().is_null() {
            if let Some(b) = body.take() {
                s.counters().held[k].store(1, Ordering::Relaxed);
                s.bodies[k].set(b.into_raw().as_ptr());
            }
        }
    });
    body
}

/// Adds the slots' hits and held bodies of `kind` to the pool's counters.
pub(crate) fn fold_into(stats: &mut PoolStats, kind: GuardKind) {
    let k = index(kind);
    for c in &registry().all {
        stats.reused += c.hits[k].load(Ordering::Relaxed);
        stats.pooled += c.held[k].load(Ordering::Relaxed);
    }
}
