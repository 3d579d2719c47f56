//! 100,000 coroutines alive at once on the default guard kind, all resumed
//! to completion, with exact pool counters (own test binary).

use corral_runtime::{install_supported, live_stacks, pool_stats, yield_now, Coroutine, GuardKind};

#[test]
fn hundred_thousand_live_coroutines() {
    if GuardKind::probed() != GuardKind::Install {
        eprintln!(
            "SKIPPED hundred_thousand_live_coroutines: this kernel has no MADV_GUARD_INSTALL \
             (Linux 6.13+), so the default guard kind is mprotect and 100,000 stacks would need \
             200,000 of vm.max_map_count's mappings (install_supported() = {})",
            install_supported()
        );
        return;
    }
    let n: u64 = if cfg!(miri) { 100 } else { 100_000 };
    let before = pool_stats();
    let maps_before = corral_runtime::map_count().unwrap();
    let cos: Vec<Coroutine> = (0..n)
        .map(|_| {
            let co = Coroutine::try_new(yield_now).expect("stack refused");
            co.enter();
            co
        })
        .collect();
    let mid = pool_stats();
    assert_eq!(
        (mid.created - before.created) + (mid.reused - before.reused),
        n
    );
    assert_eq!(mid.in_use(), n, "every body is in a coroutine's hands");
    assert!(live_stacks() as u64 >= n);
    let maps_added = corral_runtime::map_count().unwrap() as i64 - maps_before as i64;
    assert!(
        maps_added < 100,
        "installed guards should merge stacks; {maps_added} mappings added"
    );
    assert!(cos.iter().all(|co| !co.is_terminated() && !co.entered()));

    cos.iter().for_each(Coroutine::enter);
    assert!(cos.iter().all(Coroutine::is_terminated));
    let after = pool_stats();
    assert_eq!(
        after.in_use(),
        0,
        "every body is back in the pool or dropped: {after:?}"
    );
    assert_eq!(after.pooled + after.dropped, after.created);
    assert_eq!(
        after.created + after.reused - before.created - before.reused,
        n
    );
}
