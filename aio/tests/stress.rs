//! Stress for the notify protocol: several threads schedule bottom halves and wake
//! coroutines into a context that blocks in `poll(true)`. Nothing may be lost and the loop
//! must never hang (a watchdog aborts with a message after 60 s).

mod common;

use common::Watchdog;
use corral_aio::{AioContext, CoQueue};
use corral_runtime::Coroutine;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[test]
fn cross_thread_bhs_and_wakes_never_lost() {
    let _w = Watchdog::new("stress", Duration::from_secs(60));
    const THREADS: usize = 3;
    const ROUNDS: usize = if cfg!(miri) { 50 } else { 40_000 };
    let ctx = AioContext::new().unwrap();
    let bh_runs = Arc::new(AtomicU64::new(0));
    let wakes = Arc::new(AtomicU64::new(0));

    // One parked coroutine per producer thread: the producer wakes it, it counts the wake
    // and parks again (a CoQueue with one waiter each, so a wake is never doubled).
    let queues: Vec<Arc<CoQueue>> = (0..THREADS).map(|_| Arc::new(CoQueue::new())).collect();
    let acks: Vec<Arc<AtomicUsize>> = (0..THREADS)
        .map(|_| Arc::new(AtomicUsize::new(0)))
        .collect();
    let mut cos = Vec::new();
    for t in 0..THREADS {
        let (q, w, ack) = (queues[t].clone(), wakes.clone(), acks[t].clone());
        let co = Coroutine::new(move || {
            for _ in 0..ROUNDS / 4 {
                ack.fetch_add(1, SeqCst); // parked (about to wait)
                q.wait();
                w.fetch_add(1, SeqCst);
            }
        });
        ctx.co_enter(co);
        cos.push(co);
    }

    let start = Arc::new(Barrier::new(THREADS));
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ctx, bh_runs, start) = (ctx.clone(), bh_runs.clone(), start.clone());
            let (q, ack) = (queues[t].clone(), acks[t].clone());
            std::thread::spawn(move || {
                start.wait();
                let mut woken = 0;
                for i in 0..ROUNDS {
                    let r = bh_runs.clone();
                    ctx.bh_schedule_oneshot(move || {
                        r.fetch_add(1, SeqCst);
                    });
                    // Every 4th round, wake the coroutine once it is parked again.
                    if i % 4 == 3 && woken < ROUNDS / 4 {
                        while ack.load(SeqCst) <= woken || q.is_empty() {
                            std::thread::yield_now();
                        }
                        assert!(q.next());
                        woken += 1;
                    }
                    if i % 64 == 0 {
                        // Let the context fall asleep now and then.
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            })
        })
        .collect();

    let want_bh = (THREADS * ROUNDS) as u64;
    let want_wakes = (THREADS * (ROUNDS / 4)) as u64;
    while bh_runs.load(SeqCst) < want_bh || wakes.load(SeqCst) < want_wakes {
        ctx.poll(true);
    }
    for p in producers {
        p.join().unwrap();
    }
    while ctx.poll(false) {}
    assert_eq!(bh_runs.load(SeqCst), want_bh);
    assert_eq!(wakes.load(SeqCst), want_wakes);
    assert!(cos.iter().all(|c| c.is_terminated()));
    let st = ctx.stats();
    assert!(st.eventfd_writes <= want_bh + want_wakes);
    eprintln!(
        "stress: {} bottom halves + {} wakes, {} eventfd writes, {} blocking waits, {} iterations",
        want_bh, want_wakes, st.eventfd_writes, st.blocking_waits, st.iterations
    );
}

/// Two threads publish values with plain Release stores and schedule one shared bottom half;
/// each waits until the callback has seen its value before publishing the next. A schedule
/// that joins an already queued run must still make its value visible to that run, or the
/// value is never seen and the producer waits forever (the watchdog fails the test).
#[test]
fn schedule_of_a_queued_bh_publishes_earlier_writes() {
    let _w = Watchdog::new("schedule_publishes", Duration::from_secs(60));
    const PRODUCERS: usize = 2;
    const ROUNDS: u64 = if cfg!(miri) { 50 } else { 20_000 };
    let ctx = AioContext::new().unwrap();
    let slots: Arc<[AtomicU64; PRODUCERS]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let seen: Arc<[AtomicU64; PRODUCERS]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let (s2, seen2) = (slots.clone(), seen.clone());
    let bh = ctx.bh_new(move || {
        for (slot, seen) in s2.iter().zip(seen2.iter()) {
            seen.store(slot.load(SeqCst), SeqCst);
        }
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let (bh, slots, seen) = (bh.clone(), slots.clone(), seen.clone());
            std::thread::spawn(move || {
                for i in 1..=ROUNDS {
                    slots[t].store(i, std::sync::atomic::Ordering::Release);
                    bh.schedule();
                    while seen[t].load(SeqCst) < i {
                        std::hint::spin_loop();
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    while seen.iter().any(|s| s.load(SeqCst) < ROUNDS) {
        ctx.poll(true);
    }
    for p in producers {
        p.join().unwrap();
    }
    assert!(seen.iter().all(|s| s.load(SeqCst) == ROUNDS));
    bh.delete();
}
