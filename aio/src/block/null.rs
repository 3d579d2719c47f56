//! The null backend: completes every request without I/O, to measure our own overhead.
//!
//! * inline (QEMU `null-co`): the request completes inside `submit`, so the coroutine
//!   never yields;
//! * bottom half (QEMU `null-aio`): requests are queued and completed by one reusable
//!   bottom half, so each request pays a suspend, a bottom-half pass and a resume.
//!
//! Reads leave the buffer untouched and report it full, like QEMU's default
//! (`read-zeroes=off`).

use super::bound::ThreadBound;
use super::request::{self, Request, RequestQueue};
use super::Backend;
use crate::{AioContext, Bh};
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

/// See the module documentation.
#[derive(Debug)]
pub struct NullBackend {
    bh: Option<(Bh, Arc<ThreadBound<RequestQueue>>)>,
}

impl NullBackend {
    /// Completes inside `submit`.
    pub fn inline() -> Self {
        NullBackend { bh: None }
    }

    /// Completes from a bottom half of `ctx`.
    pub fn bottom_half(ctx: &Arc<AioContext>) -> Self {
        let queue = Arc::new(ThreadBound::new(RequestQueue::default()));
        let pending = queue.clone();
        let bh_slot: Arc<OnceLock<Bh>> = Arc::default();
        let bh_ref = bh_slot.clone();
        let bh = ctx.bh_new(move || {
            if let Some(bh) = bh_ref.get() {
                complete_all(&pending, bh);
            }
        });
        // The callback holds a handle to its own bottom half (to reschedule a pass cut short
        // by a panic); `Drop` deletes the bottom half, which drops the callback and the handle.
        let _ = bh_slot.set(bh.clone());
        NullBackend {
            bh: Some((bh, queue)),
        }
    }
}

impl Drop for NullBackend {
    fn drop(&mut self) {
        if let Some((bh, _)) = &self.bh {
            bh.delete();
        }
    }
}

/// Completes what was queued when the bottom half started (requests queued by the
/// coroutines it wakes wait for the next pass, so one pass always ends).
fn complete_all(queue: &ThreadBound<RequestQueue>, bh: &Bh) {
    /// If a woken coroutine panics, the rest of the batch goes back to the queue (in
    /// order, ahead of newer requests) for the next pass: nothing is lost.
    struct Requeue<'a> {
        batch: RequestQueue,
        queue: &'a ThreadBound<RequestQueue>,
        bh: &'a Bh,
    }
    impl Drop for Requeue<'_> {
        fn drop(&mut self) {
            if self.batch.len() > 0 {
                let mut rest = self.batch.take();
                self.queue.with(|q| {
                    let newer = q.take();
                    *q = rest.take();
                    q.append(newer);
                });
                self.bh.schedule();
            }
        }
    }
    let mut pass = Requeue {
        batch: queue.with(|q| q.take()),
        queue,
        bh,
    };
    while let Some(req) = pass.batch.pop_front() {
        let len = size(req);
        // SAFETY:
        // * `req` was handed to us by `submit` and not completed yet;
        // * we hold no borrow of the queue while its coroutine runs.
        unsafe { request::complete(req, len) };
    }
}

fn size(req: NonNull<Request>) -> isize {
    // SAFETY: an in-flight request is valid (backend contract).
    unsafe { req.as_ref() }.len() as isize
}

impl Backend for NullBackend {
    fn name(&self) -> &'static str {
        if self.bh.is_some() {
            "null-bh"
        } else {
            "null"
        }
    }

    unsafe fn submit(&self, req: NonNull<Request>) {
        match &self.bh {
            // SAFETY: `req` is in flight and ours to complete (caller's contract); the
            // waiting coroutine is the running one, so `complete` does not enter it.
            None => unsafe { request::complete_in_submit(req, size(req)) },
            Some((bh, queue)) => {
                // SAFETY: `req` stays valid until completed (caller's contract).
                let first = queue.with(|q| unsafe {
                    q.push_back(req);
                    q.len() == 1
                });
                // A non-empty queue already has its pass scheduled (or running, and then
                // it reschedules itself for what it leaves behind).
                if first {
                    bh.schedule();
                }
            }
        }
    }

    fn in_flight(&self) -> usize {
        match &self.bh {
            None => 0,
            Some((_, queue)) => queue.with(|q| q.len()),
        }
    }
}
