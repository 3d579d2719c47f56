//! Loom models of the pool: run with `scripts/loom.sh`.
//!
//! They build pools inside the model (loom atomics cannot live in a `static`)
//! around a `loom::thread_local!` slot, so thread exit runs the real
//! `LocalSlot` destructor. Each model counts the drops of its objects and
//! checks, over every interleaving loom explores, that the counters add up
//! and nothing leaks. Under loom, popped batch nodes are never freed (see
//! `reclaim.rs`): the models check the head CAS protocol under the guarantee
//! crossbeam-epoch gives the normal build (no address reuse while pinned).
#![cfg(loom)]

use corral_pool::__private::{LocalSlot, PoolShared};
use corral_pool::{Pool, PoolConfig, PoolStats};
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Counts its own drops (a plain std counter: loom runs one thread at a time).
#[derive(Debug)]
struct Tracked(&'static AtomicUsize);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Relaxed);
    }
}

loom::thread_local! {
    static LOCAL: LocalSlot<Tracked> = LocalSlot::new();
}

/// A fresh pool and drop counter for one model execution; give both to
/// [`free`] at the end.
fn fresh(config: PoolConfig) -> (&'static Pool<Tracked>, &'static AtomicUsize) {
    let shared = Box::leak(Box::new(PoolShared::new(config)));
    let pool = Box::leak(Box::new(Pool::__new(
        &LOCAL,
        shared,
        config,
        Some(mark_released),
    )));
    (pool, Box::leak(Box::new(AtomicUsize::new(0))))
}

/// Frees what [`fresh`] leaked.
///
/// # Safety
///
/// * every thread that used `pool` has exited and finished its hand-back
///   (`active_threads() == 0`) and the calling thread never used `get`/`put`
///   (it has no local list pointing at the pool);
/// * neither reference (nor the pool's shared state) is used afterwards.
unsafe fn free(pool: &'static Pool<Tracked>, drops: &'static AtomicUsize) {
    // SAFETY: per this function's contract; both came from `Box::leak`.
    unsafe {
        drop(Box::from_raw(
            pool as *const Pool<Tracked> as *mut Pool<Tracked>,
        ));
        drop(Box::from_raw(
            drops as *const AtomicUsize as *mut AtomicUsize,
        ));
    }
}

/// The release hook: runs on every object that leaves a thread's list.
fn mark_released(_: &mut [Tracked]) {}

/// Waits until every worker's thread-local destructor has run: loom's
/// `join` returns before a thread's locals are dropped (std's does not).
fn wait_for_exits(pool: &'static Pool<Tracked>) {
    while pool.active_threads() > 0 {
        thread::yield_now();
    }
}

/// Checks the invariants once every worker thread has exited, then trims
/// the global list and checks that every created object was dropped.
fn check_quiescent(pool: &'static Pool<Tracked>, drops: &'static AtomicUsize, gets: u64) {
    wait_for_exits(pool);
    let s: PoolStats = pool.stats();
    assert_eq!(s.created + s.reused, gets, "{s:?}");
    assert_eq!(s.in_use(), 0, "{s:?}");
    assert_eq!(s.dropped as usize, drops.load(Relaxed), "{s:?}");
    assert!(s.pooled <= pool.config().global_cap as u64, "{s:?}");
    assert_eq!(pool.trim() as u64, s.pooled);
    assert_eq!(drops.load(Relaxed) as u64, s.created, "leak: {s:?}");
    assert_eq!(pool.stats().pooled, 0);
    // SAFETY: all workers are gone (waited above); this thread only read
    // stats and trimmed, which take no local list.
    unsafe { free(pool, drops) };
}

/// Three threads get and put; two release batches to the global list, the
/// third steals them: batch hand-over, counters and cap under contention.
#[test]
fn get_put_steal_release_three_threads() {
    loom::model(|| {
        let config = PoolConfig {
            batch_size: 1,
            local_cap: 1,
            global_cap: 2,
        };
        let (pool, drops) = fresh(config);
        // Two objects held at once, put back: the second put is over the
        // local cap and releases one batch; the other goes out at exit.
        let t1 = thread::spawn(move || {
            let a = pool.get_or_create(|| Tracked(drops));
            let b = pool.get_or_create(|| Tracked(drops));
            pool.put(a);
            pool.put(b);
        });
        // Steals a batch if one is there (a batch is one object here) and
        // hands it back at exit.
        let t2 = thread::spawn(move || {
            let got = pool.try_get();
            let n = got.is_some() as u64;
            got.into_iter().for_each(|x| pool.put(x));
            n
        });
        // One object, released at exit.
        let t3 = thread::spawn(move || pool.put(pool.get_or_create(|| Tracked(drops))));
        t1.join().unwrap();
        let stolen = t2.join().unwrap();
        t3.join().unwrap();
        check_quiescent(pool, drops, 3 + stolen);
    });
}

/// Threads exit with non-empty local lists while a third takes from the
/// global list: exit hand-back, the cap and the counters add up.
#[test]
fn thread_exit_with_non_empty_local_list() {
    loom::model(|| {
        let config = PoolConfig {
            batch_size: 2,
            local_cap: 4,
            global_cap: 3,
        };
        let (pool, drops) = fresh(config);
        let exiter = move || {
            let a = pool.get_or_create(|| Tracked(drops));
            let b = pool.get_or_create(|| Tracked(drops));
            // Both stay in the local list (under local_cap) until exit.
            pool.put(a);
            pool.put(b);
        };
        let t1 = thread::spawn(exiter);
        let t2 = thread::spawn(exiter);
        let t3 = thread::spawn(move || {
            let got = pool.try_get();
            let n = got.is_some() as u64;
            // Discarding counts as dropped: the accounting must still close.
            if let Some(x) = got {
                pool.discard(x);
            }
            n
        });
        t1.join().unwrap();
        t2.join().unwrap();
        let took = t3.join().unwrap();
        wait_for_exits(pool);
        let s = pool.stats();
        // Lists came back at exit (or went over the cap and were dropped).
        assert!(s.batches_released >= 1, "{s:?}");
        check_quiescent(pool, drops, 4 + took);
    });
}
