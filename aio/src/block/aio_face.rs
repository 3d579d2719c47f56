//! The emulated AIO face: `aio_preadv(..., callback)` and friends.
//!
//! Each request runs in a coroutine through the coroutine face, and its callback runs in
//! that coroutine afterwards, on the context's thread. The coroutine is started from a
//! bottom half, never inside the `aio_*` call, so the callback never runs before the call
//! returned and any thread may submit (the 2012 proposal of seed 2).
//!
//! Two start paths:
//!
//! * from the context's own thread (the common case: callbacks submitting the next
//!   request), the request's closure goes into a per-device queue, stored inline (a
//!   [`Job`]); one reusable bottom half starts a pooled *worker* coroutine for it, and a
//!   worker whose request finished takes the next queued job itself instead of ending, so
//!   a request whose callback submits the next one costs no coroutine start or exit and
//!   no bottom-half pass. The queue and the request count are plain thread-local data,
//!   and instead of a reference count per request the device keeps itself alive while any
//!   request is pending -- no atomic read-modify-write and no heap allocation per request.
//!   Closures too big to store inline, and `AllocMode::Heap`, get a coroutine each;
//! * from another thread, `AioContext::co_schedule` (lock-free, wakes the context).

use super::device::{AllocMode, BlockDevice, Inner};
use super::job::Job;
use corral_runtime::Coroutine;
use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// Jobs a worker runs in a row while the event loop does not turn before it leaves the
/// rest to the bottom half, so that a chain of requests completing inline (the null
/// backend) still returns to the event loop. A worker whose requests wait on the loop
/// (every real backend, and `null-bh`) sees it turn and keeps going: ending it would cost
/// a coroutine exit, a bottom-half pass and a coroutine start for nothing.
const WORKER_BUDGET: u32 = 16;

/// Per-device state of AIO-face requests submitted on the context's thread.
#[derive(Debug, Default)]
pub(super) struct LocalStarts {
    /// Submitted and not called back yet.
    pub(super) pending: usize,
    /// Requests not started yet, in submission order.
    queue: VecDeque<Start>,
    /// A strong reference held while `pending > 0`, standing in for one per request.
    keepalive: Option<Arc<Inner>>,
}

/// A queued request: a closure for a worker, or a coroutine of its own.
#[derive(Debug)]
enum Start {
    Job(Job),
    Co(Coroutine),
}

/// The device pointer an AIO-face coroutine carries instead of a reference count.
#[derive(Clone, Copy)]
struct DeviceRef(*const Inner);

// SAFETY:
// * the pointee is `Inner`, which is `Send + Sync`; the pointer stays valid while the
//   request is pending because `LocalStarts::keepalive` holds a strong reference until the
//   last pending request finished (see `finish_local`).
unsafe impl Send for DeviceRef {}

impl DeviceRef {
    /// The device, without touching the reference count.
    ///
    /// # Safety
    ///
    /// * a request this reference belongs to is still pending (so `keepalive` is set).
    unsafe fn get(&self) -> ManuallyDrop<BlockDevice> {
        // SAFETY:
        // * `self.0` came from `Arc::as_ptr` of a live `Arc<Inner>` (`spawn`), and a strong
        //   reference (`keepalive`) exists for as long as the caller may use the result;
        // * `ManuallyDrop` keeps this handle from releasing a reference it never took.
        let inner = unsafe { Arc::from_raw(self.0) };
        ManuallyDrop::new(BlockDevice { inner })
    }
}

/// Creates the bottom half that starts queued requests.
pub(super) fn start_bh(inner: &Arc<Inner>) -> crate::Bh {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    inner.ctx.bh_new(move || {
        if let Some(inner) = weak.upgrade() {
            start_queued(&inner);
        }
    })
}

fn schedule_start(inner: &Inner) {
    if let Some(bh) = inner.start_bh.get() {
        bh.schedule();
    }
}

/// Starts the requests queued when the bottom half started (workers may take more of
/// them themselves); those queued meanwhile wait for the next pass. If a coroutine
/// panics (the payload resurfaces from the event loop), what is still queued waits for
/// the next pass: none is lost.
fn start_queued(inner: &Inner) {
    struct Pass<'a>(&'a Inner);
    impl Drop for Pass<'_> {
        fn drop(&mut self) {
            if self.0.local.with(|l| !l.queue.is_empty()) {
                schedule_start(self.0);
            }
        }
    }
    let _pass = Pass(inner);
    let queued = inner.local.with(|l| l.queue.len());
    for _ in 0..queued {
        // A job stays queued until its worker takes it, so a failed coroutine start
        // loses nothing.
        let co = inner.local.with(|l| match l.queue.front() {
            Some(Start::Co(_)) => match l.queue.pop_front() {
                Some(Start::Co(co)) => Some(Some(co)),
                _ => unreachable!("front was a coroutine"),
            },
            Some(Start::Job(_)) => Some(None),
            None => None,
        });
        match co {
            Some(Some(co)) => co.enter(),
            Some(None) => {
                let dev = DeviceRef(inner);
                Coroutine::new(move || work(dev)).enter();
            }
            None => break,
        }
    }
}

/// A worker: runs the job at the front of the queue, then the next ones while they are
/// jobs and its budget lasts.
fn work(dev: DeviceRef) {
    /// Ends the running job if it panics, and leaves what is queued to the bottom half.
    struct Unwinding(*const Inner);
    impl Drop for Unwinding {
        fn drop(&mut self) {
            // SAFETY: the job that panicked is still pending, so the device is alive.
            let inner = unsafe { &*self.0 };
            if inner.local.with(|l| !l.queue.is_empty()) {
                schedule_start(inner);
            }
            finish_local(self.0);
        }
    }
    let inner = dev.0;
    // SAFETY: the bottom half entered us on seeing a (pending) job at the front.
    let first = unsafe { &*inner }.local.with(|l| take_job(&mut l.queue));
    let Some(mut job) = first else {
        return;
    };
    let mut budget = WORKER_BUDGET;
    // SAFETY: as above.
    let ctx = &unsafe { &*inner }.ctx;
    let mut turns = ctx.stats().iterations;
    loop {
        let unwinding = Unwinding(inner);
        {
            // SAFETY: `job` is pending until counted down below.
            let handle = unsafe { dev.get() };
            job.run(&handle);
        }
        std::mem::forget(unwinding);
        budget -= 1;
        if budget == 0 {
            // Checked once per budget: at most twice the budget runs without a turn.
            let now = ctx.stats().iterations;
            if now != turns {
                turns = now;
                budget = WORKER_BUDGET;
            }
        }
        // SAFETY: the job just run is still counted as pending: the device is alive.
        let next = unsafe { &*inner }.local.with(|l| {
            let next = if budget > 0 {
                take_job(&mut l.queue)
            } else {
                None
            };
            if next.is_some() {
                // The finished job; the next one keeps `pending` above zero.
                l.pending -= 1;
            }
            (next, !l.queue.is_empty())
        });
        match next {
            (Some(next), _) => job = next,
            (None, more) => {
                if more {
                    // SAFETY: as above (counted down just below).
                    schedule_start(unsafe { &*inner });
                }
                finish_local(inner);
                return;
            }
        }
    }
}

/// Pops the front of `queue` if it is a job.
fn take_job(queue: &mut VecDeque<Start>) -> Option<Job> {
    if !matches!(queue.front(), Some(Start::Job(_))) {
        return None;
    }
    match queue.pop_front() {
        Some(Start::Job(job)) => Some(job),
        _ => None,
    }
}

/// Ends a local request; drops the keepalive (outside the borrow) with the last one.
/// Takes a pointer, not a reference: the device may be freed before this returns.
fn finish_local(inner: *const Inner) {
    // SAFETY: the request is still pending, so `keepalive` keeps `inner` alive; the
    // reference ends with this statement, before the keepalive is dropped.
    let last = unsafe { &*inner }.local.with(|l| {
        l.pending -= 1;
        if l.pending == 0 {
            l.keepalive.take()
        } else {
            None
        }
    });
    drop(last);
}

impl BlockDevice {
    /// Reads into `buf` at `offset`; `cb(buf, result)` runs in the context afterwards.
    pub fn aio_pread<B, F>(&self, offset: u64, mut buf: B, cb: F)
    where
        B: AsMut<[u8]> + Send + 'static,
        F: FnOnce(B, io::Result<usize>) + Send + 'static,
    {
        self.spawn(move |dev| {
            let res = dev.co_pread(offset, buf.as_mut());
            cb(buf, res);
        });
    }

    /// Writes `buf` at `offset`; `cb(buf, result)` runs in the context afterwards.
    pub fn aio_pwrite<B, F>(&self, offset: u64, buf: B, cb: F)
    where
        B: AsRef<[u8]> + Send + 'static,
        F: FnOnce(B, io::Result<usize>) + Send + 'static,
    {
        self.spawn(move |dev| {
            let res = dev.co_pwrite(offset, buf.as_ref());
            cb(buf, res);
        });
    }

    /// Reads into `bufs` at `offset`; `cb(bufs, result)` runs in the context afterwards.
    pub fn aio_preadv<B, F>(&self, offset: u64, mut bufs: Vec<B>, cb: F)
    where
        B: AsMut<[u8]> + Send + 'static,
        F: FnOnce(Vec<B>, io::Result<usize>) + Send + 'static,
    {
        self.spawn(move |dev| {
            let res = {
                let mut slices: Vec<IoSliceMut<'_>> = bufs
                    .iter_mut()
                    .map(|b| IoSliceMut::new(b.as_mut()))
                    .collect();
                dev.co_preadv(offset, &mut slices)
            };
            cb(bufs, res);
        });
    }

    /// Writes `bufs` at `offset`; `cb(bufs, result)` runs in the context afterwards.
    pub fn aio_pwritev<B, F>(&self, offset: u64, bufs: Vec<B>, cb: F)
    where
        B: AsRef<[u8]> + Send + 'static,
        F: FnOnce(Vec<B>, io::Result<usize>) + Send + 'static,
    {
        self.spawn(move |dev| {
            let res = {
                let slices: Vec<IoSlice<'_>> =
                    bufs.iter().map(|b| IoSlice::new(b.as_ref())).collect();
                dev.co_pwritev(offset, &slices)
            };
            cb(bufs, res);
        });
    }

    /// Flushes; `cb(result)` runs in the context afterwards.
    pub fn aio_flush<F>(&self, cb: F)
    where
        F: FnOnce(io::Result<()>) + Send + 'static,
    {
        self.spawn(move |dev| cb(dev.co_flush()));
    }

    /// Runs `body` in a coroutine of the context, started from a bottom half (see the
    /// module documentation for the two start paths).
    fn spawn<F>(&self, body: F)
    where
        F: FnOnce(&BlockDevice) + Send + 'static,
    {
        if !self.inner.local.is_owner() {
            self.inner.remote_pending.fetch_add(1, Ordering::AcqRel);
            let dev = self.clone();
            let co = self.make_coroutine(move || {
                // Counted down also if the callback panics: `drain` must still end.
                struct Done(BlockDevice);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.inner.remote_pending.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                let done = Done(dev);
                body(&done.0);
            });
            self.inner.ctx.co_schedule(co);
            return;
        }
        if self.inner.alloc == AllocMode::Pooled && Job::fits::<F>() {
            // Built in place inside the borrow: the closure is copied once, into the queue.
            self.queue_local(|| Start::Job(Job::new_fitting(body)));
        } else {
            let co = self.local_coroutine(body);
            self.queue_local(|| Start::Co(co));
        }
    }

    /// Counts a local request and queues what `start` makes; schedules the start bottom
    /// half when the queue was empty (otherwise it is scheduled already, or a worker or a
    /// running pass will take the request).
    #[inline(always)]
    fn queue_local(&self, start: impl FnOnce() -> Start) {
        let first = self.inner.local.with(|l| {
            if l.pending == 0 {
                l.keepalive = Some(self.inner.clone());
            }
            l.pending += 1;
            l.queue.push_back(start());
            l.queue.len() == 1
        });
        if first {
            let bh = self.inner.start_bh.get_or_init(|| start_bh(&self.inner));
            // Usually still scheduled from the previous request (a worker took that one):
            // a plain load instead of a call. Sound without the RMW probe that a
            // cross-thread `schedule()` needs: this path runs on the context's own
            // thread, which is also the only one that dispatches the bottom half and
            // pops `queue`, so a SCHEDULED flag seen here is one that thread has not
            // cleared yet, and its run will find the request just pushed.
            if !bh.is_scheduled() {
                bh.schedule();
            }
        }
    }

    /// A coroutine of its own for a local request (heap mode, or a closure too big to
    /// queue inline).
    fn local_coroutine(&self, body: impl FnOnce(&BlockDevice) + Send + 'static) -> Coroutine {
        let dev = DeviceRef(Arc::as_ptr(&self.inner));
        self.make_coroutine(move || {
            // Ends the request also if the callback panics, so `drain` still ends.
            struct Done(*const Inner);
            impl Drop for Done {
                fn drop(&mut self) {
                    finish_local(self.0);
                }
            }
            let _done = Done(dev.0);
            // SAFETY: this request is pending until `_done` drops, after `handle` (declared
            // later, dropped first; it releases nothing anyway).
            let handle = unsafe { dev.get() };
            body(&handle);
        })
    }

    fn make_coroutine(&self, entry: impl FnOnce() + Send + 'static) -> Coroutine {
        match self.inner.alloc {
            AllocMode::Pooled => Coroutine::new(entry),
            AllocMode::Heap => Coroutine::builder().pooled(false).spawn(entry),
        }
    }
}
