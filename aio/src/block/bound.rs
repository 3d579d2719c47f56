//! [`ThreadBound`]: state that only the thread owning a block device may touch.
//!
//! A backend's queues and rings belong to one `AioContext`, which one thread runs. The
//! device handle itself is `Send + Sync` (the AIO face may be called from any thread and
//! the request coroutine's entry must be `Send`), so the per-context state sits in this
//! cell: every access checks the calling thread and refuses re-entrant borrows, which
//! turns a misuse into a clear panic instead of a data race.

use std::cell::{Cell, UnsafeCell};
use std::fmt;

thread_local! {
    /// An address unique to each live thread: the address of this thread-local.
    static THREAD_MARK: u8 = const { 0 };
}

/// Identifies the calling thread (cheap: one thread-local address).
#[inline(always)]
pub(crate) fn thread_id() -> usize {
    THREAD_MARK.with(|mark| mark as *const u8 as usize)
}

/// A value usable only on the thread that created it, one borrow at a time.
pub(crate) struct ThreadBound<T> {
    owner: usize,
    borrowed: Cell<bool>,
    value: UnsafeCell<T>,
}

// SAFETY:
// * `value` and `borrowed` are only read or written after `with` checked that the caller is
//   the owner thread, so no two threads ever access them;
// * moving the cell to another thread (`Send`) moves `T` with it, hence `T: Send`;
// * the owner thread may exit while the cell lives on: the mark of a new thread could then
//   equal the old one, but the old thread no longer runs, so accesses are still never concurrent.
unsafe impl<T: Send> Sync for ThreadBound<T> {}
// SAFETY: see `Sync` above; `T: Send` is all that moving the cell needs.
unsafe impl<T: Send> Send for ThreadBound<T> {}

impl<T> ThreadBound<T> {
    /// Binds `value` to the calling thread.
    pub(crate) fn new(value: T) -> Self {
        ThreadBound {
            owner: thread_id(),
            borrowed: Cell::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Whether the calling thread owns the cell.
    #[inline(always)]
    pub(crate) fn is_owner(&self) -> bool {
        thread_id() == self.owner
    }

    /// Runs `f` with exclusive access. Panics on another thread or on a nested borrow:
    /// callers never hold the borrow while waking a coroutine or running a callback.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        assert!(
            self.is_owner(),
            "block device state touched outside its AioContext thread"
        );
        assert!(
            !self.borrowed.replace(true),
            "block device state borrowed re-entrantly"
        );
        struct Release<'a>(&'a Cell<bool>);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _release = Release(&self.borrowed);
        // SAFETY:
        // * we are on the owner thread (asserted above), the only one that touches `value`;
        // * `borrowed` was false, so no other `&mut T` is alive; it stays true until `_release`
        //   drops, also when `f` panics.
        f(unsafe { &mut *self.value.get() })
    }
}

impl<T> fmt::Debug for ThreadBound<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadBound")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Runs `f` with the counter `field` of `cell` raised by one, and lowers it again even
/// if `f` panics (a panicking coroutine resurfaces in whoever entered it: a backend's
/// completion loop must not stay plugged forever because of it).
pub(crate) fn while_raised<T, R>(
    cell: &ThreadBound<T>,
    field: fn(&mut T) -> &mut usize,
    f: impl FnOnce() -> R,
) -> R {
    struct Lower<'a, T> {
        cell: &'a ThreadBound<T>,
        field: fn(&mut T) -> &mut usize,
    }
    impl<T> Drop for Lower<'_, T> {
        fn drop(&mut self) {
            self.cell.with(|v| *(self.field)(v) -= 1);
        }
    }
    cell.with(|v| *field(v) += 1);
    let _lower = Lower { cell, field };
    f()
}
