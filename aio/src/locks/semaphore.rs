//! A counting semaphore for coroutines.

use super::{lock, wake_first_or};
use crate::co_schedule::current_with_home;
use corral_runtime::{yield_now, Coroutine};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

struct State {
    permits: usize,
    waiters: VecDeque<Coroutine>,
}

/// Permits handed out FIFO; `acquire` yields while none is left.
pub struct CoSemaphore {
    st: Mutex<State>,
}

impl fmt::Debug for CoSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.st);
        f.debug_struct("CoSemaphore")
            .field("permits", &st.permits)
            .field("waiters", &st.waiters.len())
            .finish()
    }
}

impl CoSemaphore {
    /// A semaphore with `permits` permits.
    pub fn new(permits: usize) -> Self {
        CoSemaphore {
            st: Mutex::new(State {
                permits,
                waiters: VecDeque::new(),
            }),
        }
    }

    /// Takes a permit, yielding until one is released to this coroutine.
    pub fn acquire(&self) {
        {
            let mut st = lock(&self.st);
            if st.permits > 0 && st.waiters.is_empty() {
                st.permits -= 1;
                return;
            }
            st.waiters
                .push_back(current_with_home("CoSemaphore::acquire"));
        }
        // `release` hands its permit straight to us.
        yield_now();
    }

    /// Takes a permit if one is free and nobody waits.
    pub fn try_acquire(&self) -> bool {
        let mut st = lock(&self.st);
        if st.permits > 0 && st.waiters.is_empty() {
            st.permits -= 1;
            true
        } else {
            false
        }
    }

    /// Gives a permit back: to the first waiter if there is one.
    pub fn release(&self) {
        wake_first_or(&self.st, |st| &mut st.waiters, |st| st.permits += 1);
    }

    /// Free permits.
    pub fn available(&self) -> usize {
        lock(&self.st).permits
    }
}
