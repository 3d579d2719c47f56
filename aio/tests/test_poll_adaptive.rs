//! Adaptive polling (seed 1): the window starts at 0, grows from 4 us when blocking would
//! have been short, shrinks when the loop blocked longer than `max_ns`; poll mode ends only
//! when the loop really is about to block.

mod common;

use common::EventNotifier;
use corral_aio::{co_sleep, AioContext, FdHandlers, PollParams, Timer};
use corral_runtime::Coroutine;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn poll_window_grows_shrinks_and_poll_mode_ends_only_before_blocking() {
    // max_ns is large so that a preempted iteration on a loaded machine does not shrink it.
    let ctx = AioContext::with_poll_params(PollParams {
        max_ns: 1_000_000_000,
        grow: 2,
        shrink: 2,
    })
    .unwrap();
    assert_eq!(ctx.poll_ns(), 0, "starts at 0");
    let e = EventNotifier::new(false);
    let work = Arc::new(AtomicBool::new(false));
    let (begins, ends, readies) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (e2, w1, w2, b, en, r) = (
        e.clone(),
        work.clone(),
        work.clone(),
        begins.clone(),
        ends.clone(),
        readies.clone(),
    );
    ctx.set_fd_handler(
        e.fd(),
        FdHandlers::new()
            .read(move || {
                e2.test_and_clear();
            })
            .poll(
                move || w1.load(SeqCst),
                move || {
                    w2.store(false, SeqCst);
                    r.fetch_add(1, SeqCst);
                },
            )
            .poll_begin_end(
                move || {
                    b.fetch_add(1, SeqCst);
                },
                move || {
                    en.fetch_add(1, SeqCst);
                },
            ),
    )
    .unwrap();
    // The first iteration (short: nothing to wait for) opens the window at 4 us.
    ctx.poll(false);
    assert_eq!(ctx.poll_ns(), 4_000);
    while ctx.poll(false) {}

    // Short blocks (the fd is ready at once) keep or double it, up to max_ns.
    for _ in 0..3 {
        e.set();
        assert!(ctx.poll(true));
        let ns = ctx.poll_ns();
        assert!(ns >= 4_000 && (ns / 4_000).is_power_of_two(), "{ns}");
    }

    // Busy polling finds the work without a syscall.
    let before = ctx.stats();
    work.store(true, SeqCst);
    assert!(ctx.poll(true));
    assert_eq!(readies.load(SeqCst), 1);
    assert_eq!(ctx.stats().poll_successes, before.poll_successes + 1);
    assert_eq!(
        ctx.stats().blocking_waits,
        before.blocking_waits,
        "no epoll_wait needed"
    );
    assert!(begins.load(SeqCst) >= 1);
    let ends_before = ends.load(SeqCst);

    // Not about to block: non-blocking polls and a blocking poll with a bottom half pending
    // keep poll mode on.
    assert!(!ctx.poll(false));
    ctx.bh_schedule_oneshot(|| {});
    assert!(ctx.poll(true));
    assert_eq!(
        ends.load(SeqCst),
        ends_before,
        "poll mode ended although the loop did not block"
    );

    // Really about to block (a 20 ms timer, above a max_ns of 1 ms now): poll mode ends, and
    // the long block shrinks the window.
    ctx.set_poll_params(PollParams {
        max_ns: 1_000_000,
        grow: 2,
        shrink: 2,
    });
    assert_eq!(ctx.poll_ns(), 0, "new parameters reset the window");
    ctx.poll(false);
    let fired = Arc::new(AtomicBool::new(false));
    let f2 = fired.clone();
    let t = Timer::new(&ctx, move || f2.store(true, SeqCst));
    t.arm_after(Duration::from_millis(20));
    while !fired.load(SeqCst) {
        ctx.poll(true);
    }
    assert!(
        ends.load(SeqCst) > ends_before,
        "poll mode must end before blocking"
    );
    assert!(
        ctx.poll_ns() < 4_000,
        "a block longer than max_ns shrinks the window"
    );
    ctx.remove_fd_handler(e.fd()).unwrap();
}

/// co_sleep: a coroutine sleeps at least the requested time on its context's timers.
#[test]
fn co_sleep_sleeps_at_least_the_duration() {
    let ctx = AioContext::new().unwrap();
    let woke = Arc::new(std::sync::Mutex::new(None));
    let w2 = woke.clone();
    let start = Instant::now();
    let co = Coroutine::new(move || {
        co_sleep(Duration::from_millis(15));
        *w2.lock().unwrap() = Some(Instant::now());
    });
    ctx.co_enter(co);
    assert!(!co.is_terminated());
    while !co.is_terminated() {
        ctx.poll(true);
    }
    let woke = woke.lock().unwrap().unwrap();
    assert!(woke - start >= Duration::from_millis(15), "woke early");
}
