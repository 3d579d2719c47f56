//! Parity with QEMU's tests/unit/test-nested-aio-poll.c: poll handlers are not re-entered by
//! a nested poll.

mod common;

use common::EventNotifier;
use corral_aio::{AioContext, FdHandlers, PollParams};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Weak};

#[test]
fn poll_handlers_not_reentered_by_nested_poll() {
    let ctx = AioContext::with_poll_params(PollParams {
        max_ns: 1_000_000,
        grow: 2,
        shrink: 2,
    })
    .unwrap();
    let poll_notifier = EventNotifier::new(true);
    let dummy = EventNotifier::new(false);
    let in_ready = Arc::new(AtomicBool::new(false));
    let ready_calls = Arc::new(AtomicUsize::new(0));
    let dummy_reads = Arc::new(AtomicUsize::new(0));
    let weak: Weak<AioContext> = Arc::downgrade(&ctx);

    let (pn, d) = (poll_notifier.clone(), dummy.clone());
    let (ir, rc) = (in_ready.clone(), ready_calls.clone());
    let w = weak.clone();
    ctx.set_fd_handler(
        poll_notifier.fd(),
        FdHandlers::new()
            .read(move || {
                pn.test_and_clear();
            })
            // Always has work: a nested poll that polled it would re-enter io_poll_ready.
            .poll(
                || true,
                move || {
                    assert!(!ir.swap(true, SeqCst), "io_poll_ready re-entered");
                    rc.fetch_add(1, SeqCst);
                    d.set();
                    // The nested poll must make progress through the dummy notifier only.
                    let ctx = w.upgrade().unwrap();
                    assert!(ctx.poll(true));
                    ir.store(false, SeqCst);
                },
            ),
    )
    .unwrap();
    let (d2, dr) = (dummy.clone(), dummy_reads.clone());
    ctx.set_fd_handler(
        dummy.fd(),
        FdHandlers::new()
            .read(move || {
                d2.test_and_clear();
                dr.fetch_add(1, SeqCst);
            })
            .poll(|| false, || unreachable!("dummy is never poll-ready")),
    )
    .unwrap();

    // Consume the notify() of set_fd_handler (a wake-up is not progress).
    while ctx.poll(false) {}
    // The first iteration runs the read handler and starts adaptive polling; the following
    // ones find the fd through its poll function and run io_poll_ready.
    let mut rounds = 0;
    while ready_calls.load(SeqCst) < 3 {
        assert!(ctx.poll(true));
        rounds += 1;
        assert!(rounds < 10_000, "poll mode never started");
    }
    assert_eq!(
        dummy_reads.load(SeqCst),
        ready_calls.load(SeqCst),
        "each nested poll ran the dummy once"
    );
    assert!(ctx.stats().poll_successes >= 3);
    assert!(ctx.poll_ns() > 0);
    ctx.remove_fd_handler(poll_notifier.fd()).unwrap();
    ctx.remove_fd_handler(dummy.fd()).unwrap();
}
