//! A thread's one-body cache is handed back when the thread exits, and
//! coroutines that end during thread exit (in other thread-locals'
//! destructors, before or after the cache's own) still go back to the pool.
//! Own test binary so no other test moves the counters.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use corral_runtime::{pool_stats, Coroutine};

static RAN: AtomicUsize = AtomicUsize::new(0);

/// Runs one coroutine to its end when dropped.
struct RunOnDrop(Cell<bool>);

impl Drop for RunOnDrop {
    fn drop(&mut self) {
        let co = Coroutine::new(|| {
            RAN.fetch_add(1, Ordering::Relaxed);
        });
        co.enter();
        assert!(co.is_terminated());
    }
}

thread_local! {
    static EARLY: RunOnDrop = const { RunOnDrop(Cell::new(false)) };
    static LATE: RunOnDrop = const { RunOnDrop(Cell::new(false)) };
}

#[test]
fn thread_exit_hands_the_cached_body_back() {
    const N: usize = 100;
    let before = pool_stats();
    std::thread::spawn(|| {
        // Registered before the runtime's own thread-locals ...
        EARLY.with(|e| e.0.set(true));
        for _ in 0..N {
            Coroutine::new(|| {
                RAN.fetch_add(1, Ordering::Relaxed);
            })
            .enter();
        }
        // ... and after them.
        LATE.with(|e| e.0.set(true));
    })
    .join()
    .expect("thread ran");
    let after = pool_stats();
    assert_eq!(RAN.load(Ordering::Relaxed), N + 2, "every entry ran");
    let gets = (after.created - before.created) + (after.reused - before.reused);
    assert_eq!(gets, N as u64 + 2, "one body taken per coroutine");
    assert_eq!(after.in_use(), 0, "no body lost at thread exit: {after:?}");
    assert!(
        after.pooled >= 1,
        "the thread's bodies were pooled: {after:?}"
    );
}
