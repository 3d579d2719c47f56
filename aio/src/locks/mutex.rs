//! CoMutex: a fair mutex for coroutines (QEMU's `CoMutex`).
//!
//! `locked` counts the holder plus every coroutine that wants the lock. Locking is one
//! `fetch_add`: from 0 it owns the lock (no syscall, no queue). Otherwise it queues itself
//! and yields; the unlocker hands the lock over directly (FIFO), so a newcomer never barges
//! ahead of a waiter. An unlocker that sees a contender which has counted itself but not
//! queued yet leaves a `handoff` token that the contender takes instead of sleeping.

use super::{lock, wake_first_or};
use crate::co_schedule::current_with_home;
use corral_runtime::{yield_now, Coroutine};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire};
use std::sync::Mutex;

#[derive(Default)]
struct Slow {
    waiters: VecDeque<Coroutine>,
    handoff: usize,
}

/// A fair mutex whose waiters yield (see the module docs).
pub struct CoMutex<T: ?Sized> {
    locked: AtomicUsize,
    slow: Mutex<Slow>,
    value: UnsafeCell<T>,
}

// SAFETY:
// * the value is only reached through a guard, and guards are exclusive (the `locked`
//   protocol hands ownership to exactly one coroutine at a time, with Release/Acquire
//   edges through `locked`, the `slow` mutex, or the wake-up queue of the context).
unsafe impl<T: ?Sized + Send> Sync for CoMutex<T> {}
// SAFETY: owning the mutex owns the value.
unsafe impl<T: ?Sized + Send> Send for CoMutex<T> {}

impl<T: Default> Default for CoMutex<T> {
    fn default() -> Self {
        CoMutex::new(T::default())
    }
}

impl<T: ?Sized> fmt::Debug for CoMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoMutex")
            .field("locked", &self.locked.load(Acquire))
            .finish()
    }
}

impl<T> CoMutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        CoMutex {
            locked: AtomicUsize::new(0),
            slow: Mutex::new(Slow::default()),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, consuming the mutex.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: ?Sized> CoMutex<T> {
    /// Takes the lock, yielding while another coroutine holds it. FIFO among waiters.
    ///
    /// # Panics
    /// When it has to wait outside a coroutine running in a context.
    #[inline]
    pub fn lock(&self) -> CoMutexGuard<'_, T> {
        if self.locked.fetch_add(1, Acquire) != 0 {
            self.lock_slow();
        }
        CoMutexGuard { mutex: self }
    }

    #[cold]
    fn lock_slow(&self) {
        let co = current_with_home("CoMutex::lock");
        {
            let mut s = lock(&self.slow);
            if s.handoff > 0 {
                s.handoff -= 1;
                return;
            }
            s.waiters.push_back(co);
        }
        // The unlocker hands the lock to us and wakes us.
        yield_now();
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<CoMutexGuard<'_, T>> {
        self.locked
            .compare_exchange(0, 1, Acquire, Acquire)
            .ok()
            .map(|_| CoMutexGuard { mutex: self })
    }

    /// The value, through exclusive access.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    #[inline]
    fn unlock(&self) {
        if self.locked.fetch_sub(1, AcqRel) != 1 {
            self.unlock_slow();
        }
    }

    #[cold]
    fn unlock_slow(&self) {
        // Nobody queued: a contender counted itself but has not queued yet; it takes the token.
        wake_first_or(&self.slow, |s| &mut s.waiters, |s| s.handoff += 1);
    }
}

/// Proof of holding a [`CoMutex`]; unlocks when dropped.
pub struct CoMutexGuard<'a, T: ?Sized> {
    mutex: &'a CoMutex<T>,
}

impl<'a, T: ?Sized> CoMutexGuard<'a, T> {
    pub(crate) fn mutex(&self) -> &'a CoMutex<T> {
        self.mutex
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for CoMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: ?Sized> Deref for CoMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves exclusive ownership of the lock.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<T: ?Sized> DerefMut for CoMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves exclusive ownership of the lock.
        unsafe { &mut *self.mutex.value.get() }
    }
}

impl<T: ?Sized> Drop for CoMutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}
