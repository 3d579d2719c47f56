//! The notify_me / notified protocol: how other threads wake an `AioContext` without a
//! syscall per event, and without ever missing one that is about to sleep.
//!
//! # The protocol
//!
//! Two words, both written by several threads:
//!
//! * `notify_me` counts pollers that are in the prepare-or-wait phase of a *blocking* poll,
//!   two per poller (QEMU reserved bit 0 for its GSource; we keep the step for parity).
//! * `notified` is set by every notifier and cleared by a poller once it has woken up.
//!
//! ```text
//!  notifier (any thread)                    poller (the context's thread)
//!  ---------------------                    -----------------------------
//!  publish the event (push a BH ...)        notify_me += 2
//!  if swap(notified, true) { return }  (0)  fence(SeqCst)                  [B]
//!  fence(SeqCst)                 [A]        if notified { do not block }
//!  if notify_me != 0 {                      epoll_wait(...)  (eventfd is one of the fds)
//!      eventfd write                        if eventfd readable { read it }   (1)
//!  }                                        notify_me -= 2  (Release)
//!                                           accept: if notified {
//!                                               swap(notified, false) }    (2)
//!                                           run bottom halves, handlers, timers
//! ```
//!
//! The fences [A] and [B] are a Dekker pair: either the notifier sees `notify_me != 0` and
//! writes the eventfd, or the poller sees `notified` and does not block. The interleaving they
//! prevent is the lost wake-up:
//!
//! ```text
//!  poller: notify_me += 2;            (store still in the store buffer)
//!  notifier: notified = true; reads notify_me == 0  -> no eventfd write
//!  poller: reads notified == false (stale)          -> epoll_wait(-1): sleeps forever
//! ```
//!
//! A context that is dispatching, or is not polling at all, has `notify_me == 0`: it will look
//! at the bottom-half list before it next blocks, so notifiers skip the syscall entirely. That
//! is why a busy context takes (close to) zero eventfd writes per cross-thread bottom half.
//!
//! The two 2015 QEMU bugs (seed 4) shape the poller's side:
//!
//! * The question is not "is someone dispatching?" but "is someone in prepare-or-wait?":
//!   hence a counter incremented around the wait, not a `dispatching` flag.
//! * The eventfd must be read (1) *before* `notified` is accepted (2) and before the events are
//!   processed. Reading it after processing lets a poller eat a write meant for another
//!   poller that is about to sleep, with the work that write announced still queued.
//!
//! Both sides write `notified` with read-modify-writes, and that is what the loom model
//! insisted on. With a plain `notified = false` in `accept` (as QEMU writes it, relying on
//! its barriers and on TSO), the C++ memory model allows the poller's clear to overwrite a
//! notifier's `true` whose bottom half the poller's list swap did not see: a nested poll then
//! blocks with work queued (loom found exactly that deadlock in `nested_poll_inside_dispatch`).
//! As an Acquire RMW, the clear either reads a notifier's `true` (and then synchronises with
//! it, so that notifier's bottom half is visible to the list swap that follows), or comes
//! before it in modification order (and the `true` survives for the next `prepare_wait`).
//!
//! On the notifier side (0), the RMW lets every notifier but the first one skip the fence
//! and the eventfd while a notification is pending and not yet accepted: the first one has
//! either written the eventfd or seen that nobody sleeps, and a poller that accepts reads the
//! `true` of the last notifier and so sees its bottom half.
//!
//! The protocol is checked by the loom model in `tests` below (`scripts/loom-aio.sh`) with the
//! three processes of QEMU's promela models: a waiter, a temporary waiter (a nested poll) and a
//! notifier; and by the multi-thread stress test in `aio/tests/stress.rs`.

use crate::sync::{fence, AtomicBool, AtomicU32};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

/// The two shared words of the protocol (see the module docs).
#[derive(Debug)]
pub(crate) struct NotifyProtocol {
    notify_me: AtomicU32,
    notified: AtomicBool,
}

impl NotifyProtocol {
    pub(crate) fn new() -> NotifyProtocol {
        NotifyProtocol {
            notify_me: AtomicU32::new(0),
            notified: AtomicBool::new(false),
        }
    }

    /// Notifier side, called after the event was published. Returns true when a poller may be
    /// sleeping (or about to), i.e. when the caller must write the eventfd.
    #[inline]
    pub(crate) fn notify(&self) -> bool {
        // (0) Release: a poller whose accept reads this `true` also sees the event. If a
        // notification is already pending, its notifier took care of the wake-up.
        if self.notified.swap(true, AcqRel) {
            return false;
        }
        // [A]: order the store above before the load below (pairs with [B]).
        fence(SeqCst);
        self.notify_me.load(Relaxed) != 0
    }

    /// Poller side, before a blocking wait. Returns false when the poller must not block
    /// because a notification is already pending.
    #[inline]
    pub(crate) fn prepare_wait(&self) -> bool {
        self.notify_me.fetch_add(2, Relaxed);
        // [B]: order the increment before the load of `notified` (pairs with [A]).
        fence(SeqCst);
        !self.notified.load(Relaxed)
    }

    /// Poller side, after the wait (and after the eventfd was read).
    #[inline]
    pub(crate) fn finish_wait(&self) {
        // Release: finish the wait before leaving the prepare-or-wait phase.
        self.notify_me.fetch_sub(2, Release);
    }

    /// Poller side, before looking at the events: consumes a pending notification.
    #[inline]
    pub(crate) fn accept(&self) {
        // A stale `false` only leaves a pending notification for the next iteration.
        if self.notified.load(Relaxed) {
            // (2) an RMW, see the module docs.
            self.notified.swap(false, Acquire);
        }
    }

    /// `accept` as QEMU writes it (plain store + fence): the models show it loses wake-ups
    /// under the C++ memory model.
    #[cfg(all(test, loom))]
    fn accept_plain_store(&self) {
        if self.notified.load(Relaxed) {
            self.notified.store(false, Relaxed);
            fence(SeqCst);
        }
    }

    /// Whether a notification is pending (the busy-poll loop stops on it).
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        self.notified.load(Acquire)
    }
}

#[cfg(all(test, loom))]
mod tests {
    //! Loom models. The kernel eventfd is modelled as a flag under a mutex with a condvar: a
    //! blocked `wait` that nobody ever sets is a deadlock, which loom reports. Each model stops
    //! when all requests were processed; whoever processes the last one sets the event once so
    //! that a poller still asleep can leave (a poller asleep while a request is *pending* is
    //! exactly the lost wake-up, and stays a deadlock).
    use super::NotifyProtocol;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::{Arc, Condvar, Mutex};
    use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};

    const REQUESTS: usize = 2;

    #[derive(Default)]
    struct Event {
        set: Mutex<bool>,
        cv: Condvar,
    }

    impl Event {
        fn set(&self) {
            *self.set.lock().unwrap() = true;
            self.cv.notify_all();
        }
        /// epoll_wait(-1) on a level-triggered eventfd: returns once it is readable.
        fn wait(&self) {
            let mut g = self.set.lock().unwrap();
            while !*g {
                g = self.cv.wait(g).unwrap();
            }
        }
        fn test_and_clear(&self) -> bool {
            std::mem::replace(&mut *self.set.lock().unwrap(), false)
        }
    }

    /// Deliberately broken variants, to show that the models catch them.
    #[derive(Clone, Copy, PartialEq)]
    enum Variant {
        Real,
        /// Clear `notified` with a plain store (QEMU's text).
        PlainStoreAccept,
        /// Read the eventfd after processing the events (the second 2015 QEMU bug).
        LateEventfdRead,
    }

    /// `LOOM_AIO_VARIANT` selects a broken variant (`scripts/loom-aio.sh --mutants` checks
    /// that the models fail on each).
    fn variant_from_env() -> Variant {
        match std::env::var("LOOM_AIO_VARIANT").as_deref() {
            Ok("plain-store-accept") => Variant::PlainStoreAccept,
            Ok("late-eventfd-read") => Variant::LateEventfdRead,
            _ => Variant::Real,
        }
    }

    struct Ctx {
        variant: Variant,
        proto: NotifyProtocol,
        event: Event,
        /// Published requests not yet taken (the bottom-half list).
        queued: AtomicUsize,
        processed: AtomicUsize,
    }

    impl Ctx {
        fn new() -> Ctx {
            Self::with(variant_from_env())
        }

        fn with(variant: Variant) -> Ctx {
            Ctx {
                variant,
                proto: NotifyProtocol::new(),
                event: Event::default(),
                queued: AtomicUsize::new(0),
                processed: AtomicUsize::new(0),
            }
        }

        fn schedule(&self) {
            self.queued.fetch_add(1, Release);
            if self.proto.notify() {
                self.event.set();
            }
        }

        /// One `AioContext::poll` iteration in the order the real one uses.
        fn poll(&self, blocking: bool, nested: Option<&dyn Fn()>) {
            let mut block = false;
            if blocking {
                block = self.proto.prepare_wait();
            }
            if block {
                self.event.wait();
                if self.variant != Variant::LateEventfdRead {
                    self.event.test_and_clear();
                }
            }
            if blocking {
                self.proto.finish_wait();
            }
            if self.variant == Variant::PlainStoreAccept {
                self.proto.accept_plain_store();
            } else {
                self.proto.accept();
            }
            let n = self.queued.swap(0, Acquire);
            if n > 0 {
                let before = self.processed.fetch_add(n, AcqRel);
                if before + n == REQUESTS {
                    self.event.set();
                }
                // A bottom half that runs a nested poll.
                if let Some(nested) = nested {
                    nested();
                }
            }
            if block && self.variant == Variant::LateEventfdRead {
                self.event.test_and_clear();
            }
        }

        fn done(&self) -> bool {
            self.processed.load(Acquire) == REQUESTS
        }
    }

    fn notifier(ctx: &Ctx) {
        for _ in 0..REQUESTS {
            ctx.schedule();
        }
    }

    /// Two notifiers with one request each, and a waiter: the second notifier may skip the
    /// wake-up because the first one's is pending.
    #[test]
    fn two_notifiers() {
        loom::model(|| {
            let ctx = Arc::new(Ctx::new());
            let ts: Vec<_> = (0..REQUESTS)
                .map(|_| {
                    let c = ctx.clone();
                    loom::thread::spawn(move || c.schedule())
                })
                .collect();
            while !ctx.done() {
                ctx.poll(true, None);
            }
            for t in ts {
                t.join().unwrap();
            }
        });
    }

    /// Waiter, temporary waiter and notifier on three threads (QEMU's promela models).
    #[test]
    fn waiter_temporary_waiter_notifier() {
        three_processes(variant_from_env());
    }

    fn three_processes(variant: Variant) {
        loom::model(move || {
            let ctx = Arc::new(Ctx::with(variant));
            let c1 = ctx.clone();
            let temp = loom::thread::spawn(move || {
                // The temporary waiter polls once, blocking, while work is outstanding.
                if !c1.done() {
                    c1.poll(true, None);
                }
            });
            let c2 = ctx.clone();
            let notif = loom::thread::spawn(move || notifier(&c2));
            while !ctx.done() {
                ctx.poll(true, None);
            }
            notif.join().unwrap();
            temp.join().unwrap();
        });
    }

    /// The temporary waiter as a nested blocking poll inside the waiter's dispatch phase.
    #[test]
    fn nested_poll_inside_dispatch() {
        loom::model(|| {
            let ctx = Arc::new(Ctx::new());
            let c2 = ctx.clone();
            let notif = loom::thread::spawn(move || notifier(&c2));
            let inner = ctx.clone();
            let nested = move || {
                if !inner.done() {
                    inner.poll(true, None);
                }
            };
            while !ctx.done() {
                ctx.poll(true, Some(&nested));
            }
            notif.join().unwrap();
        });
    }

    /// A non-blocking poll in between must not swallow a wake-up meant for a blocking one.
    #[test]
    fn non_blocking_poll_does_not_eat_wakeup() {
        loom::model(|| {
            let ctx = Arc::new(Ctx::new());
            let c2 = ctx.clone();
            let notif = loom::thread::spawn(move || notifier(&c2));
            ctx.poll(false, None);
            while !ctx.done() {
                ctx.poll(true, None);
            }
            notif.join().unwrap();
        });
    }
}
