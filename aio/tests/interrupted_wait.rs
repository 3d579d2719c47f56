//! A blocking wait that a signal interrupts polls the poll handlers before it returns.
//!
//! io_uring posts completions from task work that interrupts `epoll_wait` (EINTR) and
//! marks its fd ready only after the call returned; without this, every wake-up of an
//! io-uring device cost a second `epoll_wait`. A signal stands in for the task work here.

use corral_aio::{AioContext, FdHandlers};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

extern "C" fn ignore(_: libc::c_int) {}

#[test]
fn an_interrupted_wait_runs_the_poll_handlers() {
    // SAFETY:
    // * `ignore` is async-signal-safe (it does nothing); no SA_RESTART, so a blocked
    //   epoll_wait returns EINTR. This test binary has no other use for SIGUSR1.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore as *const () as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    // SAFETY: plain call; the fd is owned below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(efd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: `eventfd` just returned this fd, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(efd) };

    let ctx = AioContext::new().unwrap();
    let (work, ran) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (w, r) = (work.clone(), ran.clone());
    ctx.set_fd_handler(
        fd.as_raw_fd(),
        FdHandlers::new()
            .read(|| panic!("the eventfd is never written"))
            .poll(
                move || w.load(Ordering::Acquire),
                move || r.store(true, Ordering::Release),
            ),
    )
    .unwrap();

    while ctx.poll(false) {} // nothing else pending: the next poll blocks

    // Work appears that the fd does not report, then a signal interrupts the wait; the
    // signal is repeated until the wait returns, in case one lands before the wait began.
    // SAFETY: `pthread_self` has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let done = Arc::new(AtomicBool::new(false));
    let (work2, done2) = (work.clone(), done.clone());
    let signaller = std::thread::spawn(move || {
        while !done2.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
            work2.store(true, Ordering::Release);
            // SAFETY: `me` is the test thread, alive until `done` is set and this thread joined.
            unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
        }
    });
    let progress = ctx.poll(true);
    done.store(true, Ordering::Release);
    signaller.join().unwrap();
    assert!(
        ran.load(Ordering::Acquire),
        "the interrupted wait returned without polling the handler that had work"
    );
    assert!(progress, "poll ran a handler but reported no progress");
    ctx.remove_fd_handler(fd.as_raw_fd()).unwrap();
}
