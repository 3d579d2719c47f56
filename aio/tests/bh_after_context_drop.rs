//! A bottom half that outlives its context: scheduling or deleting it after the context was
//! dropped never runs the callback and never leaks it (drops are counted).

use corral_aio::AioContext;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// Counts its own drops.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A bottom half whose callback owns a `DropCount` and counts its runs.
fn counted_bh(ctx: &AioContext) -> (corral_aio::Bh, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let owned = DropCount(drops.clone());
    let r = runs.clone();
    let bh = ctx.bh_new(move || {
        let _keep = &owned;
        r.fetch_add(1, SeqCst);
    });
    (bh, drops, runs)
}

#[test]
fn schedule_after_context_drop_frees_the_callback_with_the_last_handle() {
    let ctx = AioContext::new().unwrap();
    let (bh, drops, runs) = counted_bh(&ctx);
    bh.schedule();
    assert!(ctx.poll(false));
    assert_eq!(runs.load(SeqCst), 1);
    drop(ctx);
    bh.schedule();
    assert!(
        !bh.is_scheduled(),
        "a bottom half of a dropped context is never scheduled"
    );
    let again = bh.clone();
    again.schedule();
    drop(again);
    assert_eq!(drops.load(SeqCst), 0, "a live handle keeps the callback");
    drop(bh);
    assert_eq!(drops.load(SeqCst), 1, "the last handle frees the callback");
    assert_eq!(
        runs.load(SeqCst),
        1,
        "it never ran after the context went away"
    );
}

#[test]
fn scheduled_when_the_context_drops_frees_the_callback() {
    let ctx = AioContext::new().unwrap();
    let (bh, drops, runs) = counted_bh(&ctx);
    bh.schedule();
    drop(ctx);
    assert_eq!(drops.load(SeqCst), 0);
    drop(bh);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(runs.load(SeqCst), 0);
}

#[test]
fn delete_after_context_drop_frees_the_callback_at_once() {
    let ctx = AioContext::new().unwrap();
    let (bh, drops, runs) = counted_bh(&ctx);
    drop(ctx);
    bh.delete();
    assert_eq!(
        drops.load(SeqCst),
        1,
        "delete drops the callback even without a context"
    );
    bh.schedule();
    drop(bh);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(runs.load(SeqCst), 0);
}

/// Other threads keep scheduling while the context is dropped: whichever side takes each
/// push, the callback is freed exactly once with the last handle.
#[test]
fn schedules_racing_the_context_drop_leak_nothing() {
    let rounds = if cfg!(miri) { 4 } else { 200 };
    for _ in 0..rounds {
        let ctx = AioContext::new().unwrap();
        let (bh, drops, _runs) = counted_bh(&ctx);
        let dropped = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (bh, dropped) = (bh.clone(), dropped.clone());
                std::thread::spawn(move || {
                    let mut after = 0;
                    // Until a few schedules have certainly come after the drop.
                    while after < 50 {
                        if dropped.load(SeqCst) {
                            after += 1;
                        }
                        bh.schedule();
                    }
                })
            })
            .collect();
        ctx.poll(false);
        drop(ctx);
        dropped.store(true, SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(drops.load(SeqCst), 0);
        drop(bh);
        assert_eq!(
            drops.load(SeqCst),
            1,
            "callback freed exactly once, not leaked"
        );
    }
}
