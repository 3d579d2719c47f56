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

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
