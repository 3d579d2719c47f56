//! Parity with QEMU's tests/unit/test-aio-multithread.c: several contexts, each polled by
//! its own thread.

mod common;

use common::{IoThread, Watchdog};
use corral_aio::{co_reschedule_self, current_context, AioContext, CoMutex};
use corral_runtime::{yield_now, Coroutine};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NUM_CONTEXTS: usize = 4;

fn iothreads() -> Vec<IoThread> {
    (0..NUM_CONTEXTS).map(|_| IoThread::new()).collect()
}

/// A small xorshift so the tests need no rand crate.
fn rng(seed: u64) -> impl FnMut(usize) -> usize {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move |n| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % n as u64) as usize
    }
}

/// /aio/multi/lifecycle: contexts start on their threads and stop cleanly.
#[test]
fn multi_lifecycle() {
    let _w = Watchdog::new("multi_lifecycle", Duration::from_secs(60));
    let ts = iothreads();
    let ran = Arc::new(AtomicUsize::new(0));
    for t in &ts {
        let r = ran.clone();
        t.ctx.bh_schedule_oneshot(move || {
            r.fetch_add(1, SeqCst);
        });
    }
    let ctxs: Vec<Arc<AioContext>> = ts.iter().map(|t| t.ctx.clone()).collect();
    for t in ts {
        t.join();
    }
    assert_eq!(ran.load(SeqCst), NUM_CONTEXTS);
    for c in ctxs {
        assert!(c.stats().iterations >= 1);
        assert_eq!(
            Arc::strong_count(&c),
            1,
            "the iothread let go of its context"
        );
    }
}

/// /aio/multi/schedule: coroutines bounce randomly between contexts. Each move goes through
/// the `scheduled` CAS (a double schedule would panic) and an xchg on the coroutine's
/// in-flight flag proves that nobody runs it twice.
#[test]
fn multi_schedule() {
    let _w = Watchdog::new("multi_schedule", Duration::from_secs(60));
    const COROUTINES: usize = 8;
    const BOUNCES: usize = if cfg!(miri) { 10 } else { 2_000 };
    let ts = iothreads();
    let ctxs: Arc<Vec<Arc<AioContext>>> = Arc::new(ts.iter().map(|t| t.ctx.clone()).collect());
    let moves = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    for id in 0..COROUTINES {
        let home = ctxs[id % NUM_CONTEXTS].clone();
        let (ctxs, moves, done) = (ctxs.clone(), moves.clone(), done.clone());
        let in_flight = Arc::new(AtomicBool::new(false));
        let co = Coroutine::new(move || {
            let mut rand = rng(id as u64 + 1);
            for _ in 0..BOUNCES {
                let target = rand(NUM_CONTEXTS);
                assert!(
                    !in_flight.swap(true, SeqCst),
                    "coroutine moved twice at once"
                );
                co_reschedule_self(&ctxs[target]);
                assert!(in_flight.swap(false, SeqCst), "resumed without a move");
                let here = current_context().expect("runs in a context");
                assert!(
                    Arc::ptr_eq(&here, &ctxs[target]),
                    "resumed in the wrong context"
                );
                moves.fetch_add(1, SeqCst);
            }
            done.fetch_add(1, SeqCst);
        });
        home.co_schedule(co);
    }
    while done.load(SeqCst) < COROUTINES {
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(ts);
    assert_eq!(moves.load(SeqCst), (COROUTINES * BOUNCES) as u64);
}

/// Runs `per_context` coroutines on each context, each locking `m` `rounds` times.
fn contended(per_context: usize, rounds: usize, yield_inside: bool) -> u64 {
    let ts = iothreads();
    let m = Arc::new(CoMutex::new(0u64));
    let inside = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    for t in &ts {
        for _ in 0..per_context {
            let (m, inside, done) = (m.clone(), inside.clone(), done.clone());
            let co = Coroutine::new(move || {
                for i in 0..rounds {
                    let mut g = m.lock();
                    assert!(!inside.swap(true, SeqCst), "two holders at once");
                    let v = *g;
                    if yield_inside && i % 4 == 0 {
                        // Hold the lock across a trip through the event loop.
                        let ctx = current_context().unwrap();
                        let me = corral_runtime::current().unwrap();
                        ctx.bh_schedule_oneshot(move || corral_aio::co_wake(me));
                        drop(ctx);
                        yield_now();
                    }
                    *g = v + 1;
                    inside.store(false, SeqCst);
                }
                done.fetch_add(1, SeqCst);
            });
            t.ctx.co_schedule(co);
        }
    }
    while done.load(SeqCst) < NUM_CONTEXTS * per_context {
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(ts);
    let v = *m.try_lock().expect("unlocked at the end");
    v
}

/// /aio/multi/mutex/contended: exact final count.
#[test]
fn multi_mutex_contended() {
    let _w = Watchdog::new("multi_mutex_contended", Duration::from_secs(60));
    let rounds = if cfg!(miri) { 10 } else { 2_000 };
    assert_eq!(
        contended(4, rounds, true),
        (NUM_CONTEXTS * 4 * rounds) as u64
    );
}

/// /aio/multi/mutex/handoff: one coroutine per context, tight lock/unlock loops: the lock
/// passes between threads through the handoff path; exact count.
#[test]
fn multi_mutex_handoff() {
    let _w = Watchdog::new("multi_mutex_handoff", Duration::from_secs(60));
    let rounds = if cfg!(miri) { 10 } else { 10_000 };
    assert_eq!(contended(1, rounds, false), (NUM_CONTEXTS * rounds) as u64);
}

/// /aio/multi/mutex/pthread: the same contention on a std Mutex (baseline).
#[test]
fn multi_mutex_std_baseline() {
    let rounds = if cfg!(miri) { 10 } else { 10_000 };
    let m = Arc::new(Mutex::new(0u64));
    let hs: Vec<_> = (0..NUM_CONTEXTS)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*m.lock().unwrap(), (NUM_CONTEXTS * rounds) as u64);
}
