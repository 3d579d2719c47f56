//! The threads backend: blocking `preadv`/`pwritev`/`fdatasync` on the context's thread
//! pool; the completion comes back to the context through the pool's bottom half.
//!
//! The portable fallback (QEMU's `aio=threads`): it works on any file, at the cost of a
//! thread hand-off and a wake-up per request.

use super::request::{self, Op, Request};
use super::Backend;
use crate::AioContext;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// See the module documentation.
#[derive(Debug)]
pub struct ThreadsBackend {
    ctx: Arc<AioContext>,
    in_flight: Arc<AtomicUsize>,
}

impl ThreadsBackend {
    /// Uses `ctx`'s thread pool.
    pub fn new(ctx: &Arc<AioContext>) -> Self {
        ThreadsBackend {
            ctx: ctx.clone(),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// A request pointer crossing to a worker thread and back.
struct SendRequest(NonNull<Request>);

// SAFETY:
// * the worker only reads the request's plain fields and does the I/O into its buffers,
//   while the waiting coroutine is suspended and touches nothing; the completion, which
//   may free the request, runs back on the context thread after the worker finished.
unsafe impl Send for SendRequest {}

impl SendRequest {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn into_inner(self) -> NonNull<Request> {
        self.0
    }
}

/// Does the request's system call on the calling (worker) thread; bytes or `-errno`.
fn perform(req: &SendRequest) -> isize {
    // SAFETY: the request is in flight and its buffers stay valid until completion.
    let r = unsafe { req.0.as_ref() };
    let offset = r.offset as libc::off_t;
    let res = match r.op {
        // SAFETY: `iov`/`iovcnt` describe live buffers (device contract).
        Op::Read => unsafe { libc::preadv(r.fd, r.iov, r.iovcnt as i32, offset) },
        // SAFETY: as above.
        Op::Write => unsafe { libc::pwritev(r.fd, r.iov, r.iovcnt as i32, offset) },
        // SAFETY: plain call on an fd.
        Op::Flush => (unsafe { libc::fdatasync(r.fd) }) as isize,
    };
    if res < 0 {
        -(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO) as isize)
    } else {
        res
    }
}

impl Backend for ThreadsBackend {
    fn name(&self) -> &'static str {
        "threads"
    }

    unsafe fn submit(&self, req: NonNull<Request>) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let (work_req, done_req) = (SendRequest(req), SendRequest(req));
        let in_flight = self.in_flight.clone();
        let ctx = self.ctx.clone();
        let _work = self.ctx.thread_pool().submit_raw(
            move || perform(&work_req),
            move |res: Option<isize>| {
                in_flight.fetch_sub(1, Ordering::Relaxed);
                // The waiter resumes from the context's coroutine list, not inside the pool's
                // completion loop, which a panicking coroutine would cut short.
                // SAFETY: the worker is done with the request (or never started: cancelled);
                // this runs once, on the context thread, with no backend state borrowed.
                unsafe {
                    request::complete_scheduled(
                        done_req.into_inner(),
                        res.unwrap_or(-(libc::ECANCELED as isize)),
                        &ctx,
                    )
                };
            },
        );
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}
