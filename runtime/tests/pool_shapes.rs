//! A create gets a stack of the size it asked for: pooled bodies made for
//! another size are dropped (and counted), not handed out. Own test binary:
//! it reads the process-wide pool counters.

use std::hint::black_box;

use corral_runtime::{pool_stats, yield_now, Builder, Coroutine};

/// Uses more than `frames` KiB of stack.
#[inline(never)]
fn deep(frames: usize) -> u8 {
    let page = black_box([frames as u8; 1024]);
    if frames == 0 {
        page[0]
    } else {
        deep(frames - 1).wrapping_add(page[1023])
    }
}

#[test]
fn a_create_gets_a_stack_of_the_size_it_asked_for() {
    let small = Builder::new().stack_size(64 * 1024);
    let big = Builder::new().stack_size(1024 * 1024);
    // Four small bodies alive at once, then all back: the thread's slot
    // keeps one, its pool list the others.
    let cos: Vec<Coroutine> = (0..4).map(|_| small.spawn(yield_now)).collect();
    cos.iter().for_each(Coroutine::enter);
    cos.iter().for_each(Coroutine::enter);
    let before = pool_stats();
    // 200 frames of over 1 KiB: a small body would overflow (and abort the
    // test), a big one holds them even in a debug build.
    let co = big.spawn(|| {
        black_box(deep(200));
    });
    co.enter();
    assert!(co.is_terminated());
    let after = pool_stats();
    assert!(after.created > before.created, "{before:?} -> {after:?}");
    assert!(
        after.dropped > before.dropped,
        "a small body was offered and dropped: {before:?} -> {after:?}"
    );
    assert_eq!(after.in_use(), 0);
}
