//! A kernel wait the loop may sleep in instead of `epoll_wait`.
//!
//! A linux-aio context wakes a thread sleeping in `io_getevents` once per burst of
//! completions; an eventfd attached to every iocb is signalled, and epoll's callback run,
//! once per completion, inside the device's interrupt. So a backend that can watch the
//! epoll fd from its own wait (an aio poll request on it) lends the context that wait:
//! the context then sleeps there whenever the backend has requests in flight, and still
//! wakes for every fd, notification and timer, as in `epoll_wait`.
//!
//! One sleeper per context at most: a thread sleeps in one system call.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, Weak};

/// A wait that also watches the context's epoll fd.
pub(crate) trait Sleeper: Send + Sync {
    /// Whether the context should sleep in [`Sleeper::sleep`] now (rather than in
    /// `epoll_wait`): the sleeper has work in flight that wakes it. Called on the
    /// context's polling thread.
    fn wants_sleep(&self) -> bool;

    /// Sleeps until the sleeper's own work completes, `epoll_fd` turns readable, a signal
    /// arrives, or `timeout_ns` passes (negative: no limit). Returns whether `epoll_fd`
    /// may be readable, so the caller collects its events without waiting.
    fn sleep(&self, epoll_fd: RawFd, timeout_ns: i64) -> bool;
}

/// The context's sleeper slot.
#[derive(Default)]
pub(crate) struct SleeperSlot {
    slot: Mutex<Option<Weak<dyn Sleeper>>>,
}

impl std::fmt::Debug for SleeperSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let taken = self.slot.lock().map(|s| s.is_some()).unwrap_or(false);
        f.debug_struct("SleeperSlot")
            .field("taken", &taken)
            .finish()
    }
}

impl SleeperSlot {
    /// Installs `sleeper` if the slot is free (or its holder is gone); returns whether it
    /// was installed.
    pub(crate) fn claim(&self, sleeper: Weak<dyn Sleeper>) -> bool {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|s| s.strong_count() > 0) {
            return false;
        }
        *slot = Some(sleeper);
        true
    }

    /// Empties the slot if `sleeper` holds it.
    pub(crate) fn release(&self, sleeper: &Weak<dyn Sleeper>) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|s| Weak::ptr_eq(s, sleeper)) {
            *slot = None;
        }
    }

    /// The sleeper, if one is installed, alive, and wants the wait now.
    pub(crate) fn ready(&self) -> Option<Arc<dyn Sleeper>> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let sleeper = slot.as_ref()?.upgrade()?;
        drop(slot);
        sleeper.wants_sleep().then_some(sleeper)
    }
}
