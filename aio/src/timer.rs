//! Timers on the monotonic clock (`Instant`), fired by the context's poll.
//!
//! Armed timers sit in a min-heap under a mutex; the earliest deadline is mirrored in an
//! atomic so that the poll loop checks "anything due?" without taking the lock. Re-arming or
//! cancelling bumps the timer's generation, so stale heap entries are skipped when popped.

use crate::context::{AioContext, CtxShared};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

struct Entry {
    deadline: u64,
    gen: u64,
    timer: Arc<TimerInner>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.deadline, self.gen) == (o.deadline, o.gen)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.deadline, self.gen).cmp(&(o.deadline, o.gen))
    }
}

struct Heap {
    heap: BinaryHeap<Reverse<Entry>>,
    next_gen: u64,
}

/// A context's armed timers.
pub(crate) struct TimerList {
    heap: Mutex<Heap>,
    /// Earliest deadline in ns since `origin`, `u64::MAX` when none (may be stale-early).
    earliest: AtomicU64,
    origin: Instant,
}

impl fmt::Debug for TimerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerList")
            .field("earliest", &self.earliest.load(Relaxed))
            .finish()
    }
}

impl TimerList {
    pub(crate) fn new() -> Self {
        TimerList {
            heap: Mutex::new(Heap {
                heap: BinaryHeap::new(),
                next_gen: 1,
            }),
            earliest: AtomicU64::new(u64::MAX),
            origin: Instant::now(),
        }
    }

    fn to_ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Heap> {
        self.heap.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Nanoseconds until the earliest deadline (0 if due), or -1 when no timer is armed.
    #[inline]
    pub(crate) fn timeout_ns(&self) -> i64 {
        let e = self.earliest.load(Acquire);
        if e == u64::MAX {
            return -1;
        }
        let now = self.to_ns(Instant::now());
        e.saturating_sub(now).min(i64::MAX as u64) as i64
    }

    /// Runs every due timer; returns whether one ran.
    pub(crate) fn run_due(&self) -> bool {
        if self.earliest.load(Acquire) == u64::MAX {
            return false;
        }
        let now = self.to_ns(Instant::now());
        if self.earliest.load(Acquire) > now {
            return false;
        }
        let mut due = Vec::new();
        {
            let mut h = self.lock();
            while let Some(Reverse(top)) = h.heap.peek() {
                if top.deadline > now {
                    break;
                }
                let Reverse(e) = h.heap.pop().expect("peeked");
                if e.timer.armed.load(Relaxed) == e.gen {
                    e.timer.armed.store(0, Relaxed);
                    due.push(e.timer);
                }
            }
            let next = h.heap.peek().map_or(u64::MAX, |Reverse(e)| e.deadline);
            self.earliest.store(next, Release);
        }
        let ran = !due.is_empty();
        for t in due {
            (t.cb)();
        }
        ran
    }

    fn arm(&self, timer: &Arc<TimerInner>, deadline: Instant) -> bool {
        let d = self.to_ns(deadline);
        let mut h = self.lock();
        let gen = h.next_gen;
        h.next_gen += 1;
        timer.armed.store(gen, Relaxed);
        h.heap.push(Reverse(Entry {
            deadline: d,
            gen,
            timer: timer.clone(),
        }));
        let earlier = d < self.earliest.load(Relaxed);
        if earlier {
            self.earliest.store(d, Release);
        }
        earlier
    }

    fn cancel(&self, timer: &TimerInner) {
        let _h = self.lock();
        timer.armed.store(0, Relaxed);
    }

    /// Drops every entry (the context is going away; breaks the timer -> context cycle).
    pub(crate) fn clear(&self) {
        let mut h = self.lock();
        h.heap.clear();
        self.earliest.store(u64::MAX, Release);
    }
}

struct TimerInner {
    ctx: Weak<CtxShared>,
    /// Generation of the heap entry that is live, 0 when not armed (written under the lock).
    armed: AtomicU64,
    cb: Box<dyn Fn() + Send + Sync>,
}

/// A timer on a context (QEMU's `QEMUTimer` on the monotonic clock). Its callback runs on the
/// context's thread, once per arming; it may re-arm itself. Arm and cancel from any thread.
#[derive(Clone)]
pub struct Timer {
    inner: Arc<TimerInner>,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("pending", &self.is_pending())
            .finish()
    }
}

impl Timer {
    /// A new, unarmed timer on `ctx`.
    pub fn new(ctx: &AioContext, cb: impl Fn() + Send + Sync + 'static) -> Timer {
        Timer {
            inner: Arc::new(TimerInner {
                ctx: Arc::downgrade(ctx.shared()),
                armed: AtomicU64::new(0),
                cb: Box::new(cb),
            }),
        }
    }

    /// Arms (or re-arms) it to fire at `deadline`. Does nothing if the context is gone.
    pub fn arm_at(&self, deadline: Instant) {
        if let Some(ctx) = self.inner.ctx.upgrade() {
            if ctx.timers.arm(&self.inner, deadline) {
                ctx.notify_if_remote();
            }
        }
    }

    /// Arms it to fire `after` from now.
    pub fn arm_after(&self, after: Duration) {
        self.arm_at(Instant::now() + after);
    }

    /// Disarms it; a cancelled timer does not fire.
    pub fn cancel(&self) {
        if let Some(ctx) = self.inner.ctx.upgrade() {
            ctx.timers.cancel(&self.inner);
        }
    }

    /// Whether it is armed and has not fired yet.
    pub fn is_pending(&self) -> bool {
        self.inner.armed.load(Relaxed) != 0
    }
}
