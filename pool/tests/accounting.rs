//! The pool's behaviour through its public API, asserted on its counters
//! (scaled down under miri: `scripts/miri.sh` runs these too).

#![cfg(not(loom))] // `pool!` statics need const atomics; loom models are in loom.rs

use corral_pool::{pool, PoolConfig, PoolStats};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const SMALL: PoolConfig = PoolConfig {
    batch_size: 4,
    local_cap: 8,
    global_cap: 16,
};

/// Counts its own drops in the static it points to.
#[derive(Debug)]
struct Tracked(&'static AtomicUsize);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Relaxed);
    }
}

#[test]
fn same_thread_reuse_creates_one() {
    pool! { static P: Pool<u64> = PoolConfig::DEFAULT; }
    let n = if cfg!(miri) { 1_000 } else { 1_000_000 };
    for i in 0..n {
        let v = P.get_or_create(|| 7);
        P.put(v + i - i);
    }
    let s = P.stats();
    assert!(s.created <= PoolConfig::DEFAULT.batch_size as u64);
    assert_eq!(s.created, 1);
    assert_eq!(s.reused, n - 1);
    assert_eq!(s.pooled, 1);
    assert_eq!(s.in_use(), 0);
}

#[test]
fn try_get_on_empty_pool_is_none() {
    pool! { static P: Pool<u8> = SMALL; }
    assert_eq!(P.try_get(), None);
    assert_eq!(P.stats(), PoolStats::default());
}

#[test]
fn over_local_cap_releases_one_batch() {
    pool! { static P: Pool<u32> = SMALL; }
    for i in 0..=SMALL.local_cap as u32 {
        P.put(i);
    }
    let s = P.stats();
    assert_eq!(s.batches_released, 1);
    assert_eq!(s.pooled, SMALL.local_cap as u64 + 1);
    // The oldest objects went out: the newest is handed back first.
    assert_eq!(P.try_get(), Some(SMALL.local_cap as u32));
}

#[test]
fn global_cap_drops_excess_and_counts_it() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    pool! { static P: Pool<Tracked> = SMALL; }
    let total = 40;
    std::thread::spawn(move || {
        let held: Vec<Tracked> = (0..total)
            .map(|_| P.get_or_create(|| Tracked(&DROPS)))
            .collect();
        held.into_iter().for_each(|t| P.put(t));
    })
    .join()
    .unwrap();
    let s = P.stats();
    assert_eq!(s.pooled, SMALL.global_cap as u64, "{s:?}");
    assert_eq!(s.dropped as usize, DROPS.load(Relaxed));
    assert_eq!(s.created, s.pooled + s.dropped);
    assert!(s.dropped > 0);
}

#[test]
fn cross_thread_release_then_exit_accounts_exactly() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    pool! { static P: Pool<Tracked> = SMALL; }
    let n = if cfg!(miri) { 50 } else { 1000 };
    let taken: Vec<Tracked> = std::thread::spawn(move || {
        (0..n)
            .map(|_| P.get_or_create(|| Tracked(&DROPS)))
            .collect()
    })
    .join()
    .unwrap();
    std::thread::spawn(move || taken.into_iter().for_each(|t| P.put(t)))
        .join()
        .unwrap();
    let s = P.stats();
    assert_eq!(s.created, n as u64);
    assert_eq!(s.in_use(), 0, "{s:?}");
    assert_eq!(s.pooled, SMALL.global_cap as u64);
    assert_eq!(s.dropped as usize, DROPS.load(Relaxed));
    assert_eq!(s.created, s.pooled + s.dropped);
    // Nothing leaked: trimming drops the rest.
    assert_eq!(P.trim(), SMALL.global_cap);
    assert_eq!(DROPS.load(Relaxed), n);
    assert_eq!(P.stats().pooled, 0);
}

#[test]
fn refill_takes_one_batch_not_all() {
    pool! { static P: Pool<u32> = SMALL; }
    std::thread::spawn(|| {
        for i in 0..12 {
            P.put(i);
        }
    })
    .join()
    .unwrap();
    // The exiting thread released 12 objects as batches of 4.
    assert_eq!(P.stats().batches_released, 3);
    assert!(P.try_get().is_some());
    let s = P.stats();
    assert_eq!(s.batches_stolen, 1);
    assert_eq!(s.reused, 1);
    assert_eq!(s.pooled, 11);
}

#[test]
fn release_hook_runs_on_batch_release_and_exit() {
    fn zero(batch: &mut [u32]) {
        batch.iter_mut().for_each(|v| *v = 0);
    }
    pool! { static P: Pool<u32> = (SMALL, zero); }
    for _ in 0..=SMALL.local_cap {
        P.put(5);
    }
    // The released (oldest) batch was zeroed, the local ones were not.
    let mut got: Vec<u32> = (0..=SMALL.local_cap).filter_map(|_| P.try_get()).collect();
    got.sort_unstable();
    assert_eq!(got.iter().filter(|&&v| v == 0).count(), SMALL.batch_size);
    std::thread::spawn(|| P.put(9)).join().unwrap();
    assert_eq!(
        std::thread::spawn(|| P.try_get()).join().unwrap(),
        Some(0),
        "hook ran at thread exit"
    );
}

#[test]
fn discard_and_try_get_or_create_count() {
    pool! { static P: Pool<u8> = SMALL; }
    assert_eq!(P.try_get_or_create(|| Err::<u8, &str>("no")), Err("no"));
    let v = P.try_get_or_create(|| Ok::<u8, ()>(1)).unwrap();
    P.discard(v);
    let s = P.stats();
    assert_eq!((s.created, s.dropped, s.pooled), (1, 1, 0));
}

#[test]
fn set_global_cap_applies_to_later_releases() {
    pool! { static P: Pool<u8> = SMALL; }
    P.set_global_cap(0);
    assert_eq!(P.config().global_cap, 0);
    std::thread::spawn(|| P.put(1)).join().unwrap();
    let s = P.stats();
    assert_eq!((s.dropped, s.pooled, s.batches_released), (1, 0, 0));
}

#[test]
fn put_from_a_thread_local_destructor_is_not_leaked() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    pool! { static P: Pool<Tracked> = SMALL; }
    struct PutOnExit;
    impl Drop for PutOnExit {
        fn drop(&mut self) {
            P.put(Tracked(&DROPS));
            P.put(Tracked(&DROPS));
        }
    }
    thread_local! { static LATE: PutOnExit = const { PutOnExit }; }
    // Thread-local destructors run in reverse order of first use, so the
    // two threads see the pool's slot alive, then destroyed, when they put.
    let pool_first = std::thread::spawn(|| {
        P.put(Tracked(&DROPS));
        LATE.with(|_| {});
    });
    let late_first = std::thread::spawn(|| {
        LATE.with(|_| {});
        P.put(Tracked(&DROPS));
    });
    pool_first.join().unwrap();
    late_first.join().unwrap();
    let s = P.stats();
    // Whatever the order, all six objects are pooled or dropped-and-counted.
    assert_eq!(s.pooled + s.dropped, 6, "{s:?}");
    assert_eq!(s.dropped as usize, DROPS.load(Relaxed));
    assert_eq!(P.active_threads(), 0);
    let trimmed = P.trim() as u64;
    assert_eq!(trimmed, s.pooled);
    assert_eq!(DROPS.load(Relaxed), 6);
}

#[test]
fn bounded_multi_thread_stress() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    static CREATED: AtomicUsize = AtomicUsize::new(0);
    pool! { static P: Pool<Tracked> = SMALL; }
    let threads = 4;
    let rounds = if cfg!(miri) { 50 } else { 20_000 };
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for i in 0..rounds {
                    // Uneven get/put mixes so batches move between threads.
                    if (i + t) % 3 == 0 || held.is_empty() {
                        held.push(P.get_or_create(|| {
                            CREATED.fetch_add(1, Relaxed);
                            Tracked(&DROPS)
                        }));
                    }
                    if held.len() > 5 + t {
                        while let Some(x) = held.pop() {
                            P.put(x);
                        }
                    }
                }
                held
            })
        })
        .collect();
    let mut leftovers = Vec::new();
    for h in handles {
        leftovers.extend(h.join().unwrap());
    }
    let s = P.stats();
    assert_eq!(s.created as usize, CREATED.load(Relaxed));
    assert_eq!(s.in_use() as usize, leftovers.len(), "{s:?}");
    assert_eq!(s.dropped as usize, DROPS.load(Relaxed));
    assert!(s.pooled <= SMALL.global_cap as u64);
    drop(leftovers);
    P.trim();
    assert_eq!(DROPS.load(Relaxed), CREATED.load(Relaxed));
}

/// The prefetch hook sees, on each local get, the object the
/// PREFETCH_DISTANCE-th get after it hands out; after a batch steal, the
/// first objects the stolen batch will hand out.
#[test]
fn prefetch_hook_sees_what_later_gets_hand_out() {
    use corral_pool::PREFETCH_DISTANCE;
    use std::cell::RefCell;
    thread_local! { static SEEN: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) }; }
    fn saw(v: &u64) {
        SEEN.with(|s| s.borrow_mut().push(*v));
    }
    const HOOKED: PoolConfig = PoolConfig {
        batch_size: 2 * PREFETCH_DISTANCE,
        local_cap: 4 * PREFETCH_DISTANCE,
        global_cap: 64 * PREFETCH_DISTANCE,
    };
    pool! { static P: Pool<u64> = (HOOKED, |_: &mut [u64]| {}, saw); }
    // Local list (LIFO): 0..n put, so gets hand out n - 1, ..., 0.
    let n = HOOKED.local_cap as u64;
    (0..n).for_each(|v| P.put(v));
    let got: Vec<u64> = (0..n).map(|_| P.try_get().expect("pooled")).collect();
    assert_eq!(got, (0..n).rev().collect::<Vec<_>>());
    let seen = SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()));
    // Get i hands out got[i] and shows got[i + D] while there is one.
    let expected: Vec<u64> = got[PREFETCH_DISTANCE..].to_vec();
    assert_eq!(seen, expected);

    // Another thread releases its oldest batch (and keeps the rest until we
    // are done); this thread steals that batch and is shown the objects it
    // will hand out next.
    let (released, done) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
    let (first, seen, next) = std::thread::scope(|s| {
        s.spawn(|| {
            (100..100 + HOOKED.local_cap as u64 + 1).for_each(|v| P.put(v));
            released.wait();
            done.wait();
        });
        released.wait();
        let first = P.try_get();
        let next: Vec<Option<u64>> = (1..HOOKED.batch_size).map(|_| P.try_get()).collect();
        let seen = SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()));
        done.wait();
        (first, seen, next)
    });
    assert_eq!(first, Some(100 + HOOKED.batch_size as u64 - 1));
    let next: Vec<u64> = next
        .into_iter()
        .map(|v| v.expect("from the stolen batch"))
        .collect();
    // The steal shows the next D objects; each later get shows the one D
    // gets after it.
    let refill: Vec<u64> = seen[..PREFETCH_DISTANCE].iter().rev().copied().collect();
    assert_eq!(refill, next[..PREFETCH_DISTANCE]);
    assert_eq!(seen[PREFETCH_DISTANCE..], next[PREFETCH_DISTANCE..]);
}
