//! [`Job`]: an AIO-face request's closure stored inline, so queueing it allocates nothing.
//!
//! The start queue of a device holds the closures of requests not started yet. A small
//! closure (the common case: an offset, a buffer handle and a callback) is kept in a fixed
//! number of words inside the queue's ring; bigger ones get their own coroutine instead
//! (see `aio_face`).

use super::device::BlockDevice;
use std::fmt;
use std::mem::{self, ManuallyDrop, MaybeUninit};

/// Words of inline storage: 96 bytes hold the closures of `aio_pread` and friends with
/// a boxed buffer and a callback carrying a few words of its own.
const WORDS: usize = 12;

type Storage = MaybeUninit<[usize; WORDS]>;

/// A type-erased `FnOnce(&BlockDevice)` held inline.
pub(super) struct Job {
    data: Storage,
    /// Runs (`Some`) or drops (`None`) the closure in `data`; called exactly once.
    call: unsafe fn(*mut Storage, Option<&BlockDevice>),
}

// SAFETY:
// * `Job::new` only accepts `Send` closures, and a job owns its closure exclusively.
unsafe impl Send for Job {}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Job")
    }
}

impl Job {
    /// Whether an `F` fits inline (known at compile time).
    pub(super) const fn fits<F>() -> bool {
        mem::size_of::<F>() <= mem::size_of::<Storage>()
            && mem::align_of::<F>() <= mem::align_of::<Storage>()
    }

    /// Stores `f` inline; `fits::<F>()` must hold (a constant, so the check folds away).
    #[inline(always)]
    pub(super) fn new_fitting<F>(f: F) -> Job
    where
        F: FnOnce(&BlockDevice) + Send + 'static,
    {
        assert!(Self::fits::<F>(), "closure too big for a Job");
        let mut data = Storage::uninit();
        // SAFETY:
        // * `data` is large and aligned enough for `F` (asserted above) and uninitialised;
        //   `call_or_drop::<F>` is the only reader and takes the value out exactly once.
        unsafe { data.as_mut_ptr().cast::<F>().write(f) };
        Job {
            data,
            call: call_or_drop::<F>,
        }
    }

    /// Runs the closure with `dev`.
    pub(super) fn run(self, dev: &BlockDevice) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY:
        // * `data` holds the closure `call` was made for, not taken yet: `ManuallyDrop`
        //   keeps `Drop` from taking it a second time.
        unsafe { (this.call)(&mut this.data, Some(dev)) };
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: as in `run`; a job is either run or dropped, never both.
        unsafe { (self.call)(&mut self.data, None) };
    }
}

/// Takes the `F` out of `data`, then runs it with `dev` or drops it.
///
/// # Safety
///
/// * `data` holds an initialised `F` written by `Job::new`, and is not read again.
unsafe fn call_or_drop<F: FnOnce(&BlockDevice)>(data: *mut Storage, dev: Option<&BlockDevice>) {
    // SAFETY: guaranteed by the caller; `read` moves the closure out exactly once.
    let f = unsafe { data.cast::<F>().read() };
    if let Some(dev) = dev {
        f(dev);
    }
}
