//! The loop's blocking wait: `epoll_wait` on the fd handlers, or the wait a backend lent
//! the context (see `sleeper`), then what is ready is collected for dispatch.

use crate::context::{AioContext, NOTIFIER_TOKEN};
use crate::epoll::MAX_EVENTS;
use crate::fd_handlers::Ready;
use crate::sleeper::Sleeper;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Weak;

impl AioContext {
    /// Lends the context a wait to sleep in instead of `epoll_wait` (see `sleeper`);
    /// false if another sleeper holds the slot.
    pub(crate) fn claim_sleeper(&self, sleeper: Weak<dyn Sleeper>) -> bool {
        self.sleeper.claim(sleeper)
    }

    /// The epoll fd behind the fd handlers (for a sleeper to watch).
    pub(crate) fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Takes back what `claim_sleeper` lent.
    pub(crate) fn release_sleeper(&self, sleeper: &Weak<dyn Sleeper>) {
        self.sleeper.release(sleeper);
    }

    /// Waits up to `timeout` ns in `epoll_wait`, or in the sleeper's wait while it has work
    /// in flight; then reads our eventfd at once (before `accept` and before any event is
    /// processed, see notify.rs) and looks the other fds up in the handler table.
    pub(crate) fn wait_and_collect(&self, ready: &mut Vec<Ready>, timeout: i64) {
        let mut events = MaybeUninit::<[libc::epoll_event; MAX_EVENTS]>::uninit();
        // SAFETY:
        // * `epoll_event` is plain data; `wait` hands the buffer to the kernel, which writes
        //   the first `n` entries, and only those are read below.
        let buf = unsafe { &mut *events.as_mut_ptr() };
        let sleeper = if timeout != 0 {
            self.sleeper.ready()
        } else {
            None
        };
        let slept = sleeper.is_some();
        let epoll_timeout = match sleeper {
            Some(sleeper) if !sleeper.sleep(self.epoll_fd(), timeout) => None,
            Some(_) => Some(0),
            None => Some(timeout),
        };
        let n = match epoll_timeout.map(|t| self.epoll.wait(buf, t)) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(e)) => panic!("AioContext::poll: epoll_wait failed: {e}"),
        };
        if slept || (n == 0 && timeout != 0) {
            // A sleeper's completions are found by its poll handler. And woken early with
            // nothing reported: interrupted (or a timer is due). io_uring posts completions
            // from task work that interrupts epoll_wait (EINTR) and marks its fd ready only
            // after the call returned: poll for them now rather than through another
            // epoll_wait (one system call and about 5 us less per wake-up on O_DIRECT reads).
            self.run_poll_handlers_once(ready);
        }
        let mut any_fd = false;
        for ev in &buf[..n] {
            if ev.u64 == NOTIFIER_TOKEN {
                self.shared.event.test_and_clear();
            } else {
                any_fd = true;
            }
        }
        if any_fd {
            self.handlers.with(|t| {
                for ev in &buf[..n] {
                    let token = ev.u64;
                    if token == NOTIFIER_TOKEN {
                        continue;
                    }
                    if let Some(node) = t.find(token as RawFd) {
                        ready.push(Ready {
                            node: node.clone(),
                            revents: ev.events,
                            poll_ready: false,
                        });
                    }
                }
            });
        }
    }
}
