//! `AioContext`: one event loop, polled by one thread at a time (QEMU's AioContext).

use crate::bh::{self, Bh, BhList, BhNode};
use crate::co_schedule::{self, CoList};
use crate::epoll::Epoll;
use crate::fd_handlers::{self, FdHandlerList, FdHandlers, Ready};
use crate::notify::NotifyProtocol;
use crate::poll_adaptive::{self, PollParams, SharedPollParams};
use crate::sleeper::SleeperSlot;
use crate::sys::EventFd;
use crate::thread_pool::{ThreadPool, Work};
use crate::timer::TimerList;
use crossbeam_utils::CachePadded;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

/// epoll token of the context's own eventfd (fd handlers use their fd as token).
pub(crate) const NOTIFIER_TOKEN: u64 = u64::MAX;

/// Counters of one context. Written by the polling thread (plain stores) or, for
/// `eventfd_writes`, by notifiers; read from anywhere (a snapshot, exact when quiescent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AioStats {
    /// `poll` calls (nested ones included).
    pub iterations: u64,
    /// Bottom-half callbacks run.
    pub bhs_run: u64,
    /// Notifications that reached the kernel (eventfd writes).
    pub eventfd_writes: u64,
    /// Busy-poll rounds that found work (poll-mode successes).
    pub poll_successes: u64,
    /// Iterations that entered `epoll_wait` with a non-zero timeout.
    pub blocking_waits: u64,
    /// Coroutines entered from the context's scheduled list.
    pub coroutines_run: u64,
}

/// The parts other threads reach without holding the `AioContext`: scheduling lists,
/// notifier, timers. Bottom halves and timers keep it alive.
pub(crate) struct CtxShared {
    pub(crate) bh_list: CachePadded<BhList>,
    pub(crate) co_list: CachePadded<CoList>,
    pub(crate) proto: CachePadded<NotifyProtocol>,
    pub(crate) event: EventFd,
    eventfd_writes: AtomicU64,
    pub(crate) timers: TimerList,
    /// Leaked, never freed: what a coroutine's `home` word points to (see `co_schedule`).
    pub(crate) home: &'static Weak<CtxShared>,
}

impl fmt::Debug for CtxShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtxShared")
            .field("eventfd", &self.event.as_raw_fd())
            .finish()
    }
}

impl CtxShared {
    /// Wakes the context if it may be sleeping. Skipped on the thread that is polling this
    /// very context: that thread looks at the lists again before it next blocks.
    #[inline]
    pub(crate) fn notify_if_remote(&self) {
        if !std::ptr::eq(current_shared(), self) {
            self.notify();
        }
    }

    /// QEMU's `aio_notify` (see `notify.rs` for the protocol).
    #[inline]
    pub(crate) fn notify(&self) {
        if self.proto.notify() {
            self.event.set();
            self.eventfd_writes.fetch_add(1, Relaxed);
        }
    }

    #[inline]
    fn work_queued(&self) -> bool {
        !self.bh_list.is_empty() || !self.co_list.is_empty()
    }
}

impl Drop for CtxShared {
    fn drop(&mut self) {
        self.bh_list.close();
    }
}

/// State only the thread that holds the poll claim touches.
pub(crate) struct OwnerState {
    depth: Cell<u32>,
    pub(crate) poll_started: Cell<bool>,
    /// Heads of the taken bottom-half lists, oldest first (QEMU's bh slices).
    slices: RefCell<Vec<*const BhNode>>,
    /// Coroutines scheduled by the polling thread itself (head, tail words; 0 when empty).
    local_co: Cell<(usize, usize)>,
}

struct OwnerCell(OwnerState);
// SAFETY:
// * the cell is only accessed through `AioContext::owner`, whose callers hold the `polling`
//   claim (an Acquire CAS that makes this thread the only one inside poll/co_enter);
//   the claim's Release store hands the state over to the next claimant.
unsafe impl Sync for OwnerCell {}
// SAFETY: as above; the raw pointers are bottom-half nodes that are `Send`.
unsafe impl Send for OwnerCell {}

#[derive(Default)]
pub(crate) struct Counters {
    iterations: AtomicU64,
    bhs_run: AtomicU64,
    pub(crate) poll_successes: AtomicU64,
    blocking_waits: AtomicU64,
    coroutines_run: AtomicU64,
}

/// Owner-only increment: a load and a store, no read-modify-write.
#[inline]
pub(crate) fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

/// An event loop: bottom halves, fd handlers, timers, scheduled coroutines, a thread pool.
///
/// Shared as `Arc<AioContext>`; anything may be scheduled onto it from any thread, but
/// [`poll`](AioContext::poll) runs on one thread at a time (concurrent polls panic). Several
/// contexts can live in one process, each polled by its own thread.
pub struct AioContext {
    pub(crate) shared: Arc<CtxShared>,
    pub(crate) epoll: Epoll,
    pub(crate) handlers: FdHandlerList,
    /// Token of the thread inside poll/co_enter, 0 when none.
    polling: AtomicUsize,
    /// Token of the context's home thread: its creator, then the last thread that polled it.
    /// `co_enter` from any other thread schedules instead of entering (QEMU's aio_co_enter).
    home_thread: AtomicUsize,
    owner: OwnerCell,
    pub(crate) params: SharedPollParams,
    pub(crate) counters: Counters,
    self_weak: Weak<AioContext>,
    pool: OnceLock<ThreadPool>,
    /// A backend's wait the loop sleeps in instead of `epoll_wait` (see `sleeper`).
    pub(crate) sleeper: SleeperSlot,
}

impl fmt::Debug for AioContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AioContext")
            .field("stats", &self.stats())
            .field("poll", &self.params.get())
            .finish()
    }
}

thread_local! {
    static CURRENT: Cell<(*const AioContext, *const CtxShared)> =
        const { Cell::new((ptr::null(), ptr::null())) };
    static TOKEN: u8 = const { 0 };
}

// The accessors are never inlined: a coroutine may move between threads, and an inlined
// thread-local address could be kept across the switch (QEMU's noinline TLS accessors).
#[inline(never)]
fn current_ptrs() -> (*const AioContext, *const CtxShared) {
    CURRENT.with(|c| c.get())
}

#[inline(never)]
fn replace_current(
    v: (*const AioContext, *const CtxShared),
) -> (*const AioContext, *const CtxShared) {
    CURRENT.with(|c| c.replace(v))
}

#[inline(never)]
fn thread_token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

#[inline]
pub(crate) fn current_shared() -> *const CtxShared {
    current_ptrs().1
}

/// The context this thread holds the claim of, if its shared part is `shared`.
#[inline]
pub(crate) fn current_if(shared: &CtxShared) -> Option<&AioContext> {
    let (ctx, sh) = current_ptrs();
    // SAFETY:
    // * CURRENT is set only by `Claim`, which holds `&AioContext` while it is set; the
    //   returned reference is used before the caller returns to that claim's scope.
    std::ptr::eq(sh, shared).then(|| unsafe { &*ctx })
}

/// The context the calling thread is polling (or entering coroutines of), if any.
pub fn current_context() -> Option<Arc<AioContext>> {
    let p = current_ptrs().0;
    if p.is_null() {
        return None;
    }
    // SAFETY:
    // * CURRENT is set only by `Claim`, which holds `&AioContext` for as long as it is set.
    unsafe { (*p).self_weak.upgrade() }
}

/// Holding this makes the thread the one polling `ctx`; dropped, it restores the previous
/// current context and, for the outermost claim, releases the context.
struct Claim<'a> {
    ctx: &'a AioContext,
    outermost: bool,
    prev: (*const AioContext, *const CtxShared),
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        replace_current(self.prev);
        if self.outermost {
            self.ctx.polling.store(0, Release);
        }
    }
}

impl AioContext {
    /// A new context with its eventfd registered in a new epoll instance.
    pub fn new() -> io::Result<Arc<AioContext>> {
        Self::with_poll_params(PollParams::default())
    }

    /// A new context with the given adaptive-polling parameters.
    pub fn with_poll_params(params: PollParams) -> io::Result<Arc<AioContext>> {
        let event = EventFd::new()?;
        let epoll = Epoll::new()?;
        epoll.add(event.as_raw_fd(), libc::EPOLLIN as u32, NOTIFIER_TOKEN)?;
        let shared = Arc::new_cyclic(|weak: &Weak<CtxShared>| CtxShared {
            bh_list: CachePadded::new(BhList::default()),
            co_list: CachePadded::new(CoList::default()),
            proto: CachePadded::new(NotifyProtocol::new()),
            event,
            eventfd_writes: AtomicU64::new(0),
            timers: TimerList::new(),
            home: Box::leak(Box::new(weak.clone())),
        });
        Ok(Arc::new_cyclic(|weak| AioContext {
            shared,
            epoll,
            handlers: FdHandlerList::new(),
            polling: AtomicUsize::new(0),
            home_thread: AtomicUsize::new(thread_token()),
            owner: OwnerCell(OwnerState {
                depth: Cell::new(0),
                poll_started: Cell::new(false),
                slices: RefCell::new(Vec::new()),
                local_co: Cell::new((0, 0)),
            }),
            params: SharedPollParams::new(params),
            counters: Counters::default(),
            self_weak: weak.clone(),
            pool: OnceLock::new(),
            sleeper: SleeperSlot::default(),
        }))
    }

    pub(crate) fn shared(&self) -> &Arc<CtxShared> {
        &self.shared
    }

    /// Claims the context for this thread, or returns None if another thread holds it.
    fn try_claim(&self) -> Option<Claim<'_>> {
        let me = thread_token();
        let outermost = match self.polling.compare_exchange(0, me, Acquire, Relaxed) {
            Ok(_) => true,
            Err(t) if t == me => false,
            Err(_) => return None,
        };
        if outermost && self.home_thread.load(Relaxed) != me {
            self.home_thread.store(me, Relaxed);
        }
        let prev = replace_current((self as *const AioContext, &*self.shared as *const CtxShared));
        Some(Claim {
            ctx: self,
            outermost,
            prev,
        })
    }

    /// The claimant's state. Callers hold a `Claim`.
    pub(crate) fn owner(&self) -> &OwnerState {
        debug_assert_eq!(self.polling.load(Relaxed), thread_token());
        &self.owner.0
    }

    /// Runs `f` with this thread as the context's owner (as inside `poll`), if this is the
    /// context's home thread and no other thread is polling it; returns None otherwise.
    pub(crate) fn with_claim_at_home<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        if self.home_thread.load(Relaxed) != thread_token() {
            return None;
        }
        let _claim = self.try_claim()?;
        Some(f())
    }

    /// Wakes the context if it is blocked, or about to block, in `poll` (QEMU's `aio_notify`).
    pub fn notify(&self) {
        self.shared.notify();
    }

    /// A reusable bottom half on this context.
    pub fn bh_new(&self, cb: impl FnMut() + Send + 'static) -> Bh {
        Bh::new(self.shared.clone(), Box::new(cb))
    }

    /// Runs `cb` once in the context's next iteration (QEMU's `aio_bh_schedule_oneshot`).
    /// Any thread; no lock; at most one eventfd write and only if the context sleeps.
    #[inline]
    pub fn bh_schedule_oneshot(&self, cb: impl FnOnce() + Send + 'static) {
        bh::schedule_oneshot(&self.shared, cb);
    }

    /// Adds, replaces or (with `FdHandlers::new()`) removes the handlers of `fd`. May be
    /// called from any thread, also from inside a handler. The caller keeps `fd` open while
    /// it is registered.
    pub fn set_fd_handler(&self, fd: RawFd, handlers: FdHandlers) -> io::Result<()> {
        self.handlers.set(&self.epoll, fd, handlers)?;
        self.shared.notify_if_remote();
        Ok(())
    }

    /// Removes the handlers of `fd` (no callback runs for it afterwards).
    pub fn remove_fd_handler(&self, fd: RawFd) -> io::Result<()> {
        self.set_fd_handler(fd, FdHandlers::new())
    }

    /// Sets the adaptive-polling parameters (resets the current window to 0).
    pub fn set_poll_params(&self, p: PollParams) {
        self.params.set(p);
        self.shared.notify_if_remote();
    }

    /// The adaptive-polling parameters.
    pub fn poll_params(&self) -> PollParams {
        self.params.get()
    }

    /// The current busy-poll window in nanoseconds.
    pub fn poll_ns(&self) -> u64 {
        self.params.poll_ns.load(Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> AioStats {
        let c = &self.counters;
        AioStats {
            iterations: c.iterations.load(Relaxed),
            bhs_run: c.bhs_run.load(Relaxed),
            eventfd_writes: self.shared.eventfd_writes.load(Relaxed),
            poll_successes: c.poll_successes.load(Relaxed),
            blocking_waits: c.blocking_waits.load(Relaxed),
            coroutines_run: c.coroutines_run.load(Relaxed),
        }
    }

    /// The context's thread pool (created on first use with default limits).
    pub fn thread_pool(&self) -> &ThreadPool {
        self.pool.get_or_init(|| ThreadPool::new(self))
    }

    /// Runs `work` on the context's thread pool and `done` with its result on the context's
    /// thread (QEMU's `thread_pool_submit_aio`). `done` is dropped uncalled if the returned
    /// `Work` is cancelled before the work started.
    pub fn thread_pool_submit<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
        done: impl FnOnce(R) + Send + 'static,
    ) -> Work {
        self.thread_pool().submit_raw(work, move |r| {
            if let Some(r) = r {
                done(r)
            }
        })
    }

    pub(crate) fn count_coroutines(&self, n: u64) {
        bump(&self.counters.coroutines_run, n);
    }

    /// One iteration of the event loop (QEMU's `aio_poll`): scheduled bottom halves and
    /// coroutines, ready fd handlers, expired timers. With `blocking`, waits until there is
    /// something to do. Returns true when progress was made (a callback ran; a mere
    /// `notify` is not progress).
    ///
    /// May be nested (called from a callback). Only one thread polls a context at a time.
    ///
    /// # Panics
    /// If another thread is polling this context; if a callback panics (the payload
    /// resurfaces here and the context stays usable).
    pub fn poll(&self, blocking: bool) -> bool {
        let Some(_claim) = self.try_claim() else {
            panic!("AioContext::poll: the context is being polled by another thread");
        };
        let st = self.owner();
        st.depth.set(st.depth.get() + 1);
        struct Depth<'a>(&'a OwnerState);
        impl Drop for Depth<'_> {
            fn drop(&mut self) {
                self.0.depth.set(self.0.depth.get() - 1);
            }
        }
        let _depth = Depth(st);
        self.poll_iteration(st, blocking)
    }

    fn poll_iteration(&self, st: &OwnerState, blocking: bool) -> bool {
        let shared = &*self.shared;
        let nested = st.depth.get() > 1;
        let with_poll = self.handlers.with_poll.load(Relaxed) > 0;
        let need_wait = self.handlers.without_poll.load(Relaxed) > 0;
        let params = self.params.get();
        let adaptive = with_poll && params.max_ns > 0 && !nested;
        let start = if adaptive { Some(Instant::now()) } else { None };
        let mut ready: Vec<Ready> = Vec::new();
        let mut progress = false;

        let mut timeout = if blocking {
            self.compute_timeout(st)
        } else {
            0
        };
        if adaptive && !need_wait {
            progress = self.try_poll_mode(st, &mut ready, &mut timeout);
        }

        // Blocking (timeout != 0) is the only case that needs a notification; see notify.rs.
        let use_notify_me = timeout != 0;
        if use_notify_me && !shared.proto.prepare_wait() {
            timeout = 0;
        }
        if timeout != 0 || need_wait {
            // Poll mode ends only when the loop really is about to block (seed 1).
            if timeout != 0 && st.poll_started.get() && self.poll_set_started(st, &mut ready, false)
            {
                timeout = 0;
                progress = true;
            }
            // A poll_end callback may have scheduled work on this thread without a notify.
            if timeout != 0 && self.local_work(st) {
                timeout = 0;
            }
            if timeout != 0 {
                bump(&self.counters.blocking_waits, 1);
            }
            self.wait_and_collect(&mut ready, timeout);
        }
        if use_notify_me {
            shared.proto.finish_wait();
        }
        shared.proto.accept();

        if let Some(start) = start {
            let block_ns = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
            let cur = self.params.poll_ns.load(Relaxed);
            self.params
                .poll_ns
                .store(poll_adaptive::adjust(cur, block_ns, params), Relaxed);
        }

        progress |= self.bh_poll(st);
        progress |= co_schedule::run_scheduled(self);
        progress |= fd_handlers::dispatch_ready(ready);
        progress |= shared.timers.run_due();
        bump(&self.counters.iterations, 1);
        progress
    }

    fn compute_timeout(&self, st: &OwnerState) -> i64 {
        if self.local_work(st) {
            return 0;
        }
        self.shared.timers.timeout_ns()
    }

    /// Anything queued that the next iteration runs without waiting.
    pub(crate) fn local_work(&self, st: &OwnerState) -> bool {
        self.shared.work_queued() || st.local_co.get().0 != 0 || self.slices_pending(st)
    }

    /// Queues a coroutine scheduled by the claimant thread itself: no atomic RMW needed.
    /// The caller holds the claim (this context is the thread's current one).
    pub(crate) fn push_local_co(&self, word: usize, link: &AtomicUsize) {
        let st = self.owner();
        link.store(0, Relaxed);
        let (head, tail) = st.local_co.get();
        if head == 0 {
            st.local_co.set((word, word));
        } else {
            co_schedule::link_of(tail).store(word, Relaxed);
            st.local_co.set((head, word));
        }
    }

    /// Takes the coroutines queued by `push_local_co`, as (head word, FIFO through links).
    pub(crate) fn take_local_co(&self) -> usize {
        let st = self.owner();
        let (head, _) = st.local_co.replace((0, 0));
        head
    }

    fn slices_pending(&self, st: &OwnerState) -> bool {
        st.slices.borrow().iter().any(|h| !h.is_null())
    }

    /// Runs the scheduled bottom halves (see `bh::run_slices`).
    fn bh_poll(&self, st: &OwnerState) -> bool {
        // SAFETY:
        // * we hold the claim (`st` is the owner state), and `st.slices` only ever holds
        //   lists this context's poll took from its own `bh_list`.
        let ran = unsafe { bh::run_slices(&self.shared.bh_list, &st.slices) };
        bump(&self.counters.bhs_run, ran);
        ran > 0
    }
}

impl Drop for AioContext {
    fn drop(&mut self) {
        // Stop the workers before the lists they complete into go away.
        drop(self.pool.take());
        // Closed: a bottom half scheduled from now on is dropped by whoever schedules it.
        self.shared.bh_list.close();
        co_schedule::abandon_scheduled(&self.shared, self.owner.0.local_co.replace((0, 0)).0);
        self.shared.timers.clear();
        // Taken but unrun slices (a callback panicked): drop without running.
        for head in self.owner.0.slices.get_mut().drain(..) {
            // SAFETY: a taken list that nobody else references any more.
            unsafe { bh::drop_list(head) };
        }
    }
}
