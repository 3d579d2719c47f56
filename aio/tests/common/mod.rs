//! Helpers shared by the aio integration tests.
#![allow(dead_code, unreachable_pub)]

use corral_aio::AioContext;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An eventfd, like QEMU's EventNotifier.
#[derive(Debug)]
pub struct EventNotifier {
    fd: OwnedFd,
}

impl EventNotifier {
    pub fn new(set: bool) -> Arc<EventNotifier> {
        // SAFETY: plain eventfd(2) call.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let e = EventNotifier { fd };
        if set {
            e.set();
        }
        Arc::new(e)
    }
    pub fn set(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our fd.
        let r = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
        assert_eq!(r, 8);
    }
    pub fn test_and_clear(&self) -> bool {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our fd.
        let r = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
        r == 8
    }
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// QEMU's `while (aio_poll(ctx, false));`
pub fn wait_for_aio(ctx: &AioContext) {
    while ctx.poll(false) {}
}

/// Aborts the process with a message if not disarmed within `limit`: a hang becomes a
/// failure, never a stuck CI job.
pub struct Watchdog {
    done: Arc<AtomicBool>,
}

impl Watchdog {
    pub fn new(what: &'static str, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let step = Duration::from_millis(50);
            let mut waited = Duration::ZERO;
            while waited < limit {
                if d.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(step);
                waited += step;
            }
            eprintln!(
                "WATCHDOG: {what} did not finish within {limit:?}: aborting (a lost wake-up?)"
            );
            std::process::abort();
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
}

/// A context polled by its own thread until `stop` (QEMU's iothread).
pub struct IoThread {
    pub ctx: Arc<AioContext>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IoThread {
    pub fn new() -> IoThread {
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            // Created here, so this thread is its home.
            let ctx = AioContext::new().unwrap();
            tx.send(ctx.clone()).unwrap();
            while !s.load(Ordering::Acquire) {
                ctx.poll(true);
            }
            // Finish what is queued.
            while ctx.poll(false) {}
        });
        let ctx = rx.recv().unwrap();
        IoThread {
            ctx,
            stop,
            thread: Some(thread),
        }
    }

    pub fn join(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(t) = self.thread.take() {
            let s = self.stop.clone();
            // Set the flag from a bottom half, so the loop sees it right after waking.
            self.ctx
                .bh_schedule_oneshot(move || s.store(true, Ordering::Release));
            t.join().expect("iothread panicked");
        }
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
