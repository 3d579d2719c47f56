//! [`Request`]: one block request, owned by the coroutine that waits for it.
//!
//! The request lives on the waiting coroutine's stack (or in a `Box` in the bench's heap
//! mode), so submitting one allocates nothing. Backends receive a `NonNull<Request>` and
//! hand it back exactly once through [`complete`]; between the two the coroutine is
//! suspended and neither moves nor touches the request.

use super::linux_aio::sys::Iocb;
use corral_runtime::Coroutine;
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `preadv`
    Read,
    /// `pwritev`
    Write,
    /// `fdatasync`
    Flush,
}

/// One in-flight block request, as a backend sees it.
#[derive(Debug)]
pub struct Request {
    pub(crate) op: Op,
    pub(crate) fd: RawFd,
    pub(crate) offset: u64,
    /// `iovcnt` iovecs; `IoSlice`/`IoSliceMut` are ABI-compatible with `iovec` on Unix.
    pub(crate) iov: *const libc::iovec,
    pub(crate) iovcnt: usize,
    /// Sum of the iovec lengths.
    pub(crate) len: usize,
    /// Bytes already transferred when a backend resubmits the rest of a short transfer.
    pub(crate) done_bytes: usize,
    /// Completion: `None` while in flight, then bytes or `-errno`.
    result: Cell<Option<isize>>,
    waiter: Option<Coroutine>,
    /// Intrusive link for the queues of backends (pending submissions, BH completions).
    pub(crate) next: Cell<*mut Request>,
    /// The linux-aio control block lives here so that submitting allocates nothing; only
    /// that backend fills it (left uninitialised, it costs the other paths nothing).
    pub(crate) iocb: MaybeUninit<Iocb>,
}

impl Request {
    /// A request that `waiter` will wait for.
    pub(crate) fn new(
        op: Op,
        fd: RawFd,
        offset: u64,
        iov: *const libc::iovec,
        iovcnt: usize,
        len: usize,
        waiter: Option<Coroutine>,
    ) -> Self {
        Request {
            op,
            fd,
            offset,
            iov,
            iovcnt,
            len,
            done_bytes: 0,
            result: Cell::new(None),
            waiter,
            next: Cell::new(ptr::null_mut()),
            iocb: MaybeUninit::uninit(),
        }
    }

    /// The operation.
    pub fn op(&self) -> Op {
        self.op
    }

    /// Byte offset in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Total bytes to transfer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the request transfers nothing (a flush, or empty buffers).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The completion value once [`complete`] ran.
    pub(crate) fn result(&self) -> Option<isize> {
        self.result.get()
    }
}

/// Completes `req` with `res` (bytes transferred, or `-errno`) and wakes its coroutine
/// unless that coroutine is the one running now (a completion found inside submit: the
/// coroutine sees the result when submit returns, and entering it would be re-entry).
///
/// # Safety
///
/// * `req` points to a live request handed to the backend and not completed yet;
/// * the caller does not touch `*req` afterwards: the woken coroutine may free it at once;
/// * called on the thread of the request's AioContext, with no `ThreadBound` borrow held.
pub(crate) unsafe fn complete(req: NonNull<Request>, res: isize) {
    // SAFETY:
    // * `req` is live and still owned by the backend (caller's contract).
    let req = unsafe { req.as_ref() };
    debug_assert!(req.result.get().is_none(), "block request completed twice");
    // A failure after part of the transfer was done reports the part, like `preadv`.
    let done = req.done_bytes as isize;
    let total = if res >= 0 {
        res + done
    } else if done > 0 {
        done
    } else {
        res
    };
    let waiter = req.waiter;
    req.result.set(Some(total));
    // From here on `req` may be freed by its coroutine: only `waiter` is used.
    if let Some(co) = waiter {
        super::glue::wake(co);
    }
}

/// Like [`complete`], but the waiting coroutine is resumed from the context's scheduled
/// list (`co_schedule`) rather than entered here: for completion paths that run inside
/// someone else's loop and must not be cut short by a panic of the woken coroutine.
///
/// # Safety
///
/// As for [`complete`].
pub(crate) unsafe fn complete_scheduled(
    req: NonNull<Request>,
    res: isize,
    ctx: &crate::AioContext,
) {
    // SAFETY: `req` is live and still owned by the backend (caller's contract).
    let req = unsafe { req.as_ref() };
    debug_assert!(req.result.get().is_none(), "block request completed twice");
    let waiter = req.waiter;
    req.result.set(Some(res));
    // From here on `req` may be freed by its coroutine: only `waiter` is used.
    if let Some(co) = waiter {
        if !co.entered() {
            ctx.co_schedule(co);
        }
    }
}

/// Completes `req` from inside `submit`, where the waiting coroutine is the running one:
/// it sees the result when `submit` returns, so there is nobody to wake.
///
/// # Safety
///
/// * as for [`complete`], and the caller runs inside `Backend::submit` for this request.
pub(crate) unsafe fn complete_in_submit(req: NonNull<Request>, res: isize) {
    // SAFETY: `req` is live and still owned by the backend (caller's contract).
    let req = unsafe { req.as_ref() };
    debug_assert!(req.result.get().is_none(), "block request completed twice");
    debug_assert!(req.waiter.is_none_or(|co| co.entered()));
    req.result.set(Some(res));
}

/// An intrusive FIFO of requests linked through `Request::next`: queueing allocates nothing.
#[derive(Debug)]
pub(crate) struct RequestQueue {
    head: *mut Request,
    tail: *mut Request,
    len: usize,
}

// SAFETY:
// * the queue only holds pointers; it is kept inside a `ThreadBound`, so the requests are
//   only reached from the context thread that owns them, wherever the queue value lives.
unsafe impl Send for RequestQueue {}

impl Default for RequestQueue {
    fn default() -> Self {
        RequestQueue {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }
}

impl RequestQueue {
    /// Number of queued requests.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `req`.
    ///
    /// # Safety
    ///
    /// * `req` is valid, in flight (not completed) and in no other queue; it stays valid
    ///   while queued.
    pub(crate) unsafe fn push_back(&mut self, req: NonNull<Request>) {
        let req = req.as_ptr();
        // SAFETY: `req` is valid (caller); `tail`, when non-null, is a valid queued request.
        unsafe {
            (*req).next.set(ptr::null_mut());
            if self.tail.is_null() {
                self.head = req;
            } else {
                (*self.tail).next.set(req);
            }
        }
        self.tail = req;
        self.len += 1;
    }

    /// Puts `req` back at the front (a submission the kernel did not take).
    ///
    /// # Safety
    ///
    /// Same as [`push_back`](Self::push_back).
    pub(crate) unsafe fn push_front(&mut self, req: NonNull<Request>) {
        let req = req.as_ptr();
        // SAFETY: `req` is valid (caller).
        unsafe { (*req).next.set(self.head) };
        if self.head.is_null() {
            self.tail = req;
        }
        self.head = req;
        self.len += 1;
    }

    /// Takes the first request.
    pub(crate) fn pop_front(&mut self) -> Option<NonNull<Request>> {
        let head = NonNull::new(self.head)?;
        // SAFETY: queued requests are valid (`push_*` contract).
        self.head = unsafe { head.as_ref() }.next.get();
        if self.head.is_null() {
            self.tail = ptr::null_mut();
        }
        self.len -= 1;
        Some(head)
    }

    /// Moves every request of `other` to the back of this queue.
    pub(crate) fn append(&mut self, mut other: RequestQueue) {
        while let Some(req) = other.pop_front() {
            // SAFETY: `req` was queued in `other`, so it is valid and in flight.
            unsafe { self.push_back(req) };
        }
    }

    /// Takes the whole queue, leaving this one empty.
    pub(crate) fn take(&mut self) -> RequestQueue {
        std::mem::take(self)
    }
}
