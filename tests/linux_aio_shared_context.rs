//! Two linux-aio devices on one `AioContext`: one lends the context its `io_getevents`
//! to sleep in, the other signals an eventfd per request; neither is ever missed.

mod common;

use common::{backends, open, pattern, temp_file, Aligned};
use corral::aio::block::BackendKind;
use corral::aio::{AioContext, Timer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Two linux-aio devices on one context: the first lends the context its
/// `io_getevents` to sleep in, the second signals an eventfd per request. The context
/// must wake for the second's completions whether it sleeps in the first's wait (both
/// busy) or in `epoll_wait` (only the second busy).
#[test]
fn two_linux_aio_devices_on_one_context_both_complete() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ctx = AioContext::new().unwrap();
    if !backends(&ctx).contains(&BackendKind::LinuxAio) {
        return;
    }
    let mut devs = Vec::new();
    for name in ["first", "second"] {
        let path = temp_file(dir.path(), name, 1 << 20);
        let Some(dev) = open(&ctx, &path, BackendKind::LinuxAio, true) else {
            return;
        };
        devs.push(dev);
    }
    let blocks = 64u64;
    for (seed, dev) in devs.iter().enumerate() {
        for i in 0..blocks {
            let data = Aligned::new(&pattern(seed as u8 + i as u8, 4096));
            dev.aio_pwrite(i * 4096, data, |_, res| assert_eq!(res.unwrap(), 4096));
        }
        dev.drain().unwrap();
    }
    // Reads in flight on both devices, then on the second alone.
    for busy in [&devs[..], &devs[1..]] {
        let checked = Arc::new(AtomicUsize::new(0));
        for dev in busy {
            let seed = if std::ptr::eq(dev, &devs[0]) { 0 } else { 1 };
            for i in 0..blocks {
                let checked = checked.clone();
                dev.aio_pread(i * 4096, Aligned::new(&[0; 4096]), move |buf, res| {
                    assert_eq!(res.unwrap(), 4096);
                    assert_eq!(buf.as_ref(), &pattern(seed + i as u8, 4096)[..]);
                    checked.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
        let want = busy.len() * blocks as usize;
        // A backstop timer ends any sleep, so a missed wake-up fails instead of hanging.
        let backstop = Timer::new(&ctx, || {});
        let start = Instant::now();
        while checked.load(Ordering::SeqCst) < want && start.elapsed() < Duration::from_secs(5) {
            if !backstop.is_pending() {
                backstop.arm_after(Duration::from_secs(1));
            }
            ctx.poll(true);
        }
        assert_eq!(
            checked.load(Ordering::SeqCst),
            want,
            "completions were missed"
        );
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "woken only by the backstop ({took:?})"
        );
    }
}
