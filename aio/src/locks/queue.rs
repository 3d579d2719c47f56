//! CoQueue: a FIFO of waiting coroutines (QEMU's `CoQueue`).

use super::{lock, CoMutexGuard};
use crate::co_schedule::{co_wake, current_with_home};
use corral_runtime::{yield_now, Coroutine};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

/// Coroutines waiting for a condition. Waiters must re-check their condition after waking.
#[derive(Default)]
pub struct CoQueue {
    waiters: Mutex<VecDeque<Coroutine>>,
}

impl fmt::Debug for CoQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoQueue")
            .field("waiters", &lock(&self.waiters).len())
            .finish()
    }
}

impl CoQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Suspends the current coroutine until `next` or `restart_all` wakes it.
    ///
    /// # Panics
    /// Outside a coroutine running in a context.
    pub fn wait(&self) {
        let co = current_with_home("CoQueue::wait");
        lock(&self.waiters).push_back(co);
        yield_now();
    }

    /// Like `wait`, releasing `guard`'s mutex while asleep and taking it again before
    /// returning (QEMU's `qemu_co_queue_wait(queue, lock)`). A waker that holds the mutex
    /// cannot miss this waiter: it is queued before the mutex is released.
    pub fn wait_with<'a, T>(&self, guard: CoMutexGuard<'a, T>) -> CoMutexGuard<'a, T> {
        let co = current_with_home("CoQueue::wait_with");
        let mutex = guard.mutex();
        lock(&self.waiters).push_back(co);
        drop(guard);
        yield_now();
        mutex.lock()
    }

    /// Wakes the first waiter; returns false if there was none.
    pub fn next(&self) -> bool {
        let co = lock(&self.waiters).pop_front();
        match co {
            Some(co) => {
                co_wake(co);
                true
            }
            None => false,
        }
    }

    /// Wakes every waiter; returns how many.
    pub fn restart_all(&self) -> usize {
        let all = std::mem::take(&mut *lock(&self.waiters));
        let n = all.len();
        for co in all {
            co_wake(co);
        }
        n
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        lock(&self.waiters).is_empty()
    }
}
