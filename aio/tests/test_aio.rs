//! Parity with QEMU's tests/unit/test-aio.c: one test per case.

mod common;

use common::{wait_for_aio, EventNotifier};
use corral_aio::{AioContext, Bh, CoQueue, FdHandlers, Timer};
use corral_runtime::{yield_now, Coroutine};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn counter_bh(ctx: &AioContext) -> (Bh, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    (
        ctx.bh_new(move || {
            n2.fetch_add(1, SeqCst);
        }),
        n,
    )
}

/// /aio/bh/schedule: runs on a blocking poll; the next non-blocking poll returns false.
#[test]
fn bh_schedule() {
    let ctx = AioContext::new().unwrap();
    let (bh, n) = counter_bh(&ctx);
    bh.schedule();
    assert_eq!(n.load(SeqCst), 0);
    assert!(ctx.poll(true));
    assert_eq!(n.load(SeqCst), 1);
    assert!(!ctx.poll(false));
    assert_eq!(n.load(SeqCst), 1);
}

/// /aio/bh/schedule10: a self-rescheduling bottom half runs exactly once per poll.
#[test]
fn bh_schedule10() {
    let ctx = AioContext::new().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let slot: Arc<Mutex<Option<Bh>>> = Arc::new(Mutex::new(None));
    let (n2, s2) = (n.clone(), slot.clone());
    let bh = ctx.bh_new(move || {
        if n2.fetch_add(1, SeqCst) + 1 < 10 {
            s2.lock().unwrap().as_ref().unwrap().schedule();
        }
    });
    *slot.lock().unwrap() = Some(bh.clone());
    bh.schedule();
    assert_eq!(n.load(SeqCst), 0);
    assert!(ctx.poll(false));
    assert_eq!(n.load(SeqCst), 1);
    assert!(ctx.poll(true));
    assert_eq!(n.load(SeqCst), 2);
    for expect in 3..=10 {
        assert!(ctx.poll(false));
        assert_eq!(n.load(SeqCst), expect, "exactly one run per poll");
    }
    assert!(!ctx.poll(false));
    assert_eq!(n.load(SeqCst), 10);
    slot.lock().unwrap().take();
}

/// /aio/bh/cancel
#[test]
fn bh_cancel() {
    let ctx = AioContext::new().unwrap();
    let (bh, n) = counter_bh(&ctx);
    bh.schedule();
    assert!(bh.is_scheduled());
    bh.cancel();
    assert!(!bh.is_scheduled());
    assert!(!ctx.poll(false));
    assert_eq!(n.load(SeqCst), 0);
    // A cancelled bottom half can be scheduled again.
    bh.schedule();
    assert!(ctx.poll(false));
    assert_eq!(n.load(SeqCst), 1);
}

/// /aio/bh/delete
#[test]
fn bh_delete() {
    let ctx = AioContext::new().unwrap();
    let (bh, n) = counter_bh(&ctx);
    bh.schedule();
    bh.delete();
    assert!(!ctx.poll(false));
    assert_eq!(n.load(SeqCst), 0);
    bh.schedule();
    assert!(!ctx.poll(false), "a deleted bottom half never runs again");
    assert_eq!(n.load(SeqCst), 0);
}

struct SelfDeleting {
    n: Arc<AtomicUsize>,
    bh: Bh,
}

/// A bottom half that reschedules itself until it ran `max` times, then deletes itself
/// from inside its callback (QEMU's bh_delete_cb).
fn self_deleting(ctx: &AioContext, max: usize) -> SelfDeleting {
    let n = Arc::new(AtomicUsize::new(0));
    let slot: Arc<Mutex<Option<Bh>>> = Arc::new(Mutex::new(None));
    let (n2, s2) = (n.clone(), slot.clone());
    let bh = ctx.bh_new(move || {
        let runs = n2.fetch_add(1, SeqCst) + 1;
        let me = s2.lock().unwrap().clone().unwrap();
        if runs == max {
            me.delete();
            // Break the handle cycle: the callback is dropped with the bottom half.
            s2.lock().unwrap().take();
        } else {
            me.schedule();
        }
    });
    *slot.lock().unwrap() = Some(bh.clone());
    SelfDeleting { n, bh }
}

/// /aio/bh/callback-delete/one
#[test]
fn bh_callback_delete_one() {
    let ctx = AioContext::new().unwrap();
    let d = self_deleting(&ctx, 1);
    d.bh.schedule();
    poll_expect(&ctx, false, true, &d.n, 1);
    assert!(!ctx.poll(false));
    d.bh.schedule();
    poll_expect(&ctx, false, false, &d.n, 1);
}

/// /aio/bh/callback-delete/many
#[test]
fn bh_callback_delete_many() {
    let ctx = AioContext::new().unwrap();
    let maxes = [1, 3, 2, 4];
    let ds: Vec<SelfDeleting> = maxes.iter().map(|&m| self_deleting(&ctx, m)).collect();
    for d in &ds {
        d.bh.schedule();
    }
    let mut polls = 0;
    while ctx.poll(false) {
        polls += 1;
        for (d, &m) in ds.iter().zip(&maxes) {
            assert_eq!(d.n.load(SeqCst), m.min(polls));
        }
    }
    assert_eq!(polls, 4);
    for (d, &m) in ds.iter().zip(&maxes) {
        assert_eq!(d.n.load(SeqCst), m);
        assert!(!d.bh.is_scheduled());
    }
}

/// /aio/bh/flush
#[test]
fn bh_flush() {
    let ctx = AioContext::new().unwrap();
    let (bh, n) = counter_bh(&ctx);
    bh.schedule();
    wait_for_aio(&ctx);
    assert_eq!(n.load(SeqCst), 1);
    assert!(!ctx.poll(false));
    assert_eq!(n.load(SeqCst), 1);
}

/// One poll of `ctx`: asserts whether it made progress and the callback count `n` after it.
#[track_caller]
fn poll_expect(ctx: &AioContext, blocking: bool, progress: bool, n: &AtomicUsize, calls: usize) {
    assert_eq!(ctx.poll(blocking), progress, "poll({blocking}) progress");
    assert_eq!(n.load(SeqCst), calls, "callbacks after poll({blocking})");
}

struct EventTestData {
    e: Arc<EventNotifier>,
    n: Arc<AtomicUsize>,
    active: Arc<AtomicUsize>,
}

/// QEMU's event_ready_cb: clears, counts, and re-sets itself while `active > 0` with
/// `auto_set`.
fn event_test(ctx: &AioContext, set: bool, active: usize, auto_set: bool) -> EventTestData {
    let e = EventNotifier::new(set);
    let n = Arc::new(AtomicUsize::new(0));
    let act = Arc::new(AtomicUsize::new(active));
    let (e2, n2, a2) = (e.clone(), n.clone(), act.clone());
    ctx.set_fd_handler(
        e.fd(),
        FdHandlers::new().read(move || {
            assert!(
                e2.test_and_clear(),
                "read handler called on an fd that was not set"
            );
            n2.fetch_add(1, SeqCst);
            let a = a2.load(SeqCst);
            if a > 0 {
                a2.store(a - 1, SeqCst);
            }
            if auto_set && a2.load(SeqCst) > 0 {
                e2.set();
            }
        }),
    )
    .unwrap();
    EventTestData { e, n, active: act }
}

/// /aio/event/add-remove: no spurious callback.
#[test]
fn event_add_remove() {
    let ctx = AioContext::new().unwrap();
    let d = event_test(&ctx, false, 0, false);
    poll_expect(&ctx, false, false, &d.n, 0);
    // Set, then remove before any poll: the callback must not run.
    d.e.set();
    ctx.remove_fd_handler(d.e.fd()).unwrap();
    poll_expect(&ctx, false, false, &d.n, 0);
}

/// /aio/event/wait: exactly one callback.
#[test]
fn event_wait() {
    let ctx = AioContext::new().unwrap();
    let d = event_test(&ctx, false, 1, false);
    poll_expect(&ctx, false, false, &d.n, 0);
    assert_eq!(d.active.load(SeqCst), 1);
    d.e.set();
    poll_expect(&ctx, true, true, &d.n, 1);
    assert_eq!(d.active.load(SeqCst), 0);
    poll_expect(&ctx, false, false, &d.n, 1);
    ctx.remove_fd_handler(d.e.fd()).unwrap();
    poll_expect(&ctx, false, false, &d.n, 1);
}

/// /aio/event/flush: an auto-setting handler runs until it is inactive.
#[test]
fn event_flush() {
    let ctx = AioContext::new().unwrap();
    let d = event_test(&ctx, false, 10, true);
    assert!(!ctx.poll(false));
    d.e.set();
    poll_expect(&ctx, false, true, &d.n, 1);
    assert_eq!(d.active.load(SeqCst), 9);
    wait_for_aio(&ctx);
    assert_eq!(d.n.load(SeqCst), 10);
    assert_eq!(d.active.load(SeqCst), 0);
    assert!(!ctx.poll(false));
    ctx.remove_fd_handler(d.e.fd()).unwrap();
}

/// /aio/event/wait/no-flush-cb: a non-blocking poll never blocks, and an active notifier
/// does not make an inactive one run.
#[test]
fn event_wait_no_flush_cb() {
    let ctx = AioContext::new().unwrap();
    let data = event_test(&ctx, false, 0, false);
    poll_expect(&ctx, false, false, &data.n, 0);
    data.e.set();
    poll_expect(&ctx, true, true, &data.n, 1);

    let dummy = event_test(&ctx, false, 1, true);
    data.e.set();
    poll_expect(&ctx, false, true, &data.n, 2);
    assert!(
        !ctx.poll(false),
        "non-blocking poll with nothing ready returns at once"
    );
    assert_eq!(data.n.load(SeqCst), 2);
    data.e.set();
    poll_expect(&ctx, false, true, &data.n, 3);
    assert!(!ctx.poll(false));

    dummy.e.set();
    wait_for_aio(&ctx);
    assert_eq!(data.n.load(SeqCst), 3);
    assert_eq!(dummy.n.load(SeqCst), 1);
    assert_eq!(dummy.active.load(SeqCst), 0);
    ctx.remove_fd_handler(dummy.e.fd()).unwrap();
    ctx.remove_fd_handler(data.e.fd()).unwrap();
    poll_expect(&ctx, false, false, &data.n, 3);
}

/// /aio/timer/schedule: does not fire early, fires once, and a blocking poll waits for the
/// re-armed timer.
#[test]
fn timer_schedule() {
    const PERIOD: Duration = Duration::from_millis(40);
    let ctx = AioContext::new().unwrap();
    let fired: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let deadlines: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let slot: Arc<Mutex<Option<Timer>>> = Arc::new(Mutex::new(None));
    let (f2, d2, s2) = (fired.clone(), deadlines.clone(), slot.clone());
    let timer = Timer::new(&ctx, move || {
        let mut f = f2.lock().unwrap();
        f.push(Instant::now());
        if f.len() < 2 {
            let next = Instant::now() + PERIOD;
            d2.lock().unwrap().push(next);
            s2.lock().unwrap().as_ref().unwrap().arm_at(next);
        }
    });
    *slot.lock().unwrap() = Some(timer.clone());
    let first = Instant::now() + PERIOD;
    deadlines.lock().unwrap().push(first);
    timer.arm_at(first);
    assert!(timer.is_pending());
    assert!(!ctx.poll(false), "not due yet");
    assert!(fired.lock().unwrap().is_empty());

    // Blocking polls wait for it; it fires once, not early.
    while fired.lock().unwrap().is_empty() {
        ctx.poll(true);
    }
    assert_eq!(fired.lock().unwrap().len(), 1);
    assert!(fired.lock().unwrap()[0] >= first, "fired early");
    assert!(timer.is_pending(), "re-armed by its callback");

    // One blocking poll waits for the re-armed timer.
    assert!(ctx.poll(true));
    let f = fired.lock().unwrap().clone();
    assert_eq!(f.len(), 2);
    assert!(
        f[1] >= deadlines.lock().unwrap()[1],
        "re-armed timer fired early"
    );
    assert!(!timer.is_pending());
    assert!(!ctx.poll(false));
    assert_eq!(fired.lock().unwrap().len(), 2);

    // A cancelled timer does not fire.
    timer.arm_after(Duration::from_millis(1));
    timer.cancel();
    std::thread::sleep(Duration::from_millis(3));
    assert!(!ctx.poll(false));
    assert_eq!(fired.lock().unwrap().len(), 2);
    slot.lock().unwrap().take();
}

fn stack_addr() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

/// /aio/coroutine/queue-chaining: two coroutines wake each other 25000 times; the stack does
/// not grow (wake-ups are queued, not nested enters).
#[test]
fn coroutine_queue_chaining() {
    const N: usize = if cfg!(miri) { 100 } else { 25_000 };
    let ctx = AioContext::new().unwrap();
    let qa = Arc::new(CoQueue::new());
    let qb = Arc::new(CoQueue::new());
    let depth_a = Arc::new(Mutex::new((usize::MAX, 0usize)));
    let depth_b = Arc::new(Mutex::new((usize::MAX, 0usize)));
    let count = Arc::new(AtomicUsize::new(0));

    let (qa1, qb1, db, c1) = (qa.clone(), qb.clone(), depth_b.clone(), count.clone());
    let b = Coroutine::new(move || {
        for _ in 0..N {
            qb1.wait();
            let sp = stack_addr();
            let mut d = db.lock().unwrap();
            *d = (d.0.min(sp), d.1.max(sp));
            drop(d);
            c1.fetch_add(1, SeqCst);
            qa1.next();
        }
    });
    let (qa2, qb2, da) = (qa.clone(), qb.clone(), depth_a.clone());
    let a = Coroutine::new(move || {
        for _ in 0..N {
            let sp = stack_addr();
            let mut d = da.lock().unwrap();
            *d = (d.0.min(sp), d.1.max(sp));
            drop(d);
            assert!(qb2.next(), "B must be waiting");
            qa2.wait();
        }
    });
    ctx.co_enter(b);
    ctx.co_enter(a);
    while !(a.is_terminated() && b.is_terminated()) {
        ctx.poll(true);
    }
    assert_eq!(count.load(SeqCst), N);
    for d in [&depth_a, &depth_b] {
        let (lo, hi) = *d.lock().unwrap();
        assert!(hi - lo < 256, "stack grew by {} bytes", hi - lo);
    }
}

/// /aio/coroutine/worker-thread-co-enter: entering from a worker thread schedules the
/// coroutine into its context, which runs it on the context's thread.
#[test]
fn coroutine_worker_thread_co_enter() {
    let ctx = AioContext::new().unwrap();
    let main = std::thread::current().id();
    let ran_on = Arc::new(Mutex::new(None));
    let r2 = ran_on.clone();
    let co = Coroutine::new(move || {
        *r2.lock().unwrap() = Some(std::thread::current().id());
    });
    let c2 = ctx.clone();
    std::thread::spawn(move || c2.co_enter(co)).join().unwrap();
    assert!(
        ran_on.lock().unwrap().is_none(),
        "must not run on the worker thread"
    );
    assert!(ctx.poll(true));
    assert_eq!(*ran_on.lock().unwrap(), Some(main));
    assert!(co.is_terminated());
}

/// Waking a coroutine that is already scheduled is a clean panic naming both parties.
#[test]
fn double_schedule_panics() {
    let ctx = AioContext::new().unwrap();
    let co = Coroutine::new(yield_now);
    ctx.co_enter(co);
    ctx.co_schedule(co);
    let c2 = ctx.clone();
    let err =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c2.co_schedule(co))).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("already scheduled"), "{msg}");
    assert!(msg.contains("co_schedule"), "{msg}");
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| corral_aio::co_wake(co)))
        .unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("co_wake: coroutine already scheduled (by co_schedule)"),
        "{msg}"
    );
    assert!(ctx.poll(true));
    assert!(co.is_terminated());
}

/// A bottom half scheduled from another thread wakes a context blocked in poll(true).
#[test]
fn bh_from_other_thread_wakes_blocked_poll() {
    let ctx = AioContext::new().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let (c2, r2) = (ctx.clone(), ran.clone());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        c2.bh_schedule_oneshot(move || r2.store(true, SeqCst));
    });
    while !ran.load(SeqCst) {
        ctx.poll(true);
    }
    t.join().unwrap();
    assert!(ctx.stats().eventfd_writes <= 1);
}

/// fd handlers may be removed and added from inside a handler while the list is walked;
/// a removed handler is never called again, even with its fd still ready.
#[test]
fn fd_handler_changes_list_from_inside_a_callback() {
    let ctx = AioContext::new().unwrap();
    let a = EventNotifier::new(true);
    let b = EventNotifier::new(true);
    let (a_calls, b_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let w = Arc::downgrade(&ctx);
    let (a2, b2, ac, bc) = (a.clone(), b.clone(), a_calls.clone(), b_calls.clone());
    ctx.set_fd_handler(
        a.fd(),
        FdHandlers::new().read(move || {
            ac.fetch_add(1, SeqCst);
            let ctx = w.upgrade().unwrap();
            // Remove itself without clearing its (still readable) fd, and add b's handler.
            ctx.remove_fd_handler(a2.fd()).unwrap();
            let (b3, bc2) = (b2.clone(), bc.clone());
            ctx.set_fd_handler(
                b2.fd(),
                FdHandlers::new().read(move || {
                    b3.test_and_clear();
                    bc2.fetch_add(1, SeqCst);
                }),
            )
            .unwrap();
        }),
    )
    .unwrap();
    while ctx.poll(false) {}
    assert_eq!(
        a_calls.load(SeqCst),
        1,
        "a removed handler is not called again"
    );
    assert_eq!(
        b_calls.load(SeqCst),
        1,
        "the handler added from a callback runs"
    );
    assert!(
        a.test_and_clear(),
        "a's fd stayed ready: only the removal kept it quiet"
    );
    ctx.remove_fd_handler(b.fd()).unwrap();
}

/// Polling a context that another thread is polling is a clean panic.
#[test]
fn concurrent_poll_from_two_threads_panics() {
    let ctx = AioContext::new().unwrap();
    let entered = Arc::new(std::sync::Barrier::new(2));
    let release = Arc::new(AtomicBool::new(false));
    let (c2, e2, r2) = (ctx.clone(), entered.clone(), release.clone());
    ctx.bh_schedule_oneshot(move || {
        e2.wait();
        while !r2.load(SeqCst) {
            std::thread::yield_now();
        }
    });
    let poller = std::thread::spawn(move || {
        c2.poll(false);
    });
    entered.wait();
    let err =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.poll(false))).unwrap_err();
    release.store(true, SeqCst);
    poller.join().unwrap();
    let msg = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned());
    assert!(msg
        .unwrap_or_default()
        .contains("being polled by another thread"));
    // Afterwards this thread may poll it.
    assert!(!ctx.poll(false));
}
