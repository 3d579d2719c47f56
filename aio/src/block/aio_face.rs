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
//!   request), the coroutine goes into a per-device queue that one reusable bottom half
//!   empties; the queue and the request count are plain thread-local data, and instead of
//!   a reference count per request the device keeps itself alive while any request is
//!   pending -- no atomic read-modify-write and no heap allocation per request;
//! * from another thread, `AioContext::co_schedule` (lock-free, wakes the context).

use super::device::{AllocMode, BlockDevice, Inner};
use corral_runtime::Coroutine;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// Per-device state of AIO-face requests submitted on the context's thread.
#[derive(Debug, Default)]
pub(super) struct LocalStarts {
    /// Submitted and not called back yet.
    pub(super) pending: usize,
    /// Coroutine-face requests whose coroutine has not picked up the result yet.
    pub(super) co_requests: usize,
    /// Coroutines waiting for the start bottom half.
    queue: Vec<Coroutine>,
    /// The other buffer of `queue` (swapped, so starting allocates nothing).
    spare: Vec<Coroutine>,
    /// A strong reference held while `pending > 0`, standing in for one per request.
    keepalive: Option<Arc<Inner>>,
}

/// The device pointer an AIO-face coroutine carries instead of a reference count.
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
    /// * the request this reference belongs to is still pending (so `keepalive` is set).
    unsafe fn get(&self) -> ManuallyDrop<BlockDevice> {
        // SAFETY:
        // * `self.0` came from `Arc::as_ptr` of a live `Arc<Inner>` (`spawn`), and a strong
        //   reference (`keepalive`) exists for as long as the caller may use the result;
        // * `ManuallyDrop` keeps this handle from releasing a reference it never took.
        let inner = unsafe { Arc::from_raw(self.0) };
        ManuallyDrop::new(BlockDevice { inner })
    }
}

/// Creates the bottom half that starts queued coroutines.
pub(super) fn start_bh(inner: &Arc<Inner>) -> crate::Bh {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    inner.ctx.bh_new(move || {
        if let Some(inner) = weak.upgrade() {
            start_queued(&inner);
        }
    })
}

/// Enters every coroutine queued when the bottom half started; those they queue wait for
/// the next pass. If one panics (the payload resurfaces from the event loop), the rest of
/// the batch goes back to the front of the queue for the next pass: none is lost.
fn start_queued(inner: &Inner) {
    struct Pass<'a> {
        inner: &'a Inner,
        batch: Vec<Coroutine>,
        next: usize,
    }
    impl Drop for Pass<'_> {
        fn drop(&mut self) {
            let rest = self.batch.len() - self.next;
            let mut batch = std::mem::take(&mut self.batch);
            self.inner.local.with(|l| {
                if rest > 0 {
                    let newer = std::mem::replace(&mut l.queue, batch.split_off(self.next));
                    l.queue.extend(newer);
                }
                batch.clear();
                if l.spare.capacity() < batch.capacity() {
                    l.spare = batch;
                }
            });
            if rest > 0 {
                if let Some(bh) = self.inner.start_bh.get() {
                    bh.schedule();
                }
            }
        }
    }
    let batch = inner.local.with(|l| {
        let spare = std::mem::take(&mut l.spare);
        std::mem::replace(&mut l.queue, spare)
    });
    let mut pass = Pass {
        inner,
        batch,
        next: 0,
    };
    while pass.next < pass.batch.len() {
        let co = pass.batch[pass.next];
        pass.next += 1;
        co.enter();
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
    fn spawn(&self, body: impl FnOnce(&BlockDevice) + Send + 'static) {
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
        let dev = DeviceRef(Arc::as_ptr(&self.inner));
        let co = self.make_coroutine(move || {
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
        });
        let first = self.inner.local.with(|l| {
            if l.pending == 0 {
                l.keepalive = Some(self.inner.clone());
            }
            l.pending += 1;
            l.queue.push(co);
            l.queue.len() == 1
        });
        if first {
            self.inner
                .start_bh
                .get_or_init(|| start_bh(&self.inner))
                .schedule();
        }
    }

    fn make_coroutine(&self, entry: impl FnOnce() + Send + 'static) -> Coroutine {
        match self.inner.alloc {
            AllocMode::Pooled => Coroutine::new(entry),
            AllocMode::Heap => Coroutine::builder().pooled(false).spawn(entry),
        }
    }
}
