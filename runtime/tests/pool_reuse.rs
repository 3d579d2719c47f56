//! Pool counters prove bodies are reused, not created (own test binary so
//! no other test moves the counters).

use corral_runtime::{pool_stats, yield_now, Coroutine};

#[test]
fn sequential_coroutines_reuse_one_body() {
    const N: u64 = 1000;
    let before = pool_stats();
    for _ in 0..N {
        let co = Coroutine::new(|| {});
        co.enter();
        assert!(co.is_terminated());
    }
    let after = pool_stats();
    assert_eq!(
        after.created - before.created,
        1,
        "only the first coroutine maps a stack"
    );
    assert_eq!(after.reused - before.reused, N - 1);
    assert_eq!(after.in_use(), 0);

    // Eight coroutines alive at once need eight bodies; afterwards all are pooled.
    let before = pool_stats();
    let cos: Vec<Coroutine> = (0..8).map(|_| Coroutine::new(yield_now)).collect();
    cos.iter().for_each(Coroutine::enter);
    assert_eq!(pool_stats().in_use(), 8);
    cos.iter().for_each(Coroutine::enter);
    let after = pool_stats();
    assert_eq!(
        (after.created - before.created) + (after.reused - before.reused),
        8
    );
    assert_eq!(after.in_use(), 0);
    assert!(after.pooled >= 8);
}
