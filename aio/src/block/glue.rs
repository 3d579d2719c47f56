//! The few points where the block layer touches coroutines and the event loop.
//!
//! Kept in one place so that the request path reads as plain logic elsewhere.

use corral_runtime::Coroutine;

/// Resumes the coroutine waiting for a completed request (QEMU's `aio_co_wake`).
///
/// * It is running (the completion was found inside its own submit): nothing to do, it
///   reads the result when submit returns.
/// * We are in the event loop, outside any coroutine (a poll or fd handler, a bottom
///   half): enter it directly, the cheapest wake there is.
/// * We are inside another coroutine (its submit reaped this completion): defer it to the
///   context, so that coroutine is not nested under an unrelated one.
pub(crate) fn wake(co: Coroutine) {
    if co.entered() {
        return;
    }
    if corral_runtime::in_coroutine() {
        // The completion runs on the device's context thread, inside that context's poll
        // or a coroutine of it: schedule the waiter there.
        match crate::current_context() {
            Some(ctx) => ctx.co_schedule(co),
            None => crate::co_wake(co),
        }
    } else {
        co.enter();
    }
}

/// Suspends the current coroutine until something enters it again.
pub(crate) fn suspend() {
    corral_runtime::yield_now();
}

/// The running coroutine, if any.
pub(crate) fn current() -> Option<Coroutine> {
    corral_runtime::current()
}

/// Registers `fd` with `ctx`: `read` when epoll reports it readable, `poll`/`poll_ready`
/// as its poll handler (adaptive polling checks the ring without a system call).
pub(crate) fn watch_fd(
    ctx: &crate::AioContext,
    fd: std::os::fd::RawFd,
    read: impl Fn() + Send + Sync + 'static,
    poll: impl Fn() -> bool + Send + Sync + 'static,
    poll_ready: impl Fn() + Send + Sync + 'static,
) -> std::io::Result<()> {
    ctx.set_fd_handler(
        fd,
        crate::FdHandlers::new().read(read).poll(poll, poll_ready),
    )
}

/// Removes what [`watch_fd`] registered.
pub(crate) fn unwatch_fd(ctx: &crate::AioContext, fd: std::os::fd::RawFd) {
    let _ = ctx.set_fd_handler(fd, crate::FdHandlers::new());
}
