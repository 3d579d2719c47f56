//! The block backends through both faces: data round trips (buffered and O_DIRECT),
//! short reads, bad input, EIO injection and drain, on every backend the kernel allows.

mod common;

use common::{backends, block_on, is_null, open, pattern, temp_file, Aligned};
use corral::aio::block::{errno_of, fault::FaultConfig, BackendKind, BlockDevice, OpenOptions};
use corral::aio::AioContext;
use corral::runtime::Coroutine;
use std::io::{IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Writes through one face and reads back through the other, both ways.
fn roundtrip(direct: bool) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ctx = AioContext::new().unwrap();
    for kind in backends(&ctx) {
        let path = temp_file(dir.path(), &format!("{kind}-{direct}"), 1 << 16);
        let Some(dev) = open(&ctx, &path, kind, direct) else {
            return;
        };
        let len = 8192;
        // Coroutine face writes (vectored), AIO face reads.
        let data = pattern(1, len);
        let (a, b) = (Aligned::new(&data[..4096]), Aligned::new(&data[4096..]));
        let d = dev.clone();
        let written = block_on(&ctx, move || {
            d.co_pwritev(4096, &[IoSlice::new(a.as_ref()), IoSlice::new(b.as_ref())])
        });
        assert_eq!(written.unwrap(), len, "{kind}");
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        dev.aio_pread(4096, Aligned::new(&vec![0; len]), move |buf, res| {
            *g.lock().unwrap() = Some((buf, res))
        });
        dev.drain().unwrap();
        let (buf, res) = got.lock().unwrap().take().expect("callback ran");
        assert_eq!(res.unwrap(), len, "{kind}");
        if !is_null(kind) {
            assert_eq!(
                buf.as_ref(),
                &data[..],
                "{kind}: AIO read of a coroutine write"
            );
        }
        // AIO face writes, coroutine face reads (vectored).
        let data = pattern(7, len);
        let done = Arc::new(AtomicUsize::new(0));
        let d2 = done.clone();
        dev.aio_pwritev(
            16384,
            vec![Aligned::new(&data[..4096]), Aligned::new(&data[4096..])],
            move |_, res| {
                assert_eq!(res.unwrap(), 8192);
                d2.fetch_add(1, Ordering::SeqCst);
            },
        );
        dev.drain().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 1);
        let d = dev.clone();
        let back = block_on(&ctx, move || {
            let (mut a, mut b) = (Aligned::new(&[0; 4096]), Aligned::new(&[0; 4096]));
            let n = d
                .co_preadv(
                    16384,
                    &mut [IoSliceMut::new(a.as_mut()), IoSliceMut::new(b.as_mut())],
                )
                .unwrap();
            d.co_flush().unwrap();
            (n, [a.as_ref(), b.as_ref()].concat())
        });
        assert_eq!(back.0, len, "{kind}");
        if !is_null(kind) {
            assert_eq!(back.1, data, "{kind}: coroutine read of an AIO write");
        }
    }
}

#[test]
fn roundtrip_buffered() {
    roundtrip(false);
}

#[test]
fn roundtrip_direct() {
    roundtrip(true);
}

#[test]
fn short_read_at_eof() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ctx = AioContext::new().unwrap();
    for kind in backends(&ctx).into_iter().filter(|k| !is_null(*k)) {
        let path = dir.path().join(format!("eof-{kind}"));
        std::fs::write(&path, pattern(3, 10_000)).unwrap();
        let dev = open(&ctx, &path, kind, false).unwrap();
        let d = dev.clone();
        let (tail, past) = block_on(&ctx, move || {
            let mut buf = vec![0u8; 4096];
            let tail = d.co_pread(8192, &mut buf).unwrap();
            assert_eq!(&buf[..tail], &pattern(3, 10_000)[8192..]);
            (tail, d.co_pread(20_000, &mut buf).unwrap())
        });
        assert_eq!((tail, past), (10_000 - 8192, 0), "{kind}");
    }
}

#[test]
fn bad_input_is_refused_with_its_errno() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ctx = AioContext::new().unwrap();
    for kind in backends(&ctx) {
        let opts = OpenOptions {
            backend: kind,
            ..OpenOptions::default()
        };
        // Bad fd: refused when the device is made.
        let err = BlockDevice::from_raw_fd(&ctx, 12345, &opts).unwrap_err();
        assert_eq!(errno_of(&err), Some(libc::EBADF), "{kind}: {err}");
        let path = temp_file(dir.path(), &format!("bad-{kind}"), 1 << 16);
        // Writes to a read-only file: coroutine face and AIO face.
        let ro = BlockDevice::open(&ctx, &path, &opts).unwrap();
        let d = ro.clone();
        let err = block_on(&ctx, move || d.co_pwrite(0, b"x")).unwrap_err();
        assert_eq!(errno_of(&err), Some(libc::EBADF), "{kind}: {err}");
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        ro.aio_pwrite(0, vec![1u8; 16], move |_, res| {
            *s.lock().unwrap() = Some(res.map_err(|e| errno_of(&e)))
        });
        ro.drain().unwrap();
        assert_eq!(
            seen.lock().unwrap().take(),
            Some(Err(Some(libc::EBADF))),
            "{kind}"
        );
        // Offset/length out of range.
        let d = ro.clone();
        let err = block_on(&ctx, move || d.co_pread(u64::MAX - 100, &mut [0u8; 512])).unwrap_err();
        assert_eq!(errno_of(&err), Some(libc::EINVAL), "{kind}: {err}");
        // O_DIRECT: misaligned buffer, offset and length.
        let Some(direct) = open(&ctx, &path, kind, true) else {
            continue;
        };
        let d = direct.clone();
        let errs = block_on(&ctx, move || {
            let mut buf = Aligned::new(&[0; 8192]);
            let misaligned_buf = d.co_pread(0, &mut buf.as_mut()[1..4097]).unwrap_err();
            let misaligned_off = d.co_pread(512 + 1, &mut buf.as_mut()[..4096]).unwrap_err();
            let misaligned_len = d.co_pread(0, &mut buf.as_mut()[..4000]).unwrap_err();
            [misaligned_buf, misaligned_off, misaligned_len].map(|e| errno_of(&e))
        });
        assert_eq!(errs, [Some(libc::EINVAL); 3], "{kind}");
    }
}

#[test]
fn eio_injection_completes_every_request_once() {
    const REQUESTS: usize = if cfg!(miri) { 100 } else { 10_000 };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ctx = AioContext::new().unwrap();
    for kind in backends(&ctx) {
        let path = dir.path().join(format!("eio-{kind}"));
        let expected = Arc::new(pattern(5, 1 << 20));
        std::fs::write(&path, &expected[..]).unwrap();
        let fault = FaultConfig {
            fail_fraction: 0.1,
            ..FaultConfig::default()
        };
        let opts = OpenOptions {
            backend: kind,
            fault: Some(fault),
            ..OpenOptions::default()
        };
        let dev = BlockDevice::open(&ctx, &path, &opts).unwrap();
        let calls: Arc<Vec<AtomicUsize>> =
            Arc::new((0..REQUESTS).map(|_| AtomicUsize::new(0)).collect());
        let failed = Arc::new(AtomicUsize::new(0));
        for i in 0..REQUESTS {
            let (calls, failed, expected) = (calls.clone(), failed.clone(), expected.clone());
            let offset = (i % 256) as u64 * 4096;
            dev.aio_pread(offset, vec![0u8; 4096], move |buf, res| {
                calls[i].fetch_add(1, Ordering::SeqCst);
                match res {
                    Ok(n) => {
                        assert_eq!(n, 4096);
                        if !matches!(kind, BackendKind::Null | BackendKind::NullBh) {
                            assert_eq!(buf, expected[offset as usize..offset as usize + 4096]);
                        }
                    }
                    Err(err) => {
                        assert_eq!(errno_of(&err), Some(libc::EIO));
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            if i % 512 == 511 {
                dev.drain().unwrap();
            }
        }
        dev.drain().unwrap();
        assert!(
            calls.iter().all(|c| c.load(Ordering::SeqCst) == 1),
            "{kind}: a request completed twice or never"
        );
        let failed = failed.load(Ordering::SeqCst);
        assert!(
            (REQUESTS / 20..REQUESTS * 3 / 20).contains(&failed),
            "{kind}: {failed} of {REQUESTS} failed, expected ~10%"
        );
    }
}

#[test]
fn drain_waits_for_requests_in_flight() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ctx = AioContext::new().unwrap();
    for kind in backends(&ctx) {
        let path = temp_file(dir.path(), &format!("drain-{kind}"), 1 << 20);
        let opts = OpenOptions {
            backend: kind,
            write: true,
            ..OpenOptions::default()
        };
        let dev = BlockDevice::open(&ctx, &path, &opts).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        // Coroutine-face requests in flight too: 8 coroutines, each writing then reading.
        for c in 0..8u64 {
            let (d, done) = (dev.clone(), done.clone());
            let co = Coroutine::new(move || {
                assert_eq!(d.co_pwrite(c * 4096, &[c as u8; 4096]).unwrap(), 4096);
                assert_eq!(d.co_pread(c * 4096, &mut [0u8; 4096]).unwrap(), 4096);
                done.fetch_add(1, Ordering::SeqCst);
            });
            ctx.co_enter(co);
        }
        for i in 0..256u64 {
            let done = done.clone();
            dev.aio_pread(i * 4096, vec![0u8; 4096], move |_, res| {
                assert_eq!(res.unwrap(), 4096);
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert!(dev.in_flight() > 0, "{kind}");
        dev.drain().unwrap();
        assert_eq!(dev.in_flight(), 0, "{kind}");
        assert_eq!(done.load(Ordering::SeqCst), 256 + 8, "{kind}");
    }
}

#[test]
fn coroutine_face_outside_a_coroutine_is_an_error() {
    let ctx = AioContext::new().unwrap();
    let dev = BlockDevice::open(
        &ctx,
        "/dev/null",
        &OpenOptions {
            backend: BackendKind::Null,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let err = dev.co_pread(0, &mut [0u8; 16]).unwrap_err();
    assert_eq!(errno_of(&err), Some(libc::EPERM));
}

#[test]
fn plugged_requests_go_in_one_submission() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ctx = AioContext::new().unwrap();
    for kind in [BackendKind::LinuxAio, BackendKind::IoUring] {
        if let Err(err) = kind.create(&ctx) {
            eprintln!("!!! SKIPPED backend {kind}: the kernel refuses it ({err})");
            continue;
        }
        let path = temp_file(dir.path(), &format!("plug-{kind}"), 1 << 20);
        let opts = OpenOptions {
            backend: kind,
            ..OpenOptions::default()
        };
        let dev = BlockDevice::open(&ctx, &path, &opts).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let before = dev.backend_stats();
        let d = dev.clone();
        let done2 = done.clone();
        block_on(&ctx, move || {
            d.plug();
            for i in 0..32u64 {
                let (d, done) = (d.clone(), done2.clone());
                // Nested: each submits (queued while plugged) and yields back here.
                Coroutine::new(move || {
                    assert_eq!(d.co_pread(i * 4096, &mut [0u8; 4096]).unwrap(), 4096);
                    done.fetch_add(1, Ordering::SeqCst);
                })
                .enter();
            }
            assert!(d.in_flight() >= 32);
            // Completions found by this submit wake the others later, never nested in us.
            d.unplug();
        });
        dev.drain().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 32, "{kind}");
        let stats = dev.backend_stats();
        assert_eq!(stats.submitted - before.submitted, 32, "{kind}");
        assert_eq!(
            stats.submit_calls - before.submit_calls,
            1,
            "{kind}: one system call for the batch"
        );
    }
}

#[test]
fn more_requests_than_the_rings_hold() {
    const REQUESTS: u64 = if cfg!(miri) { 100 } else { 3000 };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ctx = AioContext::new().unwrap();
    for kind in backends(&ctx) {
        let path = temp_file(dir.path(), &format!("many-{kind}"), 1 << 20);
        let opts = OpenOptions {
            backend: kind,
            ..OpenOptions::default()
        };
        let dev = BlockDevice::open(&ctx, &path, &opts).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..REQUESTS {
            let done = done.clone();
            dev.aio_pread((i % 256) * 4096, vec![0u8; 4096], move |_, res| {
                assert_eq!(res.unwrap(), 4096);
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        dev.drain().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), REQUESTS as usize, "{kind}");
    }
}

/// A null device whose every request the fault injector delays by 2 ms.
fn delayed_null_device(ctx: &Arc<AioContext>) -> BlockDevice {
    let fault = FaultConfig {
        delay: Some(std::time::Duration::from_millis(2)),
        ..FaultConfig::default()
    };
    let opts = OpenOptions {
        backend: BackendKind::Null,
        fault: Some(fault),
        ..OpenOptions::default()
    };
    BlockDevice::open(ctx, "/dev/null", &opts).unwrap()
}

#[test]
fn delayed_requests_are_waited_for_by_drain() {
    let ctx = AioContext::new().unwrap();
    let dev = delayed_null_device(&ctx);
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..16u64 {
        let done = done.clone();
        dev.aio_pread(i * 512, vec![0u8; 512], move |_, res| {
            assert_eq!(res.unwrap(), 512);
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    dev.drain().unwrap();
    assert_eq!((done.load(Ordering::SeqCst), dev.in_flight()), (16, 0));
}

#[test]
fn drain_waits_for_a_coroutine_request_delayed_inside_submit() {
    let ctx = AioContext::new().unwrap();
    let dev = delayed_null_device(&ctx);
    let done = Arc::new(AtomicUsize::new(0));
    let (d, flag) = (dev.clone(), done.clone());
    ctx.co_enter(Coroutine::new(move || {
        assert_eq!(d.co_pread(0, &mut [0u8; 64]).unwrap(), 64);
        flag.fetch_add(1, Ordering::SeqCst);
    }));
    assert!(dev.in_flight() > 0);
    dev.drain().unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panicking_callback_loses_no_other_completion() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ctx = AioContext::new().unwrap();
    for kind in backends(&ctx) {
        let path = temp_file(dir.path(), &format!("panic-{kind}"), 1 << 16);
        let opts = OpenOptions {
            backend: kind,
            ..OpenOptions::default()
        };
        let dev = BlockDevice::open(&ctx, &path, &opts).unwrap();
        let calls: Arc<Vec<AtomicUsize>> = Arc::new((0..16).map(|_| AtomicUsize::new(0)).collect());
        for i in 0..16usize {
            let calls = calls.clone();
            dev.aio_pread(i as u64 * 512, vec![0u8; 512], move |_, res| {
                calls[i].fetch_add(1, Ordering::SeqCst);
                assert_eq!(res.unwrap(), 512);
                if i == 5 {
                    panic!("callback 5 fails on purpose");
                }
            });
        }
        // The panic resurfaces from the event loop; a second drain finishes the rest.
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dev.drain()));
        assert!(first.is_err(), "{kind}: the callback's panic was swallowed");
        dev.drain().unwrap();
        assert!(
            calls.iter().all(|c| c.load(Ordering::SeqCst) == 1),
            "{kind}: a completion was lost or repeated"
        );
        assert_eq!(dev.in_flight(), 0, "{kind}");
    }
}

/// AIO-face requests run in worker coroutines that take queued requests in order; a
/// callback too big to queue inline gets a coroutine of its own. Both kinds, mixed and
/// chained (each callback submits the next), complete exactly once and in order.
#[test]
fn aio_requests_small_and_big_closures_complete_in_order() {
    let ctx = AioContext::new().unwrap();
    for kind in [BackendKind::Null, BackendKind::NullBh] {
        let opts = OpenOptions {
            backend: kind,
            ..OpenOptions::default()
        };
        let dev = BlockDevice::open(&ctx, "/dev/null", &opts).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..200u64 {
            let order = order.clone();
            if i % 3 == 0 {
                let big = [i; 32]; // 256 bytes: more than a job stores inline
                dev.aio_pread(i * 512, vec![0u8; 512], move |_, res| {
                    assert_eq!(res.unwrap(), 512);
                    order.lock().unwrap().push(big[31]);
                });
            } else {
                let d = dev.clone();
                dev.aio_pread(i * 512, vec![0u8; 512], move |buf, res| {
                    assert_eq!(res.unwrap(), 512);
                    order.lock().unwrap().push(i);
                    // A chained request, started after this callback returned.
                    d.aio_pread(0, buf, |_, res| assert_eq!(res.unwrap(), 512));
                });
            }
        }
        dev.drain().unwrap();
        let order = order.lock().unwrap();
        assert_eq!(*order, (0..200).collect::<Vec<_>>(), "{kind}");
        assert_eq!(dev.in_flight(), 0, "{kind}");
    }
}

/// A chain of AIO-face requests that complete inline (each callback submits the next, on
/// the inline null backend) never runs to its end inside one event-loop iteration: the
/// worker running it hands the rest back to the loop after a bounded number of requests,
/// so a bottom half scheduled meanwhile gets its turn many times during the chain.
#[test]
fn an_inline_request_chain_returns_to_the_event_loop() {
    fn chain(dev: BlockDevice, left: Arc<AtomicUsize>) {
        let d = dev.clone();
        dev.aio_pread(0, vec![0u8; 512], move |_, res| {
            assert_eq!(res.unwrap(), 512);
            if left.fetch_sub(1, Ordering::Relaxed) > 1 {
                chain(d, left);
            }
        });
    }
    let ctx = AioContext::new().unwrap();
    let opts = OpenOptions {
        backend: BackendKind::Null,
        ..OpenOptions::default()
    };
    let dev = BlockDevice::open(&ctx, "/dev/null", &opts).unwrap();
    const CHAIN: usize = 4096;
    let left = Arc::new(AtomicUsize::new(CHAIN));
    // A ticker: runs once per loop iteration while the chain is running.
    let ticks = Arc::new(AtomicUsize::new(0));
    let bh_slot = Arc::new(Mutex::new(None::<corral::aio::Bh>));
    let (t, l, s) = (ticks.clone(), left.clone(), bh_slot.clone());
    let ticker = ctx.bh_new(move || {
        t.fetch_add(1, Ordering::Relaxed);
        if l.load(Ordering::Relaxed) > 0 {
            if let Some(bh) = &*s.lock().unwrap() {
                bh.schedule();
            }
        }
    });
    *bh_slot.lock().unwrap() = Some(ticker.clone());
    ticker.schedule();
    chain(dev.clone(), left.clone());
    dev.drain().unwrap();
    assert_eq!(left.load(Ordering::Relaxed), 0);
    let ticks = ticks.load(Ordering::Relaxed);
    assert!(
        ticks >= CHAIN / 64,
        "the event loop turned only {ticks} times during a chain of {CHAIN} inline requests"
    );
    bh_slot.lock().unwrap().take();
    ticker.delete();
}
