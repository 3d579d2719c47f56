//! Coroutines belong to a context: waking one from any thread schedules it into its home
//! context (QEMU's `aio_co_wake` / `aio_co_schedule` / `aio_co_enter`).
//!
//! Each coroutine carries three words for us (`corral_runtime::EventLoopWords`):
//! * `home`: a pointer to its context's leaked `Weak<CtxShared>` (never freed, so a stale
//!   home is detected by a failed upgrade, not by a use after free);
//! * `scheduled`: 0, or a pointer to the `&'static str` naming who scheduled it. Scheduling
//!   is a CAS from 0, so scheduling a coroutine twice is a clean panic that names both;
//! * `link`: the next coroutine in the context's lock-free scheduled list (a Treiber stack
//!   that is only pushed to and taken whole, so it has no ABA problem).
//!
//! Rule: a coroutine runs in its home context's thread. Waking it from elsewhere never
//! enters it directly, it queues it; the home thread enters it after the coroutine yielded
//! (the home thread was busy running it until then).

use crate::bh;
use crate::context::{current_context, current_if, current_shared, AioContext, CtxShared};
use crate::timer::Timer;
use corral_runtime::{current, in_coroutine, yield_now, Coroutine};
use std::ffi::c_void;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

static BY_CO_WAKE: &str = "co_wake";
static BY_CO_SCHEDULE: &str = "co_schedule";
static BY_CO_ENTER: &str = "co_enter";
static BY_RESCHEDULE: &str = "co_reschedule_self";

fn tag(name: &'static &'static str) -> usize {
    name as *const &'static str as usize
}

/// # Safety
/// `t` is non-zero and was made by `tag`.
unsafe fn tag_name(t: usize) -> &'static str {
    // SAFETY: guaranteed by the caller: `t` points at one of the statics above.
    unsafe { *(t as *const &'static str) }
}

/// The context's scheduled coroutines.
#[derive(Default)]
pub(crate) struct CoList {
    head: AtomicUsize,
}

impl fmt::Debug for CoList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoList")
            .field("empty", &self.is_empty())
            .finish()
    }
}

impl CoList {
    fn push(&self, co: Coroutine) {
        let link = &co.event_loop_words().link;
        let word = co.into_raw().as_ptr() as usize;
        let mut head = self.head.load(Relaxed);
        loop {
            link.store(head, Relaxed);
            match self
                .head
                .compare_exchange_weak(head, word, Release, Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.load(Relaxed) == 0
    }

    /// Takes the whole list, in scheduling (FIFO) order, as a chain of `link` words.
    fn take_fifo(&self) -> Chain {
        if self.is_empty() {
            return Chain(0);
        }
        let mut word = self.head.swap(0, Acquire);
        let mut rev = 0;
        while word != 0 {
            let co = from_word(word);
            let link = &co.event_loop_words().link;
            let next = link.load(Relaxed);
            link.store(rev, Relaxed);
            rev = word;
            word = next;
        }
        Chain(rev)
    }
}

/// A taken list of scheduled coroutines, linked through their `link` words.
struct Chain(usize);

impl Iterator for Chain {
    type Item = Coroutine;
    fn next(&mut self) -> Option<Coroutine> {
        if self.0 == 0 {
            return None;
        }
        let co = from_word(self.0);
        // Read the link before the coroutine runs: it may be queued again meanwhile.
        self.0 = co.event_loop_words().link.load(Relaxed);
        Some(co)
    }
}

fn from_word(word: usize) -> Coroutine {
    // SAFETY:
    // * every word in the list came from `Coroutine::into_raw` in `push`.
    unsafe { Coroutine::from_raw(NonNull::new(word as *mut c_void).expect("non-zero list word")) }
}

fn home_of(co: &Coroutine) -> Option<&'static Weak<CtxShared>> {
    let h = co.event_loop_words().home.load(Acquire);
    // SAFETY:
    // * `home` is 0 or was set by `set_home` to a `&'static Weak<CtxShared>` (leaked by
    //   `AioContext::new`, never freed).
    (h != 0).then(|| unsafe { &*(h as *const Weak<CtxShared>) })
}

fn set_home(co: &Coroutine, shared: &CtxShared) {
    co.event_loop_words()
        .home
        .store(shared.home as *const Weak<CtxShared> as usize, Release);
}

/// Claims the `scheduled` tag, panicking on double scheduling.
fn claim_scheduled(co: &Coroutine, by: &'static &'static str) {
    if let Err(prev) = co
        .event_loop_words()
        .scheduled
        .compare_exchange(0, tag(by), AcqRel, Acquire)
    {
        // SAFETY: a non-zero tag was stored by this function.
        let prev = unsafe { tag_name(prev) };
        panic!("{by}: coroutine already scheduled (by {prev})");
    }
}

/// Queues `co` on `shared` (moving it there) and wakes that context if needed. On the
/// thread polling that context the coroutine goes to its owner-only list (no RMW, no notify).
fn schedule_into(shared: &CtxShared, co: Coroutine, by: &'static &'static str) {
    claim_scheduled(&co, by);
    set_home(&co, shared);
    if let Some(ctx) = current_if(shared) {
        let word = co.into_raw().as_ptr() as usize;
        ctx.push_local_co(word, &co.event_loop_words().link);
        return;
    }
    shared.co_list.push(co);
    shared.notify();
}

/// The `link` word of the coroutine encoded by `word`.
pub(crate) fn link_of(word: usize) -> &'static AtomicUsize {
    let co = from_word(word);
    let words: *const AtomicUsize = &co.event_loop_words().link;
    // SAFETY:
    // * coroutine headers (which hold the event-loop words) are type-stable: never freed.
    unsafe { &*words }
}

/// Enters the scheduled coroutines of `ctx`; called by its poll.
pub(crate) fn run_scheduled(ctx: &AioContext) -> bool {
    let local = Chain(ctx.take_local_co());
    let remote = ctx.shared().co_list.take_fifo();
    if local.0 == 0 && remote.0 == 0 {
        return false;
    }
    // If a coroutine panics, the rest go back to the list for the next iteration.
    struct Requeue<'a> {
        shared: &'a CtxShared,
        rest: [Chain; 2],
    }
    impl Drop for Requeue<'_> {
        fn drop(&mut self) {
            for chain in &mut self.rest {
                for co in chain.by_ref() {
                    self.shared.co_list.push(co);
                }
            }
        }
    }
    let mut n = 0;
    let mut q = Requeue {
        shared: ctx.shared(),
        rest: [local, remote],
    };
    for chain in &mut q.rest {
        for co in chain.by_ref() {
            co.event_loop_words().scheduled.store(0, Release);
            n += 1;
            co.enter();
        }
    }
    ctx.count_coroutines(n);
    true
}

/// Forgets the scheduled coroutines of a context that is being dropped.
pub(crate) fn abandon_scheduled(shared: &CtxShared, local_head: usize) {
    for co in Chain(local_head).chain(shared.co_list.take_fifo()) {
        co.event_loop_words().scheduled.store(0, Release);
    }
}

impl AioContext {
    /// Schedules `co` to run in this context, making it the coroutine's home (QEMU's
    /// `aio_co_schedule`). Any thread; the coroutine must not be running elsewhere when the
    /// context enters it (use [`co_reschedule_self`] to move the current coroutine).
    ///
    /// # Panics
    /// "co_schedule: coroutine already scheduled (by ...)" if it is already scheduled.
    pub fn co_schedule(&self, co: Coroutine) {
        schedule_into(self.shared(), co, &BY_CO_SCHEDULE);
    }

    /// Makes this context the coroutine's home and runs it (QEMU's `aio_co_enter`): at once
    /// when called outside any coroutine on the context's home thread (its creator, or the
    /// thread that last polled it); otherwise it is scheduled into the context.
    pub fn co_enter(&self, co: Coroutine) {
        set_home(&co, self.shared());
        if !in_coroutine() {
            let ran = self.with_claim_at_home(|| {
                assert_not_scheduled(&co, BY_CO_ENTER);
                co.enter();
            });
            if ran.is_some() {
                return;
            }
        }
        schedule_into(self.shared(), co, &BY_CO_ENTER);
    }
}

fn assert_not_scheduled(co: &Coroutine, by: &'static str) {
    let t = co.event_loop_words().scheduled.load(Acquire);
    if t != 0 {
        // SAFETY: non-zero tags come from `claim_scheduled`.
        let prev = unsafe { tag_name(t) };
        panic!("{by}: coroutine already scheduled (by {prev})");
    }
}

/// Wakes `co` in its home context (QEMU's `aio_co_wake`): entered at once when called from
/// that context's thread outside a coroutine, queued otherwise (on the polling thread itself
/// that costs no atomic read-modify-write besides the `scheduled` tag). A coroutine without
/// a home (entered directly, never through a context) joins the context this thread polls.
///
/// # Panics
/// If it is already scheduled, has no home context and the caller polls none, or its home
/// context was dropped.
pub fn co_wake(co: Coroutine) {
    let cur = current_shared();
    let home = match home_of(&co) {
        Some(home) => home,
        None if !cur.is_null() => {
            // Never scheduled through a context (entered directly): like QEMU's enter, which
            // records the current context, it belongs to the context this thread runs.
            // SAFETY: `cur` is the context this thread is polling, alive while it polls.
            set_home(&co, unsafe { &*cur });
            // SAFETY: as above.
            unsafe { (*cur).home }
        }
        None => panic!(
            "co_wake: the coroutine has no home context (start it with AioContext::co_enter or co_schedule)"
        ),
    };
    if std::ptr::eq(Weak::as_ptr(home), cur) {
        if !in_coroutine() {
            assert_not_scheduled(&co, BY_CO_WAKE);
            co.enter();
        } else {
            // SAFETY:
            // * `cur` is the context this thread is polling: alive for the whole poll.
            schedule_into(unsafe { &*cur }, co, &BY_CO_WAKE);
        }
        return;
    }
    let Some(shared) = home.upgrade() else {
        panic!("co_wake: the coroutine's home context was dropped");
    };
    schedule_into(&shared, co, &BY_CO_WAKE);
}

/// Makes sure the current coroutine has a home: the context this thread is running.
/// Returns the current coroutine.
pub(crate) fn current_with_home(what: &str) -> Coroutine {
    let Some(co) = current() else {
        panic!("{what}: called outside a coroutine");
    };
    if home_of(&co).is_none() {
        let cur = current_shared();
        if cur.is_null() {
            panic!(
                "{what}: the coroutine has no home context (enter it with AioContext::co_enter)"
            );
        }
        // SAFETY: `cur` is the context this thread is polling, alive while it polls.
        set_home(&co, unsafe { &*cur });
    }
    co
}

/// Moves the current coroutine to `ctx` (QEMU's `aio_co_reschedule_self`): it continues
/// there, on that context's thread. Scheduling it directly would race (the target could
/// enter it before it yielded here), so a bottom half of the current context schedules it
/// once it has yielded.
pub fn co_reschedule_self(ctx: &AioContext) {
    let co = current_with_home("co_reschedule_self");
    let cur = current_shared();
    if std::ptr::eq(cur, &**ctx.shared()) {
        return;
    }
    if cur.is_null() {
        panic!("co_reschedule_self: not running in a context");
    }
    let target: Arc<CtxShared> = ctx.shared().clone();
    // SAFETY: `cur` is the context this thread is polling, alive while it polls.
    bh::schedule_oneshot(unsafe { &*cur }, move || {
        schedule_into(&target, co, &BY_RESCHEDULE)
    });
    yield_now();
}

/// Sleeps the current coroutine for `d` on its context's timers (QEMU's `qemu_co_sleep_ns`).
pub fn co_sleep(d: Duration) {
    let co = current_with_home("co_sleep");
    let ctx = current_context().expect("co_sleep: not running in a context");
    let deadline = Instant::now() + d;
    let timer = Timer::new(&ctx, move || co_wake(co));
    drop(ctx);
    timer.arm_at(deadline);
    while timer.is_pending() {
        yield_now();
    }
}
