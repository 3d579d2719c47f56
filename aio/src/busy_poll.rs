//! Busy polling: the poll handlers are called in a loop for up to `poll_ns` before the
//! context blocks (QEMU's try_poll_mode / run_poll_handlers). The window itself is sized by
//! `poll_adaptive`.

use crate::context::{bump, AioContext, OwnerState};
use crate::fd_handlers::{FdNode, Ready};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

impl AioContext {
    pub(crate) fn try_poll_mode(
        &self,
        st: &OwnerState,
        ready: &mut Vec<Ready>,
        timeout: &mut i64,
    ) -> bool {
        let poll_ns = self.params.poll_ns.load(Relaxed) as i64;
        let max_ns = soonest(*timeout, poll_ns);
        if max_ns == 0 {
            return false;
        }
        self.poll_set_started(st, ready, true);
        self.run_poll_handlers(ready, max_ns, timeout)
    }

    /// Busy-polls the poll handlers for up to `max_ns` (QEMU's run_poll_handlers).
    fn run_poll_handlers(
        &self,
        ready: &mut Vec<Ready>,
        mut max_ns: i64,
        timeout: &mut i64,
    ) -> bool {
        let start = Instant::now();
        let mut progress;
        let mut elapsed;
        loop {
            progress = self.run_poll_handlers_once(ready);
            if progress || self.shared.proto.pending() || self.local_work(self.owner()) {
                *timeout = 0;
            }
            elapsed = start.elapsed().as_nanos().min(i64::MAX as u128) as i64;
            max_ns = soonest(*timeout, max_ns);
            if elapsed >= max_ns {
                break;
            }
        }
        if *timeout > 0 {
            *timeout -= elapsed.min(*timeout);
        }
        if progress {
            bump(&self.counters.poll_successes, 1);
        }
        progress
    }

    pub(crate) fn run_poll_handlers_once(&self, ready: &mut Vec<Ready>) -> bool {
        self.handlers.with(|t| {
            let mut progress = false;
            for n in &t.nodes {
                if !n.deleted.load(Relaxed) {
                    progress |= poll_node(n, ready);
                }
            }
            progress
        })
    }

    /// Enters or leaves poll mode, calling poll_begin / poll_end; on leaving, polls once more
    /// in case an event raced with poll_end. Returns whether that found work.
    pub(crate) fn poll_set_started(
        &self,
        st: &OwnerState,
        ready: &mut Vec<Ready>,
        started: bool,
    ) -> bool {
        if st.poll_started.get() == started {
            return false;
        }
        st.poll_started.set(started);
        self.handlers.with(|t| {
            let mut progress = false;
            for n in &t.nodes {
                if n.h.poll.is_none() || n.deleted.load(Relaxed) {
                    continue;
                }
                let f = if started {
                    &n.h.poll_begin
                } else {
                    &n.h.poll_end
                };
                if let Some(f) = f {
                    f();
                }
                if !started {
                    progress |= poll_node(n, ready);
                }
            }
            progress
        })
    }
}

/// Calls the node's poll function (unless one of its callbacks is running: a nested poll
/// never re-enters a handler) and queues it as poll-ready if it found work.
fn poll_node(n: &Arc<FdNode>, ready: &mut Vec<Ready>) -> bool {
    let Some(p) = &n.h.poll else { return false };
    if n.in_dispatch.load(Relaxed) || !p() {
        return false;
    }
    ready.push(Ready {
        node: n.clone(),
        revents: 0,
        poll_ready: true,
    });
    true
}

/// The sooner of two timeouts where negative means "forever".
fn soonest(a: i64, b: i64) -> i64 {
    match (a < 0, b < 0) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    }
}
