//! Locks for coroutines: a waiter yields instead of blocking its thread, and is woken in its
//! home context (`co_wake`). Usable across contexts on different threads.
//!
//! Each lock keeps its waiters under a small `std::sync::Mutex` that is held for a few
//! instructions and never across a yield; `CoMutex` has a lock-free fast path on top, so an
//! uncontended lock + unlock is two atomic operations and no syscall.
//!
//! A waiter must run in its home context's thread (the rule of `co_schedule`): a waker on
//! another thread then only queues it, and the home thread enters it after it yielded.

mod mutex;
mod queue;
mod rwlock;
mod semaphore;

pub use mutex::{CoMutex, CoMutexGuard};
pub use queue::CoQueue;
pub use rwlock::{CoRwLock, CoRwLockReadGuard, CoRwLockWriteGuard};
pub use semaphore::CoSemaphore;

use crate::co_schedule::co_wake;
use corral_runtime::Coroutine;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Passes a token (a lock hand-over, a permit) to the first of `waiters`, or, when nobody
/// waits, keeps it with `keep`; both under `state`'s lock. The waiter is woken after the
/// lock is released.
pub(crate) fn wake_first_or<S>(
    state: &Mutex<S>,
    waiters: impl FnOnce(&mut S) -> &mut VecDeque<Coroutine>,
    keep: impl FnOnce(&mut S),
) {
    let next = {
        let mut s = lock(state);
        let next = waiters(&mut s).pop_front();
        if next.is_none() {
            keep(&mut s);
        }
        next
    };
    if let Some(co) = next {
        co_wake(co);
    }
}
