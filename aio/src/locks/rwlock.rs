//! CoRwLock: a fair reader-writer lock for coroutines (QEMU's `CoRwlock`).
//!
//! Requests are granted in arrival order: a reader is admitted at once only if no writer
//! holds the lock *and* nobody is queued, so a waiting writer is never starved. Releasing
//! grants the queue's head: all leading readers, or one writer. `upgrade` gives the read
//! lock up and queues for the write lock at the back (a sole reader upgrading while a
//! writer waits gets the lock after that writer); `downgrade` keeps the lock as a reader and
//! admits the readers queued at the head.

use super::lock;
use crate::co_schedule::{co_wake, current_with_home};
use corral_runtime::{yield_now, Coroutine};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    Read,
    Write,
}

struct State {
    readers: usize,
    writer: bool,
    queue: VecDeque<(Coroutine, Want)>,
}

impl State {
    /// Grants the head of the queue; returns whom to wake (outside the lock).
    fn grant(&mut self) -> Vec<Coroutine> {
        let mut wake = Vec::new();
        while let Some(&(co, want)) = self.queue.front() {
            match want {
                Want::Read if !self.writer => {
                    self.readers += 1;
                }
                Want::Write if !self.writer && self.readers == 0 => {
                    self.writer = true;
                }
                _ => break,
            }
            self.queue.pop_front();
            wake.push(co);
            if want == Want::Write {
                break;
            }
        }
        wake
    }
}

/// A fair reader-writer lock whose waiters yield (see the module docs).
pub struct CoRwLock<T: ?Sized> {
    st: Mutex<State>,
    value: UnsafeCell<T>,
}

// SAFETY:
// * shared access only through read guards (any number, `T: Sync`), exclusive access only
//   through the one write guard; the state mutex orders grants and releases.
unsafe impl<T: ?Sized + Send + Sync> Sync for CoRwLock<T> {}
// SAFETY: owning the lock owns the value.
unsafe impl<T: ?Sized + Send> Send for CoRwLock<T> {}

impl<T: ?Sized> fmt::Debug for CoRwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.st);
        f.debug_struct("CoRwLock")
            .field("readers", &st.readers)
            .field("writer", &st.writer)
            .field("queued", &st.queue.len())
            .finish()
    }
}

fn wake_all(list: Vec<Coroutine>) {
    for co in list {
        co_wake(co);
    }
}

impl<T> CoRwLock<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> Self {
        CoRwLock {
            st: Mutex::new(State {
                readers: 0,
                writer: false,
                queue: VecDeque::new(),
            }),
            value: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> CoRwLock<T> {
    /// Queues the current coroutine and yields until a release grants it `want`.
    fn wait(&self, mut st: MutexGuard<'_, State>, want: Want, what: &str) {
        st.queue.push_back((current_with_home(what), want));
        let wake = st.grant();
        drop(st);
        wake_all(wake);
        yield_now();
    }

    /// Shared access; waits behind a holding or queued writer.
    pub fn read(&self) -> CoRwLockReadGuard<'_, T> {
        let mut st = lock(&self.st);
        if !st.writer && st.queue.is_empty() {
            st.readers += 1;
        } else {
            self.wait(st, Want::Read, "CoRwLock::read");
        }
        CoRwLockReadGuard { lock: self }
    }

    /// Exclusive access.
    pub fn write(&self) -> CoRwLockWriteGuard<'_, T> {
        let mut st = lock(&self.st);
        if !st.writer && st.readers == 0 && st.queue.is_empty() {
            st.writer = true;
        } else {
            self.wait(st, Want::Write, "CoRwLock::write");
        }
        CoRwLockWriteGuard { lock: self }
    }

    fn release(&self, write: bool) {
        let wake = {
            let mut st = lock(&self.st);
            if write {
                st.writer = false;
            } else {
                st.readers -= 1;
            }
            st.grant()
        };
        wake_all(wake);
    }
}

/// Shared access to a [`CoRwLock`].
pub struct CoRwLockReadGuard<'a, T: ?Sized> {
    lock: &'a CoRwLock<T>,
}

/// Exclusive access to a [`CoRwLock`].
pub struct CoRwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a CoRwLock<T>,
}

impl<'a, T: ?Sized> CoRwLockReadGuard<'a, T> {
    /// Trades the read lock for the write lock. If this is the only reader and nobody is
    /// queued, at once; otherwise it queues at the back (behind a waiting writer).
    pub fn upgrade(self) -> CoRwLockWriteGuard<'a, T> {
        let l = self.lock;
        std::mem::forget(self);
        let mut st = lock(&l.st);
        st.readers -= 1;
        if st.readers == 0 && !st.writer && st.queue.is_empty() {
            st.writer = true;
        } else {
            l.wait(st, Want::Write, "CoRwLockReadGuard::upgrade");
        }
        CoRwLockWriteGuard { lock: l }
    }
}

impl<'a, T: ?Sized> CoRwLockWriteGuard<'a, T> {
    /// Trades the write lock for a read lock, admitting the readers queued at the head.
    pub fn downgrade(self) -> CoRwLockReadGuard<'a, T> {
        let l = self.lock;
        std::mem::forget(self);
        let wake = {
            let mut st = lock(&l.st);
            st.writer = false;
            st.readers += 1;
            st.grant()
        };
        wake_all(wake);
        CoRwLockReadGuard { lock: l }
    }
}

impl<T: ?Sized> Deref for CoRwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard means no write guard exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> Deref for CoRwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write guard is exclusive.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> DerefMut for CoRwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write guard is exclusive.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for CoRwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(false);
    }
}

impl<T: ?Sized> Drop for CoRwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(true);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for CoRwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for CoRwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}
